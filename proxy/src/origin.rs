//! Main, as the request path sees it: the one place that waits for main's readiness, connects
//! (through the pool in `upstream.rs`), sends with the request timeout, tries once more when that
//! is safe, and says who failed.
//!
//! Once more, after waiting for main to be ready again: when no connection could be made (nothing
//! reached main, so for every method; the request arrived between main dying and the supervisor
//! noticing), and when main dropped the connection before answering an idempotent request without
//! a body (RFC 9110 §9.2.2: main died under it and is being restarted).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, Version};
use http_body::Body as _;
use tokio::sync::watch;

use crate::body::{BodyError, UpstreamBody};
use crate::error::ProxyError;
use crate::h1::client::Failure;
use crate::metrics::HttpMetrics;
use crate::upstream::{MainBody, SendError, Upstream};

/// The pooled client to main behind its readiness gate, with its timeouts.
#[derive(Debug, Clone)]
pub struct Origin {
    upstream: Upstream,
    /// Main's readiness, as the supervisor publishes it.
    ready: watch::Receiver<bool>,
    /// How long a request waits for main to become ready.
    hold: Duration,
    /// Until main's response head.
    request_timeout: Duration,
    connect_timeout: Duration,
    /// Requests announcing a larger body are refused before main is asked.
    max_body: Option<u64>,
    /// Counts held requests and second tries.
    metrics: Option<Arc<HttpMetrics>>,
}

/// Timeouts and limits of the way to main.
#[derive(Debug, Clone, Copy)]
pub struct OriginLimits {
    pub hold: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body: Option<u64>,
}

/// Why a first try failed in a way that a second may fix. (Only on the failure path: not boxed.)
#[allow(clippy::large_enum_variant)]
enum Again {
    /// No connection: the request comes back whole.
    Unreachable(Box<Request<UpstreamBody>>, std::io::Error),
    /// Dropped before an answer: the copy of a request head that may be sent twice.
    Dropped(http::request::Parts),
}

/// In a request's extensions: its first try was on the direct path (`h1/direct.rs`) and failed
/// as a second try may fix (main refused the connection, or dropped it before answering); this
/// is the second (after the gate, as any second try), and the last.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SecondTry {
    Refused,
    Dropped,
}

impl Origin {
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub fn new(upstream: Upstream, ready: watch::Receiver<bool>, limits: OriginLimits, metrics: Option<Arc<HttpMetrics>>) -> Self {
        let OriginLimits { hold, request_timeout, connect_timeout, max_body } = limits;
        Self { upstream, ready, hold, request_timeout, connect_timeout, max_body, metrics }
    }

