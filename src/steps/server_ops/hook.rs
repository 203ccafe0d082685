//! Run an operator's command: the `hook` step, and a drill's inject and
//! recover commands.

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::steps::context::Context;
use crate::steps::{StepError, millis};

/// A command that ran to a zero exit within its timeout.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HookRan {
    pub command: String,
    pub exit_code: Option<i32>,
    pub timeout_ms: u64,
}

/// Run an operator's command, no shell, with the run's coordinates in its
/// environment and its output in the log; a non-zero exit or the timeout
/// fails it.
pub async fn run(
    ctx: &mut Context,
    command: &[String],
    timeout: Duration,
    cluster: Option<&str>,
) -> Result<HookRan, StepError> {
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
    Ok(HookRan {
        command: program.to_string(),
        exit_code: status.code(),
        timeout_ms: millis(timeout),
    })
}
