//! A switchover run as its own journaled sequence of steps: a rollback's
//! reverse switchover, a drill's planned failover and its switch back.

use std::time::Instant;

use serde_json::json;

use super::*;
use crate::plan::{StepKind, switchover};
use crate::steps::StepBehaviour;
use crate::steps::StepError;
use crate::steps::context::Context;
use crate::store::{Event, EventKind};

/// Switch back to `back_to` the way the switchover came: freeze the current
/// primary, let `back_to` catch up through reverse replication, promote it,
/// switch DNS back, resume writes, then re-point everyone under it.
pub async fn reverse_switchover(ctx: &mut Context, back_to: &str) -> Result<(), StepError> {
    switchover(ctx, back_to, "rollback").await
}

/// A switchover from the current primary to `back_to`, as its own sequence of
/// steps journaled under `{label}-to-{back_to}.{kind}` (a rollback's reverse
/// switchover, a drill's planned failover or its switch back).
pub async fn switchover(ctx: &mut Context, back_to: &str, label: &str) -> Result<(), StepError> {
    let Some(sequence) = switchover_sequence(ctx, back_to, label).await else {
        return Ok(());
    };
    let current = match &ctx.state.previous_primary {
        Some(previous) if ctx.state.primary == back_to => previous.clone(),
        _ => ctx.state.primary.clone(),
    };
    tracing::info!("{label} switchover: `{current}` → `{back_to}`");
    let phase = ctx.phase.clone();
    for kind in sequence {
        recovery::step_starting();
        let name = format!("{label}-to-{back_to}.{}", kind.kind_name());
        ctx.step = name.clone();
        let description = kind.describe(&ctx.plan, &ctx.state);
        ctx.store
            .record_best_effort(
                &ctx.run_id,
                Event::new(EventKind::Rollback)
                    .phase(&phase)
                    .step(&name)
                    .cluster(Some(&description.cluster))
                    .positions(&json!({ "state": ctx.state }))
                    .message(&format!("intent: {}", description.action)),
            )
            .await;
        tracing::info!("▶ {name}: {}", description.action);
        let started = Instant::now();
        match kind.act(ctx).await {
            Ok(mut observed) => {
                observed["state"] = json!(ctx.state);
                ctx.store
                    .record_best_effort(
                        &ctx.run_id,
                        Event::new(EventKind::Rollback)
                            .phase(&phase)
                            .step(&name)
                            .cluster(Some(&description.cluster))
                            .positions(&observed)
                            .message("ok"),
                    )
                    .await;
                tracing::info!("✓ {name} {} ms", started.elapsed().as_millis());
            }
            Err(error) => {
                ctx.drop_sessions().await;
                // Short of promotion the current primary simply keeps its role.
                if ctx.state.primary == current
                    && let Some(fence) = ctx.fence.take()
                {
                    fence.release().await;
                }
                ctx.store
                    .record_best_effort(
                        &ctx.run_id,
                        Event::new(EventKind::Rollback)
                            .phase(&phase)
                            .step(&name)
                            .positions(&json!({ "state": ctx.state }))
                            .message(&format!("failed: {error}")),
                    )
                    .await;
                return Err(error);
            }
        }
    }
    Ok(())
}

/// The steps that take the primary role to `back_to` from the state the
/// context holds (journaled, then checked against the live servers). Before
/// the promotion: the whole way (every step is safe to repeat). After it (an
/// earlier attempt died past its promote): only what is left, so a crashed
/// rollback finishes instead of switching back again. `None`: nothing to do.
async fn switchover_sequence(ctx: &Context, back_to: &str, label: &str) -> Option<Vec<StepKind>> {
    let gates = ctx.plan.gates.clone();
    let promoted_already = ctx.state.primary == back_to;
    let leaving = if promoted_already {
        ctx.state
            .previous_primary
            .clone()
            .filter(|previous| previous != back_to)?
    } else {
        ctx.state.primary.clone()
    };
    let others: Vec<String> = ctx
        .plan
        .enabled_clusters()
        .map(|c| c.name.clone())
        .filter(|name| *name != leaving && name != back_to)
        .collect();
    let dns = ctx.plan.dns.is_some() && ctx.state.dns_points_to != back_to;
    // Ending the old primary's sessions again after a finished switchover
    // would cut its readers for nothing: only when the unfreeze never ran.
    let unfreeze = !promoted_already
        || dns
        || !journaled_ok(ctx, &format!("{label}-to-{back_to}.unfreeze")).await;
    Some(switchover::sequence(&switchover::Switchover {
        from: leaving,
        to: back_to.to_string(),
        others,
        drain_timeout: gates.drain_timeout,
        freeze_budget: gates.freeze_budget,
        dns_verify_timeout: gates.dns_verify_timeout,
        dns,
        wait_ttl: false,
        catch_up_by_replicating: true,
        promoted_already,
        unfreeze,
    }))
}

/// Whether a rollback step of this name journaled success in this run.
async fn journaled_ok(ctx: &Context, step: &str) -> bool {
    ctx.store.events(&ctx.run_id).await.is_ok_and(|events| {
        events.iter().any(|event| {
            event["kind"] == EventKind::Rollback.as_str()
                && event["step"] == step
                && event["message"] == "ok"
        })
    })
}
