//! `sitecar up` and `sitecar proxy`: load the spec, start the supervisor and the front door,
//! turn signals into an orderly stop (front door drains first, then main, then sidecars), and
//! exit with main's status.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use sitecar_config::standalone::{offload_rules, Standalone};
use sitecar_config::{LoadError, LoadOptions, Spec};
use sitecar_control::{reload, runfile};
use sitecar_control::{Options, Supervisor};
use sitecar_proxy::cache::Cache;
use sitecar_proxy::front::{self, AtEdge, Listeners, Reconfigure};
use sitecar_proxy::FrontDoor;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::cli::{ProxyArgs, UpArgs};

/// One worker thread gets tokio's current-thread scheduler (no work-stealing machinery, as an
/// nginx worker); more get the multi-thread one.
fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(b.enable_all().build()?)
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

pub fn up(args: UpArgs) -> ExitCode {
    let mut options = match crate::validate::load_options(&args.settings) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sitecar up: {e}");
            return ExitCode::from(2);
        }
    };
    options.listen = args.listen.clone();
    options.admin = args.admin.clone();
    let loaded = match &args.file {
        Some(file) => sitecar_config::load_file(file, &options).map(|s| (s, file.parent().map(Path::to_path_buf).unwrap_or_default())),
        None => match crate::demo::spec() {
            Ok(doc) => sitecar_config::load(&doc, &options).map(|s| (s, PathBuf::new())),
            Err(e) => {
                eprintln!("sitecar up: cannot build the demo stack: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let (spec, base_dir) = match loaded {
        Ok(x) => x,
        Err(e) => return refuse(args.file.as_deref().unwrap_or(Path::new("demo")), &e),
    };
    for w in &spec.warnings {
        eprintln!("sitecar up: warning: {w}");
    }
    let base_dir = if base_dir.as_os_str().is_empty() { std::env::current_dir().unwrap_or_default() } else { base_dir };
    let rt = match runtime(spec.proxy.threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sitecar: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let source = args.file.clone().map(|file| reload::Source { file, options, watch: args.watch });
    exit(rt.block_on(serve_stack(Arc::new(spec), base_dir, source)))
}

/// The front door's part of a reload: new listeners first, then settings, cache bounds and
/// offload rules for new connections.
struct FrontReload {
    cache: Arc<Cache>,
    front: tokio::sync::mpsc::UnboundedSender<Reconfigure>,
    base_dir: PathBuf,
}

impl reload::Front for FrontReload {
    type Fresh = front::Fresh;

    fn prepare(&mut self, old: &Spec, new: &Spec) -> Result<front::Fresh, String> {
        front::bind_fresh(&old.proxy, &new.proxy).map_err(|e| listen_error(&e))
    }

    fn commit(&mut self, spec: &Arc<Spec>, fresh: front::Fresh) {
        self.cache.reconfigure(&spec.cache);
        let at_edge =
            AtEdge { cache: spec.cache.enabled.then(|| self.cache.clone()), offload: offload_rules(&spec.offload, &self.base_dir) };
        let _ = self.front.send(Reconfigure { settings: spec.proxy.clone(), at_edge, fresh });
    }
}

fn refuse(file: &Path, e: &LoadError) -> ExitCode {
    eprintln!("sitecar up: {}: {e}; nothing was started", file.display());
    for p in e.problems() {
        eprintln!("  {p}");
    }
    ExitCode::from(if matches!(e, LoadError::Unreadable { .. }) { 2 } else { 1 })
}

async fn serve_stack(spec: Arc<Spec>, base_dir: PathBuf, source: Option<reload::Source>) -> i32 {
    if let Err(e) = front::check_tracing(&spec.tracing) {
        eprintln!("sitecar up: {e}; nothing was started");
        return 1;
    }
    // One `up` per stack: a second would take the first one's containers for leftovers.
    let run_file = runfile::path(&base_dir, &spec.local.storage_root);
    if let Some(pid) = runfile::running(&run_file) {
        eprintln!(
            "sitecar up: this stack is already running (pid {pid}, {}): `sitecar down` stops it; nothing was started",
            run_file.display()
        );
        return 1;
    }
    let listeners = match bind(&spec.proxy) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sitecar up: {e}; nothing was started");
            return 1;
        }
    };
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let offload = offload_rules(&spec.offload, &base_dir);
    let base_dir_for_reload = base_dir.clone();
    let options = Options { base_dir, console: true, colour, adopt_orphans: true };
    let supervisor = match Supervisor::prepare(spec.clone(), options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sitecar up: {e}");
            return 1;
        }
    };
    let handle = supervisor.handle();
    for url in listeners.urls() {
        handle.logs.event("sitecar", &format!("front door listening on {url} -> main at {}", handle.main_addr));
    }

    let ready_rx = handle.ready();

    let stop_proxy = CancellationToken::new();
    let stop_stack = CancellationToken::new();

    // The admin API: metrics, status, logs, restarts. Up until the whole stack has stopped.
    let registry = prometheus::Registry::new();
    let (metrics, container_metrics) = match observability(&registry) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("sitecar up: metrics: {e}");
            return 1;
        }
    };
    // The cache exists even when off, so that a reload can turn it on.
    let cache = match Cache::new(&spec.cache, Some(&registry)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sitecar up: cache: {e}");
            return 1;
        }
    };
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let (front_tx, front_rx) = tokio::sync::mpsc::unbounded_channel();
    let admin_listener = match tokio::net::TcpListener::bind(spec.admin.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sitecar up: cannot listen on {} for the admin API: {e}; nothing was started", spec.admin.listen);
            return 1;
        }
    };
    let stack_view = crate::observe::Stack {
        handle: handle.clone(),
        ready: ready_rx.clone(),
        listeners: listeners.urls(),
        metrics: std::sync::Mutex::new(container_metrics),
        reload: source.as_ref().map(|_| reload_tx.clone()),
        shutdown: stop_proxy.clone(),
    };
    let span_registry = registry.clone();
    let admin = Arc::new(sitecar_proxy::admin::Admin {
        registry,
        token: spec.admin.token.as_ref().map(|t| t.expose().to_owned()),
        stack: Arc::new(stack_view),
        http: Some(metrics.clone()),
        cache: Some(cache.clone()),
    });
    handle.logs.event("sitecar", &format!("admin API on http://{} (/status /metrics /logs/<name> /healthz /readyz)", spec.admin.listen));
    // Found by `status`, `logs`, `reload`, `restart` and `down`; gone when `up` ends.
    let _run_file = match runfile::RunFile::write(
        run_file.clone(),
        spec.admin.listen,
        source.as_ref().map(|s| s.file.as_path()),
        &spec.local.site_name,
    ) {
        Ok(f) => Some(f),
        Err(e) => {
            handle
                .logs
                .event("sitecar", &format!("cannot write {} ({e}): give other commands --admin {}", run_file.display(), spec.admin.listen));
            None
        }
    };
    let stop_admin = CancellationToken::new();
    tokio::spawn(sitecar_proxy::admin::serve(admin_listener, admin, stop_admin.clone()));
    tokio::spawn(signals(stop_proxy.clone(), source.as_ref().map(|_| reload_tx.clone())));
    if let Some(source) = source {
        if source.watch {
            tokio::spawn(reload::watch_file(source.file.clone(), reload_tx.clone()));
        }
        let front = FrontReload { cache: cache.clone(), front: front_tx, base_dir: base_dir_for_reload };
        tokio::spawn(reload::serve(source, reload_rx, handle.clone(), spec.clone(), front));
    }
    let logs = handle.logs.clone();
    let access: front::Sink =
        Box::new(move |line: &str| logs.push(&Arc::from("front-door"), sitecar_control::logs::Stream::Stdout, line.as_bytes()));
    let proxy = tokio::spawn({
        let spec = spec.clone();
        let stop_proxy = stop_proxy.clone();
        let stop_stack = stop_stack.clone();
        async move {
            let at_edge = AtEdge { cache: spec.cache.enabled.then_some(cache), offload };
            let recording = front::Recording {
                access: Some(access),
                metrics: Some(metrics),
                tracing: spec.tracing.clone(),
                registry: Some(span_registry),
            };
            let front = FrontDoor::new(spec.proxy.clone(), at_edge, handle.main_addr, ready_rx, recording);
            front.run(listeners, stop_proxy, Some(front_rx)).await;
            // The front door has drained: now main, then the sidecars.
            stop_stack.cancel();
        }
    });
    let code = supervisor.run(stop_stack).await;
    stop_proxy.cancel();
    let _ = proxy.await;
    stop_admin.cancel();
    code
}

