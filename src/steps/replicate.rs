//! `replicate`: start each target replicating from the source at the
//! snapshot's GTID position, and wait until it has caught up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Description, StepError, millis};
use crate::mysql::control;
use crate::plan::ValidatedPlan;
use crate::steps::context::Context;

/// What `replicate` journals: where the targets started, for the inverse.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicateObserved {
    pub from_position: String,
    pub targets: Vec<String>,
}

pub async fn act(
    ctx: &mut Context,
    targets: &[String],
    timeout: Duration,
) -> Result<ReplicateObserved, StepError> {
    let Some(position) = ctx.state.snapshot_position.clone() else {
        return Err(StepError::Refused(
            "no snapshot position: run the `snapshot` step (in this run) before `replicate`".into(),
        ));
    };
    let started = crate::snapshot::replicate(&ctx.plan, targets, &position, timeout, ctx.resuming)
        .await
        .map_err(|error| StepError::Failed(error.to_string()))?;
    let problems: Vec<String> = started.iter().filter_map(|s| s.error.clone()).collect();
    for start in &started {
        ctx.audit(
            &start.cluster,
            &format!("replicate from {} at {position}", ctx.plan.source().name),
            if start.caught_up { "ok" } else { "failed" },
        )
        .await;
    }
    if !problems.is_empty() {
        return Err(StepError::Failed(problems.join("; ")));
    }
    Ok(ReplicateObserved {
        from_position: position,
        targets: started.iter().map(|s| s.cluster.clone()).collect(),
    })
}

/// Stop and forget the replication the step started.
pub async fn undo(ctx: &mut Context, observed: &ReplicateObserved) -> Result<(), StepError> {
    for target in &observed.targets {
        let (session, flavor) = ctx.session_and_flavor(target).await?;
        control::reset_replication(session, flavor).await?;
        ctx.audit(target, "stop and reset replication", "ok").await;
    }
    Ok(())
}

pub fn describe(plan: &ValidatedPlan, targets: &[String], timeout: Duration) -> Description {
    let source = plan.source();
    let targets = if targets.is_empty() {
        plan.enabled_targets().map(|c| c.name.clone()).collect()
    } else {
        targets.to_vec()
    };
    Description {
        cluster: targets.join(", "),
        action: format!(
            "replicate {} from {} starting at the snapshot's GTID position; wait up to {} ms until caught up",
            targets.join(", "),
            source.name,
            millis(timeout)
        ),
        commands: vec![
            "STOP ALL SLAVES; RESET SLAVE ALL".into(),
            "SET GLOBAL gtid_slave_pos = '<snapshot position>'  (MySQL: the position is in gtid_executed)".into(),
            control::describe_filter(plan.databases.as_deref()),
            format!(
                "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={}, MASTER_USE_GTID=slave_pos, …; START SLAVE",
                source.host, source.port
            ),
            "SELECT MASTER_GTID_WAIT('<source position now>', timeout)".into(),
        ],
        verify: vec!["cutover topology PLAN: each target replicating from the source, no errant GTIDs".into()],
        inverse: "STOP ALL SLAVES; RESET SLAVE ALL on each target".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Replicate {
    type Observed = ReplicateObserved;

    fn time_bound(&self, _plan: &crate::plan::ValidatedPlan) -> std::time::Duration {
        self.timeout
    }

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<ReplicateObserved, StepError> {
        act(ctx, &self.targets, self.timeout).await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        observed: &ReplicateObserved,
    ) -> Result<(), StepError> {
        undo(ctx, observed).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(plan, &self.targets, self.timeout)
    }

    fn needs(&self, _plan: &crate::plan::ValidatedPlan, needs: &mut super::PrecheckNeeds) {
        needs.starts_replication = true;
    }

    fn continues_after_interruption(&self) -> bool {
        true
    }

    fn establishes(&self) -> crate::plan::Established {
        crate::plan::Established::Replication(Some(self.targets.clone()).filter(|t| !t.is_empty()))
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

// How it is written in a plan, and checked.

impl crate::plan::KindSyntax for crate::plan::kinds::Replicate {
    type Raw = crate::plan::model::TargetsStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        crate::plan::kinds::Replicate {
            targets: c.targets(raw.targets.as_ref(), "replicate target"),
            timeout: c.optional_duration(
                raw.timeout.as_ref(),
                c.gates().lag_timeout,
                std::time::Duration::from_millis(1),
                crate::plan::kinds::MAX_STEP_TIMEOUT,
                "replicate timeout",
            ),
        }
    }
}
