//! The embedded demo stack of `sitecar up` without a spec: a main web app and a counter sidecar,
//! both served by hidden subcommands of this binary, wired through the real supervisor and
//! front door.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The demo spec, pointing at this very binary.
pub fn spec() -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe()?.display().to_string();
    let quoted = format!("'{}'", exe.replace('\'', r"'\''"));
    let counter_port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
    Ok(serde_json::json!({
        "sitecontainers": [
            {"name": "counter", "properties": {"image": "sitecar/demo-counter", "isMain": false, "targetPort": counter_port.to_string(),
                "inheritAppSettingsAndConnectionStrings": false}},
            {"name": "web", "properties": {"image": "sitecar/demo-web", "isMain": true, "targetPort": "8080",
                "environmentVariables": [{"name": "COUNTER_ADDR", "value": "COUNTER_ADDR"}]}}
        ],
        "appSettings": {"COUNTER_ADDR": format!("127.0.0.1:{counter_port}"), "GREETING": "Hello from the sitecar demo"},
        "local": {"containers": {
            "counter": {"command": format!("exec {quoted} demo-sidecar")},
            "web": {"command": format!("exec {quoted} demo-app")}
        }, "gracePeriodSeconds": 5}
    }))
}

fn page(body: String, kind: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    if let Ok(v) = http::HeaderValue::from_str(kind) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

async fn serve<F, Fut>(port: u16, handler: F) -> anyhow::Result<()>
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send,
{
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("listening on 127.0.0.1:{port}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => a?,
            _ = term.recv() => { println!("SIGTERM: bye"); return Ok(()); }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// The counter sidecar: `/incr` adds one and answers the count.
pub async fn sidecar(port: u16) -> anyhow::Result<()> {
    let count = Arc::new(AtomicU64::new(0));
    serve(port, move |req| {
        let count = count.clone();
        async move {
            if req.uri().path() == "/incr" {
                page((count.fetch_add(1, Ordering::SeqCst) + 1).to_string(), "text/plain")
            } else {
                page("counter sidecar: GET /incr".into(), "text/plain")
            }
        }
    })
    .await
}

/// Asks the counter sidecar over localhost.
async fn count(addr: &str) -> String {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /incr HTTP/1.0\r\nHost: localhost\r\n\r\n").await.ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        buf.split("\r\n\r\n").nth(1).map(str::to_owned)
    };
    attempt.await.unwrap_or_else(|| "unavailable (the sidecar is restarting?)".into())
}

/// The main web app: a page showing the visit count kept by the sidecar and what the front door
/// told the app about the request.
pub async fn app(port: u16) -> anyhow::Result<()> {
    serve(port, |req| async move {
        let counter = std::env::var("COUNTER_ADDR").unwrap_or_default();
        match req.uri().path() {
            "/robots933456.txt" => page(String::new(), "text/plain"),
            "/api/visits" => page(count(&counter).await, "text/plain"),
            _ => {
                let visits = count(&counter).await;
                let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
                let rows: String = ["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-client-ip", "x-arr-log-id", "x-request-id", "traceparent", "via"]
                    .iter()
                    .map(|h| format!("<tr><th>{h}</th><td>{}</td></tr>", esc(req.headers().get(*h).and_then(|v| v.to_str().ok()).unwrap_or("-"))))
                    .collect();
                let greeting = esc(&std::env::var("GREETING").unwrap_or_default());
                let site = esc(&std::env::var("WEBSITE_SITE_NAME").unwrap_or_default());
                let port = std::env::var("PORT").unwrap_or_default();
                page(
                    format!(
                        "<!doctype html><html><head><meta charset=utf-8><title>sitecar demo</title>\
                         <style>body{{font:15px system-ui;margin:2em;max-width:50em}}th{{text-align:left;padding-right:1em}}</style></head>\
                         <body><h1>{greeting}</h1><p>Visits counted by the <b>counter</b> sidecar: <b id=visits>{visits}</b></p>\
                         <p>Main app of site <b>{site}</b>, listening on internal port {port}; the front door forwarded this request with:</p>\
                         <table>{rows}</table></body></html>"
                    ),
                    "text/html; charset=utf-8",
                )
            }
        }
    })
    .await
}
