//! sitecar-config: the sitecontainers spec of Azure App Service, read as-is and checked by every
//! platform rule before anything runs.
//!
//! Three inputs are accepted and told apart automatically: the Azure CLI spec file (an array of
//! `{name, properties}`), an ARM template with `Microsoft.Web/sites/sitecontainers` resources, and a
//! sitecar document that adds app settings and the front door's settings. [`load`] returns either an
//! immutable [`Spec`] or every problem at once, each with its JSON path and a hint.
//!
//! # Layout
//! - [`model`]: the validated [`Spec`] and its settings, with documented defaults.
//! - `json`: a path-tracking, case-insensitive reader over JSON values.
//! - `parse`: the Azure CLI array and a container's properties.
//! - `arm`: ARM templates as Bicep and people write them, with an evaluator of their expressions.
//! - [`compose`]: `import compose`, with the Compose specification's interpolation.
//! - [`export`]: the spec for Kubernetes and Azure.
//! - `sections`: the sitecar-only sections (`proxy`, `health`, `cache`, `offload`, `admin`, `local`).
//! - `validate`: the rules that span containers (one main, ports, names, app-setting references).
//! - [`report`]: what `sitecar validate` says of a load, for people or as JSON.
//! - [`standalone`]: `sitecar proxy`'s settings: a document's sections, then its flags.
//! - [`env`]: the environment a container receives, as App Service builds it.
//! - [`error`]: [`Problem`] and [`LoadError`].

mod arm;
pub mod compose;
pub mod env;
pub mod error;
pub mod export;
mod json;
pub mod keys;
pub mod model;
mod parse;
pub mod report;
mod sections;
pub mod standalone;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

pub use arm::{parameters_file, strip_comments};
pub use error::{LoadError, Problem};
pub use model::*;
pub use sections::{parse_listen, parse_otlp_endpoint};
pub use validate::valid_container_name;

/// What a load takes besides the document: settings handed in from outside it.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// App settings from the environment (`APPSETTING_<name>`) or the command line; they win over
    /// the document's, as the platform's settings would.
    pub app_settings: BTreeMap<String, String>,
    /// Connection strings from the environment (`SQLCONNSTR_<name>`, ...).
    pub connection_strings: BTreeMap<String, ConnectionString>,
    /// Front-door addresses from the command line (`up --listen`): they replace `proxy.listen`
    /// and are validated with the spec, at every load (so a reload keeps them).
    pub listen: Vec<String>,
    /// The admin API's address from the command line (`up --admin`), replacing `admin.listen`.
    pub admin: Option<String>,
    /// Values of an ARM template's parameters (`--parameters FILE`, `--parameter NAME=VALUE`).
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The user's own code as main (`--main CMD --main-port PORT`): what App Service's built-in
    /// code container runs for a site with a runtime stack and only sidecars.
    pub main: Option<MainCommand>,
}

/// `--main` and `--main-port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainCommand {
    pub command: String,
    pub port: u16,
}

/// Reads and validates a spec file.
pub fn load_file(path: &Path, options: &LoadOptions) -> Result<Spec, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Unreadable { path: path.to_owned(), source })?;
    load_str(&text, options)
}

/// Validates a spec given as text.
pub fn load_str(text: &str, options: &LoadOptions) -> Result<Spec, LoadError> {
    // Templates deployed with `az` may hold comments.
    let text = strip_comments(text);
    let root: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LoadError::Syntax { line: e.line(), column: e.column(), message: syntax_message(&e) })?;
    load(&root, options)
}

fn syntax_message(e: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; we report those separately.
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

/// `--listen` and `--admin`, taken as if the document said them (problems at the flag's name).
fn command_line(p: &mut json::Problems, options: &LoadOptions, parts: &mut validate::Parts) {
    if !options.listen.is_empty() {
        let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let mut listen = Vec::new();
        for l in &options.listen {
            match sections::parse_listen(l, any) {
                Some(a) => listen.push(a),
                None => {
                    p.push(Problem::new("--listen", format!("\"{l}\" is not an address")).hint("an address like 0.0.0.0:8080 or a port"))
                }
            }
        }
        parts.proxy.listen = listen;
        parts.proxy.listen_explicit = true;
    }
    if let Some(a) = &options.admin {
        match sections::parse_listen(a, std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)) {
            Some(addr) if !addr.ip().is_loopback() && parts.admin.token.is_none() => p.push(
                Problem::new("--admin", format!("admin API on {addr} without a token"))
                    .hint("set admin.token, or keep the admin API on 127.0.0.1"),
            ),
            Some(addr) => parts.admin.listen = addr,
            None => p.push(Problem::new("--admin", format!("\"{a}\" is not an address")).hint("an address like 127.0.0.1:9901")),
        }
    }
}

