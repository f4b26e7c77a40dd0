//! Failures a client sees: 502, 504, 503 with Retry-After, 413, 400, and slow clients cut off.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn main_refusing_connections_gives_502_naming_the_cause() {
    let nobody = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let front = Front::start(nobody, config(), limits(), true).await;
    let (code, head, body) = get(front.addr, "/", "").await;
    assert_eq!(code, 502, "{head}");
    assert!(body.contains("main refused the connection"), "{body}");
    let rid = head.lines().find_map(|l| l.strip_prefix("x-request-id: ")).unwrap();
    assert!(body.contains(&format!("request id: {rid}")), "{body}");
}

#[tokio::test]
async fn main_answering_garbage_gives_502() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    assert_eq!(get(front.addr, "/garbage", "").await.0, 502);
    assert_eq!(get(front.addr, "/close", "").await.0, 502);
}

#[tokio::test]
async fn main_too_slow_gives_504_within_the_timeout() {
    let origin = Origin::start();
    let mut cfg = config();
    cfg.request_timeout = Duration::from_millis(500);
    let front = Front::start(origin.addr, cfg, limits(), true).await;
    let t = Instant::now();
    let (code, _, body) = get(front.addr, "/slow?s=3", "").await;
    assert_eq!(code, 504);
    assert!(body.contains("did not answer within 500ms"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn not_ready_main_holds_then_answers_503_with_retry_after() {
    let origin = Origin::start();
    let mut cfg = config();
    cfg.hold = Duration::from_millis(400);
    let front = Front::start(origin.addr, cfg, limits(), false).await;
    let t = Instant::now();
    let (code, head, _) = get(front.addr, "/headers", "").await;
    assert_eq!(code, 503);
    assert!(head.to_ascii_lowercase().contains("retry-after: "), "{head}");
    assert!(t.elapsed() >= Duration::from_millis(400));
    let (_, _, count) = get(origin.addr, "/count", "").await;
    assert_eq!(count, "1", "nothing was sent to a main that is not ready (only this /count)");
}

#[tokio::test]
async fn requests_held_during_a_restart_succeed_once_main_is_ready() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), false).await;
    let addr = front.addr;
    let pending: Vec<_> = (0..5).map(|_| tokio::spawn(async move { get(addr, "/headers", "").await.0 })).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    front.ready.send_replace(true);
    for p in pending {
        assert_eq!(p.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn body_over_the_limit_gives_413_without_reaching_main() {
    let origin = Origin::start();
    let mut cfg = config();
    cfg.max_body = Some(1000);
    let front = Front::start(origin.addr, cfg, limits(), true).await;
    let text = raw(front.addr, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // Chunked bodies have no length up front: cut when they pass the limit.
    let mut req = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'a'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let text = raw(front.addr, &req, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let (_, _, count) = get(origin.addr, "/count", "").await;
    assert!(count == "1" || count == "2", "the fixed-length one never reached main: {count}");
}

#[tokio::test]
async fn malformed_requests_get_400_and_never_reach_main() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"[..],
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    ] {
        let text = raw(front.addr, bad, Duration::from_secs(3)).await;
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 400"), "{text:?} for {:?}", String::from_utf8_lossy(bad));
    }
    let (_, _, count) = get(origin.addr, "/count", "").await;
    assert_eq!(count, "1", "malformed requests reached main");
}

#[tokio::test]
async fn silent_connections_and_ones_stalled_inside_the_h2_preface_are_closed_after_the_head_bound() {
    let origin = Origin::start();
    let mut lim = limits();
    lim.header_timeout = Duration::from_millis(800);
    let front = Front::start(origin.addr, config(), lim, true).await;
    for opening in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
        s.write_all(opening).await.unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "still open after {:?}: {n:?}", t.elapsed());
        assert!(t.elapsed() >= Duration::from_millis(700), "closed too early: {:?}", t.elapsed());
    }
    let (_, _, count) = get(origin.addr, "/count", "").await;
    assert_eq!(count, "1", "nothing reached main");
}

#[tokio::test]
async fn a_client_sending_headers_a_byte_at_a_time_is_cut_off() {
    let origin = Origin::start();
    let mut lim = limits();
    lim.header_timeout = Duration::from_secs(1);
    let front = Front::start(origin.addr, config(), lim, true).await;
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    let t = Instant::now();
    let head = b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            if n == 0 || buf.starts_with(b"HTTP/1.1 408") {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "slow client was never cut off");
    assert!(t.elapsed() < Duration::from_secs(3), "cut after {:?}", t.elapsed());
    let (_, _, count) = get(origin.addr, "/count", "").await;
    assert_eq!(count, "1");
}

#[tokio::test]
async fn a_request_body_that_stalls_gets_408() {
    let origin = Origin::start();
    let mut cfg = config();
    cfg.body_idle = Duration::from_millis(500);
    let front = Front::start(origin.addr, cfg, limits(), true).await;
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789").await.unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request body stalled"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let origin = Origin::start();
    let mut lim = limits();
    lim.write_timeout = Duration::from_millis(700);
    let front = Front::start(origin.addr, config(), lim, true).await;
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    let size: u64 = 200 << 20;
    s.write_all(format!("GET /download?n={size} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let first = s.read(&mut buf).await.unwrap();
    assert!(first > 0);
    // Stop reading long enough for every buffer on the way to fill and the deadline to pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = first as u64;
    let t = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n as u64,
            Err(_) => panic!("connection still open, neither data nor close"),
        }
        assert!(t.elapsed() < Duration::from_secs(20));
    }
    assert!(total < size, "the whole body arrived: the stalled client was never cut off");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let origin = Origin::start();
    let mut lim = limits();
    lim.header_timeout = Duration::from_millis(800);
    let front = Front::start(origin.addr, config(), lim, true).await;
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    // The whole response: head, then Content-Length bytes.
    loop {
        let n = s.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
                .unwrap();
            if body.len() >= len {
                assert!(head.starts_with("HTTP/1.1 200"));
                break;
            }
        }
    }
    // Nothing more is sent: the wait for the next request head is bounded too.
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "idle connection not closed: {r:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_request_racing_mains_death_is_held_not_failed() {
    // The gate still says ready, but nothing listens: main just died and the supervisor has not
    // noticed yet. It then marks main not ready, and ready again once main is back.
    let port = free_port();
    let main = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let front = Front::start(main, config(), limits(), true).await;
    let addr = front.addr;
    let request = tokio::spawn(async move { get(addr, "/headers", "").await.0 });
    tokio::time::sleep(Duration::from_millis(20)).await;
    front.ready.send_replace(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let origin = Origin::start_on(port);
    front.ready.send_replace(true);
    assert_eq!(request.await.unwrap(), 200, "held and answered once main was back");
    assert_eq!(front.metrics.retries().0, 1, "the second connection attempt is counted");
    assert_eq!(front.metrics.retries().1, 0);
    drop(origin);
}

#[tokio::test]
async fn an_idempotent_request_main_dropped_is_sent_once_more_a_post_never() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    assert_eq!(get(front.addr, "/close", "").await.0, 502);
    let (code, _, _) = support::request(front.addr, "POST", "/close", "Content-Length: 0\r\n").await;
    assert_eq!(code, 502);
    let paths: Vec<String> = serde_json::from_str(&get(origin.addr, "/paths", "").await.2).unwrap();
    assert_eq!(paths.iter().filter(|p| *p == "GET /close").count(), 2, "GET sent twice: {paths:?}");
    assert_eq!(paths.iter().filter(|p| *p == "POST /close").count(), 1, "POST sent once: {paths:?}");
    assert_eq!(front.metrics.retries().1, 1, "the GET's second send is counted, nothing for the POST");
}

