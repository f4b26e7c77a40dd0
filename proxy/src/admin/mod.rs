//! The admin API: `/healthz`, `/readyz`, `/metrics`, `/status`, `/logs/<name>`, and
//! `POST /containers/<name>/restart`. Loopback clients need nothing; any other client needs the
//! bearer token (compared in constant time), and without a token only loopback is served.
//! [`client`] is its other end, the commands that read a running stack.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod client;

/// What the admin API shows of the running stack; the binary implements it over the supervisor.
pub trait StackView: Send + Sync {
    /// Main is ready for traffic.
    fn ready(&self) -> bool;
    /// Every container and the proxy, as JSON.
    fn status(&self) -> serde_json::Value;
    /// Recent log lines of a container, oldest first; `None` when there is no such container.
    fn logs(&self, name: &str, lines: usize) -> Option<serde_json::Value>;
    /// Restarts a container; false when there is none.
    fn restart(&self, name: &str) -> bool;
    /// Brings metrics that are read from the stack up to date, just before a scrape.
    fn refresh_metrics(&self) {}
    /// New log lines of a container as JSON, until the receiver is dropped.
    fn follow(&self, _name: &str) -> Option<tokio::sync::mpsc::Receiver<String>> {
        None
    }
    /// Re-reads the spec; the answer is `Ok(containers restarted)` or `Err(problems)`. `None`
    /// when this stack cannot reload.
    fn reload(&self) -> Option<tokio::sync::oneshot::Receiver<Result<Vec<String>, Vec<String>>>> {
        None
    }
    /// Stops the whole stack in order (`sitecar down`); false when this instance cannot.
    fn shutdown(&self) -> bool {
        false
    }
}

/// The admin API's view in `sitecar proxy` mode: no containers, the app is someone else's and
/// ready by definition.
#[derive(Debug)]
pub struct ProxyOnly {
    pub listeners: Vec<String>,
    pub upstream: String,
}

impl StackView for ProxyOnly {
    fn ready(&self) -> bool {
        true
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({"main": "ready", "main_addr": self.upstream, "containers": [], "proxy": {"listen": self.listeners}})
    }

    fn logs(&self, _: &str, _: usize) -> Option<serde_json::Value> {
        None
    }

    fn restart(&self, _: &str) -> bool {
        false
    }
}

/// Responses of the admin API: whole, or streamed (server-sent events).
pub type AdminBody = BoxBody<Bytes, Infallible>;

/// The admin API's state.
pub struct Admin {
    pub registry: Registry,
    pub token: Option<String>,
    pub stack: Arc<dyn StackView>,
    /// The front door's metrics, summarised in `/status` for the status page.
    pub http: Option<Arc<crate::metrics::HttpMetrics>>,
    /// The shared cache, for `POST /cache/purge` and the totals in `/status`.
    pub cache: Option<Arc<crate::cache::Cache>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admin")
    }
}

/// Equal length and content, in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Response<AdminBody> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<AdminBody> {
    reply(status, "application/json", v.to_string())
}

impl Admin {
    fn authorized<B>(&self, client: SocketAddr, req: &Request<B>) -> bool {
        if client.ip().is_loopback() {
            return true;
        }
        let Some(token) = &self.token else { return false };
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        given.is_some_and(|g| constant_time_eq(g, token.as_bytes()))
    }

    pub fn handle<B>(&self, client: SocketAddr, req: Request<B>) -> Response<AdminBody> {
        if !self.authorized(client, &req) {
            let mut r = reply(StatusCode::UNAUTHORIZED, "text/plain", "admin API: a bearer token is required from this address\n");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or("");
        match (req.method(), path) {
            (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/readyz") if self.stack.ready() => reply(StatusCode::OK, "text/plain", "ready\n"),
            (&Method::GET, "/readyz") => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "main is not ready\n"),
            (&Method::GET, "/metrics") => self.metrics(),
            (&Method::GET, "/status") => json(StatusCode::OK, &self.status()),
            (&Method::GET, "/") => {
                let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", crate::page::STATUS_PAGE);
                r.headers_mut().insert(
                    "content-security-policy",
                    HeaderValue::from_static("default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"),
                );
                r
            }
            (&Method::GET, p) if p.starts_with("/logs/") && query.split('&').any(|kv| kv == "follow=1") => {
                match self.stack.follow(&p["/logs/".len()..]) {
                    Some(rx) => events(rx),
                    None => reply(StatusCode::NOT_FOUND, "text/plain", "no such container\n"),
                }
            }
            (&Method::GET, p) if p.starts_with("/logs/") => {
                let lines = query.split('&').find_map(|kv| kv.strip_prefix("lines=")).and_then(|n| n.parse().ok()).unwrap_or(100);
                match self.stack.logs(&p["/logs/".len()..], lines) {
                    Some(v) => json(StatusCode::OK, &v),
                    None => reply(StatusCode::NOT_FOUND, "text/plain", "no such container\n"),
                }
            }
            (&Method::POST, p) if p.starts_with("/containers/") && p.ends_with("/restart") => {
                let name = &p["/containers/".len()..p.len() - "/restart".len()];
                if self.stack.restart(name) {
                    reply(StatusCode::ACCEPTED, "text/plain", "restarting\n")
                } else {
                    reply(StatusCode::NOT_FOUND, "text/plain", "no such container\n")
                }
            }
            (&Method::POST, "/cache/purge") => self.purge(query),
            (&Method::POST, "/shutdown") if self.stack.shutdown() => reply(StatusCode::ACCEPTED, "text/plain", "stopping\n"),
            (&Method::POST, "/shutdown") => reply(StatusCode::NOT_FOUND, "text/plain", "this instance has no stack to stop\n"),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }

    /// `POST /cache/purge?url=/path` drops one path (every host and query string);
    /// `?prefix=/static/` every path under a prefix.
    fn purge(&self, query: &str) -> Response<AdminBody> {
        let Some(cache) = self.cache.as_ref().filter(|c| c.enabled()) else {
            return reply(StatusCode::NOT_FOUND, "text/plain", "the cache is not enabled (cache.enabled in the spec)\n");
        };
        let arg = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(|v| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
        };
        let (path, prefix) = match (arg("url"), arg("prefix")) {
            (Some(u), None) => (u, false),
            (None, Some(p)) => (p, true),
            _ => return reply(StatusCode::BAD_REQUEST, "text/plain", "give exactly one of ?url=/path or ?prefix=/path/\n"),
        };
        // A full URL names its path.
        let path = match path.parse::<http::Uri>() {
            Ok(u) if u.scheme().is_some() => u.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned()),
            _ => path,
        };
        if !path.starts_with('/') {
            return reply(StatusCode::BAD_REQUEST, "text/plain", "the path must start with /\n");
        }
        let purged = cache.purge(&path, prefix);
        json(StatusCode::OK, &serde_json::json!({"purged": purged, "path": path, "prefix": prefix}))
    }
}

impl Admin {
    /// `POST /reload`: 200 with the containers restarted, 422 with every problem (the running
    /// stack unchanged), 404 when this instance has no spec to re-read.
    async fn reload(&self) -> Response<AdminBody> {
        let Some(rx) = self.stack.reload() else {
            return reply(StatusCode::NOT_FOUND, "text/plain", "this instance cannot reload\n");
        };
        match rx.await {
            Ok(Ok(restarted)) => json(StatusCode::OK, &serde_json::json!({"reloaded": true, "restarted": restarted})),
            Ok(Err(problems)) => json(StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!({"reloaded": false, "problems": problems})),
            Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "the stack is stopping\n"),
        }
    }

