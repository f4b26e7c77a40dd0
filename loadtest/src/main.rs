//! Side-by-side load comparison: the same origin behind sitecar, nginx, HAProxy and Caddy, each
//! with the same worker count, driven in interleaved rounds (A B C D A B C D ...) so that machine
//! noise hits every proxy alike. Prints one table per scenario: requests/s, p50, p99, CPU time per
//! request and the kernel's part of it (from /proc of each proxy's process tree), the whole
//! machine's busy CPU per request (load generator and origin included) and peak RSS, as medians
//! over the rounds, with ratios to nginx and to going direct.
//!
//! Run it with `make loadtest` (or `cargo run --release -p sitecar-loadtest -- --help`). Missing
//! tools (nginx, haproxy, caddy, wrk, h2load) are installed from Debian when running as root.

mod cost;
mod procs;
mod servers;
mod soak;

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;

use servers::{Server, Target};

#[derive(Debug, Parser)]
#[command(about = "Compare sitecar with nginx, HAProxy and Caddy on this machine")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Interleaved rounds; the table shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Scenarios: small64, small256, body64k, newconn, h2c, tlsh2 (HTTP/2 over TLS, 64
    /// connections of 10 streams, handshakes at the start), idle10k (memory per idle connection);
    /// the edge ones, cachehit (a small cached object) and static64k (a 64 KiB file from disk),
    /// which run on the edge targets; and, under callgrind, instructions (sitecar's user-space
    /// instructions per request on each request path) and metricscost (instructions per request
    /// with and without metrics and scraping).
    #[arg(long, value_delimiter = ',', default_value = "small64,small256,body64k,newconn,h2c,tlsh2,cachehit,static64k")]
    scenarios: Vec<String>,
    /// Proxies to compare (direct is always measured): sitecar, sitecar-hyper (HTTP/1.1 clients
    /// served by hyper's server, `--engine hyper`), sitecar-metrics (admin API and metrics on),
    /// sitecar-scraped (metrics scraped every second), nginx, haproxy, caddy.
    #[arg(long, value_delimiter = ',', default_value = "sitecar,nginx,haproxy,caddy")]
    proxies: Vec<String>,
    /// Edge targets for cachehit and static64k: sitecar-edge (--cache, --offload), nginx-edge
    /// (proxy_cache, a static location), varnish.
    #[arg(long, value_delimiter = ',', default_value = "sitecar-edge,nginx-edge,varnish")]
    edge: Vec<String>,
    /// Worker threads/processes of every proxy (and of the origin).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// The sitecar binary (default: target/release/sitecar).
    #[arg(long)]
    sitecar: Option<String>,
    /// Requests counted by instructions and metricscost.
    #[arg(long, default_value_t = 20_000)]
    cost_requests: u64,
    /// Run the soak instead: `sitecar up` on the demo stack for this many minutes at --soak-rate,
    /// main SIGKILLed every minute and the sidecar half a minute later.
    #[arg(long, value_name = "MINUTES")]
    soak: Option<u64>,
    /// Requests per second of the soak.
    #[arg(long, default_value_t = 200)]
    soak_rate: u64,
    /// Soak with the default restart backoff (reset after 10 minutes healthy): a kill every
    /// minute is then a crash loop, and the backoff grows past the hold.
    #[arg(long)]
    soak_default_backoff: bool,
}

