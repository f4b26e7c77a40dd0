//! The client side to main on sitecar's codec: a request head written once into the
//! connection's write buffer, the request body framed by length or chunked as it arrives, main's
//! response head parsed by `httparse` in the connection's read buffer, and its body framed by
//! length, chunked or until close, read by whoever reads the response body (the client
//! connection's own task: no task of its own per connection, no channel between tasks).
//!
//! While main's response head is awaited, the request body keeps going out (main may answer
//! early); a response that starts before the request body ends carries the rest of it, which is
//! sent as the response is read. 1xx interim responses: `100 Continue` is dropped (the front
//! door answers `Expect` itself), `101` ends the exchange as a tunnel, and any other (`103 Early
//! Hints`, `102`) is handed to the client connection's [`Interim`] when it has one.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::write::{chunk_size, last_chunk, request_head, Framing};
use super::{parse_response, BadResponse, ChunkError, ChunkedDecoder, ResponseBody, ResponseHead};
use crate::body::{BodyError, BoxError, UpstreamBody};
use crate::io::MainIo;

/// Largest response head main may send (hyper's client allowed its whole read buffer).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most fields in main's response head (hyper's client default).
const MAX_FIELDS: usize = 100;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// The most of main's body read ahead of the client.
const WINDOW: usize = 64 * 1024;
/// Interim responses main may send before its final one.
const MAX_INTERIM: usize = 32;
/// Request body data this large goes out as it is, behind its chunk size (no copy).
const VECTORED: usize = 4096;

/// Where a client connection takes main's interim responses (`103 Early Hints`, `102`), each a
/// whole head ready to write. Bounded: a main sending many loses the excess, never memory. (A
/// slot and a waker: a few dozen bytes that an idle connection keeps.)
#[derive(Debug, Clone, Default)]
pub struct Interim(Arc<InterimSlot>);

#[derive(Debug, Default)]
struct InterimSlot {
    heads: std::sync::Mutex<Vec<Bytes>>,
    waker: futures_util::task::AtomicWaker,
}

/// Interim responses held for the client at most.
const INTERIM_HELD: usize = 8;

impl Interim {
    fn put(&self, head: Bytes) {
        if let Ok(mut heads) = self.0.heads.lock() {
            if heads.len() < INTERIM_HELD {
                heads.push(head);
            }
        }
        self.0.waker.wake();
    }

    /// The interim responses that have arrived, in order (none: waits).
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Vec<Bytes>> {
        self.0.waker.register(cx.waker());
        match self.take() {
            heads if heads.is_empty() => Poll::Pending,
            heads => Poll::Ready(heads),
        }
    }

    /// The interim responses that have arrived, without waiting.
    pub fn take(&self) -> Vec<Bytes> {
        self.0.heads.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default()
    }
}

/// A connection to main: its socket and its read buffer.
#[derive(Debug)]
pub(crate) struct MainConn {
    io: MainIo,
    broken: Arc<AtomicBool>,
    pub(super) buf: BytesMut,
    /// Bytes of the current request went out on it.
    wrote: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Main closed or reset the connection before a whole response head.
    Closed(Option<io::Error>),
    Io(io::Error),
    Bad(BadResponse),
    /// The client's request body failed (its limits, or the client).
    Body(BodyError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Closed(None) => f.write_str("main closed the connection before answering"),
            Failure::Closed(Some(e)) => write!(f, "main closed the connection before answering: {e}"),
            Failure::Io(e) => write!(f, "connection to main: {e}"),
            Failure::Bad(b) => b.fmt(f),
            Failure::Body(b) => b.fmt(f),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Closed(Some(e)) | Failure::Io(e) => Some(e),
            Failure::Body(b) => Some(b),
            _ => None,
        }
    }
}

/// A failed exchange, with the request back when its body was not read: it may go out again on
/// another connection when nothing of it was `written`, or be retried by the caller when it had
/// no body (idempotent methods, RFC 9110 §9.2.2).
pub(crate) struct Failed {
    pub failure: Failure,
    pub request: Option<Box<Request<UpstreamBody>>>,
    pub written: bool,
}

impl MainConn {
    pub fn new(stream: TcpStream) -> Self {
        let broken = Arc::new(AtomicBool::new(false));
        Self { io: MainIo::new(stream, broken.clone()), broken, buf: BytesMut::new(), wrote: false }
    }

