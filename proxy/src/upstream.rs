//! The pooled HTTP/1.1 client to main on loopback: hyper's connection API under a pool of our
//! own, one address, newest connection first. hyper-util's general-purpose client spent about a
//! sixth of the front door's instructions per request here (a hashed pool key per request, a task
//! per response to hand the connection back); this pool takes a connection back when main's
//! response body has been read to its end, in the body itself.
//!
//! A pooled connection found closed before the request was written gets the request back from
//! hyper, which goes out on another; a connection that cannot be made hands the request back to
//! the caller (`origin.rs`: readiness, the one retry, timeouts and who failed).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::UpstreamBody;

/// Largest read buffer of a connection to main.
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;
/// Idle connections kept at most; the oldest goes first.
const MAX_IDLE: usize = 1024;

/// Keep-alive connections to main, shared by every worker thread.
#[derive(Clone, Debug)]
pub struct Upstream {
    pool: Arc<Pool>,
    /// HTTP/2 to main, for the requests it is for (`http20ProxyFlag`).
    h2: Option<Arc<Http2Pool>>,
}

/// Where main speaks HTTP/2 without TLS, and for which requests.
#[derive(Debug, Clone, Copy)]
pub struct Http2Main {
    pub addr: SocketAddr,
    /// Only gRPC requests (`http20ProxyFlag` 2); otherwise every HTTP/2 client's request (1).
    pub grpc_only: bool,
}

impl Http2Main {
    /// Where and for which requests main speaks HTTP/2 (`http20ProxyFlag`, `HTTP20_ONLY_PORT`,
    /// else main's own port); `None` when it does not.
    pub fn for_settings(settings: &sitecar_config::ProxySettings, main: SocketAddr) -> Option<Self> {
        let grpc_only = match settings.http2_to_main {
            sitecar_config::Http2ToMain::Off => return None,
            sitecar_config::Http2ToMain::All => false,
            sitecar_config::Http2ToMain::GrpcOnly => true,
        };
        Some(Self { addr: SocketAddr::new(main.ip(), settings.http2_port.unwrap_or(main.port())), grpc_only })
    }
}

/// One multiplexed HTTP/2 connection to main, made when first needed and again once closed.
#[derive(Debug)]
pub(crate) struct Http2Pool {
    main: Http2Main,
    connect_timeout: Duration,
    conn: tokio::sync::Mutex<Option<hyper::client::conn::http2::SendRequest<UpstreamBody>>>,
}

#[derive(Debug)]
struct Pool {
    addr: SocketAddr,
    connect_timeout: Duration,
    /// Closed before the app closes them (Node closes idle ones after 5 s).
    idle_timeout: Duration,
    /// Oldest at the front, newest (the next one used) at the back.
    idle: Mutex<VecDeque<Idle>>,
    reaping: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    tx: Conn,
    since: Instant,
}

/// A connection to main: hyper's sender, and whether its socket failed under a request body
/// (`io::MainIo`), which keeps it out of the pool.
#[derive(Debug)]
struct Conn {
    tx: SendRequest<UpstreamBody>,
    broken: Arc<AtomicBool>,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.broken.load(Ordering::Relaxed)
    }
}

/// Why main's response did not come.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made: the request comes back, as nothing of it was sent.
    Connect(std::io::Error, Box<Request<UpstreamBody>>),
    ConnectTimeout,
    /// No response head within the request timeout (set by the caller).
    TimedOut(Duration),
    Http(hyper::Error),
}

impl Upstream {
    /// `idle` closes pooled connections before the app does.
    pub fn new(addr: SocketAddr, connect_timeout: Duration, idle: Duration) -> Self {
        let pool = Pool { addr, connect_timeout, idle_timeout: idle, idle: Mutex::new(VecDeque::new()), reaping: AtomicBool::new(false) };
        Self { pool: Arc::new(pool), h2: None }
    }

    /// Sends the requests `h2` is for to main over HTTP/2.
    pub fn with_http2(mut self, h2: Option<Http2Main>) -> Self {
        let connect_timeout = self.pool.connect_timeout;
        self.h2 = h2.map(|main| Arc::new(Http2Pool { main, connect_timeout, conn: tokio::sync::Mutex::new(None) }));
        self
    }

