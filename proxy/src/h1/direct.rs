//! The direct path: an HTTP/1.1 request without a body that goes to main as it is (no cache, no
//! file of an offload rule, nothing to compress for this client) is rewritten from the client's
//! head straight into the bytes main gets, and main's answer from its head straight into the
//! bytes the client gets, both in the connection's task: no header map, no request or response
//! object, the body relayed from main's buffer. The rewrite is the edge's (`headers.rs`
//! `prepare_request` and `prepare_response`, RFC 9110 §7.6.1 for the hop-by-hop fields) on the
//! fields as sent; `tests/` holds both paths to the same results (the front door's suite runs on
//! this engine and again on hyper's server, whose requests all take the general path).
//!
//! What the direct path does not finish goes back: a connection to main that fails before
//! anything of main's answer arrived hands the request to the general path as its second try
//! (`origin.rs`: the gate, the hold, who failed); an answer framed by chunks or by the end of the
//! connection, and the edge's own error answers, are written by the connection's general writer.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::client::{into_response, read_head, MainConn};
use super::clock::Clock;
use super::write::date;
use super::{BodyKind, RequestHead, ResponseBody, ResponseHead};
use crate::edge::EdgeService;
use crate::error::ProxyError;
use crate::headers::{is_hop_by_hop, trace_of_value, EdgeSpan, Peer};
use crate::ids;
use crate::response::EdgeBody;

/// How the direct path left a request.
pub(crate) enum Outcome {
    /// Answered (`true`: the connection may carry another request).
    Done(bool),
    /// An answer for the connection's general writer (main's, framed by chunks or by close; or
    /// the edge's error answer), already recorded.
    Answer(Response<EdgeBody>),
    /// Nothing reached the client and main answered nothing: the general path's turn, as the
    /// request's second try.
    Again(crate::origin::SecondTry),
}

/// Whether a request takes the direct path.
pub(crate) fn eligible(edge: &EdgeService, head: &RequestHead, bytes: &[u8]) -> bool {
    let (config, origin, _) = edge.direct_view();
    let target = &bytes[head.target.clone()];
    head.refused.is_none()
        && head.minor == 1
        && head.body == BodyKind::None
        && head.method.is_idempotent()
        && target.first() == Some(&b'/')
        && config.cache.is_none()
        && origin.ready()
        && config.offload.as_ref().is_none_or(|o| {
            let path = target.split(|c| *c == b'?').next().unwrap_or_default();
            std::str::from_utf8(path).is_ok_and(|p| !o.covers(p))
        })
        && (!config.compression || !head.fields.iter().any(|(n, _)| bytes[n.clone()].eq_ignore_ascii_case(b"accept-encoding")))
}

/// What the access log, the metrics and an error answer need of a request on the direct path.
struct Ids {
    request_id: Vec<u8>,
    trace_id: [u8; 32],
    span: Option<EdgeSpan>,
}

