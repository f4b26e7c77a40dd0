//! The admin API of a running `sitecar up`: metrics after known traffic, status, logs, restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

mod support;
use support::*;

#[test]
fn metrics_status_and_logs_of_a_running_stack() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, Ports { front, admin, .. }) = two_container_spec(dir.path(), "side", r#", "health": {"periodSeconds": 0.2}"#);
    let mut sitecar = up_until_ready(&spec, admin);

    // Idle: the container and build series, no zero series for every method and status class.
    let (_, idle) = http(admin, "GET", "/metrics");
    let idle_lines = idle.lines().count();
    assert!(idle_lines < 250, "{idle_lines} lines when idle:\n{idle}");
    assert!(!idle.contains("http_request_method="), "{idle}");
    assert_eq!(sample(&idle, r#"sitecar_container_up{container="web"}"#), Some(1.0), "{idle}");
    assert!(idle.contains("sitecar_build_info{version="));

    for i in 0..100 {
        assert_eq!(http(front, "GET", &format!("/page/{i}")).0, 200);
    }
    let (_, metrics) = http(admin, "GET", "/metrics");
    let count = r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_class="2xx"}"#;
    assert_eq!(sample(&metrics, count), Some(100.0), "{metrics}");
    assert_eq!(sample(&metrics, "http_server_active_requests"), Some(0.0));
    assert_eq!(sample(&metrics, r#"sitecar_container_up{container="side"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"sitecar_container_restarts_total{container="side"}"#), Some(0.0));
    assert!(sample(&metrics, r#"sitecar_container_memory_rss_bytes{container="web"}"#).unwrap() > 1e6, "{metrics}");
    assert!(metrics.contains("process_resident_memory_bytes"), "process metrics");
    assert!(metrics.contains("sitecar_build_info{version="));
    wait_until("probe metrics", Duration::from_secs(10), || {
        let (_, m) = http(admin, "GET", "/metrics");
        sample(&m, r#"sitecar_container_probe_duration_seconds{container="web"}"#).is_some_and(|s| s > 0.0 && s < 1.0)
            && sample(&m, r#"sitecar_container_probe_failures_total{container="web"}"#) == Some(0.0)
    });

    // A killed sidecar: restarts 1, up again.
    let (_, status) = http(admin, "GET", "/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["main"], "ready");
    let side_pid = v["containers"][0]["pid"].as_u64().unwrap();
    assert_eq!(v["containers"][0]["name"], "side");
    Command::new("kill").args(["-9", &side_pid.to_string()]).status().unwrap();
    wait_until("the restart in /metrics", Duration::from_secs(10), || {
        let (_, m) = http(admin, "GET", "/metrics");
        sample(&m, r#"sitecar_container_restarts_total{container="side"}"#) == Some(1.0)
            && sample(&m, r#"sitecar_container_up{container="side"}"#) == Some(1.0)
    });
    let (_, m) = http(admin, "GET", "/metrics");
    assert_eq!(sample(&m, r#"sitecar_container_last_exit_code{container="side"}"#), Some(137.0));

    // A failed request is listed with its ids: main is killed under a POST (which, unlike a GET,
    // is never sent twice).
    let web_pid = v["containers"][1]["pid"].as_u64().unwrap();
    Command::new("kill").args(["-STOP", &web_pid.to_string()]).status().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", front)).unwrap();
    s.write_all(b"POST /will-fail HTTP/1.1\r\nHost: x\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill").args(["-KILL", &web_pid.to_string()]).status().unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let (_, status) = http(admin, "GET", "/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let errors = v["recent_errors"].as_array().unwrap();
    let e = errors.iter().find(|e| e["target"] == "/will-fail").unwrap_or_else(|| panic!("{errors:?}"));
    assert_eq!(e["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(e["status"], 502);
    wait_until("main back", Duration::from_secs(15), || http(admin, "GET", "/readyz").0 == 200);

    // Following a container's log as server-sent events.
    let mut follow = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    follow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    follow.write_all(b"GET /logs/web?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(": following") {
        let n = follow.read(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.to_ascii_lowercase().contains("content-type: text/event-stream"), "{seen}");
    assert_eq!(http(front, "GET", "/followed-line").0, 200);
    while !seen.contains("GET /followed-line") {
        let n = follow.read(&mut buf).expect("the followed line arrives");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("data: {"), "{seen}");

    // Logs, restart through the API, and the CLI.
    let (code, logs) = http(admin, "GET", "/logs/web?lines=5");
    assert_eq!(code, 200);
    assert!(logs.contains("GET /page/99"), "{logs}");
    assert_eq!(http(admin, "GET", "/logs/nope").0, 404);
    assert_eq!(http(admin, "POST", "/containers/side/restart").0, 202);
    wait_until("the API restart", Duration::from_secs(10), || {
        let (_, s) = http(admin, "GET", "/status");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        v["containers"][0]["restarts"] == 2 && v["containers"][0]["phase"] == "running"
    });
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(["status", "--admin", &format!("127.0.0.1:{admin}")]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("NAME") && table.lines().any(|l| l.starts_with("side ") && l.contains("running") && l.contains(" 2 ")),
        "{table}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(["logs", "web", "--admin", &format!("127.0.0.1:{admin}")]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("web | GET /page/42"), "{}", String::from_utf8_lossy(&out.stdout));

    Command::new("kill").args(["-TERM", &sitecar.id().to_string()]).status().unwrap();
    wait_until("exit", Duration::from_secs(15), || sitecar.try_wait().unwrap().is_some());
}
