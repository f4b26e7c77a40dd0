//! The origin and the proxies under test: configuration files, processes, readiness.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A port free now (a listener bound to port 0, then released).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Installs the Debian packages that provide missing tools, without letting them start services.
pub fn ensure_tools(tools: &[&str]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| Command::new("sh").args(["-c", &format!("command -v {t}")]).output().map(|o| !o.status.success()).unwrap_or(true))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing
        .iter()
        .map(|t| match *t {
            "nginx" => "nginx-light",
            "h2load" => "nghttp2-client",
            "varnishd" => "varnish",
            other => other,
        })
        .collect();
    eprintln!("loadtest: installing {}", packages.join(" "));
    let script = format!(
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && \
         (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {} >/dev/null; rc=$?; rm -f /usr/sbin/policy-rc.d; exit $rc",
        packages.join(" ")
    );
    let ok = Command::new("sh").args(["-c", &script]).status()?.success();
    anyhow::ensure!(ok, "could not install {}: install them by hand", packages.join(" "));
    Ok(())
}

/// The self-signed ECDSA P-256 certificate every TLS listener uses (made once per run).
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate and key in one file, as HAProxy takes them.
    pub pem: PathBuf,
}

impl Certificate {
    pub fn make(dir: &Path) -> Result<Certificate> {
        let c = Certificate { cert: dir.join("tls-cert.pem"), key: dir.join("tls-key.pem"), pem: dir.join("tls-both.pem") };
        if !c.pem.exists() {
            let ok = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
                .arg(&c.key)
                .arg("-out")
                .arg(&c.cert)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("running openssl")?
                .success();
            anyhow::ensure!(ok, "openssl could not make a test certificate");
            std::fs::write(&c.pem, [std::fs::read(&c.cert)?, std::fs::read(&c.key)?].concat())?;
        }
        Ok(c)
    }
}

/// A server process, killed with its children on drop.
pub struct Server {
    pub port: u16,
    /// Port for HTTP/2 with prior knowledge, when separate.
    pub h2c_port: u16,
    /// Port for TLS (ALPN h2 and http/1.1), when there is one.
    pub tls_port: Option<u16>,
    pub child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Parent first: an nginx master that outlives a worker starts a new one.
        for p in crate::procs::tree(self.child.id()) {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
        let _ = self.child.wait();
    }
}

fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().with_context(|| format!("starting {cmd:?}"))
}

fn nginx_common(dir: &Path, name: &str, workers: usize, http: &str) -> Result<PathBuf> {
    let conf = dir.join(format!("{name}.conf"));
    let tmp = dir.join("tmp");
    std::fs::write(
        &conf,
        format!(
            "worker_processes {workers};\ndaemon off;\npid {pid};\nerror_log {dir}/{name}-error.log error;\n\
             events {{ worker_connections 20000; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n  keepalive_requests 10000000;\n{http}\n}}\n",
            pid = dir.join(format!("{name}.pid")).display(),
            dir = dir.display(),
            tmp = tmp.display(),
        ),
    )?;
    Ok(conf)
}

impl Server {
    /// The origin: nginx answering `/small` (2 bytes), `/64k` from a file, `/cacheable` (a small
    /// object any shared cache may keep for an hour) and `/static/64k.bin` (the file the edge
    /// scenarios serve from disk).
    pub fn origin(dir: &Path, workers: usize) -> Result<Server> {
        let (port, h2c_port) = (free_port()?, free_port()?);
        std::fs::write(dir.join("64k.bin"), vec![b'x'; 65536])?;
        std::fs::create_dir_all(dir.join("static"))?;
        std::fs::write(dir.join("static/64k.bin"), vec![b's'; 65536])?;
        let http = format!(
            "  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    listen 127.0.0.1:{h2c_port} http2;\n    location = /small {{ default_type text/plain; return 200 'ok'; }}\n    location = /64k {{ default_type application/octet-stream; alias {}; }}\n    location = /cacheable {{ default_type text/plain; add_header Cache-Control \"public, max-age=3600\"; return 200 '{CACHEABLE}'; }}\n    location /static/ {{ alias {}/; }}\n  }}",
            dir.join("64k.bin").display(),
            dir.join("static").display(),
        );
        let conf = nginx_common(dir, "origin", workers, &http)?;
        let child = spawn(Command::new("nginx").arg("-c").arg(&conf).arg("-p").arg(dir))?;
        Ok(Server { port, h2c_port, tls_port: None, child })
    }
}

