//! What the client gets: [`EdgeBody`], main's body as it streams (and into the cache, [`Fill`]),
//! or one made here, held by the cache, a file of an offload rule, or any of these compressed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::body::BoxError;
use crate::cache::Keep;
use crate::upstream::MainBody;

/// A response body: main's, streamed as it comes; one made here or held by the cache (a `Bytes`
/// shared with the store, never copied per response); a file of an offload rule; main's on its way
/// into the cache; or any of these compressed for the client.
pub enum EdgeBody {
    Upstream(MainBody),
    Full(Option<Bytes>),
    File(Box<tower_http::services::fs::ServeFileSystemResponseBody>),
    Fill(Box<Fill>),
    Compressed(Box<tower_http::compression::CompressionBody<EdgeBody>>),
}

impl std::fmt::Debug for EdgeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EdgeBody::Upstream(_) => "EdgeBody::Upstream",
            EdgeBody::Full(_) => "EdgeBody::Full",
            EdgeBody::File(_) => "EdgeBody::File",
            EdgeBody::Fill(_) => "EdgeBody::Fill",
            EdgeBody::Compressed(_) => "EdgeBody::Compressed",
        })
    }
}

impl EdgeBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        EdgeBody::Full(Some(b.into()))
    }

    pub fn empty() -> Self {
        EdgeBody::Full(None)
    }
}

/// A body made here (`None`: empty), as the cache answers.
impl From<Option<Bytes>> for EdgeBody {
    #[inline]
    fn from(b: Option<Bytes>) -> Self {
        EdgeBody::Full(b)
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            EdgeBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            EdgeBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            EdgeBody::File(b) => Pin::new(b.as_mut()).poll_frame(cx).map_err(Into::into),
            EdgeBody::Fill(b) => Pin::new(b.as_mut()).poll_frame(cx),
            EdgeBody::Compressed(b) => Pin::new(b.as_mut()).poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Upstream(b) => b.is_end_stream(),
            EdgeBody::Full(b) => b.is_none(),
            EdgeBody::File(b) => b.is_end_stream(),
            EdgeBody::Fill(b) => b.is_end_stream(),
            EdgeBody::Compressed(b) => b.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Upstream(b) => b.size_hint(),
            EdgeBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            EdgeBody::Full(None) => SizeHint::with_exact(0),
            EdgeBody::File(b) => b.size_hint(),
            EdgeBody::Fill(b) => b.size_hint(),
            EdgeBody::Compressed(b) => b.size_hint(),
        }
    }
}

/// Main's body on its way to the client, kept (as the `Bytes` it arrives in) until it is
/// complete, then stored; abandoned past `maxObjectBytes` or on an error. Waiting requests go on
/// when it is stored or abandoned.
pub struct Fill {
    inner: MainBody,
    chunks: Vec<Bytes>,
    seen: u64,
    limit: u64,
    pending: Option<Keep>,
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill").field("seen", &self.seen).finish()
    }
}

impl Fill {
    /// Keeps `inner` for the store as `keep` says (its limit: `maxObjectBytes`).
    pub fn new(inner: MainBody, keep: Keep) -> Self {
        let limit = keep.limit();
        let mut fill = Self { inner, chunks: Vec::new(), seen: 0, limit, pending: Some(keep) };
        // An empty body (`Content-Length: 0`, a 204) is never polled: it is complete already.
        if fill.inner.is_end_stream() {
            fill.finish();
        }
        fill
    }

    fn finish(&mut self) {
        let Some(keep) = self.pending.take() else { return };
        let body = match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.pop().unwrap_or_default(),
            _ => {
                let mut b = BytesMut::with_capacity(self.seen as usize);
                for chunk in self.chunks.drain(..) {
                    b.extend_from_slice(&chunk);
                }
                b.freeze()
            }
        };
        keep.store(body);
    }
}

impl Body for Fill {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), true) = (frame.data_ref(), this.pending.is_some()) {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        this.pending = None;
                        this.chunks = Vec::new();
                    } else {
                        this.chunks.push(data.clone());
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.pending = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
