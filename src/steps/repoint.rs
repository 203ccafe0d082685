//! `repoint`: move the other clusters under the new primary with GTID
//! auto-positioning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Description, StepError, address_of};
use crate::mysql::{Flavor, Session, control, link};
use crate::plan::{Scope, ValidatedPlan};
use crate::steps::context::Context;

/// What `repoint` journals: each cluster's previous source, for the inverse,
/// and the links as they were proven running.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RepointObserved {
    pub to: String,
    pub previous_sources: BTreeMap<String, Option<String>>,
    pub links: Vec<link::LinkState>,
}

pub async fn act(
    ctx: &mut Context,
    to: &str,
    clusters: &[String],
) -> Result<RepointObserved, StepError> {
    let mut previous = BTreeMap::new();
    let first_link = ctx.replication_links.len();
    for cluster in clusters {
        let before = replicate_from(ctx, cluster, to).await?;
        previous.insert(cluster.clone(), before);
    }
    Ok(RepointObserved {
        to: to.to_string(),
        previous_sources: previous,
        links: ctx.replication_links[first_link..].to_vec(),
    })
}

/// MariaDB under `scope: databases`: the shared source's GTID domain holds
/// transactions no link carried (its other databases), so `cluster` may have
/// seen more of it than `source` logged; it starts at `source`'s position there.
async fn align_shared_domain(
    ctx: &mut Context,
    cluster: &str,
    source: &str,
) -> Result<(), StepError> {
    let shared = ctx.plan.source().name.clone();
    let domain: Option<u32> = ctx
        .session(&shared)
        .await?
        .query_first(
            "read the shared source's GTID domain",
            "SELECT @@GLOBAL.gtid_domain_id",
        )
        .await?;
    let endpoint = ctx.endpoint(source)?.clone();
    let mut source_session = Session::connect(&endpoint).await?;
    let (replica, _) = ctx.session_and_flavor(cluster).await?;
    let aligned = control::align_start(replica, &mut source_session, domain.unwrap_or(0)).await;
    source_session.close().await;
    if let Some(start) = aligned? {
        ctx.audit(
            cluster,
            &format!("gtid_slave_pos = {start} (the shared source's domain, as `{source}` has it)"),
            "ok",
        )
        .await;
    }
    Ok(())
}

/// Make `cluster` replicate from `source`, continuing from its own applied
/// position. Already there and running: nothing to do. Returns the cluster it
/// replicated from before, by plan name when it is one.
pub async fn replicate_from(
    ctx: &mut Context,
    cluster: &str,
    source: &str,
) -> Result<Option<String>, StepError> {
    let (host, port) = address_of(&ctx.plan, source);
    let (user, password) = ctx.replication_credentials()?;
    let tls = ctx.plan.cluster(source).is_some_and(|c| c.tls.is_some());
    let plan = ctx.plan.clone();
    let filter = control::replicated_tables(plan.databases.as_deref());
    let (session, flavor) = ctx.session_and_flavor(cluster).await?;
    let channel = control::channel(session, flavor).await?;
    let before = channel.as_ref().map(|channel| {
        plan.enabled_clusters()
            .find(|c| c.host == channel.source_host && c.port == channel.source_port)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| format!("{}:{}", channel.source_host, channel.source_port))
    });
    if let Some(channel) = &channel
        && channel.source_host == host
        && channel.source_port == port
    {
        // A restart forgets the filter: set it again before anything applies.
        if control::ensure_replication_filter(session, flavor, &filter).await? {
            ctx.audit(cluster, "replication filter set again", "ok")
                .await;
        }
        let (session, flavor) = ctx.session_and_flavor(cluster).await?;
        control::start_replication(session, flavor).await?;
        prove_running(ctx, cluster, source, (&host, port)).await?;
        return Ok(before);
    }
    if channel.is_some() {
        control::stop_replication(session, flavor).await?;
    }
    control::change_source(
        session,
        flavor,
        &control::SourceSpec {
            host: &host,
            port,
            user: &user,
            password: &password,
            tls,
            filter: &filter,
        },
    )
    .await?;
    if flavor == Flavor::Mariadb && plan.scope == Scope::Databases {
        align_shared_domain(ctx, cluster, source).await?;
    }
    let (session, flavor) = ctx.session_and_flavor(cluster).await?;
    control::start_replication(session, flavor).await?;
    ctx.audit(
        cluster,
        &format!("CHANGE MASTER TO {host}:{port} (GTID slave_pos); START SLAVE"),
        "ok",
    )
    .await;
    prove_running(ctx, cluster, source, (&host, port)).await?;
    Ok(before)
}

