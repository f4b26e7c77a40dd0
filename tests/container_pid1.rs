//! sitecar as PID 1 of a real container on the Docker engine: an image made here (busybox-static,
//! the sitecar binary and the C libraries it links), main and a sidecar as processes inside,
//! `docker stop` letting a request in flight finish, stopping main then the sidecar, orphans
//! reaped, and main's exit status becoming the container's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::docker::*;
use support::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SPEC: &str = r#"{"sitecontainers": [
  {"name": "side", "properties": {"image": "local/side", "isMain": false, "targetPort": "7000",
     "startUpCommand": "echo side up; exec httpd -f -p 7000 -h /site/side"}},
  {"name": "web", "properties": {"image": "local/web", "isMain": true, "targetPort": "8000",
     "startUpCommand": "trap 'echo web got TERM; exit 7' TERM; (sleep 1 &); httpd -f -p 8000 -h /site/www & wait"}}
 ],
 "proxy": {"listen": ["0.0.0.0:8080"]},
 "local": {"runtime": "process", "gracePeriodSeconds": 5, "storageRoot": "/tmp/storage"}}"#;

/// Copies `file` into `root` at the same path.
fn copy_in(root: &Path, file: &Path) {
    let to = root.join(file.strip_prefix("/").unwrap());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(file, &to).unwrap();
}

/// An image whose entrypoint is `sitecar up /site/spec.json`, as examples/container/Dockerfile
/// builds one, from what this machine has: busybox, the sitecar binary and its shared libraries.
fn site_image(tag: &str) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    for d in ["bin", "tmp", "site/www/cgi-bin", "site/side", "usr/local/bin", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "httpd", "sleep", "echo", "cat", "ps", "wget"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_sitecar"));
    std::fs::copy(bin, root.join("usr/local/bin/sitecar")).unwrap();
    // The C libraries it links, and their loader, from `ldd`.
    let ldd = Command::new("ldd").arg(bin).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split("=>").last().unwrap().split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            copy_in(&root, Path::new(path));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("site/spec.json"), SPEC).unwrap();
    std::fs::write(root.join("site/www/index.html"), "hello from web\n").unwrap();
    std::fs::write(root.join("site/side/index.html"), "hello from side\n").unwrap();
    let slow = root.join("site/www/cgi-bin/slow");
    std::fs::write(&slow, "#!/bin/sh\nsleep 2\necho 'Content-Type: text/plain'\necho\necho slow done\n").unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tar = dir.path().join("rootfs.tar");
    assert!(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    let name = format!("sitecar-e2e/site:{tag}");
    docker(&[
        "import",
        "--change",
        "ENV PATH=/usr/local/bin:/bin",
        "--change",
        "WORKDIR /site",
        "--change",
        "EXPOSE 8080",
        "--change",
        r#"ENTRYPOINT ["/usr/local/bin/sitecar", "up", "/site/spec.json"]"#,
        tar.to_str().unwrap(),
        &name,
    ]);
    Image(name)
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// States of every process in the container, from /proc (as `ps` would show them).
fn states(container: &str) -> Vec<(u32, char, String)> {
    let out = docker(&["exec", container, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null; echo"]);
    out.lines()
        .filter_map(|l| {
            let pid = l.split(' ').next()?.parse().ok()?;
            let comm = l[l.find('(')? + 1..l.rfind(')')?].to_owned();
            let state = l[l.rfind(')')? + 2..].chars().next()?;
            Some((pid, state, comm))
        })
        .collect()
}

#[test]
fn docker_stop_of_sitecar_as_pid_1_finishes_requests_stops_in_order_and_passes_mains_status() {
    let image = site_image(&unique("pid1"));
    let name = unique("sitecar-pid1-");
    let _container = Container(name.clone());
    let port = free_port();
    docker(&["run", "-d", "--name", &name, "-p", &format!("127.0.0.1:{port}:8080"), &image.0]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::panic::catch_unwind(|| http(port, "GET", "/").0 == 200).unwrap_or(false) {
        assert!(Instant::now() < deadline, "the front door never answered:\n{}", docker(&["logs", &name]));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http(port, "GET", "/").1, "hello from web\n");
    let ps = states(&name);
    assert!(ps.iter().any(|(pid, _, comm)| *pid == 1 && comm == "sitecar"), "sitecar is PID 1: {ps:?}");

    // The orphan main left behind (`sleep 1`, adopted by PID 1) is reaped once it exits.
    std::thread::sleep(Duration::from_millis(1500));
    let zombies: Vec<_> = states(&name).into_iter().filter(|p| p.1 == 'Z').collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");

    // A request in flight when `docker stop` comes is answered.
    let slow = std::thread::spawn(move || http(port, "GET", "/cgi-bin/slow"));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    docker(&["stop", "-t", "30", &name]);
    assert!(stopped.elapsed() < Duration::from_secs(20), "stopped in order, not by docker's SIGKILL: {:?}", stopped.elapsed());
    let (code, body) = slow.join().unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("slow done"), "{body}");

    // main's status is the container's; main stopped before its sidecar.
    assert_eq!(docker(&["inspect", "--format", "{{.State.ExitCode}}", &name]).trim(), "7");
    let logs = docker(&["logs", &name]);
    let at = |what: &str| logs.find(what).unwrap_or_else(|| panic!("no {what:?} in:\n{logs}"));
    assert!(at("web got TERM") < at("side: stopping"), "{logs}");
    assert!(at("web: stopped") < at("side: stopping"), "{logs}");
    assert!(logs.contains("side: stopped"), "{logs}");
}
