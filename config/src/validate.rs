//! The rules that span a whole spec, applied after every field was read. Each rule adds problems
//! and never stops the others, so a user sees everything wrong with a spec at once.

use std::collections::{BTreeMap, HashMap};

use crate::error::Problem;
use crate::json::{join, Problems};
use crate::model::*;
use crate::parse::Draft;
use crate::sections::LocalDraft;

/// Azure's name rule for site containers (TSP): letters, digits and inner dashes.
pub fn valid_container_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge_ok = |c: u8| c.is_ascii_alphanumeric();
    match b {
        [] => false,
        [one] => edge_ok(*one),
        [first, middle @ .., last] => edge_ok(*first) && edge_ok(*last) && middle.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-'),
    }
}

/// An environment variable name a process can carry.
/// An app setting name is letters, digits, `_`, `.` and `-`: anything else (`:`, `/`, spaces, a
/// leading digit) is a value written where a name belongs.
fn looks_like_a_value(s: &str) -> bool {
    s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) || s.chars().any(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

pub(crate) struct Parts {
    pub format: SpecFormat,
    pub containers_path: String,
    pub drafts: Vec<Draft>,
    pub app_settings: BTreeMap<String, String>,
    pub app_settings_path: String,
    pub connection_strings: BTreeMap<String, ConnectionString>,
    pub proxy: ProxySettings,
    pub health: HealthSettings,
    pub health_names: Vec<(String, String)>,
    pub cache: CacheSettings,
    pub offload: Vec<OffloadRule>,
    pub admin: AdminSettings,
    pub tracing: TracingSettings,
    pub local: LocalDraft,
}

pub(crate) fn build(p: &mut Problems, parts: Parts) -> Option<Spec> {
    let Parts {
        format,
        containers_path,
        drafts,
        app_settings,
        app_settings_path,
        connection_strings,
        proxy,
        health,
        health_names,
        cache,
        offload,
        admin,
        tracing,
        local,
    } = parts;

    if drafts.is_empty() && p.0.is_empty() {
        p.push(Problem::new(&containers_path, "no containers").hint("a spec needs one container with \"isMain\": true"));
    }

    // Exactly one main; at most nine sidecars.
    let mains: Vec<&Draft> = drafts.iter().filter(|d| d.is_main == Some(true)).collect();
    // When some isMain could not be read, that problem is reported already and says more.
    if mains.is_empty() && !drafts.is_empty() && drafts.iter().all(|d| d.is_main.is_some()) {
        p.push(
            Problem::new(&containers_path, "no container has \"isMain\": true")
                .hint("mark the container that receives HTTP traffic as main"),
        );
    }
    for extra in mains.iter().skip(1) {
        let first = mains[0].name.as_deref().unwrap_or("?");
        p.push(
            Problem::new(format!("{}.isMain", extra.props_path), format!("a second main container (\"{first}\" is main already)"))
                .hint("exactly one container is main; set \"isMain\": false on the others"),
        );
    }
    for (n, d) in drafts.iter().filter(|d| d.is_main == Some(false)).enumerate() {
        if n == 9 {
            p.push(Problem::new(&d.path, "more than nine sidecars").hint("App Service runs one main and at most nine sidecars"));
        }
    }

    // Names: Azure's pattern, unique (resource names are case-insensitive).
    let mut seen: HashMap<String, &str> = HashMap::new();
    for d in &drafts {
        let Some(name) = &d.name else { continue };
        if !valid_container_name(name) {
            p.push(
                Problem::new(&d.name_path, format!("invalid container name \"{name}\""))
                    .hint("use letters, digits and dashes, starting and ending with a letter or digit"),
            );
        }
        if let Some(first) = seen.insert(name.to_ascii_lowercase(), &d.name_path) {
            p.push(
                Problem::new(&d.name_path, format!("duplicate container name \"{name}\" (first at {first})"))
                    .hint("container names are unique, ignoring case"),
            );
        }
    }

    // Ports: unique, main has one.
    let mut ports: HashMap<u16, &Draft> = HashMap::new();
    for d in &drafts {
        let Some(port) = d.target_port else { continue };
        if let Some(first) = ports.insert(port, d) {
            p.push(
                Problem::new(&d.target_port_path, format!("port {port} is already used by \"{}\"", first.name.as_deref().unwrap_or("?")))
                    .hint("containers share localhost, so each needs its own port"),
            );
        }
    }
    for d in mains.iter().take(1) {
        if d.target_port.is_none() && !p.0.iter().any(|x| x.path == d.target_port_path) {
            p.push(
                Problem::new(&d.target_port_path, "main container has no targetPort")
                    .hint("the port main listens on, e.g. \"8080\"; the front door forwards there"),
            );
        }
    }

    // Authentication fields.
    for d in &drafts {
        check_auth(p, d);
    }

    // Mounts and environment references.
    for d in &drafts {
        let mut mount_paths = HashMap::new();
        for (m, path) in &d.mounts {
            if !m.container_mount_path.starts_with('/') {
                p.push(
                    Problem::new(
                        format!("{path}.containerMountPath"),
                        format!("mount path \"{}\" is not absolute", m.container_mount_path),
                    )
                    .hint("start it with /, e.g. \"/var/cache/app\""),
                );
            } else if mount_paths.insert(m.container_mount_path.trim_end_matches('/').to_owned(), ()).is_some() {
                p.at(&format!("{path}.containerMountPath"), format!("\"{}\" is mounted twice in this container", m.container_mount_path));
            }
            let sub = m.volume_sub_path.trim_matches('/');
            if sub.is_empty() {
                p.at(&format!("{path}.volumeSubPath"), "volumeSubPath is empty");
            } else if sub.split('/').any(|seg| seg == ".." || seg == ".") {
                p.push(
                    Problem::new(format!("{path}.volumeSubPath"), format!("volumeSubPath \"{}\" contains . or ..", m.volume_sub_path))
                        .hint("a subpath names a directory inside the volumes root"),
                );
            }
        }
        let mut names = HashMap::new();
        for (e, path) in &d.env {
            if !valid_env_name(&e.name) {
                p.at(&format!("{path}.name"), format!("\"{}\" is not a valid environment variable name", e.name.escape_debug()));
            } else if names.insert(e.name.as_str(), ()).is_some() {
                p.at(&format!("{path}.name"), format!("variable \"{}\" is defined twice in this container", e.name));
            }
            if !app_settings.contains_key(&e.app_setting) && looks_like_a_value(&e.app_setting) {
                // Not a name at all: a value written where App Service wants a setting's name.
                let setting = e.name.to_ascii_uppercase();
                p.push(
                    Problem::new(
                        format!("{path}.value"),
                        format!(
                            "\"{}\" looks like a value, but on App Service an environment variable's value is the NAME of an app setting",
                            e.app_setting
                        ),
                    )
                    .hint(format!(
                        "put the value in an app setting and name it here: \"appSettings\": {{\"{setting}\": \"{}\"}} and {{\"name\": \"{}\", \"value\": \"{setting}\"}}",
                        e.app_setting.escape_debug(),
                        e.name
                    )),
                );
            } else if !app_settings.contains_key(&e.app_setting) {
                let mut problem = Problem::new(format!("{path}.value"), format!("\"{}\" names no app setting", e.app_setting));
                let known: Vec<&str> = app_settings.keys().map(String::as_str).collect();
                problem = match crate::json::did_you_mean(&e.app_setting, &known) {
                    Some(near) => problem.hint(format!("did you mean \"{near}\"? value is the NAME of an app setting")),
                    None => problem.hint(format!("value is the NAME of an app setting: define \"{}\" in appSettings, pass --setting {}=..., or set APPSETTING_{} in the environment", e.app_setting, e.app_setting, e.app_setting)),
                };
                p.push(problem);
            }
        }
    }

    // Names used by sections must exist.
    let exists = |n: &str| drafts.iter().any(|d| d.name.as_deref() == Some(n));
    for (name, path) in health_names.iter().map(|(n, p)| (n, p)).chain(local.by_name.iter().map(|(n, _, path)| (n, path))) {
        if !exists(name) {
            let known: Vec<&str> = drafts.iter().filter_map(|d| d.name.as_deref()).collect();
            let mut problem = Problem::new(path, format!("no container is named \"{name}\""));
            if let Some(near) = crate::json::did_you_mean(name, &known) {
                problem = problem.hint(format!("did you mean \"{near}\"?"));
            }
            p.push(problem);
        }
    }

    let platform = crate::sections::platform(p, &app_settings, &app_settings_path);
    let mut proxy = proxy;
    proxy.http2_port = platform.http20_only_port;

    // Local commands, the runtime, and process-mode port rules.
    let local_for = |d: &Draft| -> Option<LocalCommand> {
        let name = d.name.as_deref()?;
        local.by_name.iter().find(|(n, ..)| n == name).map(|(_, c, _)| c.clone()).or_else(|| {
            let image = d.image.as_deref()?;
            local.by_image.iter().find(|(i, _)| i == image).map(|(_, c)| c.clone())
        })
    };
    let has_command = |d: &Draft| d.startup_command.is_some() || local_for(d).and_then(|l| l.command).is_some();
    let runtime = match local.settings.runtime {
        RuntimeChoice::Process => Runtime::Process,
        RuntimeChoice::Oci => Runtime::Oci,
        RuntimeChoice::Auto if drafts.iter().all(has_command) => Runtime::Process,
        RuntimeChoice::Auto => Runtime::Oci,
    };
    let mut warnings = Vec::new();
    if runtime == Runtime::Oci && local.settings.runtime == RuntimeChoice::Auto {
        if let Some(d) = drafts.iter().find(|d| !has_command(d)) {
            let name = d.name.as_deref().unwrap_or("?");
            warnings.push(
                Problem::new(
                    format!("{}.startUpCommand", d.props_path),
                    format!(
                        "the stack runs its images with docker or podman (local.runtime \"auto\"): container \"{name}\" has no startUpCommand nor local command to run as a process"
                    ),
                )
                .hint(format!("to run every container as a process, add local.containers.{name}.command; set local.runtime to say which runtime you want")),
            );
        }
    }
    for d in drafts.iter().filter(|d| d.is_main == Some(true)) {
        for (e, path) in &d.env {
            if e.name == "PORT" || e.name == "WEBSITES_PORT" {
                warnings.push(
                    Problem::new(
                        path,
                        format!("{} of main is set by the platform to the port main must listen on; this entry is overridden", e.name),
                    )
                    .hint("read PORT in the app instead of setting it; pin main's port with local.containers.<main>.port"),
                );
            }
        }
        if d.inherit {
            for name in ["PORT", "WEBSITES_PORT"].into_iter().filter(|n| app_settings.contains_key(*n)) {
                warnings.push(
                    Problem::new(
                        join(&app_settings_path, name),
                        format!("the app setting {name} is overridden for main, which is given the port it must listen on"),
                    )
                    .hint("App Service sets PORT itself; remove the setting"),
                );
            }
        }
    }
    let reserved = reserved_ports(&proxy, &admin);
    for d in &drafts {
        let name = d.name.as_deref().unwrap_or("?");
        if runtime == Runtime::Process && !has_command(d) {
            p.push(
                Problem::new(format!("{}.startUpCommand", d.props_path), format!("container \"{name}\" has nothing to run as a process"))
                    .hint(format!(
                        "add local.images[\"{}\"].command (or local.containers.{name}.command), or set local.runtime to \"oci\"",
                        d.image.as_deref().unwrap_or("")
                    )),
            );
        }
        let Some(port) = d.target_port else { continue };
        let Some((_, owner)) = reserved.iter().find(|(r, _)| *r == port) else { continue };
        let main_on_front_door = d.is_main == Some(true) && *owner != ADMIN_OWNER;
        if runtime == Runtime::Process && !main_on_front_door {
            p.push(
                Problem::new(&d.target_port_path, format!("port {port} belongs to {owner}"))
                    .hint("in process mode every container shares the host's localhost; give this container another port"),
            );
        }
    }
    let main_local_port = mains.first().and_then(|d| local_for(d)).and_then(|l| l.port);
    if let Some(port) = main_local_port {
        if let Some(clash) = drafts.iter().find(|d| d.target_port == Some(port) && d.is_main != Some(true)) {
            p.at(&clash.target_port_path, format!("port {port} is pinned as main's internal port in local.containers"));
        }
    }

    if !p.0.is_empty() {
        return None;
    }
    let containers = drafts
        .into_iter()
        .map(|d| {
            let local_cmd = local_for(&d);
            Container {
                auth: auth_of(&d),
                name: d.name.unwrap_or_default(),
                image: d.image.unwrap_or_default(),
                is_main: d.is_main == Some(true),
                target_port: d.target_port,
                startup_command: d.startup_command,
                inherit_app_settings: d.inherit,
                volume_mounts: d.mounts.into_iter().map(|(m, _)| m).collect(),
                environment_variables: d.env.into_iter().map(|(e, _)| e).collect(),
                local: local_cmd,
            }
        })
        .collect();
    Some(Spec {
        format,
        containers,
        app_settings,
        connection_strings,
        platform,
        proxy,
        health,
        cache,
        offload,
        admin,
        tracing,
        local: local.settings,
        runtime,
        warnings,
    })
}

const AUTH_TYPES: [&str; 4] = ["Anonymous", "UserCredentials", "SystemIdentity", "UserAssigned"];

fn check_auth(p: &mut Problems, d: &Draft) {
    let at = |field: &str| join(&d.props_path, field);
    let kind = match d.auth_type.as_deref() {
        None => None,
        Some(t) => match AUTH_TYPES.iter().find(|k| k.eq_ignore_ascii_case(t)) {
            Some(k) => Some(*k),
            None => {
                p.push(Problem::new(at("authType"), format!("unknown authType \"{t}\"")).hint(format!("one of {}", AUTH_TYPES.join(", "))));
                return;
            }
        },
    };
    let creds = d.user_name.is_some() || d.password_secret.is_some();
    match kind {
        Some("UserCredentials") => {
            if d.user_name.is_none() {
                p.push(Problem::new(at("userName"), "authType UserCredentials needs userName").hint("the registry user name"));
            }
            if d.password_secret.is_none() {
                p.push(Problem::new(at("passwordSecret"), "authType UserCredentials needs passwordSecret").hint("the registry password"));
            }
        }
        Some("UserAssigned") if d.client_id.is_none() => {
            p.push(
                Problem::new(at("userManagedIdentityClientId"), "authType UserAssigned needs userManagedIdentityClientId")
                    .hint("the client id of the user-assigned managed identity"),
            );
        }
        _ => {}
    }
    if creds && kind != Some("UserCredentials") {
        let field = if d.user_name.is_some() { "userName" } else { "passwordSecret" };
        p.push(
            Problem::new(at(field), format!("{field} is only used with authType UserCredentials"))
                .hint("set \"authType\": \"UserCredentials\" or remove the credentials"),
        );
    }
    if d.client_id.is_some() && kind != Some("UserAssigned") {
        p.push(
            Problem::new(at("userManagedIdentityClientId"), "userManagedIdentityClientId is only used with authType UserAssigned")
                .hint("set \"authType\": \"UserAssigned\" or remove it"),
        );
    }
}

fn auth_of(d: &Draft) -> Auth {
    match d.auth_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("usercredentials") => Auth::UserCredentials {
            user_name: d.user_name.clone().unwrap_or_default(),
            password_secret: Secret::new(d.password_secret.clone().unwrap_or_default()),
        },
        Some("systemidentity") => Auth::SystemIdentity,
        Some("userassigned") => Auth::UserAssigned { client_id: d.client_id.clone().unwrap_or_default() },
        _ => Auth::Anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_name_pattern() {
        for ok in ["a", "7", "main", "my-sidecar-2", "A1"] {
            assert!(valid_container_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "my_sidecar", "a.b", "é"] {
            assert!(!valid_container_name(bad), "{bad}");
        }
    }
}
