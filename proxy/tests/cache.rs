//! The shared cache against a real origin process (tests/support/cache_origin.py), one test per
//! rule, named after the RFC section it checks. The origin numbers its answers per URL
//! ("<path> #n", `X-Count: n`), so a body tells whether it came from the store or from main.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sitecar_config::CacheSettings;
use sitecar_proxy::cache::Cache;
use support::{get, reached, request, response_header, Front, Origin};

fn settings() -> CacheSettings {
    CacheSettings {
        enabled: true,
        max_bytes: 8 << 20,
        max_object_bytes: 1 << 20,
        lock_timeout: Duration::from_secs(5),
        store_set_cookie: true,
        ..CacheSettings::default()
    }
}

async fn stack_with(s: CacheSettings, registry: Option<&prometheus::Registry>) -> (Origin, Front, Arc<Cache>) {
    let origin = Origin::cache_origin();
    let cache = Cache::new(&s, registry).unwrap();
    let config = sitecar_proxy::EdgeConfig { cache: Some(cache.clone()), ..support::config() };
    let front = Front::start(origin.addr, config, support::limits(), true).await;
    (origin, front, cache)
}

async fn stack() -> (Origin, Front, Arc<Cache>) {
    stack_with(settings(), None).await
}

fn status_of(head: &str) -> String {
    response_header(head, "cache-status").unwrap_or_default()
}

#[tokio::test]
async fn rfc9111_s3_stores_only_what_the_rules_allow() {
    let (origin, front, _) = stack().await;
    // (path, extra request headers, stored?)
    let cases: [(&str, &str, bool); 11] = [
        ("/a?cc=max-age%3D60", "", true),
        ("/b?cc=no-store", "", false),
        ("/c?cc=private%2Cmax-age%3D60", "", false),
        ("/d?cc=max-age%3D60", "Authorization: Bearer t\r\n", false),
        ("/e?cc=public%2Cmax-age%3D60", "Authorization: Bearer t\r\n", true),
        ("/f?cc=max-age%3D60&vary=*", "", false),
        ("/g?cc=max-age%3D60&status=206", "", false),
        ("/h?status=404", "", false),
        ("/i?cc=max-age%3D60&status=404", "", true),
        ("/j?cc=max-age%3D60&cookie=1", "", false),
        ("/k?cc=max-age%3D60", "Cache-Control: no-store\r\n", false),
    ];
    for (path, extra, stored) in cases {
        let first = get(front.addr, path, extra).await;
        let second = get(front.addr, path, extra).await;
        assert_eq!(first.2, second.2.replace("#2", "#1"), "{path}: same answer either way");
        assert_eq!(reached(&origin, path).await, if stored { 1 } else { 2 }, "{path} stored: {stored}; second: {}", second.1);
    }
}

#[tokio::test]
async fn rfc9111_s4_2_3_hits_carry_their_age() {
    let (_origin, front, _) = stack().await;
    let path = "/age?cc=max-age%3D60";
    let (_, head, _) = get(front.addr, path, "").await;
    assert_eq!(response_header(&head, "age"), None, "a fresh answer from main has no Age");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, head, body) = get(front.addr, path, "").await;
    assert_eq!((code, body.as_str()), (200, "/age?cc=max-age%3D60 #1"));
    let age: u64 = response_header(&head, "age").unwrap().parse().unwrap();
    assert!((1..=3).contains(&age), "Age {age}");
    assert!(status_of(&head).starts_with("sitecar; hit; ttl=5"), "{head}");
}

