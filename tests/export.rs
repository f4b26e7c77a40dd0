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

/// The Python with kubernetes-validate and PyYAML: `make test`'s virtualenv, else python3.
fn python() -> String {
    std::env::var("SITECAR_TEST_PYTHON").ok().filter(|p| std::path::Path::new(p).exists()).unwrap_or_else(|| "python3".into())
}

/// kubernetes-validate, strict (unknown fields are errors), against its newest schemas.
fn validate_manifests(file: &Path) -> (bool, String) {
    let out = Command::new(python()).args(["-m", "kubernetes_validate", "--strict"]).arg(file).output().unwrap();
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
    let broken = export(&["kubernetes"], &fixture("sitecar.json")).replacen("restartPolicy: Always", "restartPolicy: 7", 1);
    assert!(broken.contains("restartPolicy: 7"));
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    assert!(!validate_manifests(&file).0);
}

#[test]
fn azure_spec_file_and_arm_template_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let original = sitecar_config::load_file(&fixture("sitecar.json"), &Default::default()).unwrap();
    let same = |back: &sitecar_config::Spec, name: &str| {
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
    };

    // The ARM template carries the app settings and connection strings: it validates as it is.
    let template = dir.path().join("template.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(["export", "azure", "--arm"]).arg(fixture("sitecar.json")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&template, &out.stdout).unwrap();
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains("not carried over: local.containers"), "nothing dropped without a word: {warned}");
    let status = Command::new(env!("CARGO_BIN_EXE_sitecar")).arg("validate").arg(&template).status().unwrap();
    assert!(status.success(), "the ARM export validates with nothing added");
    let back = sitecar_config::load_file(&template, &Default::default()).unwrap();
    same(&back, "template.json");
    assert_eq!(back.app_settings, original.app_settings);
    assert_eq!(back.connection_strings["Orders"].value.expose(), original.connection_strings["Orders"].value.expose());
    assert_eq!(back.connection_strings["Orders"].kind, original.connection_strings["Orders"].kind);

    // The CLI form: the spec file, and the settings files `az webapp config ... set --settings @FILE` takes.
    let out_dir = dir.path().join("azure");
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar"))
        .args(["export", "azure", "--dir"])
        .arg(&out_dir)
        .arg(fixture("sitecar.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("appsettings.json")).unwrap()).unwrap();
    let settings: Vec<(String, String)> = settings
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["slotSetting"], false);
            (s["name"].as_str().unwrap().to_owned(), s["value"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(settings.len(), original.app_settings.len());
    let strings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("connectionstrings.json")).unwrap()).unwrap();
    assert_eq!(strings[0]["name"], "Orders");
    assert_eq!(strings[0]["type"], original.connection_strings["Orders"].kind.name());
    // With the settings on the site (as az sets them), the spec file validates and reads back.
    let args: Vec<String> = settings.iter().flat_map(|(k, v)| ["--setting".to_owned(), format!("{k}={v}")]).collect();
    let spec_file = out_dir.join("sitecontainers.json");
    let status = Command::new(env!("CARGO_BIN_EXE_sitecar")).arg("validate").args(&args).arg(&spec_file).status().unwrap();
    assert!(status.success());
    let options = sitecar_config::LoadOptions { app_settings: settings.into_iter().collect(), ..Default::default() };
    same(&sitecar_config::load_file(&spec_file, &options).unwrap(), "sitecontainers.json");
}

/// YAML documents read back as JSON (PyYAML comes with kubernetes-validate).
fn yaml_docs(text: &str) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

#[test]
fn kubernetes_exports_deploy_side_by_side_and_start_when_app_service_would() {
    let dir = tempfile::tempdir().unwrap();
    // main answers 404 on the warmup path: App Service starts it; so must the startup probe.
    let spec = dir.path().join("shop.json");
    std::fs::write(
        &spec,
        r#"{"sitecontainers": [
            {"name": "web", "properties": {"image": "shop/web:1", "isMain": true, "targetPort": "8080"}},
            {"name": "web-cache", "properties": {"image": "redis:7", "isMain": false, "targetPort": "6379"}},
            {"name": "web-cache-exporter-with-a-long-name", "properties": {"image": "exporter:1", "isMain": false, "targetPort": "9121"}}]}"#,
    )
    .unwrap();
    let docs = yaml_docs(&export(&["kubernetes"], &spec));
    let names: Vec<&str> = docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["shop-appsettings", "shop-connectionstrings", "shop", "shop"], "named after the spec file");
    let pod = &docs[2]["spec"]["template"]["spec"];
    let main = &pod["containers"][0];
    assert_eq!(main["startupProbe"]["tcpSocket"]["port"], 8080, "{main:#}");
    assert!(main["startupProbe"].get("httpGet").is_none());
    let mut ports: Vec<String> = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain([main])
        .map(|c| c["ports"][0]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(ports.iter().all(|p| p.len() <= 15 && p.chars().any(|c| c.is_ascii_alphabetic()) && !p.contains("--")), "{ports:?}");
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "port names unique within the pod: {ports:?}");

    // A second app in the same namespace: no object name in common.
    let other = yaml_docs(&export(&["kubernetes", "--name", "billing"], &spec));
    for d in &other {
        let n = d["metadata"]["name"].as_str().unwrap();
        assert!(n.starts_with("billing"), "{n}");
        assert!(!names.contains(&n));
    }
    // -o json is the same manifests.
    let json: serde_json::Value = serde_json::from_str(&export(&["kubernetes", "-o", "json"], &spec)).unwrap();
    assert_eq!(json.as_array().unwrap(), &docs);
    let file = dir.path().join("k8s.yaml");
    std::fs::write(&file, export(&["kubernetes"], &spec)).unwrap();
    let (ok, text) = validate_manifests(&file);
    assert!(ok, "{text}");
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

#[test]
fn make_test_keeps_its_tools_to_itself() {
    // Python tools in the virtualenv under target/ (when run by `make test`), not the system's.
    if let Ok(py) = std::env::var("SITECAR_TEST_PYTHON") {
        let out = Command::new(&py).args(["-c", "import kubernetes_validate; print(kubernetes_validate.__file__)"]).output().unwrap();
        let at = String::from_utf8_lossy(&out.stdout);
        assert!(at.starts_with(&format!("{}/target/", env!("CARGO_MANIFEST_DIR"))), "{at}");
    }
    // Debian packages are installed without upgrading what the machine already has.
    let out = Command::new("make")
        .args(["-n", "--no-print-directory", "apt-install", "CMDS=no-such-command-here", "PKGS=some-package"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let recipe = String::from_utf8_lossy(&out.stdout);
    assert!(recipe.contains("apt-get install -y -qq --no-upgrade $(PKGS)") || recipe.contains("--no-upgrade some-package"), "{recipe}");
}
