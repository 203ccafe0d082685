//! A hot-row load: N application writers on a few rows, each transaction
//! updating two of them, as a settlement account or a counter sees it. The
//! writers record when each commit returned, so the longest time the source
//! committed nothing is measured from their side, not the server's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use super::accounts::APPLICATION_USER;
use super::{LabSecrets, LabServer};
use crate::mysql::{Endpoint, MysqlError, Session};
use crate::secret::Secret;

/// The table the writers share, in the application's schema so that
/// snapshots and checksums carry it like any other.
pub const TABLE: &str = "refunds.hot_accounts";

/// How long a writer that found no server taking writes waits before it
/// looks again, as a pool's retry would: after a freeze, a writer may go
/// this much longer than the freeze without a commit.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct HotRowLoad {
    pub writers: usize,
    pub rows: u32,
    pub duration: Duration,
    /// Transactions a second, all writers together; 0 for no limit.
    pub rate: u32,
}

impl HotRowLoad {
    /// How long each writer waits between the starts of its transactions.
    fn interval(&self) -> Option<Duration> {
        (self.rate > 0)
            .then(|| Duration::from_secs_f64(self.writers.max(1) as f64 / f64::from(self.rate)))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub writers: usize,
    pub rows: u32,
    pub commits: u64,
    /// Deadlocks, lock wait timeouts and lost connections, each retried.
    pub errors: u64,
    pub elapsed_ms: u64,
    /// The longest time between two commits any writer saw returned (or
    /// from the start to the first, or from the last to the end).
    pub longest_gap_ms: u64,
    /// When that gap began, in milliseconds from the start.
    pub longest_gap_at_ms: u64,
    /// The longest any one writer went without a commit returning. A fence
    /// stops every writer for at least the freeze, even when a transaction
    /// already past its updates commits while the lock drains.
    pub longest_writer_wait_ms: u64,
    /// `RECONNECT_PAUSE`, for whoever compares the gaps with a freeze.
    pub reconnect_pause_ms: u64,
    pub last_error: Option<String>,
}

/// Create the hot table with `rows` rows (as the admin) on the first of
/// `servers` that takes writes: MySQL's `super_read_only` refuses even a
/// `CREATE TABLE IF NOT EXISTS` on a replica.
pub async fn prepare(servers: &[Endpoint], rows: u32) -> Result<(), MysqlError> {
    let mut session = connect_writable(servers).await?;
    let values: Vec<String> = (1..=rows).map(|id| format!("({id}, 0)")).collect();
    session
        .exec(
            "create the hot table",
            &format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB; \
                 INSERT IGNORE INTO {TABLE} VALUES {}",
                values.join(", ")
            ),
        )
        .await?;
    session.close().await;
    Ok(())
}

/// The application's endpoint on `server`.
pub fn application_endpoint(server: &LabServer, secrets: &LabSecrets) -> Endpoint {
    Endpoint {
        user: APPLICATION_USER.to_string(),
        password: Some(Secret::new(secrets.application.clone())),
        query_timeout: Duration::from_secs(60),
        ..server.admin_endpoint(secrets)
    }
}

/// Connect to the first of `servers` that takes writes (`read_only` off), as
/// an application behind a proxy that routes to the primary would.
async fn connect_writable(servers: &[Endpoint]) -> Result<Session, MysqlError> {
    let mut last = None;
    for endpoint in servers {
        let mut session = match Session::connect(endpoint).await {
            Ok(session) => session,
            Err(error) => {
                last = Some(error);
                continue;
            }
        };
        match session
            .query_first::<u8>("is it writable", "SELECT @@GLOBAL.read_only")
            .await
        {
            Ok(Some(0)) => return Ok(session),
            Ok(_) => session.close().await,
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| MysqlError::Connect {
        cluster: servers.first().map_or_else(String::new, |s| s.name.clone()),
        address: String::new(),
        reason: "no server takes writes".into(),
    }))
}