/// Writes the request head main gets: the client's fields without the hop-by-hop ones (and
/// those `Connection` names), `Expect`, `_` names (by the rule) and the fields the edge sets
/// itself; then the forwarding fields, ids and trace context, as `headers::prepare_request`
/// sets them.
fn rewrite(w: &mut Vec<u8>, head: &RequestHead, bytes: &[u8], peer: &Peer, rules: crate::headers::Forwarding) -> Ids {
    let at = |r: &std::ops::Range<usize>| &bytes[r.clone()];
    let target = at(&head.target);
    w.reserve(head.len + 512);
    w.extend_from_slice(head.method.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(target);
    w.extend_from_slice(b" HTTP/1.1\r\n");
    let listed = connection_listed(&head.fields, bytes);
    let first = |name: &[u8]| head.fields.iter().find(|(n, _)| at(n).eq_ignore_ascii_case(name)).map(|(_, v)| at(v));
    let client_id = first(b"x-request-id").filter(|v| ids::valid_request_id(v));
    let (mut tp, new_trace, span) = trace_of_value(first(b"traceparent"), rules.trace);
    if let Some(s) = span {
        tp.span_id = s.span_id;
    }
    let mut host: &[u8] = b"";
    let mut forwarded_for: Option<&[u8]> = None;
    for (n, v) in &head.fields {
        let (name, value) = (at(n), at(v));
        if is_hop_by_hop(name) || listed.iter().any(|l| l.eq_ignore_ascii_case(name)) {
            continue;
        }
        if rules.drop_underscore && name.contains(&b'_') {
            continue;
        }
        let set_here = |s: &[u8]| name.eq_ignore_ascii_case(s);
        if set_here(b"host") {
            host = value;
        } else if set_here(b"x-forwarded-for") {
            forwarded_for = forwarded_for.or(Some(value));
            continue;
        } else if set_here(b"expect")
            || set_here(b"x-forwarded-proto")
            || set_here(b"x-appservice-proto")
            || set_here(b"x-forwarded-host")
            || set_here(b"disguised-host")
            || set_here(b"x-client-ip")
            || set_here(b"x-client-port")
            || set_here(b"x-original-url")
            || set_here(b"x-arr-log-id")
            || (set_here(b"x-request-id") && client_id.is_none())
            || (set_here(b"traceparent") && (new_trace || span.is_some()))
            || (set_here(b"tracestate") && new_trace)
        {
            continue;
        }
        field(w, name, value);
    }
    match forwarded_for.filter(|v| v.iter().all(|c| *c == b'\t' || (b' '..=b'~').contains(c)) && !v.trim_ascii().is_empty()) {
        Some(prev) => {
            w.extend_from_slice(b"x-forwarded-for: ");
            w.extend_from_slice(prev);
            w.extend_from_slice(b", ");
            w.extend_from_slice(peer.client_ip.as_bytes());
            w.extend_from_slice(b"\r\n");
            w.extend_from_slice(&peer.direct_fields[peer.xff_len..]);
        }
        // X-Forwarded-For to X-Client-Port, as formatted for the connection.
        None => w.extend_from_slice(&peer.direct_fields),
    }
    field(w, b"x-forwarded-host", host);
    field(w, b"disguised-host", host);
    field(w, b"x-original-url", target);
    let request_id = match client_id {
        Some(id) => id.to_vec(),
        None => {
            let id = ids::request_id();
            field(w, b"x-request-id", &id);
            id.to_vec()
        }
    };
    match <&[u8; 32]>::try_from(request_id.as_slice()) {
        Ok(hex) => field(w, b"x-arr-log-id", &ids::guid(hex)),
        Err(_) => field(w, b"x-arr-log-id", &request_id),
    }
    if new_trace || span.is_some() {
        field(w, b"traceparent", &tp.to_bytes());
    }
    field(w, b"via", b"1.1 sitecar");
    w.extend_from_slice(b"\r\n");
    Ids { request_id, trace_id: tp.trace_id, span }
}

#[inline]
fn field(w: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    w.extend_from_slice(name);
    w.push(b':');
    w.push(b' ');
    w.extend_from_slice(value);
    w.push(b'\r');
    w.push(b'\n');
}

/// The field names a head's `Connection` fields list besides `close` and `keep-alive` (RFC 9110
/// §7.6.1): hop-by-hop too. Usually none, and nothing allocated.
fn connection_listed<'a>(fields: &[(std::ops::Range<usize>, std::ops::Range<usize>)], bytes: &'a [u8]) -> Vec<&'a [u8]> {
    let mut listed = Vec::new();
    for (n, v) in fields {
        if !bytes[n.clone()].eq_ignore_ascii_case(b"connection") {
            continue;
        }
        let value = &bytes[v.clone()];
        if value.eq_ignore_ascii_case(b"keep-alive") || value.eq_ignore_ascii_case(b"close") {
            continue;
        }
        for token in bytes[v.clone()].split(|c| *c == b',').map(<[u8]>::trim_ascii) {
            if !token.is_empty() && !token.eq_ignore_ascii_case(b"close") && !token.eq_ignore_ascii_case(b"keep-alive") {
                listed.push(token);
            }
        }
    }
    listed
}

/// Why the exchange with main ended before an answer.
enum Failed {
    /// Nothing of an answer arrived: the general path may try again.
    Again(crate::origin::SecondTry),
    /// The edge answers with this error.
    Answer(ProxyError),
    /// The client left before main answered.
    Gone,
}

