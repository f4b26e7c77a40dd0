//! The pooled HTTP/1.1 client to main on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::UpstreamBody;

/// Keep-alive connections to main, shared by every worker thread.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, UpstreamBody>,
    authority: Authority,
}

impl Upstream {
    /// `idle` closes pooled connections before the app does (Node closes idle ones after 5 s).
    pub fn new(addr: SocketAddr, connect_timeout: Duration, idle: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(1024)
            // Retried only when a pooled connection closed before the request was written.
            .retry_canceled_requests(true)
            .set_host(false)
            .build(connector);
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

    pub fn client(&self) -> &Client<HttpConnector, UpstreamBody> {
        &self.client
    }
}
