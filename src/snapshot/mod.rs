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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mysql_async::Row;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::checksum::canonical::{ident, table_name};
use crate::checksum::chunk::{self, Range};
use crate::checksum::point;
use crate::checksum::schema::{self, TableSpec};
use crate::mysql::{Endpoint, Flavor, MysqlError, Session, control, quote, server};
use crate::plan::{Cluster, ValidatedPlan};
use crate::secret::SecretError;

/// Rows read per chunk of a keyed table, and per batch of a keyless one.
const CHUNK_ROWS: u64 = 5_000;
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
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the source: {0}")]
    Source(#[source] MysqlError),
    #[error("the source `{cluster}` cannot be snapshotted: {problem}")]
    SourceNotReady { cluster: String, problem: String },
    #[error(
        "target `{cluster}` is not empty ({detail}); the snapshot loads only empty targets: \
         pass --replace (or `replace: true`) to drop and reload them"
    )]
    NotEmpty { cluster: String, detail: String },
    #[error("snapshot target `{0}` is not an enabled target in the plan")]
    UnknownTarget(String),
    #[error("nothing to snapshot: no table in {0} on the source; check `databases:` in the plan")]
    NoTables(String),
    #[error("no target could be loaded: {0}")]
    AllTargetsFailed(String),
    #[error("snapshot directory: {0}")]
    Directory(String),
    /// A file of a snapshot directory does not match its manifest: nothing is loaded.
    #[error(
        "snapshot directory {directory}: {file} {problem}; the copy is damaged, so nothing was loaded (take a new snapshot)"
    )]
    Corrupt {
        directory: String,
        file: String,
        problem: String,
    },
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

