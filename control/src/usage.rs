//! What the supervisor shows of its containers as Prometheus metrics: state, restarts, last exit,
//! probes, and CPU and resident memory of each container's whole process group, read from /proc
//! when scraped.

use std::collections::HashMap;

use prometheus::{CounterVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::state::Phase;
use crate::ContainerStatus;

/// CPU seconds and resident bytes of every process in process group `pgid`.
pub fn group_usage(pgid: u32) -> (f64, u64) {
    let page = 4096u64;
    let mut cpu = 0.0;
    let mut rss = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        if f.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        cpu += (num(11) + num(12)) / 100.0;
        rss += num(21) as u64 * page;
    }
    (cpu, rss)
}

/// Container metrics, read from the status channel and /proc when scraped.
pub struct ContainerMetrics {
    up: IntGaugeVec,
    ready: IntGaugeVec,
    restarts: IntCounterVec,
    exit: IntGaugeVec,
    cpu: CounterVec,
    rss: IntGaugeVec,
    probe_seconds: prometheus::GaugeVec,
    probe_failures: IntCounterVec,
    /// CPU seconds already counted per (container, pid): counters only go up, and a restarted
    /// container's CPU adds to what earlier runs used.
    counted_cpu: HashMap<(String, u32), f64>,
    /// Containers with series, so that a container a reload removed loses its series.
    known: std::collections::BTreeSet<String>,
}

impl ContainerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            up: IntGaugeVec::new(Opts::new("sitecar_container_up", "1 when the container's process runs"), &["container"])?,
            ready: IntGaugeVec::new(Opts::new("sitecar_container_ready", "1 when started and not failing probes"), &["container"])?,
            restarts: IntCounterVec::new(Opts::new("sitecar_container_restarts_total", "Restarts of the container"), &["container"])?,
            exit: IntGaugeVec::new(
                Opts::new("sitecar_container_last_exit_code", "Exit code of the last run (128 + signal when killed)"),
                &["container"],
            )?,
            cpu: CounterVec::new(
                Opts::new("sitecar_container_cpu_seconds_total", "CPU time of the container's process group"),
                &["container"],
            )?,
            rss: IntGaugeVec::new(
                Opts::new("sitecar_container_memory_rss_bytes", "Resident memory of the container's process group"),
                &["container"],
            )?,
            probe_seconds: prometheus::GaugeVec::new(
                Opts::new("sitecar_container_probe_duration_seconds", "Duration of the last periodic probe"),
                &["container"],
            )?,
            probe_failures: IntCounterVec::new(
                Opts::new("sitecar_container_probe_failures_total", "Failed periodic probes"),
                &["container"],
            )?,
            counted_cpu: HashMap::new(),
            known: Default::default(),
        };
        let info =
            IntGauge::with_opts(Opts::new("sitecar_build_info", "Build information").const_label("version", env!("CARGO_PKG_VERSION")))?;
        info.set(1);
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.ready.clone()))?;
        registry.register(Box::new(m.restarts.clone()))?;
        registry.register(Box::new(m.exit.clone()))?;
        registry.register(Box::new(m.cpu.clone()))?;
        registry.register(Box::new(m.rss.clone()))?;
        registry.register(Box::new(m.probe_seconds.clone()))?;
        registry.register(Box::new(m.probe_failures.clone()))?;
        registry.register(Box::new(info))?;
        Ok(m)
    }

    pub fn update(&mut self, statuses: &[ContainerStatus]) {
        let gone: Vec<String> = self.known.iter().filter(|k| !statuses.iter().any(|c| &c.name == *k)).cloned().collect();
        for name in gone {
            let l = [name.as_str()];
            let _ = self.up.remove_label_values(&l);
            let _ = self.ready.remove_label_values(&l);
            let _ = self.restarts.remove_label_values(&l);
            let _ = self.exit.remove_label_values(&l);
            let _ = self.cpu.remove_label_values(&l);
            let _ = self.rss.remove_label_values(&l);
            let _ = self.probe_seconds.remove_label_values(&l);
            let _ = self.probe_failures.remove_label_values(&l);
            self.counted_cpu.retain(|(n, _), _| n != &name);
            self.known.remove(&name);
        }
        for c in statuses {
            self.known.insert(c.name.clone());
            let name = c.name.as_str();
            self.up.with_label_values(&[name]).set(i64::from(c.pid.is_some()));
            self.ready.with_label_values(&[name]).set(i64::from(c.phase == Phase::Running && c.healthy != Some(false)));
            let counted = self.restarts.with_label_values(&[name]);
            counted.inc_by(u64::from(c.restarts).saturating_sub(counted.get()));
            if let Some(e) = c.last_exit {
                self.exit.with_label_values(&[name]).set(i64::from(e.as_code()));
            }
            if let Some(seconds) = c.probe_last_seconds {
                self.probe_seconds.with_label_values(&[name]).set(seconds);
            }
            let failed = self.probe_failures.with_label_values(&[name]);
            failed.inc_by(c.probe_failures.saturating_sub(failed.get()));
            match c.pid {
                Some(pid) => {
                    let (seconds, bytes) = group_usage(pid);
                    let before = self.counted_cpu.insert((c.name.clone(), pid), seconds).unwrap_or(0.0);
                    self.cpu.with_label_values(&[name]).inc_by((seconds - before).max(0.0));
                    self.rss.with_label_values(&[name]).set(bytes as i64);
                }
                None => self.rss.with_label_values(&[name]).set(0),
            }
        }
    }
}