/// The small object of the cache scenario (256 bytes).
const CACHEABLE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Something the load generator talks to.
pub struct Target {
    pub name: String,
    pub port: u16,
    pub h2c_port: u16,
    pub tls_port: Option<u16>,
    pub pid: u32,
    /// Scrape this admin port's /metrics every second while measuring.
    pub scrape: Option<u16>,
    /// Keeps the process alive (none for direct).
    _server: Option<Server>,
}

impl Target {
    pub fn direct(origin: &Server) -> Target {
        Target {
            name: "direct".into(),
            port: origin.port,
            h2c_port: origin.h2c_port,
            tls_port: None,
            pid: origin.child.id(),
            scrape: None,
            _server: None,
        }
    }

    fn from(name: &str, server: Server) -> Target {
        Target {
            name: name.into(),
            port: server.port,
            h2c_port: server.h2c_port,
            tls_port: server.tls_port,
            pid: server.child.id(),
            scrape: None,
            _server: Some(server),
        }
    }

    /// sitecar; `metrics` turns on the admin API and its metrics, `scrape` also scrapes them
    /// every second during measurements.
    pub fn sitecar(bin: &str, dir: &Path, origin: &Server, workers: usize, metrics: bool, scrape: bool) -> Result<Target> {
        let (port, tls_port) = (free_port()?, free_port()?);
        let tls = Certificate::make(dir)?;
        let mut cmd = Command::new(bin);
        cmd.args(["proxy", "--to", &format!("127.0.0.1:{}", origin.port), "--listen", &format!("127.0.0.1:{port}")]);
        cmd.args(["--tls-listen", &format!("127.0.0.1:{tls_port}")]).arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
        cmd.args(["--threads", &workers.to_string(), "--access-log", "off"]);
        let admin = free_port()?;
        if metrics {
            cmd.args(["--admin", &format!("127.0.0.1:{admin}")]);
        }
        let name = match (metrics, scrape) {
            (false, _) => "sitecar",
            (true, false) => "sitecar-metrics",
            (true, true) => "sitecar-scraped",
        };
        let mut t = Target::from(name, Server { port, h2c_port: port, tls_port: Some(tls_port), child: spawn(&mut cmd)? });
        t.scrape = scrape.then_some(admin);
        Ok(t)
    }

    /// sitecar with HTTP/1.x clients served by hyper's server (`--engine hyper`), to compare.
    pub fn sitecar_hyper_http1(bin: &str, origin: &Server, workers: usize) -> Result<Target> {
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.args(["proxy", "--to", &format!("127.0.0.1:{}", origin.port), "--listen", &format!("127.0.0.1:{port}")]);
        cmd.args(["--threads", &workers.to_string(), "--access-log", "off", "--engine", "hyper"]);
        Ok(Target::from("sitecar-hyper", Server { port, h2c_port: port, tls_port: None, child: spawn(&mut cmd)? }))
    }

    /// sitecar with its edge features: the cache on, and `/static/` served from the directory.
    pub fn sitecar_edge(bin: &str, dir: &Path, origin: &Server, workers: usize) -> Result<Target> {
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.args(["proxy", "--to", &format!("127.0.0.1:{}", origin.port), "--listen", &format!("127.0.0.1:{port}")]);
        cmd.args(["--threads", &workers.to_string(), "--access-log", "off", "--cache"]);
        cmd.arg("--offload").arg(format!("/static={}", dir.join("static").display()));
        Ok(Target::from("sitecar-edge", Server { port, h2c_port: port, tls_port: None, child: spawn(&mut cmd)? }))
    }

    /// nginx with `proxy_cache` in front of the origin and `/static/` served from the directory.
    pub fn nginx_edge(dir: &Path, origin: &Server, workers: usize) -> Result<Target> {
        let port = free_port()?;
        let http = format!(
            "  proxy_cache_path {cache} levels=1:2 keys_zone=edge:10m max_size=256m inactive=60m use_temp_path=off;\n  upstream origin {{ server 127.0.0.1:{}; keepalive 512; }}\n  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location /static/ {{ alias {static}/; }}\n    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; proxy_cache edge; add_header Cache-Status $upstream_cache_status; }}\n  }}",
            origin.port,
            cache = dir.join("nginx-cache").display(),
            static = dir.join("static").display(),
        );
        let conf = nginx_common(dir, "nginx-edge", workers, &http)?;
        let child = spawn(Command::new("nginx").arg("-c").arg(&conf).arg("-p").arg(dir))?;
        Ok(Target::from("nginx-edge", Server { port, h2c_port: port, tls_port: None, child }))
    }

