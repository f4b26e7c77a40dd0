//! sitecar: parse the command line, then hand over to the library crates. Wiring only.

mod cli;
mod demo;
mod front;
mod observe;
mod up;
mod validate;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    raise_fd_limit();
    match cli.command {
        Command::Validate(a) => validate::run(&a.file, a.json, &a.settings),
        Command::Up(a) => up::up(a),
        Command::Proxy(a) => up::proxy(*a),
        Command::Status(a) => observe::status_command(&a.admin, a.json),
        Command::Logs(a) => observe::logs_command(&a.admin, &a.names, a.follow),
        Command::Export(a) => export(&a),
        Command::Reload(a) => observe::reload_command(&a.admin, a.json),
        Command::Completions(a) => {
            clap_complete::generate(a.shell, &mut <Cli as clap::CommandFactory>::command(), "sitecar", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => match clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sitecar man: {e}");
                ExitCode::from(1)
            }
        },
        Command::DemoApp(a) => demo_main(demo::app(a.port)),
        Command::DemoSidecar(a) => demo_main(demo::sidecar(a.port)),
        other => not_yet(&other),
    }
}

/// `sitecar export`: a valid spec written for Kubernetes or Azure on stdout; an invalid one is
/// refused with every problem, as `validate` lists them.
fn export(a: &cli::ExportArgs) -> ExitCode {
    let spec = match sitecar_config::load_file(&a.file, &validate::load_options(&a.settings)) {
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
    match (a.target, a.arm) {
        (cli::ExportTarget::Azure, false) => println!("{}", pretty(&sitecar_config::export::azure_cli(&spec))),
        (cli::ExportTarget::Azure, true) => println!("{}", pretty(&sitecar_config::export::arm_template(&spec))),
        (cli::ExportTarget::Kubernetes, _) => {
            // JSON documents are YAML documents: one stream for `kubectl apply -f`.
            for doc in sitecar_config::export::kubernetes(&spec) {
                println!("---\n{}", pretty(&doc));
            }
        }
    }
    ExitCode::SUCCESS
}

/// A subcommand whose issue has not landed: refuse plainly, never pretend success.
fn not_yet(command: &Command) -> ExitCode {
    let name = format!("{command:?}");
    let name = name.split(['(', ' ']).next().unwrap_or("this command").to_ascii_lowercase();
    eprintln!("sitecar {name}: not yet available in this build");
    ExitCode::from(2)
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
