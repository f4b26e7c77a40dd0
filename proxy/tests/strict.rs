//! What the front door refuses before main sees it, each rule named after its section: Host
//! (RFC 9112 §3.2, RFC 9113 §8.3.1), CONNECT, transfer codings (RFC 9112 §6.1), and a client's
//! broken chunked body as the client's fault.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use support::{config, get, header, limits, raw, seen, Front, Origin};

/// Every request line main received (but the asking for them).
async fn paths(origin: &Origin) -> Vec<String> {
    let all: Vec<String> = serde_json::from_str(&get(origin.addr, "/paths", "").await.2).unwrap();
    all.into_iter().filter(|p| p != "GET /paths").collect()
}

/// A raw request on its own connection: (status, the whole answer); the connection must close.
async fn refused(front: &Front, request: &str) -> (u16, String) {
    let text = raw(front.addr, request.as_bytes(), Duration::from_secs(5)).await;
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

#[tokio::test]
async fn rfc9112_s3_2_host_missing_doubled_or_invalid_gets_400_and_never_reaches_main() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    for (what, request) in [
        ("missing", "GET /no-host HTTP/1.1\r\n\r\n"),
        ("two", "GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
        ("space", "GET /bad-host HTTP/1.1\r\nHost: local host\r\n\r\n"),
        ("userinfo", "GET /bad-host2 HTTP/1.1\r\nHost: user@evil.example\r\n\r\n"),
        ("port", "GET /bad-host3 HTTP/1.1\r\nHost: a.example:80x\r\n\r\n"),
        ("absolute without Host", "GET http://a.example/abs-no-host HTTP/1.1\r\n\r\n"),
    ] {
        let (code, text) = refused(&front, request).await;
        assert_eq!(code, 400, "{what}: {text}");
        assert!(text.to_ascii_lowercase().contains("connection: close"), "{what}: {text}");
        assert!(text.contains("request id: "), "refused by the edge (answered, logged, counted): {what}: {text}");
    }
    assert!(paths(&origin).await.is_empty(), "main saw: {:?}", paths(&origin).await);
    // Good hosts pass: a name with a port, an IPv6 literal, and HTTP/1.0 without Host (supplied).
    for request in [
        "GET /headers HTTP/1.1\r\nHost: shop.example:8080\r\nConnection: close\r\n\r\n",
        "GET /headers HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
        "GET /headers HTTP/1.0\r\n\r\n",
    ] {
        let text = raw(front.addr, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(text.starts_with("HTTP/1.") && text.split(' ').nth(1) == Some("200"), "{request:?}: {text}");
    }
    // A client error is no error of main's.
    let metrics_text = format!("{:?}", front.metrics.recent_errors());
    assert!(metrics_text.contains("bad_request"), "{metrics_text}");
}

#[tokio::test]
async fn rfc9112_s3_2_2_an_absolute_target_and_its_host_tell_main_one_host() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let text = raw(
        front.addr,
        b"GET http://target.example/headers HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let h = seen(body);
    assert_eq!(header(&h, "host"), Some("target.example"), "{h:?}");
    assert_eq!(header(&h, "x-forwarded-host"), Some("target.example"));
    assert_eq!(header(&h, "disguised-host"), Some("target.example"));
}

#[tokio::test]
async fn rfc9113_s8_3_1_host_and_authority_that_disagree_get_400() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let mut send = support::h2(front.addr).await;
    let req = http::Request::get("http://a.example/h2-mismatch")
        .header("host", "b.example")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    let req = http::Request::get("http://a.example/headers").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200, "the same host is fine");
    assert_eq!(paths(&origin).await, ["GET /headers"]);
}

#[tokio::test]
async fn connect_is_not_a_front_door_method() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let (code, text) = refused(&front, "CONNECT main.example:443 HTTP/1.1\r\nHost: main.example:443\r\n\r\n").await;
    assert_eq!(code, 405, "{text}");
    assert!(text.contains("allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS") || text.contains("Allow: GET"), "{text}");
    assert!(paths(&origin).await.is_empty());
}

#[tokio::test]
async fn rfc9112_s6_1_only_chunked_last_and_once() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let (code, text) =
        refused(&front, "POST /gz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    assert_eq!(code, 501, "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    let (code, text) =
        refused(&front, "POST /twice HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .await;
    assert_eq!(code, 400, "{text}");
    assert!(paths(&origin).await.is_empty(), "{:?}", paths(&origin).await);
}

#[tokio::test]
async fn a_clients_malformed_chunked_body_is_a_400_not_mains_502() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    // A valid first chunk, then a size line that is not hex.
    let (code, text) =
        refused(&front, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n").await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("the request body"), "{text}");
    let recent = front.metrics.recent_errors();
    assert_eq!(recent.last().unwrap()["kind"], "bad_request", "{recent:?}");
}

#[tokio::test]
async fn rfc9113_s3_4_a_bad_http2_preface_gets_goaway_protocol_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await.unwrap().unwrap();
    // One GOAWAY frame: length 8, type 7, stream 0, last stream 0, error PROTOCOL_ERROR (1); closed.
    assert_eq!(got, [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    // Other bytes are HTTP/1: a PUT is not mistaken for it.
    let text =
        raw(front.addr, b"PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(paths(&origin).await, ["PUT /put"]);
}
