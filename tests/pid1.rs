//! `sitecar up` as a container entrypoint: PID 1 reaping, signals, and nothing left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::*;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A spec of one sidecar and main, with app.py flags for each.
fn write_spec(dir: &Path, side_flags: &str, main_flags: &str) -> std::path::PathBuf {
    let (s, m) = (free_port(), free_port());
    let events = dir.join("events");
    let spec = format!(
        r#"{{"sitecontainers": [
          {{"name": "side", "properties": {{"image": "t/side", "isMain": false, "targetPort": "{s}", "startUpCommand": "exec python3 {app} side {s} {side_flags}"}}}},
          {{"name": "web", "properties": {{"image": "t/web", "isMain": true, "targetPort": "{m}", "startUpCommand": "exec python3 {app} web {m} {main_flags}"}}}}
        ], "appSettings": {{"EVENTS": "{events}"}},
        "proxy": {{"listen": ["127.0.0.1:{p1}"]}}, "admin": {{"listen": "127.0.0.1:{p2}"}},
        "local": {{"gracePeriodSeconds": 2}}}}"#,
        app = app_py(),
        events = events.display(),
        p1 = free_port(),
        p2 = free_port()
    );
    let file = dir.join("spec.json");
    std::fs::write(&file, spec).unwrap();
    file
}

fn events(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("events")).unwrap_or_default().lines().map(|l| l.split(' ').map(String::from).collect()).collect()
}

fn up(spec: &Path, wrap: &[&str]) -> Stack {
    let sitecar = env!("CARGO_BIN_EXE_sitecar");
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(sitecar);
            c
        }
        None => Command::new(sitecar),
    };
    Stack(cmd.arg("up").arg(spec).env("NO_COLOR", "1").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

fn signal(pid: u32, sig: nix_signal) {
    Command::new("kill").arg(format!("-{}", sig.0)).arg(pid.to_string()).status().unwrap();
}

#[allow(non_camel_case_types)]
struct nix_signal(&'static str);
const SIGINT: nix_signal = nix_signal("INT");
const SIGTERM: nix_signal = nix_signal("TERM");

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "sitecar did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    // main starts a child in its group and a daemon in a session of its own.
    let spec = write_spec(dir.path(), "child", "child daemon");
    let mut sitecar = up(&spec, &[]);
    wait_until("main listening", Duration::from_secs(20), || events(dir.path()).iter().any(|e| e[1] == "listening" && e[2] == "web"));
    let pids: Vec<u32> = events(dir.path())
        .iter()
        .filter(|e| matches!(e[1].as_str(), "start" | "child" | "daemon"))
        .map(|e| if e[1] == "start" { e[3].parse().unwrap() } else { e[4].parse().unwrap() })
        .collect();
    assert_eq!(pids.len(), 5, "two apps, two children, one daemon: {:?}", events(dir.path()));
    assert!(pids.iter().all(|&p| alive(p)));
    signal(sitecar.id(), SIGINT);
    let status = wait_exit(&mut sitecar, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "exit status is main's: app.py exits 0 on SIGTERM");
    std::thread::sleep(Duration::from_millis(200));
    let left: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[test]
fn as_pid_1_orphaned_zombies_are_reaped() {
    let probe = Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "true"]).status();
    if !matches!(probe, Ok(s) if s.success()) {
        panic!("unshare --pid --fork --mount-proc is needed for this test (util-linux, root): {probe:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    // Both apps leave a short-lived orphan behind, which sitecar (PID 1 here) adopts.
    let spec = write_spec(dir.path(), "orphan", "orphan");
    let mut unshare = up(&spec, &["unshare", "--pid", "--fork", "--mount-proc"]);
    wait_until("main listening", Duration::from_secs(20), || events(dir.path()).iter().any(|e| e[1] == "listening" && e[2] == "web"));
    // sitecar is unshare's child: PID 1 inside the new namespace.
    let sitecar = children_of(unshare.id()).first().map(|c| c.0).expect("sitecar runs under unshare");
    let status = std::fs::read_to_string(format!("/proc/{sitecar}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap().split_whitespace().last().unwrap().to_string();
    assert_eq!(nspid, "1", "sitecar is PID 1 in its namespace");
    std::thread::sleep(Duration::from_millis(1500));
    let zombies: Vec<u32> = children_of(sitecar).into_iter().filter(|c| c.1 == 'Z').map(|c| c.0).collect();
    assert!(zombies.is_empty(), "zombies left unreaped under PID 1: {zombies:?}");
    assert!(children_of(sitecar).len() >= 2, "both containers still run");
    signal(sitecar, SIGTERM);
    let status = wait_exit(&mut unshare, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}
