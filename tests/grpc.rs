//! `sitecar proxy --grpc-port`: a real grpcio server behind the standalone binary, a real grpcio
//! client in front of it (the scripts of proxy/tests/support).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, wait_until, Stack};

fn python() -> String {
    std::env::var("SITECAR_TEST_PYTHON").ok().filter(|p| std::path::Path::new(p).exists()).unwrap_or_else(|| "python3".into())
}

fn script(name: &str) -> String {
    format!("{}/proxy/tests/support/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn grpc_through_sitecar_proxy_with_grpc_port() {
    let (grpc, front) = (free_port(), free_port());
    let mut server =
        Stack(Command::new(python()).arg(script("grpc_main.py")).arg(grpc.to_string()).stdout(Stdio::piped()).spawn().unwrap());
    std::io::Read::read_exact(server.0.stdout.as_mut().unwrap(), &mut [0u8; 6]).unwrap();
    // The app's HTTP/1.1 port is not listening: only gRPC is asked for here.
    let _proxy = Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .args(["proxy", "--to", &format!("127.0.0.1:{}", free_port()), "--listen", &format!("127.0.0.1:{front}")])
            .args(["--grpc-port", &grpc.to_string(), "--access-log", "off"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the proxy", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", front)).is_ok());
    let out = Command::new(python()).arg(script("grpc_client.py")).arg(format!("127.0.0.1:{front}")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["unary"], "echo:hello", "{got}");
    assert_eq!(got["chat"], serde_json::json!(["re:a", "re:b", "re:c"]), "{got}");
    assert_eq!(got["missing"][0], "NOT_FOUND", "{got}");
}
