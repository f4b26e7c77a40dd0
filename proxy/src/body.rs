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

/// A response body: main's, streamed as it comes, or one made here.
#[derive(Debug)]
pub enum EdgeBody {
    Upstream(Incoming),
    Full(Option<Bytes>),
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Upstream(b) => b.is_end_stream(),
            EdgeBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Upstream(b) => b.size_hint(),
            EdgeBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            EdgeBody::Full(None) => SizeHint::with_exact(0),
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
/// past `limit` or pauses longer than `idle`.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    limit: Option<u64>,
    seen: u64,
    idle: Duration,
    /// Armed only while waiting on the client, so an empty body costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl UpstreamBody {
    pub fn new(inner: Incoming, limit: Option<u64>, idle: Duration) -> Self {
        Self { inner, limit, seen: 0, idle, sleep: None }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
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
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