/// A started link is done only when it runs: both threads, connected to
/// `source`, with what `source` has now received. Recorded for the report.
async fn prove_running(
    ctx: &mut Context,
    cluster: &str,
    source: &str,
    (host, port): (&str, u16),
) -> Result<(), StepError> {
    let bound = ctx.plan.gates.replication_start_timeout;
    let (source_session, source_flavor) = ctx.session_and_flavor(source).await?;
    let position = control::binlog_position(source_session, source_flavor).await?;
    let (session, flavor) = ctx.session_and_flavor(cluster).await?;
    let link = link::await_running(
        session,
        flavor,
        (source, host, port),
        Some(&position),
        bound,
    )
    .await
    .map_err(|error| match error {
        link::LinkError::Mysql(error) => StepError::Mysql(error),
        other => StepError::Failed(other.to_string()),
    })?;
    tracing::info!(
        "`{cluster}` replicates from `{source}`: both threads running, {} ms to prove it",
        link.waited_ms
    );
    ctx.replication_links.push(link);
    Ok(())
}

pub async fn undo(
    ctx: &mut Context,
    clusters: &[String],
    observed: &RepointObserved,
) -> Result<(), StepError> {
    for cluster in clusters {
        if let Some(Some(previous)) = observed.previous_sources.get(cluster)
            && ctx.plan.cluster(previous).is_some()
        {
            replicate_from(ctx, cluster, previous).await?;
        }
    }
    Ok(())
}

pub fn describe(plan: &ValidatedPlan, to: &str, clusters: &[String]) -> Description {
    Description {
        cluster: clusters.join(", "),
        action: format!("re-point {} to replicate from `{to}`", clusters.join(", ")),
        commands: vec![
            "STOP ALL SLAVES".into(),
            format!("CHANGE MASTER TO MASTER_HOST='<{to} host>', MASTER_PORT=<port>, MASTER_USER='<replication user>', MASTER_PASSWORD='…', MASTER_USE_GTID=slave_pos"),
            control::describe_filter(plan.databases.as_deref()),
            "START SLAVE   -- MySQL: CHANGE REPLICATION SOURCE … SOURCE_AUTO_POSITION=1; START REPLICA".into(),
        ],
        verify: vec![format!(
            "on each: SHOW ALL SLAVES STATUS shows Master_Host of `{to}`, Slave_IO_Running and Slave_SQL_Running = Yes"
        )],
        inverse: "point each back at the source it had before (recorded in the journal)".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Repoint {
    type Observed = RepointObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<RepointObserved, StepError> {
        act(ctx, &self.to, &self.clusters).await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        observed: &RepointObserved,
    ) -> Result<(), StepError> {
        undo(ctx, &self.clusters, observed).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(plan, &self.to, &self.clusters)
    }

    fn needs(&self, _plan: &crate::plan::ValidatedPlan, needs: &mut super::PrecheckNeeds) {
        needs.moves_replication = true;
    }

    fn needs_followers(&self) -> bool {
        true
    }

    fn establishes(&self) -> crate::plan::Established {
        crate::plan::Established::Replication(Some(self.clusters.clone()))
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepointStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    /// The new primary.
    pub to: crate::plan::Located<String>,
    /// Default: every enabled target other than `to`.
    #[serde(default)]
    pub clusters: Option<Vec<crate::plan::Located<String>>>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Repoint {
    type Raw = RepointStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        let to = c.enabled_cluster(&raw.to);
        let clusters = match &raw.clusters {
            Some(_) => c.targets(raw.clusters.as_ref(), "repoint cluster"),
            None => c
                .targets(None, "repoint cluster")
                .into_iter()
                .filter(|name| *name != to)
                .collect(),
        };
        if let Some(list) = &raw.clusters
            && let Some(same) = list.iter().find(|name| name.value == to)
        {
            c.error(
                same.position,
                format!("cluster `{to}` cannot replicate from itself"),
            );
        }
        crate::plan::kinds::Repoint { to, clusters }
    }
}
