//! `catch_up`: every target applies exactly the frozen position, inside the
//! freeze budget.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Description, StepError, millis};
use crate::mysql::gtid::Origin;
use crate::mysql::server::{self, ThreadState};
use crate::mysql::{Flavor, GtidSet, Session, control, gtid};
use crate::plan::ValidatedPlan;
use crate::steps::context::{Context, Frozen};

/// What `catch_up` journals: the position each target reached.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CatchUpObserved {
    pub frozen_position: String,
    pub targets: BTreeMap<String, String>,
    pub waited_ms: u64,
}

pub async fn act(
    ctx: &mut Context,
    targets: &[String],
    timeout: Duration,
) -> Result<CatchUpObserved, StepError> {
    let frozen = ctx.state.frozen.clone().ok_or_else(|| {
        StepError::Failed("catch_up needs a frozen position: put a `freeze` step before it".into())
    })?;
    // Inside a freeze the budget is what is left of it, whatever the step says.
    let limit = match &ctx.fence {
        Some(fence) => fence.remaining().min(timeout),
        None => timeout,
    };
    let started = Instant::now();
    let mut reached = BTreeMap::new();
    for target in targets {
        let position = wait_one(
            ctx,
            target,
            &frozen,
            limit.saturating_sub(started.elapsed()),
        )
        .await?;
        reached.insert(target.clone(), position);
    }
    Ok(CatchUpObserved {
        frozen_position: frozen.position,
        targets: reached,
        waited_ms: millis(started.elapsed()),
    })
}

/// Wait for one target; returns its executed set once it holds the frozen one.
pub async fn wait_one(
    ctx: &mut Context,
    target: &str,
    frozen: &Frozen,
    limit: Duration,
) -> Result<String, StepError> {
    let (session, flavor) = ctx.session_and_flavor(target).await?;
    let frozen_set = GtidSet::parse(flavor, &frozen.executed)
        .map_err(|error| StepError::Failed(format!("frozen position: {error}")))?;
    let executed = server::executed(session, flavor).await?;
    if !executed.contains(&frozen_set) {
        if let Some(channel) = control::channel(session, flavor).await?
            && channel.sql_thread == ThreadState::Stopped
        {
            return Err(StepError::Refused(format!(
                "cluster `{target}` cannot reach the frozen position {}: its replication SQL thread is stopped ({})",
                frozen.position,
                channel
                    .last_sql_error
                    .as_deref()
                    .unwrap_or("no error reported")
            )));
        }
        let reached = control::wait_for_position(session, flavor, &frozen.position, limit).await?;
        if !reached {
            let now = server::executed(session, flavor).await?;
            let behind = gtid::transactions_behind(flavor, &now, &frozen_set);
            return Err(StepError::Refused(format!(
                "cluster `{target}` did not reach the frozen position {} within {} ms ({} transaction(s) behind)",
                frozen.position,
                limit.as_millis(),
                behind
            )));
        }
    }
    let executed = server::executed(session, flavor).await?;
    let errant = errant(ctx, target, &executed, &frozen_set, frozen).await?;
    if !errant.is_empty() {
        return Err(StepError::Refused(format!(
            "cluster `{target}` has transactions the frozen source never had (errant GTIDs {errant}); \
             it cannot take over without losing or duplicating writes"
        )));
    }
    Ok(executed.to_string())
}

