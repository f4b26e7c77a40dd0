//! What main receives: forwarding headers, hop-by-hop stripping, ids, and no smuggled upgrades.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use support::*;

#[tokio::test]
async fn forwarding_and_app_service_headers_reach_main() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let (_, head, _) = get(front.addr, "/http10", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "answered in the client's version: {head}");
    let (code, head, body) = get(
        front.addr,
        "/headers?x=1",
        "X-Forwarded-For: 198.51.100.9\r\nX-Client-IP: 6.6.6.6\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX_User: admin\r\nTE: trailers\r\n",
    )
    .await;
    assert_eq!(code, 200, "{head}");
    let h = seen(&body);
    assert_eq!(header(&h, "host"), Some("shop.example"));
    assert_eq!(header(&h, "x-forwarded-for"), Some("198.51.100.9, 127.0.0.1"));
    assert_eq!(header(&h, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&h, "x-forwarded-host"), Some("shop.example"));
    assert_eq!(header(&h, "disguised-host"), Some("shop.example"));
    assert_eq!(header(&h, "x-original-url"), Some("/headers?x=1"));
    assert_eq!(header(&h, "x-appservice-proto"), Some("http"));
    assert_eq!(header(&h, "x-client-ip"), Some("127.0.0.1"), "the client's claim is replaced");
    assert!(header(&h, "x-client-port").unwrap().parse::<u16>().is_ok());
    assert_eq!(header(&h, "via"), Some("1.1 sitecar"));
    let rid = header(&h, "x-request-id").unwrap();
    assert_eq!(rid.len(), 32);
    assert_eq!(header(&h, "x-arr-log-id").unwrap().replace('-', ""), rid);
    assert!(header(&h, "traceparent").unwrap().starts_with("00-"));
    for gone in ["x-hop", "keep-alive", "te", "x_user"] {
        assert_eq!(header(&h, gone), None, "{gone} reached main");
    }
    // hyper re-adds its own connection management; the client's never passes.
    assert_ne!(header(&h, "connection"), Some("close, X-Hop"));
}

#[tokio::test]
async fn incoming_trace_context_and_request_id_are_continued() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (_, _, body) = get(front.addr, "/headers", &format!("traceparent: {tp}\r\ntracestate: a=b\r\nX-Request-Id: my-id-1\r\n")).await;
    let h = seen(&body);
    assert_eq!(header(&h, "traceparent"), Some(tp));
    assert_eq!(header(&h, "tracestate"), Some("a=b"));
    assert_eq!(header(&h, "x-request-id"), Some("my-id-1"));
}

#[tokio::test]
async fn an_h2c_upgrade_is_never_passed_to_main() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let (code, head, body) = get(front.addr, "/headers", "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n").await;
    // Answered as plain HTTP/1.1, with no switch, and main saw no upgrade request.
    assert_eq!(code, 200, "{head}");
    let h = seen(&body);
    assert_eq!(header(&h, "upgrade"), None);
    assert_eq!(header(&h, "http2-settings"), None);
}

#[tokio::test]
async fn http10_without_host_gets_one() {
    let origin = Origin::start();
    let front = Front::start(origin.addr, config(), limits(), true).await;
    let text = raw(front.addr, b"GET /headers HTTP/1.0\r\n\r\n", std::time::Duration::from_secs(5)).await;
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let h = seen(body);
    assert_eq!(header(&h, "host"), Some(front.addr.to_string().as_str()));
    assert_eq!(header(&h, "via"), Some("1.0 sitecar"));
}
