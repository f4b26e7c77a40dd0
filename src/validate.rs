//! `sitecar validate`: human or JSON output, exit 0 valid, 1 invalid, 2 unreadable.

use std::path::Path;
use std::process::ExitCode;

use sitecar_config::{report, LoadOptions};

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
    if json {
        println!("{:#}", report::json(&result));
    } else {
        let (out, err) = report::human(&result, &file.display().to_string());
        print!("{out}");
        eprint!("{err}");
    }
    ExitCode::from(report::exit_code(&result))
}
