//! The executor: validated plan → prechecks → phases of steps, with every
//! step's intent journaled before it acts and its result after; per-phase
//! rollback, resume from the journal, and dry runs.

mod decide;
pub mod deferral;
mod failure;
pub mod phase_start;
pub mod prechecks;
pub mod recovery;
pub mod report;
mod resume;
mod rollback;
mod run;
mod switchover;

use std::time::Instant;

use crate::outcome::ErrorKind;
use crate::plan::ValidatedPlan;
use crate::secret::SecretError;
use crate::steps::context::{Context, SwitchState};
use crate::store::{PlanLock, RunRecord, RunStatus, StepStatus, Store, StoreError};
use prechecks::Precheck;
pub use report::{Operation, RunReport};

pub use recovery::KILL_AT_STEP_ENV;
pub use resume::resume;
pub use rollback::rollback;
pub use run::run;
pub use switchover::{reverse_switchover, switchover};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the plan has no phase `{0}`")]
    UnknownPhase(String),
    #[error(
        "cannot start plan `{plan}` at phase `{from}`: {missing} not recorded as completed for this version of the plan (sha256 {sha_prefix})"
    )]
    EarlierPhasesNotCompleted {
        plan: String,
        from: String,
        missing: String,
        them: &'static str,
        sha_prefix: String,
    },
    #[error("plan file {path} changed since run {run_id} started (sha256 differs)")]
    PlanChanged { run_id: String, path: String },
    #[error("run {run_id} is {status}; there is nothing to {action}")]
    NothingToDo {
        run_id: String,
        status: String,
        action: String,
    },
    #[error(
        "run {0} was a dry run; it changed nothing, so there is nothing to resume or roll back"
    )]
    DryRun(String),
    #[error(
        "run {run_id} has nothing left to run, but the servers do not agree with its journal. \
         Journal: {journal}. Servers: {live}. Nothing was changed"
    )]
    JournalDisagrees {
        run_id: String,
        journal: String,
        live: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Another orchestrator holds the plan's lease now.
    #[error("{0}")]
    LeaseLost(String),
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Store(error) => error.kind(),
            EngineError::EarlierPhasesNotCompleted { .. } | EngineError::LeaseLost(_) => {
                ErrorKind::Refused
            }
            EngineError::JournalDisagrees { .. } => ErrorKind::Failed,
            EngineError::UnknownPhase(_)
            | EngineError::PlanChanged { .. }
            | EngineError::NothingToDo { .. }
            | EngineError::DryRun(_)
            | EngineError::Secret(_) => ErrorKind::InvalidInput,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::EarlierPhasesNotCompleted { them, .. } => Some(format!(
                "run {them} first (`cutover run PLAN --phase NAME`), or run the whole plan"
            )),
            EngineError::PlanChanged { .. } => {
                Some("restore the plan the run used before resuming or rolling back".into())
            }
            EngineError::JournalDisagrees { run_id, .. } => Some(format!(
                "see `cutover topology PLAN`, then `cutover rollback {run_id}` or put the servers back by hand"
            )),
            EngineError::Store(error) => error.hint(),
            EngineError::LeaseLost(_) => Some(
                "another orchestrator took the run over; follow it with `cutover status RUN_ID`"
                    .into(),
            ),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Only this phase.
    pub phase: Option<String>,
    /// This phase and the ones after it; the earlier ones must have completed
    /// in earlier runs of the same plan version.
    pub from_phase: Option<String>,
    /// Confirmations answered yes.
    pub yes: bool,
}

/// How a run (or resume, or rollback) ended.
#[derive(Debug, Clone)]
enum Ending {
    Completed,
    /// A gate or precheck said no before anything changed.
    Refused(String),
    /// A step failed and its phase was undone cleanly.
    RolledBack(String),
    /// A step failed and the state is not what the plan started from.
    Failed {
        reason: String,
        next: String,
    },
    /// This process lost the plan's lease to another orchestrator: it stops
    /// where it is and journals nothing more.
    Deposed(String),
}

