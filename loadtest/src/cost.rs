//! Instructions per request under callgrind. `instructions`: what one request costs sitecar in
//! user space on each path (HTTP/1.1 proxied, a cache hit, h2c, TLS h2), the numbers behind
//! "where the time goes". `metricscost`: what the metrics path costs per request, counted in
//! instructions instead of timed. On a shared 2-core machine two 5 s throughput runs of one and
//! the same binary differ by up to 10 %, so a 3 % budget cannot be read off requests/s;
//! instruction counts repeat to 0.1 %.
//!
//! `sitecar proxy` runs under valgrind's callgrind without metrics and with the admin API and its
//! metrics: a warm-up, counters zeroed, N keep-alive requests (h2load, 8 connections), a dump:
//! every instruction of every thread in between, divided by N. A scrape is counted on its own
//! (ten `/metrics` requests between a zero and a dump) and charged to requests at the rate the same
//! binary serves natively (wrk, 64 connections, 3 s): scraping every second costs one scrape per
//! that many requests. (Scraping every wall-clock second under valgrind, some 50 times slower than
//! native, would charge each scrape to 50 times too few requests.) The kernel's share is not
//! counted: the metrics path makes no system calls.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::servers::{free_port, Server};

/// One kind of request measured under callgrind.
struct Probe {
    name: &'static str,
    /// sitecar flags besides the listener, `--threads 1` and `--access-log off`.
    flags: Vec<String>,
    path: &'static str,
    /// HTTP/2 with 10 streams a connection (h2c, or ALPN h2 over TLS), else HTTP/1.1 keep-alive.
    h2: bool,
    tls: bool,
    connections: u32,
    /// With the admin API on: one /metrics scrape is measured too.
    admin: bool,
}

impl Probe {
    fn h1(name: &'static str, path: &'static str, connections: u32) -> Self {
        Probe { name, flags: Vec::new(), path, h2: false, tls: false, connections, admin: false }
    }
}

/// `instructions`: user-space instructions per request of each request path.
pub fn instructions(sitecar: &str, dir: &std::path::Path, origin: &Server, requests: u64) -> Result<()> {
    crate::servers::ensure_tools(&["valgrind", "h2load", "openssl"])?;
    let tls = crate::servers::Certificate::make(dir)?;
    let (cert, key) = (tls.cert.display().to_string(), tls.key.display().to_string());
    let probes = [
        Probe::h1("HTTP/1.1 keep-alive, 8 connections", "/small", 8),
        Probe::h1("HTTP/1.1 keep-alive, 64 connections", "/small", 64),
        Probe {
            flags: vec!["--engine".into(), "hyper".into()],
            ..Probe::h1("HTTP/1.1 keep-alive, 8 connections, hyper's server", "/small", 8)
        },
        Probe { flags: vec!["--cache".into()], ..Probe::h1("cache hit, HTTP/1.1, 8 connections", "/cacheable", 8) },
        Probe { h2: true, ..Probe::h1("h2c, 8 connections x 10 streams", "/small", 8) },
        Probe {
            h2: true,
            tls: true,
            flags: vec!["--cert".into(), cert, "--key".into(), key],
            ..Probe::h1("TLS h2, 8 connections x 10 streams", "/small", 8)
        },
    ];
    println!("\n## instructions: user-space instructions per request (callgrind, {requests} requests after a warm-up)\n");
    println!("| request | instructions/request |");
    println!("|---|---:|");
    for p in &probes {
        let (per_request, _) = measure(sitecar, dir, origin, p, requests).with_context(|| format!("instructions of {}", p.name))?;
        println!("| {} | {per_request:.0} |", p.name);
    }
    Ok(())
}

/// `metricscost`: instructions per request without and with metrics, and per scrape.
pub fn run(sitecar: &str, dir: &std::path::Path, origin: &Server, requests: u64) -> Result<()> {
    crate::servers::ensure_tools(&["valgrind", "h2load", "wrk"])?;
    println!("\n## metricscost: user-space instructions per request (callgrind, {requests} keep-alive requests, 8 connections)\n");
    let plain = Probe::h1("sitecar", "/small", 8);
    let (plain, _) = measure(sitecar, dir, origin, &plain, requests).context("metricscost of sitecar")?;
    let with_metrics = Probe { admin: true, ..Probe::h1("sitecar-metrics", "/small", 8) };
    let (metrics, scrape) = measure(sitecar, dir, origin, &with_metrics, requests).context("metricscost of sitecar-metrics")?;
    let scrape = scrape.context("no scrape measured")?;
    let rate = native_rate(sitecar, origin)?;
    let scraped = metrics + scrape / rate;
    println!("| target | instructions/request | × sitecar |");
    println!("|---|---:|---:|");
    println!("| sitecar | {plain:.0} | 1.000 |");
    println!("| sitecar-metrics | {metrics:.0} | {:.3} |", metrics / plain);
    println!("| sitecar-scraped (1 scrape/s at {rate:.0} req/s) | {scraped:.0} | {:.3} |", scraped / plain);
    println!("\nOne /metrics scrape: {scrape:.0} instructions.");
    Ok(())
}

