//! The environment a container receives, built the way App Service builds it.
//!
//! Order, later entries winning: basics passed through from the host (`PATH`, `LANG`, `TZ`, ...),
//! platform variables (`WEBSITE_SITE_NAME`, `HOME`, `PORT`, ...), app settings raw and as
//! `APPSETTING_<name>` plus connection strings with their typed prefixes (only when the container
//! inherits them), then the container's own `environmentVariables` resolved through app settings.
//! Nothing else of the host's environment is copied: a secret in sitecar's environment reaches a
//! container only as an app setting that container is allowed to see.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::{ConnectionString, ConnectionType, Container, Secret, Spec};

/// Host variables every process needs and that carry no settings.
const BASICS: [&str; 9] = ["PATH", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "USER", "SSL_CERT_FILE", "SSL_CERT_DIR"];

/// What the environment depends on besides the spec.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Basics from the host's environment (see [`HostFacts::basics_from`]).
    pub basics: Vec<(String, String)>,
    /// `HOME`: the shared home directory as this runtime sees it.
    pub home: PathBuf,
    /// `WEBSITE_INSTANCE_ID`.
    pub instance_id: String,
}

impl HostFacts {
    /// Keeps only the basics (and `LC_*`) of a host environment.
    pub fn basics_from(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
        vars.into_iter().filter(|(k, _)| BASICS.contains(&k.as_str()) || k.starts_with("LC_")).collect()
    }
}

/// App settings and connection strings that the platform put in sitecar's own environment:
/// `APPSETTING_<name>` and the typed connection-string prefixes.
pub fn settings_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> (BTreeMap<String, String>, BTreeMap<String, ConnectionString>) {
    let mut settings = BTreeMap::new();
    let mut strings = BTreeMap::new();
    for (k, v) in vars {
        if let Some(name) = k.strip_prefix("APPSETTING_").filter(|n| !n.is_empty()) {
            settings.insert(name.to_owned(), v);
            continue;
        }
        for kind in ConnectionType::ALL {
            if let Some(name) = k.strip_prefix(kind.env_prefix()).filter(|n| !n.is_empty()) {
                strings.insert(name.to_owned(), ConnectionString { value: Secret::new(v.clone()), kind });
                break;
            }
        }
    }
    (settings, strings)
}