/// One measurement.
#[derive(Debug, Clone, Default)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
    /// The part of `cpu_us_per_req` spent in the kernel.
    sys_us_per_req: f64,
    /// Busy CPU of the whole machine per request (load generator, origin and proxy together).
    machine_us_per_req: f64,
    rss_kib: u64,
    errors: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(minutes) = args.soak {
        let sitecar = args.sitecar.clone().unwrap_or_else(|| format!("{}/../target/release/sitecar", env!("CARGO_MANIFEST_DIR")));
        anyhow::ensure!(std::path::Path::new(&sitecar).exists(), "{sitecar} not found: build it with `cargo build --release` first");
        return soak::run(&sitecar, &tempfile_dir()?, minutes, args.soak_rate, args.soak_default_backoff);
    }
    let edge_scenarios = args.scenarios.iter().any(|s| EDGE_SCENARIOS.contains(&s.as_str()));
    servers::ensure_tools(&["nginx", "haproxy", "caddy", "wrk", "h2load", "openssl"])?;
    if edge_scenarios && args.edge.iter().any(|e| e == "varnish") {
        servers::ensure_tools(&["varnishd"])?;
    }
    let sitecar = args.sitecar.clone().unwrap_or_else(|| format!("{}/../target/release/sitecar", env!("CARGO_MANIFEST_DIR")));
    anyhow::ensure!(std::path::Path::new(&sitecar).exists(), "{sitecar} not found: build it with `cargo build --release` first");
    let dir = tempfile_dir()?;

    let origin = Server::origin(&dir, args.workers)?;
    println!("# loadtest: {} s per run, {} rounds, {} worker(s) each; {}", args.duration, args.rounds, args.workers, machine());
    if args.scenarios.iter().any(|s| s == "idle10k") {
        // Processes of their own, started for it and stopped after: memory per connection is
        // read from a fresh process, and the tables below show the throughput runs' own peaks.
        let fresh = proxies(&args, &sitecar, &dir, &origin)?;
        idle_connections(&fresh, 10_000)?;
    }
    let targets = proxies(&args, &sitecar, &dir, &origin)?;
    let mut edge: Vec<Target> = vec![Target::direct(&origin)];
    for e in args.edge.iter().filter(|_| edge_scenarios) {
        edge.push(started(|| match e.as_str() {
            "sitecar-edge" => Target::sitecar_edge(&sitecar, &dir, &origin, args.workers),
            "nginx-edge" => Target::nginx_edge(&dir, &origin, args.workers),
            "varnish" => Target::varnish(&dir, &origin),
            other => bail!("unknown edge target {other}"),
        })?);
    }
    for scenario in args.scenarios.iter().filter(|s| !["idle10k", "instructions", "metricscost"].contains(&s.as_str())) {
        let (these, refs): (&[Target], &[&str]) =
            if EDGE_SCENARIOS.contains(&scenario.as_str()) { (&edge, &["nginx-edge", "varnish"]) } else { (&targets, &["nginx"]) };
        let mut results: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for t in these {
            // One untimed pass so every cache holds the object before it is measured.
            measure(t, scenario, 1).with_context(|| format!("warming {} for {scenario}", t.name))?;
        }
        for _ in 0..args.rounds {
            for t in these {
                let s = measure(t, scenario, args.duration).with_context(|| format!("{scenario} through {}", t.name))?;
                results.entry(t.name.clone()).or_default().push(s);
            }
        }
        print_table(scenario, these, refs, &results);
    }
    if args.scenarios.iter().any(|s| s == "instructions") {
        cost::instructions(&sitecar, &dir, &origin, args.cost_requests)?;
    }
    if args.scenarios.iter().any(|s| s == "metricscost") {
        cost::run(&sitecar, &dir, &origin, args.cost_requests)?;
    }
    Ok(())
}

/// Direct and every proxy of `--proxies`, started and answering.
fn proxies(args: &Args, sitecar: &str, dir: &std::path::Path, origin: &Server) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = vec![Target::direct(origin)];
    for p in &args.proxies {
        targets.push(started(|| match p.as_str() {
            "sitecar" => Target::sitecar(sitecar, dir, origin, args.workers, false, false),
            "sitecar-hyper" => Target::sitecar_hyper_http1(sitecar, origin, args.workers),
            "sitecar-metrics" => Target::sitecar(sitecar, dir, origin, args.workers, true, false),
            "sitecar-scraped" => Target::sitecar(sitecar, dir, origin, args.workers, true, true),
            "nginx" => Target::nginx(dir, origin, args.workers),
            "haproxy" => Target::haproxy(dir, origin, args.workers),
            "caddy" => Target::caddy(dir, origin, args.workers),
            other => bail!("unknown proxy {other}"),
        })?);
    }
    Ok(targets)
}

