//! The request path, top to bottom: [`EdgeService::begin`] (a fresh cache hit answered at once,
//! in edge/entry.rs), then offload (files at the edge) -> cache (RFC 9111) -> admit (main ready?) ->
//! limits -> forward to main -> rewrite response -> compress -> log ([`EdgeService::complete`]).

mod entry;

pub use entry::{Pending, Step};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::access::AccessLog;
use crate::body::{EdgeBody, UpstreamBody};
use crate::cache::{cache_status, Cache, Fill, Lookup, Outcome, StaleReason, Stored, Turn};
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::HttpMetrics;
use crate::offload::Offload;
use crate::upstream::{MainBody, Origin, Upstream};

/// Settings of the request path.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// How long a request waits for main to become ready.
    pub hold: Duration,
    /// Until main's response head.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body: Option<u64>,
    /// Longest pause in a request body.
    pub body_idle: Duration,
    /// Slowest average a request body may have after its grace period.
    pub body_min_rate: Option<crate::body::MinRate>,
    /// Header rules: `_` names, and whether the edge records spans of its own.
    pub forwarding: headers::Forwarding,
    /// Compress main's responses for clients that accept it.
    pub compression: bool,
    /// The shared cache, when enabled.
    pub cache: Option<Arc<Cache>>,
    /// Files served at the edge.
    pub offload: Option<Offload>,
}

/// The front door's request handling, shared by every connection.
#[derive(Debug)]
pub struct EdgeService {
    config: EdgeConfig,
    origin: Origin,
    ready: watch::Receiver<bool>,
    access: Option<AccessLog>,
    metrics: Option<Arc<HttpMetrics>>,
}

/// How a request was answered, besides its response.
struct Answer {
    response: Response<EdgeBody>,
    /// Time until main's response head, when main was asked.
    upstream: Option<Duration>,
    /// A file of an offload rule: served precompressed or as it is, never compressed here.
    file: bool,
}

impl Answer {
    fn local(response: Response<EdgeBody>) -> Self {
        Self { response, upstream: None, file: false }
    }

    fn main(response: Response<EdgeBody>, took: Duration) -> Self {
        Self { response, upstream: Some(took), file: false }
    }
}

impl EdgeService {
    pub fn new(
        config: EdgeConfig,
        upstream: Upstream,
        ready: watch::Receiver<bool>,
        access: Option<AccessLog>,
        metrics: Option<Arc<HttpMetrics>>,
    ) -> Arc<Self> {
        let origin = Origin { upstream, request_timeout: config.request_timeout, connect_timeout: config.connect_timeout };
        Arc::new(Self { config, origin, ready, access, metrics })
    }

    /// The client's body as main gets it: bounded in size, pauses and rate.
    fn request_body(&self, body: Incoming) -> UpstreamBody {
        UpstreamBody::new(body, self.config.max_body, self.config.body_idle).min_rate(self.config.body_min_rate)
    }

