//! Statements that change a server's role: fences, replication source,
//! GTID waits, session kills. Flavor differences live here and nowhere else.

use std::time::Duration;

use super::gtid::Flavor;
use super::server::{self, ReplicationStatus};
use super::{MysqlError, Session, quote};
use crate::secret::Secret;

/// `SET GLOBAL read_only` (and `super_read_only` on MySQL, which also fences
/// accounts with SUPER).
pub async fn set_read_only(
    session: &mut Session,
    flavor: Flavor,
    read_only: bool,
) -> Result<(), MysqlError> {
    let value = u8::from(read_only);
    let sql = match (flavor, read_only) {
        (Flavor::Mariadb, _) => format!("SET GLOBAL read_only = {value}"),
        (Flavor::Mysql, true) => "SET GLOBAL super_read_only = 1".to_string(),
        (Flavor::Mysql, false) => {
            "SET GLOBAL super_read_only = 0; SET GLOBAL read_only = 0".to_string()
        }
    };
    let what = if read_only {
        "set read_only = 1"
    } else {
        "set read_only = 0"
    };
    session.exec(what, &sql).await
}

pub async fn read_only(session: &mut Session) -> Result<bool, MysqlError> {
    let value: Option<i64> = session
        .query_first("read read_only", "SELECT @@GLOBAL.read_only")
        .await?;
    Ok(value.unwrap_or(0) != 0)
}

/// The position a replica waits for and a new replica starts from, as the
/// server prints it: MariaDB `gtid_binlog_pos` (last GTID per domain), MySQL
/// `gtid_executed`.
pub async fn binlog_position(session: &mut Session, flavor: Flavor) -> Result<String, MysqlError> {
    let sql = match flavor {
        Flavor::Mariadb => "SELECT @@GLOBAL.gtid_binlog_pos",
        Flavor::Mysql => "SELECT @@GLOBAL.gtid_executed",
    };
    let text: Option<String> = session.query_first("read the GTID position", sql).await?;
    Ok(text.unwrap_or_default().replace('\n', ""))
}

/// Wait until the server has applied `position`; `false` when `limit` ran out first.
pub async fn wait_for_position(
    session: &mut Session,
    flavor: Flavor,
    position: &str,
    limit: Duration,
) -> Result<bool, MysqlError> {
    let seconds = limit.as_secs_f64().max(0.001);
    let sql = match flavor {
        Flavor::Mariadb => format!("SELECT MASTER_GTID_WAIT({}, {seconds:.3})", quote(position)),
        Flavor::Mysql => format!(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {seconds:.3})",
            quote(position)
        ),
    };
    // The server bounds the wait; the client bound adds a margin for the round trip.
    let client_limit = limit + Duration::from_secs(2);
    let result: Option<i64> = session
        .query_first_within(client_limit, "wait for the GTID position", &sql)
        .await?;
    // MariaDB: 0 reached, -1 timeout. MySQL: 0 reached, 1 timeout.
    Ok(result == Some(0))
}

/// Stop and forget every replication channel (the server becomes a primary).
pub async fn reset_replication(session: &mut Session, flavor: Flavor) -> Result<(), MysqlError> {
    let sql = match flavor {
        Flavor::Mariadb => "STOP ALL SLAVES; RESET SLAVE ALL",
        Flavor::Mysql => "STOP REPLICA; RESET REPLICA ALL",
    };
    session.exec("stop and reset replication", sql).await
}

pub async fn stop_replication(session: &mut Session, flavor: Flavor) -> Result<(), MysqlError> {
    let sql = match flavor {
        Flavor::Mariadb => "STOP ALL SLAVES",
        Flavor::Mysql => "STOP REPLICA",
    };
    session.exec("stop replication", sql).await
}

pub async fn start_replication(session: &mut Session, flavor: Flavor) -> Result<(), MysqlError> {
    let sql = match flavor {
        Flavor::Mariadb => "START SLAVE",
        Flavor::Mysql => "START REPLICA",
    };
    session.exec("start replication", sql).await
}

