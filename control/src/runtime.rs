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
    /// Name of the pod (podman) or pause container (docker) whose network all containers join.
    pub pod: String,
    pub pause_image: String,
}

#[derive(Debug, Clone)]
pub enum Runtime {
    Process,
    Oci(Oci),
}

impl Oci {
    /// Finds docker or podman on PATH (or uses the configured engine).
    pub fn detect(configured: Option<&str>, site: &str) -> Option<Self> {
        let candidates: Vec<&str> = match configured {
            Some(e) => vec![e],
            None => vec!["docker", "podman"],
        };
        let engine = candidates.into_iter().find(|e| on_path(e))?;
        let podman = engine.ends_with("podman");
        Some(Self { engine: engine.to_owned(), podman, pod: format!("{site}-pod"), pause_image: "registry.k8s.io/pause:3.10".into() })
    }

    pub fn container_name(&self, name: &str) -> String {
        format!("{}-{name}", self.pod.trim_end_matches("-pod"))
    }

    /// Arguments that create the shared network namespace, publishing main's port on loopback.
    pub fn pod_args(&self, publish: Option<(u16, u16)>) -> Vec<String> {
        let mut args: Vec<String> = if self.podman {
            vec!["pod".into(), "create".into(), "--name".into(), self.pod.clone()]
        } else {
            vec!["run".into(), "-d".into(), "--rm".into(), "--name".into(), self.pod.clone()]
        };
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
        let out = Command::new(&self.engine).args(self.running_args(name)).stdin(Stdio::null()).stderr(Stdio::null()).output().await;
        matches!(out, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
    }

    pub fn cleanup_args(&self) -> Vec<String> {
        if self.podman {
            vec!["pod".into(), "rm".into(), "-f".into(), self.pod.clone()]
        } else {
            vec!["rm".into(), "-f".into(), self.pod.clone()]
        }
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
                let mut c = Command::new(&oci.engine);
                c.args(oci.run_args(l));
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
                let status = Command::new(&oci.engine)
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
        let oci = Oci { engine: "docker".into(), podman: false, pod: "shop-pod".into(), pause_image: "registry.k8s.io/pause:3.10".into() };
        assert_eq!(
            oci.pod_args(Some((18080, 8080))),
            ["run", "-d", "--rm", "--name", "shop-pod", "-p", "127.0.0.1:18080:8080", "registry.k8s.io/pause:3.10"]
        );
        assert_eq!(
            oci.run_args(&launch()),
            [
                "run",
                "--rm",
                "--name",
                "shop-web",
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
        let oci = Oci { engine: "podman".into(), podman: true, pod: "shop-pod".into(), pause_image: String::new() };
        assert_eq!(oci.pod_args(Some((18080, 8080))), ["pod", "create", "--name", "shop-pod", "-p", "127.0.0.1:18080:8080"]);
        let args = oci.run_args(&launch());
        assert_eq!(&args[..6], ["run", "--rm", "--name", "shop-web", "--pod", "shop-pod"]);
        assert_eq!(oci.cleanup_args(), ["pod", "rm", "-f", "shop-pod"]);
    }
}
