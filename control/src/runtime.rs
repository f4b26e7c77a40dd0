//! How a container is started and signalled: as a child process in its own process group, or
//! through docker/podman with every container of the stack in one shared network namespace.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub name: String,
    pub image: String,
    /// Shell command line (process runtime) or the replacement of the image's command (OCI).
    pub command: Option<String>,
    pub working_dir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// Where sitecar reaches it from the host, for probes (main: also for the front door).
    pub addr: Option<SocketAddr>,
    /// Port it listens on inside its network namespace.
    pub port: Option<u16>,
    /// (host directory, container path, read-only)
    pub mounts: Vec<(PathBuf, String, bool)>,
}

/// An OCI engine and the name of the stack's shared network namespace.
#[derive(Debug, Clone)]
pub struct Oci {
    /// `docker` or `podman` (or a path to either).
    pub engine: String,
    pub podman: bool,
    /// The stack's name (`local.siteName`): every container is labelled with it and named after
    /// it, so a later `up` finds what an earlier one left behind.
    pub stack: String,
    /// Name of the pod (podman) or pause container (docker) whose network all containers join.
    pub pod: String,
    pub pause_image: String,
}

/// The label every container of a stack carries, valued with the stack's name.
pub const STACK_LABEL: &str = "sitecar.stack";

/// Kubernetes' pause image: holds a network namespace and nothing else.
pub const DEFAULT_PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

#[derive(Debug, Clone)]
pub enum Runtime {
    Process,
    Oci(Oci),
}

impl Oci {
    /// Finds docker or podman on PATH (or uses the configured engine).
    pub fn detect(configured: Option<&str>, site: &str, pause_image: Option<&str>) -> Option<Self> {
        let candidates: Vec<&str> = match configured {
            Some(e) => vec![e],
            None => vec!["docker", "podman"],
        };
        let engine = candidates.into_iter().find(|e| on_path(e))?;
        let podman = engine.ends_with("podman");
        Some(Self {
            engine: engine.to_owned(),
            podman,
            stack: site.to_owned(),
            pod: format!("{site}-pod"),
            pause_image: pause_image.unwrap_or(DEFAULT_PAUSE_IMAGE).to_owned(),
        })
    }

    pub fn container_name(&self, name: &str) -> String {
        format!("{}-{name}", self.stack)
    }

