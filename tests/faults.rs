//! Faults under concurrent load, through `sitecar up`: main killed with SIGKILL (held requests
//! succeed once it is back), a sidecar killed (the front door does not notice), main hanging (504
//! within the timeout, then liveness restarts it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{alive, children_of, http, two_container_spec, up_until_ready, wait_until};

fn status(admin: u16) -> serde_json::Value {
    serde_json::from_str(&http(admin, "GET", "/status").1).unwrap()
}

fn container(admin: u16, name: &str) -> serde_json::Value {
    status(admin)["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

/// `clients` threads sending GET / one after another until `stop`; every status seen.
fn load(front: u16, clients: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<(u16, String)>>> {
    (0..clients)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (code, body) = http(front, "GET", "/");
                    seen.push((code, if code == 200 { String::new() } else { body }));
                }
                seen
            })
        })
        .collect()
}

fn kill9(pid: u64) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn killed_main_and_sidecar_under_load_lose_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, p) = two_container_spec(dir.path(), "side", "");
    let mut sitecar = up_until_ready(&spec, p.admin);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(p.front, 8, stop.clone());

    std::thread::sleep(Duration::from_millis(500));
    kill9(container(p.admin, "side")["pid"].as_u64().unwrap());
    wait_until("the sidecar restarted", Duration::from_secs(15), || container(p.admin, "side")["restarts"] == 1);
    std::thread::sleep(Duration::from_millis(300));
    kill9(container(p.admin, "web")["pid"].as_u64().unwrap());
    wait_until("main restarted", Duration::from_secs(15), || {
        container(p.admin, "web")["restarts"] == 1 && http(p.admin, "GET", "/readyz").0 == 200
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);

    let seen: Vec<(u16, String)> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(seen.len() > 100, "there was load: {}", seen.len());
    let failed: Vec<&(u16, String)> = seen.iter().filter(|s| s.0 != 200).collect();
    assert!(failed.is_empty(), "{} of {} requests failed: {:?}", failed.len(), seen.len(), &failed[..failed.len().min(10)]);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = sitecar.wait();
}

#[test]
fn hanging_main_gets_504_then_liveness_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#", "appSettings": {"WEBSITE_HEALTHCHECK_PATH": "/health"},
        "health": {"periodSeconds": 0.5, "timeoutSeconds": 0.5, "failureThreshold": 2}"#;
    let (spec, p) = two_container_spec(dir.path(), "side", extra);
    // A one-second request timeout in the builder's proxy section.
    let text = std::fs::read_to_string(&spec).unwrap();
    let text = text.replacen(
        &format!(r#""proxy": {{"listen": ["127.0.0.1:{}"]}}"#, p.front),
        &format!(r#""proxy": {{"listen": ["127.0.0.1:{}"], "timeouts": {{"requestSeconds": 1}}}}"#, p.front),
        1,
    );
    std::fs::write(&spec, text).unwrap();
    let mut sitecar = up_until_ready(&spec, p.admin);
    let pid = container(p.admin, "web")["pid"].as_u64().unwrap();

    // Main now accepts and never answers.
    std::thread::spawn(move || {
        let _ = std::net::TcpStream::connect(("127.0.0.1", p.front)).and_then(|mut s| {
            use std::io::Write;
            s.write_all(b"GET /freeze HTTP/1.1\r\nHost: x\r\n\r\n")?;
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        });
    });
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    let (code, body) = http(p.front, "GET", "/");
    assert_eq!(code, 504, "{body}");
    assert!(asked.elapsed() < Duration::from_secs(3), "within the request timeout: {:?}", asked.elapsed());

    wait_until("liveness restarted main", Duration::from_secs(20), || {
        let web = container(p.admin, "web");
        web["restarts"].as_u64() >= Some(1) && web["pid"].as_u64() != Some(pid) && http(p.admin, "GET", "/readyz").0 == 200
    });
    assert_eq!(http(p.front, "GET", "/").0, 200, "served again by the new main");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = sitecar.wait();
}

#[test]
fn a_container_is_all_of_its_processes_so_no_orphan_keeps_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, p) = two_container_spec(dir.path(), "side", "");
    // The sidecar's shell stays as the process sitecar started (two commands: no exec), the
    // server is its child in the same process group.
    let text = std::fs::read_to_string(&spec).unwrap();
    let server = format!("exec python3 {} side {}", support::app_py(), p.side);
    let text = text.replacen(&format!("\"{server}\""), &format!("\"{}; echo the wrapper ends\"", &server[5..]), 1);
    std::fs::write(&spec, text).unwrap();
    let mut sitecar = up_until_ready(&spec, p.admin);

    let shell = container(p.admin, "side")["pid"].as_u64().unwrap() as u32;
    let server = children_of(shell).first().map(|c| c.0).expect("the server runs under the shell");
    kill9(u64::from(shell)); // the pid `sitecar status` shows
    wait_until("the sidecar restarted", Duration::from_secs(10), || {
        let side = container(p.admin, "side");
        side["restarts"] == 1 && side["phase"] == "running" && side["pid"].as_u64() != Some(u64::from(shell))
    });
    assert!(!alive(server), "the old server outlived its container");
    // The new run holds the port itself: its server is alive and answering, and stays up.
    let new_shell = container(p.admin, "side")["pid"].as_u64().unwrap() as u32;
    std::thread::sleep(Duration::from_secs(1));
    let new_server = children_of(new_shell).first().map(|c| c.0).expect("a new server");
    assert!(alive(new_server));
    assert_eq!(http(p.side, "GET", "/").0, 200);
    assert_eq!(container(p.admin, "side")["restarts"], 1, "no crash loop on a taken port");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = sitecar.wait();
}