/// Sockets of this machine whose local port is `port`, as `ss` lists them: (state, send-queue bytes).
fn sockets_on(port: u16) -> Vec<(String, u64)> {
    let out = std::process::Command::new("ss").args(["-tanH", "sport", "=", &format!(":{port}")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn a_connection_cut_for_not_reading_is_reset_and_releases_the_kernels_buffers() {
    let origin = Origin::start();
    let mut lim = limits();
    lim.write_timeout = Duration::from_millis(700);
    let front = Front::start(origin.addr, config(), lim, true).await;
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(format!("GET /download?n={} HTTP/1.1\r\nHost: x\r\n\r\n", 64u64 << 20).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1 << 16];
    assert!(s.read(&mut buf).await.unwrap() > 0);
    // The client stops reading: buffers fill, the deadline passes, the front door cuts it off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = sockets_on(front.addr.port());
    assert!(
        left.iter().all(|(state, queued)| state == "LISTEN" || (*queued == 0 && state != "FIN-WAIT-1")),
        "the front door's side still holds the connection: {left:?}"
    );
    // The client learns by a reset, whatever it had still to read.
    let t = Instant::now();
    let reset = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) => break false,
            Ok(Err(e)) => break e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(Ok(_)) => {}
            Err(_) => panic!("neither data nor close"),
        }
        assert!(t.elapsed() < Duration::from_secs(20));
    };
    assert!(reset, "an abortive close (RST), not a FIN after the queued data");
}

