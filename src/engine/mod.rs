//! The executor: validated plan → prechecks → phases of steps, with every
//! step's intent journaled before it acts and its result after; per-phase
//! rollback, resume from the journal, and dry runs.

pub mod context;
pub mod deferral;
mod disk_space;
mod kept_accounts;
pub mod phase_start;
pub mod prechecks;
pub mod recovery;
pub mod report;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::plan::{Phase, RollbackMode, Step, StepKind, ValidatedPlan};
use crate::secret::SecretError;
use crate::steps::{self, StepError};
use crate::store::{
    EventKind, PlanLock, RunRecord, RunStatus, StepStatus, StepUpdate, Store, StoreError,
};
use context::{Context, SwitchState};
use phase_start::PhaseStartChecks;
use prechecks::{CheckStatus, Precheck, Scope};
pub use report::{Operation, RunReport};

pub use recovery::KILL_AT_STEP_ENV;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the plan has no phase `{0}`")]
    UnknownPhase(String),
    #[error(
        "cannot start plan `{plan}` at phase `{from}`: {missing} not recorded as completed for this version of the plan (sha256 {sha_prefix}); run {them} first (`cutover run PLAN --phase NAME`), or run the whole plan"
    )]
    EarlierPhasesNotCompleted {
        plan: String,
        from: String,
        missing: String,
        them: &'static str,
        sha_prefix: String,
    },
    #[error(
        "plan file {path} changed since run {run_id} started (sha256 differs); restore the plan the run used before resuming or rolling back"
    )]
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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
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
enum Outcome {
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
}

fn selected_phases<'a>(
    plan: &'a ValidatedPlan,
    phase: Option<&str>,
) -> Result<Vec<(usize, &'a Phase)>, EngineError> {
    match phase {
        None => Ok(plan.phases.iter().enumerate().collect()),
        Some(name) => plan
            .phases
            .iter()
            .enumerate()
            .filter(|(_, p)| p.name == name)
            .map(Ok)
            .next()
            .map(|found| found.map(|one| vec![one]))
            .unwrap_or_else(|| Err(EngineError::UnknownPhase(name.to_string()))),
    }
}

/// The phases from `name` on, and for each earlier one the run that completed it.
async fn phases_from<'a>(
    plan: &'a ValidatedPlan,
    store: &Store,
    name: &str,
) -> Result<(Vec<(usize, &'a Phase)>, Vec<(usize, String)>), crate::Error> {
    let start = plan
        .phases
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| EngineError::UnknownPhase(name.to_string()))?;
    let completed = store.completed_phases(&plan.name, &plan.sha256).await?;
    let missing: Vec<String> = (0..start)
        .filter(|index| !completed.contains_key(index))
        .map(|index| format!("`{}`", plan.phases[index].name))
        .collect();
    if !missing.is_empty() {
        return Err(EngineError::EarlierPhasesNotCompleted {
            plan: plan.name.clone(),
            from: name.to_string(),
            them: if missing.len() == 1 { "it" } else { "them" },
            missing: missing.join(", "),
            sha_prefix: plan.sha256.chars().take(12).collect(),
        }
        .into());
    }
    let carried = (0..start)
        .map(|index| (index, completed[&index].clone()))
        .collect();
    Ok((
        plan.phases.iter().enumerate().skip(start).collect(),
        carried,
    ))
}

/// `cutover run PLAN [--dry-run] [--phase NAME | --from-phase NAME]`.
pub async fn run(
    plan: ValidatedPlan,
    store: Store,
    options: RunOptions,
) -> Result<RunReport, crate::Error> {
    let plan = Arc::new(plan);
    let (phases, carried) = match options.from_phase.as_deref() {
        Some(name) => phases_from(&plan, &store, name).await?,
        None => (selected_phases(&plan, options.phase.as_deref())?, vec![]),
    };
    let record = store.create_run(&plan, options.dry_run).await?;
    let run_id = record.run_id.clone();
    let lock = match store.acquire_plan_lock(&plan.name, &run_id).await {
        Ok(lock) => lock,
        Err(error) => {
            store
                .finish_run(&run_id, RunStatus::Refused, Some(&error.to_string()))
                .await?;
            return Err(error.into());
        }
    };
    for (index, completed_in) in &carried {
        store
            .set_phase_completed_in(&run_id, *index, completed_in)
            .await?;
    }
    let result = run_locked(&plan, &store, &run_id, &phases, &options).await;
    release(&store, lock).await;
    result
}

async fn release(store: &Store, lock: PlanLock) {
    if let Err(error) = store.release_plan_lock(lock).await {
        tracing::warn!("could not release the plan lock: {error}");
    }
}

