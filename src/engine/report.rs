//! The run report (DESIGN §3 `run` document) and the dry run's ordered
//! operations with live positions.

use std::time::Duration;

use serde::Serialize;

use super::deferral::DeferredCheck;
use super::prechecks::{CheckStatus, Precheck};
use crate::plan::{Phase, ValidatedPlan};
use crate::steps::StepBehaviour;
use crate::steps::context::{EndedSessions, SwitchState};
use crate::store::{RunRecord, RunStatus, StepStatus};

#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub phase: String,
    pub step: String,
    pub kind: String,
    pub cluster: String,
    pub action: String,
    /// Live facts it would start from (positions, the DNS record now).
    pub current: Option<String>,
    pub inverse: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub kind: String,
    pub status: StepStatus,
    pub elapsed_ms: Option<i64>,
    pub detail: Option<String>,
    /// Client sessions the step ended on a demoted primary (`unfreeze`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions_ended: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub status: StepStatus,
    /// The earlier run that completed this phase (a run started `--from-phase`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_in: Option<String>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub plan: String,
    pub status: RunStatus,
    pub dry_run: bool,
    pub phases: Vec<PhaseReport>,
    pub write_freeze_ms: Option<u64>,
    pub prechecks: Vec<Precheck>,
    /// Prechecks left to the start of the phase that needs them, because an
    /// earlier phase of the run makes what they check true.
    pub deferred: Vec<DeferredCheck>,
    pub operations: Vec<Operation>,
    /// Why it did not complete.
    pub detail: Option<String>,
    /// What to run next when the state needs an operator.
    pub next_command: Option<String>,
    /// Where things stand now.
    pub primary: String,
    pub dns_points_to: String,
    pub point_of_no_return: bool,
    /// A checksum step found rows or money totals that differ.
    pub data_mismatch: bool,
    /// Client sessions ended on demoted primaries (so pools follow the name).
    pub sessions_ended: Vec<EndedSessions>,
    /// Replication links the run started, as they were when proven running.
    pub replication_links: Vec<crate::mysql::link::LinkState>,
    pub elapsed_ms: u64,
}

