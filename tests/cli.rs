//! The command line as a compose user expects it: `up --admin` and `--listen` (validated with the
//! spec, kept across reloads), `status`/`logs`/`reload`/`restart`/`down` finding the running stack
//! by its run file, and the exit status of a stack stopped cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;
use support::*;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn sitecar(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sitecar")).args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn up(dir: &Path, args: &[&str]) -> Stack {
    Stack(
        Command::new(env!("CARGO_BIN_EXE_sitecar"))
            .arg("up")
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn ready(admin: u16) {
    wait_until("main ready", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok() && http(admin, "GET", "/readyz").0 == 200
    });
}

fn wait_exit(stack: &mut Stack) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = stack.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(std::time::Instant::now() < deadline, "sitecar did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn admin_and_listen_flags_are_honoured_kept_across_reloads_and_the_stack_is_found_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, p) = two_container_spec(dir.path(), "side", "");
    let (admin, front) = (free_port(), free_port());
    let mut stack = up(dir.path(), &["spec.json", "--admin", &format!("127.0.0.1:{admin}"), "--listen", &format!("127.0.0.1:{front}")]);
    ready(admin);
    assert!(std::net::TcpStream::connect(("127.0.0.1", p.admin)).is_err(), "the spec's admin address is replaced");
    assert_eq!(http(front, "GET", "/").0, 200);
    assert!(std::net::TcpStream::connect(("127.0.0.1", p.front)).is_err(), "the spec's front door is replaced");

    // Found by the run file: from the spec's directory with no flag, and with -f from elsewhere.
    let out = sitecar(dir.path(), &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = text(&out);
    assert!(table.contains("PORTS"), "{table}");
    let side_row = table.lines().find(|l| l.starts_with("side ")).unwrap();
    assert!(side_row.contains(&format!("127.0.0.1:{}", p.side)), "each container's ports: {table}");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = sitecar(elsewhere.path(), &["status", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"side\""));
    let out = sitecar(elsewhere.path(), &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no running stack answers at 127.0.0.1:9901"), "{}", text(&out));

    // A second `up` of the same stack (on other ports) is refused: it would take the running
    // one's containers for leftovers.
    let out = sitecar(
        dir.path(),
        &["up", "spec.json", "--admin", &format!("127.0.0.1:{}", free_port()), "--listen", &format!("127.0.0.1:{}", free_port())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("this stack is already running"), "{}", text(&out));
    assert_eq!(http(front, "GET", "/").0, 200, "the running one is untouched");

    // A reload keeps the command line's addresses.
    let out = sitecar(dir.path(), &["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(http(front, "GET", "/").0, 200, "--listen survives the reload");
    assert!(std::net::TcpStream::connect(("127.0.0.1", p.front)).is_err(), "the spec's listen address stays replaced");

    // logs and restart of an unknown name list the names there are.
    let out = sitecar(dir.path(), &["logs", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no container named nosuch; the containers are: side, web"), "{}", text(&out));
    let out = sitecar(dir.path(), &["restart", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("the containers are: side, web"), "{}", text(&out));

    // restart NAME: that container alone comes back.
    let status = || -> serde_json::Value { serde_json::from_str(&http(admin, "GET", "/status").1).unwrap() };
    let pid_of =
        |v: &serde_json::Value, n: &str| v["containers"].as_array().unwrap().iter().find(|c| c["name"] == n).unwrap()["pid"].clone();
    let before = status();
    let out = sitecar(dir.path(), &["restart", "side"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until("the sidecar restarted", Duration::from_secs(10), || {
        let now = status();
        pid_of(&now, "side") != pid_of(&before, "side") && !pid_of(&now, "side").is_null()
    });
    assert_eq!(pid_of(&status(), "web"), pid_of(&before, "web"));

    // down: stops the stack in order; `up` exits 0 and its run file is gone.
    let out = sitecar(dir.path(), &["down"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stopped"));
    assert_eq!(wait_exit(&mut stack), 0);
    assert!(!dir.path().join(".sitecar/sitecar.run.json").exists());
}

#[test]
fn a_command_line_address_is_validated_with_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (_, p) = two_container_spec(dir.path(), "side", "");
    let out = sitecar(dir.path(), &["up", "spec.json", "--listen", &format!("127.0.0.1:{}", p.side)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("$.sitecontainers[0].properties.targetPort") && text(&out).contains("belongs to"), "{}", text(&out));
    let out = sitecar(dir.path(), &["up", "spec.json", "--admin", "0.0.0.0:9999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("--admin: admin API on 0.0.0.0:9999 without a token"), "{}", text(&out));
    let out = sitecar(dir.path(), &["up", "spec.json", "--listen", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("--listen: \"nowhere\" is not an address"), "{}", text(&out));
}

#[test]
fn ctrl_c_of_a_stack_that_stopped_cleanly_exits_zero_and_a_killed_main_does_not() {
    // Main is Python's own http.server: SIGTERM ends it by the signal (no handler).
    let dir = tempfile::tempdir().unwrap();
    let (spec, p) = two_container_spec(dir.path(), "side", "");
    let text_of = std::fs::read_to_string(&spec).unwrap();
    let main_cmd = format!("exec python3 {} web {}", app_py(), p.main);
    std::fs::write(&spec, text_of.replace(&main_cmd, &format!("exec python3 -m http.server --bind 127.0.0.1 {}", p.main))).unwrap();
    let mut stack = up(dir.path(), &["spec.json"]);
    ready(p.admin);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(stack.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut stack), 0, "main ended by the SIGTERM it was sent: a clean stop");

    // A main that ignores SIGTERM is killed after its grace period: that is no clean stop.
    std::fs::write(&spec, text_of.replace(&main_cmd, &format!("{main_cmd} ignore-term"))).unwrap();
    let mut stack = up(dir.path(), &["spec.json"]);
    ready(p.admin);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(stack.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut stack), 137);
}

#[test]
fn a_code_app_template_runs_the_users_code_as_main_with_template_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let (side, main, front, admin) = (free_port(), free_port(), free_port(), free_port());
    std::fs::write(
        dir.path().join("template.json"),
        format!(
            r#"{{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {{"appName": {{"type": "string"}}, "sidePort": {{"type": "int"}}}},
  "resources": [
    {{"type": "Microsoft.Web/sites", "apiVersion": "2024-04-01", "name": "[parameters('appName')]",
      "properties": {{"siteConfig": {{"linuxFxVersion": "PYTHON|3.12",
        "appSettings": [{{"name": "GREETING", "value": "[concat('hi from ', parameters('appName'))]"}}]}}}}}},
    {{"type": "Microsoft.Web/sites/sitecontainers", "apiVersion": "2024-04-01",
      "name": "[format('{{0}}/{{1}}', parameters('appName'), 'side')]",
      "properties": {{"image": "side:1", "isMain": false, "targetPort": "[string(parameters('sidePort'))]",
        "startUpCommand": "[format('exec python3 {app} side {{0}}', parameters('sidePort'))]"}}}}
  ]
}}"#,
            app = app_py()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("params.json"),
        format!(r#"{{"parameters": {{"appName": {{"value": "shop"}}, "sidePort": {{"value": {side}}}}}}}"#),
    )
    .unwrap();

    // Without --main: what is missing, and how to give it.
    let out = sitecar(dir.path(), &["validate", "template.json", "--parameters", "params.json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("PYTHON|3.12") && text(&out).contains("--main"), "{}", text(&out));

    let main_cmd = format!("exec python3 {} web {main}", app_py());
    let mut stack = up(
        dir.path(),
        &[
            "template.json",
            "--parameters",
            "params.json",
            "--main",
            &main_cmd,
            "--main-port",
            &main.to_string(),
            "--listen",
            &format!("127.0.0.1:{front}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    ready(admin);
    let (code, body) = http(front, "GET", "/env");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"GREETING\": \"hi from shop\""), "an app setting built by an expression: {body}");
    assert!(body.contains(&format!("\"PORT\": \"{main}\"")), "{body}");
    assert_eq!(http(side, "GET", "/").0, 200, "the sidecar on the port the parameter gave");
    let out = sitecar(dir.path(), &["down"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(wait_exit(&mut stack), 0);
}

#[test]
fn make_run_stopped_with_ctrl_c_stops_the_stack_without_an_error() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (spec, p) = two_container_spec(dir.path(), "side", "");
    // What a terminal does on Ctrl-C: SIGINT to the whole foreground process group (make, cargo, sitecar).
    // `cargo run` execs the binary; this CARGO does the same with the one the tests built, so the
    // test never rebuilds (or replaces) the binary other tests are running.
    let cargo = format!(r#"sh -c 'while [ "$$1" != "--" ]; do shift; done; shift; exec {} "$$@"' cargo"#, env!("CARGO_BIN_EXE_sitecar"));
    let make = Command::new("make")
        .args(["-s", "--no-print-directory", "run", "RUN_PROFILE="])
        .arg(format!("CARGO={cargo}"))
        .arg(format!("SPEC={}", spec.display()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut make = Stack(make);
    wait_until("the stack from make run", Duration::from_secs(120), || {
        std::net::TcpStream::connect(("127.0.0.1", p.admin)).is_ok() && http(p.admin, "GET", "/readyz").0 == 200
    });
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(make.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let child = std::mem::replace(&mut make.0, Command::new("true").spawn().unwrap());
    let out = child.wait_with_output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("web: stopped") && all.contains("side: stopped"), "{all}");
    assert!(!all.contains("Error"), "no make error: {all}");
}