    /// Offload, then the cache, then main. The cache's future is boxed: it is half again the
    /// size of the plain forward's, and every request's future (one allocation per request)
    /// would otherwise be as large as the largest path.
    #[allow(clippy::manual_async_fn)] // not `async fn`: that keeps a second copy of the arguments in the future
    fn route(&self, parts: http::request::Parts, body: Incoming, websocket: bool) -> impl Future<Output = Result<Answer, ProxyError>> + '_ {
        async move {
            if let Some(offload) = &self.config.offload {
                if let Some(r) = offload.serve(&parts).await {
                    return Ok(Answer { file: true, ..Answer::local(r) });
                }
            }
            match &self.config.cache {
                Some(cache) if !websocket => Box::pin(self.through_cache(cache, parts, body)).await,
                _ => self.forward(parts, self.request_body(body), websocket).await,
            }
        }
    }

    /// The cache's part of the request path (RFC 9111): fresh hits answered from memory, stale
    /// entries revalidated (in the background within `stale-while-revalidate`, or served when
    /// main fails within `stale-if-error`), concurrent misses collapsed into one request to main,
    /// storable responses kept on their way to the client, and unsafe methods invalidating.
    async fn through_cache(&self, cache: &Arc<Cache>, parts: http::request::Parts, body: Incoming) -> Result<Answer, ProxyError> {
        let body = self.request_body(body);
        let safe = parts.method == Method::GET || parts.method == Method::HEAD;
        if !safe {
            return self.unsafe_request(cache, parts, body).await;
        }
        if no_store(&parts.headers) {
            return self.bypass(cache, parts, body, "request").await;
        }
        let key = Cache::key(&parts);
        let now = SystemTime::now();
        let with_directives = has_directives(&parts.headers);
        let vary_miss = match cache.lookup(&key, &parts.headers) {
            Lookup::Found(s) => {
                if s.fresh(now) && (!with_directives || s.satisfies(&parts, now)) {
                    cache.count(Outcome::Hit);
                    return Ok(Answer::local(s.respond(&parts, now, cache_status(Outcome::Hit, Some(s.ttl(now)), false))));
                }
                return self.revalidate(cache, key, s, parts, now, with_directives).await;
            }
            Lookup::VaryMiss => true,
            Lookup::None => false,
        };
        let miss = Outcome::Miss { stored: false, vary: vary_miss, stale: false };
        // A client's own conditional or range request on a miss goes to main as it is.
        if parts.method == Method::HEAD || conditional(&parts.headers) {
            cache.count(miss);
            let mut a = self.forward(parts, body, false).await?;
            tag(&mut a.response, cache_status(miss, None, false));
            return Ok(a);
        }
        match cache.turn(&key) {
            Turn::Fill(guard) => self.fill(cache, key, parts, body, miss, Some(guard)).await,
            Turn::Wait(mut rx) => {
                // Another request is asking main for this URL: wait for its answer.
                let _ = tokio::time::timeout(cache.lock_timeout(), rx.changed()).await;
                let now = SystemTime::now();
                if let Lookup::Found(s) = cache.lookup(&key, &parts.headers) {
                    if s.fresh(now) && (!with_directives || s.satisfies(&parts, now)) {
                        cache.count(Outcome::Hit);
                        return Ok(Answer::local(s.respond(&parts, now, cache_status(Outcome::Hit, Some(s.ttl(now)), true))));
                    }
                }
                self.fill(cache, key, parts, body, miss, None).await
            }
        }
    }

    /// Asks main and stores its response if it may be.
    async fn fill(
        &self,
        cache: &Arc<Cache>,
        key: Arc<str>,
        parts: http::request::Parts,
        body: UpstreamBody,
        miss: Outcome,
        guard: Option<crate::cache::FillGuard>,
    ) -> Result<Answer, ProxyError> {
        let head = request_head(&parts);
        let (resp, took) = self.ask(parts, body).await?;
        let (mut rp, incoming) = resp.into_parts();
        headers::prepare_response(&mut rp.headers, false);
        let candidate = cache.candidate(&head, &rp, SystemTime::now());
        let stored = candidate.is_some();
        cache.count(miss);
        let body = match candidate {
            Some(c) => EdgeBody::Fill(Box::new(Fill::new(incoming, c, cache.clone(), key, guard))),
            None => EdgeBody::Upstream(incoming),
        };
        let outcome = match miss {
            Outcome::Miss { vary, stale, .. } => Outcome::Miss { stored, vary, stale },
            other => other,
        };
        rp.headers.insert(cache_status_name(), cache_status(outcome, None, false));
        rp.version = head.version;
        Ok(Answer::main(Response::from_parts(rp, body), took))
    }

    /// A stored response that cannot answer as it is: served stale while a background request
    /// refreshes it, or revalidated with main now; stale again if main fails and that is allowed.
    async fn revalidate(
        &self,
        cache: &Arc<Cache>,
        key: Arc<str>,
        stored: Arc<Stored>,
        parts: http::request::Parts,
        now: SystemTime,
        with_directives: bool,
    ) -> Result<Answer, ProxyError> {
        let stale = |reason| {
            cache.count(Outcome::Stale(reason));
            Ok(Answer::local(stored.respond(&parts, now, cache_status(Outcome::Stale(reason), Some(stored.ttl(now)), false))))
        };
        if !with_directives && stored.within_stale_while_revalidate(now) {
            if let Turn::Fill(guard) = cache.turn(&key) {
                let request = stored.revalidation(&parts, now);
                let (origin, cache, stored, key) = (self.origin.clone(), cache.clone(), stored.clone(), key.clone());
                tokio::spawn(async move {
                    let head = request.clone();
                    if let Ok((resp, _)) = origin.send(Request::from_parts(request, UpstreamBody::empty())).await {
                        refresh_in_background(&cache, &key, &stored, &head, resp).await;
                    }
                    drop(guard);
                });
            }
            return stale(StaleReason::WhileRevalidate);
        }
        // Main is down and the response may be served stale on error: do not wait for it.
        if !*self.ready.borrow() && stored.within_stale_if_error(now) {
            return stale(StaleReason::IfError);
        }
        let request = stored.revalidation(&parts, now);
        let head = request.clone();
        match self.ask(request, UpstreamBody::empty()).await {
            Ok((resp, took)) => {
                let (mut rp, incoming) = resp.into_parts();
                headers::prepare_response(&mut rp.headers, false);
                if rp.status == StatusCode::NOT_MODIFIED {
                    if let Some(fresh) = cache.refresh(&key, &stored, &head, &rp, SystemTime::now()) {
                        cache.count(Outcome::Revalidated);
                        let now = SystemTime::now();
                        let r = fresh.respond(&parts, now, cache_status(Outcome::Revalidated, Some(fresh.ttl(now)), false));
                        return Ok(Answer::main(r, took));
                    }
                }
                if rp.status.is_server_error() && stored.within_stale_if_error(now) {
                    return stale(StaleReason::IfError);
                }
                // A new response: it replaces the stored one when it may be stored.
                let candidate = cache.candidate(&head, &rp, SystemTime::now());
                let outcome = Outcome::Miss { stored: candidate.is_some(), vary: false, stale: true };
                cache.count(outcome);
                let body = match candidate {
                    Some(c) if rp.status != StatusCode::NOT_MODIFIED => {
                        EdgeBody::Fill(Box::new(Fill::new(incoming, c, cache.clone(), key, None)))
                    }
                    _ => EdgeBody::Upstream(incoming),
                };
                rp.headers.insert(cache_status_name(), cache_status(outcome, None, false));
                rp.version = parts.version;
                Ok(Answer::main(Response::from_parts(rp, body), took))
            }
            Err(_) if stored.within_stale_if_error(now) => stale(StaleReason::IfError),
            Err(e) => Err(e),
        }
    }

    /// Unsafe methods go to main; a success invalidates the URL and the `Location` and
    /// `Content-Location` it names on this host (RFC 9111 §4.4).
    async fn unsafe_request(&self, cache: &Arc<Cache>, parts: http::request::Parts, body: UpstreamBody) -> Result<Answer, ProxyError> {
        let key = Cache::key(&parts);
        let host_len = key.len() - parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
        let host = key[..host_len].to_owned();
        let mut a = self.forward(parts, body, false).await?;
        let status = a.response.status();
        if status.is_success() || status.is_redirection() {
            cache.invalidate(&key);
            for name in [header::LOCATION, header::CONTENT_LOCATION] {
                if let Some(target) = a.response.headers().get(&name).and_then(|v| v.to_str().ok()).and_then(|t| same_host_key(&host, t)) {
                    cache.invalidate(&target);
                }
            }
        }
        cache.count(Outcome::Bypass("method"));
        tag(&mut a.response, cache_status(Outcome::Bypass("method"), None, false));
        Ok(a)
    }

    async fn bypass(
        &self,
        cache: &Cache,
        parts: http::request::Parts,
        body: UpstreamBody,
        why: &'static str,
    ) -> Result<Answer, ProxyError> {
        cache.count(Outcome::Bypass(why));
        let mut a = self.forward(parts, body, false).await?;
        tag(&mut a.response, cache_status(Outcome::Bypass(why), None, false));
        Ok(a)
    }

    /// Waits until main is ready, at most the hold time.
    async fn admit(&self) -> Result<(), ProxyError> {
        if *self.ready.borrow() {
            return Ok(());
        }
        if let Some(m) = &self.metrics {
            m.held.inc();
        }
        let mut rx = self.ready.clone();
        let ready = tokio::time::timeout(self.config.hold, async { rx.wait_for(|r| *r).await.is_ok() }).await;
        match ready {
            Ok(true) => Ok(()),
            _ => Err(ProxyError::NotReady(self.config.hold)),
        }
    }

    /// Main's response to a request, after the readiness gate.
    #[allow(clippy::manual_async_fn)] // not `async fn`: that keeps a second copy of the arguments in the future
    fn ask(
        &self,
        parts: http::request::Parts,
        body: UpstreamBody,
    ) -> impl Future<Output = Result<(Response<MainBody>, Duration), ProxyError>> + '_ {
        async move {
            if let (Some(limit), Some(len)) = (self.config.max_body, content_length(&parts.headers)) {
                if len > limit {
                    return Err(ProxyError::BodyTooLarge(limit));
                }
            }
            self.admit().await?;
            // Origin::send puts the URI in origin form (when it is not already) and speaks HTTP/1.1.
            self.origin.send(Request::from_parts(parts, body)).await
        }
    }

    #[allow(clippy::manual_async_fn)] // not `async fn`: that keeps a second copy of the arguments in the future
    fn forward(
        &self,
        mut parts: http::request::Parts,
        body: UpstreamBody,
        websocket: bool,
    ) -> impl Future<Output = Result<Answer, ProxyError>> + '_ {
        async move {
            let client_upgrade = if websocket { parts.extensions.remove::<hyper::upgrade::OnUpgrade>() } else { None };
            let client_version = parts.version;
            // An idempotent request without a body may be sent again (RFC 9110 §9.2.2) when main
            // drops the connection before answering: main died under it and is being restarted.
            let again = (!websocket && parts.method.is_idempotent() && body.is_end_stream()).then(|| request_head(&parts));
            let (mut resp, took) = match self.ask(parts, body).await {
                Err(ProxyError::Upstream(why)) if again.is_some() => {
                    tracing::debug!(error = %why, "main dropped the connection; sending the request once more when main is ready");
                    if let Some(m) = &self.metrics {
                        m.retried_dropped();
                    }
                    // Give the supervisor time to notice main's exit and close the gate (a
                    // container engine's client can take a while on a busy machine): the retry
                    // then waits for main to be back. A one-off drop by a main that stays up waits
                    // out this bound and goes again.
                    let mut gate = self.ready.clone();
                    gate.borrow_and_update();
                    let _ = tokio::time::timeout(Duration::from_millis(500), gate.changed()).await;
                    match again {
                        Some(head) => self.ask(head, UpstreamBody::empty()).await?,
                        None => return Err(ProxyError::Upstream(why)),
                    }
                }
                other => other?,
            };

            let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
            if switching {
                let Some(client_upgrade) = client_upgrade else {
                    // Main tried to switch protocols on a request that did not ask for WebSocket.
                    return Err(ProxyError::Upstream("unexpected 101 Switching Protocols".into()));
                };
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) {
                        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
                    }
                });
            }
            let (mut parts, body) = resp.into_parts();
            // Answered in the client's protocol version, whatever main spoke.
            parts.version = client_version;
            headers::prepare_response(&mut parts.headers, switching);
            let body = if switching { EdgeBody::empty() } else { EdgeBody::Upstream(body) };
            Ok(Answer::main(Response::from_parts(parts, body), took))
        }
    }
}

