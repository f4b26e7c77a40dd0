//! Offload rules and compression through the front door: files served at the edge with HTTP's
//! validators and ranges, misses falling through to a real origin, traversal attempts refused
//! without reading outside the directory, and main's responses compressed for clients that ask.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::io::Read;
use std::path::Path;

use sitecar_config::OffloadRule;
use sitecar_proxy::offload::Offload;
use support::{get, request, response_header, seen, Front, Origin};

struct Site {
    _dir: tempfile::TempDir,
    _origin: Origin,
    front: Front,
}

const SECRET: &str = "top secret outside the offload directory";

/// public/ with files, a sub-directory with index.html, a precompressed asset, and symlinks; a
/// secret file beside public/ that no request may read.
async fn site(fallthrough: bool, compression: bool) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public");
    std::fs::create_dir_all(public.join("docs")).unwrap();
    std::fs::write(public.join("app.css"), "body { color: red }\n".repeat(50)).unwrap();
    std::fs::write(public.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(public.join("big.js"), "console.log(1);\n".repeat(100)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, "console.log(1);\n".repeat(100).as_bytes()).unwrap();
    std::fs::write(public.join("big.js.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), public.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), public.join("up")).unwrap();
    std::os::unix::fs::symlink("app.css", public.join("alias.css")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", public.join("rel-leak.txt")).unwrap();
    let origin = Origin::start();
    let rules = [OffloadRule { prefix: "/static".into(), dir: public.clone(), fallthrough }];
    let config = sitecar_proxy::EdgeConfig { offload: Some(Offload::new(&rules)), compression, ..support::config() };
    let front = Front::start(origin.addr, config, support::limits(), true).await;
    Site { _dir: dir, _origin: origin, front }
}

#[tokio::test]
async fn files_served_with_validators_ranges_and_index() {
    let s = site(true, false).await;
    let (code, head, body) = get(s.front.addr, "/static/app.css", "").await;
    assert_eq!((code, body.len()), (200, 1000));
    let etag = response_header(&head, "etag").unwrap();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");
    assert!(response_header(&head, "last-modified").is_some());
    assert_eq!(response_header(&head, "content-type").as_deref(), Some("text/css"));
    assert_eq!(get(s.front.addr, "/static/app.css", &format!("If-None-Match: {etag}\r\n")).await.0, 304);
    let (code, head, body) = get(s.front.addr, "/static/app.css", "Range: bytes=0-3\r\n").await;
    assert_eq!((code, body.as_str()), (206, "body"));
    assert_eq!(response_header(&head, "content-range").as_deref(), Some("bytes 0-3/1000"));
    assert_eq!(get(s.front.addr, "/static/docs/", "").await.2, "<h1>docs</h1>");
    let (code, head, _) = get(s.front.addr, "/static/docs", "").await;
    assert_eq!((code, response_header(&head, "location").as_deref()), (307, Some("/static/docs/")), "redirect keeps the prefix");
    // A relative symlink that stays inside the directory is followed.
    assert_eq!(get(s.front.addr, "/static/alias.css", "").await.2.len(), 1000);
    assert_eq!(request(s.front.addr, "HEAD", "/static/app.css", "").await.2, "");
}

/// (head as "name: value" lines, body bytes) of a GET through hyper's client.
async fn get_bytes(addr: std::net::SocketAddr, path: &str, extra: &str) -> (String, Vec<u8>) {
    use http_body_util::{BodyExt, Empty};
    let client: hyper_util::client::legacy::Client<_, Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    for line in extra.split("\r\n").filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').unwrap();
        req = req.header(k.trim(), v.trim());
    }
    let resp = client.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let mut head = format!("HTTP/1.1 {}\r\n", resp.status());
    for (k, v) in resp.headers() {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
    }
    (head, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn gunzip(b: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(b).read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn precompressed_variant_chosen_by_accept_encoding() {
    let s = site(true, false).await;
    let (head, body) = get_bytes(s.front.addr, "/static/big.js", "Accept-Encoding: gzip\r\n").await;
    assert_eq!(response_header(&head, "content-encoding").as_deref(), Some("gzip"), "{head}");
    assert_eq!(gunzip(&body), "console.log(1);\n".repeat(100));
    let (head, body) = get_bytes(s.front.addr, "/static/big.js", "").await;
    assert_eq!(response_header(&head, "content-encoding"), None);
    assert_eq!(body.len(), 1600);
}

#[tokio::test]
async fn a_changed_file_is_served_within_a_second() {
    let s = site(true, false).await;
    let file = s._dir.path().join("public/app.css");
    assert_eq!(get(s.front.addr, "/static/app.css", "").await.2.len(), 1000);
    std::fs::write(&file, "changed").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(get(s.front.addr, "/static/app.css", "").await.2, "changed");
    std::fs::remove_file(&file).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(get(s.front.addr, "/static/app.css", "").await.2.contains("/static/app.css"), "gone: main answers");
}

#[tokio::test]
async fn misses_fall_through_to_main_unless_the_rule_says_otherwise() {
    let s = site(true, false).await;
    let (code, _, body) = get(s.front.addr, "/static/nope.css", "").await;
    assert_eq!(code, 200);
    assert!(!seen(&body).is_empty(), "main answered: {body}");
    assert!(body.contains("/static/nope.css"));
    // Paths outside every prefix, and other methods, go to main as always.
    assert!(get(s.front.addr, "/staticfile", "").await.2.contains("/staticfile"));
    assert!(request(s.front.addr, "POST", "/static/app.css", "Content-Length: 0\r\n").await.2.contains("POST"));
    let strict = site(false, false).await;
    assert_eq!(get(strict.front.addr, "/static/nope.css", "").await.0, 404);
    assert_eq!(request(strict.front.addr, "POST", "/static/app.css", "Content-Length: 0\r\n").await.0, 405);
}

#[tokio::test]
async fn traversal_attempts_never_read_outside_the_directory() {
    let s = site(false, false).await;
    let attempts = [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/docs/../../secret.txt",
        "/static/docs/%2e%2e/%2e%2e/secret.txt",
        "/static/..%5csecret.txt",
        "/static/leak.txt",
        "/static/rel-leak.txt",
        "/static/up/secret.txt",
        "/static/%00/secret.txt",
    ];
    for path in attempts {
        let (code, _, body) = get(s.front.addr, path, "").await;
        assert!(code == 403 || code == 404 || code == 400, "{path}: {code}");
        assert!(!body.contains(SECRET), "{path} leaked the secret");
    }
    assert_eq!(get(s.front.addr, "/static/leak.txt", "").await.0, 403, "a symlink out of the tree is forbidden");
    assert!(Path::new(&s._dir.path().join("secret.txt")).exists());
}

#[tokio::test]
async fn main_responses_compressed_when_the_client_accepts_and_main_did_not() {
    let s = site(true, true).await;
    // origin.py's /download is application/octet-stream (skipped); /headers is JSON, but short:
    // pad it with a long header so it passes the minimum size.
    let pad = format!("X-Pad: {}\r\n", "p".repeat(600));
    let (head, body) = get_bytes(s.front.addr, "/headers", &format!("Accept-Encoding: gzip\r\n{pad}")).await;
    assert_eq!(response_header(&head, "content-encoding").as_deref(), Some("gzip"), "{head}");
    assert_eq!(response_header(&head, "vary").as_deref(), Some("accept-encoding"));
    assert!(gunzip(&body).contains("x-pad"), "main's JSON, compressed");
    for enc in ["br", "zstd"] {
        let (_, head, _) = get(s.front.addr, "/headers", &format!("Accept-Encoding: {enc}\r\n{pad}")).await;
        assert_eq!(response_header(&head, "content-encoding").as_deref(), Some(enc));
    }
    // No Accept-Encoding, an octet stream, or compression turned off: as main sent it.
    let (_, head, body) = get(s.front.addr, "/headers", &pad).await;
    assert_eq!(response_header(&head, "content-encoding"), None);
    assert!(body.to_ascii_lowercase().contains("x-pad"), "main saw the field (names in any case)");
    // RFC 9110 §12.5.5: Vary tells downstream caches the body depends on Accept-Encoding, for
    // the client that got it as it is too.
    assert_eq!(response_header(&head, "vary").as_deref(), Some("accept-encoding"), "{head}");
    let (_, head, _) = get(s.front.addr, "/headers", &format!("Accept-Encoding: identity\r\n{pad}")).await;
    assert_eq!(response_header(&head, "vary").as_deref(), Some("accept-encoding"), "{head}");
    let (_, head, _) = get(s.front.addr, "/download?n=100000", "Accept-Encoding: gzip\r\n").await;
    assert_eq!(response_header(&head, "content-encoding"), None);
    let off = site(true, false).await;
    let (_, head, _) = get(off.front.addr, "/headers", &format!("Accept-Encoding: gzip\r\n{pad}")).await;
    assert_eq!(response_header(&head, "content-encoding"), None);
}
