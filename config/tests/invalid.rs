//! Every bad spec is refused with all of its problems at once, each at its exact JSON path.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use sitecar_config::*;

/// (path, message) of every problem, in report order.
fn problems(text: &str) -> Vec<(String, String)> {
    match load_str(text, &LoadOptions::default()) {
        Ok(_) => panic!("spec was accepted:\n{text}"),
        Err(e) => e.problems().into_iter().map(|p| (p.path, p.message)).collect(),
    }
}

fn hints(text: &str) -> Vec<Option<String>> {
    load_str(text, &LoadOptions::default()).unwrap_err().problems().into_iter().map(|p| p.hint).collect()
}

fn expect(text: &str, want: &[(&str, &str)]) {
    let got = problems(text);
    let want: Vec<(String, String)> = want.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(got, want, "\nspec: {text}");
}

const SIDE: &str = r#"{"name": "side", "properties": {"image": "s", "isMain": false, "targetPort": "7000", "startUpCommand": "s"}}"#;

#[test]
fn invalid_json_reports_line_and_column() {
    let err = load_str("[\n  {\"name\": \"a\",,}\n]", &LoadOptions::default()).unwrap_err();
    match err {
        LoadError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 16)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unreadable_file_is_its_own_error() {
    let err = load_file(std::path::Path::new("/nonexistent/spec.json"), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, LoadError::Unreadable { .. }));
    assert!(err.to_string().contains("/nonexistent/spec.json"));
}

#[test]
fn not_a_spec_at_all() {
    expect(r#"{"containers": []}"#, &[("$", "not a sitecontainers spec")]);
    expect("42", &[("$", "expected an array or an object, found a number")]);
}

#[test]
fn no_main_container() {
    expect(&format!("[{SIDE}]"), &[("$", "no container has \"isMain\": true")]);
}

#[test]
fn two_main_containers() {
    let text = r#"[{"name": "a", "properties": {"image": "a", "isMain": true, "targetPort": "3000", "startUpCommand": "a"}},
                   {"name": "b", "properties": {"image": "b", "isMain": true, "targetPort": "3001", "startUpCommand": "b"}}]"#;
    expect(text, &[("$[1].properties.isMain", "a second main container (\"a\" is main already)")]);
}

#[test]
fn ten_sidecars_are_too_many() {
    let mut items =
        vec![r#"{"name": "m", "properties": {"image": "m", "isMain": true, "targetPort": "3000", "startUpCommand": "m"}}"#.to_string()];
    for i in 0..10 {
        items.push(format!(
            r#"{{"name": "s{i}", "properties": {{"image": "s", "isMain": false, "targetPort": "{}", "startUpCommand": "s"}}}}"#,
            7000 + i
        ));
    }
    expect(&format!("[{}]", items.join(",")), &[("$[10]", "more than nine sidecars")]);
}

#[test]
fn bad_and_duplicate_names() {
    let text = r#"[{"name": "my_app", "properties": {"image": "a", "isMain": true, "targetPort": "3000", "startUpCommand": "a"}},
                   {"name": "Side", "properties": {"image": "b", "isMain": false, "startUpCommand": "b"}},
                   {"name": "side", "properties": {"image": "c", "isMain": false, "startUpCommand": "c"}},
                   {"properties": {"image": "d", "isMain": false, "startUpCommand": "d"}}]"#;
    expect(
        text,
        &[
            ("$[3].name", "missing container name"),
            ("$[0].name", "invalid container name \"my_app\""),
            ("$[2].name", "duplicate container name \"side\" (first at $[1].name)"),
        ],
    );
}

#[test]
fn ports_out_of_range_duplicate_and_missing_on_main() {
    let text = r#"[{"name": "m", "properties": {"image": "m", "isMain": true, "startUpCommand": "m"}},
                   {"name": "a", "properties": {"image": "a", "isMain": false, "targetPort": "70000", "startUpCommand": "a"}},
                   {"name": "b", "properties": {"image": "b", "isMain": false, "targetPort": 0, "startUpCommand": "b"}},
                   {"name": "c", "properties": {"image": "c", "isMain": false, "targetPort": "http", "startUpCommand": "c"}},
                   {"name": "d", "properties": {"image": "d", "isMain": false, "targetPort": 6379, "startUpCommand": "d"}},
                   {"name": "e", "properties": {"image": "e", "isMain": false, "targetPort": "6379", "startUpCommand": "e"}}]"#;
    expect(
        text,
        &[
            ("$[1].properties.targetPort", "\"70000\" is out of range 1-65535"),
            ("$[2].properties.targetPort", "0 is out of range 1-65535"),
            ("$[3].properties.targetPort", "expected a whole number, found \"http\""),
            ("$[5].properties.targetPort", "port 6379 is already used by \"d\""),
            ("$[0].properties.targetPort", "main container has no targetPort"),
        ],
    );
}

