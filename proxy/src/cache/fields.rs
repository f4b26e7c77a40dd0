//! The caching fields as RFC 9111 reads them, for the parts `http-cache-semantics` reads
//! otherwise: a list-valued `Age` (§5.1), `Expires` in the obsolete date formats or invalid
//! (§5.3, RFC 9110 §5.6.7), directive names in any case (§5.2), `no-store` beside
//! `must-understand` for a status this cache understands (§5.2.2.3), and `CDN-Cache-Control` as
//! a Structured Field dictionary (RFC 9213 §2.1), and any final status as storable with explicit
//! freshness (§3). `Set-Cookie` is hidden from the crate: the cache decides on cookies itself.
//! Each returns a corrected copy only when something needs correcting, so the common response
//! costs a scan and no allocation. Here too: the directives the crate does not read
//! (`stale-*`, what forbids stale, `public`), and the policy built from all of it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_cache_semantics::{CacheOptions, CachePolicy};

use http::{header, HeaderMap, HeaderValue, StatusCode};

/// Statuses whose caching rules this cache implements (RFC 9110 §15 for each), for
/// `must-understand`.
const UNDERSTOOD: [u16; 15] = [200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 451, 501];

/// The statuses `http-cache-semantics` stores at all; it refuses any other, even with explicit
/// freshness.
const CRATE_STORES: [u16; 14] = [200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501];

/// The status the crate is shown for its storage and freshness rules. RFC 9111 §3: any final
/// status may be stored when the response has explicit freshness (`max-age`, `s-maxage`,
/// `Expires`) or `public` (which also allows heuristic freshness, §4.2.2); the crate stores only
/// its own list. Such a response is shown as a 200, the rules being the same for both once the
/// response says how long it is fresh. `cc` is the `Cache-Control` in force (lower-case names).
pub(super) fn status_for_policy(status: StatusCode, cc: &str, h: &HeaderMap) -> StatusCode {
    let code = status.as_u16();
    if CRATE_STORES.contains(&code) || status.is_informational() || code == 206 || code == 304 {
        return status;
    }
    let explicit = h.contains_key(header::EXPIRES)
        || cc.split(',').map(|d| d.split('=').next().unwrap_or("").trim()).any(|n| matches!(n, "max-age" | "s-maxage" | "public"));
    if explicit {
        StatusCode::OK
    } else {
        status
    }
}

/// Whether a response says how long it is fresh: `Expires`, or `max-age`/`s-maxage` in its
/// `Cache-Control` (or `CDN-Cache-Control`), in any case.
pub(super) fn explicit_freshness(h: &HeaderMap) -> bool {
    h.contains_key(header::EXPIRES)
        || [header::CACHE_CONTROL, header::HeaderName::from_static("cdn-cache-control")].iter().any(|field| {
            h.get_all(field)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|d| d.split('=').next().unwrap_or("").trim())
                .any(|n| n.eq_ignore_ascii_case("max-age") || n.eq_ignore_ascii_case("s-maxage"))
        })
}

/// A copy of a response's fields with `Age`, `Expires` and `Cache-Control` as the crate must see
/// them, or `None` when they are fine as they are.
pub(super) fn response_view(h: &HeaderMap, status: http::StatusCode) -> Option<HeaderMap> {
    let age = h.get(header::AGE).and_then(fixed_age);
    let expires = h.get(header::EXPIRES).and_then(fixed_expires);
    let cc = fixed_directive_names(h, UNDERSTOOD.contains(&status.as_u16()));
    // Whether a cookie may be stored is the cache's own rule (`Cache::candidate`); the crate
    // would give any response with one no freshness short of `public`, even with `s-maxage`.
    let cookie = h.contains_key(header::SET_COOKIE);
    if age.is_none() && expires.is_none() && cc.is_none() && !cookie {
        return None;
    }
    let mut out = h.clone();
    out.remove(header::SET_COOKIE);
    match age {
        Some(Some(v)) => {
            out.insert(header::AGE, v);
        }
        Some(None) => {
            out.remove(header::AGE);
        }
        None => {}
    }
    if let Some(v) = expires {
        out.insert(header::EXPIRES, v);
    }
    if let Some(v) = cc {
        out.insert(header::CACHE_CONTROL, v);
    }
    Some(out)
}

/// A copy of a request's fields with its directive names in lower case, or `None`.
pub(super) fn request_view(h: &HeaderMap) -> Option<HeaderMap> {
    let cc = fixed_directive_names(h, false)?;
    let mut out = h.clone();
    out.insert(header::CACHE_CONTROL, cc);
    Some(out)
}

/// `Age` to use instead (`Some(None)`: none, as the value is invalid), or `None` when it is fine:
/// a list's first member counts; anything but a non-negative integer is ignored.
fn fixed_age(v: &HeaderValue) -> Option<Option<HeaderValue>> {
    let text = v.to_str().ok()?;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let first = text.split(',').next().unwrap_or("").trim();
    if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) {
        return Some(HeaderValue::from_str(first).ok());
    }
    Some(None)
}

