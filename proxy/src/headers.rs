//! Forwarding rules for request and response heads: hop-by-hop headers stripped (RFC 9110
//! §7.6.1, plus whatever `Connection` names), `X-Forwarded-*`, App Service's front-end headers,
//! `Via` (§7.6.3), the request id and `traceparent`, and only WebSocket ever upgraded; what a
//! request must be before any of it reaches main is in `checks` ([`check_request`]).

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};

use crate::ids;

pub(crate) mod checks;
mod encoding;
pub use checks::check_request;
pub use encoding::{compressible, varies_by_encoding};

/// Hop-by-hop headers: never forwarded in either direction. `http2-settings` belongs to an h2c
/// upgrade of this one connection (RFC 9113 §3.2.1), whatever `Connection` says. The request
/// path tells them with [`hop_by_hop`]; this list is what it is checked against.
/// The announced body length, when `Content-Length` is one valid number.
pub fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// A copy of a request head (method, target, version) with `headers`, without extensions: what
/// the cache keeps to decide on main's answer, and what is sent again on a second try.
pub fn head_with(parts: &http::request::Parts, headers: http::HeaderMap) -> http::request::Parts {
    let mut r = http::Request::new(());
    *r.method_mut() = parts.method.clone();
    *r.uri_mut() = parts.uri.clone();
    *r.version_mut() = parts.version;
    *r.headers_mut() = headers;
    r.into_parts().0
}

#[cfg(test)]
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("http2-settings"),
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_ARR_LOG_ID: HeaderName = HeaderName::from_static("x-arr-log-id");
static X_CLIENT_IP: HeaderName = HeaderName::from_static("x-client-ip");
static X_CLIENT_PORT: HeaderName = HeaderName::from_static("x-client-port");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_APPSERVICE_PROTO: HeaderName = HeaderName::from_static("x-appservice-proto");
static DISGUISED_HOST: HeaderName = HeaderName::from_static("disguised-host");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// What the forwarding rules need to know about the connection, with the values that every
/// request on it sends already formatted (once per connection, not per request).
#[derive(Debug, Clone)]
pub struct Peer {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub https: bool,
    pub(crate) client_ip: HeaderValue,
    pub(crate) client_port: HeaderValue,
    /// The fields the direct path sends main from the connection alone, as written:
    /// `X-Forwarded-For` (the first `xff_len` bytes, for a client that sent none of its own),
    /// then `X-Forwarded-Proto`, `X-AppService-Proto`, `X-Client-IP` and `X-Client-Port`. The two
    /// values above are slices of it: one allocation per connection for all of them.
    pub(crate) direct_fields: Bytes,
    pub(crate) xff_len: usize,
}

impl Peer {
    pub fn new(client: SocketAddr, local: SocketAddr, https: bool) -> Self {
        // Written by hand into one buffer of the right size: formatting machinery and the
        // reallocations of a growing string were a tenth of a new connection's user time.
        let proto: &[u8] = if https { b"https" } else { b"http" };
        let mut block = Vec::with_capacity(160 + 2 * 39);
        block.extend_from_slice(b"x-forwarded-for: ");
        let ip_start = block.len();
        push_ip(&mut block, client.ip());
        let ip_len = block.len() - ip_start;
        block.extend_from_slice(b"\r\n");
        let xff_len = block.len();
        for name in [&b"x-forwarded-proto: "[..], b"x-appservice-proto: "] {
            block.extend_from_slice(name);
            block.extend_from_slice(proto);
            block.extend_from_slice(b"\r\n");
        }
        block.extend_from_slice(b"x-client-ip: ");
        let ip_at = block.len()..block.len() + ip_len;
        block.extend_from_within(ip_start..ip_start + ip_len);
        block.extend_from_slice(b"\r\nx-client-port: ");
        let port_start = block.len();
        push_decimal(&mut block, client.port().into());
        let port_at = port_start..block.len();
        block.extend_from_slice(b"\r\n");
        let block = Bytes::from(block);
        let value =
            |r: std::ops::Range<usize>| HeaderValue::from_maybe_shared(block.slice(r)).unwrap_or_else(|_| HeaderValue::from_static("-"));
        Self { client, local, https, client_ip: value(ip_at), client_port: value(port_at), xff_len, direct_fields: block }
    }
}