#[test]
fn sidecar_on_a_front_door_or_admin_port_in_process_mode() {
    let text = r#"[{"name": "m", "properties": {"image": "m", "isMain": true, "targetPort": "80", "startUpCommand": "m"}},
                   {"name": "a", "properties": {"image": "a", "isMain": false, "targetPort": "8080", "startUpCommand": "a"}},
                   {"name": "b", "properties": {"image": "b", "isMain": false, "targetPort": "9901", "startUpCommand": "b"}}]"#;
    // Main on 80 is fine: it gets an internal port. Sidecars on 8080 and 9901 are not.
    expect(
        text,
        &[
            ("$[1].properties.targetPort", "port 8080 belongs to the front door"),
            ("$[2].properties.targetPort", "port 9901 belongs to the admin API"),
        ],
    );
    // With an OCI runtime containers have their own localhost: the same ports are fine.
    let oci = format!(r#"{{"sitecontainers": {text}, "local": {{"runtime": "oci"}}}}"#);
    assert!(load_str(&oci, &LoadOptions::default()).is_ok());
}

#[test]
fn env_values_must_name_app_settings() {
    let text = r#"{"sitecontainers": [{"name": "m", "properties": {"image": "m", "isMain": true, "targetPort": "3000", "startUpCommand": "m",
        "environmentVariables": [{"name": "DB", "value": "DATABASE_URl"}, {"name": "X", "value": "NOPE"}, {"name": "DB", "value": "DATABASE_URL"}, {"value": "DATABASE_URL"}]}}],
        "appSettings": {"DATABASE_URL": "pg://"}}"#;
    expect(
        text,
        &[
            ("$.sitecontainers[0].properties.environmentVariables[3].name", "missing name of the environment variable"),
            ("$.sitecontainers[0].properties.environmentVariables[0].value", "\"DATABASE_URl\" names no app setting"),
            ("$.sitecontainers[0].properties.environmentVariables[1].value", "\"NOPE\" names no app setting"),
            ("$.sitecontainers[0].properties.environmentVariables[2].name", "variable \"DB\" is defined twice in this container"),
        ],
    );
    assert_eq!(hints(text)[1].as_deref(), Some("did you mean \"DATABASE_URL\"? value is the NAME of an app setting"));
}

#[test]
fn auth_types_and_the_fields_they_need() {
    let text = r#"[{"name": "m", "properties": {"image": "m", "isMain": true, "targetPort": "3000", "startUpCommand": "m", "authType": "Password"}},
                   {"name": "a", "properties": {"image": "a", "isMain": false, "startUpCommand": "a", "authType": "UserCredentials", "userName": "u"}},
                   {"name": "b", "properties": {"image": "b", "isMain": false, "startUpCommand": "b", "authType": "UserAssigned"}},
                   {"name": "c", "properties": {"image": "c", "isMain": false, "startUpCommand": "c", "authType": "Anonymous", "passwordSecret": "p"}},
                   {"name": "d", "properties": {"image": "d", "isMain": false, "startUpCommand": "d", "userManagedIdentityClientId": "id"}}]"#;
    expect(
        text,
        &[
            ("$[0].properties.authType", "unknown authType \"Password\""),
            ("$[1].properties.passwordSecret", "authType UserCredentials needs passwordSecret"),
            ("$[2].properties.userManagedIdentityClientId", "authType UserAssigned needs userManagedIdentityClientId"),
            ("$[3].properties.passwordSecret", "passwordSecret is only used with authType UserCredentials"),
            ("$[4].properties.userManagedIdentityClientId", "userManagedIdentityClientId is only used with authType UserAssigned"),
        ],
    );
}

#[test]
fn mounts_need_absolute_paths_and_safe_subpaths() {
    let text = r#"[{"name": "m", "properties": {"image": "m", "isMain": true, "targetPort": "3000", "startUpCommand": "m", "volumeMounts": [
        {"volumeSubPath": "data", "containerMountPath": "var/data"},
        {"volumeSubPath": "../etc", "containerMountPath": "/etc/app"},
        {"volumeSubPath": "x", "containerMountPath": "/etc/app/"},
        {"containerMountPath": "/y", "readOnly": "yes"}]}}]"#;
    expect(
        text,
        &[
            ("$[0].properties.volumeMounts[3].readOnly", "expected true or false, found a string"),
            ("$[0].properties.volumeMounts[3].volumeSubPath", "missing volumeSubPath"),
            ("$[0].properties.volumeMounts[0].containerMountPath", "mount path \"var/data\" is not absolute"),
            ("$[0].properties.volumeMounts[1].volumeSubPath", "volumeSubPath \"../etc\" contains . or .."),
            ("$[0].properties.volumeMounts[2].containerMountPath", "\"/etc/app/\" is mounted twice in this container"),
        ],
    );
}

