use super::*;

use sitecar_config::{load_str, LoadOptions};

fn spec(extra: &str) -> Spec {
    let text = format!(
        r#"{{"sitecontainers": [
          {{"name": "redis", "properties": {{"image": "r", "isMain": false, "targetPort": "6379", "startUpCommand": "r"}}}},
          {{"name": "web", "properties": {{"image": "w", "isMain": true, "targetPort": "3000", "startUpCommand": "w"}}}},
          {{"name": "otel", "properties": {{"image": "o", "isMain": false, "targetPort": "4318", "startUpCommand": "o"}}}}
        ]{extra}}}"#
    );
    load_str(&text, &LoadOptions::default()).unwrap()
}

const REDIS: Unit = 0;
const WEB: Unit = 1;
const OTEL: Unit = 2;

fn spawns(actions: &[Action]) -> Vec<(Unit, u64)> {
    actions.iter().filter_map(|a| if let Action::Spawn { unit, gen } = a { Some((*unit, *gen)) } else { None }).collect()
}

fn signals(actions: &[Action]) -> Vec<(Unit, bool)> {
    actions.iter().filter_map(|a| if let Action::Signal { unit, kill, .. } = a { Some((*unit, *kill)) } else { None }).collect()
}

fn timer(actions: &[Action]) -> Option<(Duration, Event)> {
    actions.iter().find_map(|a| if let Action::Timer { after, event } = a { Some((*after, event.clone())) } else { None })
}

/// Boots the stack: every container spawned and started in order.
fn booted(core: &mut Core, t: Instant) {
    core.on_event(t, Event::Up);
    for unit in [REDIS, OTEL, WEB] {
        core.on_event(t, Event::Spawned { unit, gen: 1, pid: Some(100 + unit as u32) });
        core.on_event(t, Event::Started { unit, gen: 1 });
    }
}

#[test]
fn sidecars_start_in_spec_order_each_waited_for_then_main() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    let a = core.on_event(t, Event::Up);
    assert_eq!(spawns(&a), [(REDIS, 1)]);
    assert!(a.contains(&Action::PublishMain(MainState::Starting)));
    // Spawned is not started: the next waits for the startup probe.
    let a = core.on_event(t, Event::Spawned { unit: REDIS, gen: 1, pid: Some(10) });
    assert_eq!(a, [Action::WatchStartup { unit: REDIS, gen: 1 }]);
    let a = core.on_event(t, Event::Started { unit: REDIS, gen: 1 });
    assert_eq!(spawns(&a), [(OTEL, 1)]);
    core.on_event(t, Event::Spawned { unit: OTEL, gen: 1, pid: Some(11) });
    let a = core.on_event(t, Event::Started { unit: OTEL, gen: 1 });
    assert_eq!(spawns(&a), [(WEB, 1)], "main starts last");
    core.on_event(t, Event::Spawned { unit: WEB, gen: 1, pid: Some(12) });
    assert_eq!(core.main_state(), MainState::Starting);
    let a = core.on_event(t, Event::Started { unit: WEB, gen: 1 });
    assert!(a.contains(&Action::PublishMain(MainState::Ready)));
    assert!(a.contains(&Action::WatchHealth { unit: WEB, gen: 1 }));
}

#[test]
fn a_sidecar_that_never_starts_holds_back_main() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    core.on_event(t, Event::Up);
    core.on_event(t, Event::Spawned { unit: REDIS, gen: 1, pid: None });
    let a = core.on_event(t, Event::StartTimedOut { unit: REDIS, gen: 1 });
    assert_eq!(signals(&a), [(REDIS, false)]);
    let a = core.on_event(t, Event::Exited { unit: REDIS, gen: 1, exit: Exit::Signal(15) });
    assert!(spawns(&a).is_empty());
    assert_eq!(core.units[WEB].phase, Phase::Waiting);
    // After the backoff it is tried again, and main still waits for it.
    let a = core.on_event(t, Event::BackoffElapsed { unit: REDIS, gen: 1 });
    assert_eq!(spawns(&a), [(REDIS, 2)]);
    let a = core.on_event(t, Event::Started { unit: REDIS, gen: 2 });
    assert_eq!(spawns(&a), [(OTEL, 1)]);
}