/// What `target` executed that the frozen source never had. Under a scoped
/// fence the source's other databases kept writing past the frozen position
/// (the target replicated them, filtered out), so the reference is what the
/// source has executed by now; and a scoped source becoming primary again
/// kept writing its other databases meanwhile: its own transactions are
/// those, not errant ones.
/// `frozen_set` is `frozen.executed`, parsed by the caller.
pub(super) async fn errant(
    ctx: &mut Context,
    target: &str,
    executed: &GtidSet,
    frozen_set: &GtidSet,
    frozen: &Frozen,
) -> Result<GtidSet, StepError> {
    let mut errant = gtid::errant(executed, frozen_set);
    if ctx.plan.fence_scope(target).is_some() && !errant.is_empty() {
        let (session, flavor) = ctx.session_and_flavor(target).await?;
        let own = own_origin(session, flavor).await?;
        errant = errant.filter_origins(|origin| !own.matches(origin));
    }
    if frozen.scope.is_some() && !errant.is_empty() {
        let (session, source_flavor) = ctx.session_and_flavor(&frozen.cluster).await?;
        let since = server::executed(session, source_flavor).await?;
        errant = gtid::errant(&errant, &since);
    }
    Ok(errant)
}

/// Which transactions a server wrote itself.
enum OwnOrigin {
    Uuid(String),
    ServerId(u32),
}

impl OwnOrigin {
    fn matches(&self, origin: &Origin) -> bool {
        match (self, origin) {
            (OwnOrigin::Uuid(own), Origin::Mysql { uuid, .. }) => own == uuid,
            (OwnOrigin::ServerId(own), Origin::Mariadb { server, .. }) => own == server,
            _ => false,
        }
    }
}

async fn own_origin(session: &mut Session, flavor: Flavor) -> Result<OwnOrigin, StepError> {
    Ok(match flavor {
        Flavor::Mysql => {
            let uuid: Option<String> = session
                .query_first("read the server's uuid", "SELECT @@GLOBAL.server_uuid")
                .await?;
            OwnOrigin::Uuid(uuid.unwrap_or_default().to_lowercase())
        }
        Flavor::Mariadb => {
            let id: Option<u32> = session
                .query_first("read the server's id", "SELECT @@GLOBAL.server_id")
                .await?;
            OwnOrigin::ServerId(id.unwrap_or(0))
        }
    })
}

pub fn describe(_plan: &ValidatedPlan, targets: &[String], timeout: Duration) -> Description {
    Description {
        cluster: targets.join(", "),
        action: format!(
            "wait until {} applied exactly the frozen position (at most {} ms, and never past the freeze budget)",
            targets.join(", "),
            timeout.as_millis()
        ),
        commands: vec![
            "SELECT MASTER_GTID_WAIT('<frozen position>', <seconds left>)   -- MySQL: WAIT_FOR_EXECUTED_GTID_SET".into(),
        ],
        verify: vec![
            "SELECT @@GLOBAL.gtid_slave_pos on the target equals the frozen position".into(),
            "no GTID on the target that the source lacks (cutover topology shows errant_gtids)".into(),
        ],
        inverse: "nothing to undo (read-only)".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::CatchUp {
    type Observed = CatchUpObserved;

    fn time_bound(&self, _plan: &crate::plan::ValidatedPlan) -> std::time::Duration {
        self.timeout
    }

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<CatchUpObserved, StepError> {
        act(ctx, &self.targets, self.timeout).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(plan, &self.targets, self.timeout)
    }

    fn needs_followers(&self) -> bool {
        true
    }

    async fn live_fact(&self, plan: &crate::plan::ValidatedPlan) -> Option<String> {
        let mut facts = Vec::new();
        for target in &self.targets {
            facts.extend(super::position_of(plan, target).await);
        }
        Some(facts.join("; "))
    }

    fn is_mutating(&self) -> bool {
        false
    }
}

// How it is written in a plan, and checked.

impl crate::plan::KindSyntax for crate::plan::kinds::CatchUp {
    type Raw = crate::plan::model::TargetsStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        crate::plan::kinds::CatchUp {
            targets: c.targets(raw.targets.as_ref(), "catch_up target"),
            timeout: c.optional_duration(
                raw.timeout.as_ref(),
                c.gates().freeze_budget,
                std::time::Duration::from_millis(1),
                crate::plan::kinds::MAX_STEP_TIMEOUT,
                "catch_up timeout",
            ),
        }
    }
}