/// A target started and answering. Its ports are picked free just before it starts, and a port
/// can be taken in between (seen once in a run, after idle10k's 10,000 connections closed): a
/// target that does not come up is started again on other ports, twice at most.
fn started(start: impl Fn() -> Result<Target>) -> Result<Target> {
    let mut again = 2;
    loop {
        let t = start()?;
        match t.wait_ready() {
            Ok(()) => return Ok(t),
            Err(e) if again > 0 => {
                again -= 1;
                eprintln!("{e:#}; starting it again on other ports");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Resident memory of each target with `n` idle keep-alive connections, each after one request.
fn idle_connections(targets: &[Target], n: usize) -> Result<()> {
    use std::io::{Read, Write};
    // Our side needs a descriptor per connection too.
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    println!("\n## idle{}k: resident memory with {n} idle keep-alive connections\n", n / 1000);
    println!("| target | RSS before MiB | RSS with connections MiB | KiB per connection | connections kept |");
    println!("|---|---:|---:|---:|---:|");
    for t in targets.iter().filter(|t| t.name != "direct") {
        let before = procs::rss_kib(&procs::tree(t.pid));
        let mut conns = Vec::with_capacity(n);
        let mut buf = [0u8; 4096];
        // A target that stops answering (Caddy does, some thousand connections in) is given a
        // minute and a few unanswered requests, then reported with what it kept.
        let (started, mut unanswered) = (std::time::Instant::now(), 0);
        for _ in 0..n {
            if started.elapsed() > std::time::Duration::from_secs(60) || unanswered >= 3 {
                break;
            }
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", t.port)) else { break };
            // A target that refuses or closes connections is reported with fewer kept, not an error.
            if s.set_read_timeout(Some(std::time::Duration::from_secs(5))).is_err()
                || s.write_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n").is_err()
            {
                continue;
            }
            let mut got = 0;
            while got == 0 || !buf[..got].windows(2).any(|w| w == b"ok") {
                match s.read(&mut buf[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => got += k,
                }
            }
            if got == 0 {
                unanswered += 1;
                continue;
            }
            conns.push(s);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut kept = 0;
        for c in conns.iter_mut() {
            // Still open: a non-blocking read would block rather than see the end.
            if c.set_nonblocking(true).is_ok() && matches!(c.read(&mut buf), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                kept += 1;
            }
        }
        let with = procs::rss_kib(&procs::tree(t.pid));
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {kept} |",
            t.name,
            before as f64 / 1024.0,
            with as f64 / 1024.0,
            (with.saturating_sub(before)) as f64 / conns.len().max(1) as f64
        );
        drop(conns);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sitecar-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tmp"))?;
    Ok(dir)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

fn measure(t: &Target, scenario: &str, secs: u64) -> Result<Sample> {
    let pids = procs::tree(t.pid);
    let cpu0 = procs::cpu_seconds(&pids);
    let machine0 = procs::machine_busy_seconds();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = t.scrape.map(|port| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Command::new("curl").args(["-s", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/metrics")]).status();
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        })
    });
    let (rps, p50, p99, requests, errors) = match scenario {
        "small64" => wrk(&t.url("/small"), 64, secs, &[])?,
        "small256" => wrk(&t.url("/small"), 256, secs, &[])?,
        "body64k" => wrk(&t.url("/64k"), 64, secs, &[])?,
        "newconn" => wrk(&t.url("/small"), 16, secs, &["-H", "Connection: close"])?,
        "h2c" => h2load(&t.h2c_url("/small"), 64, secs)?,
        "tlsh2" => match t.tls_url("/small") {
            Some(url) => h2load(&url, 64, secs)?,
            None => return Ok(Sample { rps: f64::NAN, p50_ms: f64::NAN, p99_ms: f64::NAN, ..Sample::default() }),
        },
        "cachehit" => wrk(&t.url("/cacheable"), 64, secs, &[])?,
        "static64k" => wrk(&t.url("/static/64k.bin"), 64, secs, &[])?,
        other => bail!("unknown scenario {other}"),
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(s) = scraper {
        let _ = s.join();
    }
    let (user, sys) = procs::cpu_seconds(&procs::tree(t.pid));
    let (user, sys) = (user - cpu0.0, sys - cpu0.1);
    let machine = procs::machine_busy_seconds() - machine0;
    let per_request = |seconds: f64| if requests > 0.0 { seconds * 1e6 / requests } else { 0.0 };
    let rss = procs::peak_rss_kib(&procs::tree(t.pid));
    Ok(Sample {
        rps,
        p50_ms: p50,
        p99_ms: p99,
        cpu_us_per_req: per_request(user + sys),
        sys_us_per_req: per_request(sys),
        machine_us_per_req: per_request(machine),
        rss_kib: rss,
        errors,
    })
}

/// wrk with one thread: (req/s, p50 ms, p99 ms, requests, errors).
fn wrk(url: &str, conns: usize, secs: u64, extra: &[&str]) -> Result<(f64, f64, f64, f64, u64)> {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), "--latency", "--timeout", "5s"])
        .args(extra)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = field(&text, "Requests/sec:").context(text.to_string())?;
    let p50 = latency(&text, "50%").unwrap_or(f64::NAN);
    let p99 = latency(&text, "99%").unwrap_or(f64::NAN);
    let requests = text.lines().find(|l| l.contains("requests in")).and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()))
        .sum();
    Ok((rps, p50, p99, requests, errors))
}

fn field(text: &str, key: &str) -> Option<f64> {
    text.lines().find(|l| l.trim_start().starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// wrk's latency distribution line, e.g. "     50%  180.00us", in milliseconds.
fn latency(text: &str, pct: &str) -> Option<f64> {
    let v = text.lines().find(|l| l.trim_start().starts_with(pct))?.split_whitespace().nth(1)?.to_string();
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => return None,
    })
}

/// h2load with prior knowledge, 10 streams per connection.
fn h2load(url: &str, conns: usize, secs: u64) -> Result<(f64, f64, f64, f64, u64)> {
    let out = Command::new("h2load").args(["-c", &conns.to_string(), "-m", "10", "-t", "1", "-D", &secs.to_string(), url]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "finished in 5.00s, 12345.67 req/s, ..." and "requests: N total, N started, N done, N succeeded, N failed, N errored"
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1)?.split_whitespace().next()?.parse().ok())
        .context(text.to_string())?;
    let nums = |l: &str| l.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()).collect::<Vec<_>>();
    let req = text.lines().find(|l| l.starts_with("requests:")).map(nums).unwrap_or_default();
    let done = req.get(3).copied().unwrap_or(0) as f64;
    let errors = req.get(5).copied().unwrap_or(0) + req.get(6).copied().unwrap_or(0);
    // "time for request:   min   max   mean   sd   +/- sd": h2load has no percentiles; mean stands in for p50.
    let mean = text.lines().find(|l| l.trim_start().starts_with("time for request:")).and_then(|l| {
        let v = l.split_whitespace().nth(5)?.to_string();
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = num.parse().ok()?;
        Some(if unit == "us" {
            n / 1000.0
        } else if unit == "ms" {
            n
        } else {
            n * 1000.0
        })
    });
    Ok((rps, mean.unwrap_or(f64::NAN), f64::NAN, done, errors))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Scenarios measured on the edge targets (cache and static files) instead of the proxies.
const EDGE_SCENARIOS: [&str; 2] = ["cachehit", "static64k"];

/// A table cell: "-" where there is no number (h2load reports no p99; no direct TLS target).
fn number(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".to_owned()
    }
}

