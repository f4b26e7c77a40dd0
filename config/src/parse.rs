//! Reading container entries into drafts: the Azure CLI spec-file array (also inside a sitecar
//! document) and the `properties` of a SiteContainer wherever they come from (ARM: [`crate::arm`]). Every shape problem is recorded with its path; the
//! cross-container rules are in [`crate::validate`].

use serde_json::Value;

use crate::error::Problem;
use crate::json::{index, type_name, Obj, Problems};
use crate::keys;
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
pub(crate) fn read_properties(p: &mut Problems, value: &Value, path: &str, d: &mut Draft) {
    let Some(mut o) = Obj::new(p, value, path) else { return };
    d.props_path = path.to_owned();
    d.image = o.string(p, keys::IMAGE);
    if d.image.as_deref().is_none_or(|s| s.trim().is_empty()) && o.get(keys::IMAGE).is_none() {
        p.push(
            Problem::new(format!("{path}.image"), "missing image")
                .hint("a full image reference, e.g. \"myacr.azurecr.io/web:1.4\" or \"redis:7-alpine\""),
        );
    } else if d.image.as_deref().is_some_and(|s| s.trim().is_empty()) {
        p.at(&format!("{path}.image"), "image is empty");
    }
    d.is_main = o.boolean(p, keys::IS_MAIN);
    if o.get(keys::IS_MAIN).is_none() && d.is_main.is_none() {
        p.push(Problem::new(format!("{path}.isMain"), "missing isMain").hint("true for the one main container, false for sidecars"));
    }
    d.target_port_path = format!("{path}.targetPort");
    if let Some((v, port_path)) = o.get(keys::TARGET_PORT) {
        d.target_port_path = port_path.clone();
        d.target_port = crate::json::integer_value(p, v, &port_path, 1, 65535).map(|n| n as u16);
    }
    d.startup_command = o.string(p, keys::STARTUP_COMMAND).filter(|s| !s.trim().is_empty());
    d.auth_type = o.string(p, keys::AUTH_TYPE);
    d.user_name = o.string(p, keys::USER_NAME);
    d.password_secret = o.string(p, keys::PASSWORD_SECRET);
    d.client_id = o.string(p, keys::USER_MANAGED_IDENTITY_CLIENT_ID);
    d.inherit = o.boolean(p, keys::INHERIT_APP_SETTINGS).unwrap_or(true);
    if let Some((mounts, mounts_path)) = o.array(p, keys::VOLUME_MOUNTS) {
        for (i, m) in mounts.iter().enumerate() {
            let mp = index(&mounts_path, i);
            if let Some(mount) = read_mount(p, m, &mp) {
                d.mounts.push((mount, mp));
            }
        }
    }
    if let Some((vars, vars_path)) = o.array(p, keys::ENVIRONMENT_VARIABLES) {
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
    let sub = o.string(p, keys::VOLUME_SUB_PATH);
    let mount = o.string(p, keys::CONTAINER_MOUNT_PATH);
    let read_only = o.boolean(p, keys::READ_ONLY).unwrap_or(false);
    let data = o.string(p, "data");
    for (field, v) in [("volumeSubPath", &sub), ("containerMountPath", &mount)] {
        if v.is_none() && o.get(if field == "volumeSubPath" { "volumeSubPath" } else { "containerMountPath" }).is_none() {
            p.at(&format!("{path}.{field}"), format!("missing {field}"));
        }
    }
    o.finish(p);
    Some(VolumeMount { volume_sub_path: sub?, container_mount_path: mount?, read_only, data })
}
