//! The cache's part of the request path, without I/O: a [`Plan`] for each request before main is
//! asked (answer from the store, revalidate, fill, wait for another request's fill, or forward
//! untouched with the reason), and the decision on what main answered (store it, freshen the
//! stored response with a 304, or serve stale because main failed). The edge asks main, waits and
//! streams; RFC 9111 is judged here.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Response, StatusCode};
use tokio::sync::watch;

use super::{cache_status, Cache, Candidate, FillGuard, Lookup, Outcome, StaleReason, Stored, Turn};

/// A response made from the store (the body: `None` for none).
pub type CachedResponse = Response<Option<Bytes>>;

/// What the cache makes of a request before main is asked.
#[derive(Debug)]
pub enum Plan {
    /// Answered from the store; with a [`Refresh`] for the edge to send in the background when it
    /// is stale within `stale-while-revalidate`.
    Answer(CachedResponse, Option<Refresh>),
    /// A miss: ask main with the request and offer its answer to [`Cache::filled`].
    Fill(Filling),
    /// Stored but not usable as it is: ask main with [`Revalidation::request`] and hand over what
    /// came back to [`Cache::revalidated`] (or the failure to [`Cache::revalidation_failed`]).
    Revalidate(Revalidation),
    /// Another request is asking main for this URL: wait for it (at most [`Cache::lock_timeout`]),
    /// then [`Cache::after_wait`].
    Wait(Waiting),
    /// Not for the store: ask main and tag its answer with [`Cache::forwarded`].
    Forward(Forwarding),
}

/// A miss being filled: the request head the storage decision is made on.
#[derive(Debug)]
pub struct Filling {
    key: Arc<str>,
    head: http::request::Parts,
    miss: Outcome,
    guard: Option<FillGuard>,
    /// A range request asking main for the whole object: the client's `Range` and `If-Range`
    /// are left out of what is sent, and the range is answered from the stored whole.
    pub whole: bool,
}

/// A stored response to confirm with main.
#[derive(Debug)]
pub struct Revalidation {
    /// The client's request with the stored validators (`If-None-Match`, `If-Modified-Since`).
    pub request: http::request::Parts,
    key: Arc<str>,
    stored: Arc<Stored>,
    now: SystemTime,
}

/// A background revalidation of a response served stale, holding the key's fill meanwhile.
#[derive(Debug)]
pub struct Refresh {
    pub request: http::request::Parts,
    key: Arc<str>,
    stored: Arc<Stored>,
    guard: FillGuard,
}

/// A wait for another request's fill of the same URL.
#[derive(Debug)]
pub struct Waiting {
    /// Changes (or closes) when the other request's response is stored or abandoned.
    pub done: watch::Receiver<()>,
    key: Arc<str>,
    miss: Outcome,
}

/// A request forwarded past the store, and what to do with main's answer.
#[derive(Debug)]
pub struct Forwarding {
    outcome: Outcome,
    /// An unsafe method: the key and host whose stored responses a success invalidates.
    invalidate: Option<(Arc<str>, String)>,
    /// A POST, as the GET its answer may later serve (RFC 9110 §9.3.3).
    post: Option<http::request::Parts>,
    /// A range request for an object asked for in ranges: the key whose pieces a 206 joins.
    pieces: Option<(Arc<str>, http::request::Parts)>,
}

/// Main's body to be stored once it has arrived whole: what to store, where, and the claim on the
/// key that waiting requests are released from when it is stored (or abandoned).
#[derive(Debug)]
pub struct Keep {
    candidate: Candidate,
    cache: Arc<Cache>,
    key: Arc<str>,
    /// A piece of a 206 (then `key` is where pieces are kept): the key of the whole object.
    whole_key: Option<Arc<str>>,
    _guard: Option<FillGuard>,
}

impl Keep {
    /// The largest body that may be stored (`maxObjectBytes`).
    pub fn limit(&self) -> u64 {
        self.cache.max_object()
    }

