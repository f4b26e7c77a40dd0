//! `sitecar up` with no spec: the embedded demo stack through the real supervisor and front door.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: demo.local\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn demo_stack_serves_a_page_through_the_front_door_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut sitecar = support::Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Requests sent before main is ready are held, then answered.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        if let Some(p) = get(port, "/").filter(|p| p.starts_with("HTTP/1.1 200")) {
            break p;
        }
        assert!(Instant::now() < deadline, "the demo never answered");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.contains("Hello from the sitecar demo"), "{page}");
    assert!(page.contains("Visits counted by the <b>counter</b> sidecar: <b id=visits>1</b>"), "{page}");
    assert!(page.contains("<th>x-forwarded-host</th><td>demo.local</td>"), "{page}");
    let second = get(port, "/api/visits").unwrap();
    assert!(second.ends_with("\r\n\r\n2"), "{second}");

    Command::new("kill").args(["-INT", &sitecar.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = sitecar.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "sitecar did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let mut out = String::new();
    sitecar.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(out.contains("counter    | listening on"), "{out}");
    assert!(out.contains("web: started"), "{out}");
    assert!(out.contains("\"GET / HTTP/1.1\" 200"), "access log line: {out}");
    let stop_web = out.find("web: stopping").unwrap();
    let stop_counter = out.find("counter: stopping").unwrap();
    assert!(stop_web < stop_counter, "main stops before its sidecar");
    assert!(dir.path().join(".sitecar/home/LogFiles").is_dir());
}