/// `Expires` to use instead: an obsolete-format date rewritten as an IMF-fixdate, an invalid one
/// as `0` (already expired); `None` when it is an IMF-fixdate already.
fn fixed_expires(v: &HeaderValue) -> Option<HeaderValue> {
    let text = v.to_str().unwrap_or("");
    match httpdate::parse_http_date(text) {
        Ok(t) => {
            let imf = httpdate::fmt_http_date(t.max(UNIX_EPOCH));
            (imf != text).then(|| HeaderValue::from_str(&imf).ok()).flatten()
        }
        Err(_) => Some(HeaderValue::from_static("0")),
    }
}

/// `Cache-Control` with every directive name in lower case (values kept), and without `no-store`
/// when `must-understand` is there and the status is `understood`; `None` when it is fine as it is.
fn fixed_directive_names(h: &HeaderMap, understood: bool) -> Option<HeaderValue> {
    let values = || h.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok());
    let is = |d: &str, name: &str| d.split('=').next().unwrap_or("").trim().eq_ignore_ascii_case(name);
    let upper = values().flat_map(|v| v.split(',')).any(|d| d.split('=').next().is_some_and(|n| n.bytes().any(|b| b.is_ascii_uppercase())));
    let must_understand = understood && values().flat_map(|v| v.split(',')).any(|d| is(d, "must-understand"));
    if !upper && !must_understand {
        return None;
    }
    let joined: Vec<String> = values()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !(d.is_empty() || must_understand && is(d, "no-store")))
        .map(|d| match d.split_once('=') {
            Some((n, v)) => format!("{}={}", n.trim().to_ascii_lowercase(), v.trim()),
            None => d.to_ascii_lowercase(),
        })
        .collect();
    HeaderValue::from_str(&joined.join(", ")).ok()
}

/// A request field's value as the cache compares it for `Vary` (RFC 9111 §4.1): whitespace
/// around list members and parameters dropped; for the negotiation fields (`Accept*`) also case,
/// member order and a `q` of 1 (written any way), so equivalent requests share a variant.
pub(super) fn vary_value(name: &http::HeaderName, v: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(v.as_bytes());
    let squeeze = |m: &str| m.split(';').map(|p| p.split('=').map(str::trim).collect::<Vec<_>>().join("=")).collect::<Vec<_>>().join(";");
    if !name.as_str().starts_with("accept") {
        return text.split(',').map(|m| squeeze(m.trim())).collect::<Vec<_>>().join(",");
    }
    let mut members: Vec<String> = text
        .split(',')
        .map(|m| squeeze(&m.trim().to_ascii_lowercase()))
        .filter(|m| !m.is_empty())
        .map(|m| match m.split_once(";q=") {
            Some((what, q)) => match q.parse::<f32>() {
                Ok(q) if q >= 1.0 => what.to_owned(),
                Ok(q) => format!("{what};q={q}"),
                Err(_) => m,
            },
            None => m,
        })
        .collect();
    members.sort();
    members.join(",")
}

/// `CDN-Cache-Control` as `Cache-Control` syntax, when it is a valid Structured Field dictionary
/// whose freshness directives are integers; `None` (the field ignored as a whole) otherwise.
pub(super) fn targeted(h: &HeaderMap) -> Option<String> {
    let text = h.get("cdn-cache-control")?.to_str().ok()?;
    if text.trim().is_empty() {
        return None;
    }
    let dict: sfv::Dictionary = sfv::Parser::new(text).parse().ok()?;
    let mut out = Vec::with_capacity(dict.len());
    for (key, entry) in &dict {
        let name = key.as_str();
        let sfv::ListEntry::Item(item) = entry else { return None };
        let numeric = matches!(name, "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error");
        match &item.bare_item {
            sfv::BareItem::Integer(n) if i64::from(*n) >= 0 => out.push(format!("{name}={n}")),
            _ if numeric => return None,
            sfv::BareItem::Boolean(true) => out.push(name.to_owned()),
            sfv::BareItem::Boolean(false) => {}
            sfv::BareItem::Token(t) => out.push(format!("{name}={}", t.as_str())),
            sfv::BareItem::String(s) => out.push(format!("{name}=\"{}\"", s.as_str())),
            _ => return None,
        }
    }
    Some(out.join(", "))
}

/// What `Cache-Control` (or `CDN-Cache-Control`) says beyond what `http-cache-semantics` reads.
pub(super) struct Directives {
    pub(super) stale_while_revalidate: Duration,
    pub(super) stale_if_error: Duration,
    pub(super) may_serve_stale: bool,
    /// `s-maxage`, which implies `proxy-revalidate` for a shared cache (RFC 9111 §5.2.2.10): no
    /// stale answer without main's explicit `stale-*` permission.
    pub(super) s_maxage: bool,
    pub(super) authorized_ok: bool,
    /// `public` or `s-maxage`: main says a shared cache may keep it.
    pub(super) shared: bool,
}