async fn run_locked(
    plan: &Arc<ValidatedPlan>,
    store: &Store,
    run_id: &str,
    phases: &[(usize, &Phase)],
    options: &RunOptions,
) -> Result<RunReport, crate::Error> {
    let started = Instant::now();
    tracing::info!(
        "run {run_id}: prechecks on {} cluster(s)",
        plan.enabled_clusters().count()
    );
    let phase_refs: Vec<&Phase> = phases.iter().map(|(_, phase)| *phase).collect();
    let schedule = deferral::schedule(plan, phases);
    let checks = prechecks::run(plan, &phase_refs, &Scope::before_run(plan, &schedule)).await?;
    let failed: Vec<&Precheck> = checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .collect();
    store
        .record_event(
            run_id,
            EventKind::Observation,
            None,
            None,
            None,
            Some(&serde_json::to_value(&checks).unwrap_or_default()),
            Some("prechecks"),
        )
        .await?;
    let mut state = Context::initial_state(plan);
    if options.dry_run {
        let operations = report::operations(plan, phases, &checks).await;
        let outcome = if failed.is_empty() {
            Outcome::Completed
        } else {
            Outcome::Refused(refusal(&failed))
        };
        let mut report = finish(
            store, run_id, plan, outcome, checks, operations, None, false, &state, started,
        )
        .await?;
        report.deferred = schedule.deferred;
        return Ok(report);
    }
    if !failed.is_empty() {
        let outcome = Outcome::Refused(refusal(&failed));
        // Phases carried from earlier runs stay as recorded.
        return finish(
            store,
            run_id,
            plan,
            outcome,
            checks,
            vec![],
            None,
            false,
            &state,
            started,
        )
        .await;
    }
    // Phases left out with --phase stay out, also for `resume`.
    let carried: Vec<usize> = store
        .run(run_id)
        .await?
        .phases
        .iter()
        .enumerate()
        .filter(|(_, phase)| phase.completed_in.is_some())
        .map(|(index, _)| index)
        .collect();
    for (index, _) in plan.phases.iter().enumerate() {
        if !phases.iter().any(|(selected, _)| *selected == index) && !carried.contains(&index) {
            store
                .set_phase_status(run_id, index, StepStatus::Skipped)
                .await?;
        }
    }
    let mut ctx = Context::new(
        plan.clone(),
        store.clone(),
        run_id.to_string(),
        options.yes,
        state.clone(),
    )?;
    let mut phase_starts = PhaseStartChecks::new(schedule.phase_starts.clone());
    let outcome = execute(&mut ctx, phases, None, &mut phase_starts).await;
    state = ctx.state.clone();
    let freeze = ctx.write_freeze_ms;
    let data_mismatch = ctx.data_mismatch;
    let sessions_ended = std::mem::take(&mut ctx.sessions_ended);
    let links = std::mem::take(&mut ctx.replication_links);
    ctx.drop_sessions().await;
    let mut checks = checks;
    checks.extend(phase_starts.ran);
    let mut report = finish(
        store,
        run_id,
        plan,
        outcome,
        checks,
        vec![],
        freeze,
        data_mismatch,
        &state,
        started,
    )
    .await?;
    report.deferred = schedule.deferred;
    report.sessions_ended = sessions_ended;
    report.replication_links = links;
    Ok(report)
}

