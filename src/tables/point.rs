//! One consistent point for every cluster, without stopping the source's
//! writes for more than a moment.
//!
//! 1. Replicas of the source stop their applier (the receiver stays connected).
//! 2. The source holds its commits (MariaDB `BACKUP STAGE BLOCK_COMMIT`, which
//!    never waits for running statements; MySQL the global read lock), reads
//!    its GTID position P, opens a consistent snapshot on every worker session,
//!    and lets go: milliseconds. A hold that would make writers wait longer
//!    than the plan's `max_source_stall_ms` is cancelled and tried again.
//! 3. Each replica applies exactly up to P (`START SLAVE SQL_THREAD UNTIL`),
//!    opens its snapshots there, and resumes its applier at once.
//!
//! The chunks are then compared under the snapshots while everything runs.
//! Replication is resumed on every path out of here, including failures.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use crate::mysql::server::{self, ThreadState};
use crate::mysql::{Flavor, MysqlError, Session, control};

/// How a target is compared with the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "basis", content = "reason")]
pub enum Basis {
    /// Both at the same GTID position.
    Consistent,
    /// Both already at the frozen position (inside a write freeze).
    Frozen,
    /// No common point (the target does not replicate from the source):
    /// compared as they are, and differences are looked at twice.
    Live(String),
}

/// How long a resumed replica may take to show both threads running.
const RESUME_PROOF: Duration = Duration::from_secs(5);

/// A target's control connection and what is known of its replication.
pub struct TargetControl {
    pub name: String,
    pub flavor: Flavor,
    pub session: Session,
    /// The channel replicating from the source, when there is one.
    pub channel: Option<String>,
}

/// Decide each target's basis from its replication status.
pub async fn classify(
    source_host: &str,
    source_port: u16,
    source_name: &str,
    connect_timeout: Duration,
    target: &mut TargetControl,
) -> Result<Basis, MysqlError> {
    let channels = server::replication(&mut target.session, target.flavor).await?;
    let source_ips = crate::topology::resolve(source_host, connect_timeout).await;
    for status in channels {
        let ips: Vec<IpAddr> = crate::topology::resolve(&status.source_host, connect_timeout).await;
        let same_host =
            status.source_host == source_host || ips.iter().any(|ip| source_ips.contains(ip));
        if !same_host || status.source_port != source_port {
            continue;
        }
        if status.io_thread != ThreadState::Running || status.sql_thread != ThreadState::Running {
            let state = |thread: ThreadState| format!("{thread:?}").to_ascii_lowercase();
            return Ok(Basis::Live(format!(
                "replication from {source_name} is not running (IO {}, SQL {})",
                state(status.io_thread),
                state(status.sql_thread)
            )));
        }
        target.channel = status.channel.filter(|name| !name.is_empty());
        return Ok(Basis::Consistent);
    }
    Ok(Basis::Live(format!(
        "does not replicate from {source_name}"
    )))
}

/// Open a consistent-snapshot transaction on every session.
pub async fn open_snapshots(sessions: Vec<&mut Session>) -> Result<(), MysqlError> {
    let results = join_all(sessions.into_iter().map(|session| async move {
        session
            .exec(
                "open a consistent snapshot",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            )
            .await
    }))
    .await;
    results.into_iter().collect()
}

/// How long one attempt at the source's point may hold its commits, and how
/// long to keep trying.
#[derive(Debug, Clone, Copy)]
pub struct PointLimits {
    /// The request is cancelled (its connection killed) once it has waited
    /// this long, so writers queue behind it for no longer.
    pub max_stall: Duration,
    /// Attempts stop after this long; the caller refuses, having changed nothing.
    pub give_up_after: Duration,
}

