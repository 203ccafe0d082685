//! `unfreeze`: writes resume on whichever cluster is primary now.

use serde_json::json;

use super::{Description, StepError, millis};
use crate::engine::context::Context;
use crate::mysql::control;
use crate::plan::ValidatedPlan;

pub async fn act(ctx: &mut Context) -> Result<serde_json::Value, StepError> {
    let primary = ctx.state.primary.clone();
    // Writable first, then drop the lock: an old primary that is still fenced
    // has read_only = 1 by now, so releasing its lock lets nothing through.
    let (session, flavor) = ctx.session_and_flavor(&primary).await?;
    if control::read_only(session).await? {
        control::set_read_only(session, flavor, false).await?;
        ctx.audit(&primary, "SET GLOBAL read_only = 0", "ok").await;
    }
    let mut fenced = None;
    if let Some(fence) = ctx.fence.take() {
        fenced = Some(fence.cluster.clone());
        let held = fence.release().await;
        ctx.write_freeze_ms = Some(millis(held));
        ctx.audit(
            fenced.as_deref().unwrap_or("-"),
            "UNLOCK TABLES (release fence)",
            "ok",
        )
        .await;
    }
    tracing::info!(
        "writes resume on `{primary}`{}",
        ctx.write_freeze_ms
            .map(|ms| format!(" after a {ms} ms write freeze"))
            .unwrap_or_default()
    );
    Ok(json!({
        "primary": primary,
        "released_fence_on": fenced,
        "write_freeze_ms": ctx.write_freeze_ms,
    }))
}

/// Fence the primary again (persistently): used only when a phase that
/// already resumed writes is undone step by step.
pub async fn undo(ctx: &mut Context) -> Result<(), StepError> {
    let primary = ctx.state.primary.clone();
    let (session, flavor) = ctx.session_and_flavor(&primary).await?;
    control::set_read_only(session, flavor, true).await?;
    ctx.audit(&primary, "SET GLOBAL read_only = 1", "ok").await;
    Ok(())
}

pub fn describe(_plan: &ValidatedPlan) -> Description {
    Description {
        cluster: "primary".into(),
        action: "resume writes on the current primary: read_only = 0 there, then release the fence connection".into(),
        commands: vec![
            "-- on the primary: SET GLOBAL read_only = 0".into(),
            "-- on the fence connection: UNLOCK TABLES".into(),
        ],
        verify: vec!["the application's writes succeed (cutover probe)".into()],
        inverse: "SET GLOBAL read_only = 1 on the primary".into(),
    }
}
