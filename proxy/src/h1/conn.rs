//! A client's HTTP/1.x connection (plain or TLS) served by sitecar's codec, the default engine:
//! one task reads each request head into the connection's buffer and sends a plain request by
//! the direct path (`direct.rs`); any other it hands to the edge, feeding the request body to it
//! from the same task while the answer is prepared, and writes the answer's head in one pass and
//! its body (by length, chunked, or until close for HTTP/1.0). Main's 103/102 are relayed to
//! HTTP/1.1 clients; a client that leaves before its answer takes the request with it. An idle
//! connection holds no buffer and its task only what waiting for the next head takes. A
//! WebSocket upgrade is handed to hyper with the bytes read so far, as is nothing else.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::direct::Outcome;
use super::write::{chunk_size, last_chunk, response_head, Framing};
use super::{parse_request, BodyKind, ChunkedDecoder, Interim, Limits, Reject, RequestHead};
use crate::body::{BoxError, RequestBody};
use crate::edge::{EdgeService, Step};
use crate::headers::Peer;
use crate::io::ReadReady;

/// What the connection loop needs of the server's limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub head: Limits,
    /// For a request head, and for the next one on an idle keep-alive connection.
    pub header_timeout: Duration,
}

/// How a connection ended: closed here, or to be served by hyper from the bytes read so far (a
/// WebSocket upgrade).
pub enum Ended<IO> {
    Closed,
    Upgrade(IO, Bytes),
}

/// Serves requests on `io` until the client or the server ends the connection.
pub async fn serve<IO>(mut io: IO, edge: Arc<EdgeService>, peer: Arc<Peer>, limits: ConnLimits, shutdown: CancellationToken) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + ReadReady + Unpin + Send,
{
    let mut buf = BytesMut::new();
    let mut out: Vec<u8> = Vec::new();
    // Main's interim responses (103, 102) for this connection's HTTP/1.1 requests; made with the
    // first of them.
    let mut interim: Option<Interim> = None;
    // One timer and one wait for the server's shutdown for every wait on this connection.
    let mut clock = Clock::new(limits.header_timeout.min(edge.direct_view().1.request_timeout()));
    let mut cancelled = std::pin::pin!(shutdown.cancelled());
    loop {
        // The head: parsed from what has arrived, read for until complete, all of it within the
        // head's bound (a client sending a byte at a time gets no more time than one at once).
        let deadline = tokio::time::Instant::now() + limits.header_timeout;
        let head = loop {
            if !buf.is_empty() {
                match parse_request(&buf, &limits.head) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(reject) => {
                        refuse(&mut io, &reject).await;
                        return Ended::Closed;
                    }
                }
            }
            if buf.is_empty() {
                // Idle: the buffer is taken once the client sends something.
                let ready = tokio::select! {
                    _ = &mut cancelled => return Ended::Closed,
                    r = clock.within(deadline, std::future::poll_fn(|cx| io.poll_read_ready(cx))) => r,
                };
                if !matches!(ready, Ok(Ok(()))) {
                    return Ended::Closed;
                }
            }
            if buf.capacity() == 0 {
                buf = buffers::take();
            } else if buf.capacity() - buf.len() < 1024 {
                buf.reserve(buffers::SIZE);
            }
            let read = clock.within(deadline, io.read_buf(&mut buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Ended::Closed,
            }
        };
        if is_websocket(&buf, &head) {
            return Ended::Upgrade(io, buf.freeze());
        }
        // The exchange's state is boxed: an idle connection's task keeps only what waiting for
        // the next head takes.
        let next = Box::pin(respond(&mut io, &mut buf, &mut out, &mut interim, &mut clock, head, &edge, &peer, &limits, &shutdown)).await;
        if next == Next::Closed {
            return Ended::Closed;
        }
        if buf.is_empty() {
            // An idle connection keeps no buffer.
            buffers::give_back(std::mem::take(&mut buf));
            out = Vec::new();
        }
    }
}

/// What comes after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Closed,
}

