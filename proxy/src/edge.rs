//! `EdgeService::handle`: the request path, top to bottom.
//! admit (main ready?) -> limits -> rewrite head -> forward to main -> rewrite response -> log.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{header, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::access::{AccessLog, Record};
use crate::body::{BodyError, EdgeBody, UpstreamBody};
use crate::error::ProxyError;
use crate::headers::{self, Peer};
use crate::metrics::HttpMetrics;
use crate::upstream::Upstream;

/// Settings of the request path.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// How long a request waits for main to become ready.
    pub hold: Duration,
    /// Until main's response head.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body: Option<u64>,
    /// Longest pause in a request body.
    pub body_idle: Duration,
    pub drop_underscore: bool,
}

/// The front door's request handling, shared by every connection.
#[derive(Debug)]
pub struct EdgeService {
    config: EdgeConfig,
    upstream: Upstream,
    ready: watch::Receiver<bool>,
    access: Option<AccessLog>,
    metrics: Option<Arc<HttpMetrics>>,
}

impl EdgeService {
    pub fn new(
        config: EdgeConfig,
        upstream: Upstream,
        ready: watch::Receiver<bool>,
        access: Option<AccessLog>,
        metrics: Option<Arc<HttpMetrics>>,
    ) -> Arc<Self> {
        Arc::new(Self { config, upstream, ready, access, metrics })
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: &Peer) -> Response<EdgeBody> {
        let start = Instant::now();
        if let Some(m) = &self.metrics {
            m.active.inc();
        }
        let (mut parts, body) = req.into_parts();
        // What metrics need after the request is gone; a Uri clone shares its bytes (for the error
        // path's record), nothing is copied here.
        let measured = self.metrics.as_ref().map(|_| (parts.method.clone(), content_length(&parts.headers), parts.uri.clone()));
        let websocket = headers::is_websocket(&parts.method, parts.version, &parts.headers);
        let ids = headers::prepare_request(&mut parts.headers, &parts.uri, parts.version, websocket, peer, self.config.drop_underscore);
        let log = self.access.as_ref().map(|_| {
            (
                parts.method.clone(),
                parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
                parts.version,
                agent(&parts.headers),
            )
        });

        let (response, upstream_time) = match self.forward(parts, body, websocket).await {
            Ok((resp, t)) => (resp, Some(t)),
            Err(e) => {
                tracing::debug!(request_id = %ids.request_id(), error = %e, "request failed");
                if let (Some(m), Some((_, _, uri))) = (&self.metrics, &measured) {
                    m.error(&e, ids.request_id(), ids.trace_id(), uri.path());
                }
                (e.response(ids.request_id()), None)
            }
        };
        if let (Some(m), Some((method, request_bytes, _))) = (&self.metrics, measured) {
            m.active.dec();
            m.observe(&method, response.status(), start.elapsed(), request_bytes, content_length(response.headers()));
        }
        if let (Some(access), Some((method, target, version, (user_agent, referer)))) = (&self.access, log) {
            access.log(Record {
                at: SystemTime::now(),
                client: peer.client.ip(),
                method,
                target,
                version,
                status: response.status().as_u16(),
                bytes: content_length(response.headers()),
                duration: start.elapsed(),
                upstream: upstream_time,
                request_id: ids.request_id().to_owned(),
                trace_id: ids.trace_id().to_owned(),
                user_agent,
                referer,
            });
        }
        response
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
        let ready = tokio::time::timeout(self.config.hold, async { rx.wait_for(|r| *r).await.is_ok() }).await;
        match ready {
            Ok(true) => Ok(()),
            _ => Err(ProxyError::NotReady(self.config.hold)),
        }
    }

    async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Incoming,
        websocket: bool,
    ) -> Result<(Response<EdgeBody>, Duration), ProxyError> {
        if let (Some(limit), Some(len)) = (self.config.max_body, content_length(&parts.headers)) {
            if len > limit {
                return Err(ProxyError::BodyTooLarge(limit));
            }
        }
        self.admit().await?;

        let client_upgrade = if websocket { parts.extensions.remove::<hyper::upgrade::OnUpgrade>() } else { None };
        let client_version = parts.version;
        parts.uri = self.upstream.uri(parts.uri.path_and_query());
        parts.version = Version::HTTP_11;
        let request = Request::from_parts(parts, UpstreamBody::new(body, self.config.max_body, self.config.body_idle));

        let asked = Instant::now();
        let result = tokio::time::timeout(self.config.request_timeout, self.upstream.client().request(request)).await;
        let mut resp = match result {
            Err(_) => return Err(ProxyError::Timeout(self.config.request_timeout)),
            Ok(Err(e)) => return Err(self.classify(&e)),
            Ok(Ok(r)) => r,
        };
        let took = asked.elapsed();

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(client_upgrade) = client_upgrade else {
                // Main tried to switch protocols on a request that did not ask for WebSocket.
                return Err(ProxyError::Upstream("unexpected 101 Switching Protocols".into()));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
                }
            });
        }
        let (mut parts, body) = resp.into_parts();
        // Answered in the client's protocol version, whatever main spoke.
        parts.version = client_version;
        headers::prepare_response(&mut parts.headers, switching);
        let body = if switching { EdgeBody::empty() } else { EdgeBody::Upstream(body) };
        Ok((Response::from_parts(parts, body), took))
    }

    /// Who failed: the client's body, connecting to main, or main itself.
    fn classify(&self, e: &hyper_util::client::legacy::Error) -> ProxyError {
        let mut source = e.source();
        while let Some(s) = source {
            if let Some(b) = s.downcast_ref::<BodyError>() {
                return match b {
                    BodyError::TooLarge(l) => ProxyError::BodyTooLarge(*l),
                    BodyError::Stalled(d) => ProxyError::BodyStalled(*d),
                    BodyError::Client(c) => ProxyError::Upstream(format!("client body: {c}")),
                };
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if e.is_connect() {
                    return match io.kind() {
                        std::io::ErrorKind::TimedOut => ProxyError::ConnectTimeout(self.config.connect_timeout),
                        _ => ProxyError::Refused(io.to_string()),
                    };
                }
            }
            source = s.source();
        }
        if e.is_connect() {
            let text = e.source().map(|s| s.to_string()).unwrap_or_default();
            if text.contains("timed out") {
                return ProxyError::ConnectTimeout(self.config.connect_timeout);
            }
            return ProxyError::Refused(text);
        }
        ProxyError::Upstream(e.source().map_or_else(|| e.to_string(), |s| s.to_string()))
    }
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn agent(h: &http::HeaderMap) -> (Option<String>, Option<String>) {
    let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (get(header::USER_AGENT), get(header::REFERER))
}