/// `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: u32) {
    let mut digits = [0u8; 10];
    let (mut at, mut n) = (digits.len(), n);
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// An address as `IpAddr`'s `Display` writes it.
fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, octet.into());
            }
        }
        std::net::IpAddr::V6(_) => {
            use std::io::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// How the edge takes part in W3C trace context.
#[derive(Debug, Clone, Copy)]
pub struct Trace {
    /// The edge records a span of its own (spans are exported): a sampled request goes to main
    /// with the edge's span as its parent.
    pub own_span: bool,
    /// New traces are sampled when a random u64 is at most this.
    threshold: u64,
}

impl Trace {
    /// `ratio`: share of new traces marked sampled, 0 to 1.
    pub fn new(own_span: bool, ratio: f64) -> Self {
        let threshold = if ratio >= 1.0 {
            u64::MAX
        } else if ratio > 0.0 {
            (ratio * u64::MAX as f64) as u64
        } else {
            0
        };
        Self { own_span, threshold }
    }

    fn sample_new(&self) -> bool {
        self.threshold == u64::MAX || (self.threshold > 0 && ids::random_u64() <= self.threshold)
    }
}

impl Default for Trace {
    fn default() -> Self {
        Self::new(false, 1.0)
    }
}

/// The request-rewriting choices of a front door.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding {
    /// Drop request headers whose name has `_`, as nginx does.
    pub drop_underscore: bool,
    pub trace: Trace,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self { drop_underscore: true, trace: Trace::default() }
    }
}

/// The edge's own span of a sampled request (hex ids, as in `traceparent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeSpan {
    pub span_id: [u8; 16],
    /// The client's span, when the request came with a valid `traceparent`.
    pub parent: Option<[u8; 16]>,
}

/// Ids given to one request, for logs and error bodies.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub(crate) request_id: HeaderValue,
    trace_id: [u8; 32],
    span: Option<EdgeSpan>,
}

impl RequestIds {
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.trace_id).unwrap_or("-")
    }

    /// The edge's span, when it records one for this request.
    pub fn span(&self) -> Option<EdgeSpan> {
        self.span
    }
}

/// The trace a request belongs to and the edge's span in it: the client's trace continued (its
/// sampling decision kept), or a new one; `None` span when the edge records none.
fn trace_of(headers: &HeaderMap, trace: Trace) -> (ids::TraceParent, bool, Option<EdgeSpan>) {
    trace_of_value(headers.get(&TRACEPARENT).map(HeaderValue::as_bytes), trace)
}

/// As [`trace_of`], from the first `traceparent` value as sent.
pub(crate) fn trace_of_value(traceparent: Option<&[u8]>, trace: Trace) -> (ids::TraceParent, bool, Option<EdgeSpan>) {
    match traceparent.and_then(ids::parse_traceparent) {
        Some(client) => {
            let span = (trace.own_span && client.sampled()).then(|| EdgeSpan { span_id: ids::span_id(), parent: Some(client.span_id) });
            (client, false, span)
        }
        None => {
            let new = ids::new_trace(trace.sample_new());
            let span = (trace.own_span && new.sampled()).then_some(EdgeSpan { span_id: new.span_id, parent: None });
            (new, true, span)
        }
    }
}

/// True for a WebSocket upgrade request (HTTP/1.1 `Upgrade: websocket` with `Connection: upgrade`).
pub fn is_websocket(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade")))
}

/// Removes hop-by-hop headers, including every header the `Connection` header names. One pass
/// over the names first: most heads carry none of them, or only `Connection`. Nothing is
/// allocated: names are removed by their static or borrowed spelling.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|n| hop_by_hop(n).is_some()) {
        return;
    }
    // The values are copied out (a reference count each) because the map changes under them,
    // and the usual single `Connection` field without collecting it into a Vec.
    match headers.get_all(header::CONNECTION).iter().count() {
        0 => {}
        1 => {
            if let Some(v) = headers.get(header::CONNECTION).cloned() {
                remove_listed(headers, &v);
            }
        }
        _ => {
            let all: Vec<HeaderValue> = headers.get_all(header::CONNECTION).iter().cloned().collect();
            for v in &all {
                remove_listed(headers, v);
            }
        }
    }
    while let Some(name) = headers.keys().find_map(hop_by_hop) {
        headers.remove(name);
    }
}

