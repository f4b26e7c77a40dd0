//! The request path called in process, as axum's `app()` is: no front-door listener and no client
//! socket, requests handed to [`EdgeService::handle`] with in-memory bodies, main a real origin
//! process on loopback. Forwarding, cache, offload and refusal rules, each checked on what main
//! saw and what the client got.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use sitecar_proxy::headers::Peer;
use sitecar_proxy::response::EdgeBody;
use sitecar_proxy::{EdgeConfig, EdgeService, Upstream};
use support::{header, seen, Origin};

fn edge(origin: &Origin, config: EdgeConfig) -> (Arc<EdgeService>, tokio::sync::watch::Sender<bool>) {
    let (tx, rx) = tokio::sync::watch::channel(true);
    let upstream = Upstream::new(origin.addr, config.connect_timeout, Duration::from_secs(4));
    (EdgeService::new(config, upstream, rx, None, None), tx)
}

fn peer() -> Arc<Peer> {
    Arc::new(Peer::new(SocketAddr::from(([203, 0, 113, 7], 51000)), SocketAddr::from(([127, 0, 0, 1], 8080)), false))
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "shop.example").body(Empty::new()).unwrap()
}

async fn text(r: Response<EdgeBody>) -> (u16, http::HeaderMap, String) {
    let (parts, body) = r.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn forwarding_headers_are_set_for_main_from_the_peer() {
    let origin = Origin::start();
    let (edge, _ready) = edge(&origin, support::config());
    let (code, _, body) = text(edge.handle(get("/headers?x=1"), &peer()).await).await;
    assert_eq!(code, 200, "{body}");
    let h = seen(&body);
    assert_eq!(header(&h, "x-forwarded-for"), Some("203.0.113.7"));
    assert_eq!(header(&h, "x-forwarded-host"), Some("shop.example"));
    assert_eq!(header(&h, "x-forwarded-proto"), Some("http"));
    assert!(header(&h, "x-request-id").is_some_and(|id| !id.is_empty()), "{h:?}");
}

#[tokio::test]
async fn an_in_memory_body_reaches_main_whole() {
    let origin = Origin::start();
    let (edge, _ready) = edge(&origin, support::config());
    let payload = Bytes::from(vec![b'x'; 100_000]);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/upload")
        .header("host", "shop.example")
        .header("content-length", payload.len())
        .body(Full::new(payload))
        .unwrap();
    let (code, _, body) = text(edge.handle(req, &peer()).await).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("100000"), "main counted the bytes it got: {body}");
}

#[tokio::test]
async fn a_refused_head_is_answered_here_and_never_reaches_main() {
    let origin = Origin::start();
    let (edge, _ready) = edge(&origin, support::config());
    let before = support::get(origin.addr, "/count", "").await.2;
    let req = Request::builder().method(Method::CONNECT).uri("shop.example:443").body(Empty::<Bytes>::new()).unwrap();
    let (code, headers, _) = text(edge.handle(req, &peer()).await).await;
    assert_eq!(code, 405);
    assert!(headers.contains_key("allow"));
    let no_host = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(text(edge.handle(no_host, &peer()).await).await.0, 400);
    let after = support::get(origin.addr, "/count", "").await.2;
    assert_eq!(after.parse::<u64>().unwrap(), before.parse::<u64>().unwrap() + 1, "only the /count probe itself reached main");
}

#[tokio::test]
async fn the_cache_answers_the_second_request_without_main() {
    let origin = Origin::cache_origin();
    let settings = sitecar_config::CacheSettings {
        enabled: true,
        max_bytes: 1 << 20,
        max_object_bytes: 1 << 16,
        lock_timeout: Duration::from_secs(2),
        store_set_cookie: true,
        ..Default::default()
    };
    let cache = sitecar_proxy::cache::Cache::new(&settings, None).unwrap();
    let (edge, ready) = edge(&origin, EdgeConfig { cache: Some(cache), ..support::config() });
    let path = "/pipeline?cc=max-age%3D60";
    let (_, h1, b1) = text(edge.handle(get(path), &peer()).await).await;
    assert!(h1["cache-status"].to_str().unwrap().contains("stored"), "{h1:?}");
    // Main is down now: a fresh hit does not need it.
    ready.send_replace(false);
    let (code, h2, b2) = text(edge.handle(get(path), &peer()).await).await;
    assert_eq!((code, b2.as_str()), (200, b1.as_str()));
    assert!(h2["cache-status"].to_str().unwrap().starts_with("sitecar; hit"), "{h2:?}");
    // A miss waits for main, and gets 503 when it stays down past the hold.
    let config = EdgeConfig { hold: Duration::from_millis(100), ..support::config() };
    let (cold, ready) = self::edge(&origin, config);
    ready.send_replace(false);
    assert_eq!(text(cold.handle(get("/other"), &peer()).await).await.0, 503);
}

#[tokio::test]
async fn offload_serves_files_without_main() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.css"), "body{}").unwrap();
    let rules = [sitecar_config::OffloadRule { prefix: "/static/".into(), dir: dir.path().to_path_buf(), fallthrough: true }];
    let config = EdgeConfig { offload: Some(sitecar_proxy::offload::Offload::new(&rules)), ..support::config() };
    let (edge, ready) = edge(&origin, config);
    ready.send_replace(false);
    let (code, headers, body) = text(edge.handle(get("/static/app.css"), &peer()).await).await;
    assert_eq!((code, body.as_str()), (200, "body{}"));
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/css"), "{headers:?}");
}
