//! Proof that a replication link runs: after `START SLAVE`/`START REPLICA`
//! the replica's IO thread is connected to the intended source, its SQL thread
//! runs, and it has received (or applied) everything the source had when the
//! link was started. A link that only "started" proves nothing: a wrong
//! password, a refused address or a missing TLS option leave the IO thread
//! `Connecting` for ever.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::gtid::{self, Flavor, GtidSet};
use super::server::{self, ReplicationStatus, ThreadState};
use super::{MysqlError, Session};

/// What a link looked like when its step finished.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LinkState {
    pub replica: String,
    pub source: String,
    pub io_thread: ThreadState,
    pub sql_thread: ThreadState,
    pub seconds_behind: Option<u64>,
    /// Transactions the source had at the start that the replica has not received.
    pub transactions_behind: Option<u64>,
    pub waited_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    #[error(
        "cluster `{replica}`: replication from `{from}` is not running after {waited_ms} ms \
         (IO thread {io:?}, SQL thread {sql:?}){error}; {hint}"
    )]
    NotRunning {
        replica: String,
        from: String,
        waited_ms: u64,
        io: ThreadState,
        sql: ThreadState,
        error: String,
        hint: &'static str,
    },
}

/// The fix an operator reaches for first, from the server's own error.
fn hint(error: &str) -> &'static str {
    let lower = error.to_ascii_lowercase();
    if lower.contains("access denied") {
        "check the replication account's password (`replication:` in the plan) and that the source grants it REPLICATION SLAVE from this replica's address"
    } else if lower.contains("secure connection") || lower.contains("caching_sha2") {
        "the source's account needs TLS or its public key: give the cluster `tls:` in the plan (SOURCE_SSL=1), or allow GET_SOURCE_PUBLIC_KEY"
    } else if lower.contains("can't connect") || lower.contains("connect to") {
        "the replica cannot reach the source's address and port: check the plan's `host`/`port` for it and any firewall between them"
    } else if !error.is_empty() {
        "fix what the server reports, then resume the run"
    } else {
        "the IO thread never connected; check the source's address, the replication account and the network between them"
    }
}

/// Wait, at most `bound`, until the replica's channel from `source_host:port`
/// runs both threads and has received `source_position` (when given: a link
/// with a long backlog to apply proves only that it runs). A thread stopped on
/// an error fails at once; one still connecting fails at the bound with the
/// server's last error.
pub async fn await_running(
    replica: &mut Session,
    flavor: Flavor,
    (source_name, source_host, source_port): (&str, &str, u16),
    source_position: Option<&str>,
    bound: Duration,
) -> Result<LinkState, LinkError> {
    let started = Instant::now();
    let wanted = source_position
        .and_then(|position| GtidSet::parse(flavor, position).ok())
        .unwrap_or_default();
    loop {
        let channels = server::replication(replica, flavor).await?;
        let channel = channels
            .iter()
            .find(|c| c.source_host == source_host && c.source_port == source_port);
        let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let not_running = |channel: Option<&ReplicationStatus>| {
            let error = channel
                .and_then(|c| c.last_io_error.clone().or(c.last_sql_error.clone()))
                .filter(|e| !e.is_empty())
                .unwrap_or_default();
            LinkError::NotRunning {
                replica: replica.endpoint().name.clone(),
                from: source_name.to_string(),
                waited_ms,
                io: channel.map_or(ThreadState::Stopped, |c| c.io_thread),
                sql: channel.map_or(ThreadState::Stopped, |c| c.sql_thread),
                hint: hint(&error),
                error: if error.is_empty() {
                    String::new()
                } else {
                    format!(": {error}")
                },
            }
        };
        if let Some(c) = channel {
            let received = received(flavor, c);
            let behind = received
                .as_ref()
                .map(|got| gtid::transactions_behind(flavor, got, &wanted));
            if c.io_thread == ThreadState::Running
                && c.sql_thread == ThreadState::Running
                && behind == Some(0)
            {
                return Ok(LinkState {
                    replica: replica.endpoint().name.clone(),
                    source: source_name.to_string(),
                    io_thread: c.io_thread,
                    sql_thread: c.sql_thread,
                    seconds_behind: c.seconds_behind_source,
                    transactions_behind: behind,
                    waited_ms,
                });
            }
            let stopped_on_error = (c.io_thread == ThreadState::Stopped
                && c.last_io_error.as_deref().is_some_and(|e| !e.is_empty()))
                || (c.sql_thread == ThreadState::Stopped
                    && c.last_sql_error.as_deref().is_some_and(|e| !e.is_empty()));
            if stopped_on_error {
                return Err(not_running(Some(c)));
            }
        }
        if started.elapsed() >= bound {
            return Err(not_running(channel));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Received or applied, whichever is further: an idle link has received
/// nothing new, and a lagging one has received more than it applied.
fn received(flavor: Flavor, channel: &ReplicationStatus) -> Option<GtidSet> {
    let parse = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| GtidSet::parse(flavor, &t.replace('\n', "")).ok())
    };
    match (
        parse(&channel.retrieved_gtids),
        parse(&channel.executed_gtids),
    ) {
        (Some(a), Some(b)) => Some(a.union(&b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_follows_the_servers_error() {
        assert!(hint("Access denied for user 'cutover_repl'@'127.0.0.10'").contains("password"));
        assert!(
            hint("Authentication plugin 'caching_sha2_password' reported error: Authentication requires secure connection.")
                .contains("tls")
        );
        assert!(
            hint("error connecting to master: Can't connect to server on '10.1.1.1'")
                .contains("reach")
        );
        assert!(hint("").contains("never connected"));
    }
}
