//! Filling the cache from main's response as it streams to the client.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::upstream::MainBody;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue};
use http_body::{Body, Frame, SizeHint};

use super::{Cache, Candidate, FillGuard};
use crate::body::BoxError;

/// Main's body on its way to the client, kept (as the `Bytes` it arrives in) until it is
/// complete, then stored; abandoned past `maxObjectBytes` or on an error. Waiting requests go on
/// when it is stored or abandoned.
pub struct Fill {
    inner: MainBody,
    chunks: Vec<Bytes>,
    seen: u64,
    limit: u64,
    pending: Option<Pending>,
}

/// Where a complete body goes: the response it completes, the store and key, and the claim on
/// the key that waiting requests are released from.
struct Pending {
    candidate: Candidate,
    cache: Arc<Cache>,
    key: Arc<str>,
    _guard: Option<FillGuard>,
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill").field("seen", &self.seen).finish()
    }
}

impl Fill {
    pub fn new(inner: MainBody, candidate: Candidate, cache: Arc<Cache>, key: Arc<str>, guard: Option<FillGuard>) -> Self {
        let limit = cache.max_object();
        Self { inner, chunks: Vec::new(), seen: 0, limit, pending: Some(Pending { candidate, cache, key, _guard: guard }) }
    }

    fn finish(&mut self) {
        let Some(Pending { candidate: mut c, cache, key, _guard }) = self.pending.take() else { return };
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
        c.stored.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        c.stored.body = body;
        cache.insert(&key, c.stored);
        // Stored first, then the waiting requests released (when `_guard` drops here).
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
                Poll::Ready(Some(Err(e.into())))
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
