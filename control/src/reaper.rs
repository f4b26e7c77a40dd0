//! PID 1 duties: adopt orphans (as a child subreaper when not PID 1) and reap the zombies that
//! are not our own direct children (tokio waits for those), and at the end kill whatever
//! orphan is still around so that stopping sitecar leaves no process behind.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// Pids of the containers' own processes: tokio reaps those.
pub type Tracked = Arc<Mutex<HashSet<u32>>>;

/// Makes this process the reaper of its descendants' orphans.
pub fn become_subreaper() {
    if std::process::id() != 1 {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::debug!(error = %e, "cannot become a child subreaper");
        }
    }
}

/// Children of this process as (pid, state, process group), read from /proc.
fn children() -> Vec<(u32, char, u32)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut f = rest.split(' ');
        let state = f.next()?.chars().next()?;
        let ppid: u32 = f.next()?.parse().ok()?;
        let pgrp: u32 = f.next()?.parse().ok()?;
        (ppid == me).then_some((pid, state, pgrp))
    })
    .collect()
}

/// Reaps adopted zombies until `stop` is cancelled: on SIGCHLD, and every second as a backstop.
pub async fn run(tracked: Tracked, stop: tokio_util::sync::CancellationToken) {
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
    let mut seen_before: HashSet<u32> = HashSet::new();
    loop {
        let tick = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = async { match sigchld.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            _ = tick => {}
        }
        let mut zombies = HashSet::new();
        for (pid, state, pgrp) in children() {
            if state != 'Z' {
                continue;
            }
            let ours = tracked.lock().map(|t| t.contains(&pid)).unwrap_or(true);
            // Our own children lead their process groups; a zombie that is not a group leader, or
            // one untracked for two scans in a row, is an adopted orphan.
            if !ours && (pgrp != pid || seen_before.contains(&pid)) {
                let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
                tracing::debug!(pid, "reaped an orphaned zombie");
            } else {
                zombies.insert(pid);
            }
        }
        seen_before = zombies;
    }
}

/// SIGKILLs adopted orphans that outlived their containers, and reaps them.
pub fn kill_leftovers(tracked: &Tracked) {
    let ours: HashSet<u32> = tracked.lock().map(|t| t.clone()).unwrap_or_default();
    for (pid, _, _) in children() {
        if !ours.contains(&pid) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid as i32), None);
        }
    }
}
