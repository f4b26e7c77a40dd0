//! The sitecar-only sections of a sitecar document: `appSettings`, `connectionStrings`, `proxy`,
//! `health`, `cache`, `offload`, `admin` and `local`. Each reader starts from the documented
//! defaults in [`crate::model`] and changes only what the document sets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde_json::Value;

use crate::error::Problem;
use crate::json::{index, type_name, Obj, Problems};
use crate::model::*;

/// A listen address: `"0.0.0.0:80"`, `"[::1]:8080"`, `":8080"` or a bare port (all interfaces).
pub fn parse_listen(s: &str, default_ip: IpAddr) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let port = s.strip_prefix(':').unwrap_or(s).parse::<u16>().ok()?;
    Some(SocketAddr::new(default_ip, port))
}

fn listen_value(p: &mut Problems, v: &Value, path: &str, default_ip: IpAddr) -> Option<SocketAddr> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            p.at(path, format!("expected an address like \"0.0.0.0:8080\", found {}", type_name(other)));
            return None;
        }
    };
    let addr = parse_listen(&text, default_ip);
    if addr.is_none() {
        p.push(
            Problem::new(path, format!("\"{text}\" is not a listen address")).hint("write \"0.0.0.0:8080\", \"127.0.0.1:80\" or \":8080\""),
        );
    }
    addr
}

pub(crate) fn connection_strings(p: &mut Problems, doc: &mut Obj<'_>) -> BTreeMap<String, ConnectionString> {
    let mut out = BTreeMap::new();
    for (name, v, path) in doc.entries(p, "connectionStrings") {
        let Some(mut o) = Obj::new(p, v, &path) else { continue };
        let value = o.string(p, "value");
        let kind = match o.string(p, "type") {
            None => Some(ConnectionType::Custom),
            Some(t) => {
                let parsed = ConnectionType::parse(&t);
                if parsed.is_none() {
                    let names: Vec<&str> = ConnectionType::ALL.iter().map(|t| t.name()).collect();
                    p.push(
                        Problem::new(format!("{path}.type"), format!("unknown connection string type \"{t}\""))
                            .hint(format!("one of {}", names.join(", "))),
                    );
                }
                parsed
            }
        };
        if o.get("value").is_none() {
            p.at(&format!("{path}.value"), "missing value of the connection string");
        }
        o.finish(p);
        if let (Some(value), Some(kind)) = (value, kind) {
            out.insert(name, ConnectionString { value: Secret::new(value), kind });
        }
    }
    out
}

