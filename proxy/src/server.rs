//! Accepting connections: pre-bound listeners (plain or TLS), HTTP/1.1 or HTTP/2 (h2c by its preface, TLS by ALPN), a
//! connection limit, head limits and timeouts, and a graceful drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use futures_util::future::Either;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::edge::{EdgeService, Step};
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
    /// Serve plain HTTP/1.x connections with sitecar's own codec (`crate::h1::conn`) instead of
    /// hyper's server (`proxy.engine: "sitecar"`; off by default while it is new).
    pub own_http1: bool,
}

/// The HTTP/1.1 and HTTP/2 connection settings. The protocol of a connection is chosen before
/// hyper sees it (the h2 preface peeked on plain connections, ALPN on TLS ones) instead of by
/// hyper-util's auto builder: that one reads the first 24 bytes on its own, so the first request
/// head reaches hyper in two reads and hyper's 8 KiB read buffer grows to 16 KiB for the life of
/// every connection.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    /// Longest wait for the bytes that tell the protocol (the request head's bound).
    sniff: Duration,
}

impl Protocols {
    fn new(limits: &ServerLimits) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .max_headers(limits.max_headers)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(250)
            .max_pending_accept_reset_streams(Some(50))
            .max_header_list_size(limits.max_header_bytes as u32)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Self { h1, h2, sniff: limits.header_timeout }
    }

    /// Serves one connection in the protocol chosen, until it ends or `shutdown` (then
    /// gracefully: in-flight requests finish, HTTP/2 sends GOAWAY).
    async fn serve<I, S, B>(&self, io: I, h2: bool, service: S, shutdown: &CancellationToken)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: hyper::service::HttpService<Incoming, ResBody = B> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if h2 {
            // Boxed: the task of every connection is as large as its largest state, and HTTP/1.1
            // is the common one.
            let conn = Box::pin(self.h2.serve_connection(io, service));
            until_shutdown(conn, shutdown, |c| c.get_mut().as_mut().graceful_shutdown()).await
        } else {
            until_shutdown(self.h1.serve_connection(io, service).with_upgrades(), shutdown, |c| c.graceful_shutdown()).await
        }
    }

    /// What a plain connection opens with: the HTTP/2 preface (h2c with prior knowledge), a
    /// broken one (it starts like it, `PRI`, then differs), or anything else (HTTP/1); `None` when
    /// it closes or stays silent (or stalls inside the preface) past the head's bound. Nothing is
    /// read: hyper gets every byte.
    async fn sniff(&self, stream: &tokio::net::TcpStream) -> Option<Opening> {
        const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let mut buf = [0u8; 24];
        let peek = async {
            loop {
                let n = stream.peek(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                if buf[..n] != PREFACE[..n] {
                    let looks_h2 = n >= 3 && buf[..3] == PREFACE[..3];
                    return Some(if looks_h2 { Opening::BadPreface } else { Opening::Http1 });
                }
                if n == PREFACE.len() {
                    return Some(Opening::Http2);
                }
                // Part of the preface so far: peeking again would return at once.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(self.sniff, peek).await.ok().flatten()
    }
}

/// How a plain connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Http1,
    Http2,
    /// `PRI` and then not the HTTP/2 preface: a connection error (RFC 9113 §3.4).
    BadPreface,
}

/// GOAWAY with last stream 0 and PROTOCOL_ERROR (RFC 9113 §6.8): a frame header (length 8, type
/// 0x7, no flags, stream 0) and its payload.
const GOAWAY_PROTOCOL_ERROR: [u8; 17] = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Drives a connection; on `shutdown` asks it to finish gracefully and waits for it.
async fn until_shutdown<C, T, E>(conn: C, shutdown: &CancellationToken, graceful: impl FnOnce(Pin<&mut C>))
where
    C: Future<Output = Result<T, E>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        _ = conn.as_mut() => return,
        _ = shutdown.cancelled() => {}
    }
    graceful(conn.as_mut());
    let _ = conn.await;
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
    let protocols = Arc::new(Protocols::new(&limits));
    let tracker = TaskTracker::new();
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
        let own = limits.own_http1.then(|| {
            let head = crate::h1::Limits { max_head_bytes: limits.max_header_bytes, max_headers: limits.max_headers };
            (edge.clone(), peer.clone(), crate::h1::conn::ConnLimits { head, header_timeout: limits.header_timeout })
        });
        // The request's future is boxed: hyper keeps a slot of the service future's size for
        // every connection, in use or idle (kilobytes that an idle keep-alive connection would
        // hold for nothing); one allocation per request instead, and none for a fresh cache hit,
        // which is answered as the head is read.
        let service = service_fn(move |req| match edge.begin(req, &peer) {
            // A fresh cache hit: answered without a future of its own.
            Step::Answered(r) => Either::Left(std::future::ready(Ok::<_, Infallible>(r))),
            Step::Route(pending) => Either::Right(Box::pin(edge.clone().complete(pending, peer.clone()).map(Ok::<_, Infallible>))),
        });
        let (protocols, shutdown, write_timeout) = (protocols.clone(), shutdown.clone(), limits.write_timeout);
        // Plain and TLS connections are separate tasks: a task is as large as its future, and a
        // plain one has no handshake state to carry.
        match tls.clone() {
            None => tracker.spawn(async move {
                match protocols.sniff(&stream).await {
                    Some(Opening::BadPreface) => {
                        use tokio::io::AsyncWriteExt;
                        let mut stream = stream;
                        let _ = tokio::time::timeout(write_timeout, stream.write_all(&GOAWAY_PROTOCOL_ERROR)).await;
                        let _ = stream.shutdown().await;
                    }
                    Some(Opening::Http1) if own.is_some() => {
                        let Some((edge, peer, limits)) = own else { return };
                        let io = ProgressIo::new(stream, write_timeout);
                        if let crate::h1::conn::Ended::Upgrade(io, read) =
                            crate::h1::conn::serve(io, edge, peer, limits, shutdown.clone()).await
                        {
                            // A WebSocket upgrade: hyper takes the connection with what was read
                            // (boxed: this task's size is an idle connection's memory).
                            Box::pin(protocols.serve(TokioIo::new(crate::io::Rewind::new(read, io)), false, service, &shutdown)).await;
                        }
                    }
                    Some(opening) => {
                        let io = TokioIo::new(ProgressIo::new(stream, write_timeout));
                        Box::pin(protocols.serve(io, opening == Opening::Http2, service, &shutdown)).await;
                    }
                    None => {}
                }
                drop(permit);
            }),
            Some(acceptor) => tracker.spawn(async move {
                // A handshake gets the same bound as a request head.
                if let Ok(Ok(stream)) = tokio::time::timeout(protocols.sniff, acceptor.accept(stream)).await {
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let io = ProgressIo::new(stream, write_timeout);
                    match own {
                        Some((edge, peer, limits)) if !h2 => {
                            if let crate::h1::conn::Ended::Upgrade(io, read) =
                                crate::h1::conn::serve(io, edge, peer, limits, shutdown.clone()).await
                            {
                                Box::pin(protocols.serve(TokioIo::new(crate::io::Rewind::new(read, io)), false, service, &shutdown)).await;
                            }
                        }
                        _ => Box::pin(protocols.serve(TokioIo::new(io), h2, service, &shutdown)).await,
                    }
                }
                drop(permit);
            }),
        };
    };
    drop(listener);
    if retired {
        shutdown.cancelled().await;
    }
    tracker.close();
    if tokio::time::timeout(limits.drain, tracker.wait()).await.is_err() {
        tracing::warn!(drain = ?limits.drain, "connections still open after the drain timeout");
    }
}
