//! `cutover resume RUN_ID`: finish an interrupted run past its point of no
//! return, continue a step that carries on, or roll the interrupted phase back.

use std::sync::Arc;
use std::time::Instant;

use super::decide::{ResumeAction, TakeUp, resume_action};
use super::failure::{completed_steps, undo_phase};
use super::phase_start::PhaseStartChecks;
use super::report::RunReport;
use super::run::execute;
use super::*;
use crate::plan::{Phase, ValidatedPlan};
use crate::steps::context::Context;
use crate::store::{Event, EventKind, RunRecord, RunStatus, StepStatus, Store, best_effort};

/// `cutover resume RUN_ID`: finish an interrupted run past its point of no
/// return, or roll back the interrupted phase if it never got there.
pub async fn resume(
    plan: ValidatedPlan,
    store: Store,
    run_id: &str,
    yes: bool,
) -> Result<RunReport, EngineError> {
    let record = store.run(run_id).await?;
    check_same_plan(&record, &plan)?;
    let unfinished = recovery::unfinished_rollback(&store, run_id).await?;
    let (phase_index, step_index, how) = match resume_action(&record, &plan, unfinished) {
        ResumeAction::FinishRollback(phase) => {
            tracing::info!("run {run_id} was being rolled back: finishing the rollback");
            return rollback(plan, store, run_id, Some(&phase), yes).await;
        }
        ResumeAction::NothingToDo => {
            return Err(EngineError::NothingToDo {
                run_id: run_id.into(),
                status: record.status.to_string(),
                action: "resume".into(),
            });
        }
        ResumeAction::ConfirmFinished => return confirm_finished(plan, store, &record).await,
        ResumeAction::TakeUp { phase, step, how } => (phase, step, how),
    };
    let lock = store.acquire_plan_lock(&plan.name, run_id).await?;
    let store = store.fenced_by(&lock);
    store.adopt_run(run_id).await?;
    let plan = Arc::new(plan);
    let started = Instant::now();
    let state = journaled_state(&record, &plan);
    let mut ctx = Context::new(plan.clone(), store.clone(), run_id.to_string(), yes, state)?;
    ctx.hold_lease(&lock);
    let phase = &plan.phases[phase_index];
    let outcome = if how != TakeUp::RollBackPhase {
        let continues = how == TakeUp::FromJournal;
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
        store
            .record_best_effort(
                run_id,
                Event::new(EventKind::Note).phase(&phase.name).message(note),
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
        store
            .record_best_effort(
                run_id,
                Event::new(EventKind::Note).phase(&phase.name).message(
                    "resume: before the point of no return, rolling the interrupted phase back",
                ),
            )
            .await;
        ctx.phase = phase.name.clone();
        let completed = completed_steps(&record, phase_index, phase);
        match undo_phase(&mut ctx, phase_index, phase, &completed).await {
            Ok(()) => {
                best_effort(
                    store
                        .set_phase_status(run_id, phase_index, StepStatus::RolledBack)
                        .await,
                    "the phase status",
                );
                Ending::RolledBack(format!(
                    "the run was interrupted in phase `{}` before the point of no return; that phase was rolled back (start again with `cutover run`)",
                    phase.name
                ))
            }
            Err(error) => Ending::Failed {
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

/// Every step completed before the crash: close the run, but only once the
/// servers agree with its journal.
async fn confirm_finished(
    plan: ValidatedPlan,
    store: Store,
    record: &RunRecord,
) -> Result<RunReport, EngineError> {
    let run_id = record.run_id.as_str();
    let lock = store.acquire_plan_lock(&plan.name, run_id).await?;
    let store = store.fenced_by(&lock);
    store.adopt_run(run_id).await?;
    let started = Instant::now();
    let journal = match recovery::last_journaled_state(&store, run_id).await? {
        Some(state) => state,
        None => journaled_state(record, &plan),
    };
    let checked = match recovery::check_live(&plan, &journal).await {
        Ok(checked) => checked,
        Err(differences) => {
            release(&store, lock).await;
            return Err(EngineError::JournalDisagrees {
                run_id: run_id.into(),
                journal: format!(
                    "primary `{}`, DNS → `{}`",
                    journal.primary, journal.dns_points_to
                ),
                live: differences.join("; "),
            });
        }
    };
    let finished = store.finish_run(run_id, RunStatus::Completed, None).await;
    release(&store, lock).await;
    finished?;
    let record = store.run(run_id).await?;
    Ok(RunReport::new(
        &record,
        &plan,
        Some(checked),
        None,
        vec![],
        vec![],
        None,
        false,
        &journal,
        started.elapsed(),
    ))
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