pub(crate) fn proxy(p: &mut Problems, doc: &mut Obj<'_>) -> ProxySettings {
    let mut s = ProxySettings::default();
    let Some(mut o) = doc.object(p, "proxy") else { return s };
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    if let Some((list, path)) = o.array(p, "listen") {
        s.listen = list.iter().enumerate().filter_map(|(i, v)| listen_value(p, v, &index(&path, i), any)).collect();
        s.listen_explicit = true;
        if list.is_empty() {
            p.push(Problem::new(&path, "no listen address").hint("the front door needs at least one, e.g. [\"0.0.0.0:8080\"]"));
        }
    }
    if let Some(mut t) = o.object(p, "tls") {
        let listen = t.get("listen").and_then(|(v, path)| listen_value(p, v, &path, any)).unwrap_or(SocketAddr::new(any, 443));
        let mut certificates = Vec::new();
        match t.array(p, "certificates") {
            Some((certs, path)) => {
                for (i, c) in certs.iter().enumerate() {
                    let cp = index(&path, i);
                    let Some(mut co) = Obj::new(p, c, &cp) else { continue };
                    let cert = co.string(p, "cert");
                    let key = co.string(p, "key");
                    if cert.is_none() || key.is_none() {
                        p.push(Problem::new(&cp, "a certificate needs both \"cert\" and \"key\"").hint("paths to PEM files"));
                    }
                    co.finish(p);
                    if let (Some(cert), Some(key)) = (cert, key) {
                        certificates.push(CertificatePair { cert: cert.into(), key: key.into() });
                    }
                }
                if certs.is_empty() {
                    p.at(&path, "TLS needs at least one certificate");
                }
            }
            None => p.push(
                Problem::new(format!("{}.certificates", t.path), "TLS needs certificates")
                    .hint("[{\"cert\": \"cert.pem\", \"key\": \"key.pem\"}]"),
            ),
        }
        t.finish(p);
        s.tls = Some(TlsSettings { listen, certificates });
    }
    if let Some(d) = o.seconds(p, "holdSeconds", 3600.0) {
        s.hold = d;
    }
    if let Some(mut t) = o.object(p, "timeouts") {
        let fields: [(&'static str, &mut std::time::Duration); 7] = [
            ("connectSeconds", &mut s.timeouts.connect),
            ("requestHeaderSeconds", &mut s.timeouts.request_header),
            ("bodyProgressSeconds", &mut s.timeouts.body_progress),
            ("writeProgressSeconds", &mut s.timeouts.write_progress),
            ("requestSeconds", &mut s.timeouts.request),
            ("upstreamIdleSeconds", &mut s.timeouts.upstream_idle),
            ("bodyMinRateGraceSeconds", &mut s.timeouts.body_min_rate_grace),
        ];
        for (key, slot) in fields {
            if let Some(d) = t.seconds(p, key, 86_400.0) {
                *slot = d;
            }
        }
        if let Some(rate) = t.integer(p, "bodyMinRateBytesPerSecond", 0, 1 << 30) {
            s.timeouts.body_min_rate = rate;
        }
        t.finish(p);
    }
    s.max_body_bytes = o.integer(p, "maxBodyBytes", 1, u64::MAX);
    if let Some(n) = o.integer(p, "maxHeaderBytes", 1024, 1 << 20) {
        s.max_header_bytes = n as usize;
    }
    if let Some(n) = o.integer(p, "maxHeaders", 1, 1000) {
        s.max_headers = n as usize;
    }
    if let Some(n) = o.integer(p, "maxConnections", 1, 1_000_000) {
        s.max_connections = n as usize;
    }
    if let Some((v, path)) = o.get("accessLog") {
        match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("common") => s.access_log = AccessLog::Common,
            Some("json") => s.access_log = AccessLog::Json,
            Some("off") => s.access_log = AccessLog::Off,
            _ => p.push(Problem::new(path, format!("unknown access log format {v}")).hint("one of \"common\", \"json\", \"off\"")),
        }
    }
    if let Some(b) = o.boolean(p, "dropUnderscoreHeaders") {
        s.drop_underscore_headers = b;
    }
    s.threads = o.integer(p, "threads", 1, 1024).map(|n| n as usize);
    if let Some(b) = o.boolean(p, "compression") {
        s.compression = b;
    }
    if let Some((v, path)) = o.get("engine") {
        match v.as_str() {
            Some("hyper") => s.own_http1 = false,
            Some("sitecar") => s.own_http1 = true,
            _ => p.push(Problem::new(path, format!("unknown engine {v}")).hint("\"sitecar\" (the default) or \"hyper\"")),
        }
    }
    // App Service's name for it (`siteConfig.http20ProxyFlag`): 0 off, 1 all HTTP/2, 2 gRPC only.
    if let Some(n) = o.integer(p, "http20ProxyFlag", 0, 2) {
        s.http2_to_main = crate::model::Http2ToMain::from_flag(n as i64).unwrap_or_default();
    }
    o.finish(p);
    s
}

fn probe(p: &mut Problems, o: &mut Obj<'_>, base: &ProbeSettings) -> ProbeSettings {
    let mut s = base.clone();
    if let Some((v, path)) = o.get("path") {
        match v.as_str() {
            Some(path_text) if path_text.starts_with('/') => s.kind = ProbeKind::Http { path: path_text.to_owned() },
            _ => p.push(Problem::new(path, format!("probe path {v} must start with /")).hint("e.g. \"/healthz\"")),
        }
    }
    if let Some(d) = o.seconds(p, "initialDelaySeconds", 3600.0) {
        s.initial_delay = d;
    }
    for (key, slot) in [("periodSeconds", &mut s.period), ("timeoutSeconds", &mut s.timeout)] {
        if let Some((v, path)) = o.get(key) {
            match v.as_f64() {
                Some(x) if x > 0.0 && x <= 3600.0 => *slot = std::time::Duration::from_secs_f64(x),
                _ => p.push(Problem::new(path, format!("{key} must be a number of seconds above 0, found {v}"))),
            }
        }
    }
    if let Some(n) = o.integer(p, "failureThreshold", 1, 1000) {
        s.failure_threshold = n as u32;
    }
    if let Some(n) = o.integer(p, "successThreshold", 1, 1000) {
        s.success_threshold = n as u32;
    }
    s
}