/// The databases a snapshot copies: the plan's, or every non-system schema.
async fn databases(session: &mut Session, plan: &ValidatedPlan) -> Result<Vec<String>, MysqlError> {
    let all: Vec<String> = session
        .query(
            "list schemas",
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
        )
        .await?;
    Ok(all
        .into_iter()
        .filter(|s| !schema::EXCLUDED_SCHEMAS.contains(&s.as_str()))
        .filter(|s| {
            plan.databases
                .as_ref()
                .is_none_or(|list| list.iter().any(|d| d == s))
        })
        .collect())
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

/// Databases, routines and tables (without secondary indexes) on one target.
async fn create_schema(
    session: &mut Session,
    schema: &Schema,
    replace: bool,
) -> Result<(), MysqlError> {
    for (database, create) in &schema.databases {
        if replace {
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
        for (mode, create) in &objects.routines {
            session
                .exec(
                    "create a routine",
                    &format!(
                        "SET SESSION sql_mode = {}; USE {}; {create}",
                        quote(mode),
                        ident(database)
                    ),
                )
                .await?;
        }
    }
    for table in &schema.tables {
        session
            .exec(
                "create a table",
                &format!("USE {}; {}", ident(&table.schema), table.create),
            )
            .await?;
    }
    session
        .exec(
            "restore the session's sql_mode",
            "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
        )
        .await
}

/// Secondary indexes, triggers and views, once the rows are in.
async fn finish_schema(session: &mut Session, schema: &Schema) -> Result<(), MysqlError> {
    for table in &schema.tables {
        if let Some(alter) = &table.add_indexes {
            session.exec("build secondary indexes", alter).await?;
        }
    }
    for (database, objects) in &schema.objects {
        for (mode, create) in &objects.triggers {
            session
                .exec(
                    "create a trigger",
                    &format!(
                        "SET SESSION sql_mode = {}; USE {}; {create}",
                        quote(mode),
                        ident(database)
                    ),
                )
                .await?;
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
            if let Err(error) = session.exec("create a view", &sql).await {
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
    /// `None`: a keyless table, streamed whole.
    range: Option<Range>,
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
}

impl Shared {
    /// Load rows into every healthy target (LOAD DATA), and write them to the
    /// snapshot directory as INSERT statements when there is one; returns the
    /// bytes sent to each target.
    async fn send(&self, table: usize, rows: Vec<Row>, loaders: &mut [Option<Session>]) -> u64 {
        let spec = &self.tables[table];
        let load = load_data(spec, &rows);
        let by_insert = fan_out_load(&self.failures, loaders, &load, &self.inserts_only).await;
        if by_insert.is_empty() && self.directory.is_none() {
            return load.data.len() as u64;
        }
        let count = rows.len() as u64;
        let (statements, _) = insert_statements(spec, rows);
        if !by_insert.is_empty() {
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
            fan_out(&self.failures, &mut chosen, &statements).await;
            for (t, loader) in chosen.into_iter().enumerate() {
                if by_insert.contains(&t) {
                    loaders[t] = loader;
                }
            }
        }
        // A write failure fails the directory (reported at the end), not the load.
        if let Some(writer) = &self.directory {
            writer.write(spec, count, &statements);
        }
        load.data.len() as u64
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
    rows: u64,
    bytes: u64,
}

/// `INSERT` statements for `rows`, each under [`MAX_STATEMENT_BYTES`].
fn insert_statements(table: &TableSpec, rows: Vec<Row>) -> (Vec<String>, u64) {
    let head = format!(
        "INSERT INTO {} ({}) VALUES ",
        table_name(table),
        table
            .columns
            .iter()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut statements = Vec::new();
    let mut current = head.clone();
    let mut bytes = 0u64;
    for row in rows {
        let values: Vec<String> = row
            .unwrap()
            .into_iter()
            .map(|value| value.as_sql(false))
            .collect();
        let tuple = format!("({})", values.join(","));
        bytes += tuple.len() as u64;
        if current.len() > head.len() && current.len() + tuple.len() + 1 > MAX_STATEMENT_BYTES {
            statements.push(std::mem::replace(&mut current, head.clone()));
        }
        if current.len() > head.len() {
            current.push(',');
        }
        current.push_str(&tuple);
    }
    if current.len() > head.len() {
        statements.push(current);
    }
    (statements, bytes)
}

/// One chunk as `LOAD DATA LOCAL INFILE` input: the statement and the rows as
/// tab-separated text (LOAD DATA's default escaping; NULL as `\N`).
struct LoadData {
    sql: String,
    data: bytes::Bytes,
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
    LoadData {
        sql,
        data: bytes::Bytes::from(data),
    }
}

/// The server refuses `LOAD DATA LOCAL` (`local_infile=OFF`, MySQL 8's default):
/// MariaDB 4166, MySQL 3948, older servers 1148.
fn local_infile_refused(error: &MysqlError) -> bool {
    let text = error.to_string();
    ["ERROR 4166 ", "ERROR 3948 ", "ERROR 1148 "]
        .iter()
        .any(|code| text.contains(code))
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
            loader
                .load_data("load rows", &load.sql, load.data.clone())
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
                loader.exec("load rows", sql).await.map_err(|e| (t, e))?;
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
        ..Copied::default()
    };
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
    Ok(copied)
}

/// Queue every table's chunks, walking keys on the source.
async fn walk(shared: Arc<Shared>, mut session: Session, jobs: mpsc::Sender<Job>) -> Session {
    for (index, table) in shared.tables.iter().enumerate() {
        if table.key.is_none() {
            if jobs
                .send(Job {
                    table: index,
                    range: None,
                })
                .await
                .is_err()
            {
                break;
            }
            continue;
        }
        let mut walker = chunk::KeyWalker::default();
        loop {
            match walker.next(&mut session, table, CHUNK_ROWS).await {
                Ok(Some(range)) => {
                    let job = Job {
                        table: index,
                        range: Some(range),
                    };
                    if jobs.send(job).await.is_err() {
                        return session;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    *shared.source_failure.lock().expect("not poisoned") = Some(error.to_string());
                    return session;
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

/// Connect to each target, refuse one that is not empty (unless replacing),
/// and create the schema. A target that fails is recorded; the others go on.
async fn prepare_targets(
    targets: &[Cluster],
    endpoints: &[Endpoint],
    databases: &[String],
    schema: &Schema,
    options: &SnapshotOptions,
) -> Result<(Vec<Option<Session>>, Vec<Option<String>>), SnapshotError> {
    let setup = loader_setup(options.skip_binlog);
    let mut failures: Vec<Option<String>> = vec![None; targets.len()];
    let mut controls: Vec<Option<Session>> = Vec::new();
    for (t, endpoint) in endpoints.iter().enumerate() {
        match connect(endpoint, &setup).await {
            Ok(mut session) => match emptiness(&mut session, databases).await {
                Ok(Some(detail)) if !options.replace => {
                    return Err(SnapshotError::NotEmpty {
                        cluster: targets[t].name.clone(),
                        detail,
                    });
                }
                Ok(_) => controls.push(Some(session)),
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
                (t, create_schema(session, schema, options.replace).await)
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
async fn finish_targets(controls: Vec<Option<Session>>, schema: &Schema, failures: &Failures) {
    let mut controls = controls;
    let finished = join_all(
        controls
            .iter_mut()
            .enumerate()
            .filter(|(t, _)| !failures.failed(*t))
            .filter_map(|(t, s)| Some((t, s.as_mut()?)))
            .map(|(t, session)| async move { (t, finish_schema(session, schema).await) }),
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

/// Take one consistent snapshot of the plan's databases and load it into the targets.
pub async fn run(
    plan: &ValidatedPlan,
    options: &SnapshotOptions,
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

    // Targets: reachable, empty (or replaced), schema in place.
    let setup = loader_setup(options.skip_binlog);
    let (target_controls, mut failures) =
        prepare_targets(&targets, &target_endpoints, &databases, &schema, options).await?;

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
    });
    let progress =
        crate::progress::Progress::for_tables(&shared.tables, options.progress, "snapshot");
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
    while let Some(done) = copied_receiver.recv().await {
        progress.advance(done.table, done.rows, done.bytes);
        let entry = &mut per_table[done.table];
        entry.0 += done.rows;
        entry.1 += done.bytes;
        entry.2 += 1;
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
        }));
    }

    // Indexes, triggers and views on every target that took the rows.
    finish_targets(target_controls, &schema, &shared.failures).await;
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
    })
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
/// then wait until it has applied what the source has now.
pub async fn replicate(
    plan: &ValidatedPlan,
    targets: &[String],
    position: &str,
    timeout: Duration,
) -> Result<Vec<ReplicaStart>, SnapshotError> {
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
        async move {
            match start {
                Ok((mut session, flavor)) => {
                    let reached = catch_up(&mut session, flavor, &target_position, timeout).await;
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
    let (controls, mut failures) =
        prepare_targets(&targets, &endpoints, &databases, &manifest.schema, options).await?;
    let workers = targets
        .iter()
        .map(|t| (t.pool.max as usize).saturating_sub(1))
        .fold(options.workers, usize::min)
        .max(1);
    let loaders = open_loaders(workers, &endpoints, &mut failures, &setup).await;
    let failures = Arc::new(Failures(Mutex::new(failures)));
    let files = Arc::new(Mutex::new(manifest.files.clone()));
    let mut tasks = Vec::new();
    for mut loaders in loaders {
        let files = files.clone();
        let failures = failures.clone();
        let path = path.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut done: Vec<(String, u64, u64)> = Vec::new();
            loop {
                let next = files.lock().expect("not poisoned").pop();
                let Some(chunk) = next else { break };
                let file = path.join(&chunk.file);
                let statements =
                    tokio::task::spawn_blocking(move || directory::read_chunk(&file)).await;
                let statements = match statements {
                    Ok(Ok(statements)) => statements,
                    Ok(Err(error)) => {
                        return Err(format!("{}: {error}", chunk.file));
                    }
                    Err(error) => return Err(format!("{}: {error}", chunk.file)),
                };
                let bytes = statements.iter().map(|s| s.len() as u64).sum();
                fan_out(&failures, &mut loaders, &statements).await;
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
    finish_targets(controls, &manifest.schema, &failures).await;
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
    fn loading_sessions_skip_the_binlog_only_when_asked() {
        assert!(!loader_setup(false).contains("sql_log_bin"));
        assert!(loader_setup(true).contains("SET SESSION sql_log_bin = 0"));
        assert!(loader_setup(true).contains("NO_AUTO_VALUE_ON_ZERO"));
    }
}
