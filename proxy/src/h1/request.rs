//! A client's request head: parsed by `httparse` over the connection's buffer, judged as it is
//! read (the rules `headers::check_request` applies after hyper today: RFC 9112 §3.2 Host, §6.1
//! transfer codings, §6.3 framing, CONNECT), and kept as offsets into that buffer.

use std::ops::Range;

use http::{Method, StatusCode};

use super::{decimal, trim};
use crate::headers::checks::valid_host;

/// Bounds of a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of the whole head, request line to the empty line.
    pub max_head_bytes: usize,
    /// Header fields.
    pub max_headers: usize,
}

/// How the request's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither Content-Length nor Transfer-Encoding.
    None,
    Length(u64),
    Chunked,
}

/// Why a head is refused: the status the client gets, and the reason; the connection is closed
/// after it and nothing reaches main.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl Reject {
    fn bad(reason: &'static str) -> Self {
        Self { status: StatusCode::BAD_REQUEST, reason }
    }
}

/// A parsed request head; every range indexes the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, the empty line included: the body (if any) starts here.
    pub len: usize,
    pub method: Method,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Each field's name and value, in order, as sent (names in their own case).
    pub fields: Vec<(Range<usize>, Range<usize>)>,
    /// The host main is told: the absolute-form target's authority, else the Host field's value
    /// (`None` for an HTTP/1.0 request without one).
    pub host: Option<Range<usize>>,
    pub body: BodyKind,
    /// The connection stays open after this exchange (HTTP/1.1 without `close`, HTTP/1.0 with
    /// `keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expects_continue: bool,
    /// A rule the edge enforces as well is broken (CONNECT, Host, a transfer coding other than one
    /// chunked): the head is handed to the edge, which refuses it as it refuses any such request
    /// (answered, logged, counted); nothing of it reaches main, and the connection closes after.
    pub refused: Option<Reject>,
}

impl RequestHead {
    /// The bytes of a range of the buffer the head was parsed from.
    pub fn at<'b>(&self, buf: &'b [u8], r: &Range<usize>) -> &'b [u8] {
        buf.get(r.clone()).unwrap_or_default()
    }
}

/// Field slots kept on the stack when parsing (the default bound is 100).
pub(crate) const STACK_FIELDS: usize = 128;

