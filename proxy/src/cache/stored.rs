//! A stored response and the answers made from it: `Age`, the client's own conditional requests
//! (RFC 9110 §13), HEAD, and single byte ranges (RFC 9110 §14).

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_cache_semantics::{BeforeRequest, CachePolicy};

use super::{CachedResponse, ENTRY_OVERHEAD};
use bytes::Bytes;

/// A response kept in the store.
#[derive(Debug)]
pub struct Stored {
    pub(super) policy: CachePolicy,
    pub(super) status: StatusCode,
    /// What clients get, hop-by-hop fields removed, `Content-Length` exact.
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// The freshness lifetime (max-age or its equivalent).
    pub(super) lifetime: Duration,
    pub(super) stale_while_revalidate: Duration,
    pub(super) stale_if_error: Duration,
    /// No `no-cache`, `must-revalidate` or `proxy-revalidate`: stale may be served when allowed.
    pub(super) may_serve_stale: bool,
    /// `may_serve_stale` and no `s-maxage`: stale may answer when main cannot be reached, with no
    /// `stale-if-error` of main's to bound it.
    pub(super) stale_when_disconnected: bool,
    /// Allowed for requests carrying `Authorization` (RFC 9111 §3.5).
    pub(super) authorized_ok: bool,
    /// The request's values of the fields `Vary` names.
    pub(super) vary: Vec<(HeaderName, Option<String>)>,
    /// The age when stored (the policy's, from `Age`) and when that was: the age at any later
    /// time without parsing the stored fields again, as every hit needs it.
    pub(super) initial_age: Duration,
    pub(super) received: SystemTime,
    /// A 206's pieces instead of a body (`partial.rs`), and where the newest piece starts.
    pub(super) segments: Option<Box<super::partial::Segments>>,
    pub(super) piece_start: u64,
}

