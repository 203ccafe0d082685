//! `cutover run`: prechecks (some deferred to the phase that needs them),
//! then the selected phases step by step, each journaled before and after it acts.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::failure::after_failure;
use super::phase_start::PhaseStartChecks;
use super::prechecks::{self, CheckStatus, Precheck, Scope};
use super::report::{self, RunReport};
use super::*;
use crate::plan::{Phase, Step, ValidatedPlan};
use crate::steps::StepBehaviour;
use crate::steps::StepError;
use crate::steps::context::Context;
use crate::store::{
    Event, EventKind, LeaseKeeper, RunStatus, StepStatus, StepUpdate, Store, StoreError,
    best_effort,
};

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
) -> Result<(Vec<(usize, &'a Phase)>, Vec<(usize, String)>), EngineError> {
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
        });
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
) -> Result<RunReport, EngineError> {
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
    let store = store.fenced_by(&lock);
    // Renewed from here on: the prechecks may take a while.
    let lease = LeaseKeeper::start(&store, &lock);
    for (index, completed_in) in &carried {
        store
            .set_phase_completed_in(&run_id, *index, completed_in)
            .await?;
    }
    let result = run_locked(&plan, &store, &lock, lease, &phases, &options).await;
    if !matches!(result, Err(EngineError::LeaseLost(_))) {
        release(&store, lock).await;
    }
    result
}

async fn run_locked(
    plan: &Arc<ValidatedPlan>,
    store: &Store,
    lock: &PlanLock,
    lease: LeaseKeeper,
    phases: &[(usize, &Phase)],
    options: &RunOptions,
) -> Result<RunReport, EngineError> {
    let run_id = lock.run_id.as_str();
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
        .record(
            run_id,
            Event::new(EventKind::Observation)
                .positions(&serde_json::to_value(&checks).unwrap_or_default())
                .message("prechecks"),
        )
        .await?;
    let mut state = Context::initial_state(plan);
    if options.dry_run {
        let operations = report::operations(plan, phases, &checks).await;
        let outcome = if failed.is_empty() {
            Ending::Completed
        } else {
            Ending::Refused(refusal(&failed))
        };
        let mut report = finish(
            store, run_id, plan, outcome, checks, operations, None, false, &state, started,
        )
        .await?;
        report.deferred = schedule.deferred;
        return Ok(report);
    }
    if !failed.is_empty() {
        let outcome = Ending::Refused(refusal(&failed));
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
    ctx.lease = Some(lease);
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

/// Run phases from `start` (phase index, step index) or from their beginning.
pub(super) async fn execute(
    ctx: &mut Context,
    phases: &[(usize, &Phase)],
    start: Option<(usize, usize)>,
    phase_starts: &mut PhaseStartChecks,
) -> Ending {
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
            return Ending::Refused(reason);
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
            if step.kind.is_mutating()
                && let Some(lease) = &ctx.lease
                && let Err(why) = lease
                    .check_before_step(step.kind.time_bound(&ctx.plan))
                    .await
            {
                return Ending::Deposed(why);
            }
            let result = run_step(ctx, *phase_index, step_index, step).await;
            // Only the interrupted step continues; every later one starts afresh.
            ctx.resuming = false;
            match result {
                Ok(()) => {}
                Err(StepFailure::Store(error)) => return store_failure(ctx, error),
                Err(StepFailure::Step(_)) if ctx.lease_lost().is_some() => {
                    return Ending::Deposed(ctx.lease_lost().unwrap_or_default());
                }
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
    // The test kill switch's "step after the last": every step done, the run not yet closed.
    recovery::step_starting();
    Ending::Completed
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
    let description = step.kind.describe(&ctx.plan, &ctx.state);
    let intent = json!({ "state": ctx.state });
    ctx.store
        .record(
            &ctx.run_id,
            Event::new(EventKind::Intent)
                .phase(&ctx.phase)
                .step(&step.name)
                .cluster(Some(&description.cluster))
                .positions(&intent)
                .message(&description.action),
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
    let result = step.kind.act(ctx).await;
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
                .record(
                    &ctx.run_id,
                    Event::new(EventKind::Result)
                        .phase(&ctx.phase)
                        .step(&step.name)
                        .cluster(Some(&description.cluster))
                        .positions(&observed)
                        .message("ok"),
                )
                .await
                .map_err(StepFailure::Store)?;
            tracing::info!("✓ {}/{} {elapsed_ms} ms", ctx.phase, step.name);
            Ok(())
        }
        Err(error) => {
            let detail = error.to_string();
            best_effort(
                ctx.store
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
                    .await,
                "the step status",
            );
            ctx.store
                .record_best_effort(
                    &ctx.run_id,
                    Event::new(EventKind::Result)
                        .phase(&ctx.phase)
                        .step(&step.name)
                        .cluster(Some(&description.cluster))
                        .positions(&json!({ "state": ctx.state }))
                        .message(&detail),
                )
                .await;
            Err(StepFailure::Step(error))
        }
    }
}
