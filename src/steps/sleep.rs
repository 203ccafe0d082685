//! `sleep`: wait a fixed time (e.g. for caches to expire).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Description, StepError, millis};

/// What `sleep` journals.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SleepObserved {
    pub slept_ms: u64,
}

pub async fn act(duration: Duration) -> Result<SleepObserved, StepError> {
    tokio::time::sleep(duration).await;
    Ok(SleepObserved {
        slept_ms: millis(duration),
    })
}

pub fn describe(duration: Duration) -> Description {
    Description {
        cluster: "-".into(),
        action: format!("wait {} ms", duration.as_millis()),
        commands: vec![],
        verify: vec![],
        inverse: "nothing to undo".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Sleep {
    type Observed = SleepObserved;

    fn time_bound(&self, _plan: &crate::plan::ValidatedPlan) -> std::time::Duration {
        self.duration
    }

    async fn act(
        &self,
        _ctx: &mut crate::steps::context::Context,
    ) -> Result<SleepObserved, StepError> {
        act(self.duration).await
    }

    fn describe(
        &self,
        _plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(self.duration)
    }

    fn continues_after_interruption(&self) -> bool {
        true
    }

    fn is_mutating(&self) -> bool {
        false
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    pub duration: crate::plan::Located<crate::plan::model::HumanDuration>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Sleep {
    type Raw = SleepStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        crate::plan::kinds::Sleep {
            duration: c.duration(
                &raw.duration,
                std::time::Duration::ZERO,
                crate::plan::kinds::MAX_STEP_TIMEOUT,
                "sleep duration",
            ),
        }
    }
}
