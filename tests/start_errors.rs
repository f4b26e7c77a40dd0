//! What `sitecar up` says when it cannot start, and that it starts nothing then.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::*;

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;

#[test]
fn a_taken_port_is_named_with_its_holder_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let marker = dir.path().join("started");
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"sitecontainers": [{{"name": "web", "properties": {{"image": "w", "isMain": true, "targetPort": "{}",
              "startUpCommand": "touch {} && sleep 30"}}}}], "proxy": {{"listen": ["127.0.0.1:{port}"]}}, "admin": {{"listen": "127.0.0.1:{}"}}}}"#,
            free_port(),
            marker.display(),
            free_port()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).arg("up").arg(&spec).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}: the port is already in use")), "{err}");
    assert!(err.contains(&format!("(held by pid {}", std::process::id())), "the holder is named: {err}");
    assert!(err.contains("nothing was started"), "{err}");
    assert!(!marker.exists(), "a container was started");
    drop(taken);
}

#[test]
fn an_invalid_spec_starts_nothing_and_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"[{"name": "web", "properties": {"image": "w", "isMain": true, "targetPort": "0", "startUpCommand": "x", "colour": 1}}]"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).arg("up").arg(&spec).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("2 problems") && err.contains("nothing was started"), "{err}");
    assert!(err.contains("$[0].properties.targetPort") && err.contains("$[0].properties.colour"), "{err}");
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let port = free_port();
    let mut child = Stack(
        Command::new("prlimit")
            .args(["--nofile=1024:4096", env!("CARGO_BIN_EXE_sitecar"), "proxy", "--to", "127.0.0.1:9", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "sitecar proxy did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let soft: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(soft, 4096, "{line}");
}

#[test]
fn a_containers_port_taken_at_start_is_named_with_its_holder_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, p) = support::two_container_spec(dir.path(), "side", "");
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, p.side)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).arg("up").arg(&spec).env("NO_COLOR", "1").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("container side: port {} is already in use (held by pid {}", p.side, std::process::id())), "{err}");
    assert!(err.contains("nothing was started"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("side: starting"), "a container was started");
    drop(taken);
}

#[test]
fn a_restart_whose_port_a_stranger_took_says_so_and_is_never_started() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, p) = support::two_container_spec(dir.path(), "side", "");
    let text = std::fs::read_to_string(&spec).unwrap().replace(r#""initialBackoffSeconds": 0.2"#, r#""initialBackoffSeconds": 1"#);
    std::fs::write(&spec, text).unwrap();
    let sitecar = support::up_until_ready(&spec, p.admin);
    let status = || -> serde_json::Value { serde_json::from_str(&support::http(p.admin, "GET", "/status").1).unwrap() };
    let pid = status()["containers"].as_array().unwrap().iter().find(|c| c["name"] == "side").unwrap()["pid"].as_u64().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    // A stranger takes the port while the sidecar waits for its backoff.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let stranger = loop {
        if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, p.side)) {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "the port never came free");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    support::wait_until("the refused start", std::time::Duration::from_secs(10), || {
        let logs = support::docker::log_files(&dir.path().join(".sitecar"), "_docker.log");
        logs.contains(&format!("port {} is already in use (held by pid {}", p.side, std::process::id()))
    });
    let side = status()["containers"].as_array().unwrap().iter().find(|c| c["name"] == "side").unwrap().clone();
    assert_ne!(side["phase"], "running", "never 'started' on a stranger's port: {side:#}");
    drop(stranger);
    support::wait_until("the sidecar back once the port is free", std::time::Duration::from_secs(15), || {
        status()["containers"].as_array().unwrap().iter().any(|c| c["name"] == "side" && c["phase"] == "running")
    });
    drop(sitecar);
}
