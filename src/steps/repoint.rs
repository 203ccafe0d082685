//! `repoint`: move the other clusters under the new primary with GTID
//! auto-positioning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::server_ops::replication::replicate_from;
use super::{Description, StepError};
use crate::mysql::{control, link};
use crate::plan::ValidatedPlan;
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
