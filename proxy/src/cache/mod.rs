//! The shared HTTP cache (RFC 9111) in memory, bounded in bytes: what may be stored and for how
//! long (`http-cache-semantics`, fed the cache's own targeted field `CDN-Cache-Control` of RFC 9213
//! when main sends one), the store (`quick_cache`, weighed in bytes), collapsing of concurrent
//! misses, and the answers made from a stored response: `Age`, the client's own conditional
//! requests, HEAD, single byte ranges, and RFC 9211 `Cache-Status`. `plan.rs` is the cache's part
//! of the request path (what to do before main is asked, and with what main answered), which the
//! edge carries out; `fields.rs` reads the fields the crate reads otherwise than RFC 9111 (and
//! builds the policy); `partial.rs` keeps the pieces of 206 answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_cache_semantics::AfterResponse;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::watch;

use crate::body::BoxError;
use fields::{directives, policy_for};

mod fields;
mod partial;
mod plan;
mod stored;

pub use plan::{CachedResponse, Filling, Forwarding, Keep, Plan, Refresh, Revalidated, Revalidation, Waiting, Whole};
pub use stored::Stored;

/// The name this cache gives itself in `Cache-Status`.
const NAME: &str = "sitecar";
/// Variants kept per URL (one per distinct value of the fields named in `Vary`).
const MAX_VARIANTS: usize = 8;
/// Bookkeeping counted into an entry's weight beside its body and headers.
const ENTRY_OVERHEAD: u64 = 512;

/// How a response was answered, for `Cache-Status` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served fresh from the store.
    Hit,
    /// Served stale: while revalidating in the background, or because main failed.
    Stale(StaleReason),
    /// Main confirmed the stored response (304).
    Revalidated,
    /// Forwarded: nothing usable was stored (`stored` when main's answer was kept).
    Miss { stored: bool, vary: bool, stale: bool },
    /// Not a request the cache answers (method, upgrade, credentials, client's `no-store`).
    Bypass(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    WhileRevalidate,
    IfError,
    /// Main could not be reached and nothing forbids stale (RFC 9111 §4.2.4).
    Disconnected,
}

impl Outcome {
    const RESULTS: [&'static str; 5] = ["hit", "miss", "stale", "revalidated", "bypass"];

    fn result(self) -> usize {
        match self {
            Outcome::Hit => 0,
            Outcome::Miss { .. } => 1,
            Outcome::Stale(_) => 2,
            Outcome::Revalidated => 3,
            Outcome::Bypass(_) => 4,
        }
    }
}

/// An RFC 9211 `Cache-Status` value (built in one allocation: it is on every hit).
pub fn cache_status(outcome: Outcome, ttl: Option<i64>, collapsed: bool) -> HeaderValue {
    let mut s: Vec<u8> = Vec::with_capacity(64);
    s.extend_from_slice(NAME.as_bytes());
    match outcome {
        Outcome::Hit => s.extend_from_slice(b"; hit"),
        Outcome::Stale(StaleReason::WhileRevalidate) => s.extend_from_slice(b"; hit; detail=stale-while-revalidate"),
        Outcome::Stale(StaleReason::IfError) => s.extend_from_slice(b"; fwd=stale; detail=stale-if-error"),
        Outcome::Stale(StaleReason::Disconnected) => s.extend_from_slice(b"; fwd=stale; detail=disconnected"),
        Outcome::Revalidated => s.extend_from_slice(b"; fwd=stale; fwd-status=304"),
        Outcome::Miss { stored, vary, stale } => {
            s.extend_from_slice(if stale {
                b"; fwd=stale".as_slice()
            } else if vary {
                b"; fwd=vary-miss".as_slice()
            } else {
                b"; fwd=uri-miss".as_slice()
            });
            if stored {
                s.extend_from_slice(b"; stored");
            }
        }
        Outcome::Bypass(why) => {
            s.extend_from_slice(b"; fwd=");
            s.extend_from_slice(why.as_bytes());
        }
    }
    if let Some(ttl) = ttl {
        s.extend_from_slice(b"; ttl=");
        s.extend_from_slice(itoa::Buffer::new().format(ttl).as_bytes());
    }
    if collapsed {
        s.extend_from_slice(b"; collapsed");
    }
    HeaderValue::from_maybe_shared(Bytes::from(s)).unwrap_or_else(|_| HeaderValue::from_static(NAME))
}

/// A response main just sent that may be stored, waiting for its body.
#[derive(Debug)]
pub struct Candidate {
    stored: Stored,
}

/// Statuses never stored whatever the freshness: partial content and not-modified answers
/// belong to one client's request, and interim ones are no response at all.
fn storable_status(s: StatusCode) -> bool {
    !s.is_informational() && s != StatusCode::PARTIAL_CONTENT && s != StatusCode::NOT_MODIFIED
}

/// The stored variants of one URL, newest first.
type Variants = Arc<Vec<Arc<Stored>>>;

/// The shared cache.
pub struct Cache {
    store: quick_cache::sync::Cache<Arc<str>, Variants, Weigh, quick_cache::DefaultHashBuilder, Evictions>,
    /// Settings a reload may change in place.
    max_object: AtomicU64,
    lock_timeout_ms: AtomicU64,
    enabled: AtomicBool,
    store_set_cookie: AtomicBool,
    /// `CacheSettings::stale_if_disconnected`, in seconds.
    stale_if_disconnected_s: AtomicU64,
    /// Keys whose objects are too large to fetch whole for a range request (bounded in count).
    large: quick_cache::sync::Cache<Arc<str>, ()>,
    /// Misses being filled: later requests for the key wait for the first one's response.
    fills: Mutex<HashMap<Arc<str>, watch::Receiver<()>>>,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("entries", &self.store.len()).field("bytes", &self.store.weight()).finish()
    }
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<Arc<str>, Variants> for Weigh {
    fn weight(&self, key: &Arc<str>, val: &Variants) -> u64 {
        val.iter().map(|s| s.weight(key)).sum()
    }
}

#[derive(Clone)]
struct Evictions(IntCounter);

impl quick_cache::Lifecycle<Arc<str>, Variants> for Evictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _: &mut (), _: Arc<str>, _: Variants) {
        self.0.inc();
    }
}

