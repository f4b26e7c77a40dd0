//! `sitecar validate`: human or JSON output, exit 0 valid, 1 invalid, 2 unreadable.

use std::path::Path;
use std::process::ExitCode;

use sitecar_config::{LoadError, LoadOptions, Spec};

use crate::cli::SettingArgs;

/// Settings from the environment (`APPSETTING_*`, `*CONNSTR_*`), then the command line; template
/// parameters from their files, then `--parameter`; main's code. A parameters file that cannot be
/// read is the error.
pub fn load_options(args: &SettingArgs) -> Result<LoadOptions, String> {
    let (mut app_settings, connection_strings) = sitecar_config::env::settings_from_env(std::env::vars());
    app_settings.extend(args.settings.iter().cloned());
    let mut parameters = std::collections::BTreeMap::new();
    for file in &args.parameter_files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("--parameters {}: {e}", file.display()))?;
        parameters.extend(sitecar_config::parameters_file(&text).map_err(|e| format!("--parameters {}: {e}", file.display()))?);
    }
    parameters.extend(args.parameters.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))));
    let main = args.main.clone().map(|command| sitecar_config::MainCommand { command, port: args.main_port.unwrap_or(8000) });
    Ok(LoadOptions { app_settings, connection_strings, parameters, main, ..Default::default() })
}

pub fn run(file: &Path, json: bool, settings: &SettingArgs) -> ExitCode {
    let options = match load_options(settings) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sitecar validate: {e}");
            return ExitCode::from(2);
        }
    };
    let result = sitecar_config::load_file(file, &options);
    let shown = file.display();
    match (&result, json) {
        (Ok(spec), false) => {
            println!("{shown}: valid\n{}", summary(spec));
            for w in &spec.warnings {
                println!("{}", warning_line(w));
            }
        }
        (Ok(spec), true) => {
            let containers: Vec<_> = spec
                .containers
                .iter()
                .map(|c| serde_json::json!({"name": c.name, "image": c.image, "isMain": c.is_main, "targetPort": c.target_port}))
                .collect();
            let out = serde_json::json!({"valid": true, "format": spec.format, "runtime": spec.runtime, "containers": containers, "warnings": spec.warnings});
            println!("{out:#}");
        }
        (Err(LoadError::Unreadable { .. }), false) | (Err(LoadError::Syntax { .. }), false) => {
            eprintln!("{shown}: {}", result.as_ref().err().map(ToString::to_string).unwrap_or_default());
        }
        (Err(err @ LoadError::Invalid { problems }), false) => {
            eprintln!("{shown}: {err}");
            for p in problems {
                eprintln!("  {}: {}", p.path, p.message);
                if let Some(h) = &p.hint {
                    eprintln!("      hint: {h}");
                }
            }
        }
        (Err(err), true) => {
            let out = match err {
                LoadError::Unreadable { .. } => serde_json::json!({"valid": false, "error": err.to_string()}),
                _ => serde_json::json!({"valid": false, "problems": err.problems()}),
            };
            println!("{out:#}");
        }
    }
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(LoadError::Unreadable { .. }) => ExitCode::from(2),
        Err(_) => ExitCode::from(1),
    }
}

/// `  warning: PATH: MESSAGE (hint: ...)`.
pub fn warning_line(w: &sitecar_config::Problem) -> String {
    format!("  warning: {w}")
}

/// One line per container, main first.
pub fn summary(spec: &Spec) -> String {
    let mut lines = vec![format!("  format {:?}, runtime {:?}", spec.format, spec.runtime)];
    for c in &spec.containers {
        let role = if c.is_main { "main" } else { "sidecar" };
        let port = c.target_port.map(|p| format!(":{p}")).unwrap_or_else(|| "-".into());
        lines.push(format!("  {role:<8} {:<16} {port:<7} {}", c.name, c.image));
    }
    lines.join("\n")
}
