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
    // Not JSON at all: said once, by the command and in the log.
    std::fs::write(&spec, "{\"sitecontainers\": [").unwrap();
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 1, "{text}");
    assert_eq!(text.matches("invalid JSON at line").count(), 1, "{text}");
    let logged = std::fs::read_to_string(
        std::fs::read_dir(dir.path().join(".sitecar/home/LogFiles"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("_docker.log") && !p.to_string_lossy().ends_with("_default_docker.log"))
            .unwrap(),
    )
    .unwrap();
    let refusal = logged.lines().rfind(|l| l.contains("reload refused")).unwrap();
    assert_eq!(refusal.matches("invalid JSON at line").count(), 1, "{refusal}");

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
    // A restart caused by a reload is no crash: not counted, not in the metric.
    let v: serde_json::Value = serde_json::from_str(&http(p.admin, "GET", "/status").1).unwrap();
    assert!(v["containers"].as_array().unwrap().iter().all(|c| c["restarts"] == 0), "{v:#}");
    let metrics = http(p.admin, "GET", "/metrics").1;
    assert_eq!(support::sample(&metrics, r#"sitecar_container_restarts_total{container="web"}"#), Some(0.0), "{metrics}");
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
    let mut sitecar = support::Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .args(["up", "--watch"])
            .arg(&spec)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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

/// A spec with the sidecars `sides` (name, port) in order, then main `web` on `main`.
fn write_containers(file: &Path, p: &Ports, sides: &[(&str, u16)], main_name: &str) {
    let app = support::app_py();
    let mut containers: Vec<String> = sides
        .iter()
        .map(|(n, port)| {
            format!(
                r#"{{"name": "{n}", "properties": {{"image": "t/{n}", "isMain": false, "targetPort": "{port}", "startUpCommand": "exec python3 {app} {n} {port}"}}}}"#
            )
        })
        .collect();
    containers.push(format!(
        r#"{{"name": "{main_name}", "properties": {{"image": "t/web", "isMain": true, "targetPort": "{m}", "startUpCommand": "exec python3 {app} web {m}"}}}}"#,
        m = p.main
    ));
    std::fs::write(
        file,
        format!(
            r#"{{"sitecontainers": [{}], "proxy": {{"listen": ["127.0.0.1:{f}"]}}, "admin": {{"listen": "127.0.0.1:{a}"}},
            "local": {{"gracePeriodSeconds": 2, "restart": {{"initialBackoffSeconds": 0.2}}}}}}"#,
            containers.join(","),
            f = p.front,
            a = p.admin
        ),
    )
    .unwrap();
}

fn names(admin: u16) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&http(admin, "GET", "/status").1).unwrap();
    v["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

/// True when something answers a GET on `port` with 200 (any failure is false).
fn answers(port: u16) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"))
    };
    attempt().unwrap_or(false)
}