/// What the source's brief lock produced.
#[derive(Debug, Clone)]
pub struct SourcePoint {
    pub position: String,
    /// From the successful request to the unlock: how long writers waited.
    pub locked_for: Duration,
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// The longest any attempt held the source's writes (cancelled ones too).
    pub longest_stall: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PointError {
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// Every attempt would have stalled the source's writes past the limit.
    #[error(
        "no consistent point on `{cluster}` within {waited_ms} ms: each of {attempts} attempts waited longer than {max_stall_ms} ms and was cancelled{busy}"
    )]
    Busy {
        cluster: String,
        attempts: u32,
        waited_ms: u64,
        max_stall_ms: u64,
        /// The statements that were running on the source, as seen at the last attempt.
        busy: String,
    },
}

/// How commits are held for a moment: MariaDB's `BACKUP STAGE BLOCK_COMMIT`
/// holds only commits, so running statements (a row-lock wait on a hot row)
/// cannot hold it up; elsewhere the global read lock, which waits for them.
fn hold_statements(flavor: Flavor) -> (&'static str, &'static str, &'static str) {
    match flavor {
        Flavor::Mariadb => (
            "BACKUP STAGE START",
            "BACKUP STAGE BLOCK_COMMIT",
            "BACKUP STAGE END",
        ),
        // Nothing to prepare: the read lock is one statement.
        Flavor::Mysql => ("DO 0", "FLUSH TABLES WITH READ LOCK", "UNLOCK TABLES"),
    }
}

/// The runbook's line for taking the point on `source`, whatever its flavor.
pub fn describe_hold(source: &str, snapshots: &str, max_stall: Duration) -> String {
    format!(
        "on {source}: hold commits (MariaDB: BACKUP STAGE START; BACKUP STAGE BLOCK_COMMIT — MySQL: \
         FLUSH TABLES WITH READ LOCK); read the GTID position; START TRANSACTION WITH CONSISTENT \
         SNAPSHOT{snapshots}; release (BACKUP STAGE END / UNLOCK TABLES). A hold not granted within \
         {} ms is cancelled (KILL) and tried again",
        max_stall.as_millis()
    )
}

