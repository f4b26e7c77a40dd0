//! sitecar-proxy: the front door. It accepts HTTP/1.1 and HTTP/2 (h2c, or TLS with ALPN) on pre-bound listeners and
//! forwards to the main container on loopback, only while main is ready, with App Service's
//! forwarding headers, limits and timeouts, and an access log kept off the request path.
//!
//! # Layout
//! - [`server`]: accept loop, hyper-util connection builder, connection limit, graceful drain.
//! - [`edge`]: [`EdgeService::handle`], the request path top to bottom.
//! - [`headers`]: forwarding rules for request and response heads.
//! - [`tls`]: rustls server config, SNI across certificates, reload on file change.
//! - [`upstream`]: the pooled client to main.
//! - [`cache`]: the RFC 9111 shared cache (store, freshness, answers from stored responses).
//! - [`offload`]: static files served at the edge, confined to their directory.
//! - [`body`]: request and response body types (limits, progress timeout, no boxing).
//! - [`ids`]: request ids and W3C `traceparent`.
//! - [`io`]: client IO with a write-progress deadline.
//! - [`metrics`]: HTTP metrics in an explicit Prometheus registry.
//! - [`history`]: the last five minutes of traffic in 5-second buckets, for the status page.
//! - [`access`]: the access log writer.
//! - `spans` (feature `otlp`): one span per request, exported over OTLP/HTTP.
//! - [`admin`]: the admin API (health, readiness, metrics, status, logs, restart) and `page`, its status page.
//! - [`error`]: [`ProxyError`], mapped to a status in one place.

pub mod access;
pub mod admin;
pub mod body;
pub mod cache;
pub mod edge;
pub mod error;
pub mod headers;
pub mod history;
pub mod ids;
pub mod io;
pub mod metrics;
pub mod offload;
mod page;
pub mod server;
#[cfg(feature = "otlp")]
pub mod spans;
pub mod tls;
pub mod upstream;

pub use edge::{EdgeConfig, EdgeService};
pub use error::ProxyError;
pub use server::{serve, ServerLimits};
pub use upstream::Upstream;
