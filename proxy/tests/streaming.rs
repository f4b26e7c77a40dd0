//! Bodies stream both ways: 100 MiB up and down without memory growing with them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: u64 = 100 << 20;

/// Resident and peak resident memory of this process (the front door runs in it), in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field =
        |name: &str| status.lines().find(|l| l.starts_with(name)).unwrap().split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_upload_and_download_stream_with_flat_memory() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let (before, _) = memory();

    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let block = vec![b'u'; 1 << 16];
    let mut sent = 0;
    while sent < SIZE {
        s.write_all(&block).await.unwrap();
        sent += block.len() as u64;
    }
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&SIZE.to_string()), "main got all bytes: {answer}");

    let stream = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("/download?n={SIZE}")).header("host", "x").body(Empty::<Bytes>::new()).unwrap();
    let mut body = send.send_request(req).await.unwrap().into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            got += d.len() as u64;
        }
    }
    assert_eq!(got, SIZE);

    let (_, peak) = memory();
    let grew = peak.saturating_sub(before);
    assert!(grew < 40 * 1024, "memory grew by {grew} KiB while streaming 200 MiB");
}
