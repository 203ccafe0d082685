//! One consistent point for every cluster, without stopping the source's
//! writes for more than a moment.
//!
//! 1. Replicas of the source stop their replication channel.
//! 2. The source takes a global read lock, reads its GTID position P, opens a
//!    consistent snapshot on every worker session, and unlocks (milliseconds).
//! 3. Each replica applies exactly up to P (`START SLAVE UNTIL`), opens its
//!    snapshots there, and resumes replication at once.
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

/// What the source's brief lock produced.
#[derive(Debug, Clone)]
pub struct SourcePoint {
    pub position: String,
    pub locked_for: Duration,
}

/// Lock the source, read its position, open the snapshots, unlock. The lock
/// waits at most `lock_wait`; if the server keeps waiting past that, the
/// locking statement is killed from `spare` so writers are not left queued.
pub async fn lock_source(
    control: &mut Session,
    spare: &mut Session,
    flavor: Flavor,
    snapshots: Vec<&mut Session>,
    lock_wait: Duration,
) -> Result<SourcePoint, MysqlError> {
    let seconds = lock_wait.as_secs().max(1);
    control
        .exec(
            "bound the read lock's wait",
            &format!("SET SESSION lock_wait_timeout = {seconds}"),
        )
        .await?;
    let id = control::connection_id(control).await?;
    let started = Instant::now();
    if let Err(error) = control
        .exec_within(
            lock_wait + Duration::from_secs(1),
            "take the brief global read lock",
            "FLUSH TABLES WITH READ LOCK",
        )
        .await
    {
        let _ = control::kill_connection(spare, id).await;
        return Err(error);
    }
    let inside = async {
        let position = control::binlog_position(control, flavor).await?;
        open_snapshots(snapshots).await?;
        Ok::<_, MysqlError>(position)
    }
    .await;
    let unlocked = control.exec("release the read lock", "UNLOCK TABLES").await;
    let locked_for = started.elapsed();
    let position = inside?;
    unlocked?;
    Ok(SourcePoint {
        position,
        locked_for,
    })
}

/// Stop a replica's channel ahead of the source's lock.
pub async fn pause(target: &mut TargetControl) -> Result<(), MysqlError> {
    control::stop_channel(
        &mut target.session,
        target.flavor,
        target.channel.as_deref(),
    )
    .await
}

/// Resume a paused replica's channel (always called, also after failures).
pub async fn resume(target: &mut TargetControl) -> Result<(), MysqlError> {
    control::start_channel(
        &mut target.session,
        target.flavor,
        target.channel.as_deref(),
    )
    .await
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
    control::start_channel_until(session, flavor, channel.as_deref(), position)
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
