//! One consistent snapshot of the source, fanned out to every target at once,
//! and replication started from its GTID position.
//!
//! Flow: prechecks (binlog and GTID on the source, empty targets) → schema on
//! the targets (databases, routines, tables without their secondary indexes)
//! → the source's brief read lock opens one snapshot per worker at one GTID
//! position → workers read each key-range chunk once and write it to every
//! target concurrently (the slowest target paces the read: one chunk in flight
//! per worker) → secondary indexes, triggers and views → report.

mod copy;
pub mod ddl;
pub mod directory;
mod encode;
mod objects;
mod replicate;
mod restore;
pub mod resume;
mod targets;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mysql_async::Row;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::mysql::{Endpoint, Flavor, MysqlError, Session, control, quote, server};
use crate::outcome::ErrorKind;
use crate::plan::{Cluster, ValidatedPlan};
use crate::secret::SecretError;
use crate::tables::canonical::{self, Dialect, ident, table_name};
use crate::tables::chunk::{self, Range};
use crate::tables::point;
use crate::tables::schema::{self, TableSpec};
use copy::{Failures, Shared, Slot, fan_out, load_everywhere, walk, work};
use encode::{LoadData, insert_statements, load_data, rows_as_inserts, select_list};
use objects::{
    Schema, Shortfall, business_databases, create_schema, emptiness, finish_schema, read_counters,
    read_schema,
};
pub use objects::{databases, existing_tables};
pub use replicate::{ReplicaStart, replicate};
pub use restore::restore;
use resume::{Journal, Loaded, Recorded, TableResume, Tracker};
use targets::{
    clear_for_resume, connect, finish_targets, loader_setup, open_loaders, prepare_targets,
    targets_of,
};

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
    /// `loaded`, `incomplete` (it refused some tables or objects, listed in
    /// `missing`; the rest is loaded) or `failed`.
    pub status: &'static str,
    pub rows: u64,
    pub error: Option<String>,
    /// `what: the server's error` for each table or object it refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
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
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Resumed {
    /// Chunks already on a target that matched the new snapshot and were kept.
    pub chunks_kept: u64,
    /// Chunks already on a target that differed (written since) and were reloaded.
    pub chunks_reloaded: u64,
    /// `(target, table)` pairs whose earlier progress was discarded and loaded again.
    pub tables_restarted: u64,
}

/// Each target's outcome, and the load's: `completed` when every target
/// took everything, `partial` otherwise. A target that refused some tables or
/// objects holds the rest but is not a copy of the source: it is not listed
/// among the loaded targets, so nothing replicates into it.
fn outcomes(
    targets: &[String],
    failures: &[Option<String>],
    shortfalls: &[Shortfall],
    rows: u64,
) -> (&'static str, Vec<TargetOutcome>) {
    let clusters: Vec<TargetOutcome> = targets
        .iter()
        .zip(failures)
        .zip(shortfalls)
        .map(|((name, failure), shortfall)| {
            let missing = shortfall.missing.clone();
            let (status, error) = match (failure, missing.is_empty()) {
                (Some(error), _) => ("failed", Some(error.clone())),
                (None, true) => ("loaded", None),
                (None, false) => (
                    "incomplete",
                    Some(format!(
                        "{} table(s) or object(s) not reproduced: {}",
                        missing.len(),
                        missing.join("; ")
                    )),
                ),
            };
            TargetOutcome {
                cluster: name.clone(),
                status,
                rows: if failure.is_some() { 0 } else { rows },
                error,
                missing,
            }
        })
        .collect();
    let status = if clusters.iter().any(|c| c.error.is_some()) {
        "partial"
    } else {
        "completed"
    };
    (status, clusters)
}

