//! What `sitecar validate` says of a load: for people (a summary line per container, each
//! problem with its JSON path and hint) or as JSON.

use serde_json::{json, Value};

use crate::error::LoadError;
use crate::model::Spec;

/// The exit code of a load: 0 valid, 1 invalid, 2 unreadable.
pub fn exit_code(result: &Result<Spec, LoadError>) -> u8 {
    match result {
        Ok(_) => 0,
        Err(LoadError::Unreadable { .. }) => 2,
        Err(_) => 1,
    }
}

/// For people: what goes to stdout (a valid spec's summary and warnings) and to stderr (why
/// `shown` is not valid, every problem with its path and hint).
pub fn human(result: &Result<Spec, LoadError>, shown: &str) -> (String, String) {
    match result {
        Ok(spec) => {
            let mut out = format!("{shown}: valid\n  format {:?}, runtime {:?}\n", spec.format, spec.runtime);
            for c in &spec.containers {
                let role = if c.is_main { "main" } else { "sidecar" };
                let port = c.target_port.map(|p| format!(":{p}")).unwrap_or_else(|| "-".into());
                out += &format!("  {role:<8} {:<16} {port:<7} {}\n", c.name, c.image);
            }
            for w in &spec.warnings {
                out += &format!("  warning: {w}\n");
            }
            (out, String::new())
        }
        Err(err @ LoadError::Invalid { problems }) => {
            let mut err = format!("{shown}: {err}\n");
            for p in problems {
                err += &format!("  {}: {}\n", p.path, p.message);
                if let Some(h) = &p.hint {
                    err += &format!("      hint: {h}\n");
                }
            }
            (String::new(), err)
        }
        Err(e) => (String::new(), format!("{shown}: {e}\n")),
    }
}

/// As JSON: `{valid: true, format, runtime, containers, warnings}` or `{valid: false, problems}`
/// (`error` for a file that cannot be read).
pub fn json(result: &Result<Spec, LoadError>) -> Value {
    match result {
        Ok(spec) => {
            let containers: Vec<Value> = spec
                .containers
                .iter()
                .map(|c| json!({"name": c.name, "image": c.image, "isMain": c.is_main, "targetPort": c.target_port}))
                .collect();
            json!({"valid": true, "format": spec.format, "runtime": spec.runtime, "containers": containers, "warnings": spec.warnings})
        }
        Err(err @ LoadError::Unreadable { .. }) => json!({"valid": false, "error": err.to_string()}),
        Err(err) => json!({"valid": false, "problems": err.problems()}),
    }
}
