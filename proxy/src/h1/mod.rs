//! sitecar's own HTTP/1.1 codec (issue 21): request heads parsed by `httparse` in place, in the
//! connection's buffer, with every rule the front door enforces decided as the head is read, and
//! chunked bodies framed with `httparse::parse_chunk_size`. Nothing is copied out of the buffer:
//! a parsed head is the offsets of its parts. Heads are written in one pass (`write.rs`), bodies
//! in the chunked coding with their trailers.
//!
//! `conn.rs` serves HTTP/1.x clients (plain and TLS) with it, the default engine
//! (`proxy.engine: "hyper"` hands them to hyper's server instead); `client.rs` is the client side
//! to main that `upstream.rs` pools; `direct.rs` forwards a request that needs nothing of the
//! edge but the rewrite from the client's head to main's and back, without a header map.
//! `tests/h1_codec.rs` holds the codec to hyper on every input both accept: requests to hyper's
//! server, main's responses to hyper's client; `tests/forwarding.rs` holds the direct path to the
//! general one.

pub mod chunked;
pub(crate) mod client;
mod clock;
pub mod conn;
mod direct;
pub mod request;
pub mod response;
pub mod write;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use client::Interim;
pub use request::{parse_request, BodyKind, Limits, Reject, RequestHead};
pub use response::{parse_response, BadResponse, ResponseBody, ResponseHead};

/// A field value without the optional whitespace around it (SP and HTAB, RFC 9110 §5.6.3).
fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|c| !matches!(c, b' ' | b'\t')).unwrap_or(s.len());
    let end = s.iter().rposition(|c| !matches!(c, b' ' | b'\t')).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// `1*DIGIT` as a u64 (no sign, no overflow).
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}
