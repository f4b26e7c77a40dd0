//! A request's way in and out: what is settled once its head is read, the answer it gets at once
//! when it can (a fresh cache hit: no future, no allocation), and its metrics and access-log line
//! once the response is known.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{header, HeaderValue, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::{agent, compress, content_length, fresh_hit, host, vary_by_encoding, Answer, EdgeService};
use crate::access::Record;
use crate::body::EdgeBody;
use crate::headers::{self, Peer, RequestIds};

/// A request once its head is read. (On the stack for a moment, then moved: boxing the large
/// variant would cost an allocation per request.)
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Answered already (a fresh cache hit that needs no compression).
    Answered(Response<EdgeBody>),
    /// For the offload, the cache or main: [`EdgeService::complete`].
    Route(Pending),
}

/// A request on its way to the offload, the cache or main.
pub struct Pending {
    parts: http::request::Parts,
    body: Incoming,
    websocket: bool,
    /// A fresh hit that is still to be compressed.
    hit: Option<Response<EdgeBody>>,
    accept_encoding: Option<HeaderValue>,
    books: Books,
}

/// What the metrics and the access log need once the response is known.
struct Books {
    start: Instant,
    /// Method, request body length and URI (a clone shares its bytes), when metrics are on.
    measured: Option<(Method, Option<u64>, Uri)>,
    ids: Option<RequestIds>,
    log: Option<LogFields>,
}

/// Method, target, version, (user agent, referer) and host: what the access log needs of the head.
type LogFields = (Method, String, Version, (Option<String>, Option<String>), Option<String>);

/// What the access log needs of a request head.
fn log_fields(parts: &http::request::Parts, host: Option<String>) -> LogFields {
    let target = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    (parts.method.clone(), target, parts.version, agent(&parts.headers), host)
}

impl Books {
    fn request_id(&self) -> &str {
        self.ids.as_ref().map_or("-", |i| i.request_id())
    }

    fn trace_id(&self) -> &str {
        self.ids.as_ref().map_or("-", |i| i.trace_id())
    }
}

impl EdgeService {
    /// Reads what the request path needs from the head, rewrites it for main, and answers a fresh
    /// cache hit on the spot.
    pub fn begin(&self, req: Request<Incoming>, peer: &Peer) -> Step {
        let start = Instant::now();
        if let Some(m) = &self.metrics {
            m.active.inc();
        }
        let (mut parts, body) = req.into_parts();
        let measured = self.metrics.as_ref().map(|_| (parts.method.clone(), content_length(&parts.headers), parts.uri.clone()));
        if let Err(e) = headers::check_request(&mut parts) {
            // Refused before anything reaches main; the connection is closed after the answer.
            let ids = headers::request_ids(&parts.headers, self.config.forwarding.trace);
            let response = e.response(ids.request_id());
            if let (Some(m), Some((_, _, uri))) = (&self.metrics, &measured) {
                m.error(&e, ids.request_id(), ids.trace_id(), uri.path());
            }
            let log = self.access.as_ref().map(|_| log_fields(&parts, None));
            self.record(Books { start, measured, ids: Some(ids), log }, &response, None, peer);
            return Step::Answered(response);
        }
        let websocket = headers::is_websocket(&parts.method, parts.version, &parts.headers);
        // A fresh hit is answered before anything is rewritten for main (after the offload, whose
        // paths are its own).
        let offloaded = self.config.offload.as_ref().is_some_and(|o| o.covers(parts.uri.path()));
        let hit = match &self.config.cache {
            Some(cache) if !websocket && !offloaded => fresh_hit(cache, &parts),
            _ => None,
        };
        // A hit needs ids only for its access-log line.
        let ids = match hit {
            Some(_) if self.access.is_none() => None,
            Some(_) => Some(headers::request_ids(&parts.headers, self.config.forwarding.trace)),
            None => Some(headers::prepare_request(&mut parts.headers, &parts.uri, parts.version, websocket, peer, self.config.forwarding)),
        };
        // Only a span names the host.
        let log = self.access.as_ref().map(|_| log_fields(&parts, ids.as_ref().and_then(|i| i.span()).and_then(|_| host(&parts))));
        let accept_encoding = if self.config.compression && parts.method != Method::HEAD {
            parts.headers.get(header::ACCEPT_ENCODING).cloned()
        } else {
            None
        };
        let books = Books { start, measured, ids, log };
        match hit {
            Some(mut response) if accept_encoding.is_none() => {
                if self.config.compression {
                    vary_by_encoding(&mut response);
                }
                self.record(books, &response, None, peer);
                Step::Answered(response)
            }
            hit => Step::Route(Pending { parts, body, websocket, hit, accept_encoding, books }),
        }
    }

    /// The rest of the request path for what [`EdgeService::begin`] did not answer. Owns what
    /// it needs (the future is boxed per request and lives on its own), and reads `pending` in
    /// place rather than taking it apart, which would keep a second copy in the future.
    #[allow(clippy::manual_async_fn)] // not `async fn`: that keeps a second copy of the arguments in the future
    pub fn complete(self: Arc<Self>, pending: Pending, peer: Arc<Peer>) -> impl Future<Output = Response<EdgeBody>> + Send + 'static {
        async move {
            let routed = match pending.hit {
                Some(r) => Ok(Answer::local(r)),
                None => self.route(pending.parts, pending.body, pending.websocket).await,
            };
            let books = pending.books;
            let (mut response, upstream, file) = match routed {
                Ok(a) => (a.response, a.upstream, a.file),
                Err(e) => {
                    tracing::debug!(request_id = %books.request_id(), error = %e, "request failed");
                    if let (Some(m), Some((_, _, uri))) = (&self.metrics, &books.measured) {
                        m.error(&e, books.request_id(), books.trace_id(), uri.path());
                    }
                    (e.response(books.request_id()), None, false)
                }
            };
            match pending.accept_encoding {
                Some(accept) if !file => response = Box::pin(compress(accept, response)).await,
                // Not compressed for this client, but for others: said in Vary.
                None if !file && self.config.compression => vary_by_encoding(&mut response),
                _ => {}
            }
            self.record(books, &response, upstream, &peer);
            response
        }
    }

    /// The request's metrics and access-log line.
    fn record(&self, books: Books, response: &Response<EdgeBody>, upstream: Option<Duration>, peer: &Peer) {
        if let (Some(m), Some((method, request_bytes, _))) = (&self.metrics, &books.measured) {
            m.active.dec();
            m.observe(method, response.status(), books.start.elapsed(), *request_bytes, content_length(response.headers()));
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
                bytes: content_length(response.headers()),
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
