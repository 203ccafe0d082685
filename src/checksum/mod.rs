//! Row checksums of the source against every target at one consistent point,
//! localised to the row and column, with exact money reconciliation.
//!
//! Flow: connect → discover tables on the source → compare table shapes →
//! classify each target (consistent point, frozen, or live) → open worker
//! sessions and establish the point → walk keys into chunks → workers hash
//! each chunk on every participant at once and bisect the ones that differ →
//! report.

pub mod compare;

use crate::tables::{canonical, chunk, point, schema};
mod chunks;
pub mod decimal;
mod report;
mod run;
pub mod stats;

pub use run::run;
use run::{FIRST_TARGET, SOURCE_AT_POINT, SOURCE_LIVE, connect, server_version};

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
use report::Tally;
pub use report::{
    ChecksumReport, ClusterOutcome, Reconciliation, SchemaDifference, TableOutcome, Verdict, render,
};
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
    /// Say where the time went (`stats` in the report).
    pub stats: bool,
}

impl ChecksumOptions {
    pub const DEFAULT_WORKERS: usize = 3;

    pub fn new() -> ChecksumOptions {
        ChecksumOptions {
            targets: Vec::new(),
            tables: Vec::new(),
            float_precision: canonical::DEFAULT_FLOAT_PRECISION,
            money_columns: Vec::new(),
            workers: None,
            chunk_time: Duration::from_millis(250),
            frozen_at: None,
            progress: true,
            stats: false,
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
    /// The source was too busy for a consistent point within the limits;
    /// nothing was compared and nothing changed.
    #[error("{0}")]
    NoPoint(String),
}

impl ChecksumError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ChecksumError::Secret(_)
            | ChecksumError::UnknownTarget(_)
            | ChecksumError::NoTables(_) => ErrorKind::InvalidInput,
            ChecksumError::Source(_) => ErrorKind::Failed,
            ChecksumError::NoPoint(_) => ErrorKind::Refused,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ChecksumError::UnknownTarget(_) => {
                Some("name one of the plan's enabled targets".into())
            }
            ChecksumError::NoPoint(_) => Some(
                "run it again when the hot rows are quieter, or raise gates.max_source_stall_ms"
                    .into(),
            ),
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
            sql: crate::tables::hash::chunk_sql(
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