/// MariaDB names a connection in the statement; MySQL appends `FOR CHANNEL`.
fn channel_clause(flavor: Flavor, channel: Option<&str>) -> (String, String) {
    match (flavor, channel.filter(|name| !name.is_empty())) {
        (_, None) => (String::new(), String::new()),
        (Flavor::Mariadb, Some(name)) => (format!(" {}", quote(name)), String::new()),
        (Flavor::Mysql, Some(name)) => (String::new(), format!(" FOR CHANNEL {}", quote(name))),
    }
}

/// Stop one channel's applier (the SQL thread). The receiver stays connected
/// and keeps filling the relay log, so starting again reconnects nothing.
pub async fn stop_applier(
    session: &mut Session,
    flavor: Flavor,
    channel: Option<&str>,
) -> Result<(), MysqlError> {
    let (name, suffix) = channel_clause(flavor, channel);
    let sql = match flavor {
        Flavor::Mariadb => format!("STOP SLAVE{name} SQL_THREAD"),
        Flavor::Mysql => format!("STOP REPLICA SQL_THREAD{suffix}"),
    };
    session.exec("stop the replication applier", &sql).await
}

/// Start one channel so that its applier applies exactly `position` and
/// stops there. MariaDB takes a GTID stop position only with both threads
/// stopped, so its receiver is stopped first (it reconnects); MySQL's
/// receiver keeps running.
pub async fn start_applier_until(
    session: &mut Session,
    flavor: Flavor,
    channel: Option<&str>,
    position: &str,
) -> Result<(), MysqlError> {
    let (name, suffix) = channel_clause(flavor, channel);
    let sql = match flavor {
        Flavor::Mariadb => format!(
            "STOP SLAVE{name} IO_THREAD; START SLAVE{name} UNTIL master_gtid_pos = {}",
            quote(position)
        ),
        Flavor::Mysql => format!(
            "START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS = {}{suffix}; START REPLICA IO_THREAD{suffix}",
            quote(position)
        ),
    };
    session
        .exec("start the replication applier up to a position", &sql)
        .await
}

/// Start whichever of a channel's threads are stopped.
pub async fn start_channel(
    session: &mut Session,
    flavor: Flavor,
    channel: Option<&str>,
) -> Result<(), MysqlError> {
    let (name, suffix) = channel_clause(flavor, channel);
    let sql = match flavor {
        Flavor::Mariadb => format!("START SLAVE{name}"),
        Flavor::Mysql => format!("START REPLICA{suffix}"),
    };
    session.exec("start replication", &sql).await
}

/// The applied position as the server prints it: MariaDB `gtid_slave_pos`
/// (one GTID per domain), MySQL `gtid_executed`.
pub async fn applied_position(session: &mut Session, flavor: Flavor) -> Result<String, MysqlError> {
    let sql = match flavor {
        Flavor::Mariadb => "SELECT @@GLOBAL.gtid_slave_pos",
        Flavor::Mysql => "SELECT @@GLOBAL.gtid_executed",
    };
    let text: Option<String> = session
        .query_first("read the applied position", sql)
        .await?;
    Ok(text.unwrap_or_default().replace('\n', ""))
}

/// Where a replica pulls from.
#[derive(Debug, Clone)]
pub struct SourceSpec<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a Secret,
    pub tls: bool,
    /// What the link carries: `db.%` patterns ([`replicated_tables`]), or
    /// everything when empty.
    pub filter: &'a [String],
}

