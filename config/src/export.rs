//! A loaded spec written for other platforms: the file `az webapp sitecontainers create
//! --sitecontainers-spec-file` takes, an ARM template of `Microsoft.Web/sites/sitecontainers`
//! resources, and Kubernetes manifests (a Deployment with native sidecars, a ConfigMap of app
//! settings, a Secret of connection strings, a Service for 80 and 8080).

use serde_json::{json, Map, Value};

use crate::keys;
use crate::model::{Auth, Container, ProbeKind, Spec};

/// One container's `properties`, as Azure reads them.
fn properties(c: &Container) -> Value {
    let mut p = Map::new();
    p.insert(keys::IMAGE.into(), json!(c.image));
    p.insert(keys::IS_MAIN.into(), json!(c.is_main));
    if let Some(port) = c.target_port {
        // A string, as Azure's schema has it.
        p.insert(keys::TARGET_PORT.into(), json!(port.to_string()));
    }
    if let Some(cmd) = &c.startup_command {
        p.insert(keys::STARTUP_COMMAND.into(), json!(cmd));
    }
    match &c.auth {
        Auth::Anonymous => {
            p.insert(keys::AUTH_TYPE.into(), json!("Anonymous"));
        }
        Auth::UserCredentials { user_name, password_secret } => {
            p.insert(keys::AUTH_TYPE.into(), json!("UserCredentials"));
            p.insert(keys::USER_NAME.into(), json!(user_name));
            p.insert(keys::PASSWORD_SECRET.into(), json!(password_secret.expose()));
        }
        Auth::SystemIdentity => {
            p.insert(keys::AUTH_TYPE.into(), json!("SystemIdentity"));
        }
        Auth::UserAssigned { client_id } => {
            p.insert(keys::AUTH_TYPE.into(), json!("UserAssigned"));
            p.insert(keys::USER_MANAGED_IDENTITY_CLIENT_ID.into(), json!(client_id));
        }
    }
    p.insert(keys::INHERIT_APP_SETTINGS.into(), json!(c.inherit_app_settings));
    if !c.volume_mounts.is_empty() {
        let mounts: Vec<Value> = c
            .volume_mounts
            .iter()
            .map(|m| {
                let mut v =
                    json!({"volumeSubPath": m.volume_sub_path, "containerMountPath": m.container_mount_path, "readOnly": m.read_only});
                if let (Some(d), Some(o)) = (&m.data, v.as_object_mut()) {
                    o.insert("data".into(), json!(d));
                }
                v
            })
            .collect();
        p.insert(keys::VOLUME_MOUNTS.into(), Value::Array(mounts));
    }
    if !c.environment_variables.is_empty() {
        let vars: Vec<Value> = c.environment_variables.iter().map(|e| json!({"name": e.name, "value": e.app_setting})).collect();
        p.insert(keys::ENVIRONMENT_VARIABLES.into(), Value::Array(vars));
    }
    Value::Object(p)
}

/// The `--sitecontainers-spec-file` of `az webapp sitecontainers create`: an array of
/// `{name, properties}` in spec order. App settings live on the site, not in this file.
pub fn azure_cli(spec: &Spec) -> Value {
    Value::Array(spec.containers.iter().map(|c| json!({"name": c.name, "properties": properties(c)})).collect())
}

/// What `az webapp config appsettings set --settings @FILE` takes: the app settings as
/// `[{name, value, slotSetting}]` (the shape `az webapp config appsettings list` prints).
pub fn app_settings_file(spec: &Spec) -> Value {
    Value::Array(spec.app_settings.iter().map(|(k, v)| json!({"name": k, "value": v, "slotSetting": false})).collect())
}

/// What `az webapp config connection-string set --settings @FILE` takes.
pub fn connection_strings_file(spec: &Spec) -> Value {
    Value::Array(
        spec.connection_strings
            .iter()
            .map(|(k, cs)| json!({"name": k, "value": cs.value.expose(), "type": cs.kind.name(), "slotSetting": false}))
            .collect(),
    )
}

