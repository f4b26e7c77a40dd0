//! Shared builders of the binary's end-to-end tests: ports, waiting, plain HTTP, and the
//! two-container stack (a sidecar and main, both control/tests/support/app.py).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod docker;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A port free on loopback right now, from a block of 20 of its own per test process (nextest
/// runs each test in its own process, many at once): below the kernel's ephemeral range, so
/// neither another test nor an outgoing connection is handed the same port in the meantime.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 1000) as u16 * 20;
    for _ in 0..20 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 20;
        if std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// The test container program shared with the control crate's tests.
pub fn app_py() -> String {
    format!("{}/control/tests/support/app.py", env!("CARGO_MANIFEST_DIR"))
}

/// Polls `f` every 100 ms until it holds, failing the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 request with `Connection: close` to 127.0.0.1:`port`: (status, body).
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    http_with(port, method, path, &[])
}

/// As [`http`], with extra request headers (a `host` among them replaces `Host: x`).
pub fn http_with(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let host = if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) { "" } else { "Host: x\r\n" };
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    s.write_all(format!("{method} {path} HTTP/1.1\r\n{host}{extra}Connection: close\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
}

/// The value of one sample line of Prometheus text, e.g. `name{labels}`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))?.rsplit(' ').next()?.parse().ok()
}

/// Ports of a two-container stack.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub front: u16,
    pub admin: u16,
    pub side: u16,
    pub main: u16,
}

/// Writes a spec with sidecar `side` and main `web` (both app.py) to `dir/spec.json`; `extra`
/// adds top-level sections (each starting with a comma).
pub fn two_container_spec(dir: &Path, side: &str, extra: &str) -> (PathBuf, Ports) {
    let app = app_py();
    let p = Ports { front: free_port(), admin: free_port(), side: free_port(), main: free_port() };
    let spec = dir.join("spec.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"sitecontainers": [
              {{"name": "{side}", "properties": {{"image": "t/{side}", "isMain": false, "targetPort": "{s}", "startUpCommand": "exec python3 {app} {side} {s}"}}}},
              {{"name": "web", "properties": {{"image": "t/web", "isMain": true, "targetPort": "{m}", "startUpCommand": "exec python3 {app} web {m}"}}}}
            ], "proxy": {{"listen": ["127.0.0.1:{f}"]}}, "admin": {{"listen": "127.0.0.1:{a}"}}{extra},
            "local": {{"gracePeriodSeconds": 2, "restart": {{"initialBackoffSeconds": 0.2}}}}}}"#,
            s = p.side,
            m = p.main,
            f = p.front,
            a = p.admin,
        ),
    )
    .unwrap();
    (spec, p)
}

/// A running `sitecar up`: used as its `Child`; stopped (SIGTERM, then SIGKILL after 5 s) when
/// dropped still running, so a test that fails half-way leaves no stack behind.
pub struct Stack(pub std::process::Child);

impl std::ops::Deref for Stack {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Stack {
    /// Waits for the exit and collects piped stdout and stderr (read side by side, as
    /// `Child::wait_with_output` does).
    pub fn wait_with_output(mut self) -> std::io::Result<std::process::Output> {
        let (out, err) = (self.0.stdout.take(), self.0.stderr.take());
        let err = std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut e) = err {
                let _ = e.read_to_end(&mut b);
            }
            b
        });
        let mut stdout = Vec::new();
        if let Some(mut o) = out {
            o.read_to_end(&mut stdout)?;
        }
        let status = self.0.wait()?;
        Ok(std::process::Output { status, stdout, stderr: err.join().unwrap_or_default() })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let _ = std::process::Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `sitecar up SPEC` (output discarded) and waits until its admin API says main is ready.
pub fn up_until_ready(spec: &Path, admin: u16) -> Stack {
    let sitecar = std::process::Command::new(env!("CARGO_BIN_EXE_sitecar"))
        .arg("up")
        .arg(spec)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sitecar = Stack(sitecar);
    wait_until("readyz", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", admin)).is_ok() && http(admin, "GET", "/readyz").0 == 200
    });
    sitecar
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// (pid, state) of every child of `parent`.
pub fn children_of(parent: u32) -> Vec<(u32, char)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut f = rest.split(' ');
            let state = f.next()?.chars().next()?;
            let ppid: u32 = f.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}
