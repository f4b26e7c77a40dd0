//! `sitecar import compose`: a docker-compose file as a sitecar document. What maps: `image`,
//! `ports` (the service publishing 80 or 8080 is main; its container port is `targetPort`),
//! `command`, `environment` (each variable an app setting the container names, as App Service
//! wants), `volumes` (each a `volumeSubPath`), `healthcheck` (an HTTP URL in its test becomes the
//! probe path; interval, timeout, retries the probe settings). What App Service ignores is warned
//! about line by line; what cannot map is refused, naming the service and the field.

use serde_json::{json, Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The document and the warnings, or every refusal.
pub struct Imported {
    pub document: Value,
    pub warnings: Vec<String>,
}

/// Fields App Service does not use: a warning each, with why.
const IGNORED: [(&str, &str); 12] = [
    ("depends_on", "App Service starts every container together, without ordering"),
    ("build", "App Service runs images; the image is used"),
    ("networks", "all containers share localhost"),
    ("secrets", "use app settings or connection strings"),
    ("restart", "sitecar restarts every container with backoff"),
    ("deploy", "one instance of each container"),
    ("container_name", "the service name is the container name"),
    ("labels", "not carried over"),
    ("logging", "output goes to the log stream and LogFiles"),
    ("expose", "containers reach each other on localhost"),
    ("hostname", "all containers share the site's host name"),
    ("env_file", "put the variables under environment (or in app settings)"),
];

fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `30s`, `1m30s`, `500ms`, `2h` as seconds.
fn duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += match c {
            'h' => n * 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                n / 1000.0
            }
            'm' => n * 60.0,
            's' => n,
            'u' | 'µ' => {
                chars.next();
                n / 1e6
            }
            _ => return None,
        };
    }
    if !num.is_empty() {
        total += num.parse::<f64>().ok()?;
    }
    Some(total)
}

/// A port mapping's (published, container) ports: `"8080:3000"`, `"127.0.0.1:80:80/tcp"`, `3000`,
/// or the long form `{target, published}`.
fn port(y: &Yaml) -> Option<(Option<u16>, u16)> {
    if let Yaml::Hash(h) = y {
        let target = h.get(&Yaml::String("target".into())).and_then(text)?.parse().ok()?;
        let published = h.get(&Yaml::String("published".into())).and_then(text).and_then(|p| p.parse().ok());
        return Some((published, target));
    }
    let s = text(y)?;
    let s = s.split('/').next()?;
    let parts: Vec<&str> = s.split(':').collect();
    let container = parts.last()?.parse().ok()?;
    let published = if parts.len() >= 2 { parts[parts.len() - 2].parse().ok() } else { None };
    Some((published, container))
}

/// An environment variable name made an app setting name: `SERVICE_NAME`, letters, digits, `_`.
fn setting_name(service: &str, var: &str) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect::<String>();
    format!("{}_{}", clean(service), var)
}

