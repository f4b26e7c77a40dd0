//! Test harness: a real stack of real processes, supervised in this process.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sitecar_config::{load_str, LoadOptions};
use sitecar_control::{ContainerStatus, Handle, MainState, Options, Supervisor};
use tokio_util::sync::CancellationToken;

pub fn app() -> String {
    format!("{}/tests/support/app.py", env!("CARGO_MANIFEST_DIR"))
}

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

/// `{"name": .., "properties": {..}}` running app.py with `flags`.
pub fn container(name: &str, main: bool, port: u16, flags: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "properties": {{"image": "test/{name}", "isMain": {main}, "targetPort": "{port}",
            "startUpCommand": "exec python3 {} {name} {port} {flags}"{extra}}}}}"#,
        app()
    )
}

/// One line of the events file: (time, what, container, pid, extra).
#[derive(Debug, Clone)]
pub struct Ev {
    pub at: f64,
    pub what: String,
    pub name: String,
    pub pid: u32,
    pub extra: String,
}

fn parse_events(file: &std::path::Path) -> Vec<Ev> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(5, ' ').collect();
            Ev {
                at: f[0].parse().unwrap(),
                what: f[1].into(),
                name: f[2].into(),
                pid: f[3].parse().unwrap(),
                extra: f.get(4).unwrap_or(&"").trim().into(),
            }
        })
        .collect()
}

pub struct Stack {
    pub handle: Handle,
    pub dir: tempfile::TempDir,
    pub events: PathBuf,
    shutdown: CancellationToken,
    join: tokio::task::JoinHandle<i32>,
}

impl Stack {
    /// Starts `containers` with `EVENTS` as an app setting; `rest` adds top-level sections.
    pub async fn start(containers: &[String], rest: &str) -> Stack {
        Self::start_with(containers, &[], rest).await
    }

    /// Like [`Stack::start`], with more app settings.
    pub async fn start_with(containers: &[String], settings: &[(&str, &str)], rest: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events");
        let text = format!(
            r#"{{"sitecontainers": [{}], "appSettings": {{"EVENTS": "{}"{}}}{rest}}}"#,
            containers.join(","),
            events.display(),
            settings.iter().map(|(k, v)| format!(r#", "{k}": "{v}""#)).collect::<String>()
        );
        let spec = load_str(&text, &LoadOptions::default()).unwrap_or_else(|e| panic!("{:?}", e.problems()));
        let options = Options { base_dir: dir.path().to_owned(), console: false, colour: false, adopt_orphans: false };
        let supervisor = Supervisor::prepare(Arc::new(spec), options).unwrap();
        let handle = supervisor.handle();
        let shutdown = CancellationToken::new();
        let join = tokio::spawn(supervisor.run(shutdown.clone()));
        Stack { handle, dir, events, shutdown, join }
    }

    pub fn events(&self) -> Vec<Ev> {
        parse_events(&self.events)
    }

    pub fn event(&self, what: &str, name: &str) -> Vec<Ev> {
        self.events().into_iter().filter(|e| e.what == what && e.name == name).collect()
    }

    pub fn status(&self, name: &str) -> ContainerStatus {
        self.handle.status.borrow().iter().find(|c| c.name == name).cloned().unwrap()
    }

    pub async fn wait_main(&self, want: MainState, within: Duration) {
        let mut rx = self.handle.main.clone();
        tokio::time::timeout(within, rx.wait_for(|s| *s == want)).await.unwrap_or_else(|_| panic!("main never became {want:?}")).unwrap();
    }

    /// Waits until `pred` holds for the status list.
    pub async fn wait_status(&self, within: Duration, what: &str, pred: impl Fn(&[ContainerStatus]) -> bool) {
        let deadline = Instant::now() + within;
        let mut rx = self.handle.status.clone();
        while !pred(&rx.borrow_and_update()) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}: {:#?}", *rx.borrow());
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }

    /// Stops the stack and returns the exit code.
    pub async fn stop(self) -> (i32, Vec<Ev>, tempfile::TempDir) {
        self.shutdown.cancel();
        let code = tokio::time::timeout(Duration::from_secs(30), self.join).await.expect("stack did not stop").unwrap();
        (code, parse_events(&self.events), self.dir)
    }
}

pub fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// GET http://addr/path over a fresh connection; the status code.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}
