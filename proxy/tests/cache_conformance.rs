//! RFC 9111 corners of the shared cache against the scriptable origin
//! (tests/support/cache_origin.py): what a stale entry's revalidation may send a client, how
//! `Age`, `Expires`, directive names and `CDN-Cache-Control` are read, and empty bodies. One test
//! per rule, named after its section; a body ("<path> #n") or the origin's count tells whether an
//! answer came from the store or from main.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use sitecar_config::CacheSettings;
use sitecar_proxy::cache::Cache;
use support::{get, reached, response_header, Front, Origin};

async fn stack() -> (Origin, Front) {
    let settings = CacheSettings {
        enabled: true,
        max_bytes: 8 << 20,
        max_object_bytes: 1 << 20,
        lock_timeout: Duration::from_secs(5),
        store_set_cookie: true,
        stale_if_disconnected: Duration::from_secs(3600),
    };
    stack_with(settings).await
}

async fn stack_with(settings: CacheSettings) -> (Origin, Front) {
    let origin = Origin::cache_origin();
    let cache = Cache::new(&settings, None).unwrap();
    let config = sitecar_proxy::EdgeConfig { cache: Some(cache), ..support::config() };
    let front = Front::start(origin.addr, config, support::limits(), true).await;
    (origin, front)
}

#[tokio::test]
async fn rfc9111_s4_3_4_a_304_that_selects_nothing_never_reaches_a_client_that_did_not_ask() {
    let (origin, front) = stack().await;
    // Stored with a validator; main's 304 to the revalidation repeats none, so it selects no
    // stored response: the client gets a full response fetched unconditionally.
    for path in ["/bare-etag?cc=max-age%3D1&etag=v1&bare304=1", "/bare-lm?cc=max-age%3D1&lm=1&bare304=1"] {
        let (code, _, body) = get(front.addr, path, "").await;
        assert_eq!((code, body.as_str()), (200, format!("{path} #1").as_str()));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (code, head, body) = get(front.addr, path, "").await;
        assert_eq!(code, 200, "a plain GET never gets a 304: {head}");
        assert_eq!(body, format!("{path} #3"), "the revalidation (#2) was answered 304, then fetched whole: {head}");
        assert_eq!(reached(&origin, path).await, 3);
    }
    // A 304 that selects the stored response still freshens it.
    let path = "/matching?cc=max-age%3D1&etag=v1";
    get(front.addr, path, "").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, head, body) = get(front.addr, path, "").await;
    assert_eq!((code, body.as_str()), (200, format!("{path} #1").as_str()), "{head}");
    assert!(response_header(&head, "cache-status").unwrap().contains("fwd-status=304"), "{head}");
}

#[tokio::test]
async fn rfc9111_s5_1_a_list_valued_age_counts_its_first_member() {
    let (origin, front) = stack().await;
    // Age 7200 against max-age 3600: stale on arrival, so nothing fresh is stored.
    let path = "/age?cc=max-age%3D3600&age=7200%2C%200";
    get(front.addr, path, "").await;
    let (_, head, _) = get(front.addr, path, "").await;
    assert_eq!(reached(&origin, path).await, 2, "served as fresh: {head}");
    // A single value as before.
    let young = "/age-young?cc=max-age%3D3600&age=10";
    get(front.addr, young, "").await;
    get(front.addr, young, "").await;
    assert_eq!(reached(&origin, young).await, 1);
}

#[tokio::test]
async fn rfc9111_s5_3_an_invalid_expires_is_already_expired_and_obsolete_date_formats_count() {
    let (origin, front) = stack().await;
    // Doubled spaces: not an HTTP-date, so already expired (a Last-Modified would otherwise give
    // it heuristic freshness).
    let invalid = "/exp-bad?lm=1&expires=Thu%2C%20%2001%20Jan%202099%2000%3A00%3A00%20GMT";
    get(front.addr, invalid, "").await;
    get(front.addr, invalid, "").await;
    assert_eq!(reached(&origin, invalid).await, 2, "an invalid Expires made it fresh");
    // RFC 850 and asctime dates are accepted (RFC 9110 §5.6.7).
    for path in
        ["/exp-850?expires=Thursday%2C%2001-Jan-37%2000%3A00%3A00%20GMT", "/exp-asctime?expires=Thu%20Jan%20%201%2000%3A00%3A00%202037"]
    {
        get(front.addr, path, "").await;
        let (_, head, _) = get(front.addr, path, "").await;
        assert_eq!(reached(&origin, path).await, 1, "{path}: {head}");
    }
}

