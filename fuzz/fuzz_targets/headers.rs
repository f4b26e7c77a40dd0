//! The header forwarding rules on arbitrary request heads: a request line and header lines as
//! the fuzzer writes them. After `prepare_request` no hop-by-hop field (nor one `Connection`
//! named) is left, no name with `_` reaches main, no `Upgrade` but a WebSocket one, and the
//! forwarding fields are set.

#![no_main]

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use sitecar_proxy::headers::{is_websocket, prepare_request, prepare_response, Forwarding, Peer};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let method = Method::from_bytes(parts.next().unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
    let uri: Uri = parts.next().unwrap_or("/").parse().unwrap_or_else(|_| Uri::from_static("/"));
    let version = match parts.next() {
        Some("HTTP/1.0") => Version::HTTP_10,
        Some("HTTP/2") => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim())) {
            headers.append(n, v);
        }
    }
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let websocket = is_websocket(&method, version, &headers);
    let peer = Peer::new("203.0.113.9:40000".parse().unwrap(), "127.0.0.1:8080".parse().unwrap(), false);
    let ids = prepare_request(&mut headers, &uri, version, websocket, &peer, Forwarding::default());
    assert!(!ids.request_id().is_empty());
    assert_eq!(ids.trace_id().len(), 32);
    for h in ["keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "http2-settings", "expect"] {
        assert!(!headers.contains_key(h), "{h} left");
    }
    for n in &named {
        if websocket && (n == "upgrade") {
            continue;
        }
        if matches!(
            n.as_str(),
            "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "host"
                | "via"
                | "traceparent"
                | "x-request-id"
                | "x-arr-log-id"
                | "x-client-ip"
                | "x-client-port"
                | "x-original-url"
                | "x-appservice-proto"
                | "disguised-host"
        ) {
            continue; // set again by the front door itself
        }
        assert!(!headers.contains_key(n.as_str()), "{n} was named by Connection and left");
    }
    assert!(headers.keys().all(|k| !k.as_str().contains('_')), "an underscore name left");
    match headers.get(header::UPGRADE) {
        Some(u) => assert!(websocket && u.as_bytes().eq_ignore_ascii_case(b"websocket")),
        None => {}
    }
    assert!(headers.contains_key("x-forwarded-for") && headers.contains_key("x-forwarded-proto") && headers.contains_key("via"));
    let mut response = headers.clone();
    prepare_response(&mut response, false);
    assert!(!response.contains_key(header::CONNECTION) && !response.contains_key(header::UPGRADE));
});
