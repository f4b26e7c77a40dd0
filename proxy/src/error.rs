//! Errors of the request path, each knowing who failed, mapped to one status in one place.

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};

use crate::response::EdgeBody;

/// Why a request did not get main's response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Main is starting or restarting and did not become ready within the hold time.
    #[error("main is not ready (waited {0:?})")]
    NotReady(Duration),
    /// The request body is larger than the configured limit.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The client stopped sending its body for longer than the body-progress timeout.
    #[error("request body stalled for {0:?}")]
    BodyStalled(Duration),
    /// The client's body averaged less than the minimum rate after its grace period.
    #[error("request body slower than {0} bytes a second")]
    BodyTooSlow(u64),
    /// Main refused the connection (not listening).
    #[error("main refused the connection: {0}")]
    Refused(#[source] std::io::Error),
    /// sitecar could not open a connection to main for want of its own resources (descriptors,
    /// local ports, socket buffers): sitecar's failure, not main's.
    #[error("sitecar cannot open a connection to main: {0}")]
    Exhausted(#[source] std::io::Error),
    /// Connecting to main took longer than the connect timeout.
    #[error("connecting to main timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// Main closed or reset the connection, or answered with invalid HTTP.
    #[error("main failed: {0}")]
    Upstream(#[source] crate::body::BoxError),
    /// Main did not answer within the request timeout.
    #[error("main did not answer within {0:?}")]
    Timeout(Duration),
    /// The client's request breaks HTTP (a missing or doubled Host, a broken chunked body...).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A method the front door does not forward (CONNECT).
    #[error("{0} is not forwarded by the front door")]
    MethodNotAllowed(http::Method),
    /// A transfer coding other than chunked (RFC 9112 §6.1).
    #[error("transfer coding not implemented: {0}")]
    NotImplemented(String),
}

/// What `Allow` says when a method is refused: the methods the front door forwards.
pub(crate) const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// Who a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The request was wrong or too slow: the client's to fix (4xx), main never saw a fault.
    Client,
    /// Main refused, failed or was late (5xx).
    Main,
    /// sitecar itself ran short (5xx): neither the client nor main is at fault.
    Sitecar,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotReady(_) | ProxyError::Exhausted(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyStalled(_) | ProxyError::BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Refused(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout(_) | ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// Whether sending the request again is safe: nothing reached main (refused, not ready,
    /// connecting timed out), or main failed before answering and the request may be repeated
    /// (`idempotent`: an idempotent method without a body, RFC 9110 §9.2.2).
    pub fn retry_safe(&self, idempotent: bool) -> bool {
        match self {
            ProxyError::NotReady(_) | ProxyError::Refused(_) | ProxyError::Exhausted(_) | ProxyError::ConnectTimeout(_) => true,
            ProxyError::Upstream(_) | ProxyError::Timeout(_) => idempotent,
            _ => false,
        }
    }

    /// Whose fault it is: a client's faults are not counted as main's errors.
    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::BodyTooLarge(_)
            | ProxyError::BodyStalled(_)
            | ProxyError::BodyTooSlow(_)
            | ProxyError::BadRequest(_)
            | ProxyError::MethodNotAllowed(_)
            | ProxyError::NotImplemented(_) => Blame::Client,
            ProxyError::Exhausted(_) => Blame::Sitecar,
            _ => Blame::Main,
        }
    }

    /// Main could not be reached or did not answer: not ready, refused, not connectable, closed or
    /// reset before answering, or silent past the request timeout. A cache may then serve stale
    /// (RFC 9111 §4.2.4).
    pub fn disconnected(&self) -> bool {
        matches!(
            self,
            ProxyError::NotReady(_)
                | ProxyError::Refused(_)
                | ProxyError::Exhausted(_)
                | ProxyError::ConnectTimeout(_)
                | ProxyError::Upstream(_)
                | ProxyError::Timeout(_)
        )
    }

    /// Every [`ProxyError::kind`], for metrics that resolve their labels up front.
    pub const KINDS: [&'static str; 12] = [
        "not_ready",
        "body_too_large",
        "body_stalled",
        "body_too_slow",
        "refused",
        "exhausted",
        "connect_timeout",
        "upstream",
        "timeout",
        "bad_request",
        "method_not_allowed",
        "not_implemented",
    ];

    /// A short metric/log label for the cause (one of [`ProxyError::KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NotReady(_) => "not_ready",
            ProxyError::BodyTooLarge(_) => "body_too_large",
            ProxyError::BodyStalled(_) => "body_stalled",
            ProxyError::BodyTooSlow(_) => "body_too_slow",
            ProxyError::Refused(_) => "refused",
            ProxyError::Exhausted(_) => "exhausted",
            ProxyError::ConnectTimeout(_) => "connect_timeout",
            ProxyError::Upstream(_) => "upstream",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::MethodNotAllowed(_) => "method_not_allowed",
            ProxyError::NotImplemented(_) => "not_implemented",
        }
    }

    /// The response a client gets: a plain body naming the cause and the request id.
    pub fn response(&self, request_id: &str) -> Response<EdgeBody> {
        let status = self.status();
        let body = format!("{} {}: {self}\nrequest id: {request_id}\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
        let mut resp = Response::new(EdgeBody::full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-request-id", v);
        }
        match self {
            ProxyError::NotReady(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ProxyError::Exhausted(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The body was not read to its end, or the request's framing cannot be trusted: the
            // connection cannot be reused.
            ProxyError::BodyTooLarge(_)
            | ProxyError::BodyStalled(_)
            | ProxyError::BodyTooSlow(_)
            | ProxyError::BadRequest(_)
            | ProxyError::NotImplemented(_) => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ProxyError::MethodNotAllowed(_) => {
                h.insert(header::ALLOW, HeaderValue::from_static(FORWARDED_METHODS));
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}