#[tokio::test]
async fn a_body_trickling_below_the_minimum_rate_gets_408_and_a_slow_upload_does_not() {
    let origin = Origin::start();
    let mut cfg = config();
    cfg.body_min_rate = Some(sitecar_proxy::body::MinRate { bytes_per_sec: 100, grace: Duration::from_secs(1) });
    let front = Front::start(origin.addr, cfg, limits(), true).await;

    // One byte every 300 ms: each one resets the progress timeout, the rate does not.
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let mut s = s;
        let mut answer = Vec::new();
        for _ in 0..40 {
            if s.write_all(b"x").await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(300), s.read_buf(&mut answer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    let answer = trickle.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("slower than 100 bytes a second"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "cut within the bound: {:?}", started.elapsed());

    // 300 bytes a second for 3 seconds: slow, and above the rate: answered.
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\nConnection: close\r\n\r\n").await.unwrap();
    for _ in 0..9 {
        s.write_all(&[b'y'; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(333)).await;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A main that answers every request as soon as its head has arrived and closes without reading
/// the body (as Python's http.server does with a 501, or a server refusing a body with 413).
async fn early_answering_main(status: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\nConnection: close\r\n\r\nrefused");
                let _ = s.write_all(answer.as_bytes()).await;
                // Closed with the body unread: the kernel resets the connection.
            });
        }
    });
    addr
}

#[tokio::test]
async fn main_answering_before_reading_a_large_body_is_what_the_client_gets() {
    // RFC 9112 §9.5 lets a server answer and close before reading the body; main's kernel then
    // resets the connection under the body still being written.
    for (status, code) in [("413 Content Too Large", "413"), ("501 Not Implemented", "501")] {
        let main = early_answering_main(status).await;
        let front = Front::start(main, config(), limits(), true).await;
        let body = vec![b'x'; 1 << 20];
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..30 {
            let s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            // The client keeps sending while the answer comes back (it may be cut off once answered).
            let body = body.clone();
            let writer = tokio::spawn(async move {
                let _ = w.write_all(head.as_bytes()).await;
                let _ = w.write_all(&body).await;
                w
            });
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut answer)).await;
            let _ = writer.await;
            let text = String::from_utf8_lossy(&answer).to_string();
            let got = text.split(' ').nth(1).unwrap_or("none").to_string();
            if got != code || !text.ends_with("refused") {
                *seen.entry(text).or_insert(0) += 1;
            } else {
                *seen.entry(got).or_insert(0) += 1;
            }
        }
        assert_eq!(seen.get(code), Some(&30), "every client gets main's {code} and its body: {seen:?}");
    }
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_takes_its_request_to_main_with_it() {
    // As nginx (proxy_ignore_client_abort off) and hyper do: main's connection is closed, so
    // main can stop working on an answer nobody will read, and nothing is held for it here.
    for request in [&b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let main = listener.local_addr().unwrap();
        let front = Front::start(main, config(), limits(), true).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            // Main reads the request and never answers; it reports when its connection ends.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(3).any(|w| w == b"abc") && !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "main's connection closed before the request arrived");
                got.extend_from_slice(&buf[..n]);
            }
            let ended = s.read(&mut buf).await;
            let _ = tx.send(ended.map_or(true, |n| n == 0));
        });
        let mut client = tokio::net::TcpStream::connect(front.addr).await.unwrap();
        client.write_all(request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(3), rx).await;
        assert!(
            matches!(ended, Ok(Ok(true))),
            "main's connection stayed open after the client left: {:?}",
            String::from_utf8_lossy(request)
        );
        front.stop.cancel();
    }
}
