//! What the targets need besides rows: the databases a snapshot copies, whether a target is empty, and the source's objects created on every target (tables first, then indexes, triggers and views once the rows are in).

use super::*;

/// The databases a snapshot copies: the plan's (or every non-system schema),
/// plus the orchestrator's own where the source has them, since replication
/// will carry the probe's and the heartbeat's writes into them.
pub async fn databases(
    session: &mut Session,
    plan: &ValidatedPlan,
) -> Result<Vec<String>, MysqlError> {
    let all: Vec<String> = session
        .query(
            "list schemas",
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
        )
        .await?;
    Ok(all
        .into_iter()
        .filter(|s| !schema::SYSTEM_SCHEMAS.contains(&s.as_str()))
        .filter(|s| {
            schema::ORCHESTRATOR_SCHEMAS.contains(&s.as_str())
                || plan
                    .databases
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|d| d == s))
        })
        .collect())
}

/// The databases whose tables make a target "not empty": the orchestrator's
/// own hold no business data and are always replaced.
pub(super) fn business_databases(databases: &[String]) -> Vec<String> {
    databases
        .iter()
        .filter(|d| !schema::ORCHESTRATOR_SCHEMAS.contains(&d.as_str()))
        .cloned()
        .collect()
}

/// What a target already holds in `databases` (every non-system schema when
/// `None`): `None` when it holds no table, else a line saying what.
pub async fn existing_tables(
    session: &mut Session,
    databases: Option<&[String]>,
) -> Result<Option<String>, MysqlError> {
    let schemas: Vec<String> = match databases {
        Some(list) => list.to_vec(),
        None => session
            .query::<String>(
                "list schemas",
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA",
            )
            .await?
            .into_iter()
            .filter(|s| !schema::EXCLUDED_SCHEMAS.contains(&s.as_str()))
            .collect(),
    };
    if schemas.is_empty() {
        return Ok(None);
    }
    emptiness(session, &schemas).await
}