async fn release(store: &Store, lock: PlanLock) {
    if let Err(error) = store.release_plan_lock(lock).await {
        tracing::warn!("could not release the plan lock: {error}");
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    store: &Store,
    run_id: &str,
    plan: &ValidatedPlan,
    outcome: Ending,
    prechecks: Vec<Precheck>,
    operations: Vec<Operation>,
    write_freeze_ms: Option<u64>,
    data_mismatch: bool,
    state: &SwitchState,
    started: Instant,
) -> Result<RunReport, EngineError> {
    let (status, detail, next) = match &outcome {
        Ending::Completed => (RunStatus::Completed, None, None),
        Ending::Refused(reason) => (RunStatus::Refused, Some(reason.clone()), None),
        Ending::RolledBack(reason) => (RunStatus::RolledBack, Some(reason.clone()), None),
        Ending::Failed { reason, next } => {
            (RunStatus::Failed, Some(reason.clone()), Some(next.clone()))
        }
        Ending::Deposed(why) => return Err(EngineError::LeaseLost(why.clone())),
    };
    store.finish_run(run_id, status, detail.as_deref()).await?;
    let record = store.run(run_id).await?;
    Ok(RunReport::new(
        &record,
        plan,
        detail,
        next,
        prechecks,
        operations,
        write_freeze_ms,
        data_mismatch,
        state,
        started.elapsed(),
    ))
}

fn store_failure(ctx: &Context, error: StoreError) -> Ending {
    if matches!(error, StoreError::LeaseLost { .. }) {
        return Ending::Deposed(error.to_string());
    }
    Ending::Failed {
        reason: format!("the state store failed, so the journal is incomplete: {error}"),
        next: format!(
            "cutover status {}   # then resume or roll back once the store is writable",
            ctx.run_id
        ),
    }
}

/// The state a run left, from the last step that journaled one.
fn journaled_state(record: &RunRecord, plan: &ValidatedPlan) -> SwitchState {
    journaled_state_if_any(record).unwrap_or_else(|| Context::initial_state(plan))
}

fn journaled_state_if_any(record: &RunRecord) -> Option<SwitchState> {
    record
        .phases
        .iter()
        .flat_map(|phase| &phase.steps)
        .filter(|step| {
            matches!(
                step.status,
                StepStatus::Completed | StepStatus::Failed | StepStatus::RolledBack
            )
        })
        .filter_map(|step| step.positions.as_ref()?.get("state").cloned())
        .filter_map(|state| serde_json::from_value::<SwitchState>(state).ok())
        .next_back()
}

fn check_same_plan(record: &RunRecord, plan: &ValidatedPlan) -> Result<(), EngineError> {
    if record.plan_sha256 != plan.sha256 {
        return Err(EngineError::PlanChanged {
            run_id: record.run_id.clone(),
            path: record.plan_path.clone(),
        });
    }
    if record.dry_run {
        return Err(EngineError::DryRun(record.run_id.clone()));
    }
    Ok(())
}

/// End a resume or rollback: close connections, record the outcome, free the plan.
async fn conclude(
    mut ctx: Context,
    store: &Store,
    plan: &ValidatedPlan,
    outcome: Ending,
    started: Instant,
    lock: PlanLock,
) -> Result<RunReport, EngineError> {
    if let Ending::Deposed(why) = &outcome {
        // The lease is another's now: nothing to journal, nothing to release.
        ctx.drop_sessions().await;
        return Err(EngineError::LeaseLost(why.clone()));
    }
    let state = ctx.state.clone();
    let freeze = ctx.write_freeze_ms;
    let data_mismatch = ctx.data_mismatch;
    let sessions_ended = std::mem::take(&mut ctx.sessions_ended);
    let links = std::mem::take(&mut ctx.replication_links);
    ctx.drop_sessions().await;
    // Renewals stop before the lease is let go (the run's end is journaled
    // while it is still held).
    drop(ctx.lease.take());
    let run_id = ctx.run_id.clone();
    let report = finish(
        store,
        &run_id,
        plan,
        outcome,
        vec![],
        vec![],
        freeze,
        data_mismatch,
        &state,
        started,
    )
    .await
    .map(|mut report| {
        report.sessions_ended = sessions_ended;
        report.replication_links = links;
        report
    });
    release(store, lock).await;
    report
}
