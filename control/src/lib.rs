//! sitecar-control: the supervisor that runs the main container and its sidecars, as App
//! Service does: sidecars first in spec order, then main, gated on its warmup path; probes,
//! restarts with backoff, PID 1 duties, a compose-style log stream, and an orderly stop.
//!
//! Main's state goes out on a `tokio::sync::watch` channel ([`Handle::main`]); the binary hands it
//! to the front door.
//!
//! # Layout
//! - [`state`]: the pure core, events in and actions out (start order, backoff, liveness, stop order).
//! - [`supervisor`]: the runner that carries out the actions; [`Supervisor`] and its [`Handle`].
//! - [`runtime`]: process and OCI (docker/podman) runtimes.
//! - [`probe`]: TCP and HTTP probes on pingora-load-balancing's health checks.
//! - [`logs`]: the log stream (console prefixes, per-container rings, App Service log files).
//! - [`ports`]: whether a port is free, and who holds it.
//! - [`storage`]: the shared home, `LogFiles` and volume directories.
//! - [`reaper`]: PID 1 duties: adopting and reaping orphans.
//! - [`reload`]: a running stack's spec re-read on request, the front door's part through a trait.
//! - [`runfile`]: where a running stack's admin API is, for the commands that talk to it.
//! - [`view`]: the stack as the admin API shows it (JSON).
//! - [`usage`]: container metrics for Prometheus, CPU and memory read from /proc.
//! - [`error`]: the crate's [`Error`] type.

pub mod error;
pub mod logs;
pub mod ports;
pub mod probe;
pub mod reaper;
pub mod reload;
pub mod runfile;
pub mod runtime;
pub mod state;
pub mod storage;
pub mod supervisor;
pub mod usage;
pub mod view;

pub use error::Error;
pub use state::{Exit, MainState, Phase};
pub use supervisor::{ContainerStatus, Handle, Options, Supervisor};
