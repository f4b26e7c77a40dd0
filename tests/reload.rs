//! Change without downtime: `sitecar reload`, SIGHUP and `up --watch` re-read the spec. An
//! invalid spec changes nothing (every problem reported); a valid one restarts only the containers
//! whose spec changed and swaps the front door's settings without closing a connection.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, http, wait_until};

struct Ports {
    front: u16,
    admin: u16,
    side: u16,
    main: u16,
}

/// The spec: sidecar `side` (not inheriting app settings) and main `web`; `greeting` is an app
/// setting, `cache` turns the cache on.
fn write_spec(file: &Path, p: &Ports, greeting: &str, cache: bool) {
    let app = support::app_py();
    std::fs::write(
        file,
        format!(
            r#"{{"sitecontainers": [
              {{"name": "side", "properties": {{"image": "t/side", "isMain": false, "targetPort": "{s}", "startUpCommand": "exec python3 {app} side {s}",
                 "inheritAppSettingsAndConnectionStrings": false}}}},
              {{"name": "web", "properties": {{"image": "t/web", "isMain": true, "targetPort": "{m}", "startUpCommand": "exec python3 {app} web {m}"}}}}
            ], "appSettings": {{"GREETING": "{greeting}"}}, "cache": {{"enabled": {cache}}},
            "proxy": {{"listen": ["127.0.0.1:{f}"]}}, "admin": {{"listen": "127.0.0.1:{a}"}},
            "local": {{"gracePeriodSeconds": 2, "restart": {{"initialBackoffSeconds": 0.2}}}}}}"#,
            s = p.side,
            m = p.main,
            f = p.front,
            a = p.admin,
        ),
    )
    .unwrap();
}

fn pids(admin: u16) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_str(&http(admin, "GET", "/status").1).unwrap();
    let pid = |name: &str| v["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["pid"].as_u64().unwrap_or(0);
    (pid("side"), pid("web"))
}

fn reload_cli(admin: u16) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(["reload", "--admin", &format!("127.0.0.1:{admin}")]).output().unwrap();
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A request on an open keep-alive connection: (status, body).
fn on(conn: &mut TcpStream, path: &str) -> (u16, String) {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if body.len() >= len {
                return (head.split(' ').nth(1).unwrap().parse().unwrap(), body[..len].to_string());
            }
        }
    }
}

#[test]
fn reload_restarts_only_what_changed_and_keeps_connections() {
    let dir = tempfile::tempdir().unwrap();
    let p = Ports { front: free_port(), admin: free_port(), side: free_port(), main: free_port() };
    let spec = dir.path().join("spec.json");
    write_spec(&spec, &p, "hello", false);
    let mut sitecar = support::up_until_ready(&spec, p.admin);
    let (side0, web0) = pids(p.admin);
    let mut kept = TcpStream::connect(("127.0.0.1", p.front)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(on(&mut kept, "/env").1.contains("\"GREETING\": \"hello\""));

    // An invalid spec: refused with its problems, nothing restarted, still serving.
    std::fs::write(&spec, r#"{"sitecontainers": [{"name": "web", "properties": {"image": "x", "isMain": "yes"}}]}"#).unwrap();
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("isMain"), "every problem named: {text}");
    assert_eq!(pids(p.admin), (side0, web0));
    assert_eq!(http(p.front, "GET", "/").0, 200);

    // A valid one changing an app setting and turning the cache on: only main (which inherits the
    // settings) restarts; the sidecar keeps running.
    write_spec(&spec, &p, "bonjour", true);
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("restarted: web"), "{text}");
    wait_until("main restarted and ready", Duration::from_secs(20), || {
        let (side, web) = pids(p.admin);
        side == side0 && web != web0 && web != 0 && http(p.admin, "GET", "/readyz").0 == 200
    });
    assert!(http(p.front, "GET", "/env").1.contains("\"GREETING\": \"bonjour\""));
    // The connection opened before the reload is still open and served.
    assert_eq!(on(&mut kept, "/").0, 200);
    // New connections get the new settings: the cache answers the second request.
    assert_eq!(http(p.front, "GET", "/cached").1, "cached from web #1");
    assert_eq!(http(p.front, "GET", "/cached").1, "cached from web #1");

    // SIGHUP re-reads too: back to "hello".
    write_spec(&spec, &p, "hello", true);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_until("SIGHUP reload", Duration::from_secs(20), || {
        http(p.admin, "GET", "/readyz").0 == 200 && http(p.front, "GET", "/env").1.contains("\"GREETING\": \"hello\"")
    });
    assert_eq!(pids(p.admin).0, side0, "the sidecar never restarted");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = sitecar.wait();
}

#[test]
fn watch_reloads_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let p = Ports { front: free_port(), admin: free_port(), side: free_port(), main: free_port() };
    let spec = dir.path().join("spec.json");
    write_spec(&spec, &p, "one", false);
    let mut sitecar = Command::new(env!("CARGO_BIN_EXE_sitecar"))
        .args(["up", "--watch"])
        .arg(&spec)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("ready", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", p.admin)).is_ok() && http(p.admin, "GET", "/readyz").0 == 200
    });
    write_spec(&spec, &p, "two", false);
    wait_until("the change picked up", Duration::from_secs(20), || {
        http(p.admin, "GET", "/readyz").0 == 200 && http(p.front, "GET", "/env").1.contains("\"GREETING\": \"two\"")
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = sitecar.wait();
}
