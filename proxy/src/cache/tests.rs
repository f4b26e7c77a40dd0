//! Unit tests of the store, the storage rules and the answers from stored responses.

use super::*;

fn heads(req: &[(&str, &str)], status: u16, resp: &[(&str, &str)]) -> (http::request::Parts, http::response::Parts) {
    let mut q = http::Request::builder().uri("/a").header("host", "example.test");
    for (k, v) in req {
        q = q.header(*k, *v);
    }
    let mut r = http::Response::builder().status(status);
    for (k, v) in resp {
        r = r.header(*k, *v);
    }
    (q.body(()).unwrap().into_parts().0, r.body(()).unwrap().into_parts().0)
}

fn cache() -> Arc<Cache> {
    Cache::new(&sitecar_config::CacheSettings { enabled: true, max_bytes: 1 << 20, max_object_bytes: 1 << 16, ..Default::default() }, None)
        .unwrap()
}

#[test]
fn storability_follows_the_shared_cache_rules() {
    let c = cache();
    let now = SystemTime::now();
    let ok = |req: &[(&str, &str)], status, resp: &[(&str, &str)]| {
        let (q, r) = heads(req, status, resp);
        c.candidate(&q, &r, now).is_some()
    };
    assert!(ok(&[], 200, &[("cache-control", "max-age=60")]));
    assert!(!ok(&[], 200, &[("cache-control", "no-store")]));
    assert!(!ok(&[], 200, &[("cache-control", "private, max-age=60")]));
    assert!(!ok(&[("authorization", "Bearer x")], 200, &[("cache-control", "max-age=60")]));
    assert!(ok(&[("authorization", "Bearer x")], 200, &[("cache-control", "public, max-age=60")]));
    assert!(!ok(&[], 200, &[("cache-control", "max-age=60"), ("vary", "*")]));
    assert!(!ok(&[], 206, &[("cache-control", "max-age=60")]));
    assert!(!ok(&[], 200, &[("cache-control", "max-age=60"), ("content-length", "100000")]));
    // CDN-Cache-Control is the cache's own field: it wins over Cache-Control both ways.
    assert!(ok(&[], 200, &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=60")]));
    assert!(!ok(&[], 200, &[("cache-control", "max-age=60"), ("cdn-cache-control", "no-store")]));
    // Nothing fresh and nothing to revalidate with: not worth keeping.
    assert!(!ok(&[], 200, &[]));
}

#[test]
fn conditionals_and_ranges_answered_from_a_stored_response() {
    let c = cache();
    let now = SystemTime::now();
    let (q, r) =
        heads(&[], 200, &[("cache-control", "max-age=60"), ("etag", "\"v1\""), ("last-modified", "Sun, 01 Nov 2026 00:00:00 GMT")]);
    let mut cand = c.candidate(&q, &r, now).unwrap();
    cand.stored.body = Bytes::from_static(b"0123456789");
    let s = c.insert(&Arc::from("k"), cand.stored);
    let ask = |h: &[(&str, &str)]| {
        let (q, _) = heads(h, 200, &[]);
        s.respond(&q, now, HeaderValue::from_static("x"))
    };
    assert_eq!(ask(&[("if-none-match", "W/\"v1\"")]).status(), 304);
    assert_eq!(ask(&[("if-none-match", "\"v2\"")]).status(), 200);
    assert_eq!(ask(&[("if-modified-since", "Mon, 02 Nov 2026 00:00:00 GMT")]).status(), 304);
    let r = ask(&[("range", "bytes=2-4")]);
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(ask(&[("range", "bytes=20-30")]).status(), 416);
    assert_eq!(ask(&[("range", "bytes=2-4"), ("if-range", "\"other\"")]).status(), 200);
    assert_eq!(ask(&[("range", "bytes=2-4"), ("if-range", "\"v1\"")]).status(), 206);
}

#[test]
fn hits_share_the_stored_bytes() {
    let c = cache();
    let now = SystemTime::now();
    let (q, r) = heads(&[], 200, &[("cache-control", "max-age=60")]);
    let mut cand = c.candidate(&q, &r, now).unwrap();
    cand.stored.body = Bytes::from(vec![7u8; 4096]);
    let s = c.insert(&Arc::from("k"), cand.stored);
    for _ in 0..2 {
        let body = s.respond(&q, now, HeaderValue::from_static("x")).into_body().unwrap();
        // The same memory as the stored body: nothing was copied for this response.
        assert_eq!(body.as_ptr(), s.body.as_ptr());
    }
}

#[test]
fn stale_directives_read_from_the_targeted_field() {
    let d = directives("max-age=1, stale-while-revalidate=30, stale-if-error=600");
    assert_eq!((d.stale_while_revalidate, d.stale_if_error, d.may_serve_stale), (Duration::from_secs(30), Duration::from_secs(600), true));
    assert!(!directives("max-age=1, must-revalidate, stale-if-error=60").may_serve_stale);
    assert_eq!(
        cache_status(Outcome::Miss { stored: true, vary: false, stale: false }, None, true).to_str().unwrap(),
        "sitecar; fwd=uri-miss; stored; collapsed"
    );
    assert_eq!(cache_status(Outcome::Hit, Some(59), false).to_str().unwrap(), "sitecar; hit; ttl=59");
}

#[test]
fn purge_by_path_and_prefix() {
    let c = cache();
    let now = SystemTime::now();
    let (q, r) = heads(&[], 200, &[("cache-control", "max-age=60")]);
    for k in ["h/static/a.css", "h/static/b.css?v=2", "h/api/x", "other/api/x"] {
        let cand = c.candidate(&q, &r, now).unwrap();
        c.insert(&Arc::from(k), cand.stored);
    }
    assert_eq!(c.purge("/api/x", false), 2);
    assert_eq!(c.purge("/static/", true), 2);
    assert_eq!(c.entries(), 0);
}