pub fn proxy(args: ProxyArgs) -> ExitCode {
    let spec = match &args.spec {
        Some(file) => match sitecar_config::load_file(file, &LoadOptions::default()) {
            Ok(spec) => Some((spec, file.parent().unwrap_or(Path::new("")))),
            Err(e) => return refuse(file, &e),
        },
        None => None,
    };
    let standalone = match Standalone::new(spec, &args.flags()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sitecar proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = front::check_tracing(&standalone.tracing) {
        eprintln!("sitecar proxy: {e}");
        return ExitCode::from(2);
    }
    let rt = match runtime(standalone.proxy.threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sitecar: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    exit(rt.block_on(async move {
        let listeners = match bind(&standalone.proxy) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sitecar proxy: {e}");
                return 1;
            }
        };
        for url in listeners.urls() {
            eprintln!("sitecar proxy: listening on {url} -> {}", args.to);
        }
        let stop = CancellationToken::new();
        tokio::spawn(signals(stop.clone(), None));
        if let Some(addr) = &args.admin {
            eprintln!("sitecar proxy: admin API on http://{addr}");
        }
        let access: front::Sink = Box::new(|line: &str| println!("{line}"));
        match sitecar_proxy::standalone::run(standalone, args.to, args.admin.as_deref(), listeners, access, stop).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("sitecar proxy: {e}");
                1
            }
        }
    }))
}

