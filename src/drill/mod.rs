//! Disaster-recovery drills: fail a primary on purpose (a planned switchover,
//! a crash, or an isolation, through the plan's hook commands), fail over,
//! measure RTO and RPO with the write probe, verify with checksums, fail
//! back, and report with a timeline.
//!
//! Flow: prechecks (primary writable, a DR cluster able to take over, DNS
//! where it should be) → write probe → injection → detection → failover
//! (planned: the graceful switchover; otherwise emergency promotion of the
//! most advanced replica) → first acknowledged write on the new primary
//! (RTO) → probe read-back (RPO: acknowledged writes lost) → checksum of the
//! survivors → failback (rejoin the failed server as a replica, optionally
//! switch back) → checksum → reports and history.

pub mod failback;
pub mod failover;
mod findings;
pub mod history;
mod measure;
mod progress;
pub mod report;
pub mod resume;
pub mod schedule;
mod stages;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::checksum::{self, ChecksumOptions, Verdict};
use crate::mysql::{Endpoint, GtidSet, MysqlError, Session, control, server};
use crate::outcome::{ErrorKind, Outcome};
use crate::plan::{ClusterRole, Drill, DrillFailure, ValidatedPlan};
use crate::probe::{self, Ack, Acks, ProbeOptions, ProbeReport};
use crate::steps::StepError;
use crate::steps::context::Context;
use crate::store::{RunStatus, Store, StoreError, best_effort};
pub use findings::{
    DrillReport, Event, Interrupted, Objective, ProbeSummary, RateBin, Rpo, Verification,
};
use measure::{addresses_of, assemble, detect, first_write_on};
use progress::{Progress, STAGE_PREFIX};
use stages::{drive, fail_back_and_verify, verify};

/// The longest a drill waits for the first write on the new primary.
const FIRST_WRITE_LIMIT: Duration = Duration::from_secs(60);
/// The longest the injected primary may keep answering.
const DETECTION_LIMIT: Duration = Duration::from_secs(60);
/// A probe write that takes longer counts as failed (an isolated server never answers).
const PROBE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Width of one bar of the write-rate chart.
pub const RATE_BIN_MS: u64 = 250;

#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// Override the plan's `drill.failure`.
    pub failure: Option<DrillFailure>,
    /// Where the markdown, JSON and HTML reports go (a directory per drill).
    pub report_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("plan `{0}` has no `drill` section")]
    NoDrill(String),
    #[error("{0}")]
    Invalid(String),
    /// Refused before anything was injected.
    #[error("drill precheck: {0}; nothing was injected")]
    Precheck(String),
    #[error("failover: {0}")]
    Failover(String),
    #[error("failback: {0}")]
    Failback(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("drill report: cannot write {path}: {reason}")]
    Report { path: String, reason: String },
}

impl DrillError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DrillError::NoDrill(_) | DrillError::Invalid(_) | DrillError::Secret(_) => {
                ErrorKind::InvalidInput
            }
            DrillError::Precheck(_) | DrillError::Store(StoreError::LockHeld { .. }) => {
                ErrorKind::Refused
            }
            DrillError::Failover(_)
            | DrillError::Failback(_)
            | DrillError::Store(_)
            | DrillError::Mysql(_)
            | DrillError::Step(_)
            | DrillError::Report { .. } => ErrorKind::Failed,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            DrillError::NoDrill(_) => Some("add one (see plans/lab-dr-drill.yaml)".into()),
            DrillError::Store(error) => error.hint(),
            _ => None,
        }
    }

    pub fn cluster(&self) -> Option<&str> {
        match self {
            DrillError::Mysql(error) => Some(error.cluster()),
            _ => None,
        }
    }
}

/// Milliseconds of `duration`, saturating.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

/// Run one drill and write its reports.
pub async fn run(
    plan: ValidatedPlan,
    store: Store,
    options: &DrillOptions,
) -> Result<DrillReport, DrillError> {
    let drill = plan
        .drill
        .clone()
        .ok_or_else(|| DrillError::NoDrill(plan.name.clone()))?;
    let failure = options.failure.unwrap_or(drill.failure);
    if failure != DrillFailure::Planned && drill.inject.is_empty() {
        return Err(DrillError::Invalid(
            "a `crash` or `isolate` drill needs `drill.inject` in the plan".into(),
        ));
    }
    let plan = Arc::new(plan);
    let record = store.create_run(&plan, false).await?;
    let run_id = record.run_id.clone();
    let lock = match store.acquire_plan_lock(&plan.name, &run_id).await {
        Ok(lock) => lock,
        Err(error) => {
            best_effort(
                store
                    .finish_run(&run_id, RunStatus::Refused, Some(&error.to_string()))
                    .await,
                "the run's end",
            );
            return Err(error.into());
        }
    };
    let store = store.fenced_by(&lock);
    let mut state = Context::initial_state(&plan);
    state.primary = drill.primary.clone();
    state.dns_points_to = drill.primary.clone();
    let mut ctx = Context::new(plan.clone(), store.clone(), run_id.clone(), true, state)?;
    ctx.hold_lease(&lock);
    ctx.phase = "drill".into();
    let mut progress = Progress::new(
        (store.clone(), run_id.clone()),
        failure,
        Instant::now(),
        unix_ms(SystemTime::now()),
    );
    let started_at = crate::whoami::now();
    let outcome = drive(&mut ctx, &drill, failure, &mut progress).await;
    ctx.drop_sessions().await;
    // The run's end is journaled under its lease, then the lease is let go.
    drop(ctx.lease.take());
    let probe = match outcome {
        Ok(probe) => probe,
        Err(error) => {
            best_effort(
                store
                    .finish_run(&run_id, RunStatus::Refused, Some(&error.to_string()))
                    .await,
                "the run's end",
            );
            best_effort(store.release_plan_lock(lock).await, "the plan lock release");
            return Err(error);
        }
    };
    let mut report = assemble(
        &plan,
        &drill,
        failure,
        run_id.clone(),
        started_at,
        progress,
        probe,
    );
    let status = if report.status == "failed" {
        RunStatus::Failed
    } else {
        RunStatus::Completed
    };
    best_effort(
        store.finish_run(&run_id, status, Some(report.status)).await,
        "the run's end",
    );
    best_effort(store.release_plan_lock(lock).await, "the plan lock release");
    report::write_all(&mut report, &options.report_dir)?;
    history::record(&store, &report).await?;
    Ok(report)
}
