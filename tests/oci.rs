//! The OCI runtime against a fake `docker` that records its arguments and runs real processes:
//! the argument lists asserted are what a real engine needs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn calls(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn argv(call: &serde_json::Value) -> Vec<String> {
    call["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

#[test]
fn docker_runs_the_stack_in_one_network_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(format!("{}/tests/support/fake-engine.py", env!("CARGO_MANIFEST_DIR")), bin.join("docker")).unwrap();
    let log = dir.path().join("calls.jsonl");
    let front = free_port();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"[
         {"name": "redis", "properties": {"image": "redis:7-alpine", "isMain": false, "targetPort": "6379",
            "inheritAppSettingsAndConnectionStrings": false,
            "volumeMounts": [{"volumeSubPath": "/shared/cache", "containerMountPath": "/data", "readOnly": true}]}},
         {"name": "web", "properties": {"image": "test/web", "isMain": true, "targetPort": "8080", "startUpCommand": "serve --fast 'a b'",
            "volumeMounts": [{"volumeSubPath": "/shared/cache", "containerMountPath": "/var/cache/app"}],
            "environmentVariables": [{"name": "DB_URL", "value": "DATABASE_URL"}]}}
        ]"#,
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut sitecar = support::Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .args(["up", "--listen", &format!("127.0.0.1:{front}")])
            .arg(&spec)
            .args(["--setting", "DATABASE_URL=postgres://db/secret"])
            .env_clear()
            .env("PATH", &path)
            .env("FAKE_LOG", &log)
            .env("APP_PY", format!("{}/control/tests/support/app.py", env!("CARGO_MANIFEST_DIR")))
            .env("NO_COLOR", "1")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Through the front door to main, which the engine runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = TcpStream::connect(("127.0.0.1", front)).ok().and_then(|mut s| {
            s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        });
        if answer.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 200") && a.ends_with("hello from web")) {
            break;
        }
        assert!(Instant::now() < deadline, "main never answered through the front door: {answer:?}\n{:#?}", calls(&log));
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill").args(["-INT", &sitecar.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sitecar.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "sitecar did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The sidecar's container was confirmed running before main's was started.
    let all: Vec<String> = calls(&log).iter().map(|c| argv(c).join(" ")).collect();
    let asked = all.iter().position(|c| c.starts_with("inspect --format {{.State.Running}} sitecar-redis")).expect("startup check");
    let web_run = all.iter().position(|c| c.starts_with("run --rm --name sitecar-web")).unwrap();
    assert!(asked < web_run, "{all:#?}");

    // Engine calls that start (run) and stop (kill, rm) things, in the order sitecar made them;
    // `inspect` polls are the startup checks in between.
    let calls: Vec<serde_json::Value> = calls(&log).into_iter().filter(|c| c["argv"][0] != "inspect").collect();
    let argvs: Vec<Vec<String>> = calls.iter().map(argv).collect();
    let root = dir.path().join(".sitecar");
    // 1. The pause container that owns the namespace, publishing main's port on loopback only.
    let pod = &argvs[0];
    assert_eq!(pod[..5], ["run", "-d", "--rm", "--name", "sitecar-pod"]);
    assert_eq!(pod[5], "-p");
    let publish: Vec<&str> = pod[6].split(':').collect();
    assert_eq!((publish[0], publish[2]), ("127.0.0.1", "8080"));
    assert_eq!(pod[7], "registry.k8s.io/pause:3.10");
    assert_eq!(pod.len(), 8);

    // 2. The sidecar first, joining the namespace; variable values never on the command line.
    let redis = &argvs[1];
    let redis_env = ["HOME", "PORT", "WEBSITE_HOSTNAME", "WEBSITE_INSTANCE_ID", "WEBSITE_ROLE_INSTANCE_ID", "WEBSITE_SITE_NAME"];
    let mut want: Vec<String> = ["run", "--rm", "--name", "sitecar-redis", "--network", "container:sitecar-pod"].map(String::from).to_vec();
    for e in redis_env {
        want.extend(["-e".into(), e.into()]);
    }
    want.extend(["-v".into(), format!("{}:/data:ro", root.join("volumes/shared/cache").display()), "redis:7-alpine".into()]);
    assert_eq!(redis, &want);
    assert_eq!(calls[1]["env"]["PORT"], "6379");
    assert_eq!(calls[1]["env"]["HOME"], "/home");

    // 3. Main, with app settings (it inherits them) and its startUpCommand as the command.
    let web = &argvs[2];
    let web_env = [
        "APPSETTING_DATABASE_URL",
        "DATABASE_URL",
        "DB_URL",
        "HOME",
        "PORT",
        "WEBSITES_PORT",
        "WEBSITE_HOSTNAME",
        "WEBSITE_INSTANCE_ID",
        "WEBSITE_ROLE_INSTANCE_ID",
        "WEBSITE_SITE_NAME",
    ];
    let mut want: Vec<String> = ["run", "--rm", "--name", "sitecar-web", "--network", "container:sitecar-pod"].map(String::from).to_vec();
    for e in web_env {
        want.extend(["-e".into(), e.into()]);
    }
    want.extend(["-v".into(), format!("{}:/var/cache/app", root.join("volumes/shared/cache").display()), "test/web".into()]);
    want.extend(["serve", "--fast", "a b"].map(String::from));
    assert_eq!(web, &want);
    assert_eq!(calls[2]["env"]["DB_URL"], "postgres://db/secret");
    assert_eq!(calls[2]["env"]["PORT"], "8080", "inside its namespace main listens on its targetPort");
    assert!(!web.iter().chain(redis.iter()).any(|a| a.contains("postgres://")), "a secret reached the command line");

    assert!(root.join("volumes/shared/cache").is_dir(), "the shared subpath exists on the host");
    assert!(root.join("home/LogFiles").is_dir());

    // 4. Stop: main first, then the sidecar, then the namespace goes.
    let rest: Vec<String> = argvs[3..].iter().map(|a| a.join(" ")).collect();
    assert_eq!(rest, ["kill --signal TERM sitecar-web", "kill --signal TERM sitecar-redis", "rm -f sitecar-pod"]);
}