/// The three files of a deployment with the Azure CLI, by the names they are written as.
pub fn azure_files(spec: &Spec) -> [(&'static str, Value); 3] {
    [
        ("sitecontainers.json", azure_cli(spec)),
        ("appsettings.json", app_settings_file(spec)),
        ("connectionstrings.json", connection_strings_file(spec)),
    ]
}

/// Writes [`azure_files`] into `dir` (pretty JSON) and returns the `az` commands that deploy
/// them to the site `name`; the error names the file that could not be written.
pub fn write_azure_files(spec: &Spec, dir: &std::path::Path, name: &str) -> Result<String, String> {
    for (file, v) in azure_files(spec) {
        let path = dir.join(file);
        let text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let mut done = format!(
        "wrote {0}/sitecontainers.json, {0}/appsettings.json and {0}/connectionstrings.json:\n  az webapp config appsettings set -g RG -n {name} --settings @{0}/appsettings.json\n  az webapp config connection-string set -g RG -n {name} --settings @{0}/connectionstrings.json\n  az webapp sitecontainers create -g RG -n {name} --sitecontainers-spec-file {0}/sitecontainers.json",
        dir.display()
    );
    if spec.proxy.http2_to_main != crate::model::Http2ToMain::Off {
        let flag = spec.proxy.http2_to_main.flag();
        done.push_str(&format!("\n  az webapp config set -g RG -n {name} --generic-configurations '{{\"http20ProxyFlag\": {flag}}}'"));
    }
    Ok(done)
}

/// What exported objects and the site are named: `given`, else the spec's site name when it
/// has one of its own, else the spec file's stem.
pub fn app_name(spec: &Spec, given: Option<&str>, file: &std::path::Path) -> String {
    match given {
        Some(n) => n.to_owned(),
        None if spec.local.site_name != "sitecar" => spec.local.site_name.clone(),
        None => file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sitecar".into()),
    }
}

/// An ARM template: one `Microsoft.Web/sites/sitecontainers` resource per container on the site
/// named by the `siteName` parameter, and the app settings and connection strings as the site's
/// `config/appsettings` and `config/connectionstrings` resources (names as `bicep build` writes
/// them), so the template deploys, and validates, as it is.
pub fn arm_template(spec: &Spec, site: &str) -> Value {
    let child = |name: &str| format!("[format('{{0}}/{{1}}', parameters('siteName'), '{name}')]");
    let mut resources: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({
                "type": "Microsoft.Web/sites/sitecontainers",
                "apiVersion": "2024-04-01",
                "name": child(&c.name),
                "properties": properties(c),
            })
        })
        .collect();
    if !spec.app_settings.is_empty() {
        // `[` starts an expression in a template: a literal one is written `[[`.
        let escape = |v: &str| if v.starts_with('[') { format!("[{v}") } else { v.to_owned() };
        let settings: Map<String, Value> = spec.app_settings.iter().map(|(k, v)| (k.clone(), json!(escape(v)))).collect();
        resources.push(
            json!({"type": "Microsoft.Web/sites/config", "apiVersion": "2024-04-01", "name": child("appsettings"), "properties": settings}),
        );
    }
    if spec.proxy.http2_to_main != crate::model::Http2ToMain::Off {
        // HTTP/2 to main (gRPC) is a site setting: `siteConfig` as a `config/web` resource.
        let web = json!({"http20ProxyFlag": spec.proxy.http2_to_main.flag()});
        resources.push(json!({"type": "Microsoft.Web/sites/config", "apiVersion": "2024-04-01", "name": child("web"), "properties": web}));
    }
    if !spec.connection_strings.is_empty() {
        let strings: Map<String, Value> = spec
            .connection_strings
            .iter()
            .map(|(k, cs)| (k.clone(), json!({"value": format!("[parameters('{}')]", connection_parameter(k)), "type": cs.kind.name()})))
            .collect();
        resources.push(json!({"type": "Microsoft.Web/sites/config", "apiVersion": "2024-04-01", "name": child("connectionstrings"), "properties": strings}));
    }
    let mut parameters = Map::new();
    parameters.insert("siteName".into(), json!({"type": "string", "defaultValue": site}));
    for (k, cs) in &spec.connection_strings {
        // A secure parameter, its value the default: override it at deployment.
        parameters.insert(connection_parameter(k), json!({"type": "securestring", "defaultValue": cs.value.expose()}));
    }
    json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": parameters,
        "resources": resources,
    })
}