/// Refuse a target whose selected databases already hold tables (unless replacing).
pub(super) async fn emptiness(
    session: &mut Session,
    databases: &[String],
) -> Result<Option<String>, MysqlError> {
    if databases.is_empty() {
        return Ok(None);
    }
    let in_list = databases
        .iter()
        .map(|d| quote(d))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(String, u64, Option<u64>)> = session
        .query(
            "look for existing tables",
            &format!(
                "SELECT TABLE_SCHEMA, COUNT(*), SUM(TABLE_ROWS) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA IN ({in_list}) GROUP BY TABLE_SCHEMA ORDER BY TABLE_SCHEMA"
            ),
        )
        .await?;
    Ok((!rows.is_empty()).then(|| {
        rows.iter()
            .map(|(schema, tables, rows)| {
                format!(
                    "{schema} has {tables} table(s), about {} row(s)",
                    rows.unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }))
}

/// Everything the targets need besides the rows.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Schema {
    /// `(name, CREATE DATABASE IF NOT EXISTS …)`.
    pub databases: Vec<(String, String)>,
    pub tables: Vec<ddl::TableDdl>,
    pub objects: Vec<(String, ddl::Objects)>,
    /// MariaDB sequences, with their state at the snapshot point.
    #[serde(default)]
    pub sequences: Vec<Sequence>,
    /// `(schema.table, counter)`: each AUTO_INCREMENT counter as the source
    /// had it at the snapshot point (rows deleted from a table's end leave it
    /// above the largest key, which the rows alone would not reproduce).
    #[serde(default)]
    pub counters: Vec<(String, u64)>,
    /// Some table is system-versioned: its history rows are loaded too.
    #[serde(default)]
    pub history: bool,
}

/// A MariaDB sequence: `CREATE SEQUENCE …` and its one row of state.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Sequence {
    pub schema: String,
    pub name: String,
    pub create: String,
    /// `(next_not_cached_value, …)` as SQL values, read after the point.
    pub state: Option<String>,
}

/// What one target did not take, and what it took differently from the source.
#[derive(Debug, Clone, Default)]
pub struct Shortfall {
    /// `what: the server's error`, one per table or object not reproduced.
    pub missing: Vec<String>,
    /// Tables not created, so not loaded.
    pub skipped_tables: std::collections::HashSet<String>,
    pub warnings: Vec<String>,
}

impl Shortfall {
    fn miss(&mut self, what: String, error: &MysqlError) {
        self.missing.push(format!("{what}: {error}"));
    }
}

pub(super) async fn read_schema(
    session: &mut Session,
    flavor: Flavor,
    databases: &[String],
    tables: &[TableSpec],
) -> Result<Schema, MysqlError> {
    let mut out = Schema {
        databases: Vec::new(),
        tables: Vec::new(),
        objects: Vec::new(),
        sequences: Vec::new(),
        counters: Vec::new(),
        history: tables.iter().any(|t| t.versioned),
    };
    for database in databases {
        let row: Option<(String, String)> = session
            .query_first(
                "read a database definition",
                &format!("SHOW CREATE DATABASE {}", ident(database)),
            )
            .await?;
        let create = row
            .map(|(_, sql)| sql)
            .unwrap_or_else(|| format!("CREATE DATABASE {}", ident(database)));
        out.databases.push((
            database.clone(),
            create.replacen("CREATE DATABASE ", "CREATE DATABASE IF NOT EXISTS ", 1),
        ));
        out.objects.push((
            database.clone(),
            ddl::objects(session, database, flavor).await?,
        ));
        let sequences: Vec<String> = session
            .query(
                "list sequences",
                &format!(
                    "SELECT TABLE_NAME FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'SEQUENCE' ORDER BY TABLE_NAME",
                    quote(database)
                ),
            )
            .await?;
        for name in sequences {
            // SHOW CREATE TABLE of a sequence prints its CREATE SEQUENCE.
            let row: Option<(String, String)> = session
                .query_first(
                    "read a sequence definition",
                    &format!("SHOW CREATE TABLE {}.{}", ident(database), ident(&name)),
                )
                .await?;
            if let Some((_, create)) = row {
                out.sequences.push(Sequence {
                    schema: database.clone(),
                    name,
                    create,
                    state: None,
                });
            }
        }
    }
    for table in tables {
        let row: Option<(String, String)> = session
            .query_first(
                "read a table definition",
                &format!("SHOW CREATE TABLE {}", table_name(table)),
            )
            .await?;
        let create = row.map(|(_, sql)| sql).unwrap_or_default();
        out.tables.push(ddl::split_table(table, &create));
    }
    Ok(out)
}

/// Right after the point: each table's AUTO_INCREMENT counter and each
/// sequence's state. Counters are not transactional: read now, they are at
/// least the point's and at most what replication will bring, which raises
/// them on the targets as it goes.
pub(super) async fn read_counters(
    session: &mut Session,
    flavor: Flavor,
    databases: &[String],
    schema: &mut Schema,
) -> Result<(), MysqlError> {
    if databases.is_empty() {
        return Ok(());
    }
    if flavor == Flavor::Mysql {
        // MySQL caches table statistics for a day unless told otherwise.
        session
            .exec(
                "read live table statistics",
                "SET SESSION information_schema_stats_expiry = 0",
            )
            .await?;
    }
    let in_list = databases
        .iter()
        .map(|d| quote(d))
        .collect::<Vec<_>>()
        .join(", ");
    let counters: Vec<(String, String, u64)> = session
        .query(
            "read AUTO_INCREMENT counters",
            &format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA IN ({in_list}) AND AUTO_INCREMENT IS NOT NULL \
                 AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_SCHEMA, TABLE_NAME"
            ),
        )
        .await?;
    schema.counters = counters
        .into_iter()
        .map(|(database, table, counter)| {
            (format!("{}.{}", ident(&database), ident(&table)), counter)
        })
        .collect();
    for sequence in &mut schema.sequences {
        let row: Option<mysql_async::Row> = session
            .query_first(
                "read a sequence's state",
                &format!(
                    "SELECT * FROM {}.{}",
                    ident(&sequence.schema),
                    ident(&sequence.name)
                ),
            )
            .await?;
        sequence.state = row.map(|row| {
            let values: Vec<String> = row
                .unwrap()
                .into_iter()
                .map(|value| value.as_sql(false))
                .collect();
            format!("({})", values.join(", "))
        });
    }
    Ok(())
}