/// A background revalidation's answer: a 304 refreshes the stored response, a storable new one
/// replaces it (read whole, bounded by `maxObjectBytes`).
async fn refresh_in_background(cache: &Arc<Cache>, key: &Arc<str>, stored: &Stored, head: &http::request::Parts, resp: Response<MainBody>) {
    use http_body_util::BodyExt;
    let (mut rp, incoming) = resp.into_parts();
    headers::prepare_response(&mut rp.headers, false);
    let now = SystemTime::now();
    if rp.status == StatusCode::NOT_MODIFIED {
        if cache.refresh(key, stored, head, &rp, now).is_some() {
            cache.count(Outcome::Revalidated);
        }
        return;
    }
    if let Some(c) = cache.candidate(head, &rp, now) {
        // Draining the body through a Fill stores it when it ends.
        let mut fill = Fill::new(incoming, c, cache.clone(), key.clone(), None);
        while let Some(Ok(_)) = fill.frame().await {}
    }
}

fn has_directives(h: &http::HeaderMap) -> bool {
    h.contains_key(header::CACHE_CONTROL) || h.contains_key(header::PRAGMA)
}

/// A fresh stored response that answers a GET or HEAD as it came from the client; `None` sends
/// the request down the full path (which looks again, after the head is rewritten for main).
fn fresh_hit(cache: &Cache, parts: &http::request::Parts) -> Option<Response<EdgeBody>> {
    if (parts.method != Method::GET && parts.method != Method::HEAD) || no_store(&parts.headers) {
        return None;
    }
    if !parts.headers.contains_key(header::HOST) && parts.uri.authority().is_none() {
        return None;
    }
    let Lookup::Found(s) = cache.lookup(&Cache::key_string(parts), &parts.headers) else { return None };
    let now = SystemTime::now();
    if !s.fresh(now) || (has_directives(&parts.headers) && !s.satisfies(parts, now)) {
        return None;
    }
    cache.count(Outcome::Hit);
    Some(s.respond(parts, now, cache_status(Outcome::Hit, Some(s.ttl(now)), false)))
}

