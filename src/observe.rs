//! What the admin API shows of a running stack (the supervisor's status, with each container's
//! CPU and memory from `sitecar_control::usage`), and the commands that read it back: `status`,
//! `logs`, `reload`, `restart`, `down`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sitecar_control::usage::{group_usage, ContainerMetrics};
use sitecar_control::{ContainerStatus, Handle};
use sitecar_proxy::admin::StackView;
use tokio::sync::watch;

/// The admin API's view of a supervised stack.
pub struct Stack {
    pub handle: Handle,
    pub ready: watch::Receiver<bool>,
    pub listeners: Vec<String>,
    pub metrics: Mutex<ContainerMetrics>,
    /// Asks the reloader of `sitecar up` to re-read the spec.
    pub reload: Option<crate::up::ReloadRequests>,
    /// Starts the orderly stop (`sitecar down`), as SIGTERM does.
    pub shutdown: tokio_util::sync::CancellationToken,
}

fn container_json(c: &ContainerStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let (Some(pid), Some(obj)) = (c.pid, v.as_object_mut()) {
        let (cpu, rss) = group_usage(pid);
        obj.insert("cpu_seconds".into(), serde_json::json!(cpu));
        obj.insert("rss_bytes".into(), serde_json::json!(rss));
    }
    v
}

impl StackView for Stack {
    fn ready(&self) -> bool {
        *self.ready.borrow()
    }

    fn status(&self) -> serde_json::Value {
        let containers: Vec<serde_json::Value> = self.handle.status.borrow().iter().map(container_json).collect();
        serde_json::json!({
            "main": *self.handle.main.borrow(),
            "main_addr": self.handle.main_addr.to_string(),
            "containers": containers,
            "proxy": {"listen": self.listeners},
        })
    }

    fn logs(&self, name: &str, lines: usize) -> Option<serde_json::Value> {
        if !self.handle.status.borrow().iter().any(|c| c.name == name) {
            return None;
        }
        serde_json::to_value(self.handle.logs.recent(name, lines)).ok()
    }

    fn shutdown(&self) -> bool {
        self.shutdown.cancel();
        true
    }

    fn restart(&self, name: &str) -> bool {
        self.handle.restart(name)
    }