/// Point replication at `source` with GTID auto-positioning. Replication must
/// be stopped. The statement holds the password, so errors never echo it.
pub async fn change_source(
    session: &mut Session,
    flavor: Flavor,
    source: &SourceSpec<'_>,
) -> Result<(), MysqlError> {
    let sql = match flavor {
        Flavor::Mariadb => format!(
            "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
             MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_SSL={}",
            quote(source.host),
            source.port,
            quote(source.user),
            quote(source.password.expose()),
            u8::from(source.tls)
        ),
        // caching_sha2_password (MySQL's default since 8.0) refuses a plain
        // connection unless the replica may fetch the server's RSA key.
        Flavor::Mysql => format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST={}, SOURCE_PORT={}, SOURCE_USER={}, \
             SOURCE_PASSWORD={}, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, {}",
            quote(source.host),
            source.port,
            quote(source.user),
            quote(source.password.expose()),
            mysql_auth_options(source.tls)
        ),
    };
    session
        .exec(
            &format!(
                "point replication at {}:{} (CHANGE MASTER)",
                source.host, source.port
            ),
            &sql,
        )
        .await?;
    set_replication_filter(session, flavor, source.filter).await
}

/// MariaDB, under a scoped fence: where a replica should start on a new
/// source in `domain` (the shared source's GTID domain), or `None` to keep its
/// position. The source's binary log lacks the transactions its link filtered
/// out (the shared source's other databases), so a replica that saw later ones
/// asks for a GTID the source cannot serve (error 1236). Such a replica already
/// holds every transaction of that domain the source has: it starts from the
/// source's own position there, which the source always accepts. Positions are
/// MariaDB's (`domain-server-seq`, one per domain); `replica` is its current one.
pub fn aligned_start(
    replica: &str,
    source_binlog: &str,
    source_current: &str,
    domain: u32,
) -> Option<String> {
    fn parse(position: &str) -> Vec<(u32, u32, u64)> {
        position
            .split(',')
            .filter_map(|gtid| {
                let mut parts = gtid.trim().splitn(3, '-');
                Some((
                    parts.next()?.parse().ok()?,
                    parts.next()?.parse().ok()?,
                    parts.next()?.parse().ok()?,
                ))
            })
            .collect()
    }
    let seq_in = |position: &[(u32, u32, u64)]| {
        position
            .iter()
            .find(|(d, _, _)| *d == domain)
            .map(|&(_, _, seq)| seq)
    };
    let mut start = parse(replica);
    let ahead = seq_in(&start)? > seq_in(&parse(source_binlog)).unwrap_or(0);
    let source_gtid = parse(source_current)
        .into_iter()
        .find(|(d, _, _)| *d == domain)?;
    if !ahead || seq_in(&start) == Some(source_gtid.2) {
        return None;
    }
    for gtid in &mut start {
        if gtid.0 == domain {
            *gtid = source_gtid;
        }
    }
    Some(
        start
            .iter()
            .map(|(d, s, n)| format!("{d}-{s}-{n}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// MariaDB: start the (stopped) link of `replica` at [`aligned_start`]
/// against `source`. Strict mode refuses a replica position behind its own
/// binary log, which is what this sets on purpose, so it is off for the
/// statement. Returns the new position when it moved.
pub async fn align_start(
    replica: &mut Session,
    source: &mut Session,
    domain: u32,
) -> Result<Option<String>, MysqlError> {
    let current: Option<String> = replica
        .query_first(
            "read the replica's position",
            "SELECT @@GLOBAL.gtid_current_pos",
        )
        .await?;
    let positions: Option<(String, String)> = source
        .query_first(
            "read the new source's positions",
            "SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_current_pos",
        )
        .await?;
    let (binlog, source_current) = positions.unwrap_or_default();
    let Some(start) = aligned_start(
        &current.unwrap_or_default(),
        &binlog,
        &source_current,
        domain,
    ) else {
        return Ok(None);
    };
    replica
        .exec(
            "start the replica at the new source's position in the shared domain",
            &format!(
                "SET @strict = @@GLOBAL.gtid_strict_mode; SET GLOBAL gtid_strict_mode = 0; \
                 SET GLOBAL gtid_slave_pos = {}; SET GLOBAL gtid_strict_mode = @strict",
                quote(&start)
            ),
        )
        .await?;
    Ok(Some(start))
}

/// The orchestrator's own schemas, which every link carries (heartbeat, probe).
const OWN_SCHEMAS: [&str; 2] = ["cutover", "cutover_probe"];

/// The tables a link carries for a plan: its databases and the orchestrator's
/// own, as `db.%` patterns (`replicate_wild_do_table`, which also filters a
/// statement by the tables it touches, not by its default database); none
/// (everything) for a plan that names no databases.
pub fn replicated_tables(databases: Option<&[String]>) -> Vec<String> {
    let Some(databases) = databases else {
        return Vec::new();
    };
    let mut patterns: Vec<String> = databases
        .iter()
        .map(String::as_str)
        .chain(OWN_SCHEMAS)
        .map(|db| format!("{}.%", db.replace('%', "\\%").replace('_', "\\_")))
        .collect();
    patterns.sort();
    patterns.dedup();
    patterns
}

/// The runbook's line for the filter a plan's links get.
pub fn describe_filter(databases: Option<&[String]>) -> String {
    let patterns = replicated_tables(databases);
    if patterns.is_empty() {
        return "SET GLOBAL replicate_wild_do_table = ''   -- every database; MySQL: CHANGE REPLICATION FILTER REPLICATE_WILD_DO_TABLE = () FOR CHANNEL ''".into();
    }
    format!(
        "SET GLOBAL replicate_wild_do_table = '{}'   -- the plan's databases only; MySQL: CHANGE REPLICATION FILTER REPLICATE_WILD_DO_TABLE = ({}) FOR CHANNEL ''",
        patterns.join(","),
        patterns
            .iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Set what the (default) link carries. Its applier must be stopped. Neither
/// server keeps a filter set this way across a restart: prechecks compare what
/// each target has with what the plan needs, and every link the orchestrator
/// starts sets it again.
pub async fn set_replication_filter(
    session: &mut Session,
    flavor: Flavor,
    patterns: &[String],
) -> Result<(), MysqlError> {
    let sql = match flavor {
        Flavor::Mariadb => format!(
            "SET GLOBAL replicate_wild_do_table = {}",
            quote(&patterns.join(","))
        ),
        Flavor::Mysql => format!(
            "CHANGE REPLICATION FILTER REPLICATE_WILD_DO_TABLE = ({}) FOR CHANNEL ''",
            patterns
                .iter()
                .map(|p| quote(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    session.exec("set the replication filter", &sql).await
}

/// What the (default) link carries now: its `replicate_wild_do_table`
/// patterns (empty: everything it is not told to ignore otherwise).
pub async fn replication_filter(
    session: &mut Session,
    flavor: Flavor,
) -> Result<Vec<String>, MysqlError> {
    let text: Option<String> = match flavor {
        Flavor::Mariadb => {
            session
                .query_first(
                    "read the replication filter",
                    "SELECT @@GLOBAL.replicate_wild_do_table",
                )
                .await?
        }
        Flavor::Mysql => {
            session
                .query_first(
                    "read the replication filter",
                    "SELECT FILTER_RULE FROM performance_schema.replication_applier_filters \
                     WHERE CHANNEL_NAME = '' AND FILTER_NAME = 'REPLICATE_WILD_DO_TABLE'",
                )
                .await?
        }
    };
    let mut patterns: Vec<String> = text
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    patterns.sort();
    Ok(patterns)
}

/// A running link carries what `patterns` say: set again (applier stopped
/// and restarted) when it does not, as after a restart. Returns whether it
/// had to be set.
pub async fn ensure_replication_filter(
    session: &mut Session,
    flavor: Flavor,
    patterns: &[String],
) -> Result<bool, MysqlError> {
    let mut wanted = patterns.to_vec();
    wanted.sort();
    if replication_filter(session, flavor).await? == wanted {
        return Ok(false);
    }
    stop_replication(session, flavor).await?;
    set_replication_filter(session, flavor, &wanted).await?;
    start_replication(session, flavor).await?;
    Ok(true)
}

/// How a MySQL replica authenticates: TLS when the source has it in the
/// plan, else the source's public key for `caching_sha2_password`.
pub fn mysql_auth_options(tls: bool) -> &'static str {
    if tls {
        "SOURCE_SSL=1"
    } else {
        "SOURCE_SSL=0, GET_SOURCE_PUBLIC_KEY=1"
    }
}

/// Where a replica seeded with a snapshot continues: MariaDB's `slave_pos`
/// replica from `gtid_slave_pos`; a MySQL replica from its `gtid_executed`,
/// which a snapshot load does not fill with the source's transactions, so the
/// ones the snapshot holds are added to `gtid_purged` (`+set`, MySQL 8.0+:
/// nothing of the target's own history is reset).
pub async fn set_replica_start(
    session: &mut Session,
    flavor: Flavor,
    position: &str,
) -> Result<(), MysqlError> {
    match flavor {
        Flavor::Mariadb => {
            session
                .exec(
                    "set gtid_slave_pos",
                    &format!("SET GLOBAL gtid_slave_pos = {}", quote(position)),
                )
                .await
        }
        Flavor::Mysql => {
            let missing: Option<String> = session
                .query_first(
                    "compare the snapshot's position with the target's",
                    &format!(
                        "SELECT GTID_SUBTRACT({}, @@GLOBAL.gtid_executed)",
                        quote(position)
                    ),
                )
                .await?;
            match missing.filter(|set| !set.trim().is_empty()) {
                Some(set) => {
                    session
                        .exec(
                            "mark the snapshot's transactions as applied",
                            &format!("SET GLOBAL gtid_purged = {}", quote(&format!("+{set}"))),
                        )
                        .await
                }
                None => Ok(()),
            }
        }
    }
}

/// The first replication channel, if any.
pub async fn channel(
    session: &mut Session,
    flavor: Flavor,
) -> Result<Option<ReplicationStatus>, MysqlError> {
    Ok(server::replication(session, flavor)
        .await?
        .into_iter()
        .next())
}

/// A session the freeze must drain: not ours, not replication, not a server thread.
#[derive(Debug, Clone)]
pub struct ClientSession {
    pub id: u64,
    pub user: String,
    pub command: String,
    pub busy: bool,
    /// The session's current database, if any.
    pub db: Option<String>,
}

/// Client sessions other than `exclude_users` and this connection.
pub async fn client_sessions(
    session: &mut Session,
    exclude_users: &[&str],
) -> Result<Vec<ClientSession>, MysqlError> {
    /// ID, USER, COMMAND, INFO, DB.
    type Row = (u64, String, String, Option<String>, Option<String>);
    let rows: Vec<Row> = session
        .query(
            "list client sessions",
            "SELECT ID, USER, COMMAND, INFO, DB FROM information_schema.PROCESSLIST \
             WHERE ID <> CONNECTION_ID()",
        )
        .await?;
    const SERVER_COMMANDS: [&str; 8] = [
        "Binlog Dump",
        "Binlog Dump GTID",
        "Daemon",
        "Slave_IO",
        "Slave_SQL",
        "Slave_worker",
        "Connect",
        "Killed",
    ];
    Ok(rows
        .into_iter()
        .filter(|(_, user, command, _, _)| {
            !SERVER_COMMANDS.contains(&command.as_str())
                && user != "system user"
                && user != "event_scheduler"
                && !exclude_users.contains(&user.as_str())
        })
        .map(|(id, user, command, info, db)| ClientSession {
            id,
            user,
            busy: command != "Sleep" || info.is_some(),
            command,
            db,
        })
        .collect())
}

/// `KILL CONNECTION`; a session that is already gone is not an error.
pub async fn kill_connection(session: &mut Session, id: u64) -> Result<(), MysqlError> {
    match session
        .exec("kill a client session", &format!("KILL CONNECTION {id}"))
        .await
    {
        // Unknown thread: it ended on its own.
        Err(error) if error.is_server_error(&[1094]) => Ok(()),
        other => other,
    }
}

pub async fn connection_id(session: &mut Session) -> Result<u64, MysqlError> {
    Ok(session
        .query_first("read the connection id", "SELECT CONNECTION_ID()")
        .await?
        .unwrap_or(0))
}

/// Global privileges of the connected account, upper-case, from `SHOW GRANTS`.
pub async fn global_privileges(session: &mut Session) -> Result<Vec<String>, MysqlError> {
    let rows: Vec<String> = session.query("read grants", "SHOW GRANTS").await?;
    Ok(parse_global_privileges(&rows))
}

/// Privileges granted `ON *.*`; `ALL PRIVILEGES` comes back as `ALL`.
pub fn parse_global_privileges(grants: &[String]) -> Vec<String> {
    let mut privileges = Vec::new();
    for grant in grants {
        let upper = grant.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((list, target)) = rest.split_once(" ON ") else {
            continue;
        };
        if !target.trim_start().starts_with("*.*") {
            continue;
        }
        for privilege in list.split(',') {
            let privilege = privilege.trim();
            if privilege == "ALL PRIVILEGES" || privilege == "ALL" {
                privileges.push("ALL".to_string());
            } else if !privilege.is_empty() {
                privileges.push(privilege.to_string());
            }
        }
    }
    privileges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_past_the_sources_binlog_in_the_shared_domain_starts_at_the_sources_position() {
        // Saw the shared source's 0-10-55 (filtered); the new source logged
        // up to 0-10-47 and knows 0-10-51.
        assert_eq!(
            aligned_start("0-10-55,11-11-4", "0-10-47,11-11-4", "0-10-51,11-11-4", 0),
            Some("0-10-51,11-11-4".into())
        );
        // Behind or level with what the source logged: its own position.
        assert_eq!(aligned_start("0-10-40", "0-10-47", "0-10-51", 0), None);
        assert_eq!(aligned_start("0-10-47", "0-10-47", "0-10-51", 0), None);
        // Exactly the source's position already, or no such domain.
        assert_eq!(aligned_start("0-10-51", "0-10-47", "0-10-51", 0), None);
        assert_eq!(aligned_start("11-11-4", "0-10-47", "0-10-51", 0), None);
    }

    #[test]
    fn a_link_carries_the_plans_databases_and_the_orchestrators() {
        assert!(replicated_tables(None).is_empty());
        assert_eq!(
            replicated_tables(Some(&["refunds".to_string(), "pay_out".to_string()])),
            ["cutover.%", "cutover\\_probe.%", "pay\\_out.%", "refunds.%"]
        );
    }

    #[test]
    fn a_mysql_replica_without_tls_may_fetch_the_sources_key() {
        assert!(mysql_auth_options(false).contains("GET_SOURCE_PUBLIC_KEY=1"));
        assert_eq!(mysql_auth_options(true), "SOURCE_SSL=1");
    }

    #[test]
    fn global_privileges_come_from_grants_on_star_star() {
        let grants = vec![
            "GRANT RELOAD, PROCESS, SUPER, READ_ONLY ADMIN ON *.* TO `cutover`@`127.%` IDENTIFIED BY PASSWORD '*9B'".to_string(),
            "GRANT SELECT, INSERT ON `refunds`.* TO `cutover`@`127.%`".to_string(),
        ];
        assert_eq!(
            parse_global_privileges(&grants),
            ["RELOAD", "PROCESS", "SUPER", "READ_ONLY ADMIN"]
        );
        let all =
            vec!["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION".to_string()];
        assert_eq!(parse_global_privileges(&all), ["ALL"]);
    }
}
