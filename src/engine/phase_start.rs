//! Prechecks at the start of a phase whose state an earlier phase of the same
//! run made true: the same checks as before the run, against the live servers
//! and the roles the run has made so far.

use std::collections::BTreeSet;

use super::prechecks::{self, CheckStatus, Precheck, Scope};
use crate::plan::Phase;
use crate::steps::context::Context;
use crate::store::{Event, EventKind};

/// Which phases check at their start, and every check they ran (for the report).
#[derive(Debug, Default)]
pub struct PhaseStartChecks {
    pub phases: BTreeSet<usize>,
    pub ran: Vec<Precheck>,
}

impl PhaseStartChecks {
    pub fn new(phases: BTreeSet<usize>) -> PhaseStartChecks {
        PhaseStartChecks {
            phases,
            ran: Vec::new(),
        }
    }

    /// Run the phase's prechecks if it has deferred ones. `Err` is the refusal
    /// to report: nothing of the phase has run.
    pub async fn check(
        &mut self,
        ctx: &Context,
        phase_index: usize,
        phase: &Phase,
    ) -> Result<(), String> {
        if !self.phases.contains(&phase_index) {
            return Ok(());
        }
        tracing::info!(
            "phase `{}`: prechecks deferred to its start (primary `{}`, DNS → `{}`)",
            phase.name,
            ctx.state.primary,
            ctx.state.dns_points_to
        );
        let scope = Scope::at_phase_start(
            &ctx.plan,
            phase,
            &ctx.state.primary,
            &ctx.state.dns_points_to,
        );
        let mut checks = prechecks::run(&ctx.plan, &[phase], &scope)
            .await
            .map_err(|error| format!("phase `{}` prechecks: {error}", phase.name))?;
        for check in &mut checks {
            check.phase = Some(phase.name.clone());
        }
        let positions = serde_json::to_value(&checks).unwrap_or_default();
        ctx.store
            .record_best_effort(
                &ctx.run_id,
                Event::new(EventKind::Observation)
                    .phase(&phase.name)
                    .positions(&positions)
                    .message("prechecks at the start of the phase"),
            )
            .await;
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| format!("{} {}: {}", c.cluster, c.check, c.detail))
            .collect();
        self.ran.extend(checks);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "phase `{}` refused at its start, nothing of it ran: {}",
                phase.name,
                failed.join("; ")
            ))
        }
    }
}
