//! Lab processes: started detached, tracked by our own pid files (pid and start
//! time, so a reused pid is never mistaken for ours), stopped with a bound.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::LabError;

use crate::whoami;

/// A pid file holding `pid start_time`.
#[derive(Debug, Clone)]
pub struct PidFile(pub PathBuf);

impl PidFile {
    pub fn write(&self, pid: u32) -> std::io::Result<()> {
        let start = whoami::process_start_time(pid).unwrap_or(0);
        std::fs::write(&self.0, format!("{pid} {start}\n"))
    }

    pub fn read(&self) -> Option<(u32, Option<u64>)> {
        let text = std::fs::read_to_string(&self.0).ok()?;
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|s| *s != 0);
        Some((pid, start))
    }

    /// The pid, if that process is still the one we started.
    pub fn running(&self) -> Option<u32> {
        let (pid, start) = self.read()?;
        whoami::process_alive(pid, start).then_some(pid)
    }
}

/// Start `program` in its own process group with output appended to `log`.
pub fn spawn(
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> std::io::Result<Child> {
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(name, value)| (*name, value)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Own group: a terminal's Ctrl-C on `lab up` must not take the servers down.
        .process_group(0)
        .spawn()
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait up to 5 s more.
pub fn stop(pid_file: &PidFile, grace: Duration) -> bool {
    let Some(pid) = pid_file.running() else {
        let _ = std::fs::remove_file(&pid_file.0);
        return true;
    };
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    if wait_gone(pid_file, grace) {
        let _ = std::fs::remove_file(&pid_file.0);
        return true;
    }
    let _ = kill(target, Signal::SIGKILL);
    let gone = wait_gone(pid_file, Duration::from_secs(5));
    if gone {
        let _ = std::fs::remove_file(&pid_file.0);
    }
    gone
}

/// Stop several processes at once: SIGTERM to all, then each gets what is
/// left of `grace` before SIGKILL. A lab's servers shut down side by side
/// instead of one after another. Whether each is gone, in order.
pub fn stop_all(pid_files: &[PidFile], grace: Duration) -> Vec<bool> {
    for pid_file in pid_files {
        if let Some(pid) = pid_file.running() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    pid_files
        .iter()
        .map(|pid_file| stop(pid_file, grace))
        .collect()
}

fn wait_gone(pid_file: &PidFile, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pid_file.running().is_none() || is_zombie(pid_file) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    pid_file.running().is_none()
}

/// A child of ours that exited but was not reaped yet counts as gone.
fn is_zombie(pid_file: &PidFile) -> bool {
    let Some((pid, _)) = pid_file.read() else {
        return true;
    };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rfind(')')
                .map(|i| stat[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// PATH plus the sbin directories Debian installs servers into.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    dirs
}

/// Find an executable by name in `dirs`.
pub fn find_program_in(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

pub fn find_program(name: &str) -> Option<PathBuf> {
    find_program_in(name, &search_dirs())
}

/// Debian's libfaketime preload library (multiarch path).
pub fn find_faketime_library() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/lib/faketime/libfaketime.so.1")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for entry in entries.flatten() {
            candidates.push(entry.path().join("faketime/libfaketime.so.1"));
        }
    }
    candidates.into_iter().find(|path| path.is_file())
}

/// Run a data-directory initializer (as root, `--user=root`); a failure
/// names `what` and the last lines it printed.
pub(super) fn make_template(
    mut command: std::process::Command,
    program: &Path,
    what: &str,
) -> Result<(), LabError> {
    if nix::unistd::geteuid().is_root() {
        command.arg("--user=root");
    }
    let output = command.output().map_err(|e| LabError::io(program, e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(LabError::StartFailed {
            server: "template".to_string(),
            reason: format!(
                "{what} failed ({}): {}",
                output.status,
                stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            ),
        });
    }
    Ok(())
}
