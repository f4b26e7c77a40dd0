//! The front door's life: [`bind`] its listeners (an error names the address), build it from the
//! validated settings, main's readiness and the recorders ([`FrontDoor::new`]), and
//! [`FrontDoor::run`] it until the shutdown token, then drain. A reload ([`Reconfigure`], its new
//! sockets bound first by [`bind_fresh`]) swaps the request path's settings and the listener
//! generation inside it; connections accepted before go on with what they started with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sitecar_config::{AccessLog as LogSetting, OffloadRule, ProxySettings, TracingSettings};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::access::{AccessLog, Consumers, Finish, Format, RecordSink};
use crate::cache::Cache;
use crate::edge::{EdgeConfig, EdgeService};
use crate::headers::{Forwarding, Trace};
use crate::metrics::HttpMetrics;
use crate::offload::Offload;
use crate::server::ServerLimits;
use crate::tls::{Certificates, TlsError};
use crate::upstream::Upstream;

/// Why the front door cannot listen (at start, or for a reload, which is then refused).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {0}: the port is already in use")]
    InUse(SocketAddr),
    #[error("cannot listen on {addr}{}: {source}", if *.tls { " (TLS)" } else { "" })]
    Bind {
        addr: SocketAddr,
        tls: bool,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Certificates(#[from] TlsError),
    #[error("no front-door listener could be opened")]
    Nothing,
    #[error("tracing.otlp is set, but this sitecar was built without OTLP export (cargo feature `otlp`)")]
    NoOtlp,
}

impl ListenError {
    /// The port someone else holds, when that is the problem (for the caller to say who).
    pub fn port_in_use(&self) -> Option<u16> {
        match self {
            ListenError::InUse(a) => Some(a.port()),
            ListenError::Bind { addr, source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => Some(addr.port()),
            _ => None,
        }
    }
}

/// Where access-log lines go.
pub type Sink = Box<dyn FnMut(&str) + Send>;

/// What the front door records of each request besides answering it: access-log lines, metrics,
/// and spans for an OTLP collector.
pub struct Recording {
    pub access: Option<Sink>,
    pub metrics: Option<Arc<HttpMetrics>>,
    pub tracing: TracingSettings,
    /// Where the span exporter's counters go.
    pub registry: Option<prometheus::Registry>,
}

/// Refuses a `tracing.otlp` this build cannot honour, before anything starts.
pub fn check_tracing(t: &TracingSettings) -> Result<(), ListenError> {
    if t.otlp.is_some() && !cfg!(feature = "otlp") {
        return Err(ListenError::NoOtlp);
    }
    Ok(())
}

/// The record consumers: access-log lines and, when exported, spans. Returns the request path's
/// handle (none when nothing consumes records), what ends the writer, and the span exporter task.
fn recorders(
    settings: &ProxySettings,
    access: Option<Sink>,
    tracing: &TracingSettings,
    registry: Option<&prometheus::Registry>,
) -> (Option<AccessLog>, Option<Finish>, Option<tokio::task::JoinHandle<()>>) {
    let lines = match (settings.access_log, access) {
        (LogSetting::Off, _) | (_, None) => None,
        (LogSetting::Common, Some(sink)) => Some((Format::Common, sink)),
        (LogSetting::Json, Some(sink)) => Some((Format::Json, sink)),
    };
    let (records, task) = span_sink(tracing, registry);
    if lines.is_none() && records.is_none() {
        return (None, None, None);
    }
    let (log, finish) = AccessLog::start(Consumers { lines, records });
    (Some(log), Some(finish), task)
}

/// The span exporter's record consumer and task.
type SpanParts = (Option<RecordSink>, Option<tokio::task::JoinHandle<()>>);

#[cfg(feature = "otlp")]
fn span_sink(tracing: &TracingSettings, registry: Option<&prometheus::Registry>) -> SpanParts {
    let Some(otlp) = &tracing.otlp else { return (None, None) };
    match crate::spans::SpanSink::start(otlp, &tracing.service_name, registry) {
        Ok((sink, task)) => {
            ::tracing::info!(endpoint = %otlp.endpoint, "exporting a span per request over OTLP/HTTP");
            (Some(Box::new(move |r| sink.push(r))), Some(task))
        }
        Err(e) => {
            ::tracing::error!(error = %e, "spans are not exported");
            (None, None)
        }
    }
}

#[cfg(not(feature = "otlp"))]
fn span_sink(_: &TracingSettings, _: Option<&prometheus::Registry>) -> SpanParts {
    (None, None)
}

/// The bound listeners: plain ones, and the TLS one with its certificates.
pub struct Listeners {
    pub plain: Vec<(SocketAddr, tokio::net::TcpListener)>,
    pub tls: Option<(tokio::net::TcpListener, Arc<Certificates>)>,
    /// Privileged ports left out: sitecar may not bind them and the spec did not name them.
    pub skipped: Vec<SocketAddr>,
}

impl Listeners {
    /// Every bound address with its scheme.
    pub fn urls(&self) -> Vec<String> {
        let plain = self.plain.iter().filter_map(|(_, l)| l.local_addr().ok()).map(|a| format!("http://{a}"));
        plain.chain(self.tls.iter().filter_map(|(l, _)| l.local_addr().ok()).map(|a| format!("https://{a}"))).collect()
    }
}

/// Binds every listen address. A privileged port that cannot be bound is skipped (in
/// [`Listeners::skipped`]) unless the spec asked for it explicitly; anything else is an error
/// naming the address. Certificates are loaded before anything starts, so a bad one is an error
/// at once.
pub fn bind(settings: &ProxySettings) -> Result<Listeners, ListenError> {
    let tls = match &settings.tls {
        Some(t) => {
            let certs = Certificates::load(&t.certificates)?;
            Some((bind_tls(t.listen)?, certs))
        }
        None => None,
    };
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for addr in &settings.listen {
        match bind_plain(*addr, settings.listen_explicit)? {
            Some(l) => out.push((*addr, l)),
            None => skipped.push(*addr),
        }
    }
    if out.is_empty() && tls.is_none() {
        return Err(ListenError::Nothing);
    }
    Ok(Listeners { plain: out, tls, skipped })
}

/// A plain listener on `addr`; `None` for a privileged port sitecar may not bind when the spec
/// did not name its ports. The error names the address.
fn bind_plain(addr: SocketAddr, explicit: bool) -> Result<Option<tokio::net::TcpListener>, ListenError> {
    match bind_one(addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 && !explicit => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(ListenError::InUse(addr)),
        Err(source) => Err(ListenError::Bind { addr, tls: false, source }),
    }
}

fn bind_tls(addr: SocketAddr) -> Result<tokio::net::TcpListener, ListenError> {
    bind_one(addr).map_err(|source| ListenError::Bind { addr, tls: true, source })
}

fn bind_one(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// What the front door serves itself before asking main.
#[derive(Default)]
pub struct AtEdge {
    pub cache: Option<Arc<Cache>>,
    pub offload: Vec<OffloadRule>,
}

/// New settings for the front door (a reload): applied to connections accepted from then on.
pub struct Reconfigure {
    pub settings: ProxySettings,
    pub at_edge: AtEdge,
    /// What the new settings listen on that the running front door does not.
    pub fresh: Fresh,
}

/// The request path for `settings`, with the access log and metrics that outlive reloads.
fn edge(
    settings: &ProxySettings,
    at_edge: AtEdge,
    main: SocketAddr,
    ready: &watch::Receiver<bool>,
    access: &Option<AccessLog>,
    metrics: &Option<Arc<HttpMetrics>>,
    trace: Trace,
) -> Arc<EdgeService> {
    let t = &settings.timeouts;
    EdgeService::new(
        EdgeConfig {
            hold: settings.hold,
            request_timeout: t.request,
            connect_timeout: t.connect,
            max_body: settings.max_body_bytes,
            body_idle: t.body_progress,
            body_min_rate: Some(crate::body::MinRate { bytes_per_sec: t.body_min_rate, grace: t.body_min_rate_grace }),
            forwarding: Forwarding { drop_underscore: settings.drop_underscore_headers, trace },
            compression: settings.compression,
            cache: at_edge.cache,
            offload: (!at_edge.offload.is_empty()).then(|| Offload::new(&at_edge.offload)),
        },
        Upstream::new(main, t.connect, t.upstream_idle).with_http2(crate::upstream::Http2Main::for_settings(settings, main)),
        ready.clone(),
        access.clone(),
        metrics.clone(),
    )
}

/// The front door: the request path built from the settings, main's readiness and the
/// recorders, served on its listeners by [`FrontDoor::run`].
pub struct FrontDoor {
    settings: ProxySettings,
    at_edge: AtEdge,
    main: SocketAddr,
    ready: watch::Receiver<bool>,
    recording: Recording,
}

impl FrontDoor {
    /// The front door for validated `settings`, forwarding to `main` while `ready` says so.
    pub fn new(settings: ProxySettings, at_edge: AtEdge, main: SocketAddr, ready: watch::Receiver<bool>, recording: Recording) -> Self {
        Self { settings, at_edge, main, ready, recording }
    }

    /// Serves `listeners` until `shutdown`, then drains. `reconfigure` swaps the request path's
    /// settings (timeouts, hold, limits on bodies, compression, cache, offload) for new
    /// connections, and serves the listeners of the new settings (kept sockets stay bound, so
    /// nothing queued on them is lost) with the new connection limits; connections accepted
    /// before go on with what they started with.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
        mut reconfigure: Option<tokio::sync::mpsc::UnboundedReceiver<Reconfigure>>,
    ) {
        let FrontDoor { settings, at_edge, main, ready, recording } = self;
        let settings = &settings;
        let Recording { access, metrics, tracing, registry } = recording;
        let (access, finish, span_task) = recorders(settings, access, &tracing, registry.as_ref());
        // Tracing settings are fixed at start (a reload keeps them).
        let trace = Trace::new(tracing.otlp.is_some() && span_task.is_some(), tracing.sample_ratio);
        let (edge_tx, edge_rx) = watch::channel(edge(settings, at_edge, main, &ready, &access, &metrics, trace));
        let mut serving = Serving {
            plain: listeners.plain.into_iter().map(|(a, l)| (a, Arc::new(l))).collect(),
            tls: None,
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            max_connections: settings.max_connections,
            tasks: tokio::task::JoinSet::new(),
            retire: shutdown.child_token(),
        };
        if let Some((l, certs)) = listeners.tls {
            serving.tls = acceptor(certs, &serving.retire).map(|a| (Arc::new(l), a));
        }
        serving.start(settings, &edge_rx, &shutdown);
        let mut closed = false;
        loop {
            let next = async {
                match reconfigure.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                done = serving.tasks.join_next() => if done.is_none() { break },
                // Stop accepting at once: the accept loops drop their references as they end.
                _ = shutdown.cancelled(), if !closed => {
                    closed = true;
                    serving.plain.clear();
                    serving.tls = None;
                }
                next = next => match next {
                    Some(next) if !shutdown.is_cancelled() => {
                        edge_tx.send_replace(edge(&next.settings, next.at_edge, main, &ready, &access, &metrics, trace));
                        serving.rebind(&next.settings, next.fresh, &edge_rx, &shutdown);
                    }
                    Some(_) => {}
                    None => reconfigure = None,
                },
            }
        }
        // Drained: the last access-log lines, then the last spans.
        if let Some(f) = finish {
            f.finish(Duration::from_secs(2)).await;
        }
        if let (Some(task), Some(otlp)) = (span_task, &tracing.otlp) {
            let _ = tokio::time::timeout(otlp.timeout + Duration::from_secs(1), task).await;
        }
    }
}

/// A TLS acceptor for `certs`, watching their files until `stop` (its generation's end).
fn acceptor(certs: Arc<Certificates>, stop: &CancellationToken) -> Option<tokio_rustls::TlsAcceptor> {
    match crate::tls::server_config(certs.clone()) {
        Ok(config) => {
            tokio::spawn(certs.watch(Duration::from_secs(2), stop.clone()));
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        Err(e) => {
            ::tracing::error!(error = %e, "TLS listener not started");
            None
        }
    }
}

/// The listeners being served, by the address the settings name, and the accept loops serving
/// them (one generation at a time; a reload starts the next before retiring the last).
struct Serving {
    plain: Vec<(SocketAddr, Arc<tokio::net::TcpListener>)>,
    tls: Option<(Arc<tokio::net::TcpListener>, tokio_rustls::TlsAcceptor)>,
    connections: Arc<Semaphore>,
    max_connections: usize,
    tasks: tokio::task::JoinSet<()>,
    /// Stops the current generation's accept loops.
    retire: CancellationToken,
}

impl Serving {
    fn start(&mut self, settings: &ProxySettings, edge: &watch::Receiver<Arc<EdgeService>>, shutdown: &CancellationToken) {
        let t = &settings.timeouts;
        let limits = ServerLimits {
            header_timeout: t.request_header,
            max_header_bytes: settings.max_header_bytes,
            max_headers: settings.max_headers,
            max_connections: settings.max_connections,
            drain: Duration::from_secs(10),
            write_timeout: t.write_progress,
            own_http1: settings.own_http1,
        };
        let listeners = self.plain.iter().map(|(_, l)| (l.clone(), None)).chain(self.tls.iter().map(|(l, a)| (l.clone(), Some(a.clone()))));
        for (listener, tls) in listeners {
            self.tasks.spawn(crate::server::serve_swappable(
                listener,
                edge.clone(),
                limits.clone(),
                self.connections.clone(),
                tls,
                self.retire.clone(),
                shutdown.clone(),
            ));
        }
    }

    /// Serves the listeners of `settings` (kept ones, and `fresh` ones bound for the reload) with
    /// its limits, then stops accepting on the previous generation.
    fn rebind(&mut self, settings: &ProxySettings, fresh: Fresh, edge: &watch::Receiver<Arc<EdgeService>>, shutdown: &CancellationToken) {
        let mut old = std::mem::take(&mut self.plain);
        let mut fresh_plain = fresh.plain;
        for addr in &settings.listen {
            if let Some(i) = old.iter().position(|(a, _)| a == addr) {
                self.plain.push(old.swap_remove(i));
            } else if let Some(i) = fresh_plain.iter().position(|(a, _)| a == addr) {
                let (a, l) = fresh_plain.swap_remove(i);
                self.plain.push((a, Arc::new(l)));
            }
        }
        // The next generation; its certificate watcher ends with it.
        let next = shutdown.child_token();
        let old_tls = self.tls.take();
        self.tls = match fresh.tls {
            None => None,
            Some((listener, certs)) => {
                let listener = match (listener, old_tls) {
                    (Some(l), _) => Some(Arc::new(l)),
                    (None, Some((l, _))) => Some(l),
                    (None, None) => None,
                };
                listener.and_then(|l| acceptor(certs, &next).map(|a| (l, a)))
            }
        };
        if settings.max_connections > self.max_connections {
            self.connections.add_permits(settings.max_connections - self.max_connections);
        } else if settings.max_connections < self.max_connections {
            // Taken back as connections end.
            let (sem, fewer) = (self.connections.clone(), (self.max_connections - settings.max_connections) as u32);
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(fewer).await {
                    p.forget();
                }
            });
        }
        self.max_connections = settings.max_connections;
        let last = std::mem::replace(&mut self.retire, next);
        self.start(settings, edge, shutdown);
        last.cancel();
    }
}

/// Sockets bound for a reload: plain listeners the running front door does not have yet, and
/// the TLS listener's certificates with its socket when its address is new.
#[derive(Default)]
pub struct Fresh {
    pub plain: Vec<(SocketAddr, tokio::net::TcpListener)>,
    pub tls: Option<(Option<tokio::net::TcpListener>, Arc<Certificates>)>,
}

/// Binds what `new` listens on and `old` does not, and loads `new`'s certificates: an error
/// (naming the address, or the certificate) refuses the reload before anything changes.
pub fn bind_fresh(old: &ProxySettings, new: &ProxySettings) -> Result<Fresh, ListenError> {
    let mut fresh = Fresh::default();
    for addr in new.listen.iter().filter(|a| !old.listen.contains(a)) {
        if let Some(l) = bind_plain(*addr, new.listen_explicit)? {
            fresh.plain.push((*addr, l));
        }
    }
    if let Some(t) = &new.tls {
        let certs = Certificates::load(&t.certificates)?;
        let listener = match &old.tls {
            Some(o) if o.listen == t.listen => None,
            _ => Some(bind_tls(t.listen)?),
        };
        fresh.tls = Some((listener, certs));
    }
    Ok(fresh)
}
