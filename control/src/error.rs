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
    #[error("the spec needs an OCI runtime, but neither docker nor podman was found on PATH")]
    NoEngine,
}
