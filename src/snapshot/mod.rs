//! One consistent snapshot of the source, fanned out to every target at once,
//! and replication started from its GTID position.
//!
//! Flow: prechecks (binlog and GTID on the source, empty targets) → schema on
//! the targets (databases, routines, tables without their secondary indexes)
//! → the source's brief read lock opens one snapshot per worker at one GTID
//! position → workers read each key-range chunk once and write it to every
//! target concurrently (the slowest target paces the read: one chunk in flight
//! per worker) → secondary indexes, triggers and views → report.

pub mod ddl;
pub mod directory;
pub mod resume;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mysql_async::Row;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::checksum::canonical::{self, Dialect, ident, table_name};
use crate::checksum::chunk::{self, Range};
use crate::checksum::point;
use crate::checksum::schema::{self, TableSpec};
use crate::mysql::{Endpoint, Flavor, MysqlError, Session, control, quote, server};
use crate::outcome::ErrorKind;
use crate::plan::{Cluster, ValidatedPlan};
use crate::secret::SecretError;
use resume::{Journal, Loaded, Recorded, TableResume, Tracker};

/// Rows read per chunk of a keyed table, and per batch of a keyless one.
const CHUNK_ROWS: u64 = 5_000;
/// How often a snapshot journals its progress (a resume checks what is journaled
/// and reloads the rest, so this bounds the work a kill costs, not correctness).
const JOURNAL_EVERY: Duration = Duration::from_millis(500);
/// Largest INSERT sent (well under the servers' default 16 MiB packet).
const MAX_STATEMENT_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Targets to load; empty: every enabled target.
    pub targets: Vec<String>,
    /// Reader connections on the source, each with a loader per target.
    pub workers: usize,
    /// Drop and reload databases that already hold tables on a target.
    pub replace: bool,
    /// Load with `sql_log_bin = 0` (unsafe when a target has replicas of its own).
    pub skip_binlog: bool,
    /// Also write the snapshot here: gzip chunk files and a manifest with their sha256.
    pub directory: Option<std::path::PathBuf>,
    pub progress: bool,
    /// Continue an interrupted snapshot from its journal: keep (after checking)
    /// what each target already holds, load the rest.
    pub resume: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the source: {0}")]
    Source(#[source] MysqlError),
    #[error("the source `{cluster}` cannot be snapshotted: {problem}")]
    SourceNotReady { cluster: String, problem: String },
    #[error("target `{cluster}` is not empty ({detail}); the snapshot loads only empty targets")]
    NotEmpty { cluster: String, detail: String },
    #[error("snapshot target `{0}` is not an enabled target in the plan")]
    UnknownTarget(String),
    #[error("nothing to snapshot: no table in {0} on the source")]
    NoTables(String),
    #[error("no target could be loaded: {0}")]
    AllTargetsFailed(String),
    #[error("snapshot directory: {0}")]
    Directory(String),
    #[error("the state store: {0}")]
    Journal(#[from] crate::store::StoreError),
    /// A file of a snapshot directory does not match its manifest: nothing is loaded.
    #[error(
        "snapshot directory {directory}: {file} {problem}; the copy is damaged, so nothing was loaded"
    )]
    Corrupt {
        directory: String,
        file: String,
        problem: String,
    },
}