#[tokio::test]
async fn rfc9111_s5_2_directive_names_are_case_insensitive() {
    let (origin, front) = stack().await;
    let fresh = "/case-max-age?cc=MaX-AgE%3D60";
    get(front.addr, fresh, "").await;
    let (_, head, _) = get(front.addr, fresh, "").await;
    assert_eq!(reached(&origin, fresh).await, 1, "MaX-AgE=60 is max-age: {head}");
    let never = "/case-no-store?cc=No-StOrE%2C%20max-age%3D60";
    get(front.addr, never, "").await;
    get(front.addr, never, "").await;
    assert_eq!(reached(&origin, never).await, 2, "No-StOrE is no-store");
    // A client's own directive, too.
    let path = "/case-request?cc=max-age%3D60";
    get(front.addr, path, "").await;
    get(front.addr, path, "Cache-Control: No-CaChE\r\n").await;
    assert_eq!(reached(&origin, path).await, 2, "the client's No-CaChE sends it to main");
}

#[tokio::test]
async fn rfc9213_s2_1_a_cdn_cache_control_that_is_no_dictionary_is_ignored_whole() {
    let (origin, front) = stack().await;
    for cdn in ["max-age%3D10000%2C%20%26%26%26%26%26", "max-age%3D%2210000%22"] {
        let path = format!("/cdn-bad?cc=no-store&cdn={cdn}");
        get(front.addr, &path, "").await;
        let (_, head, _) = get(front.addr, &path, "").await;
        assert_eq!(reached(&origin, &path).await, 2, "Cache-Control's no-store decides: {head}");
    }
}

#[tokio::test]
async fn rfc9111_s3_empty_bodies_are_stored() {
    let (origin, front) = stack().await;
    for path in ["/empty-200?cc=max-age%3D60&size=0", "/empty-204?cc=max-age%3D60&status=204"] {
        let (_, first, _) = get(front.addr, path, "").await;
        assert!(response_header(&first, "cache-status").unwrap().contains("stored"), "{first}");
        let (_, head, body) = get(front.addr, path, "").await;
        assert!(body.is_empty());
        assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{path}: {head}");
        assert_eq!(reached(&origin, path).await, 1, "{path}");
    }
}

#[tokio::test]
async fn rfc9111_s5_2_unknown_request_directives_keep_stale_while_revalidate() {
    let (origin, front) = stack().await;
    let path = "/swr-unknown?cc=max-age%3D1%2C%20stale-while-revalidate%3D60";
    get(front.addr, path, "").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, head, body) = get(front.addr, path, "Cache-Control: community=\"UCI\"\r\nPragma: x-nothing\r\n").await;
    assert_eq!(body, format!("{path} #1"), "served stale at once: {head}");
    assert!(response_header(&head, "cache-status").unwrap().contains("stale-while-revalidate"), "{head}");
    // A directive that asks for a fresh answer still goes to main.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, head, body) = get(front.addr, path, "Cache-Control: no-cache\r\n").await;
    assert_ne!(body, format!("{path} #1"), "no-cache was served stale: {head}");
    assert!(reached(&origin, path).await >= 2);
}

#[tokio::test]
async fn rfc9111_s4_3_2_if_modified_since_without_last_modified_is_judged_against_date() {
    let (origin, front) = stack().await;
    let path = "/ims-date?cc=max-age%3D60";
    get(front.addr, path, "").await;
    let (code, head, _) = get(front.addr, path, "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n").await;
    assert_eq!(code, 304, "not modified since a date after the stored Date: {head}");
    let (code, _, body) = get(front.addr, path, "If-Modified-Since: Mon, 01 Jan 1990 00:00:00 GMT\r\n").await;
    assert_eq!((code, body), (200, format!("{path} #1")));
    assert_eq!(reached(&origin, path).await, 1);
}

