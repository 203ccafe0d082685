//! Row checksums of the source against every target at one consistent point,
//! localised to the row and column, with exact money reconciliation.
//!
//! Flow: connect → discover tables on the source → compare table shapes →
//! classify each target (consistent point, frozen, or live) → open worker
//! sessions and establish the point → walk keys into chunks → workers hash
//! each chunk on every participant at once and bisect the ones that differ →
//! report.

pub(crate) mod canonical;
pub(crate) mod chunk;
pub mod compare;
pub mod decimal;
pub(crate) mod point;
pub(crate) mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::mysql::{Endpoint, Flavor, MysqlError, Session};
use crate::outcome::{ErrorKind, Outcome};
use crate::plan::{Cluster, ValidatedPlan};
use crate::secret::SecretError;
use canonical::{Dialect, JsonNormaliser};
pub use compare::{MismatchKind, RowMismatch, Settled};
use compare::{Participant, Shared, Slot};
use decimal::Decimal;
pub use point::Basis;
use point::TargetControl;
use schema::{ColumnClass, TableSpec};

/// What to compare and how hard to work.
#[derive(Debug, Clone)]
pub struct ChecksumOptions {
    /// Targets to compare; empty: every enabled target.
    pub targets: Vec<String>,
    /// `schema.table` patterns with `*`/`?`; empty: the plan's databases.
    pub tables: Vec<String>,
    /// Significant digits compared for FLOAT and DOUBLE.
    pub float_precision: u32,
    /// `table.column` or `schema.table.column`; empty: every DECIMAL column.
    pub money_columns: Vec<String>,
    /// Chunks in flight at once (each uses one session per cluster).
    pub workers: Option<usize>,
    /// Time each chunk should take; chunk sizes adapt toward it.
    pub chunk_time: Duration,
    /// Inside a write freeze: every cluster is already at this position.
    pub frozen_at: Option<String>,
    /// Progress bars on a terminal.
    pub progress: bool,
}

impl ChecksumOptions {
    pub const DEFAULT_WORKERS: usize = 3;

    pub fn new() -> ChecksumOptions {
        ChecksumOptions {
            targets: Vec::new(),
            tables: Vec::new(),
            float_precision: 12,
            money_columns: Vec::new(),
            workers: None,
            chunk_time: Duration::from_millis(250),
            frozen_at: None,
            progress: true,
        }
    }
}