/// The targets' warnings, each said once with the targets it concerns.
fn shortfall_warnings(targets: &[String], shortfalls: &[Shortfall]) -> Vec<String> {
    let mut said: Vec<(String, Vec<&str>)> = Vec::new();
    for (target, shortfall) in targets.iter().zip(shortfalls) {
        for warning in &shortfall.warnings {
            match said.iter_mut().find(|(text, _)| text == warning) {
                Some((_, on)) => on.push(target),
                None => said.push((warning.clone(), vec![target])),
            }
        }
    }
    said.into_iter()
        .map(|(text, on)| format!("{}: {text}", on.join(", ")))
        .collect()
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
    let discovered = schema::discover(&mut control, Some(&databases), &[])
        .await
        .map_err(SnapshotError::Source)?;
    let tables: Vec<TableSpec> = discovered.iter().map(TableSpec::for_copy).collect();
    if tables.is_empty() {
        return Err(SnapshotError::NoTables(if databases.is_empty() {
            "no database".to_string()
        } else {
            databases.join(", ")
        }));
    }
    for table in tables.iter().filter(|t| t.key.is_none()) {
        let warning = if table.versioned {
            format!(
                "{} is system-versioned: copied with its history as a single stream",
                table.display_name()
            )
        } else {
            format!(
                "{} has no primary key or NOT NULL unique key: copied as a single stream",
                table.display_name()
            )
        };
        tracing::warn!("{warning}");
        warnings.push(warning);
    }
    let mut schema = read_schema(&mut control, facts.flavor, &databases, &discovered)
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

    // Worker connections, then one snapshot for all readers at one position,
    // before any target is touched: a source too busy for a point is refused
    // with nothing changed. Each reader holds one loader on every target:
    // every pool bounds them (the source also keeps a control and a
    // key-walking session, a target its control).
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
    let mut walker = connect(&source_endpoint, "SET SESSION time_zone = '+00:00'")
        .await
        .map_err(SnapshotError::Source)?;
    let point = point::lock_source(
        &mut control,
        &mut walker,
        facts.flavor,
        readers.iter_mut().collect(),
        point::PointLimits {
            max_stall: plan.gates.max_source_stall,
            give_up_after: plan.gates.lag_timeout.min(Duration::from_secs(120)),
        },
    )
    .await
    .map_err(|error| match error {
        point::PointError::Mysql(error) => SnapshotError::Source(error),
        busy => SnapshotError::SourceNotReady {
            cluster: source_cluster.name.clone(),
            problem: busy.to_string(),
        },
    })?;
    read_counters(&mut control, facts.flavor, &databases, &mut schema)
        .await
        .map_err(SnapshotError::Source)?;
    for (_, objects) in &schema.objects {
        for what in &objects.unreadable {
            let warning = format!(
                "{what} is not copied: the source does not show its definition to this account \
                 (MySQL: SHOW_ROUTINE; MariaDB: SELECT on mysql.proc, or its definer's rights)"
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
    }
    tracing::info!(
        position = %point.position,
        lock_ms = point.locked_for.as_millis() as u64,
        attempts = point.attempts,
        workers,
        "snapshot of {} taken",
        source_cluster.name
    );

    // Targets: reachable, empty (or replaced, or holding what a resume keeps), schema in place.
    let setup = loader_setup(options.skip_binlog, schema.history);
    let (mut target_controls, mut failures, shortfalls) = prepare_targets(
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

    let slots_loaders = open_loaders(workers, &target_endpoints, &mut failures, &setup).await;

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
        failures: Failures::new(failures, shortfalls),
        source_failure: Mutex::new(None),
        directory: writer,
        inserts_only: Mutex::new(vec![false; targets.len()]),
        resumes,
        dialect: Dialect {
            json: canonical::JsonNormaliser::for_server(facts.flavor, &facts.version),
            float_precision: canonical::DEFAULT_FLOAT_PRECISION,
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
    let shortfalls = shared.failures.shortfalls();
    warnings.extend(shortfall_warnings(&shared.targets, &shortfalls));
    warnings.extend(copy::insert_fallback_warnings(
        &shared.targets,
        &shared.inserts_only.lock().expect("not poisoned"),
    ));
    let rows: u64 = per_table.iter().map(|t| t.0).sum();
    let (status, clusters) = outcomes(&shared.targets, &failures, &shortfalls, rows);
    Ok(SnapshotReport {
        status,
        gtid_position: point.position,
        rows,
        bytes: per_table.iter().map(|t| t.1).sum(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        source_lock_ms: point.longest_stall.as_millis() as u64,
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
