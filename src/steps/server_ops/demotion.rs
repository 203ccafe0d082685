//! What `promote` and `unfreeze` share around a change of primary: which
//! accounts keep their sessions on a demoted primary, ending the others',
//! and auditing scheduled events' status changes.

use crate::mysql::{control, events};
use crate::plan::ValidatedPlan;
use crate::steps::StepError;
use crate::steps::context::{Context, FenceScope};

/// The accounts whose sessions on a demoted primary stay: the orchestrator's,
/// replication's and the plan's `gates.keep_sessions_of`.
pub fn kept_users(plan: &ValidatedPlan, cluster: &str) -> Vec<String> {
    let mut users = plan.own_accounts(cluster);
    users.extend(plan.gates.keep_sessions_of.iter().map(|k| k.user.clone()));
    users
}

/// Kill the sessions of the fenced applications (or in the fenced databases)
/// on `cluster`, but the fence's own connection and `kept` accounts'.
pub async fn end_sessions_in_scope(
    ctx: &mut Context,
    cluster: &str,
    scope: &FenceScope,
    kept: &[String],
) -> Result<usize, StepError> {
    let fence_id = ctx
        .fence
        .as_ref()
        .filter(|f| f.cluster == cluster)
        .map(|f| f.connection_id);
    let session = ctx.session(cluster).await?;
    let users: Vec<&str> = kept.iter().map(String::as_str).collect();
    let mut ended = 0;
    for client in control::client_sessions(session, &users).await? {
        if Some(client.id) != fence_id
            && scope.covers(&client)
            && control::kill_connection(session, client.id).await.is_ok()
        {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Audit an event status change; a failure is logged for the operator.
pub async fn events_audited(
    ctx: &mut Context,
    cluster: &str,
    status: &str,
    changed: Result<events::Changed, crate::mysql::MysqlError>,
) -> events::Changed {
    match changed {
        Ok(changed) => {
            if !changed.events.is_empty() {
                ctx.audit(
                    cluster,
                    &format!("ALTER EVENT … {status}: {}", changed.events.join(", ")),
                    "ok",
                )
                .await;
            }
            if !changed.definer_lost.is_empty() {
                tracing::warn!(
                    "on `{cluster}`, {} now run as the orchestrator's account: it may not set \
                     definers (grant SET_ANY_DEFINER on MySQL, SET USER on MariaDB)",
                    changed.definer_lost.join(", ")
                );
            }
            changed
        }
        Err(error) => {
            tracing::warn!(
                "the scheduled events on `{cluster}` could not be set to {status} ({error}); \
                 do it by hand (ALTER EVENT … {status}) so they run on the primary only"
            );
            ctx.audit(
                cluster,
                &format!("ALTER EVENT … {status}"),
                &error.to_string(),
            )
            .await;
            events::Changed::default()
        }
    }
}