#[test]
fn unknown_fields_get_did_you_mean() {
    let text = r#"[{"name": "m", "properties": {"image": "m", "isMain": true, "targetPort": "3000", "startupCommand": "m", "startUpComand": "x", "colour": "red"}, "extra": 1}]"#;
    let got = problems(text);
    assert_eq!(
        got,
        [
            ("$[0].properties.startUpComand".to_string(), "unknown field \"startUpComand\"".to_string()),
            ("$[0].properties.colour".into(), "unknown field \"colour\"".into()),
            ("$[0].extra".into(), "unknown field \"extra\"".into()),
        ]
    );
    let h = hints(text);
    assert_eq!(h[0].as_deref(), Some("did you mean \"startUpCommand\"?"));
    assert!(h[1].as_deref().unwrap().starts_with("known fields here: image, isMain"), "{h:?}");
}

#[test]
fn wrong_types_everywhere_are_all_reported() {
    let text = r#"[{"name": 5, "properties": {"image": ["a"], "isMain": "maybe", "targetPort": true, "volumeMounts": {}, "environmentVariables": "X"}}]"#;
    expect(
        text,
        &[
            ("$[0].name", "expected a string, found a number"),
            ("$[0].properties.image", "expected a string, found an array"),
            ("$[0].properties.isMain", "expected true or false, found a string"),
            ("$[0].properties.targetPort", "expected a whole number, found a boolean"),
            ("$[0].properties.volumeMounts", "expected an array, found an object"),
            ("$[0].properties.environmentVariables", "expected an array, found a string"),
        ],
    );
}

#[test]
fn missing_required_fields() {
    let text = r#"[{"name": "m"}, {"name": "s", "properties": {"targetPort": "1"}}]"#;
    expect(
        text,
        &[
            ("$[0].properties", "missing \"properties\""),
            ("$[1].properties.image", "missing image"),
            ("$[1].properties.isMain", "missing isMain"),
        ],
    );
}

#[test]
fn process_mode_needs_a_command() {
    let text = r#"{"sitecontainers": [{"name": "m", "properties": {"image": "web:1", "isMain": true, "targetPort": "3000"}}], "local": {"runtime": "process"}}"#;
    expect(text, &[("$.sitecontainers[0].properties.startUpCommand", "container \"m\" has nothing to run as a process")]);
    assert_eq!(
        hints(text)[0].as_deref(),
        Some("add local.images[\"web:1\"].command (or local.containers.m.command), or set local.runtime to \"oci\"")
    );
}

