//! ARM templates as Azure users and `bicep build` write them: resources as an array or, with
//! `languageVersion: "2.0"`, an object keyed by symbolic name; child resources top-level
//! (`site/main`, however the name is built) or nested under their site; `condition`; app settings
//! and connection strings from the site's `siteConfig` and from `Microsoft.Web/sites/config`
//! resources; the site's runtime stack (`linuxFxVersion`). Every string goes through the
//! expression evaluator in [`expr`].

pub(crate) mod expr;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::Problem;
use crate::json::{index, join, Problems};
use crate::model::{ConnectionString, ConnectionType, Secret};
use crate::parse::{read_properties, Draft};
use expr::{get_ci, EvalError, Scope};

/// What a template says runs.
#[derive(Default)]
pub(crate) struct Template {
    pub drafts: Vec<Draft>,
    /// App settings with the path each was defined at.
    pub settings: Vec<(String, String)>,
    pub connection_strings: Vec<(String, ConnectionString)>,
    /// The site's runtime stack when it is code (`PYTHON|3.12`), with its path: App Service's
    /// built-in code container is then main.
    pub code_stack: Option<(String, String)>,
    /// `siteConfig.http20ProxyFlag`: which requests reach main over HTTP/2.
    pub http2_to_main: Option<crate::model::Http2ToMain>,
}

/// Reads a template; `given` are parameter values for the deployment, `outside` the app settings
/// given outside it (they stand in for values the template cannot know locally).
pub(crate) fn read(p: &mut Problems, root: &Value, given: &BTreeMap<String, Value>, outside: &BTreeMap<String, String>) -> Template {
    let mut t = Template::default();
    let scope = Scope::new(get_ci(root, "parameters"), get_ci(root, "variables"), given);
    for name in given.keys() {
        if get_ci(root, "parameters").and_then(|ps| get_ci(ps, name)).is_none() {
            p.push(Problem::new(format!("--parameter {name}"), format!("the template declares no parameter '{name}'")));
        }
    }
    let mut reader = Reader { p, scope: &scope, outside, t: &mut t };
    match get_ci(root, "resources") {
        Some(Value::Array(list)) => {
            let items: Vec<(String, &Value)> = list.iter().enumerate().map(|(i, r)| (index("$.resources", i), r)).collect();
            reader.resources(&items, None);
        }
        Some(Value::Object(map)) => {
            let items: Vec<(String, &Value)> = map.iter().map(|(k, r)| (join("$.resources", k), r)).collect();
            reader.resources(&items, None);
        }
        _ => reader.p.at("$.resources", "expected the template's resources (an array, or an object with languageVersion 2.0)"),
    }
    if t.drafts.is_empty() && t.code_stack.is_none() {
        p.push(
            Problem::new("$.resources", "no Microsoft.Web/sites/sitecontainers resources in this template")
                .hint("sitecontainers are resources of type \"Microsoft.Web/sites/sitecontainers\" named \"<site>/<container>\""),
        );
    }
    t
}

struct Reader<'a, 'b> {
    p: &'a mut Problems,
    scope: &'a Scope<'b>,
    outside: &'a BTreeMap<String, String>,
    t: &'a mut Template,
}

impl Reader<'_, '_> {
    /// Reports an expression that cannot be evaluated at `path`.
    fn report(&mut self, path: &str, e: EvalError) {
        match e {
            EvalError::Unknown { what, supply } => {
                self.p.push(Problem::new(path, format!("{what} cannot be known without deploying")).hint(supply));
            }
            EvalError::Invalid(m) => self.p.push(Problem::new(path, format!("template expression: {m}"))),
        }
    }