/// Requests per second of `sitecar proxy --admin` natively.
fn native_rate(sitecar: &str, origin: &Server) -> Result<f64> {
    let (port, admin) = (free_port()?, free_port()?);
    let mut child = Command::new(sitecar)
        .args(["proxy", "--to", &format!("127.0.0.1:{}", origin.port), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--threads", "1", "--access-log", "off", "--admin", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| {
        wait_listening(port)?;
        let out = Command::new("wrk").args(["-t1", "-c64", "-d3s", &format!("http://127.0.0.1:{port}/small")]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.trim_start().starts_with("Requests/sec:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .with_context(|| format!("no rate from wrk:\n{text}"))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn wait_listening(port: u16) -> Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "sitecar did not listen on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn h2load(url: &str, n: u64, probe: &Probe) -> Result<()> {
    let mut cmd = Command::new("h2load");
    if probe.h2 {
        cmd.args(["-m", "10"]);
    } else {
        cmd.arg("--h1");
    }
    let out = cmd.args(["-n", &n.to_string(), "-c", &probe.connections.to_string(), "-t", "1", url]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.lines().any(|l| l.starts_with("requests:") && l.contains(&format!("{n} succeeded")));
    anyhow::ensure!(ok, "not every request succeeded:\n{text}");
    Ok(())
}

fn callgrind_control(op: &str, pid: &str) -> Result<()> {
    let ok = Command::new("callgrind_control").args([op, pid]).stdout(Stdio::null()).stderr(Stdio::null()).status()?.success();
    anyhow::ensure!(ok, "callgrind_control {op} {pid} failed");
    Ok(())
}

/// Instructions between a zero and dump number `k`.
fn dumped(out: &std::path::Path, k: u32) -> Result<f64> {
    let dump = std::fs::read_to_string(format!("{}.{k}", out.display())).context("reading the callgrind dump")?;
    dump.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no summary in the callgrind dump")
}

/// (instructions per request, instructions per scrape when the admin API is on). The TLS
/// handshakes of the measured connections are counted too: 8 of them add about 0.7 % (some 450
/// instructions a request) to 20,000 requests.
fn measure(sitecar: &str, dir: &std::path::Path, origin: &Server, probe: &Probe, n: u64) -> Result<(f64, Option<f64>)> {
    let (port, admin, tls_port) = (free_port()?, free_port()?, free_port()?);
    let out = dir.join(format!("callgrind.{}", probe.name.replace([' ', '/', ','], "_")));
    let _ = std::fs::remove_file(format!("{}.1", out.display()));
    let _ = std::fs::remove_file(format!("{}.2", out.display()));
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--dump-instr=no"]).arg(format!("--callgrind-out-file={}", out.display()));
    cmd.args([sitecar, "proxy", "--to", &format!("127.0.0.1:{}", origin.port), "--listen", &format!("127.0.0.1:{port}")]);
    cmd.args(["--threads", "1", "--access-log", "off"]).args(&probe.flags);
    if probe.tls {
        cmd.args(["--tls-listen", &format!("127.0.0.1:{tls_port}")]);
    }
    if probe.admin {
        cmd.args(["--admin", &format!("127.0.0.1:{admin}")]);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting valgrind")?;
    let result = (|| {
        let url = match probe.tls {
            true => format!("https://127.0.0.1:{tls_port}{}", probe.path),
            false => format!("http://127.0.0.1:{port}{}", probe.path),
        };
        wait_listening(port)?;
        h2load(&url, 2000, probe)?;
        let pid = child.id().to_string();
        callgrind_control("-z", &pid)?;
        h2load(&url, n, probe)?;
        callgrind_control("-d", &pid)?;
        let per_request = dumped(&out, 1)? / n as f64;
        if !probe.admin {
            return Ok((per_request, None));
        }
        callgrind_control("-z", &pid)?;
        for _ in 0..10 {
            let ok =
                Command::new("curl").args(["-sf", "-o", "/dev/null", &format!("http://127.0.0.1:{admin}/metrics")]).status()?.success();
            anyhow::ensure!(ok, "scraping /metrics failed");
        }
        callgrind_control("-d", &pid)?;
        Ok((per_request, Some(dumped(&out, 2)? / 10.0)))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