#[test]
fn backoff_doubles_to_the_cap_and_resets_after_a_long_healthy_run() {
    let mut core =
        Core::new(&spec(r#", "local": {"restart": {"initialBackoffSeconds": 1, "maxBackoffSeconds": 4, "resetAfterSeconds": 600}}"#));
    let mut t = Instant::now();
    booted(&mut core, t);
    let mut delays = Vec::new();
    for gen in 1..=4 {
        let a = core.on_event(t, Event::Exited { unit: REDIS, gen, exit: Exit::Code(1) });
        let (after, event) = timer(&a).unwrap();
        delays.push(after.as_secs());
        assert_eq!(event, Event::BackoffElapsed { unit: REDIS, gen });
        core.on_event(t, event);
        core.on_event(t, Event::Started { unit: REDIS, gen: gen + 1 });
    }
    assert_eq!(delays, [1, 2, 4, 4]);
    assert_eq!(core.units[REDIS].restarts, 4);
    // Ten minutes of running resets the backoff.
    t += Duration::from_secs(601);
    let a = core.on_event(t, Event::Exited { unit: REDIS, gen: 5, exit: Exit::Code(1) });
    assert_eq!(timer(&a).unwrap().0, Duration::from_secs(1));
}

#[test]
fn a_sidecar_crash_never_touches_main() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    let a = core.on_event(t, Event::Exited { unit: OTEL, gen: 1, exit: Exit::Signal(9) });
    assert!(signals(&a).is_empty());
    assert!(!a.iter().any(|x| matches!(x, Action::PublishMain(_))));
    assert_eq!(core.main_state(), MainState::Ready);
    assert_eq!(core.units[OTEL].last_exit, Some(Exit::Signal(9)));
}

#[test]
fn main_crash_is_published_and_restarted() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    let a = core.on_event(t, Event::Exited { unit: WEB, gen: 1, exit: Exit::Signal(9) });
    assert!(a.contains(&Action::PublishMain(MainState::Restarting)));
    let (_, ev) = timer(&a).unwrap();
    let a = core.on_event(t, ev);
    assert_eq!(spawns(&a), [(WEB, 2)]);
    let a = core.on_event(t, Event::Started { unit: WEB, gen: 2 });
    assert!(a.contains(&Action::PublishMain(MainState::Ready)));
}

#[test]
fn events_of_an_earlier_run_are_ignored() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    core.on_event(t, Event::Exited { unit: WEB, gen: 1, exit: Exit::Code(1) });
    core.on_event(t, Event::BackoffElapsed { unit: WEB, gen: 1 });
    assert!(core.on_event(t, Event::Started { unit: WEB, gen: 1 }).is_empty());
    assert!(core.on_event(t, Event::Probe { unit: WEB, gen: 1, ok: false }).is_empty());
    assert!(core.on_event(t, Event::GraceElapsed { unit: WEB, gen: 1 }).is_empty());
}