/// `health`: probe defaults, and `containers.<name>` overrides (checked against names later).
pub(crate) fn health(p: &mut Problems, doc: &mut Obj<'_>) -> (HealthSettings, Vec<(String, String)>) {
    let mut s = HealthSettings::default();
    let mut named = Vec::new();
    let Some(mut o) = doc.object(p, "health") else { return (s, named) };
    let entries = o.entries(p, "containers");
    s.defaults = probe(p, &mut o, &ProbeSettings::default());
    o.finish(p);
    for (name, v, path) in entries {
        let Some(mut c) = Obj::new(p, v, &path) else { continue };
        let settings = probe(p, &mut c, &s.defaults);
        c.finish(p);
        s.containers.insert(name.clone(), settings);
        named.push((name, path));
    }
    (s, named)
}

pub(crate) fn cache(p: &mut Problems, doc: &mut Obj<'_>) -> CacheSettings {
    let mut s = CacheSettings::default();
    let Some(mut o) = doc.object(p, "cache") else { return s };
    if let Some(b) = o.boolean(p, "enabled") {
        s.enabled = b;
    }
    if let Some(n) = o.integer(p, "maxBytes", 1024, u64::MAX) {
        s.max_bytes = n;
    }
    let explicit_object = o.integer(p, "maxObjectBytes", 1, u64::MAX);
    match explicit_object {
        Some(n) => s.max_object_bytes = n,
        // Unsaid, the object bound follows a small cache down: a quarter of it at most.
        None => s.max_object_bytes = s.max_object_bytes.min(s.max_bytes / 4).max(1),
    }
    if let Some(d) = o.seconds(p, "lockTimeoutSeconds", 600.0) {
        s.lock_timeout = d;
    }
    if let Some(b) = o.boolean(p, "storeSetCookie") {
        s.store_set_cookie = b;
    }
    if let Some(d) = o.seconds(p, "staleIfDisconnectedSeconds", 365.0 * 24.0 * 3600.0) {
        s.stale_if_disconnected = d;
    }
    if explicit_object.is_some() && s.max_object_bytes > s.max_bytes {
        p.push(
            Problem::new(format!("{}.maxObjectBytes", o.path), "maxObjectBytes is larger than maxBytes")
                .hint("one object cannot be larger than the whole cache"),
        );
    }
    o.finish(p);
    s
}

pub(crate) fn offload(p: &mut Problems, doc: &mut Obj<'_>) -> Vec<OffloadRule> {
    let Some((rules, path)) = doc.array(p, "offload") else { return Vec::new() };
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let rp = index(&path, i);
        let Some(mut o) = Obj::new(p, r, &rp) else { continue };
        let prefix = o.string(p, "prefix");
        let dir = o.string(p, "dir");
        let fallthrough = o.boolean(p, "fallthrough").unwrap_or(true);
        match &prefix {
            Some(pf) if pf.starts_with('/') => {}
            Some(pf) => p.push(Problem::new(format!("{rp}.prefix"), format!("prefix \"{pf}\" must start with /")).hint("e.g. \"/static\"")),
            None => p.at(&format!("{rp}.prefix"), "missing prefix"),
        }
        match &dir {
            Some(d) if !d.trim().is_empty() => {}
            _ => p.push(Problem::new(format!("{rp}.dir"), "missing dir").hint("the directory whose files are served under the prefix")),
        }
        o.finish(p);
        if let (Some(prefix), Some(dir)) = (prefix, dir) {
            out.push(OffloadRule { prefix, dir: PathBuf::from(dir), fallthrough });
        }
    }
    out
}

pub(crate) fn admin(p: &mut Problems, doc: &mut Obj<'_>) -> AdminSettings {
    let mut s = AdminSettings::default();
    let Some(mut o) = doc.object(p, "admin") else { return s };
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if let Some(a) = o.get("listen").and_then(|(v, path)| listen_value(p, v, &path, loopback)) {
        s.listen = a;
    }
    s.token = o.string(p, "token").map(Secret::new);
    if !s.listen.ip().is_loopback() && s.token.is_none() {
        p.push(
            Problem::new(format!("{}.listen", o.path), format!("admin API on {} without a token", s.listen))
                .hint("set admin.token, or keep the admin API on 127.0.0.1"),
        );
    }
    o.finish(p);
    s
}

