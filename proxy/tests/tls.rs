//! TLS at the front door: SNI across certificates, ALPN h2 and http/1.1, reload on file change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sitecar_config::CertificatePair;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for `name`, written to `dir/<file>.crt` and `.key`.
fn make_cert(dir: &Path, file: &str, name: &str) -> CertificatePair {
    let (cert, key) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
    let ok = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl could not make a certificate");
    CertificatePair { cert, key }
}

fn der(pair: &CertificatePair) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(&pair.cert).unwrap().to_vec()
}

/// Accepts any certificate: the tests check which one was presented instead.
#[derive(Debug)]
struct Any(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Any {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects with SNI `name` and ALPN `alpn`; returns the stream, the presented certificate and the
/// negotiated protocol.
async fn connect(
    addr: std::net::SocketAddr,
    name: &str,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Vec<u8>, Option<Vec<u8>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from(name.to_string()).unwrap(), tcp).await.unwrap();
    let (_, conn) = stream.get_ref();
    let cert = conn.peer_certificates().unwrap()[0].to_vec();
    let proto = conn.alpn_protocol().map(|p| p.to_vec());
    (stream, cert, proto)
}

#[tokio::test]
async fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (make_cert(dir.path(), "a", "a.test"), make_cert(dir.path(), "b", "b.test"));
    let origin = Origin::start();
    let certs = sitecar_proxy::tls::Certificates::load(&[a.clone(), b.clone()]).unwrap();
    let front = Front::start_tls(origin.addr, certs).await;
    assert_eq!(connect(front.addr, "b.test", &[b"http/1.1"]).await.1, der(&b));
    assert_eq!(connect(front.addr, "a.test", &[b"http/1.1"]).await.1, der(&a));
    assert_eq!(connect(front.addr, "other.test", &[b"http/1.1"]).await.1, der(&a));
}

#[tokio::test]
async fn http2_over_tls_and_https_forwarding_headers() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(dir.path(), "a", "a.test");
    let origin = Origin::start();
    let front = Front::start_tls(origin.addr, sitecar_proxy::tls::Certificates::load(&[a]).unwrap()).await;

    let (stream, _, proto) = connect(front.addr, "a.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(http::Request::get("https://a.test/headers").body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let h = seen(std::str::from_utf8(&body).unwrap());
    assert_eq!(header(&h, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&h, "x-appservice-proto"), Some("https"));
    assert_eq!(header(&h, "host"), Some("a.test"));
    assert_eq!(header(&h, "via"), Some("2 sitecar"));

    let (mut stream, _, proto) = connect(front.addr, "a.test", &[b"http/1.1"]).await;
    assert_eq!(proto.as_deref(), Some(&b"http/1.1"[..]));
    stream.write_all(b"GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"https\""), "{out}");
}

#[tokio::test]
async fn changed_certificate_files_are_reloaded_without_closing_connections() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(dir.path(), "a", "a.test");
    let old = der(&a);
    let origin = Origin::start();
    let front = Front::start_tls(origin.addr, sitecar_proxy::tls::Certificates::load(std::slice::from_ref(&a)).unwrap()).await;
    let (mut kept, presented, _) = connect(front.addr, "a.test", &[b"http/1.1"]).await;
    assert_eq!(presented, old);

    // Renew: same files, new certificate.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let renewed = make_cert(dir.path(), "a", "a.test");
    let new = der(&renewed);
    assert_ne!(new, old);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if connect(front.addr, "a.test", &[b"http/1.1"]).await.1 == new {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the renewed certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the renewal still works.
    kept.write_all(b"GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    let _ = kept.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn a_bad_certificate_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("x.key"), "not a key").unwrap();
    let err = sitecar_proxy::tls::Certificates::load(&[CertificatePair { cert: dir.path().join("x.crt"), key: dir.path().join("x.key") }])
        .unwrap_err();
    assert!(err.to_string().contains("x.crt"), "{err}");
}

#[tokio::test]
async fn an_h2c_upgrade_over_tls_is_never_passed_to_main() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(dir.path(), "a", "a.test");
    let origin = Origin::start();
    let front = Front::start_tls(origin.addr, sitecar_proxy::tls::Certificates::load(&[a]).unwrap()).await;
    let (mut stream, _, _) = connect(front.addr, "a.test", &[b"http/1.1"]).await;
    stream
        .write_all(b"GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Read to the end whatever way it ends (this close comes without a TLS close_notify).
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let out = String::from_utf8_lossy(&raw).into_owned();
    assert!(out.starts_with("HTTP/1.1 200"), "answered as HTTP/1.1, no switch: {out}");
    let body = out.split_once("\r\n\r\n").unwrap().1;
    let h = seen(body);
    assert_eq!(header(&h, "upgrade"), None);
    assert_eq!(header(&h, "http2-settings"), None);
}