/// Cache metrics: results, bytes, entries, evictions.
#[derive(Clone)]
struct CacheMetrics {
    results: Vec<IntCounter>,
    bytes: IntGauge,
    entries: IntGauge,
    evictions: IntCounter,
}

/// Either this request fills the key (and others wait for it), or another one does.
#[derive(Debug)]
enum Turn {
    Fill(FillGuard),
    Wait(watch::Receiver<()>),
}

/// Held while a miss is being filled; dropping it lets the waiting requests go on.
#[derive(Debug)]
pub struct FillGuard {
    cache: Arc<Cache>,
    key: Arc<str>,
    _tx: watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if let Ok(mut fills) = self.cache.fills.lock() {
            fills.remove(&self.key);
        }
    }
}

impl Cache {
    pub fn new(settings: &sitecar_config::CacheSettings, registry: Option<&Registry>) -> Result<Arc<Self>, BoxError> {
        let results = IntCounterVec::new(Opts::new("sitecar_cache_requests_total", "Requests through the cache, by result"), &["result"])?;
        let bytes = IntGauge::new("sitecar_cache_bytes", "Weight of the stored responses in bytes (bodies, headers, bookkeeping)")?;
        let entries = IntGauge::new("sitecar_cache_entries", "URLs in the cache")?;
        let evictions = IntCounter::new("sitecar_cache_evictions_total", "Entries evicted to stay within cache.maxBytes")?;
        if let Some(r) = registry {
            r.register(Box::new(results.clone()))?;
            r.register(Box::new(bytes.clone()))?;
            r.register(Box::new(entries.clone()))?;
            r.register(Box::new(evictions.clone()))?;
        }
        let results = Outcome::RESULTS.iter().map(|r| results.with_label_values(&[*r])).collect();
        Self::with_metrics(settings, CacheMetrics { results, bytes, entries, evictions })
    }