    /// Whether main is ready now.
    #[inline]
    pub fn ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Main's response head to a request (its URI put in origin form, HTTP/1.1), and the time it
    /// took from sending. `repeatable`: the request may be sent twice when it is idempotent and
    /// has no body (not an upgrade, whose connection is the client's).
    #[allow(clippy::manual_async_fn)] // not `async fn`: that keeps a second copy of the arguments in the future
    pub fn send(
        &self,
        parts: http::request::Parts,
        body: UpstreamBody,
        repeatable: bool,
    ) -> impl Future<Output = Result<(Response<MainBody>, Duration), ProxyError>> + '_ {
        async move {
            if let (Some(limit), Some(len)) = (self.max_body, crate::headers::content_length(&parts.headers)) {
                if len > limit {
                    return Err(ProxyError::BodyTooLarge(limit));
                }
            }
            // A copy of the head for a second try: the HTTP/1.1 client hands back a request
            // whose body it did not read; HTTP/2's keeps nothing, so its head is copied first.
            if let Some(second) = parts.extensions.get::<SecondTry>().copied() {
                match second {
                    SecondTry::Refused => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let mut ready = self.ready.clone();
                        let back = tokio::time::timeout(self.hold, ready.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok());
                        if !back {
                            return Err(ProxyError::Refused(std::io::ErrorKind::ConnectionRefused.into()));
                        }
                        if let Some(m) = &self.metrics {
                            m.retried_refused();
                        }
                    }
                    SecondTry::Dropped => {
                        if let Some(m) = &self.metrics {
                            m.retried_dropped();
                        }
                        let mut gate = self.ready.clone();
                        gate.borrow_and_update();
                        let _ = tokio::time::timeout(Duration::from_millis(500), gate.changed()).await;
                        self.admit().await?;
                    }
                }
                return self.try_send(Request::from_parts(parts, body)).await.map_err(|e| self.classify(e));
            }
            let may_repeat = repeatable && parts.method.is_idempotent() && body.is_end_stream();
            let copy = (may_repeat && self.upstream.http2_for(parts.version, &parts.headers).is_some())
                .then(|| crate::headers::head_with(&parts, parts.headers.clone()));
            self.admit().await?;
            let again = match self.try_send(Request::from_parts(parts, body)).await {
                Ok(r) => return Ok(r),
                Err(SendError::Connect(e, request)) if unreachable(&e) => {
                    tracing::debug!(error = %e, "main refused the connection; trying once more when main is ready");
                    Again::Unreachable(request, e)
                }
                Err(SendError::Main(f, Some(request))) if may_repeat && !matches!(f, Failure::Body(_)) => {
                    tracing::debug!(error = %f, "main dropped the connection; sending the request once more when main is ready");
                    Again::Dropped(request.into_parts().0)
                }
                Err(SendError::Http(e)) if copy.is_some() && body_error(&e).is_none() => {
                    tracing::debug!(error = %e, "main dropped the connection; sending the request once more when main is ready");
                    match copy {
                        Some(c) => Again::Dropped(c),
                        None => return Err(self.classify(SendError::Http(e))),
                    }
                }
                Err(e) => return Err(self.classify(e)),
            };
            let request = match again {
                Again::Unreachable(request, e) => {
                    // Main just went away: give the supervisor a moment to notice, then wait for
                    // main to be ready again, as a request arriving now would.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let mut ready = self.ready.clone();
                    let back = tokio::time::timeout(self.hold, ready.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok());
                    if !back {
                        return Err(ProxyError::Refused(e));
                    }
                    if let Some(m) = &self.metrics {
                        m.retried_refused();
                    }
                    *request
                }
                Again::Dropped(head) => {
                    if let Some(m) = &self.metrics {
                        m.retried_dropped();
                    }
                    // Give the supervisor time to notice main's exit and close the gate (a
                    // container engine's client can take a while on a busy machine): the retry
                    // then waits for main to be back. A one-off drop by a main that stays up waits
                    // out this bound and goes again.
                    let mut gate = self.ready.clone();
                    gate.borrow_and_update();
                    let _ = tokio::time::timeout(Duration::from_millis(500), gate.changed()).await;
                    self.admit().await?;
                    Request::from_parts(head, UpstreamBody::empty())
                }
            };
            self.try_send(request).await.map_err(|e| self.classify(e))
        }
    }

    /// One try, within the request timeout.
    async fn try_send(&self, mut request: Request<UpstreamBody>) -> Result<(Response<MainBody>, Duration), SendError> {
        let asked = Instant::now();
        if let Some(h2) = self.upstream.http2_for(request.version(), request.headers()) {
            // HTTP/2 to main (`http20ProxyFlag`): `:authority` from the client's Host.
            let host = request.headers_mut().remove(http::header::HOST);
            *request.uri_mut() = self.upstream.http2_uri(host.as_ref(), request.uri().path_and_query());
            *request.version_mut() = Version::HTTP_2;
            // This hop carries trailers to a client that takes them (an HTTP/2 one always does),
            // and gRPC servers refuse a request that does not say so.
            request.headers_mut().insert(http::header::TE, http::HeaderValue::from_static("trailers"));
            return match tokio::time::timeout(self.request_timeout, h2.send(request)).await {
                Err(_) => Err(SendError::TimedOut(self.request_timeout)),
                Ok(Err(e)) => Err(e),
                Ok(Ok(r)) => Ok((r, asked.elapsed())),
            };
        }
        if request.uri().scheme().is_some() || request.uri().authority().is_some() {
            *request.uri_mut() = self.upstream.uri(request.uri().path_and_query());
        }
        *request.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.request_timeout, self.upstream.send(request)).await {
            Err(_) => Err(SendError::TimedOut(self.request_timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(r)) => Ok((r, asked.elapsed())),
        }
    }

    /// Waits until main is ready, at most the hold time.
    async fn admit(&self) -> Result<(), ProxyError> {
        if *self.ready.borrow() {
            return Ok(());
        }
        if let Some(m) = &self.metrics {
            m.held.inc();
        }
        let mut rx = self.ready.clone();
        let ready = tokio::time::timeout(self.hold, async { rx.wait_for(|r| *r).await.is_ok() }).await;
        match ready {
            Ok(true) => Ok(()),
            _ => Err(ProxyError::NotReady(self.hold)),
        }
    }

    /// Who failed: the client's body, connecting to main, or main itself.
    fn classify(&self, e: SendError) -> ProxyError {
        let e = match e {
            SendError::ConnectTimeout => return ProxyError::ConnectTimeout(self.connect_timeout),
            SendError::TimedOut(d) => return ProxyError::Timeout(d),
            SendError::Connect(e, _) if exhausted(&e) => return ProxyError::Exhausted(e),
            SendError::Connect(e, _) => return ProxyError::Refused(e),
            SendError::Main(Failure::Body(b), _) => return body_failed(&b),
            SendError::Main(f, _) => return ProxyError::Upstream(Box::new(f)),
            SendError::Http(e) => e,
        };
        match body_error(&e) {
            Some(b) => body_failed(b),
            None => ProxyError::Upstream(Box::new(e)),
        }
    }
}

