//! What happens when a step fails: an automatic phase is undone step by step
//! (or by a reverse switchover once writes resumed); a manual one waits.

use serde_json::json;

use super::decide::{FailureEnd, UndoStrategy, failure_end, undo_strategy};
use super::*;
use crate::plan::{Phase, RollbackMode, Step};
use crate::steps::StepBehaviour;
use crate::steps::context::Context;
use crate::steps::{self, StepError};
use crate::store::{Event, EventKind, RunRecord, StepStatus, StepUpdate, best_effort};

/// A step failed: an automatic phase is undone; a manual one is left for the
/// operator, except that a freeze short of promotion is always released.
pub(super) async fn after_failure(
    ctx: &mut Context,
    phase_index: usize,
    phase: &Phase,
    reason: String,
    refusal: bool,
) -> Ending {
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
                best_effort(
                    ctx.store
                        .set_phase_status(&ctx.run_id, phase_index, StepStatus::RolledBack)
                        .await,
                    "the phase status",
                );
                let end = failure_end(phase.rollback, refusal, changed_something, true);
                if end == (FailureEnd::RolledBack { said: true }) {
                    Ending::RolledBack(format!("{reason} (the phase was rolled back)"))
                } else {
                    Ending::RolledBack(reason)
                }
            }
            Err(undo_error) => {
                best_effort(
                    ctx.store
                        .set_phase_status(&ctx.run_id, phase_index, StepStatus::Failed)
                        .await,
                    "the phase status",
                );
                Ending::Failed {
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
        if let Some(cluster) = ctx.fence.as_ref().map(|fence| fence.cluster.clone())
            && let Err(error) = steps::freeze::undo(ctx, &cluster).await
        {
            tracing::error!(
                "lifting the write freeze on `{cluster}` failed: {error}; it may still refuse writes (see `cutover topology PLAN`)"
            );
        }
        best_effort(
            ctx.store
                .set_phase_status(&ctx.run_id, phase_index, StepStatus::Failed)
                .await,
            "the phase status",
        );
        if failure_end(phase.rollback, refusal, changed_something, false) == FailureEnd::Refused {
            Ending::Refused(reason)
        } else {
            Ending::Failed {
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
pub(super) fn completed_steps<'a>(
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
pub(super) async fn undo_phase(
    ctx: &mut Context,
    phase_index: usize,
    phase: &Phase,
    completed: &[(usize, &Step, serde_json::Value)],
) -> Result<(), StepError> {
    let strategy = undo_strategy(completed.iter().map(|(_, step, _)| &step.kind));
    if strategy == UndoStrategy::ReverseSwitchover {
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
        let result = step.kind.undo(ctx, observed).await;
        if let Err(error) = result {
            ctx.drop_sessions().await;
            ctx.store
                .record_best_effort(
                    &ctx.run_id,
                    Event::new(EventKind::Rollback)
                        .phase(&phase.name)
                        .step(&step.name)
                        .positions(&json!({ "state": ctx.state }))
                        .message(&format!("undo failed: {error}")),
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

pub(super) async fn mark_rolled_back(
    ctx: &Context,
    phase_index: usize,
    step_index: usize,
    step: &Step,
    message: &str,
) {
    best_effort(
        ctx.store
            .set_step_status(
                &ctx.run_id,
                phase_index,
                step_index,
                &StepUpdate::status(StepStatus::RolledBack),
            )
            .await,
        "the step status",
    );
    ctx.store
        .record_best_effort(
            &ctx.run_id,
            Event::new(EventKind::Rollback)
                .phase(&ctx.phase)
                .step(&step.name)
                .positions(&json!({ "state": ctx.state }))
                .message(message),
        )
        .await;
}
