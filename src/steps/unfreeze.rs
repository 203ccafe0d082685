//! `unfreeze`: writes resume on whichever cluster is primary now.

use serde::{Deserialize, Serialize};

use super::server_ops::demotion;
use super::{Description, StepError, millis};
use crate::mysql::{Session, control, events, scope};
use crate::plan::ValidatedPlan;
use crate::steps::context::{Context, EndedSessions};

/// What `unfreeze` journals: where writes resumed, after how long a freeze,
/// and what was done to the demoted primary's sessions and events.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UnfreezeObserved {
    pub primary: String,
    pub released_fence_on: Option<String>,
    pub write_freeze_ms: Option<u64>,
    pub sessions_ended_on: Option<String>,
    pub sessions_ended: Option<usize>,
    pub sessions_error: Option<String>,
    pub events_disabled: Option<events::Changed>,
}

pub async fn act(ctx: &mut Context) -> Result<UnfreezeObserved, StepError> {
    let primary = ctx.state.primary.clone();
    // Writable first, then drop the lock: an old primary that is still fenced
    // has read_only = 1 by now, so releasing its lock lets nothing through.
    let (session, flavor) = ctx.session_and_flavor(&primary).await?;
    if control::read_only(session).await? {
        control::set_read_only(session, flavor, false).await?;
        ctx.audit(&primary, "SET GLOBAL read_only = 0", "ok").await;
    }
    // Pools keep their connections to the demoted primary (read-only errors
    // are not disconnects), so end them: they reconnect through the name,
    // which points at the new primary by now. Before the fence goes, so a
    // statement queued behind it never runs there.
    let demoted = ctx
        .fence
        .as_ref()
        .map(|fence| fence.cluster.clone())
        .or_else(|| ctx.state.previous_primary.clone())
        .filter(|cluster| *cluster != primary);
    let mut sessions_ended = None;
    let mut sessions_error = None;
    if let Some(old) = demoted.as_deref()
        && ctx.plan.gates.end_old_sessions
    {
        match end_client_sessions(ctx, old).await {
            Ok(ended) => {
                tracing::info!("ended {ended} client session(s) left on `{old}`");
                sessions_ended = Some(ended);
                ctx.sessions_ended.push(EndedSessions {
                    step: ctx.step.clone(),
                    cluster: old.to_string(),
                    sessions: ended,
                });
            }
            Err(error) => {
                tracing::warn!(
                    "could not end the client sessions left on `{old}`: {error}; pools connected there keep failing until they reconnect"
                );
                sessions_error = Some(error.to_string());
            }
        }
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
    let events_disabled = match demoted.as_deref() {
        Some(old) => {
            let schemas = ctx.plan.fence_scope(old);
            Some(disable_events(ctx, old, schemas.as_deref()).await)
        }
        None => None,
    };
    tracing::info!(
        "writes resume on `{primary}`{}",
        ctx.write_freeze_ms
            .map(|ms| format!(" after a {ms} ms write freeze"))
            .unwrap_or_default()
    );
    Ok(UnfreezeObserved {
        primary,
        released_fence_on: fenced,
        write_freeze_ms: ctx.write_freeze_ms,
        sessions_ended_on: demoted,
        sessions_ended,
        sessions_error,
        events_disabled,
    })
}

/// The demoted primary runs no scheduled event from now on: the new primary
/// runs them. After the fence is gone (its lock would block ALTER EVENT).
/// A failure does not undo the switchover: it is logged and audited.
/// `schemas`: under a scoped fence, only the fenced databases' events.
async fn disable_events(
    ctx: &mut Context,
    cluster: &str,
    schemas: Option<&[String]>,
) -> events::Changed {
    let disabled = async {
        let (session, flavor) = ctx.session_and_flavor(cluster).await?;
        if !events::any(session, false, schemas).await? {
            return Ok(events::Changed::default());
        }
        let endpoint = ctx.endpoint(cluster)?.clone();
        let mut session = Session::connect(&endpoint).await?;
        let disabled = events::disable_on_replica(&mut session, flavor, None, schemas).await;
        session.close().await;
        disabled
    }
    .await;
    demotion::events_audited(ctx, cluster, "DISABLE ON SLAVE", disabled).await
}

/// Kill every client session on `cluster` but the kept accounts'; a session
/// that ended by itself meanwhile is not an error.
async fn end_client_sessions(ctx: &mut Context, cluster: &str) -> Result<usize, StepError> {
    let kept = demotion::kept_users(&ctx.plan, cluster);
    // Scoped: only the fenced applications' sessions; the others keep working.
    let scope = ctx
        .state
        .frozen
        .as_ref()
        .filter(|frozen| frozen.cluster == cluster)
        .and_then(|frozen| frozen.scope.clone());
    if let Some(scope) = scope {
        let ended = demotion::end_sessions_in_scope(ctx, cluster, &scope, &kept).await?;
        if ended > 0 {
            ctx.audit(
                cluster,
                &format!("KILL {ended} fenced client session(s)"),
                "ok",
            )
            .await;
        }
        return Ok(ended);
    }
    let session = ctx.session(cluster).await?;
    let users: Vec<&str> = kept.iter().map(String::as_str).collect();
    let mut ended = 0;
    for client in control::client_sessions(session, &users).await? {
        if control::kill_connection(session, client.id).await.is_ok() {
            ended += 1;
        }
    }
    if ended > 0 {
        ctx.audit(cluster, &format!("KILL {ended} client session(s)"), "ok")
            .await;
    }
    Ok(ended)
}

/// Fence the primary again (persistently): used only when a phase that
/// already resumed writes is undone step by step.
pub async fn undo(ctx: &mut Context) -> Result<(), StepError> {
    let primary = ctx.state.primary.clone();
    if let Some(databases) = ctx.plan.fence_scope(&primary) {
        let kept = ctx.plan.own_accounts(&primary);
        let (session, flavor) = ctx.session_and_flavor(&primary).await?;
        let done = scope::fence(session, flavor, &databases, &kept).await?;
        ctx.audit(
            &primary,
            &format!("scoped fence: {}", done.join("; ")),
            "ok",
        )
        .await;
        return Ok(());
    }
    let (session, flavor) = ctx.session_and_flavor(&primary).await?;
    control::set_read_only(session, flavor, true).await?;
    ctx.audit(&primary, "SET GLOBAL read_only = 1", "ok").await;
    Ok(())
}

pub fn describe(plan: &ValidatedPlan) -> Description {
    let scoped = plan.fence_scope(&plan.source().name);
    let sessions = if let (true, Some(databases)) = (plan.gates.end_old_sessions, &scoped) {
        format!(
            ", end the sessions of {}'s applications left on the demoted source (scope: databases: \
             its other applications keep theirs) so pools reconnect through the name",
            databases.join(", ")
        )
    } else if plan.gates.end_old_sessions {
        format!(
            ", end the client sessions left on a demoted primary (all but {}) so pools reconnect through the name",
            demotion::kept_users(plan, &plan.source().name)
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "; sessions on a demoted primary are left open (gates.end_old_sessions: false)".into()
    };
    Description {
        cluster: "primary".into(),
        action: format!(
            "resume writes on the current primary: read_only = 0 there{sessions}, then release the fence connection; \
             the demoted primary's scheduled events are disabled (the new primary runs them)"
        ),
        commands: vec![
            "-- on the primary: SET GLOBAL read_only = 0".into(),
            "-- on the demoted primary: KILL each client session (SHOW PROCESSLIST)".into(),
            "-- on the fence connection: UNLOCK TABLES".into(),
            "-- on the demoted primary, each enabled event under its own definer and settings, outside the binary log:".into(),
            "SET SESSION sql_log_bin = 0; ALTER DEFINER = … EVENT … DISABLE ON SLAVE   -- MySQL: DISABLE ON REPLICA".into(),
        ],
        verify: vec!["the application's writes succeed (cutover probe)".into()],
        inverse: "SET GLOBAL read_only = 1 on the primary".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Unfreeze {
    type Observed = UnfreezeObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<UnfreezeObserved, StepError> {
        act(ctx).await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        _observed: &UnfreezeObserved,
    ) -> Result<(), StepError> {
        undo(ctx).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(plan)
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnfreezeStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Unfreeze {
    type Raw = UnfreezeStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(_raw: Self::Raw, _c: &mut dyn crate::plan::StepCheck) -> Self {
        crate::plan::kinds::Unfreeze {}
    }
}
