//! sitecar: parse the command line, then hand over to the library crates. Wiring only.

mod cli;
mod demo;
mod observe;
mod up;
mod validate;

use std::process::ExitCode;

use clap::Parser;
use sitecar_config::export;
use sitecar_proxy::admin::client::{self, Console};

use cli::{Cli, Command};

#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    raise_fd_limit();
    match cli.command {
        Command::Validate(a) => validate::run(&a.file, a.json, &a.settings),
        Command::Up(a) => up::up(a),
        Command::Proxy(a) => up::proxy(*a),
        Command::Status(a) => with_stack("status", &a.target, |admin, c| client::status(admin, a.json, c)),
        Command::Logs(a) => with_stack("logs", &a.target(), |admin, c| client::logs(admin, &a.names, a.follow, c)),
        Command::Down(a) => with_stack("down", &a, client::down),
        Command::Restart(a) => with_stack("restart", &a.target, |admin, c| client::restart(admin, &a.names, c)),
        Command::Export(a) => export(&a),
        Command::Reload(a) => with_stack("reload", &a.target, |admin, c| client::reload(admin, a.json, c)),
        Command::Import(a) => import(&a),
        Command::Completions(a) => {
            clap_complete::generate(a.shell, &mut <Cli as clap::CommandFactory>::command(), "sitecar", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man(a) => man(a.dir.as_deref()),
        Command::DemoApp(a) => demo_main(demo::app(a.port)),
        Command::DemoSidecar(a) => demo_main(demo::sidecar(a.port)),
    }
}

/// `sitecar man`: the page on stdout, or every page (one per subcommand) into a directory.
fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let cmd = <Cli as clap::CommandFactory>::command();
    let result = match dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sitecar man: {e}");
            ExitCode::from(1)
        }
    }
}

/// Finds the running stack a command means (see `sitecar_control::runfile::locate`) and runs
/// `f` on its admin address; says where the address came from when it cannot be reached.
fn with_stack(what: &str, target: &cli::TargetArgs, f: impl FnOnce(&str, &mut Console) -> std::io::Result<u8>) -> ExitCode {
    let located = validate::load_options(&cli::SettingArgs::default())
        .and_then(|o| sitecar_control::runfile::locate(target.admin.as_deref(), target.file.as_deref(), &o));
    match located {
        Ok((admin, from)) => {
            if std::net::TcpStream::connect(&admin).is_err() {
                eprintln!("sitecar {what}: no running stack answers at {admin} (from {from})");
                return ExitCode::from(1);
            }
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            // A closed stdout (`| head`) ends the command quietly.
            ExitCode::from(f(&admin, &mut Console { out: &mut out, err: &mut err }).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("sitecar {what}: {e}");
            ExitCode::from(2)
        }
    }
}

/// `sitecar export`: a valid spec written for Kubernetes or Azure on stdout; an invalid one is
/// refused with every problem, as `validate` lists them.
fn export(a: &cli::ExportArgs) -> ExitCode {
    let options = match validate::load_options(&a.settings) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sitecar export: {e}");
            return ExitCode::from(2);
        }
    };
    let spec = match sitecar_config::load_file(&a.file, &options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sitecar export: {}: {e}", a.file.display());
            for p in e.problems() {
                eprintln!("  {p}");
            }
            return ExitCode::from(if matches!(e, sitecar_config::LoadError::Unreadable { .. }) { 2 } else { 1 });
        }
    };
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let name = export::app_name(&spec, a.name.as_deref(), &a.file);
    if a.target == cli::ExportTarget::Azure {
        for line in export::not_carried_to_azure(&spec) {
            eprintln!("sitecar export: not carried over: {line}");
        }
    }
    match (a.target, a.arm, &a.dir) {
        (cli::ExportTarget::Azure, false, Some(dir)) => match export::write_azure_files(&spec, dir, &name) {
            Ok(said) => eprintln!("sitecar export: {said}"),
            Err(e) => {
                eprintln!("sitecar export: {e}");
                return ExitCode::from(2);
            }
        },
        (cli::ExportTarget::Azure, false, None) => {
            println!("{}", pretty(&export::azure_cli(&spec)));
            if !spec.app_settings.is_empty() || !spec.connection_strings.is_empty() {
                eprintln!(
                    "sitecar export: the {} app setting(s) and {} connection string(s) live on the site, not in this file: give --dir DIR to write them for `az webapp config appsettings set --settings @FILE`",
                    spec.app_settings.len(),
                    spec.connection_strings.len()
                );
            }
        }
        (cli::ExportTarget::Azure, true, _) => println!("{}", pretty(&export::arm_template(&spec, &name))),
        (cli::ExportTarget::Kubernetes, _, _) => {
            let docs = export::kubernetes(&spec, &name);
            if a.output == "json" {
                println!("{}", pretty(&serde_json::Value::Array(docs)));
            } else {
                print!("{}", export::to_yaml(&docs));
            }
        }
    }
    ExitCode::SUCCESS
}

/// `sitecar import compose FILE`: a sitecar document on stdout, a warning per ignored field on
/// stderr; exit 1 with every refusal when something cannot map.
fn import(a: &cli::ImportArgs) -> ExitCode {
    let cli::ImportFormat::Compose = a.format;
    let text = match std::fs::read_to_string(&a.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sitecar import: cannot read {}: {e}", a.file.display());
            return ExitCode::from(2);
        }
    };
    match sitecar_config::compose::import(&text, &sitecar_config::compose::project_of(&a.file)) {
        Ok(imported) => {
            for w in &imported.warnings {
                eprintln!("{}: {w}", a.file.display());
            }
            // Never a document `validate` would refuse: its problems are the import's.
            if let Err(e) = sitecar_config::load(&imported.document, &sitecar_config::LoadOptions::default()) {
                eprintln!("sitecar import: {}: the spec it makes is not valid; nothing written", a.file.display());
                for p in e.problems() {
                    eprintln!("  {p}");
                }
                return ExitCode::from(1);
            }
            println!("{}", serde_json::to_string_pretty(&imported.document).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("sitecar import: {}: {} problem(s); nothing written", a.file.display(), errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            ExitCode::from(1)
        }
    }
}

/// sitecar's own structured log on stderr; `RUST_LOG` tunes it (default: warnings, since the log
/// stream already shows every container event).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn demo_main(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Raises the soft open-file limit to the hard one: every client and upstream connection is a
/// descriptor, and the usual soft limit of 1024 is far below `proxy.maxConnections`.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            }
        }
    }
}