impl SnapshotError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::Secret(_)
            | SnapshotError::UnknownTarget(_)
            | SnapshotError::NoTables(_) => ErrorKind::InvalidInput,
            SnapshotError::NotEmpty { .. }
            | SnapshotError::SourceNotReady { .. }
            | SnapshotError::Corrupt { .. } => ErrorKind::Refused,
            SnapshotError::Source(_)
            | SnapshotError::AllTargetsFailed(_)
            | SnapshotError::Directory(_)
            | SnapshotError::Journal(_) => ErrorKind::Failed,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            SnapshotError::NotEmpty { .. } => {
                Some("pass --replace (or `replace: true`) to drop and reload them".into())
            }
            SnapshotError::NoTables(_) => Some("check `databases:` in the plan".into()),
            SnapshotError::Corrupt { .. } => Some("take a new snapshot".into()),
            SnapshotError::Journal(error) => error.hint(),
            _ => None,
        }
    }

    pub fn cluster(&self) -> Option<&str> {
        match self {
            SnapshotError::Source(error) => Some(error.cluster()),
            SnapshotError::SourceNotReady { cluster, .. }
            | SnapshotError::NotEmpty { cluster, .. } => Some(cluster),
            SnapshotError::UnknownTarget(cluster) => Some(cluster),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetOutcome {
    pub cluster: String,
    /// `loaded` or `failed`.
    pub status: &'static str,
    pub rows: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableCopy {
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
    pub chunks: u64,
    pub key: Vec<String>,
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    /// `completed` (every target loaded) or `partial` (some failed; see `clusters`).
    pub status: &'static str,
    pub gtid_position: String,
    pub rows: u64,
    /// Bytes of row data sent to each target.
    pub bytes: u64,
    pub elapsed_ms: u64,
    pub source_lock_ms: u64,
    /// Targets that hold the snapshot.
    pub targets: Vec<String>,
    pub clusters: Vec<TargetOutcome>,
    pub tables: Vec<TableCopy>,
    pub databases: Vec<String>,
    pub warnings: Vec<String>,
    /// Set when an interrupted snapshot was resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
}

/// What a resume kept and redid, in chunks × targets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resumed {
    /// Chunks already on a target that matched the new snapshot and were kept.
    pub chunks_kept: u64,
    /// Chunks already on a target that differed (written since) and were reloaded.
    pub chunks_reloaded: u64,
    /// `(target, table)` pairs whose earlier progress was discarded and loaded again.
    pub tables_restarted: u64,
}

/// Session settings of every loading session.
fn loader_setup(skip_binlog: bool) -> String {
    let mut sql = String::from(
        "SET SESSION time_zone = '+00:00', SESSION foreign_key_checks = 0, \
         SESSION unique_checks = 0, SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    );
    if skip_binlog {
        sql.push_str("; SET SESSION sql_log_bin = 0");
    }
    sql
}

async fn connect(endpoint: &Endpoint, setup: &str) -> Result<Session, MysqlError> {
    let mut session = Session::connect(endpoint).await?;
    session.exec("prepare the session", setup).await?;
    Ok(session)
}

fn targets_of(plan: &ValidatedPlan, names: &[String]) -> Result<Vec<Cluster>, SnapshotError> {
    if names.is_empty() {
        return Ok(plan.enabled_targets().cloned().collect());
    }
    names
        .iter()
        .map(|name| {
            plan.enabled_targets()
                .find(|c| &c.name == name)
                .cloned()
                .ok_or_else(|| SnapshotError::UnknownTarget(name.clone()))
        })
        .collect()
}

/// The databases a snapshot copies: the plan's (or every non-system schema),
/// plus the orchestrator's own where the source has them, since replication
/// will carry the probe's and the heartbeat's writes into them.
async fn databases(session: &mut Session, plan: &ValidatedPlan) -> Result<Vec<String>, MysqlError> {
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
fn business_databases(databases: &[String]) -> Vec<String> {
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
async fn emptiness(
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

/// Everything the targets need before the rows arrive.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Schema {
    /// `(name, CREATE DATABASE IF NOT EXISTS …)`.
    pub databases: Vec<(String, String)>,
    pub tables: Vec<ddl::TableDdl>,
    pub objects: Vec<(String, ddl::Objects)>,
}

async fn read_schema(
    session: &mut Session,
    databases: &[String],
    tables: &[TableSpec],
) -> Result<Schema, MysqlError> {
    let mut out = Schema {
        databases: Vec::new(),
        tables: Vec::new(),
        objects: Vec::new(),
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
        out.objects
            .push((database.clone(), ddl::objects(session, database).await?));
    }
    for table in tables {
        let row: Option<(String, String)> = session
            .query_first(
                "read a table definition",
                &format!("SHOW CREATE TABLE {}", table_name(table)),
            )
            .await?;
        let create = row.map(|(_, sql)| sql).unwrap_or_default();
        out.tables
            .push(ddl::split_table(&table.schema, &table_name(table), &create));
    }
    Ok(out)
}

/// What an earlier, interrupted attempt already created: a table or view
/// (1050), a routine (1304), an index (1061), a trigger (1359).
fn already_exists(error: &MysqlError) -> bool {
    error.is_server_error(&[1050, 1304, 1061, 1359])
}

/// Run a DDL statement; on a resume, one that finds its object in place is done.
async fn create(
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

/// Databases, routines and tables (without secondary indexes) on one target.
async fn create_schema(
    session: &mut Session,
    schema: &Schema,
    replace: bool,
    resuming: bool,
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
        for (mode, statement) in &objects.routines {
            let sql = format!(
                "SET SESSION sql_mode = {}; USE {}; {statement}",
                quote(mode),
                ident(database)
            );
            create(session, "create a routine", &sql, resuming).await?;
        }
    }
    for table in &schema.tables {
        let sql = format!("USE {}; {}", ident(&table.schema), table.create);
        create(session, "create a table", &sql, resuming).await?;
    }
    session
        .exec(
            "restore the session's sql_mode",
            "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
        )
        .await
}

/// Secondary indexes, triggers and views, once the rows are in.
async fn finish_schema(
    session: &mut Session,
    schema: &Schema,
    resuming: bool,
) -> Result<(), MysqlError> {
    for table in &schema.tables {
        if let Some(alter) = &table.add_indexes {
            create(session, "build secondary indexes", alter, resuming).await?;
        }
    }
    for (database, objects) in &schema.objects {
        for (mode, statement) in &objects.triggers {
            let sql = format!(
                "SET SESSION sql_mode = {}; USE {}; {statement}",
                quote(mode),
                ident(database)
            );
            create(session, "create a trigger", &sql, resuming).await?;
        }
    }
    // Views may select from views: create what can be created, pass after pass.
    let mut pending: Vec<(&String, &String)> = schema
        .objects
        .iter()
        .flat_map(|(database, objects)| objects.views.iter().map(move |v| (database, v)))
        .collect();
    let mut last_error = None;
    for _ in 0..=pending.len() {
        if pending.is_empty() {
            break;
        }
        let mut still = Vec::new();
        for (database, view) in pending {
            let sql = format!("USE {}; {view}", ident(database));
            if let Err(error) = create(session, "create a view", &sql, resuming).await {
                last_error = Some(error);
                still.push((database, view));
            }
        }
        pending = still;
    }
    match (pending.is_empty(), last_error) {
        (false, Some(error)) => Err(error),
        _ => Ok(()),
    }
}

/// Each target's outcome, and the load's: `completed` when every target
/// took the rows, `partial` otherwise.
fn outcomes(
    targets: &[String],
    failures: &[Option<String>],
    rows: u64,
) -> (&'static str, Vec<TargetOutcome>) {
    let clusters = targets
        .iter()
        .zip(failures)
        .map(|(name, failure)| TargetOutcome {
            cluster: name.clone(),
            status: if failure.is_some() {
                "failed"
            } else {
                "loaded"
            },
            rows: if failure.is_some() { 0 } else { rows },
            error: failure.clone(),
        })
        .collect();
    let status = if failures.iter().any(Option::is_some) {
        "partial"
    } else {
        "completed"
    };
    (status, clusters)
}

/// One chunk or one keyless table to copy.
#[derive(Debug, Clone)]
struct Job {
    table: usize,
    /// The chunk's number within its table, in key order.
    seq: u64,
    /// `None`: a keyless table, streamed whole.
    range: Option<Range>,
    /// Per target: it already holds this chunk (a resume), so it is checked
    /// against the snapshot and reloaded only if it differs.
    check: Vec<bool>,
}

/// Per target: the first error that took it out of the load.
struct Failures(Mutex<Vec<Option<String>>>);

impl Failures {
    fn fail(&self, target: usize, error: String) {
        let mut failures = self.0.lock().expect("not poisoned");
        if failures[target].is_none() {
            tracing::warn!("{error}; the other targets carry on");
            failures[target] = Some(error);
        }
    }

    fn failed(&self, target: usize) -> bool {
        self.0.lock().expect("not poisoned")[target].is_some()
    }

    fn snapshot(&self) -> Vec<Option<String>> {
        self.0.lock().expect("not poisoned").clone()
    }
}

struct Shared {
    tables: Vec<TableSpec>,
    targets: Vec<String>,
    failures: Failures,
    source_failure: Mutex<Option<String>>,
    /// Where chunk files go, when the snapshot is also written to a directory.
    directory: Option<directory::Writer>,
    /// Per target: it refused `LOAD DATA LOCAL`, so it is loaded with INSERTs.
    inserts_only: Mutex<Vec<bool>>,
    /// Per table: what a resume keeps on each target.
    resumes: Vec<TableResume>,
    /// How a chunk is checksummed when a resume checks it.
    dialect: Dialect,
    chunks_kept: AtomicU64,
    chunks_reloaded: AtomicU64,
}

impl Shared {
    /// Load rows into every healthy target (LOAD DATA, or INSERTs where it is
    /// refused), and write them to the snapshot directory when there is one;
    /// returns the bytes sent to each target.
    async fn send(&self, table: usize, rows: Vec<Row>, loaders: &mut [Option<Session>]) -> u64 {
        let spec = &self.tables[table];
        let load = load_data(spec, &rows);
        let count = rows.len() as u64;
        load_everywhere(&self.failures, loaders, &load, &self.inserts_only, || {
            insert_statements(spec, rows)
        })
        .await;
        // A write failure fails the directory (reported at the end), not the load.
        if let Some(writer) = &self.directory {
            writer.write(spec, count, &load.header, &load.data);
        }
        load.data.len() as u64
    }
}

/// One chunk into every healthy target: LOAD DATA, and the statements
/// `inserts` makes for the targets that refuse it.
async fn load_everywhere(
    failures: &Failures,
    loaders: &mut [Option<Session>],
    load: &LoadData,
    inserts_only: &Mutex<Vec<bool>>,
    inserts: impl FnOnce() -> Vec<String>,
) {
    let by_insert = fan_out_load(failures, loaders, load, inserts_only).await;
    if by_insert.is_empty() {
        return;
    }
    let statements = inserts();
    let mut chosen: Vec<Option<Session>> = loaders
        .iter_mut()
        .enumerate()
        .map(|(t, loader)| {
            if by_insert.contains(&t) {
                loader.take()
            } else {
                None
            }
        })
        .collect();
    fan_out(failures, &mut chosen, &statements).await;
    for (t, loader) in chosen.into_iter().enumerate() {
        if by_insert.contains(&t) {
            loaders[t] = loader;
        }
    }
}

/// A worker's connections: one reader on the source's snapshot, one loader per target.
struct Slot {
    reader: Session,
    loaders: Vec<Option<Session>>,
}

#[derive(Debug, Default)]
struct Copied {
    table: usize,
    seq: u64,
    /// Where the chunk ends (`None`: the end of the table).
    up_to: Option<chunk::Key>,
    /// Per target: the chunk is in.
    done: Vec<bool>,
    rows: u64,
    bytes: u64,
}

/// `INSERT` statements for `rows`, each under [`MAX_STATEMENT_BYTES`].
fn insert_head(table: &TableSpec) -> String {
    format!(
        "INSERT INTO {} ({}) VALUES ",
        table_name(table),
        table
            .columns
            .iter()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn insert_statements(table: &TableSpec, rows: Vec<Row>) -> Vec<String> {
    let tuples = rows.into_iter().map(|row| {
        let values: Vec<String> = row
            .unwrap()
            .into_iter()
            .map(|value| value.as_sql(false))
            .collect();
        format!("({})", values.join(","))
    });
    batch_inserts(&insert_head(table), tuples)
}

/// `head` followed by as many tuples as fit under [`MAX_STATEMENT_BYTES`],
/// statement after statement.
fn batch_inserts(head: &str, tuples: impl Iterator<Item = String>) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = head.to_string();
    for tuple in tuples {
        if current.len() > head.len() && current.len() + tuple.len() + 1 > MAX_STATEMENT_BYTES {
            statements.push(std::mem::replace(&mut current, head.to_string()));
        }
        if current.len() > head.len() {
            current.push(',');
        }
        current.push_str(&tuple);
    }
    if current.len() > head.len() {
        statements.push(current);
    }
    statements
}

/// One chunk as `LOAD DATA LOCAL INFILE` input: the statement and the rows as
/// tab-separated text (LOAD DATA's default escaping; NULL as `\N`).
struct LoadData {
    sql: String,
    data: bytes::Bytes,
    /// What a snapshot directory keeps with the rows, to load them later.
    header: directory::ChunkHeader,
}

/// Append one field with LOAD DATA's escapes.
fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    for byte in value {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            other => out.push(*other),
        }
    }
}

fn load_data(table: &TableSpec, rows: &[Row]) -> LoadData {
    use crate::checksum::schema::ColumnClass;
    // Binary values travel as hex and are decoded by the server, so no
    // character set conversion can touch them.
    let mut targets = Vec::new();
    let mut assignments = Vec::new();
    for (i, column) in table.columns.iter().enumerate() {
        match column.class {
            ColumnClass::Binary => {
                targets.push(format!("@v{i}"));
                assignments.push(format!("{} = UNHEX(@v{i})", ident(&column.name)));
            }
            ColumnClass::Bit => {
                targets.push(format!("@v{i}"));
                assignments.push(format!(
                    "{} = CAST(CONV(@v{i}, 16, 10) AS UNSIGNED)",
                    ident(&column.name)
                ));
            }
            _ => targets.push(ident(&column.name)),
        }
    }
    let mut sql = format!(
        "LOAD DATA LOCAL INFILE 'chunk' INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        table_name(table),
        targets.join(", ")
    );
    if !assignments.is_empty() {
        sql.push_str(&format!(" SET {}", assignments.join(", ")));
    }
    let mut data = Vec::with_capacity(rows.len() * 128);
    for row in rows {
        for (i, column) in table.columns.iter().enumerate() {
            if i > 0 {
                data.push(b'\t');
            }
            let hex = matches!(column.class, ColumnClass::Binary | ColumnClass::Bit);
            match row.as_ref(i) {
                None | Some(mysql_async::Value::NULL) => data.extend_from_slice(b"\\N"),
                Some(mysql_async::Value::Bytes(bytes)) if hex => {
                    data.extend_from_slice(hex::encode(bytes).as_bytes())
                }
                Some(mysql_async::Value::Bytes(bytes)) => push_field(&mut data, bytes),
                Some(other) => {
                    let text = other.as_sql(true);
                    push_field(&mut data, text.trim_matches('\'').as_bytes())
                }
            }
        }
        data.push(b'\n');
    }
    let encodings = table
        .columns
        .iter()
        .map(|column| match column.class {
            ColumnClass::Binary => directory::Encoding::Hex,
            ColumnClass::Bit => directory::Encoding::Bit,
            _ => directory::Encoding::Text,
        })
        .collect();
    LoadData {
        header: directory::ChunkHeader {
            load_sql: sql.clone(),
            insert_head: insert_head(table),
            encodings,
        },
        sql,
        data: bytes::Bytes::from(data),
    }
}

/// Undo LOAD DATA's escapes in one field.
fn unescape_field(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter();
    while let Some(&byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'0') => out.push(0),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    out
}

/// Rows written as LOAD DATA text, as INSERT statements (each under
/// [`MAX_STATEMENT_BYTES`]), for a server that refuses `LOAD DATA LOCAL`.
fn rows_as_inserts(header: &directory::ChunkHeader, data: &[u8]) -> Vec<String> {
    use directory::Encoding;
    let tuples = data
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let values: Vec<String> = line
                .split(|b| *b == b'\t')
                .zip(&header.encodings)
                .map(|(field, encoding)| {
                    if field == b"\\N" {
                        return "NULL".to_string();
                    }
                    let hex = String::from_utf8_lossy(field);
                    match encoding {
                        Encoding::Hex => format!("X'{hex}'"),
                        Encoding::Bit => format!("CAST(CONV('{hex}', 16, 10) AS UNSIGNED)"),
                        Encoding::Text => {
                            let value = unescape_field(field);
                            match String::from_utf8(value) {
                                Ok(text) => quote(&text),
                                Err(error) => format!("X'{}'", hex::encode(error.into_bytes())),
                            }
                        }
                    }
                })
                .collect();
            format!("({})", values.join(","))
        });
    batch_inserts(&header.insert_head, tuples)
}

/// Run one load statement again when InnoDB chose it as a deadlock victim or
/// it timed out on a lock (a resumed chunk's DELETE next to another chunk's
/// insert): the server rolled the whole statement back, so repeating it is safe.
async fn retrying_lock_conflicts(
    session: &mut Session,
    statement: Statement<'_>,
) -> Result<(), MysqlError> {
    const ATTEMPTS: u64 = 4;
    let mut attempt = 1;
    loop {
        let result = match statement {
            Statement::LoadData(sql, data) => {
                session.load_data("load rows", sql, data.clone()).await
            }
            Statement::Insert(sql) => session.exec("load rows", sql).await,
            Statement::Delete(sql) => session.exec("delete a chunk that changed", sql).await,
        };
        match result {
            Err(error) if attempt < ATTEMPTS && lock_conflict(&error) => {
                tracing::debug!("{error}; trying again");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A statement that writes a chunk on a target.
#[derive(Clone, Copy)]
enum Statement<'a> {
    LoadData(&'a str, &'a bytes::Bytes),
    Insert(&'a str),
    Delete(&'a str),
}

/// Deadlock (1213) or lock wait timeout (1205).
fn lock_conflict(error: &MysqlError) -> bool {
    error.is_server_error(&[1213, 1205])
}

/// The server refuses `LOAD DATA LOCAL` (`local_infile=OFF`, MySQL 8's default):
/// MariaDB 4166, MySQL 3948, older servers 1148.
fn local_infile_refused(error: &MysqlError) -> bool {
    error.is_server_error(&[4166, 3948, 1148])
}

/// Load one chunk into every healthy target at once. Returns the targets
/// that refuse `LOAD DATA LOCAL`, which take INSERT statements instead.
async fn fan_out_load(
    failures: &Failures,
    loaders: &mut [Option<Session>],
    load: &LoadData,
    inserts_only: &Mutex<Vec<bool>>,
) -> Vec<usize> {
    let skip = inserts_only.lock().expect("not poisoned").clone();
    let writes = loaders
        .iter_mut()
        .enumerate()
        .filter(|(t, _)| !failures.failed(*t) && !skip[*t])
        .filter_map(|(t, loader)| Some((t, loader.as_mut()?)))
        .map(|(t, loader)| async move {
            retrying_lock_conflicts(loader, Statement::LoadData(&load.sql, &load.data))
                .await
                .map_err(|e| (t, e))
        });
    let mut refused = Vec::new();
    for result in join_all(writes).await {
        match result {
            Err((t, error)) if local_infile_refused(&error) => {
                tracing::warn!("{error}: loading it with INSERT statements instead");
                inserts_only.lock().expect("not poisoned")[t] = true;
                refused.push(t);
            }
            Err((t, error)) => {
                failures.fail(t, error.to_string());
                loaders[t] = None;
            }
            Ok(()) => {}
        }
    }
    (0..loaders.len())
        .filter(|t| skip[*t] && !failures.failed(*t))
        .chain(refused)
        .collect()
}

/// Write the statements to every healthy target at once.
async fn fan_out(failures: &Failures, loaders: &mut [Option<Session>], statements: &[String]) {
    let writes = loaders
        .iter_mut()
        .enumerate()
        .filter(|(t, _)| !failures.failed(*t))
        .filter_map(|(t, loader)| Some((t, loader.as_mut()?)))
        .map(|(t, loader)| async move {
            for sql in statements {
                retrying_lock_conflicts(loader, Statement::Insert(sql))
                    .await
                    .map_err(|e| (t, e))?;
            }
            Ok::<(), (usize, MysqlError)>(())
        });
    for result in join_all(writes).await {
        if let Err((t, error)) = result {
            failures.fail(t, error.to_string());
            loaders[t] = None;
        }
    }
}

/// For a resume: checksum the chunk on the source and on every target that
/// already holds it. Targets that match keep it (returned `true`); the others
/// have the chunk's rows deleted so it can be loaded again.
async fn check_chunk(
    shared: &Shared,
    slot: &mut Slot,
    job: &Job,
) -> Result<(Vec<bool>, u64), MysqlError> {
    let table = &shared.tables[job.table];
    let range = job.range.clone().unwrap_or_else(Range::all);
    let sql = crate::checksum::compare::chunk_sql(
        table,
        &[],
        &range,
        canonical::Form::Fast,
        &shared.dialect,
    );
    let source = crate::checksum::compare::checksum_on(&mut slot.reader, &sql, 0).await?;
    let delete = format!(
        "DELETE FROM {} WHERE {}",
        table_name(table),
        chunk::predicate(table, &range)
    );
    let mut kept = vec![false; slot.loaders.len()];
    let checks = slot
        .loaders
        .iter_mut()
        .enumerate()
        .filter(|(t, _)| job.check[*t] && !shared.failures.failed(*t))
        .filter_map(|(t, loader)| Some((t, loader.as_mut()?)))
        .map(|(t, loader)| {
            let (sql, delete, source) = (&sql, &delete, &source);
            async move {
                let checked = async {
                    let same =
                        crate::checksum::compare::checksum_on(loader, sql, 0).await? == *source;
                    if !same {
                        retrying_lock_conflicts(loader, Statement::Delete(delete)).await?;
                    }
                    Ok::<_, MysqlError>(same)
                };
                (t, checked.await)
            }
        });
    let results = join_all(checks).await;
    for (t, result) in results {
        match result {
            Ok(same) => {
                kept[t] = same;
                let counter = if same {
                    &shared.chunks_kept
                } else {
                    &shared.chunks_reloaded
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                shared.failures.fail(t, error.to_string());
                slot.loaders[t] = None;
            }
        }
    }
    Ok((kept, source.count))
}

async fn copy(shared: &Shared, slot: &mut Slot, job: &Job) -> Result<Copied, MysqlError> {
    let table = &shared.tables[job.table];
    let columns = table
        .columns
        .iter()
        .map(|c| ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut copied = Copied {
        table: job.table,
        seq: job.seq,
        up_to: job.range.as_ref().and_then(|r| r.up_to.clone()),
        ..Copied::default()
    };
    // A resume: targets whose copy of the chunk still matches are left out.
    let mut kept = vec![false; slot.loaders.len()];
    if job.check.iter().any(|c| *c) {
        let (matched, rows) = check_chunk(shared, slot, job).await?;
        kept = matched;
        let everyone_kept = (0..kept.len())
            .all(|t| kept[t] || shared.failures.failed(t) || slot.loaders[t].is_none());
        if everyone_kept && shared.directory.is_none() {
            copied.rows = rows;
            copied.done = (0..kept.len())
                .map(|t| !shared.failures.failed(t))
                .collect();
            return Ok(copied);
        }
    }
    let mut parked: Vec<(usize, Session)> = Vec::new();
    for (t, loader) in slot.loaders.iter_mut().enumerate() {
        if kept[t]
            && let Some(session) = loader.take()
        {
            parked.push((t, session));
        }
    }
    let result = copy_rows(shared, slot, job, &columns, &mut copied).await;
    for (t, session) in parked {
        slot.loaders[t] = Some(session);
    }
    result?;
    copied.done = (0..kept.len())
        .map(|t| !shared.failures.failed(t))
        .collect();
    Ok(copied)
}

/// Read the chunk once and send it to every target still holding a loader.
async fn copy_rows(
    shared: &Shared,
    slot: &mut Slot,
    job: &Job,
    columns: &str,
    copied: &mut Copied,
) -> Result<(), MysqlError> {
    let table = &shared.tables[job.table];
    let Slot { reader, loaders } = slot;
    match &job.range {
        Some(range) => {
            let sql = format!(
                "SELECT {columns} FROM {}{} WHERE {} ORDER BY {}",
                table_name(table),
                chunk::index_hint(table),
                chunk::predicate(table, range),
                chunk::key_order(table)
            );
            let rows: Vec<Row> = reader.query("read a chunk", &sql).await?;
            copied.rows = rows.len() as u64;
            copied.bytes = shared.send(job.table, rows, loaders).await;
        }
        None => {
            // No key to range over: one stream, written batch by batch as it is read.
            let sql = format!("SELECT {columns} FROM {}", table_name(table));
            let mut stream = reader.stream("stream a table without a key", &sql).await?;
            while let Some(rows) = stream.next_batch(CHUNK_ROWS as usize).await? {
                copied.rows += rows.len() as u64;
                copied.bytes += shared.send(job.table, rows, loaders).await;
            }
        }
    }
    Ok(())
}

/// Queue every table's chunks, walking keys on the source.
/// A resume walks first the part of a table the targets already hold (each
/// chunk checked), then the rest.
async fn walk(shared: Arc<Shared>, mut session: Session, jobs: mpsc::Sender<Job>) -> Session {
    for (index, table) in shared.tables.iter().enumerate() {
        let mut seq = 0;
        if table.key.is_none() {
            let check = shared.resumes[index].ranges().remove(0).1;
            let job = Job {
                table: index,
                seq,
                range: None,
                check,
            };
            if jobs.send(job).await.is_err() {
                break;
            }
            continue;
        }
        for (zone, check) in shared.resumes[index].ranges() {
            let mut walker = chunk::KeyWalker::within(zone);
            loop {
                match walker.next(&mut session, table, CHUNK_ROWS).await {
                    Ok(Some(range)) => {
                        let job = Job {
                            table: index,
                            seq,
                            range: Some(range),
                            check: check.clone(),
                        };
                        seq += 1;
                        if jobs.send(job).await.is_err() {
                            return session;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        *shared.source_failure.lock().expect("not poisoned") =
                            Some(error.to_string());
                        return session;
                    }
                }
            }
        }
    }
    session
}

async fn work(
    shared: Arc<Shared>,
    mut slot: Slot,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    copied: mpsc::Sender<Copied>,
) -> Slot {
    loop {
        let job = jobs.lock().await.recv().await;
        let Some(job) = job else { break };
        if shared
            .source_failure
            .lock()
            .expect("not poisoned")
            .is_some()
        {
            break;
        }
        match copy(&shared, &mut slot, &job).await {
            Ok(done) => {
                if copied.send(done).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                *shared.source_failure.lock().expect("not poisoned") = Some(error.to_string());
                break;
            }
        }
    }
    slot
}

/// A target is about to hold a copy of the source: from now on it must never
/// take an application's write, so it is read-only before the first row lands
/// (the loader's account writes through `read_only`: READ_ONLY ADMIN on
/// MariaDB, CONNECTION_ADMIN or SUPER on MySQL, which the prechecks ask for).
async fn fence_target(session: &mut Session) -> Result<(), MysqlError> {
    session
        .exec(
            "make the target read-only before loading it",
            "SET GLOBAL read_only = 1",
        )
        .await
}

/// Connect to each target, refuse one that is not empty (unless replacing),
/// and create the schema. A target that fails is recorded; the others go on.
async fn prepare_targets(
    targets: &[Cluster],
    endpoints: &[Endpoint],
    databases: &[String],
    schema: &Schema,
    options: &SnapshotOptions,
    recorded: Option<&Recorded>,
) -> Result<(Vec<Option<Session>>, Vec<Option<String>>), SnapshotError> {
    let setup = loader_setup(options.skip_binlog);
    let mut failures: Vec<Option<String>> = vec![None; targets.len()];
    let mut controls: Vec<Option<Session>> = Vec::new();
    let business = business_databases(databases);
    for (t, endpoint) in endpoints.iter().enumerate() {
        match connect(endpoint, &setup).await {
            Ok(mut session) => match emptiness(&mut session, &business).await {
                // A resumed target holds the earlier attempt's rows; its check passed then.
                Ok(Some(_)) if recorded.is_some_and(|r| r.prepared.contains(&targets[t].name)) => {
                    controls.push(Some(session))
                }
                Ok(Some(detail)) if !options.replace => {
                    return Err(SnapshotError::NotEmpty {
                        cluster: targets[t].name.clone(),
                        detail,
                    });
                }
                Ok(_) => match fence_target(&mut session).await {
                    Ok(()) => controls.push(Some(session)),
                    Err(error) => {
                        failures[t] = Some(error.to_string());
                        controls.push(None);
                    }
                },
                Err(error) => {
                    failures[t] = Some(error.to_string());
                    controls.push(None);
                }
            },
            Err(error) => {
                failures[t] = Some(error.to_string());
                controls.push(None);
            }
        }
    }
    let created = join_all(
        controls
            .iter_mut()
            .enumerate()
            .filter_map(|(t, s)| Some((t, s.as_mut()?)))
            .map(|(t, session)| async move {
                let replace = options.replace && recorded.is_none();
                (
                    t,
                    create_schema(session, schema, replace, recorded.is_some()).await,
                )
            }),
    )
    .await;
    for (t, result) in created {
        if let Err(error) = result {
            failures[t] = Some(error.to_string());
            controls[t] = None;
        }
    }
    if failures.iter().all(Option::is_some) {
        return Err(SnapshotError::AllTargetsFailed(
            failures
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    Ok((controls, failures))
}

/// One loader session per healthy target, for each worker.
async fn open_loaders(
    workers: usize,
    endpoints: &[Endpoint],
    failures: &mut [Option<String>],
    setup: &str,
) -> Vec<Vec<Option<Session>>> {
    let mut all = Vec::new();
    for _ in 0..workers {
        let mut loaders = Vec::new();
        for (t, endpoint) in endpoints.iter().enumerate() {
            if failures[t].is_some() {
                loaders.push(None);
                continue;
            }
            match connect(endpoint, setup).await {
                Ok(session) => loaders.push(Some(session)),
                Err(error) => {
                    failures[t] = Some(error.to_string());
                    loaders.push(None);
                }
            }
        }
        all.push(loaders);
    }
    all
}

/// Indexes, triggers and views on every target that took the rows; then close.
async fn finish_targets(
    controls: Vec<Option<Session>>,
    schema: &Schema,
    failures: &Failures,
    resuming: bool,
) {
    let mut controls = controls;
    let finished = join_all(
        controls
            .iter_mut()
            .enumerate()
            .filter(|(t, _)| !failures.failed(*t))
            .filter_map(|(t, s)| Some((t, s.as_mut()?)))
            .map(|(t, session)| async move { (t, finish_schema(session, schema, resuming).await) }),
    )
    .await;
    for (t, result) in finished {
        if let Err(error) = result {
            failures.fail(t, error.to_string());
        }
    }
    for session in controls.into_iter().flatten() {
        session.close().await;
    }
}

/// Before a resume loads: on each target, drop triggers (so reloading a chunk
/// fires none; they are created again at the end), delete what lies beyond the
/// part it keeps, and empty the tables it keeps nothing of.
async fn clear_for_resume(
    controls: &mut [Option<Session>],
    failures: &mut [Option<String>],
    databases: &[String],
    tables: &[TableSpec],
    resumes: &[TableResume],
) {
    for (t, control) in controls.iter_mut().enumerate() {
        let Some(session) = control.as_mut() else {
            continue;
        };
        let cleared = async {
            let in_list = databases
                .iter()
                .map(|d| quote(d))
                .collect::<Vec<_>>()
                .join(", ");
            let triggers: Vec<(String, String)> = session
                .query(
                    "list triggers",
                    &format!(
                        "SELECT TRIGGER_SCHEMA, TRIGGER_NAME FROM information_schema.TRIGGERS \
                         WHERE TRIGGER_SCHEMA IN ({in_list})"
                    ),
                )
                .await?;
            for (schema, name) in triggers {
                session
                    .exec(
                        "drop a trigger until the rows are in",
                        &format!("DROP TRIGGER IF EXISTS {}.{}", ident(&schema), ident(&name)),
                    )
                    .await?;
            }
            for (table, resume) in tables.iter().zip(resumes) {
                let sql = match (&resume.zone, resume.keeps[t]) {
                    (Some(Loaded::All), true) => continue,
                    (Some(Loaded::UpTo { up_to }), true) => format!(
                        "DELETE FROM {} WHERE {}",
                        table_name(table),
                        chunk::predicate(
                            table,
                            &Range {
                                after: Some(up_to.clone()),
                                up_to: None,
                            }
                        )
                    ),
                    _ => format!("TRUNCATE TABLE {}", table_name(table)),
                };
                session
                    .exec("clear what the interrupted snapshot left", &sql)
                    .await?;
            }
            Ok::<_, MysqlError>(())
        };
        if let Err(error) = cleared.await {
            failures[t] = Some(error.to_string());
            *control = None;
        }
    }
}

/// Take one consistent snapshot of the plan's databases and load it into the
/// targets. With a journal, progress is recorded per target and table so an
/// interrupted snapshot can be resumed (`options.resume`).
pub async fn run(
    plan: &ValidatedPlan,
    options: &SnapshotOptions,
    journal: Option<&Journal>,
) -> Result<SnapshotReport, SnapshotError> {
    let started = Instant::now();
    let source_cluster = plan.source().clone();
    let targets = targets_of(plan, &options.targets)?;
    let source_endpoint = Endpoint::for_cluster(&source_cluster)?;
    let target_endpoints: Vec<Endpoint> = targets
        .iter()
        .map(Endpoint::for_cluster)
        .collect::<Result<_, _>>()?;
    let mut warnings = Vec::new();

    // The source must log, with GTIDs, for replication to start from the snapshot.
    let mut control = connect(&source_endpoint, "SET SESSION time_zone = '+00:00'")
        .await
        .map_err(SnapshotError::Source)?;
    let facts = server::facts(&mut control)
        .await
        .map_err(SnapshotError::Source)?;
    let not_ready = |problem: &str| SnapshotError::SourceNotReady {
        cluster: source_cluster.name.clone(),
        problem: problem.to_string(),
    };
    if !facts.log_bin {
        return Err(not_ready(
            "log_bin is OFF; replication cannot start from the snapshot (enable log_bin and restart it)",
        ));
    }
    if facts.flavor == Flavor::Mysql && facts.gtid_mode.as_deref() != Some("ON") {
        return Err(not_ready(
            "gtid_mode is not ON (set gtid_mode=ON and enforce_gtid_consistency=ON)",
        ));
    }
    let databases = databases(&mut control, plan)
        .await
        .map_err(SnapshotError::Source)?;
    let tables = schema::discover(&mut control, Some(&databases), &[])
        .await
        .map_err(SnapshotError::Source)?;
    if tables.is_empty() {
        return Err(SnapshotError::NoTables(if databases.is_empty() {
            "no database".to_string()
        } else {
            databases.join(", ")
        }));
    }
    for table in tables.iter().filter(|t| t.key.is_none()) {
        let warning = format!(
            "{} has no primary key or NOT NULL unique key: copied as a single stream",
            table.display_name()
        );
        tracing::warn!("{warning}");
        warnings.push(warning);
    }
    let schema = read_schema(&mut control, &databases, &tables)
        .await
        .map_err(SnapshotError::Source)?;

    let recorded = match (options.resume, journal) {
        (true, Some(journal)) => Some(journal.read().await?),
        (true, None) => Some(Recorded::default()),
        (false, Some(journal)) => {
            journal.clear().await?;
            None
        }
        (false, None) => None,
    };
    let target_names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let resumes: Vec<TableResume> = tables
        .iter()
        .map(|table| match &recorded {
            Some(recorded) => resume::plan_table(
                &table.display_name(),
                &target_names,
                table.key.is_some(),
                recorded,
            ),
            None => TableResume::fresh(targets.len()),
        })
        .collect();

    // Targets: reachable, empty (or replaced, or holding what a resume keeps), schema in place.
    let setup = loader_setup(options.skip_binlog);
    let (mut target_controls, mut failures) = prepare_targets(
        &targets,
        &target_endpoints,
        &databases,
        &schema,
        options,
        recorded.as_ref(),
    )
    .await?;
    let mut tables_restarted = 0;
    if let Some(recorded) = &recorded {
        clear_for_resume(
            &mut target_controls,
            &mut failures,
            &databases,
            &tables,
            &resumes,
        )
        .await;
        for (table, resume) in tables.iter().zip(&resumes) {
            for (t, name) in target_names.iter().enumerate() {
                let key = (name.clone(), table.display_name());
                if !resume.keeps[t] && recorded.loaded.contains_key(&key) {
                    tables_restarted += 1;
                }
            }
        }
        let kept: u64 = resumes
            .iter()
            .map(|r| r.keeps.iter().filter(|k| **k).count() as u64)
            .sum();
        tracing::info!(
            "resuming the snapshot: {kept} table copies are checked chunk by chunk and kept where they match; {tables_restarted} are loaded again"
        );
    }
    if let Some(journal) = journal {
        let ready: Vec<String> = target_names
            .iter()
            .zip(&failures)
            .filter(|(_, failure)| failure.is_none())
            .map(|(name, _)| name.clone())
            .collect();
        journal.prepared(&ready).await?;
    }

    // Worker connections, then one snapshot for all readers at one position.
    // Each reader holds one loader on every target: every pool bounds them
    // (the source also keeps a control and a key-walking session, a target its control).
    let workers = targets
        .iter()
        .map(|t| (t.pool.max as usize).saturating_sub(1))
        .chain([(source_cluster.pool.max as usize).saturating_sub(2)])
        .fold(options.workers, usize::min)
        .max(1);
    let mut readers = Vec::new();
    for _ in 0..workers {
        readers.push(
            connect(&source_endpoint, "SET SESSION time_zone = '+00:00'; SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await
                .map_err(SnapshotError::Source)?,
        );
    }
    let slots_loaders = open_loaders(workers, &target_endpoints, &mut failures, &setup).await;
    let mut walker = connect(&source_endpoint, "SET SESSION time_zone = '+00:00'")
        .await
        .map_err(SnapshotError::Source)?;
    let mut point = None;
    let mut last_error = None;
    for _attempt in 0..3 {
        match point::lock_source(
            &mut control,
            &mut walker,
            facts.flavor,
            readers.iter_mut().collect(),
            Duration::from_secs(5),
        )
        .await
        {
            Ok(found) => {
                point = Some(found);
                break;
            }
            Err(error) => {
                tracing::warn!("could not take the consistent point, retrying: {error}");
                for reader in readers.iter_mut() {
                    let _ = reader.exec("end the snapshot", "ROLLBACK").await;
                }
                last_error = Some(error);
            }
        }
    }
    let Some(point) = point else {
        return Err(SnapshotError::Source(
            last_error.expect("an attempt failed"),
        ));
    };
    tracing::info!(
        position = %point.position,
        lock_ms = point.locked_for.as_millis() as u64,
        workers,
        "snapshot of {} taken",
        source_cluster.name
    );

    let writer = match &options.directory {
        Some(path) if recorded.is_some() => Some(
            directory::Writer::restart(path)
                .map_err(|e| SnapshotError::Directory(e.to_string()))?,
        ),
        Some(path) => Some(
            directory::Writer::create(path).map_err(|e| SnapshotError::Directory(e.to_string()))?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        tables,
        targets: targets.iter().map(|t| t.name.clone()).collect(),
        failures: Failures(Mutex::new(failures)),
        source_failure: Mutex::new(None),
        directory: writer,
        inserts_only: Mutex::new(vec![false; targets.len()]),
        resumes,
        dialect: Dialect {
            json: canonical::JsonNormaliser::for_server(facts.flavor, &facts.version),
            float_precision: crate::checksum::ChecksumOptions::new().float_precision,
        },
        chunks_kept: AtomicU64::new(0),
        chunks_reloaded: AtomicU64::new(0),
    });
    let progress = crate::progress::Progress::new(
        &schema::sizes(&shared.tables),
        options.progress,
        "snapshot",
    );
    let (job_sender, job_receiver) = mpsc::channel(workers * 2);
    let job_receiver = Arc::new(tokio::sync::Mutex::new(job_receiver));
    let (copied_sender, mut copied_receiver) = mpsc::channel(workers * 2);
    let walk_task = tokio::spawn(walk(shared.clone(), walker, job_sender));
    let mut tasks = Vec::new();
    for (reader, loaders) in readers.into_iter().zip(slots_loaders) {
        tasks.push(tokio::spawn(work(
            shared.clone(),
            Slot { reader, loaders },
            job_receiver.clone(),
            copied_sender.clone(),
        )));
    }
    drop(copied_sender);
    let mut per_table: Vec<(u64, u64, u64)> = vec![(0, 0, 0); shared.tables.len()];
    let mut tracker = Tracker::new(shared.tables.len(), targets.len());
    let mut journaled = Instant::now();
    while let Some(done) = copied_receiver.recv().await {
        progress.advance(done.table, done.rows, done.bytes);
        let entry = &mut per_table[done.table];
        entry.0 += done.rows;
        entry.1 += done.bytes;
        entry.2 += 1;
        for (t, _) in done.done.iter().enumerate().filter(|(_, done)| **done) {
            tracker.completed(done.table, t, done.seq, done.up_to.clone());
        }
        if let Some(journal) = journal
            && journaled.elapsed() >= JOURNAL_EVERY
        {
            save_progress(journal, &mut tracker, &shared).await;
            journaled = Instant::now();
        }
    }
    if let Some(journal) = journal {
        save_progress(journal, &mut tracker, &shared).await;
    }
    progress.finish();
    if let Ok(walker) = walk_task.await {
        walker.close().await;
    }
    for task in tasks {
        if let Ok(slot) = task.await {
            slot.reader.close().await;
            for loader in slot.loaders.into_iter().flatten() {
                loader.close().await;
            }
        }
    }
    if let Some(error) = shared.source_failure.lock().expect("not poisoned").clone() {
        return Err(SnapshotError::Source(MysqlError::Query {
            cluster: source_cluster.name.clone(),
            what: "read the snapshot".into(),
            reason: error,
            code: None,
        }));
    }

    // Indexes, triggers and views on every target that took the rows.
    finish_targets(
        target_controls,
        &schema,
        &shared.failures,
        recorded.is_some(),
    )
    .await;
    control.close().await;
    if let Some(writer) = &shared.directory {
        writer
            .finish(
                &source_cluster.name,
                &point.position,
                &schema,
                &shared.tables,
            )
            .map_err(|e| SnapshotError::Directory(e.to_string()))?;
    }

    let failures = shared.failures.snapshot();
    let rows: u64 = per_table.iter().map(|t| t.0).sum();
    let (status, clusters) = outcomes(&shared.targets, &failures, rows);
    Ok(SnapshotReport {
        status,
        gtid_position: point.position,
        rows,
        bytes: per_table.iter().map(|t| t.1).sum(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        source_lock_ms: point.locked_for.as_millis() as u64,
        targets: clusters
            .iter()
            .filter(|c| c.error.is_none())
            .map(|c| c.cluster.clone())
            .collect(),
        clusters,
        tables: shared
            .tables
            .iter()
            .zip(&per_table)
            .map(|(table, (rows, bytes, chunks))| TableCopy {
                table: table.display_name(),
                rows: *rows,
                bytes: *bytes,
                chunks: *chunks,
                key: table.key_columns().iter().map(|c| c.name.clone()).collect(),
                warning: table
                    .key
                    .is_none()
                    .then(|| "no usable key: copied as a single stream".to_string()),
            })
            .collect(),
        databases,
        warnings,
        resumed: recorded.is_some().then(|| Resumed {
            chunks_kept: shared.chunks_kept.load(Ordering::Relaxed),
            chunks_reloaded: shared.chunks_reloaded.load(Ordering::Relaxed),
            tables_restarted,
        }),
    })
}

/// Journal how far each target got. A failed write costs a resume more
/// checking, never correctness, so the load goes on.
async fn save_progress(journal: &Journal, tracker: &mut Tracker, shared: &Shared) {
    let changes: Vec<(String, String, Loaded)> = tracker
        .changes()
        .into_iter()
        .map(|(table, target, loaded)| {
            (
                shared.targets[target].clone(),
                shared.tables[table].display_name(),
                loaded,
            )
        })
        .collect();
    if changes.is_empty() {
        return;
    }
    if let Err(error) = journal.save(&changes).await {
        tracing::warn!(
            "could not journal the snapshot's progress ({error}); a resume will check more"
        );
    }
}

/// What `replicate` did on one target.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStart {
    pub cluster: String,
    pub caught_up: bool,
    pub error: Option<String>,
}

/// Wait in one-second steps until the replica has applied `position`, so a
/// replication error (binary logs purged since the snapshot, a bad password)
/// is reported at once instead of at the timeout.
async fn catch_up(
    session: &mut Session,
    flavor: Flavor,
    position: &str,
    timeout: Duration,
) -> Result<bool, String> {
    let deadline = Instant::now() + timeout;
    let waiting = crate::progress::Waiting::start(
        format!("`{}` catching up", session.endpoint().name),
        timeout,
    );
    let result = catch_up_within(session, flavor, position, deadline, &waiting).await;
    waiting.finish();
    result
}

async fn catch_up_within(
    session: &mut Session,
    flavor: Flavor,
    position: &str,
    deadline: Instant,
    waiting: &crate::progress::Waiting,
) -> Result<bool, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let step = left.min(Duration::from_secs(1));
        if control::wait_for_position(session, flavor, position, step)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(true);
        }
        let channels = server::replication(session, flavor)
            .await
            .map_err(|e| e.to_string())?;
        waiting.update(&format!(
            "to {position}: {}",
            channels
                .iter()
                .map(|c| match c.seconds_behind_source {
                    Some(seconds) => format!("{seconds} s behind its source"),
                    None => "behind by an unknown time".to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
        // A thread that stopped on an error will not recover by itself; one
        // that is retrying a connection might.
        if let Some(error) = channels.iter().find_map(|c| {
            let io = (c.io_thread == server::ThreadState::Stopped)
                .then(|| c.last_io_error.clone())
                .flatten();
            let sql = (c.sql_thread == server::ThreadState::Stopped)
                .then(|| c.last_sql_error.clone())
                .flatten();
            io.or(sql).filter(|e| !e.is_empty())
        }) {
            return Err(format!(
                "cluster `{}`: replication stopped: {error}",
                session.endpoint().name
            ));
        }
        if left <= step {
            return Ok(false);
        }
    }
}

/// Make each target a replica of the source from `position` (the snapshot's),
/// then wait until it has applied what the source has now. When `resuming`
/// an interrupted start, a target already set up to replicate from the source
/// keeps its position (it may have applied transactions past the snapshot)
/// and is only started.
pub async fn replicate(
    plan: &ValidatedPlan,
    targets: &[String],
    position: &str,
    timeout: Duration,
    resuming: bool,
) -> Result<Vec<ReplicaStart>, SnapshotError> {
    let proof_bound = plan.gates.replication_start_timeout;
    let source = plan.source().clone();
    let targets = targets_of(plan, targets)?;
    let (user, password) = match &plan.replication {
        Some(replication) => (
            replication.user.clone(),
            crate::secret::resolve(&replication.password, "replication password")?,
        ),
        None => (
            source.user.clone(),
            crate::secret::resolve(
                &source.password,
                &format!("cluster `{}` password", source.name),
            )?,
        ),
    };
    let source_endpoint = Endpoint::for_cluster(&source)?;
    let endpoints: Vec<Endpoint> = targets
        .iter()
        .map(Endpoint::for_cluster)
        .collect::<Result<_, _>>()?;
    let starts = join_all(endpoints.iter().map(|endpoint| {
        let source = &source;
        let user = &user;
        let password = &password;
        async move {
            let mut session = Session::connect(endpoint).await?;
            let flavor = server::facts(&mut session).await?.flavor;
            // A replica takes no writes of its own: fence it before it starts.
            control::set_read_only(&mut session, flavor, true).await?;
            if resuming {
                let channels = server::replication(&mut session, flavor).await?;
                let configured = channels
                    .iter()
                    .find(|c| c.source_host == source.host && c.source_port == source.port);
                if let Some(channel) = configured {
                    let running = channel.io_thread == server::ThreadState::Running
                        && channel.sql_thread == server::ThreadState::Running;
                    if !running {
                        control::start_replication(&mut session, flavor).await?;
                    }
                    return Ok::<_, MysqlError>((session, flavor));
                }
            }
            control::reset_replication(&mut session, flavor).await?;
            control::set_replica_start(&mut session, flavor, position).await?;
            control::change_source(
                &mut session,
                flavor,
                &control::SourceSpec {
                    host: &source.host,
                    port: source.port,
                    user,
                    password,
                    tls: source.tls.is_some(),
                },
            )
            .await?;
            control::start_replication(&mut session, flavor).await?;
            Ok::<_, MysqlError>((session, flavor))
        }
    }))
    .await;
    // What the source has now is what each replica must reach.
    let mut source_session = Session::connect(&source_endpoint)
        .await
        .map_err(SnapshotError::Source)?;
    let source_flavor = server::facts(&mut source_session)
        .await
        .map_err(SnapshotError::Source)?
        .flavor;
    let target_position = control::binlog_position(&mut source_session, source_flavor)
        .await
        .map_err(SnapshotError::Source)?;
    source_session.close().await;
    let mut out = Vec::new();
    let waits = join_all(starts.into_iter().map(|start| {
        let target_position = target_position.clone();
        let source = &source;
        async move {
            match start {
                Ok((mut session, flavor)) => {
                    // Connected and running first: a refused login never catches up.
                    let proof = crate::mysql::link::await_running(
                        &mut session,
                        flavor,
                        (&source.name, &source.host, source.port),
                        None,
                        proof_bound,
                    )
                    .await;
                    let reached = match proof {
                        Ok(_) => catch_up(&mut session, flavor, &target_position, timeout).await,
                        Err(error) => Err(error.to_string()),
                    };
                    session.close().await;
                    reached
                }
                Err(error) => Err(error.to_string()),
            }
        }
    }))
    .await;
    for (target, result) in targets.iter().zip(waits) {
        out.push(match result {
            Ok(true) => ReplicaStart {
                cluster: target.name.clone(),
                caught_up: true,
                error: None,
            },
            Ok(false) => ReplicaStart {
                cluster: target.name.clone(),
                caught_up: false,
                error: Some(format!(
                    "cluster `{}` replicates from {} but did not reach {target_position} within {} s",
                    target.name,
                    source.name,
                    timeout.as_secs()
                )),
            },
            Err(error) => ReplicaStart {
                cluster: target.name.clone(),
                caught_up: false,
                error: Some(error),
            },
        });
    }
    Ok(out)
}

/// Load a snapshot directory into the targets, after checking every file
/// against its manifest. Replication can then start from the manifest's position.
pub async fn restore(
    path: &std::path::Path,
    plan: &ValidatedPlan,
    options: &SnapshotOptions,
) -> Result<SnapshotReport, SnapshotError> {
    let started = Instant::now();
    let manifest = directory::open_verified(path).map_err(|damage| SnapshotError::Corrupt {
        directory: path.display().to_string(),
        file: damage.file,
        problem: damage.problem,
    })?;
    if manifest.source != plan.source().name {
        return Err(SnapshotError::Corrupt {
            directory: path.display().to_string(),
            file: directory::MANIFEST.into(),
            problem: format!(
                "says the snapshot was taken from `{}`, but the plan's source is `{}`",
                manifest.source,
                plan.source().name
            ),
        });
    }
    let targets = targets_of(plan, &options.targets)?;
    let endpoints: Vec<Endpoint> = targets
        .iter()
        .map(Endpoint::for_cluster)
        .collect::<Result<_, _>>()?;
    let databases: Vec<String> = manifest
        .schema
        .databases
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let setup = loader_setup(options.skip_binlog);
    let (controls, mut failures) = prepare_targets(
        &targets,
        &endpoints,
        &databases,
        &manifest.schema,
        options,
        None,
    )
    .await?;
    let workers = targets
        .iter()
        .map(|t| (t.pool.max as usize).saturating_sub(1))
        .fold(options.workers, usize::min)
        .max(1);
    let loaders = open_loaders(workers, &endpoints, &mut failures, &setup).await;
    let failures = Arc::new(Failures(Mutex::new(failures)));
    let inserts_only = Arc::new(Mutex::new(vec![false; targets.len()]));
    let files = Arc::new(Mutex::new(manifest.files.clone()));
    let format = manifest.format;
    let mut tasks = Vec::new();
    for mut loaders in loaders {
        let files = files.clone();
        let failures = failures.clone();
        let inserts_only = inserts_only.clone();
        let path = path.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut done: Vec<(String, u64, u64)> = Vec::new();
            loop {
                let next = files.lock().expect("not poisoned").pop();
                let Some(chunk) = next else { break };
                let file = path.join(&chunk.file);
                let content =
                    tokio::task::spawn_blocking(move || directory::read_chunk(&file, format)).await;
                let content = match content {
                    Ok(Ok(content)) => content,
                    Ok(Err(error)) => {
                        return Err(format!("{}: {error}", chunk.file));
                    }
                    Err(error) => return Err(format!("{}: {error}", chunk.file)),
                };
                let bytes = match content {
                    directory::Chunk::Statements(statements) => {
                        fan_out(&failures, &mut loaders, &statements).await;
                        statements.iter().map(|s| s.len() as u64).sum()
                    }
                    directory::Chunk::Rows { header, data } => {
                        let load = LoadData {
                            sql: header.load_sql.clone(),
                            data: bytes::Bytes::from(data),
                            header,
                        };
                        load_everywhere(&failures, &mut loaders, &load, &inserts_only, || {
                            rows_as_inserts(&load.header, &load.data)
                        })
                        .await;
                        load.data.len() as u64
                    }
                };
                done.push((chunk.table.clone(), chunk.rows, bytes));
            }
            for loader in loaders.into_iter().flatten() {
                loader.close().await;
            }
            Ok(done)
        }));
    }
    let mut per_table: std::collections::BTreeMap<String, (u64, u64, u64)> =
        std::collections::BTreeMap::new();
    let mut read_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(done)) => {
                for (table, rows, bytes) in done {
                    let entry = per_table.entry(table).or_default();
                    entry.0 += rows;
                    entry.1 += bytes;
                    entry.2 += 1;
                }
            }
            Ok(Err(error)) => read_error = Some(error),
            Err(error) => read_error = Some(error.to_string()),
        }
    }
    if let Some(error) = read_error {
        return Err(SnapshotError::Directory(error));
    }
    finish_targets(controls, &manifest.schema, &failures, false).await;
    let failures = failures.snapshot();
    let rows: u64 = per_table.values().map(|t| t.0).sum();
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let (status, clusters) = outcomes(&names, &failures, rows);
    Ok(SnapshotReport {
        status,
        gtid_position: manifest.gtid_position.clone(),
        rows,
        bytes: per_table.values().map(|t| t.1).sum(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        source_lock_ms: 0,
        targets: clusters
            .iter()
            .filter(|c| c.error.is_none())
            .map(|c| c.cluster.clone())
            .collect(),
        clusters,
        tables: per_table
            .into_iter()
            .map(|(table, (rows, bytes, chunks))| TableCopy {
                table,
                rows,
                bytes,
                chunks,
                key: Vec::new(),
                warning: None,
            })
            .collect(),
        databases,
        warnings: Vec::new(),
        resumed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_data_fields_escape_what_load_data_interprets() {
        let mut out = Vec::new();
        push_field(&mut out, b"a\tb\nc\\d\0e\rf");
        assert_eq!(out, b"a\\tb\\nc\\\\d\\0e\\rf".to_vec());
    }

    #[test]
    fn rows_kept_for_load_data_become_the_same_values_as_inserts() {
        let tricky = b"a\tb\nc\\d\0e\rf'g";
        let mut data = b"1\t".to_vec();
        push_field(&mut data, tricky);
        data.extend_from_slice(b"\t\\N\t00ff\t05\n2\t\t\\\\N\t\t0\n");
        let header = directory::ChunkHeader {
            load_sql: String::new(),
            insert_head: "INSERT INTO t (a, b, c, d, e) VALUES ".into(),
            encodings: vec![
                directory::Encoding::Text,
                directory::Encoding::Text,
                directory::Encoding::Text,
                directory::Encoding::Hex,
                directory::Encoding::Bit,
            ],
        };
        let statements = rows_as_inserts(&header, &data);
        assert_eq!(
            statements,
            [format!(
                "INSERT INTO t (a, b, c, d, e) VALUES ('1',{},NULL,X'00ff',CAST(CONV('05', 16, 10) AS UNSIGNED)),\
                 ('2','','\\\\N',X'',CAST(CONV('0', 16, 10) AS UNSIGNED))",
                quote(std::str::from_utf8(tricky).unwrap())
            )]
        );
        assert_eq!(unescape_field(b"x\\ty\\\\"), b"x\ty\\".to_vec());
    }

    #[test]
    fn loading_sessions_skip_the_binlog_only_when_asked() {
        assert!(!loader_setup(false).contains("sql_log_bin"));
        assert!(loader_setup(true).contains("SET SESSION sql_log_bin = 0"));
        assert!(loader_setup(true).contains("NO_AUTO_VALUE_ON_ZERO"));
    }
}
