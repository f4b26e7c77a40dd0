//! `sitecar export`: Kubernetes manifests checked against the Kubernetes schemas (PyPI's
//! kubernetes-validate, strict), and the Azure spec file and ARM template read back through
//! `sitecar validate` and the loader, container for container.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tests/specs").join(name)
}

/// App settings the Azure fixtures name (on Azure they live on the site, not in the spec file).
const SETTINGS: [&str; 4] =
    ["--setting", "DATABASE_URL=postgres://db", "--setting", "APPLICATIONINSIGHTS_CONNECTION_STRING=InstrumentationKey=k"];

fn export(args: &[&str], spec: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).arg("export").args(args).args(SETTINGS).arg(spec).output().unwrap();
    assert!(out.status.success(), "export {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// kubernetes-validate, strict (unknown fields are errors), against its newest schemas.
fn validate_manifests(file: &Path) -> (bool, String) {
    let out = Command::new("python3").args(["-m", "kubernetes_validate", "--strict"]).arg(file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn kubernetes_manifests_pass_the_schemas() {
    let dir = tempfile::tempdir().unwrap();
    for spec in ["sitecar.json", "azure-cli.json", "arm-template.json"] {
        let file = dir.path().join(format!("{spec}.yaml"));
        std::fs::write(&file, export(&["kubernetes"], &fixture(spec))).unwrap();
        let (ok, text) = validate_manifests(&file);
        assert!(ok, "{spec}: {text}");
        for kind in ["configmap/", "secret/", "deployment/", "service/"] {
            assert!(text.lines().any(|l| l.contains("passed") && l.contains(kind)), "{spec}: {kind} in {text}");
        }
    }
    // The validator does reject a broken manifest: a restartPolicy that is not a string.
    let broken = export(&["kubernetes"], &fixture("sitecar.json")).replacen("\"restartPolicy\": \"Always\"", "\"restartPolicy\": 7", 1);
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    assert!(!validate_manifests(&file).0);
}

#[test]
fn azure_spec_file_and_arm_template_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let original = sitecar_config::load_file(&fixture("sitecar.json"), &Default::default()).unwrap();
    // The settings stay on the site: handed to validate and the loader as the platform would.
    let settings: Vec<String> = original.app_settings.iter().flat_map(|(k, v)| ["--setting".to_owned(), format!("{k}={v}")]).collect();
    let options = sitecar_config::LoadOptions { app_settings: original.app_settings.clone(), ..Default::default() };
    for (args, name) in [(&["azure"][..], "spec.json"), (&["azure", "--arm"][..], "template.json")] {
        let file = dir.path().join(name);
        std::fs::write(&file, export(args, &fixture("sitecar.json"))).unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_sitecar")).arg("validate").args(&settings).arg(&file).status().unwrap();
        assert!(status.success(), "{name} validates");
        let back = sitecar_config::load_file(&file, &options).unwrap();
        assert_eq!(back.containers.len(), original.containers.len());
        for (a, b) in original.containers.iter().zip(&back.containers) {
            // Everything Azure carries; the local command mapping is sitecar's own.
            assert_eq!(
                (&a.name, &a.image, a.is_main, a.target_port, &a.startup_command, &a.auth, a.inherit_app_settings),
                (&b.name, &b.image, b.is_main, b.target_port, &b.startup_command, &b.auth, b.inherit_app_settings),
                "{name}"
            );
            assert_eq!((&a.volume_mounts, &a.environment_variables), (&b.volume_mounts, &b.environment_variables), "{name}");
        }
    }
}

#[test]
fn an_invalid_spec_exports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"[{"name": "a", "properties": {"image": "x", "isMain": false}}]"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(["export", "kubernetes"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("main"), "{}", String::from_utf8_lossy(&out.stderr));
}