#[tokio::test]
async fn rfc9111_s5_2_2_3_must_understand_stores_despite_no_store_for_an_understood_status() {
    let (origin, front) = stack().await;
    let path = "/must-understand?cc=no-store%2C%20must-understand%2C%20max-age%3D60";
    get(front.addr, path, "").await;
    let (_, head, _) = get(front.addr, path, "").await;
    assert_eq!(reached(&origin, path).await, 1, "200 is understood: stored: {head}");
    // A status this cache does not know: no-store holds.
    let unknown = "/must-understand-299?cc=no-store%2C%20must-understand%2C%20max-age%3D60&status=299";
    get(front.addr, unknown, "").await;
    get(front.addr, unknown, "").await;
    assert_eq!(reached(&origin, unknown).await, 2);
    // Without must-understand, no-store holds for any status.
    let plain = "/no-store-only?cc=no-store%2C%20max-age%3D60";
    get(front.addr, plain, "").await;
    get(front.addr, plain, "").await;
    assert_eq!(reached(&origin, plain).await, 2);
}

#[tokio::test]
async fn rfc9111_s3_1_set_cookie_is_stored_with_explicit_shared_freshness_unless_turned_off() {
    let (origin, front) = stack().await;
    let shared = "/cookie-public?cc=public%2C%20max-age%3D60&cookie=1";
    get(front.addr, shared, "").await;
    let (_, head, _) = get(front.addr, shared, "").await;
    assert_eq!(reached(&origin, shared).await, 1, "public: stored: {head}");
    assert_eq!(response_header(&head, "set-cookie").as_deref(), Some("session=secret"), "kept like any header: {head}");
    let s_maxage = "/cookie-s-maxage?cc=s-maxage%3D60&cookie=1";
    get(front.addr, s_maxage, "").await;
    get(front.addr, s_maxage, "").await;
    assert_eq!(reached(&origin, s_maxage).await, 1);
    // `cache.storeSetCookie: false` in the spec turns it off.
    let spec = sitecar_config::load_str(
        r#"{"sitecontainers": [{"name": "web", "properties": {"image": "w", "isMain": true, "targetPort": "3000", "startUpCommand": "w"}}],
            "cache": {"enabled": true, "storeSetCookie": false}}"#,
        &sitecar_config::LoadOptions::default(),
    )
    .unwrap();
    assert!(!spec.cache.store_set_cookie);
    let cache = Cache::new(&spec.cache, None).unwrap();
    let config = sitecar_proxy::EdgeConfig { cache: Some(cache), ..support::config() };
    let off = Front::start(origin.addr, config, support::limits(), true).await;
    let path = "/cookie-off?cc=public%2C%20max-age%3D60&cookie=1";
    get(off.addr, path, "").await;
    get(off.addr, path, "").await;
    assert_eq!(reached(&origin, path).await, 2, "not stored when turned off");
}

#[tokio::test]
async fn rfc9111_s4_1_equivalent_accept_language_values_share_a_variant() {
    let (origin, front) = stack().await;
    let path = "/vary-normal?cc=max-age%3D60&vary=Accept-Language";
    let (_, _, first) = get(front.addr, path, "Accept-Language: en-US, fr;q=0.5\r\n").await;
    let (_, head, same) = get(front.addr, path, "Accept-Language: FR ; q=0.50,en-us;q=1\r\n").await;
    assert_eq!(same, first, "the same variant: {head}");
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    let (_, head, other) = get(front.addr, path, "Accept-Language: de\r\n").await;
    assert_ne!(other, first);
    assert!(response_header(&head, "cache-status").unwrap().contains("fwd=vary-miss"), "{head}");
    assert_eq!(reached(&origin, path).await, 2);
}

