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

/// What main saw, comparable across two front doors: names lowercased, each name's values in
/// order, and the values made per request or per connection reduced to their shape.
fn comparable(body: &str) -> Vec<(String, String)> {
    let mut h = seen(body);
    for (name, value) in h.iter_mut() {
        match name.as_str() {
            "x-client-port" => *value = "port".into(),
            "x-request-id" | "x-arr-log-id" if value.len() >= 32 => *value = format!("id of {}", value.len()),
            "traceparent" => *value = format!("{}..{}", &value[..3.min(value.len())], &value[value.len().saturating_sub(3)..]),
            _ => {}
        }
    }
    h.sort_by(|a, b| a.0.cmp(&b.0));
    h
}

#[tokio::test]
async fn the_direct_path_and_the_general_path_rewrite_a_request_alike() {
    // sitecar's engine sends plain GETs by its direct path (no header map); hyper's server
    // sends everything by the general one: main must see the same head either way.
    let origin = Origin::start();
    let mut cfg = config();
    cfg.compression = true;
    let direct = Front::start(origin.addr, cfg.clone(), sitecar_proxy::ServerLimits { own_http1: true, ..limits() }, true).await;
    let general = Front::start(origin.addr, cfg, sitecar_proxy::ServerLimits { own_http1: false, ..limits() }, true).await;
    let cases = [
        "",
        "X-Forwarded-For: 198.51.100.9\r\nX-Forwarded-For: 203.0.113.1\r\nX-Client-IP: 6.6.6.6\r\nX-Client-Port: 1\r\n",
        "Connection: X-Hop, keep-alive\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: x\r\n",
        "X_User: admin\r\nX-Original-URL: /admin\r\nX-ARR-LOG-ID: forged\r\nDisguised-Host: evil\r\nX-Forwarded-Host: evil\r\n",
        "X-Request-Id: my-id-1\r\nX-Request-Id: my-id-2\r\nVia: 1.0 upstream\r\nAccept: a\r\nAccept: b\r\n",
        "X-Request-Id: bad id with spaces\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracestate: a=1\r\n",
        "traceparent: garbage\r\ntracestate: a=1\r\nX-Forwarded-For: \r\nUser-Agent: ua\r\nReferer: /r\r\n",
        "Expect: 100-continue\r\nX-Appservice-Proto: ftp\r\nX-Forwarded-Proto: https\r\n",
    ];
    for extra in cases {
        for method in ["GET", "HEAD", "OPTIONS", "DELETE"] {
            let (code_d, head_d, body_d) = request(direct.addr, method, "/headers?q=1", extra).await;
            let (code_g, head_g, body_g) = request(general.addr, method, "/headers?q=1", extra).await;
            assert_eq!(code_d, code_g, "{method} {extra:?}: {head_d}\n{head_g}");
            if method == "GET" && extra.contains("Accept: a") {
                // Each took its own path: names as the client wrote them, or from a header map.
                assert!(body_d.contains(r#"["Accept", "a"]"#), "{body_d}");
                assert!(body_g.contains(r#"["accept", "a"]"#), "{body_g}");
            }
            if body_d.starts_with('{') {
                // origin.py echoes the head of the methods it serves.
                assert_eq!(comparable(&body_d), comparable(&body_g), "{method} {extra:?}");
            } else {
                assert_eq!(body_d, body_g, "{method} {extra:?}");
            }
            // The client's head alike too (names in any case; Date aside).
            let fields = |head: &str| {
                let mut f: Vec<String> = head.lines().skip(1).map(str::to_ascii_lowercase).filter(|l| !l.starts_with("date:")).collect();
                f.sort();
                f
            };
            assert_eq!(fields(&head_d), fields(&head_g), "{method} {extra:?}");
        }
    }
}
