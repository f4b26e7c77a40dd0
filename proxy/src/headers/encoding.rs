//! Which responses the front door compresses, and whether a head already says it varies by
//! `Accept-Encoding` (RFC 9110 §12.5.5).

use http::header::{self, HeaderMap, HeaderValue};

/// Whether the front door compresses a response of this head (when the client accepts it): not
/// a 101/204/304, not already encoded or a range, not known to be under 256 bytes, and not an
/// image (but SVG), gRPC, an event stream or an octet stream (tower-http's default rules and ours;
/// one lookup per field, as it runs on every response and every stored one).
pub fn compressible(status: http::StatusCode, h: &HeaderMap, size: Option<u64>) -> bool {
    use http::StatusCode;
    if matches!(status, StatusCode::SWITCHING_PROTOCOLS | StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
        || h.contains_key(header::CONTENT_ENCODING)
        || h.contains_key(header::CONTENT_RANGE)
        || size.is_some_and(|n| n < 256)
    {
        return false;
    }
    let content_type = h.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
    let starts = |prefix: &[u8]| content_type.len() >= prefix.len() && content_type[..prefix.len()].eq_ignore_ascii_case(prefix);
    let image = starts(b"image/") && !starts(b"image/svg+xml");
    !(image || starts(b"application/grpc") || starts(b"text/event-stream") || starts(b"application/octet-stream"))
}

/// Whether `Vary` already names `Accept-Encoding` (or is `*`).
pub fn varies_by_encoding(h: &HeaderMap) -> bool {
    h.get_all(header::VARY)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|n| n.trim() == "*" || n.trim().eq_ignore_ascii_case("accept-encoding"))))
}
