//! Errors of preparing or running a stack.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create {}: {source}", path.display())]
    Storage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free port for main on 127.0.0.1: {0}")]
    NoPort(#[source] std::io::Error),
    #[error("the spec needs an OCI runtime, but neither docker nor podman was found on PATH; install one, or give every container a command (local.containers.<name>.command) to run it as a process")]
    NoEngine,
    /// A container's port is taken before anything started.
    #[error("container {container}: port {port} is already in use{holder}; nothing was started")]
    PortTaken { container: String, port: u16, holder: String },
    /// The engine is installed but does not answer (its daemon is not running, or its socket is
    /// not ours to use).
    #[error("{0}; nothing was started")]
    EngineUnreachable(String),
    /// The image that holds the stack's network namespace is missing and cannot be pulled.
    #[error("{0}; nothing was started")]
    PauseImage(String),
}