    /// Whether a client's request goes to main over HTTP/2: an HTTP/2 client's, and with
    /// `grpc_only` a gRPC one (App Service sends gRPC on as HTTP/2 only from HTTP/2 clients).
    #[inline]
    pub(crate) fn http2_for(&self, version: http::Version, headers: &http::HeaderMap) -> Option<&Http2Pool> {
        let h2 = self.h2.as_deref()?;
        let wanted = version == http::Version::HTTP_2
            && (!h2.main.grpc_only
                || headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")));
        wanted.then_some(h2)
    }

    /// The absolute URI of an HTTP/2 request to main: `:authority` is the client's host (main's
    /// address when it has none that makes an authority).
    pub(crate) fn http2_uri(&self, host: Option<&http::HeaderValue>, pq: Option<&PathAndQuery>) -> Uri {
        let pq = pq.cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let build = |authority: &[u8]| Uri::builder().scheme("http").authority(authority).path_and_query(pq.clone()).build();
        host.and_then(|h| build(h.as_bytes()).ok())
            .or_else(|| build(self.pool.addr.to_string().as_bytes()).ok())
            .unwrap_or_else(|| Uri::from(pq.clone()))
    }

    /// The request target main gets: origin form (`/path?query`).
    pub fn uri(&self, pq: Option<&PathAndQuery>) -> Uri {
        Uri::from(pq.cloned().unwrap_or_else(|| PathAndQuery::from_static("/")))
    }

    /// Idle pooled connections now (for tests and the status page).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle.lock().map_or(0, |i| i.len())
    }

    /// Main's response head to `req` (whose URI is in origin form).
    #[allow(clippy::manual_async_fn)] // not `async fn`: that keeps a second copy of the arguments in the future
    pub(crate) fn send(&self, mut req: Request<UpstreamBody>) -> impl Future<Output = Result<Response<MainBody>, SendError>> + '_ {
        async move {
            loop {
                let (mut conn, pooled) = match self.pool.checkout() {
                    Some(tx) => (tx, true),
                    None => match self.pool.connect().await {
                        Ok(tx) => (tx, false),
                        Err(Connect::Failed(e)) => return Err(SendError::Connect(e, Box::new(req))),
                        Err(Connect::TimedOut) => return Err(SendError::ConnectTimeout),
                        Err(Connect::Handshake(e)) => return Err(SendError::Http(e)),
                    },
                };
                if let Err(e) = conn.tx.ready().await {
                    if pooled {
                        continue;
                    }
                    return Err(SendError::Http(e));
                }
                match conn.tx.try_send_request(req).await {
                    Ok(resp) => {
                        // An upgraded connection is the tunnel's now.
                        let home = (resp.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| (conn, self.pool.clone()));
                        return Ok(resp.map(|inner| MainBody { inner, home }));
                    }
                    Err(mut e) => match e.take_message() {
                        // Not written: the pooled connection was closing. Another one, or a new one.
                        Some(back) if pooled => req = back,
                        _ => return Err(SendError::Http(e.into_error())),
                    },
                }
            }
        }
    }
}

