//! Reading the three accepted inputs into container drafts: the Azure CLI spec-file array, an ARM
//! template, and the sitecar document. Every shape problem is recorded with its path; the
//! cross-container rules are in [`crate::validate`].

use serde_json::Value;

use crate::error::Problem;
use crate::json::{index, type_name, Obj, Problems};
use crate::model::{EnvReference, SpecFormat, VolumeMount};

/// A container as read, before the rules that span containers. Paths are kept for those rules.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    /// Path of the entry (`$[0]`).
    pub path: String,
    pub props_path: String,
    pub name: Option<String>,
    pub name_path: String,
    pub image: Option<String>,
    pub is_main: Option<bool>,
    pub target_port: Option<u16>,
    pub target_port_path: String,
    pub startup_command: Option<String>,
    pub auth_type: Option<String>,
    pub user_name: Option<String>,
    pub password_secret: Option<String>,
    pub client_id: Option<String>,
    pub inherit: bool,
    pub mounts: Vec<(VolumeMount, String)>,
    pub env: Vec<(EnvReference, String)>,
}

/// Works out which input this is.
pub(crate) fn detect(p: &mut Problems, root: &Value) -> Option<SpecFormat> {
    match root {
        Value::Array(_) => Some(SpecFormat::AzureCli),
        Value::Object(map) => {
            let has = |k: &str| map.keys().any(|key| key.eq_ignore_ascii_case(k));
            if has("sitecontainers") {
                Some(SpecFormat::Sitecar)
            } else if has("resources") {
                Some(SpecFormat::ArmTemplate)
            } else {
                p.push(
                    Problem::new("$", "not a sitecontainers spec")
                        .hint("expected an array of {name, properties} (az webapp sitecontainers spec file), an ARM template with Microsoft.Web/sites/sitecontainers resources, or an object with \"sitecontainers\""),
                );
                None
            }
        }
        other => {
            p.at("$", format!("expected an array or an object, found {}", type_name(other)));
            None
        }
    }
}

/// The Azure CLI array (also the `sitecontainers` field of a sitecar document).
pub(crate) fn cli_array(p: &mut Problems, value: &Value, path: &str) -> Vec<Draft> {
    let Value::Array(items) = value else {
        p.at(path, format!("expected an array of containers, found {}", type_name(value)));
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let item_path = index(path, i);
            let mut entry = Obj::new(p, item, &item_path)?;
            let mut draft = Draft { path: item_path.clone(), name_path: format!("{item_path}.name"), ..Draft::default() };
            draft.name = entry.string(p, "name");
            if draft.name.is_none() && entry.get("name").is_none() {
                p.push(
                    Problem::new(&draft.name_path, "missing container name").hint("add \"name\": \"main\" (letters, digits and dashes)"),
                );
            }
            match entry.get("properties") {
                Some((props, props_path)) => read_properties(p, props, &props_path, &mut draft),
                None => p.push(
                    Problem::new(format!("{item_path}.properties"), "missing \"properties\"")
                        .hint("each entry is {\"name\": ..., \"properties\": {\"image\": ..., \"isMain\": ...}}"),
                ),
            }
            entry.ignore(&["type", "id", "kind", "systemData"]);
            entry.finish(p);
            Some(draft)
        })
        .collect()
}

