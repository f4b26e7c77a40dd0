//! The status page in a real headless Chromium, against a running stack.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::*;

/// Headless Chromium with the flags this machine's closed network needs.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("chromium is needed for this test: `make test` installs Debian's chromium")
}

#[test]
fn status_page_shows_containers_and_a_restart_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, Ports { front, admin, .. }) = two_container_spec(dir.path(), "cache", "");
    let mut sitecar = up_until_ready(&spec, admin);
    for i in 0..40 {
        assert_eq!(http(front, "GET", &format!("/p/{i}")).0, 200);
    }
    // Kill the sidecar and wait for its restart.
    let (_, status) = http(admin, "GET", "/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let pid = v["containers"][0]["pid"].as_u64().unwrap();
    Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    wait_until("the restart", Duration::from_secs(10), || {
        let v: serde_json::Value = serde_json::from_str(&http(admin, "GET", "/status").1).unwrap();
        v["containers"][0]["restarts"] == 1 && v["containers"][0]["phase"] == "running"
    });
    // Traffic while the page is open, so it has rates to show.
    let load = std::thread::spawn(move || {
        for i in 0..200 {
            let _ = http(front, "GET", &format!("/q/{i}"));
            std::thread::sleep(Duration::from_millis(20));
        }
    });

    let url = format!("http://127.0.0.1:{admin}/");
    let out = chromium(&dir.path().join("profile-dom"), &["--virtual-time-budget=5000", "--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row = |name: &str| -> String {
        let start = dom.find(&format!("data-container=\"{name}\"")).unwrap_or_else(|| panic!("no row for {name}: {dom}"));
        dom[start..].split("</tr>").next().unwrap().to_string()
    };
    let cache = row("cache");
    assert!(cache.contains("class=\"n restarts\">1<"), "cache row shows one restart: {cache}");
    assert!(cache.contains(">running<"), "{cache}");
    assert!(cache.contains("signal 9"), "last exit shown: {cache}");
    let web = row("web");
    assert!(web.contains("class=\"n restarts\">0<") && web.contains(">main<"), "{web}");
    assert!(dom.contains("id=\"main\" class=\"badge ready\">ready<"), "main badge");
    let err = dom.split("id=\"err\">").nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(err, "", "the page reached the API");
    let total: u64 = dom.split("id=\"total\">").nth(1).unwrap().split('<').next().unwrap().parse().unwrap();
    assert!(total >= 40, "requests since start: {total}");

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &dir.path().join("profile-shot"),
        &["--virtual-time-budget=5000", "--window-size=1280,720", &format!("--screenshot={}", shot.display()), &url],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "screenshot saved at {}", shot.display());

    load.join().unwrap();
    Command::new("kill").args(["-TERM", &sitecar.id().to_string()]).status().unwrap();
    wait_until("exit", Duration::from_secs(15), || sitecar.try_wait().unwrap().is_some());
}

/// The text of the element with `id` in a dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    dom.split(&format!("id=\"{id}\">")).nth(1).and_then(|r| r.split('<').next()).unwrap_or_default().to_owned()
}

#[test]
fn a_page_opened_after_the_traffic_shows_its_history_with_axes() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, Ports { front, admin, .. }) = two_container_spec(dir.path(), "cache", "");
    // A half-second request timeout: main's one-second /slow answers become 504s.
    let text = std::fs::read_to_string(&spec).unwrap().replacen(
        &format!(r#""proxy": {{"listen": ["127.0.0.1:{front}"]}}"#),
        &format!(r#""proxy": {{"listen": ["127.0.0.1:{front}"], "timeouts": {{"requestSeconds": 0.5}}}}"#),
        1,
    );
    std::fs::write(&spec, text).unwrap();
    let mut sitecar = up_until_ready(&spec, admin);
    for i in 0..30 {
        assert_eq!(http(front, "GET", &format!("/ok/{i}")).0, 200);
    }
    let slow: Vec<_> = (0..10).map(|_| std::thread::spawn(move || http(front, "GET", "/slow").0)).collect();
    for s in slow {
        assert_eq!(s.join().unwrap(), 504);
    }
    // Once sitecar has closed the bucket holding them, and with no traffic since.
    wait_until("the traffic in the history", Duration::from_secs(15), || {
        let v: serde_json::Value = serde_json::from_str(&http(admin, "GET", "/status").1).unwrap();
        v["traffic"]["history"]["last_minute"]["requests"].as_u64() >= Some(40)
    });
    let v: serde_json::Value = serde_json::from_str(&http(admin, "GET", "/status").1).unwrap();
    let minute = &v["traffic"]["history"]["last_minute"];
    assert_eq!((minute["requests"].as_u64(), minute["server_errors"].as_u64()), (Some(40), Some(10)), "{minute}");
    assert_eq!(minute["p99"], 0.75, "the 504s took the half-second timeout (the 0.5-0.75 s bucket): {minute}");

    // A page opened now, after it all happened.
    let url = format!("http://127.0.0.1:{admin}/");
    let out = chromium(&dir.path().join("profile"), &["--virtual-time-budget=3000", "--dump-dom", &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text_of(&dom, "errors"), "25.0 %", "10 of 40 in the last minute");
    assert_eq!(text_of(&dom, "p99"), "≤ 750 ms");
    assert_eq!(text_of(&dom, "p50"), "≤ 5 ms");
    let rps: f64 = text_of(&dom, "rps").parse().unwrap();
    assert!(rps > 0.0, "{rps}");
    // The chart: a line with points, axes, and a scale.
    let bars = dom.split("id=\"bars\">").nth(1).and_then(|r| r.split("</g>").next()).unwrap_or("");
    assert!(bars.contains("class=\"all\""), "a bar of requests: {bars}");
    assert!(bars.contains("class=\"bad\""), "and of the 5xx among them: {bars}");
    for label in ["−5 min", "−2.5 min", "now"] {
        assert!(dom.contains(label), "x axis label {label}");
    }
    let ticks = dom.split("id=\"ticks\"").nth(1).unwrap_or("");
    assert!(ticks.contains(">0<"), "the y axis starts at 0: {ticks}");
    // Health right after a start is the probe that started it, not "–".
    let web = dom.split("data-container=\"web\"").nth(1).and_then(|r| r.split("</tr>").next()).unwrap();
    assert!(web.contains(">healthy<"), "{web}");

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/status-page-history.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let out = chromium(
        &dir.path().join("profile-shot"),
        &["--virtual-time-budget=3000", "--window-size=1280,760", &format!("--screenshot={}", shot.display()), &url],
    );
    assert!(out.status.success() && shot.exists(), "{}", String::from_utf8_lossy(&out.stderr));

    Command::new("kill").args(["-TERM", &sitecar.id().to_string()]).status().unwrap();
    wait_until("exit", Duration::from_secs(15), || sitecar.try_wait().unwrap().is_some());
}