#[tokio::test]
async fn rfc9111_s3_any_final_status_with_explicit_freshness_is_stored() {
    let (origin, front) = stack().await;
    // Explicit freshness makes any final status storable, whatever its code.
    for status in [299, 400, 404, 500, 502, 503, 504, 599] {
        let path = format!("/status-{status}?status={status}&cc=max-age%3D60");
        let (code, _, body) = get(front.addr, &path, "").await;
        assert_eq!((code, body.as_str()), (status, format!("{path} #1").as_str()));
        let (code, head, body) = get(front.addr, &path, "").await;
        assert_eq!((code, body.as_str()), (status, format!("{path} #1").as_str()), "{head}");
        assert!(response_header(&head, "cache-status").unwrap().contains("hit"), "{head}");
        assert_eq!(reached(&origin, &path).await, 1, "{status} with max-age went to main twice");
    }
    // Expires and s-maxage are explicit freshness too.
    for (name, freshness) in [("expires", "expires=Thu%2C%2001%20Jan%202099%2000%3A00%3A00%20GMT"), ("s-maxage", "cc=s-maxage%3D60")] {
        let path = format!("/status-500-{name}?status=500&{freshness}");
        get(front.addr, &path, "").await;
        get(front.addr, &path, "").await;
        assert_eq!(reached(&origin, &path).await, 1, "a 500 with {name} went to main twice");
    }
    // `public` makes it heuristically cacheable: a Last-Modified long ago gives it freshness.
    let public = "/status-500-public?status=500&cc=public&lm=1";
    get(front.addr, public, "").await;
    get(front.addr, public, "").await;
    assert_eq!(reached(&origin, public).await, 1, "a public 500 with Last-Modified went to main twice");
    // Without explicit freshness or `public`, a status that is not heuristically cacheable is not.
    let plain = "/status-500-plain?status=500&lm=1";
    get(front.addr, plain, "").await;
    get(front.addr, plain, "").await;
    assert_eq!(reached(&origin, plain).await, 2);
    // no-store still wins.
    let refused = "/status-500-no-store?status=500&cc=max-age%3D60%2C%20no-store";
    get(front.addr, refused, "").await;
    get(front.addr, refused, "").await;
    assert_eq!(reached(&origin, refused).await, 2);
}

