//! The supervisor core: a pure state machine. [`Core::on_event`] takes an [`Event`] and the time,
//! and returns the [`Action`]s to carry out; it never sleeps, spawns or signals by itself, so every
//! rule here (start order, backoff, liveness, stop order) is tested without processes.
//!
//! Events carry the *generation* of the container run they concern: a probe result or timer from
//! an earlier run of a container that has since restarted is ignored.

use std::time::{Duration, Instant};

use sitecar_config::{RestartPolicy, Spec};

/// What the front door sees of main.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MainState {
    /// First start: not yet answering its warmup path.
    Starting,
    /// Answering; the front door forwards to it.
    Ready,
    /// Running, but its liveness probe fails; it will be restarted.
    Unhealthy,
    /// Exited or killed, coming back after a backoff.
    Restarting,
    /// Stopped for good (shutdown).
    Stopped,
}

/// Where one container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Not started yet: waiting for its turn in the start order.
    Waiting,
    /// Spawned; its startup probe has not passed yet.
    Starting,
    /// Started and not failing its probes.
    Running,
    /// Running, but failing its probes past the failure threshold.
    Unhealthy,
    /// Exited; waiting out the backoff before the next start.
    BackingOff,
    /// Signalled to stop; waiting for it to exit.
    Stopping,
    /// Not running and not coming back.
    Stopped,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: a code as is, a signal as 128 + its number.
    pub fn as_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// Index of a container in spec order.
pub type Unit = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start the stack: sidecars in spec order, then main.
    Up,
    Spawned {
        unit: Unit,
        gen: u64,
        pid: Option<u32>,
    },
    SpawnFailed {
        unit: Unit,
        gen: u64,
        error: String,
    },
    /// The startup probe passed (for main: the warmup path answered).
    Started {
        unit: Unit,
        gen: u64,
    },
    /// The startup probe did not pass within the start time limit.
    StartTimedOut {
        unit: Unit,
        gen: u64,
    },
    Exited {
        unit: Unit,
        gen: u64,
        exit: Exit,
    },
    /// One periodic probe result.
    Probe {
        unit: Unit,
        gen: u64,
        ok: bool,
    },
    BackoffElapsed {
        unit: Unit,
        gen: u64,
    },
    /// The grace period after SIGTERM is over.
    GraceElapsed {
        unit: Unit,
        gen: u64,
    },
    /// Restart one container now: asked through the admin API (counted, as the user sees it
    /// restart) or by a reload that changed it (not a crash: not counted).
    Restart {
        unit: Unit,
        reload: bool,
    },
    /// Stop everything: main first, then sidecars in reverse order.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn {
        unit: Unit,
        gen: u64,
    },
    /// Run the startup probe; report `Started` or `StartTimedOut`.
    WatchStartup {
        unit: Unit,
        gen: u64,
    },
    /// Run the periodic probes; report each as `Probe`.
    WatchHealth {
        unit: Unit,
        gen: u64,
    },
    /// SIGTERM (or SIGKILL when `kill`) to the container's whole process group.
    Signal {
        unit: Unit,
        gen: u64,
        kill: bool,
    },
    /// Deliver `event` after `after`.
    Timer {
        after: Duration,
        event: Event,
    },
    PublishMain(MainState),
    /// A transition worth a log line and a counter.
    Note {
        unit: Unit,
        what: Note,
    },
    /// Everything has stopped: exit with this code (main's).
    Exit(i32),
}

/// Transitions the runner logs and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Starting { attempt: u32 },
    Started,
    Exited(Exit),
    SpawnFailed(String),
    StartTimedOut,
    Unhealthy,
    Healthy,
    RestartIn(Duration),
    Stopping,
    Killed,
    Stopped,
}

/// One container's supervision state.
#[derive(Debug, Clone)]
pub struct UnitState {
    pub name: String,
    pub is_main: bool,
    pub phase: Phase,
    pub gen: u64,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    /// When the current run passed its startup probe.
    pub started_at: Option<Instant>,
    /// Last probe verdict after thresholds (none before the first probe).
    pub healthy: Option<bool>,
    /// A failing liveness probe restarts the container.
    liveness: bool,
    failure_threshold: u32,
    success_threshold: u32,
    ok_streak: u32,
    fail_streak: u32,
    /// Delay before the next restart.
    backoff: Duration,
    /// Restart without backoff when the current run ends: asked through the admin API (`Some(true)`,
    /// counted) or by a reload (`Some(false)`, not counted).
    restart_now: Option<bool>,
    /// Gone from the spec by a reload: stopped, never restarted, not shown.
    pub retired: bool,
}