/// Removes the fields a `Connection` value names.
fn remove_listed(headers: &mut HeaderMap, connection: &HeaderValue) {
    for token in connection.as_bytes().split(|b| *b == b',') {
        let token = token.trim_ascii();
        // The usual tokens name no header (or one removed afterwards anyway).
        if token.is_empty() || token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive") {
            continue;
        }
        if let Ok(name) = std::str::from_utf8(token) {
            headers.remove(name);
        }
    }
}

/// Whether a field name as written (any case) is hop-by-hop (told by length first).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let candidates: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"upgrade", b"trailer"],
        10 => &[b"connection", b"keep-alive"],
        14 => &[b"http2-settings"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        19 => &[b"proxy-authorization"],
        _ => return false,
    };
    candidates.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// The name if it is one of [`HOP_BY_HOP`] (told by length first).
fn hop_by_hop(n: &HeaderName) -> Option<&'static str> {
    const NAMES: [&str; 9] = [
        "te",
        "upgrade",
        "trailer",
        "connection",
        "keep-alive",
        "http2-settings",
        "proxy-connection",
        "transfer-encoding",
        "proxy-authorization",
    ];
    let s = n.as_str();
    let candidates: &[&'static str] = match s.len() {
        2 => &NAMES[0..1],
        7 => &NAMES[1..3],
        10 => &NAMES[3..5],
        14 => &NAMES[5..6],
        16 => &NAMES[6..7],
        17 => &NAMES[7..8],
        19 => &NAMES[8..9],
        _ => return None,
    };
    candidates.iter().copied().find(|c| *c == s)
}

/// Rewrites a request head for main. `uri` is the request's URI (for `X-Original-URL` and the
/// host of HTTP/2 requests); returns the ids given to the request.
pub fn prepare_request(
    headers: &mut HeaderMap,
    uri: &Uri,
    version: Version,
    websocket: bool,
    peer: &Peer,
    rules: Forwarding,
) -> RequestIds {
    // Room for the fields added below, so the map grows (and rehashes) at most once.
    headers.reserve(12);
    let upgrade = if websocket { headers.get(header::UPGRADE).cloned() } else { None };
    strip_hop_by_hop(headers);
    // An Expect is answered here (hyper sends 100 Continue when the body is read).
    headers.remove(header::EXPECT);
    if rules.drop_underscore && headers.keys().any(|k| k.as_str().contains('_')) {
        let bad: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().contains('_')).cloned().collect();
        for k in bad {
            headers.remove(k);
        }
    }
    if let Some(up) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, up);
    }

    // Host: kept; taken from the authority for HTTP/2; supplied for HTTP/1.0 without one.
    if !headers.contains_key(header::HOST) {
        let host = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_else(|| peer.local.to_string());
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, v);
        }
    }
    let host = headers.get(header::HOST).cloned();

    match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            let xff = format!("{prev}, {}", peer.client.ip());
            set(headers, &X_FORWARDED_FOR, &xff);
        }
        _ => {
            headers.insert(X_FORWARDED_FOR.clone(), peer.client_ip.clone());
        }
    }
    let proto = HeaderValue::from_static(if peer.https { "https" } else { "http" });
    headers.insert(X_FORWARDED_PROTO.clone(), proto.clone());
    headers.insert(X_APPSERVICE_PROTO.clone(), proto);
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        headers.insert(DISGUISED_HOST.clone(), h);
    }
    headers.insert(X_CLIENT_IP.clone(), peer.client_ip.clone());
    headers.insert(X_CLIENT_PORT.clone(), peer.client_port.clone());

    // The values made for this request share one buffer: two allocations instead of one per
    // value, and copies of the head (kept for a retry) only count references.
    let url = uri.path_and_query().map_or("", |pq| pq.as_str());
    let client_id = headers.get(&X_REQUEST_ID).filter(|v| ids::valid_request_id(v.as_bytes())).cloned();
    let new_id = client_id.is_none().then(ids::request_id);
    let (mut tp, new, span) = trace_of(headers, rules.trace);
    if let Some(s) = span {
        // Main's spans are children of the edge's.
        tp.span_id = s.span_id;
    }
    let mut made = Made::with_capacity(url.len() + 32 + 36 + 55);
    let url = made.push(url.as_bytes());
    let new_id = new_id.map(|id| made.push(&id));
    let id_hex = new_id.map(|(a, b)| &made.buf[a..b]).or(client_id.as_ref().map(|v| v.as_bytes()));
    let log_id = id_hex.and_then(|h| <&[u8; 32]>::try_from(h).ok()).map(ids::guid).map(|g| made.push(&g));
    let traceparent = (new || span.is_some()).then(|| made.push(&tp.to_bytes()));
    let made = made.buf.freeze();
    let value = |(a, b): (usize, usize)| HeaderValue::from_maybe_shared(made.slice(a..b)).ok();

    if url.1 > url.0 {
        if let Some(v) = value(url) {
            headers.insert(X_ORIGINAL_URL.clone(), v);
        }
    }
    let request_id = match (client_id, new_id.and_then(value)) {
        (Some(v), _) => v,
        (None, Some(v)) => {
            headers.insert(X_REQUEST_ID.clone(), v.clone());
            v
        }
        (None, None) => HeaderValue::from_static("-"),
    };
    let log_id = log_id.and_then(value).unwrap_or_else(|| request_id.clone());
    headers.insert(X_ARR_LOG_ID.clone(), log_id);
    if new {
        // An invalid traceparent restarts the trace, and its tracestate goes with it.
        headers.remove(&TRACESTATE);
    }
    if let Some(v) = traceparent.and_then(value) {
        headers.insert(TRACEPARENT.clone(), v);
    }

    let via = match version {
        Version::HTTP_10 => "1.0 sitecar",
        Version::HTTP_2 => "2 sitecar",
        _ => "1.1 sitecar",
    };
    headers.append(header::VIA, HeaderValue::from_static(via));
    RequestIds { request_id, trace_id: tp.trace_id, span }
}

