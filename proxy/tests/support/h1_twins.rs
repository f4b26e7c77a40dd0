//! Both sides of the HTTP/1.1 comparison between sitecar's codec and hyper: what each makes of a
//! client's request and of main's response, on in-memory connections. Shared by
//! `tests/h1_codec.rs` (fixed inputs and deterministic mutations) and the `h1` fuzz target
//! (`make fuzz`: random inputs), which include it by path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sitecar_proxy::h1::{parse_request, parse_response, BodyKind, ChunkedDecoder, Limits, ResponseBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const LIMITS: Limits = Limits { max_head_bytes: 64 * 1024, max_headers: 100 };

/// How long hyper gets to finish with one input (its connection is closed by then; a longer
/// wait means it is waiting for bytes that will not come).
const PATIENCE: Duration = Duration::from_secs(2);

/// What a parser made of the first request of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub http10: bool,
    /// Lower-case names, sorted with their values (hyper's map groups repeated names).
    pub fields: Vec<(String, Vec<u8>)>,
    /// `None` when the body did not arrive whole (or broke its framing).
    pub body: Option<Vec<u8>>,
}

pub fn sorted(mut fields: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    fields.sort();
    fields
}

/// A whole chunked body decoded from `rest`, or `None` when it breaks off or breaks the coding.
pub fn dechunk(rest: &[u8]) -> Option<Vec<u8>> {
    let mut d = ChunkedDecoder::new(LIMITS.max_head_bytes);
    let (mut at, mut body) = (0, Vec::new());
    loop {
        let step = d.step(&rest[at..]).ok()?;
        if let Some(r) = &step.data {
            body.extend_from_slice(&rest[at..][r.clone()]);
        }
        at += step.consumed;
        if d.is_done() {
            return Some(body);
        }
        if step.consumed == 0 && step.data.is_none() {
            return None;
        }
    }
}

pub fn ours(input: &[u8]) -> Option<Seen> {
    // A head the edge is to refuse (Host, CONNECT, codings) counts as refused here.
    let head = parse_request(input, &LIMITS).ok()?.filter(|h| h.refused.is_none())?;
    let rest = &input[head.len..];
    let body = match head.body {
        BodyKind::None => Some(Vec::new()),
        BodyKind::Length(n) => rest.get(..n as usize).map(<[u8]>::to_vec),
        BodyKind::Chunked => dechunk(rest),
    };
    let fields = head
        .fields
        .iter()
        .map(|(n, v)| (String::from_utf8_lossy(head.at(input, n)).to_ascii_lowercase(), head.at(input, v).to_vec()))
        .collect();
    Some(Seen {
        method: head.method.to_string(),
        // As http::Uri reads it (hyper shows `http://a?q` as `http://a/?q`): the same request.
        target: http::Uri::try_from(head.at(input, &head.target))
            .map(|u| u.to_string())
            .unwrap_or_else(|_| String::from_utf8_lossy(head.at(input, &head.target)).into_owned()),
        http10: head.minor == 0,
        fields: sorted(fields),
        body,
    })
}

/// hyper's server on an in-memory connection: the first request its service was called with.
pub async fn hypers(input: &[u8]) -> Option<Seen> {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let record = seen.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.ok().map(|b| b.to_bytes().to_vec());
            let fields = parts.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect();
            let mut slot = record.lock().unwrap();
            if slot.is_none() {
                *slot = Some(Seen {
                    method: parts.method.to_string(),
                    target: parts.uri.to_string(),
                    http10: parts.version == http::Version::HTTP_10,
                    fields: sorted(fields),
                    body,
                });
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(Bytes::new())))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .half_close(true)
        .max_buf_size(LIMITS.max_head_bytes.max(8192))
        .serve_connection(TokioIo::new(server), service);
    let serving = tokio::spawn(async move {
        let _ = conn.await;
    });
    let _ = client.write_all(input).await;
    let _ = client.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, client.read_to_end(&mut sink)).await;
    serving.abort();
    let out = seen.lock().unwrap().clone();
    out
}

/// What a client made of main's response: status, HTTP/1.0 or not, fields, whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub http10: bool,
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

/// The codec on main's bytes: interim (1xx) heads skipped, then the final one and its body.
pub fn our_answer(input: &[u8], head_request: bool) -> Option<Answer> {
    let mut at = 0;
    loop {
        let head = parse_response(&input[at..], head_request, LIMITS.max_head_bytes, LIMITS.max_headers).ok()??;
        let buf = &input[at..];
        if head.is_informational() {
            if head.status == 101 {
                return None;
            }
            at += head.len;
            continue;
        }
        let rest = &buf[head.len..];
        let body = match head.body {
            ResponseBody::Empty => Some(Vec::new()),
            ResponseBody::Length(n) => rest.get(..n as usize).map(<[u8]>::to_vec),
            ResponseBody::Chunked => dechunk(rest),
            ResponseBody::UntilClose => Some(rest.to_vec()),
        };
        let fields = head
            .fields
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(&buf[n.clone()]).to_ascii_lowercase(), buf[v.clone()].to_vec()))
            .collect();
        return Some(Answer { status: head.status, http10: head.minor == 0, fields: sorted(fields), body });
    }
}

/// hyper's client on an in-memory connection to a main that answers with `input` and closes.
pub async fn hypers_answer(input: &[u8], head_request: bool) -> Option<Answer> {
    let (client, mut main) = tokio::io::duplex(256 * 1024);
    let input = input.to_vec();
    let main_side = tokio::spawn(async move {
        let mut request = vec![0u8; 4096];
        let _ = main.read(&mut request).await;
        let _ = main.write_all(&input).await;
        let _ = main.shutdown().await;
        // Hold the connection until the client is done reading.
        let mut rest = Vec::new();
        let _ = main.read_to_end(&mut rest).await;
    });
    let (mut tx, conn) =
        hyper::client::conn::http1::Builder::new().handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(client)).await.ok()?;
    let driving = tokio::spawn(async move {
        let _ = conn.await;
    });
    let method = if head_request { http::Method::HEAD } else { http::Method::GET };
    let request = http::Request::builder().method(method).uri("/").header("host", "main").body(http_body_util::Empty::new()).ok()?;
    let answer = tokio::time::timeout(PATIENCE, async {
        let resp = tx.send_request(request).await.ok()?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.ok().map(|b| b.to_bytes().to_vec());
        let fields = parts.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect();
        Some(Answer { status: parts.status.as_u16(), http10: parts.version == http::Version::HTTP_10, fields: sorted(fields), body })
    })
    .await
    .ok()
    .flatten();
    driving.abort();
    main_side.abort();
    answer
}
