//! Body types of the request path, without boxing: what goes to main ([`UpstreamBody`], with the
//! size limit and the body-progress timeout) and what goes to the client ([`EdgeBody`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: main's, streamed as it comes; one made here or held by the cache (a `Bytes`
/// shared with the store, never copied per response); a file of an offload rule; main's on its way
/// into the cache; or any of these compressed for the client.
pub enum EdgeBody {
    Upstream(crate::upstream::MainBody),
    Full(Option<Bytes>),
    File(Box<tower_http::services::fs::ServeFileSystemResponseBody>),
    Fill(Box<crate::cache::Fill>),
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

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            EdgeBody::Upstream(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            EdgeBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            EdgeBody::File(b) => Pin::new(b.as_mut()).poll_frame(cx).map_err(Into::into),
            EdgeBody::Fill(b) => Pin::new(b.as_mut()).poll_frame(cx),
            EdgeBody::Compressed(b) => Pin::new(b.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Upstream(b) => b.is_end_stream(),
            EdgeBody::Full(b) => b.is_none(),
            EdgeBody::File(b) => b.is_end_stream(),
            EdgeBody::Fill(b) => b.is_end_stream(),
            EdgeBody::Compressed(b) => b.is_end_stream(),
        }
    }

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

/// Why the body to main was cut.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("request body stalled for {0:?}")]
    Stalled(Duration),
    #[error(transparent)]
    Client(#[from] hyper::Error),
}

/// The client's request body on its way to main: streamed, never buffered, cut when it grows
/// past `limit` or pauses longer than `idle`. Empty for the cache's own revalidations.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Option<Incoming>,
    limit: Option<u64>,
    seen: u64,
    idle: Duration,
    /// Armed only while waiting on the client, so an empty body costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl UpstreamBody {
    pub fn new(inner: Incoming, limit: Option<u64>, idle: Duration) -> Self {
        Self { inner: Some(inner), limit, seen: 0, idle, sleep: None }
    }

    pub fn empty() -> Self {
        Self { inner: None, limit: None, seen: 0, idle: Duration::ZERO, sleep: None }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                let frame = match frame {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    None => return Poll::Ready(None),
                };
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if let Some(limit) = this.limit.filter(|l| this.seen > *l) {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.idle;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError::Stalled(this.idle))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}