/// A SiteContainer's `properties`.
fn read_properties(p: &mut Problems, value: &Value, path: &str, d: &mut Draft) {
    let Some(mut o) = Obj::new(p, value, path) else { return };
    d.props_path = path.to_owned();
    d.image = o.string(p, "image");
    if d.image.as_deref().is_none_or(|s| s.trim().is_empty()) && o.get("image").is_none() {
        p.push(
            Problem::new(format!("{path}.image"), "missing image")
                .hint("a full image reference, e.g. \"myacr.azurecr.io/web:1.4\" or \"redis:7-alpine\""),
        );
    } else if d.image.as_deref().is_some_and(|s| s.trim().is_empty()) {
        p.at(&format!("{path}.image"), "image is empty");
    }
    d.is_main = o.boolean(p, "isMain");
    if o.get("isMain").is_none() && d.is_main.is_none() {
        p.push(Problem::new(format!("{path}.isMain"), "missing isMain").hint("true for the one main container, false for sidecars"));
    }
    d.target_port_path = format!("{path}.targetPort");
    if let Some((v, port_path)) = o.get("targetPort") {
        d.target_port_path = port_path.clone();
        d.target_port = crate::json::integer_value(p, v, &port_path, 1, 65535).map(|n| n as u16);
    }
    d.startup_command = o.string(p, "startUpCommand").filter(|s| !s.trim().is_empty());
    d.auth_type = o.string(p, "authType");
    d.user_name = o.string(p, "userName");
    d.password_secret = o.string(p, "passwordSecret");
    d.client_id = o.string(p, "userManagedIdentityClientId");
    d.inherit = o.boolean(p, "inheritAppSettingsAndConnectionStrings").unwrap_or(true);
    if let Some((mounts, mounts_path)) = o.array(p, "volumeMounts") {
        for (i, m) in mounts.iter().enumerate() {
            let mp = index(&mounts_path, i);
            if let Some(mount) = read_mount(p, m, &mp) {
                d.mounts.push((mount, mp));
            }
        }
    }
    if let Some((vars, vars_path)) = o.array(p, "environmentVariables") {
        for (i, v) in vars.iter().enumerate() {
            let vp = index(&vars_path, i);
            let Some(mut e) = Obj::new(p, v, &vp) else { continue };
            let name = e.string(p, "name");
            let value = e.string(p, "value");
            if e.get("name").is_none() {
                p.at(&format!("{vp}.name"), "missing name of the environment variable");
            }
            if e.get("value").is_none() {
                p.push(
                    Problem::new(format!("{vp}.value"), "missing value")
                        .hint("value is the NAME of an app setting whose value the variable receives"),
                );
            }
            e.finish(p);
            if let (Some(name), Some(app_setting)) = (name, value) {
                d.env.push((EnvReference { name, app_setting }, vp));
            }
        }
    }
    o.ignore(&["createdTime", "lastModifiedTime"]);
    o.finish(p);
}

fn read_mount(p: &mut Problems, value: &Value, path: &str) -> Option<VolumeMount> {
    let mut o = Obj::new(p, value, path)?;
    let sub = o.string(p, "volumeSubPath");
    let mount = o.string(p, "containerMountPath");
    let read_only = o.boolean(p, "readOnly").unwrap_or(false);
    let data = o.string(p, "data");
    for (field, v) in [("volumeSubPath", &sub), ("containerMountPath", &mount)] {
        if v.is_none() && o.get(if field == "volumeSubPath" { "volumeSubPath" } else { "containerMountPath" }).is_none() {
            p.at(&format!("{path}.{field}"), format!("missing {field}"));
        }
    }
    o.finish(p);
    Some(VolumeMount { volume_sub_path: sub?, container_mount_path: mount?, read_only, data })
}

/// Sitecontainers resources of an ARM template, top-level or nested under their site; app
/// settings from the site's `siteConfig.appSettings` come along.
pub(crate) fn arm_template(p: &mut Problems, root: &Value) -> (Vec<Draft>, Vec<(String, String)>) {
    let mut drafts = Vec::new();
    let mut settings = Vec::new();
    let Some(Value::Array(resources)) = get_ci(root, "resources") else {
        p.at("$.resources", "expected an array of resources");
        return (drafts, settings);
    };
    let params = get_ci(root, "parameters");
    let vars = get_ci(root, "variables");
    walk_resources(p, resources, "$.resources", params, vars, &mut drafts, &mut settings);
    if drafts.is_empty() {
        p.push(
            Problem::new("$.resources", "no Microsoft.Web/sites/sitecontainers resources in this template")
                .hint("sitecontainers are resources of type \"Microsoft.Web/sites/sitecontainers\" named \"<site>/<container>\""),
        );
    }
    (drafts, settings)
}

