//! `sitecar up` with the edge features of a spec: an offload rule (its directory relative to the
//! spec), the shared cache with its Cache-Status, metrics and purge through the admin API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use support::{http, two_container_spec, up_until_ready};

#[test]
fn spec_cache_and_offload_through_sitecar_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("public")).unwrap();
    std::fs::write(dir.path().join("public/hello.txt"), "served at the edge").unwrap();
    let extra = r#", "cache": {"enabled": true, "maxBytes": 1048576}, "offload": [{"prefix": "/assets", "dir": "public"}]"#;
    let (spec, p) = two_container_spec(dir.path(), "side", extra);
    let mut sitecar = up_until_ready(&spec, p.admin);

    assert_eq!(http(p.front, "GET", "/assets/hello.txt"), (200, "served at the edge".into()));
    // A miss falls through to main.
    assert_eq!(http(p.front, "GET", "/assets/none.txt"), (200, "hello from web".into()));

    assert_eq!(http(p.front, "GET", "/cached").1, "cached from web #1");
    assert_eq!(http(p.front, "GET", "/cached").1, "cached from web #1", "the second answered from the cache");
    let metrics = http(p.admin, "GET", "/metrics").1;
    assert!(metrics.contains("sitecar_cache_requests_total{result=\"hit\"} 1"), "{metrics}");
    // The hit, answered without a trip through the request path's future, is counted like any
    // request (the two offload requests and the two /cached ones) and leaves nothing in flight.
    let counted = r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_class="2xx"} 4"#;
    assert!(metrics.contains(counted), "{metrics}");
    assert!(metrics.contains("http_server_active_requests 0"), "{metrics}");
    assert!(metrics.contains("sitecar_cache_entries 1"), "{metrics}");
    let status = http(p.admin, "GET", "/status").1;
    assert!(status.contains("\"cache\":{\"entries\":1,"), "{status}");

    let (code, body) = http(p.admin, "POST", "/cache/purge?url=/cached");
    assert_eq!(code, 200);
    assert!(body.contains("\"purged\":1"), "{body}");
    assert_eq!(http(p.front, "GET", "/cached").1, "cached from web #2", "asked main again after the purge");

    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = sitecar.wait();
}
