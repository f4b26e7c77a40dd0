//! The soak: `sitecar up` on the demo stack (main `demo-app`, sidecar `demo-sidecar`, both the
//! sitecar binary) under a steady rate of GETs and POSTs for N minutes, main killed with SIGKILL at
//! the start of every minute and the sidecar half a minute later. Reports every request's outcome:
//! non-idempotent requests lost (a POST whose fate the client cannot know: a 502, 504 or a broken
//! connection), those refused before reaching main (503 with `Retry-After` after the hold), and
//! the errors of the rest.
//!
//! Each kill lands after 55 s of healthy running: independent faults, not a crash loop. The stack
//! says so with `local.restart.resetAfterSeconds: 30` (a run healthy for 30 s earns a fresh
//! backoff, as Docker's restart policy resets after 10 s); with the default of 10 minutes, a kill
//! every minute *is* a crash loop, the backoff doubles past the 10 s hold, and clients get 503s by
//! design. `--soak-default-backoff` runs it that way.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::servers::free_port;

/// One request with `Connection: close`: the status, or 0 when the connection failed.
fn request(port: u16, method: &str, path: &str) -> u16 {
    let attempt = || -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
    };
    attempt().unwrap_or(0)
}

fn pid_of(admin: u16, name: &str) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).ok()?;
    s.write_all(b"GET /status HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let v: serde_json::Value = serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()?;
    v["containers"].as_array()?.iter().find(|c| c["name"] == name)?["pid"].as_u64().map(|p| p as u32)
}

pub fn run(sitecar: &str, dir: &std::path::Path, minutes: u64, rate: u64, default_backoff: bool) -> Result<()> {
    let (front, admin, counter) = (free_port()?, free_port()?, free_port()?);
    let quoted = format!("'{}'", sitecar.replace('\'', r"'\''"));
    let spec = serde_json::json!({
        "sitecontainers": [
            {"name": "counter", "properties": {"image": "sitecar/demo-counter", "isMain": false, "targetPort": counter.to_string(),
                "inheritAppSettingsAndConnectionStrings": false}},
            {"name": "web", "properties": {"image": "sitecar/demo-web", "isMain": true, "targetPort": "8080",
                "environmentVariables": [{"name": "COUNTER_ADDR", "value": "COUNTER_ADDR"}]}}
        ],
        "appSettings": {"COUNTER_ADDR": format!("127.0.0.1:{counter}")},
        "proxy": {"listen": [format!("127.0.0.1:{front}")], "accessLog": "off"},
        "admin": {"listen": format!("127.0.0.1:{admin}")},
        "local": {"containers": {
            "counter": {"command": format!("exec {quoted} demo-sidecar")},
            "web": {"command": format!("exec {quoted} demo-app")}
        }, "gracePeriodSeconds": 5, "storageRoot": dir.join("soak-storage").display().to_string()}
    });
    let mut spec = spec;
    if !default_backoff {
        spec["local"]["restart"] = serde_json::json!({"resetAfterSeconds": 30});
    }
    let file = dir.join("soak.json");
    std::fs::write(&file, serde_json::to_string(&spec)?)?;
    let mut up =
        Command::new(sitecar).arg("up").arg(&file).stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting sitecar up")?;
    let ready = Instant::now();
    while request(admin, "GET", "/readyz") != 200 {
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(30), "the soak stack did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "\n## soak: {minutes} min at {rate} req/s (half GET /, half POST /api/visits); main SIGKILLed every minute, the sidecar 30 s later; backoff reset after {}\n",
        if default_backoff { "600 s (the default)" } else { "30 s healthy" }
    );

    let stop = Arc::new(AtomicBool::new(false));
    // (method, status) -> count
    let outcomes: Arc<Mutex<BTreeMap<(&'static str, u16), u64>>> = Arc::default();
    let clients = 4u64;
    let per_client = Duration::from_secs_f64(clients as f64 / rate.max(1) as f64);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, outcomes) = (stop.clone(), outcomes.clone());
            std::thread::spawn(move || {
                let mut next = Instant::now();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (method, path) = if i % 2 == 0 { ("GET", "/") } else { ("POST", "/api/visits") };
                    let status = request(front, method, path);
                    if let Ok(mut o) = outcomes.lock() {
                        *o.entry((method, status)).or_default() += 1;
                    }
                    i += 1;
                    next += per_client;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
        })
        .collect();

    let start = Instant::now();
    let mut kills = 0;
    for minute in 0..minutes {
        let at = |secs: u64| Duration::from_secs(minute * 60 + secs);
        for (offset, name) in [(5, "web"), (35, "counter")] {
            if let Some(wait) = at(offset).checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            if let Some(pid) = pid_of(admin, name) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                kills += 1;
            }
        }
    }
    if let Some(wait) = Duration::from_secs(minutes * 60).checked_sub(start.elapsed()) {
        std::thread::sleep(wait);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let _ = Command::new("kill").args(["-TERM", &up.id().to_string()]).status();
    let _ = up.wait();

    let o = outcomes.lock().map(|o| o.clone()).unwrap_or_default();
    println!("| method | status | requests |");
    println!("|---|---:|---:|");
    for ((method, status), n) in &o {
        println!("| {method} | {} | {n} |", if *status == 0 { "connection failed".to_string() } else { status.to_string() });
    }
    let count = |m: &str, keep: &dyn Fn(u16) -> bool| o.iter().filter(|((k, s), _)| *k == m && keep(*s)).map(|(_, n)| n).sum::<u64>();
    let ok = |s: u16| (200..300).contains(&s);
    println!(
        "\n{kills} kills; POST (non-idempotent): {} of {} lost (502, 504, broken connection), {} refused before reaching main (503); GET: {} errors of {}",
        count("POST", &|s| !ok(s) && s != 503),
        count("POST", &|_| true),
        count("POST", &|s| s == 503),
        count("GET", &|s| !ok(s)),
        count("GET", &|_| true)
    );
    Ok(())
}
