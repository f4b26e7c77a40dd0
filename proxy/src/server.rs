//! Accepting connections: pre-bound listeners (plain or TLS), hyper-util's auto HTTP/1.1 + HTTP/2 server, a
//! connection limit, head limits and timeouts, and a graceful drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::edge::EdgeService;
use crate::headers::Peer;
use crate::io::ProgressIo;

/// Limits of client connections.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub drain: Duration,
    /// Longest a response write may stay blocked on a client that does not read.
    pub write_timeout: Duration,
}

fn builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(250)
        .max_pending_accept_reset_streams(Some(50))
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Serves `listener` (TLS when `tls` is given) until `shutdown`, then drains open connections for
/// at most `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    edge: Arc<EdgeService>,
    limits: ServerLimits,
    connections: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let never = CancellationToken::new();
    serve_swappable(Arc::new(listener), tokio::sync::watch::channel(edge).1, limits, connections, tls, never, shutdown).await
}

/// As [`serve`], with the request path taken from `edge` when a connection is accepted: a reload
/// swaps it for new connections while open ones finish with the one they started with. `retire`
/// stops accepting (a reload serves the listener, or none, with new limits from then on) while
/// the connections accepted here go on until they end or `shutdown` drains them.
pub async fn serve_swappable(
    listener: Arc<TcpListener>,
    edge: tokio::sync::watch::Receiver<Arc<EdgeService>>,
    limits: ServerLimits,
    connections: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
    retire: CancellationToken,
    shutdown: CancellationToken,
) {
    let builder = Arc::new(builder(&limits));
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut refused_logged = false;
    let retired = loop {
        let (stream, client) = tokio::select! {
            _ = shutdown.cancelled() => break false,
            _ = retire.cancelled() => break true,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if !refused_logged {
                tracing::warn!(limit = limits.max_connections, "connection limit reached: refusing new connections");
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        refused_logged = false;
        let _ = stream.set_nodelay(true);
        let peer = Arc::new(Peer::new(client, stream.local_addr().unwrap_or(local), tls.is_some()));
        let edge = edge.borrow().clone();
        let service = service_fn(move |req| {
            let edge = edge.clone();
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(edge.handle(req, &peer).await) }
        });
        match &tls {
            None => {
                let io = TokioIo::new(ProgressIo::new(stream, limits.write_timeout));
                let conn = graceful.watch(builder.serve_connection_with_upgrades(io, service).into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let (acceptor, builder, watcher) = (acceptor.clone(), builder.clone(), graceful.watcher());
                let (handshake, write_timeout) = (limits.header_timeout, limits.write_timeout);
                tokio::spawn(async move {
                    // A handshake gets the same bound as a request head.
                    if let Ok(Ok(stream)) = tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        let io = TokioIo::new(ProgressIo::new(stream, write_timeout));
                        let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
                        let _ = watcher.watch(conn).await;
                    }
                    drop(permit);
                });
            }
        }
    };
    drop(listener);
    if retired {
        shutdown.cancelled().await;
    }
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain = ?limits.drain, "connections still open after the drain timeout");
    }
}
