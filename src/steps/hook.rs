//! `hook`: run an operator's command with the run's coordinates in its
//! environment; its output goes to the log, a non-zero exit fails the step.

use std::time::Duration;

use super::server_ops::hook::{HookRan, run};
use super::{Description, StepError};

pub fn describe(command: &[String], timeout: Duration, cluster: Option<&str>) -> Description {
    Description {
        cluster: cluster.unwrap_or("-").to_string(),
        action: format!(
            "run `{}` (timeout {} ms; a non-zero exit stops the run)",
            command.join(" "),
            timeout.as_millis()
        ),
        commands: vec![command.join(" ")],
        verify: vec!["its exit status is 0; its output is in the run's log".into()],
        inverse: "none (hooks are the operator's; nothing is undone)".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Hook {
    type Observed = HookRan;

    fn time_bound(&self, _plan: &crate::plan::ValidatedPlan) -> std::time::Duration {
        self.timeout
    }

    async fn act(&self, ctx: &mut crate::steps::context::Context) -> Result<HookRan, StepError> {
        run(ctx, &self.command, self.timeout, self.cluster.as_deref()).await
    }

    fn describe(
        &self,
        _plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(&self.command, self.timeout, self.cluster.as_deref())
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    /// Program and arguments; no shell is involved.
    pub command: Vec<crate::plan::Located<String>>,
    #[serde(default)]
    pub timeout: Option<crate::plan::Located<crate::plan::model::HumanDuration>>,
    /// Passed to the command as CUTOVER_CLUSTER.
    #[serde(default)]
    pub cluster: Option<crate::plan::Located<String>>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Hook {
    type Raw = HookStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        if raw.command.is_empty() || raw.command[0].value.trim().is_empty() {
            let position = raw
                .command
                .first()
                .map_or(crate::plan::Position::UNKNOWN, |first| first.position);
            c.error(
                position,
                "hook command is empty: give the program and its arguments".into(),
            );
        }
        let cluster = raw
            .cluster
            .as_ref()
            .map(|cluster| c.enabled_cluster(cluster));
        crate::plan::kinds::Hook {
            command: raw.command.into_iter().map(|part| part.value).collect(),
            timeout: c.optional_duration(
                raw.timeout.as_ref(),
                std::time::Duration::from_secs(60),
                std::time::Duration::from_millis(1),
                crate::plan::kinds::MAX_STEP_TIMEOUT,
                "hook timeout",
            ),
            cluster,
        }
    }
}
