//! Hostile input: request smuggling attempts never desync the connection to main (nothing hidden in
//! one request ever reaches main as a request of its own), malformed heads and paths are refused,
//! HTTP/2 rapid reset and CONTINUATION floods end the attacking connection only, and connections
//! past the limit are refused while the others are served.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use support::{config, get, limits, raw, Front, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every request line main received (but the asking for them).
async fn paths(origin: &Origin) -> Vec<String> {
    let all: Vec<String> = serde_json::from_str(&get(origin.addr, "/paths", "").await.2).unwrap();
    all.into_iter().filter(|p| p != "GET /paths").collect()
}

#[tokio::test]
async fn smuggling_attempts_never_reach_main_as_requests() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let attempts: Vec<(&str, String)> = vec![
        // CL.TE and TE.CL: both framings in one request.
        (
            "cl-te",
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                5 + smuggled.len()
            ),
        ),
        (
            "te-cl",
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
                smuggled.len()
            ),
        ),
        // Two Content-Lengths that disagree.
        ("cl-cl", format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len())),
        // An obsolete line folding hiding a Transfer-Encoding.
        (
            "obs-fold",
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        // Bare LF line ends around the framing fields.
        (
            "bare-lf",
            format!("POST /a HTTP/1.1\nHost: x\nContent-Length: {}\nTransfer-Encoding: chunked\n\n0\n\n{smuggled}", smuggled.len()),
        ),
        // A chunk size that is not hex, or overflows.
        ("bad-chunk", format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}\r\n0\r\n\r\n")),
        (
            "huge-chunk",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{smuggled}\r\n0\r\n\r\n"),
        ),
        // Transfer_Encoding with an underscore: dropped, never read as framing by main.
        (
            "underscore-te",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        ),
        // HTTP/1.0 with chunked.
        (
            "http10-chunked",
            format!("POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len()),
        ),
        // A Transfer-Encoding main might read differently.
        (
            "te-obfuscated",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        ),
    ];
    for (name, attempt) in &attempts {
        let text = raw(front.addr, attempt.as_bytes(), Duration::from_secs(3)).await;
        let first = text.lines().next().unwrap_or("");
        assert!(first.is_empty() || first.starts_with("HTTP/1.1 "), "{name}: {text:?}");
        // The connection to main still frames correctly: a normal request gets its own answer.
        let (code, _, body) = get(front.addr, "/headers", "").await;
        assert_eq!(code, 200, "{name}");
        assert!(body.contains("\"path\": \"/headers\""), "{name}: {body}");
    }
    let seen = paths(&origin).await;
    assert!(!seen.iter().any(|p| p.contains("/smuggled")), "a hidden request reached main: {seen:?}");
    // Whatever reached main of the attempts had the underscore header dropped.
    let (_, _, body) = get(front.addr, "/headers", "Transfer_Encoding: chunked\r\n").await;
    assert!(!body.to_ascii_lowercase().contains("transfer_encoding"), "{body}");
}

#[tokio::test]
async fn bad_paths_and_oversized_heads_are_refused_before_main() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70 * 1024));
    let big_header = format!("GET /big HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(70 * 1024));
    let many_headers = format!("GET /many HTTP/1.1\r\nHost: x\r\n{}\r\n", (0..150).map(|i| format!("X-H{i}: v\r\n")).collect::<String>());
    let cases: Vec<Vec<u8>> = vec![
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n".to_vec(),
        long_uri.into_bytes(),
        big_header.into_bytes(),
        many_headers.into_bytes(),
    ];
    for case in &cases {
        let text = raw(front.addr, case, Duration::from_secs(3)).await;
        let status = text.split(' ').nth(1).unwrap_or("");
        assert!(
            text.is_empty() || ["400", "414", "431"].contains(&status),
            "{:?}: {text:?}",
            String::from_utf8_lossy(&case[..40.min(case.len())])
        );
    }
    let seen = paths(&origin).await;
    assert!(seen.is_empty(), "refused requests reached main: {seen:?}");
}

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET / http` with `:authority: x`, all from the static table or literal.
fn request_block() -> Vec<u8> {
    // :method GET (2), :path / (4), :scheme http (6), :authority literal "x" (index 1 name).
    vec![0x82, 0x84, 0x86, 0x41, 0x01, b'x']
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the peer closes (or `within`); whether a GOAWAY frame arrived.
async fn read_until_closed(s: &mut tokio::net::TcpStream, within: Duration) -> (bool, bool) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(within, s.read_to_end(&mut buf)).await.is_ok();
    // Walk the frames for a GOAWAY (type 7).
    let mut i = 0;
    let mut goaway = false;
    while i + 9 <= buf.len() {
        let len = u32::from_be_bytes([0, buf[i], buf[i + 1], buf[i + 2]]) as usize;
        goaway |= buf[i + 3] == 7;
        i += 9 + len;
    }
    (closed, goaway)
}

#[tokio::test]
async fn http2_rapid_reset_ends_that_connection_only() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[])); // SETTINGS
                                     // 2,000 requests, each cancelled at once (HEADERS then RST_STREAM CANCEL).
    for i in 0..2000u32 {
        let id = 1 + 2 * i;
        out.extend(frame(1, 0x4 | 0x1, id, &request_block()));
        out.extend(frame(3, 0, id, &8u32.to_be_bytes()));
    }
    let _ = s.write_all(&out).await;
    let (closed, goaway) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed && goaway, "the flood got a GOAWAY and the connection was closed");
    let reached = paths(&origin).await.len();
    assert!(reached < 200, "{reached} of the 2,000 cancelled requests reached main");
    // Everyone else is still served.
    assert_eq!(get(front.addr, "/headers", "").await.0, 200);
}

#[tokio::test]
async fn http2_continuation_flood_ends_that_connection_only() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    let mut head = PREFACE.to_vec();
    head.extend(frame(4, 0, 0, &[]));
    head.extend(frame(1, 0x1, 1, &request_block())); // HEADERS without END_HEADERS
    s.write_all(&head).await.unwrap();
    // Endless CONTINUATION frames of literal headers, never ending the block.
    let mut block = Vec::new();
    for i in 0..200 {
        let name = format!("x-flood-{i}");
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(100);
        block.extend(std::iter::repeat_n(b'v', 100));
    }
    let cont = frame(9, 0, 1, &block);
    let mut sent = 0usize;
    for _ in 0..2000 {
        if s.write_all(&cont).await.is_err() {
            break;
        }
        sent += cont.len();
    }
    let (closed, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "the connection was closed");
    assert!(sent < 200 << 20, "cut off before 200 MiB of headers: {sent}");
    assert!(paths(&origin).await.is_empty(), "the flooding request never reached main");
    assert_eq!(get(front.addr, "/headers", "").await.0, 200);
}

#[tokio::test]
async fn connections_past_the_limit_are_refused_and_the_others_served() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), support::ServerLimits { max_connections: 20, ..limits() }, true).await;
    let mut kept = Vec::new();
    for _ in 0..60 {
        kept.push(tokio::net::TcpStream::connect(front.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut served = 0;
    let mut refused = 0;
    for s in kept.iter_mut() {
        if s.write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n").await.is_err() {
            refused += 1;
            continue;
        }
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200") => served += 1,
            _ => refused += 1,
        }
    }
    assert_eq!(served, 20, "the first 20 are served");
    assert_eq!(refused, 40, "the excess is closed");
    drop(kept);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(front.addr, "/headers", "").await.0, 200, "room again once they close");
}
