//! The pooled HTTP/1.1 client to main on loopback: sitecar's codec (`h1/client.rs`) under a pool
//! of its own, one address, newest connection first. A connection is driven by the task that
//! reads the response (no task per connection, no channel between tasks) and taken back when
//! main's response body has been read to its end, in the body itself. HTTP/2 to main (for gRPC,
//! `http20ProxyFlag`) goes through hyper's HTTP/2 client.
//!
//! A pooled connection found closed before any of the request was written gets the request
//! back, which goes out on another; a connection that cannot be made hands the request back to
//! the caller (`origin.rs`: readiness, the one retry, timeouts and who failed).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::UpstreamBody;
pub use crate::h1::client::MainBody;
use crate::h1::client::{exchange, Failed, Failure, Home, MainConn};
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
    /// Itself, for the reaper.
    me: Weak<Pool>,
}

#[derive(Debug)]
struct Idle {
    conn: MainConn,
    since: Instant,
}

/// Why main's response did not come.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made: the request comes back, as nothing of it was sent.
    Connect(std::io::Error, Box<Request<UpstreamBody>>),
    ConnectTimeout,
    /// No response head within the request timeout (set by the caller).
    TimedOut(Duration),
    /// Over HTTP/1.1; the request back when its body was not read.
    Main(Failure, Option<Box<Request<UpstreamBody>>>),
    /// Over HTTP/2.
    Http(hyper::Error),
}

impl Upstream {
    /// `idle` closes pooled connections before the app does.
    pub fn new(addr: SocketAddr, connect_timeout: Duration, idle: Duration) -> Self {
        let pool = Arc::new_cyclic(|me| Pool {
            addr,
            connect_timeout,
            idle_timeout: idle,
            idle: Mutex::new(VecDeque::new()),
            reaping: AtomicBool::new(false),
            me: me.clone(),
        });
        Self { pool, h2: None }
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

    /// A connection to main: a pooled one (`true`) or a new one.
    pub(crate) async fn connection(&self) -> Result<(MainConn, bool), SendError> {
        if let Some(conn) = self.pool.checkout() {
            return Ok((conn, true));
        }
        match tcp(self.pool.addr, self.pool.connect_timeout).await {
            Ok(stream) => Ok((MainConn::new(stream), false)),
            Err(Connect::TimedOut) => Err(SendError::ConnectTimeout),
            Err(Connect::Failed(e)) => Err(SendError::Main(Failure::Io(e), None)),
            Err(Connect::Handshake(e)) => Err(SendError::Http(e)),
        }
    }

    /// Where a connection goes back when its exchange ended cleanly.
    pub(crate) fn home(&self) -> Arc<dyn Home> {
        self.pool.clone()
    }

    /// Takes a connection back.
    pub(crate) fn checkin(&self, conn: MainConn) {
        self.pool.checkin(conn);
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.pool.connect_timeout
    }

    /// Main's response head to `req` (whose URI is in origin form).
    #[allow(clippy::manual_async_fn)] // not `async fn`: that keeps a second copy of the arguments in the future
    pub(crate) fn send(&self, mut req: Request<UpstreamBody>) -> impl Future<Output = Result<Response<MainBody>, SendError>> + '_ {
        async move {
            loop {
                let (conn, pooled) = match self.pool.checkout() {
                    Some(conn) => (conn, true),
                    None => match tcp(self.pool.addr, self.pool.connect_timeout).await {
                        Ok(stream) => (MainConn::new(stream), false),
                        Err(Connect::Failed(e)) => return Err(SendError::Connect(e, Box::new(req))),
                        Err(Connect::TimedOut) => return Err(SendError::ConnectTimeout),
                        Err(Connect::Handshake(e)) => return Err(SendError::Http(e)),
                    },
                };
                match exchange(conn, req, self.pool.clone()).await {
                    Ok(resp) => return Ok(resp),
                    // Not written: the pooled connection was closing. Another one, or a new one.
                    Err(Failed { failure: Failure::Closed(_) | Failure::Io(_), request: Some(back), written: false }) if pooled => {
                        req = *back
                    }
                    Err(Failed { failure, request, .. }) => return Err(SendError::Main(failure, request)),
                }
            }
        }
    }
}

impl Home for Pool {
    fn checkin(&self, conn: MainConn) {
        Pool::checkin(self, conn);
    }
}

impl Pool {
    /// The newest idle connection still open and not past the idle timeout.
    fn checkout(&self) -> Option<MainConn> {
        let mut idle = self.idle.lock().ok()?;
        let mut now = None;
        while let Some(i) = idle.pop_back() {
            let now = *now.get_or_insert_with(Instant::now);
            if !i.conn.is_closed() && now.saturating_duration_since(i.since) < self.idle_timeout {
                return Some(i.conn);
            }
        }
        None
    }

    /// Takes a connection back once its response has been read to its end.
    fn checkin(&self, conn: MainConn) {
        let now = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            self.trim(&mut idle, now);
            if idle.len() >= MAX_IDLE {
                idle.pop_front();
            }
            idle.push_back(Idle { conn, since: now });
        }
        if !self.reaping.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(self.me.clone(), self.idle_timeout));
        }
    }

    /// Closes the connections idle past the timeout (the oldest are at the front).
    fn trim(&self, idle: &mut VecDeque<Idle>, now: Instant) {
        while idle.front().is_some_and(|i| i.conn.is_closed() || now.saturating_duration_since(i.since) >= self.idle_timeout) {
            idle.pop_front();
        }
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
        Ok(resp.map(MainBody::h2))
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
