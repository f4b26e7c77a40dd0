//! Taking a reloaded spec while the stack runs: containers added, removed, reordered or changed.

use std::sync::Arc;

use sitecar_config::Spec;

use super::{launches, ProbeStats, Supervisor};
use crate::state::{reload_refusal, Action, Core, Unit};
use crate::storage::Storage;

/// What a reload does.
pub(super) struct Plan {
    /// Stops of removed containers and starts of added ones, to carry out now.
    pub actions: Vec<Action>,
    /// Units whose launch changed, to restart: sidecars in spec order, then main.
    pub restart: Vec<Unit>,
    /// For the answer: `name` restarted, `name (added)`, `name (removed)`.
    pub summary: Vec<String>,
}

impl Supervisor {
    /// Takes a new spec in place of the running one. Containers kept (by name) restart when their
    /// launch changed; new ones start at once (after the changed ones are told to restart); gone
    /// ones stop for good; the start and stop order becomes the new spec's. Refused, with nothing
    /// changed, when main would be another container or listen elsewhere, the runtime differs,
    /// or the first start has not finished.
    pub(super) fn take(&mut self, spec: Arc<Spec>, core: &mut Core) -> Result<Plan, String> {
        if let Some(why) = reload_refusal(&self.spec, &spec, core.booting(), false) {
            return Err(why.into());
        }
        let storage = Storage::prepare(&spec, &self.options.base_dir).map_err(|e| e.to_string())?;
        let new = launches(&spec, &self.runtime, &storage, self.main_host_port, &self.options.base_dir, &self.hostname);
        let main_index = spec.containers.iter().position(|c| c.is_main).unwrap_or(0);
        if let Some(why) = reload_refusal(&self.spec, &spec, false, new[main_index].addr != self.launches[self.main_unit].addr) {
            return Err(why.into());
        }
        let before: Vec<String> = core.units.iter().filter(|u| !u.retired).map(|u| u.name.clone()).collect();
        let (map, actions) = core.reshape(&spec);
        let mut restart = Vec::new();
        let mut summary = Vec::new();
        for (launch, &unit) in new.into_iter().zip(&map) {
            if unit < self.launches.len() {
                if launch != self.launches[unit] {
                    restart.push(unit);
                    summary.push(launch.name.clone());
                }
                self.launches[unit] = launch;
            } else {
                // Units are added in spec order, right after the existing ones.
                summary.push(format!("{} (added)", launch.name));
                self.launches.push(launch);
            }
        }
        summary.extend(before.iter().filter(|n| !spec.containers.iter().any(|c| &c.name == *n)).map(|n| format!("{n} (removed)")));
        if let Ok(mut stats) = self.probe_stats.lock() {
            stats.resize(self.launches.len(), ProbeStats::default());
        }
        if let Ok(mut names) = self.handle.names.write() {
            *names = core.units.iter().map(|u| if u.retired { String::new() } else { u.name.clone() }).collect();
        }
        // Sidecars first, then main.
        restart.sort_by_key(|&u| u == self.main_unit);
        self.spec = spec;
        Ok(Plan { actions, restart, summary })
    }
}
