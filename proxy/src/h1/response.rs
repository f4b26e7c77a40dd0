//! Main's response head: parsed by `httparse` over the connection's buffer, its body's framing
//! decided as RFC 9112 §6.3 orders it, and kept as offsets into that buffer.

use std::ops::Range;

use super::{decimal, trim};

/// How a response's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// None at all: the request was HEAD, or the status is 1xx, 204 or 304.
    Empty,
    Length(u64),
    Chunked,
    /// Until main closes the connection (no length, or a final coding other than chunked).
    UntilClose,
}

/// Why main's response cannot be read: the client gets a 502 naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadResponse {
    Malformed,
    TooLarge,
    InvalidLength,
}

impl std::fmt::Display for BadResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadResponse::Malformed => "main's response head is malformed",
            BadResponse::TooLarge => "main's response head is too large",
            BadResponse::InvalidLength => "main's Content-Length is invalid",
        })
    }
}

impl std::error::Error for BadResponse {}

/// A parsed response head; every range indexes the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head, the empty line included.
    pub len: usize,
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub reason: Range<usize>,
    pub fields: Vec<(Range<usize>, Range<usize>)>,
    pub body: ResponseBody,
    /// The connection may carry another request after this response's body.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// 1xx: an interim response; the final one follows on the same connection.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Parses the response head at the start of `buf` (`head_request`: the request was HEAD, so no
/// body follows whatever the fields say): `Ok(None)` while incomplete and within the bounds.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    max_head_bytes: usize,
    max_fields: usize,
) -> Result<Option<ResponseHead>, BadResponse> {
    // On the stack and uninitialised for the usual bound (no allocation, no clearing per parse).
    let mut stack = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; super::request::STACK_FIELDS];
    let mut heap = Vec::new();
    let slots: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] = if max_fields <= super::request::STACK_FIELDS {
        &mut stack[..max_fields]
    } else {
        heap.resize_with(max_fields, std::mem::MaybeUninit::uninit);
        &mut heap
    };
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, slots) {
        Ok(httparse::Status::Complete(n)) if n <= max_head_bytes => n,
        Ok(httparse::Status::Complete(_)) => return Err(BadResponse::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() > max_head_bytes => return Err(BadResponse::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadResponse::TooLarge),
        Err(_) => return Err(BadResponse::Malformed),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else { return Err(BadResponse::Malformed) };
    let offset = |s: &[u8]| {
        let start = (s.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        start..start + s.len()
    };
    let reason = resp.reason.map_or(0..0, |r| offset(r.as_bytes()));
    let mut fields = Vec::with_capacity(resp.headers.len());
    let (mut length, mut chunked_last, mut coded) = (None::<u64>, false, false);
    let mut keep_alive = minor == 1;
    for h in resp.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        fields.push((offset(name), offset(value)));
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = decimal(trim(value)).ok_or(BadResponse::InvalidLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadResponse::InvalidLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The final coding of all the fields together decides (RFC 9112 §6.1).
            for coding in value.split(|&c| c == b',').map(trim).filter(|c| !c.is_empty()) {
                coded = true;
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&c| c == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    keep_alive = true;
                }
            }
        }
    }
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        ResponseBody::Empty
    } else if coded && chunked_last {
        ResponseBody::Chunked
    } else if coded {
        ResponseBody::UntilClose
    } else {
        length.map_or(ResponseBody::UntilClose, ResponseBody::Length)
    };
    if body == ResponseBody::UntilClose {
        keep_alive = false;
    }
    Ok(Some(ResponseHead { len, status, minor, reason, fields, body, keep_alive }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str, head: bool) -> Result<ResponseBody, BadResponse> {
        parse_response(text.as_bytes(), head, 8192, 64).map(|h| h.map_or(ResponseBody::Empty, |h| h.body))
    }

    #[test]
    fn rfc9112_s6_3_the_body_length_in_its_order() {
        assert_eq!(body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true), Ok(ResponseBody::Empty), "HEAD");
        assert_eq!(body("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false), Ok(ResponseBody::Empty));
        assert_eq!(body("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false), Ok(ResponseBody::Empty));
        assert_eq!(body("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", false), Ok(ResponseBody::Empty));
        assert_eq!(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false), Ok(ResponseBody::Chunked));
        assert_eq!(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false), Ok(ResponseBody::UntilClose));
        assert_eq!(body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false), Ok(ResponseBody::Length(5)));
        assert_eq!(body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false), Err(BadResponse::InvalidLength));
        assert_eq!(body("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false), Err(BadResponse::InvalidLength));
        assert_eq!(body("HTTP/1.1 200 OK\r\n\r\n", false), Ok(ResponseBody::UntilClose));
        let h = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", false, 8192, 64).unwrap().unwrap();
        assert!(!h.keep_alive, "read until close: the connection ends with the body");
        let h =
            parse_response(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false, 8192, 64).unwrap().unwrap();
        assert!(h.keep_alive);
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false, 8192, 64), Err(BadResponse::Malformed), "obs-fold");
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nX: a\r\n", false, 8192, 64), Ok(None));
    }
}
