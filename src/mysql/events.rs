//! Scheduled events follow the primary: a replica holds its events disabled
//! (`SLAVESIDE_DISABLED`), so only the primary runs them. A promote enables
//! them on the new primary; the unfreeze disables them on the demoted one
//! (and a promote's inverse on the candidate it demotes).
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

    /// `ALTER [DEFINER = …] EVENT … {status}` under the event's own settings.
    fn alter(&self, status: &str, keep_definer: bool) -> String {
        let definer = match (keep_definer, self.definer.rsplit_once('@')) {
            (false, _) => String::new(),
            (true, Some((user, host))) => format!("DEFINER = {}@{} ", quote(user), quote(host)),
            (true, None) => format!("DEFINER = {} ", quote(&self.definer)),
        };
        format!(
            "SET SESSION sql_log_bin = 0, SESSION sql_mode = {}, SESSION time_zone = {}, \
             SESSION character_set_client = {}, SESSION collation_connection = {}; \
             ALTER {definer}EVENT {} {status}",
            quote(&self.sql_mode),
            quote(&self.time_zone),
            quote(&self.character_set_client),
            quote(&self.collation_connection),
            self.qualified()
        )
    }

    fn name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// What changing events' status did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changed {
    /// `schema.event` of each event changed.
    pub events: Vec<String>,
    /// Those the account could not alter under their definer (it may not set
    /// definers: SET_ANY_DEFINER on MySQL, SET USER on MariaDB): they now run
    /// as the account. Their status mattered more: an event left running on a
    /// demoted primary would write there too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definer_lost: Vec<String>,
}

/// Alter each event's status; under its definer where the account may set it.
async fn set_status(
    session: &mut Session,
    chosen: &[Event],
    status: &str,
) -> Result<Changed, MysqlError> {
    let mut changed = Changed::default();
    for event in chosen {
        let what = "change an event's status";
        match session.exec(what, &event.alter(status, true)).await {
            Ok(()) => {}
            Err(error) if error.is_server_error(&[1227]) => {
                session.exec(what, &event.alter(status, false)).await?;
                changed.definer_lost.push(event.name());
            }
            Err(error) => return Err(error),
        }
        changed.events.push(event.name());
    }
    Ok(changed)
}

/// `filter`, narrowed to `schemas` when given (a scoped fence leaves the
/// other databases' events alone).
fn in_schemas(filter: String, schemas: Option<&[String]>) -> String {
    match schemas {
        None => filter,
        Some(schemas) => format!(
            "{filter} AND EVENT_SCHEMA IN ({})",
            schemas
                .iter()
                .map(|s| quote(s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
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

/// Whether the server holds any event a replica keeps disabled (`replica`)
/// or any enabled event (`!replica`), in `schemas` when given: one cheap query
/// on any session, so the work below, which needs a session of its own, is
/// skipped when there is none.
pub async fn any(
    session: &mut Session,
    replica: bool,
    schemas: Option<&[String]>,
) -> Result<bool, MysqlError> {
    let filter = if replica {
        format!("STATUS IN {REPLICA_DISABLED}")
    } else {
        "STATUS = 'ENABLED'".to_string()
    };
    let filter = in_schemas(filter, schemas);
    let found: Option<u64> = session
        .query_first(
            "look for scheduled events",
            &format!("SELECT COUNT(*) FROM information_schema.EVENTS WHERE {filter}"),
        )
        .await?;
    Ok(found.unwrap_or(0) > 0)
}

/// On a server becoming primary (a session of its own, closed by the
/// caller): enable every event it held disabled as a replica (in `schemas`
/// when given). Returns `schema.event` of each one enabled.
pub async fn enable_on_new_primary(
    session: &mut Session,
    schemas: Option<&[String]>,
) -> Result<Changed, MysqlError> {
    let filter = in_schemas(format!("STATUS IN {REPLICA_DISABLED}"), schemas);
    let chosen = events(session, &filter).await?;
    set_status(session, &chosen, "ENABLE").await
}

/// On a server going back to being a replica (a session of its own): disable
/// its enabled events, only those named in `only` when given (`schema.event`,
/// as [`enable_on_new_primary`] returned them) and only in `schemas` when
/// given (a scoped fence leaves the other databases' events running). MySQL's `super_read_only`
/// refuses ALTER EVENT, so it is lifted around them (`read_only` stays on).
/// Says which it disabled.
pub async fn disable_on_replica(
    session: &mut Session,
    flavor: Flavor,
    only: Option<&[String]>,
    schemas: Option<&[String]>,
) -> Result<Changed, MysqlError> {
    let status = match flavor {
        Flavor::Mariadb => "DISABLE ON SLAVE",
        Flavor::Mysql => "DISABLE ON REPLICA",
    };
    let chosen: Vec<Event> = events(session, &in_schemas("STATUS = 'ENABLED'".into(), schemas))
        .await?
        .into_iter()
        .filter(|e| only.is_none_or(|names| names.contains(&e.name())))
        .collect();
    if chosen.is_empty() {
        return Ok(Changed::default());
    }
    let lifted = flavor == Flavor::Mysql
        && session
            .query_first::<i64>("read super_read_only", "SELECT @@GLOBAL.super_read_only")
            .await?
            == Some(1);
    if lifted {
        session
            .exec(
                "lift super_read_only for ALTER EVENT",
                "SET GLOBAL super_read_only = 0",
            )
            .await?;
    }
    let changed = set_status(session, &chosen, status).await;
    if lifted {
        session
            .exec("restore super_read_only", "SET GLOBAL super_read_only = 1")
            .await?;
    }
    changed
}
