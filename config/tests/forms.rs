//! The three accepted inputs load into the same validated spec, with Azure's defaults.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sitecar_config::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/specs").join(name)
}

fn settings(pairs: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        app_settings: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        ..LoadOptions::default()
    }
}

#[test]
fn azure_cli_example_loads_with_defaults() {
    let opts = settings(&[("DATABASE_URL", "postgres://x"), ("APPLICATIONINSIGHTS_CONNECTION_STRING", "ikey")]);
    let spec = load_file(&fixture("azure-cli.json"), &opts).unwrap();
    assert_eq!(spec.format, SpecFormat::AzureCli);
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["main", "otel", "redis"]);
    let main = spec.main();
    assert_eq!(main.name, "main");
    assert_eq!(main.target_port, Some(8080));
    assert_eq!(main.startup_command.as_deref(), Some("./run.sh --prod"));
    assert_eq!(main.auth, Auth::UserAssigned { client_id: "00000000-0000-0000-0000-000000000001".into() });
    assert!(main.inherit_app_settings);
    assert_eq!(main.volume_mounts[0].volume_sub_path, "/shared/cache");
    assert_eq!(main.environment_variables[0], EnvReference { name: "DB_URL".into(), app_setting: "DATABASE_URL".into() });
    let otel = spec.container("otel").unwrap();
    assert!(!otel.inherit_app_settings);
    assert!(otel.volume_mounts[0].read_only);
    // inheritAppSettingsAndConnectionStrings defaults to true, as on Azure.
    assert!(spec.container("redis").unwrap().inherit_app_settings);
    // Two containers have only an image: they need an OCI runtime.
    assert_eq!(spec.runtime, Runtime::Oci);
    // Defaults of everything the Azure form does not carry.
    assert_eq!(spec.platform.warmup_path, "/robots933456.txt");
    assert_eq!(spec.platform.start_time_limit, Duration::from_secs(230));
    assert!(spec.platform.app_service_storage);
    assert_eq!(spec.proxy.listen.iter().map(|a| a.port()).collect::<Vec<_>>(), [80, 8080]);
    assert!(!spec.proxy.listen_explicit);
    assert_eq!(spec.proxy.hold, Duration::from_secs(10));
    assert_eq!(spec.admin.listen.to_string(), "127.0.0.1:9901");
    assert!(!spec.cache.enabled);
    assert!(spec.proxy.compression, "on by default");
    assert_eq!(spec.local.grace_period, Duration::from_secs(30));
    assert_eq!(spec.health.defaults.period, Duration::from_secs(10));
    assert_eq!(spec.health.defaults.failure_threshold, 3);
}

#[test]
fn azure_cli_keys_are_case_insensitive_and_ports_may_be_numbers() {
    let text = r#"[{"Name": "web", "PROPERTIES": {"Image": "w", "ISMAIN": true, "targetport": 3000, "StartUpCommand": "run"}}]"#;
    let spec = load_str(text, &LoadOptions::default()).unwrap();
    assert_eq!(spec.main().name, "web");
    assert_eq!(spec.main().target_port, Some(3000));
    assert_eq!(spec.runtime, Runtime::Process);
}

#[test]
fn arm_template_resources_load_with_parameters_resolved() {
    let spec = load_file(&fixture("arm-template.json"), &LoadOptions::default()).unwrap();
    assert_eq!(spec.format, SpecFormat::ArmTemplate);
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "redis"]);
    let web = spec.main();
    assert_eq!(web.image, "myacr.azurecr.io/shop:2.0");
    assert_eq!(web.target_port, Some(8080));
    assert_eq!(web.auth, Auth::SystemIdentity);
    // App settings come from the site's siteConfig, and references to them validate.
    assert_eq!(spec.app_settings["REDIS_URL"], "redis://localhost:6379");
    assert_eq!(spec.container("redis").unwrap().target_port, Some(6379));
}

#[test]
fn arm_template_nested_under_the_site() {
    let text = r#"{"resources": [{"type": "Microsoft.Web/sites", "name": "s", "resources": [
        {"type": "sitecontainers", "name": "main", "properties": {"image": "i", "isMain": true, "targetPort": "80", "startUpCommand": "x"}}]}]}"#;
    // A child resource nested in its site is named by the container name alone, as ARM wants;
    // the full form is read the same.
    let spec = load_str(text, &LoadOptions::default()).unwrap();
    assert_eq!(spec.main().name, "main");
    let text = text.replace("\"name\": \"main\"", "\"name\": \"s/main\"");
    let spec = load_str(&text, &LoadOptions::default()).unwrap();
    assert_eq!(spec.main().name, "main");
}