impl Stored {
    /// RFC 9111 §4.2.3: the age when received plus the time resident here.
    pub(super) fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.received).unwrap_or_default()
    }

    pub fn fresh(&self, now: SystemTime) -> bool {
        self.age(now) < self.lifetime
    }

    /// Seconds of freshness left; negative once stale.
    pub fn ttl(&self, now: SystemTime) -> i64 {
        self.lifetime.as_secs() as i64 - self.age(now).as_secs() as i64
    }

    fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.lifetime)
    }

    pub fn within_stale_while_revalidate(&self, now: SystemTime) -> bool {
        self.may_serve_stale && self.staleness(now) < self.stale_while_revalidate
    }

    pub fn within_stale_if_error(&self, now: SystemTime) -> bool {
        self.may_serve_stale && self.staleness(now) < self.stale_if_error
    }

    /// Whether this stale response may answer because main could not be reached: within main's
    /// `stale-if-error` when it gave one, else within `bound` unless main forbids stale.
    pub fn may_answer_disconnected(&self, now: SystemTime, bound: Duration) -> bool {
        if !self.stale_if_error.is_zero() {
            return self.within_stale_if_error(now);
        }
        self.stale_when_disconnected && self.staleness(now) < bound
    }

    pub(super) fn vary_matches(&self, req: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, value)| req.get(name).map(|v| super::fields::vary_value(name, v)) == *value)
    }

    /// Whether a request's own directives let a stored, fresh response answer it (`no-cache`,
    /// `max-age`, `min-fresh`, `max-stale`); only asked when it has any.
    pub fn satisfies(&self, req: &http::request::Parts, now: SystemTime) -> bool {
        let fresh = |req: &http::request::Parts| matches!(self.policy.before_request(req, now), BeforeRequest::Fresh(_));
        match super::fields::request_view(&req.headers) {
            Some(h) => fresh(&crate::headers::head_with(req, h)),
            None => fresh(req),
        }
    }

    /// The request that revalidates this response with main: the client's request with
    /// `If-None-Match` / `If-Modified-Since` from the stored validators, in the client's method (a
    /// HEAD revalidates with HEAD, RFC 9111 §4.3.5; the crate would make it the stored GET).
    pub fn revalidation(&self, req: &http::request::Parts, now: SystemTime) -> http::request::Parts {
        let lowered = super::fields::request_view(&req.headers).map(|h| crate::headers::head_with(req, h));
        let req = lowered.as_ref().unwrap_or(req);
        match self.policy.before_request(req, now) {
            BeforeRequest::Stale { mut request, .. } => {
                request.method = req.method.clone();
                request
            }
            BeforeRequest::Fresh(_) => crate::headers::head_with(req, req.headers.clone()),
        }
    }

    pub(super) fn weight(&self, key: &str) -> u64 {
        let headers: usize = self.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
        let pieces = self.segments.as_ref().map_or(0, |s| s.bytes());
        self.body.len() as u64 + pieces + headers as u64 * 2 + key.len() as u64 + ENTRY_OVERHEAD
    }

    /// The answer to `req` from this response: `Age` set, the client's conditionals evaluated
    /// (304), HEAD without a body, a single byte range as 206.
    pub fn respond(&self, req: &http::request::Parts, now: SystemTime, status: HeaderValue) -> CachedResponse {
        let mut headers = self.headers.clone();
        headers.insert(header::AGE, HeaderValue::from(self.age(now).as_secs()));
        headers.insert(HeaderName::from_static("cache-status"), status);
        if not_modified(&req.headers, &self.headers) {
            return response(StatusCode::NOT_MODIFIED, not_modified_headers(headers), None);
        }
        let body = if req.method == Method::HEAD { None } else { Some(self.body.clone()) };
        if self.status == StatusCode::OK && req.method == Method::GET {
            if let Some(range) = req.headers.get(header::RANGE).filter(|_| if_range_holds(&req.headers, &self.headers)) {
                return self.partial(range, headers);
            }
        }
        let mut r = response(self.status, headers, body);
        if req.method == Method::HEAD {
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        r
    }

    /// 206 for one satisfiable range, 416 for none; several ranges get the whole response.
    fn partial(&self, range: &HeaderValue, mut headers: HeaderMap) -> CachedResponse {
        let len = self.body.len() as u64;
        let parsed = range.to_str().ok().and_then(|r| http_range_header::parse_range_header(r).ok()).map(|r| r.validate(len));
        match parsed {
            Some(Ok(ranges)) if ranges.len() == 1 => {
                let r = &ranges[0];
                let (start, end) = (*r.start(), *r.end());
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
                let body = self.body.slice(start as usize..=end as usize);
                response(StatusCode::PARTIAL_CONTENT, headers, Some(body))
            }
            Some(Err(_)) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                headers.remove(header::CONTENT_TYPE);
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                response(StatusCode::RANGE_NOT_SATISFIABLE, headers, None)
            }
            // Several ranges, or a Range this cache does not parse: the whole response.
            _ => response(self.status, headers, Some(self.body.clone())),
        }
    }
}

fn response(status: StatusCode, headers: HeaderMap, body: Option<Bytes>) -> CachedResponse {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A 304 carries the fields a 200 would have that describe the representation's metadata
/// (RFC 9110 §15.4.5), not its content.
fn not_modified_headers(mut h: HeaderMap) -> HeaderMap {
    for name in [header::CONTENT_LENGTH, header::CONTENT_TYPE, header::CONTENT_ENCODING, header::CONTENT_RANGE, header::ACCEPT_RANGES] {
        h.remove(name);
    }
    h
}

/// RFC 9110 §13.1.2 and §13.1.3: `If-None-Match` (weak comparison) takes precedence over
/// `If-Modified-Since`, which is judged against `Last-Modified` or, without one, the stored
/// response's `Date` (RFC 9111 §4.3.2).
fn not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else { return false };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        return inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag));
    }
    let modified = stored.get(header::LAST_MODIFIED).or_else(|| stored.get(header::DATE));
    let (Some(since), Some(modified)) = (req.get(header::IF_MODIFIED_SINCE), modified) else { return false };
    match (date(since), date(modified)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// RFC 9110 §13.1.5: a Range applies when `If-Range` is absent or matches (strong comparison for
/// an entity tag, exact date for Last-Modified).
pub(super) fn if_range_holds(req: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(cond) = req.get(header::IF_RANGE) else { return true };
    let Ok(cond) = cond.to_str() else { return false };
    if cond.starts_with('"') {
        return stored.get(header::ETAG).and_then(|e| e.to_str().ok()).is_some_and(|e| e == cond);
    }
    match (httpdate::parse_http_date(cond).ok(), stored.get(header::LAST_MODIFIED).and_then(date)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn date(v: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(v.to_str().ok()?).ok()
}