fn connection_parameter(name: &str) -> String {
    let clean: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("connectionString{clean}")
}

/// What the spec says that an Azure export cannot carry, one line each.
pub fn not_carried_to_azure(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.containers.iter().any(|c| c.local.is_some()) {
        out.push("local.containers / local.images: how containers run on this machine is sitecar's own".into());
    }
    if spec.cache.enabled {
        out.push("cache: the front door's HTTP cache is sitecar's own (put a CDN or Front Door in front of the site)".into());
    }
    if !spec.offload.is_empty() {
        out.push("offload: static files served at sitecar's edge (serve them from main or a storage account)".into());
    }
    if spec.proxy.listen_explicit {
        out.push("proxy.listen: App Service listens on 80 and 8080 (and 443) itself".into());
    }
    if spec.tracing.otlp.is_some() {
        out.push("tracing.otlp: sitecar's own spans (run an OpenTelemetry sidecar)".into());
    }
    if !spec.health.containers.is_empty() || spec.health.defaults.kind != ProbeKind::Tcp {
        out.push("health: probes of sidecars are sitecar's own (App Service probes main through WEBSITE_HEALTHCHECK_PATH)".into());
    }
    out
}

/// A DNS-1123 label from a name: lower case, letters, digits and dashes.
fn label(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let s = s.trim_matches('-');
    if s.is_empty() {
        "sitecar".into()
    } else {
        s.chars().take(63).collect()
    }
}

/// A port name from a container's: lower case letters, digits and single dashes, at most 15
/// characters, with a letter; the port number keeps two alike apart.
fn port_name(container: &str, port: u16) -> String {
    let mut base: String = label(container).split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    let suffix = format!("-{port}");
    base.truncate(15 - suffix.len());
    let base = base.trim_end_matches('-');
    if base.chars().any(|c| c.is_ascii_alphabetic()) {
        format!("{base}{suffix}")
    } else {
        format!("p{suffix}")
    }
}