/// Stores each path, lets it go stale, then makes main drop every connection `how` ("close" or
/// "reset") before answering.
async fn stale_then_disconnected(origin: &Origin, front: &Front, paths: &[&str], how: &str) {
    for path in paths {
        assert_eq!(get(front.addr, path, "").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    get(origin.addr, &format!("/_drop?how={how}"), "").await;
}

#[tokio::test]
async fn rfc9111_s4_2_4_a_disconnected_cache_serves_stale_unless_forbidden() {
    let (origin, front) = stack().await;
    for how in ["close", "reset"] {
        let plain = format!("/gone-{how}?cc=max-age%3D1");
        let revalidate = format!("/gone-mr-{how}?cc=max-age%3D1%2C%20must-revalidate");
        let proxy_revalidate = format!("/gone-pr-{how}?cc=max-age%3D1%2C%20proxy-revalidate");
        let s_maxage = format!("/gone-s-{how}?cc=s-maxage%3D1");
        let bounded = format!("/gone-sie-{how}?cc=max-age%3D1%2C%20stale-if-error%3D1");
        let paths = [plain.as_str(), &revalidate, &proxy_revalidate, &s_maxage, &bounded];
        stale_then_disconnected(&origin, &front, &paths, how).await;
        let (code, head, body) = get(front.addr, &plain, "").await;
        assert_eq!((code, body.as_str()), (200, format!("{plain} #1").as_str()), "main {how}s: the stale response, not a 502: {head}");
        assert!(response_header(&head, "cache-status").unwrap().contains("fwd=stale; detail=disconnected"), "{head}");
        assert!(response_header(&head, "age").unwrap().parse::<u64>().unwrap() >= 2, "{head}");
        // must-revalidate, proxy-revalidate and s-maxage forbid it; so does main's own
        // stale-if-error bound (1 s, passed); so does a client asking for a fresh answer.
        for forbidden in [&revalidate, &proxy_revalidate, &s_maxage, &bounded] {
            let (code, head, _) = get(front.addr, forbidden, "").await;
            assert_eq!(code, 502, "{forbidden} when main {how}s: {head}");
        }
        let (code, head, _) = get(front.addr, &plain, "Cache-Control: max-age=0\r\n").await;
        assert_eq!(code, 502, "the client asked for a fresh answer: {head}");
        get(origin.addr, "/_drop?how=0", "").await;
        // Main back: the next request revalidates with it and gets its new answer.
        let (code, head, body) = get(front.addr, &plain, "").await;
        assert_eq!(code, 200, "{head}");
        assert!(!body.ends_with(" #1"), "{head}");
    }
    let plain = "/gone-close?cc=max-age%3D1";
    // Main answering 503 is not a disconnection: its answer passes without stale-if-error.
    get(origin.addr, "/_fail?on=1", "").await;
    assert_eq!(get(front.addr, plain, "").await.0, 503);
    get(origin.addr, "/_fail?on=0", "").await;
    // Main gone altogether (refused) serves stale too.
    let (code, _, body) = get(front.addr, plain, "").await;
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    drop(origin);
    let (code, head, again) = get(front.addr, plain, "").await;
    assert_eq!((code, again), (200, body), "{head}");
}

#[tokio::test]
async fn rfc9111_s4_2_4_stale_if_disconnected_is_bounded_by_the_setting() {
    let settings = CacheSettings { enabled: true, stale_if_disconnected: Duration::from_secs(2), ..CacheSettings::default() };
    let (origin, front) = stack_with(settings).await;
    let path = "/bound?cc=max-age%3D1";
    get(front.addr, path, "").await;
    get(origin.addr, "/_drop?how=reset", "").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, head, _) = get(front.addr, path, "").await;
    assert_eq!(code, 200, "stale by less than the bound: {head}");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (code, head, _) = get(front.addr, path, "").await;
    assert_eq!(code, 502, "stale by more than the bound: {head}");
    // Zero turns it off, and the spec names it.
    let spec = sitecar_config::load_str(
        r#"{"sitecontainers": [{"name": "web", "properties": {"image": "w", "isMain": true, "targetPort": "3000", "startUpCommand": "w"}}],
            "cache": {"enabled": true, "staleIfDisconnectedSeconds": 0}}"#,
        &sitecar_config::LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(spec.cache.stale_if_disconnected, Duration::ZERO);
}

#[tokio::test]
async fn rfc9111_s4_3_5_a_head_revalidation_freshens_or_invalidates_the_stored_get() {
    let (origin, front) = stack().await;
    // Main answers the HEAD 200 with the stored validator and length: the stored GET takes the
    // HEAD's header fields and freshness, and keeps its body.
    let same = "/head-same?cc=max-age%3D1&etag=v1&nocond=1";
    let (_, head, body) = get(front.addr, same, "").await;
    assert_eq!(response_header(&head, "x-count").as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, head, hbody) = support::request(front.addr, "HEAD", same, "").await;
    assert_eq!((code, hbody.as_str()), (200, ""), "{head}");
    assert_eq!(response_header(&head, "x-count").as_deref(), Some("2"), "main's HEAD answer: {head}");
    let (code, head, again) = get(front.addr, same, "").await;
    assert_eq!((code, &again), (200, &body), "the stored body, freshened by the HEAD: {head}");
    assert_eq!(response_header(&head, "x-count").as_deref(), Some("2"), "the HEAD's fields were stored: {head}");
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    assert_eq!(reached(&origin, same).await, 2);
    // A HEAD 200 with another ETag: the stored GET no longer stands for main's resource, and the
    // next GET fetches it (never an empty body stored from the HEAD).
    let changed = "/head-changed?cc=max-age%3D1&etagn=1";
    get(front.addr, changed, "").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, head, _) = support::request(front.addr, "HEAD", changed, "").await;
    assert_eq!(code, 200, "{head}");
    assert_eq!(response_header(&head, "etag").as_deref(), Some("\"v2\""), "{head}");
    let (code, head, body) = get(front.addr, changed, "").await;
    assert_eq!((code, body.as_str()), (200, format!("{changed} #3").as_str()), "{head}");
    // A 304 to a HEAD revalidation freshens too.
    let matching = "/head-304?cc=max-age%3D1&etag=v1";
    let (_, _, body) = get(front.addr, matching, "").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, head, _) = support::request(front.addr, "HEAD", matching, "").await;
    assert_eq!(code, 200, "{head}");
    let (code, head, again) = get(front.addr, matching, "").await;
    assert_eq!((code, again), (200, body), "{head}");
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    assert_eq!(reached(&origin, matching).await, 2);
    // A stale-while-revalidate HEAD refreshes the GET entry in the background with a GET.
    let swr = "/head-swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D60";
    get(front.addr, swr, "").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, head, _) = support::request(front.addr, "HEAD", swr, "").await;
    assert_eq!(code, 200, "{head}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, head, body) = get(front.addr, swr, "").await;
    assert_eq!((code, body.as_str()), (200, format!("{swr} #2").as_str()), "the background GET's body: {head}");
}