#[test]
fn failing_liveness_restarts_only_with_a_health_check_path() {
    // Without WEBSITE_HEALTHCHECK_PATH probe failures are reported, not acted on.
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    for _ in 0..3 {
        assert!(signals(&core.on_event(t, Event::Probe { unit: WEB, gen: 1, ok: false })).is_empty());
    }
    assert_eq!(core.units[WEB].healthy, Some(false));
    assert_eq!(core.main_state(), MainState::Ready);

    let mut core = Core::new(&spec(r#", "appSettings": {"WEBSITE_HEALTHCHECK_PATH": "/health"}"#));
    booted(&mut core, t);
    assert!(signals(&core.on_event(t, Event::Probe { unit: WEB, gen: 1, ok: false })).is_empty());
    assert!(signals(&core.on_event(t, Event::Probe { unit: WEB, gen: 1, ok: false })).is_empty());
    let a = core.on_event(t, Event::Probe { unit: WEB, gen: 1, ok: false });
    assert_eq!(signals(&a), [(WEB, false)], "third consecutive failure (failureThreshold 3)");
    assert!(a.contains(&Action::PublishMain(MainState::Unhealthy)));
    // Ignoring SIGTERM earns SIGKILL after the grace period.
    let (after, ev) = timer(&a).unwrap();
    assert_eq!(after, Duration::from_secs(30));
    assert_eq!(signals(&core.on_event(t, ev)), [(WEB, true)]);
}

#[test]
fn a_success_resets_the_failure_streak() {
    let mut core = Core::new(&spec(r#", "health": {"containers": {"redis": {"failureThreshold": 2}}}"#));
    let t = Instant::now();
    booted(&mut core, t);
    for ok in [false, true, false, true, false] {
        assert!(signals(&core.on_event(t, Event::Probe { unit: REDIS, gen: 1, ok })).is_empty());
    }
    assert_eq!(signals(&core.on_event(t, Event::Probe { unit: REDIS, gen: 1, ok: false })), [(REDIS, false)]);
}

#[test]
fn shutdown_stops_main_first_then_sidecars_in_reverse_one_at_a_time() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    let a = core.on_event(t, Event::Shutdown);
    assert_eq!(signals(&a), [(WEB, false)]);
    assert!(a.contains(&Action::PublishMain(MainState::Stopped)));
    let a = core.on_event(t, Event::Exited { unit: WEB, gen: 1, exit: Exit::Code(0) });
    assert_eq!(signals(&a), [(OTEL, false)], "the last sidecar in spec order stops first");
    let a = core.on_event(t, Event::Exited { unit: OTEL, gen: 1, exit: Exit::Signal(15) });
    assert_eq!(signals(&a), [(REDIS, false)]);
    let a = core.on_event(t, Event::Exited { unit: REDIS, gen: 1, exit: Exit::Code(0) });
    assert_eq!(a.last(), Some(&Action::Exit(0)), "exit with main's status");
}

#[test]
fn shutdown_exit_code_is_mains() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    core.on_event(t, Event::Shutdown);
    core.on_event(t, Event::Exited { unit: WEB, gen: 1, exit: Exit::Code(3) });
    core.on_event(t, Event::Exited { unit: OTEL, gen: 1, exit: Exit::Code(0) });
    let a = core.on_event(t, Event::Exited { unit: REDIS, gen: 1, exit: Exit::Code(0) });
    assert_eq!(a.last(), Some(&Action::Exit(3)));
}

#[test]
fn shutdown_during_boot_skips_what_never_started_and_crashes_are_not_restarted() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    core.on_event(t, Event::Up);
    core.on_event(t, Event::Spawned { unit: REDIS, gen: 1, pid: Some(1) });
    let a = core.on_event(t, Event::Shutdown);
    assert_eq!(signals(&a), [(REDIS, false)], "only redis runs");
    let a = core.on_event(t, Event::Exited { unit: REDIS, gen: 1, exit: Exit::Code(0) });
    assert!(spawns(&a).is_empty());
    assert_eq!(a.last(), Some(&Action::Exit(0)));
}

#[test]
fn admin_restart_skips_the_backoff() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    let a = core.on_event(t, Event::Restart { unit: OTEL, reload: false });
    assert_eq!(signals(&a), [(OTEL, false)]);
    let a = core.on_event(t, Event::Exited { unit: OTEL, gen: 1, exit: Exit::Signal(15) });
    assert_eq!(timer(&a).unwrap().0, Duration::ZERO);
    assert_eq!(core.units[OTEL].restarts, 1, "shown restarted, as asked");
    // Nor does it grow the backoff: the next crash waits the initial one.
    let a = core.on_event(t, Event::BackoffElapsed { unit: OTEL, gen: 1 });
    assert_eq!(spawns(&a), [(OTEL, 2)]);
    core.on_event(t, Event::Spawned { unit: OTEL, gen: 2, pid: Some(9) });
    core.on_event(t, Event::Started { unit: OTEL, gen: 2 });
    let a = core.on_event(t, Event::Exited { unit: OTEL, gen: 2, exit: Exit::Code(1) });
    assert_eq!(timer(&a).unwrap().0, Duration::from_secs(1), "the initial backoff");
    assert_eq!(core.units[OTEL].restarts, 2);
}

#[test]
fn a_reloads_restart_is_not_counted_and_grows_no_backoff() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    core.on_event(t, Event::Restart { unit: WEB, reload: true });
    let a = core.on_event(t, Event::Exited { unit: WEB, gen: 1, exit: Exit::Signal(15) });
    assert_eq!(timer(&a).unwrap().0, Duration::ZERO);
    assert_eq!(core.units[WEB].restarts, 0);
    core.on_event(t, Event::BackoffElapsed { unit: WEB, gen: 1 });
    core.on_event(t, Event::Spawned { unit: WEB, gen: 2, pid: Some(9) });
    core.on_event(t, Event::Started { unit: WEB, gen: 2 });
    let a = core.on_event(t, Event::Exited { unit: WEB, gen: 2, exit: Exit::Code(1) });
    assert_eq!(timer(&a).unwrap().0, Duration::from_secs(1), "a crash after it waits the initial backoff");
    assert_eq!(core.units[WEB].restarts, 1);
}

