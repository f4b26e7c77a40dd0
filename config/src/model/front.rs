//! The front door's settings: listeners, TLS, timeouts, limits, the access log, HTTP/2 to main,
//! the cache and the files served at the edge.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Access log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    Common,
    Json,
    Off,
}

/// The front door (`proxy` section).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Plain listeners, default `0.0.0.0:80` and `0.0.0.0:8080`.
    pub listen: Vec<SocketAddr>,
    /// True when `listen` was written in the spec: then a port that cannot be bound is an error
    /// instead of a warning.
    pub listen_explicit: bool,
    pub tls: Option<TlsSettings>,
    /// How long a request waits for main to become ready before a 503 (default 10 s).
    pub hold: Duration,
    pub timeouts: Timeouts,
    /// Request body limit in bytes (413 past it); none by default.
    pub max_body_bytes: Option<u64>,
    /// Request head limit: bytes (default 64 KiB) and header count (default 100).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Open client connections past this are refused (default 10,000).
    pub max_connections: usize,
    pub access_log: AccessLog,
    /// Drop request headers whose name has `_`, as nginx does (default true).
    pub drop_underscore_headers: bool,
    /// Worker threads; default: one per core.
    pub threads: Option<usize>,
    /// Compress main's responses (gzip, br, zstd) for clients that accept it when main did not
    /// (default true).
    pub compression: bool,
    /// Which requests reach main over HTTP/2 (App Service's `siteConfig.http20ProxyFlag`).
    pub http2_to_main: Http2ToMain,
    /// Where main speaks HTTP/2 then: the `HTTP20_ONLY_PORT` app setting, else main's own port.
    pub http2_port: Option<u16>,
    /// HTTP/1.x clients (plain and TLS) served by sitecar's own codec (`"engine": "sitecar"`, the
    /// default) or by hyper's server (`"hyper"`).
    pub own_http1: bool,
}

/// App Service's `http20ProxyFlag`: HTTP/2 clients' requests forwarded to main as HTTP/2
/// (cleartext, on `HTTP20_ONLY_PORT` or else main's port) instead of HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Http2ToMain {
    /// 0: every request reaches main as HTTP/1.1.
    #[default]
    Off,
    /// 1: every HTTP/2 request.
    All,
    /// 2: gRPC requests only (`Content-Type: application/grpc...`).
    GrpcOnly,
}

impl Http2ToMain {
    /// From the flag's value, 0, 1 or 2.
    pub fn from_flag(flag: i64) -> Option<Self> {
        match flag {
            0 => Some(Self::Off),
            1 => Some(Self::All),
            2 => Some(Self::GrpcOnly),
            _ => None,
        }
    }

    pub fn flag(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::All => 1,
            Self::GrpcOnly => 2,
        }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 80)), SocketAddr::from(([0, 0, 0, 0], 8080))],
            listen_explicit: false,
            tls: None,
            hold: Duration::from_secs(10),
            timeouts: Timeouts::default(),
            max_body_bytes: None,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            access_log: AccessLog::Common,
            drop_underscore_headers: true,
            threads: None,
            compression: true,
            http2_to_main: Http2ToMain::Off,
            http2_port: None,
            own_http1: true,
        }
    }
}

/// Timeouts of the front door, named after what they bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// Connecting to main (default 5 s).
    pub connect: Duration,
    /// Receiving a request's head (default 30 s): the slowloris bound. It also bounds how long an
    /// idle keep-alive connection waits for its next request.
    pub request_header: Duration,
    /// Longest pause while a request body arrives (default 60 s, nginx's client_body_timeout).
    pub body_progress: Duration,
    /// Longest pause while the client reads the response (default 60 s, nginx's send_timeout).
    pub write_progress: Duration,
    /// Whole request, until main's response head (default 230 s, App Service's front end limit).
    pub request: Duration,
    /// Idle pooled connections to main are closed after this (default 4 s, under Node's 5 s).
    pub upstream_idle: Duration,
    /// A request body must average at least this many bytes a second once its grace period is
    /// over (default 500, Apache `mod_reqtimeout`'s MinRate; 0 turns it off): a body trickling a
    /// byte at a time, which resets the progress timeout forever, ends with 408.
    pub body_min_rate: u64,
    /// Time a request body gets before its rate counts (default 20 s).
    pub body_min_rate_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request_header: Duration::from_secs(30),
            body_progress: Duration::from_secs(60),
            write_progress: Duration::from_secs(60),
            request: Duration::from_secs(230),
            upstream_idle: Duration::from_secs(4),
            body_min_rate: 500,
            body_min_rate_grace: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// Default `0.0.0.0:443`.
    pub listen: SocketAddr,
    /// PEM certificate chains and keys; the first is the default, the rest are chosen by SNI.
    pub certificates: Vec<CertificatePair>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Off by default.
    pub enabled: bool,
    /// Bound of the whole store (default 256 MiB).
    pub max_bytes: u64,
    /// Largest response stored (default 8 MiB).
    pub max_object_bytes: u64,
    /// How long concurrent misses for one URL wait for the first one's response (default 5 s).
    pub lock_timeout: Duration,
    /// Store a response with `Set-Cookie` when main gave it explicit shared freshness (`public`
    /// or `s-maxage`), cookie and all (RFC 9111 §3.1, §7.1); on by default.
    pub store_set_cookie: bool,
    /// How stale a stored response may be and still answer when main cannot be reached (refused,
    /// reset, closed, timed out, not ready) and main's directives do not say otherwise (RFC 9111
    /// §4.2.4: a disconnected cache may serve stale); default a week, zero turns it off.
    pub stale_if_disconnected: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            max_bytes: 256 << 20,
            max_object_bytes: 8 << 20,
            lock_timeout: Duration::from_secs(5),
            store_set_cookie: true,
            stale_if_disconnected: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Serve `prefix` from `dir` at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffloadRule {
    pub prefix: String,
    pub dir: PathBuf,
    /// A miss goes on to main (default true).
    pub fallthrough: bool,
}
