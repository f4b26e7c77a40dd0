//! The request path, top to bottom, in the order a request meets it:
//!
//! 1. [`EdgeService::begin`], as the head is read: check it (a bad one is answered 4xx here and
//!    nothing reaches main), answer a fresh cache hit at once, else rewrite the head for main.
//! 2. [`EdgeService::complete`]: offload → cache plan → origin → store → compress → record.
//!
//! What it calls: `offload` (files at the edge), `cache` (the plan and the storage decision, no
//! I/O), `origin` (main: readiness, one retry, who failed), `compress`, and `record` (metrics and
//! the access log). The I/O is all here or in those callees, never in the cache.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::access::AccessLog;
use crate::body::{RequestBody, UpstreamBody};
use crate::cache::{Cache, Forwarding, Keep, Plan, Revalidated, Whole};
use crate::compress::{compress, vary_by_encoding};
use crate::error::ProxyError;
use crate::h1::client::Tunnel;
use crate::headers::{self, Peer};
use crate::metrics::HttpMetrics;
use crate::offload::Offload;
use crate::origin::{Origin, OriginLimits};
use crate::record::{Books, Recorder};
use crate::response::{EdgeBody, Fill};
use crate::upstream::{MainBody, Upstream};

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
    recorder: Recorder,
}

/// A request once its head is read. (On the stack for a moment, then moved: boxing the large
/// variant would cost an allocation per request.)
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Answered already (a fresh cache hit that needs no compression, or a refused head).
    Answered(Response<EdgeBody>),
    /// For the offload, the cache or main: [`EdgeService::complete`].
    Route(Pending),
}

/// A request on its way to the offload, the cache or main.
pub struct Pending {
    parts: http::request::Parts,
    body: RequestBody,
    websocket: bool,
    /// A fresh hit that is still to be compressed.
    hit: Option<Response<EdgeBody>>,
    accept_encoding: Option<HeaderValue>,
    books: Books,
}