/// Kubernetes manifests for the spec, applied with `kubectl apply -f`; every object is named
/// after the app (`name`), so two apps share a namespace: a ConfigMap of the app
/// settings (each also as `APPSETTING_<name>`, as App Service injects them), a Secret of the
/// connection strings under their typed prefixes, a Deployment whose sidecars are native sidecars
/// (init containers with `restartPolicy: Always`, started in spec order, each with a startup probe
/// on its port so the next starts once it listens) and whose app container is main (a startup
/// probe from the warmup path and start time limit, readiness from the health settings, liveness
/// when `WEBSITE_HEALTHCHECK_PATH` is set), and a Service for ports 80 and 8080.
pub fn kubernetes(spec: &Spec, name: &str) -> Vec<Value> {
    let site = label(name);
    let settings_name = format!("{site}-appsettings");
    let strings_name = format!("{site}-connectionstrings");
    let mut settings = Map::new();
    for (k, v) in &spec.app_settings {
        settings.insert(k.clone(), json!(v));
        settings.insert(format!("APPSETTING_{k}"), json!(v));
    }
    let strings: Map<String, Value> =
        spec.connection_strings.iter().map(|(k, cs)| (format!("{}{k}", cs.kind.env_prefix()), json!(cs.value.expose()))).collect();
    let main = spec.main();
    let main_port = main.target_port.unwrap_or(80);

    // Every volumeSubPath is a sub-directory of one shared emptyDir: the same subpath shares
    // files, and a nested one sees its parent's subtree, as on App Service.
    let shared = spec.containers.iter().any(|c| !c.volume_mounts.is_empty());
    let container = |c: &Container, sidecar: bool| -> Value {
        let mut v = Map::new();
        v.insert("name".into(), json!(label(&c.name)));
        v.insert(keys::IMAGE.into(), json!(c.image));
        if let Some(args) = c.startup_command.as_deref().and_then(|cmd| shell_words::split(cmd).ok()) {
            // startUpCommand replaces the image's command, not its entrypoint.
            v.insert("args".into(), json!(args));
        }
        if let Some(port) = c.target_port {
            // Port names are unique within a pod (at most 15 characters, IANA_SVC_NAME).
            v.insert("ports".into(), json!([{"containerPort": port, "name": port_name(&c.name, port)}]));
        }
        let mut env = vec![json!({"name": "WEBSITE_SITE_NAME", "value": spec.local.site_name})];
        if let Some(port) = c.target_port {
            env.push(json!({"name": "PORT", "value": port.to_string()}));
            if c.is_main {
                env.push(json!({"name": "WEBSITES_PORT", "value": port.to_string()}));
            }
        }
        for e in &c.environment_variables {
            let source = if spec.connection_strings.contains_key(&e.app_setting) {
                // A connection string named by an environment variable: from the Secret.
                let key = spec.connection_strings.get(&e.app_setting).map(|cs| format!("{}{}", cs.kind.env_prefix(), e.app_setting));
                json!({"secretKeyRef": {"name": strings_name, "key": key, "optional": true}})
            } else {
                json!({"configMapKeyRef": {"name": settings_name, "key": e.app_setting, "optional": true}})
            };
            env.push(json!({"name": e.name, "valueFrom": source}));
        }
        v.insert("env".into(), Value::Array(env));
        if c.inherit_app_settings {
            v.insert("envFrom".into(), json!([{"configMapRef": {"name": settings_name}}, {"secretRef": {"name": strings_name}}]));
        }
        if !c.volume_mounts.is_empty() {
            let mounts: Vec<Value> = c
                .volume_mounts
                .iter()
                .map(|m| {
                    json!({"name": "shared", "mountPath": m.container_mount_path, "subPath": m.volume_sub_path.trim_start_matches('/'), "readOnly": m.read_only})
                })
                .collect();
            v.insert(keys::VOLUME_MOUNTS.into(), Value::Array(mounts));
        }
        let probes = spec.health.for_container(&c.name);
        let secs = |d: std::time::Duration| (d.as_secs().max(1)) as u32;
        if sidecar {
            v.insert("restartPolicy".into(), json!("Always"));
            if let Some(port) = c.target_port {
                v.insert(
                    "startupProbe".into(),
                    json!({"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": secs(spec.platform.start_time_limit)}),
                );
            }
        } else {
            // App Service counts any HTTP answer on the warmup path (404 too) as started; an
            // httpGet probe accepts 200-399 only and would kill such an app. A TCP probe never
            // refuses what App Service accepts; with WEBSITE_WARMUP_STATUSES all in 200-399,
            // httpGet means exactly what it means there.
            let period = 5u32;
            let statuses = &spec.platform.warmup_statuses;
            let check = if !statuses.is_empty() && statuses.iter().all(|s| (200..400).contains(s)) {
                json!({"httpGet": {"path": spec.platform.warmup_path, "port": main_port}})
            } else {
                json!({"tcpSocket": {"port": main_port}})
            };
            let mut probe = check.as_object().cloned().unwrap_or_default();
            probe.insert("periodSeconds".into(), json!(period));
            probe.insert("failureThreshold".into(), json!((secs(spec.platform.start_time_limit) / period).max(1)));
            v.insert("startupProbe".into(), Value::Object(probe));
        }
        if let Some(port) = c.target_port {
            let check = match &probes.kind {
                ProbeKind::Http { path } => json!({"httpGet": {"path": path, "port": port}}),
                ProbeKind::Tcp => json!({"tcpSocket": {"port": port}}),
            };
            let mut readiness = check.as_object().cloned().unwrap_or_default();
            readiness.insert("initialDelaySeconds".into(), json!(probes.initial_delay.as_secs()));
            readiness.insert("periodSeconds".into(), json!(secs(probes.period)));
            readiness.insert("timeoutSeconds".into(), json!(secs(probes.timeout)));
            readiness.insert("failureThreshold".into(), json!(probes.failure_threshold.max(1)));
            readiness.insert("successThreshold".into(), json!(probes.success_threshold.max(1)));
            if !sidecar {
                v.insert("readinessProbe".into(), Value::Object(readiness));
            }
            if let (false, Some(path)) = (sidecar, &spec.platform.healthcheck_path) {
                v.insert(
                    "livenessProbe".into(),
                    json!({"httpGet": {"path": path, "port": port}, "periodSeconds": secs(probes.period), "timeoutSeconds": secs(probes.timeout), "failureThreshold": probes.failure_threshold.max(1)}),
                );
            }
        }
        Value::Object(v)
    };
    let sidecars: Vec<Value> = spec.containers.iter().filter(|c| !c.is_main).map(|c| container(c, true)).collect();
    let mut pod = json!({
        "initContainers": sidecars,
        "containers": [container(main, false)],
        "terminationGracePeriodSeconds": spec.local.grace_period.as_secs(),
    });
    if shared {
        if let Some(o) = pod.as_object_mut() {
            o.insert("volumes".into(), json!([{"name": "shared", "emptyDir": {}}]));
        }
    }
    let labels = json!({"app.kubernetes.io/name": site, "app.kubernetes.io/managed-by": "sitecar"});
    vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": settings_name, "labels": labels}, "data": settings}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": strings_name, "labels": labels}, "type": "Opaque", "stringData": strings}),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": site, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": site}},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": site, "labels": labels},
            "spec": {
                "selector": {"app.kubernetes.io/name": site},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": main_port},
                    {"name": "http-alt", "port": 8080, "targetPort": main_port},
                ],
            },
        }),
    ]
}

