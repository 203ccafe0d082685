//! The engine's decisions, as pure functions of the plan and the journal:
//! what `resume` does with an interrupted run, how a failed phase is undone
//! and how it ends. The async code around them only gathers the inputs and
//! carries the decision out, so every branch is unit-tested here without a
//! server.

use crate::plan::{RollbackMode, StepKind, ValidatedPlan};
use crate::steps::StepBehaviour;
use crate::store::{RunRecord, RunStatus, StepStatus};

/// What `cutover resume` does with a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ResumeAction {
    /// A rollback of the run began and did not finish: finish it, back to
    /// the start of this phase.
    FinishRollback(String),
    /// The run already ended; there is nothing to resume.
    NothingToDo,
    /// Every step completed before the crash: confirm the servers agree with
    /// the journal, then close the run.
    ConfirmFinished,
    /// The run stopped in this step; take it up as `how` says.
    TakeUp {
        phase: usize,
        step: usize,
        how: TakeUp,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TakeUp {
    /// Past the point of no return: run on to the end.
    FinishRun,
    /// Before it, in a step that continues from its own journal: run on,
    /// that step resuming where it stopped.
    FromJournal,
    /// Before it, in a step that cannot be re-entered: undo the phase.
    RollBackPhase,
}

/// `unfinished_rollback`: the phase a rollback of this run was heading back
/// to, if one began and never finished (from the journal).
pub(super) fn resume_action(
    record: &RunRecord,
    plan: &ValidatedPlan,
    unfinished_rollback: Option<String>,
) -> ResumeAction {
    if record.status != RunStatus::RolledBack
        && let Some(phase) = unfinished_rollback
    {
        return ResumeAction::FinishRollback(phase);
    }
    if matches!(
        record.status,
        RunStatus::Completed | RunStatus::RolledBack | RunStatus::Refused
    ) {
        return ResumeAction::NothingToDo;
    }
    let Some((phase, step)) = first_unfinished(record) else {
        return ResumeAction::ConfirmFinished;
    };
    // A phase continues only if every step up to the interrupted one says so,
    // so no freeze or promotion is ever re-entered.
    let continuable = plan.phases[phase].steps[..=step]
        .iter()
        .all(|step| step.kind.continues_after_interruption());
    let how = if record.point_of_no_return {
        TakeUp::FinishRun
    } else if continuable {
        TakeUp::FromJournal
    } else {
        TakeUp::RollBackPhase
    };
    ResumeAction::TakeUp { phase, step, how }
}

/// The first step that did not complete, phase by phase.
pub(super) fn first_unfinished(record: &RunRecord) -> Option<(usize, usize)> {
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

/// How a phase's completed steps are undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UndoStrategy {
    /// Writes resumed on a promoted primary: only a reverse switchover puts
    /// them back without losing any (step-by-step inverses would discard them).
    ReverseSwitchover,
    /// Each completed step's inverse, latest first.
    StepByStep,
}

pub(super) fn undo_strategy<'a>(completed: impl IntoIterator<Item = &'a StepKind>) -> UndoStrategy {
    let (mut promoted, mut unfrozen) = (false, false);
    for kind in completed {
        promoted |= matches!(kind, StepKind::Promote(_));
        unfrozen |= matches!(kind, StepKind::Unfreeze(_));
    }
    if promoted && unfrozen {
        UndoStrategy::ReverseSwitchover
    } else {
        UndoStrategy::StepByStep
    }
}

/// How a phase ends after one of its steps failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureEnd {
    /// Undone cleanly. `said`: the report adds "the phase was rolled back"
    /// (when something had changed and the failure was not a refusal).
    RolledBack { said: bool },
    /// Refused before anything changed (a manual phase: nothing to undo).
    Refused,
    /// Left for the operator: a manual phase that changed something, or an
    /// automatic one whose undo failed.
    Failed,
}