/// The ids of a request answered at the edge without being rewritten for main (a cache hit): the
/// client's valid `X-Request-Id` and `traceparent` trace id, or new ones.
pub fn request_ids(headers: &HeaderMap, trace: Trace) -> RequestIds {
    let request_id = match headers.get(&X_REQUEST_ID) {
        Some(v) if ids::valid_request_id(v.as_bytes()) => v.clone(),
        _ => bytes_value(&ids::request_id()),
    };
    let (tp, _, span) = trace_of(headers, trace);
    RequestIds { request_id, trace_id: tp.trace_id, span }
}

/// Rewrites main's response head for the client: hop-by-hop headers out (the upgrade headers of
/// an accepted WebSocket handshake stay).
pub fn prepare_response(headers: &mut HeaderMap, switching: bool) {
    let upgrade = if switching { headers.get(header::UPGRADE).cloned() } else { None };
    strip_hop_by_hop(headers);
    if let Some(up) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, up);
    }
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), v);
    }
}

/// Bytes of the header values made for one request, appended to one buffer.
struct Made {
    buf: bytes::BytesMut,
}

impl Made {
    fn with_capacity(n: usize) -> Self {
        Self { buf: bytes::BytesMut::with_capacity(n) }
    }

    /// Appends `b`; where it lies in the buffer.
    fn push(&mut self, b: &[u8]) -> (usize, usize) {
        let start = self.buf.len();
        self.buf.extend_from_slice(b);
        (start, self.buf.len())
    }
}

