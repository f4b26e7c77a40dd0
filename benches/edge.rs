//! In-process benches of the request path: header rewriting alone, and a full round trip
//! client -> front door -> origin on loopback (one keep-alive connection, so the number is the
//! latency of one proxied request including both hops).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use sitecar_proxy::headers::{is_websocket, prepare_request, Forwarding, Peer};
use sitecar_proxy::{EdgeConfig, EdgeService, ServerLimits, Upstream};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "shop.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("cookie", "session=abc123; theme=dark"),
        ("referer", "https://shop.example.com/"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn headers(c: &mut Criterion) {
    let peer = Peer::new(
        "203.0.113.7:51234".parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        SocketAddr::from(([127, 0, 0, 1], 8080)),
        false,
    );
    let uri: Uri = Uri::from_static("/products/42?ref=home");
    let template = browser_headers();
    c.bench_function("prepare_request (8 browser headers)", |b| {
        b.iter_batched(
            || template.clone(),
            |mut h| {
                let ws = is_websocket(&Method::GET, Version::HTTP_11, &h);
                prepare_request(&mut h, &uri, Version::HTTP_11, ws, &peer, Forwarding::default())
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

async fn origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    addr
}

fn round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let (front, _stop) = rt.block_on(async {
        let main = origin().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let front = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (_tx, rx) = watch::channel(true);
        let config = EdgeConfig {
            hold: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            max_body: None,
            body_idle: Duration::from_secs(10),
            body_min_rate: None,
            forwarding: sitecar_proxy::headers::Forwarding::default(),
            compression: false,
            cache: None,
            offload: None,
        };
        let edge = EdgeService::new(config, Upstream::new(main, Duration::from_secs(1), Duration::from_secs(4)), rx, None, None);
        let limits = ServerLimits {
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 65536,
            max_headers: 100,
            max_connections: 100,
            drain: Duration::from_secs(1),
            write_timeout: Duration::from_secs(10),
            own_http1: true,
        };
        let stop = CancellationToken::new();
        tokio::spawn(sitecar_proxy::serve(listener, edge, limits, Arc::new(Semaphore::new(100)), None, stop.clone()));
        (front, (stop, _tx))
    });
    c.bench_function("edge round trip (keep-alive, loopback)", |b| {
        b.iter_custom(|n| {
            rt.block_on(async {
                let stream = tokio::net::TcpStream::connect(front).await.unwrap_or_else(|e| panic!("{e}"));
                let _ = stream.set_nodelay(true);
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap_or_else(|e| panic!("{e}"));
                tokio::spawn(conn);
                let start = Instant::now();
                for _ in 0..n {
                    let req = http::Request::get("/").header("host", "bench").body(Empty::<Bytes>::new()).unwrap_or_else(|e| panic!("{e}"));
                    send.ready().await.unwrap_or_else(|e| panic!("{e}"));
                    let resp = send.send_request(req).await.unwrap_or_else(|e| panic!("{e}"));
                    let _ = resp.into_body().collect().await;
                }
                start.elapsed()
            })
        })
    });
}

criterion_group!(benches, headers, round_trip);
criterion_main!(benches);
