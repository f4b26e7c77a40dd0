//! TLS for the front door: rustls with ALPN h2/http1.1, SNI across several certificates, and the
//! certificates reloaded when their files change (new handshakes get the new ones; open
//! connections are not touched).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sitecar_config::CertificatePair;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn load(pair: &CertificatePair) -> Result<CertifiedKey, TlsError> {
    let file_err = |path: &std::path::Path, message: String| TlsError::File { path: path.display().to_string(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|e| file_err(&pair.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&pair.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(&pair.cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|e| file_err(&pair.key, e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    Ok(CertifiedKey::from_der(certs, key, &provider)?)
}

/// Whether a certificate is valid for `name` (its subjectAltName DNS entries, wildcards included).
fn covers(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    let Some(cert) = key.cert.first() else { return false };
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee.verify_is_valid_for_subject_name(name).is_ok(),
        Err(_) => false,
    }
}

/// Picks a certificate by SNI; the first one answers clients without SNI or with unknown names.
#[derive(Debug)]
pub struct Certificates {
    pairs: Vec<CertificatePair>,
    keys: RwLock<Vec<Arc<CertifiedKey>>>,
    /// Modification times the loaded keys came from.
    stamps: RwLock<Vec<Option<SystemTime>>>,
}

fn stamps(pairs: &[CertificatePair]) -> Vec<Option<SystemTime>> {
    pairs
        .iter()
        .map(|p| {
            let m = |f: &std::path::Path| std::fs::metadata(f).and_then(|m| m.modified()).ok();
            m(&p.cert).max(m(&p.key))
        })
        .collect()
}

impl Certificates {
    pub fn load(pairs: &[CertificatePair]) -> Result<Arc<Self>, TlsError> {
        let keys = pairs.iter().map(|p| load(p).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self { pairs: pairs.to_vec(), keys: RwLock::new(keys), stamps: RwLock::new(stamps(pairs)) }))
    }

    /// Reloads when a file changed; a pair that fails to load keeps the old certificate.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.pairs);
        let old = self.stamps.read().map(|s| s.clone()).unwrap_or_default();
        if now == old {
            return false;
        }
        let mut changed = false;
        let mut keys = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        for (i, pair) in self.pairs.iter().enumerate() {
            if now.get(i) == old.get(i) {
                continue;
            }
            match load(pair) {
                Ok(k) => {
                    keys[i] = Arc::new(k);
                    changed = true;
                    tracing::info!(cert = %pair.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; keeping the old one"),
            }
        }
        if let Ok(mut k) = self.keys.write() {
            *k = keys;
        }
        if let Ok(mut s) = self.stamps.write() {
            *s = now;
        }
        changed
    }

    /// Checks the files every `every` until `stop`.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => { self.reload_if_changed(); }
            }
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let keys = self.keys.read().ok()?;
        if let Some(name) = hello.server_name().and_then(|n| ServerName::try_from(n).ok()) {
            if let Some(k) = keys.iter().find(|k| covers(k, &name)) {
                return Some(k.clone());
            }
        }
        keys.first().cloned()
    }
}

/// A rustls server config over `certs`, offering h2 and http/1.1.
pub fn server_config(certs: Arc<Certificates>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
