//! Writing HTTP/1.1: a message head into the connection's write buffer in one pass (the fields
//! as they are, the framing field the body needs, `Date` for responses), and bodies in the
//! chunked coding (RFC 9112 §7.1) with their trailers.

use http::{HeaderMap, Method, StatusCode};

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body follows, and no framing field is written (a request without a body, a HEAD's
    /// answer whose fields are written as they are, 1xx, 204, 304).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Appends a response head: status line, `fields` (their own framing fields left out, the one
/// `framing` needs written instead; `Content-Length` kept for `Framing::None` as a HEAD's answer
/// carries it), `Date` unless present, `Connection: close` when the connection ends after it.
pub fn response_head(out: &mut Vec<u8>, status: StatusCode, fields: &HeaderMap, framing: Framing, date: &[u8], close: bool) {
    out.reserve(64 + date.len() + fields_len(fields));
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    fields_and_framing(out, fields, framing);
    if !fields.contains_key(http::header::DATE) {
        field(out, b"date", date);
    }
    if close {
        field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a request head for main: the request line in origin form (or `*`), then `fields`
/// with the framing field `framing` needs.
pub fn request_head(out: &mut Vec<u8>, method: &Method, target: &[u8], fields: &HeaderMap, framing: Framing) {
    out.reserve(64 + target.len() + fields_len(fields));
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    fields_and_framing(out, fields, framing);
    out.extend_from_slice(b"\r\n");
}

/// Bytes the field lines of `fields` take (so that a head is written into one allocation).
fn fields_len(fields: &HeaderMap) -> usize {
    fields.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

/// `Date` as an IMF-fixdate, formatted once a second per thread.
pub fn date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [b' '; 29])) };
    }
    let now = std::time::SystemTime::now();
    let second = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let (at, text) = d.get();
        if at == second {
            return text;
        }
        let mut fresh = [b' '; 29];
        let formatted = httpdate::fmt_http_date(now);
        if formatted.len() == fresh.len() {
            fresh.copy_from_slice(formatted.as_bytes());
        }
        d.set((second, fresh));
        fresh
    })
}

fn fields_and_framing(out: &mut Vec<u8>, fields: &HeaderMap, framing: Framing) {
    for (name, value) in fields {
        let framing_field = *name == http::header::TRANSFER_ENCODING || (*name == http::header::CONTENT_LENGTH && framing != Framing::None);
        if !framing_field {
            field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            field(out, b"content-length", digits(n).as_bytes());
        }
        Framing::Chunked => field(out, b"transfer-encoding", b"chunked"),
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A number's decimal digits without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn digits(mut n: u64) -> Digits {
    let mut d = Digits { buf: [0; 20], start: 20 };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// Appends one chunk of `data` (nothing for empty data: an empty chunk would end the body).
pub fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    chunk_size(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a chunk of `len` bytes (its data and CRLF written by the caller).
pub fn chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut hex = [0u8; 16];
    let mut at = hex.len();
    let mut n = len;
    loop {
        at -= 1;
        hex[at] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&hex[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and the trailer section (`trailers`' fields, if any).
pub fn last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::{parse_response, ChunkedDecoder, ResponseBody};
    use http::HeaderValue;

    #[test]
    fn a_written_response_reads_back_the_same() {
        let mut fields = HeaderMap::new();
        fields.insert("content-type", HeaderValue::from_static("text/plain"));
        fields.append("set-cookie", HeaderValue::from_static("a=1"));
        fields.append("set-cookie", HeaderValue::from_static("b=2"));
        fields.insert("content-length", HeaderValue::from_static("999"));
        fields.insert("transfer-encoding", HeaderValue::from_static("gzip"));
        let mut out = Vec::new();
        response_head(&mut out, StatusCode::OK, &fields, Framing::Chunked, b"Sat, 05 Dec 2026 08:00:00 GMT", true);
        chunk(&mut out, b"hello ");
        chunk(&mut out, b"");
        chunk(&mut out, &[b'x'; 300]);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        last_chunk(&mut out, Some(&trailers));
        let head = parse_response(&out, false, 8192, 64).unwrap().unwrap();
        assert_eq!((head.status, head.body, head.keep_alive), (200, ResponseBody::Chunked, false));
        let names: Vec<&[u8]> = head.fields.iter().map(|(n, _)| &out[n.clone()]).collect();
        assert_eq!(names, [b"content-type".as_slice(), b"set-cookie", b"set-cookie", b"transfer-encoding", b"date", b"connection"]);
        let mut d = ChunkedDecoder::new(1024);
        let (mut body, mut at) = (Vec::new(), head.len);
        while !d.is_done() {
            let step = d.step(&out[at..]).unwrap();
            if let Some(r) = &step.data {
                body.extend_from_slice(&out[at..][r.clone()]);
            }
            at += step.consumed;
        }
        assert_eq!(body.len(), 306);
        assert_eq!(d.trailers(), b"grpc-status: 0\r\n");
        assert_eq!(at, out.len());

        let mut out = Vec::new();
        response_head(&mut out, StatusCode::NOT_FOUND, &HeaderMap::new(), Framing::Length(12345), b"d", false);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\ncontent-length: 12345\r\ndate: d\r\n\r\n");
        let mut out = Vec::new();
        let mut head_fields = HeaderMap::new();
        head_fields.insert("content-length", HeaderValue::from_static("42"));
        response_head(&mut out, StatusCode::OK, &head_fields, Framing::None, b"d", false);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\ndate: d\r\n\r\n", "a HEAD's answer keeps its length");
    }

    #[test]
    fn a_request_head_for_main() {
        let mut fields = HeaderMap::new();
        fields.insert("host", HeaderValue::from_static("shop.example"));
        let mut out = Vec::new();
        request_head(&mut out, &Method::POST, b"/up?x=1", &fields, Framing::Length(0));
        assert_eq!(out, b"POST /up?x=1 HTTP/1.1\r\nhost: shop.example\r\ncontent-length: 0\r\n\r\n");
        let limits = crate::h1::Limits { max_head_bytes: 8192, max_headers: 64 };
        assert!(crate::h1::parse_request(&out, &limits).unwrap().is_some());
    }
}