    /// A blocking engine call. In a process group of its own, as every child of sitecar: the
    /// reaper (PID 1 duties) takes a zombie that does not lead its group for an orphan.
    fn engine_command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.engine);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c.stdin(Stdio::null());
        c
    }

    /// An engine call awaited on the runtime (see [`Oci::engine_command`]).
    pub fn engine(&self) -> Command {
        let mut c = Command::new(&self.engine);
        c.process_group(0).stdin(Stdio::null());
        c
    }

    /// Where the engine is asked (DOCKER_HOST / CONTAINER_HOST, else the default socket).
    fn socket(&self) -> String {
        let var = if self.podman { "CONTAINER_HOST" } else { "DOCKER_HOST" };
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => format!("{v} ({var})"),
            _ if self.podman => "its default socket".to_owned(),
            _ => "unix:///var/run/docker.sock".to_owned(),
        }
    }

    /// Whether the engine answers; the error is one line naming the socket and the fix.
    pub fn check(&self) -> Result<(), crate::Error> {
        let out = if self.podman {
            self.engine_command().args(["info", "--format", "{{.Host.Arch}}"]).output()
        } else {
            self.engine_command().args(["version", "--format", "{{.Server.Version}}"]).output()
        };
        let why = match out {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => first_line(&o.stderr),
            Err(e) => e.to_string(),
        };
        let fix = if self.podman {
            "start it (systemctl --user start podman.socket) or set CONTAINER_HOST"
        } else {
            "start the daemon (systemctl start docker, or dockerd), or set DOCKER_HOST to where it listens"
        };
        Err(crate::Error::EngineUnreachable(format!(
            "the spec runs containers with {}, but its engine does not answer at {}: {fix} ({why})",
            self.engine,
            self.socket()
        )))
    }

    /// Makes sure the pause image is here: present, or pulled now.
    pub fn ensure_pause_image(&self) -> Result<(), crate::Error> {
        if self.podman {
            return Ok(()); // a pod brings its own infra container
        }
        let present = self.engine_command().args(["image", "inspect", "--format", "{{.Id}}", &self.pause_image]).output();
        if matches!(&present, Ok(o) if o.status.success()) {
            return Ok(());
        }
        let pulled = self.engine_command().args(["pull", "--quiet", &self.pause_image]).output();
        match pulled {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(crate::Error::PauseImage(format!(
                "the image {} that holds the stack's network namespace is not on this machine and cannot be pulled ({}): load or build it, or set local.pauseImage to a local image whose command stays up",
                self.pause_image,
                first_line(&o.stderr)
            ))),
            Err(e) => Err(crate::Error::PauseImage(format!("cannot run {} pull {}: {e}", self.engine, self.pause_image))),
        }
    }

    /// Removes what an earlier run of this stack left behind (sitecar killed before it could
    /// clean up): every container labelled with the stack, and the namespace by name. Returns the
    /// names removed.
    pub fn remove_leftovers(&self, names: &[String]) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let label = format!("label={STACK_LABEL}={}", self.stack);
        if let Ok(o) = self.engine_command().args(["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]).output() {
            found.extend(String::from_utf8_lossy(&o.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
        }
        // Unlabelled ones of the same names would block the new run as much.
        let wanted: Vec<String> = names.iter().map(|n| self.container_name(n)).chain([self.pod.clone()]).collect();
        for name in &wanted {
            if found.contains(name) {
                continue;
            }
            let o = self.engine_command().args(["inspect", "--format", "{{.Name}}", name]).output();
            if matches!(o, Ok(o) if o.status.success()) {
                found.push(name.clone());
            }
        }
        if found.is_empty() {
            return found;
        }
        if self.podman {
            let _ = self.engine_command().args(["pod", "rm", "-f", &self.pod]).output();
        }
        let _ = self.engine_command().args(["rm", "-f"]).args(&found).output();
        found
    }

    /// Arguments that create the shared network namespace, publishing main's port on loopback.
    pub fn pod_args(&self, publish: Option<(u16, u16)>) -> Vec<String> {
        let mut args: Vec<String> = if self.podman {
            vec!["pod".into(), "create".into(), "--name".into(), self.pod.clone()]
        } else {
            vec!["run".into(), "-d".into(), "--rm".into(), "--name".into(), self.pod.clone()]
        };
        args.extend(["--label".into(), format!("{STACK_LABEL}={}", self.stack)]);
        if let Some((host, inner)) = publish {
            args.push("-p".into());
            args.push(format!("127.0.0.1:{host}:{inner}"));
        }
        if !self.podman {
            args.push(self.pause_image.clone());
        }
        args
    }

    /// Arguments of `run` for one container. Values of the environment are not in the
    /// arguments (where `ps` would show them): `-e NAME` makes the engine read them from its own
    /// environment, which the runner sets.
    pub fn run_args(&self, l: &Launch) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), self.container_name(&l.name)];
        args.extend(["--label".into(), format!("{STACK_LABEL}={}", self.stack)]);
        if self.podman {
            args.extend(["--pod".into(), self.pod.clone()]);
        } else {
            args.extend(["--network".into(), format!("container:{}", self.pod)]);
        }
        for k in l.env.keys() {
            args.extend(["-e".into(), k.clone()]);
        }
        for (host, path, ro) in &l.mounts {
            let ro = if *ro { ":ro" } else { "" };
            args.extend(["-v".into(), format!("{}:{path}{ro}", host.display())]);
        }
        args.push(l.image.clone());
        if let Some(cmd) = &l.command {
            args.extend(shell_words::split(cmd).unwrap_or_else(|_| vec![cmd.clone()]));
        }
        args
    }

    /// Arguments that print `true` once the container runs.
    pub fn running_args(&self, name: &str) -> Vec<String> {
        vec!["inspect".into(), "--format".into(), "{{.State.Running}}".into(), self.container_name(name)]
    }

    /// Whether the engine reports the container as running.
    pub async fn is_running(&self, name: &str) -> bool {
        let out = self.engine().args(self.running_args(name)).stderr(Stdio::null()).output().await;
        matches!(out, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
    }

    /// Removes one container (after its attached client ended) and waits until its name is free,
    /// so the next run of it does not meet the old one.
    pub async fn remove(&self, name: &str) {
        let name = self.container_name(name);
        let _ = self.engine().args(["rm", "-f", &name]).output().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let o = self.engine().args(["inspect", "--format", "{{.Id}}", &name]).output().await;
            if !matches!(o, Ok(o) if o.status.success()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The pid (on this host) of the process that holds the stack's network namespace.
    pub fn namespace_pid(&self) -> Option<u32> {
        let holder = if self.podman {
            let o = self.engine_command().args(["pod", "inspect", "--format", "{{.InfraContainerID}}", &self.pod]).output().ok()?;
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        } else {
            self.pod.clone()
        };
        let o = self.engine_command().args(["inspect", "--format", "{{.State.Pid}}", &holder]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok().filter(|&p: &u32| p > 0)
    }

    pub fn cleanup_args(&self) -> Vec<String> {
        if self.podman {
            vec!["pod".into(), "rm".into(), "-f".into(), self.pod.clone()]
        } else {
            vec!["rm".into(), "-f".into(), self.pod.clone()]
        }
    }
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output").to_owned()
}

/// A thread inside the stack's network namespace with a runtime of its own: a socket is created
/// in the namespace of the thread that creates it, so a probe run here reaches
/// `127.0.0.1:<targetPort>` exactly as the containers reach each other.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub handle: tokio::runtime::Handle,
    /// Ends the thread when the stack stops.
    stop: tokio_util::sync::CancellationToken,
}

impl Namespace {
    /// Enters the network namespace of `pid` on a new thread (needs CAP_SYS_ADMIN there).
    pub fn enter(pid: u32) -> std::io::Result<Self> {
        let file = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        std::thread::Builder::new().name("sitecar-netns".into()).spawn(move || {
            if let Err(e) = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Err(std::io::Error::from(e)));
                return;
            }
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(stopped.cancelled());
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })?;
        let handle = rx.recv().map_err(|_| std::io::Error::other("the namespace thread ended"))??;
        Ok(Self { handle, stop })
    }

    pub fn leave(&self) {
        self.stop.cancel();
    }
}

