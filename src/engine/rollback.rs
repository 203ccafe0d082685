//! `cutover rollback RUN_ID [--to-phase NAME]`: undo completed phases, the
//! latest first, reaching into earlier runs for phases carried from them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::failure::{completed_steps, mark_rolled_back, undo_phase};
use super::report::RunReport;
use super::*;
use crate::plan::{StepKind, ValidatedPlan};
use crate::steps::context::Context;
use crate::store::{Event, EventKind, RunRecord, RunStatus, StepStatus, Store, best_effort};

/// `cutover rollback RUN_ID [--to-phase NAME]`: undo completed phases, the
/// latest first, back to the start of `NAME` (default: the first phase this
/// run ran itself; a phase carried from an earlier run only when named).
pub async fn rollback(
    plan: ValidatedPlan,
    store: Store,
    run_id: &str,
    to_phase: Option<&str>,
    yes: bool,
) -> Result<RunReport, EngineError> {
    let record = store.run(run_id).await?;
    check_same_plan(&record, &plan)?;
    if record.status == RunStatus::RolledBack {
        return Err(EngineError::NothingToDo {
            run_id: run_id.into(),
            status: record.status.to_string(),
            action: "roll back".into(),
        });
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
    let store = store.fenced_by(&lock);
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
    ctx.hold_lease(&lock);
    // An earlier rollback may have died between an action and its journal entry.
    recovery::reconcile_with_live(&mut ctx).await;
    store
        .record_best_effort(
            run_id,
            Event::new(EventKind::Note).message(&format!(
                "{}`{}`",
                recovery::ROLLBACK_NOTE,
                plan.phases[boundary].name
            )),
        )
        .await;
    let mut outcome = Ending::RolledBack(format!(
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
            .any(|(_, step, _)| matches!(step.kind, StepKind::Promote(_)));
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
                best_effort(
                    store
                        .set_phase_status(&phase_run, phase_index, StepStatus::RolledBack)
                        .await,
                    "the phase status",
                );
            }
            Err(error) => {
                outcome = Ending::Failed {
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
