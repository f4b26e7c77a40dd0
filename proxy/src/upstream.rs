//! The pooled HTTP/1.1 client to main on loopback, with one retry of a refused connection after
//! main is ready again: a request that arrives in the moment between main dying and the
//! supervisor noticing is held like any other instead of failing (nothing reached main, so this is
//! safe for every method). [`Origin`] adds the request timeout and says who failed.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;

use std::error::Error as _;

use http::{Request, Response, Version};
use hyper::body::Incoming;

use crate::body::{BodyError, UpstreamBody};
use crate::error::ProxyError;

/// Keep-alive connections to main, shared by every worker thread.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<GatedConnector, UpstreamBody>,
    authority: Authority,
}

/// Connects to main; a refused connection is tried once more when main is ready (within `hold`).
#[derive(Clone, Debug)]
pub struct GatedConnector {
    inner: HttpConnector,
    ready: watch::Receiver<bool>,
    hold: Duration,
    /// Counts the second tries.
    retried: Option<prometheus::IntCounter>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for GatedConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower::Service::<Uri>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut inner = self.inner.clone();
        let mut ready = self.ready.clone();
        let hold = self.hold;
        let retried = self.retried.clone();
        Box::pin(async move {
            let first: Result<Self::Response, BoxError> = tower::Service::call(&mut inner, uri.clone()).await.map_err(Into::into);
            match first {
                Err(e) if refused(&*e) => {
                    // Main just went away: give the supervisor a moment to notice, then wait for
                    // main to be ready again, as a request arriving now would.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let back = tokio::time::timeout(hold, ready.wait_for(|r| *r)).await.map(|r| r.is_ok()).unwrap_or(false);
                    if !back {
                        return Err(e);
                    }
                    if let Some(c) = &retried {
                        c.inc();
                    }
                    Ok(tower::Service::call(&mut inner, uri).await?)
                }
                other => other,
            }
        })
    }
}

/// Main is not there (any more): refused, or reset while connecting.
fn refused(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let e: &(dyn std::error::Error + 'static) = e;
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            // A connection still in a dying main's accept queue is reset rather than refused.
            use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
            return matches!(io.kind(), ConnectionRefused | ConnectionReset | ConnectionAborted);
        }
        source = s.source();
    }
    false
}

impl Upstream {
    /// `idle` closes pooled connections before the app does (Node closes idle ones after 5 s);
    /// `ready` and `hold` are the readiness gate's, for the retry of a refused connection, which
    /// `retried` counts.
    pub fn new(
        addr: SocketAddr,
        connect_timeout: Duration,
        idle: Duration,
        ready: watch::Receiver<bool>,
        hold: Duration,
        retried: Option<prometheus::IntCounter>,
    ) -> Self {
        let mut inner = HttpConnector::new();
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(connect_timeout));
        inner.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(1024)
            // Retried only when a pooled connection closed before the request was written.
            .retry_canceled_requests(true)
            .set_host(false)
            .build(GatedConnector { inner, ready, hold, retried });
        let authority = Authority::try_from(addr.to_string().as_str()).unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        Self { client, authority }
    }

    /// The absolute URI hyper's client needs to pick the pool, for a request's path and query.
    pub fn uri(&self, pq: Option<&PathAndQuery>) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq.cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        Uri::from_parts(parts).unwrap_or_default()
    }

    pub fn client(&self) -> &Client<GatedConnector, UpstreamBody> {
        &self.client
    }
}

/// The pooled client to main with its timeouts; cloned into the cache's background refreshes.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) upstream: Upstream,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl Origin {
    /// Sends a request whose URI is already main's; the time until the response head.
    pub(crate) async fn send(&self, mut request: Request<UpstreamBody>) -> Result<(Response<Incoming>, Duration), ProxyError> {
        if request.uri().scheme().is_none() {
            *request.uri_mut() = self.upstream.uri(request.uri().path_and_query());
            *request.version_mut() = Version::HTTP_11;
        }
        let asked = Instant::now();
        match tokio::time::timeout(self.request_timeout, self.upstream.client().request(request)).await {
            Err(_) => Err(ProxyError::Timeout(self.request_timeout)),
            Ok(Err(e)) => Err(self.classify(&e)),
            Ok(Ok(r)) => Ok((r, asked.elapsed())),
        }
    }

    /// Who failed: the client's body, connecting to main, or main itself.
    fn classify(&self, e: &hyper_util::client::legacy::Error) -> ProxyError {
        let mut source = e.source();
        while let Some(s) = source {
            if let Some(b) = s.downcast_ref::<BodyError>() {
                return match b {
                    BodyError::TooLarge(l) => ProxyError::BodyTooLarge(*l),
                    BodyError::Stalled(d) => ProxyError::BodyStalled(*d),
                    BodyError::Client(c) => ProxyError::Upstream(format!("client body: {c}")),
                };
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if e.is_connect() {
                    return match io.kind() {
                        std::io::ErrorKind::TimedOut => ProxyError::ConnectTimeout(self.connect_timeout),
                        _ => ProxyError::Refused(io.to_string()),
                    };
                }
            }
            source = s.source();
        }
        if e.is_connect() {
            let text = e.source().map(|s| s.to_string()).unwrap_or_default();
            if text.contains("timed out") {
                return ProxyError::ConnectTimeout(self.connect_timeout);
            }
            return ProxyError::Refused(text);
        }
        ProxyError::Upstream(e.source().map_or_else(|| e.to_string(), |s| s.to_string()))
    }
}
