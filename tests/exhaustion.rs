//! When sitecar itself runs short (here: out of file descriptors, so it cannot open a connection
//! to main), the client is told so (503, Retry-After), main is not blamed, and sitecar recovers
//! once the shortage is over.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::*;

use std::process::{Command, Stdio};
use std::time::Duration;

/// The descriptor numbers `pid` has open.
fn open_fds(pid: u32) -> Vec<usize> {
    let mut fds: Vec<usize> =
        std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    fds.sort();
    fds
}

/// Sets the soft limit of open files of `pid` (the hard one stays: the soft one can go back up).
fn nofile(pid: u32, n: usize) {
    let status = Command::new("prlimit").arg(format!("--pid={pid}")).arg(format!("--nofile={n}:")).status().unwrap();
    assert!(status.success());
}

#[test]
fn out_of_descriptors_is_sitecars_failure_not_mains() {
    let (origin_port, front, admin) = (free_port(), free_port(), free_port());
    let origin_py = format!("{}/proxy/tests/support/origin.py", env!("CARGO_MANIFEST_DIR"));
    let mut origin =
        Command::new("python3").arg(origin_py).arg(origin_port.to_string()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    std::io::Read::read_exact(origin.stdout.as_mut().unwrap(), &mut [0u8; 6]).unwrap();
    let to = format!("127.0.0.1:{origin_port}");
    let (listen, admin_addr) = (format!("127.0.0.1:{front}"), format!("127.0.0.1:{admin}"));
    let proxy = Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .args(["proxy", "--to", &to, "--listen", &listen, "--admin", &admin_addr, "--access-log", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the proxy", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok());
    wait_until("the front door", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", front)).is_ok());
    // Nothing has reached main yet, so no pooled connection waits. Room for one more descriptor
    // (the lowest free number is the only one below the limit): the client's accepted connection
    // takes it, and the connection to main finds none.
    let mut settled = Vec::new();
    wait_until("the probes' connections to close", Duration::from_secs(5), || {
        let now = open_fds(proxy.id());
        let same = now == settled;
        settled = now;
        std::thread::sleep(Duration::from_millis(200));
        same
    });
    let lowest_free = (0..).find(|n| !settled.contains(n)).unwrap();
    nofile(proxy.id(), lowest_free + 1);

    let (code, body) = http(front, "GET", "/headers");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("sitecar cannot open a connection to main"), "{body}");

    // Counted among the requests main did not answer, by its own cause: not as main refusing.
    nofile(proxy.id(), 1024);
    let metrics = http(admin, "GET", "/metrics").1;
    assert_eq!(sample(&metrics, r#"sitecar_upstream_errors_total{kind="exhausted"}"#), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, r#"sitecar_upstream_errors_total{kind="refused"}"#), None, "{metrics}");
    // Over once descriptors are there again.
    let (code, body) = http(front, "GET", "/headers");
    assert_eq!(code, 200, "{body}");
    let _ = origin.kill();
    let _ = origin.wait();
}
