//! What a server is and does, read the same way from MariaDB and MySQL.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mysql_async::{Row, Value};
use serde::Serialize;

use super::gtid::{Flavor, GtidSet};
use super::{MysqlError, Session};

/// Server identity, fencing and binary-log settings.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFacts {
    pub flavor: Flavor,
    pub version: String,
    pub server_id: u64,
    pub read_only: bool,
    /// MySQL only.
    pub super_read_only: Option<bool>,
    pub log_bin: bool,
    pub binlog_format: Option<String>,
    pub log_replica_updates: Option<bool>,
    /// MySQL `gtid_mode` (`ON`, `OFF`, …); MariaDB always has GTIDs.
    pub gtid_mode: Option<String>,
    /// MariaDB `gtid_strict_mode`.
    pub gtid_strict_mode: Option<bool>,
    /// Every transaction this server has executed, as the flavor prints it.
    #[serde(serialize_with = "as_text")]
    pub executed: GtidSet,
}

fn as_text<S: serde::Serializer>(set: &GtidSet, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&set.to_string())
}

impl Flavor {
    /// MariaDB says so in its version string (`10.11.6-MariaDB-0+deb12u1-log`).
    pub fn from_version(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        }
    }
}

/// Whether a replication thread runs (`Yes`), is trying to connect (`Connecting`) or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadState {
    Running,
    Connecting,
    Stopped,
}

impl ThreadState {
    fn parse(text: Option<&str>) -> ThreadState {
        match text.map(str::to_ascii_lowercase).as_deref() {
            Some("yes") => ThreadState::Running,
            Some("connecting") | Some("preparing") => ThreadState::Connecting,
            _ => ThreadState::Stopped,
        }
    }
}

/// One replication channel, with MySQL's `Replica_*`/`Source_*` names and
/// MariaDB's `Slave_*`/`Master_*` names read into the same fields.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationStatus {
    pub channel: Option<String>,
    pub source_host: String,
    pub source_port: u16,
    pub io_thread: ThreadState,
    pub sql_thread: ThreadState,
    pub last_io_error: Option<String>,
    pub last_sql_error: Option<String>,
    /// The server's own estimate; clock-dependent, shown for contrast only.
    pub seconds_behind_source: Option<u64>,
    /// Received from the source (MySQL `Retrieved_Gtid_Set`, MariaDB `Gtid_IO_Pos`).
    pub retrieved_gtids: Option<String>,
    /// Applied (MySQL `Executed_Gtid_Set`, MariaDB `Gtid_Slave_Pos`).
    pub executed_gtids: Option<String>,
}

/// Which flavor the server is, from its version (one round trip).
pub async fn flavor(session: &mut Session) -> Result<Flavor, MysqlError> {
    let version: Option<String> = session
        .query_first("read the server version", "SELECT VERSION()")
        .await?;
    Ok(Flavor::from_version(&version.unwrap_or_default()))
}

/// Read identity, settings and executed GTIDs in three round trips.
pub async fn facts(session: &mut Session) -> Result<ServerFacts, MysqlError> {
    let version: String = session
        .query_first("read the server version", "SELECT VERSION()")
        .await?
        .unwrap_or_default();
    let flavor = Flavor::from_version(&version);
    let rows: Vec<(String, Option<String>)> = session
        .query(
            "read server variables",
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('server_id', 'read_only', \
             'super_read_only', 'log_bin', 'binlog_format', 'log_slave_updates', \
             'log_replica_updates', 'gtid_mode', 'gtid_strict_mode')",
        )
        .await?;
    let variables: HashMap<String, String> = rows
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.unwrap_or_default()))
        .collect();
    let get = |name: &str| variables.get(name).map(String::as_str);
    let flag = |name: &str| get(name).map(|value| matches!(value, "ON" | "1" | "YES"));
    let executed = executed(session, flavor).await?;
    Ok(ServerFacts {
        flavor,
        version,
        server_id: get("server_id").and_then(|v| v.parse().ok()).unwrap_or(0),
        read_only: flag("read_only").unwrap_or(false),
        super_read_only: match flavor {
            Flavor::Mysql => flag("super_read_only"),
            Flavor::Mariadb => None,
        },
        log_bin: flag("log_bin").unwrap_or(false),
        binlog_format: get("binlog_format").map(str::to_string),
        log_replica_updates: flag("log_replica_updates").or_else(|| flag("log_slave_updates")),
        gtid_mode: match flavor {
            Flavor::Mysql => get("gtid_mode").map(str::to_string),
            Flavor::Mariadb => None,
        },
        gtid_strict_mode: match flavor {
            Flavor::Mariadb => flag("gtid_strict_mode"),
            Flavor::Mysql => None,
        },
        executed,
    })
}