impl Pool {
    /// The newest idle connection still open and not past the idle timeout.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let mut now = None;
        while let Some(i) = idle.pop_back() {
            let now = *now.get_or_insert_with(Instant::now);
            if !i.tx.is_closed() && now.saturating_duration_since(i.since) < self.idle_timeout {
                return Some(i.tx);
            }
        }
        None
    }

    /// Takes a connection back once its response has been read to its end.
    fn checkin(self: &Arc<Self>, tx: Conn) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            self.trim(&mut idle, now);
            if idle.len() >= MAX_IDLE {
                idle.pop_front();
            }
            idle.push_back(Idle { tx, since: now });
        }
        if !self.reaping.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self), self.idle_timeout));
        }
    }

    /// Closes the connections idle past the timeout (the oldest are at the front).
    fn trim(&self, idle: &mut VecDeque<Idle>, now: Instant) {
        while idle.front().is_some_and(|i| i.tx.is_closed() || now.saturating_duration_since(i.since) >= self.idle_timeout) {
            idle.pop_front();
        }
    }

    async fn connect(&self) -> Result<Conn, Connect> {
        let stream = tcp(self.addr, self.connect_timeout).await?;
        let broken = Arc::new(AtomicBool::new(false));
        let stream = crate::io::MainIo::new(stream, broken.clone());
        // A bounded read buffer: a response the client cannot take yet waits in main's socket,
        // not in ours (hyper's default lets each connection's buffer grow to ~400 KiB).
        let (tx, conn) =
            http1::Builder::new().max_buf_size(UPSTREAM_READ_BUFFER).handshake(TokioIo::new(stream)).await.map_err(Connect::Handshake)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(Conn { tx, broken })
    }
}

/// A TCP connection to main within the connect timeout.
async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Connect> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Connect::TimedOut),
        Ok(Err(e)) => Err(Connect::Failed(e)),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

impl Http2Pool {
    /// Main's response head to `req` over HTTP/2 (its URI absolute: scheme and `:authority`).
    pub(crate) async fn send(&self, req: Request<UpstreamBody>) -> Result<Response<MainBody>, SendError> {
        let connected = |c: Result<_, Connect>, req| match c {
            Ok(tx) => Ok((tx, req)),
            Err(Connect::Failed(e)) => Err(SendError::Connect(e, Box::new(req))),
            Err(Connect::TimedOut) => Err(SendError::ConnectTimeout),
            Err(Connect::Handshake(e)) => Err(SendError::Http(e)),
        };
        let (mut tx, req) = connected(self.sender().await, req)?;
        if tx.ready().await.is_err() {
            // The connection closed under us (main restarted): one new connection.
            self.forget().await;
            let (fresh, again) = connected(self.sender().await, req)?;
            return Self::send_on(fresh, again).await;
        }
        Self::send_on(tx, req).await
    }

    async fn send_on(
        mut tx: hyper::client::conn::http2::SendRequest<UpstreamBody>,
        req: Request<UpstreamBody>,
    ) -> Result<Response<MainBody>, SendError> {
        tx.ready().await.map_err(SendError::Http)?;
        let resp = tx.send_request(req).await.map_err(SendError::Http)?;
        Ok(resp.map(|inner| MainBody { inner, home: None }))
    }

    /// The open connection, or a new one.
    async fn sender(&self) -> Result<hyper::client::conn::http2::SendRequest<UpstreamBody>, Connect> {
        let mut conn = self.conn.lock().await;
        if let Some(tx) = conn.as_ref().filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let stream = tcp(self.main.addr, self.connect_timeout).await?;
        let (tx, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Connect::Handshake)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *conn = Some(tx.clone());
        Ok(tx)
    }

    async fn forget(&self) {
        *self.conn.lock().await = None;
    }
}

/// Closes idle connections past the timeout while nothing else touches the pool; ends with it.
async fn reap(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every.max(Duration::from_millis(100))).await;
        let Some(pool) = pool.upgrade() else { return };
        let lock = pool.idle.lock();
        if let Ok(mut idle) = lock {
            pool.trim(&mut idle, Instant::now());
        }
    }
}

/// Why a new connection to main could not be had.
enum Connect {
    Failed(std::io::Error),
    TimedOut,
    Handshake(hyper::Error),
}

/// Main's response body; its connection goes back to the pool when the body has been read to
/// its end (hyper stops at the announced length without asking for more, so the end is also
/// recognised when the body is dropped).
#[derive(Debug)]
pub struct MainBody {
    inner: Incoming,
    home: Option<(Conn, Arc<Pool>)>,
}

impl MainBody {
    fn release(&mut self) {
        if let Some((tx, pool)) = self.home.take() {
            pool.checkin(tx);
        }
    }
}

impl Drop for MainBody {
    fn drop(&mut self) {
        // Cut short: the connection is dropped with it (hyper closes it).
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl Body for MainBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
