//! `hook`: run an operator's command with the run's coordinates in its
//! environment; its output goes to the log, a non-zero exit fails the step.

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Description, StepError, millis};
use crate::steps::context::Context;

/// What `hook` journals.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HookObserved {
    pub command: String,
    pub exit_code: Option<i32>,
    pub timeout_ms: u64,
}

pub async fn act(
    ctx: &mut Context,
    command: &[String],
    timeout: Duration,
    cluster: Option<&str>,
) -> Result<HookObserved, StepError> {
    let Some((program, args)) = command.split_first() else {
        return Err(StepError::Failed("hook command is empty".into()));
    };
    let mut child = tokio::process::Command::new(program);
    child
        .args(args)
        .env("CUTOVER_RUN_ID", &ctx.run_id)
        .env("CUTOVER_PLAN", &ctx.plan.name)
        .env("CUTOVER_PHASE", &ctx.phase)
        .env("CUTOVER_STEP", &ctx.step)
        .env("CUTOVER_PRIMARY", &ctx.state.primary)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cluster) = cluster {
        child.env("CUTOVER_CLUSTER", cluster);
        if let Some(c) = ctx.plan.cluster(cluster) {
            child.env("CUTOVER_CLUSTER_HOST", &c.host);
            child.env("CUTOVER_CLUSTER_PORT", c.port.to_string());
        }
    }
    let mut child = child
        .spawn()
        .map_err(|error| StepError::Failed(format!("hook `{program}` cannot start: {error}")))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let label = ctx.step.clone();
    let forward = |stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>, label: String| {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "cutover::hook", "[{label}] {line}");
            }
        })
    };
    let out = forward(Box::new(stdout), label.clone());
    let err = forward(Box::new(stderr), label);
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => {
            status.map_err(|error| StepError::Failed(format!("hook `{program}`: {error}")))?
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(StepError::Failed(format!(
                "hook `{program}` did not finish within {} ms and was killed",
                timeout.as_millis()
            )));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    if !status.success() {
        return Err(StepError::Failed(format!(
            "hook `{program}` exited with {}",
            status
                .code()
                .map_or_else(|| "a signal".to_string(), |code| format!("status {code}"))
        )));
    }
    Ok(HookObserved {
        command: program.to_string(),
        exit_code: status.code(),
        timeout_ms: millis(timeout),
    })
}

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
    type Observed = HookObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<HookObserved, StepError> {
        act(ctx, &self.command, self.timeout, self.cluster.as_deref()).await
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