fn walk_resources(
    p: &mut Problems,
    resources: &[Value],
    path: &str,
    params: Option<&Value>,
    vars: Option<&Value>,
    drafts: &mut Vec<Draft>,
    settings: &mut Vec<(String, String)>,
) {
    for (i, r) in resources.iter().enumerate() {
        let rp = index(path, i);
        let kind = get_ci(r, "type").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        if kind.ends_with("sitecontainers") {
            let raw_name = get_ci(r, "name").and_then(Value::as_str).unwrap_or_default();
            let mut draft = Draft { path: rp.clone(), name_path: format!("{rp}.name"), ..Draft::default() };
            draft.name = arm_container_name(raw_name);
            if draft.name.is_none() {
                p.push(
                    Problem::new(&draft.name_path, format!("cannot read a container name from \"{raw_name}\""))
                        .hint("name it \"<site>/<container>\""),
                );
            }
            match get_ci(r, "properties") {
                Some(props) => {
                    let resolved = resolve_expressions(p, props, &format!("{rp}.properties"), params, vars);
                    read_properties(p, &resolved, &format!("{rp}.properties"), &mut draft);
                }
                None => p.at(&format!("{rp}.properties"), "missing \"properties\""),
            }
            drafts.push(draft);
        } else if kind == "microsoft.web/sites" {
            let app_settings = get_ci(r, "properties").and_then(|v| get_ci(v, "siteConfig")).and_then(|v| get_ci(v, "appSettings"));
            if let Some(Value::Array(list)) = app_settings {
                for item in list {
                    let name = get_ci(item, "name").and_then(Value::as_str);
                    let value = get_ci(item, "value").and_then(Value::as_str);
                    if let (Some(n), Some(v)) = (name, value) {
                        settings.push((n.to_owned(), resolve_string(v, params, vars).unwrap_or_else(|| v.to_owned())));
                    }
                }
            }
            if let Some(Value::Array(children)) = get_ci(r, "resources") {
                walk_resources(p, children, &format!("{rp}.resources"), params, vars, drafts, settings);
            }
        }
    }
}

/// Case-insensitive field lookup without path bookkeeping, for the parts of ARM we only peek at.
fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// The container part of an ARM resource name: `app/main`, or `[concat(parameters('s'), '/main')]`.
pub(crate) fn arm_container_name(name: &str) -> Option<String> {
    let tail = &name[name.rfind('/')? + 1..];
    let end = tail.find(['\'', ']', ')', ',']).unwrap_or(tail.len());
    let n = tail[..end].trim();
    (!n.is_empty()).then(|| n.to_owned())
}

/// `[parameters('x')]` (its defaultValue) and `[variables('x')]`; other expressions give `None`.
fn resolve_string(s: &str, params: Option<&Value>, vars: Option<&Value>) -> Option<String> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?.trim();
    let (func, rest) = inner.split_once('(')?;
    let arg = rest.strip_suffix(')')?.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    let found = match func.trim().to_ascii_lowercase().as_str() {
        "parameters" => get_ci(params?, arg).and_then(|p| get_ci(p, "defaultValue")),
        "variables" => get_ci(vars?, arg),
        _ => None,
    }?;
    match found {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A copy of `v` with parameter and variable references replaced; other expressions are problems.
fn resolve_expressions(p: &mut Problems, v: &Value, path: &str, params: Option<&Value>, vars: Option<&Value>) -> Value {
    match v {
        Value::String(s) if s.starts_with('[') && !s.starts_with("[[") => match resolve_string(s, params, vars) {
            Some(r) => Value::String(r),
            None => {
                p.push(
                    Problem::new(path, format!("ARM expression {s} cannot be evaluated locally"))
                        .hint("use a literal, or [parameters('x')] with a defaultValue, or [variables('x')]"),
                );
                Value::Null
            }
        },
        Value::Array(a) => {
            Value::Array(a.iter().enumerate().map(|(i, x)| resolve_expressions(p, x, &index(path, i), params, vars)).collect())
        }
        Value::Object(m) => Value::Object(
            m.iter().map(|(k, x)| (k.clone(), resolve_expressions(p, x, &crate::json::join(path, k), params, vars))).collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_names() {
        assert_eq!(arm_container_name("mysite/main").as_deref(), Some("main"));
        assert_eq!(arm_container_name("[concat(parameters('siteName'), '/redis')]").as_deref(), Some("redis"));
        assert_eq!(arm_container_name("[format('{0}/otel', parameters('s'))]").as_deref(), Some("otel"));
        assert_eq!(arm_container_name("main"), None);
    }

    #[test]
    fn arm_parameters_resolve_to_defaults() {
        let params = serde_json::json!({"image": {"type": "string", "defaultValue": "web:1"}});
        let vars = serde_json::json!({"port": "8080"});
        assert_eq!(resolve_string("[parameters('image')]", Some(&params), None).as_deref(), Some("web:1"));
        assert_eq!(resolve_string("[variables('port')]", None, Some(&vars)).as_deref(), Some("8080"));
        assert_eq!(resolve_string("[reference('x')]", Some(&params), Some(&vars)), None);
    }
}