    /// Varnish with its built-in VCL in front of the origin, one thread pool, 256 MiB of malloc
    /// storage.
    pub fn varnish(dir: &Path, origin: &Server) -> Result<Target> {
        let port = free_port()?;
        let work = dir.join("varnish");
        std::fs::create_dir_all(&work)?;
        let child = spawn(
            Command::new("varnishd")
                .args(["-F", "-a", &format!("127.0.0.1:{port}"), "-b", &format!("127.0.0.1:{}", origin.port)])
                .args(["-s", "malloc,256m", "-p", "thread_pools=1", "-n"])
                .arg(&work),
        )?;
        Ok(Target::from("varnish", Server { port, h2c_port: port, tls_port: None, child }))
    }

    pub fn nginx(dir: &Path, origin: &Server, workers: usize) -> Result<Target> {
        let (port, h2c_port, tls_port) = (free_port()?, free_port()?, free_port()?);
        let tls = Certificate::make(dir)?;
        let http = format!(
            "  upstream origin {{ server 127.0.0.1:{}; keepalive 512; keepalive_requests 10000000; }}\n  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    listen 127.0.0.1:{h2c_port} http2;\n    listen 127.0.0.1:{tls_port} ssl http2;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_buffering on; }}\n  }}",
            origin.port,
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        let conf = nginx_common(dir, "nginx", workers, &http)?;
        let child = spawn(Command::new("nginx").arg("-c").arg(&conf).arg("-p").arg(dir))?;
        Ok(Target::from("nginx", Server { port, h2c_port, tls_port: Some(tls_port), child }))
    }

    pub fn haproxy(dir: &Path, origin: &Server, workers: usize) -> Result<Target> {
        let (port, h2c_port, tls_port) = (free_port()?, free_port()?, free_port()?);
        let tls = Certificate::make(dir)?;
        let conf = dir.join("haproxy.cfg");
        std::fs::write(
            &conf,
            format!(
                "global\n  nbthread {workers}\n  maxconn 9000\ndefaults\n  mode http\n  option forwardfor\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\n\
                 frontend fe\n  bind 127.0.0.1:{port}\n  bind 127.0.0.1:{h2c_port} proto h2\n  bind 127.0.0.1:{tls_port} ssl crt {pem} alpn h2,http/1.1\n  default_backend be\nbackend be\n  server o 127.0.0.1:{}\n",
                origin.port,
                pem = tls.pem.display(),
            ),
        )?;
        let child = spawn(Command::new("haproxy").arg("-db").arg("-f").arg(&conf))?;
        Ok(Target::from("haproxy", Server { port, h2c_port, tls_port: Some(tls_port), child }))
    }

    pub fn caddy(dir: &Path, origin: &Server, workers: usize) -> Result<Target> {
        let (port, tls_port) = (free_port()?, free_port()?);
        let tls = Certificate::make(dir)?;
        let conf = dir.join("Caddyfile");
        std::fs::write(
            &conf,
            format!(
                "{{\n  admin off\n  auto_https off\n  servers {{\n    protocols h1 h2 h2c\n  }}\n}}\nhttp://127.0.0.1:{port} {{\n  reverse_proxy 127.0.0.1:{o}\n}}\nhttps://127.0.0.1:{tls_port} {{\n  tls {cert} {key}\n  reverse_proxy 127.0.0.1:{o}\n}}\n",
                o = origin.port,
                cert = tls.cert.display(),
                key = tls.key.display(),
            ),
        )?;
        let child = spawn(
            Command::new("caddy")
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&conf)
                .env("GOMAXPROCS", workers.to_string())
                .env("HOME", dir),
        )?;
        Ok(Target::from("caddy", Server { port, h2c_port: port, tls_port: Some(tls_port), child }))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The TLS URL (ALPN offers h2), when the target has a TLS listener.
    pub fn tls_url(&self, path: &str) -> Option<String> {
        self.tls_port.map(|p| format!("https://127.0.0.1:{p}{path}"))
    }

    pub fn h2c_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.h2c_port)
    }

    /// Waits until the target accepts connections.
    pub fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() >= deadline {
                // A zombie or no process: it exited (a port taken, a bad config) rather than being slow.
                let state = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok();
                let exited = state.as_deref().and_then(|s| s.rsplit(')').next()).is_none_or(|s| s.trim_start().starts_with('Z'));
                let why = if exited { "it exited" } else { "still running" };
                anyhow::bail!("{} did not start listening on {} ({why})", self.name, self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}