/// A container's supervision state before its first start.
fn unit_state(spec: &Spec, c: &sitecar_config::Container) -> UnitState {
    let probe = spec.health.for_container(&c.name);
    let liveness = if c.is_main {
        spec.platform.healthcheck_path.is_some() || spec.health.containers.contains_key(&c.name)
    } else {
        spec.health.containers.contains_key(&c.name)
    };
    UnitState {
        name: c.name.clone(),
        is_main: c.is_main,
        phase: Phase::Waiting,
        gen: 0,
        pid: None,
        restarts: 0,
        last_exit: None,
        started_at: None,
        healthy: None,
        liveness,
        failure_threshold: probe.failure_threshold,
        success_threshold: probe.success_threshold,
        ok_streak: 0,
        fail_streak: 0,
        backoff: spec.local.restart.initial,
        restart_now: None,
        retired: false,
    }
}

/// The whole stack.
#[derive(Debug)]
pub struct Core {
    pub units: Vec<UnitState>,
    policy: RestartPolicy,
    /// Start order: sidecars in spec order, then main.
    order: Vec<Unit>,
    /// Next position in `order` to start while booting; `order.len()` once all started.
    boot: usize,
    shutting_down: bool,
    main: Unit,
    grace: Duration,
    main_state: MainState,
}

/// Why a reloaded spec cannot be taken while the stack runs, if it cannot: main would be another
/// container or listen elsewhere (`main_moved`), the runtime differs, or the first start is not
/// done (`booting`). Such changes need sitecar to be restarted; nothing is changed.
pub fn reload_refusal(old: &Spec, new: &Spec, booting: bool, main_moved: bool) -> Option<&'static str> {
    if new.main().name != old.main().name {
        return Some("choosing another main needs sitecar to be restarted");
    }
    if new.runtime != old.runtime {
        return Some("changing the runtime needs sitecar to be restarted");
    }
    if booting {
        return Some("the stack is still starting; reload once every container has started");
    }
    main_moved.then_some("main's port cannot change while sitecar runs")
}

impl Core {
    pub fn new(spec: &Spec) -> Self {
        let units: Vec<UnitState> = spec.containers.iter().map(|c| unit_state(spec, c)).collect();
        let main = units.iter().position(|u| u.is_main).unwrap_or(0);
        let mut order: Vec<Unit> = (0..units.len()).filter(|&i| i != main).collect();
        order.push(main);
        Self {
            units,
            policy: spec.local.restart.clone(),
            order,
            boot: 0,
            shutting_down: false,
            main,
            grace: spec.local.grace_period,
            main_state: MainState::Starting,
        }
    }

    /// True until every container of the first start has started.
    pub fn booting(&self) -> bool {
        self.boot < self.order.len()
    }

    /// Takes the containers of a reloaded spec (same main, by name): units no longer in it are
    /// retired (stopped, never restarted), new ones are added and started at once, and the start
    /// and stop order becomes the new spec's. Returns each container's unit, in spec order (new
    /// units numbered in that order after the existing ones), and what to do.
    pub fn reshape(&mut self, spec: &Spec) -> (Vec<Unit>, Vec<Action>) {
        let mut out = Vec::new();
        let booted = !self.booting();
        let live = |units: &[UnitState], name: &str| units.iter().position(|u| !u.retired && u.name == name);
        let mut map = Vec::with_capacity(spec.containers.len());
        let mut added = Vec::new();
        for c in &spec.containers {
            match live(&self.units, &c.name) {
                Some(unit) => map.push(unit),
                None => {
                    self.units.push(unit_state(spec, c));
                    map.push(self.units.len() - 1);
                    added.push(self.units.len() - 1);
                }
            }
        }
        let gone: Vec<Unit> = (0..self.units.len()).filter(|u| !self.units[*u].retired && !map.contains(u)).collect();
        for unit in gone {
            self.units[unit].retired = true;
            match self.units[unit].phase {
                Phase::Waiting | Phase::BackingOff => {
                    self.units[unit].phase = Phase::Stopped;
                    out.push(Action::Note { unit, what: Note::Stopped });
                }
                Phase::Starting | Phase::Running | Phase::Unhealthy => self.terminate(unit, &mut out),
                Phase::Stopping | Phase::Stopped => {}
            }
        }
        // Retired units first, so that a shutdown stops them last (they are stopping already).
        let retired = (0..self.units.len()).filter(|&u| self.units[u].retired);
        let sidecars = map.iter().copied().filter(|&u| u != self.main);
        self.order = retired.chain(sidecars).chain(std::iter::once(self.main)).collect();
        if booted {
            self.boot = self.order.len();
        }
        self.policy = spec.local.restart.clone();
        self.grace = spec.local.grace_period;
        if !self.shutting_down {
            for unit in added {
                self.spawn(unit, &mut out);
            }
        }
        (map, out)
    }

