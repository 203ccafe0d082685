//! `wait_lag`: hold until every target's heartbeat lag stays under the limit.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Description, StepError, millis};
use crate::lag::{self, GateOutcome, LagGate, LagMonitor};
use crate::steps::context::Context;

/// What a passed `wait_lag` journals: each target's last lag.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WaitLagObserved {
    pub waited_ms: u64,
    pub lag_ms: BTreeMap<String, Option<f64>>,
}

pub async fn act(
    ctx: &mut Context,
    targets: &[String],
    max_lag_ms: u64,
    sustained_for: Duration,
    timeout: Duration,
) -> Result<WaitLagObserved, StepError> {
    let primary = ctx.state.primary.clone();
    let monitor = LagMonitor::start_from(&ctx.plan, &primary, ctx.plan.gates.heartbeat_interval)
        .await
        .map_err(|error| StepError::Failed(error.to_string()))?;
    let outcome = lag::wait_for(
        &monitor,
        LagGate {
            max_lag: Duration::from_millis(max_lag_ms),
            sustained_for,
            timeout,
        },
    )
    .await;
    let samples = monitor.snapshot();
    monitor.stop().await;
    let lags: BTreeMap<String, Option<f64>> = samples
        .iter()
        .filter(|sample| targets.is_empty() || targets.contains(&sample.name))
        .map(|sample| (sample.name.clone(), sample.lag_ms))
        .collect();
    match outcome {
        GateOutcome::Passed { waited_ms } => Ok(WaitLagObserved {
            waited_ms,
            lag_ms: lags,
        }),
        GateOutcome::Refused {
            waited_ms,
            laggards,
        } => Err(StepError::Refused(format!(
            "lag gate refused after {waited_ms} ms: {}",
            laggards
                .iter()
                .map(|laggard| match (laggard.lag_ms, &laggard.error) {
                    (_, Some(error)) => format!("{} ({error})", laggard.name),
                    (Some(lag), None) => format!("{} ({lag:.0} ms)", laggard.name),
                    (None, None) => format!("{} (not measured)", laggard.name),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub fn describe(
    targets: &[String],
    max_lag_ms: u64,
    sustained_for: Duration,
    timeout: Duration,
) -> Description {
    Description {
        cluster: targets.join(", "),
        action: format!(
            "wait until heartbeat lag ≤ {max_lag_ms} ms on {} for {} ms (give up after {} ms)",
            targets.join(", "),
            millis(sustained_for),
            millis(timeout)
        ),
        commands: vec![format!(
            "cutover lag PLAN --wait --max-lag-ms {max_lag_ms} --sustained {}ms --timeout {}ms",
            millis(sustained_for),
            millis(timeout)
        )],
        verify: vec!["cutover lag PLAN shows every target under the limit".into()],
        inverse: "nothing to undo (writes only the orchestrator's heartbeat row)".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::WaitLag {
    type Observed = WaitLagObserved;

    fn time_bound(&self, _plan: &crate::plan::ValidatedPlan) -> std::time::Duration {
        self.timeout
    }

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<WaitLagObserved, StepError> {
        act(
            ctx,
            &self.targets,
            self.max_lag_ms,
            self.sustained_for,
            self.timeout,
        )
        .await
    }

    fn describe(
        &self,
        _plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(
            &self.targets,
            self.max_lag_ms,
            self.sustained_for,
            self.timeout,
        )
    }

    fn continues_after_interruption(&self) -> bool {
        true
    }

    fn needs_followers(&self) -> bool {
        true
    }

    fn is_mutating(&self) -> bool {
        false
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitLagStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    #[serde(default)]
    pub targets: Option<Vec<crate::plan::Located<String>>>,
    #[serde(default)]
    pub max_lag_ms: Option<crate::plan::Located<i64>>,
    #[serde(default)]
    pub sustained_for: Option<crate::plan::Located<crate::plan::model::HumanDuration>>,
    #[serde(default)]
    pub timeout: Option<crate::plan::Located<crate::plan::model::HumanDuration>>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::WaitLag {
    type Raw = WaitLagStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        let gates = c.gates().clone();
        crate::plan::kinds::WaitLag {
            targets: c.targets(raw.targets.as_ref(), "wait_lag target"),
            max_lag_ms: raw.max_lag_ms.as_ref().map_or(gates.max_lag_ms, |value| {
                c.number(value, 1, 3_600_000, "wait_lag max_lag_ms")
            }),
            sustained_for: c.optional_duration(
                raw.sustained_for.as_ref(),
                gates.sustained_for,
                std::time::Duration::ZERO,
                std::time::Duration::from_secs(3600),
                "wait_lag sustained_for",
            ),
            timeout: c.optional_duration(
                raw.timeout.as_ref(),
                gates.lag_timeout,
                std::time::Duration::from_millis(1),
                crate::plan::kinds::MAX_STEP_TIMEOUT,
                "wait_lag timeout",
            ),
        }
    }
}
