//! `sitecar import compose`: a compose file as a sitecar document, the way Microsoft's migration
//! guide maps one. Variables are interpolated ([`interpolate`]); the service publishing 80 or 8080
//! is main; service names used as host names become `localhost` (all containers share it);
//! `environment` and `env_file` become app settings the container names, as App Service wants;
//! `expose` gives a sidecar its port; volumes become shared subpaths; an HTTP health check its
//! probe path; the stack runs its images (`local.runtime: "oci"`). What App Service ignores is
//! warned about line by line (secrets masked); what cannot map is refused, naming service and field.

pub mod interpolate;
mod rewrite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

pub use interpolate::Variables;
use interpolate::{env_file, interpolate, Notes};
use rewrite::{localhost, mask, names_a_host, secret_name};

/// The document and the warnings, or every refusal.
pub struct Imported {
    pub document: Value,
    pub warnings: Vec<String>,
}

/// Where the compose file lives (for `.env` and `env_file`) and the shell's environment.
#[derive(Debug, Clone, Default)]
pub struct Project {
    pub dir: PathBuf,
    pub shell: BTreeMap<String, String>,
}

/// Fields App Service does not use: a warning each, with why.
const IGNORED: [(&str, &str); 10] = [
    ("depends_on", "App Service starts every container together, without ordering"),
    ("build", "App Service runs images; the image is used"),
    ("networks", "all containers share localhost"),
    ("secrets", "use app settings or connection strings"),
    ("restart", "sitecar restarts every container with backoff"),
    ("deploy", "one instance of each container"),
    ("container_name", "the service name is the container name"),
    ("labels", "not carried over"),
    ("logging", "output goes to the log stream and LogFiles"),
    ("hostname", "all containers share the site's host name"),
];

/// Fields that map.
const USED: [&str; 9] = ["image", "ports", "command", "environment", "env_file", "volumes", "healthcheck", "entrypoint", "expose"];

fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn key<'a>(h: &'a yaml_rust2::yaml::Hash, k: &str) -> Option<&'a Yaml> {
    h.get(&Yaml::String(k.into()))
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

/// One port of `ports`: published port, container port, UDP or not. Short forms
/// (`"8080:3000"`, `"127.0.0.1:80:80/tcp"`, `3000`, `"4317:4317/udp"`, `"8000-8001:8000-8001"`,
/// the first of a range) and the long form `{target, published, protocol}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortMapping {
    published: Option<u16>,
    container: u16,
    udp: bool,
}

fn port(y: &Yaml) -> Option<PortMapping> {
    if let Yaml::Hash(h) = y {
        let container = key(h, "target").and_then(text)?.parse().ok()?;
        let published = key(h, "published").and_then(text).and_then(|p| first_of_range(&p));
        let udp = key(h, "protocol").and_then(text).is_some_and(|p| p.eq_ignore_ascii_case("udp"));
        return Some(PortMapping { published, container, udp });
    }
    let s = text(y)?;
    let (spec, proto) = s.split_once('/').map_or((s.as_str(), ""), |(a, b)| (a, b));
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let spec = spec.rsplit_once(']').map_or(spec, |(_, rest)| rest.trim_start_matches(':'));
    let parts: Vec<&str> = spec.split(':').collect();
    let container = first_of_range(parts.last()?)?;
    let published = if parts.len() >= 2 { first_of_range(parts[parts.len() - 2]) } else { None };
    Some(PortMapping { published, container, udp: proto.eq_ignore_ascii_case("udp") })
}

fn first_of_range(s: &str) -> Option<u16> {
    s.split('-').next()?.trim().parse().ok()
}

/// An environment variable name made an app setting name: `SERVICE_NAME`, letters, digits, `_`.
fn setting_name(service: &str, var: &str) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect::<String>();
    format!("{}_{}", clean(service), var)
}

/// The YAML tree with every string value interpolated (keys are left as written).
fn interpolate_tree(y: &Yaml, vars: &Variables, notes: &mut Notes) -> Yaml {
    match y {
        Yaml::String(s) => Yaml::String(interpolate(s, vars, notes)),
        Yaml::Array(a) => Yaml::Array(a.iter().map(|x| interpolate_tree(x, vars, notes)).collect()),
        Yaml::Hash(h) => Yaml::Hash(h.iter().map(|(k, v)| (k.clone(), interpolate_tree(v, vars, notes))).collect()),
        other => other.clone(),
    }
}

