//! Test harness: a real origin process and the front door in this process on loopback.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub use sitecar_proxy::ServerLimits;
use sitecar_proxy::{EdgeConfig, EdgeService, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// A port free on loopback right now, from a block of 20 of its own per test process (nextest
/// runs each test in its own process, many at once): below the kernel's ephemeral range, so
/// neither another test nor an outgoing connection is handed the same port in the meantime.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 1000) as u16 * 20;
    for _ in 0..20 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 20;
        if std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// The origin process; killed on drop.
pub struct Origin {
    pub addr: SocketAddr,
    child: Child,
}

impl Origin {
    pub fn start() -> Origin {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Origin {
        Self::script("origin.py", port)
    }

    /// The scriptable origin of the cache tests (tests/support/cache_origin.py).
    pub fn cache_origin() -> Origin {
        Self::script("cache_origin.py", free_port())
    }

    fn script(name: &str, port: u16) -> Origin {
        let script = format!("{}/tests/support/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("python3").arg(script).arg(port.to_string()).stdout(Stdio::piped()).spawn().unwrap();
        // Wait for its "ready" line.
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        Origin { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)), child }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config() -> EdgeConfig {
    EdgeConfig {
        hold: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        max_body: None,
        body_idle: Duration::from_secs(10),
        body_min_rate: None,
        forwarding: sitecar_proxy::headers::Forwarding::default(),
        compression: false,
        cache: None,
        offload: None,
    }
}

pub fn limits() -> ServerLimits {
    ServerLimits {
        header_timeout: Duration::from_secs(5),
        max_header_bytes: 64 * 1024,
        max_headers: 100,
        max_connections: 1000,
        drain: Duration::from_secs(5),
        write_timeout: Duration::from_secs(10),
        // sitecar's own HTTP/1.1 engine, as by default; SITECAR_TEST_ENGINE=hyper runs these
        // tests on hyper's server.
        own_http1: std::env::var("SITECAR_TEST_ENGINE").is_ok_and(|e| e != "hyper") || std::env::var("SITECAR_TEST_ENGINE").is_err(),
    }
}

/// The front door on an ephemeral port, forwarding to `main`.
pub struct Front {
    pub addr: SocketAddr,
    pub ready: watch::Sender<bool>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    /// The front door's metrics (in a registry of its own).
    pub metrics: Arc<sitecar_proxy::metrics::HttpMetrics>,
}

impl Front {
    pub async fn start(main: SocketAddr, config: EdgeConfig, limits: ServerLimits, ready: bool) -> Front {
        Self::start_upstream(Upstream::new(main, config.connect_timeout, Duration::from_secs(4)), config, limits, ready).await
    }

    /// As [`Front::start`], with main reached as `proxy` says (HTTP/2 to main by its flag).
    pub async fn start_with_proxy(
        main: SocketAddr,
        config: EdgeConfig,
        limits: ServerLimits,
        proxy: &sitecar_config::ProxySettings,
    ) -> Front {
        let h2 = sitecar_proxy::upstream::Http2Main::for_settings(proxy, main);
        Self::start_upstream(Upstream::new(main, config.connect_timeout, Duration::from_secs(4)).with_http2(h2), config, limits, true).await
    }

    async fn start_upstream(upstream: Upstream, config: EdgeConfig, limits: ServerLimits, ready: bool) -> Front {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(ready);
        let metrics = Arc::new(sitecar_proxy::metrics::HttpMetrics::new(&prometheus::Registry::new()).unwrap());
        let edge = EdgeService::new(config, upstream, rx, None, Some(metrics.clone()));
        let stop = CancellationToken::new();
        let conns = Arc::new(Semaphore::new(limits.max_connections));
        let task = tokio::spawn(sitecar_proxy::serve(listener, edge, limits, conns, None, stop.clone()));
        Front { addr, ready: tx, stop, task, metrics }
    }
}

impl Front {
    /// The front door over TLS with `certs`, reloading them every 200 ms when their files change.
    pub async fn start_tls(main: SocketAddr, certs: Arc<sitecar_proxy::tls::Certificates>) -> Front {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(true);
        let config = config();
        let metrics = Arc::new(sitecar_proxy::metrics::HttpMetrics::new(&prometheus::Registry::new()).unwrap());
        let upstream = Upstream::new(main, config.connect_timeout, Duration::from_secs(4));
        let edge = EdgeService::new(config, upstream, rx, None, Some(metrics.clone()));
        let stop = CancellationToken::new();
        tokio::spawn(certs.clone().watch(Duration::from_millis(200), stop.clone()));
        let acceptor = tokio_rustls::TlsAcceptor::from(sitecar_proxy::tls::server_config(certs).unwrap());
        let conns = Arc::new(Semaphore::new(100));
        let task = tokio::spawn(sitecar_proxy::serve(listener, edge, limits(), conns, Some(acceptor), stop.clone()));
        Front { addr, ready: tx, stop, task, metrics }
    }
}

/// Sends raw bytes and reads until the peer closes or `within` passes.
pub async fn raw(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// A one-shot HTTP/1.1 request with `Connection: close`; (status, headers text, body).
pub async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    request(addr, "GET", path, extra).await
}

/// As [`get`], with any method (and no body).
pub async fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> (u16, String, String) {
    let text = raw(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
        Duration::from_secs(15),
    )
    .await;
    // Interim responses (1xx) before the final one are skipped, as clients do.
    let mut rest = text.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let code: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        if (100..200).contains(&code) && code != 101 {
            rest = body;
            continue;
        }
        return (code, head.to_string(), body.to_string());
    }
}

/// The request head the origin saw, from its /headers answer (case-insensitive lookups).
pub fn seen(body: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_ascii_lowercase(), p[1].as_str().unwrap().to_string()))
        .collect()
}

/// A response header's value from a head as [`get`] returns it (case-insensitive name).
pub fn response_header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// An HTTP/2 client connection (h2c with prior knowledge) to `addr`.
pub async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    send
}

/// How many requests for `path` (with its query) reached the cache origin.
pub async fn reached(origin: &Origin, path: &str) -> u32 {
    get(origin.addr, &format!("/_count?p={}", encode(path)), "").await.2.parse().unwrap()
}

/// A path and query as one query parameter's value.
fn encode(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The last request head the cache origin saw for `path` (path and query), as its JSON list of
/// [name, value] pairs.
pub async fn cache_origin_saw(origin: &Origin, path: &str) -> serde_json::Value {
    serde_json::from_str(&get(origin.addr, &format!("/_seen?p={}", encode(path)), "").await.2).unwrap()
}