    /// Stores the response with its whole body, then releases the requests waiting for it.
    pub fn store(self, body: Bytes) {
        let Keep { candidate: mut c, cache, key, whole_key, _guard } = self;
        if let Some(whole_key) = whole_key {
            cache.insert_piece(&whole_key, &key, c.stored, body);
            return;
        }
        c.stored.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        c.stored.body = body;
        cache.insert(&key, c.stored);
    }

    /// Stores a whole object fetched for a range request and answers the client's request from
    /// it (206, 416, or the whole when the range cannot be served); `stale`: it replaced a stale
    /// stored response.
    pub fn store_and_answer(self, body: Bytes, client: &http::request::Parts, stale: bool) -> CachedResponse {
        let Keep { candidate: mut c, cache, key, _guard, .. } = self;
        c.stored.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        c.stored.body = body;
        let stored = cache.insert(&key, c.stored);
        let status = cache_status(Outcome::Miss { stored: true, vary: false, stale }, None, false);
        stored.respond(client, SystemTime::now(), status)
    }
}

/// What to do with main's answer to a range request's whole-object fetch.
#[derive(Debug)]
pub enum Whole {
    /// Read the body whole (it is within `maxObjectBytes`), store it, answer the range from it.
    Store(Keep),
    /// Too large to store: dropped, and the client's own range request goes to main as it is,
    /// its 206 stored as a piece.
    Reask(Forwarding),
    /// Not for the range (an error, or a small object that may not be stored): the client gets
    /// it as it is (a server may ignore `Range`), stored when `Some`.
    Pass(Option<Keep>),
}

/// The largest whole object a range request gets instead of its range when it cannot be stored.
const SMALL_WHOLE: u64 = 64 * 1024;

/// What a revalidation came to. (Moved once, on the revalidation path: not boxed.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Revalidated {
    /// Main confirmed the stored response (304): this answer, freshened.
    Fresh(CachedResponse),
    /// Main answered 5xx and the stored response may be served stale on error.
    Stale(CachedResponse),
    /// Main's new response goes to the client (its head tagged), stored when `Some`.
    New(Option<Keep>),
    /// Main's 304 selected nothing stored and the client asked no conditional question: ask main
    /// again with the client's own request, and offer a GET's answer to [`Cache::filled`].
    Refetch(Option<Filling>),
}