/// One exchange on the connection: the request whose head was read handed to the edge, its body
/// fed in, the answer written.
#[allow(clippy::too_many_arguments)]
async fn respond<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    interim: &mut Option<Interim>,
    clock: &mut Clock,
    head: RequestHead,
    edge: &Arc<EdgeService>,
    peer: &Arc<Peer>,
    limits: &ConnLimits,
    shutdown: &CancellationToken,
) -> Next
where
    IO: AsyncRead + AsyncWrite + ReadReady + Unpin + Send,
{
    let head_bytes = buf.split_to(head.len).freeze();
    let mut second_try = None;
    if super::direct::eligible(edge, &head, &head_bytes) {
        let close = !head.keep_alive || shutdown.is_cancelled();
        match super::direct::forward(io, buf, out, clock, &head, &head_bytes, edge, peer, close, limits.head.max_head_bytes).await {
            Outcome::Done(true) => return Next::KeepAlive,
            Outcome::Done(false) => {
                let _ = io.shutdown().await;
                return Next::Closed;
            }
            Outcome::Answer(response) => {
                let is_head = head.method == Method::HEAD;
                return Box::pin(async move {
                    let mut pump = Pump::new(BodyKind::None, limits);
                    write_answer(io, buf, out, interim, response, &mut pump, is_head, false, head.keep_alive, shutdown).await
                })
                .await;
            }
            // Main dropped it on the direct path: the general path's second try.
            Outcome::Again(second) => second_try = Some(second),
        }
    }
    // The general path's state in a box of its own: the direct path's exchange, boxed per
    // request by the caller, is then only as large as the direct path needs.
    Box::pin(general(io, buf, out, interim, head, head_bytes, second_try, edge, peer, limits, shutdown)).await
}

/// A request through the edge: its head as request parts, its body fed in from the connection
/// while the edge prepares the answer, the answer written.
#[allow(clippy::too_many_arguments)]
async fn general<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    interim: &mut Option<Interim>,
    head: RequestHead,
    head_bytes: Bytes,
    second_try: Option<crate::origin::SecondTry>,
    edge: &Arc<EdgeService>,
    peer: &Arc<Peer>,
    limits: &ConnLimits,
    shutdown: &CancellationToken,
) -> Next
where
    IO: AsyncRead + AsyncWrite + ReadReady + Unpin + Send,
{
    let Some(mut parts) = request_parts(&head, &head_bytes) else {
        refuse(io, head.refused.as_ref().unwrap_or(&Reject { status: StatusCode::BAD_REQUEST, reason: "malformed request head" })).await;
        return Next::Closed;
    };
    let is_head = parts.method == Method::HEAD;
    let http10 = head.minor == 0;
    let mut pump = Pump::new(head.body, limits);
    let body = match pump.receiver.take() {
        Some(rx) => RequestBody::other(Channel(rx)),
        None => RequestBody::other(http_body_util::Empty::<Bytes>::new()),
    };
    if head.expects_continue && head.body != BodyKind::None && io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
        return Next::Closed;
    }
    if let Some(second) = second_try {
        parts.extensions.insert(second);
    }
    let request = Request::from_parts(parts, body);
    // A head the codec refused goes through the edge's own checks, which answer, log and count
    // it; any other passed the same rules in the codec.
    let begun = if head.refused.is_some() { edge.begin(request, peer) } else { edge.begin_checked(request, peer) };
    let answer = match begun {
        Step::Answered(r) => futures_util::future::Either::Left(std::future::ready(r)),
        // The edge refuses what the codec marked (answered, logged and counted there); were it
        // ever to take such a request on, it is refused here and goes no further.
        Step::Route(_) if head.refused.is_some() => {
            if let Some(reject) = &head.refused {
                refuse(io, reject).await;
            }
            return Next::Closed;
        }
        // Boxed: held inline, the request path's future would make every connection's task,
        // idle ones too, as large as itself.
        Step::Route(mut pending) => {
            if head.minor == 1 {
                // RFC 9110 §15.2: a proxy forwards 1xx responses, except to an HTTP/1.0 client
                // (only to requests going on: a fresh cache hit has none).
                pending.insert_extension(interim.get_or_insert_with(Interim::default).clone());
            }
            futures_util::future::Either::Right(Box::pin(edge.clone().complete(pending, peer.clone())))
        }
    };
    tokio::pin!(answer);
    // The request body goes in while the answer is prepared (main may answer early).
    let response = loop {
        if pump.done() {
            // Nothing more to read of the request: the client is watched instead, and one that
            // leaves takes the request with it (main's connection is closed), as nginx and hyper
            // do.
            tokio::select! {
                biased;
                r = &mut answer => break r,
                hints = next_interim(interim) => for hint in hints {
                    if io.write_all(&hint).await.is_err() {
                        return Next::Closed;
                    }
                },
                () = client_gone(io, buf, limits.head.max_head_bytes) => return Next::Closed,
            }
        } else {
            tokio::select! {
                biased;
                r = &mut answer => break r,
                hints = next_interim(interim) => for hint in hints {
                    if io.write_all(&hint).await.is_err() {
                        return Next::Closed;
                    }
                },
                more = pump.step(io, buf), if !pump.done() => if !more { pump.stop() },
            }
        }
    };
    write_answer(io, buf, out, interim, response, &mut pump, is_head, http10, head.keep_alive, shutdown).await
}