#[tokio::test]
async fn rfc9110_s9_3_3_a_post_answer_naming_its_own_uri_answers_later_gets() {
    let (origin, front) = stack().await;
    let post = |path: &'static str| support::request(front.addr, "POST", path, "Content-Length: 0\r\n");
    // Explicit freshness and a Content-Location that is the POST's own target: stored for GET.
    let own = "/post-own?cc=max-age%3D60&cloc=self";
    assert_eq!(post(own).await.0, 200);
    let (code, head, body) = get(front.addr, own, "").await;
    assert_eq!((code, body.as_str()), (200, "done"), "{head}");
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    assert_eq!(support::request(front.addr, "HEAD", own, "").await.0, 200);
    assert_eq!(reached(&origin, own).await, 1);
    // Without explicit freshness, or naming another URI, it is not.
    for path in ["/post-lm?cloc=self", "/post-other?cc=max-age%3D60&cloc=/elsewhere"] {
        assert_eq!(post(path).await.0, 200);
        let (code, _, body) = get(front.addr, path, "").await;
        assert_eq!((code, body.as_str()), (200, format!("{path} #2").as_str()));
    }
}

fn pattern(first: usize, last: usize) -> String {
    (first..=last).map(|i| char::from(b'0' + (i % 10) as u8)).collect()
}