    /// Takes new settings in place (a reload): the bound, the largest object, the lock timeout.
    /// Shrinking evicts; what is stored stays otherwise.
    pub fn reconfigure(&self, settings: &sitecar_config::CacheSettings) {
        self.store.set_capacity(settings.max_bytes);
        self.max_object.store(settings.max_object_bytes, Ordering::Relaxed);
        self.lock_timeout_ms.store(settings.lock_timeout.as_millis() as u64, Ordering::Relaxed);
        self.enabled.store(settings.enabled, Ordering::Relaxed);
        self.store_set_cookie.store(settings.store_set_cookie, Ordering::Relaxed);
        self.stale_if_disconnected_s.store(settings.stale_if_disconnected.as_secs(), Ordering::Relaxed);
        self.update_gauges();
    }

    /// Whether the spec turns it on (`/cache/purge` says so when it does not).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn lock_timeout(&self) -> Duration {
        Duration::from_millis(self.lock_timeout_ms.load(Ordering::Relaxed))
    }

    fn stale_if_disconnected(&self) -> Duration {
        Duration::from_secs(self.stale_if_disconnected_s.load(Ordering::Relaxed))
    }

    fn max_object(&self) -> u64 {
        self.max_object.load(Ordering::Relaxed)
    }

    fn with_metrics(settings: &sitecar_config::CacheSettings, metrics: CacheMetrics) -> Result<Arc<Self>, BoxError> {
        // Every shard must hold the largest object: quick_cache bounds each shard alone.
        let shards = (settings.max_bytes / settings.max_object_bytes.max(1) / 4).clamp(1, 16).next_power_of_two() as usize;
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity((settings.max_bytes / 16384).clamp(64, 1 << 20) as usize)
            .weight_capacity(settings.max_bytes)
            .shards(shards)
            .build()
            .map_err(|e| format!("cache settings: {e:?}"))?;
        let store = quick_cache::sync::Cache::with_options(options, Weigh, Default::default(), Evictions(metrics.evictions.clone()));
        let cache = Arc::new(Self {
            store,
            max_object: AtomicU64::new(settings.max_object_bytes),
            lock_timeout_ms: AtomicU64::new(settings.lock_timeout.as_millis() as u64),
            enabled: AtomicBool::new(settings.enabled),
            store_set_cookie: AtomicBool::new(settings.store_set_cookie),
            stale_if_disconnected_s: AtomicU64::new(settings.stale_if_disconnected.as_secs()),
            large: quick_cache::sync::Cache::new(4096),
            fills: Mutex::new(HashMap::new()),
            metrics,
        });
        cache.update_gauges();
        Ok(cache)
    }

    /// The key of a request: host and path with query (GET and HEAD share it).
    pub fn key(parts: &http::request::Parts) -> Arc<str> {
        Arc::from(Self::key_string(parts))
    }

    /// [`Cache::key`] for a lookup only.
    pub fn key_string(parts: &http::request::Parts) -> String {
        let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| parts.uri.authority().map(|a| a.as_str()));
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut k = String::with_capacity(host.map_or(0, str::len) + pq.len());
        if let Some(h) = host {
            k.push_str(h);
            k.make_ascii_lowercase();
        }
        k.push_str(pq);
        k
    }

    /// Counts how a request was answered.
    fn count(&self, outcome: Outcome) {
        if let Some(c) = self.metrics.results.get(outcome.result()) {
            c.inc();
        }
    }

    /// The stored response for a request: same key, matching `Vary`, usable with its credentials.
    fn lookup(&self, key: &str, req: &HeaderMap) -> Lookup {
        let Some(variants) = self.store.get(key) else { return Lookup::None };
        let authorized = req.contains_key(header::AUTHORIZATION);
        match variants.iter().find(|s| s.vary_matches(req)) {
            Some(s) if authorized && !s.authorized_ok => Lookup::None,
            Some(s) => Lookup::Found(s.clone()),
            None => Lookup::VaryMiss,
        }
    }

    /// Claims the fill of a missing key, or hands back the receiver to wait on.
    fn turn(self: &Arc<Self>, key: &Arc<str>) -> Turn {
        let Ok(mut fills) = self.fills.lock() else {
            // A poisoned map only loses collapsing, never a response.
            let (tx, _) = watch::channel(());
            return Turn::Fill(FillGuard { cache: self.clone(), key: key.clone(), _tx: tx });
        };
        if let Some(rx) = fills.get(key) {
            return Turn::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        fills.insert(key.clone(), rx);
        Turn::Fill(FillGuard { cache: self.clone(), key: key.clone(), _tx: tx })
    }

    /// A response of main that may be stored once its body is complete: storable for a shared
    /// cache (judged on `CDN-Cache-Control` when present), not larger than `maxObjectBytes`, and
    /// worth keeping (fresh for a while, or revalidatable).
    fn candidate(&self, req: &http::request::Parts, resp: &http::response::Parts, now: SystemTime) -> Option<Candidate> {
        if !storable_status(resp.status) {
            return None;
        }
        if resp.headers.get_all(header::VARY).iter().any(|v| v.to_str().map_or(true, |v| v.split(',').any(|f| f.trim() == "*"))) {
            return None;
        }
        if crate::headers::content_length(&resp.headers).is_some_and(|l| l > self.max_object()) {
            return None;
        }
        let (policy, cc) = policy_for(req, resp, now);
        if !policy.is_storable() {
            return None;
        }
        let ttl = policy.time_to_live(now);
        let lifetime = if ttl.is_zero() { Duration::ZERO } else { ttl + policy.age(now) };
        let validators = resp.headers.contains_key(header::ETAG) || resp.headers.contains_key(header::LAST_MODIFIED);
        let d = directives(&cc);
        // A cookie is kept only where main said a shared cache may keep the response, and the
        // settings allow it.
        if resp.headers.contains_key(header::SET_COOKIE) && !(d.shared && self.store_set_cookie.load(Ordering::Relaxed)) {
            return None;
        }
        if lifetime.is_zero() && !validators && d.stale_if_error.is_zero() {
            return None;
        }
        let vary = resp
            .headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|f| HeaderName::from_bytes(f.trim().as_bytes()).ok())
            .map(|n| {
                let v = req.headers.get(&n).map(|v| fields::vary_value(&n, v));
                (n, v)
            })
            .collect();
        let mut headers = resp.headers.clone();
        headers.remove(header::TRANSFER_ENCODING);
        // The front door compresses such a response for clients that accept it, so every copy
        // says the body depends on Accept-Encoding (RFC 9110 §12.5.5); set here once rather than
        // on each hit. (`vary` above, the variant key, is main's own.)
        if crate::headers::compressible(resp.status, &headers, crate::headers::content_length(&headers))
            && !crate::headers::varies_by_encoding(&headers)
        {
            headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        // Placeholders for the fields every answer sets, so that setting them on a copy replaces
        // in place instead of growing the map.
        headers.insert(header::AGE, HeaderValue::from_static("0"));
        headers.insert(HeaderName::from_static("cache-status"), HeaderValue::from_static(NAME));
        Some(Candidate {
            stored: Stored {
                status: resp.status,
                headers,
                body: Bytes::new(),
                lifetime,
                stale_while_revalidate: d.stale_while_revalidate,
                stale_if_error: d.stale_if_error,
                may_serve_stale: d.may_serve_stale,
                stale_when_disconnected: d.may_serve_stale && !d.s_maxage,
                authorized_ok: d.authorized_ok,
                vary,
                initial_age: policy.age(now),
                received: now,
                segments: None,
                piece_start: 0,
                policy,
            },
        })
    }

    /// Main's 304 to a revalidation: the stored response with its headers updated (RFC 9111
    /// §4.3.4), stored again; `None` when the 304 does not select it.
    fn refresh(
        &self,
        key: &Arc<str>,
        old: &Stored,
        req: &http::request::Parts,
        resp: &http::response::Parts,
        now: SystemTime,
    ) -> Option<Arc<Stored>> {
        let AfterResponse::NotModified(_, _) = old.policy.after_response(req, resp, now) else { return None };
        self.update(key, old, req, &resp.headers, now)
    }

    /// A 200 to a HEAD revalidation (RFC 9111 §4.3.5): when every validator it carries (`ETag`,
    /// `Last-Modified`) and its `Content-Length` match the stored GET's, and it carries at least
    /// one of them, the stored response takes its header fields and freshness; `false` otherwise.
    fn freshen_with_head(&self, key: &Arc<str>, old: &Stored, req: &http::request::Parts, resp: &http::response::Parts) -> bool {
        let mut carried = 0;
        for name in [header::ETAG, header::LAST_MODIFIED] {
            if let Some(v) = resp.headers.get(&name) {
                carried += 1;
                if old.headers.get(&name) != Some(v) {
                    return false;
                }
            }
        }
        if let Some(length) = crate::headers::content_length(&resp.headers) {
            carried += 1;
            if length != old.body.len() as u64 {
                return false;
            }
        }
        carried > 0 && old.status == StatusCode::OK && self.update(key, old, req, &resp.headers, SystemTime::now()).is_some()
    }

    /// The stored response with `fields` from main laid over its own (RFC 9111 §3.2), judged and
    /// stored again with its body; `None` when it may no longer be stored.
    fn update(&self, key: &Arc<str>, old: &Stored, req: &http::request::Parts, fields: &HeaderMap, now: SystemTime) -> Option<Arc<Stored>> {
        let mut headers = old.headers.clone();
        for (name, value) in fields {
            if !matches!(name.as_str(), "content-length" | "content-encoding" | "transfer-encoding" | "content-range" | "connection") {
                headers.insert(name.clone(), value.clone());
            }
        }
        let head = {
            let mut r = Response::new(());
            *r.status_mut() = old.status;
            *r.headers_mut() = headers;
            r.into_parts().0
        };
        let mut c = self.candidate(&plan::as_get(req), &head, now)?;
        c.stored.body = old.body.clone();
        c.stored.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(old.body.len()));
        Some(self.insert(key, c.stored))
    }

    fn insert(&self, key: &Arc<str>, stored: Stored) -> Arc<Stored> {
        let stored = Arc::new(stored);
        let mut variants: Vec<Arc<Stored>> = self.store.get(key).map(|v| v.as_ref().clone()).unwrap_or_default();
        variants.retain(|v| v.vary != stored.vary);
        variants.insert(0, stored.clone());
        variants.truncate(MAX_VARIANTS);
        self.store.insert(key.clone(), Arc::new(variants));
        self.update_gauges();
        stored
    }

    fn update_gauges(&self) {
        self.metrics.bytes.set(self.store.weight() as i64);
        self.metrics.entries.set(self.store.len() as i64);
    }

    /// Drops a URL after a successful unsafe request to it (RFC 9111 §4.4).
    /// Drops one stored variant of a key (the one `stored` is), keeping the others.
    fn remove(&self, key: &Arc<str>, stored: &Arc<Stored>) {
        let Some(variants) = self.store.get(key) else { return };
        let kept: Vec<Arc<Stored>> = variants.iter().filter(|v| !Arc::ptr_eq(v, stored)).cloned().collect();
        if kept.is_empty() {
            self.store.remove(key);
        } else if kept.len() != variants.len() {
            self.store.insert(key.clone(), Arc::new(kept));
        }
        self.update_gauges();
    }

    /// Drops every stored response of a URL: its variants and its pieces.
    pub fn invalidate(&self, key: &str) {
        let pieces = self.store.remove(&*Cache::parts_key(key)).is_some();
        if self.store.remove(key).is_some() || pieces {
            self.update_gauges();
        }
    }

    fn remove_all(&self, key: &str) {
        if self.store.remove(key).is_some() {
            self.update_gauges();
        }
    }

    /// Purges one path (every host and query) or, with `prefix`, every path under it; the number
    /// of URLs dropped.
    pub fn purge(&self, path: &str, prefix: bool) -> usize {
        let before = self.store.len();
        self.store.retain(|k, _| {
            let k = k.strip_suffix(partial::SUFFIX).unwrap_or(k);
            let p = k.find('/').map_or("", |i| &k[i..]);
            let p_no_query = p.split_once('?').map_or(p, |(a, _)| a);
            !(if prefix { p.starts_with(path) } else { p_no_query == path || p == path })
        });
        self.update_gauges();
        before.saturating_sub(self.store.len())
    }

    pub fn entries(&self) -> usize {
        self.store.len()
    }

    pub fn bytes(&self) -> u64 {
        self.store.weight()
    }
}

/// The outcome of a lookup.
#[derive(Debug)]
enum Lookup {
    None,
    /// Stored for the URL, but for other values of the fields `Vary` names.
    VaryMiss,
    Found(Arc<Stored>),
}

#[cfg(test)]
mod tests;