#[test]
fn a_reload_retires_removed_containers_and_starts_added_ones() {
    let mut core = Core::new(&spec(""));
    let t = Instant::now();
    booted(&mut core, t);
    // otel removed, "db" added before web; redis and web kept.
    let text = r#"{"sitecontainers": [
          {"name": "db", "properties": {"image": "d", "isMain": false, "targetPort": "5432", "startUpCommand": "d"}},
          {"name": "redis", "properties": {"image": "r", "isMain": false, "targetPort": "6379", "startUpCommand": "r"}},
          {"name": "web", "properties": {"image": "w", "isMain": true, "targetPort": "3000", "startUpCommand": "w"}}
        ]}"#;
    let new = load_str(text, &LoadOptions::default()).unwrap();
    let (map, a) = core.reshape(&new);
    const DB: Unit = 3;
    assert_eq!(map, [DB, REDIS, WEB], "kept containers keep their unit, a new one is appended");
    assert_eq!(signals(&a), [(OTEL, false)], "the removed sidecar is stopped, nothing else");
    assert_eq!(spawns(&a), [(DB, 1)], "the added sidecar starts at once");
    assert!(core.units[OTEL].retired);
    // The removed one ends: stopped for good, never restarted.
    let a = core.on_event(t, Event::Exited { unit: OTEL, gen: 1, exit: Exit::Signal(15) });
    assert!(a.contains(&Action::Note { unit: OTEL, what: Note::Stopped }));
    assert!(timer(&a).is_none() && spawns(&a).is_empty(), "{a:?}");
    assert_eq!(core.units[OTEL].phase, Phase::Stopped);
    assert!(core.on_event(t, Event::Restart { unit: OTEL, reload: false }).is_empty(), "a retired unit cannot be restarted");
    // The added one runs and is supervised like the others.
    core.on_event(t, Event::Spawned { unit: DB, gen: 1, pid: Some(200) });
    core.on_event(t, Event::Started { unit: DB, gen: 1 });
    assert_eq!(core.units[DB].phase, Phase::Running);
    let a = core.on_event(t, Event::Exited { unit: DB, gen: 1, exit: Exit::Code(1) });
    assert!(timer(&a).is_some(), "a crash of the added sidecar is restarted");
    core.on_event(t, Event::BackoffElapsed { unit: DB, gen: 1 });
    core.on_event(t, Event::Spawned { unit: DB, gen: 2, pid: Some(201) });
    core.on_event(t, Event::Started { unit: DB, gen: 2 });
    // Shutdown: main, then the sidecars in the new spec's reverse order (redis, then db).
    let a = core.on_event(t, Event::Shutdown);
    assert_eq!(signals(&a), [(WEB, false)]);
    let a = core.on_event(t, Event::Exited { unit: WEB, gen: 1, exit: Exit::Signal(15) });
    assert_eq!(signals(&a), [(REDIS, false)]);
    let a = core.on_event(t, Event::Exited { unit: REDIS, gen: 1, exit: Exit::Signal(15) });
    assert_eq!(signals(&a), [(DB, false)]);
    let a = core.on_event(t, Event::Exited { unit: DB, gen: 2, exit: Exit::Signal(15) });
    assert!(a.iter().any(|x| matches!(x, Action::Exit(_))), "{a:?}");
}

#[test]
fn reload_refusals_name_what_needs_a_restart() {
    let old = spec("");
    assert_eq!(reload_refusal(&old, &spec(""), false, false), None);
    let other_main = load_str(
        r#"{"sitecontainers": [
          {"name": "redis", "properties": {"image": "r", "isMain": true, "targetPort": "6379", "startUpCommand": "r"}},
          {"name": "web", "properties": {"image": "w", "isMain": false, "targetPort": "3000", "startUpCommand": "w"}}
        ]}"#,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(reload_refusal(&old, &other_main, false, false), Some("choosing another main needs sitecar to be restarted"));
    let oci = spec(r#", "local": {"runtime": "oci"}"#);
    assert_eq!(reload_refusal(&old, &oci, false, false), Some("changing the runtime needs sitecar to be restarted"));
    assert_eq!(reload_refusal(&old, &spec(""), true, false), Some("the stack is still starting; reload once every container has started"));
    assert_eq!(reload_refusal(&old, &spec(""), false, true), Some("main's port cannot change while sitecar runs"));
}