pub fn import(source: &str) -> Result<Imported, Vec<String>> {
    let docs = YamlLoader::load_from_str(source).map_err(|e| vec![format!("not YAML: {e}")])?;
    let root = docs.into_iter().next().ok_or_else(|| vec!["the file is empty".to_string()])?;
    let Yaml::Hash(services) = &root["services"] else {
        return Err(vec!["services: missing (a compose file has a services mapping)".into()]);
    };
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut containers = Vec::new();
    let mut settings = Map::new();
    let mut health = Map::new();
    let mut main: Option<usize> = None;
    for (name, svc) in services {
        let Some(name) = text(name) else { continue };
        let at = |field: &str| format!("services.{name}.{field}");
        let Yaml::Hash(fields) = svc else {
            errors.push(format!("services.{name}: expected a mapping"));
            continue;
        };
        for (key, _) in fields {
            let key = text(key).unwrap_or_default();
            if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == key) {
                warnings.push(format!("{}: ignored ({why})", at(&key)));
            } else if !["image", "ports", "command", "environment", "volumes", "healthcheck", "entrypoint"].contains(&key.as_str()) {
                warnings.push(format!("{}: not carried over", at(&key)));
            }
        }
        let Some(image) = text(&svc["image"]) else {
            errors.push(format!(
                "{}: missing{}",
                at("image"),
                if fields.contains_key(&Yaml::String("build".into())) {
                    " (the service only has build: App Service runs images; build and push it, then name it in image)"
                } else {
                    ""
                }
            ));
            continue;
        };
        let mut props = Map::new();
        props.insert("image".into(), json!(image));
        props.insert("isMain".into(), json!(false));
        // Ports: the container port; publishing 80 or 8080 makes it main.
        let mut target = None;
        if let Yaml::Array(ports) = &svc["ports"] {
            for p in ports {
                match port(p) {
                    Some((published, container)) => {
                        if matches!(published, Some(80) | Some(8080)) {
                            if let Some(other) = main {
                                errors.push(format!(
                                    "{}: publishes {} as well as service #{other}: only one main",
                                    at("ports"),
                                    published.unwrap_or(0)
                                ));
                            }
                            main = Some(containers.len());
                            target = Some(container);
                        } else if target.is_none() {
                            target = Some(container);
                        }
                    }
                    None => errors.push(format!("{}: cannot read the port mapping {:?}", at("ports"), text(p).unwrap_or_default())),
                }
            }
        }
        if let Some(t) = target {
            props.insert("targetPort".into(), json!(t.to_string()));
        }
        match &svc["command"] {
            Yaml::String(c) => {
                props.insert("startUpCommand".into(), json!(c));
            }
            Yaml::Array(parts) => {
                let words: Vec<String> = parts.iter().filter_map(text).collect();
                props.insert("startUpCommand".into(), json!(shell_words::join(words)));
            }
            _ => {}
        }
        if !matches!(svc["entrypoint"], Yaml::BadValue) {
            warnings.push(format!("{}: not carried over (App Service replaces the command, not the entrypoint)", at("entrypoint")));
        }
        // Environment: map or list of NAME=VALUE.
        let mut env = Vec::new();
        let mut add = |var: String, value: Option<String>| {
            let setting = setting_name(&name, &var);
            settings.insert(setting.clone(), json!(value.unwrap_or_default()));
            env.push(json!({"name": var, "value": setting}));
        };
        match &svc["environment"] {
            Yaml::Hash(h) => {
                for (k, v) in h {
                    if let Some(k) = text(k) {
                        add(k, text(v));
                    }
                }
            }
            Yaml::Array(items) => {
                for item in items.iter().filter_map(text) {
                    let (k, v) = item.split_once('=').map_or((item.clone(), None), |(k, v)| (k.to_owned(), Some(v.to_owned())));
                    add(k, v);
                }
            }
            _ => {}
        }
        if !env.is_empty() {
            props.insert("environmentVariables".into(), Value::Array(env));
        }
        // Volumes: each source a shared subpath.
        if let Yaml::Array(vols) = &svc["volumes"] {
            let mut mounts = Vec::new();
            for v in vols {
                let (source, target, ro) = match v {
                    Yaml::Hash(h) => (
                        h.get(&Yaml::String("source".into())).and_then(text),
                        h.get(&Yaml::String("target".into())).and_then(text),
                        h.get(&Yaml::String("read_only".into())) == Some(&Yaml::Boolean(true)),
                    ),
                    other => {
                        let s = text(other).unwrap_or_default();
                        let parts: Vec<&str> = s.split(':').collect();
                        match parts.as_slice() {
                            [t] => (None, Some(t.to_string()), false),
                            [src, t] => (Some(src.to_string()), Some(t.to_string()), false),
                            [src, t, mode, ..] => (Some(src.to_string()), Some(t.to_string()), mode.split(',').any(|m| m == "ro")),
                            _ => (None, None, false),
                        }
                    }
                };
                let Some(target) = target.filter(|t| t.starts_with('/')) else {
                    errors.push(format!("{}: cannot read the volume {:?}", at("volumes"), text(v).unwrap_or_default()));
                    continue;
                };
                let sub = match source {
                    Some(src) if src.starts_with('.') || src.starts_with('/') || src.starts_with('~') => {
                        warnings.push(format!(
                            "{}: the host directory {src} becomes a shared directory (App Service has no host mounts; copy its files into the image or the subpath)",
                            at("volumes")
                        ));
                        format!("/{}", src.trim_start_matches(['.', '/', '~']).trim_start_matches('/'))
                    }
                    Some(named) => format!("/{named}"),
                    None => format!("/{name}{target}"),
                };
                mounts.push(json!({"volumeSubPath": sub, "containerMountPath": target, "readOnly": ro}));
            }
            if !mounts.is_empty() {
                props.insert("volumeMounts".into(), Value::Array(mounts));
            }
        }
        // Healthcheck: an http://localhost:PORT/PATH in the test gives the probe path.
        if let Yaml::Hash(hc) = &svc["healthcheck"] {
            let get = |k: &str| hc.get(&Yaml::String(k.into()));
            let mut probe = Map::new();
            let test: Vec<String> = match get("test") {
                Some(Yaml::Array(a)) => a.iter().filter_map(text).collect(),
                Some(other) => text(other).map(|t| vec![t]).unwrap_or_default(),
                None => Vec::new(),
            };
            let url = test.iter().flat_map(|t| t.split_whitespace()).find(|w| w.starts_with("http://") || w.starts_with("https://"));
            match url.and_then(|u| u.split_once("://").map(|x| x.1)).map(|rest| rest.find('/').map_or("/", |i| &rest[i..])) {
                Some(path) => {
                    probe.insert("path".into(), json!(path));
                }
                None if !test.is_empty() && test.first().map(String::as_str) != Some("NONE") => warnings.push(format!(
                    "{}: the command {:?} cannot run from outside the container; a TCP probe of its port is used",
                    at("healthcheck.test"),
                    test.join(" ")
                )),
                None => {}
            }
            for (k, key) in [("interval", "periodSeconds"), ("timeout", "timeoutSeconds"), ("start_period", "initialDelaySeconds")] {
                if let Some(d) = get(k).and_then(text).and_then(|t| duration(&t)) {
                    probe.insert(key.into(), json!(d));
                }
            }
            if let Some(r) = get("retries").and_then(text).and_then(|r| r.parse::<u64>().ok()) {
                probe.insert("failureThreshold".into(), json!(r.max(1)));
            }
            if !probe.is_empty() {
                health.insert(name.clone(), Value::Object(probe));
            }
        }
        containers.push((name, props));
    }
    if containers.len() > 10 {
        errors.push(format!("services: {} services; App Service runs a main and at most nine sidecars", containers.len()));
    }
    let main = match (main, containers.len()) {
        (Some(m), _) => m,
        (None, 1) => 0,
        (None, _) => {
            errors.push(
                "services: no service publishes port 80 or 8080, so none can be main (publish main's port as \"8080:<port>\")".into(),
            );
            0
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let list: Vec<Value> = containers
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut props))| {
            props.insert("isMain".into(), json!(i == main));
            json!({"name": name, "properties": props})
        })
        .collect();
    let mut doc = json!({"sitecontainers": list});
    if let Some(o) = doc.as_object_mut() {
        if !settings.is_empty() {
            o.insert("appSettings".into(), Value::Object(settings));
        }
        if !health.is_empty() {
            o.insert("health".into(), json!({"containers": health}));
        }
    }
    Ok(Imported { document: doc, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ports() {
        assert_eq!(duration("1m30s"), Some(90.0));
        assert_eq!(duration("500ms"), Some(0.5));
        assert_eq!(duration("10"), Some(10.0));
        assert_eq!(port(&Yaml::String("127.0.0.1:8080:3000/tcp".into())), Some((Some(8080), 3000)));
        assert_eq!(port(&Yaml::Integer(6379)), Some((None, 6379)));
    }
}