/// Hold the source's commits, read its position, open the snapshots, let go.
/// One attempt waits at most `limits.max_stall` for the hold: then its
/// connection is killed from `spare` (so no writer stays queued behind it),
/// `control` is reconnected, and another attempt follows after a short
/// backoff, until `limits.give_up_after`.
pub async fn lock_source(
    control: &mut Session,
    spare: &mut Session,
    flavor: Flavor,
    mut snapshots: Vec<&mut Session>,
    limits: PointLimits,
) -> Result<SourcePoint, PointError> {
    let started = Instant::now();
    // The server's own bound, should our cancel not arrive.
    let seconds = limits.max_stall.as_secs() + 1;
    let mut backoff = Duration::from_millis(50);
    let mut longest_stall = Duration::ZERO;
    let mut attempts = 0;
    loop {
        attempts += 1;
        control
            .exec(
                "bound the hold's wait",
                &format!("SET SESSION lock_wait_timeout = {seconds}"),
            )
            .await?;
        let attempt = hold_once(control, spare, flavor, &mut snapshots, limits.max_stall).await?;
        longest_stall = longest_stall.max(attempt.stalled);
        if let Some(position) = attempt.position {
            return Ok(SourcePoint {
                position,
                locked_for: attempt.stalled,
                attempts,
                longest_stall,
            });
        }
        let elapsed = started.elapsed();
        if elapsed + backoff >= limits.give_up_after {
            return Err(PointError::Busy {
                cluster: control.endpoint().name.clone(),
                attempts,
                waited_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                max_stall_ms: u64::try_from(limits.max_stall.as_millis()).unwrap_or(u64::MAX),
                busy: if attempt.busy.is_empty() {
                    String::new()
                } else {
                    format!("; running then: {}", attempt.busy.join("; "))
                },
            });
        }
        tracing::info!(
            "the point on `{}` waited {} ms for running statements and was cancelled (attempt {attempts}); trying again in {} ms",
            control.endpoint().name,
            attempt.stalled.as_millis(),
            backoff.as_millis()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

struct Attempt {
    /// `None`: cancelled at the stall limit.
    position: Option<String>,
    stalled: Duration,
    busy: Vec<String>,
}

async fn hold_once(
    control: &mut Session,
    spare: &mut Session,
    flavor: Flavor,
    snapshots: &mut [&mut Session],
    max_stall: Duration,
) -> Result<Attempt, MysqlError> {
    let (prepare, hold, release) = hold_statements(flavor);
    let id = control::connection_id(control).await?;
    let sent = Instant::now();
    // Both under the bound: another backup holding its stage makes START wait too.
    match control
        .exec_within(
            max_stall,
            "hold commits for the point",
            &format!("{prepare}; {hold}"),
        )
        .await
    {
        Ok(()) => {}
        Err(MysqlError::Timeout { .. }) => {
            let busy = running_statements(spare, id, flavor).await;
            // The request would keep every writer queued: end it with its connection.
            control::kill_connection(spare, id).await?;
            let stalled = sent.elapsed();
            let fresh = Session::connect(control.endpoint()).await?;
            std::mem::replace(control, fresh).close().await;
            return Ok(Attempt {
                position: None,
                stalled,
                busy,
            });
        }
        Err(error) => {
            let _ = control.exec("give up the hold", release).await;
            return Err(error);
        }
    }
    let inside = async {
        let position = control::binlog_position(control, flavor).await?;
        open_snapshots(snapshots.iter_mut().map(|s| &mut **s).collect()).await?;
        Ok::<_, MysqlError>(position)
    }
    .await;
    let released = control.exec("release the hold", release).await;
    let stalled = sent.elapsed();
    if inside.is_err() || released.is_err() {
        for session in snapshots.iter_mut() {
            let _ = session.exec("end the snapshot", "ROLLBACK").await;
        }
    }
    let position = inside?;
    released?;
    Ok(Attempt {
        position: Some(position),
        stalled,
        busy: Vec::new(),
    })
}

/// The statements running on the source other than ours, longest first.
async fn running_statements(spare: &mut Session, ours: u64, flavor: Flavor) -> Vec<String> {
    // MySQL's information_schema list takes locks a busy server holds: its
    // performance_schema list does not.
    let table = match flavor {
        Flavor::Mariadb => "information_schema.PROCESSLIST",
        Flavor::Mysql => "performance_schema.processlist",
    };
    let sql = format!(
        "SELECT ID, USER, COALESCE(STATE, ''), LEFT(INFO, 120) FROM {table} \
         WHERE COMMAND = 'Query' AND INFO IS NOT NULL AND ID NOT IN (CONNECTION_ID(), {ours}) \
         ORDER BY TIME DESC LIMIT 3"
    );
    match spare
        .query::<(u64, String, String, String)>("list running statements", &sql)
        .await
    {
        Ok(rows) => rows
            .into_iter()
            .map(|(id, user, state, info)| format!("{id} {user} ({state}): {info}"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Stop a replica's applier ahead of the source's lock; its receiver stays
/// connected, so resuming reconnects nothing.
pub async fn pause(target: &mut TargetControl) -> Result<(), MysqlError> {
    control::stop_applier(
        &mut target.session,
        target.flavor,
        target.channel.as_deref(),
    )
    .await
}

/// Resume a paused replica (always called, also after failures) and wait,
/// at most `RESUME_PROOF`, until both its threads run: a checksum leaves
/// replication as it found it. A thread stopped on an error is an error; one
/// still connecting at the bound is only logged.
pub async fn resume(target: &mut TargetControl) -> Result<(), MysqlError> {
    let channel = target.channel.clone();
    control::start_channel(&mut target.session, target.flavor, channel.as_deref()).await?;
    let deadline = Instant::now() + RESUME_PROOF;
    loop {
        let status = server::replication(&mut target.session, target.flavor).await?;
        let Some(link) = status
            .iter()
            .find(|s| s.channel.as_deref().filter(|n| !n.is_empty()) == channel.as_deref())
        else {
            return Ok(());
        };
        if link.io_thread == ThreadState::Running && link.sql_thread == ThreadState::Running {
            return Ok(());
        }
        let error = [&link.last_io_error, &link.last_sql_error]
            .into_iter()
            .flatten()
            .find(|e| !e.is_empty());
        if let Some(error) = error.filter(|_| {
            link.io_thread == ThreadState::Stopped || link.sql_thread == ThreadState::Stopped
        }) {
            return Err(MysqlError::Query {
                cluster: target.name.clone(),
                what: "resume replication".into(),
                reason: error.clone(),
                code: None,
            });
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                "cluster `{}`: replication restarted but its receiver is still {:?} after {} s",
                target.name,
                link.io_thread,
                RESUME_PROOF.as_secs()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bring a paused replica to exactly `position`, then open `snapshots` there.
pub async fn bring_to(
    target: &mut TargetControl,
    position: &str,
    limit: Duration,
    snapshots: Vec<&mut Session>,
) -> Result<(), String> {
    let name = target.name.clone();
    let flavor = target.flavor;
    let channel = target.channel.clone();
    let session = &mut target.session;
    // Paused before the source's hold, the replica cannot have applied past
    // P: if it already has P (a quiet source), its data is the point's, and
    // restarting the applier up to P would only wait for it to stop again.
    let applied = control::applied_position(session, flavor)
        .await
        .map_err(|e| e.to_string())?;
    if covers(flavor, &applied, position) {
        return open_snapshots(snapshots).await.map_err(|e| e.to_string());
    }
    control::start_applier_until(session, flavor, channel.as_deref(), position)
        .await
        .map_err(|e| e.to_string())?;
    if !control::wait_for_position(session, flavor, position, limit)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "cluster `{name}` did not reach the consistent point {position} within {} s; \
             check its lag with `cutover lag`",
            limit.as_secs()
        ));
    }
    // The UNTIL condition stops the applier right after P; wait for that so
    // nothing past P is applied before the snapshots open.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let channels = server::replication(session, flavor)
            .await
            .map_err(|e| e.to_string())?;
        let stopped = channels
            .iter()
            .filter(|s| s.channel.as_deref().filter(|n| !n.is_empty()) == channel.as_deref())
            .all(|s| s.sql_thread == ThreadState::Stopped);
        if stopped {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "cluster `{name}`: the replication applier did not stop at {position} within 10 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let applied = control::applied_position(session, flavor)
        .await
        .map_err(|e| e.to_string())?;
    if !covers(flavor, &applied, position) {
        return Err(format!(
            "cluster `{name}` stopped at {applied}, not at the consistent point {position}"
        ));
    }
    open_snapshots(snapshots).await.map_err(|e| e.to_string())
}

/// Has `applied` reached `position`? MariaDB: every `domain-server-seq` of the
/// position is in the applied list; MySQL: the executed set contains it.
pub fn covers(flavor: Flavor, applied: &str, position: &str) -> bool {
    match flavor {
        Flavor::Mariadb => {
            let applied: Vec<&str> = applied.split(',').map(str::trim).collect();
            position
                .split(',')
                .map(str::trim)
                .filter(|gtid| !gtid.is_empty())
                .all(|gtid| applied.contains(&gtid))
        }
        Flavor::Mysql => {
            match (
                crate::mysql::GtidSet::parse(flavor, applied),
                crate::mysql::GtidSet::parse(flavor, position),
            ) {
                (Ok(applied), Ok(position)) => applied.contains(&position),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mariadb_position_is_covered_domain_by_domain() {
        assert!(covers(Flavor::Mariadb, "0-10-807", "0-10-807"));
        assert!(covers(Flavor::Mariadb, "1-11-5,0-10-807", "0-10-807"));
        assert!(!covers(Flavor::Mariadb, "0-10-806", "0-10-807"));
        assert!(!covers(Flavor::Mariadb, "0-10-807", "0-10-807,1-11-5"));
        assert!(covers(Flavor::Mariadb, "0-10-1", ""));
    }
}
