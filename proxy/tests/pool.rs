//! The pool of keep-alive connections to main: reused once a response has been read to its end
//! (announced length or chunked), dropped when a client cuts a response short, closed after the
//! idle timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sitecar_proxy::{EdgeService, Upstream};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// The front door with pooled connections idle at most `idle`; the pool, to look into.
async fn front(main: SocketAddr, idle: Duration) -> (SocketAddr, Upstream, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = watch::channel(true);
    let config = config();
    let upstream = Upstream::new(main, config.connect_timeout, idle);
    let edge = EdgeService::new(config, upstream.clone(), rx, None, None);
    let stop = CancellationToken::new();
    tokio::spawn(sitecar_proxy::serve(listener, edge, limits(), Arc::new(Semaphore::new(100)), None, stop.clone()));
    (addr, upstream, stop)
}

/// The port main saw the request come from: which pooled connection carried it.
async fn peer(addr: SocketAddr) -> u64 {
    let (status, _, body) = get(addr, "/headers", "").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["peer"].as_u64().unwrap()
}

#[tokio::test]
async fn a_connection_comes_back_after_a_full_response_of_either_framing() {
    let origin = Origin::start();
    let (addr, upstream, _stop) = front(origin.addr, Duration::from_secs(30)).await;
    let first = peer(addr).await;
    assert_eq!(peer(addr).await, first, "announced length: the same connection again");
    let (status, _, body) = get(addr, "/download?n=100000", "").await;
    assert_eq!((status, body.len() > 100_000), (200, true), "chunked download read to its end");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(peer(addr).await, first, "chunked: the same connection again");
    assert_eq!(upstream.idle_connections(), 1);
}

#[tokio::test]
async fn a_response_cut_short_by_the_client_takes_its_connection_with_it() {
    let origin = Origin::start();
    let (addr, upstream, _stop) = front(origin.addr, Duration::from_secs(30)).await;
    let first = peer(addr).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /download?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(upstream.idle_connections(), 0, "the download holds the only connection");
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.idle_connections(), 0, "a connection in the middle of a body is never reused");
    let next = peer(addr).await;
    assert_ne!(next, first, "a new connection");
    let (_, _, count) = get(origin.addr, "/count", "").await;
    assert_eq!(count, "4", "three requests and this one");
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let origin = Origin::start();
    let (addr, upstream, _stop) = front(origin.addr, Duration::from_millis(300)).await;
    let first = peer(addr).await;
    assert_eq!(peer(addr).await, first);
    assert_eq!(upstream.idle_connections(), 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(upstream.idle_connections(), 0, "closed while nothing else happened");
    assert_ne!(peer(addr).await, first, "a new connection after the idle timeout");
}