#[test]
fn tracing_section_is_checked() {
    let main = r#"{"name": "m", "properties": {"image": "m", "isMain": true, "targetPort": "3000", "startUpCommand": "m"}}"#;
    let text = format!(
        r#"{{"sitecontainers": [{main}], "tracing": {{"sampleRatio": 2, "serviceName": " ",
            "otlp": {{"endpoint": "https://collector:4318", "headers": {{"bad header": "v"}}, "timeoutSecs": 1}}}}}}"#
    );
    expect(
        &text,
        &[
            ("$.tracing.serviceName", "serviceName is empty"),
            ("$.tracing.sampleRatio", "2 is out of range 0-1"),
            ("$.tracing.otlp.endpoint", "\"https://collector:4318\" is not an http:// URL"),
            ("$.tracing.otlp.headers", "\"bad header\" is not a header name"),
            ("$.tracing.otlp.timeoutSecs", "unknown field \"timeoutSecs\""),
        ],
    );
    for (endpoint, message) in [("http://:4318", "has no valid host and port"), ("localhost:4318", "is not an http:// URL")] {
        let text = format!(r#"{{"sitecontainers": [{main}], "tracing": {{"otlp": {{"endpoint": "{endpoint}"}}}}}}"#);
        let got = problems(&text);
        assert!(got.len() == 1 && got[0].0 == "$.tracing.otlp.endpoint" && got[0].1.contains(message), "{endpoint}: {got:?}");
    }
    let text = format!(r#"{{"sitecontainers": [{main}], "tracing": {{"otlp": {{}}}}}}"#);
    assert_eq!(problems(&text), [("$.tracing.otlp.endpoint".to_string(), "missing endpoint".to_string())]);
    let ok = format!(r#"{{"sitecontainers": [{main}], "tracing": {{"otlp": {{"endpoint": "http://127.0.0.1:4318/custom/traces"}}}}}}"#);
    let spec = load_str(&ok, &LoadOptions::default()).unwrap();
    assert_eq!(spec.tracing.otlp.unwrap().endpoint, "http://127.0.0.1:4318/custom/traces", "a URL with a path is taken as it is");
}

#[test]
fn sitecar_sections_are_checked() {
    let text = r#"{"sitecontainers": [{"name": "m", "properties": {"image": "m", "isMain": true, "targetPort": "3000", "startUpCommand": "m"}}],
        "proxy": {"listen": ["localhost"], "accessLog": "xml", "holdSeconds": -1, "timeouts": {"conectSeconds": 1}},
        "health": {"periodSeconds": 0, "containers": {"mian": {"path": "healthz"}}},
        "cache": {"maxBytes": 2048, "maxObjectBytes": 4096},
        "offload": [{"prefix": "static", "dir": ""}],
        "admin": {"listen": "0.0.0.0:9901"},
        "local": {"runtime": "vm", "containers": {"ghost": {"command": "x"}}},
        "connectionStrings": {"Db": {"value": "x", "type": "Oracle"}},
        "appSettings": {"WEBSITES_CONTAINER_START_TIME_LIMIT": "5", "WEBSITE_WARMUP_STATUSES": "200,abc"},
        "extras": true}"#;
    expect(
        text,
        &[
            ("$.connectionStrings.Db.type", "unknown connection string type \"Oracle\""),
            ("$.proxy.listen[0]", "\"localhost\" is not a listen address"),
            ("$.proxy.holdSeconds", "-1 is out of range 0-3600 seconds"),
            ("$.proxy.timeouts.conectSeconds", "unknown field \"conectSeconds\""),
            ("$.proxy.accessLog", "unknown access log format \"xml\""),
            ("$.health.periodSeconds", "periodSeconds must be a number of seconds above 0, found 0"),
            ("$.health.containers.mian.path", "probe path \"healthz\" must start with /"),
            ("$.cache.maxObjectBytes", "maxObjectBytes is larger than maxBytes"),
            ("$.offload[0].prefix", "prefix \"static\" must start with /"),
            ("$.offload[0].dir", "missing dir"),
            ("$.admin.listen", "admin API on 0.0.0.0:9901 without a token"),
            ("$.local.runtime", "unknown runtime \"vm\""),
            ("$.extras", "unknown field \"extras\""),
            ("$.health.containers.mian", "no container is named \"mian\""),
            ("$.local.containers.ghost", "no container is named \"ghost\""),
            ("$.appSettings.WEBSITE_WARMUP_STATUSES", "\"abc\" is not an HTTP status code"),
            ("$.appSettings.WEBSITES_CONTAINER_START_TIME_LIMIT", "\"5\" is not a number of seconds from 10 to 1800"),
        ],
    );
}

#[test]
fn keys_that_differ_only_in_case_are_duplicates() {
    let text =
        r#"[{"name": "m", "properties": {"image": "a", "Image": "b", "isMain": true, "targetPort": "3000", "startUpCommand": "m"}}]"#;
    expect(text, &[("$[0].properties.Image", "duplicate key: \"Image\" and \"image\" name the same field")]);
}

#[test]
fn arm_template_without_sitecontainers_or_with_unresolvable_expressions() {
    expect(
        r#"{"resources": [{"type": "Microsoft.Web/sites", "name": "s"}]}"#,
        &[("$.resources", "no Microsoft.Web/sites/sitecontainers resources in this template")],
    );
    let text = r#"{"resources": [{"type": "Microsoft.Web/sites/sitecontainers", "name": "s/m",
        "properties": {"image": "[reference('acr').loginServer]", "isMain": true, "targetPort": "80", "startUpCommand": "x"}}]}"#;
    expect(text, &[("$.resources[0].properties.image", "reference('acr') cannot be known without deploying")]);
}

#[test]
fn empty_container_list() {
    expect("[]", &[("$", "no containers")]);
    expect(r#"{"sitecontainers": []}"#, &[("$.sitecontainers", "no containers")]);
}

#[test]
fn a_literal_where_an_app_setting_name_belongs_says_so_with_the_fix() {
    let text = r#"{"sitecontainers": [{"name": "web", "properties": {"image": "w", "isMain": true, "targetPort": "80", "startUpCommand": "x",
        "environmentVariables": [{"name": "OLLAMA_URL", "value": "http://localhost:11434"}]}}]}"#;
    let err = load_str(text, &LoadOptions::default()).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.path, "$.sitecontainers[0].properties.environmentVariables[0].value");
    assert_eq!(
        p.message,
        "\"http://localhost:11434\" looks like a value, but on App Service an environment variable's value is the NAME of an app setting"
    );
    assert_eq!(
        p.hint.as_deref(),
        Some(
            r#"put the value in an app setting and name it here: "appSettings": {"OLLAMA_URL": "http://localhost:11434"} and {"name": "OLLAMA_URL", "value": "OLLAMA_URL"}"#
        )
    );
    assert!(!p.hint.as_deref().unwrap_or("").contains("APPSETTING_http"), "{p:?}");
}