fn print_table(scenario: &str, targets: &[Target], refs: &[&str], results: &BTreeMap<String, Vec<Sample>>) {
    let med = |name: &str, f: fn(&Sample) -> f64| median(results.get(name).map(|v| v.iter().map(f).collect()).unwrap_or_default());
    let refs: Vec<(&str, f64)> = refs.iter().filter(|r| results.contains_key(**r)).map(|r| (*r, med(r, |s| s.rps))).collect();
    let direct = med("direct", |s| s.rps);
    println!("\n## {scenario}\n");
    let ratio_heads: String = refs.iter().map(|(r, _)| format!(" × {r} |")).collect();
    println!(
        "| target | req/s | p50 ms | p99 ms | CPU µs/req | of it sys | machine µs/req | peak RSS MiB | errors |{ratio_heads} × direct |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|{}---:|", "---:|".repeat(refs.len()));
    for t in targets {
        let n = t.name.as_str();
        let rps = med(n, |s| s.rps);
        // A target this scenario cannot measure (no TLS listener for direct) has no row.
        if rps.is_nan() {
            continue;
        }
        let errors: u64 = results.get(n).map(|v| v.iter().map(|s| s.errors).sum()).unwrap_or(0);
        let rss = med(n, |s| s.rss_kib as f64) / 1024.0;
        let ratios: String = refs.iter().map(|(_, r)| format!(" {} |", number(rps / r, 2))).collect();
        println!(
            "| {n} | {rps:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {rss:.1} | {errors} |{ratios} {} |",
            number(med(n, |s| s.p50_ms), 3),
            number(med(n, |s| s.p99_ms), 3),
            med(n, |s| s.cpu_us_per_req),
            med(n, |s| s.sys_us_per_req),
            med(n, |s| s.machine_us_per_req),
            number(rps / direct, 2)
        );
    }
}