/// The executed GTID set, in one round trip (also used for frequent polling).
///
/// MariaDB: the binlog state holds the last GTID per (domain, server); the
/// replica position adds what was applied without `log_slave_updates`.
pub async fn executed(session: &mut Session, flavor: Flavor) -> Result<GtidSet, MysqlError> {
    let text = match flavor {
        Flavor::Mariadb => {
            let row: Option<(String, String)> = session
                .query_first(
                    "read the executed GTIDs",
                    "SELECT @@GLOBAL.gtid_binlog_state, @@GLOBAL.gtid_slave_pos",
                )
                .await?;
            row.map(|(state, position)| format!("{state},{position}"))
        }
        Flavor::Mysql => {
            session
                .query_first("read the executed GTIDs", "SELECT @@GLOBAL.gtid_executed")
                .await?
        }
    };
    GtidSet::parse(flavor, &text.unwrap_or_default()).map_err(|error| MysqlError::Query {
        cluster: session_name(session),
        what: "read the executed GTIDs".to_string(),
        reason: error.to_string(),
        code: None,
    })
}

fn session_name(session: &Session) -> String {
    session.endpoint().name.clone()
}

/// The server's replication channels; empty when it replicates from nobody.
pub async fn replication(
    session: &mut Session,
    flavor: Flavor,
) -> Result<Vec<ReplicationStatus>, MysqlError> {
    let statement = match flavor {
        Flavor::Mariadb => "SHOW ALL SLAVES STATUS",
        Flavor::Mysql => "SHOW REPLICA STATUS",
    };
    let rows: Vec<Row> = match session.query("read replication status", statement).await {
        Ok(rows) => rows,
        // MySQL before 8.0.22 knows only the old statement.
        Err(error) if flavor == Flavor::Mysql && error.is_server_error(&[1064]) => {
            session
                .query("read replication status", "SHOW SLAVE STATUS")
                .await?
        }
        Err(error) => return Err(error),
    };
    Ok(rows
        .iter()
        .map(|row| normalised_status(&columns(row)))
        .filter(|status| !status.source_host.is_empty())
        .collect())
}

