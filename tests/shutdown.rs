//! Graceful shutdown under load: SIGTERM stops accepting, lets the requests in flight finish, then
//! stops main and the sidecars; no request accepted before the signal fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{two_container_spec, up_until_ready};

/// A GET of a one-second answer on an open connection: (status, body).
fn slow_request(mut s: TcpStream, i: usize) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(format!("GET /slow?{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
}

#[test]
fn sigterm_lets_requests_in_flight_finish_then_stops_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, p) = two_container_spec(dir.path(), "side", "");
    let mut sitecar = up_until_ready(&spec, p.admin);

    // 30 requests in flight (each takes main one second), then the signal.
    let clients: Vec<_> = (0..30)
        .map(|i| {
            let s = TcpStream::connect(("127.0.0.1", p.front)).unwrap();
            std::thread::spawn(move || slow_request(s, i))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();

    // New connections are refused once the listeners are closed.
    std::thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect(("127.0.0.1", p.front)).is_err(), "no longer accepting");

    for c in clients {
        assert_eq!(c.join().unwrap(), (200, "slow from web".to_string()), "every accepted request finished");
    }
    let status = sitecar.wait().unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(15), "stopped within the drain and grace periods");
    // Main exited from its SIGTERM: sitecar reports main's status (143 = 128 + SIGTERM, or 0).
    assert!(matches!(status.code(), Some(0) | Some(143)), "{status:?}");
    // Both containers are gone.
    assert!(TcpStream::connect(("127.0.0.1", p.main)).is_err());
    assert!(TcpStream::connect(("127.0.0.1", p.side)).is_err());
}