pub(super) fn directives(cc: &str) -> Directives {
    let mut d = Directives {
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        may_serve_stale: true,
        s_maxage: false,
        authorized_ok: false,
        shared: false,
    };
    for part in cc.split(',') {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part.trim(), None),
        };
        let secs = || value.and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs).unwrap_or_default();
        match name.to_ascii_lowercase().as_str() {
            "stale-while-revalidate" => d.stale_while_revalidate = secs(),
            "stale-if-error" => d.stale_if_error = secs(),
            "no-cache" | "must-revalidate" | "proxy-revalidate" => {
                d.may_serve_stale = false;
                d.authorized_ok |= name.eq_ignore_ascii_case("must-revalidate");
            }
            "public" | "s-maxage" => {
                d.authorized_ok = true;
                d.shared = true;
                d.s_maxage |= name.eq_ignore_ascii_case("s-maxage");
            }
            _ => {}
        }
    }
    d
}

/// The policy for a response, judged on `CDN-Cache-Control` in place of `Cache-Control` and
/// `Expires` when main sent a valid one (RFC 9213 §2.1), on its fields as RFC 9111 reads them
/// (`fields.rs`); and the directives it was judged on.
pub(super) fn policy_for(req: &http::request::Parts, resp: &http::response::Parts, now: SystemTime) -> (CachePolicy, String) {
    let options = CacheOptions { shared: true, ..Default::default() };
    let fixed = response_view(&resp.headers, resp.status);
    let targeted = targeted(&resp.headers);
    match targeted {
        Some(t) => {
            let mut h = fixed.unwrap_or_else(|| resp.headers.clone());
            h.remove(header::EXPIRES);
            h.remove(header::PRAGMA);
            if let Ok(v) = HeaderValue::from_str(&t) {
                h.insert(header::CACHE_CONTROL, v);
            }
            let status = status_for_policy(resp.status, &t, &h);
            (CachePolicy::new_options(req, &view(status, h), now, options), t)
        }
        None => {
            let headers = fixed.as_ref().unwrap_or(&resp.headers);
            let cc = headers.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
            let status = status_for_policy(resp.status, &cc, headers);
            let policy = match fixed {
                Some(h) => CachePolicy::new_options(req, &view(status, h), now, options),
                None if status != resp.status => CachePolicy::new_options(req, &view(status, resp.headers.clone()), now, options),
                None => CachePolicy::new_options(req, resp, now, options),
            };
            (policy, cc)
        }
    }
}

/// A response head with `status` and `headers`, for the crate's eyes.
fn view(status: StatusCode, headers: HeaderMap) -> http::response::Parts {
    let mut r = http::Response::new(());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r.into_parts().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_corrected_only_when_needed() {
        let mut h = HeaderMap::new();
        h.insert(header::AGE, HeaderValue::from_static("10"));
        h.insert(header::EXPIRES, HeaderValue::from_static("Thu, 01 Jan 2037 00:00:00 GMT"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        assert!(response_view(&h, http::StatusCode::OK).is_none());
        h.insert(header::AGE, HeaderValue::from_static("7200, 0"));
        h.insert(header::EXPIRES, HeaderValue::from_static("Thursday, 01-Jan-37 00:00:00 GMT"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("MaX-AgE=60, No-Cache=\"Set-Cookie\""));
        let v = response_view(&h, http::StatusCode::OK).unwrap();
        assert_eq!(v[header::AGE], "7200");
        assert_eq!(v[header::EXPIRES], "Thu, 01 Jan 2037 00:00:00 GMT");
        assert_eq!(v[header::CACHE_CONTROL], "max-age=60, no-cache=\"Set-Cookie\"");
        h.insert(header::AGE, HeaderValue::from_static("soon"));
        h.insert(header::EXPIRES, HeaderValue::from_static("Thu,  01 Jan 2037 00:00:00 GMT"));
        let v = response_view(&h, http::StatusCode::OK).unwrap();
        assert!(!v.contains_key(header::AGE));
        assert_eq!(v[header::EXPIRES], "0");
    }

    #[test]
    fn rfc9111_s4_1_vary_values_normalised() {
        let lang = http::HeaderName::from_static("accept-language");
        let v = |s: &'static str| vary_value(&lang, &HeaderValue::from_static(s));
        assert_eq!(v("en-US, fr;q=0.5"), v("FR ; q=0.50,en-us;q=1"));
        assert_ne!(v("en-US, fr;q=0.5"), v("en-US, fr;q=0.6"));
        let other = http::HeaderName::from_static("x-tenant");
        assert_eq!(vary_value(&other, &HeaderValue::from_static(" a ,b")), vary_value(&other, &HeaderValue::from_static("a, b")));
        assert_ne!(vary_value(&other, &HeaderValue::from_static("A")), vary_value(&other, &HeaderValue::from_static("a")));
    }

    #[test]
    fn rfc9213_targeted_field_is_a_dictionary() {
        let of = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("cdn-cache-control", HeaderValue::from_static(v));
            targeted(&h)
        };
        assert_eq!(of("max-age=60, stale-if-error=30, public").as_deref(), Some("max-age=60, stale-if-error=30, public"));
        assert_eq!(of("max-age=10000, &&&&&"), None);
        assert_eq!(of("max-age=\"10000\""), None);
        assert_eq!(of("no-store").as_deref(), Some("no-store"));
    }
}