/// The cache's copy of a request head (for the storage decision made once main answers).
fn request_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut r = Request::new(());
    *r.method_mut() = parts.method.clone();
    *r.uri_mut() = parts.uri.clone();
    *r.version_mut() = parts.version;
    *r.headers_mut() = parts.headers.clone();
    r.into_parts().0
}

fn cache_status_name() -> HeaderName {
    HeaderName::from_static("cache-status")
}

fn tag(r: &mut Response<EdgeBody>, status: HeaderValue) {
    r.headers_mut().insert(cache_status_name(), status);
}

/// The request's `Cache-Control: no-store`: neither stored nor answered from the store.
fn no_store(h: &http::HeaderMap) -> bool {
    h.get_all(header::CACHE_CONTROL)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-store"))))
}

fn conditional(h: &http::HeaderMap) -> bool {
    h.contains_key(header::IF_NONE_MATCH)
        || h.contains_key(header::IF_MODIFIED_SINCE)
        || h.contains_key(header::RANGE)
        || h.contains_key(header::IF_MATCH)
}

/// The cache key a `Location` or `Content-Location` names, when it is on the request's host.
fn same_host_key(host: &str, target: &str) -> Option<String> {
    if target.starts_with('/') && !target.starts_with("//") {
        return Some(format!("{host}{target}"));
    }
    let uri: http::Uri = target.parse().ok()?;
    let authority = uri.authority()?.as_str();
    authority.eq_ignore_ascii_case(host).then(|| format!("{host}{}", uri.path_and_query().map_or("/", |p| p.as_str())))
}

