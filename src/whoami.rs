//! Who is acting, on which host, and when: recorded with runs, locks and audit entries.

use std::time::SystemTime;

/// The operator: `$SUDO_USER` (the human behind sudo) or `$USER`, else the uid.
pub fn actor() -> String {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|user| !user.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|user| !user.is_empty()))
        .unwrap_or_else(|| format!("uid{}", nix::unistd::getuid()));
    format!("{user}@{}", hostname())
}

/// This orchestrator's host identity in locks, leases and the journal:
/// `CUTOVER_HOST_ID` when set (several orchestrators on one machine, or a
/// host known by another name), else the host name.
pub const HOST_ID_ENV: &str = "CUTOVER_HOST_ID";

pub fn hostname() -> String {
    if let Ok(id) = std::env::var(HOST_ID_ENV)
        && !id.trim().is_empty()
    {
        return id.trim().to_string();
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`).
/// With the pid it identifies a process even after its pid is reused.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that recorded `(pid, start_time)` is still running.
pub fn process_alive(pid: u32, start_time: Option<u64>) -> bool {
    match (process_start_time(pid), start_time) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id();
        let start = process_start_time(pid).expect("own /proc entry");
        assert!(process_alive(pid, Some(start)));
        assert!(!process_alive(pid, Some(start + 1)));
    }
}