/// The full environment of `container`, which listens on `port` (its targetPort, or main's
/// internal port when the front door owns the targetPort).
pub fn container_env(spec: &Spec, container: &Container, port: Option<u16>, host: &HostFacts) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = host.basics.iter().cloned().collect();

    env.insert("WEBSITE_SITE_NAME".into(), spec.local.site_name.clone());
    env.insert("WEBSITE_HOSTNAME".into(), spec.local.hostname.clone());
    env.insert("WEBSITE_INSTANCE_ID".into(), host.instance_id.clone());
    env.insert("WEBSITE_ROLE_INSTANCE_ID".into(), "0".into());
    env.insert("HOME".into(), host.home.display().to_string());
    if let Some(port) = port {
        env.insert("PORT".into(), port.to_string());
        if container.is_main {
            env.insert("WEBSITES_PORT".into(), port.to_string());
        }
    }

    if container.inherit_app_settings {
        for (name, value) in &spec.app_settings {
            env.insert(name.clone(), value.clone());
            env.insert(format!("APPSETTING_{name}"), value.clone());
        }
        for (name, cs) in &spec.connection_strings {
            env.insert(format!("{}{name}", cs.kind.env_prefix()), cs.value.expose().to_owned());
        }
    }

    for reference in &container.environment_variables {
        // A missing setting resolves to "", as on the platform; validation normally prevents it.
        let value = spec.app_settings.get(&reference.app_setting).cloned().unwrap_or_default();
        env.insert(reference.name.clone(), value);
    }
    // Main's port is the platform's to give: neither an app setting nor an entry moves it.
    if let (Some(port), true) = (port, container.is_main) {
        env.insert("PORT".into(), port.to_string());
        env.insert("WEBSITES_PORT".into(), port.to_string());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load_str, LoadOptions};

    const DOC: &str = r#"{
      "sitecontainers": [
        {"name": "main", "properties": {"image": "web", "isMain": true, "targetPort": "8000",
          "startUpCommand": "web",
          "environmentVariables": [{"name": "DB_URL", "value": "DATABASE_URL"}]}},
        {"name": "otel", "properties": {"image": "otel", "isMain": false, "targetPort": 4318,
          "startUpCommand": "otel", "inheritAppSettingsAndConnectionStrings": false,
          "environmentVariables": [{"name": "AI_CONN", "value": "AI_KEY"}]}}
      ],
      "appSettings": {"DATABASE_URL": "postgres://db", "AI_KEY": "ai-secret", "API_TOKEN": "tok"},
      "connectionStrings": {"Main": {"value": "Server=x;Password=p", "type": "SQLAzure"},
                            "Cache": {"value": "redis://c", "type": "RedisCache"}},
      "local": {"siteName": "shop", "hostname": "shop.local"}
    }"#;

    fn spec() -> Spec {
        load_str(DOC, &LoadOptions::default()).unwrap()
    }

    fn host() -> HostFacts {
        HostFacts { basics: vec![("PATH".into(), "/usr/bin".into())], home: "/srv/home".into(), instance_id: "i-1".into() }
    }

    #[test]
    fn inheriting_container_gets_settings_raw_and_prefixed() {
        let s = spec();
        let env = container_env(&s, s.main(), Some(8000), &host());
        assert_eq!(env["DATABASE_URL"], "postgres://db");
        assert_eq!(env["APPSETTING_DATABASE_URL"], "postgres://db");
        assert_eq!(env["API_TOKEN"], "tok");
        assert_eq!(env["APPSETTING_AI_KEY"], "ai-secret");
    }

    #[test]
    fn connection_strings_get_typed_prefixes() {
        let s = spec();
        let env = container_env(&s, s.main(), Some(8000), &host());
        assert_eq!(env["SQLAZURECONNSTR_Main"], "Server=x;Password=p");
        assert_eq!(env["REDISCACHECONNSTR_Cache"], "redis://c");
        assert!(!env.contains_key("CUSTOMCONNSTR_Main"));
    }

    #[test]
    fn own_variables_resolve_through_app_settings() {
        let s = spec();
        let env = container_env(&s, s.main(), Some(8000), &host());
        assert_eq!(env["DB_URL"], "postgres://db");
    }

    #[test]
    fn opted_out_sidecar_sees_only_what_it_names() {
        let s = spec();
        let otel = s.container("otel").unwrap();
        let env = container_env(&s, otel, Some(4318), &host());
        assert_eq!(env["AI_CONN"], "ai-secret");
        for leaked in [
            "DATABASE_URL",
            "APPSETTING_DATABASE_URL",
            "API_TOKEN",
            "AI_KEY",
            "APPSETTING_AI_KEY",
            "SQLAZURECONNSTR_Main",
            "REDISCACHECONNSTR_Cache",
        ] {
            assert!(!env.contains_key(leaked), "{leaked} leaked to an opted-out sidecar");
        }
        assert!(!env.values().any(|v| v == "tok" || v.contains("Password")), "a secret value leaked: {env:?}");
    }

    #[test]
    fn platform_variables_and_basics() {
        let s = spec();
        let env = container_env(&s, s.main(), Some(8000), &host());
        assert_eq!(env["WEBSITE_SITE_NAME"], "shop");
        assert_eq!(env["WEBSITE_HOSTNAME"], "shop.local");
        assert_eq!(env["HOME"], "/srv/home");
        assert_eq!(env["PORT"], "8000");
        assert_eq!(env["WEBSITES_PORT"], "8000");
        assert_eq!(env["PATH"], "/usr/bin");
        let otel = container_env(&s, s.container("otel").unwrap(), Some(4318), &host());
        assert_eq!(otel["PORT"], "4318");
        assert!(!otel.contains_key("WEBSITES_PORT"), "WEBSITES_PORT is main's alone");
    }

    #[test]
    fn missing_setting_resolves_to_empty() {
        // Settings handed in from outside may disappear between validation and a later run;
        // the platform then gives "".
        let mut s = spec();
        s.app_settings.remove("DATABASE_URL");
        let env = container_env(&s, s.main(), None, &host());
        assert_eq!(env["DB_URL"], "");
        assert!(!env.contains_key("PORT"));
    }

    #[test]
    fn host_environment_is_filtered_not_copied() {
        let vars = vec![
            ("PATH".to_string(), "/bin".to_string()),
            ("LC_ALL".into(), "C".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "x".into()),
            ("HOME".into(), "/root".into()),
        ];
        let basics = HostFacts::basics_from(vars);
        let keys: Vec<&str> = basics.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["PATH", "LC_ALL"]);
    }

    #[test]
    fn platform_settings_come_from_prefixed_environment() {
        let vars = vec![
            ("APPSETTING_FEATURE".to_string(), "on".to_string()),
            ("SQLCONNSTR_Db".into(), "s1".into()),
            ("SQLAZURECONNSTR_Az".into(), "s2".into()),
            ("POSTGRESQLCONNSTR_Pg".into(), "s3".into()),
            ("CUSTOMCONNSTR_C".into(), "s4".into()),
            ("APPSETTING_".into(), "ignored".into()),
            ("UNRELATED".into(), "x".into()),
        ];
        let (settings, strings) = settings_from_env(vars);
        assert_eq!(settings.len(), 1);
        assert_eq!(settings["FEATURE"], "on");
        assert_eq!(strings["Db"].kind, ConnectionType::SQLServer);
        assert_eq!(strings["Az"].kind, ConnectionType::SQLAzure);
        assert_eq!(strings["Pg"].kind, ConnectionType::PostgreSQL);
        assert_eq!(strings["C"].kind, ConnectionType::Custom);
        assert_eq!(strings.len(), 4);
    }

    #[test]
    fn mains_port_is_the_platforms_whatever_the_spec_says() {
        let text = r#"{"sitecontainers": [
            {"name": "web", "properties": {"image": "w", "isMain": true, "targetPort": "8080",
              "environmentVariables": [{"name": "PORT", "value": "APP_PORT"}]}}],
          "appSettings": {"APP_PORT": "3000", "WEBSITES_PORT": "3000", "PORT": "1"}}"#;
        let spec = load_str(text, &LoadOptions::default()).unwrap();
        let host = HostFacts { basics: Vec::new(), home: "/home".into(), instance_id: "i".into() };
        let env = container_env(&spec, spec.main(), Some(40123), &host);
        assert_eq!(env["PORT"], "40123");
        assert_eq!(env["WEBSITES_PORT"], "40123");
        assert_eq!(spec.warnings.iter().filter(|w| w.message.contains("overridden")).count(), 3, "{:?}", spec.warnings);
    }
}