    /// Writes all of `w`, noting whether any of it went out.
    pub(super) async fn write_all(&mut self, mut w: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.wrote = false;
        while !w.is_empty() {
            match self.io.write(w).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    self.wrote = true;
                    w = &w[n..];
                }
            }
        }
        Ok(())
    }

    /// Some of the request went out.
    pub(super) fn wrote_any(&self) -> bool {
        self.wrote
    }

    /// Reads more of main's bytes into the buffer, with room for up to `want` of them (at most
    /// the 64 KiB window): a large body goes in a few large reads.
    pub(super) async fn read_more(&mut self, want: u64) -> io::Result<usize> {
        let room = want.clamp(READ_CHUNK as u64, WINDOW as u64) as usize;
        if self.buf.capacity() - self.buf.len() < room.min(READ_CHUNK) {
            self.buf.reserve(room);
        }
        std::future::poll_fn(|cx| self.poll_read_more(cx)).await
    }

    /// Nothing unread on it and nothing failed: it may carry another request.
    pub(super) fn reusable(&self) -> bool {
        self.buf.is_empty() && !self.broken.load(Ordering::Relaxed)
    }

    /// Main closed it, sent something unasked, or it failed under a request body: not to be
    /// used again. Costs no system call while nothing has arrived.
    pub fn is_closed(&self) -> bool {
        if self.broken.load(Ordering::Relaxed) || !self.buf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.io.tcp().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// The connection as a byte stream for a tunnel, what main sent past its 101 read first.
    pub fn into_tunnel(self) -> crate::io::Rewind<MainIo> {
        crate::io::Rewind::new(self.buf.freeze(), self.io)
    }
}

/// Sends `req` on `conn` (its URI in origin form) and reads main's response head. The response
/// body reads the rest from the connection; `home` gets the connection back when the exchange
/// ends cleanly.
pub(crate) async fn exchange(mut conn: MainConn, req: Request<UpstreamBody>, home: Arc<dyn Home>) -> Result<Response<MainBody>, Failed> {
    let interim = req.extensions().get::<Interim>().cloned();
    let head_request = req.method() == Method::HEAD;
    let mut sending = Sending::new(req);
    let mut interims = 0;
    // The head first; a failure writing it means nothing reached main.
    let head = std::future::poll_fn(|cx| loop {
        // The request goes out as long as it can (main may read it only as it answers).
        if !sending.done() {
            if let Poll::Ready(Err(failure)) = sending.poll_send(cx, &mut conn.io) {
                return Poll::Ready(Err(failure));
            }
        }
        if !conn.buf.is_empty() {
            match parse_response(&conn.buf, head_request, MAX_HEAD_BYTES, MAX_FIELDS) {
                Err(bad) => return Poll::Ready(Err(Failure::Bad(bad))),
                Ok(Some(head)) if head.is_informational() && head.status != 101 => {
                    interims += 1;
                    if interims > MAX_INTERIM {
                        return Poll::Ready(Err(Failure::Bad(BadResponse::Malformed)));
                    }
                    if let (Some(sink), false) = (&interim, head.status == 100) {
                        sink.put(interim_head(&conn.buf, &head));
                    }
                    conn.buf.advance(head.len);
                    continue;
                }
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
            }
        }
        match ready!(conn.poll_read_more(cx)) {
            Ok(0) => return Poll::Ready(Err(Failure::Closed(None))),
            Ok(_) => {}
            Err(e) if closed(&e) => return Poll::Ready(Err(Failure::Closed(Some(e)))),
            Err(e) => return Poll::Ready(Err(Failure::Io(e))),
        }
    })
    .await;
    let head = match head {
        Ok(head) => head,
        Err(failure) => {
            return Err(Failed { failure, request: sending.request.take(), written: sending.wrote_any });
        }
    };
    let bytes = conn.buf.split_to(head.len).freeze();
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(head.status).map_err(|_| bad(BadResponse::Malformed))?;
    *response.version_mut() = if head.minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    *response.headers_mut() = fields(&bytes, &head.fields, head.status != 101).ok_or_else(|| bad(BadResponse::Malformed))?;
    if head.status == 101 {
        // The connection is the tunnel's now; no body, and nothing more of the request.
        let (parts, ()) = response.into_parts();
        let mut response = Response::from_parts(parts, MainBody::empty());
        response.extensions_mut().insert(Tunnel(Arc::new(std::sync::Mutex::new(Some(conn)))));
        return Ok(response);
    }
    let left = if let ResponseBody::Length(n) = head.body { n } else { 0 };
    let body = OwnBody {
        conn: Some(conn),
        sending: (!sending.done()).then_some(sending),
        kind: head.body,
        left,
        chunked: ChunkedDecoder::new(MAX_HEAD_BYTES),
        keep_alive: head.keep_alive,
        home: Some(home),
    };
    let (parts, ()) = response.into_parts();
    Ok(Response::from_parts(parts, MainBody(Inner::H1(Box::new(body)))))
}

