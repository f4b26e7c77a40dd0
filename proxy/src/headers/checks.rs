//! What a request must be before anything of it reaches main (RFC 9112 §3.2 and §6.1, RFC 9113
//! §8.3.1).

use http::header::{self, HeaderValue};
use http::{Method, Version};

use crate::error::ProxyError;

/// What the front door refuses before anything reaches main: CONNECT (405), a transfer coding
/// other than one final `chunked` (501, or 400 for `chunked` twice; RFC 9112 §6.1), and a request
/// whose Host is missing (HTTP/1.1), doubled or not a host (400; RFC 9112 §3.2), or disagrees with
/// HTTP/2's `:authority` (RFC 9113 §8.3.1). An absolute-form target's authority becomes the Host
/// main is told (RFC 9112 §3.2.2: the target wins).
pub fn check_request(parts: &mut http::request::Parts) -> Result<(), ProxyError> {
    if parts.method == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed(Method::CONNECT));
    }
    // Transfer codings: none, or `chunked` once (no allocation on the usual request without one).
    let mut chunked = 0;
    for v in parts.headers.get_all(header::TRANSFER_ENCODING) {
        let text = v.to_str().map_err(|_| ProxyError::BadRequest("a Transfer-Encoding that is not text".into()))?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                return Err(ProxyError::NotImplemented(coding.to_ascii_lowercase()));
            }
            chunked += 1;
        }
    }
    if chunked > 1 {
        return Err(ProxyError::BadRequest("chunked applied more than once".into()));
    }
    // Host: one lookup for the count and the value.
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host field".into()));
    }
    if let Some(h) = host.filter(|h| !valid_host(h.as_bytes())) {
        return Err(ProxyError::BadRequest(format!("Host \"{}\" is not a host", String::from_utf8_lossy(h.as_bytes()).escape_debug())));
    }
    let authority = parts.uri.authority();
    match (parts.version, authority, host) {
        (Version::HTTP_2 | Version::HTTP_3, Some(a), Some(h)) if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) => {
            Err(ProxyError::BadRequest("Host and :authority name different hosts".into()))
        }
        (Version::HTTP_2 | Version::HTTP_3, _, _) => Ok(()),
        (Version::HTTP_11, _, None) => Err(ProxyError::BadRequest("an HTTP/1.1 request without Host".into())),
        (_, Some(_), _) => {
            absolute_target_host(parts);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Absolute form (HTTP/1.x): the target names the host; main and the forwarded headers agree on
/// it. (What sitecar's codec leaves to the edge of the checks above: it has made the others.)
pub fn absolute_target_host(parts: &mut http::request::Parts) {
    let Some(a) = parts.uri.authority() else { return };
    if matches!(parts.version, Version::HTTP_2 | Version::HTTP_3) {
        return;
    }
    if parts.headers.get(header::HOST).is_none_or(|h| h.as_bytes() != a.as_str().as_bytes()) {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
    }
}

/// `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a reg-name of unreserved, pct-encoded
/// and sub-delims characters, or a bracketed IP literal; an optional numeric port. Empty is allowed
/// (a target without authority).
/// The bytes a reg-name may hold (RFC 3986 §3.2.2: unreserved, pct-encoded's `%`, sub-delims).
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=');
        c += 1;
    }
    t
};

pub(crate) fn valid_host(h: &[u8]) -> bool {
    let (host, port) = if h.first() == Some(&b'[') {
        match h.iter().position(|&c| c == b']') {
            Some(end) => {
                let literal = &h[1..end];
                if literal.is_empty() || !literal.iter().all(|c| c.is_ascii_hexdigit() || b":.vV".contains(c)) {
                    return false;
                }
                (&h[..=end], &h[end + 1..])
            }
            None => return false,
        }
    } else {
        match h.iter().position(|&c| c == b':') {
            Some(i) => (&h[..i], &h[i..]),
            None => (h, &h[h.len()..]),
        }
    };
    let reg_name = host.first() == Some(&b'[') || host.iter().all(|c| REG_NAME[*c as usize]);
    let port_ok = port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit) && port.len() <= 6);
    reg_name && port_ok
}
