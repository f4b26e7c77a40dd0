//! The OCI runtime on the real Docker engine, with images built here from busybox-static:
//! a stack in one network namespace, probes from inside it, crashes seen at once, an orderly
//! stop that leaves nothing, leftovers of a killed sitecar removed, and no engine said plainly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::docker::*;
use support::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Site {
    dir: tempfile::TempDir,
    spec: PathBuf,
    front: u16,
    admin: u16,
    name: String,
}

/// A sitecar document for the OCI runtime with `containers` (JSON entries of `sitecontainers`).
fn site(image: &Image, containers: &str, app_settings: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let (front, admin) = (free_port(), free_port());
    let name = unique("e2e");
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"sitecontainers": [{containers}], "appSettings": {{{app_settings}}},
              "proxy": {{"listen": ["127.0.0.1:{front}"], "holdSeconds": 20}}, "admin": {{"listen": "127.0.0.1:{admin}"}},
              "local": {{"runtime": "oci", "engine": "docker", "siteName": "{name}", "pauseImage": "{image}", "gracePeriodSeconds": 2,
                        "restart": {{"initialBackoffSeconds": 0.5}}}}}}"#,
            image = image.0
        ),
    )
    .unwrap();
    Site { dir, spec, front, admin, name }
}

fn up(spec: &Path, env: &[(&str, &str)]) -> Stack {
    Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .arg("up")
            .arg(spec)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Waits until main is ready; otherwise fails with what sitecar printed.
fn ready(stack: &mut Stack, admin: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while !(std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok() && http(admin, "GET", "/readyz").0 == 200) {
        if Instant::now() > deadline || stack.try_wait().unwrap().is_some() {
            let _ = stack.kill();
            let out = std::mem::replace(&mut stack.0, Command::new("true").spawn().unwrap()).wait_with_output().unwrap();
            panic!("main not ready:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET with a read timeout past the front door's hold (20 s here): a held request waits for main.
fn patient_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(25))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
}

fn status(admin: u16) -> serde_json::Value {
    serde_json::from_str(&http(admin, "GET", "/status").1).unwrap()
}

fn container<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn stop(mut stack: Stack) -> (i32, String) {
    Command::new("kill").args(["-TERM", &stack.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "sitecar did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = stack.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

const CACHE: &str = r#"{"name": "cache", "properties": {"image": "IMAGE", "isMain": false, "targetPort": "6000",
    "startUpCommand": "sh -c 'echo cache says $GREETING; touch /data/x 2>/dev/null || echo data is read-only; echo \"$GREETING from the sidecar\" > /www/index.html; exec httpd -f -p 6000 -h /www'",
    "inheritAppSettingsAndConnectionStrings": false,
    "environmentVariables": [{"name": "GREETING", "value": "GREETING_SETTING"}],
    "volumeMounts": [{"volumeSubPath": "/site", "containerMountPath": "/data", "readOnly": true}]}}"#;

const WEB: &str = r#"{"name": "web", "properties": {"image": "IMAGE", "isMain": true, "targetPort": "8080",
    "startUpCommand": "sh -c 'echo web says hello; exec httpd -f -p 8080 -h /srv'",
    "environmentVariables": [{"name": "DB_URL", "value": "DATABASE_URL"}],
    "volumeMounts": [{"volumeSubPath": "/site", "containerMountPath": "/srv"}]}}"#;

const SETTINGS: &str = r#""DATABASE_URL": "postgres://app:s3cret-pw@db/app", "GREETING_SETTING": "hi-there""#;

/// main's CGI page: what main sees of its environment, its volume and its sidecar.
fn write_cgi(dir: &Path) {
    let site = dir.join(".sitecar/volumes/site");
    std::fs::create_dir_all(site.join("cgi-bin")).unwrap();
    std::fs::write(site.join("data.txt"), "hello-from-volume\n").unwrap();
    let script = site.join("cgi-bin/env");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"db=$DB_URL\"\necho \"setting=$APPSETTING_GREETING_SETTING\"\n\
         echo \"port=$PORT\"\necho \"sidecar=$(wget -qO- http://localhost:6000/)\"\necho \"file=$(cat /srv/data.txt)\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn started_at(container: &str) -> String {
    docker(&["inspect", "--format", "{{.State.StartedAt}}", container]).trim().to_owned()
}

#[test]
fn docker_runs_a_real_stack_in_one_namespace_and_survives_kills() {
    let image = Image::busybox(&unique("stack"));
    let s = site(&image, &format!("{}, {}", CACHE.replace("IMAGE", &image.0), WEB.replace("IMAGE", &image.0)), SETTINGS);
    let _cleanup = Cleanup(s.name.clone());
    write_cgi(s.dir.path());
    let mut stack = up(&s.spec, &[]);
    ready(&mut stack, s.admin, Duration::from_secs(60));

    // Through the front door to main, which reaches its sidecar on localhost.
    let (code, body) = http(s.front, "GET", "/cgi-bin/env");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("db=postgres://app:s3cret-pw@db/app"), "an environmentVariables entry resolved through its app setting: {body}");
    assert!(body.contains("setting=hi-there"), "app settings arrive as APPSETTING_*: {body}");
    assert!(body.contains("port=8080"), "{body}");
    assert!(body.contains("sidecar=hi-there from the sidecar"), "main reaches the sidecar on localhost:6000: {body}");
    assert!(body.contains("file=hello-from-volume"), "the volume is mounted: {body}");

    // The sidecar that opted out of inheriting got its own entry and no other setting.
    let cache_env = docker(&["exec", &format!("{}-cache", s.name), "env"]);
    assert!(cache_env.contains("GREETING=hi-there"), "{cache_env}");
    assert!(!cache_env.contains("s3cret-pw"), "a secret reached a sidecar that opted out: {cache_env}");

    // No value on any command line on this machine (the engine reads them from its environment).
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(!String::from_utf8_lossy(&cmdline).contains("s3cret-pw"), "a secret on a command line: {}", entry.path().display());
        }
    }

    // Sidecar first: main's container started after the sidecar's.
    assert!(started_at(&format!("{}-cache", s.name)) < started_at(&format!("{}-web", s.name)));
    let st = status(s.admin);
    assert_eq!(container(&st, "cache")["phase"], "running", "{st:#}");

    // `docker kill` of main: seen at once, restarted, and a request sent meanwhile is held, not lost.
    let killed = Instant::now();
    docker(&["kill", &format!("{}-web", s.name)]);
    let front = s.front;
    let held = std::thread::spawn(move || patient_get(front, "/cgi-bin/env"));
    // Seen when the engine's attached client returns (at once), and the container is removed
    // before its next run: well under a second idle, a few on a loaded 2-core machine.
    wait_until("main's exit noticed", Duration::from_secs(5), || container(&status(s.admin), "web")["restarts"] == 1);
    assert!(killed.elapsed() < Duration::from_secs(5), "noticed after {:?}", killed.elapsed());
    let (code, body) = held.join().unwrap();
    assert_eq!(code, 200, "a request during main's restart was held until it was back: {body}");
    assert!(body.contains("sidecar=hi-there from the sidecar"), "{body}");

    // A sidecar killed comes back on its own; main is untouched.
    docker(&["kill", &format!("{}-cache", s.name)]);
    wait_until("the sidecar restarted", Duration::from_secs(15), || {
        let st = status(s.admin);
        container(&st, "cache")["restarts"] == 1 && container(&st, "cache")["phase"] == "running"
    });
    assert_eq!(container(&status(s.admin), "web")["restarts"], 1);
    let (code, body) = http(s.front, "GET", "/cgi-bin/env");
    assert!(code == 200 && body.contains("sidecar=hi-there from the sidecar"), "{code} {body}");

    // Stop: main, then the sidecar; every container and the namespace removed.
    let (_, output) = stop(stack);
    assert!(stack_containers(&s.name).is_empty(), "left behind: {:?}", stack_containers(&s.name));
    let root = s.dir.path().join(".sitecar");
    let events = log_files(&root, "_docker.log");
    let lines: Vec<&str> = events.lines().collect();
    let at = |what: &str| lines.iter().rposition(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what:?} in\n{events}"));
    assert!(at("web: stopping") < at("cache: stopping"), "main stops before its sidecar:\n{events}");
    assert!(at("web: stopped") < at("cache: stopping"), "the sidecar outlives main:\n{events}");

    // Both containers' output reached the console stream and LogFiles.
    let files = log_files(&root, "_default_docker.log");
    for line in ["cache says hi-there", "data is read-only", "web says hello"] {
        assert!(output.contains(line), "console lacks {line:?}:\n{output}");
        assert!(files.contains(line), "LogFiles lack {line:?}:\n{files}");
    }
    assert!(output.lines().any(|l| l.starts_with("cache") && l.contains("| cache says hi-there")), "{output}");
    assert!(output.contains("web: starting, PORT=8080"), "the log says what main was given: {output}");
}