/// What an earlier, interrupted attempt already created: a table or view
/// (1050), a routine (1304), an index (1061), a trigger (1359), an event (1537),
/// a foreign key (1826).
pub(super) fn already_exists(error: &MysqlError) -> bool {
    error.is_server_error(&[1050, 1304, 1061, 1359, 1537, 1826])
}

/// Run a DDL statement; on a resume, one that finds its object in place is done.
pub(super) async fn create(
    session: &mut Session,
    what: &str,
    sql: &str,
    resuming: bool,
) -> Result<(), MysqlError> {
    match session.exec(what, sql).await {
        Err(error) if resuming && already_exists(&error) => Ok(()),
        other => other,
    }
}

/// The loading session's own settings, put back after an object's.
const LOADER_SETTINGS: &str = "SET NAMES utf8mb4; \
    SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', SESSION time_zone = '+00:00'";

/// A statement the server refused (the session is still good), as opposed to
/// a lost connection or a timeout, which end the target's load.
fn refused(error: &MysqlError) -> bool {
    error.server_code().is_some()
}

/// The server refused a definer the loading account may not set (1227).
fn definer_refused(error: &MysqlError) -> bool {
    error.is_server_error(&[1227])
}

/// One routine, trigger, view or event, in the session settings its source
/// created it under, with its definer when the loading account may set one.
/// Returns `Err` only for a session that is no longer usable.
async fn create_object(
    session: &mut Session,
    database: &str,
    object: &ddl::StoredObject,
    resuming: bool,
    shortfall: &mut Shortfall,
) -> Result<bool, MysqlError> {
    let what = object.describe(database);
    let settings = if object.sendable_as_is() {
        object.session_settings()
    } else {
        shortfall.warnings.push(format!(
            "{what} was created with character_set_client utf8mb4, not its source's {}: its text \
             holds characters that set would encode differently",
            object.character_set_client
        ));
        ddl::StoredObject {
            character_set_client: "utf8mb4".into(),
            collation_connection: "utf8mb4_general_ci".into(),
            ..object.clone()
        }
        .session_settings()
    };
    let statement = |create: &str| format!("{settings}; USE {}; {create}", ident(database));
    let mut result = create(
        session,
        "create a stored object",
        &statement(&object.create),
        resuming,
    )
    .await;
    if let (Err(error), Some(definer)) = (&result, object.definer())
        && definer_refused(error)
    {
        let reason = error.to_string();
        result = create(
            session,
            "create a stored object",
            &statement(&ddl::without_definer(&object.create)),
            resuming,
        )
        .await;
        if result.is_ok() {
            shortfall.warnings.push(format!(
                "{what} was created without its definer {definer}, so it runs with the loading \
                 account's rights: the account may not set definers ({reason}); grant it \
                 SET_ANY_DEFINER (MySQL) or SET USER (MariaDB) and load again to keep them"
            ));
        }
    }
    session
        .exec("restore the loading session's settings", LOADER_SETTINGS)
        .await?;
    match result {
        Ok(()) => Ok(true),
        Err(error) if refused(&error) => {
            shortfall.miss(what, &error);
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Databases, routines, tables (without secondary indexes) and sequences on
/// one target. A table or object the target refuses is recorded in
/// `shortfall` and the rest goes on; `Err` means the target itself failed.
pub(super) async fn create_schema(
    session: &mut Session,
    schema: &Schema,
    replace: bool,
    resuming: bool,
    shortfall: &mut Shortfall,
) -> Result<(), MysqlError> {
    for (database, create) in &schema.databases {
        let ours = schema::ORCHESTRATOR_SCHEMAS.contains(&database.as_str());
        if replace || (ours && !resuming) {
            session
                .exec(
                    "drop the database being replaced",
                    &format!("DROP DATABASE IF EXISTS {}", ident(database)),
                )
                .await?;
        }
        session.exec("create a database", create).await?;
    }
    for (database, objects) in &schema.objects {
        for routine in &objects.routines {
            create_object(session, database, routine, resuming, shortfall).await?;
        }
    }
    for table in &schema.tables {
        let sql = format!("USE {}; {}", ident(&table.schema), table.create);
        if let Err(error) = create(session, "create a table", &sql, resuming).await {
            if !refused(&error) {
                return Err(error);
            }
            let name = table.display_name();
            shortfall.skipped_tables.insert(name.clone());
            shortfall.miss(format!("table `{name}`"), &error);
        }
    }
    for sequence in &schema.sequences {
        let name = format!("{}.{}", ident(&sequence.schema), ident(&sequence.name));
        let mut sql = format!("USE {}; {}", ident(&sequence.schema), sequence.create);
        if let Some(state) = &sequence.state {
            // A sequence's one row: writing it sets every value at once.
            sql.push_str(&format!("; INSERT INTO {name} VALUES {state}"));
        }
        if let Err(error) = create(session, "create a sequence", &sql, resuming).await {
            if !refused(&error) {
                return Err(error);
            }
            shortfall.miss(format!("sequence {name}"), &error);
        }
    }
    session
        .exec("restore the loading session's settings", LOADER_SETTINGS)
        .await
}

/// Secondary indexes and foreign keys, AUTO_INCREMENT counters, triggers,
/// views and events, once the rows are in. What the target refuses is recorded
/// in `shortfall`; `Err` means the target itself failed.
pub(super) async fn finish_schema(
    session: &mut Session,
    schema: &Schema,
    resuming: bool,
    shortfall: &mut Shortfall,
) -> Result<(), MysqlError> {
    for table in &schema.tables {
        let name = table.display_name();
        if shortfall.skipped_tables.contains(&name) {
            continue;
        }
        if let Some(alter) = &table.add_indexes
            && let Err(error) = create(session, "build secondary indexes", alter, resuming).await
        {
            if !refused(&error) {
                return Err(error);
            }
            shortfall.miss(format!("indexes or foreign keys of `{name}`"), &error);
        }
    }
    for (table, counter) in &schema.counters {
        let sql = format!("ALTER TABLE {table} AUTO_INCREMENT = {counter}");
        if let Err(error) = session.exec("set an AUTO_INCREMENT counter", &sql).await {
            if !refused(&error) {
                return Err(error);
            }
            // A table not created is already reported.
            if !error.is_server_error(&[1146]) {
                shortfall.miss(format!("the AUTO_INCREMENT counter of {table}"), &error);
            }
        }
    }
    for (database, objects) in &schema.objects {
        for trigger in &objects.triggers {
            create_object(session, database, trigger, resuming, shortfall).await?;
        }
    }
    // Views may select from views: create what can be created, pass after
    // pass, and report the ones that never could be.
    let mut pending: Vec<(&String, &ddl::StoredObject)> = schema
        .objects
        .iter()
        .flat_map(|(database, objects)| objects.views.iter().map(move |v| (database, v)))
        .collect();
    while !pending.is_empty() {
        let mut attempt = Shortfall::default();
        let mut still = Vec::new();
        for (database, view) in &pending {
            if !create_object(session, database, view, resuming, &mut attempt).await? {
                still.push((*database, *view));
            }
        }
        let progressed = still.len() < pending.len();
        shortfall.warnings.append(&mut attempt.warnings);
        if !progressed {
            shortfall.missing.append(&mut attempt.missing);
            break;
        }
        pending = still;
    }
    for (database, objects) in &schema.objects {
        for event in &objects.events {
            create_object(session, database, event, resuming, shortfall).await?;
        }
    }
    Ok(())
}