    /// `v` with every expression evaluated; one that cannot be is reported at its own path and
    /// stands as a marker (the load fails on the problem, so the marker never runs anything).
    fn eval(&mut self, v: &Value, path: &str) -> Option<Value> {
        Some(match v {
            Value::String(_) => match self.scope.value(v) {
                Ok(v) => v,
                Err(e) => {
                    self.report(path, e);
                    Value::String("<not known locally>".into())
                }
            },
            Value::Array(a) => Value::Array(a.iter().enumerate().filter_map(|(i, x)| self.eval(x, &index(path, i))).collect()),
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.eval(x, &join(path, k))?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// A single value (a name, a condition): `None` when it cannot be evaluated (reported).
    fn eval_one(&mut self, v: &Value, path: &str) -> Option<Value> {
        match self.scope.value(v) {
            Ok(v) => Some(v),
            Err(e) => {
                self.report(path, e);
                None
            }
        }
    }

    /// Resources of the template, or the children of `parent` (its type, for short child types).
    fn resources(&mut self, items: &[(String, &Value)], parent: Option<&str>) {
        for (rp, r) in items {
            if let Some(c) = get_ci(r, "condition") {
                match self.eval_one(c, &join(rp, "condition")) {
                    Some(Value::Bool(false)) => continue,
                    Some(Value::Bool(true)) | None => {}
                    Some(other) => self.p.at(&join(rp, "condition"), format!("a condition must be true or false, not {other}")),
                }
            }
            if get_ci(r, "existing").and_then(Value::as_bool) == Some(true) {
                continue; // a reference to a resource deployed elsewhere
            }
            let short = get_ci(r, "type").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
            let kind = match parent {
                Some(parent) if !short.contains('/') => format!("{parent}/{short}"),
                _ => short,
            };
            let name = match get_ci(r, "name") {
                Some(n) => self.eval_one(n, &join(rp, "name")).map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                }),
                None => None,
            };
            if kind.ends_with("/sitecontainers") {
                self.container(rp, r, name.as_deref());
            } else if kind == "microsoft.web/sites" || kind == "microsoft.web/sites/slots" {
                self.site(rp, r, &kind);
            } else if kind == "microsoft.web/sites/config" || kind == "microsoft.web/sites/slots/config" {
                self.config(rp, r, name.as_deref().unwrap_or_default());
            }
        }
    }

    fn container(&mut self, rp: &str, r: &Value, name: Option<&str>) {
        let mut draft = Draft { path: rp.to_owned(), name_path: join(rp, "name"), ..Draft::default() };
        if get_ci(r, "copy").is_some() {
            self.p.push(
                Problem::new(join(rp, "copy"), "copy loops of sitecontainers are not expanded")
                    .hint("declare each container as its own resource"),
            );
        }
        match name {
            Some(full) => {
                let last = full.rsplit('/').next().unwrap_or_default().trim();
                if last.is_empty() {
                    self.p.push(
                        Problem::new(&draft.name_path, format!("no container name in \"{full}\"")).hint("name it \"<site>/<container>\""),
                    );
                } else {
                    draft.name = Some(last.to_owned());
                }
            }
            None if get_ci(r, "name").is_none() => self.p.at(&draft.name_path, "missing name"),
            None => {}
        }
        let props_path = join(rp, "properties");
        match get_ci(r, "properties") {
            Some(props) => {
                if let Some(resolved) = self.eval(props, &props_path) {
                    read_properties(self.p, &resolved, &props_path, &mut draft);
                }
            }
            None => self.p.at(&props_path, "missing \"properties\""),
        }
        self.t.drafts.push(draft);
    }

    fn site(&mut self, rp: &str, r: &Value, kind: &str) {
        let config_path = join(&join(rp, "properties"), "siteConfig");
        if let Some(config) = get_ci(r, "properties").and_then(|v| get_ci(v, "siteConfig")) {
            self.site_config(&config_path, config);
        }
        let children: Vec<(String, &Value)> = match get_ci(r, "resources") {
            Some(Value::Array(list)) => list.iter().enumerate().map(|(i, c)| (index(&join(rp, "resources"), i), c)).collect(),
            _ => Vec::new(),
        };
        self.resources(&children, Some(kind));
    }

    /// A site's `siteConfig` (or the properties of its `config/web` resource).
    fn site_config(&mut self, path: &str, config: &Value) {
        if let Some(fx) = get_ci(config, "linuxFxVersion") {
            let fx_path = join(path, "linuxFxVersion");
            if let Some(Value::String(fx)) = self.eval_one(fx, &fx_path) {
                if !fx.eq_ignore_ascii_case("sitecontainers") && !fx.trim().is_empty() {
                    self.t.code_stack = Some((fx, fx_path));
                }
            }
        }
        if let Some(flag) = get_ci(config, "http20ProxyFlag") {
            let flag_path = join(path, "http20ProxyFlag");
            if let Some(v) = self.eval_one(flag, &flag_path) {
                let n = crate::json::integer_value(self.p, &v, &flag_path, 0, 2);
                self.t.http2_to_main = n.and_then(|n| crate::model::Http2ToMain::from_flag(n as i64));
            }
        }
        if let Some(Value::Array(list)) = get_ci(config, "appSettings") {
            for (i, item) in list.iter().enumerate() {
                let ip = index(&join(path, "appSettings"), i);
                let name = get_ci(item, "name").and_then(Value::as_str);
                match (name, get_ci(item, "value")) {
                    (Some(n), Some(v)) => self.setting(n, v, &join(&ip, "value")),
                    _ => self.p.at(&ip, "an app setting is {\"name\": ..., \"value\": ...}"),
                }
            }
        }
        if let Some(Value::Array(list)) = get_ci(config, "connectionStrings") {
            for (i, item) in list.iter().enumerate() {
                let ip = index(&join(path, "connectionStrings"), i);
                let name = get_ci(item, "name").and_then(Value::as_str);
                let value = get_ci(item, "connectionString").or_else(|| get_ci(item, "value"));
                match (name, value) {
                    (Some(n), Some(v)) => self.connection_string(n, v, get_ci(item, "type"), &ip),
                    _ => self.p.at(&ip, "a connection string is {\"name\": ..., \"connectionString\": ..., \"type\": ...}"),
                }
            }
        }
    }

    /// `Microsoft.Web/sites/config` named `appsettings`, `connectionstrings` or `web`.
    fn config(&mut self, rp: &str, r: &Value, name: &str) {
        let which = name.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
        let props_path = join(rp, "properties");
        let Some(props) = get_ci(r, "properties") else { return };
        match which.as_str() {
            "appsettings" => {
                if let Value::Object(map) = props {
                    for (k, v) in map {
                        self.setting(k, v, &join(&props_path, k));
                    }
                }
            }
            "connectionstrings" => {
                if let Value::Object(map) = props {
                    for (k, v) in map {
                        let cp = join(&props_path, k);
                        match get_ci(v, "value") {
                            Some(value) => self.connection_string(k, value, get_ci(v, "type"), &cp),
                            None => self.p.at(&cp, "a connection string is {\"value\": ..., \"type\": ...}"),
                        }
                    }
                }
            }
            "web" => self.site_config(&props_path, props),
            _ => {}
        }
    }

    /// One app setting; a value only a deployment knows may be given with `--setting`.
    fn setting(&mut self, name: &str, v: &Value, path: &str) {
        match self.scope.value(v) {
            Ok(Value::String(s)) => self.t.settings.push((name.to_owned(), s)),
            Ok(other) => self.t.settings.push((name.to_owned(), other.to_string())),
            Err(_) if self.outside.contains_key(name) => {} // given outside the template; it wins anyway
            Err(EvalError::Unknown { what, .. }) => self.p.push(
                Problem::new(path, format!("app setting {name} is {what}, which cannot be known without deploying"))
                    .hint(format!("give its value: --setting {name}=VALUE (or APPSETTING_{name} in the environment)")),
            ),
            Err(e) => self.report(path, e),
        }
    }

    fn connection_string(&mut self, name: &str, v: &Value, kind: Option<&Value>, path: &str) {
        let kind = match kind.map(|k| self.scope.value(k)) {
            None => Some(ConnectionType::Custom),
            Some(Ok(Value::String(k))) => ConnectionType::parse(&k).or_else(|| {
                self.p.at(&join(path, "type"), format!("unknown connection string type \"{k}\""));
                None
            }),
            Some(Ok(other)) => {
                self.p.at(&join(path, "type"), format!("a connection string type is a name, not {other}"));
                None
            }
            Some(Err(e)) => {
                self.report(&join(path, "type"), e);
                None
            }
        };
        match self.scope.value(v) {
            Ok(Value::String(s)) => {
                if let Some(kind) = kind {
                    self.t.connection_strings.push((name.to_owned(), ConnectionString { value: Secret::new(s), kind }));
                }
            }
            Ok(other) => self.p.at(path, format!("a connection string is text, not {other}")),
            Err(EvalError::Unknown { what, .. }) => self.p.push(
                Problem::new(path, format!("connection string {name} is {what}, which cannot be known without deploying"))
                    .hint(format!("give it in the environment: CUSTOMCONNSTR_{name}=VALUE (or the prefix of its type)")),
            ),
            Err(e) => self.report(path, e),
        }
    }
}

/// A parameters file as `az deployment group create --parameters @file` takes it:
/// `{"parameters": {"name": {"value": ...}}}` (or the bare map).
pub fn parameters_file(text: &str) -> Result<BTreeMap<String, Value>, String> {
    let root: Value = serde_json::from_str(&strip_comments(text)).map_err(|e| format!("not JSON: {e}"))?;
    let map = get_ci(&root, "parameters").unwrap_or(&root);
    let Value::Object(map) = map else { return Err("expected {\"parameters\": {\"name\": {\"value\": ...}}}".into()) };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match get_ci(v, "value") {
            Some(v) => {
                out.insert(k.clone(), v.clone());
            }
            None if get_ci(v, "reference").is_some() => {
                return Err(format!("parameter '{k}' is a Key Vault reference: give its value with --parameter {k}=VALUE"))
            }
            None => return Err(format!("parameter '{k}' has no \"value\"")),
        }
    }
    Ok(out)
}

