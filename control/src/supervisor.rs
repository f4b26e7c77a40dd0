//! The runner: carries out the core's actions with real processes, probes and timers, and
//! publishes main's state and every container's status on watch channels.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sitecar_config::env::{container_env, HostFacts};
use sitecar_config::{Runtime as RuntimeKind, Spec};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::logs::{LogOptions, LogStream, Stream};
use crate::reaper::{self, Tracked};
use crate::runtime::{Launch, Namespace, Oci, Runtime};
use crate::state::{Action, Core, Event, Exit, MainState, Note, Phase, Unit};
use crate::storage::{absolute, Storage};

mod probing;
mod reload;

/// How the supervisor runs besides the spec.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Relative paths of the spec (storage root, working dirs) are taken from here.
    pub base_dir: PathBuf,
    /// Print the log stream to stdout.
    pub console: bool,
    pub colour: bool,
    /// PID 1 duties: adopt and reap orphans, kill leftovers at the end. Only for a process that
    /// owns its children alone (the binary), never inside a test harness.
    pub adopt_orphans: bool,
}

/// One container as `/status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub is_main: bool,
    pub phase: Phase,
    pub pid: Option<u32>,
    /// Where sitecar reaches it.
    pub addr: Option<SocketAddr>,
    /// The port it listens on in its own network namespace (its targetPort, or main's internal
    /// port in process mode).
    pub port: Option<u16>,
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    /// Milliseconds since the epoch when the current run passed its startup probe.
    pub started_at_ms: Option<u64>,
    pub healthy: Option<bool>,
    /// Periodic probes run, failed, and how long the last one took.
    pub probes: u64,
    pub probe_failures: u64,
    pub probe_last_seconds: Option<f64>,
}

/// Counts of one container's periodic probes, across its runs.
#[derive(Debug, Clone, Copy, Default)]
struct ProbeStats {
    probes: u64,
    failures: u64,
    last_seconds: Option<f64>,
}

/// The answer to a reload: the containers restarted, or why nothing changed.
type ReloadReply = oneshot::Sender<Result<Vec<String>, String>>;

/// What other parts of the program (the front door, the admin API) hold of a running stack.
#[derive(Debug, Clone)]
pub struct Handle {
    pub main: watch::Receiver<MainState>,
    /// Where the front door forwards: main's port on loopback.
    pub main_addr: SocketAddr,
    pub status: watch::Receiver<Vec<ContainerStatus>>,
    pub logs: LogStream,
    events: mpsc::UnboundedSender<Event>,
    /// Container names by unit; a retired unit's is empty.
    names: Arc<std::sync::RwLock<Vec<String>>>,
    reloads: mpsc::UnboundedSender<(Arc<Spec>, ReloadReply)>,
}

impl Handle {
    /// Runs a new (valid) spec: the containers whose launch changed are restarted, sidecars in
    /// spec order then main, each with the ordering rules of a restart; the others keep running.
    /// Returns the names restarted, or why the spec cannot be taken without restarting sitecar
    /// (then nothing changed).
    pub async fn reload(&self, spec: Arc<Spec>) -> Result<Vec<String>, String> {
        let (tx, rx) = oneshot::channel();
        self.reloads.send((spec, tx)).map_err(|_| "the stack is stopping".to_owned())?;
        rx.await.map_err(|_| "the stack is stopping".to_owned())?
    }

    /// Restarts one container by name; false when there is none.
    pub fn restart(&self, name: &str) -> bool {
        let unit = self.names.read().ok().and_then(|n| n.iter().position(|n| !n.is_empty() && n == name));
        match unit {
            Some(unit) => self.events.send(Event::Restart { unit, reload: false }).is_ok(),
            None => false,
        }
    }
}

/// A prepared stack: storage created, ports chosen, environments built; nothing runs yet.
pub struct Supervisor {
    spec: Arc<Spec>,
    runtime: Runtime,
    launches: Vec<Launch>,
    logs: LogStream,
    options: Options,
    main_unit: Unit,
    /// Why main listens where it does, for the error when it never answers.
    port_note: Option<String>,
    main_tx: watch::Sender<MainState>,
    status_tx: watch::Sender<Vec<ContainerStatus>>,
    probe_stats: Arc<std::sync::Mutex<Vec<ProbeStats>>>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    reloads_rx: mpsc::UnboundedReceiver<(Arc<Spec>, ReloadReply)>,
    main_host_port: u16,
    hostname: String,
    handle: Handle,
    /// Under an OCI runtime: a thread inside the stack's network namespace, where probes reach
    /// every container on `127.0.0.1:<targetPort>` as they reach each other.
    namespace: Option<Namespace>,
}