/// Reads until main's next response head is whole: `Err(None)` when main closed or the
/// connection failed first.
pub(super) async fn read_head(conn: &mut MainConn, head_request: bool) -> Result<ResponseHead, Option<BadResponse>> {
    loop {
        if !conn.buf.is_empty() {
            match parse_response(&conn.buf, head_request, MAX_HEAD_BYTES, MAX_FIELDS) {
                Err(bad) => return Err(Some(bad)),
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
            }
        }
        match conn.read_more(0).await {
            Ok(n) if n > 0 => {}
            _ => return Err(None),
        }
    }
}

/// Main's final response from its head (whose ranges index `bytes`) and its connection, which
/// the body reads on; `None` when a field cannot be held.
pub(super) fn into_response(conn: MainConn, head: &ResponseHead, bytes: Bytes, home: Arc<dyn Home>) -> Option<Response<MainBody>> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(head.status).ok()?;
    *response.version_mut() = if head.minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    *response.headers_mut() = fields(&bytes, &head.fields, head.status != 101)?;
    let left = if let ResponseBody::Length(n) = head.body { n } else { 0 };
    let body = OwnBody {
        conn: Some(conn),
        sending: None,
        kind: head.body,
        left,
        chunked: ChunkedDecoder::new(MAX_HEAD_BYTES),
        keep_alive: head.keep_alive,
        home: Some(home),
    };
    let (parts, ()) = response.into_parts();
    Some(Response::from_parts(parts, MainBody(Inner::H1(Box::new(body)))))
}

fn bad(b: BadResponse) -> Failed {
    Failed { failure: Failure::Bad(b), request: None, written: true }
}

/// A socket error that means main is gone rather than something failing here.
fn closed(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe)
}

/// Fields of a head, their values sharing its bytes. With `hop`, the hop-by-hop fields are left
/// out as they are read (they are the connection's, not the client's), unless `Connection` names
/// others, which the edge removes with them.
fn fields(bytes: &Bytes, ranges: &[(std::ops::Range<usize>, std::ops::Range<usize>)], hop: bool) -> Option<HeaderMap> {
    let at = |r: &std::ops::Range<usize>| bytes.get(r.clone()).unwrap_or_default();
    let plain_connection = |v: &[u8]| {
        v.split(|c| *c == b',')
            .map(<[u8]>::trim_ascii)
            .all(|t| t.is_empty() || t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive"))
    };
    let drop_hop = hop && ranges.iter().all(|(n, v)| !at(n).eq_ignore_ascii_case(b"connection") || plain_connection(at(v)));
    let mut map = HeaderMap::with_capacity(ranges.len() + 4);
    for (n, v) in ranges {
        if drop_hop && crate::headers::is_hop_by_hop(at(n)) {
            continue;
        }
        let name = HeaderName::from_bytes(bytes.get(n.clone())?).ok()?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(v.clone())).ok()?;
        map.append(name, value);
    }
    Some(map)
}