/// JSON values as a YAML stream (`---` between documents), the form `kubectl apply -f` users read.
pub fn to_yaml(docs: &[Value]) -> String {
    fn yaml(v: &Value) -> yaml_rust2::Yaml {
        use yaml_rust2::Yaml;
        match v {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => Yaml::Real(n.to_string()),
            },
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(a) => Yaml::Array(a.iter().map(yaml).collect()),
            Value::Object(m) => Yaml::Hash(m.iter().map(|(k, v)| (Yaml::String(k.clone()), yaml(v))).collect()),
        }
    }
    let mut out = String::new();
    for d in docs {
        let mut text = String::new();
        if yaml_rust2::YamlEmitter::new(&mut text).dump(&yaml(d)).is_ok() {
            out.push_str(&text);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load_str, LoadOptions};

    const DOC: &str = r#"{"sitecontainers": [
        {"name": "redis", "properties": {"image": "redis:7-alpine", "isMain": false, "targetPort": "6379"}},
        {"name": "otel", "properties": {"image": "otel/collector", "isMain": false, "targetPort": "4318",
           "inheritAppSettingsAndConnectionStrings": false,
           "volumeMounts": [{"volumeSubPath": "/shared/logs", "containerMountPath": "/logs", "readOnly": true}],
           "environmentVariables": [{"name": "AI", "value": "AI_KEY"}]}},
        {"name": "Web", "properties": {"image": "example/web:1", "isMain": true, "targetPort": "8080",
           "startUpCommand": "python3 app.py --port 8080", "authType": "UserAssigned", "userManagedIdentityClientId": "abc",
           "volumeMounts": [{"volumeSubPath": "/shared", "containerMountPath": "/data", "readOnly": false}]}}
      ],
      "appSettings": {"AI_KEY": "k", "WEBSITE_HEALTHCHECK_PATH": "/health"},
      "connectionStrings": {"Db": {"value": "Server=db", "type": "PostgreSQL"}},
      "local": {"siteName": "Shop"}}"#;

    #[test]
    fn azure_cli_file_keeps_every_property() {
        let spec = load_str(DOC, &LoadOptions::default()).unwrap();
        let v = azure_cli(&spec);
        assert_eq!(v[2]["name"], "Web");
        assert_eq!(v[2]["properties"]["targetPort"], "8080");
        assert_eq!(v[2]["properties"]["authType"], "UserAssigned");
        assert_eq!(v[2]["properties"]["userManagedIdentityClientId"], "abc");
        assert_eq!(v[1]["properties"]["inheritAppSettingsAndConnectionStrings"], false);
        assert_eq!(v[1]["properties"]["environmentVariables"][0]["value"], "AI_KEY");
    }

    #[test]
    fn kubernetes_sidecars_are_native_and_ordered() {
        let spec = load_str(DOC, &LoadOptions::default()).unwrap();
        let docs = kubernetes(&spec, "shop");
        let pod = &docs[2]["spec"]["template"]["spec"];
        let init: Vec<&str> = pod["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(init, ["redis", "otel"]);
        assert!(pod["initContainers"].as_array().unwrap().iter().all(|c| c["restartPolicy"] == "Always"));
        let main = &pod["containers"][0];
        assert_eq!(main["name"], "web");
        assert_eq!(main["args"], json!(["python3", "app.py", "--port", "8080"]));
        assert_eq!(main["startupProbe"]["tcpSocket"]["port"], 8080, "any answer counts on App Service: not an httpGet");
        assert_eq!(main["ports"][0]["name"], "web-8080");
        assert_eq!(pod["initContainers"][0]["ports"][0]["name"], "redis-6379");
        assert_eq!(main["livenessProbe"]["httpGet"]["path"], "/health");
        assert!(main["envFrom"].is_array());
        assert!(pod["initContainers"][1].get("envFrom").is_none(), "inherit false: no app settings");
        let ai = pod["initContainers"][1]["env"].as_array().unwrap().iter().find(|e| e["name"] == "AI").unwrap();
        assert_eq!(ai["valueFrom"]["configMapKeyRef"]["key"], "AI_KEY");
        assert_eq!(pod["initContainers"][1]["volumeMounts"][0]["subPath"], "shared/logs");
        assert_eq!(docs[0]["data"]["APPSETTING_AI_KEY"], "k");
        assert_eq!(docs[1]["stringData"]["POSTGRESQLCONNSTR_Db"], "Server=db");
        assert_eq!(docs[3]["spec"]["ports"][1]["targetPort"], 8080);
        assert_eq!(docs[2]["metadata"]["name"], "shop");
    }

    #[test]
    fn http2_to_main_is_read_from_both_inputs_checked_and_exported() {
        let doc = |flag: &str, port: &str| {
            format!(
                r#"{{"sitecontainers": [{{"name": "web", "properties": {{"image": "w", "isMain": true, "targetPort": "8080"}}}}],
                   "appSettings": {{"HTTP20_ONLY_PORT": "{port}"}}, "proxy": {{"http20ProxyFlag": {flag}}}}}"#
            )
        };
        let spec = load_str(&doc("2", "8585"), &LoadOptions::default()).unwrap();
        assert_eq!((spec.proxy.http2_to_main, spec.proxy.http2_port), (crate::Http2ToMain::GrpcOnly, Some(8585)));
        let Err(crate::LoadError::Invalid { problems }) = load_str(&doc("3", "grpc"), &LoadOptions::default()) else { panic!("accepted") };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"$.proxy.http20ProxyFlag") && paths.contains(&"$.appSettings.HTTP20_ONLY_PORT"), "{problems:?}");
        // An ARM template's siteConfig, as Bicep writes it, round-trips through the export.
        let template = arm_template(&spec, "shop");
        let web = template["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Microsoft.Web/sites/config" && r["name"].as_str().unwrap().contains("'web')"))
            .unwrap();
        assert_eq!(web["properties"]["http20ProxyFlag"], 2);
        let again = load_str(&template.to_string(), &LoadOptions::default()).unwrap();
        assert_eq!((again.proxy.http2_to_main, again.proxy.http2_port), (crate::Http2ToMain::GrpcOnly, Some(8585)));
        let bicep = r#"{"resources": [{"type": "Microsoft.Web/sites", "apiVersion": "2024-04-01", "name": "shop",
            "properties": {"siteConfig": {"linuxFxVersion": "sitecontainers", "http20ProxyFlag": "[int('1')]"}}},
          {"type": "Microsoft.Web/sites/sitecontainers", "apiVersion": "2024-04-01", "name": "[format('{0}/{1}', 'shop', 'main')]",
            "properties": {"image": "w", "isMain": true, "targetPort": "8080"}}]}"#;
        assert_eq!(load_str(bicep, &LoadOptions::default()).unwrap().proxy.http2_to_main, crate::Http2ToMain::All);
    }
}
