//! sitecar-proxy: the front door. It accepts HTTP/1.1 and HTTP/2 (h2c, or TLS with ALPN) on pre-bound listeners and
//! forwards to the main container on loopback, only while main is ready, with App Service's
//! forwarding headers, limits and timeouts, and an access log kept off the request path.
//!
//! # Layout
//! - [`front`]: [`FrontDoor`], the front door's life: listeners bound, served, reloaded, drained.
//! - [`standalone`]: `sitecar proxy`, the front door alone with its own admin API.
//! - `server`: accept loop, hyper connection builders, connection limit, graceful drain.
//! - [`edge`]: [`EdgeService`], the request path top to bottom (admit → offload → cache plan →
//!   origin → store → compress → record), calling out to the modules below.
//! - [`headers`]: forwarding rules for request and response heads, and the checks of a head.
//! - [`cache`]: the RFC 9111 shared cache: the store, and the plan for each request (no I/O).
//! - `origin`: main behind its readiness gate: one retry when safe, who failed.
//! - `upstream`: the pool of HTTP/1.1 connections to main.
//! - [`offload`]: static files served at the edge, confined to their directory.
//! - `compress`: compression for clients that accept it, and `Vary: Accept-Encoding`.
//! - `record`: each request's metrics and access-log line.
//! - [`body`]: the request body on its way to main (limits, progress timeout, minimum rate).
//! - [`response`]: the response body (no boxing), and the fill of the cache as it streams.
//! - [`tls`]: rustls server config, SNI across certificates, reload on file change.
//! - `ids`: request ids and W3C `traceparent`.
//! - `io`: client IO with a write-progress deadline.
//! - [`metrics`]: HTTP metrics in an explicit Prometheus registry.
//! - `history`: the last five minutes of traffic in 5-second buckets, for the status page.
//! - `access`: the access log writer.
//! - `spans` (feature `otlp`): one span per request, exported over OTLP/HTTP.
//! - [`admin`]: the admin API (health, readiness, metrics, status, logs, restart) and `page`, its status page.
//! - [`error`]: [`ProxyError`], mapped to a status in one place.

mod access;
pub mod admin;
pub mod body;
pub mod cache;
mod compress;
pub mod edge;
pub mod error;
pub mod front;
pub mod h1;
pub mod headers;
mod history;
mod ids;
mod io;
pub mod metrics;
pub mod offload;
mod origin;
mod page;
mod record;
pub mod response;
mod server;
#[cfg(feature = "otlp")]
mod spans;
pub mod standalone;
pub mod tls;
pub mod upstream;

pub use edge::{EdgeConfig, EdgeService};
pub use error::ProxyError;
pub use front::FrontDoor;
pub use server::{serve, ServerLimits};
pub use upstream::Upstream;