/// `//` and `/* */` comments, which `az` accepts in templates, blanked out (newlines kept, so a
/// syntax error's line and column stay right).
pub fn strip_comments(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("//") && !text.contains("/*") {
        return std::borrow::Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_string {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 1;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
        } else if c == b'"' {
            in_string = true;
            out.push(c);
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            out.extend_from_slice(b"  ");
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
            if i < b.len() {
                out.extend_from_slice(b"  ");
                i += 2;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_blanked_outside_strings_only() {
        let text = "{\n // a comment\n \"url\": \"http://x/*y*/\", /* block\n more */ \"a\": 1 // end\n}";
        let clean = strip_comments(text);
        let v: Value = serde_json::from_str(&clean).unwrap();
        assert_eq!(v["url"], "http://x/*y*/");
        assert_eq!(v["a"], 1);
        assert_eq!(clean.lines().count(), text.lines().count(), "lines kept");
    }

    #[test]
    fn parameters_files_as_az_takes_them() {
        let got = parameters_file(
            r#"{"$schema": "x", "contentVersion": "1.0.0.0", "parameters": {"site": {"value": "shop"}, "n": {"value": 2}}}"#,
        )
        .unwrap();
        assert_eq!(got["site"], "shop");
        assert_eq!(got["n"], 2);
        assert!(parameters_file(r#"{"parameters": {"pw": {"reference": {"keyVault": {}}}}}"#).unwrap_err().contains("--parameter pw="));
    }
}