/// An interim response as the client gets it: the status line and main's fields without the
/// hop-by-hop ones.
pub(super) fn interim_head(buf: &[u8], head: &ResponseHead) -> Bytes {
    let mut out = Vec::with_capacity(head.len + 16);
    out.extend_from_slice(b"HTTP/1.1 ");
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::CONTINUE);
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in &head.fields {
        let name = &buf[n.clone()];
        if crate::headers::is_hop_by_hop(name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&buf[v.clone()]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// The request on its way out: its head and framed body, written as the socket takes them.
struct Sending {
    /// Kept (its body inside) until the body is first read: until then it may go out again.
    request: Option<Box<Request<UpstreamBody>>>,
    body: Option<UpstreamBody>,
    framing: Framing,
    /// Bytes to write: a head, chunk sizes, small data.
    out: Vec<u8>,
    /// Large data after `out`, then `tail`, without a copy.
    data: Bytes,
    tail: &'static [u8],
    /// Some of the request reached the socket.
    wrote_any: bool,
    finished: bool,
}

impl Sending {
    fn new(req: Request<UpstreamBody>) -> Self {
        let fields = req.headers();
        let body = req.body();
        let framing = if let Some(n) = crate::headers::content_length(fields) {
            Framing::Length(n)
        } else if body.is_end_stream() {
            if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
                Framing::Length(0)
            } else {
                Framing::None
            }
        } else {
            match body.size_hint().exact() {
                Some(n) => Framing::Length(n),
                None => Framing::Chunked,
            }
        };
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let mut out = Vec::new();
        request_head(&mut out, req.method(), target.as_bytes(), fields, framing);
        let bodiless = req.body().is_end_stream();
        Self { request: Some(Box::new(req)), body: None, framing, out, data: Bytes::new(), tail: b"", wrote_any: false, finished: bodiless }
    }

    /// All of the request is written.
    fn done(&self) -> bool {
        self.finished && self.out.is_empty() && self.data.is_empty() && self.tail.is_empty()
    }

    /// Writes what is pending and reads more of the body while the socket takes it: `Ready(Ok)`
    /// once the whole request is written.
    fn poll_send<W: AsyncWrite + Unpin>(&mut self, cx: &mut Context<'_>, io: &mut W) -> Poll<Result<(), Failure>> {
        loop {
            if !self.out.is_empty() || !self.data.is_empty() || !self.tail.is_empty() {
                let written = if self.data.is_empty() {
                    ready!(Pin::new(&mut *io).poll_write(cx, &self.out))
                } else {
                    let slices = [io::IoSlice::new(&self.out), io::IoSlice::new(&self.data), io::IoSlice::new(self.tail)];
                    ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))
                };
                let mut n = match written {
                    Ok(0) => return Poll::Ready(Err(Failure::Closed(None))),
                    Ok(n) => n,
                    Err(e) if closed(&e) => return Poll::Ready(Err(Failure::Closed(Some(e)))),
                    Err(e) => return Poll::Ready(Err(Failure::Io(e))),
                };
                self.wrote_any = true;
                let from_out = n.min(self.out.len());
                self.out.drain(..from_out);
                n -= from_out;
                let from_data = n.min(self.data.len());
                self.data.advance(from_data);
                n -= from_data;
                let from_tail = n.min(self.tail.len());
                self.tail = &self.tail[from_tail..];
                continue;
            }
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            if self.body.is_none() {
                // The head is out: from here on the body is read, and the request is main's.
                match self.request.take() {
                    Some(req) => self.body = Some(req.into_body()),
                    None => {
                        self.finished = true;
                        continue;
                    }
                }
            }
            let Some(body) = self.body.as_mut() else { return Poll::Ready(Ok(())) };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Err(e)) => return Poll::Ready(Err(Failure::Body(e))),
                None => {
                    if self.framing == Framing::Chunked {
                        last_chunk(&mut self.out, None);
                    }
                    self.finished = true;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        let chunked = self.framing == Framing::Chunked;
                        if chunked {
                            chunk_size(&mut self.out, data.len());
                        }
                        let tail: &'static [u8] = if chunked { b"\r\n" } else { b"" };
                        if data.len() >= VECTORED {
                            self.data = data;
                            self.tail = tail;
                        } else {
                            self.out.extend_from_slice(&data);
                            self.out.extend_from_slice(tail);
                        }
                    }
                    Err(frame) => {
                        if let (Ok(trailers), Framing::Chunked) = (frame.into_trailers(), self.framing) {
                            last_chunk(&mut self.out, Some(&trailers));
                            self.finished = true;
                            self.body = None;
                        }
                    }
                },
            }
        }
    }
}

/// Main's connection after a `101 Switching Protocols`, in the response's extensions: the
/// tunnel's other end.
#[derive(Clone)]
pub(crate) struct Tunnel(Arc<std::sync::Mutex<Option<MainConn>>>);

impl Tunnel {
    pub fn take(&self) -> Option<MainConn> {
        self.0.lock().ok()?.take()
    }
}

/// Main's response body; its connection goes back to the pool when the body has been read to
/// its end and the request was wholly sent.
pub struct MainBody(Inner);

enum Inner {
    H1(Box<OwnBody>),
    H2(hyper::body::Incoming),
    Empty,
}

impl std::fmt::Debug for MainBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MainBody")
    }
}

impl MainBody {
    pub(crate) fn h2(inner: hyper::body::Incoming) -> Self {
        MainBody(Inner::H2(inner))
    }

    pub(crate) fn empty() -> Self {
        MainBody(Inner::Empty)
    }
}

impl Body for MainBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Inner::H1(b) => b.poll_frame(cx),
            Inner::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Inner::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::H1(b) => b.at_end(),
            Inner::H2(b) => b.is_end_stream(),
            Inner::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::H1(b) => match b.kind {
                ResponseBody::Empty => SizeHint::with_exact(0),
                ResponseBody::Length(_) => SizeHint::with_exact(b.left),
                _ => SizeHint::default(),
            },
            Inner::H2(b) => b.size_hint(),
            Inner::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Where a connection goes when its exchange ended cleanly (the pool).
pub(crate) trait Home: Send + Sync {
    fn checkin(&self, conn: MainConn);
}