/// The client's request body failed on its way to main.
fn body_failed(b: &BodyError) -> ProxyError {
    match b {
        BodyError::TooLarge(l) => ProxyError::BodyTooLarge(*l),
        BodyError::Stalled(d) => ProxyError::BodyStalled(*d),
        BodyError::TooSlow(r) => ProxyError::BodyTooSlow(*r),
        // A broken body (bad chunked framing, a reset) is the client's doing, not main's.
        BodyError::Client(c) => ProxyError::BadRequest(format!("the request body: {c}")),
    }
}

/// The client's body error behind a failed exchange, if that is what failed.
fn body_error(e: &hyper::Error) -> Option<&BodyError> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<BodyError>() {
            return Some(b);
        }
        source = s.source();
    }
    None
}

/// sitecar ran out of what a connection takes: descriptors, local ports, buffers, memory.
pub(crate) fn exhausted(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(e).is_some_and(|n| [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM, Errno::ADDRNOTAVAIL].contains(&n))
}

/// Main is not there (any more): refused, or reset while connecting.
pub(crate) fn unreachable(e: &std::io::Error) -> bool {
    // A connection still in a dying main's accept queue is reset rather than refused.
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionReset | ConnectionAborted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortage_of_sitecars_own_is_not_mains_refusal() {
        use rustix::io::Errno;
        for errno in [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::ADDRNOTAVAIL] {
            let e = std::io::Error::from_raw_os_error(errno.raw_os_error());
            assert!(exhausted(&e), "{e}");
            assert!(!unreachable(&e), "{e}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!exhausted(&refused) && unreachable(&refused));
        let e = ProxyError::Exhausted(std::io::Error::from_raw_os_error(Errno::MFILE.raw_os_error()));
        assert_eq!(e.blame(), crate::error::Blame::Sitecar);
        assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.retry_safe(false));
    }
}