/// A header value from bytes that are valid by construction (hex digits, dashes).
fn bytes_value(b: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(b).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_fields_are_written_as_its_address_displays() {
        let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
        for (client, https) in [
            ("203.0.113.7:54321", false),
            ("0.0.0.0:0", true),
            ("255.255.255.255:65535", false),
            ("[2001:db8::1]:8080", true),
            ("[::ffff:192.0.2.1]:9", false),
        ] {
            let client: SocketAddr = client.parse().unwrap();
            let peer = Peer::new(client, local, https);
            let (ip, port, proto) = (client.ip().to_string(), client.port().to_string(), if https { "https" } else { "http" });
            assert_eq!(peer.client_ip.to_str().unwrap(), ip);
            assert_eq!(peer.client_port.to_str().unwrap(), port);
            let expected = format!("x-forwarded-for: {ip}\r\nx-forwarded-proto: {proto}\r\nx-appservice-proto: {proto}\r\nx-client-ip: {ip}\r\nx-client-port: {port}\r\n");
            assert_eq!(String::from_utf8_lossy(&peer.direct_fields), expected);
            assert_eq!(&peer.direct_fields[..peer.xff_len], format!("x-forwarded-for: {ip}\r\n").as_bytes());
        }
    }

    #[test]
    fn hop_by_hop_names_are_told_apart_from_their_neighbours() {
        for n in &HOP_BY_HOP {
            assert!(is_hop_by_hop(n.as_str().as_bytes()) && is_hop_by_hop(n.as_str().to_ascii_uppercase().as_bytes()), "{n}");
            assert_eq!(hop_by_hop(n), Some(n.as_str()), "{n}");
        }
        for near in ["t", "tes", "upgrades", "trailers", "connectio", "keep-alives", "x-http2-settings", "content-length", "host", "via"] {
            assert_eq!(hop_by_hop(&HeaderName::from_bytes(near.as_bytes()).unwrap()), None, "{near}");
        }
    }

    fn peer() -> Peer {
        Peer::new("203.0.113.7:51234".parse().unwrap(), "127.0.0.1:8080".parse().unwrap(), false)
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn prepare(h: &mut HeaderMap, uri: &str) -> RequestIds {
        let uri: Uri = uri.parse().unwrap();
        let ws = is_websocket(&Method::GET, Version::HTTP_11, h);
        prepare_request(h, &uri, Version::HTTP_11, ws, &peer(), Forwarding::default())
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_stripped() {
        let mut h = map(&[
            ("host", "shop.example"),
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
        ]);
        prepare(&mut h, "/a?b=1");
        for gone in ["connection", "x-secret-hop", "keep-alive", "te", "proxy-authorization", "upgrade"] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(h["accept"], "*/*");
        assert_eq!(h["host"], "shop.example");
    }

    #[test]
    fn forwarded_and_app_service_headers() {
        let mut h = map(&[
            ("host", "shop.example:8080"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-client-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        let ids = prepare(&mut h, "/cart?id=3");
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 203.0.113.7");
        assert_eq!(h["x-forwarded-proto"], "http", "the client's claim is replaced");
        assert_eq!(h["x-appservice-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example:8080");
        assert_eq!(h["disguised-host"], "shop.example:8080");
        assert_eq!(h["x-original-url"], "/cart?id=3");
        assert_eq!(h["x-client-ip"], "203.0.113.7");
        assert_eq!(h["x-client-port"], "51234");
        assert_eq!(h["x-request-id"], ids.request_id());
        assert_eq!(h["x-arr-log-id"].to_str().unwrap().replace('-', ""), ids.request_id());
        assert_eq!(h["x-arr-log-id"].len(), 36);
        assert_eq!(h["via"], "1.1 sitecar");
        assert_eq!(ids::trace_id(h["traceparent"].as_bytes()).as_ref().map(|t| std::str::from_utf8(t).unwrap()), Some(ids.trace_id()));
    }

    #[test]
    fn existing_ids_are_passed_on_and_bad_traceparents_replaced() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = map(&[("host", "h"), ("x-request-id", "abc-123"), ("traceparent", tp), ("tracestate", "k=v"), ("via", "1.1 edge")]);
        let ids = prepare(&mut h, "/");
        assert_eq!(ids.request_id(), "abc-123");
        assert_eq!(h["x-arr-log-id"], "abc-123", "a client's id that is not 32 hex digits is used as is");
        assert_eq!(h["traceparent"], tp);
        assert_eq!(h["tracestate"], "k=v");
        assert_eq!(ids.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(h.get_all("via").iter().collect::<Vec<_>>(), ["1.1 edge", "1.1 sitecar"]);

        let mut h = map(&[("host", "h"), ("traceparent", "00-zz-bad"), ("tracestate", "k=v")]);
        let ids = prepare(&mut h, "/");
        assert_ne!(h["traceparent"], "00-zz-bad");
        assert!(!h.contains_key("tracestate"));
        assert_eq!(ids.trace_id().len(), 32);
    }

    #[test]
    fn an_edge_that_records_spans_becomes_the_parent_of_main() {
        let exporting = Forwarding { trace: Trace::new(true, 1.0), ..Forwarding::default() };
        let uri: Uri = "/".parse().unwrap();
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = map(&[("host", "h"), ("traceparent", client), ("tracestate", "k=v")]);
        let ids = prepare_request(&mut h, &uri, Version::HTTP_11, false, &peer(), exporting);
        let span = ids.span().unwrap();
        assert_eq!(span.parent, Some(*b"00f067aa0ba902b7"));
        let sent = ids::parse_traceparent(h["traceparent"].as_bytes()).unwrap();
        assert_eq!((&sent.trace_id, sent.span_id, &sent.flags), (b"4bf92f3577b34da6a3ce929d0e0e4736", span.span_id, b"01"));
        assert_eq!(h["tracestate"], "k=v", "tracestate goes on with the trace");

        // The client's "not sampled" is kept: no span, the header passed on untouched.
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let mut h = map(&[("host", "h"), ("traceparent", unsampled)]);
        assert!(prepare_request(&mut h, &uri, Version::HTTP_11, false, &peer(), exporting).span().is_none());
        assert_eq!(h["traceparent"], unsampled);

        // A new trace: the edge's span is the root, and main's parent.
        let mut h = map(&[("host", "h")]);
        let ids = prepare_request(&mut h, &uri, Version::HTTP_11, false, &peer(), exporting);
        let span = ids.span().unwrap();
        let sent = ids::parse_traceparent(h["traceparent"].as_bytes()).unwrap();
        assert_eq!((span.parent, sent.span_id, sent.sampled()), (None, span.span_id, true));

        // A sample ratio of 0 marks new traces unsampled, and records nothing.
        let none = Forwarding { trace: Trace::new(true, 0.0), ..Forwarding::default() };
        let mut h = map(&[("host", "h")]);
        assert!(prepare_request(&mut h, &uri, Version::HTTP_11, false, &peer(), none).span().is_none());
        assert!(!ids::parse_traceparent(h["traceparent"].as_bytes()).unwrap().sampled());
        // A ratio of a half samples about half.
        let half = Trace::new(false, 0.5);
        let sampled = (0..4000).filter(|_| half.sample_new()).count();
        assert!((1600..2400).contains(&sampled), "{sampled} of 4000");
    }

    #[test]
    fn underscore_headers_are_dropped() {
        let mut h = map(&[("host", "h"), ("x_user", "admin"), ("x-user", "bob")]);
        prepare(&mut h, "/");
        assert!(!h.contains_key("x_user"));
        assert_eq!(h["x-user"], "bob");
    }

    #[test]
    fn only_websocket_upgrades_survive() {
        let mut h = map(&[("host", "h"), ("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")]);
        prepare(&mut h, "/ws");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        let mut h = map(&[
            ("host", "h"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ]);
        prepare(&mut h, "/");
        assert!(!h.contains_key("upgrade") && !h.contains_key("http2-settings") && !h.contains_key("connection"));
        // Even when Connection does not name it.
        let mut h = map(&[("host", "h"), ("upgrade", "h2c"), ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA")]);
        prepare(&mut h, "/");
        assert!(!h.contains_key("upgrade") && !h.contains_key("http2-settings"));
    }

    #[test]
    fn host_is_supplied_for_http10_and_http2() {
        let mut h = HeaderMap::new();
        prepare_request(&mut h, &"/".parse().unwrap(), Version::HTTP_10, false, &peer(), Forwarding::default());
        assert_eq!(h["host"], "127.0.0.1:8080");
        assert_eq!(h["via"], "1.0 sitecar");
        let mut h = HeaderMap::new();
        prepare_request(&mut h, &"https://shop.example/x".parse().unwrap(), Version::HTTP_2, false, &peer(), Forwarding::default());
        assert_eq!(h["host"], "shop.example");
    }

    #[test]
    fn response_hop_by_hop_headers_are_stripped() {
        let mut h = map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "text/plain"),
        ]);
        prepare_response(&mut h, false);
        assert_eq!(h.len(), 1);
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-accept", "x")]);
        prepare_response(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-accept"], "x");
    }
}