/// An `Age` from upstream caches counts toward the lifetime: a response already older than its
/// max-age is never a hit, and a younger one is a hit for what is left (and says so in `ttl`).
#[tokio::test]
async fn rfc9111_s4_2_3_an_age_from_upstream_counts_toward_freshness() {
    let (origin, front, _) = stack().await;
    let old = "/aged?cc=max-age%3D60&age=100";
    for _ in 0..2 {
        let (code, head, _) = get(front.addr, old, "").await;
        assert_eq!(code, 200);
        assert!(!status_of(&head).contains("; hit"), "{head}");
    }
    assert_eq!(reached(&origin, old).await, 2, "a response older than its max-age is asked for again");

    let young = "/young?cc=max-age%3D60&age=40";
    get(front.addr, young, "").await;
    let (code, head, body) = get(front.addr, young, "").await;
    assert_eq!((code, body.as_str()), (200, "/young?cc=max-age%3D60&age=40 #1"));
    let age: u64 = response_header(&head, "age").unwrap().parse().unwrap();
    assert!((40..=42).contains(&age), "Age {age}");
    let status = status_of(&head);
    let ttl: i64 = status.strip_prefix("sitecar; hit; ttl=").and_then(|t| t.parse().ok()).unwrap_or(i64::MIN);
    assert!((18..=20).contains(&ttl), "60 s lifetime, 40 s old: {status}");
}