/// Compresses a response for a client whose `Accept-Encoding` allows it, when main did not and
/// the type is worth it (tower-http's predicate: not images, not event streams, not tiny). Files
/// of offload rules are not passed here: they are served precompressed instead.
/// What the front door compresses ([`headers::compressible`], with the body's known size).
fn compressible(response: &Response<EdgeBody>) -> bool {
    let size = http_body::Body::size_hint(response.body()).exact().or_else(|| content_length(response.headers()));
    headers::compressible(response.status(), response.headers(), size)
}

/// `Vary: Accept-Encoding` on a response the front door would compress for another client
/// (RFC 9110 §12.5.5), so a shared cache downstream never hands a compressed body to a client that
/// cannot read it, nor the identity one to every client. (A stored response has it already.)
pub(crate) fn vary_by_encoding(response: &mut Response<EdgeBody>) {
    if headers::varies_by_encoding(response.headers()) || !compressible(response) {
        return;
    }
    response.headers_mut().append(header::VARY, HeaderValue::from_static("accept-encoding"));
}

async fn compress(accept: HeaderValue, response: Response<EdgeBody>) -> Response<EdgeBody> {
    use tower::{Service, ServiceExt};
    use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate, SizeAbove};
    use tower_http::compression::{Compression, CompressionLevel};
    if !compressible(&response) {
        return response;
    }
    let mut slot = Some(response);
    let inner = tower::service_fn(move |_: Request<()>| {
        let r = slot.take().unwrap_or_else(|| Response::new(EdgeBody::empty()));
        std::future::ready(Ok::<_, std::convert::Infallible>(r))
    });
    let predicate = DefaultPredicate::new().and(SizeAbove::new(256)).and(NotForContentType::const_new("application/octet-stream"));
    let mut service = Compression::new(inner).compress_when(predicate).quality(CompressionLevel::Precise(4));
    let mut req = Request::new(());
    req.headers_mut().insert(header::ACCEPT_ENCODING, accept);
    match service.ready().await {
        Ok(s) => match s.call(req).await {
            Ok(r) => r.map(|b| EdgeBody::Compressed(Box::new(b))),
            Err(never) => match never {},
        },
        Err(never) => match never {},
    }
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn agent(h: &http::HeaderMap) -> (Option<String>, Option<String>) {
    let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (get(header::USER_AGENT), get(header::REFERER))
}

/// The request's host: `Host`, or the authority of an HTTP/2 request.
fn host(parts: &http::request::Parts) -> Option<String> {
    match parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        Some(h) => Some(h.to_owned()),
        None => parts.uri.authority().map(|a| a.as_str().to_owned()),
    }
}
