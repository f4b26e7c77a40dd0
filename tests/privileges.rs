//! Without the privilege to bind port 80: sitecar run as `nobody` (setpriv), in a network namespace
//! of its own (unshare) so that the default ports 80 and 8080 are free whatever else runs here.
//! The default listeners say once that 80 is skipped and serve on 8080; an explicit port 80 is an
//! error naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::*;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `sitecar up SPEC` as uid/gid 65534 in a new network namespace with loopback up.
fn up_unprivileged(spec: &Path) -> Stack {
    let probe = Command::new("unshare").args(["--net", "true"]).status();
    if !matches!(probe, Ok(s) if s.success()) {
        panic!("unshare --net is needed for this test (util-linux, root): {probe:?}");
    }
    let script = format!(
        "ip link set lo up && exec setpriv --reuid=65534 --regid=65534 --clear-groups {} up {}",
        env!("CARGO_BIN_EXE_sitecar"),
        spec.display()
    );
    // unshare and sh exec in place: the child's pid is sitecar's.
    Stack(
        Command::new("unshare")
            .args(["--net", "--", "sh", "-c", &script])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// A spec with main only, in a directory `nobody` may write; `listen` is the proxy section's.
fn spec(dir: &Path, listen: &str) -> std::path::PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let spec = dir.join("spec.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"sitecontainers": [{{"name": "web", "properties": {{"image": "t/web", "isMain": true, "targetPort": "3000",
                  "startUpCommand": "exec python3 {app} web 3000"}}}}]{listen},
                "local": {{"storageRoot": "{root}"}}}}"#,
            app = app_py(),
            root = dir.join("storage").display()
        ),
    )
    .unwrap();
    spec
}

/// (HTTP status of GET `url`, or 0) from inside `pid`'s network namespace.
fn curl_in(pid: u32, url: &str) -> u16 {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
fn without_privileges_port_80_is_skipped_once_and_8080_serves() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "");
    let mut sitecar = up_unprivileged(&spec);
    let pid = sitecar.id();
    wait_until("the front door on 8080", Duration::from_secs(20), || curl_in(pid, "http://127.0.0.1:8080/") == 200);
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(uid.lines().any(|l| l.starts_with("Uid:") && l.contains("65534")), "runs unprivileged: {uid}");
    assert_eq!(curl_in(pid, "http://127.0.0.1:80/"), 0, "nothing listens on 80");
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = sitecar.wait().unwrap();
    let mut err = String::new();
    sitecar.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(err.matches("cannot listen on 0.0.0.0:80 without privileges").count(), 1, "said once: {err}");
    assert!(status.success(), "{status:?} {err}");
}

#[test]
fn an_explicit_port_80_without_privileges_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), r#", "proxy": {"listen": ["0.0.0.0:80"]}"#);
    let mut sitecar = up_unprivileged(&spec);
    let status = sitecar.wait().unwrap();
    let mut err = String::new();
    sitecar.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("cannot listen on 0.0.0.0:80") && err.contains("nothing was started"), "{err}");
    assert!(!dir.path().join("storage").exists(), "nothing was prepared either");
}