/// Main's HTTP/1.1 response body, read from its connection by whoever reads the body.
struct OwnBody {
    conn: Option<MainConn>,
    /// The rest of a request main answered before it was wholly sent.
    sending: Option<Sending>,
    kind: ResponseBody,
    /// Of a body framed by length, the bytes still to come.
    left: u64,
    chunked: ChunkedDecoder,
    keep_alive: bool,
    home: Option<Arc<dyn Home>>,
}

/// Main's response body broke off or broke its framing.
#[derive(Debug, thiserror::Error)]
enum BodyFailure {
    #[error("main closed the connection inside the response body")]
    Closed,
    #[error("main's response body: {0}")]
    Chunk(ChunkError),
    #[error("main's response body: {0}")]
    Io(io::Error),
    #[error("main's response trailers are malformed")]
    Trailers,
}

impl OwnBody {
    fn at_end(&self) -> bool {
        match self.kind {
            ResponseBody::Empty => true,
            ResponseBody::Length(_) => self.left == 0,
            ResponseBody::Chunked => self.chunked.is_done(),
            ResponseBody::UntilClose => self.conn.is_none(),
        }
    }

    fn fail(&mut self, e: BodyFailure) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.sending = None;
        Poll::Ready(Some(Err(Box::new(e))))
    }

    /// Ended: the connection goes home when nothing is left on it and it may carry another.
    fn release(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let sent = self.sending.as_ref().is_none_or(Sending::done);
        if self.keep_alive && sent && conn.buf.is_empty() && !conn.broken.load(Ordering::Relaxed) {
            if let Some(home) = self.home.take() {
                home.checkin(conn);
            }
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(None) };
        if let Some(sending) = self.sending.as_mut() {
            match sending.poll_send(cx, &mut conn.io) {
                Poll::Ready(Ok(())) => self.sending = None,
                // Main has answered: the rest of the body is not its concern any more; the
                // connection is not used again.
                Poll::Ready(Err(_)) => {
                    self.sending = None;
                    self.keep_alive = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            let Some(conn) = self.conn.as_mut() else { return Poll::Ready(None) };
            match self.kind {
                ResponseBody::Empty => {
                    self.release();
                    return Poll::Ready(None);
                }
                ResponseBody::Length(_) => {
                    if self.left == 0 {
                        self.release();
                        return Poll::Ready(None);
                    }
                    if !conn.buf.is_empty() {
                        let take = (conn.buf.len() as u64).min(self.left) as usize;
                        self.left -= take as u64;
                        let data = conn.buf.split_to(take).freeze();
                        if self.left == 0 {
                            self.release();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                ResponseBody::Chunked => {
                    if self.chunked.is_done() {
                        self.release();
                        return Poll::Ready(None);
                    }
                    let step = match self.chunked.step(&conn.buf) {
                        Ok(step) => step,
                        Err(e) => return self.fail(BodyFailure::Chunk(e)),
                    };
                    let taken = conn.buf.split_to(step.consumed);
                    if let Some(r) = step.data.filter(|r| !r.is_empty()) {
                        return Poll::Ready(Some(Ok(Frame::data(taken.freeze().slice(r)))));
                    }
                    if self.chunked.is_done() {
                        let trailers = match trailers(self.chunked.trailers()) {
                            Some(t) => t,
                            None => return self.fail(BodyFailure::Trailers),
                        };
                        self.release();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    if step.consumed > 0 {
                        continue;
                    }
                }
                ResponseBody::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(conn.poll_read_more(cx)) {
                Ok(0) if self.kind == ResponseBody::UntilClose => {
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return self.fail(BodyFailure::Closed),
                Ok(_) => {}
                Err(e) => return self.fail(BodyFailure::Io(e)),
            }
        }
    }
}

impl Drop for OwnBody {
    fn drop(&mut self) {
        // Read to its end without the last poll (a length reached, an empty body): home; cut
        // short: closed with it.
        if self.at_end() && self.kind != ResponseBody::UntilClose {
            self.release();
        }
    }
}

/// A trailer section's fields (`None`: malformed; `Some(None)`: there were none).
fn trailers(section: &[u8]) -> Option<Option<HeaderMap>> {
    if section.is_empty() {
        return Some(None);
    }
    let mut text = Vec::with_capacity(section.len() + 2);
    text.extend_from_slice(section);
    text.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let Ok(httparse::Status::Complete((_, parsed))) = httparse::parse_headers(&text, &mut slots) else { return None };
    let mut map = HeaderMap::new();
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        map.append(name, value);
    }
    Some(Some(map))
}
