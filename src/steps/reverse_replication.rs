//! `reverse_replication`: the old primary becomes a read-only replica of the
//! new one from the frozen position, so a rollback loses nothing written since.

use serde::{Deserialize, Serialize};

use super::server_ops::replication;
use super::{Description, StepError, address_of};
use crate::mysql::link::LinkState;
use crate::mysql::{Flavor, control};
use crate::plan::ValidatedPlan;
use crate::steps::context::Context;

/// What `reverse_replication` journals: where the old primary started.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReverseReplicationObserved {
    pub cluster: String,
    pub from: String,
    pub start_position: Option<String>,
    pub links: Option<LinkState>,
}

pub async fn act(
    ctx: &mut Context,
    from: &str,
    cluster: &str,
) -> Result<ReverseReplicationObserved, StepError> {
    let frozen = ctx.state.frozen.clone();
    let (host, port) = address_of(&ctx.plan, from);
    let scoped = ctx.plan.fence_scope(cluster).is_some();
    let (session, flavor) = ctx.session_and_flavor(cluster).await?;
    // Never writable as a replica, whatever happened before; a scoped source
    // keeps its other databases writable (the moved ones are fenced).
    if !scoped {
        control::set_read_only(session, flavor, true).await?;
    }
    let channel = control::channel(session, flavor).await?;
    let already = channel
        .as_ref()
        .is_some_and(|channel| channel.source_host == host && channel.source_port == port);
    // Already replicating from `from` (a rejoined failed primary): it continues
    // from its own position; otherwise it starts exactly after the frozen one.
    let start = match (already, &frozen) {
        (true, _) => None,
        (false, Some(frozen)) => Some(frozen.position.clone()),
        (false, None) => {
            return Err(StepError::Failed(
                "reverse_replication needs the frozen position of a `freeze` step".into(),
            ));
        }
    };
    // A scoped MariaDB source kept writing its other databases past the
    // frozen position: it starts from its own position, aligned by the link.
    let start = start.filter(|_| !(scoped && flavor == Flavor::Mariadb));
    if let Some(position) = &start {
        // Any other start would replay or skip writes.
        if channel.is_some() {
            control::reset_replication(session, flavor).await?;
        }
        control::set_replica_start(session, flavor, position).await?;
    }
    replication::replicate_from(ctx, cluster, from).await?;
    ctx.audit(
        cluster,
        &format!(
            "{}gtid_slave_pos = {}; replicate from `{from}`",
            if scoped { "" } else { "read_only = 1; " },
            start.as_deref().unwrap_or("(its own, unchanged)")
        ),
        "ok",
    )
    .await;
    Ok(ReverseReplicationObserved {
        cluster: cluster.to_string(),
        from: from.to_string(),
        start_position: start,
        links: ctx.replication_links.last().cloned(),
    })
}

/// Detach the old primary again (it stays read-only; the freeze's inverse
/// decides whether it takes writes).
pub async fn undo(ctx: &mut Context, cluster: &str) -> Result<(), StepError> {
    let (session, flavor) = ctx.session_and_flavor(cluster).await?;
    if control::channel(session, flavor).await?.is_some() {
        control::reset_replication(session, flavor).await?;
    }
    ctx.audit(cluster, "STOP ALL SLAVES; RESET SLAVE ALL", "ok")
        .await;
    Ok(())
}

pub fn describe(plan: &ValidatedPlan, from: &str, cluster: &str) -> Description {
    let tls = plan.cluster(from).is_some_and(|c| c.tls.is_some());
    Description {
        cluster: cluster.to_string(),
        action: format!(
            "make `{cluster}` a read-only replica of `{from}`, starting after the frozen position; \
             done when both threads run and it has received `{from}`'s position (at most {} ms)",
            plan.gates.replication_start_timeout.as_millis()
        ),
        commands: vec![
            "SET GLOBAL read_only = 1".into(),
            "SET GLOBAL gtid_slave_pos = '<frozen position>'   -- MySQL: not needed (auto-position)".into(),
            control::describe_filter(plan.databases.as_deref()),
            format!(
                "CHANGE MASTER TO MASTER_HOST='<{from} host>', …, MASTER_USE_GTID=slave_pos, MASTER_SSL={}; START SLAVE   \
                 -- MySQL: CHANGE REPLICATION SOURCE TO …, SOURCE_AUTO_POSITION=1, {}; START REPLICA",
                u8::from(tls),
                control::mysql_auth_options(tls)
            ),
        ],
        verify: vec![format!(
            "on {cluster}: SHOW ALL SLAVES STATUS shows `{from}` with both threads running; @@read_only = 1"
        )],
        inverse: "STOP ALL SLAVES; RESET SLAVE ALL (it stays read-only)".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::ReverseReplication {
    type Observed = ReverseReplicationObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<ReverseReplicationObserved, StepError> {
        act(ctx, &self.from, &self.cluster).await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        _observed: &ReverseReplicationObserved,
    ) -> Result<(), StepError> {
        undo(ctx, &self.cluster).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(plan, &self.from, &self.cluster)
    }

    fn needs(&self, _plan: &crate::plan::ValidatedPlan, needs: &mut super::PrecheckNeeds) {
        needs.moves_replication = true;
    }

    fn needs_followers(&self) -> bool {
        true
    }

    fn establishes(&self) -> crate::plan::Established {
        crate::plan::Established::Replication(Some(vec![self.cluster.clone()]))
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseReplicationStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    /// The new primary the old source replicates from.
    pub from: crate::plan::Located<String>,
    /// Default: the source.
    #[serde(default)]
    pub cluster: Option<crate::plan::Located<String>>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::ReverseReplication {
    type Raw = ReverseReplicationStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        let from = c.enabled_target(&raw.from, "reverse_replication `from`");
        let cluster = match &raw.cluster {
            Some(cluster) => c.enabled_cluster(cluster),
            None => c.source_name(),
        };
        if cluster == from {
            c.error(
                raw.from.position,
                format!("cluster `{from}` cannot replicate from itself"),
            );
        }
        crate::plan::kinds::ReverseReplication { from, cluster }
    }
}
