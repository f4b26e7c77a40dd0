//! The admin API's view of a stack `sitecar up` supervises: the supervisor's JSON (see
//! `sitecar_control::view`), its restarts, reloads and orderly stop.

use std::sync::Mutex;

use sitecar_control::reload::Requests;
use sitecar_control::usage::ContainerMetrics;
use sitecar_control::Handle;
use sitecar_proxy::admin::StackView;
use tokio::sync::watch;

pub struct Stack {
    pub handle: Handle,
    pub ready: watch::Receiver<bool>,
    pub listeners: Vec<String>,
    pub metrics: Mutex<ContainerMetrics>,
    /// Asks the reloader of `sitecar up` to re-read the spec.
    pub reload: Option<Requests>,
    /// Starts the orderly stop (`sitecar down`), as SIGTERM does.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl StackView for Stack {
    fn ready(&self) -> bool {
        *self.ready.borrow()
    }

    fn status(&self) -> serde_json::Value {
        self.handle.status_json(&self.listeners)
    }

    fn logs(&self, name: &str, lines: usize) -> Option<serde_json::Value> {
        self.handle.logs_json(name, lines)
    }

    fn shutdown(&self) -> bool {
        self.shutdown.cancel();
        true
    }

    fn restart(&self, name: &str) -> bool {
        self.handle.restart(name)
    }

    fn reload(&self) -> Option<tokio::sync::oneshot::Receiver<Result<Vec<String>, Vec<String>>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.reload.as_ref()?.send(Some(tx)).ok()?;
        Some(rx)
    }

    fn follow(&self, name: &str) -> Option<tokio::sync::mpsc::Receiver<String>> {
        self.handle.follow_json(name)
    }

    fn refresh_metrics(&self) {
        let statuses = self.handle.status.borrow().clone();
        if let Ok(mut m) = self.metrics.lock() {
            m.update(&statuses);
        }
    }
}