    fn reload(&self) -> Option<tokio::sync::oneshot::Receiver<Result<Vec<String>, Vec<String>>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.reload.as_ref()?.send(Some(tx)).ok()?;
        Some(rx)
    }

    fn follow(&self, name: &str) -> Option<tokio::sync::mpsc::Receiver<String>> {
        if !self.handle.status.borrow().iter().any(|c| c.name == name) {
            return None;
        }
        let mut lines = self.handle.logs.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let name = name.to_owned();
        tokio::spawn(async move {
            loop {
                match lines.recv().await {
                    Ok(line) if *line.container == *name => {
                        let json = serde_json::to_string(&line).unwrap_or_default();
                        if tx.send(json).await.is_err() {
                            return; // the client went away
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Some(rx)
    }

    fn refresh_metrics(&self) {
        let statuses = self.handle.status.borrow().clone();
        if let Ok(mut m) = self.metrics.lock() {
            m.update(&statuses);
        }
    }
}

/// The admin API's view in `sitecar proxy` mode: no containers, the app is someone else's.
pub struct ProxyOnly {
    pub listeners: Vec<String>,
    pub upstream: String,
}

impl StackView for ProxyOnly {
    fn ready(&self) -> bool {
        true
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({"main": "ready", "main_addr": self.upstream, "containers": [], "proxy": {"listen": self.listeners}})
    }

    fn logs(&self, _: &str, _: usize) -> Option<serde_json::Value> {
        None
    }

    fn restart(&self, _: &str) -> bool {
        false
    }
}

/// `sitecar status`: a table like `docker compose ps`, from a running instance's admin API.
pub fn status_command(admin: &str, as_json: bool) -> std::process::ExitCode {
    match fetch(admin, "/status") {
        Ok(body) if as_json => {
            println!("{body}");
            std::process::ExitCode::SUCCESS
        }
        Ok(body) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            println!("main: {}   front door: {}", v["main"].as_str().unwrap_or("?"), v["proxy"]["listen"]);
            println!(
                "{:<16} {:<8} {:<12} {:>8} {:>9} {:>9} {:>10} {:>10}  PORTS",
                "NAME", "ROLE", "STATE", "PID", "RESTARTS", "LAST EXIT", "CPU s", "RSS MiB"
            );
            for c in v["containers"].as_array().into_iter().flatten() {
                let exit = match &c["last_exit"] {
                    serde_json::Value::Object(m) => m.iter().map(|(k, v)| format!("{k} {v}")).next().unwrap_or_default(),
                    _ => "-".into(),
                };
                // Where sitecar reaches it, and the port it listens on in its namespace.
                let ports = match (c["addr"].as_str(), c["port"].as_u64()) {
                    (Some(a), Some(p)) if !a.ends_with(&format!(":{p}")) => format!("{a}->{p}"),
                    (Some(a), _) => a.to_owned(),
                    (None, Some(p)) => p.to_string(),
                    (None, None) => "-".into(),
                };
                println!(
                    "{:<16} {:<8} {:<12} {:>8} {:>9} {:>9} {:>10.2} {:>10.1}  {ports}",
                    c["name"].as_str().unwrap_or("?"),
                    if c["is_main"].as_bool() == Some(true) { "main" } else { "sidecar" },
                    c["phase"].as_str().unwrap_or("?"),
                    c["pid"].as_u64().map_or("-".into(), |p| p.to_string()),
                    c["restarts"],
                    exit,
                    c["cpu_seconds"].as_f64().unwrap_or(0.0),
                    c["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sitecar status: cannot reach the admin API at {admin}: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The names of the running stack's containers, in spec order.
fn container_names(admin: &str) -> Vec<String> {
    fetch(admin, "/status")
        .ok()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .map(|v| v["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// POST with an empty body to the admin API: (status code, body).
fn post(admin: &str, path: &str, read_timeout: Duration) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin)?;
    s.set_read_timeout(Some(read_timeout))?;
    s.write_all(format!("POST {path} HTTP/1.0\r\nHost: {admin}\r\nContent-Length: 0\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// `sitecar restart NAME...`: each container restarted through the admin API; an unknown name
/// lists the names there are.
pub fn restart_command(admin: &str, names: &[String]) -> std::process::ExitCode {
    let known = container_names(admin);
    let unknown: Vec<&str> = names.iter().filter(|n| !known.contains(n)).map(String::as_str).collect();
    if !unknown.is_empty() {
        eprintln!("sitecar restart: no container named {}; the containers are: {}", unknown.join(", "), known.join(", "));
        return std::process::ExitCode::from(1);
    }
    for name in names {
        match post(admin, &format!("/containers/{name}/restart"), Duration::from_secs(10)) {
            Ok((202, _)) => println!("{name}: restarting"),
            Ok((code, body)) => {
                eprintln!("sitecar restart: {name}: {code} {}", body.trim());
                return std::process::ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("sitecar restart: {name}: {e}");
                return std::process::ExitCode::from(1);
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

/// `sitecar down`: asks the stack to stop in order and waits until its admin API is gone (the
/// last thing `up` closes).
pub fn down_command(admin: &str) -> std::process::ExitCode {
    match post(admin, "/shutdown", Duration::from_secs(10)) {
        Ok((202, _)) => {}
        Ok((code, body)) => {
            eprintln!("sitecar down: refused: {code} {}", body.trim());
            return std::process::ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("sitecar down: {e}");
            return std::process::ExitCode::from(1);
        }
    }
    println!("stopping: main, then the sidecars in reverse order");
    // Each container has its grace period; a stack of ten waits at worst ten of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(15 * 60);
    while std::net::TcpStream::connect(admin).is_ok() {
        if std::time::Instant::now() > deadline {
            eprintln!("sitecar down: the stack at {admin} is still stopping");
            return std::process::ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("stopped");
    std::process::ExitCode::SUCCESS
}

/// GET over HTTP/1.0 from the admin API, body only.
pub fn fetch(admin: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(head.lines().next().unwrap_or("no answer").to_string()));
    }
    Ok(body.to_string())
}

/// `sitecar reload`: asks a running `sitecar up` to re-read its spec; prints what was restarted,
/// or every problem (exit 1: the running stack is unchanged).
pub fn reload_command(admin: &str, as_json: bool) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let answer = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(admin)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.write_all(format!("POST /reload HTTP/1.0\r\nHost: {admin}\r\nContent-Length: 0\r\n\r\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    let out = match answer {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sitecar reload: cannot reach the admin API at {admin}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    if as_json {
        println!("{body}");
    }
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if v["reloaded"] == serde_json::Value::Bool(true) {
        if !as_json {
            let restarted: Vec<&str> = v["restarted"].as_array().into_iter().flatten().filter_map(|n| n.as_str()).collect();
            println!("reloaded; restarted: {}", if restarted.is_empty() { "nothing".to_string() } else { restarted.join(", ") });
        }
        return std::process::ExitCode::SUCCESS;
    }
    if !as_json {
        eprintln!("sitecar reload: refused, the running stack is unchanged ({})", head.lines().next().unwrap_or(""));
        for p in v["problems"].as_array().into_iter().flatten() {
            eprintln!("  {}", p.as_str().unwrap_or(""));
        }
    }
    std::process::ExitCode::from(1)
}

/// `sitecar logs [-f] [NAME...]`: recent lines with compose-style prefixes; `-f` keeps polling.
pub fn logs_command(admin: &str, names: &[String], follow: bool) -> std::process::ExitCode {
    let names: Vec<String> = if names.is_empty() {
        match fetch(admin, "/status").map(|b| serde_json::from_str::<serde_json::Value>(&b).unwrap_or_default()) {
            Ok(v) => v["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(String::from)).collect(),
            Err(e) => {
                eprintln!("sitecar logs: cannot reach the admin API at {admin}: {e}");
                return std::process::ExitCode::from(1);
            }
        }
    } else {
        let known = container_names(admin);
        let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(n)).collect();
        if !unknown.is_empty() {
            let which: Vec<&str> = unknown.iter().map(|n| n.as_str()).collect();
            eprintln!("sitecar logs: no container named {}; the containers are: {}", which.join(", "), known.join(", "));
            return std::process::ExitCode::from(1);
        }
        names.to_vec()
    };
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let mut seen: HashMap<String, u64> = HashMap::new();
    loop {
        let mut lines: Vec<(u64, String, String)> = Vec::new();
        for name in &names {
            let body = match fetch(admin, &format!("/logs/{name}?lines=1000")) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("sitecar logs: {name}: {e}");
                    return std::process::ExitCode::from(1);
                }
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let after = seen.get(name).copied().unwrap_or(0);
            for l in v.as_array().into_iter().flatten() {
                let at = l["at_ms"].as_u64().unwrap_or(0);
                if at > after {
                    lines.push((at, name.clone(), l["text"].as_str().unwrap_or("").to_string()));
                }
            }
        }
        lines.sort_by_key(|l| l.0);
        for (at, name, text) in &lines {
            println!("{name:<width$} | {text}");
            let e = seen.entry(name.clone()).or_default();
            *e = (*e).max(*at);
        }
        if !follow {
            return std::process::ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
