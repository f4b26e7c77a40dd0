//! Reloading a running stack: the spec re-read on request (SIGHUP, `--watch`, the admin API),
//! one request at a time. An invalid spec is logged with every problem and changes nothing; a
//! valid one first gets what the front door needs that can fail (listeners, certificates), then
//! restarts the containers whose launch changed, then hands the front door its new settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sitecar_config::{LoadError, LoadOptions, Spec};
use tokio::sync::{mpsc, oneshot};

use crate::supervisor::Handle;

/// Where a reload re-reads the spec from.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: PathBuf,
    pub options: LoadOptions,
    /// Reload when the file changes (`--watch`).
    pub watch: bool,
}

/// Where the answer to a reload goes: the containers restarted, or every problem.
pub type Answer = oneshot::Sender<Result<Vec<String>, Vec<String>>>;

/// Reload requests: from SIGHUP and `--watch` (no one waits for the answer) or the admin API.
pub type Requests = mpsc::UnboundedSender<Option<Answer>>;

/// The front door's part of a reload, which the supervisor does not know.
pub trait Front: Send {
    /// What the new spec needs, got before anything changes (new listeners...).
    type Fresh: Send;
    /// Gets it, or says why the new spec cannot be taken (then nothing changes).
    fn prepare(&mut self, old: &Spec, new: &Spec) -> Result<Self::Fresh, String>;
    /// The containers took the new spec: the front door takes it too.
    fn commit(&mut self, spec: &Arc<Spec>, fresh: Self::Fresh);
}

/// Serves reload requests until every sender is gone.
pub async fn serve<F: Front>(
    source: Source,
    mut requests: mpsc::UnboundedReceiver<Option<Answer>>,
    handle: Handle,
    mut current: Arc<Spec>,
    mut front: F,
) {
    while let Some(answer) = requests.recv().await {
        let result = reload(&source, &handle, &current, &mut front).await;
        match &result {
            Ok((_, spec)) => current = spec.clone(),
            Err(problems) => {
                handle.logs.event("sitecar", &format!("reload refused, the running stack is unchanged: {}", problems.join("; ")))
            }
        }
        if let Some(answer) = answer {
            let _ = answer.send(result.map(|(restarted, _)| restarted));
        }
    }
}

async fn reload<F: Front>(
    source: &Source,
    handle: &Handle,
    current: &Spec,
    front: &mut F,
) -> Result<(Vec<String>, Arc<Spec>), Vec<String>> {
    let spec = match sitecar_config::load_file(&source.file, &source.options) {
        Ok(spec) => Arc::new(spec),
        Err(e) => {
            // A summary, then each rule broken; an unreadable file or bad JSON is one line.
            let mut problems = vec![e.to_string()];
            if matches!(e, LoadError::Invalid { .. }) {
                problems.extend(e.problems().iter().map(|p| p.to_string()));
            }
            return Err(problems);
        }
    };
    let fresh = front.prepare(current, &spec).map_err(|e| vec![e])?;
    let restarted = handle.reload(spec.clone()).await.map_err(|e| vec![e])?;
    front.commit(&spec, fresh);
    if current.tracing != spec.tracing {
        handle.logs.event("sitecar", "reload: tracing settings stay as they were until sitecar restarts");
    }
    let said = if restarted.is_empty() { "nothing".into() } else { restarted.join(", ") };
    handle.logs.event("sitecar", &format!("reloaded {}: restarted {said}", source.file.display()));
    Ok((restarted, spec))
}

/// `--watch`: a reload whenever the spec file's modification time or size changes.
pub async fn watch_file(file: PathBuf, requests: Requests) {
    let stamp = |f: &Path| std::fs::metadata(f).ok().map(|m| (m.modified().ok(), m.len()));
    let mut last = stamp(&file);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = stamp(&file);
        if now != last {
            last = now;
            if requests.send(None).is_err() {
                return;
            }
        }
    }
}
