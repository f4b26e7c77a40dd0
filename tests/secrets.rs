//! Secrets stay secret: app setting values, connection strings and registry passwords never show
//! in sitecar's output, its log files, the admin API (`/status`, `/logs`) or error messages, while
//! the containers still receive them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, http, wait_until};

const SETTING: &str = "setting-value-7f3a9c";
const CONNECTION: &str = "Password=conn-secret-51d2";
const REGISTRY: &str = "registry-pass-88e1";

#[test]
fn secrets_never_show_outside_the_containers() {
    let dir = tempfile::tempdir().unwrap();
    let (front, admin, main) = (free_port(), free_port(), free_port());
    let app = support::app_py();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"sitecontainers": [{{"name": "web", "properties": {{"image": "t/web", "isMain": true, "targetPort": "{main}",
                 "startUpCommand": "exec python3 {app} web {main}", "authType": "UserCredentials", "userName": "u",
                 "passwordSecret": "{REGISTRY}"}}}}],
               "appSettings": {{"API_TOKEN": "{SETTING}"}},
               "connectionStrings": {{"Db": {{"value": "{CONNECTION}", "type": "SQLAzure"}}}},
               "proxy": {{"listen": ["127.0.0.1:{front}"]}}, "admin": {{"listen": "127.0.0.1:{admin}"}},
               "local": {{"gracePeriodSeconds": 2}}}}"#
        ),
    )
    .unwrap();
    let sitecar = support::Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .arg("up")
            .arg(&spec)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until("readyz", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok() && http(admin, "GET", "/readyz").0 == 200
    });
    // The container does get them.
    let env = http(front, "GET", "/env").1;
    assert!(env.contains(SETTING) && env.contains(CONNECTION), "{env}");
    // A failing request (nothing listens for the error path here: a 404 from main is fine too).
    http(front, "GET", "/robots933456.txt");
    let mut seen = vec![http(admin, "GET", "/status").1, http(admin, "GET", "/logs/web").1, http(admin, "GET", "/metrics").1];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sitecar.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = sitecar.wait_with_output().unwrap();
    seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
    seen.push(String::from_utf8_lossy(&out.stderr).into_owned());
    // Every log file sitecar wrote.
    for entry in walk(&dir.path().join(".sitecar")) {
        seen.push(std::fs::read_to_string(entry).unwrap_or_default());
    }
    // Validation errors of a spec with secrets in it.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        format!(
            r#"{{"sitecontainers": [{{"name": "web", "properties": {{"image": "t/web", "isMain": true, "targetPort": "x",
                 "authType": "UserCredentials", "passwordSecret": "{REGISTRY}"}}}}],
               "appSettings": {{"API_TOKEN": "{SETTING}", "BAD": 5}},
               "connectionStrings": {{"Db": {{"value": "{CONNECTION}", "type": "Nope"}}}}}}"#
        ),
    )
    .unwrap();
    for args in [&["validate"][..], &["validate", "--json"][..], &["export", "kubernetes"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(args).arg(&bad).output().unwrap();
        assert!(!out.status.success());
        seen.push(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr));
    }
    assert!(seen.iter().map(String::len).sum::<usize>() > 1000, "there was output to search");
    for text in &seen {
        for secret in [SETTING, CONNECTION, REGISTRY] {
            assert!(!text.contains(secret), "{secret} leaked in: {text}");
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
