//! Tiny images on the real Docker engine, built in the test from Debian's `busybox-static` (no
//! registry, nothing pulled), and a guard that removes every container of a test's stack.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `docker ARGS`, returning stdout; panics with stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).stdin(Stdio::null()).output().expect("docker on PATH");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image made from a root filesystem of busybox (every applet a symlink), `/www`, `/srv` and
/// `/tmp`, whose command stays up (`sleep`), so it also serves as the stack's pause image.
/// Removed when dropped.
pub struct Image(pub String);

impl Image {
    pub fn busybox(tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        for d in ["bin", "www", "srv", "tmp", "data", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static installed (/bin/busybox)");
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
            }
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let tar = dir.path().join("rootfs.tar");
        let ok = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
        assert!(ok.success());
        let name = format!("sitecar-e2e/busybox:{tag}");
        docker(&["import", "--change", "ENV PATH=/bin", "--change", r#"CMD ["/bin/sleep", "2147483647"]"#, tar.to_str().unwrap(), &name]);
        Self(name)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Containers of the stack named `site` (by sitecar's label), running or not.
pub fn stack_containers(site: &str) -> Vec<String> {
    docker(&["ps", "-a", "--filter", &format!("label=sitecar.stack={site}"), "--format", "{{.Names}}"]).lines().map(str::to_owned).collect()
}

/// Removes every container of a stack when dropped (a test that fails half-way leaves nothing).
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let names = stack_containers(&self.0);
        if !names.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&names).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// A name unique to this test process, for images and stacks.
pub fn unique(what: &str) -> String {
    format!("{what}{}", std::process::id())
}

/// Every line of the App Service-style log files under `root/home/LogFiles` whose name ends
/// with `suffix` (`_default_docker.log` for containers, `_docker.log` for sitecar's events).
pub fn log_files(root: &Path, suffix: &str) -> String {
    let mut all = String::new();
    if let Ok(entries) = std::fs::read_dir(root.join("home/LogFiles")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let container_log = name.ends_with("_default_docker.log");
            if name.ends_with(suffix) && (suffix == "_default_docker.log" || !container_log) {
                all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    all
}