#[test]
fn sitecar_document_sets_every_section() {
    let spec = load_file(&fixture("sitecar.json"), &LoadOptions::default()).unwrap();
    assert_eq!(spec.format, SpecFormat::Sitecar);
    assert_eq!(spec.main().name, "app");
    assert_eq!(spec.sidecars().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["cache", "agent"]);
    assert_eq!(spec.runtime, Runtime::Process);
    assert_eq!(spec.container("cache").unwrap().process_command(), Some("redis-server --port 6379"));
    assert_eq!(spec.platform.warmup_path, "/ready");
    assert_eq!(spec.platform.warmup_statuses, [200, 204]);
    assert_eq!(spec.platform.start_time_limit, Duration::from_secs(60));
    assert_eq!(spec.platform.healthcheck_path.as_deref(), Some("/healthz"));
    assert_eq!(spec.connection_strings["Orders"].kind, ConnectionType::PostgreSQL);
    assert_eq!(spec.proxy.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["127.0.0.1:8080", "0.0.0.0:8081"]);
    assert!(spec.proxy.listen_explicit);
    assert_eq!(spec.proxy.hold, Duration::from_millis(2500));
    assert_eq!(spec.proxy.timeouts.connect, Duration::from_secs(1));
    assert_eq!(spec.proxy.timeouts.request, Duration::from_secs(30));
    assert_eq!(spec.proxy.timeouts.request_header, Duration::from_secs(30));
    assert_eq!(spec.proxy.max_body_bytes, Some(1_048_576));
    assert_eq!(spec.proxy.access_log, AccessLog::Json);
    assert_eq!(spec.health.defaults.period, Duration::from_secs(5));
    let app_probe = spec.health.for_container("app");
    assert_eq!(app_probe.kind, sitecar_config::ProbeKind::Http { path: "/healthz".into() });
    assert_eq!(app_probe.timeout, Duration::from_secs(2));
    assert_eq!(app_probe.failure_threshold, 2, "per-container probes start from the section's defaults");
    assert!(spec.cache.enabled);
    assert_eq!(spec.cache.max_bytes, 10_485_760);
    assert_eq!(spec.cache.max_object_bytes, 2_621_440, "unsaid, a quarter of a cache below 32 MiB");
    assert_eq!(spec.cache.lock_timeout, Duration::from_secs(2));
    assert!(!spec.proxy.compression);
    assert_eq!(spec.offload[0], OffloadRule { prefix: "/static".into(), dir: "./public".into(), fallthrough: false });
    assert_eq!(spec.admin.listen.port(), 9911);
    assert_eq!(spec.tracing.service_name, "shop-edge");
    assert_eq!(spec.tracing.sample_ratio, 0.25);
    let otlp = spec.tracing.otlp.as_ref().unwrap();
    assert_eq!(otlp.endpoint, "http://localhost:4318/v1/traces", "a base endpoint gets the traces path");
    assert_eq!(otlp.headers[0].0, "x-api-key");
    assert_eq!(otlp.headers[0].1.expose(), "k-123");
    assert_eq!(otlp.timeout, Duration::from_secs(3));
    assert_eq!(spec.local.grace_period, Duration::from_secs(5));
    assert_eq!(spec.local.restart.initial, Duration::from_millis(500));
    assert_eq!(spec.local.site_name, "shop");
}

#[test]
fn outside_settings_win_over_the_document() {
    let opts = settings(&[("REDIS_URL", "redis://elsewhere")]);
    let spec = load_file(&fixture("sitecar.json"), &opts).unwrap();
    assert_eq!(spec.app_settings["REDIS_URL"], "redis://elsewhere");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let text = r#"{"sitecontainers": [{"name": "m", "properties": {"image": "i", "isMain": true, "targetPort": 3000,
        "startUpCommand": "x", "authType": "UserCredentials", "userName": "u", "passwordSecret": "hunter2"}}],
        "connectionStrings": {"Db": {"value": "Password=swordfish"}}}"#;
    let spec = load_str(text, &LoadOptions::default()).unwrap();
    let debug = format!("{spec:?}");
    assert!(!debug.contains("hunter2") && !debug.contains("swordfish"), "{debug}");
    assert_eq!(spec.connection_strings["Db"].kind, ConnectionType::Custom);
}