impl Pending {
    /// Adds to the request's extensions (what its connection offers the way to main).
    pub fn insert_extension<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.parts.extensions.insert(value);
    }
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
        ready: tokio::sync::watch::Receiver<bool>,
        access: Option<AccessLog>,
        metrics: Option<Arc<HttpMetrics>>,
    ) -> Arc<Self> {
        let limits = OriginLimits {
            hold: config.hold,
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            max_body: config.max_body,
        };
        let origin = Origin::new(upstream, ready, limits, metrics.clone());
        Arc::new(Self { config, origin, recorder: Recorder { access, metrics } })
    }

    /// What the direct path (`h1/direct.rs`) reads: the settings, main, the recorders.
    pub(crate) fn direct_view(&self) -> (&EdgeConfig, &Origin, &Recorder) {
        (&self.config, &self.origin, &self.recorder)
    }

    /// The whole request path for one request, for callers without a connection of their own
    /// (in-process tests, embedders): [`EdgeService::begin`] then [`EdgeService::complete`].
    pub async fn handle<B: Into<RequestBody>>(self: &Arc<Self>, req: Request<B>, peer: &Arc<Peer>) -> Response<EdgeBody> {
        match self.begin(req, peer) {
            Step::Answered(r) => r,
            Step::Route(pending) => self.clone().complete(pending, peer.clone()).await,
        }
    }

    /// Reads what the request path needs from the head, refuses a bad one, answers a fresh cache
    /// hit on the spot, and rewrites the head for main.
    pub fn begin<B: Into<RequestBody>>(&self, req: Request<B>, peer: &Peer) -> Step {
        self.begin_with(req, peer, false)
    }

    /// As [`EdgeService::begin`], for a head sitecar's codec has checked already (it refuses
    /// what `check_request` would, before the edge sees it).
    pub(crate) fn begin_checked<B: Into<RequestBody>>(&self, req: Request<B>, peer: &Peer) -> Step {
        self.begin_with(req, peer, true)
    }

    fn begin_with<B: Into<RequestBody>>(&self, req: Request<B>, peer: &Peer, checked: bool) -> Step {
        let (mut parts, body) = req.into_parts();
        let mut books = self.recorder.begin(&parts);
        let check = if checked {
            headers::checks::absolute_target_host(&mut parts);
            Ok(())
        } else {
            headers::check_request(&mut parts)
        };
        if let Err(e) = check {
            // Refused before anything reaches main; the connection is closed after the answer.
            let ids = headers::request_ids(&parts.headers, self.config.forwarding.trace);
            let response = e.response(ids.request_id());
            self.recorder.identify(&mut books, &parts, Some(ids), false);
            self.recorder.failed(&books, &e);
            self.recorder.finish(books, &response, None, peer);
            return Step::Answered(response);
        }
        let websocket = headers::is_websocket(&parts.method, parts.version, &parts.headers);
        // A fresh hit is answered before anything is rewritten for main (after the offload, whose
        // paths are its own).
        let offloaded = self.config.offload.as_ref().is_some_and(|o| o.covers(parts.uri.path()));
        let hit = match &self.config.cache {
            Some(cache) if !websocket && !offloaded => cache.fresh_hit(&parts).map(|r| r.map(EdgeBody::from)),
            _ => None,
        };
        // A hit needs ids only for its access-log line.
        let ids = match hit {
            Some(_) if !self.recorder.logs() => None,
            Some(_) => Some(headers::request_ids(&parts.headers, self.config.forwarding.trace)),
            None => Some(headers::prepare_request(&mut parts.headers, &parts.uri, parts.version, websocket, peer, self.config.forwarding)),
        };
        self.recorder.identify(&mut books, &parts, ids, true);
        let accept_encoding = if self.config.compression && parts.method != Method::HEAD {
            parts.headers.get(header::ACCEPT_ENCODING).cloned()
        } else {
            None
        };
        match hit {
            Some(mut response) if accept_encoding.is_none() => {
                if self.config.compression {
                    vary_by_encoding(&mut response);
                }
                self.recorder.finish(books, &response, None, peer);
                Step::Answered(response)
            }
            hit => Step::Route(Pending { parts, body: body.into(), websocket, hit, accept_encoding, books }),
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
                    self.recorder.failed(&books, &e);
                    (e.response(books.request_id()), None, false)
                }
            };
            match pending.accept_encoding {
                Some(accept) if !file => response = Box::pin(compress(accept, response)).await,
                // Not compressed for this client, but for others: said in Vary.
                None if !file && self.config.compression => vary_by_encoding(&mut response),
                _ => {}
            }
            self.recorder.finish(books, &response, upstream, &peer);
            response
        }
    }

    /// Offload, then the cache, then main. The cache's future is boxed: it is half again the
    /// size of the plain forward's, and every request's future (one allocation per request)
    /// would otherwise be as large as the largest path.
    #[allow(clippy::manual_async_fn)] // not `async fn`: that keeps a second copy of the arguments in the future
    fn route(
        &self,
        parts: http::request::Parts,
        body: RequestBody,
        websocket: bool,
    ) -> impl Future<Output = Result<Answer, ProxyError>> + '_ {
        async move {
            if let Some(offload) = &self.config.offload {
                if let Some(r) = offload.serve(&parts).await {
                    return Ok(Answer { file: true, ..Answer::local(r) });
                }
            }
            let body = UpstreamBody::new(body, self.config.max_body, self.config.body_idle).min_rate(self.config.body_min_rate);
            match &self.config.cache {
                Some(cache) if !websocket => Box::pin(self.through_cache(cache, parts, body)).await,
                _ => self.forward(parts, body, websocket).await,
            }
        }
    }

    /// Carries out the cache's plan for a request (RFC 9111): answer from the store (refreshing
    /// in the background), wait for another request's fill, or ask main and give the cache its
    /// answer to store, or to freshen or stand in for the stored response.
    async fn through_cache(&self, cache: &Arc<Cache>, mut parts: http::request::Parts, body: UpstreamBody) -> Result<Answer, ProxyError> {
        let mut plan = cache.plan(&parts, self.origin.ready());
        loop {
            match plan {
                Plan::Answer(response, refresh) => {
                    if let Some(refresh) = refresh {
                        self.refresh_in_background(cache, refresh);
                    }
                    return Ok(Answer::local(response.map(EdgeBody::from)));
                }
                Plan::Wait(mut waiting) => {
                    let _ = tokio::time::timeout(cache.lock_timeout(), waiting.done.changed()).await;
                    plan = cache.after_wait(&parts, waiting);
                }
                Plan::Forward(forwarding) => return self.forward_past(cache, forwarding, parts, body).await,
                Plan::Fill(filling) if filling.whole => {
                    // A range request on a miss: the whole object from main, the range from it.
                    let client = headers::head_with(&parts, parts.headers.clone());
                    parts.headers.remove(header::RANGE);
                    parts.headers.remove(header::IF_RANGE);
                    let (mut rp, incoming, took) = self.ask(parts, body).await?;
                    return match cache.filled_whole(filling, &client, &mut rp) {
                        Whole::Store(keep) => store_and_answer(keep, incoming, &client, false, took).await,
                        Whole::Reask(forwarding) => {
                            drop(incoming);
                            self.forward_past(cache, forwarding, client, UpstreamBody::empty()).await
                        }
                        Whole::Pass(keep) => {
                            rp.version = client.version;
                            Ok(Answer::main(Response::from_parts(rp, stream(incoming, keep)), took))
                        }
                    };
                }
                Plan::Fill(filling) => {
                    let version = parts.version;
                    let (mut rp, incoming, took) = self.ask(parts, body).await?;
                    let keep = cache.filled(filling, &mut rp);
                    rp.version = version;
                    return Ok(Answer::main(Response::from_parts(rp, stream(incoming, keep)), took));
                }
                Plan::Revalidate(rv) => {
                    return match self.ask(rv.request.clone(), UpstreamBody::empty()).await {
                        Ok((mut rp, incoming, took)) => match cache.revalidated(&parts, rv, &mut rp) {
                            Revalidated::Fresh(r) => Ok(Answer::main(r.map(EdgeBody::from), took)),
                            Revalidated::Stale(r) => Ok(Answer::local(r.map(EdgeBody::from))),
                            Revalidated::New(Some(keep))
                                if parts.headers.contains_key(header::RANGE)
                                    && rp.status == StatusCode::OK
                                    && headers::content_length(&rp.headers).is_some_and(|l| l <= keep.limit()) =>
                            {
                                // Asked for the whole object on the client's range request.
                                store_and_answer(keep, incoming, &parts, true, took).await
                            }
                            Revalidated::New(keep) => {
                                rp.version = parts.version;
                                Ok(Answer::main(Response::from_parts(rp, stream(incoming, keep)), took))
                            }
                            Revalidated::Refetch(Some(filling)) => {
                                drop(incoming);
                                let version = parts.version;
                                let (mut rp, incoming, took) = self.ask(parts, UpstreamBody::empty()).await?;
                                let keep = cache.filled(filling, &mut rp);
                                rp.version = version;
                                Ok(Answer::main(Response::from_parts(rp, stream(incoming, keep)), took))
                            }
                            Revalidated::Refetch(None) => {
                                drop(incoming);
                                self.forward(parts, UpstreamBody::empty(), false).await
                            }
                        },
                        Err(e) => match cache.revalidation_failed(&parts, rv, e.disconnected()) {
                            Some(r) => Ok(Answer::local(r.map(EdgeBody::from))),
                            None => Err(e),
                        },
                    };
                }
            }
        }
    }

    /// A request the cache lets past: main's answer tagged, and stored when the cache keeps it (a
    /// POST's answer for its own URI, a piece of a large object).
    async fn forward_past(
        &self,
        cache: &Arc<Cache>,
        forwarding: Forwarding,
        parts: http::request::Parts,
        body: UpstreamBody,
    ) -> Result<Answer, ProxyError> {
        let a = self.forward(parts, body, false).await?;
        let (mut rp, b) = a.response.into_parts();
        let b = match (cache.forwarded(forwarding, &mut rp), b) {
            (Some(keep), EdgeBody::Upstream(incoming)) => stream(incoming, Some(keep)),
            (_, b) => b,
        };
        Ok(Answer { response: Response::from_parts(rp, b), ..a })
    }

    /// Main's answer for the cache: its head rewritten for the client, its body, the time it took.
    async fn ask(
        &self,
        parts: http::request::Parts,
        body: UpstreamBody,
    ) -> Result<(http::response::Parts, MainBody, Duration), ProxyError> {
        let (resp, took) = self.origin.send(parts, body, true).await?;
        let (mut rp, incoming) = resp.into_parts();
        headers::prepare_response(&mut rp.headers, false);
        Ok((rp, incoming, took))
    }

    /// A stale response was served: its refresh goes to main off the request path, and a new
    /// response is read whole into the store (bounded by `maxObjectBytes`).
    fn refresh_in_background(&self, cache: &Arc<Cache>, refresh: crate::cache::Refresh) {
        let (origin, cache) = (self.origin.clone(), cache.clone());
        tokio::spawn(async move {
            use http_body_util::BodyExt;
            let Ok((resp, _)) = origin.send(refresh.request.clone(), UpstreamBody::empty(), true).await else { return };
            let (mut rp, incoming) = resp.into_parts();
            headers::prepare_response(&mut rp.headers, false);
            if let Some(keep) = cache.refreshed(refresh, &rp) {
                // Draining the body through a Fill stores it when it ends.
                let mut fill = Fill::new(incoming, keep);
                while let Some(Ok(_)) = fill.frame().await {}
            }
        });
    }

    /// Main's response as it is (a WebSocket upgrade becomes a tunnel after the 101).
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
            let (mut resp, took) = self.origin.send(parts, body, !websocket).await?;
            let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
            if switching {
                let Some(client_upgrade) = client_upgrade else {
                    // Main tried to switch protocols on a request that did not ask for WebSocket.
                    return Err(ProxyError::Upstream("unexpected 101 Switching Protocols".into()));
                };
                let Some(upstream) = resp.extensions_mut().remove::<Tunnel>().and_then(|t| t.take()) else {
                    return Err(ProxyError::Upstream("101 Switching Protocols without a connection to tunnel".into()));
                };
                tokio::spawn(async move {
                    if let Ok(client) = client_upgrade.await {
                        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut upstream.into_tunnel()).await;
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

/// Main's body to the client, through the store when the cache keeps it.
/// Main's whole object, fetched for a client's range request (within `maxObjectBytes`): read,
/// stored, and the client's request answered from the store.
async fn store_and_answer(
    keep: Keep,
    incoming: MainBody,
    client: &http::request::Parts,
    stale: bool,
    took: Duration,
) -> Result<Answer, ProxyError> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(incoming, keep.limit() as usize);
    let whole = limited.collect().await.map_err(ProxyError::Upstream)?.to_bytes();
    Ok(Answer::main(keep.store_and_answer(whole, client, stale).map(EdgeBody::from), took))
}

fn stream(body: MainBody, keep: Option<Keep>) -> EdgeBody {
    match keep {
        Some(keep) => EdgeBody::Fill(Box::new(Fill::new(body, keep))),
        None => EdgeBody::Upstream(body),
    }
}
