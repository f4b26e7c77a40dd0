//! Probing the containers of a running stack: the startup probe (main's warmup path, a sidecar's
//! port), then periodic health probes with the container's settings, each from where the
//! container's neighbours reach it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sitecar_config::ProbeKind;

use super::Supervisor;
use crate::probe::{Accept, Probe};
use crate::runtime::{Launch, Runtime};
use crate::state::{Event, Unit};

impl Supervisor {
    /// Startup probe: main's warmup path, a sidecar's port, or nothing; fast at first.
    pub(super) fn watch_startup(&self, unit: Unit, gen: u64, current: Arc<AtomicU64>) {
        let launch = &self.launches[unit];
        let limit = self.spec.platform.start_time_limit;
        let (probe_addr, place) = self.probe_target(launch);
        let probe = match (probe_addr, unit == self.main_unit) {
            (Some(addr), true) => {
                let accept = if self.spec.platform.warmup_statuses.is_empty() {
                    Accept::Any
                } else {
                    Accept::Codes(self.spec.platform.warmup_statuses.clone())
                };
                Some(Probe::http(addr, &self.spec.platform.warmup_path, accept, Duration::from_secs(2)))
            }
            (Some(addr), false) => Some(Probe::tcp(addr, Duration::from_secs(1))),
            (None, _) => None,
        }
        .map(|p| p.inside(place));
        let tx = self.events_tx.clone();
        // Without a port to probe, a container has started when it runs: at once for a process,
        // when the engine says so for an OCI container.
        let engine = match &self.runtime {
            Runtime::Oci(oci) => Some((oci.clone(), launch.name.clone())),
            Runtime::Process => None,
        };
        tokio::spawn(async move {
            let deadline = Instant::now() + limit;
            let Some(probe) = probe else {
                if let Some((oci, name)) = engine {
                    while !oci.is_running(&name).await {
                        if Instant::now() >= deadline || current.load(Ordering::SeqCst) != gen {
                            let _ = tx.send(Event::StartTimedOut { unit, gen });
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                let _ = tx.send(Event::Started { unit, gen });
                return;
            };
            let mut interval = Duration::from_millis(50);
            while current.load(Ordering::SeqCst) == gen {
                if probe.check().await {
                    let _ = tx.send(Event::Started { unit, gen });
                    return;
                }
                if Instant::now() >= deadline {
                    let _ = tx.send(Event::StartTimedOut { unit, gen });
                    return;
                }
                tokio::time::sleep(interval).await;
                // ~100 ms probing for the first seconds, then easing off to 1 s.
                interval = (interval + Duration::from_millis(10)).min(Duration::from_secs(1));
            }
        });
    }

    /// Where a container is probed: its port inside the stack's namespace under an OCI runtime
    /// (as its neighbours reach it), else where sitecar reaches it.
    pub(super) fn probe_target(&self, launch: &Launch) -> (Option<SocketAddr>, Option<tokio::runtime::Handle>) {
        match (&self.namespace, launch.port) {
            (Some(ns), Some(port)) => (Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))), Some(ns.handle.clone())),
            _ => (launch.addr, None),
        }
    }

    /// Periodic probes with the container's settings, until the run ends.
    pub(super) fn watch_health(&self, unit: Unit, gen: u64, current: Arc<AtomicU64>) {
        let launch = &self.launches[unit];
        let (addr, place) = self.probe_target(launch);
        let Some(addr) = addr else { return };
        let settings = self.spec.health.for_container(&launch.name).clone();
        // Main's health check path (App Service's) comes before the probe settings.
        let kind = match &self.spec.platform.healthcheck_path {
            Some(path) if unit == self.main_unit => ProbeKind::Http { path: path.clone() },
            _ => settings.kind.clone(),
        };
        let probe = match kind {
            ProbeKind::Http { path } => Probe::http(addr, &path, Accept::Success, settings.timeout),
            ProbeKind::Tcp => Probe::tcp(addr, settings.timeout),
        }
        .inside(place);
        let tx = self.events_tx.clone();
        let stats = self.probe_stats.clone();
        tokio::spawn(async move {
            tokio::time::sleep(settings.initial_delay).await;
            while current.load(Ordering::SeqCst) == gen {
                tokio::time::sleep(jitter(settings.period)).await;
                if current.load(Ordering::SeqCst) != gen {
                    break;
                }
                let started = Instant::now();
                let ok = probe.check().await;
                if let Ok(mut s) = stats.lock() {
                    if let Some(s) = s.get_mut(unit) {
                        s.probes += 1;
                        s.failures += u64::from(!ok);
                        s.last_seconds = Some(started.elapsed().as_secs_f64());
                    }
                }
                if tx.send(Event::Probe { unit, gen, ok }).is_err() {
                    break;
                }
            }
        });
    }
}

/// `period` ± 10 %, so probes of many containers do not line up.
fn jitter(period: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let spread = period.as_secs_f64() * 0.2 * (f64::from(nanos % 1000) / 1000.0 - 0.5);
    Duration::from_secs_f64((period.as_secs_f64() + spread).max(0.01))
}