fn refusal(failed: &[&Precheck]) -> String {
    format!(
        "precheck refused: {}",
        failed
            .iter()
            .map(|c| format!("{} {}: {}", c.cluster, c.check, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    store: &Store,
    run_id: &str,
    plan: &ValidatedPlan,
    outcome: Outcome,
    prechecks: Vec<Precheck>,
    operations: Vec<Operation>,
    write_freeze_ms: Option<u64>,
    data_mismatch: bool,
    state: &SwitchState,
    started: Instant,
) -> Result<RunReport, crate::Error> {
    let (status, detail, next) = match &outcome {
        Outcome::Completed => (RunStatus::Completed, None, None),
        Outcome::Refused(reason) => (RunStatus::Refused, Some(reason.clone()), None),
        Outcome::RolledBack(reason) => (RunStatus::RolledBack, Some(reason.clone()), None),
        Outcome::Failed { reason, next } => {
            (RunStatus::Failed, Some(reason.clone()), Some(next.clone()))
        }
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

/// Run phases from `start` (phase index, step index) or from their beginning.
async fn execute(
    ctx: &mut Context,
    phases: &[(usize, &Phase)],
    start: Option<(usize, usize)>,
    phase_starts: &mut PhaseStartChecks,
) -> Outcome {
    for (phase_index, phase) in phases {
        let first_step = match start {
            Some((p, s)) if p == *phase_index => s,
            Some((p, _)) if p > *phase_index => continue,
            _ => 0,
        };
        if first_step == 0
            && let Err(reason) = phase_starts.check(ctx, *phase_index, phase).await
        {
            tracing::error!("{reason}");
            if let Err(error) = ctx
                .store
                .set_phase_status(&ctx.run_id, *phase_index, StepStatus::Refused)
                .await
            {
                return store_failure(ctx, error);
            }
            return Outcome::Refused(reason);
        }
        if let Err(error) = ctx
            .store
            .set_phase_status(&ctx.run_id, *phase_index, StepStatus::Running)
            .await
        {
            return store_failure(ctx, error);
        }
        tracing::info!("phase `{}` ({} step(s))", phase.name, phase.steps.len());
        for (step_index, step) in phase.steps.iter().enumerate().skip(first_step) {
            recovery::step_starting();
            ctx.phase = phase.name.clone();
            ctx.step = step.name.clone();
            let result = run_step(ctx, *phase_index, step_index, step).await;
            // Only the interrupted step continues; every later one starts afresh.
            ctx.resuming = false;
            match result {
                Ok(()) => {}
                Err(StepFailure::Store(error)) => return store_failure(ctx, error),
                Err(StepFailure::Step(error)) => {
                    let reason = format!(
                        "step `{}/{}` ({}): {error}",
                        phase.name,
                        step.name,
                        step.kind.kind_name()
                    );
                    tracing::error!("{reason}");
                    ctx.drop_sessions().await;
                    return after_failure(ctx, *phase_index, phase, reason, error.is_refusal())
                        .await;
                }
            }
        }
        if let Err(error) = ctx
            .store
            .set_phase_status(&ctx.run_id, *phase_index, StepStatus::Completed)
            .await
        {
            return store_failure(ctx, error);
        }
    }
    Outcome::Completed
}

fn store_failure(ctx: &Context, error: StoreError) -> Outcome {
    Outcome::Failed {
        reason: format!("the state store failed, so the journal is incomplete: {error}"),
        next: format!(
            "cutover status {}   # then resume or roll back once the store is writable",
            ctx.run_id
        ),
    }
}

enum StepFailure {
    Step(StepError),
    Store(StoreError),
}

/// Journal intent, act, journal the result.
async fn run_step(
    ctx: &mut Context,
    phase_index: usize,
    step_index: usize,
    step: &Step,
) -> Result<(), StepFailure> {
    let description = steps::describe(&ctx.plan, &ctx.state, &step.kind);
    let intent = json!({ "state": ctx.state });
    ctx.store
        .record_event(
            &ctx.run_id,
            EventKind::Intent,
            Some(&ctx.phase),
            Some(&step.name),
            Some(&description.cluster),
            Some(&intent),
            Some(&description.action),
        )
        .await
        .map_err(StepFailure::Store)?;
    ctx.store
        .set_step_status(
            &ctx.run_id,
            phase_index,
            step_index,
            &StepUpdate::status(StepStatus::Running),
        )
        .await
        .map_err(StepFailure::Store)?;
    tracing::info!(
        "▶ {}/{} ({}): {}",
        ctx.phase,
        step.name,
        step.kind.kind_name(),
        description.action
    );
    let started = Instant::now();
    let result = steps::act(ctx, &step.kind).await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(mut observed) => {
            observed["state"] = json!(ctx.state);
            ctx.store
                .set_step_status(
                    &ctx.run_id,
                    phase_index,
                    step_index,
                    &StepUpdate {
                        status: StepStatus::Completed,
                        elapsed_ms: Some(elapsed_ms),
                        positions: Some(observed.clone()),
                        detail: None,
                    },
                )
                .await
                .map_err(StepFailure::Store)?;
            ctx.store
                .record_event(
                    &ctx.run_id,
                    EventKind::Result,
                    Some(&ctx.phase),
                    Some(&step.name),
                    Some(&description.cluster),
                    Some(&observed),
                    Some("ok"),
                )
                .await
                .map_err(StepFailure::Store)?;
            tracing::info!("✓ {}/{} {elapsed_ms} ms", ctx.phase, step.name);
            Ok(())
        }
        Err(error) => {
            let detail = error.to_string();
            let _ = ctx
                .store
                .set_step_status(
                    &ctx.run_id,
                    phase_index,
                    step_index,
                    &StepUpdate {
                        status: StepStatus::Failed,
                        elapsed_ms: Some(elapsed_ms),
                        positions: Some(json!({ "state": ctx.state })),
                        detail: Some(detail.clone()),
                    },
                )
                .await;
            let _ = ctx
                .store
                .record_event(
                    &ctx.run_id,
                    EventKind::Result,
                    Some(&ctx.phase),
                    Some(&step.name),
                    Some(&description.cluster),
                    Some(&json!({ "state": ctx.state })),
                    Some(&detail),
                )
                .await;
            Err(StepFailure::Step(error))
        }
    }
}

/// A step failed: an automatic phase is undone; a manual one is left for the
/// operator, except that a freeze short of promotion is always released.
async fn after_failure(
    ctx: &mut Context,
    phase_index: usize,
    phase: &Phase,
    reason: String,
    refusal: bool,
) -> Outcome {
    let record = match ctx.store.run(&ctx.run_id).await {
        Ok(record) => record,
        Err(error) => return store_failure(ctx, error),
    };
    let completed = completed_steps(&record, phase_index, phase);
    let changed_something = completed.iter().any(|(_, step, _)| step.kind.is_mutating());
    if phase.rollback == RollbackMode::Auto {
        tracing::warn!(
            "phase `{}` is `rollback: auto`: undoing {} completed step(s)",
            phase.name,
            completed.len()
        );
        match undo_phase(ctx, phase_index, phase, &completed).await {
            Ok(()) => {
                let _ = ctx
                    .store
                    .set_phase_status(&ctx.run_id, phase_index, StepStatus::RolledBack)
                    .await;
                if refusal || !changed_something {
                    Outcome::RolledBack(reason)
                } else {
                    Outcome::RolledBack(format!("{reason} (the phase was rolled back)"))
                }
            }
            Err(undo_error) => {
                let _ = ctx
                    .store
                    .set_phase_status(&ctx.run_id, phase_index, StepStatus::Failed)
                    .await;
                Outcome::Failed {
                    reason: format!(
                        "{reason}; rolling the phase back also failed: {undo_error}. Primary now: `{}`, DNS points at `{}`",
                        ctx.state.primary, ctx.state.dns_points_to
                    ),
                    next: format!(
                        "cutover status {id}; then cutover rollback {id} (or cutover resume {id} once the cause is fixed)",
                        id = ctx.run_id
                    ),
                }
            }
        }
    } else {
        // The freeze budget is a safety rule, not a rollback choice.
        if let Some(cluster) = ctx.fence.as_ref().map(|fence| fence.cluster.clone()) {
            let _ = steps::freeze::undo(ctx, &cluster).await;
        }
        let _ = ctx
            .store
            .set_phase_status(&ctx.run_id, phase_index, StepStatus::Failed)
            .await;
        if refusal && !changed_something {
            Outcome::Refused(reason)
        } else {
            Outcome::Failed {
                reason: format!(
                    "{reason}. Phase `{}` is `rollback: manual`; primary now: `{}`, DNS points at `{}`",
                    phase.name, ctx.state.primary, ctx.state.dns_points_to
                ),
                next: format!(
                    "cutover resume {id}   # retry from the failed step, or: cutover rollback {id}",
                    id = ctx.run_id
                ),
            }
        }
    }
}

/// The completed steps of one phase with what they journaled, in plan order.
fn completed_steps<'a>(
    record: &RunRecord,
    phase_index: usize,
    phase: &'a Phase,
) -> Vec<(usize, &'a Step, serde_json::Value)> {
    let Some(journaled) = record.phases.get(phase_index) else {
        return vec![];
    };
    phase
        .steps
        .iter()
        .enumerate()
        .filter_map(|(index, step)| {
            let entry = journaled.steps.get(index)?;
            (entry.status == StepStatus::Completed).then(|| {
                (
                    index,
                    step,
                    entry.positions.clone().unwrap_or(serde_json::Value::Null),
                )
            })
        })
        .collect()
}

/// Undo a phase's completed steps in reverse. Once writes resumed on a newly
/// promoted primary, undoing means a reverse switchover instead.
async fn undo_phase(
    ctx: &mut Context,
    phase_index: usize,
    phase: &Phase,
    completed: &[(usize, &Step, serde_json::Value)],
) -> Result<(), StepError> {
    let promoted = completed
        .iter()
        .any(|(_, step, _)| matches!(step.kind, StepKind::Promote { .. }));
    let writes_resumed = promoted
        && completed
            .iter()
            .any(|(_, step, _)| matches!(step.kind, StepKind::Unfreeze));
    if writes_resumed {
        if let Some(previous) = ctx.state.previous_primary.clone() {
            reverse_switchover(ctx, &previous).await?;
        }
        for (index, step, _) in completed.iter().rev() {
            mark_rolled_back(
                ctx,
                phase_index,
                *index,
                step,
                "undone by the reverse switchover",
            )
            .await;
        }
        return Ok(());
    }
    for (index, step, observed) in completed.iter().rev() {
        ctx.step = step.name.clone();
        tracing::info!(
            "↶ undo {}/{} ({})",
            phase.name,
            step.name,
            step.kind.kind_name()
        );
        let result = steps::undo(ctx, &step.kind, observed).await;
        if let Err(error) = result {
            ctx.drop_sessions().await;
            let _ = ctx
                .store
                .record_event(
                    &ctx.run_id,
                    EventKind::Rollback,
                    Some(&phase.name),
                    Some(&step.name),
                    None,
                    Some(&json!({ "state": ctx.state })),
                    Some(&format!("undo failed: {error}")),
                )
                .await;
            return Err(error);
        }
        mark_rolled_back(ctx, phase_index, *index, step, "undone").await;
    }
    // Whatever happened, no fence outlives the rollback.
    if let Some(fence) = ctx.fence.take() {
        fence.release().await;
    }
    Ok(())
}

async fn mark_rolled_back(
    ctx: &Context,
    phase_index: usize,
    step_index: usize,
    step: &Step,
    message: &str,
) {
    let _ = ctx
        .store
        .set_step_status(
            &ctx.run_id,
            phase_index,
            step_index,
            &StepUpdate::status(StepStatus::RolledBack),
        )
        .await;
    let _ = ctx
        .store
        .record_event(
            &ctx.run_id,
            EventKind::Rollback,
            Some(&ctx.phase),
            Some(&step.name),
            None,
            Some(&json!({ "state": ctx.state })),
            Some(message),
        )
        .await;
}

/// Switch back to `back_to` the way the switchover came: freeze the current
/// primary, let `back_to` catch up through reverse replication, promote it,
/// switch DNS back, resume writes, then re-point everyone under it.
pub async fn reverse_switchover(ctx: &mut Context, back_to: &str) -> Result<(), StepError> {
    switchover(ctx, back_to, "rollback").await
}

/// A switchover from the current primary to `back_to`, as its own sequence of
/// steps journaled under `{label}-to-{back_to}.{kind}` (a rollback's reverse
/// switchover, a drill's planned failover or its switch back).
pub async fn switchover(ctx: &mut Context, back_to: &str, label: &str) -> Result<(), StepError> {
    let Some(sequence) = switchover_sequence(ctx, back_to, label).await else {
        return Ok(());
    };
    let current = match &ctx.state.previous_primary {
        Some(previous) if ctx.state.primary == back_to => previous.clone(),
        _ => ctx.state.primary.clone(),
    };
    tracing::info!("{label} switchover: `{current}` → `{back_to}`");
    let phase = ctx.phase.clone();
    for kind in sequence {
        recovery::step_starting();
        let name = format!("{label}-to-{back_to}.{}", kind.kind_name());
        ctx.step = name.clone();
        let description = steps::describe(&ctx.plan, &ctx.state, &kind);
        let _ = ctx
            .store
            .record_event(
                &ctx.run_id,
                EventKind::Rollback,
                Some(&phase),
                Some(&name),
                Some(&description.cluster),
                Some(&json!({ "state": ctx.state })),
                Some(&format!("intent: {}", description.action)),
            )
            .await;
        tracing::info!("▶ {name}: {}", description.action);
        let started = Instant::now();
        match steps::act(ctx, &kind).await {
            Ok(mut observed) => {
                observed["state"] = json!(ctx.state);
                let _ = ctx
                    .store
                    .record_event(
                        &ctx.run_id,
                        EventKind::Rollback,
                        Some(&phase),
                        Some(&name),
                        Some(&description.cluster),
                        Some(&observed),
                        Some("ok"),
                    )
                    .await;
                tracing::info!("✓ {name} {} ms", started.elapsed().as_millis());
            }
            Err(error) => {
                ctx.drop_sessions().await;
                // Short of promotion the current primary simply keeps its role.
                if ctx.state.primary == current
                    && let Some(fence) = ctx.fence.take()
                {
                    fence.release().await;
                }
                let _ = ctx
                    .store
                    .record_event(
                        &ctx.run_id,
                        EventKind::Rollback,
                        Some(&phase),
                        Some(&name),
                        None,
                        Some(&json!({ "state": ctx.state })),
                        Some(&format!("failed: {error}")),
                    )
                    .await;
                return Err(error);
            }
        }
    }
    Ok(())
}

/// The steps that take the primary role to `back_to` from the state the
/// context holds (journaled, then checked against the live servers). Before
/// the promotion: the whole way (every step is safe to repeat). After it (an
/// earlier attempt died past its promote): only what is left, so a crashed
/// rollback finishes instead of switching back again. `None`: nothing to do.
async fn switchover_sequence(ctx: &Context, back_to: &str, label: &str) -> Option<Vec<StepKind>> {
    let gates = ctx.plan.gates.clone();
    let promoted_already = ctx.state.primary == back_to;
    let leaving = if promoted_already {
        ctx.state
            .previous_primary
            .clone()
            .filter(|previous| previous != back_to)?
    } else {
        ctx.state.primary.clone()
    };
    let others: Vec<String> = ctx
        .plan
        .enabled_clusters()
        .map(|c| c.name.clone())
        .filter(|name| *name != leaving && name != back_to)
        .collect();
    let mut sequence = Vec::new();
    if !promoted_already {
        sequence.extend([
            StepKind::ReverseReplication {
                from: leaving.clone(),
                cluster: back_to.to_string(),
            },
            StepKind::Freeze {
                cluster: leaving.clone(),
                drain_timeout: gates.drain_timeout,
                budget: gates.freeze_budget,
            },
            StepKind::CatchUp {
                targets: vec![back_to.to_string()],
                timeout: gates.freeze_budget,
            },
            StepKind::Promote {
                cluster: back_to.to_string(),
            },
        ]);
    }
    let dns_pending = ctx.plan.dns.is_some() && ctx.state.dns_points_to != back_to;
    if dns_pending {
        sequence.push(StepKind::DnsSwitch {
            to: back_to.to_string(),
            wait_ttl: false,
            verify_timeout: gates.dns_verify_timeout,
        });
    }
    // Ending the old primary's sessions again after a finished switchover
    // would cut its readers for nothing: only when the unfreeze never ran.
    if !promoted_already
        || dns_pending
        || !journaled_ok(ctx, &format!("{label}-to-{back_to}.unfreeze")).await
    {
        sequence.push(StepKind::Unfreeze);
    }
    sequence.push(StepKind::ReverseReplication {
        from: back_to.to_string(),
        cluster: leaving.clone(),
    });
    if !others.is_empty() {
        sequence.push(StepKind::Repoint {
            to: back_to.to_string(),
            clusters: others,
        });
    }
    Some(sequence)
}

/// Whether a rollback step of this name journaled success in this run.
async fn journaled_ok(ctx: &Context, step: &str) -> bool {
    ctx.store.events(&ctx.run_id).await.is_ok_and(|events| {
        events.iter().any(|event| {
            event["kind"] == EventKind::Rollback.as_str()
                && event["step"] == step
                && event["message"] == "ok"
        })
    })
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

/// `cutover resume RUN_ID`: finish an interrupted run past its point of no
/// return, or roll back the interrupted phase if it never got there.
pub async fn resume(
    plan: ValidatedPlan,
    store: Store,
    run_id: &str,
    yes: bool,
) -> Result<RunReport, crate::Error> {
    let record = store.run(run_id).await?;
    check_same_plan(&record, &plan)?;
    if record.status != RunStatus::RolledBack
        && let Some(phase) = recovery::unfinished_rollback(&store, run_id).await?
    {
        tracing::info!("run {run_id} was being rolled back: finishing the rollback");
        return rollback(plan, store, run_id, Some(&phase), yes).await;
    }
    if matches!(
        record.status,
        RunStatus::Completed | RunStatus::RolledBack | RunStatus::Refused
    ) {
        return Err(EngineError::NothingToDo {
            run_id: run_id.into(),
            status: record.status.to_string(),
            action: "resume".into(),
        }
        .into());
    }
    let lock = store.acquire_plan_lock(&plan.name, run_id).await?;
    store.adopt_run(run_id).await?;
    let plan = Arc::new(plan);
    let started = Instant::now();
    let state = journaled_state(&record, &plan);
    let Some((phase_index, step_index)) = first_unfinished(&record) else {
        release(&store, lock).await;
        store.finish_run(run_id, RunStatus::Completed, None).await?;
        let record = store.run(run_id).await?;
        return Ok(RunReport::new(
            &record,
            &plan,
            None,
            None,
            vec![],
            vec![],
            None,
            false,
            &state,
            started.elapsed(),
        ));
    };
    let mut ctx = Context::new(plan.clone(), store.clone(), run_id.to_string(), yes, state)?;
    let phase = &plan.phases[phase_index];
    let continuable = phase.steps[..=step_index]
        .iter()
        .all(|step| step.kind.continues_after_interruption());
    // Past the point of no return the run is finished; before it, a phase
    // interrupted in a step that carries on is continued from its journal.
    let continues = continuable && !record.point_of_no_return;
    let outcome = if continues || record.point_of_no_return {
        let (why, note) = if continues {
            (
                "was interrupted in a step that continues from its journal",
                "resume: continuing the interrupted step from its journal",
            )
        } else {
            (
                "passed its point of no return",
                "resume: past the point of no return, finishing the run",
            )
        };
        tracing::info!(
            "run {run_id} {why}: finishing it from `{}/{}`",
            phase.name,
            phase.steps[step_index].name
        );
        let _ = store
            .record_event(
                run_id,
                EventKind::Note,
                Some(&phase.name),
                None,
                None,
                None,
                Some(note),
            )
            .await;
        ctx.resuming = continues;
        let phases = remaining_phases(&plan, &record, phase_index);
        let all_phases = remaining_phases(&plan, &record, 0);
        let mut phase_starts =
            PhaseStartChecks::new(deferral::schedule(&plan, &all_phases).phase_starts);
        execute(
            &mut ctx,
            &phases,
            Some((phase_index, step_index)),
            &mut phase_starts,
        )
        .await
    } else {
        tracing::info!(
            "run {run_id} stopped before its point of no return: rolling back phase `{}`",
            phase.name
        );
        let _ = store
            .record_event(
                run_id,
                EventKind::Note,
                Some(&phase.name),
                None,
                None,
                None,
                Some("resume: before the point of no return, rolling the interrupted phase back"),
            )
            .await;
        ctx.phase = phase.name.clone();
        let completed = completed_steps(&record, phase_index, phase);
        match undo_phase(&mut ctx, phase_index, phase, &completed).await {
            Ok(()) => {
                let _ = store
                    .set_phase_status(run_id, phase_index, StepStatus::RolledBack)
                    .await;
                Outcome::RolledBack(format!(
                    "the run was interrupted in phase `{}` before the point of no return; that phase was rolled back (start again with `cutover run`)",
                    phase.name
                ))
            }
            Err(error) => Outcome::Failed {
                reason: format!(
                    "rolling back the interrupted phase `{}` failed: {error}",
                    phase.name
                ),
                next: format!(
                    "cutover status {run_id}; fix the cause, then cutover resume {run_id}"
                ),
            },
        }
    };
    conclude(ctx, &store, &plan, outcome, started, lock).await
}

/// The phases from `phase_index` on, without those the run left out (`--phase`).
fn remaining_phases<'a>(
    plan: &'a ValidatedPlan,
    record: &RunRecord,
    phase_index: usize,
) -> Vec<(usize, &'a Phase)> {
    plan.phases
        .iter()
        .enumerate()
        .skip(phase_index)
        .filter(|(index, _)| {
            record
                .phases
                .get(*index)
                .is_none_or(|p| p.status != StepStatus::Skipped)
        })
        .collect()
}

/// End a resume or rollback: close connections, record the outcome, free the plan.
async fn conclude(
    mut ctx: Context,
    store: &Store,
    plan: &ValidatedPlan,
    outcome: Outcome,
    started: Instant,
    lock: PlanLock,
) -> Result<RunReport, crate::Error> {
    let state = ctx.state.clone();
    let freeze = ctx.write_freeze_ms;
    let data_mismatch = ctx.data_mismatch;
    let sessions_ended = std::mem::take(&mut ctx.sessions_ended);
    let links = std::mem::take(&mut ctx.replication_links);
    ctx.drop_sessions().await;
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

/// The first step that did not complete, phase by phase.
fn first_unfinished(record: &RunRecord) -> Option<(usize, usize)> {
    record.phases.iter().enumerate().find_map(|(p, phase)| {
        if matches!(phase.status, StepStatus::Completed | StepStatus::Skipped) {
            return None;
        }
        phase
            .steps
            .iter()
            .position(|step| step.status != StepStatus::Completed)
            .map(|s| (p, s))
    })
}

/// `cutover rollback RUN_ID [--to-phase NAME]`: undo completed phases, the
/// latest first, back to the start of `NAME` (default: the whole run).
pub async fn rollback(
    plan: ValidatedPlan,
    store: Store,
    run_id: &str,
    to_phase: Option<&str>,
    yes: bool,
) -> Result<RunReport, crate::Error> {
    let record = store.run(run_id).await?;
    check_same_plan(&record, &plan)?;
    if record.status == RunStatus::RolledBack {
        return Err(EngineError::NothingToDo {
            run_id: run_id.into(),
            status: record.status.to_string(),
            action: "roll back".into(),
        }
        .into());
    }
    let boundary = match to_phase {
        Some(name) => plan
            .phases
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| EngineError::UnknownPhase(name.to_string()))?,
        // Phases carried from earlier runs are undone only when named.
        None => record
            .phases
            .iter()
            .position(|phase| phase.completed_in.is_none())
            .unwrap_or(0),
    };
    // Each carried phase is rolled back in the run that completed it.
    let mut carried: HashMap<String, RunRecord> = HashMap::new();
    for phase in &record.phases[boundary.min(record.phases.len())..] {
        if let Some(other) = &phase.completed_in
            && !carried.contains_key(other)
        {
            let earlier = store.run(other).await?;
            check_same_plan(&earlier, &plan)?;
            carried.insert(other.clone(), earlier);
        }
    }
    let lock = store.acquire_plan_lock(&plan.name, run_id).await?;
    store.adopt_run(run_id).await?;
    let plan = Arc::new(plan);
    let started = Instant::now();
    let own_state = recovery::last_journaled_state(&store, run_id)
        .await?
        .or_else(|| journaled_state_if_any(&record));
    let state = own_state
        .or_else(|| {
            record
                .phases
                .iter()
                .rev()
                .filter_map(|phase| carried.get(phase.completed_in.as_ref()?))
                .find_map(journaled_state_if_any)
        })
        .unwrap_or_else(|| Context::initial_state(&plan));
    let mut ctx = Context::new(plan.clone(), store.clone(), run_id.to_string(), yes, state)?;
    // An earlier rollback may have died between an action and its journal entry.
    recovery::reconcile_with_live(&mut ctx).await;
    let _ = store
        .record_event(
            run_id,
            EventKind::Note,
            None,
            None,
            None,
            None,
            Some(&format!(
                "{}`{}`",
                recovery::ROLLBACK_NOTE,
                plan.phases[boundary].name
            )),
        )
        .await;
    let mut outcome = Outcome::RolledBack(format!(
        "rolled back to the start of phase `{}`",
        plan.phases[boundary].name
    ));
    for phase_index in (boundary..plan.phases.len()).rev() {
        let phase = &plan.phases[phase_index];
        ctx.phase = phase.name.clone();
        // A carried phase is journaled and marked in the run that completed it.
        let owner = record
            .phases
            .get(phase_index)
            .and_then(|p| p.completed_in.as_ref())
            .and_then(|other| carried.get(other))
            .unwrap_or(&record);
        ctx.run_id = owner.run_id.clone();
        if owner.run_id != run_id {
            tracing::info!(
                "phase `{}` was completed by run {}: rolling it back there",
                phase.name,
                owner.run_id
            );
        }
        let completed = completed_steps(owner, phase_index, phase);
        if completed.is_empty() {
            ctx.run_id = run_id.to_string();
            continue;
        }
        let promoted = completed
            .iter()
            .any(|(_, step, _)| matches!(step.kind, StepKind::Promote { .. }));
        // Back to whoever was primary when the phase began (not "the previous
        // primary": after a crashed rollback that is the cluster we left).
        let back_to = match recovery::phase_start_primary(&store, &owner.run_id, &phase.name).await
        {
            Ok(Some(primary)) => Some(primary),
            _ => ctx.state.previous_primary.clone(),
        };
        let result = if let (true, Some(back_to)) = (promoted, back_to) {
            // A completed (or partly completed, or partly undone) switchover:
            // the reverse switchover finishes whatever is left of the way back.
            let result = reverse_switchover(&mut ctx, &back_to).await;
            if result.is_ok() {
                for (index, step, _) in completed.iter().rev() {
                    mark_rolled_back(
                        &ctx,
                        phase_index,
                        *index,
                        step,
                        "undone by the reverse switchover",
                    )
                    .await;
                }
            }
            result
        } else {
            undo_phase(&mut ctx, phase_index, phase, &completed).await
        };
        let phase_run = std::mem::replace(&mut ctx.run_id, run_id.to_string());
        match result {
            Ok(()) => {
                let _ = store
                    .set_phase_status(&phase_run, phase_index, StepStatus::RolledBack)
                    .await;
            }
            Err(error) => {
                outcome = Outcome::Failed {
                    reason: format!(
                        "rolling back phase `{}` failed: {error}. Primary now: `{}`, DNS points at `{}`",
                        phase.name, ctx.state.primary, ctx.state.dns_points_to
                    ),
                    next: format!(
                        "cutover status {run_id}; fix the cause, then cutover rollback {run_id}"
                    ),
                };
                break;
            }
        }
    }
    conclude(ctx, &store, &plan, outcome, started, lock).await
}