/// Writes an answer: its head in one pass, then its body by length, in chunks (with trailers)
/// or until close for HTTP/1.0, the request body still fed to the edge meanwhile.
#[allow(clippy::too_many_arguments)]
async fn write_answer<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    interim: &Option<Interim>,
    response: Response<crate::response::EdgeBody>,
    pump: &mut Pump,
    is_head: bool,
    http10: bool,
    keep_alive: bool,
    shutdown: &CancellationToken,
) -> Next
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut parts, mut body) = response.into_parts();
    let said_close = parts.headers.remove(header::CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let bodiless =
        is_head || parts.status.is_informational() || parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED;
    let announced = crate::headers::content_length(&parts.headers);
    let framing = if bodiless {
        Framing::None
    } else if let Some(n) = announced.or(body.size_hint().exact()) {
        Framing::Length(n)
    } else if http10 {
        Framing::None
    } else {
        Framing::Chunked
    };
    if bodiless && !is_head {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    // HTTP/1.0 closes after each answer (its body, without a length, ends with the connection).
    let close = !keep_alive || http10 || said_close || shutdown.is_cancelled();
    out.clear();
    // Interim responses that came with the final one go before it.
    for hint in interim.as_ref().map(Interim::take).unwrap_or_default() {
        out.extend_from_slice(&hint);
    }
    response_head(out, parts.status, &parts.headers, framing, &super::write::date(), close);
    let mut trailers: Option<HeaderMap> = None;
    if !bodiless {
        loop {
            let frame = tokio::select! {
                biased;
                f = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)) => f,
                more = pump.step(io, buf), if !pump.done() => { if !more { pump.stop() } continue }
            };
            match frame {
                None => break,
                Some(Err(_)) => return Next::Closed,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        let chunked = framing == Framing::Chunked;
                        if chunked {
                            chunk_size(out, data.len());
                        }
                        let tail: &[u8] = if chunked { b"\r\n" } else { b"" };
                        if data.len() >= 4096 {
                            // Large data goes out as it is, behind what is pending (one
                            // vectored write, no copy).
                            let mut pieces = Buf::chain(Buf::chain(out.as_slice(), &data[..]), tail);
                            if io.write_all_buf(&mut pieces).await.is_err() {
                                return Next::Closed;
                            }
                            out.clear();
                        } else {
                            out.extend_from_slice(&data);
                            out.extend_from_slice(tail);
                            if out.len() >= 16 * 1024 {
                                if io.write_all(out).await.is_err() {
                                    return Next::Closed;
                                }
                                out.clear();
                            }
                        }
                    }
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
            }
        }
        if framing == Framing::Chunked {
            last_chunk(out, trailers.as_ref());
        }
    }
    if io.write_all(out).await.is_err() || io.flush().await.is_err() {
        return Next::Closed;
    }
    out.clear();
    if close || !pump.finished {
        let _ = io.shutdown().await;
        return Next::Closed;
    }
    Next::KeepAlive
}