/// The `Range` header main saw on its last request for `path`.
async fn range_seen(origin: &Origin, path: &str) -> Option<String> {
    let seen = support::cache_origin_saw(origin, path).await;
    seen.as_array().unwrap().iter().find(|h| h[0] == "range").map(|h| h[1].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn rfc9111_s3_3_a_range_miss_fetches_the_whole_object_and_answers_from_it() {
    let (origin, front) = stack().await;
    let path = "/range-small?cc=max-age%3D60&etag=r1&size=1000&pattern=1&ranges=1";
    let (code, head, body) = get(front.addr, path, "Range: bytes=10-19\r\n").await;
    assert_eq!((code, body.as_str()), (206, "0123456789"), "{head}");
    assert_eq!(response_header(&head, "content-range").as_deref(), Some("bytes 10-19/1000"), "{head}");
    assert_eq!(range_seen(&origin, path).await, None, "main was asked for the whole object");
    let (code, head, body) = get(front.addr, path, "Range: bytes=-5\r\n").await;
    assert_eq!((code, body), (206, pattern(995, 999)), "{head}");
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    let (code, _, body) = get(front.addr, path, "").await;
    assert_eq!((code, body), (200, pattern(0, 999)));
    assert_eq!(reached(&origin, path).await, 1);
}

#[tokio::test]
async fn rfc9111_s3_4_pieces_of_a_large_object_are_stored_and_combined() {
    let (origin, front) = stack().await;
    // 2 MB against a 1 MiB maxObjectBytes: asked for whole once (dropped), then in ranges.
    let path = "/range-large?cc=max-age%3D60&etag=big&size=2000000&pattern=1&ranges=1";
    let (code, head, body) = get(front.addr, path, "Range: bytes=0-99\r\n").await;
    assert_eq!((code, body), (206, pattern(0, 99)), "{head}");
    assert_eq!(range_seen(&origin, path).await.as_deref(), Some("bytes=0-99"));
    let (code, head, body) = get(front.addr, path, "Range: bytes=10-49\r\n").await;
    assert_eq!((code, body), (206, pattern(10, 49)), "from the stored piece: {head}");
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    assert_eq!(response_header(&head, "content-range").as_deref(), Some("bytes 10-49/2000000"), "{head}");
    let counted = reached(&origin, path).await;
    assert_eq!(counted, 2, "one whole attempt, one range");
    // An adjacent piece joins the first: a range across both is answered.
    let (code, _, body) = get(front.addr, path, "Range: bytes=100-199\r\n").await;
    assert_eq!((code, body), (206, pattern(100, 199)));
    assert_eq!(range_seen(&origin, path).await.as_deref(), Some("bytes=100-199"), "asked in ranges, not whole again");
    let (code, head, body) = get(front.addr, path, "Range: bytes=50-150\r\n").await;
    assert_eq!((code, body), (206, pattern(50, 150)), "{head}");
    assert_eq!(reached(&origin, path).await, 3);
    // A range no piece holds goes to main.
    let (code, _, body) = get(front.addr, path, "Range: bytes=1000-1009\r\n").await;
    assert_eq!((code, body), (206, pattern(1000, 1009)));
    assert_eq!(reached(&origin, path).await, 4);
    // A successful unsafe request drops the pieces too (RFC 9111 §4.4).
    assert_eq!(support::request(front.addr, "POST", path, "Content-Length: 0\r\n").await.0, 200);
    get(front.addr, path, "Range: bytes=10-49\r\n").await;
    assert_eq!(reached(&origin, path).await, 6);
}

#[tokio::test]
async fn rfc9111_s3_4_pieces_that_cover_the_object_become_a_whole_stored_response() {
    let (origin, front) = stack().await;
    // No Content-Length on the whole answer: asked in ranges.
    let path = "/range-join?cc=max-age%3D60&etag=j&size=1000&pattern=1&ranges=1&nolen=1";
    for (range, first, last) in [("bytes=0-599", 0, 599), ("bytes=400-", 400, 999)] {
        let (code, head, body) = get(front.addr, path, &format!("Range: {range}\r\n")).await;
        assert_eq!((code, body), (206, pattern(first, last)), "{head}");
    }
    let asked = reached(&origin, path).await;
    let (code, head, body) = get(front.addr, path, "").await;
    assert_eq!((code, body), (200, pattern(0, 999)), "{head}");
    assert_eq!(response_header(&head, "content-length").as_deref(), Some("1000"));
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    assert_eq!(reached(&origin, path).await, asked);
}

#[tokio::test]
async fn rfc9111_s4_3_1_a_range_request_on_a_stale_entry_revalidates_the_whole_object() {
    let (origin, front) = stack().await;
    let path = "/range-stale?cc=max-age%3D1&etag=s1&size=1000&pattern=1&ranges=1";
    get(front.addr, path, "").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Main is asked without the range (If-None-Match only): its 304 freshens the stored object,
    // and the range is answered from it.
    let (code, head, body) = get(front.addr, path, "Range: bytes=20-29\r\n").await;
    assert_eq!((code, body), (206, pattern(20, 29)), "{head}");
    assert!(response_header(&head, "cache-status").unwrap().contains("fwd-status=304"), "{head}");
    assert_eq!(range_seen(&origin, path).await, None, "the revalidation asked for the whole object");
    let (_, head, _) = get(front.addr, path, "Range: bytes=0-9\r\n").await;
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "fresh again: {head}");
    // A new object on revalidation is stored whole and the range answered from it.
    let changing = "/range-stale-new?cc=max-age%3D1&etagn=1&size=1000&pattern=1&ranges=1";
    get(front.addr, changing, "").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, head, body) = get(front.addr, changing, "Range: bytes=990-\r\n").await;
    assert_eq!((code, body), (206, pattern(990, 999)), "{head}");
    assert_eq!(response_header(&head, "etag").as_deref(), Some("\"v2\""), "{head}");
    let (_, head, _) = get(front.addr, changing, "Range: bytes=0-9\r\n").await;
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    assert_eq!(reached(&origin, changing).await, 2);
}

#[tokio::test]
async fn rfc9110_s15_2_an_interim_response_is_never_stored_and_does_not_stop_the_final_one() {
    let (origin, front) = stack().await;
    let path = "/hints?cc=max-age%3D60&hints=1";
    let (code, head, body) = get(front.addr, path, "").await;
    assert_eq!((code, body.as_str()), (200, format!("{path} #1").as_str()), "{head}");
    assert!(response_header(&head, "cache-status").unwrap().contains("stored"), "{head}");
    // The stored response is the final one, without the interim response's fields.
    let (code, head, body) = get(front.addr, path, "").await;
    assert_eq!((code, body.as_str()), (200, format!("{path} #1").as_str()), "{head}");
    assert!(response_header(&head, "cache-status").unwrap().starts_with("sitecar; hit"), "{head}");
    assert_eq!(response_header(&head, "link"), None, "{head}");
    assert_eq!(reached(&origin, path).await, 1);
}
