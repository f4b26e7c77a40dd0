//! The supervisor with real child processes: order, gating, restarts, grace, environment, logs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use sitecar_control::{MainState, Phase};
use support::*;

const SEC: Duration = Duration::from_secs(1);

fn fast(grace: u32) -> String {
    format!(r#", "local": {{"gracePeriodSeconds": {grace}, "restart": {{"initialBackoffSeconds": 0.3, "maxBackoffSeconds": 2}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_in_spec_order_then_main_and_stop_in_reverse() {
    let (a, b, m) = (free_port(), free_port(), free_port());
    let stack = Stack::start(
        &[container("alpha", false, a, "delay=0.3", ""), container("web", true, m, "", ""), container("beta", false, b, "delay=0.3", "")],
        &fast(5),
    )
    .await;
    stack.wait_main(MainState::Ready, 20 * SEC).await;
    let listening = |n: &str| stack.event("listening", n)[0].at;
    let started = |n: &str| stack.event("start", n)[0].at;
    // Each sidecar is waited on until its port accepts before the next starts; main comes last.
    assert!(listening("alpha") <= started("beta"), "beta started before alpha listened");
    assert!(listening("beta") <= started("web"), "main started before the last sidecar listened");

    let (code, events, _dir) = stack.stop().await;
    let term = |n: &str| events.iter().find(|e| e.what == "term" && e.name == n).unwrap().at;
    assert!(term("web") < term("beta") && term("beta") < term("alpha"), "stop order: main, then sidecars in reverse: {events:#?}");
    assert_eq!(code, 0, "exit status is main's (app.py exits 0 on SIGTERM)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_is_gated_until_its_warmup_path_answers() {
    let m = free_port();
    let stack = Stack::start(&[container("web", true, m, "delay=1.5", "")], &fast(5)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(*stack.handle.main.borrow(), MainState::Starting, "ready before main could answer");
    stack.wait_main(MainState::Ready, 10 * SEC).await;
    let ready_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let listening = stack.event("listening", "web")[0].at;
    assert!(ready_at >= listening);
    assert!(ready_at - listening < 0.5, "readiness seen {:.3} s after main could answer", ready_at - listening);
    // The warmup path answered 404: any response counts, as on App Service.
    assert_eq!(get(stack.handle.main_addr, "/robots933456.txt").await.unwrap().0, 404);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_statuses_narrow_what_counts_as_ready() {
    // app.py answers 404 on the default warmup path: with WEBSITE_WARMUP_STATUSES=200 that is
    // not ready; a warmup path answering 200 is.
    let settings = [("WEBSITE_WARMUP_STATUSES", "200")];
    let stack = Stack::start_with(&[container("web", true, free_port(), "", "")], &settings, &fast(1)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(*stack.handle.main.borrow(), MainState::Starting, "a 404 counted although only 200 should");
    assert!(!stack.event("listening", "web").is_empty(), "main was up all along");
    stack.stop().await;

    let settings = [("WEBSITE_WARMUP_STATUSES", "200"), ("WEBSITE_WARMUP_PATH", "/ok")];
    let stack = Stack::start_with(&[container("web", true, free_port(), "", "")], &settings, &fast(1)).await;
    stack.wait_main(MainState::Ready, 10 * SEC).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sidecar_is_restarted_with_backoff_while_main_keeps_serving() {
    let (s, m) = (free_port(), free_port());
    let stack = Stack::start(&[container("cache", false, s, "", ""), container("web", true, m, "", "")], &fast(5)).await;
    stack.wait_main(MainState::Ready, 20 * SEC).await;
    let first = stack.status("cache").pid.unwrap();

    // Main answers throughout, while the sidecar is killed and comes back.
    let addr = stack.handle.main_addr;
    let traffic = tokio::spawn(async move {
        let mut codes = Vec::new();
        for _ in 0..30 {
            codes.push(get(addr, "/").await.map(|r| r.0));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        codes
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    stack
        .wait_status(10 * SEC, "cache restarted", |l| l.iter().any(|c| c.name == "cache" && c.restarts == 1 && c.phase == Phase::Running))
        .await;
    let cache = stack.status("cache");
    assert_ne!(cache.pid, Some(first));
    assert_eq!(cache.last_exit, Some(sitecar_control::Exit::Signal(9)));
    let codes = traffic.await.unwrap();
    assert!(codes.iter().all(|c| *c == Some(200)), "main did not keep serving: {codes:?}");
    assert_eq!(stack.status("web").restarts, 0);
    assert_eq!(*stack.handle.main.borrow(), MainState::Ready);

    // Killed again: the backoff doubled (0.3 s, then 0.6 s).
    let t0 = std::time::Instant::now();
    let second = stack.status("cache").pid.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(second as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    stack
        .wait_status(10 * SEC, "cache restarted twice", |l| {
            l.iter().any(|c| c.name == "cache" && c.restarts == 2 && c.phase == Phase::Running)
        })
        .await;
    assert!(t0.elapsed() >= Duration::from_millis(600), "second restart came after {:?}", t0.elapsed());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_main_is_restarted_and_published() {
    let m = free_port();
    let stack = Stack::start(&[container("web", true, m, "", "")], &fast(5)).await;
    stack.wait_main(MainState::Ready, 20 * SEC).await;
    let mut states = stack.handle.main.clone();
    let pid = stack.status("web").pid.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    tokio::time::timeout(5 * SEC, states.wait_for(|s| *s == MainState::Restarting)).await.unwrap().unwrap();
    stack.wait_main(MainState::Ready, 10 * SEC).await;
    let web = stack.status("web");
    assert_eq!(web.restarts, 1);
    assert_ne!(web.pid, Some(pid));
    assert_eq!(get(stack.handle.main_addr, "/").await.unwrap().0, 200);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_ignoring_sigterm_is_killed_after_its_grace_period_with_its_children() {
    let m = free_port();
    let stack = Stack::start(&[container("web", true, m, "ignore-term child", "")], &fast(1)).await;
    stack.wait_main(MainState::Ready, 20 * SEC).await;
    let child: u32 = stack.event("child", "web")[0].extra.parse().unwrap();
    let pid = stack.status("web").pid.unwrap();
    assert!(alive(child) && alive(pid));
    let t0 = std::time::Instant::now();
    let (code, events, _dir) = stack.stop().await;
    let took = t0.elapsed();
    assert!(events.iter().any(|e| e.what == "term" && e.name == "web"), "SIGTERM was sent first");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "stopped after {took:?}, grace is 1 s");
    assert_eq!(code, 128 + 9, "main ended by SIGKILL");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!alive(pid), "main survived");
    assert!(!alive(child), "main's child survived: the whole process group gets the signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_sidecar_sees_no_app_setting_it_did_not_name() {
    let (s, m) = (free_port(), free_port());
    let sidecar = container(
        "otel",
        false,
        s,
        "",
        r#", "inheritAppSettingsAndConnectionStrings": false, "environmentVariables": [{"name": "AI_CONN", "value": "AI_KEY"}, {"name": "EVENTS", "value": "EVENTS"}]"#,
    );
    let stack = Stack::start_with(
        &[sidecar, container("web", true, m, "", "")],
        &[("AI_KEY", "ai-secret"), ("API_TOKEN", "tok")],
        &format!(r#", "connectionStrings": {{"Db": {{"value": "Server=db;Password=hunter2", "type": "SQLAzure"}}}}{}"#, fast(5)),
    )
    .await;
    stack.wait_main(MainState::Ready, 20 * SEC).await;
    let env_of = |port| async move {
        let (_, body) = get(std::net::SocketAddr::from(([127, 0, 0, 1], port)), "/env").await.unwrap();
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(&body).unwrap()
    };
    let side = env_of(s).await;
    assert_eq!(side["AI_CONN"], "ai-secret", "resolved through the app setting it names");
    assert!(side.contains_key("EVENTS"));
    for k in side.keys() {
        assert!(!k.starts_with("APPSETTING_") && !k.contains("CONNSTR_"), "{k} leaked into the opted-out sidecar");
    }
    assert!(!side.values().any(|v| v.contains("hunter2") || v == "tok"));
    assert!(!side.contains_key("API_TOKEN") && !side.contains_key("AI_KEY"));
    assert_eq!(side["PORT"], s.to_string());
    let main = env_of(stack.handle.main_addr.port()).await;
    assert_eq!(main["SQLAZURECONNSTR_Db"], "Server=db;Password=hunter2");
    assert_eq!(main["APPSETTING_EVENTS"], main["EVENTS"]);
    assert!(!main.contains_key("CARGO_MANIFEST_DIR"), "sitecar's own environment is not copied wholesale");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_kept_per_container_and_written_to_app_service_files() {
    let (s, m) = (free_port(), free_port());
    let stack = Stack::start(&[container("cache", false, s, "", ""), container("web", true, m, "", "")], &fast(5)).await;
    stack.wait_main(MainState::Ready, 20 * SEC).await;
    get(stack.handle.main_addr, "/some/page").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let web: Vec<String> = stack.handle.logs.recent("web", 100).into_iter().map(|l| l.text).collect();
    assert!(web.contains(&format!("hello from web on {m}")), "{web:?}");
    assert!(web.contains(&"to stderr from web".to_string()), "{web:?}");
    assert!(web.contains(&"GET /some/page".to_string()), "{web:?}");
    let cache: Vec<String> = stack.handle.logs.recent("cache", 100).into_iter().map(|l| l.text).collect();
    assert!(cache.iter().all(|l| !l.contains("from web")), "lines are kept per container");
    let (_, _, dir) = stack.stop().await;
    let log_dir = dir.path().join(".sitecar/home/LogFiles");
    let files: Vec<String> = std::fs::read_dir(&log_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let container_log = files.iter().find(|f| f.ends_with("_default_docker.log")).expect("container log file");
    let platform_log = files.iter().find(|f| f.ends_with("_docker.log") && !f.ends_with("_default_docker.log")).expect("platform log file");
    let text = std::fs::read_to_string(log_dir.join(container_log)).unwrap();
    assert!(text.contains("[web] GET /some/page"), "{text}");
    let text = std::fs::read_to_string(log_dir.join(platform_log)).unwrap();
    assert!(text.contains("web: started"), "{text}");
    assert!(text.contains("web: stopping (SIGTERM)"), "{text}");
}