/// What each container of `spec` is started with.
fn launches(
    spec: &Spec,
    runtime: &Runtime,
    storage: &Storage,
    main_host_port: u16,
    base_dir: &std::path::Path,
    hostname: &str,
) -> Vec<Launch> {
    let oci = matches!(runtime, Runtime::Oci(_));
    let basics = HostFacts::basics_from(std::env::vars());
    spec.containers
        .iter()
        .map(|c| {
            let host = HostFacts { basics: basics.clone(), home: storage.home(c), instance_id: hostname.to_owned() };
            let inner_port = if c.is_main && matches!(runtime, Runtime::Process) { Some(main_host_port) } else { c.target_port };
            let addr = if c.is_main {
                Some(SocketAddr::from((Ipv4Addr::LOCALHOST, main_host_port)))
            } else if matches!(runtime, Runtime::Process) {
                c.target_port.map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            } else {
                None // OCI sidecars listen inside the stack's namespace only
            };
            let mut env = container_env(spec, c, inner_port, &host);
            if oci {
                // The image's own PATH and user stay; only locale and time zone come along.
                for k in ["PATH", "TMPDIR", "USER", "TERM", "SSL_CERT_FILE", "SSL_CERT_DIR"] {
                    env.remove(k);
                }
                env.insert("HOME".into(), "/home".into());
            }
            Launch {
                name: c.name.clone(),
                image: c.image.clone(),
                command: match runtime {
                    Runtime::Process => c.process_command().map(str::to_owned),
                    Runtime::Oci(_) => c.startup_command.clone(),
                },
                working_dir: c.local.as_ref().and_then(|l| l.working_dir.as_ref()).map(|d| absolute(base_dir, d)),
                env,
                addr,
                port: inner_port,
                mounts: c
                    .volume_mounts
                    .iter()
                    .map(|m| (storage.volume(&m.volume_sub_path), m.container_mount_path.clone(), m.read_only))
                    .collect(),
            }
        })
        .collect::<Vec<_>>()
}

fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::NoPort)?;
    Ok(l.local_addr().map_err(Error::NoPort)?.port())
}