impl Runtime {
    /// The command that runs `l`, with piped output and the environment it must see.
    pub fn command(&self, l: &Launch) -> Command {
        let mut cmd = match self {
            Runtime::Process => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(l.command.as_deref().unwrap_or("false"));
                if let Some(dir) = &l.working_dir {
                    c.current_dir(dir);
                }
                c
            }
            Runtime::Oci(oci) => {
                // The run before this one may still be going away (`--rm` removes it after its
                // client returns): wait until its name is free, then become the engine's client,
                // so the pid sitecar tracks is the attached `run`.
                let engine = shell_words::quote(&oci.engine).into_owned();
                let name = shell_words::quote(&oci.container_name(&l.name)).into_owned();
                let run = shell_words::join(oci.run_args(l));
                let script = format!(
                    "i=0; while {engine} inspect --format . {name} >/dev/null 2>&1 && [ $i -lt 200 ]; do {engine} rm -f {name} >/dev/null 2>&1; sleep 0.05; i=$((i+1)); done; exec {engine} {run}"
                );
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(script);
                // The engine itself needs PATH and friends besides the container's variables.
                c.envs(
                    std::env::vars()
                        .filter(|(k, _)| matches!(k.as_str(), "PATH" | "HOME" | "DOCKER_HOST" | "XDG_RUNTIME_DIR" | "CONTAINER_HOST")),
                );
                c
            }
        };
        if matches!(self, Runtime::Process) {
            cmd.env_clear();
        }
        cmd.envs(&l.env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(false);
        cmd
    }