/// A site whose runtime stack is code has App Service's built-in code container as main:
/// `--main` says what runs there locally; without it, `validate` says what is missing.
fn code_main(p: &mut json::Problems, options: &LoadOptions, code_stack: Option<(String, String)>, drafts: &mut Vec<parse::Draft>) {
    let has_main = drafts.iter().any(|d| d.is_main == Some(true));
    match (&options.main, code_stack) {
        (Some(_), _) if has_main => {
            let name = drafts.iter().find(|d| d.is_main == Some(true)).and_then(|d| d.name.clone()).unwrap_or_default();
            p.push(
                Problem::new("--main", format!("the spec has a main container already (\"{name}\")"))
                    .hint("--main is for sites whose main is their own code"),
            );
        }
        (Some(m), stack) => {
            let image =
                stack.as_ref().map_or("local/main".to_owned(), |(fx, _)| format!("appsvc/{}", fx.replace('|', ":").to_ascii_lowercase()));
            drafts.push(parse::Draft {
                path: "--main".into(),
                props_path: "--main".into(),
                name: Some("main".into()),
                name_path: "--main".into(),
                image: Some(image),
                is_main: Some(true),
                target_port: Some(m.port),
                target_port_path: "--main-port".into(),
                startup_command: Some(m.command.clone()),
                inherit: true,
                ..parse::Draft::default()
            });
        }
        (None, Some((fx, path))) if !has_main => p.push(
            Problem::new(
                path,
                format!("the site runs {fx} code as its main container (App Service's built-in one), which is not in the template"),
            )
            .hint("say how your code runs locally: sitecar up --main \"gunicorn app:app\" --main-port 8000"),
        ),
        (None, _) => {}
    }
}

/// Validates a parsed JSON document.
pub fn load(root: &serde_json::Value, options: &LoadOptions) -> Result<Spec, LoadError> {
    let mut p = json::Problems::default();
    let spec = read(&mut p, root, options);
    match spec {
        Some(spec) if p.0.is_empty() => Ok(spec),
        _ => Err(LoadError::Invalid { problems: p.0 }),
    }
}

fn read(p: &mut json::Problems, root: &serde_json::Value, options: &LoadOptions) -> Option<Spec> {
    let format = parse::detect(p, root)?;
    let mut app_settings = BTreeMap::new();
    let mut connection_strings = BTreeMap::new();
    let mut code_stack: Option<(String, String)> = None;
    let mut parts = validate::Parts {
        format,
        containers_path: "$".into(),
        drafts: Vec::new(),
        app_settings: BTreeMap::new(),
        app_settings_path: "$.appSettings".into(),
        connection_strings: BTreeMap::new(),
        proxy: ProxySettings::default(),
        health: HealthSettings::default(),
        health_names: Vec::new(),
        cache: CacheSettings::default(),
        offload: Vec::new(),
        admin: AdminSettings::default(),
        tracing: TracingSettings::default(),
        local: sections::LocalDraft::default(),
    };
    match format {
        SpecFormat::AzureCli => parts.drafts = parse::cli_array(p, root, "$"),
        SpecFormat::ArmTemplate => {
            let t = arm::read(p, root, &options.parameters, &options.app_settings);
            parts.containers_path = "$.resources".into();
            parts.drafts = t.drafts;
            app_settings.extend(t.settings);
            connection_strings.extend(t.connection_strings);
            code_stack = t.code_stack;
            parts.proxy.http2_to_main = t.http2_to_main.unwrap_or_default();
        }
        SpecFormat::Sitecar => {
            let mut doc = json::Obj::new(p, root, "$")?;
            if let Some((containers, path)) = doc.get("sitecontainers") {
                parts.drafts = parse::cli_array(p, containers, &path);
                parts.containers_path = path;
            }
            app_settings.extend(doc.string_map(p, "appSettings"));
            connection_strings = sections::connection_strings(p, &mut doc);
            parts.proxy = sections::proxy(p, &mut doc);
            (parts.health, parts.health_names) = sections::health(p, &mut doc);
            parts.cache = sections::cache(p, &mut doc);
            parts.offload = sections::offload(p, &mut doc);
            parts.admin = sections::admin(p, &mut doc);
            parts.tracing = sections::tracing(p, &mut doc);
            parts.local = sections::local(p, &mut doc);
            doc.ignore(&["$schema"]);
            doc.finish(p);
        }
    }
    command_line(p, options, &mut parts);
    code_main(p, options, code_stack, &mut parts.drafts);
    app_settings.extend(options.app_settings.clone());
    connection_strings.extend(options.connection_strings.clone());
    parts.app_settings = app_settings;
    parts.connection_strings = connection_strings;
    validate::build(p, parts)
}
