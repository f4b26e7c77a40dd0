//! Clients that request large responses and read them a few bytes at a time cost the front door
//! a bounded window each, not the response: main's bytes wait in main's socket (backpressure);
//! and once they are gone, the memory they cost is returned to the system.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::*;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()))
        .unwrap()
}

#[test]
fn slow_readers_of_large_responses_cost_a_bounded_window_each() {
    let (origin_port, front) = (free_port(), free_port());
    let origin_py = format!("{}/proxy/tests/support/origin.py", env!("CARGO_MANIFEST_DIR"));
    let mut origin =
        Command::new("python3").arg(origin_py).arg(origin_port.to_string()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    std::io::Read::read_exact(origin.stdout.as_mut().unwrap(), &mut [0u8; 6]).unwrap();
    let proxy = Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .args(["proxy", "--to", &format!("127.0.0.1:{origin_port}"), "--listen", &format!("127.0.0.1:{front}"), "--access-log", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the proxy", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", front)).is_ok());
    assert_eq!(http(front, "GET", "/headers").0, 200);
    let before = rss_kib(proxy.id());

    // 300 clients ask for 1 MiB each and read nothing (a small receive window of their own).
    let n = 300;
    let clients: Vec<std::net::TcpStream> = (0..n)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_recv_buffer_size(4096).unwrap();
            s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], front)).into()).unwrap();
            let mut s: std::net::TcpStream = s.into();
            s.write_all(b"GET /download?n=1048576 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let during = rss_kib(proxy.id());
    let per_connection = during.saturating_sub(before) / n;
    // hyper's default read buffer to main let each one hold ~380 KiB; now main's socket waits.
    assert!(per_connection < 160, "{per_connection} KiB per slow client ({before} KiB -> {during} KiB)");
    drop(clients);
    // Once they are gone, the memory goes back (jemalloc's background purge; glibc's arenas
    // kept about three quarters of it): within 25 s, most of the growth is returned.
    let grown = during.saturating_sub(before);
    let mut after = during;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(500));
        after = rss_kib(proxy.id());
        if after.saturating_sub(before) < grown / 3 {
            break;
        }
    }
    assert!(after.saturating_sub(before) < grown / 3, "{before} KiB before, {during} KiB during, still {after} KiB after");
    let _ = origin.kill();
    let _ = origin.wait();
}
