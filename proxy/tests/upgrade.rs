//! WebSocket tunnelled to main; HTTP/2 with prior knowledge (h2c) forwarded as HTTP/1.1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A WebSocket handshake to the origin's echo through the front door: the stream and the head.
async fn open_websocket(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    (s, head)
}

#[tokio::test]
async fn websocket_echo_through_the_front_door() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let (mut s, head) = open_websocket(front.addr).await;
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // A masked text frame "hello"; the origin echoes bytes back through the tunnel.
    let frame = [0x81u8, 0x85, 1, 2, 3, 4, b'h' ^ 1, b'e' ^ 2, b'l' ^ 3, b'l' ^ 4, b'o' ^ 1];
    for _ in 0..3 {
        s.write_all(&frame).await.unwrap();
        let mut back = [0u8; 11];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
        assert_eq!(back, frame);
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_requests_are_forwarded() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let mut send = support::h2(front.addr).await;
    for i in 0..3 {
        let req = http::Request::get(format!("http://shop.example/headers?i={i}")).body(Empty::<Bytes>::new()).unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["version"], "HTTP/1.1", "main speaks HTTP/1.1");
        let h = seen(std::str::from_utf8(&body).unwrap());
        assert_eq!(header(&h, "host"), Some("shop.example"), "host from :authority");
        assert_eq!(header(&h, "via"), Some("2 sitecar"));
    }
}

#[tokio::test]
async fn an_h2_preface_arriving_in_pieces_is_still_http2_and_http1_is_not_mistaken_for_it() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    // The preface split across writes (and TCP segments), then an empty SETTINGS frame: the
    // server's first frame back is its own SETTINGS (type 4), not an HTTP/1.1 error.
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!(head[3], 4, "first frame {head:?}");
    // An HTTP/1.1 request that starts like the preface ("P...") is HTTP/1.1.
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(b"PUT /headers HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut text)).await.unwrap().unwrap();
    assert!(text.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&text));
}

#[tokio::test]
async fn bytes_after_a_closed_websocket_never_reach_main() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let (mut s, head) = open_websocket(front.addr).await;
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // Main ends the WebSocket; the tunnel closes.
    s.write_all(b"CLOSE").await.unwrap();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(ended, Ok(Ok(_))), "the client side was closed too");
    // Whatever the client sends now, even an HTTP request, goes nowhere.
    let _ = s.write_all(b"GET /after-close HTTP/1.1\r\nHost: x\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, _, body) = support::get(origin.addr, "/paths", "").await;
    assert!(!body.contains("/after-close"), "{body}");
}
