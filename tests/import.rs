//! `sitecar import compose`: compose files in the shapes of the Docker docs' samples become specs
//! that `sitecar validate` accepts, with a warning per field App Service ignores; a service that
//! cannot map is refused by name and field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

fn compose(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose").join(name)
}

/// (exit code, stdout, stderr)
fn sitecar(args: &[&str], file: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(args).arg(file).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Imports `name`, validates the result, and returns (document, warnings).
fn import_and_validate(name: &str) -> (serde_json::Value, String) {
    let (code, doc, warnings) = sitecar(&["import", "compose"], &compose(name));
    assert_eq!(code, 0, "{name}: {warnings}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.json");
    std::fs::write(&file, &doc).unwrap();
    let (code, out, err) = sitecar(&["validate"], &file);
    assert_eq!(code, 0, "{name} validates: {out}{err}\n{doc}");
    (serde_json::from_str(&doc).unwrap(), warnings)
}

fn container<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &doc["sitecontainers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["properties"]
}

#[test]
fn web_and_redis() {
    let (doc, warnings) = import_and_validate("redis-web.yaml");
    let web = container(&doc, "web");
    assert_eq!(web["isMain"], true, "it publishes 8080");
    assert_eq!(web["targetPort"], "5000");
    assert_eq!(container(&doc, "redis")["targetPort"], "6379");
    assert_eq!(doc["appSettings"]["WEB_REDIS_HOST"], "localhost");
    assert_eq!(web["environmentVariables"][0], serde_json::json!({"name": "REDIS_HOST", "value": "WEB_REDIS_HOST"}));
    assert_eq!(doc["health"]["containers"]["web"]["path"], "/health");
    assert_eq!(doc["health"]["containers"]["web"]["periodSeconds"], 30.0);
    assert_eq!(doc["health"]["containers"]["web"]["failureThreshold"], 3);
    assert!(warnings.contains("services.web.depends_on: ignored"), "{warnings}");
    assert!(warnings.contains("services.web.build: ignored"), "{warnings}");
}

#[test]
fn wordpress_and_its_database() {
    let (doc, warnings) = import_and_validate("wordpress.yaml");
    let wp = container(&doc, "wordpress");
    assert_eq!((wp["isMain"].clone(), wp["targetPort"].clone()), (serde_json::json!(true), serde_json::json!("80")));
    assert_eq!(container(&doc, "db")["startUpCommand"], "--default-authentication-plugin=mysql_native_password");
    assert_eq!(container(&doc, "db")["volumeMounts"][0]["volumeSubPath"], "/db_data");
    assert_eq!(wp["volumeMounts"][1]["readOnly"], true);
    assert_eq!(doc["appSettings"]["DB_MYSQL_DATABASE"], "wordpress");
    for line in [
        "services.db.restart: ignored",
        "services.db.networks: ignored",
        "services.wordpress.secrets: ignored",
        "services.db.expose: ignored",
    ] {
        assert!(warnings.contains(line), "{line} in {warnings}");
    }
    assert!(warnings.contains("the host directory ./uploads.ini"), "{warnings}");
}

#[test]
fn node_with_long_form_ports_and_volumes() {
    let (doc, warnings) = import_and_validate("node-nginx.yaml");
    let app = container(&doc, "app");
    assert_eq!(app["isMain"], true);
    assert_eq!(app["targetPort"], "3000");
    assert_eq!(app["startUpCommand"], "node server.js --port 3000");
    assert_eq!(
        app["volumeMounts"][0],
        serde_json::json!({"volumeSubPath": "/static", "containerMountPath": "/app/public", "readOnly": true})
    );
    assert!(warnings.contains("services.otel.healthcheck.test: the command"), "{warnings}");
    assert!(warnings.contains("services.app.working_dir: not carried over"), "{warnings}");
}

#[test]
fn a_service_with_only_build_is_refused_by_name_and_field() {
    let (code, out, err) = sitecar(&["import", "compose"], &compose("build-only.yaml"));
    assert_eq!(code, 1);
    assert!(out.is_empty(), "nothing written: {out}");
    assert!(err.contains("services.web.image: missing (the service only has build"), "{err}");
}
