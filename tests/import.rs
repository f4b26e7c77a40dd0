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
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(args).arg(file).env("NODE_ENV", "production").output().unwrap();
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
    for line in ["services.db.restart: ignored", "services.db.networks: ignored", "services.wordpress.secrets: ignored"] {
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
    // That reason alone: the service publishing 8080 is still found as main.
    assert!(err.contains("1 problem(s)"), "{err}");
    assert!(err.contains("services.web: only build, no image: App Service runs images"), "{err}");
    assert!(!err.contains("no service publishes"), "{err}");
}

#[test]
fn the_published_wordpress_sample_reaches_its_database_on_localhost() {
    let (doc, warnings) = import_and_validate("wordpress-mysql.yaml");
    assert_eq!(doc["appSettings"]["WORDPRESS_WORDPRESS_DB_HOST"], "localhost", "WORDPRESS_DB_HOST=db");
    assert!(warnings.contains("services.wordpress.environment.WORDPRESS_DB_HOST: host db -> localhost"), "{warnings}");
    let db = container(&doc, "db");
    assert_eq!(db["targetPort"], "3306", "expose gives a sidecar its port");
    assert_eq!(db["isMain"], false);
    assert_eq!(doc["local"]["runtime"], "oci", "an imported stack runs its images");
    // The database's own name "wordpress" is no host.
    assert_eq!(doc["appSettings"]["WORDPRESS_WORDPRESS_DB_NAME"], "wordpress");
}

#[test]
fn variables_env_files_hosts_ports_and_health_checks_as_the_compose_specification_writes_them() {
    let (doc, warnings) = import_and_validate("node-mongo/compose.yaml");
    let names: Vec<&str> = doc["sitecontainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "mongo", "redis", "otel-collector"]);
    let api = container(&doc, "api");
    assert_eq!(api["image"], "ghcr.io/example/api:1.2.3", "${{TAG:-latest}} from .env");
    assert_eq!((api["isMain"].clone(), api["targetPort"].clone()), (serde_json::json!(true), serde_json::json!("3000")));
    let s = &doc["appSettings"];
    assert_eq!(s["API_MONGO_URL"], "mongodb://root:m0ng0-s3cret@localhost:27017/app?authSource=admin");
    assert_eq!(s["API_REDIS_URL"], "redis://:r3dis-s3cret@localhost:6379/0");
    assert_eq!(s["API_OTEL_EXPORTER_OTLP_ENDPOINT"], "http://localhost:4318");
    assert_eq!(s["API_NODE_ENV"], "production", "a bare variable from the shell, over the env_file's");
    assert_eq!(s["API_LOG_LEVEL"], "info", "env_file");
    assert_eq!(s["API_PRICE_LABEL"], "costs $5", "$$ is a literal $");
    assert_eq!(s["MONGO_MONGO_INITDB_ROOT_PASSWORD"], "m0ng0-s3cret");
    // Ports: expose, the first TCP port, never a UDP one; what cannot be published is said.
    assert_eq!(container(&doc, "mongo")["targetPort"], "27017");
    assert_eq!(container(&doc, "redis")["targetPort"], "6379");
    assert_eq!(container(&doc, "otel-collector")["targetPort"], "4317");
    assert!(warnings.contains("services.otel-collector.ports: 6831/udp is not carried over"), "{warnings}");
    assert!(warnings.contains("services.otel-collector.ports: 4317:4317 is not published"), "{warnings}");
    // The image's arguments stay arguments (the oci runtime passes them to the image).
    assert_eq!(container(&doc, "redis")["startUpCommand"], "redis-server --requirepass r3dis-s3cret");
    assert_eq!(container(&doc, "otel-collector")["startUpCommand"], "--config=/etc/otelcol/config.yaml");
    assert_eq!(doc["local"]["runtime"], "oci");
    // Health checks: wget in CMD-SHELL gives the path; others are named, secrets masked.
    let h = &doc["health"]["containers"]["api"];
    assert_eq!((h["path"].as_str(), h["periodSeconds"].as_f64(), h["failureThreshold"].as_u64()), (Some("/healthz"), Some(10.0), Some(5)));
    assert!(warnings.contains("services.mongo.healthcheck.test: the command"), "{warnings}");
    assert!(warnings.contains("services.redis.healthcheck.test: the command \"redis-cli -a **** ping\""), "{warnings}");
    assert!(
        warnings.contains("services.api.environment.MONGO_URL: host mongo -> localhost in mongodb://root:****@localhost"),
        "{warnings}"
    );
    for secret in ["m0ng0-s3cret", "r3dis-s3cret"] {
        assert!(!warnings.contains(secret), "a secret in the warnings: {warnings}");
    }
    assert!(warnings.contains("services.api.depends_on: ignored"), "{warnings}");
}

#[test]
fn a_required_variable_that_is_missing_is_refused_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["compose.yaml", "api.env"] {
        std::fs::copy(compose("node-mongo").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join(".env"), "TAG=1\nREDIS_PASSWORD=x\n").unwrap();
    let (code, out, err) = sitecar(&["import", "compose"], &dir.path().join("compose.yaml"));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("required variable: MONGO_PASSWORD: set MONGO_PASSWORD in .env"), "{err}");
}

#[test]
fn an_import_that_would_not_validate_exits_one_with_the_problems() {
    let (code, out, err) = sitecar(&["import", "compose"], &compose("port-clash.yaml"));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "nothing written: {out}");
    assert!(err.contains("not valid") && err.contains("targetPort") && err.contains("3000"), "{err}");
}
