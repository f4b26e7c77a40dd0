//! The admin API's client: what `sitecar status`, `logs`, `restart`, `reload` and `down` do
//! against a running stack. Each writes what a user reads to `out`, problems to `err`, and returns
//! the exit code (0 done, 1 refused or failed, 2 unreachable where the command says so).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where a command writes: its answer, and its problems.
pub struct Console<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

impl std::fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

/// One HTTP/1.0 exchange with the admin API: (status code, body).
fn exchange(admin: &str, method: &str, path: &str, read_timeout: Duration) -> io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(admin)?;
    s.set_read_timeout(Some(read_timeout))?;
    let length = if method == "POST" { "Content-Length: 0\r\n" } else { "" };
    s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: {admin}\r\n{length}\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// GET, body only; anything but 200 is the error, named by its status line.
pub fn fetch(admin: &str, path: &str) -> io::Result<String> {
    match exchange(admin, "GET", path, Duration::from_secs(5))? {
        (200, body) => Ok(body),
        (0, _) => Err(io::Error::other("no answer")),
        (code, _) => Err(io::Error::other(format!("HTTP {code}"))),
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_default()
}

/// The names of the running stack's containers, in spec order.
fn container_names(status: &Value) -> Vec<String> {
    status["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(String::from)).collect()
}

/// The names asked for, all known; else the answer that lists the names there are.
fn check_names(what: &str, asked: &[String], known: &[String], c: &mut Console) -> io::Result<bool> {
    let unknown: Vec<&str> = asked.iter().filter(|n| !known.contains(n)).map(String::as_str).collect();
    if !unknown.is_empty() {
        writeln!(c.err, "sitecar {what}: no container named {}; the containers are: {}", unknown.join(", "), known.join(", "))?;
    }
    Ok(unknown.is_empty())
}

/// `sitecar status`: a table like `docker compose ps`, or the admin API's JSON.
pub fn status(admin: &str, as_json: bool, c: &mut Console) -> io::Result<u8> {
    let body = match fetch(admin, "/status") {
        Ok(b) => b,
        Err(e) => {
            writeln!(c.err, "sitecar status: cannot reach the admin API at {admin}: {e}")?;
            return Ok(1);
        }
    };
    if as_json {
        writeln!(c.out, "{body}")?;
        return Ok(0);
    }
    let v = json(&body);
    writeln!(c.out, "main: {}   front door: {}", v["main"].as_str().unwrap_or("?"), v["proxy"]["listen"])?;
    writeln!(
        c.out,
        "{:<16} {:<8} {:<12} {:>8} {:>9} {:>9} {:>10} {:>10}  PORTS",
        "NAME", "ROLE", "STATE", "PID", "RESTARTS", "LAST EXIT", "CPU s", "RSS MiB"
    )?;
    for k in v["containers"].as_array().into_iter().flatten() {
        let exit = match &k["last_exit"] {
            Value::Object(m) => m.iter().map(|(k, v)| format!("{k} {v}")).next().unwrap_or_default(),
            _ => "-".into(),
        };
        // Where sitecar reaches it, and the port it listens on in its namespace.
        let ports = match (k["addr"].as_str(), k["port"].as_u64()) {
            (Some(a), Some(p)) if !a.ends_with(&format!(":{p}")) => format!("{a}->{p}"),
            (Some(a), _) => a.to_owned(),
            (None, Some(p)) => p.to_string(),
            (None, None) => "-".into(),
        };
        writeln!(
            c.out,
            "{:<16} {:<8} {:<12} {:>8} {:>9} {:>9} {:>10.2} {:>10.1}  {ports}",
            k["name"].as_str().unwrap_or("?"),
            if k["is_main"].as_bool() == Some(true) { "main" } else { "sidecar" },
            k["phase"].as_str().unwrap_or("?"),
            k["pid"].as_u64().map_or("-".into(), |p| p.to_string()),
            k["restarts"],
            exit,
            k["cpu_seconds"].as_f64().unwrap_or(0.0),
            k["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
        )?;
    }
    Ok(0)
}

/// `sitecar restart NAME...`: each container restarted through the admin API; an unknown name
/// lists the names there are.
pub fn restart(admin: &str, names: &[String], c: &mut Console) -> io::Result<u8> {
    let known = fetch(admin, "/status").map(|b| container_names(&json(&b))).unwrap_or_default();
    if !check_names("restart", names, &known, c)? {
        return Ok(1);
    }
    for name in names {
        match exchange(admin, "POST", &format!("/containers/{name}/restart"), Duration::from_secs(10)) {
            Ok((202, _)) => writeln!(c.out, "{name}: restarting")?,
            Ok((code, body)) => {
                writeln!(c.err, "sitecar restart: {name}: {code} {}", body.trim())?;
                return Ok(1);
            }
            Err(e) => {
                writeln!(c.err, "sitecar restart: {name}: {e}")?;
                return Ok(1);
            }
        }
    }
    Ok(0)
}

/// `sitecar down`: asks the stack to stop in order and waits until its admin API is gone (the
/// last thing `up` closes).
pub fn down(admin: &str, c: &mut Console) -> io::Result<u8> {
    match exchange(admin, "POST", "/shutdown", Duration::from_secs(10)) {
        Ok((202, _)) => {}
        Ok((code, body)) => {
            writeln!(c.err, "sitecar down: refused: {code} {}", body.trim())?;
            return Ok(1);
        }
        Err(e) => {
            writeln!(c.err, "sitecar down: {e}")?;
            return Ok(1);
        }
    }
    writeln!(c.out, "stopping: main, then the sidecars in reverse order")?;
    // Each container has its grace period; a stack of ten waits at worst ten of them.
    let deadline = Instant::now() + Duration::from_secs(15 * 60);
    while std::net::TcpStream::connect(admin).is_ok() {
        if Instant::now() > deadline {
            writeln!(c.err, "sitecar down: the stack at {admin} is still stopping")?;
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    writeln!(c.out, "stopped")?;
    Ok(0)
}

/// `sitecar reload`: asks a running `sitecar up` to re-read its spec; says what was restarted,
/// or every problem (exit 1: the running stack is unchanged; 2: unreachable).
pub fn reload(admin: &str, as_json: bool, c: &mut Console) -> io::Result<u8> {
    let (code, body) = match exchange(admin, "POST", "/reload", Duration::from_secs(60)) {
        Ok(x) => x,
        Err(e) => {
            writeln!(c.err, "sitecar reload: cannot reach the admin API at {admin}: {e}")?;
            return Ok(2);
        }
    };
    if as_json {
        writeln!(c.out, "{body}")?;
    }
    let v = json(&body);
    if v["reloaded"] == Value::Bool(true) {
        if !as_json {
            let restarted: Vec<&str> = v["restarted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            writeln!(c.out, "reloaded; restarted: {}", if restarted.is_empty() { "nothing".to_string() } else { restarted.join(", ") })?;
        }
        return Ok(0);
    }
    if !as_json {
        writeln!(c.err, "sitecar reload: refused, the running stack is unchanged (HTTP {code})")?;
        for p in v["problems"].as_array().into_iter().flatten() {
            writeln!(c.err, "  {}", p.as_str().unwrap_or(""))?;
        }
    }
    Ok(1)
}

/// `sitecar logs [-f] [NAME...]`: recent lines with compose-style prefixes, in time order
/// across containers; `follow` keeps polling.
pub fn logs(admin: &str, names: &[String], follow: bool, c: &mut Console) -> io::Result<u8> {
    let known = match fetch(admin, "/status") {
        Ok(b) => container_names(&json(&b)),
        Err(e) => {
            writeln!(c.err, "sitecar logs: cannot reach the admin API at {admin}: {e}")?;
            return Ok(1);
        }
    };
    if !check_names("logs", names, &known, c)? {
        return Ok(1);
    }
    let names = if names.is_empty() { known } else { names.to_vec() };
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let mut seen: HashMap<&str, u64> = HashMap::new();
    loop {
        let mut lines: Vec<(u64, &str, String)> = Vec::new();
        for name in &names {
            let body = match fetch(admin, &format!("/logs/{name}?lines=1000")) {
                Ok(b) => b,
                Err(e) => {
                    writeln!(c.err, "sitecar logs: {name}: {e}")?;
                    return Ok(1);
                }
            };
            let after = seen.get(name.as_str()).copied().unwrap_or(0);
            for l in json(&body).as_array().into_iter().flatten() {
                let at = l["at_ms"].as_u64().unwrap_or(0);
                if at > after {
                    lines.push((at, name, l["text"].as_str().unwrap_or("").to_string()));
                }
            }
        }
        lines.sort_by_key(|l| l.0);
        for (at, name, text) in &lines {
            writeln!(c.out, "{name:<width$} | {text}")?;
            let e = seen.entry(name).or_default();
            *e = (*e).max(*at);
        }
        if !follow {
            return Ok(0);
        }
        c.out.flush()?;
        std::thread::sleep(Duration::from_millis(500));
    }
}