/// Completes when the client has closed the connection (or it failed) while a request waits for
/// its answer. What it sends meanwhile (a pipelined request) is kept in `buf`, up to `limit`
/// bytes; past that the client is no longer watched. Cancel-safe.
pub(super) async fn client_gone<IO: AsyncRead + Unpin>(io: &mut IO, buf: &mut BytesMut, limit: usize) {
    // Read into the stack: no buffer is taken unless the client sends something.
    let mut probe = [0u8; 256];
    loop {
        if buf.len() >= limit {
            return std::future::pending().await;
        }
        match io.read(&mut probe).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&probe[..n]),
        }
    }
}

/// Main's next interim response for this connection, when it has a sink for them.
async fn next_interim(interim: &Option<Interim>) -> Vec<Bytes> {
    match interim {
        Some(sink) => std::future::poll_fn(|cx| sink.poll_take(cx)).await,
        None => std::future::pending().await,
    }
}

/// A refused head: its status, the reason, and the connection closed.
async fn refuse<IO: AsyncWrite + Unpin>(io: &mut IO, reject: &Reject) {
    let body = format!("{} {}: {}\n", reject.status.as_u16(), reject.status.canonical_reason().unwrap_or(""), reject.reason);
    let mut out = Vec::with_capacity(128 + body.len());
    let mut fields = HeaderMap::new();
    fields.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if reject.status == StatusCode::METHOD_NOT_ALLOWED {
        fields.insert(header::ALLOW, HeaderValue::from_static(crate::error::FORWARDED_METHODS));
    }
    response_head(&mut out, reject.status, &fields, Framing::Length(body.len() as u64), &super::write::date(), true);
    out.extend_from_slice(body.as_bytes());
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

fn is_websocket(buf: &[u8], head: &RequestHead) -> bool {
    head.minor == 1
        && head
            .fields
            .iter()
            .any(|(n, v)| head.at(buf, n).eq_ignore_ascii_case(b"upgrade") && head.at(buf, v).eq_ignore_ascii_case(b"websocket"))
}

/// The request as the edge takes it, its fields sharing the head's bytes.
fn request_parts(head: &RequestHead, bytes: &Bytes) -> Option<http::request::Parts> {
    let uri = Uri::from_maybe_shared(bytes.slice(head.target.clone())).ok()?;
    let mut request = Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = if head.minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let fields = request.headers_mut();
    fields.reserve(head.fields.len() + 12);
    for (n, v) in &head.fields {
        let name = HeaderName::from_bytes(bytes.get(n.clone())?).ok()?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(v.clone())).ok()?;
        fields.append(name, value);
    }
    Some(request.into_parts().0)
}

type Chunk = Result<Frame<Bytes>, BoxError>;

/// The request body as it arrives, framed by length or chunked, into the edge's body.
struct Pump {
    kind: BodyKind,
    left: u64,
    chunked: ChunkedDecoder,
    tx: Option<mpsc::Sender<Chunk>>,
    receiver: Option<mpsc::Receiver<Chunk>>,
    /// Read to its end: the connection may carry another request.
    finished: bool,
}

impl Pump {
    fn new(kind: BodyKind, limits: &ConnLimits) -> Self {
        let (tx, rx) = match kind {
            BodyKind::None => (None, None),
            _ => {
                let (tx, rx) = mpsc::channel(2);
                (Some(tx), Some(rx))
            }
        };
        let left = if let BodyKind::Length(n) = kind { n } else { 0 };
        Self { kind, left, chunked: ChunkedDecoder::new(limits.head.max_head_bytes), tx, receiver: rx, finished: kind == BodyKind::None }
    }

    /// Nothing more to move: read to its end, or given up.
    fn done(&self) -> bool {
        self.tx.is_none()
    }

