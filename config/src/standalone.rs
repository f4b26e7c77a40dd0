//! `sitecar proxy`: the front door alone, in front of an app someone else runs. Its settings
//! come from an optional sitecar document, then its command-line flags, merged here so that
//! every flag is checked as the document's keys are.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{
    AccessLog, CacheSettings, CertificatePair, OffloadRule, OtlpSettings, ProxySettings, Spec, TlsSettings, TracingSettings,
};
use crate::sections::{parse_listen, parse_otlp_endpoint};

/// The flags of `sitecar proxy` that change settings, as given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Vec<String>,
    pub threads: Option<usize>,
    pub access_log: Option<String>,
    /// `--tls-listen`, `--cert`, `--key`: all three or none.
    pub tls: Option<(String, PathBuf, PathBuf)>,
    pub cache: bool,
    pub cache_max_bytes: Option<u64>,
    pub cache_max_object_bytes: Option<u64>,
    /// `--offload PREFIX=DIR` (a missing file goes on to the app).
    pub offload: Vec<(String, PathBuf)>,
    /// `--offload-only PREFIX=DIR` (a missing file is a 404).
    pub offload_only: Vec<(String, PathBuf)>,
    pub no_compression: bool,
    pub otlp_endpoint: Option<String>,
    /// `--grpc-port` / `--http2-port`: which requests reach the app over HTTP/2, and its port.
    pub http2_to_main: Option<(crate::Http2ToMain, u16)>,
    /// `--engine hyper|sitecar`.
    pub engine: Option<String>,
}

/// What the front door runs with in `sitecar proxy`.
#[derive(Debug, Clone)]
pub struct Standalone {
    pub proxy: ProxySettings,
    pub cache: CacheSettings,
    /// Directories already resolved against the document's directory.
    pub offload: Vec<OffloadRule>,
    pub tracing: TracingSettings,
}

/// Offload directories, relative ones taken from `base` (the spec's directory).
pub fn offload_rules(rules: &[OffloadRule], base: &Path) -> Vec<OffloadRule> {
    rules.iter().map(|r| OffloadRule { dir: base.join(&r.dir), ..r.clone() }).collect()
}