pub(crate) fn tracing(p: &mut Problems, doc: &mut Obj<'_>) -> TracingSettings {
    let mut s = TracingSettings::default();
    let Some(mut o) = doc.object(p, "tracing") else { return s };
    if let Some(name) = o.string(p, "serviceName") {
        if name.trim().is_empty() {
            p.at(&format!("{}.serviceName", o.path), "serviceName is empty");
        } else {
            s.service_name = name;
        }
    }
    if let Some((v, path)) = o.get("sampleRatio") {
        match v.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => s.sample_ratio = r,
            Some(r) => p.push(Problem::new(path, format!("{r} is out of range 0-1")).hint("1 samples every new trace, 0.1 one in ten")),
            None => p.at(&path, format!("expected a number from 0 to 1, found {}", type_name(v))),
        }
    }
    if let Some(mut x) = o.object(p, "otlp") {
        let endpoint = match x.string(p, "endpoint") {
            Some(e) => otlp_endpoint(p, &e, &format!("{}.endpoint", x.path)),
            None => {
                p.push(
                    Problem::new(format!("{}.endpoint", x.path), "missing endpoint")
                        .hint("the collector's OTLP/HTTP address, e.g. \"http://localhost:4318\""),
                );
                None
            }
        };
        let headers = x.string_map(p, "headers").into_iter().map(|(k, v)| (k, Secret::new(v))).collect::<Vec<_>>();
        for (name, _) in &headers {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                p.at(&format!("{}.headers", x.path), format!("\"{name}\" is not a header name"));
            }
        }
        let timeout = x.seconds(p, "timeoutSeconds", 600.0).unwrap_or(std::time::Duration::from_secs(10));
        x.finish(p);
        if let Some(endpoint) = endpoint {
            s.otlp = Some(OtlpSettings { endpoint, headers, timeout });
        }
    }
    o.finish(p);
    s
}

fn otlp_endpoint(p: &mut Problems, e: &str, path: &str) -> Option<String> {
    match parse_otlp_endpoint(e) {
        Ok(url) => Some(url),
        Err((message, hint)) => {
            p.push(Problem::new(path, message).hint(hint));
            None
        }
    }
}

/// An OTLP/HTTP traces URL: `http://host:port[/path]`; without a path, `/v1/traces` is added.
/// The error is a message and a hint.
pub fn parse_otlp_endpoint(e: &str) -> Result<String, (String, &'static str)> {
    let Some(rest) = e.strip_prefix("http://") else {
        let hint = if e.starts_with("https://") {
            "collectors are sidecars on localhost: use http://localhost:4318"
        } else {
            "write \"http://localhost:4318\" (OTLP/HTTP; the gRPC port 4317 is not spoken)"
        };
        return Err((format!("\"{e}\" is not an http:// URL"), hint));
    };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    let port_ok = match authority.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => !authority.is_empty(),
    };
    if !port_ok || authority.contains(['@', ' ', '?', '#']) {
        return Err((format!("\"{e}\" has no valid host and port"), "e.g. \"http://localhost:4318\""));
    }
    if tail.is_empty() {
        Ok(format!("http://{authority}/v1/traces"))
    } else {
        Ok(e.to_owned())
    }
}

/// Local overrides per container name and per image, before names are checked.
#[derive(Debug, Default)]
pub(crate) struct LocalDraft {
    pub settings: LocalSettings,
    pub by_name: Vec<(String, LocalCommand, String)>,
    pub by_image: Vec<(String, LocalCommand)>,
}

fn local_command(p: &mut Problems, v: &Value, path: &str) -> Option<LocalCommand> {
    let mut o = Obj::new(p, v, path)?;
    let cmd = LocalCommand {
        command: o.string(p, "command").filter(|c| !c.trim().is_empty()),
        working_dir: o.string(p, "workingDir").map(PathBuf::from),
        port: o.integer(p, "port", 1, 65535).map(|n| n as u16),
    };
    o.finish(p);
    Some(cmd)
}

