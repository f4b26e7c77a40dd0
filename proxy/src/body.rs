//! The request body on its way to main ([`UpstreamBody`]: the size limit, the body-progress
//! timeout and the minimum rate), from a client connection or, in tests, any body
//! ([`RequestBody`]). Responses are in `response.rs`.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request's body as the client sends it: a client connection's (no boxing), or any other
/// body (in-process callers and tests).
pub enum RequestBody {
    Client(Incoming),
    Other(http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestBody::Client(_) => "RequestBody::Client",
            RequestBody::Other(_) => "RequestBody::Other",
        })
    }
}

impl RequestBody {
    /// Any body, boxed.
    pub fn other<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        RequestBody::Other(body.map_err(Into::into).boxed_unsync())
    }
}

impl From<Incoming> for RequestBody {
    #[inline]
    fn from(b: Incoming) -> Self {
        RequestBody::Client(b)
    }
}

impl From<http_body_util::Full<Bytes>> for RequestBody {
    fn from(b: http_body_util::Full<Bytes>) -> Self {
        RequestBody::other(b)
    }
}

impl From<http_body_util::Empty<Bytes>> for RequestBody {
    fn from(b: http_body_util::Empty<Bytes>) -> Self {
        RequestBody::other(b)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Client(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            RequestBody::Other(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(b) => b.is_end_stream(),
            RequestBody::Other(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(b) => b.size_hint(),
            RequestBody::Other(b) => b.size_hint(),
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
    #[error("request body slower than {0} bytes a second")]
    TooSlow(u64),
    #[error(transparent)]
    Client(BoxError),
}

/// A minimum average rate of a request body after a grace period (Apache's `MinRate`): the body
/// may take `grace` plus a second per `bytes_per_sec` bytes received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub grace: Duration,
}

/// The client's request body on its way to main: streamed, never buffered, cut when it grows
/// past `limit`, pauses longer than `idle`, or trickles slower than `min_rate`. Empty for the
/// cache's own revalidations.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Option<RequestBody>,
    limit: Option<u64>,
    seen: u64,
    idle: Duration,
    min_rate: Option<MinRate>,
    /// When main first asked for the body (the rate's clock).
    started: Option<Instant>,
    /// Armed only while waiting on the client, so an empty body costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl UpstreamBody {
    pub fn new(inner: RequestBody, limit: Option<u64>, idle: Duration) -> Self {
        Self { inner: Some(inner), limit, seen: 0, idle, min_rate: None, started: None, sleep: None }
    }

    /// The same body, cut with 408 when it averages less than `rate` after its grace period.
    pub fn min_rate(mut self, rate: Option<MinRate>) -> Self {
        self.min_rate = rate.filter(|r| r.bytes_per_sec > 0);
        self
    }

    pub fn empty() -> Self {
        Self { inner: None, limit: None, seen: 0, idle: Duration::ZERO, min_rate: None, started: None, sleep: None }
    }

    /// When the body has taken too long for what it has sent.
    fn rate_deadline(&self) -> Option<Instant> {
        let rate = self.min_rate?;
        let allowed = rate.grace + Duration::from_secs_f64(self.seen as f64 / rate.bytes_per_sec as f64);
        Some(self.started? + allowed)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        if this.min_rate.is_some() && this.started.is_none() {
            this.started = Some(Instant::now());
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                let frame = match frame {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => return Poll::Ready(Some(Err(BodyError::Client(e)))),
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
                let now = Instant::now();
                let rate_deadline = this.rate_deadline();
                let deadline = rate_deadline.map_or(now + this.idle, |r| r.min(now + this.idle));
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                match (this.min_rate, rate_deadline) {
                    (Some(rate), Some(r)) if Instant::now() >= r => Poll::Ready(Some(Err(BodyError::TooSlow(rate.bytes_per_sec)))),
                    _ => Poll::Ready(Some(Err(BodyError::Stalled(this.idle)))),
                }
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