/// Parses the request head at the start of `buf`: `Ok(None)` while it is incomplete (and within
/// the limits), the head once the empty line has arrived, or why it is refused.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, Reject> {
    // The field slots on the stack for the usual bound (no allocation per parse); a larger bound
    // gets them on the heap.
    // Left uninitialised: httparse writes a slot before it reads it.
    let mut stack = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
    let mut heap = Vec::new();
    let slots: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] = if limits.max_headers <= STACK_FIELDS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize_with(limits.max_headers, std::mem::MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return Err(Reject { status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, reason: "request head too large" })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject { status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, reason: "too many header fields" })
        }
        Err(_) => return Err(Reject::bad("malformed request head")),
    };
    if len > limits.max_head_bytes {
        return Err(Reject { status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, reason: "request head too large" });
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Reject::bad("malformed request line"));
    };
    let offset = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    let span = |s: &[u8]| {
        let start = offset(s);
        start..start + s.len()
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Reject::bad("malformed method"))?;
    let mut refused = None;
    let target_bytes = target.as_bytes();
    let absolute_authority = if method == Method::CONNECT {
        refused = Some(Reject { status: StatusCode::METHOD_NOT_ALLOWED, reason: "CONNECT is not forwarded by the front door" });
        None
    } else {
        target_form(&method, target_bytes)?
    };
    let mut head = RequestHead {
        len,
        method,
        target: span(target_bytes),
        minor,
        fields: Vec::with_capacity(req.headers.len()),
        host: None,
        body: BodyKind::None,
        keep_alive: minor == 1,
        expects_continue: false,
        refused: None,
    };
    let mut length: Option<u64> = None;
    let mut chunked = 0u8;
    let mut transfer_encoding = false;
    let mut hosts = 0u8;
    // A transfer coding the edge refuses: no body is read, and the connection ends after.
    let mut unframed = false;
    for h in req.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        head.fields.push((span(name), span(value)));
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                hosts += 1;
                if hosts > 1 {
                    refused.get_or_insert(Reject::bad("more than one Host field"));
                } else if !valid_host(value) {
                    refused.get_or_insert(Reject::bad("Host is not a host"));
                }
                head.host = Some(span(value));
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // One number; a list (`5, 5`), which RFC 9110 §8.6 lets a recipient accept, is
                // refused as hyper refuses it: parsers that disagree are how requests are smuggled.
                let n = decimal(trim(value)).ok_or(Reject::bad("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Reject::bad("Content-Length values differ"));
                }
                length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                transfer_encoding = true;
                for coding in value.split(|&c| c == b',').map(trim).filter(|c| !c.is_empty()) {
                    if !coding.eq_ignore_ascii_case(b"chunked") {
                        refused.get_or_insert(Reject { status: StatusCode::NOT_IMPLEMENTED, reason: "transfer coding not implemented" });
                        unframed = true;
                    } else if chunked > 0 {
                        refused.get_or_insert(Reject::bad("chunked applied more than once"));
                        unframed = true;
                    }
                    chunked = chunked.saturating_add(1);
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in value.split(|&c| c == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                        head.keep_alive = true;
                    }
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                head.expects_continue = trim(value).eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }
    if unframed {
        head.body = BodyKind::None;
        head.keep_alive = false;
    } else if transfer_encoding {
        // RFC 9112 §6.1: chunked must be the final coding (only chunked is implemented, so it is
        // the only one); HTTP/1.0 has no transfer codings; beside Content-Length it is a request
        // that two parsers could frame two ways (§6.3, request smuggling): refused.
        if chunked == 0 {
            return Err(Reject::bad("Transfer-Encoding without chunked"));
        }
        if minor == 0 {
            return Err(Reject::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if length.is_some() {
            return Err(Reject::bad("both Content-Length and Transfer-Encoding"));
        }
        head.body = BodyKind::Chunked;
    } else if let Some(n) = length {
        head.body = if n == 0 { BodyKind::None } else { BodyKind::Length(n) };
    }
    if minor == 1 && hosts == 0 {
        // RFC 9112 §3.2: every HTTP/1.1 request has one, absolute form too.
        refused.get_or_insert(Reject::bad("an HTTP/1.1 request without Host"));
    }
    if let Some(a) = absolute_authority {
        // RFC 9112 §3.2.2: the target's authority is the host, whatever Host says.
        head.host = Some(a.start + head.target.start..a.end + head.target.start);
    }
    if refused.is_some() {
        head.keep_alive = false;
    }
    head.refused = refused;
    Ok(Some(head))
}

/// RFC 9112 §3.2: origin form (`/path`), absolute form (`http://host/path`; its authority, as a
/// range of the target), or `*` for OPTIONS. Authority form is CONNECT's, refused before.
fn target_form(method: &Method, target: &[u8]) -> Result<Option<Range<usize>>, Reject> {
    // The target must also be a URI as `http` reads it (the request main gets is built from one,
    // and hyper refuses what it cannot read): a stricter check than httparse's characters.
    match target.first() {
        Some(b'/') if http::uri::PathAndQuery::try_from(target).is_err() => Err(Reject::bad("request target is not a URI path")),
        Some(b'/') => Ok(None),
        Some(b'*') if target.len() == 1 && method == Method::OPTIONS => Ok(None),
        _ => {
            let scheme_end = if starts_with_ci(target, b"http://") {
                7
            } else if starts_with_ci(target, b"https://") {
                8
            } else {
                return Err(Reject::bad("request target is not origin or absolute form"));
            };
            let rest = &target[scheme_end..];
            let end = rest.iter().position(|&c| matches!(c, b'/' | b'?' | b'#')).unwrap_or(rest.len());
            let authority = &rest[..end];
            if authority.is_empty() || authority.contains(&b'@') || !valid_host(authority) || http::Uri::try_from(target).is_err() {
                return Err(Reject::bad("request target names no valid host"));
            }
            Ok(Some(scheme_end..scheme_end + end))
        }
    }
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_head_bytes: 8192, max_headers: 64 };

    fn parse(text: &str) -> Result<Option<RequestHead>, Reject> {
        parse_request(text.as_bytes(), &LIMITS)
    }

    fn status(text: &str) -> u16 {
        match parse(text) {
            Ok(Some(head)) if head.refused.is_some() => head.refused.map_or(0, |r| r.status.as_u16()),
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(r) => r.status.as_u16(),
        }
    }

    #[test]
    fn a_head_is_offsets_into_the_buffer() {
        let text = "POST /up?x=1 HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let head = parse(text).unwrap().unwrap();
        let buf = text.as_bytes();
        assert_eq!((head.method.clone(), head.at(buf, &head.target)), (Method::POST, b"/up?x=1".as_slice()));
        assert_eq!(head.body, BodyKind::Length(5));
        assert_eq!(&buf[head.len..], b"hello");
        assert_eq!(head.at(buf, head.host.as_ref().unwrap()), b"shop.example");
        assert_eq!(head.fields.len(), 3);
        assert!(head.keep_alive);
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None), "incomplete");
    }

    #[test]
    fn rfc9112_s3_2_host() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: local host\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200, "HTTP/1.0 needs none");
        let text = "GET http://target.example:8080/p HTTP/1.1\r\nHost: other\r\n\r\n";
        let head = parse(text).unwrap().unwrap();
        assert_eq!(head.at(text.as_bytes(), head.host.as_ref().unwrap()), b"target.example:8080", "§3.2.2: the target wins");
        assert_eq!(status("GET http://user@evil/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status("GET http://a.example/ HTTP/1.1\r\n\r\n"), 400, "absolute form needs Host too");
    }

    #[test]
    fn rfc9112_s6_framing_that_two_parsers_could_read_two_ways_is_refused() {
        let h = "POST / HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(status(&format!("{h}Transfer-Encoding: gzip, chunked\r\n\r\n")), 501);
        assert_eq!(status(&format!("{h}Transfer-Encoding: chunked, chunked\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Content-Length: 3\r\nContent-Length: 4\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Content-Length: 3, 3\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Content-Length: 3\r\nContent-Length: 3\r\n\r\n")), 200);
        assert_eq!(status(&format!("{h}Content-Length: +3\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Content-Length: 99999999999999999999\r\n\r\n")), 400);
        assert_eq!(status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(status(&format!("{h}Transfer-Encoding: chunked\r\n\r\n")), 200);
        assert_eq!(parse(&format!("{h}Transfer-Encoding: Chunked\r\n\r\n")).unwrap().unwrap().body, BodyKind::Chunked);
        assert_eq!(status(&format!("{h}X: a\r\n b\r\n\r\n")), 400, "obs-fold");
        assert_eq!(status("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), 405);
    }

    #[test]
    fn limits_and_connection_tokens() {
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")), 431);
        let more: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
        let wide = Limits { max_head_bytes: 8192, max_headers: 200 };
        let text = format!("GET / HTTP/1.1\r\nHost: a\r\n{more}\r\n");
        assert_eq!(parse_request(text.as_bytes(), &wide).unwrap().unwrap().fields.len(), 151, "a bound past the stack slots");
        assert_eq!(status(&format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000))), 431, "a partial head past the bound");
        assert!(!parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(parse("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap().unwrap().expects_continue);
    }
}
