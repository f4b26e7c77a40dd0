//! `sitecar up`: load the spec, start the supervisor, turn signals into an orderly stop, and
//! exit with main's status.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use sitecar_config::{LoadError, Spec};
use sitecar_control::{Options, Supervisor};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;

pub fn run(args: UpArgs) -> ExitCode {
    let (spec, base_dir) = match &args.file {
        Some(file) => match sitecar_config::load_file(file, &crate::validate::load_options(&args.settings)) {
            Ok(spec) => (spec, file.parent().map(Path::to_path_buf).unwrap_or_default()),
            Err(e) => return refuse(file, &e),
        },
        None => {
            eprintln!("sitecar up: the embedded demo stack is not available in this build; give a spec file");
            return ExitCode::from(2);
        }
    };
    let base_dir = if base_dir.as_os_str().is_empty() { std::env::current_dir().unwrap_or_default() } else { base_dir };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sitecar: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(Arc::new(spec), base_dir));
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn refuse(file: &Path, e: &LoadError) -> ExitCode {
    eprintln!("sitecar up: {}: {e}; nothing was started", file.display());
    for p in e.problems() {
        eprintln!("  {p}");
    }
    ExitCode::from(if matches!(e, LoadError::Unreadable { .. }) { 2 } else { 1 })
}

async fn serve(spec: Arc<Spec>, base_dir: std::path::PathBuf) -> i32 {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let options = Options { base_dir, console: true, colour, adopt_orphans: true };
    let supervisor = match Supervisor::prepare(spec, options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sitecar up: {e}");
            return 1;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    supervisor.run(shutdown).await
}

/// SIGTERM and SIGINT stop the stack in order; SIGHUP asks for a reload.
async fn signals(shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => shutdown.cancel(),
            _ = int.recv() => shutdown.cancel(),
            _ = hup.recv() => tracing::warn!("SIGHUP: reloading the spec is not supported yet; the running stack is unchanged"),
        }
    }
}
