//! What the front door records of each request besides answering it: the HTTP metrics and the
//! access-log line (and through it, spans), from what was read of the head when the request
//! began and the response it got.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{header, Method, Response, Uri, Version};

use crate::access::{AccessLog, Record};
use crate::error::ProxyError;
use crate::headers::{Peer, RequestIds};
use crate::metrics::HttpMetrics;
use crate::response::EdgeBody;

/// The recorders of the request path.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub access: Option<AccessLog>,
    pub metrics: Option<Arc<HttpMetrics>>,
}

/// What the metrics and the access log need once the response is known.
pub struct Books {
    start: Instant,
    /// Method, request body length and URI (a clone shares its bytes), when metrics are on.
    measured: Option<(Method, Option<u64>, Uri)>,
    pub ids: Option<RequestIds>,
    log: Option<LogFields>,
}

/// Method, target, version, (user agent, referer) and host: what the access log needs of the head.
type LogFields = (Method, String, Version, (Option<String>, Option<String>), Option<String>);

impl Books {
    pub fn request_id(&self) -> &str {
        self.ids.as_ref().map_or("-", |i| i.request_id())
    }

    fn trace_id(&self) -> &str {
        self.ids.as_ref().map_or("-", |i| i.trace_id())
    }
}

impl Recorder {
    /// Opens the books of a request whose head was just read.
    #[inline]
    pub fn begin(&self, parts: &http::request::Parts) -> Books {
        let start = Instant::now();
        if let Some(m) = &self.metrics {
            m.active.inc();
        }
        let measured =
            self.metrics.as_ref().map(|_| (parts.method.clone(), crate::headers::content_length(&parts.headers), parts.uri.clone()));
        Books { start, measured, ids: None, log: None }
    }

    /// Whether an access-log line is written (ids are needed for it even on a cache hit).
    #[inline]
    pub fn logs(&self) -> bool {
        self.access.is_some()
    }

    /// The request's ids, and what the access log needs of its head (the host only for a span,
    /// and only from a head that passed the checks: `checked`).
    #[inline]
    pub fn identify(&self, books: &mut Books, parts: &http::request::Parts, ids: Option<RequestIds>, checked: bool) {
        let host = ids.as_ref().and_then(|i| i.span()).filter(|_| checked).and_then(|_| host(parts));
        books.log = self.access.as_ref().map(|_| log_fields(parts, host));
        books.ids = ids;
    }

    /// A request that failed: said in the debug log and counted by kind.
    pub fn failed(&self, books: &Books, e: &ProxyError) {
        tracing::debug!(request_id = %books.request_id(), error = %e, "request failed");
        if let (Some(m), Some((_, _, uri))) = (&self.metrics, &books.measured) {
            m.error(e, books.request_id(), books.trace_id(), uri.path());
        }
    }

    /// The request's metrics and access-log line.
    #[inline]
    pub fn finish(&self, books: Books, response: &Response<EdgeBody>, upstream: Option<Duration>, peer: &Peer) {
        if let (Some(m), Some((method, request_bytes, _))) = (&self.metrics, &books.measured) {
            m.active.dec();
            m.observe(method, response.status(), books.start.elapsed(), *request_bytes, crate::headers::content_length(response.headers()));
        }
        let Some(access) = &self.access else { return };
        let request_id = books.request_id().to_owned();
        let trace_id = books.trace_id().to_owned();
        let span = books.ids.as_ref().and_then(|i| i.span());
        if let Some((method, target, version, (user_agent, referer), host)) = books.log {
            access.log(Record {
                at: SystemTime::now(),
                client: peer.client.ip(),
                method,
                target,
                version,
                scheme: if peer.https { "https" } else { "http" },
                host,
                status: response.status().as_u16(),
                bytes: crate::headers::content_length(response.headers()),
                duration: books.start.elapsed(),
                upstream,
                request_id,
                trace_id,
                span,
                user_agent,
                referer,
            });
        }
    }
}

/// What the access log needs of a request head.
fn log_fields(parts: &http::request::Parts, host: Option<String>) -> LogFields {
    let target = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let get = |n: header::HeaderName| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (parts.method.clone(), target, parts.version, (get(header::USER_AGENT), get(header::REFERER)), host)
}

/// The request's host: `Host`, or the authority of an HTTP/2 request.
fn host(parts: &http::request::Parts) -> Option<String> {
    match parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        Some(h) => Some(h.to_owned()),
        None => parts.uri.authority().map(|a| a.as_str().to_owned()),
    }
}