pub fn import(source: &str, project: &Project) -> Result<Imported, Vec<String>> {
    let docs = YamlLoader::load_from_str(source).map_err(|e| vec![format!("not YAML: {e}")])?;
    let raw = docs.into_iter().next().ok_or_else(|| vec!["the file is empty".to_string()])?;
    let mut warnings = Vec::new();
    let mut errors = Vec::new();

    // Variables: the shell's, then .env beside the file.
    let dot_env = std::fs::read_to_string(project.dir.join(".env")).map(|t| env_file(&t)).unwrap_or_default();
    let vars = Variables { shell: project.shell.clone(), dot_env };
    let mut notes = Notes::default();
    let root = interpolate_tree(&raw, &vars, &mut notes);
    notes.unset.sort();
    notes.unset.dedup();
    for name in &notes.unset {
        warnings.push(format!("the variable {name} is not set (in the environment or .env): it stands as an empty string"));
    }
    errors.extend(notes.errors.iter().map(|e| format!("required variable: {e}")));

    let Yaml::Hash(services) = &root["services"] else {
        errors.push("services: missing (a compose file has a services mapping)".into());
        return Err(errors);
    };
    let names: Vec<String> = services.keys().filter_map(text).collect();

    // Main first, from ports alone: the service publishing 80 or 8080 (TCP).
    let mut main: Option<String> = None;
    for (name, svc) in services {
        let Some(name) = text(name) else { continue };
        if let Yaml::Array(ports) = &svc["ports"] {
            for m in ports.iter().filter_map(port).filter(|m| !m.udp && matches!(m.published, Some(80 | 8080))) {
                match &main {
                    Some(other) if other != &name => errors.push(format!(
                        "services.{name}.ports: publishes {} as {other} does: App Service has one main (the one on 80/8080)",
                        m.published.unwrap_or(0)
                    )),
                    _ => main = Some(name.clone()),
                }
            }
        }
    }
    let main = match (main, names.len()) {
        (Some(m), _) => m,
        (None, 1) => names[0].clone(),
        (None, _) => {
            errors.push(
                "services: no service publishes port 80 or 8080, so none can be main (publish main's port as \"8080:<port>\")".into(),
            );
            String::new()
        }
    };

    let mut containers = Vec::new();
    let mut settings = Map::new();
    let mut health = Map::new();
    for (name, svc) in services {
        let Some(name) = text(name) else { continue };
        let at = |field: &str| format!("services.{name}.{field}");
        let Yaml::Hash(fields) = svc else {
            errors.push(format!("services.{name}: expected a mapping"));
            continue;
        };
        let is_main = name == main;
        for (k, _) in fields {
            let k = text(k).unwrap_or_default();
            if let Some((_, why)) = IGNORED.iter().find(|(i, _)| *i == k) {
                if !(k == "build" && key(fields, "image").is_none()) {
                    warnings.push(format!("{}: ignored ({why})", at(&k)));
                }
            } else if !USED.contains(&k.as_str()) {
                warnings.push(format!("{}: not carried over", at(&k)));
            }
        }
        let Some(image) = key(fields, "image").and_then(text) else {
            errors.push(if key(fields, "build").is_some() {
                format!("services.{name}: only build, no image: App Service runs images; build and push it to a registry, then name it in image")
            } else {
                format!("{}: missing", at("image"))
            });
            continue;
        };
        let mut props = Map::new();
        props.insert(keys::IMAGE.into(), json!(image));
        props.insert(keys::IS_MAIN.into(), json!(is_main));

        // The container's port: main's published 80/8080 mapping; a sidecar's first TCP port of
        // `ports`, else of `expose`.
        let mut target = None;
        if let Yaml::Array(ports) = &svc["ports"] {
            for p in ports {
                let Some(m) = port(p) else {
                    errors.push(format!("{}: cannot read the port mapping {:?}", at("ports"), text(p).unwrap_or_default()));
                    continue;
                };
                if m.udp {
                    warnings.push(format!("{}: {}/udp is not carried over (App Service routes TCP only)", at("ports"), m.container));
                    continue;
                }
                let front = matches!(m.published, Some(80 | 8080));
                if is_main && front {
                    target = Some(m.container);
                } else {
                    if target.is_none() {
                        target = Some(m.container);
                    }
                    if let Some(published) = m.published {
                        warnings.push(format!(
                            "{}: {published}:{} is not published (App Service publishes main on 80 and 8080 only); the other containers reach it on localhost:{}",
                            at("ports"),
                            m.container,
                            m.container
                        ));
                    }
                }
            }
        }
        if target.is_none() {
            if let Yaml::Array(exposed) = &svc["expose"] {
                target = exposed
                    .iter()
                    .filter_map(text)
                    .find(|e| !e.to_ascii_lowercase().ends_with("/udp"))
                    .and_then(|e| first_of_range(e.split('/').next().unwrap_or("")));
            }
        }
        if let Some(t) = target {
            props.insert(keys::TARGET_PORT.into(), json!(t.to_string()));
        }

        // The command, with service names as hosts made localhost.
        let command = match &svc["command"] {
            Yaml::String(c) => Some(c.clone()),
            Yaml::Array(parts) => Some(join_words(parts.iter().filter_map(text))),
            _ => None,
        };
        if let Some(c) = command {
            let (c, hosts) = localhost(&c, &names, false);
            for h in hosts {
                warnings.push(format!("{}: host {h} -> localhost (all containers share localhost)", at("command")));
            }
            props.insert(keys::STARTUP_COMMAND.into(), json!(c));
        }
        if !matches!(svc["entrypoint"], Yaml::BadValue) {
            warnings.push(format!("{}: not carried over (App Service replaces the command, not the entrypoint)", at("entrypoint")));
        }

        // Environment: env_file first, environment over it; each variable an app setting.
        let mut env: Vec<(String, String)> = Vec::new();
        let mut put = |var: String, value: String| match env.iter_mut().find(|(k, _)| *k == var) {
            Some(slot) => slot.1 = value,
            None => env.push((var, value)),
        };
        let files: Vec<(String, bool)> = match &svc["env_file"] {
            Yaml::String(f) => vec![(f.clone(), true)],
            Yaml::Array(list) => list
                .iter()
                .filter_map(|f| match f {
                    Yaml::Hash(h) => Some((key(h, "path").and_then(text)?, key(h, "required") != Some(&Yaml::Boolean(false)))),
                    other => text(other).map(|t| (t, true)),
                })
                .collect(),
            _ => Vec::new(),
        };
        for (file, required) in files {
            match std::fs::read_to_string(project.dir.join(&file)) {
                Ok(t) => {
                    for (k, v) in env_file(&t) {
                        put(k, v);
                    }
                }
                Err(e) if required => errors.push(format!("{}: cannot read {file}: {e}", at("env_file"))),
                Err(_) => {}
            }
        }
        let mut from_shell = |var: &str| match vars.get(var) {
            Some(v) => Some(v.to_owned()),
            None => {
                warnings.push(format!(
                    "{}: {var} takes its value from the environment, where it is not set: left out (set it, or give it as an app setting)",
                    at(&format!("environment.{var}"))
                ));
                None
            }
        };
        match &svc["environment"] {
            Yaml::Hash(h) => {
                for (k, v) in h {
                    let Some(k) = text(k) else { continue };
                    match text(v) {
                        Some(v) => put(k, v),
                        None => {
                            if let Some(v) = from_shell(&k) {
                                put(k, v);
                            }
                        }
                    }
                }
            }
            Yaml::Array(items) => {
                for item in items.iter().filter_map(text) {
                    match item.split_once('=') {
                        Some((k, v)) => put(k.to_owned(), v.to_owned()),
                        None => {
                            if let Some(v) = from_shell(&item) {
                                put(item.clone(), v);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        let mut refs = Vec::new();
        for (var, value) in env {
            let (value, hosts) = localhost(&value, &names, names_a_host(&var));
            for h in hosts {
                let shown = if secret_name(&var) { String::new() } else { format!(" in {}", mask(&value)) };
                warnings
                    .push(format!("{}: host {h} -> localhost{shown} (all containers share localhost)", at(&format!("environment.{var}"))));
            }
            let setting = setting_name(&name, &var);
            settings.insert(setting.clone(), json!(value));
            refs.push(json!({"name": var, "value": setting}));
        }
        if !refs.is_empty() {
            props.insert(keys::ENVIRONMENT_VARIABLES.into(), Value::Array(refs));
        }

        // Volumes: each source a shared subpath.
        if let Yaml::Array(vols) = &svc["volumes"] {
            let mut mounts = Vec::new();
            for v in vols {
                let (source, target, ro) = match v {
                    Yaml::Hash(h) => (
                        key(h, "source").and_then(text),
                        key(h, "target").and_then(text),
                        key(h, "read_only") == Some(&Yaml::Boolean(true)),
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
                props.insert(keys::VOLUME_MOUNTS.into(), Value::Array(mounts));
            }
        }

        if let Yaml::Hash(hc) = &svc["healthcheck"] {
            if let Some(probe) = healthcheck(hc, &at("healthcheck.test"), &mut warnings) {
                health.insert(name.clone(), Value::Object(probe));
            }
        }
        containers.push((is_main, json!({"name": name, "properties": props})));
    }
    if containers.len() > 10 {
        errors.push(format!("services: {} services; App Service runs a main and at most nine sidecars", containers.len()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let list: Vec<Value> = containers.into_iter().map(|(_, c)| c).collect();
    let mut doc = json!({"sitecontainers": list});
    if let Some(o) = doc.as_object_mut() {
        if !settings.is_empty() {
            o.insert("appSettings".into(), Value::Object(settings));
        }
        if !health.is_empty() {
            o.insert("health".into(), json!({"containers": health}));
        }
        // A compose stack runs its images: arguments like `-H unix:///...` are the image's,
        // never a command line for this host.
        o.insert("local".into(), json!({"runtime": "oci"}));
    }
    Ok(Imported { document: doc, warnings })
}

/// A health check as a probe: `curl`/`wget` of an HTTP URL (in `CMD`, `CMD-SHELL` or the string
/// form) gives the path; interval, timeout, retries and start period the probe settings. Other
/// commands cannot run from outside the container: named in a warning, secrets masked.
fn healthcheck(hc: &yaml_rust2::yaml::Hash, at: &str, warnings: &mut Vec<String>) -> Option<Map<String, Value>> {
    if key(hc, "disable") == Some(&Yaml::Boolean(true)) {
        return None;
    }
    let test: Vec<String> = match key(hc, "test") {
        Some(Yaml::Array(a)) => a.iter().filter_map(text).collect(),
        Some(other) => text(other).map(|t| vec!["CMD-SHELL".into(), t]).unwrap_or_default(),
        None => Vec::new(),
    };
    if test.first().map(String::as_str) == Some("NONE") {
        return None;
    }
    let words: Vec<&str> = test.iter().skip_while(|w| w.starts_with("CMD")).flat_map(|t| t.split_whitespace()).collect();
    let fetcher = words.iter().any(|w| w.ends_with("curl") || w.ends_with("wget"));
    let url = words.iter().map(|w| w.trim_matches(['"', '\''])).find(|w| w.starts_with("http://") || w.starts_with("https://"));
    let mut probe = Map::new();
    match url.filter(|_| fetcher).and_then(|u| u.split_once("://").map(|x| x.1)) {
        Some(rest) => {
            let path = rest.find('/').map_or("/", |i| &rest[i..]);
            probe.insert("path".into(), json!(path));
        }
        None if !words.is_empty() => warnings.push(format!(
            "{at}: the command {:?} cannot run from outside the container; a TCP probe of its port is used",
            mask(&words.join(" "))
        )),
        None => {}
    }
    for (k, name) in [("interval", "periodSeconds"), ("timeout", "timeoutSeconds"), ("start_period", "initialDelaySeconds")] {
        if let Some(d) = key(hc, k).and_then(text).and_then(|t| duration(&t)) {
            probe.insert(name.into(), json!(d));
        }
    }
    if let Some(r) = key(hc, "retries").and_then(text).and_then(|r| r.parse::<u64>().ok()) {
        probe.insert("failureThreshold".into(), json!(r.max(1)));
    }
    (!probe.is_empty()).then_some(probe)
}

/// Words as one command line, quoted (by shell_words) only where a shell would need it: a
/// `--flag=value` reads as written.
fn join_words(words: impl Iterator<Item = String>) -> String {
    let plain = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c));
    words.map(|w| if plain(&w) { w } else { shell_words::quote(&w).into_owned() }).collect::<Vec<_>>().join(" ")
}

/// The project of a compose file: its directory and this process's environment.
pub fn project_of(file: &Path) -> Project {
    Project { dir: file.parent().map(Path::to_path_buf).unwrap_or_default(), shell: std::env::vars().collect() }
}
use crate::keys;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ports() {
        assert_eq!(duration("1m30s"), Some(90.0));
        assert_eq!(duration("500ms"), Some(0.5));
        assert_eq!(duration("10"), Some(10.0));
        let p = |s: &str| port(&Yaml::String(s.into())).unwrap();
        assert_eq!(p("127.0.0.1:8080:3000/tcp"), PortMapping { published: Some(8080), container: 3000, udp: false });
        assert_eq!(p("4317:4317/udp"), PortMapping { published: Some(4317), container: 4317, udp: true });
        assert_eq!(p("8000-8001:9000-9001"), PortMapping { published: Some(8000), container: 9000, udp: false });
        assert_eq!(p("[::1]:8080:80"), PortMapping { published: Some(8080), container: 80, udp: false });
        assert_eq!(port(&Yaml::Integer(6379)).unwrap(), PortMapping { published: None, container: 6379, udp: false });
    }
}