/// Forwards the request whose head is `bytes` to main and relays main's answer.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward<IO>(
    io: &mut IO,
    buf: &mut bytes::BytesMut,
    out: &mut Vec<u8>,
    clock: &mut Clock,
    head: &RequestHead,
    bytes: &Bytes,
    edge: &EdgeService,
    peer: &Peer,
    close: bool,
    watch: usize,
) -> Outcome
where
    IO: AsyncRead + AsyncWrite + crate::io::ReadReady + Unpin + Send,
{
    let start = Instant::now();
    let (config, origin, recorder) = edge.direct_view();
    if let Some(m) = &recorder.metrics {
        m.active.inc();
    }
    let mut w = Vec::new();
    let ids = rewrite(&mut w, head, bytes, peer, config.forwarding);
    let head_request = head.method == Method::HEAD;
    // Main's answer is timed from the start (the rewrite takes a microsecond or two).
    let timeout = origin.request_timeout();
    let deadline = tokio::time::Instant::from_std(start) + timeout;
    let exchanged = match clock.within(deadline, send(origin.upstream(), &w)).await {
        Ok(Ok(conn)) => answer(conn, head_request, io, buf, clock, (deadline, timeout), watch).await,
        Ok(Err(failed)) => Err(failed),
        Err(_) => Err(Failed::Answer(ProxyError::Timeout(timeout))),
    };
    let (mut conn, rh, head_bytes) = match exchanged {
        Ok(answer) => answer,
        Err(Failed::Again(second)) => {
            if let Some(m) = &recorder.metrics {
                m.active.dec();
            }
            return Outcome::Again(second);
        }
        Err(Failed::Gone) => {
            // nginx's 499: the client closed the connection before the answer; main's
            // connection is closed with it.
            let status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
            record(edge, head, bytes, peer, &ids, status, None, start, None);
            return Outcome::Done(false);
        }
        Err(Failed::Answer(e)) => return Outcome::Answer(failed(edge, head, bytes, peer, &ids, e, start)),
    };
    let took = start.elapsed();
    let status = StatusCode::from_u16(rh.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if matches!(rh.body, ResponseBody::Chunked | ResponseBody::UntilClose) || rh.status == 101 {
        // Framed by chunks or by the end of the connection: the general writer frames it anew.
        let response = match into_response(conn, &rh, head_bytes, origin.upstream().home()) {
            Some(mut r) if rh.status != 101 => {
                crate::headers::prepare_response(r.headers_mut(), false);
                let (parts, body) = r.into_parts();
                let mut r = Response::from_parts(parts, EdgeBody::Upstream(body));
                *r.version_mut() = Version::HTTP_11;
                if config.compression {
                    crate::compress::vary_by_encoding(&mut r);
                }
                r
            }
            _ => {
                let e = ProxyError::Upstream("main's response head cannot be read".into());
                return Outcome::Answer(failed(edge, head, bytes, peer, &ids, e, start));
            }
        };
        record(edge, head, bytes, peer, &ids, status, crate::headers::content_length(response.headers()), start, Some(took));
        return Outcome::Answer(response);
    }
    // The client's head, from main's as it is.
    let bodiless_status = matches!(rh.status, 204 | 304);
    let announced = match rh.body {
        ResponseBody::Length(n) => Some(n),
        _ => None,
    };
    out.clear();
    // Room for the head and the body that came with it: one allocation.
    out.reserve(rh.len + 128 + conn.buf.len().min(announced.unwrap_or(0) as usize).min(64 * 1024));
    let answer_len = answer_head(out, &rh, &head_bytes, status, bodiless_status, config.compression, close, head_request);
    record(edge, head, bytes, peer, &ids, status, answer_len.or(announced), start, Some(took));
    // The body: what came with the head, then the rest as it arrives.
    let mut left = announced.unwrap_or(0);
    loop {
        if left > 0 && !conn.buf.is_empty() {
            let take = (conn.buf.len() as u64).min(left) as usize;
            left -= take as u64;
            if take >= 4096 && out.len() < 4096 {
                // Large data goes out as it is, behind the head.
                let data = conn.buf.split_to(take);
                let mut pieces = bytes::Buf::chain(out.as_slice(), &data[..]);
                if io.write_all_buf(&mut pieces).await.is_err() {
                    return Outcome::Done(false);
                }
                out.clear();
                continue;
            }
            out.extend_from_slice(&conn.buf.split_to(take));
        }
        if left == 0 {
            break;
        }
        if !out.is_empty() {
            if io.write_all(out).await.is_err() {
                return Outcome::Done(false);
            }
            out.clear();
        }
        match conn.read_more(left).await {
            Ok(n) if n > 0 => {}
            // Cut short by main: the client's connection ends too, without the rest.
            _ => return Outcome::Done(false),
        }
    }
    if io.write_all(out).await.is_err() || io.flush().await.is_err() {
        return Outcome::Done(false);
    }
    out.clear();
    if rh.keep_alive && conn.reusable() {
        origin.upstream().checkin(conn);
    }
    Outcome::Done(!close)
}

/// A connection to main with the rewritten head written on it (a pooled connection main had
/// closed is replaced by another).
async fn send(upstream: &crate::upstream::Upstream, w: &[u8]) -> Result<MainConn, Failed> {
    use crate::origin::{exhausted, unreachable, SecondTry};
    loop {
        let (mut conn, pooled) = match upstream.connection().await {
            Ok(c) => c,
            Err(crate::upstream::SendError::Main(super::client::Failure::Io(e), _)) if unreachable(&e) => {
                tracing::debug!(error = %e, "main refused the connection; trying once more when main is ready");
                return Err(Failed::Again(SecondTry::Refused));
            }
            Err(crate::upstream::SendError::Main(super::client::Failure::Io(e), _)) if exhausted(&e) => {
                return Err(Failed::Answer(ProxyError::Exhausted(e)))
            }
            Err(crate::upstream::SendError::Main(super::client::Failure::Io(e), _)) => return Err(Failed::Answer(ProxyError::Refused(e))),
            Err(_) => return Err(Failed::Answer(ProxyError::ConnectTimeout(upstream.connect_timeout()))),
        };
        match conn.write_all(w).await {
            Ok(()) => return Ok(conn),
            // A pooled connection main had closed: another one.
            Err(_) if pooled && !conn.wrote_any() => continue,
            Err(_) => return Err(Failed::Again(SecondTry::Dropped)),
        }
    }
}

/// Main's answer head by `deadline` (interim responses relayed to the client as they come,
/// `100` dropped), while the client is watched: one that leaves ends the exchange.
async fn answer<IO>(
    mut conn: MainConn,
    head_request: bool,
    io: &mut IO,
    buf: &mut bytes::BytesMut,
    clock: &mut Clock,
    (deadline, timeout): (tokio::time::Instant, Duration),
    watch: usize,
) -> Result<(MainConn, ResponseHead, Bytes), Failed>
where
    IO: AsyncRead + AsyncWrite + crate::io::ReadReady + Unpin,
{
    let mut interims = 0;
    loop {
        let read = tokio::select! {
            r = clock.within(deadline, read_head(&mut conn, head_request)) => r,
            () = super::conn::client_gone(io, buf, watch) => return Err(Failed::Gone),
        };
        match read {
            Err(_) => return Err(Failed::Answer(ProxyError::Timeout(timeout))),
            Ok(Ok(rh)) if rh.is_informational() && rh.status != 101 => {
                interims += 1;
                if interims > 32 {
                    return Err(Failed::Answer(ProxyError::Upstream("too many interim responses".into())));
                }
                let hint = super::client::interim_head(&conn.buf, &rh);
                bytes::Buf::advance(&mut conn.buf, rh.len);
                // RFC 9110 §15.2: relayed (the client speaks HTTP/1.1 here).
                if rh.status != 100 && io.write_all(&hint).await.is_err() {
                    return Err(Failed::Gone);
                }
            }
            Ok(Ok(rh)) => {
                let head_bytes = conn.buf.split_to(rh.len).freeze();
                return Ok((conn, rh, head_bytes));
            }
            Ok(Err(Some(bad))) => return Err(Failed::Answer(ProxyError::Upstream(Box::new(bad)))),
            Ok(Err(None)) => {
                tracing::debug!("main dropped the connection; sending the request once more when main is ready");
                return Err(Failed::Again(crate::origin::SecondTry::Dropped));
            }
        }
    }
}

/// Writes the client's head from main's: its status line, its fields without the hop-by-hop
/// ones (and those its `Connection` names), `Content-Length` as main sent it (not for 204 and
/// 304), `Vary: Accept-Encoding` where the edge compresses for other clients, `Date` when main
/// sent none, and `Connection: close` when the connection ends. The announced length.
#[allow(clippy::too_many_arguments)]
fn answer_head(
    out: &mut Vec<u8>,
    rh: &ResponseHead,
    bytes: &[u8],
    status: StatusCode,
    bodiless_status: bool,
    compression: bool,
    close: bool,
    head_request: bool,
) -> Option<u64> {
    let at = |r: &std::ops::Range<usize>| &bytes[r.clone()];
    out.reserve(rh.len + 96);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let listed = connection_listed(&rh.fields, bytes);
    let (mut has_date, mut length, mut varies) = (false, None, false);
    let (mut content_type, mut coded): (&[u8], bool) = (b"", false);
    for (n, v) in &rh.fields {
        let (name, value) = (at(n), at(v));
        if is_hop_by_hop(name) || listed.iter().any(|l| l.eq_ignore_ascii_case(name)) {
            continue;
        }
        // (httparse has held names to tokens and values to what a header map holds.)
        if name.eq_ignore_ascii_case(b"content-length") {
            if bodiless_status {
                continue;
            }
            length = super::decimal(value.trim_ascii());
        } else if name.eq_ignore_ascii_case(b"date") {
            has_date = true;
        } else if name.eq_ignore_ascii_case(b"content-type") {
            content_type = value;
        } else if name.eq_ignore_ascii_case(b"content-encoding") || name.eq_ignore_ascii_case(b"content-range") {
            coded = true;
        } else if name.eq_ignore_ascii_case(b"vary") {
            varies |= value.split(|c| *c == b',').map(<[u8]>::trim_ascii).any(|t| t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding"));
        }
        field(out, name, value);
    }
    // As `compress::vary_by_encoding` decides: by the body's size (none after HEAD).
    let size = if head_request { Some(0) } else { length };
    if compression && !varies && !coded && !bodiless_status && rh.status != 101 && size.is_none_or(|n| n >= 256) {
        let starts = |prefix: &[u8]| content_type.len() >= prefix.len() && content_type[..prefix.len()].eq_ignore_ascii_case(prefix);
        let image = starts(b"image/") && !starts(b"image/svg+xml");
        if !(image || starts(b"application/grpc") || starts(b"text/event-stream") || starts(b"application/octet-stream")) {
            field(out, b"vary", b"accept-encoding");
        }
    }
    if !has_date {
        field(out, b"date", &date());
    }
    if close {
        field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    length
}

/// The edge's error answer for a request on the direct path, recorded.
fn failed(
    edge: &EdgeService,
    head: &RequestHead,
    bytes: &[u8],
    peer: &Peer,
    ids: &Ids,
    e: ProxyError,
    start: Instant,
) -> Response<EdgeBody> {
    let (_, _, recorder) = edge.direct_view();
    let request_id = String::from_utf8_lossy(&ids.request_id);
    tracing::debug!(request_id = %request_id, error = %e, "request failed");
    if let Some(m) = &recorder.metrics {
        let target = &bytes[head.target.clone()];
        let path = target.split(|c| *c == b'?').next().unwrap_or_default();
        m.error(&e, &request_id, std::str::from_utf8(&ids.trace_id).unwrap_or("-"), &String::from_utf8_lossy(path));
    }
    let response = e.response(&request_id);
    record(edge, head, bytes, peer, ids, response.status(), crate::headers::content_length(response.headers()), start, None);
    response
}

/// The request's metrics and access-log line, as `record.rs` writes them on the general path.
#[allow(clippy::too_many_arguments)]
fn record(
    edge: &EdgeService,
    head: &RequestHead,
    bytes: &[u8],
    peer: &Peer,
    ids: &Ids,
    status: StatusCode,
    response_bytes: Option<u64>,
    start: Instant,
    upstream: Option<Duration>,
) {
    let (_, _, recorder) = edge.direct_view();
    let at = |r: &std::ops::Range<usize>| &bytes[r.clone()];
    // As `HeaderValue::to_str`: visible ASCII only.
    let text = |name: &[u8]| {
        let (_, v) = head.fields.iter().find(|(n, _)| at(n).eq_ignore_ascii_case(name))?;
        let v = at(v);
        v.iter().all(|c| *c == b'\t' || (b' '..=b'~').contains(c)).then(|| String::from_utf8_lossy(v).into_owned())
    };
    if let Some(m) = &recorder.metrics {
        m.active.dec();
        let request_bytes = head
            .fields
            .iter()
            .find(|(n, _)| at(n).eq_ignore_ascii_case(b"content-length"))
            .and_then(|(_, v)| super::decimal(at(v).trim_ascii()));
        m.observe(&head.method, status, start.elapsed(), request_bytes, response_bytes);
    }
    let Some(access) = &recorder.access else { return };
    access.log(crate::access::Record {
        at: SystemTime::now(),
        client: peer.client.ip(),
        method: head.method.clone(),
        target: String::from_utf8_lossy(at(&head.target)).into_owned(),
        version: Version::HTTP_11,
        scheme: if peer.https { "https" } else { "http" },
        host: ids.span.and_then(|_| text(b"host")),
        status: status.as_u16(),
        bytes: response_bytes,
        duration: start.elapsed(),
        upstream,
        request_id: String::from_utf8_lossy(&ids.request_id).into_owned(),
        trace_id: String::from_utf8_lossy(&ids.trace_id).into_owned(),
        span: ids.span,
        user_agent: text(b"user-agent"),
        referer: text(b"referer"),
    });
}
