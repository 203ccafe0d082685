//! Scheduled events follow the primary: a replica holds its events disabled
//! (`SLAVESIDE_DISABLED`), so only the primary runs them. A promote enables
//! them on the new primary; its inverse disables them again.
//!
//! `ALTER EVENT` gives the event the altering session's definer, sql_mode,
//! time zone and character set unless told otherwise, so each is altered
//! under its own. The change stays out of the binary log: an event's status
//! is each server's own.

use super::gtid::Flavor;
use super::{MysqlError, Session, ident, quote};

/// What a replica calls an event it keeps disabled (MariaDB and MySQL before
/// 8.0.22 / since).
const REPLICA_DISABLED: &str = "('SLAVESIDE_DISABLED', 'REPLICA_SIDE_DISABLED')";

/// One event and the settings it was created under.
struct Event {
    schema: String,
    name: String,
    definer: String,
    sql_mode: String,
    time_zone: String,
    character_set_client: String,
    collation_connection: String,
}

impl Event {
    fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }

    /// `ALTER DEFINER = … EVENT … {status}` under the event's own settings.
    fn alter(&self, status: &str) -> String {
        let definer = match self.definer.rsplit_once('@') {
            Some((user, host)) => format!("{}@{}", quote(user), quote(host)),
            None => quote(&self.definer),
        };
        format!(
            "SET SESSION sql_log_bin = 0, SESSION sql_mode = {}, SESSION time_zone = {}, \
             SESSION character_set_client = {}, SESSION collation_connection = {}; \
             ALTER DEFINER = {definer} EVENT {} {status}",
            quote(&self.sql_mode),
            quote(&self.time_zone),
            quote(&self.character_set_client),
            quote(&self.collation_connection),
            self.qualified()
        )
    }
}

async fn events(session: &mut Session, filter: &str) -> Result<Vec<Event>, MysqlError> {
    let rows: Vec<(String, String, String, String, String, String, String)> = session
        .query(
            "list events",
            &format!(
                "SELECT EVENT_SCHEMA, EVENT_NAME, DEFINER, SQL_MODE, TIME_ZONE, \
                 CHARACTER_SET_CLIENT, COLLATION_CONNECTION FROM information_schema.EVENTS \
                 WHERE {filter} ORDER BY EVENT_SCHEMA, EVENT_NAME"
            ),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                schema,
                name,
                definer,
                sql_mode,
                time_zone,
                character_set_client,
                collation_connection,
            )| {
                Event {
                    schema,
                    name,
                    definer,
                    sql_mode,
                    time_zone,
                    character_set_client,
                    collation_connection,
                }
            },
        )
        .collect())
}

/// On a server becoming primary (a session of its own, closed by the
/// caller): enable every event it held disabled as a replica. Returns
/// `schema.event` of each one enabled.
pub async fn enable_on_new_primary(session: &mut Session) -> Result<Vec<String>, MysqlError> {
    let mut enabled = Vec::new();
    for event in events(session, &format!("STATUS IN {REPLICA_DISABLED}")).await? {
        session
            .exec("enable an event on the new primary", &event.alter("ENABLE"))
            .await?;
        enabled.push(format!("{}.{}", event.schema, event.name));
    }
    Ok(enabled)
}

/// On a server going back to being a replica: disable again the events a
/// promote enabled (`schema.event`, as [`enable_on_new_primary`] returned them).
pub async fn disable_on_replica(
    session: &mut Session,
    flavor: Flavor,
    names: &[String],
) -> Result<(), MysqlError> {
    let status = match flavor {
        Flavor::Mariadb => "DISABLE ON SLAVE",
        Flavor::Mysql => "DISABLE ON REPLICA",
    };
    for event in events(session, "STATUS = 'ENABLED'").await? {
        if names.contains(&format!("{}.{}", event.schema, event.name)) {
            session
                .exec("disable an event on a replica", &event.alter(status))
                .await?;
        }
    }
    Ok(())
}
