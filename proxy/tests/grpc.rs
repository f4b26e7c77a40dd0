//! HTTP/2 to main, as App Service does it for gRPC (`siteConfig.http20ProxyFlag`, the
//! `HTTP20_ONLY_PORT` app setting): a real grpcio server behind the front door, a real grpcio
//! client in front of it: unary with metadata and trailers, server streaming, bidirectional
//! streaming, a deadline, an error status. With the flag at 2 (gRPC only), other HTTP/2 requests
//! still reach main's HTTP/1.1 port.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use support::*;

fn python() -> String {
    std::env::var("SITECAR_TEST_PYTHON").ok().filter(|p| std::path::Path::new(p).exists()).unwrap_or_else(|| "python3".into())
}

/// The grpcio server on `port`, stopped when dropped.
struct GrpcMain(std::process::Child);

impl GrpcMain {
    fn start(port: u16) -> Self {
        let script = format!("{}/tests/support/grpc_main.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(python()).arg(script).arg(port.to_string()).stdout(Stdio::piped()).spawn().unwrap();
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut ready)
            .expect("grpc_main.py did not start (is grpcio installed? make test-prereqs)");
        GrpcMain(child)
    }
}

impl Drop for GrpcMain {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What grpc_client.py got through `front`.
async fn call(front: SocketAddr) -> serde_json::Value {
    let script = format!("{}/tests/support/grpc_client.py", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python()).arg(script).arg(front.to_string()).output().await.unwrap();
    assert!(out.status.success(), "grpc_client.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The front door in front of an HTTP/1.1 origin on main's port and, per the spec's flag, the
/// grpcio server on `HTTP20_ONLY_PORT`.
async fn front_for(flag: u8, grpc_port: u16, main: SocketAddr) -> Front {
    let spec = sitecar_config::load_str(
        &format!(
            r#"{{"sitecontainers": [{{"name": "web", "properties": {{"image": "w", "isMain": true, "targetPort": "{}", "startUpCommand": "w"}}}}],
                "appSettings": {{"HTTP20_ONLY_PORT": "{grpc_port}"}},
                "proxy": {{"http20ProxyFlag": {flag}}}}}"#,
            main.port()
        ),
        &sitecar_config::LoadOptions::default(),
    )
    .unwrap();
    Front::start_with_proxy(main, config(), limits(), &spec.proxy).await
}

#[tokio::test]
async fn grpc_reaches_main_over_http2_with_streams_trailers_deadlines_and_status() {
    let grpc_port = free_port();
    let _grpc = GrpcMain::start(grpc_port);
    let origin = Origin::start();
    let front = front_for(2, grpc_port, origin.addr).await;
    let got = call(front.addr).await;
    assert_eq!(got["unary"], "echo:hello", "{got}");
    assert_eq!(got["trailing"]["x-main"], "grpc", "main's trailers reach the client: {got}");
    assert_eq!(got["initial"]["x-saw-forwarded-for"], "127.0.0.1", "forwarding headers reach main: {got}");
    assert_eq!(got["count"], serde_json::json!(["0", "1", "2", "3", "4"]), "{got}");
    assert_eq!(got["chat"], serde_json::json!(["re:a", "re:b", "re:c"]), "{got}");
    assert_eq!(got["slow"], "DEADLINE_EXCEEDED", "{got}");
    assert_eq!(got["missing"], serde_json::json!(["NOT_FOUND", "no such thing"]), "grpc-status and grpc-message intact: {got}");
    // gRPC only: an HTTP/2 request that is not gRPC still goes to main's HTTP/1.1 port.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!("http://{}/headers", front.addr))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "answered by the HTTP/1.1 origin");
}

#[tokio::test]
async fn without_the_flag_grpc_goes_to_main_as_http1_and_fails() {
    // Flag 0 (App Service's default): main's HTTP/1.1 port gets the request, which is no gRPC.
    let grpc_port = free_port();
    let _grpc = GrpcMain::start(grpc_port);
    let origin = Origin::start();
    let front = front_for(0, grpc_port, origin.addr).await;
    let script = format!("{}/tests/support/grpc_client.py", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python()).arg(script).arg(front.addr.to_string()).output().await.unwrap();
    assert!(!out.status.success(), "gRPC must not work without http20ProxyFlag");
    // Flag 1: every HTTP/2 request goes to the HTTP/2 port.
    let front = front_for(1, grpc_port, SocketAddr::from((Ipv4Addr::LOCALHOST, origin.addr.port()))).await;
    assert_eq!(call(front.addr).await["unary"], "echo:hello");
}
