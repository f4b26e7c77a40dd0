//! What the front door and the admin API see of a supervised stack: main's readiness, and as
//! JSON every container's status with its CPU and memory from [`crate::usage`], recent log
//! lines, and a container's log as it grows.

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};

use crate::supervisor::{ContainerStatus, Handle};
use crate::usage::group_usage;
use crate::MainState;

fn container_json(c: &ContainerStatus) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let (Some(pid), Some(obj)) = (c.pid, v.as_object_mut()) {
        let (cpu, rss) = group_usage(pid);
        obj.insert("cpu_seconds".into(), json!(cpu));
        obj.insert("rss_bytes".into(), json!(rss));
    }
    v
}

impl Handle {
    /// Whether main is ready for traffic, as the front door's gate needs it.
    pub fn ready(&self) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let mut main = self.main.clone();
        tokio::spawn(async move {
            loop {
                tx.send_replace(*main.borrow_and_update() == MainState::Ready);
                if main.changed().await.is_err() {
                    break;
                }
            }
        });
        rx
    }

    fn knows(&self, name: &str) -> bool {
        self.status.borrow().iter().any(|c| c.name == name)
    }

    /// Main's state and address, every container, and the front door's listeners.
    pub fn status_json(&self, listeners: &[String]) -> Value {
        let containers: Vec<Value> = self.status.borrow().iter().map(container_json).collect();
        json!({
            "main": *self.main.borrow(),
            "main_addr": self.main_addr.to_string(),
            "containers": containers,
            "proxy": {"listen": listeners},
        })
    }

    /// A container's last `lines` log lines, oldest first; `None` when there is no such container.
    pub fn logs_json(&self, name: &str, lines: usize) -> Option<Value> {
        if !self.knows(name) {
            return None;
        }
        serde_json::to_value(self.logs.recent(name, lines)).ok()
    }

    /// A container's new log lines as JSON, until the receiver is dropped; `None` when there is
    /// no such container.
    pub fn follow_json(&self, name: &str) -> Option<mpsc::Receiver<String>> {
        if !self.knows(name) {
            return None;
        }
        let mut lines = self.logs.subscribe();
        let (tx, rx) = mpsc::channel(256);
        let name = name.to_owned();
        tokio::spawn(async move {
            loop {
                match lines.recv().await {
                    Ok(line) if *line.container == *name => {
                        let json = serde_json::to_string(&line).unwrap_or_default();
                        if tx.send(json).await.is_err() {
                            return; // the client went away
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Some(rx)
    }
}