/// Column name (normalised to the `Slave_*`/`Master_*` spelling) → text value.
fn columns(row: &Row) -> HashMap<String, Option<String>> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let value = row.as_ref(index).and_then(value_text);
            (normalise_column(&column.name_str()), value)
        })
        .collect()
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// `Replica_IO_Running` → `Slave_IO_Running`, `Seconds_Behind_Source` → `Seconds_Behind_Master`.
pub fn normalise_column(name: &str) -> String {
    name.split('_')
        .map(|word| match word {
            "Replica" => "Slave",
            "Source" => "Master",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("_")
}

fn normalised_status(columns: &HashMap<String, Option<String>>) -> ReplicationStatus {
    let text = |name: &str| columns.get(name).cloned().flatten();
    let non_empty = |name: &str| text(name).filter(|value| !value.trim().is_empty());
    ReplicationStatus {
        channel: non_empty("Connection_name").or_else(|| non_empty("Channel_Name")),
        source_host: text("Master_Host").unwrap_or_default(),
        source_port: text("Master_Port")
            .and_then(|port| port.parse().ok())
            .unwrap_or(0),
        io_thread: ThreadState::parse(text("Slave_IO_Running").as_deref()),
        sql_thread: ThreadState::parse(text("Slave_SQL_Running").as_deref()),
        last_io_error: non_empty("Last_IO_Error"),
        last_sql_error: non_empty("Last_SQL_Error"),
        seconds_behind_source: text("Seconds_Behind_Master").and_then(|s| s.parse().ok()),
        retrieved_gtids: non_empty("Retrieved_Gtid_Set").or_else(|| non_empty("Gtid_IO_Pos")),
        executed_gtids: non_empty("Executed_Gtid_Set").or_else(|| non_empty("Gtid_Slave_Pos")),
    }
}

/// The server clock's offset from ours, NTP-style: the best of a few round trips.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClockOffset {
    /// Server clock minus orchestrator clock, in milliseconds.
    pub offset_ms: f64,
    /// Round trip of the best sample; the offset is exact to ± half of it.
    pub round_trip_ms: f64,
}

pub async fn clock_offset(session: &mut Session) -> Result<ClockOffset, MysqlError> {
    let mut best: Option<ClockOffset> = None;
    for _ in 0..3 {
        let sent_wall = unix_micros_now();
        let sent = Instant::now();
        let server: Option<String> = session
            .query_first(
                "read the server clock",
                "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) AS CHAR)",
            )
            .await?;
        let round_trip = sent.elapsed();
        let Some(server_seconds) = server.and_then(|s| s.parse::<f64>().ok()) else {
            continue;
        };
        let midpoint_micros = sent_wall as f64 + round_trip.as_micros() as f64 / 2.0;
        let sample = ClockOffset {
            offset_ms: (server_seconds * 1e6 - midpoint_micros) / 1e3,
            round_trip_ms: round_trip.as_secs_f64() * 1e3,
        };
        if best.is_none_or(|b| sample.round_trip_ms < b.round_trip_ms) {
            best = Some(sample);
        }
    }
    best.ok_or_else(|| MysqlError::Query {
        cluster: session_name(session),
        what: "read the server clock".to_string(),
        reason: "the server returned no usable time".to_string(),
        code: None,
    })
}

/// Microseconds since the Unix epoch on this host's clock.
pub fn unix_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_column_spellings_read_the_same() {
        assert_eq!(normalise_column("Replica_IO_Running"), "Slave_IO_Running");
        assert_eq!(normalise_column("Source_Host"), "Master_Host");
        assert_eq!(
            normalise_column("Seconds_Behind_Source"),
            "Seconds_Behind_Master"
        );
        assert_eq!(normalise_column("Slave_SQL_Running"), "Slave_SQL_Running");

        let mysql: HashMap<String, Option<String>> = [
            ("Source_Host", Some("10.0.0.5")),
            ("Source_Port", Some("3306")),
            ("Replica_IO_Running", Some("Connecting")),
            ("Replica_SQL_Running", Some("Yes")),
            ("Last_IO_Error", Some("error connecting to master")),
            ("Last_SQL_Error", Some("")),
            ("Seconds_Behind_Source", None),
            (
                "Executed_Gtid_Set",
                Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (normalise_column(k), v.map(str::to_string)))
        .collect();
        let status = normalised_status(&mysql);
        assert_eq!(status.source_host, "10.0.0.5");
        assert_eq!(status.source_port, 3306);
        assert_eq!(status.io_thread, ThreadState::Connecting);
        assert_eq!(status.sql_thread, ThreadState::Running);
        assert_eq!(status.last_sql_error, None);
        assert_eq!(
            status.last_io_error.as_deref(),
            Some("error connecting to master")
        );
        assert_eq!(status.seconds_behind_source, None);
        assert!(status.executed_gtids.unwrap().ends_with(":1-5"));
    }

    #[test]
    fn flavor_comes_from_the_version() {
        assert_eq!(
            Flavor::from_version("10.11.6-MariaDB-0+deb12u1-log"),
            Flavor::Mariadb
        );
        assert_eq!(Flavor::from_version("8.0.36"), Flavor::Mysql);
        assert_eq!(Flavor::from_version("8.4.0-commercial"), Flavor::Mysql);
    }
}