pub(crate) fn local(p: &mut Problems, doc: &mut Obj<'_>) -> LocalDraft {
    let mut d = LocalDraft::default();
    let Some(mut o) = doc.object(p, "local") else { return d };
    if let Some((v, path)) = o.get("runtime") {
        d.settings.runtime = match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("auto") => RuntimeChoice::Auto,
            Some("process") => RuntimeChoice::Process,
            Some("oci") => RuntimeChoice::Oci,
            _ => {
                p.push(Problem::new(path, format!("unknown runtime {v}")).hint("one of \"auto\", \"process\", \"oci\""));
                RuntimeChoice::Auto
            }
        };
    }
    if let Some((v, path)) = o.get("engine") {
        match v.as_str() {
            Some(e @ ("docker" | "podman")) => d.settings.engine = Some(e.to_owned()),
            _ => p.push(Problem::new(path, format!("unknown engine {v}")).hint("\"docker\" or \"podman\"")),
        }
    }
    if let Some(image) = o.string(p, "pauseImage") {
        if image.trim().is_empty() {
            p.at(&format!("{}.pauseImage", o.path), "pauseImage is empty");
        } else {
            d.settings.pause_image = Some(image);
        }
    }
    if let Some(root) = o.string(p, "storageRoot") {
        d.settings.storage_root = root.into();
    }
    if let Some(g) = o.seconds(p, "gracePeriodSeconds", 3600.0) {
        d.settings.grace_period = g;
    }
    if let Some(mut r) = o.object(p, "restart") {
        for (key, slot) in [
            ("initialBackoffSeconds", &mut d.settings.restart.initial),
            ("maxBackoffSeconds", &mut d.settings.restart.max),
            ("resetAfterSeconds", &mut d.settings.restart.reset_after),
        ] {
            if let Some(v) = r.seconds(p, key, 86_400.0) {
                *slot = v;
            }
        }
        if d.settings.restart.initial > d.settings.restart.max {
            p.at(&format!("{}.initialBackoffSeconds", r.path), "initialBackoffSeconds is larger than maxBackoffSeconds");
        }
        r.finish(p);
    }
    if let Some(n) = o.string(p, "siteName") {
        d.settings.site_name = n;
    }
    if let Some(h) = o.string(p, "hostname") {
        d.settings.hostname = h;
    }
    for (name, v, path) in o.entries(p, "containers") {
        if let Some(c) = local_command(p, v, &path) {
            d.by_name.push((name, c, path));
        }
    }
    for (image, v, path) in o.entries(p, "images") {
        if let Some(c) = local_command(p, v, &path) {
            d.by_image.push((image, c));
        }
    }
    o.finish(p);
    d
}

/// App Service behaviour read from app settings, with each value checked.
pub(crate) fn platform(p: &mut Problems, settings: &BTreeMap<String, String>, settings_path: &str) -> Platform {
    let mut s = Platform::default();
    let at = |name: &str| crate::json::join(settings_path, name);
    if let Some(v) = settings.get("WEBSITE_WARMUP_PATH") {
        if v.starts_with('/') {
            s.warmup_path = v.clone();
        } else {
            p.push(Problem::new(at("WEBSITE_WARMUP_PATH"), format!("warmup path \"{v}\" must start with /")));
        }
    }
    if let Some(v) = settings.get("WEBSITE_WARMUP_STATUSES") {
        for part in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            match part.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => s.warmup_statuses.push(code),
                _ => p.push(
                    Problem::new(at("WEBSITE_WARMUP_STATUSES"), format!("\"{part}\" is not an HTTP status code"))
                        .hint("a comma-separated list like \"200,202\""),
                ),
            }
        }
    }
    if let Some(v) = settings.get("WEBSITES_CONTAINER_START_TIME_LIMIT") {
        match v.trim().parse::<u64>() {
            Ok(n) if (10..=1800).contains(&n) => s.start_time_limit = std::time::Duration::from_secs(n),
            _ => p.push(Problem::new(
                at("WEBSITES_CONTAINER_START_TIME_LIMIT"),
                format!("\"{v}\" is not a number of seconds from 10 to 1800"),
            )),
        }
    }
    if let Some(v) = settings.get("WEBSITE_HEALTHCHECK_PATH") {
        if v.starts_with('/') {
            s.healthcheck_path = Some(v.clone());
        } else {
            p.push(Problem::new(at("WEBSITE_HEALTHCHECK_PATH"), format!("health check path \"{v}\" must start with /")));
        }
    }
    if let Some(v) = settings.get("HTTP20_ONLY_PORT") {
        match v.trim().parse::<u16>() {
            Ok(port) if port > 0 => s.http20_only_port = Some(port),
            _ => p.push(
                Problem::new(at("HTTP20_ONLY_PORT"), format!("\"{v}\" is not a port"))
                    .hint("the port where main serves HTTP/2 without TLS (gRPC), e.g. \"8585\""),
            ),
        }
    }
    if let Some(v) = settings.get("WEBSITES_ENABLE_APP_SERVICE_STORAGE") {
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" => s.app_service_storage = true,
            "false" | "0" => s.app_service_storage = false,
            _ => p.push(Problem::new(at("WEBSITES_ENABLE_APP_SERVICE_STORAGE"), format!("\"{v}\" is not true or false"))),
        }
    }
    s
}