impl Cache {
    /// The plan for a request whose head has been rewritten for main. `main_ready`: a stored
    /// response that may be served stale on error is served at once while main is down.
    pub fn plan(self: &Arc<Self>, parts: &http::request::Parts, main_ready: bool) -> Plan {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let key = Cache::key(parts);
            let host_len = key.len() - parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
            let host = key[..host_len].to_owned();
            let post = (parts.method == Method::POST).then(|| as_get(parts));
            return Plan::Forward(Forwarding { outcome: Outcome::Bypass("method"), invalidate: Some((key, host)), post, pieces: None });
        }
        if no_store(&parts.headers) {
            self.count(Outcome::Bypass("request"));
            return Plan::Forward(Forwarding { outcome: Outcome::Bypass("request"), invalidate: None, post: None, pieces: None });
        }
        let key = Cache::key(parts);
        let now = SystemTime::now();
        let vary = match self.lookup(&key, &parts.headers) {
            Lookup::Found(s) if s.answers(parts, now) => return Plan::Answer(self.hit(&s, parts, now, false), None),
            Lookup::Found(s) => return self.stale(key, s, parts, now, main_ready),
            Lookup::VaryMiss => true,
            Lookup::None => false,
        };
        let miss = Outcome::Miss { stored: false, vary, stale: false };
        if parts.method == Method::GET && parts.headers.contains_key(header::RANGE) && !validating(&parts.headers) {
            // RFC 9111 §3.3-3.4: a stored piece that holds the range answers it; an object asked
            // for in ranges is asked for in ranges again (and the 206 stored as a piece); any
            // other is fetched whole, stored, and the range answered from it.
            if let Some(answer) = self.partial_hit(&key, parts, now) {
                return Plan::Answer(answer, None);
            }
            if self.asks_in_ranges(&key) {
                self.count(miss);
                let pieces = Some((key.clone(), as_get(parts)));
                return Plan::Forward(Forwarding { outcome: miss, invalidate: None, post: None, pieces });
            }
            return match self.turn(&key) {
                Turn::Fill(guard) => Plan::Fill(Filling { key, head: whole_head(parts), miss, guard: Some(guard), whole: true }),
                Turn::Wait(done) => Plan::Wait(Waiting { done, key, miss }),
            };
        }
        // A client's own conditional or range request on a miss goes to main as it is.
        if parts.method == Method::HEAD || conditional(&parts.headers) {
            self.count(miss);
            return Plan::Forward(Forwarding { outcome: miss, invalidate: None, post: None, pieces: None });
        }
        match self.turn(&key) {
            Turn::Fill(guard) => Plan::Fill(Filling { key, head: request_head(parts), miss, guard: Some(guard), whole: false }),
            Turn::Wait(done) => Plan::Wait(Waiting { done, key, miss }),
        }
    }

    /// A fresh stored response that answers a GET or HEAD as it came from the client, before its
    /// head is rewritten for main; `None` sends the request down the full path.
    #[inline]
    pub fn fresh_hit(&self, parts: &http::request::Parts) -> Option<CachedResponse> {
        if (parts.method != Method::GET && parts.method != Method::HEAD) || no_store(&parts.headers) {
            return None;
        }
        if !parts.headers.contains_key(header::HOST) && parts.uri.authority().is_none() {
            return None;
        }
        let Lookup::Found(s) = self.lookup(&Cache::key_string(parts), &parts.headers) else { return None };
        let now = SystemTime::now();
        s.answers(parts, now).then(|| self.hit(&s, parts, now, false))
    }

    #[inline]
    fn hit(&self, s: &Stored, parts: &http::request::Parts, now: SystemTime, collapsed: bool) -> CachedResponse {
        self.count(Outcome::Hit);
        s.respond(parts, now, cache_status(Outcome::Hit, Some(s.ttl(now)), collapsed))
    }

    fn serve_stale(&self, s: &Stored, parts: &http::request::Parts, now: SystemTime, reason: StaleReason) -> CachedResponse {
        self.count(Outcome::Stale(reason));
        s.respond(parts, now, cache_status(Outcome::Stale(reason), Some(s.ttl(now)), false))
    }

    /// A stored response that cannot answer as it is: served stale while a background request
    /// refreshes it, served stale at once when main is down and that is allowed, or revalidated.
    fn stale(
        self: &Arc<Self>,
        key: Arc<str>,
        stored: Arc<Stored>,
        parts: &http::request::Parts,
        now: SystemTime,
        main_ready: bool,
    ) -> Plan {
        if !forbids_stale(&parts.headers) && stored.within_stale_while_revalidate(now) {
            let refresh = match self.turn(&key) {
                // A GET even for a HEAD: the refresh is read whole into the store.
                Turn::Fill(guard) => {
                    Some(Refresh { request: as_get(&revalidation(&stored, parts, now)), key, stored: stored.clone(), guard })
                }
                Turn::Wait(_) => None,
            };
            return Plan::Answer(self.serve_stale(&stored, parts, now, StaleReason::WhileRevalidate), refresh);
        }
        if !main_ready && stored.within_stale_if_error(now) {
            return Plan::Answer(self.serve_stale(&stored, parts, now, StaleReason::IfError), None);
        }
        Plan::Revalidate(Revalidation { request: revalidation(&stored, parts, now), key, stored, now })
    }

    /// After waiting for another request's fill: its stored response, or a fill of this one's own.
    pub fn after_wait(&self, parts: &http::request::Parts, waiting: Waiting) -> Plan {
        let now = SystemTime::now();
        if let Lookup::Found(s) = self.lookup(&waiting.key, &parts.headers) {
            if s.answers(parts, now) {
                return Plan::Answer(self.hit(&s, parts, now, true), None);
            }
        }
        let whole = parts.headers.contains_key(header::RANGE) && !validating(&parts.headers);
        let head = if whole { whole_head(parts) } else { request_head(parts) };
        Plan::Fill(Filling { key: waiting.key, head, miss: waiting.miss, guard: None, whole })
    }

    /// Main's answer to a miss (its head already rewritten for the client): tagged, and kept for
    /// the store when it may be stored.
    pub fn filled(self: &Arc<Self>, filling: Filling, response: &mut http::response::Parts) -> Option<Keep> {
        let candidate = self.candidate(&filling.head, response, SystemTime::now());
        self.count(filling.miss);
        let outcome = match filling.miss {
            Outcome::Miss { vary, stale, .. } => Outcome::Miss { stored: candidate.is_some(), vary, stale },
            other => other,
        };
        response.headers.insert(cache_status_name(), cache_status(outcome, None, false));
        let Filling { key, guard, .. } = filling;
        candidate.map(|candidate| self.keep(candidate, key, guard))
    }

    /// A candidate to store under `key` once its body has arrived (releasing `guard`'s waiters).
    fn keep(self: &Arc<Self>, candidate: Candidate, key: Arc<str>, guard: Option<FillGuard>) -> Keep {
        Keep { candidate, cache: self.clone(), key, whole_key: None, _guard: guard }
    }

    /// Main's answer to the whole-object fetch of a range request (`client`: the request as the
    /// client sent it).
    pub fn filled_whole(self: &Arc<Self>, filling: Filling, client: &http::request::Parts, response: &mut http::response::Parts) -> Whole {
        let key = filling.key.clone();
        let miss = filling.miss;
        let keep = self.filled(filling, response);
        if response.status != StatusCode::OK {
            return Whole::Pass(keep);
        }
        let length = crate::headers::content_length(&response.headers);
        match (keep, length) {
            (Some(keep), Some(length)) if length <= keep.limit() => Whole::Store(keep),
            (keep, length) if length.is_some_and(|l| l <= SMALL_WHOLE) => Whole::Pass(keep),
            _ => {
                self.mark_large(&key);
                let pieces = Some((key, as_get(client)));
                Whole::Reask(Forwarding { outcome: miss, invalidate: None, post: None, pieces })
            }
        }
    }

    /// What main answered a revalidation with: a 304 freshens the stored response, a 5xx serves
    /// it stale when `stale-if-error` allows, and anything else is a new response that replaces
    /// the stored one when it may be stored.
    pub fn revalidated(self: &Arc<Self>, parts: &http::request::Parts, rv: Revalidation, rp: &mut http::response::Parts) -> Revalidated {
        let Revalidation { request, key, stored, now } = rv;
        if rp.status == StatusCode::NOT_MODIFIED {
            if let Some(fresh) = self.refresh(&key, &stored, &request, rp, SystemTime::now()) {
                self.count(Outcome::Revalidated);
                let now = SystemTime::now();
                return Revalidated::Fresh(fresh.respond(parts, now, cache_status(Outcome::Revalidated, Some(fresh.ttl(now)), false)));
            }
        }
        let asked = parts.headers.contains_key(header::IF_NONE_MATCH) || parts.headers.contains_key(header::IF_MODIFIED_SINCE);
        if rp.status == StatusCode::NOT_MODIFIED && !asked {
            // A 304 that selects no stored response (RFC 9111 §4.3.4) is no answer for a client
            // that asked no conditional question: the whole response is fetched unconditionally,
            // and a GET's is stored.
            let filling = (parts.method == Method::GET).then(|| Filling {
                key,
                head: request_head(parts),
                miss: Outcome::Miss { stored: false, vary: false, stale: true },
                guard: None,
                whole: false,
            });
            if filling.is_none() {
                self.count(Outcome::Miss { stored: false, vary: false, stale: true });
            }
            return Revalidated::Refetch(filling);
        }
        if rp.status.is_server_error() && stored.within_stale_if_error(now) {
            return Revalidated::Stale(self.serve_stale(&stored, parts, now, StaleReason::IfError));
        }
        if request.method == Method::HEAD {
            // RFC 9111 §4.3.5: a 200 to a HEAD freshens the stored GET when it is the same
            // representation, else the stored GET is no longer trusted; a HEAD's answer is never
            // stored for a GET (it has no body).
            let freshened = rp.status == StatusCode::OK && self.freshen_with_head(&key, &stored, &request, rp);
            if rp.status == StatusCode::OK && !freshened {
                self.remove(&key, &stored);
            }
            let outcome = Outcome::Miss { stored: freshened, vary: false, stale: true };
            self.count(outcome);
            rp.headers.insert(cache_status_name(), cache_status(outcome, None, false));
            return Revalidated::New(None);
        }
        let candidate = self.candidate(&request, rp, SystemTime::now());
        let outcome = Outcome::Miss { stored: candidate.is_some(), vary: false, stale: true };
        self.count(outcome);
        rp.headers.insert(cache_status_name(), cache_status(outcome, None, false));
        let keep = candidate.filter(|_| rp.status != StatusCode::NOT_MODIFIED);
        Revalidated::New(keep.map(|candidate| self.keep(candidate, key, None)))
    }

    /// Main could not be asked to revalidate (`disconnected`: refused, reset, closed before
    /// answering, timed out or not ready; otherwise an error of the request's own): the stored
    /// response, stale, within main's `stale-if-error`, or (RFC 9111 §4.2.4: a disconnected
    /// cache may serve stale) when main gave no such bound and forbade nothing, up to the
    /// `staleIfDisconnectedSeconds` setting, unless the client asked for a fresh answer.
    pub fn revalidation_failed(&self, parts: &http::request::Parts, rv: Revalidation, disconnected: bool) -> Option<CachedResponse> {
        let (stored, now) = (rv.stored, rv.now);
        if stored.within_stale_if_error(now) {
            return Some(self.serve_stale(&stored, parts, now, StaleReason::IfError));
        }
        let allowed = disconnected && !forbids_stale(&parts.headers) && stored.may_answer_disconnected(now, self.stale_if_disconnected());
        allowed.then(|| self.serve_stale(&stored, parts, now, StaleReason::Disconnected))
    }

    /// Main's answer to a background refresh: a 304 freshens the stored response; a storable new
    /// one is returned to be read whole into the store.
    pub fn refreshed(self: &Arc<Self>, refresh: Refresh, response: &http::response::Parts) -> Option<Keep> {
        let Refresh { request, key, stored, guard } = refresh;
        let now = SystemTime::now();
        if response.status == StatusCode::NOT_MODIFIED {
            if self.refresh(&key, &stored, &request, response, now).is_some() {
                self.count(Outcome::Revalidated);
            }
            return None;
        }
        let candidate = self.candidate(&request, response, now)?;
        Some(self.keep(candidate, key, Some(guard)))
    }

    /// Main's answer to a request forwarded past the store: tagged; a success of an unsafe method
    /// invalidates the URL and the `Location` and `Content-Location` it names on this host (RFC
    /// 9111 §4.4).
    /// A POST's answer with explicit freshness whose `Content-Location` is the POST's own target is
    /// returned to be stored for later GETs (RFC 9110 §9.3.3, RFC 9111 §4).
    pub fn forwarded(self: &Arc<Self>, mut forwarding: Forwarding, response: &mut http::response::Parts) -> Option<Keep> {
        let mut keep = None;
        if let Some((key, get)) = forwarding.pieces.take() {
            let parts_key = Cache::parts_key(&key);
            keep = self
                .piece_candidate(&get, response, SystemTime::now())
                .map(|candidate| Keep { whole_key: Some(key), ..self.keep(candidate, parts_key, None) });
        }
        if let Some((key, host)) = &forwarding.invalidate {
            if response.status.is_success() || response.status.is_redirection() {
                self.invalidate(key);
                for name in [header::LOCATION, header::CONTENT_LOCATION] {
                    let target = response.headers.get(&name).and_then(|v| v.to_str().ok()).and_then(|t| same_host_key(host, t));
                    if let Some(target) = target {
                        self.invalidate(&target);
                    }
                }
            }
            self.count(forwarding.outcome);
            if let Some(get) = forwarding.post.take() {
                let own = response.headers.get(header::CONTENT_LOCATION).and_then(|v| v.to_str().ok()).and_then(|t| same_host_key(host, t));
                if response.status.is_success() && own.as_deref() == Some(&**key) && super::fields::explicit_freshness(&response.headers) {
                    keep = self.candidate(&get, response, SystemTime::now()).map(|candidate| self.keep(candidate, key.clone(), None));
                }
            }
        }
        response.headers.insert(cache_status_name(), cache_status(forwarding.outcome, None, false));
        keep
    }
}