impl Supervisor {
    pub fn prepare(spec: Arc<Spec>, options: Options) -> Result<Self, Error> {
        let runtime = match spec.runtime {
            RuntimeKind::Process => Runtime::Process,
            RuntimeKind::Oci => {
                let oci = Oci::detect(spec.local.engine.as_deref(), &spec.local.site_name, spec.local.pause_image.as_deref())
                    .ok_or(Error::NoEngine)?;
                oci.check()?;
                oci.ensure_pause_image()?;
                Runtime::Oci(oci)
            }
        };
        // Storage only once the runtime is known to work: a stack that cannot start leaves nothing.
        let storage = Storage::prepare(&spec, &options.base_dir)?;
        let main = spec.main();
        let main_unit = spec.containers.iter().position(|c| c.is_main).unwrap_or(0);
        let front: Vec<u16> =
            spec.reserved_ports().into_iter().filter(|(_, owner)| *owner != sitecar_config::ADMIN_OWNER).map(|(p, _)| p).collect();

        // Main's port on this host: its targetPort, unless the front door owns that port. With an
        // OCI runtime main listens in the stack's own namespace and is published on a free
        // loopback port instead, so nothing on the host can be in its way.
        let target = main.target_port.unwrap_or(80);
        let oci = matches!(runtime, Runtime::Oci(_));
        let (main_host_port, port_note) = if oci {
            (main.local.as_ref().and_then(|l| l.port).map_or_else(free_port, Ok)?, None)
        } else if front.contains(&target) {
            let port = match main.local.as_ref().and_then(|l| l.port) {
                Some(p) => p,
                None => free_port()?,
            };
            let note = format!(
                "main's targetPort {target} is a front-door port, so main listens on internal port {port} (PORT and WEBSITES_PORT say so); pin it with local.containers.{}.port",
                main.name
            );
            (port, Some(note))
        } else {
            (target, None)
        };

        // Every container shares this host's localhost in process mode: a port someone else
        // holds now would make its container fail, or worse, look started when the stranger
        // answers its probe.
        if matches!(runtime, Runtime::Process) {
            for c in &spec.containers {
                let port = if c.is_main { Some(main_host_port) } else { c.target_port };
                if let Some(port) = port.filter(|&p| crate::ports::taken(p)) {
                    return Err(Error::PortTaken { container: c.name.clone(), port, holder: crate::ports::holder(port) });
                }
            }
        }
        let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
        let launches = launches(&spec, &runtime, &storage, main_host_port, &options.base_dir, &hostname);

        let names: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
        let logs = LogStream::new(
            &names,
            LogOptions { console: options.console, colour: options.colour, dir: Some(storage.log_dir()), host: hostname.clone() },
        );
        let (main_tx, main_rx) = watch::channel(MainState::Starting);
        let (status_tx, status_rx) = watch::channel(Vec::new());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (reloads_tx, reloads_rx) = mpsc::unbounded_channel();
        let handle = Handle {
            main: main_rx,
            main_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, main_host_port)),
            status: status_rx,
            logs: logs.clone(),
            events: events_tx.clone(),
            names: Arc::new(std::sync::RwLock::new(names)),
            reloads: reloads_tx,
        };
        let probe_stats = Arc::new(std::sync::Mutex::new(vec![ProbeStats::default(); spec.containers.len()]));
        if let Runtime::Oci(oci) = &runtime {
            let left = oci.remove_leftovers(&spec.containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>());
            if !left.is_empty() {
                logs.event("sitecar", &format!("removed what an earlier run of this stack left behind: {}", left.join(", ")));
            }
        }
        Ok(Self {
            spec,
            runtime,
            launches,
            logs,
            options,
            main_unit,
            port_note,
            main_tx,
            status_tx,
            probe_stats,
            events_tx,
            events_rx,
            reloads_rx,
            main_host_port,
            hostname,
            handle,
            namespace: None,
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs the stack until `shutdown` is cancelled and everything has stopped; returns the exit
    /// code for the process (main's).
    pub async fn run(mut self, shutdown: CancellationToken) -> i32 {
        let tracked: Tracked = Arc::default();
        let reaper_stop = CancellationToken::new();
        if self.options.adopt_orphans {
            reaper::become_subreaper();
            tokio::spawn(reaper::run(tracked.clone(), reaper_stop.clone()));
        }
        if let Some(note) = &self.port_note {
            self.logs.event(&self.spec.main().name, note);
        }
        if matches!(self.runtime, Runtime::Process) {
            // Launches follow spec order, and their mounts the container's mount order.
            for (c, launch) in self.spec.containers.iter().zip(&self.launches) {
                for (m, (host_dir, _, _)) in c.volume_mounts.iter().zip(&launch.mounts) {
                    let dir = host_dir.display();
                    self.logs.event(
                        &c.name,
                        &format!(
                            "volume {} is the directory {dir} (process mode cannot mount it at {}{})",
                            m.volume_sub_path,
                            m.container_mount_path,
                            if m.read_only { ", nor make it read-only" } else { "" }
                        ),
                    );
                }
            }
        }
        if let Runtime::Oci(oci) = &self.runtime {
            let main = &self.launches[self.main_unit];
            let publish = main.port.zip(main.addr.map(|a| a.port())).map(|(inner, host)| (host, inner));
            let out = oci.engine().args(oci.pod_args(publish)).output().await;
            match out {
                Ok(o) if o.status.success() => {}
                other => {
                    let why = match other {
                        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                        Err(e) => e.to_string(),
                    };
                    self.logs.event(
                        "sitecar",
                        &format!(
                            "cannot create the stack's network namespace ({}) with {}: {why}; nothing was started",
                            oci.pod, oci.engine
                        ),
                    );
                    let _ = oci.engine().args(oci.cleanup_args()).output().await;
                    return 1;
                }
            }
            match oci.namespace_pid().ok_or_else(|| std::io::Error::other("the engine did not say its pid")).and_then(Namespace::enter) {
                Ok(ns) => self.namespace = Some(ns),
                Err(e) => self.logs.event(
                    "sitecar",
                    &format!(
                        "cannot enter the stack's network namespace ({e}): sidecars count as started when the engine runs them, unprobed"
                    ),
                ),
            }
        }

        let mut core = Core::new(&self.spec);
        // Each unit's current run, for its probe tasks to notice that their run has ended.
        let mut gens: Vec<Arc<AtomicU64>> = self.spec.containers.iter().map(|_| Arc::default()).collect();
        let mut pids: HashMap<Unit, (u64, u32)> = HashMap::new();
        let mut started_wall: HashMap<Unit, u64> = HashMap::new();
        let mut pending = vec![Event::Up];
        let mut shutdown_sent = false;
        let code = 'outer: loop {
            for event in pending.drain(..) {
                let now = Instant::now();
                for action in core.on_event(now, event) {
                    if let Some(code) = self.act(action, &gens, &mut pids, &mut started_wall, &tracked) {
                        break 'outer code;
                    }
                }
            }
            self.publish_status(&core, &started_wall);
            tokio::select! {
                _ = shutdown.cancelled(), if !shutdown_sent => {
                    shutdown_sent = true;
                    pending.push(Event::Shutdown);
                }
                Some(ev) = self.events_rx.recv() => pending.push(ev),
                Some((spec, reply)) = self.reloads_rx.recv(), if !shutdown_sent => {
                    let result = self.take(spec, &mut core);
                    let answer = match result {
                        Ok(plan) => {
                            gens.resize_with(self.launches.len(), Arc::default);
                            for action in plan.actions {
                                if let Some(code) = self.act(action, &gens, &mut pids, &mut started_wall, &tracked) {
                                    break 'outer code;
                                }
                            }
                            pending.extend(plan.restart.iter().map(|&unit| Event::Restart { unit, reload: true }));
                            Ok(plan.summary)
                        }
                        Err(why) => Err(why),
                    };
                    let _ = reply.send(answer);
                }
            }
        };
        self.publish_status(&core, &started_wall);
        if let Runtime::Oci(oci) = &self.runtime {
            // Nothing of the stack outlives it: each container, then the namespace.
            for l in &self.launches {
                oci.remove(&l.name).await;
            }
            let _ = oci.engine().args(oci.cleanup_args()).output().await;
        }
        if let Some(ns) = &self.namespace {
            ns.leave();
        }
        reaper_stop.cancel();
        if self.options.adopt_orphans {
            reaper::kill_leftovers(&tracked);
        }
        code
    }

    fn publish_status(&self, core: &Core, started_wall: &HashMap<Unit, u64>) {
        let stats = self.probe_stats.lock().map(|s| s.clone()).unwrap_or_default();
        let list = core
            .units
            .iter()
            .enumerate()
            .filter(|(_, u)| !u.retired)
            .map(|(i, u)| ContainerStatus {
                name: u.name.clone(),
                image: self.launches[i].image.clone(),
                is_main: u.is_main,
                phase: u.phase,
                pid: u.pid,
                addr: self.launches[i].addr,
                port: self.launches[i].port,
                restarts: u.restarts,
                last_exit: u.last_exit,
                started_at_ms: started_wall.get(&i).copied().filter(|_| u.started_at.is_some()),
                healthy: u.healthy,
                probes: stats.get(i).map_or(0, |s| s.probes),
                probe_failures: stats.get(i).map_or(0, |s| s.failures),
                probe_last_seconds: stats.get(i).and_then(|s| s.last_seconds),
            })
            .collect();
        self.status_tx.send_replace(list);
    }

    /// Carries out one action; `Some(code)` when the stack has stopped.
    fn act(
        &self,
        action: Action,
        gens: &[Arc<AtomicU64>],
        pids: &mut HashMap<Unit, (u64, u32)>,
        started_wall: &mut HashMap<Unit, u64>,
        tracked: &Tracked,
    ) -> Option<i32> {
        match action {
            Action::Spawn { unit, gen } => {
                gens[unit].store(gen, Ordering::SeqCst);
                let launch = &self.launches[unit];
                if let (Runtime::Process, Some(port)) = (&self.runtime, launch.port) {
                    if crate::ports::taken(port) {
                        let error = format!("port {port} is already in use{}, so it cannot listen there", crate::ports::holder(port));
                        let _ = self.events_tx.send(Event::SpawnFailed { unit, gen, error });
                        return None;
                    }
                }
                match self.runtime.command(launch).spawn() {
                    Ok(mut child) => {
                        let pid = child.id();
                        if let Some(pid) = pid {
                            pids.insert(unit, (gen, pid));
                            if let Ok(mut t) = tracked.lock() {
                                t.insert(pid);
                            }
                        }
                        let name: Arc<str> = launch.name.as_str().into();
                        if let Some(out) = child.stdout.take() {
                            tokio::spawn(self.logs.clone().pump(name.clone(), Stream::Stdout, out));
                        }
                        if let Some(err) = child.stderr.take() {
                            tokio::spawn(self.logs.clone().pump(name, Stream::Stderr, err));
                        }
                        let tx = self.events_tx.clone();
                        let tracked = tracked.clone();
                        let runtime = self.runtime.clone();
                        let grace = self.spec.local.grace_period;
                        tokio::spawn(async move {
                            let exit = match child.wait().await {
                                Ok(s) => s.code().map(Exit::Code).or(s.signal().map(Exit::Signal)).unwrap_or(Exit::Code(-1)),
                                Err(_) => Exit::Code(-1),
                            };
                            if let (Some(pid), Ok(mut t)) = (pid, tracked.lock()) {
                                t.remove(&pid);
                            }
                            // A container is all of its processes: nothing of this run outlives it
                            // to keep its port from the next one.
                            // (An engine's container goes with its attached client, `--rm`; the
                            // next run waits for its name to be free.)
                            if let (Runtime::Process, Some(pid)) = (&runtime, pid) {
                                crate::runtime::end_group(pid, grace).await;
                            }
                            let _ = tx.send(Event::Exited { unit, gen, exit });
                        });
                        let _ = self.events_tx.send(Event::Spawned { unit, gen, pid });
                    }
                    Err(e) => {
                        let _ = self.events_tx.send(Event::SpawnFailed { unit, gen, error: e.to_string() });
                    }
                }
            }
            Action::WatchStartup { unit, gen } => self.watch_startup(unit, gen, gens[unit].clone()),
            Action::WatchHealth { unit, gen } => {
                started_wall
                    .insert(unit, SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0));
                self.watch_health(unit, gen, gens[unit].clone());
            }
            Action::Signal { unit, gen, kill } => {
                if let Some(&(g, pid)) = pids.get(&unit) {
                    if g == gen {
                        let runtime = self.runtime.clone();
                        let name = self.launches[unit].name.clone();
                        tokio::spawn(async move { runtime.signal(&name, pid, kill).await });
                    }
                }
            }
            Action::Timer { after, event } => {
                let tx = self.events_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(event);
                });
            }
            Action::PublishMain(state) => {
                self.main_tx.send_replace(state);
            }
            Action::Note { unit, what } => self.note(unit, what),
            Action::Exit(code) => return Some(code),
        }
        None
    }

    fn note(&self, unit: Unit, what: Note) {
        let name = &self.launches[unit].name;
        let text = match &what {
            Note::Starting { attempt } => {
                let mut t = "starting".to_string();
                if *attempt > 1 {
                    t.push_str(&format!(" (attempt {attempt})"));
                }
                // What main was given to listen on, whatever the spec said.
                if let (true, Some(port)) = (unit == self.main_unit, self.launches[unit].port) {
                    t.push_str(&format!(", PORT={port}"));
                }
                t
            }
            Note::Started => match self.launches[unit].addr {
                Some(a) => format!("started, answering on {a}"),
                None => "started".into(),
            },
            Note::Exited(exit) => format!("exited with {exit}"),
            Note::SpawnFailed(e) => format!("cannot start: {e}"),
            Note::StartTimedOut => {
                let limit = self.spec.platform.start_time_limit.as_secs();
                let (probed, place) = self.probe_target(&self.launches[unit]);
                let inside = if place.is_some() { " inside the stack's network namespace" } else { "" };
                let mut t = match probed {
                    Some(a) if unit == self.main_unit => format!(
                        "did not answer GET {} on {a}{inside} within {limit} s (WEBSITES_CONTAINER_START_TIME_LIMIT)",
                        self.spec.platform.warmup_path
                    ),
                    Some(a) => format!("did not accept connections on {a}{inside} within {limit} s"),
                    None => format!("did not start within {limit} s"),
                };
                if let (Some(n), true) = (&self.port_note, unit == self.main_unit) {
                    t.push_str("; ");
                    t.push_str(n);
                }
                t
            }
            Note::Unhealthy => "unhealthy: probes are failing".into(),
            Note::Healthy => "healthy again".into(),
            Note::RestartIn(d) => format!("restarting in {:.1} s", d.as_secs_f64()),
            Note::Stopping => "stopping (SIGTERM)".into(),
            Note::Killed => format!("still running after the {} s grace period: SIGKILL", self.spec.local.grace_period.as_secs()),
            Note::Stopped => "stopped".into(),
        };
        tracing::info!(container = %name, "{text}");
        self.logs.event(name, &text);
    }
}