/// `undone`: for an automatic phase, whether undoing it worked (ignored for a
/// manual one, which is never undone automatically).
pub(super) fn failure_end(
    mode: RollbackMode,
    refusal: bool,
    changed_something: bool,
    undone: bool,
) -> FailureEnd {
    match mode {
        RollbackMode::Auto if undone => FailureEnd::RolledBack {
            said: changed_something && !refusal,
        },
        RollbackMode::Auto => FailureEnd::Failed,
        RollbackMode::Manual if refusal && !changed_something => FailureEnd::Refused,
        RollbackMode::Manual => FailureEnd::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::kinds;
    use crate::store::{PhaseRecord, StepRecord};

    fn plan() -> ValidatedPlan {
        let text = include_str!("../../plans/lab-migration.yaml");
        crate::plan::load_str(std::path::Path::new("lab-migration.yaml"), text)
            .expect("the lab migration plan is valid")
    }

    /// A record of `plan` where every step before (phase, step) completed and
    /// the rest did not.
    fn interrupted_at(plan: &ValidatedPlan, at: (usize, usize), ponr: bool) -> RunRecord {
        let phases = plan
            .phases
            .iter()
            .enumerate()
            .map(|(p, phase)| {
                let steps: Vec<StepRecord> = phase
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(s, step)| StepRecord {
                        name: step.name.clone(),
                        kind: step.kind.kind_name().into(),
                        status: if (p, s) < at {
                            StepStatus::Completed
                        } else if (p, s) == at {
                            StepStatus::Running
                        } else {
                            StepStatus::Pending
                        },
                        elapsed_ms: None,
                        started_at: None,
                        ended_at: None,
                        positions: None,
                        detail: None,
                    })
                    .collect();
                PhaseRecord {
                    name: phase.name.clone(),
                    status: if p < at.0 {
                        StepStatus::Completed
                    } else {
                        StepStatus::Running
                    },
                    completed_in: None,
                    steps,
                }
            })
            .collect();
        RunRecord {
            run_id: "r".into(),
            plan: plan.name.clone(),
            plan_path: "p".into(),
            plan_sha256: "s".into(),
            status: RunStatus::Interrupted,
            dry_run: false,
            actor: "a".into(),
            started_at: "t".into(),
            ended_at: None,
            point_of_no_return: ponr,
            detail: None,
            phases,
        }
    }

    fn position_of(plan: &ValidatedPlan, kind: &str) -> (usize, usize) {
        plan.phases
            .iter()
            .enumerate()
            .find_map(|(p, phase)| {
                let s = phase
                    .steps
                    .iter()
                    .position(|s| s.kind.kind_name() == kind)?;
                Some((p, s))
            })
            .unwrap_or_else(|| panic!("the plan has a `{kind}` step"))
    }

    #[test]
    fn a_crash_in_the_snapshot_continues_it_from_its_journal() {
        let plan = plan();
        let at = position_of(&plan, "snapshot");
        let action = resume_action(&interrupted_at(&plan, at, false), &plan, None);
        assert_eq!(
            action,
            ResumeAction::TakeUp {
                phase: at.0,
                step: at.1,
                how: TakeUp::FromJournal
            }
        );
    }

    #[test]
    fn a_crash_after_the_freeze_before_promotion_rolls_the_phase_back() {
        let plan = plan();
        let (phase, freeze) = position_of(&plan, "freeze");
        let action = resume_action(
            &interrupted_at(&plan, (phase, freeze + 1), false),
            &plan,
            None,
        );
        assert_eq!(
            action,
            ResumeAction::TakeUp {
                phase,
                step: freeze + 1,
                how: TakeUp::RollBackPhase
            }
        );
    }

    #[test]
    fn past_the_point_of_no_return_the_run_is_finished_not_undone() {
        let plan = plan();
        let (phase, promote) = position_of(&plan, "promote");
        let action = resume_action(
            &interrupted_at(&plan, (phase, promote + 1), true),
            &plan,
            None,
        );
        assert_eq!(
            action,
            ResumeAction::TakeUp {
                phase,
                step: promote + 1,
                how: TakeUp::FinishRun
            }
        );
    }

    #[test]
    fn an_unfinished_rollback_is_finished_first_and_ended_runs_are_left_alone() {
        let plan = plan();
        let mut record = interrupted_at(&plan, (0, 0), false);
        assert_eq!(
            resume_action(&record, &plan, Some("cutover".into())),
            ResumeAction::FinishRollback("cutover".into())
        );
        for status in [
            RunStatus::Completed,
            RunStatus::RolledBack,
            RunStatus::Refused,
        ] {
            record.status = status;
            assert_eq!(
                resume_action(&record, &plan, None),
                ResumeAction::NothingToDo,
                "{status:?}"
            );
        }
        // A run already rolled back ignores a stale rollback note.
        record.status = RunStatus::RolledBack;
        assert_eq!(
            resume_action(&record, &plan, Some("cutover".into())),
            ResumeAction::NothingToDo
        );
    }

    #[test]
    fn a_crash_after_the_last_step_is_confirmed_against_the_servers() {
        let plan = plan();
        let mut record = interrupted_at(&plan, (plan.phases.len(), 0), true);
        record.status = RunStatus::Running;
        assert_eq!(
            resume_action(&record, &plan, None),
            ResumeAction::ConfirmFinished
        );
    }

    #[test]
    fn writes_resumed_on_a_promoted_primary_are_undone_by_a_reverse_switchover() {
        let promote = StepKind::Promote(kinds::Promote {
            cluster: "c1".into(),
        });
        let freeze = StepKind::Freeze(kinds::Freeze {
            cluster: "legacy".into(),
            drain_timeout: std::time::Duration::from_secs(1),
            budget: std::time::Duration::from_secs(3),
        });
        assert_eq!(
            undo_strategy([&freeze, &promote, &StepKind::Unfreeze(kinds::Unfreeze {})]),
            UndoStrategy::ReverseSwitchover
        );
        assert_eq!(undo_strategy([&freeze, &promote]), UndoStrategy::StepByStep);
        assert_eq!(
            undo_strategy([&freeze, &StepKind::Unfreeze(kinds::Unfreeze {})]),
            UndoStrategy::StepByStep
        );
    }

    #[test]
    fn a_failed_phase_ends_by_its_rollback_mode() {
        use RollbackMode::{Auto, Manual};
        assert_eq!(
            failure_end(Auto, false, true, true),
            FailureEnd::RolledBack { said: true }
        );
        assert_eq!(
            failure_end(Auto, true, true, true),
            FailureEnd::RolledBack { said: false }
        );
        assert_eq!(
            failure_end(Auto, false, false, true),
            FailureEnd::RolledBack { said: false }
        );
        assert_eq!(failure_end(Auto, false, true, false), FailureEnd::Failed);
        assert_eq!(failure_end(Manual, true, false, false), FailureEnd::Refused);
        assert_eq!(failure_end(Manual, true, true, false), FailureEnd::Failed);
        assert_eq!(failure_end(Manual, false, false, false), FailureEnd::Failed);
    }
}