/// Run the writers until `load.duration` passes or `stop` is set. Each writer
/// connects to the first of `servers` that takes writes, and after an error
/// connects again the same way, so a load given every cluster follows a
/// switchover.
pub async fn run(servers: &[Endpoint], load: &HotRowLoad, stop: Arc<AtomicBool>) -> LoadReport {
    let started = Instant::now();
    let commits = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let deadline = started + load.duration;
    let tasks: Vec<_> = (0..load.writers.max(1))
        .map(|_| {
            let servers = servers.to_vec();
            let (commits, errors, last_error, stop) = (
                commits.clone(),
                errors.clone(),
                last_error.clone(),
                stop.clone(),
            );
            let rows = load.rows.max(2);
            let interval = load.interval();
            tokio::spawn(async move {
                let mut next_start = tokio::time::Instant::now();
                let mut session = None;
                let (mut last_commit, mut longest_wait) = (Duration::ZERO, Duration::ZERO);
                while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                    if let Some(interval) = interval {
                        // Paced, but never in a burst after a stall.
                        let now = tokio::time::Instant::now();
                        let earliest = now.checked_sub(interval).unwrap_or(now);
                        next_start = (next_start + interval).max(earliest);
                        tokio::time::sleep_until(next_start).await;
                    }
                    if session.is_none() {
                        match connect_writable(&servers).await {
                            Ok(connected) => session = Some(connected),
                            Err(error) => {
                                errors.fetch_add(1, Ordering::SeqCst);
                                *last_error.lock().expect("not poisoned") = Some(error.to_string());
                                tokio::time::sleep(RECONNECT_PAUSE).await;
                                continue;
                            }
                        }
                    }
                    let (a, b) = {
                        let mut rng = rand::rng();
                        (rng.random_range(1..=rows), rng.random_range(1..=rows))
                    };
                    let sql = format!(
                        "START TRANSACTION; \
                         UPDATE {TABLE} SET balance = balance - 1 WHERE id = {a}; \
                         UPDATE {TABLE} SET balance = balance + 1 WHERE id = {b}; \
                         COMMIT"
                    );
                    let live = session.as_mut().expect("connected above");
                    match live.exec("move a balance", &sql).await {
                        Ok(()) => {
                            let at = started.elapsed();
                            longest_wait = longest_wait.max(at - last_commit);
                            last_commit = at;
                            commits.lock().expect("not poisoned").push(at);
                        }
                        Err(error) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            *last_error.lock().expect("not poisoned") = Some(error.to_string());
                            if let Some(dead) = session.take() {
                                dead.close().await;
                            }
                        }
                    }
                }
                let waited_at_the_end = started.elapsed().saturating_sub(last_commit);
                if let Some(session) = session {
                    session.close().await;
                }
                longest_wait.max(waited_at_the_end)
            })
        })
        .collect();
    let mut longest_writer_wait = Duration::ZERO;
    for task in tasks {
        if let Ok(waited) = task.await {
            longest_writer_wait = longest_writer_wait.max(waited);
        }
    }
    let elapsed = started.elapsed();
    let mut times = std::mem::take(&mut *commits.lock().expect("not poisoned"));
    times.sort();
    let (gap, at) = longest_gap(&times, elapsed);
    LoadReport {
        writers: load.writers,
        rows: load.rows,
        commits: times.len() as u64,
        errors: errors.load(Ordering::SeqCst),
        elapsed_ms: millis(elapsed),
        longest_gap_ms: millis(gap),
        longest_gap_at_ms: millis(at),
        longest_writer_wait_ms: millis(longest_writer_wait),
        reconnect_pause_ms: millis(RECONNECT_PAUSE),
        last_error: last_error.lock().expect("not poisoned").clone(),
    }
}

/// The longest stretch with no commit, from 0 to `end`, and where it began.
/// `commits` is sorted.
pub fn longest_gap(commits: &[Duration], end: Duration) -> (Duration, Duration) {
    let mut previous = Duration::ZERO;
    let mut best = (Duration::ZERO, Duration::ZERO);
    for &at in commits.iter().chain(std::iter::once(&end)) {
        let gap = at.saturating_sub(previous);
        if gap > best.0 {
            best = (gap, previous);
        }
        previous = previous.max(at);
    }
    best
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_start_and_the_end_too() {
        let ms = Duration::from_millis;
        assert_eq!(
            longest_gap(&[ms(10), ms(20), ms(300), ms(310)], ms(400)),
            (ms(280), ms(20))
        );
        assert_eq!(longest_gap(&[ms(10)], ms(500)), (ms(490), ms(10)));
        assert_eq!(longest_gap(&[], ms(50)), (ms(50), ms(0)));
    }

    #[test]
    fn a_paced_load_spreads_its_rate_over_the_writers() {
        let load = |writers, rate| HotRowLoad {
            writers,
            rows: 20,
            duration: Duration::from_secs(1),
            rate,
        };
        assert_eq!(load(8, 0).interval(), None);
        assert_eq!(load(8, 1000).interval(), Some(Duration::from_millis(8)));
        assert_eq!(load(0, 500).interval(), Some(Duration::from_millis(2)));
    }
}