impl Stored {
    /// Whether this response answers the request from the store as it is: fresh, and (when the
    /// request has directives of its own) within what they accept.
    #[inline]
    pub(super) fn answers(&self, parts: &http::request::Parts, now: SystemTime) -> bool {
        self.fresh(now) && (!has_directives(&parts.headers) || self.satisfies(parts, now))
    }
}

/// Whether the request's own directives rule out a stale answer (`no-cache`, `no-store`,
/// `max-age`, `min-fresh`, or `Pragma: no-cache` without `Cache-Control`); directives a cache does
/// not know are ignored (RFC 9111 §5.2).
fn forbids_stale(h: &http::HeaderMap) -> bool {
    let any = |field, names: &[&str]| {
        h.get_all(field)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|d| d.split('=').next().unwrap_or("").trim())
            .any(|d| names.iter().any(|n| d.eq_ignore_ascii_case(n)))
    };
    if any(header::CACHE_CONTROL, &["no-cache", "no-store", "max-age", "min-fresh"]) {
        return true;
    }
    !h.contains_key(header::CACHE_CONTROL) && any(header::PRAGMA, &["no-cache"])
}

fn has_directives(h: &http::HeaderMap) -> bool {
    h.contains_key(header::CACHE_CONTROL) || h.contains_key(header::PRAGMA)
}

