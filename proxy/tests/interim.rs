//! 1xx interim responses through sitecar's own HTTP/1.1 engine (RFC 9110 §15.2): main's
//! `103 Early Hints` reaches an HTTP/1.1 client before the final answer, with main's fields and
//! without hop-by-hop ones, through the cache on a miss too, and never reaches an HTTP/1.0
//! client. (hyper's server, the other engine, cannot send 1xx other than 100.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use support::{config, limits, raw, Front, Origin};

async fn front(origin: &Origin, cache: bool) -> Front {
    let mut config = config();
    if cache {
        let settings = sitecar_config::CacheSettings { enabled: true, ..sitecar_config::CacheSettings::default() };
        config.cache = Some(sitecar_proxy::cache::Cache::new(&settings, None).unwrap());
    }
    let limits = sitecar_proxy::ServerLimits { own_http1: true, ..limits() };
    Front::start(origin.addr, config, limits, true).await
}

/// The heads in a response text, in order, each as (status line, lowercase field lines).
fn heads(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("HTTP/1.1 ") {
        let Some(end) = rest[start..].find("\r\n\r\n") else { break };
        let head = &rest[start..start + end];
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default().to_owned();
        let fields = lines.map(str::to_ascii_lowercase).collect();
        out.push((status, fields));
        rest = &rest[start + end + 4..];
        if !out.last().is_some_and(|(s, _)| s.starts_with("HTTP/1.1 1")) {
            break;
        }
    }
    out
}

#[tokio::test]
async fn rfc9110_s15_2_early_hints_reach_an_http11_client_before_the_answer() {
    let origin = Origin::cache_origin();
    for cache in [false, true] {
        let front = front(&origin, cache).await;
        let path = if cache { "/hinted?hints=1&cc=max-age%3D60" } else { "/hinted?hints=1" };
        let request = format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n");
        let text = raw(front.addr, request.as_bytes(), Duration::from_secs(5)).await;
        let heads = heads(&text);
        assert_eq!(heads.len(), 2, "cache {cache}: {text}");
        assert_eq!(heads[0].0, "HTTP/1.1 103 Early Hints", "{text}");
        assert_eq!(heads[0].1, ["link: </hint.css>; rel=preload"], "main's fields, nothing added: {text}");
        assert_eq!(heads[1].0, "HTTP/1.1 200 OK", "{text}");
        assert!(text.ends_with(&format!("{path} #1")), "the final answer's body follows: {text}");

        // A real client reads the hint and then the answer.
        let url = format!("http://{}{path}", front.addr);
        let out = tokio::process::Command::new("curl").args(["-sv", "--max-time", "5", &url]).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = stderr.find("< HTTP/1.1 103 Early Hints").expect(&stderr);
        let link =
            stderr.find("< link: </hint.css>; rel=preload").or_else(|| stderr.find("< Link: </hint.css>; rel=preload")).expect(&stderr);
        let answer = stderr.find("< HTTP/1.1 200 OK").expect(&stderr);
        assert!(hint < link && link < answer, "{stderr}");
        assert!(out.status.success(), "{stderr}");
        front.stop.cancel();
    }
}

#[tokio::test]
async fn rfc9110_s15_2_an_http10_client_gets_no_interim_response() {
    let origin = Origin::cache_origin();
    let front = front(&origin, false).await;
    let text = raw(front.addr, b"GET /old?hints=1 HTTP/1.0\r\nHost: shop.example\r\n\r\n", Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains(" 103 "), "{text}");
    assert!(text.ends_with("/old?hints=1 #1"), "{text}");
    // Keep-alive requests on one connection: each hint before its own answer, none left over.
    let two = b"GET /a?hints=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let text = raw(front.addr, two, Duration::from_secs(5)).await;
    let statuses: Vec<&str> = text.match_indices("HTTP/1.1 ").filter_map(|(i, _)| text[i..].split("\r\n").next()).collect();
    assert_eq!(statuses, ["HTTP/1.1 103 Early Hints", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"], "{text}");
}