#[test]
fn a_sidecar_that_runs_but_never_listens_is_reported_and_restarted() {
    let image = Image::busybox(&unique("mute"));
    let mute =
        r#"{"name": "mute", "properties": {"image": "IMAGE", "isMain": false, "targetPort": "7000", "startUpCommand": "sleep 3600"}}"#;
    let web = r#"{"name": "web", "properties": {"image": "IMAGE", "isMain": true, "targetPort": "8080", "startUpCommand": "httpd -f -p 8080 -h /www"}}"#;
    let s = site(
        &image,
        &format!("{}, {}", mute.replace("IMAGE", &image.0), web.replace("IMAGE", &image.0)),
        r#""WEBSITES_CONTAINER_START_TIME_LIMIT": "10""#,
    );
    let _cleanup = Cleanup(s.name.clone());
    let stack = up(&s.spec, &[]);
    wait_until("admin API", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", s.admin)).is_ok());
    // The engine runs it, but it is not started: its port does not answer inside the namespace.
    wait_until("the container runs", Duration::from_secs(20), || {
        let o = Command::new("docker").args(["inspect", "--format", "{{.State.Running}}", &format!("{}-mute", s.name)]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim() == "true"
    });
    std::thread::sleep(Duration::from_secs(2));
    let st = status(s.admin);
    assert_eq!(container(&st, "mute")["phase"], "starting", "{st:#}");
    assert_eq!(container(&st, "web")["phase"], "waiting", "main waits for its sidecar: {st:#}");
    assert_eq!(http(s.admin, "GET", "/readyz").0, 503);
    // After the start time limit: reported, and started again.
    wait_until("a second attempt", Duration::from_secs(25), || container(&status(s.admin), "mute")["restarts"].as_u64() >= Some(1));
    let (_, output) = stop(stack);
    assert!(
        output.contains("mute")
            && output.contains("did not accept connections on 127.0.0.1:7000 inside the stack's network namespace within 10 s"),
        "{output}"
    );
    assert!(stack_containers(&s.name).is_empty());
}

#[test]
fn a_second_up_removes_what_a_killed_sitecar_left() {
    let image = Image::busybox(&unique("left"));
    let web = r#"{"name": "web", "properties": {"image": "IMAGE", "isMain": true, "targetPort": "8080", "startUpCommand": "httpd -f -p 8080 -h /www"}}"#;
    let s = site(&image, &web.replace("IMAGE", &image.0), "");
    let _cleanup = Cleanup(s.name.clone());
    let mut first = up(&s.spec, &[]);
    ready(&mut first, s.admin, Duration::from_secs(60));
    first.kill().unwrap(); // SIGKILL: no chance to clean up
    first.wait().unwrap();
    let left = stack_containers(&s.name);
    assert!(left.contains(&format!("{}-pod", s.name)) && left.contains(&format!("{}-web", s.name)), "{left:?}");

    let mut second = up(&s.spec, &[]);
    ready(&mut second, s.admin, Duration::from_secs(60));
    assert_eq!(http(s.front, "GET", "/").0, 404, "busybox httpd answers through the front door");
    let (_, output) = stop(second);
    assert!(output.contains("removed what an earlier run of this stack left behind"), "{output}");
    assert!(stack_containers(&s.name).is_empty(), "{:?}", stack_containers(&s.name));
}

#[test]
fn without_a_reachable_engine_up_says_so_once_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"sitecontainers": [{{"name": "web", "properties": {{"image": "nginx:1.27", "isMain": true, "targetPort": "8080"}}}}],
               "proxy": {{"listen": ["127.0.0.1:{}"]}}, "admin": {{"listen": "127.0.0.1:{}"}}, "local": {{"runtime": "oci", "engine": "docker"}}}}"#,
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar"))
        .arg("up")
        .arg(&spec)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("unix:///nonexistent/docker.sock") && lines[0].contains("DOCKER_HOST"), "{stderr}");
    assert!(lines[0].contains("nothing was started"), "{stderr}");
    assert!(!dir
        .path()
        .join(".sitecar/home/LogFiles")
        .read_dir()
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.len() > 0)))));
}