/// The cache's copy of a request head (for the storage decision made once main answers).
fn request_head(parts: &http::request::Parts) -> http::request::Parts {
    crate::headers::head_with(parts, parts.headers.clone())
}

/// A copy of a request head as a GET: the request a stored response is kept for.
pub(super) fn as_get(parts: &http::request::Parts) -> http::request::Parts {
    let mut head = request_head(parts);
    head.method = Method::GET;
    head
}

pub(super) fn cache_status_name() -> HeaderName {
    HeaderName::from_static("cache-status")
}

/// The request's `Cache-Control: no-store`: neither stored nor answered from the store.
fn no_store(h: &http::HeaderMap) -> bool {
    h.get_all(header::CACHE_CONTROL)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-store"))))
}

/// The client's own validators: a request carrying them goes to main as it is.
fn validating(h: &http::HeaderMap) -> bool {
    h.contains_key(header::IF_NONE_MATCH) || h.contains_key(header::IF_MODIFIED_SINCE) || h.contains_key(header::IF_MATCH)
}

/// The request that revalidates `stored` for a client's request: for the whole object, so that a
/// 304 freshens it and a new answer can be stored, whatever range the client asked for (its
/// range is then answered from the store).
fn revalidation(stored: &Stored, parts: &http::request::Parts, now: SystemTime) -> http::request::Parts {
    if parts.headers.contains_key(header::RANGE) {
        stored.revalidation(&whole_head(parts), now)
    } else {
        stored.revalidation(parts, now)
    }
}

/// A range request's head without `Range` and `If-Range`: the request for the whole object.
pub(super) fn whole_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut head = request_head(parts);
    head.headers.remove(header::RANGE);
    head.headers.remove(header::IF_RANGE);
    head
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