    pub fn main_state(&self) -> MainState {
        self.main_state
    }

    pub fn on_event(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Up => {
                out.push(Action::PublishMain(MainState::Starting));
                self.boot_next(&mut out);
            }
            Event::Shutdown => {
                if !self.shutting_down {
                    self.shutting_down = true;
                    self.stop_next(&mut out);
                }
            }
            Event::Restart { unit, reload } => {
                if let Some(u) = self.units.get_mut(unit).filter(|u| !u.retired) {
                    if matches!(u.phase, Phase::Starting | Phase::Running | Phase::Unhealthy) && !self.shutting_down {
                        u.restart_now = Some(!reload);
                        self.terminate(unit, &mut out);
                    } else if u.phase == Phase::BackingOff && !self.shutting_down {
                        self.spawn(unit, &mut out);
                    }
                }
            }
            other => self.on_unit_event(now, other, &mut out),
        }
        out
    }

    fn on_unit_event(&mut self, now: Instant, event: Event, out: &mut Vec<Action>) {
        let (unit, gen) = match &event {
            Event::Spawned { unit, gen, .. }
            | Event::SpawnFailed { unit, gen, .. }
            | Event::Started { unit, gen }
            | Event::StartTimedOut { unit, gen }
            | Event::Exited { unit, gen, .. }
            | Event::Probe { unit, gen, .. }
            | Event::BackoffElapsed { unit, gen }
            | Event::GraceElapsed { unit, gen } => (*unit, *gen),
            _ => return,
        };
        let Some(u) = self.units.get(unit) else { return };
        if u.gen != gen {
            return; // from an earlier run
        }
        match event {
            Event::Spawned { pid, .. } => {
                let u = &mut self.units[unit];
                u.pid = pid;
                if u.phase == Phase::Starting {
                    out.push(Action::WatchStartup { unit, gen });
                }
            }
            Event::SpawnFailed { error, .. } => {
                out.push(Action::Note { unit, what: Note::SpawnFailed(error) });
                self.ended(now, unit, Exit::Code(127), out);
            }
            Event::Exited { exit, .. } => {
                out.push(Action::Note { unit, what: Note::Exited(exit) });
                self.ended(now, unit, exit, out);
            }
            Event::Started { .. } => {
                let u = &mut self.units[unit];
                if u.phase != Phase::Starting {
                    return;
                }
                u.phase = Phase::Running;
                u.started_at = Some(now);
                // The startup probe just passed: that is the last probe result until the next.
                u.healthy = Some(true);
                out.push(Action::Note { unit, what: Note::Started });
                out.push(Action::WatchHealth { unit, gen });
                if unit == self.main {
                    self.publish(MainState::Ready, out);
                }
                if self.boot < self.order.len() && self.order[self.boot] == unit {
                    self.boot += 1;
                    self.boot_next(out);
                }
            }
            Event::StartTimedOut { .. } if self.units[unit].phase == Phase::Starting => {
                out.push(Action::Note { unit, what: Note::StartTimedOut });
                self.terminate(unit, out);
            }
            Event::Probe { ok, .. } => self.probe(unit, ok, out),
            Event::BackoffElapsed { .. } if self.units[unit].phase == Phase::BackingOff && !self.shutting_down => {
                self.spawn(unit, out);
            }
            Event::GraceElapsed { .. } if self.units[unit].phase == Phase::Stopping => {
                out.push(Action::Note { unit, what: Note::Killed });
                out.push(Action::Signal { unit, gen, kill: true });
            }
            _ => {}
        }
    }

    fn probe(&mut self, unit: Unit, ok: bool, out: &mut Vec<Action>) {
        let u = &mut self.units[unit];
        if !matches!(u.phase, Phase::Running | Phase::Unhealthy) {
            return;
        }
        if ok {
            u.ok_streak += 1;
            u.fail_streak = 0;
        } else {
            u.fail_streak += 1;
            u.ok_streak = 0;
        }
        if ok && u.ok_streak >= u.success_threshold && u.healthy != Some(true) {
            u.healthy = Some(true);
            if u.phase == Phase::Unhealthy {
                u.phase = Phase::Running;
                out.push(Action::Note { unit, what: Note::Healthy });
                if unit == self.main {
                    self.publish(MainState::Ready, out);
                }
            }
        } else if !ok && u.fail_streak >= u.failure_threshold && u.healthy != Some(false) {
            u.healthy = Some(false);
            out.push(Action::Note { unit, what: Note::Unhealthy });
            if u.liveness {
                u.phase = Phase::Unhealthy;
                if unit == self.main {
                    self.publish(MainState::Unhealthy, out);
                }
                self.terminate(unit, out);
            }
        }
    }

    /// A run ended (exit or failed spawn): restart after the backoff, or carry on stopping.
    fn ended(&mut self, now: Instant, unit: Unit, exit: Exit, out: &mut Vec<Action>) {
        let policy = self.policy.clone();
        let u = &mut self.units[unit];
        u.last_exit = Some(exit);
        u.pid = None;
        u.healthy = None;
        if self.shutting_down {
            u.phase = Phase::Stopped;
            out.push(Action::Note { unit, what: Note::Stopped });
            if unit == self.main {
                self.publish(MainState::Stopped, out);
            }
            self.stop_next(out);
            return;
        }
        if u.retired {
            u.phase = Phase::Stopped;
            out.push(Action::Note { unit, what: Note::Stopped });
            return;
        }
        // A long healthy run earns a fresh backoff.
        if u.started_at.is_some_and(|t| now.saturating_duration_since(t) >= policy.reset_after) {
            u.backoff = policy.initial;
        }
        u.started_at = None;
        u.phase = Phase::BackingOff;
        // A restart asked for grows no backoff; a reload's is no restart of the app at all.
        let delay = if let Some(counted) = u.restart_now.take() {
            u.restarts += u32::from(counted);
            Duration::ZERO
        } else {
            u.restarts += 1;
            let delay = u.backoff;
            u.backoff = (u.backoff * 2).min(policy.max);
            delay
        };
        let gen = u.gen;
        out.push(Action::Note { unit, what: Note::RestartIn(delay) });
        out.push(Action::Timer { after: delay, event: Event::BackoffElapsed { unit, gen } });
        if unit == self.main {
            self.publish(MainState::Restarting, out);
        }
    }

    fn spawn(&mut self, unit: Unit, out: &mut Vec<Action>) {
        let u = &mut self.units[unit];
        u.gen += 1;
        u.phase = Phase::Starting;
        u.ok_streak = 0;
        u.fail_streak = 0;
        out.push(Action::Note { unit, what: Note::Starting { attempt: u.restarts + 1 } });
        out.push(Action::Spawn { unit, gen: u.gen });
    }

    fn boot_next(&mut self, out: &mut Vec<Action>) {
        if self.shutting_down {
            return;
        }
        if let Some(&unit) = self.order.get(self.boot) {
            if self.units[unit].phase == Phase::Waiting {
                self.spawn(unit, out);
            }
        }
    }

    /// SIGTERM now, SIGKILL after the grace period.
    fn terminate(&mut self, unit: Unit, out: &mut Vec<Action>) {
        let grace = self.grace;
        let u = &mut self.units[unit];
        u.phase = Phase::Stopping;
        out.push(Action::Note { unit, what: Note::Stopping });
        out.push(Action::Signal { unit, gen: u.gen, kill: false });
        out.push(Action::Timer { after: grace, event: Event::GraceElapsed { unit, gen: u.gen } });
    }

    /// Stops the next container in stop order (main, then sidecars in reverse), or exits.
    fn stop_next(&mut self, out: &mut Vec<Action>) {
        let stop_order: Vec<Unit> = self.order.iter().rev().copied().collect();
        for unit in stop_order {
            match self.units[unit].phase {
                Phase::Stopped => continue,
                Phase::Waiting | Phase::BackingOff => {
                    self.units[unit].phase = Phase::Stopped;
                    if unit == self.main {
                        self.publish(MainState::Stopped, out);
                    }
                    continue;
                }
                Phase::Stopping => return,
                Phase::Starting | Phase::Running | Phase::Unhealthy => {
                    if unit == self.main {
                        self.publish(MainState::Stopped, out);
                    }
                    self.terminate(unit, out);
                    return;
                }
            }
        }
        let code = match self.units[self.main].last_exit {
            // Ended by the SIGTERM the stop sent it (a shell or the engine's client reports that
            // as 143): main stopped as asked.
            Some(Exit::Signal(15) | Exit::Code(143)) => 0,
            other => other.map_or(0, Exit::as_code),
        };
        out.push(Action::Exit(code));
    }

    fn publish(&mut self, state: MainState, out: &mut Vec<Action>) {
        if self.main_state != state {
            self.main_state = state;
            out.push(Action::PublishMain(state));
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
