//! sitecar's own HTTP/1.1 codec (issue 21): request heads parsed by `httparse` in place, in the
//! connection's buffer, with every rule the front door enforces decided as the head is read, and
//! chunked bodies framed with `httparse::parse_chunk_size`. Nothing is copied out of the buffer:
//! a parsed head is the offsets of its parts.
//!
//! This is the codec layer the engine is built on; the connection loop that serves clients with
//! it, and the client side to main, come next. Until then the front door serves through hyper,
//! and `tests/h1_codec.rs` holds the codec to hyper's server on every input both accept.

pub mod chunked;
pub mod request;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use request::{parse_request, BodyKind, Limits, Reject, RequestHead};
