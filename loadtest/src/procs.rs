//! Process trees, CPU time and peak memory from /proc.

/// `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let p: u32 = e.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
                    let ppid: u32 = stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()?;
                    Some((p, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    while i < all.len() {
        let parent = all[i];
        all.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    all
}

/// CPU seconds of these processes: (user, system).
pub fn cpu_seconds(pids: &[u32]) -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    pids.iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime / ticks, stime / ticks))
        })
        .fold((0.0, 0.0), |(u, s), (du, ds)| (u + du, s + ds))
}

/// Busy CPU seconds of the whole machine since boot (all cores; idle and iowait excluded): what
/// the load generator, the origin and the proxy spent together, with anything else running.
pub fn machine_busy_seconds() -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let f: Vec<f64> = cpu.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already counted in user).
    let busy: f64 = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy / ticks
}

/// Sum of one `/proc/<pid>/status` field (in KiB) over the processes.
fn status_kib(pids: &[u32], field: &str) -> u64 {
    pids.iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// Sum of the processes' peak resident memory (VmHWM), KiB.
pub fn peak_rss_kib(pids: &[u32]) -> u64 {
    status_kib(pids, "VmHWM:")
}

/// Sum of the processes' current resident memory (VmRSS), KiB.
pub fn rss_kib(pids: &[u32]) -> u64 {
    status_kib(pids, "VmRSS:")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's user CPU seconds as the kernel reports them to getrusage.
    fn rusage_user() -> f64 {
        let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap().user_time();
        u.tv_sec() as f64 + u.tv_usec() as f64 / 1e6
    }

    /// Spins until this process has used `ms` more of user CPU time (however busy the machine is:
    /// a wall-clock spin gets less CPU when the other core's tests compete).
    fn spin(ms: u64) -> u64 {
        let until = rusage_user() + ms as f64 / 1000.0;
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        while rusage_user() < until && std::time::Instant::now() < give_up {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        x
    }

    #[test]
    fn cpu_time_is_read_from_proc_as_user_and_system() {
        let me = [std::process::id()];
        let (u0, s0) = cpu_seconds(&me);
        let m0 = machine_busy_seconds();
        spin(300);
        let (u1, s1) = cpu_seconds(&me);
        let m1 = machine_busy_seconds();
        // 300 ms of arithmetic is user time (ticks are 10 ms: allow for rounding).
        assert!(u1 - u0 >= 0.25, "user time grew by {}", u1 - u0);
        assert!(s1 >= s0);
        // The machine was at least as busy as this process.
        assert!(m1 - m0 >= 0.25, "machine busy time grew by {}", m1 - m0);
        // The peak, read after, is at least the resident size read before.
        let rss = rss_kib(&me);
        assert!(rss > 0 && peak_rss_kib(&me) >= rss, "rss {rss} KiB");
    }

    #[test]
    fn a_process_tree_holds_the_children() {
        let child = std::process::Command::new("sleep").arg("5").spawn();
        let Ok(mut child) = child else { panic!("sleep could not be started") };
        let all = tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(all[0], std::process::id());
        assert!(all.contains(&child.id()), "{all:?} lacks {}", child.id());
    }
}
