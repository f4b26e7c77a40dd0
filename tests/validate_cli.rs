//! `sitecar validate` as a user runs it: the real binary, real files, exit codes and output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::process::Command;

fn sitecar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sitecar"))
}

fn spec(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/tests/specs").join(name)
}

#[test]
fn valid_spec_exits_zero_and_lists_containers() {
    let out = sitecar().arg("validate").arg(spec("sitecar.json")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid"), "{text}");
    assert!(text.contains("main     app"), "{text}");
}

#[test]
fn settings_from_flags_and_environment_satisfy_references() {
    let out = sitecar()
        .arg("validate")
        .arg(spec("azure-cli.json"))
        .args(["--setting", "DATABASE_URL=pg://x"])
        .env("APPSETTING_APPLICATIONINSIGHTS_CONNECTION_STRING", "k")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn invalid_spec_exits_one_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"[{"name": "a_b", "properties": {"image": "x", "isMain": true, "targetPort": "99999", "startUpCommand": "x"}}]"#,
    )
    .unwrap();
    let out = sitecar().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 problems"), "{err}");
    assert!(err.contains("$[0].name: invalid container name \"a_b\""), "{err}");
    assert!(err.contains("$[0].properties.targetPort: \"99999\" is out of range 1-65535"), "{err}");
    assert!(err.contains("hint: "), "{err}");

    let out = sitecar().arg("validate").arg("--json").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 2);
    assert_eq!(v["problems"][0]["path"], "$[0].properties.targetPort");
}

#[test]
fn invalid_json_exits_one_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(&file, "[\n  {\"name\": }\n]").unwrap();
    let out = sitecar().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2, column 12"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn unreadable_file_exits_two() {
    let out = sitecar().args(["validate", "/nonexistent/spec.json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/spec.json"));
}

#[test]
fn warnings_say_which_runtime_auto_chose_and_that_mains_port_is_the_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.json");
    std::fs::write(
        &file,
        r#"{"sitecontainers": [
            {"name": "cache", "properties": {"image": "redis:7-alpine", "isMain": false, "targetPort": "6379"}},
            {"name": "web", "properties": {"image": "web:1", "isMain": true, "targetPort": "8080", "startUpCommand": "./run",
              "environmentVariables": [{"name": "PORT", "value": "APP_PORT"}]}}],
           "appSettings": {"APP_PORT": "3000", "WEBSITES_PORT": "3000"}}"#,
    )
    .unwrap();
    let out = sitecar().arg("validate").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "warnings are no problems: {text}");
    assert!(text.contains("runtime Oci"), "{text}");
    assert!(
        text.contains("warning: $.sitecontainers[0].properties.startUpCommand: the stack runs its images with docker or podman")
            && text.contains("container \"cache\" has no startUpCommand"),
        "{text}"
    );
    assert!(
        text.contains("$.sitecontainers[1].properties.environmentVariables[0]") && text.contains("PORT of main is set by the platform"),
        "{text}"
    );
    assert!(text.contains("$.appSettings.WEBSITES_PORT: the app setting WEBSITES_PORT is overridden for main"), "{text}");
    let out = sitecar().arg("validate").arg("--json").arg(&file).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["warnings"].as_array().unwrap().len(), 3, "{v:#}");
}