impl RunReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        record: &RunRecord,
        plan: &ValidatedPlan,
        detail: Option<String>,
        next_command: Option<String>,
        prechecks: Vec<Precheck>,
        operations: Vec<Operation>,
        write_freeze_ms: Option<u64>,
        data_mismatch: bool,
        state: &SwitchState,
        elapsed: Duration,
    ) -> RunReport {
        RunReport {
            run_id: record.run_id.clone(),
            plan: plan.name.clone(),
            status: record.status,
            dry_run: record.dry_run,
            phases: record
                .phases
                .iter()
                .map(|phase| PhaseReport {
                    name: phase.name.clone(),
                    status: phase.status,
                    completed_in: phase.completed_in.clone(),
                    steps: phase
                        .steps
                        .iter()
                        .map(|step| StepReport {
                            name: step.name.clone(),
                            kind: step.kind.clone(),
                            status: step.status,
                            elapsed_ms: step.elapsed_ms,
                            detail: step.detail.clone(),
                            sessions_ended: step
                                .positions
                                .as_ref()
                                .and_then(|p| p.get("sessions_ended")?.as_u64()),
                        })
                        .collect(),
                })
                .collect(),
            write_freeze_ms,
            prechecks,
            deferred: Vec::new(),
            operations,
            detail,
            next_command,
            primary: state.primary.clone(),
            dns_points_to: state.dns_points_to.clone(),
            point_of_no_return: record.point_of_no_return,
            data_mismatch,
            sessions_ended: Vec::new(),
            replication_links: Vec::new(),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Human rendering for stdout.
    /// How a run or a resume ended: a data mismatch exits 4 whichever command found it.
    pub fn outcome(&self) -> crate::outcome::Outcome {
        use crate::outcome::{ErrorKind, Outcome};
        match self.status {
            RunStatus::Completed => Outcome::Success,
            _ if self.data_mismatch => ErrorKind::Mismatch.into(),
            RunStatus::Refused | RunStatus::RolledBack => ErrorKind::Refused.into(),
            _ => ErrorKind::Failed.into(),
        }
    }

    /// How a rollback ended: back where it was asked to go, or not.
    pub fn rollback_outcome(&self) -> crate::outcome::Outcome {
        use crate::outcome::{ErrorKind, Outcome};
        match self.status {
            RunStatus::RolledBack => Outcome::Success,
            _ => ErrorKind::Failed.into(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // A real run shows only the prechecks that need attention.
        let shown: Vec<&Precheck> = self
            .prechecks
            .iter()
            .filter(|check| self.dry_run || check.status != CheckStatus::Pass)
            .collect();
        if !shown.is_empty() {
            out.push_str("prechecks:\n");
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|check| {
                    vec![
                        match check.status {
                            CheckStatus::Pass => "pass".into(),
                            CheckStatus::Warn => "WARN".into(),
                            CheckStatus::Fail => "FAIL".into(),
                        },
                        check.cluster.clone(),
                        match &check.phase {
                            Some(phase) => format!("{} (start of `{phase}`)", check.check),
                            None => check.check.clone(),
                        },
                        check.detail.clone(),
                    ]
                })
                .collect();
            out.push_str(&crate::text::table(
                &["status", "cluster", "check", "detail"],
                &rows,
            ));
            out.push('\n');
        }
        if !self.deferred.is_empty() {
            out.push_str("deferred to the start of the phase that needs them:\n");
            let rows: Vec<Vec<String>> = self
                .deferred
                .iter()
                .map(|d| {
                    vec![
                        d.phase.clone(),
                        d.cluster.clone(),
                        d.check.clone(),
                        d.reason.clone(),
                    ]
                })
                .collect();
            out.push_str(&crate::text::table(
                &["phase", "cluster", "check", "checked then, because it"],
                &rows,
            ));
            out.push('\n');
        }
        if !self.operations.is_empty() {
            out.push_str("operations, in order:\n");
            for (index, op) in self.operations.iter().enumerate() {
                out.push_str(&format!(
                    "{:>3}. [{}] {} ({}) on {}: {}\n",
                    index + 1,
                    op.phase,
                    op.step,
                    op.kind,
                    op.cluster,
                    op.action
                ));
                if let Some(current) = &op.current {
                    out.push_str(&format!("       now: {current}\n"));
                }
                out.push_str(&format!("       inverse: {}\n", op.inverse));
            }
            out.push('\n');
        }
        if !self.dry_run {
            for phase in &self.phases {
                if let Some(run) = &phase.completed_in {
                    out.push_str(&format!("phase {} — completed in run {run}\n", phase.name));
                    continue;
                }
                out.push_str(&format!("phase {} — {}\n", phase.name, phase.status));
                for step in &phase.steps {
                    out.push_str(&format!(
                        "  {:<12} {:<40} {:>8}\n",
                        step.status.to_string(),
                        format!("{} ({})", step.name, step.kind),
                        step.elapsed_ms
                            .map(|ms| format!("{ms} ms"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        out.push_str(&format!(
            "\nrun {} {}{} in {} ms; primary `{}`, DNS → `{}`{}\n",
            self.run_id,
            if self.dry_run { "(dry run) " } else { "" },
            self.status,
            self.elapsed_ms,
            self.primary,
            self.dns_points_to,
            self.write_freeze_ms
                .map(|ms| format!(", write freeze {ms} ms"))
                .unwrap_or_default()
        ));
        for link in &self.replication_links {
            out.push_str(&format!(
                "replication `{}` ← `{}`: IO {:?}, SQL {:?}, {} transaction(s) behind, proven in {} ms\n",
                link.replica,
                link.source,
                link.io_thread,
                link.sql_thread,
                link.transactions_behind.unwrap_or(0),
                link.waited_ms
            ));
        }
        for ended in &self.sessions_ended {
            out.push_str(&format!(
                "{}: ended {} client session(s) left on `{}`\n",
                ended.step, ended.sessions, ended.cluster
            ));
        }
        if let Some(detail) = &self.detail {
            out.push_str(&format!("reason: {detail}\n"));
        }
        if let Some(next) = &self.next_command {
            out.push_str(&format!("next: {next}\n"));
        }
        out
    }
}

/// Every step the selected phases would run, with live positions where a
/// step starts from one. Read-only.
pub async fn operations(
    plan: &ValidatedPlan,
    phases: &[(usize, &Phase)],
    checks: &[Precheck],
) -> Vec<Operation> {
    let _ = checks;
    let mut out = Vec::new();
    let mut state = crate::steps::context::Context::initial_state(plan);
    for (_, phase) in phases {
        for step in &phase.steps {
            let description = step.kind.describe(plan, &state);
            state = state.after(&step.kind);
            out.push(Operation {
                phase: phase.name.clone(),
                step: step.name.clone(),
                kind: step.kind.kind_name().to_string(),
                cluster: description.cluster,
                action: description.action,
                current: step.kind.live_fact(plan).await,
                inverse: description.inverse,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ExitCode, exit_code};

    fn report(status: RunStatus, data_mismatch: bool) -> RunReport {
        RunReport {
            run_id: "r".into(),
            plan: "p".into(),
            status,
            dry_run: false,
            phases: Vec::new(),
            write_freeze_ms: None,
            prechecks: Vec::new(),
            deferred: Vec::new(),
            operations: Vec::new(),
            detail: None,
            next_command: None,
            primary: "legacy".into(),
            dns_points_to: "legacy".into(),
            point_of_no_return: false,
            data_mismatch,
            sessions_ended: Vec::new(),
            replication_links: Vec::new(),
            elapsed_ms: 0,
        }
    }

    /// `run` and `resume` both end through `outcome`: a mismatch found by a
    /// resumed run exits 4 exactly as it does in a first run.
    #[test]
    fn a_mismatch_exits_4_however_the_run_ended() {
        for status in [RunStatus::RolledBack, RunStatus::Failed, RunStatus::Refused] {
            assert_eq!(
                exit_code(report(status, true).outcome()),
                ExitCode::DataMismatch,
                "{status:?}"
            );
        }
        assert_eq!(
            exit_code(report(RunStatus::RolledBack, false).outcome()),
            ExitCode::Refused
        );
        assert_eq!(
            exit_code(report(RunStatus::Failed, false).outcome()),
            ExitCode::StepFailed
        );
        assert_eq!(
            exit_code(report(RunStatus::Completed, false).outcome()),
            ExitCode::Success
        );
    }

    /// What `cutover run` prints for a run that stopped: the phases and steps
    /// with their states, where things stand, and the next command.
    #[test]
    fn the_human_report_shows_steps_where_things_stand_and_what_to_run_next() {
        let step = |name: &str, kind: &str, status, ms| StepReport {
            name: name.into(),
            kind: kind.into(),
            status,
            elapsed_ms: ms,
            detail: None,
            sessions_ended: None,
        };
        let mut run = report(RunStatus::Failed, false);
        run.phases = vec![PhaseReport {
            name: "cutover".into(),
            status: StepStatus::Failed,
            completed_in: None,
            steps: vec![
                step(
                    "switchover-c1.freeze",
                    "freeze",
                    StepStatus::Completed,
                    Some(21),
                ),
                step(
                    "switchover-c1.catch_up",
                    "catch_up",
                    StepStatus::Completed,
                    Some(4),
                ),
                StepReport {
                    detail: Some("c1 did not reach 0-10-99 within 3000 ms".into()),
                    ..step(
                        "switchover-c1.promote",
                        "promote",
                        StepStatus::Failed,
                        Some(3001),
                    )
                },
                step(
                    "switchover-c1.unfreeze",
                    "unfreeze",
                    StepStatus::Pending,
                    None,
                ),
            ],
        }];
        run.write_freeze_ms = Some(3050);
        run.detail = Some("step `switchover-c1.promote` failed".into());
        run.next_command =
            Some("cutover resume r   # retry from the failed step, or: cutover rollback r".into());
        insta::assert_snapshot!(run.render());
    }

    #[test]
    fn a_rollback_succeeds_only_when_rolled_back() {
        assert_eq!(
            exit_code(report(RunStatus::RolledBack, false).rollback_outcome()),
            ExitCode::Success
        );
        assert_eq!(
            exit_code(report(RunStatus::Failed, false).rollback_outcome()),
            ExitCode::StepFailed
        );
    }
}