impl Default for ChecksumOptions {
    fn default() -> Self {
        ChecksumOptions::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the source: {0}")]
    Source(#[source] MysqlError),
    #[error("checksum target `{0}` is not an enabled target in the plan")]
    UnknownTarget(String),
    #[error("no table to compare: {0}")]
    NoTables(String),
}

impl ChecksumError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ChecksumError::Secret(_)
            | ChecksumError::UnknownTarget(_)
            | ChecksumError::NoTables(_) => ErrorKind::InvalidInput,
            ChecksumError::Source(_) => ErrorKind::Failed,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ChecksumError::UnknownTarget(_) => {
                Some("name one of the plan's enabled targets".into())
            }
            _ => None,
        }
    }

    pub fn cluster(&self) -> Option<&str> {
        match self {
            ChecksumError::Source(error) => Some(error.cluster()),
            ChecksumError::UnknownTarget(cluster) => Some(cluster),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every row and every money total agrees on every compared cluster.
    Match,
    /// At least one row, table shape or total differs.
    Mismatch,
    /// No difference found, but some cluster could not be compared.
    Incomplete,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterOutcome {
    pub cluster: String,
    #[serde(flatten)]
    pub basis: Basis,
    pub status: &'static str,
    pub rows: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemaDifference {
    pub cluster: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableOutcome {
    pub table: String,
    pub status: Verdict,
    pub rows: u64,
    pub chunks: u64,
    /// The chunking key; empty when the table has none (compared whole).
    pub key: Vec<String>,
    pub warning: Option<String>,
    pub mismatches: Vec<RowMismatch>,
    pub schema_differences: Vec<SchemaDifference>,
    /// Differences seen once and gone on a second look (live comparisons).
    pub settled_on_recheck: u64,
    /// More rows differ than the report lists.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub table: String,
    pub column: String,
    pub cluster: String,
    /// Exact SUM as the server prints DECIMAL; `null` when every value is NULL.
    pub sum: Option<String>,
    pub count: u64,
    /// Target minus source, exact; `null` on the source.
    pub difference: Option<String>,
    pub matches: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChecksumReport {
    pub status: Verdict,
    /// Source rows compared (each against every compared target).
    pub rows_compared: u64,
    pub elapsed_ms: u64,
    /// The GTID position every `consistent` or `frozen` target was compared at.
    pub position: Option<String>,
    /// How long the source's writes waited for the consistent point.
    pub source_lock_ms: Option<u64>,
    pub workers: usize,
    pub clusters: Vec<ClusterOutcome>,
    pub tables: Vec<TableOutcome>,
    pub reconciliation: Vec<Reconciliation>,
    pub warnings: Vec<String>,
}

impl ChecksumReport {
    pub fn outcome(&self) -> Outcome {
        match self.status {
            Verdict::Match => Outcome::Success,
            Verdict::Mismatch => ErrorKind::Mismatch.into(),
            Verdict::Incomplete => ErrorKind::Failed.into(),
        }
    }

    /// One line for logs and step details.
    pub fn summary(&self) -> String {
        let rows: usize = self.tables.iter().map(|t| t.mismatches.len()).sum();
        let shapes: usize = self.tables.iter().map(|t| t.schema_differences.len()).sum();
        let totals = self.reconciliation.iter().filter(|r| !r.matches).count();
        let failed: Vec<String> = self
            .clusters
            .iter()
            .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.cluster)))
            .collect();
        let mut text = format!(
            "checksum {}: {} rows in {} tables, {rows} differing rows, {shapes} table shape differences, {totals} differing totals",
            match self.status {
                Verdict::Match => "match",
                Verdict::Mismatch => "MISMATCH",
                Verdict::Incomplete => "incomplete",
            },
            self.rows_compared,
            self.tables.len()
        );
        if !failed.is_empty() {
            text.push_str(&format!("; not compared: {}", failed.join("; ")));
        }
        text
    }
}

/// Index of the source compared at the common point, and of the source read live.
const SOURCE_AT_POINT: usize = 0;
const SOURCE_LIVE: usize = 1;
const FIRST_TARGET: usize = 2;

/// Session settings every comparing session shares: TIMESTAMP text in UTC,
/// repeatable-read snapshots.
const SESSION_SETUP: &str = "SET SESSION time_zone = '+00:00'; \
     SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ";

struct ClusterConnection {
    cluster: Cluster,
    endpoint: Endpoint,
    flavor: Flavor,
    dialect: Dialect,
}

async fn connect(endpoint: &Endpoint) -> Result<Session, MysqlError> {
    let mut session = Session::connect(endpoint).await?;
    session.exec("prepare the session", SESSION_SETUP).await?;
    Ok(session)
}

async fn server_version(session: &mut Session) -> Result<String, MysqlError> {
    Ok(session
        .query_first::<String>("read the server version", "SELECT VERSION()")
        .await?
        .unwrap_or_default())
}

/// Compare the plan's source with its targets.
pub async fn run(
    plan: &ValidatedPlan,
    options: &ChecksumOptions,
) -> Result<ChecksumReport, ChecksumError> {
    let started = Instant::now();
    let source_cluster = plan.source().clone();
    let targets: Vec<Cluster> = if options.targets.is_empty() {
        plan.enabled_targets().cloned().collect()
    } else {
        options
            .targets
            .iter()
            .map(|name| {
                plan.enabled_targets()
                    .find(|c| &c.name == name)
                    .cloned()
                    .ok_or_else(|| ChecksumError::UnknownTarget(name.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    let mut warnings = Vec::new();

    // Participants: the source twice (at the point, live), then each target.
    let source_endpoint = Endpoint::for_cluster(&source_cluster)?;
    let target_endpoints: Vec<Endpoint> = targets
        .iter()
        .map(Endpoint::for_cluster)
        .collect::<Result<_, _>>()?;
    let mut source_control = connect(&source_endpoint)
        .await
        .map_err(ChecksumError::Source)?;
    let source_version = server_version(&mut source_control)
        .await
        .map_err(ChecksumError::Source)?;
    let source_flavor = Flavor::from_version(&source_version);
    let dialect_for = |flavor: Flavor, version: &str| Dialect {
        json: JsonNormaliser::for_server(flavor, version),
        float_precision: options.float_precision,
    };
    let source = ClusterConnection {
        cluster: source_cluster.clone(),
        endpoint: source_endpoint.clone(),
        flavor: source_flavor,
        dialect: dialect_for(source_flavor, &source_version),
    };

    let mut target_errors: Vec<Option<String>> = vec![None; targets.len()];
    let mut controls: Vec<Option<TargetControl>> = Vec::new();
    let mut connections: Vec<Option<ClusterConnection>> = Vec::new();
    let connected = join_all(target_endpoints.iter().map(|endpoint| async move {
        let mut session = connect(endpoint).await?;
        let version = server_version(&mut session).await?;
        Ok::<_, MysqlError>((session, version))
    }))
    .await;
    for (i, result) in connected.into_iter().enumerate() {
        match result {
            Ok((session, version)) => {
                let flavor = Flavor::from_version(&version);
                controls.push(Some(TargetControl {
                    name: targets[i].name.clone(),
                    flavor,
                    session,
                    channel: None,
                }));
                connections.push(Some(ClusterConnection {
                    cluster: targets[i].clone(),
                    endpoint: target_endpoints[i].clone(),
                    flavor,
                    dialect: dialect_for(flavor, &version),
                }));
            }
            Err(error) => {
                target_errors[i] = Some(error.to_string());
                controls.push(None);
                connections.push(None);
            }
        }
    }
    if source.flavor != Flavor::Mariadb
        || connections
            .iter()
            .flatten()
            .any(|c| c.flavor != source.flavor)
    {
        warnings.push(
            "JSON columns are normalised differently by MySQL and MariaDB; a JSON column \
             compared across flavors may report differences that are only formatting"
                .to_string(),
        );
    }

    let tables = schema::discover(
        &mut source_control,
        plan.databases.as_deref(),
        &options.tables,
    )
    .await
    .map_err(ChecksumError::Source)?;
    if tables.is_empty() {
        return Err(ChecksumError::NoTables(format!(
            "nothing on `{}` matches {}; check `databases:` in the plan or the table patterns",
            source_cluster.name,
            if options.tables.is_empty() {
                "the plan's databases".to_string()
            } else {
                options.tables.join(", ")
            }
        )));
    }
    for table in tables.iter().filter(|t| t.key.is_none()) {
        let warning = format!(
            "{} has no primary key or NOT NULL unique key: compared as a whole table, and a \
             difference cannot be narrowed to rows",
            table.display_name()
        );
        tracing::warn!("{warning}");
        warnings.push(warning);
    }

    // Table shapes: a target whose table differs is left out of that table.
    let mut excluded = Vec::new();
    let mut schema_differences: Vec<Vec<SchemaDifference>> = vec![Vec::new(); tables.len()];
    for (t, control) in controls.iter_mut().enumerate() {
        let Some(control) = control else { continue };
        for (i, table) in tables.iter().enumerate() {
            match schema::shape_on(&mut control.session, &table.schema, &table.name).await {
                Ok(Some(shape)) if shape == table.shape() => {}
                Ok(shape) => {
                    excluded.push((i, FIRST_TARGET + t));
                    schema_differences[i].push(SchemaDifference {
                        cluster: control.name.clone(),
                        detail: describe_shape_difference(table, shape.as_deref()),
                    });
                }
                Err(error) => {
                    target_errors[t] = Some(error.to_string());
                    break;
                }
            }
        }
    }
    let money = money_columns(&tables, &options.money_columns);
    for name in &options.money_columns {
        let found = tables.iter().zip(&money).any(|(table, columns)| {
            columns.iter().any(|c| {
                let column = &table.columns[*c].name;
                *name == format!("{}.{}", table.name, column)
                    || *name == format!("{}.{}.{}", table.schema, table.name, column)
            })
        });
        if !found {
            let warning = format!(
                "money column `{name}` matches no compared column; write it `table.column` or `schema.table.column`"
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
    }

    // How each target is compared.
    let mut bases: Vec<Option<Basis>> = vec![None; targets.len()];
    for (t, control) in controls.iter_mut().enumerate() {
        let Some(control) = control.as_mut().filter(|_| target_errors[t].is_none()) else {
            continue;
        };
        bases[t] = Some(if options.frozen_at.is_some() {
            Basis::Frozen
        } else {
            match point::classify(
                &source_cluster.host,
                source_cluster.port,
                &source_cluster.name,
                source_cluster.pool.connect_timeout,
                control,
            )
            .await
            {
                Ok(basis) => basis,
                Err(error) => {
                    target_errors[t] = Some(error.to_string());
                    continue;
                }
            }
        });
    }
    let any_at_point = bases
        .iter()
        .flatten()
        .any(|b| matches!(b, Basis::Consistent | Basis::Frozen));
    let any_live = bases.iter().flatten().any(|b| matches!(b, Basis::Live(_)));

    // Workers: bounded by every pool (the source also keeps a control and a key-walking session).
    let source_per_worker = usize::from(any_at_point) + usize::from(any_live);
    let mut workers = options
        .workers
        .unwrap_or(ChecksumOptions::DEFAULT_WORKERS)
        .max(1);
    workers = workers.min(
        (source_cluster.pool.max as usize).saturating_sub(2).max(1) / source_per_worker.max(1),
    );
    for connection in connections.iter().flatten() {
        workers = workers.min(
            (connection.cluster.pool.max as usize)
                .saturating_sub(1)
                .max(1),
        );
    }
    let workers = workers.max(1);

    // Worker sessions, per participant.
    let participant_count = FIRST_TARGET + targets.len();
    let mut participants: Vec<Participant> = Vec::with_capacity(participant_count);
    participants.push(Participant {
        cluster: source_cluster.name.clone(),
        dialect: source.dialect,
        reference: None,
        live: false,
    });
    participants.push(Participant {
        cluster: source_cluster.name.clone(),
        dialect: source.dialect,
        reference: None,
        live: true,
    });
    for (t, target) in targets.iter().enumerate() {
        let live = matches!(bases[t], Some(Basis::Live(_)));
        participants.push(Participant {
            cluster: target.name.clone(),
            dialect: connections[t]
                .as_ref()
                .map_or(source.dialect, |c| c.dialect),
            reference: Some(if live { SOURCE_LIVE } else { SOURCE_AT_POINT }),
            live,
        });
    }
    let mut wanted: Vec<Option<&Endpoint>> = vec![None; participant_count];
    if any_at_point {
        wanted[SOURCE_AT_POINT] = Some(&source.endpoint);
    }
    if any_live {
        wanted[SOURCE_LIVE] = Some(&source.endpoint);
    }
    for (t, connection) in connections.iter().enumerate() {
        if let (Some(connection), Some(_)) = (connection, &bases[t]) {
            wanted[FIRST_TARGET + t] = Some(&connection.endpoint);
        }
    }
    let opened = join_all(wanted.iter().map(|endpoint| async move {
        match endpoint {
            None => Ok(Vec::new()),
            Some(endpoint) => {
                let sessions = join_all((0..workers).map(|_| connect(endpoint))).await;
                sessions.into_iter().collect::<Result<Vec<_>, _>>()
            }
        }
    }))
    .await;
    let mut sessions: Vec<Vec<Session>> = Vec::with_capacity(participant_count);
    let mut participant_errors: Vec<Option<String>> = vec![None; participant_count];
    for (p, result) in opened.into_iter().enumerate() {
        match result {
            Ok(list) => sessions.push(list),
            Err(error) if p < FIRST_TARGET => return Err(ChecksumError::Source(error)),
            Err(error) => {
                participant_errors[p] = Some(error.to_string());
                sessions.push(Vec::new());
            }
        }
    }
    let mut walker = connect(&source.endpoint)
        .await
        .map_err(ChecksumError::Source)?;

    // The common point.
    let mut position = None;
    let mut source_lock_ms = None;
    if let Some(frozen) = &options.frozen_at {
        position = Some(frozen.clone());
        let (source_sessions, target_sessions) = sessions.split_at_mut(FIRST_TARGET);
        point::open_snapshots(source_sessions[SOURCE_AT_POINT].iter_mut().collect())
            .await
            .map_err(ChecksumError::Source)?;
        let results = join_all(
            controls
                .iter_mut()
                .zip(target_sessions.iter_mut())
                .filter_map(|(control, list)| Some((control.as_mut()?, list)))
                .map(|(control, list)| at_frozen_position(control, frozen, list)),
        )
        .await;
        for (t, result) in results.into_iter().enumerate() {
            if let Err(error) = result {
                participant_errors[FIRST_TARGET + t] = Some(error);
            }
        }
    } else if any_at_point {
        let consistent: Vec<usize> = (0..targets.len())
            .filter(|t| {
                bases[*t] == Some(Basis::Consistent)
                    && participant_errors[FIRST_TARGET + t].is_none()
            })
            .collect();
        let established = establish_point(
            &mut source_control,
            &mut walker,
            source.flavor,
            &mut controls,
            &mut sessions,
            &consistent,
            plan.gates.lag_timeout.min(Duration::from_secs(120)),
        )
        .await;
        match established {
            Ok((point, failures)) => {
                tracing::info!(
                    position = %point.position,
                    lock_ms = point.locked_for.as_millis() as u64,
                    "consistent point taken on {}",
                    source_cluster.name
                );
                position = Some(point.position);
                source_lock_ms = Some(point.locked_for.as_millis() as u64);
                for (t, error) in failures {
                    participant_errors[FIRST_TARGET + t] = Some(error);
                }
            }
            Err(error) => return Err(ChecksumError::Source(error)),
        }
    }

    // Hand each worker one session per participant.
    let mut slots: Vec<Slot> = (0..workers)
        .map(|_| Slot {
            sessions: (0..participant_count).map(|_| None).collect(),
        })
        .collect();
    for (p, list) in sessions.into_iter().enumerate() {
        if participant_errors[p].is_some() {
            for session in list {
                session.close().await;
            }
            continue;
        }
        for (w, session) in list.into_iter().enumerate() {
            slots[w].sessions[p] = Some(session);
        }
    }
    for (t, error) in target_errors.iter().enumerate() {
        if let Some(error) = error {
            participant_errors[FIRST_TARGET + t] = Some(error.clone());
        }
    }

    let shared = Arc::new(Shared::new(
        tables,
        participants,
        money,
        excluded,
        options.chunk_time,
    ));
    for (p, error) in participant_errors.iter().enumerate() {
        if let Some(error) = error {
            shared.fail(p, error.clone());
        }
    }

    let progress = crate::progress::Progress::new(
        &schema::sizes(&shared.tables),
        options.progress,
        "checksum",
    );
    let (job_sender, job_receiver) = mpsc::channel(workers * 2);
    let job_receiver = Arc::new(tokio::sync::Mutex::new(job_receiver));
    let (outcome_sender, mut outcome_receiver) = mpsc::channel(workers * 4);
    let reference_source = if any_at_point {
        SOURCE_AT_POINT
    } else {
        SOURCE_LIVE
    };
    let walk = tokio::spawn(compare::walk(
        shared.clone(),
        walker,
        reference_source,
        job_sender,
    ));
    let mut worker_tasks = Vec::new();
    for slot in slots {
        worker_tasks.push(tokio::spawn(compare::work(
            shared.clone(),
            slot,
            job_receiver.clone(),
            outcome_sender.clone(),
        )));
    }
    drop(outcome_sender);

    let mut tally = Tally::new(&shared);
    while let Some(outcome) = outcome_receiver.recv().await {
        progress.advance(outcome.table, outcome.rows, 0);
        tally.add(&shared, outcome);
    }
    progress.finish();
    if let Ok(walker) = walk.await {
        walker.close().await;
    }
    for task in worker_tasks {
        if let Ok(slot) = task.await {
            for session in slot.sessions.into_iter().flatten() {
                session.close().await;
            }
        }
    }
    source_control.close().await;
    for control in controls.into_iter().flatten() {
        control.session.close().await;
    }

    Ok(tally.report(
        &shared,
        &bases,
        schema_differences,
        position,
        source_lock_ms,
        workers,
        warnings,
        started.elapsed(),
    ))
}

/// Each selected table's whole-table checksum query, as the chunks run it
/// (one per table, no key range): for review, and as the benchmark's floor.
pub async fn whole_table_queries(
    plan: &ValidatedPlan,
    options: &ChecksumOptions,
) -> Result<Vec<TableQuery>, ChecksumError> {
    let endpoint = Endpoint::for_cluster(plan.source())?;
    let mut session = connect(&endpoint).await.map_err(ChecksumError::Source)?;
    let version = server_version(&mut session)
        .await
        .map_err(ChecksumError::Source)?;
    let flavor = Flavor::from_version(&version);
    let dialect = Dialect {
        json: JsonNormaliser::for_server(flavor, &version),
        float_precision: options.float_precision,
    };
    let tables = schema::discover(&mut session, plan.databases.as_deref(), &options.tables)
        .await
        .map_err(ChecksumError::Source)?;
    session.close().await;
    let money = money_columns(&tables, &options.money_columns);
    Ok(tables
        .iter()
        .zip(&money)
        .map(|(table, money)| TableQuery {
            table: table.display_name(),
            sql: compare::chunk_sql(
                table,
                money,
                &chunk::Range::all(),
                canonical::Form::Fast,
                &dialect,
            ),
            row_hash: canonical::row_hash(table, canonical::Form::Fast, &dialect),
            from: canonical::table_name(table),
        })
        .collect())
}

/// What `cutover checksum --show-sql` prints for one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableQuery {
    pub table: String,
    /// The chunk query with no key range.
    pub sql: String,
    /// The per-row hash expression alone.
    pub row_hash: String,
    /// The quoted table name.
    pub from: String,
}

/// Inside a freeze: check the target holds the frozen position, then snapshot.
async fn at_frozen_position(
    control: &mut TargetControl,
    frozen: &str,
    sessions: &mut [Session],
) -> Result<(), String> {
    let reached = crate::mysql::control::wait_for_position(
        &mut control.session,
        control.flavor,
        frozen,
        Duration::from_secs(5),
    )
    .await
    .map_err(|e| e.to_string())?;
    if !reached {
        return Err(format!(
            "cluster `{}` has not applied the frozen position {frozen}",
            control.name
        ));
    }
    point::open_snapshots(sessions.iter_mut().collect())
        .await
        .map_err(|e| e.to_string())
}

/// Pause the consistent targets, lock the source briefly, bring each target to
/// the source's position and snapshot it there, then resume every paused target.
/// Returns the point and the targets that could not join it.
async fn establish_point(
    source_control: &mut Session,
    spare: &mut Session,
    flavor: Flavor,
    controls: &mut [Option<TargetControl>],
    sessions: &mut [Vec<Session>],
    consistent: &[usize],
    reach_limit: Duration,
) -> Result<(point::SourcePoint, Vec<(usize, String)>), MysqlError> {
    let mut failures = Vec::new();
    let paused_results = join_all(
        controls
            .iter_mut()
            .enumerate()
            .filter(|(t, _)| consistent.contains(t))
            .filter_map(|(t, control)| Some((t, control.as_mut()?)))
            .map(|(t, control)| async move { (t, point::pause(control).await) }),
    )
    .await;
    let mut paused = Vec::new();
    for (t, result) in paused_results {
        match result {
            Ok(()) => paused.push(t),
            Err(error) => failures.push((t, error.to_string())),
        }
    }
    let (source_sessions, target_sessions) = sessions.split_at_mut(FIRST_TARGET);
    let locked = point::lock_source(
        source_control,
        spare,
        flavor,
        source_sessions[SOURCE_AT_POINT].iter_mut().collect(),
        Duration::from_secs(5),
    )
    .await;
    let brought = match &locked {
        Ok(source_point) => {
            join_all(
                controls
                    .iter_mut()
                    .zip(target_sessions.iter_mut())
                    .enumerate()
                    .filter(|(t, _)| paused.contains(t))
                    .filter_map(|(t, (control, list))| Some((t, control.as_mut()?, list)))
                    .map(|(t, control, list)| {
                        let position = source_point.position.clone();
                        async move {
                            let result = point::bring_to(
                                control,
                                &position,
                                reach_limit,
                                list.iter_mut().collect(),
                            )
                            .await;
                            // Replication resumes whatever happened above.
                            let resumed = point::resume(control).await;
                            (t, result, resumed)
                        }
                    }),
            )
            .await
        }
        Err(_) => {
            join_all(
                controls
                    .iter_mut()
                    .enumerate()
                    .filter(|(t, _)| paused.contains(t))
                    .filter_map(|(t, control)| Some((t, control.as_mut()?)))
                    .map(|(t, control)| async move { (t, Ok(()), point::resume(control).await) }),
            )
            .await
        }
    };
    for (t, result, resumed) in brought {
        if let Err(error) = resumed {
            tracing::error!(
                "{error}: replication is stopped there; start it with START SLAVE (MariaDB) or START REPLICA (MySQL)"
            );
            failures.push((t, error.to_string()));
        } else if let Err(error) = result {
            failures.push((t, error));
        }
    }
    Ok((locked?, failures))
}

fn describe_shape_difference(table: &TableSpec, shape: Option<&[(String, String)]>) -> String {
    let Some(shape) = shape else {
        return format!("table {} does not exist", table.display_name());
    };
    let ours = table.shape();
    let missing: Vec<String> = ours
        .iter()
        .filter(|c| !shape.contains(c))
        .map(|(name, data_type)| format!("{name} {data_type}"))
        .collect();
    let extra: Vec<String> = shape
        .iter()
        .filter(|c| !ours.contains(c))
        .map(|(name, data_type)| format!("{name} {data_type}"))
        .collect();
    if missing.is_empty() && extra.is_empty() {
        "columns are in a different order".to_string()
    } else {
        format!(
            "columns differ: the source has [{}], this cluster has [{}]",
            missing.join(", "),
            extra.join(", ")
        )
    }
}

/// Money columns per table: the named ones, or every DECIMAL column.
fn money_columns(tables: &[TableSpec], named: &[String]) -> Vec<Vec<usize>> {
    tables
        .iter()
        .map(|table| {
            table
                .columns
                .iter()
                .enumerate()
                .filter(|(_, column)| {
                    if named.is_empty() {
                        column.class == ColumnClass::Decimal
                    } else {
                        named.iter().any(|name| {
                            let full = format!("{}.{}.{}", table.schema, table.name, column.name);
                            let short = format!("{}.{}", table.name, column.name);
                            *name == full || *name == short
                        })
                    }
                })
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

/// Totals gathered from every outcome.
struct Tally {
    rows: Vec<u64>,
    chunks: Vec<u64>,
    mismatches: Vec<Vec<RowMismatch>>,
    differing_chunks: Vec<u64>,
    settled_on_recheck: Vec<u64>,
    /// `[table][participant][money column]` → (sum, non-null count, any non-null sum).
    money: Vec<Vec<Vec<(Decimal, u64, bool)>>>,
    /// Rows compared per participant.
    participant_rows: Vec<u64>,
    /// Participants that differed anywhere.
    differed: Vec<bool>,
}

impl Tally {
    fn new(shared: &Shared) -> Tally {
        let tables = shared.tables.len();
        let participants = shared.participants.len();
        Tally {
            rows: vec![0; tables],
            chunks: vec![0; tables],
            mismatches: vec![Vec::new(); tables],
            differing_chunks: vec![0; tables],
            settled_on_recheck: vec![0; tables],
            money: shared
                .money
                .iter()
                .map(|columns| vec![vec![(Decimal::zero(), 0, false); columns.len()]; participants])
                .collect(),
            participant_rows: vec![0; participants],
            differed: vec![false; participants],
        }
    }

    fn add(&mut self, shared: &Shared, outcome: compare::Outcome) {
        let t = outcome.table;
        self.rows[t] += outcome.rows;
        self.chunks[t] += 1;
        self.settled_on_recheck[t] += outcome.settled_on_recheck;
        if !outcome.differing.is_empty() {
            self.differing_chunks[t] += 1;
        }
        for p in &outcome.differing {
            self.differed[*p] = true;
        }
        for (p, sum) in outcome.sums.iter().enumerate() {
            let Some(sum) = sum else { continue };
            self.participant_rows[p] += sum.count;
            for (m, (total, count)) in sum.money.iter().enumerate() {
                let slot = &mut self.money[t][p][m];
                if let Some(total) = total.as_deref().and_then(Decimal::parse) {
                    slot.0 = slot.0.add(&total);
                    slot.2 = true;
                }
                slot.1 += count;
            }
        }
        self.mismatches[t].extend(outcome.mismatches);
        let _ = shared;
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        mut self,
        shared: &Shared,
        bases: &[Option<Basis>],
        schema_differences: Vec<Vec<SchemaDifference>>,
        position: Option<String>,
        source_lock_ms: Option<u64>,
        workers: usize,
        warnings: Vec<String>,
        elapsed: Duration,
    ) -> ChecksumReport {
        let failures = shared.failures.lock().expect("not poisoned").clone();
        let source_failure = failures[SOURCE_AT_POINT]
            .clone()
            .or_else(|| failures[SOURCE_LIVE].clone());
        let mut clusters = vec![ClusterOutcome {
            cluster: shared.participants[SOURCE_AT_POINT].cluster.clone(),
            basis: Basis::Consistent,
            status: if source_failure.is_some() {
                "error"
            } else {
                "source"
            },
            rows: self.participant_rows[SOURCE_AT_POINT].max(self.participant_rows[SOURCE_LIVE]),
            error: source_failure,
        }];
        let mut reconciliation = Vec::new();
        for (t, participant) in shared.participants.iter().enumerate().skip(FIRST_TARGET) {
            let target = t - FIRST_TARGET;
            let reference = participant.reference.expect("targets have a reference");
            let error = failures[t].clone().or_else(|| {
                failures[reference]
                    .clone()
                    .map(|e| format!("the source failed: {e}"))
            });
            let shape_differs = schema_differences
                .iter()
                .any(|list| list.iter().any(|d| d.cluster == participant.cluster));
            clusters.push(ClusterOutcome {
                cluster: participant.cluster.clone(),
                basis: bases[target]
                    .clone()
                    .unwrap_or_else(|| Basis::Live("not reachable".to_string())),
                status: if self.differed[t] || shape_differs {
                    "mismatch"
                } else if error.is_some() {
                    "error"
                } else {
                    "match"
                },
                rows: self.participant_rows[t],
                error,
            });
        }
        let mut tables = Vec::new();
        for (i, table) in shared.tables.iter().enumerate() {
            let mut mismatches = std::mem::take(&mut self.mismatches[i]);
            mismatches.sort_by(|a, b| {
                a.cluster
                    .cmp(&b.cluster)
                    .then_with(|| a.key.to_string().cmp(&b.key.to_string()))
            });
            let truncated = shared.participants.iter().enumerate().any(|(p, _)| {
                mismatches
                    .iter()
                    .filter(|m| m.cluster == shared.participants[p].cluster)
                    .count()
                    >= compare::MAX_REPORTED_ROWS
            });
            // Money totals: each target against the source it was compared with.
            for (m, column) in shared.money[i].iter().enumerate() {
                let column_name = &table.columns[*column].name;
                let source_total = |p: usize| self.money[i][p][m].clone();
                let primary_source = if shared
                    .participants
                    .iter()
                    .skip(FIRST_TARGET)
                    .any(|p| p.reference == Some(SOURCE_AT_POINT))
                {
                    SOURCE_AT_POINT
                } else {
                    SOURCE_LIVE
                };
                let (sum, count, any) = source_total(primary_source);
                reconciliation.push(Reconciliation {
                    table: table.display_name(),
                    column: column_name.clone(),
                    cluster: shared.participants[primary_source].cluster.clone(),
                    sum: any.then(|| sum.to_string()),
                    count,
                    difference: None,
                    matches: true,
                });
                for (p, participant) in shared.participants.iter().enumerate().skip(FIRST_TARGET) {
                    if failures[p].is_some()
                        || shared.excluded.contains(&(i, p))
                        || participant.reference.is_none()
                    {
                        continue;
                    }
                    let reference = participant.reference.expect("checked");
                    let (ref_sum, ref_count, _) = source_total(reference);
                    let (sum, count, any) = source_total(p);
                    let difference = sum.subtract(&ref_sum);
                    let matches = difference.is_zero() && count == ref_count;
                    reconciliation.push(Reconciliation {
                        table: table.display_name(),
                        column: column_name.clone(),
                        cluster: participant.cluster.clone(),
                        sum: any.then(|| sum.to_string()),
                        count,
                        difference: Some(difference.to_string()),
                        matches,
                    });
                }
            }
            let status = if !mismatches.is_empty()
                || self.differing_chunks[i] > 0
                || !schema_differences[i].is_empty()
            {
                Verdict::Mismatch
            } else if failures.iter().any(Option::is_some) {
                Verdict::Incomplete
            } else {
                Verdict::Match
            };
            tables.push(TableOutcome {
                table: table.display_name(),
                status,
                rows: self.rows[i],
                chunks: self.chunks[i],
                key: table.key_columns().iter().map(|c| c.name.clone()).collect(),
                warning: table
                    .key
                    .is_none()
                    .then(|| "no usable key: compared as a whole table".to_string()),
                mismatches,
                schema_differences: schema_differences[i].clone(),
                settled_on_recheck: self.settled_on_recheck[i],
                truncated,
            });
        }
        let status = if tables.iter().any(|t| t.status == Verdict::Mismatch)
            || reconciliation.iter().any(|r| !r.matches)
        {
            Verdict::Mismatch
        } else if clusters.iter().any(|c| c.error.is_some()) {
            Verdict::Incomplete
        } else {
            Verdict::Match
        };
        ChecksumReport {
            status,
            rows_compared: self.rows.iter().sum(),
            elapsed_ms: elapsed.as_millis() as u64,
            position,
            source_lock_ms,
            workers,
            clusters,
            tables,
            reconciliation,
            warnings,
        }
    }
}

/// The human summary: one line per cluster, per table, per differing row and total.
pub fn render(report: &ChecksumReport) -> String {
    let mut out = String::new();
    let clusters: Vec<Vec<String>> = report
        .clusters
        .iter()
        .map(|c| {
            vec![
                c.cluster.clone(),
                match &c.basis {
                    Basis::Consistent => "consistent point".to_string(),
                    Basis::Frozen => "frozen position".to_string(),
                    Basis::Live(reason) => format!("live ({reason})"),
                },
                c.status.to_string(),
                c.rows.to_string(),
                c.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&crate::text::table(
        &["CLUSTER", "COMPARED AT", "STATUS", "ROWS", "ERROR"],
        &clusters,
    ));
    out.push('\n');
    let tables: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.clone(),
                format!("{:?}", t.status).to_lowercase(),
                t.rows.to_string(),
                t.chunks.to_string(),
                if t.key.is_empty() {
                    "(none)".to_string()
                } else {
                    t.key.join(", ")
                },
                t.mismatches.len().to_string(),
            ]
        })
        .collect();
    out.push_str(&crate::text::table(
        &["TABLE", "STATUS", "ROWS", "CHUNKS", "KEY", "DIFFERING ROWS"],
        &tables,
    ));
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .flat_map(|t| {
            t.mismatches.iter().map(move |m| {
                vec![
                    t.table.clone(),
                    m.cluster.clone(),
                    m.detail.clone().unwrap_or_else(|| m.key.to_string()),
                    format!("{:?}", m.kind).to_lowercase(),
                    m.columns.join(", "),
                    format!("{:?}", m.settled).to_lowercase(),
                ]
            })
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&crate::text::table(
            &["TABLE", "CLUSTER", "KEY", "KIND", "COLUMNS", "SETTLED"],
            &rows,
        ));
    }
    for table in &report.tables {
        for difference in &table.schema_differences {
            out.push_str(&format!(
                "\n{} on {}: {}\n",
                table.table, difference.cluster, difference.detail
            ));
        }
    }
    let mut totals: BTreeMap<(String, String), Vec<&Reconciliation>> = BTreeMap::new();
    for line in &report.reconciliation {
        totals
            .entry((line.table.clone(), line.column.clone()))
            .or_default()
            .push(line);
    }
    if !totals.is_empty() {
        let rows: Vec<Vec<String>> = totals
            .values()
            .flatten()
            .map(|r| {
                vec![
                    format!("{}.{}", r.table, r.column),
                    r.cluster.clone(),
                    r.sum.clone().unwrap_or_else(|| "NULL".to_string()),
                    r.count.to_string(),
                    r.difference.clone().unwrap_or_else(|| "-".to_string()),
                    if r.matches { "ok" } else { "DIFFERS" }.to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&crate::text::table(
            &["MONEY COLUMN", "CLUSTER", "SUM", "COUNT", "DIFFERENCE", ""],
            &rows,
        ));
    }
    for warning in &report.warnings {
        out.push_str(&format!("\nwarning: {warning}"));
    }
    out.push_str(&format!(
        "\n{} ({} ms{}{})\n",
        report.summary(),
        report.elapsed_ms,
        report
            .position
            .as_ref()
            .map(|p| format!(", at GTID {p}"))
            .unwrap_or_default(),
        report
            .source_lock_ms
            .map(|ms| format!(", source writes paused {ms} ms"))
            .unwrap_or_default()
    ));
    out
}