    /// The stack's status with the front door's traffic totals and the time they were taken.
    fn status(&self) -> serde_json::Value {
        let mut v = self.stack.status();
        if let (Some(http), Some(obj)) = (&self.http, v.as_object_mut()) {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
            let mut traffic = http.summary();
            if let Some(t) = traffic.as_object_mut() {
                t.insert("history".into(), http.history.json());
            }
            obj.insert("traffic".into(), traffic);
            obj.insert("recent_errors".into(), serde_json::Value::Array(http.recent_errors()));
            obj.insert("now_ms".into(), serde_json::json!(now));
        }
        if let (Some(cache), Some(obj)) = (self.cache.as_ref().filter(|c| c.enabled()), v.as_object_mut()) {
            obj.insert("cache".into(), serde_json::json!({"entries": cache.entries(), "bytes": cache.bytes()}));
        }
        v
    }

    /// Prometheus text, after the stack's own metrics were brought up to date.
    fn metrics(&self) -> Response<AdminBody> {
        self.stack.refresh_metrics();
        match TextEncoder::new().encode_to_string(&self.registry.gather()) {
            Ok(text) => reply(StatusCode::OK, "text/plain; version=0.0.4", text),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
        }
    }
}

/// A server-sent event stream: one `data:` event per line received.
fn events(rx: tokio::sync::mpsc::Receiver<String>) -> Response<AdminBody> {
    let opening = futures_util::stream::once(async { Ok::<_, Infallible>(Frame::data(Bytes::from_static(b": following\n\n"))) });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: {line}\n\n")))), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(opening.chain(lines))));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Serves the admin API on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: CancellationToken) {
    if let Some(http) = &admin.http {
        tokio::spawn(http.clone().record_history(shutdown.clone()));
    }
    loop {
        let (stream, client) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let admin = admin.clone();
                async move {
                    if req.method() == Method::POST && req.uri().path() == "/reload" && admin.authorized(client, &req) {
                        return Ok::<_, Infallible>(admin.reload().await);
                    }
                    Ok::<_, Infallible>(admin.handle(client, req))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl StackView for Fixed {
        fn ready(&self) -> bool {
            true
        }
        fn status(&self) -> serde_json::Value {
            serde_json::json!({"containers": []})
        }
        fn logs(&self, _: &str, _: usize) -> Option<serde_json::Value> {
            None
        }
        fn restart(&self, name: &str) -> bool {
            name == "web"
        }
    }

    fn admin(token: Option<&str>) -> Admin {
        Admin { registry: Registry::new(), token: token.map(String::from), stack: Arc::new(Fixed), http: None, cache: None }
    }

    fn get(path: &str, auth: Option<&str>) -> Request<()> {
        let mut r = Request::get(path);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn non_loopback_clients_need_the_token() {
        let far: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let near: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(admin(None).handle(far, get("/status", None)).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(admin(None).handle(far, get("/status", Some("Bearer anything"))).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(admin(Some("s3cret")).handle(far, get("/status", Some("Bearer wrong!"))).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(admin(Some("s3cret")).handle(far, get("/status", Some("Bearer s3cret"))).status(), StatusCode::OK);
        assert_eq!(admin(Some("s3cret")).handle(near, get("/status", None)).status(), StatusCode::OK);
        assert_eq!(admin(None).handle(near, get("/readyz", None)).status(), StatusCode::OK);
        let post = |p: &str| Request::post(p).body(()).unwrap();
        assert_eq!(admin(None).handle(near, post("/containers/web/restart")).status(), StatusCode::ACCEPTED);
        assert_eq!(admin(None).handle(near, post("/containers/nope/restart")).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
