//! Ports on this host: whether one is free, and who holds it when it is not.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Whether a container could listen on `port` now (on every address, as most servers do).
pub fn taken(port: u16) -> bool {
    // std's bind sets SO_REUSEADDR: a socket of an earlier run in TIME_WAIT does not count.
    // Each bound on its own (the first released before the second), so they never meet.
    [Ipv4Addr::UNSPECIFIED, Ipv4Addr::LOCALHOST].into_iter().any(|ip| TcpListener::bind(SocketAddr::from((ip, port))).is_err())
}

/// " (held by pid N, name)" when /proc tells who listens on the port, else "".
pub fn holder(port: u16) -> String {
    let hex = format!(":{port:04X}");
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().filter_map(|f| std::fs::read_to_string(f).ok()).find_map(|t| {
        t.lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 9 && f[1].ends_with(&hex) && f[3] == "0A"
            })
            .map(|l| l.split_whitespace().nth(9).unwrap_or("").to_string())
    });
    let Some(inode) = inode else { return String::new() };
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name();
        let Some(pid) = pid.to_str().filter(|p| p.chars().all(|c| c.is_ascii_digit())) else { continue };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"));
        if fds.into_iter().flatten().flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target)) {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            return format!(" (held by pid {pid}, {})", name.trim());
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_port_is_taken_and_its_holder_named() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(taken(port));
        assert!(holder(port).starts_with(&format!(" (held by pid {}, ", std::process::id())), "{}", holder(port));
        drop(l);
        assert!(!taken(port));
        assert_eq!(holder(port), "");
    }
}