#[tokio::test]
async fn rfc9111_s4_2_fresh_until_its_lifetime_then_asked_again() {
    let (origin, front, _) = stack().await;
    let path = "/life?cc=max-age%3D1";
    assert_eq!(get(front.addr, path, "").await.2, format!("{path} #1"));
    assert_eq!(get(front.addr, path, "").await.2, format!("{path} #1"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, head, body) = get(front.addr, path, "").await;
    assert_eq!(body, format!("{path} #2"));
    assert!(status_of(&head).contains("fwd=stale; stored"), "{head}");
    assert_eq!(reached(&origin, path).await, 2);
}

#[tokio::test]
async fn rfc9111_s4_3_revalidation_304_refreshes_the_stored_headers() {
    let (origin, front, _) = stack().await;
    for path in ["/val?cc=max-age%3D1&etag=e1", "/lm?cc=max-age%3D1&lm=1"] {
        let (_, head, body) = get(front.addr, path, "").await;
        assert_eq!((body, response_header(&head, "x-count")), (format!("{path} #1"), Some("1".into())));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let (code, head, body) = get(front.addr, path, "").await;
        assert_eq!((code, body), (200, format!("{path} #1")), "the stored body, confirmed by main");
        assert_eq!(response_header(&head, "x-count").as_deref(), Some("2"), "headers updated from the 304: {head}");
        assert!(status_of(&head).contains("fwd=stale; fwd-status=304"), "{head}");
        let seen = get(origin.addr, &format!("/_seen?p={}", path.replace('%', "%25").replace('&', "%26").replace('?', "%3F")), "").await.2;
        if path.contains("etag") {
            assert!(seen.contains(r#"["if-none-match", "\"e1\""]"#), "{seen}");
        } else {
            assert!(seen.contains(r#"["if-modified-since", "Sun, 01 Nov 2026 00:00:00 GMT"]"#), "{seen}");
        }
        // Fresh again after the 304: a hit.
        assert!(status_of(&get(front.addr, path, "").await.1).starts_with("sitecar; hit"));
        assert_eq!(reached(&origin, path).await, 2);
    }
}

#[tokio::test]
async fn rfc9111_s4_3_2_client_conditionals_answered_from_the_cache() {
    let (origin, front, _) = stack().await;
    let path = "/cond?cc=max-age%3D60&etag=v7&lm=1";
    get(front.addr, path, "").await;
    let (code, head, body) = get(front.addr, path, "If-None-Match: \"v7\"\r\n").await;
    assert_eq!((code, body.as_str()), (304, ""));
    assert_eq!(response_header(&head, "etag").as_deref(), Some("\"v7\""));
    assert_eq!(get(front.addr, path, "If-None-Match: W/\"v7\", \"x\"\r\n").await.0, 304, "weak comparison");
    assert_eq!(get(front.addr, path, "If-None-Match: \"other\"\r\n").await.0, 200);
    assert_eq!(get(front.addr, path, "If-Modified-Since: Mon, 02 Nov 2026 00:00:00 GMT\r\n").await.0, 304);
    assert_eq!(get(front.addr, path, "If-Modified-Since: Sat, 31 Oct 2026 00:00:00 GMT\r\n").await.0, 200);
    assert_eq!(reached(&origin, path).await, 1, "all answered from the store");
}

#[tokio::test]
async fn rfc9111_s4_4_unsafe_methods_invalidate_on_success_only() {
    let (origin, front, _) = stack().await;
    let path = "/inv?cc=max-age%3D60";
    let other = "/other?cc=max-age%3D60";
    get(front.addr, path, "").await;
    get(front.addr, other, "").await;
    // A failed POST leaves the stored response alone.
    get(origin.addr, "/_fail?on=1", "").await;
    assert_eq!(request(front.addr, "POST", path, "Content-Length: 0\r\n").await.0, 503);
    get(origin.addr, "/_fail?on=0", "").await;
    assert_eq!(get(front.addr, path, "").await.2, format!("{path} #1"));
    // A successful one drops it, and the URL its Location names on this host.
    let post = format!("{path}&loc=%2Fother%3Fcc%3Dmax-age%253D60");
    let (code, head, _) = request(front.addr, "POST", &post, "Content-Length: 0\r\n").await;
    assert_eq!(code, 200);
    assert_eq!(status_of(&head), "sitecar; fwd=method");
    assert_eq!(get(front.addr, other, "").await.2, format!("{other} #2"), "Location target invalidated");
    // The POST went to a different URL (its query has loc=): now invalidate the first one itself.
    assert_eq!(request(front.addr, "DELETE", path, "").await.0, 200);
    // Main counted the first GET, the failed POST and the DELETE: this GET is its fourth.
    assert_eq!(get(front.addr, path, "").await.2, format!("{path} #4"));
}

#[tokio::test]
async fn rfc5861_s3_stale_while_revalidate_serves_stale_and_refreshes_in_the_background() {
    let (origin, front, _) = stack().await;
    let path = "/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D30&delay=0.5";
    assert_eq!(get(front.addr, path, "").await.2, format!("{path} #1"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let asked = Instant::now();
    let (code, head, body) = get(front.addr, path, "").await;
    assert!(asked.elapsed() < Duration::from_millis(400), "served without waiting for main's 0.5 s");
    assert_eq!((code, body), (200, format!("{path} #1")));
    assert!(status_of(&head).contains("detail=stale-while-revalidate"), "{head}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(reached(&origin, path).await, 2, "one background refresh");
    let (_, head, body) = get(front.addr, path, "").await;
    assert_eq!(body, format!("{path} #2"));
    assert!(status_of(&head).starts_with("sitecar; hit"), "{head}");
}

#[tokio::test]
async fn rfc5861_s4_stale_if_error_when_main_fails_or_is_gone() {
    let (origin, front, _) = stack().await;
    let allowed = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D60";
    let forbidden = "/sie2?cc=max-age%3D1%2C%20must-revalidate%2C%20stale-if-error%3D60";
    get(front.addr, allowed, "").await;
    get(front.addr, forbidden, "").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    get(origin.addr, "/_fail?on=1", "").await;
    let (code, head, body) = get(front.addr, allowed, "").await;
    assert_eq!((code, body), (200, format!("{allowed} #1")), "stale instead of main's 503");
    assert!(status_of(&head).contains("detail=stale-if-error"), "{head}");
    assert_eq!(get(front.addr, forbidden, "").await.0, 503, "must-revalidate: main's error passes");
    // Main gone altogether (connection refused): still the stale response.
    drop(origin);
    let (code, _, body) = get(front.addr, allowed, "").await;
    assert_eq!((code, body), (200, format!("{allowed} #1")));
    // And while main is not ready, without waiting for the hold time.
    front.ready.send_replace(false);
    let asked = Instant::now();
    assert_eq!(get(front.addr, allowed, "").await.0, 200);
    assert!(asked.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn rfc9111_s4_concurrent_misses_collapse_into_one_request() {
    let (origin, front, _) = stack().await;
    let path = "/col?cc=max-age%3D60&delay=0.5";
    let replies = futures_util::future::join_all((0..20).map(|_| get(front.addr, path, ""))).await;
    for (code, head, body) in &replies {
        assert_eq!((*code, body.as_str()), (200, "/col?cc=max-age%3D60&delay=0.5 #1"), "{head}");
    }
    assert_eq!(reached(&origin, path).await, 1);
    assert!(replies.iter().filter(|(_, h, _)| status_of(h).contains("collapsed")).count() >= 15);
}

#[tokio::test]
async fn rfc9111_s4_collapsed_waiters_give_up_after_the_lock_timeout() {
    let (origin, front, _) = stack_with(CacheSettings { lock_timeout: Duration::from_millis(200), ..settings() }, None).await;
    let path = "/lock?cc=max-age%3D60&delay=1";
    let replies = futures_util::future::join_all((0..4).map(|_| get(front.addr, path, ""))).await;
    assert!(replies.iter().all(|(code, _, _)| *code == 200));
    assert!(reached(&origin, path).await >= 2, "waiters went to main themselves");
}

#[tokio::test]
async fn rfc9110_s9_3_2_head_answered_from_a_stored_get() {
    let (origin, front, _) = stack().await;
    let path = "/head?cc=max-age%3D60";
    let (_, _, body) = get(front.addr, path, "").await;
    let (code, head, hbody) = request(front.addr, "HEAD", path, "").await;
    assert_eq!((code, hbody.as_str()), (200, ""));
    assert_eq!(response_header(&head, "content-length"), Some(body.len().to_string()));
    assert!(status_of(&head).starts_with("sitecar; hit"));
    assert_eq!(reached(&origin, path).await, 1);
}

#[tokio::test]
async fn rfc9110_s14_ranges_answered_from_a_stored_full_response() {
    let (origin, front, _) = stack().await;
    let path = "/rng?cc=max-age%3D60&etag=r&size=1000";
    get(front.addr, path, "").await;
    let (code, head, body) = get(front.addr, path, "Range: bytes=10-19\r\n").await;
    assert_eq!((code, body.len()), (206, 10));
    assert_eq!(response_header(&head, "content-range").as_deref(), Some("bytes 10-19/1000"));
    let (code, _, body) = get(front.addr, path, "Range: bytes=-5\r\n").await;
    assert_eq!((code, body.len()), (206, 5));
    let (code, head, _) = get(front.addr, path, "Range: bytes=5000-\r\n").await;
    assert_eq!(code, 416);
    assert_eq!(response_header(&head, "content-range").as_deref(), Some("bytes */1000"));
    assert_eq!(get(front.addr, path, "Range: bytes=0-1\r\nIf-Range: \"old\"\r\n").await.2.len(), 1000, "If-Range mismatch: whole");
    assert_eq!(reached(&origin, path).await, 1);
}

#[tokio::test]
async fn rfc9213_cdn_cache_control_is_the_caches_own_field() {
    let (origin, front, _) = stack().await;
    let cached = "/cdn?cc=no-store&cdn=max-age%3D60";
    let (_, head, _) = get(front.addr, cached, "").await;
    assert_eq!(response_header(&head, "cache-control").as_deref(), Some("no-store"), "passed on to clients as it was");
    get(front.addr, cached, "").await;
    assert_eq!(reached(&origin, cached).await, 1, "stored per CDN-Cache-Control despite no-store");
    let not = "/cdn2?cc=max-age%3D60&cdn=no-store";
    get(front.addr, not, "").await;
    get(front.addr, not, "").await;
    assert_eq!(reached(&origin, not).await, 2, "CDN-Cache-Control: no-store wins over max-age");
}

#[tokio::test]
async fn rfc9111_s4_1_vary_keeps_one_variant_per_request_value() {
    let (origin, front, _) = stack().await;
    let path = "/vary?cc=max-age%3D60&vary=Accept-Language";
    let ask = |lang: &'static str| get(front.addr, path, if lang == "en" { "Accept-Language: en\r\n" } else { "Accept-Language: fr\r\n" });
    assert_eq!(ask("en").await.2, format!("{path} #1 lang=en"));
    let (_, head, body) = ask("fr").await;
    assert_eq!(body, format!("{path} #2 lang=fr"));
    assert!(status_of(&head).contains("fwd=vary-miss"), "{head}");
    assert_eq!(ask("en").await.2, format!("{path} #1 lang=en"));
    assert_eq!(ask("fr").await.2, format!("{path} #2 lang=fr"));
    assert_eq!(reached(&origin, path).await, 2);
}

#[tokio::test]
async fn rfc9211_cache_status_on_every_response_through_the_cache() {
    let (_origin, front, _) = stack().await;
    let path = "/cs?cc=max-age%3D60";
    assert_eq!(status_of(&get(front.addr, path, "").await.1), "sitecar; fwd=uri-miss; stored");
    assert!(status_of(&get(front.addr, path, "").await.1).starts_with("sitecar; hit; ttl="));
    assert_eq!(status_of(&get(front.addr, "/cs2?cc=no-store", "").await.1), "sitecar; fwd=uri-miss");
    assert_eq!(status_of(&get(front.addr, path, "Cache-Control: no-store\r\n").await.1), "sitecar; fwd=request");
    assert_eq!(status_of(&request(front.addr, "PUT", "/cs3", "Content-Length: 0\r\n").await.1), "sitecar; fwd=method");
}

#[tokio::test]
async fn purge_through_the_admin_api_by_url_and_prefix() {
    let (origin, front, cache) = stack().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = listener.local_addr().unwrap();
    struct NoStack;
    impl sitecar_proxy::admin::StackView for NoStack {
        fn ready(&self) -> bool {
            true
        }
        fn status(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn logs(&self, _: &str, _: usize) -> Option<serde_json::Value> {
            None
        }
        fn restart(&self, _: &str) -> bool {
            false
        }
    }
    let admin = sitecar_proxy::admin::Admin {
        registry: prometheus::Registry::new(),
        token: None,
        stack: Arc::new(NoStack),
        http: None,
        cache: Some(cache.clone()),
    };
    tokio::spawn(sitecar_proxy::admin::serve(listener, Arc::new(admin), front.stop.clone()));
    for p in ["/p/one?cc=max-age%3D60", "/static/a?cc=max-age%3D60", "/static/b?cc=max-age%3D60"] {
        get(front.addr, p, "").await;
    }
    assert_eq!(cache.entries(), 3);
    let (code, _, body) = request(admin_addr, "POST", "/cache/purge?url=%2Fp%2Fone", "").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"purged\":1"), "{body}");
    assert_eq!(get(front.addr, "/p/one?cc=max-age%3D60", "").await.2, "/p/one?cc=max-age%3D60 #2");
    let (_, _, body) = request(admin_addr, "POST", "/cache/purge?prefix=/static/", "").await;
    assert!(body.contains("\"purged\":2"), "{body}");
    assert_eq!(get(front.addr, "/static/b?cc=max-age%3D60", "").await.2, "/static/b?cc=max-age%3D60 #2");
    assert_eq!(request(admin_addr, "POST", "/cache/purge", "").await.0, 400);
    assert_eq!(reached(&origin, "/static/a?cc=max-age%3D60").await, 1);
}

#[tokio::test]
async fn cache_metrics_count_results_bytes_entries_and_evictions() {
    let registry = prometheus::Registry::new();
    let small = CacheSettings { max_bytes: 64 * 1024, max_object_bytes: 16 * 1024, ..settings() };
    let (_origin, front, _) = stack_with(small, Some(&registry)).await;
    for i in 0..3 {
        get(front.addr, &format!("/m{i}?cc=max-age%3D60"), "").await;
        get(front.addr, &format!("/m{i}?cc=max-age%3D60"), "").await;
    }
    request(front.addr, "POST", "/m0", "Content-Length: 0\r\n").await;
    // 40 objects of 8 KiB cannot all fit in 64 KiB.
    for i in 0..40 {
        get(front.addr, &format!("/big{i}?cc=max-age%3D60&size=8192"), "").await;
    }
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    let value = |line: &str| -> f64 {
        text.lines().find(|l| l.starts_with(line)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(-1.0)
    };
    assert_eq!(value("sitecar_cache_requests_total{result=\"hit\"}"), 3.0, "{text}");
    assert_eq!(value("sitecar_cache_requests_total{result=\"miss\"}"), 43.0);
    assert_eq!(value("sitecar_cache_requests_total{result=\"bypass\"}"), 1.0);
    assert!(value("sitecar_cache_evictions_total") > 0.0);
    let bytes = value("sitecar_cache_bytes");
    assert!(bytes > 8192.0 && bytes <= 65536.0, "bytes {bytes}");
    assert!(value("sitecar_cache_entries") >= 1.0);
}

/// 10,000 requests from 100 keep-alive clients over a hot and a cold set of URLs, through a cache
/// far smaller than the data: every response arrives whole, and the store stays within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_requests_lose_nothing_and_stay_within_the_bound() {
    use http_body_util::{BodyExt, Empty};
    let bound = 512 * 1024;
    let (_origin, front, cache) = stack_with(CacheSettings { max_bytes: bound, max_object_bytes: 64 * 1024, ..settings() }, None).await;
    let client: hyper_util::client::legacy::Client<_, Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let addr = front.addr;
    let tasks = (0..100u64).map(|c| {
        let client = client.clone();
        tokio::spawn(async move {
            let mut ok = 0u32;
            for i in 0..100u64 {
                // Mostly a hot set of 20 URLs, every fourth request one of 400 cold ones.
                let n = if i % 4 == 0 { 100 + (c * 7 + i) % 400 } else { (c + i) % 20 };
                let size = 2048 + (n % 5) * 1024;
                let uri = format!("http://{addr}/mix{n}?cc=max-age%3D300&size={size}");
                let resp = client.get(uri.parse().unwrap()).await.unwrap();
                assert_eq!(resp.status(), 200);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len() as u64, size);
                ok += 1;
            }
            ok
        })
    });
    let total: u32 = futures_util::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).sum();
    assert_eq!(total, 10_000);
    assert!(cache.bytes() <= bound, "{} > {bound}", cache.bytes());
    assert!(cache.entries() > 20, "the hot set stays: {}", cache.entries());
}

#[tokio::test]
async fn rfc9110_s12_5_5_a_hit_of_a_compressible_response_says_it_varies_by_encoding() {
    let origin = Origin::cache_origin();
    let cache = Cache::new(&settings(), None).unwrap();
    let config = sitecar_proxy::EdgeConfig { cache: Some(cache.clone()), compression: true, ..support::config() };
    let front = Front::start(origin.addr, config, support::limits(), true).await;
    let path = "/page?cc=max-age%3D60&size=2000&type=text/html";
    // Filled by a client that does not accept gzip, then hit by one that does and one that does not.
    let (_, miss, body) = get(front.addr, path, "").await;
    assert_eq!(body.len(), 2000);
    assert_eq!(response_header(&miss, "vary").as_deref(), Some("accept-encoding"), "{miss}");
    let (_, hit, _) = get(front.addr, path, "").await;
    assert!(response_header(&hit, "cache-status").unwrap_or_default().contains("hit"), "{hit}");
    assert_eq!(response_header(&hit, "vary").as_deref(), Some("accept-encoding"), "{hit}");
    assert_eq!(response_header(&hit, "content-encoding"), None);
    let (_, gz, _) = get(front.addr, path, "Accept-Encoding: gzip\r\n").await;
    assert_eq!(response_header(&gz, "content-encoding").as_deref(), Some("gzip"), "{gz}");
    assert_eq!(gz.to_ascii_lowercase().matches("\r\nvary:").count(), 1, "one Vary field: {gz}");
    assert_eq!(reached(&origin, path).await, 1, "one fill served all three");
}