    /// Delivers SIGTERM or SIGKILL to the container: its whole process group, or via the engine.
    pub async fn signal(&self, name: &str, pid: u32, kill: bool) {
        let signal = if kill { Signal::SIGKILL } else { Signal::SIGTERM };
        match self {
            Runtime::Process => {
                if let Err(e) = killpg(Pid::from_raw(pid as i32), signal) {
                    tracing::debug!(container = name, error = %e, "signal");
                }
            }
            Runtime::Oci(oci) => {
                let sig = if kill { "KILL" } else { "TERM" };
                let status = oci
                    .engine()
                    .args(["kill", "--signal", sig, &oci.container_name(name)])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await;
                if !matches!(status, Ok(s) if s.success()) && kill {
                    // The container is gone or the engine is stuck: end the attached client at least.
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        }
    }
}

/// After the process sitecar started for a container has exited, ends the rest of its process
/// group: SIGTERM, then SIGKILL to whatever is left after `grace`. Returns once the group is empty
/// (or after the SIGKILL), so a restart never meets an orphan holding its port.
pub async fn end_group(pgid: u32, grace: std::time::Duration) {
    let group = Pid::from_raw(pgid as i32);
    let alive = || killpg(group, None).is_ok();
    if !alive() {
        return;
    }
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = std::time::Instant::now() + grace;
    while alive() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if alive() {
        let _ = killpg(group, Signal::SIGKILL);
        // Gone once reaped (by sitecar as a subreaper, or by init).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn on_path(cmd: &str) -> bool {
    if cmd.contains('/') {
        return std::path::Path::new(cmd).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(cmd).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            name: "web".into(),
            image: "myacr.azurecr.io/web:1.4".into(),
            command: Some("./run.sh --prod 'two words'".into()),
            working_dir: None,
            env: [("A".to_string(), "1".to_string()), ("SECRET".into(), "s3cr3t".into())].into(),
            addr: None,
            port: Some(8080),
            mounts: vec![("/data/v/cache".into(), "/var/cache/app".into(), false), ("/data/v/cfg".into(), "/etc/cfg".into(), true)],
        }
    }

    #[test]
    fn docker_joins_the_pause_containers_network() {
        let oci = Oci {
            engine: "docker".into(),
            podman: false,
            stack: "shop".into(),
            pod: "shop-pod".into(),
            pause_image: "registry.k8s.io/pause:3.10".into(),
        };
        assert_eq!(
            oci.pod_args(Some((18080, 8080))),
            [
                "run",
                "-d",
                "--rm",
                "--name",
                "shop-pod",
                "--label",
                "sitecar.stack=shop",
                "-p",
                "127.0.0.1:18080:8080",
                "registry.k8s.io/pause:3.10"
            ]
        );
        assert_eq!(
            oci.run_args(&launch()),
            [
                "run",
                "--rm",
                "--name",
                "shop-web",
                "--label",
                "sitecar.stack=shop",
                "--network",
                "container:shop-pod",
                "-e",
                "A",
                "-e",
                "SECRET",
                "-v",
                "/data/v/cache:/var/cache/app",
                "-v",
                "/data/v/cfg:/etc/cfg:ro",
                "myacr.azurecr.io/web:1.4",
                "./run.sh",
                "--prod",
                "two words"
            ]
        );
        assert!(!oci.run_args(&launch()).iter().any(|a| a.contains("s3cr3t")), "secret values never go on the command line");
        assert_eq!(oci.cleanup_args(), ["rm", "-f", "shop-pod"]);
    }

    #[test]
    fn podman_uses_a_pod() {
        let oci = Oci { engine: "podman".into(), podman: true, stack: "shop".into(), pod: "shop-pod".into(), pause_image: String::new() };
        assert_eq!(
            oci.pod_args(Some((18080, 8080))),
            ["pod", "create", "--name", "shop-pod", "--label", "sitecar.stack=shop", "-p", "127.0.0.1:18080:8080"]
        );
        let args = oci.run_args(&launch());
        assert_eq!(&args[..8], ["run", "--rm", "--name", "shop-web", "--label", "sitecar.stack=shop", "--pod", "shop-pod"]);
        assert_eq!(oci.cleanup_args(), ["pod", "rm", "-f", "shop-pod"]);
    }
}