impl Standalone {
    /// The document's sections (`spec` with its directory), or the defaults on 0.0.0.0:8080,
    /// overridden by `flags`. The error names the flag and what it takes.
    pub fn new(spec: Option<(Spec, &Path)>, flags: &Flags) -> Result<Self, String> {
        let any: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        let mut s = match spec {
            Some((spec, base)) => {
                Standalone { offload: offload_rules(&spec.offload, base), proxy: spec.proxy, cache: spec.cache, tracing: spec.tracing }
            }
            None => Standalone {
                proxy: ProxySettings { listen: vec![SocketAddr::from((any, 8080))], ..Default::default() },
                cache: CacheSettings::default(),
                offload: Vec::new(),
                tracing: TracingSettings::default(),
            },
        };
        if let Some(url) = &flags.otlp_endpoint {
            let endpoint = parse_otlp_endpoint(url).map_err(|(message, hint)| format!("--otlp-endpoint: {message} ({hint})"))?;
            s.tracing.otlp = Some(OtlpSettings { endpoint, headers: Vec::new(), timeout: Duration::from_secs(10) });
        }
        s.cache.enabled |= flags.cache;
        s.cache.max_bytes = flags.cache_max_bytes.unwrap_or(s.cache.max_bytes);
        s.cache.max_object_bytes = flags.cache_max_object_bytes.unwrap_or(s.cache.max_object_bytes);
        if s.cache.max_object_bytes > s.cache.max_bytes || s.cache.max_bytes < 1024 {
            return Err("the cache needs --cache-max-bytes of at least 1024 and not below --cache-max-object-bytes".into());
        }
        for (list, fallthrough) in [(&flags.offload, true), (&flags.offload_only, false)] {
            s.offload.extend(list.iter().map(|(prefix, dir)| OffloadRule { prefix: prefix.clone(), dir: dir.clone(), fallthrough }));
        }
        s.proxy.compression &= !flags.no_compression;
        if !flags.listen.is_empty() {
            s.proxy.listen = flags
                .listen
                .iter()
                .map(|l| parse_listen(l, any).ok_or_else(|| format!("--listen {l}: not an address like 0.0.0.0:8080")))
                .collect::<Result<_, _>>()?;
            s.proxy.listen_explicit = true;
        }
        s.proxy.access_log = match flags.access_log.as_deref() {
            None => s.proxy.access_log,
            Some("common") => AccessLog::Common,
            Some("json") => AccessLog::Json,
            Some("off") => AccessLog::Off,
            Some(other) => return Err(format!("--access-log {other}: one of common, json, off")),
        };
        s.proxy.threads = flags.threads.or(s.proxy.threads);
        s.proxy.own_http1 = match flags.engine.as_deref() {
            None => s.proxy.own_http1,
            Some("hyper") => false,
            Some("sitecar") => true,
            Some(other) => return Err(format!("--engine {other}: hyper or sitecar")),
        };
        if let Some((which, port)) = flags.http2_to_main {
            if port == 0 {
                return Err("--grpc-port/--http2-port: 0 is not a port".into());
            }
            (s.proxy.http2_to_main, s.proxy.http2_port) = (which, Some(port));
        }
        if let Some((listen, cert, key)) = &flags.tls {
            let listen = parse_listen(listen, any).ok_or_else(|| format!("--tls-listen {listen}: not an address like 0.0.0.0:8443"))?;
            s.proxy.tls = Some(TlsSettings { listen, certificates: vec![CertificatePair { cert: cert.clone(), key: key.clone() }] });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_defaults() {
        let flags = Flags {
            listen: vec!["127.0.0.1:9000".into()],
            cache: true,
            cache_max_object_bytes: Some(4096),
            offload_only: vec![("/static".into(), "public".into())],
            no_compression: true,
            access_log: Some("json".into()),
            http2_to_main: Some((crate::Http2ToMain::GrpcOnly, 50051)),
            ..Default::default()
        };
        let s = Standalone::new(None, &flags).map_err(|e| e.to_string());
        let Ok(s) = s else { panic!("{s:?}") };
        assert_eq!(s.proxy.listen, vec![SocketAddr::from(([127, 0, 0, 1], 9000))]);
        assert!(s.proxy.listen_explicit && !s.proxy.compression);
        assert_eq!(s.proxy.access_log, AccessLog::Json);
        assert!(s.cache.enabled);
        assert_eq!(s.cache.max_object_bytes, 4096);
        assert_eq!(s.offload.len(), 1);
        assert!(!s.offload[0].fallthrough);
        assert_eq!((s.proxy.http2_to_main, s.proxy.http2_port), (crate::Http2ToMain::GrpcOnly, Some(50051)));
    }

    #[test]
    fn a_bad_flag_is_named() {
        for (flags, named) in [
            (Flags { listen: vec!["nowhere".into()], ..Default::default() }, "--listen nowhere"),
            (Flags { access_log: Some("xml".into()), ..Default::default() }, "--access-log xml"),
            (Flags { cache: true, cache_max_bytes: Some(10), ..Default::default() }, "--cache-max-bytes"),
            (Flags { tls: Some(("x".into(), "c".into(), "k".into())), ..Default::default() }, "--tls-listen x"),
            (Flags { otlp_endpoint: Some("ftp://x".into()), ..Default::default() }, "--otlp-endpoint"),
            (Flags { engine: Some("nginx".into()), ..Default::default() }, "--engine nginx"),
        ] {
            match Standalone::new(None, &flags) {
                Err(e) => assert!(e.contains(named), "{e}"),
                Ok(_) => panic!("{named} accepted"),
            }
        }
    }
}
