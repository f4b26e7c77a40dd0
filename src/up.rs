//! `sitecar up` and `sitecar proxy`: load the spec, start the supervisor and the front door,
//! turn signals into an orderly stop (front door drains first, then main, then sidecars), and
//! exit with main's status.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use sitecar_config::{LoadError, LoadOptions, Spec};
use sitecar_control::{MainState, Options, Supervisor};
use sitecar_proxy::FrontDoor;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
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
    let source = args.file.clone().map(|file| Source { file, options, watch: args.watch });
    exit(rt.block_on(serve_stack(Arc::new(spec), base_dir, source)))
}

/// Where a reload re-reads the spec from.
struct Source {
    file: PathBuf,
    options: LoadOptions,
    watch: bool,
}

/// Where the answer to a reload goes: the containers restarted, or every problem.
pub type ReloadAnswer = tokio::sync::oneshot::Sender<Result<Vec<String>, Vec<String>>>;

/// Reload requests: from SIGHUP and `--watch` (no one waits for the answer) or the admin API.
pub type ReloadRequests = tokio::sync::mpsc::UnboundedSender<Option<ReloadAnswer>>;

/// Re-reads the spec for every request, one at a time. An invalid spec is logged with every
/// problem and changes nothing; a valid one restarts the containers whose launch changed and
/// swaps the front door's settings, cache bounds and offload rules for new connections.
async fn reloader(
    source: Source,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Option<ReloadAnswer>>,
    handle: sitecar_control::Handle,
    mut current: Arc<Spec>,
    cache: Arc<sitecar_proxy::cache::Cache>,
    front: tokio::sync::mpsc::UnboundedSender<sitecar_proxy::front::Reconfigure>,
    base_dir: PathBuf,
) {
    while let Some(reply) = requests.recv().await {
        let result = match sitecar_config::load_file(&source.file, &source.options) {
            Err(e) => {
                // A summary, then each rule broken; an unreadable file or bad JSON is one line.
                let mut problems = vec![e.to_string()];
                if matches!(e, LoadError::Invalid { .. }) {
                    problems.extend(e.problems().iter().map(|p| p.to_string()));
                }
                handle.logs.event("sitecar", &format!("reload refused, the running stack is unchanged: {}", problems.join("; ")));
                Err(problems)
            }
            Ok(spec) => {
                let spec = Arc::new(spec);
                // New listeners and certificates first: one that cannot be had refuses the reload.
                let fresh = sitecar_proxy::front::bind_fresh(&current.proxy, &spec.proxy);
                let reloaded = match fresh {
                    Ok(fresh) => handle.reload(spec.clone()).await.map(|r| (r, fresh)),
                    Err(e) => Err(listen_error(&e)),
                };
                match reloaded {
                    Err(why) => {
                        handle.logs.event("sitecar", &format!("reload refused, the running stack is unchanged: {why}"));
                        Err(vec![why])
                    }
                    Ok((restarted, fresh)) => {
                        cache.reconfigure(&spec.cache);
                        let at_edge = sitecar_proxy::front::AtEdge {
                            cache: spec.cache.enabled.then(|| cache.clone()),
                            offload: offload_rules(&spec.offload, &base_dir),
                        };
                        let _ = front.send(sitecar_proxy::front::Reconfigure { settings: spec.proxy.clone(), at_edge, fresh });
                        if current.tracing != spec.tracing {
                            handle.logs.event("sitecar", "reload: tracing settings stay as they were until sitecar restarts");
                        }
                        handle.logs.event(
                            "sitecar",
                            &format!(
                                "reloaded {}: restarted {}",
                                source.file.display(),
                                if restarted.is_empty() { "nothing".into() } else { restarted.join(", ") }
                            ),
                        );
                        current = spec;
                        Ok(restarted)
                    }
                }
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

/// `--watch`: a reload whenever the spec file's modification time or size changes.
async fn watch_file(file: PathBuf, requests: ReloadRequests) {
    let stamp = |f: &Path| std::fs::metadata(f).ok().map(|m| (m.modified().ok(), m.len()));
    let mut last = stamp(&file);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = stamp(&file);
        if now != last {
            last = now;
            if requests.send(None).is_err() {
                return;
            }
        }
    }
}

fn refuse(file: &Path, e: &LoadError) -> ExitCode {
    eprintln!("sitecar up: {}: {e}; nothing was started", file.display());
    for p in e.problems() {
        eprintln!("  {p}");
    }
    ExitCode::from(if matches!(e, LoadError::Unreadable { .. }) { 2 } else { 1 })
}

async fn serve_stack(spec: Arc<Spec>, base_dir: PathBuf, source: Option<Source>) -> i32 {
    if let Err(e) = sitecar_proxy::front::check_tracing(&spec.tracing) {
        eprintln!("sitecar up: {e}; nothing was started");
        return 1;
    }
    // One `up` per stack: a second would take the first one's containers for leftovers.
    let run_file = crate::runfile::path(&base_dir, &spec.local.storage_root);
    if let Some(pid) = crate::runfile::running(&run_file) {
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

    // Main's state, as the front door needs it: ready or not.
    let (ready_tx, ready_rx) = watch::channel(false);
    let mut main_state = handle.main.clone();
    tokio::spawn(async move {
        loop {
            let ready = *main_state.borrow_and_update() == MainState::Ready;
            ready_tx.send_replace(ready);
            if main_state.changed().await.is_err() {
                break;
            }
        }
    });

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
    let cache = match sitecar_proxy::cache::Cache::new(&spec.cache, Some(&registry)) {
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
    let _run_file = match crate::runfile::RunFile::write(
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
            tokio::spawn(watch_file(source.file.clone(), reload_tx.clone()));
        }
        tokio::spawn(reloader(source, reload_rx, handle.clone(), spec.clone(), cache.clone(), front_tx, base_dir_for_reload.clone()));
    }
    let logs = handle.logs.clone();
    let access: sitecar_proxy::front::Sink =
        Box::new(move |line: &str| logs.push(&Arc::from("front-door"), sitecar_control::logs::Stream::Stdout, line.as_bytes()));
    let proxy = tokio::spawn({
        let spec = spec.clone();
        let stop_proxy = stop_proxy.clone();
        let stop_stack = stop_stack.clone();
        async move {
            let at_edge = sitecar_proxy::front::AtEdge { cache: spec.cache.enabled.then_some(cache), offload };
            let recording = sitecar_proxy::front::Recording {
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
    let (mut settings, mut cache_settings, mut offload, mut tracing) = match &args.spec {
        Some(file) => match sitecar_config::load_file(file, &LoadOptions::default()) {
            Ok(spec) => {
                let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
                let offload = offload_rules(&spec.offload, &base);
                (spec.proxy, spec.cache, offload, spec.tracing)
            }
            Err(e) => return refuse(file, &e),
        },
        None => (
            sitecar_config::ProxySettings { listen: vec![std::net::SocketAddr::from(([0, 0, 0, 0], 8080))], ..Default::default() },
            sitecar_config::CacheSettings::default(),
            Vec::new(),
            sitecar_config::TracingSettings::default(),
        ),
    };
    if let Some(url) = &args.otlp_endpoint {
        match sitecar_config::parse_otlp_endpoint(url) {
            Ok(endpoint) => {
                tracing.otlp =
                    Some(sitecar_config::OtlpSettings { endpoint, headers: Vec::new(), timeout: std::time::Duration::from_secs(10) })
            }
            Err((message, hint)) => {
                eprintln!("sitecar proxy: --otlp-endpoint: {message} ({hint})");
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = sitecar_proxy::front::check_tracing(&tracing) {
        eprintln!("sitecar proxy: {e}");
        return ExitCode::from(2);
    }
    if args.cache {
        cache_settings.enabled = true;
    }
    if let Some(n) = args.cache_max_bytes {
        cache_settings.max_bytes = n;
    }
    if let Some(n) = args.cache_max_object_bytes {
        cache_settings.max_object_bytes = n;
    }
    if cache_settings.max_object_bytes > cache_settings.max_bytes || cache_settings.max_bytes < 1024 {
        eprintln!("sitecar proxy: the cache needs --cache-max-bytes of at least 1024 and not below --cache-max-object-bytes");
        return ExitCode::from(2);
    }
    for (list, fallthrough) in [(&args.offload, true), (&args.offload_only, false)] {
        offload.extend(list.iter().map(|(prefix, dir)| sitecar_config::OffloadRule {
            prefix: prefix.clone(),
            dir: dir.clone(),
            fallthrough,
        }));
    }
    if args.no_compression {
        settings.compression = false;
    }
    if !args.listen.is_empty() {
        settings.listen =
            args.listen.iter().filter_map(|l| sitecar_config::parse_listen(l, std::net::Ipv4Addr::UNSPECIFIED.into())).collect();
        if settings.listen.len() != args.listen.len() {
            eprintln!("sitecar proxy: --listen takes addresses like 0.0.0.0:8080");
            return ExitCode::from(2);
        }
        settings.listen_explicit = true;
    }
    match args.access_log.as_deref() {
        None => {}
        Some("common") => settings.access_log = sitecar_config::AccessLog::Common,
        Some("json") => settings.access_log = sitecar_config::AccessLog::Json,
        Some("off") => settings.access_log = sitecar_config::AccessLog::Off,
        Some(other) => {
            eprintln!("sitecar proxy: --access-log {other}: one of common, json, off");
            return ExitCode::from(2);
        }
    }
    if args.threads.is_some() {
        settings.threads = args.threads;
    }
    if let (Some(listen), Some(cert), Some(key)) = (&args.tls_listen, &args.cert, &args.key) {
        let Some(listen) = sitecar_config::parse_listen(listen, std::net::Ipv4Addr::UNSPECIFIED.into()) else {
            eprintln!("sitecar proxy: --tls-listen {listen}: not an address like 0.0.0.0:8443");
            return ExitCode::from(2);
        };
        settings.tls = Some(sitecar_config::TlsSettings {
            listen,
            certificates: vec![sitecar_config::CertificatePair { cert: cert.clone(), key: key.clone() }],
        });
    }
    let rt = match runtime(settings.threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sitecar: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    exit(rt.block_on(async move {
        let listeners = match bind(&settings) {
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
        let mut metrics = None;
        // Metrics (the cache's among them) live in a registry only when the admin API serves them.
        let registry = args.admin.as_ref().map(|_| prometheus::Registry::new());
        let span_registry = registry.clone();
        let cache = match cache_settings.enabled.then(|| sitecar_proxy::cache::Cache::new(&cache_settings, registry.as_ref())).transpose() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sitecar proxy: cache: {e}");
                return 1;
            }
        };
        if let (Some(addr), Some(registry)) = (&args.admin, registry) {
            let http = match sitecar_proxy::metrics::HttpMetrics::new(&registry) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    eprintln!("sitecar proxy: metrics: {e}");
                    return 1;
                }
            };
            let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
            let listener = match tokio::net::TcpListener::bind(addr.as_str()).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("sitecar proxy: cannot listen on {addr} for the admin API: {e}");
                    return 1;
                }
            };
            let view = crate::observe::ProxyOnly { listeners: listeners.urls(), upstream: args.to.to_string() };
            let admin = Arc::new(sitecar_proxy::admin::Admin {
                registry,
                token: None,
                stack: Arc::new(view),
                http: Some(http.clone()),
                cache: cache.clone(),
            });
            eprintln!("sitecar proxy: admin API on http://{addr}");
            tokio::spawn(sitecar_proxy::admin::serve(listener, admin, stop.clone()));
            metrics = Some(http);
        }
        // A running app is ready by definition: it is the user's to start and stop.
        let (_ready_tx, ready_rx) = watch::channel(true);
        let sink: sitecar_proxy::front::Sink = Box::new(|line: &str| println!("{line}"));
        let at_edge = sitecar_proxy::front::AtEdge { cache, offload };
        let recording = sitecar_proxy::front::Recording { access: Some(sink), metrics, tracing, registry: span_registry };
        FrontDoor::new(settings, at_edge, args.to, ready_rx, recording).run(listeners, stop, None).await;
        0
    }))
}

/// The front door's listeners; a privileged port left out is said once, a taken one names its
/// holder.
fn bind(settings: &sitecar_config::ProxySettings) -> Result<sitecar_proxy::front::Listeners, String> {
    let listeners = sitecar_proxy::front::bind(settings).map_err(|e| listen_error(&e))?;
    for addr in &listeners.skipped {
        eprintln!("sitecar: cannot listen on {addr} without privileges; going on without it (set proxy.listen to choose ports)");
    }
    Ok(listeners)
}

fn listen_error(e: &sitecar_proxy::front::ListenError) -> String {
    format!("{e}{}", e.port_in_use().map(sitecar_control::ports::holder).unwrap_or_default())
}

/// Offload directories, relative ones taken from the spec's directory.
fn offload_rules(rules: &[sitecar_config::OffloadRule], base: &Path) -> Vec<sitecar_config::OffloadRule> {
    rules.iter().map(|r| sitecar_config::OffloadRule { dir: base.join(&r.dir), ..r.clone() }).collect()
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
async fn signals(shutdown: CancellationToken, reload: Option<ReloadRequests>) {
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