#[test]
fn reload_adds_and_removes_sidecars_without_touching_main() {
    let dir = tempfile::tempdir().unwrap();
    let p = Ports { front: free_port(), admin: free_port(), side: free_port(), main: free_port() };
    let extra = free_port();
    let spec = dir.path().join("spec.json");
    write_containers(&spec, &p, &[("side", p.side)], "web");
    let mut sitecar = support::up_until_ready(&spec, p.admin);
    let (side0, web0) = pids(p.admin);

    // A sidecar added (before the existing one): it starts; nothing else restarts.
    write_containers(&spec, &p, &[("extra", extra), ("side", p.side)], "web");
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("extra (added)") && !text.contains("web"), "{text}");
    wait_until("the added sidecar answers", Duration::from_secs(20), || answers(extra));
    assert_eq!(http(extra, "GET", "/").1, "hello from extra");
    assert_eq!(names(p.admin), ["side", "web", "extra"]);
    assert_eq!(pids(p.admin), (side0, web0), "main and the other sidecar kept running");

    // A sidecar removed: it stops for good; main keeps serving.
    write_containers(&spec, &p, &[("extra", extra)], "web");
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("side (removed)"), "{text}");
    wait_until("the removed sidecar stopped", Duration::from_secs(10), || !answers(p.side) && names(p.admin) == ["web", "extra"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!answers(p.side), "a removed sidecar is not restarted");
    let metrics = http(p.admin, "GET", "/metrics").1;
    assert!(!metrics.contains(r#"container="side""#), "a removed container loses its series");
    assert!(metrics.contains(r#"sitecar_container_up{container="extra"} 1"#), "{metrics}");
    let v: serde_json::Value = serde_json::from_str(&http(p.admin, "GET", "/status").1).unwrap();
    assert_eq!(v["containers"][0]["pid"].as_u64(), Some(web0), "main never restarted");
    assert_eq!(http(p.front, "GET", "/").0, 200);
    // An added sidecar is supervised: killed, it comes back.
    let extra_pid = v["containers"][1]["pid"].as_u64().unwrap();
    Command::new("kill").args(["-9", &extra_pid.to_string()]).status().unwrap();
    wait_until("the added sidecar restarted", Duration::from_secs(10), || {
        let v: serde_json::Value = serde_json::from_str(&http(p.admin, "GET", "/status").1).unwrap();
        v["containers"][1]["restarts"] == 1 && answers(extra)
    });

    // Another main: refused, nothing changes.
    write_containers(&spec, &p, &[("extra", extra)], "web2");
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("another main"), "{text}");
    assert_eq!(names(p.admin), ["web", "extra"]);

    // Shutdown stops everything, the added sidecar included.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = sitecar.wait();
    assert!(!answers(extra) && !answers(p.main));
}

#[test]
fn reload_moves_the_listeners_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let p = Ports { front: free_port(), admin: free_port(), side: free_port(), main: free_port() };
    let spec = dir.path().join("spec.json");
    write_containers(&spec, &p, &[("side", p.side)], "web");
    let mut sitecar = support::up_until_ready(&spec, p.admin);
    let (side0, web0) = pids(p.admin);
    let mut kept = TcpStream::connect(("127.0.0.1", p.front)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(on(&mut kept, "/").0, 200);

    // Listen elsewhere: the new port serves, the old one stops accepting, the open connection on
    // it is still served, and no container restarts.
    let moved = Ports { front: free_port(), admin: p.admin, side: p.side, main: p.main };
    write_containers(&spec, &moved, &[("side", p.side)], "web");
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 0, "{text}");
    assert_eq!(http(moved.front, "GET", "/").0, 200);
    wait_until("the old listener closed", Duration::from_secs(5), || TcpStream::connect(("127.0.0.1", p.front)).is_err());
    assert_eq!(on(&mut kept, "/").0, 200, "a connection accepted before the reload stays");
    assert_eq!(pids(p.admin), (side0, web0));

    // A port someone else holds: the reload is refused, naming it, and nothing changes.
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        &format!(r#""listen": ["127.0.0.1:{}"]"#, moved.front),
        &format!(r#""listen": ["127.0.0.1:{}", "127.0.0.1:{taken_port}"]"#, moved.front),
    );
    std::fs::write(&spec, text).unwrap();
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("cannot listen on 127.0.0.1:{taken_port}")) && text.contains("already in use"), "{text}");
    assert_eq!(http(moved.front, "GET", "/").0, 200);
    assert_eq!(pids(p.admin), (side0, web0));

    // A lower connection limit: with it reached (the kept connection and two more), the next
    // connection is refused while the open ones are served.
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        &format!(r#""listen": ["127.0.0.1:{}", "127.0.0.1:{taken_port}"]"#, moved.front),
        &format!(r#""listen": ["127.0.0.1:{}"], "maxConnections": 3"#, moved.front),
    );
    std::fs::write(&spec, text).unwrap();
    let (code, text) = reload_cli(p.admin);
    assert_eq!(code, 0, "{text}");
    let mut open: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", moved.front)).unwrap()).collect();
    for c in &mut open {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(on(c, "/").0, 200);
    }
    let mut extra = TcpStream::connect(("127.0.0.1", moved.front)).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(matches!(extra.read(&mut buf), Ok(0) | Err(_)), "a connection past the new limit is closed");
    assert_eq!(on(&mut kept, "/").0, 200);
    assert_eq!(on(&mut open[0], "/").0, 200);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = sitecar.wait();
}