    /// Gives up on the rest of the body (the edge has the error, or did not want it).
    fn stop(&mut self) {
        self.tx = None;
    }

    fn finish(&mut self) {
        self.finished = true;
        self.tx = None;
    }

    /// Moves one piece of the body to the edge, reading when none has arrived. `false` when the
    /// body cannot be finished. Cancel-safe: bytes leave the buffer only once the edge has room
    /// for them.
    async fn step<IO: AsyncRead + Unpin>(&mut self, io: &mut IO, buf: &mut BytesMut) -> bool {
        let Some(tx) = self.tx.clone() else { return false };
        let Ok(permit) = tx.reserve_owned().await else {
            // The edge dropped the body (it answered without it): the rest is not read.
            return false;
        };
        loop {
            match self.kind {
                BodyKind::None => {
                    self.finish();
                    return true;
                }
                BodyKind::Length(_) => {
                    if self.left == 0 {
                        self.finish();
                        return true;
                    }
                    if buf.is_empty() {
                        if !read_more(io, buf).await {
                            permit.send(Err("the client closed the connection inside the body".into()));
                            return false;
                        }
                        continue;
                    }
                    let take = (buf.len() as u64).min(self.left) as usize;
                    self.left -= take as u64;
                    permit.send(Ok(Frame::data(buf.split_to(take).freeze())));
                    if self.left == 0 {
                        self.finish();
                    }
                    return true;
                }
                BodyKind::Chunked => {
                    let step = match self.chunked.step(buf) {
                        Ok(step) => step,
                        Err(e) => {
                            permit.send(Err(Box::new(e)));
                            return false;
                        }
                    };
                    let taken = buf.split_to(step.consumed).freeze();
                    if let Some(r) = step.data.filter(|r| !r.is_empty()) {
                        permit.send(Ok(Frame::data(taken.slice(r))));
                        if self.chunked.is_done() {
                            self.finish();
                        }
                        return true;
                    }
                    if self.chunked.is_done() {
                        self.finish();
                        return true;
                    }
                    if step.consumed == 0 && !read_more(io, buf).await {
                        permit.send(Err("the client closed the connection inside the body".into()));
                        return false;
                    }
                }
            }
        }
    }
}

async fn read_more<IO: AsyncRead + Unpin>(io: &mut IO, buf: &mut BytesMut) -> bool {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(16 * 1024);
    }
    matches!(io.read_buf(buf).await, Ok(n) if n > 0)
}

/// The edge's view of the body: frames as the connection loop sends them.
struct Channel(mpsc::Receiver<Chunk>);

impl Body for Channel {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Chunk>> {
        self.get_mut().0.poll_recv(cx)
    }
}

/// Read buffers for client connections, kept per thread while their connections are idle: a
/// connection takes one when its client sends and gives it back once the exchange is over
/// and nothing more has arrived. Without them every request on a keep-alive connection
/// allocated and freed a buffer, and with many connections in turn the allocator's per-thread
/// cache ran dry (about 1,400 instructions a request at 64 connections against a handful at 8).
mod buffers {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// What a connection reads into.
    pub(super) const SIZE: usize = 4096;
    /// Buffers kept per thread: as many as connections can be mid-exchange at a time without
    /// going to the allocator; beyond that they are freed (at most 1 MiB held).
    const KEPT: usize = 256;

    thread_local! {
        static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn take() -> BytesMut {
        FREE.with(|f| f.borrow_mut().pop()).unwrap_or_else(|| BytesMut::with_capacity(SIZE))
    }

    /// `buf`, emptied, for the next connection that reads; freed when it cannot be had whole
    /// again without allocating (still shared with a head in use), when it grew, or when
    /// enough are kept.
    pub(super) fn give_back(mut buf: BytesMut) {
        buf.clear();
        // (One that grew for a large head is not kept.)
        if !buf.try_reclaim(SIZE) || buf.capacity() > 2 * SIZE {
            return;
        }
        FREE.with(|f| {
            let mut free = f.borrow_mut();
            if free.len() < KEPT {
                free.push(buf);
            }
        });
    }
}
