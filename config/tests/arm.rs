//! ARM templates in the shapes Bicep emits and the Azure docs show, each checked for what runs:
//! containers, images, ports, commands, app settings; what only a deployment knows is reported
//! at its JSON path with what supplies it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::path::PathBuf;

use sitecar_config::*;

fn arm(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/specs/arm").join(name)
}

fn with(settings: &[(&str, &str)], parameters: &[(&str, serde_json::Value)]) -> LoadOptions {
    LoadOptions {
        app_settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        ..LoadOptions::default()
    }
}

fn names(spec: &Spec) -> Vec<&str> {
    spec.containers.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn a_bicep_build_template_runs_its_containers_with_settings_from_every_place() {
    // The config/appsettings resource reads a deployed resource: refused, naming the setting.
    let err = load_file(&arm("bicep-sidecars.json"), &LoadOptions::default()).unwrap_err();
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, "$.resources[5].properties.APPLICATIONINSIGHTS_CONNECTION_STRING");
    assert!(problems[0].message.contains("reference("), "{}", problems[0].message);
    assert_eq!(problems[0].hint.as_deref(), Some("give its value: --setting APPLICATIONINSIGHTS_CONNECTION_STRING=VALUE (or APPSETTING_APPLICATIONINSIGHTS_CONNECTION_STRING in the environment)"));

    // Given outside the template, it loads: format('{0}/{1}', ...) names, not "{1}" duplicates.
    let spec =
        load_file(&arm("bicep-sidecars.json"), &with(&[("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=k")], &[])).unwrap();
    assert_eq!(spec.format, SpecFormat::ArmTemplate);
    assert_eq!(names(&spec), ["main", "otel", "redis"]);
    let main = spec.main();
    assert_eq!(main.image, "myacr.azurecr.io/web:1.4", "a variable built from parameters");
    assert_eq!(main.target_port, Some(8080));
    assert_eq!(spec.container("otel").unwrap().target_port, Some(4318));
    assert!(!spec.container("otel").unwrap().inherit_app_settings);
    // siteConfig.appSettings, the config/appsettings resource, and the connection strings one.
    assert_eq!(spec.app_settings["REDIS_URL"], "redis://localhost:6379");
    assert_eq!(spec.app_settings["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://localhost:4318");
    assert_eq!(spec.app_settings["IMAGE_TAG"], "1.4");
    assert_eq!(spec.app_settings["APPLICATIONINSIGHTS_CONNECTION_STRING"], "InstrumentationKey=k");
    let orders = &spec.connection_strings["Orders"];
    assert_eq!(orders.kind, ConnectionType::SQLAzure);
    assert!(
        orders.value.expose().starts_with("Server=tcp:shop-") && orders.value.expose().ends_with(".database.windows.net;Database=orders")
    );
    // The environment main gets: its own entry resolved through the app setting.
    let env =
        env::container_env(&spec, main, Some(8080), &env::HostFacts { basics: vec![], home: "/home".into(), instance_id: "i".into() });
    assert_eq!(env["REDIS"], "redis://localhost:6379");
    assert_eq!(env["SQLAZURECONNSTR_Orders"], orders.value.expose());

    // Parameters as `az deployment group create --parameters` gives them.
    let spec = load_file(
        &arm("bicep-sidecars.json"),
        &with(&[("APPLICATIONINSIGHTS_CONNECTION_STRING", "k")], &[("imageTag", "2.0".into()), ("enableOtel", "false".into())]),
    )
    .unwrap();
    assert_eq!(spec.main().image, "myacr.azurecr.io/web:2.0");
    assert_eq!(names(&spec), ["main", "redis"], "a resource whose condition is false is not deployed");
    assert_eq!(spec.app_settings["OTEL_EXPORTER_OTLP_ENDPOINT"], "");
}

#[test]
fn a_language_version_2_template_with_comments_runs_its_symbolic_resources() {
    let spec = load_file(&arm("symbolic-with-comments.json"), &LoadOptions::default()).unwrap();
    assert_eq!(names(&spec), ["main", "cache"], "in declaration order; the existing plan is no resource of ours");
    assert_eq!(spec.main().startup_command.as_deref(), Some("node server.js"));
    assert_eq!(spec.container("cache").unwrap().target_port, Some(6379));
    assert_eq!(spec.runtime, Runtime::Process);
}

#[test]
fn hand_written_concat_names_nested_children_and_escapes() {
    // A parameter without a default value: reported where it is needed, with what supplies it.
    let err = load_file(&arm("hand-written-concat.json"), &LoadOptions::default()).unwrap_err();
    let first = &err.problems()[0];
    assert!(first.message.contains("parameter 'siteName' (no defaultValue)"), "{first:?}");
    assert!(first.hint.as_deref().unwrap_or("").contains("--parameter siteName=VALUE"), "{first:?}");

    let spec = load_file(&arm("hand-written-concat.json"), &with(&[], &[("siteName", "Shop".into())])).unwrap();
    assert_eq!(names(&spec), ["web", "metrics", "otel"]);
    let web = spec.main();
    assert_eq!(web.image, "web:5000");
    assert_eq!(web.target_port, Some(5000), "a port built with string()");
    assert_eq!(web.startup_command.as_deref(), Some("[ -x ./run ] && ./run"), "[[ is a literal [");
    assert_eq!(spec.app_settings["GREETING"], "hello from shop");
    // A parameter the template does not declare is a mistake worth saying.
    let err = load_file(&arm("hand-written-concat.json"), &with(&[], &[("siteName", "s".into()), ("sitName", "x".into())])).unwrap_err();
    assert_eq!(err.problems()[0].path, "--parameter sitName");
}

#[test]
fn a_code_app_with_sidecars_says_what_is_missing_and_runs_the_users_code_as_main() {
    let err = load_file(&arm("code-app-python.json"), &LoadOptions::default()).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.path, "$.resources[0].properties.siteConfig.linuxFxVersion");
    assert!(p.message.contains("PYTHON|3.12"), "{p:?}");
    assert!(p.hint.as_deref().unwrap_or("").contains("--main \"gunicorn app:app\" --main-port 8000"), "{p:?}");

    let options = LoadOptions { main: Some(MainCommand { command: "gunicorn app:app".into(), port: 8000 }), ..LoadOptions::default() };
    let spec = load_file(&arm("code-app-python.json"), &options).unwrap();
    assert_eq!(names(&spec), ["redis", "main"]);
    let main = spec.main();
    assert_eq!((main.image.as_str(), main.target_port), ("appsvc/python:3.12", Some(8000)));
    assert_eq!(main.startup_command.as_deref(), Some("gunicorn app:app"));
    assert_eq!(spec.app_settings["SCM_DO_BUILD_DURING_DEPLOYMENT"], "true");
    assert_eq!(spec.runtime, Runtime::Process, "every container has a command");
}