/// The front door's listeners; a privileged port left out is said once, a taken one names its
/// holder.
fn bind(settings: &sitecar_config::ProxySettings) -> Result<Listeners, String> {
    let listeners = front::bind(settings).map_err(|e| listen_error(&e))?;
    for addr in &listeners.skipped {
        eprintln!("sitecar: cannot listen on {addr} without privileges; going on without it (set proxy.listen to choose ports)");
    }
    Ok(listeners)
}

fn listen_error(e: &front::ListenError) -> String {
    format!("{e}{}", e.port_in_use().map(sitecar_control::ports::holder).unwrap_or_default())
}

/// HTTP metrics for the front door, process metrics, and container metrics, in one registry.
fn observability(
    registry: &prometheus::Registry,
) -> prometheus::Result<(Arc<sitecar_proxy::metrics::HttpMetrics>, sitecar_control::usage::ContainerMetrics)> {
    let metrics = Arc::new(sitecar_proxy::metrics::HttpMetrics::new(registry)?);
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
    Ok((metrics, sitecar_control::usage::ContainerMetrics::register(registry)?))
}

/// SIGTERM and SIGINT stop in order; SIGHUP asks for a reload.
async fn signals(shutdown: CancellationToken, reload: Option<reload::Requests>) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => shutdown.cancel(),
            _ = int.recv() => shutdown.cancel(),
            _ = hup.recv() => match &reload {
                Some(r) => {
                    let _ = r.send(None);
                }
                None => tracing::warn!("SIGHUP: nothing to reload (no spec file); the running stack is unchanged"),
            },
        }
    }
}
