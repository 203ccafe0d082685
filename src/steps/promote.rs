//! `promote`: the point of no return. Refuse a candidate with errant GTIDs
//! or short of the frozen position; make the old primary's fence persistent;
//! then detach the candidate from replication and make it writable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catch_up;
use super::server_ops::{demotion, replication};
use super::{Description, StepError};
use crate::mysql::server;
use crate::mysql::{Flavor, GtidSet, Session, control, events, gtid, scope};
use crate::plan::ValidatedPlan;
use crate::steps::context::{Context, FenceScope, Frozen};

/// What `promote` journals: who was primary and the frozen position, for the
/// inverse; the candidate's previous source; the events it enabled.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PromoteObserved {
    pub cluster: String,
    /// A resumed run found the candidate promoted already.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_primary: bool,
    pub events_enabled: events::Changed,
    pub old_primary: Option<String>,
    pub frozen_position: Option<String>,
    pub frozen_executed: Option<String>,
    pub candidate_position: Option<String>,
    pub candidate_previous_source: Option<String>,
    pub scoped_fence: Option<Vec<String>>,
    pub scoped_fence_lifted: Vec<String>,
}

pub async fn act(ctx: &mut Context, candidate: &str) -> Result<PromoteObserved, StepError> {
    let old_primary = ctx.state.primary.clone();
    if old_primary == candidate {
        // Resumed after the candidate took over: make sure it is writable.
        let (session, flavor) = ctx.session_and_flavor(candidate).await?;
        if control::channel(session, flavor).await?.is_some() {
            control::reset_replication(session, flavor).await?;
        }
        control::set_read_only(session, flavor, false).await?;
        let lifted = lift_scoped_fence(ctx, candidate).await?;
        let events = enable_events(ctx, candidate).await;
        return Ok(PromoteObserved {
            cluster: candidate.to_string(),
            already_primary: true,
            events_enabled: events,
            scoped_fence_lifted: lifted,
            ..PromoteObserved::default()
        });
    }
    let mut frozen = ctx.state.frozen.clone().ok_or_else(|| {
        StepError::Failed("promote needs a frozen position: put a `freeze` step before it".into())
    })?;
    // The candidate's previous source, so the inverse can put it back.
    let previous_source = {
        let (session, flavor) = ctx.session_and_flavor(candidate).await?;
        control::channel(session, flavor)
            .await?
            .map(|channel| format!("{}:{}", channel.source_host, channel.source_port))
    };
    let scope = frozen.scope.clone();
    // Checks that still allow a clean refusal.
    check_candidate(ctx, candidate, &frozen).await?;
    let old_flavor = ctx.flavor(&old_primary).await?;
    if let Some(fence) = &mut ctx.fence {
        let flavor = old_flavor;
        let now = control::binlog_position(&mut fence.session, flavor).await?;
        // A scoped fence leaves the other databases writing: the position moves.
        if now != frozen.position && scope.is_none() {
            return Err(StepError::Refused(format!(
                "cluster `{old_primary}`: the position moved under the fence ({} → {now})",
                frozen.position
            )));
        }
        if !fence.commit() {
            return Err(StepError::Refused(format!(
                "the freeze budget on `{old_primary}` ran out before promotion; the fence was released"
            )));
        }
    }

    // Written ahead of the persistent fence, so that a crash from here on
    // resumes forward instead of undoing a promotion.
    ctx.store.mark_point_of_no_return(&ctx.run_id).await?;
    let scoped_fence = match &scope {
        None => {
            fence_old_primary(ctx, &old_primary).await?;
            None
        }
        Some(scope) => Some(fence_old_primary_scoped(ctx, &old_primary, scope).await?),
    };
    // Without a live fence (a resumed run), or when a scoped fence let go of
    // its tables (MySQL) or never stopped other databases, writes may have
    // landed before the persistent fence: the candidate must have them too.
    let (session, _) = ctx.session_and_flavor(&old_primary).await?;
    let position = control::binlog_position(session, old_flavor).await?;
    if position != frozen.position {
        let executed = server::executed(session, old_flavor).await?;
        frozen = Frozen {
            cluster: old_primary.clone(),
            position,
            executed: executed.to_string(),
            scope: scope.clone(),
        };
        ctx.state.frozen = Some(frozen.clone());
        let limit = ctx.plan.gates.freeze_budget.max(Duration::from_secs(5));
        catch_up::wait_one(ctx, candidate, &frozen, limit).await?;
    }

    let (session, flavor) = ctx.session_and_flavor(candidate).await?;
    if control::channel(session, flavor).await?.is_some() {
        control::reset_replication(session, flavor).await?;
    }
    control::set_read_only(session, flavor, false).await?;
    let position = control::binlog_position(session, flavor).await?;
    ctx.audit(
        candidate,
        "STOP ALL SLAVES; RESET SLAVE ALL; SET GLOBAL read_only = 0",
        "ok",
    )
    .await;
    let lifted = lift_scoped_fence(ctx, candidate).await?;
    let events = enable_events(ctx, candidate).await;
    ctx.state.previous_primary = Some(old_primary.clone());
    ctx.state.primary = candidate.to_string();
    tracing::info!("`{candidate}` promoted at {position}; `{old_primary}` is read-only");
    Ok(PromoteObserved {
        cluster: candidate.to_string(),
        already_primary: false,
        events_enabled: events,
        old_primary: Some(old_primary),
        frozen_position: Some(frozen.position),
        frozen_executed: Some(frozen.executed),
        candidate_position: Some(position),
        candidate_previous_source: previous_source,
        scoped_fence,
        scoped_fence_lifted: lifted,
    })
}

/// The lasting fence of `scope: databases` on the old primary (the plan's
/// source): its other databases keep writing. The fenced applications'
/// sessions end first: they wait on the freeze's locks, and on MariaDB a
/// revoked privilege reaches a session only when it reconnects. MySQL's
/// `ALTER SCHEMA … READ ONLY` waits for the freeze's own table locks, so
/// those go first; whatever slips in meanwhile reaches the candidate by the
/// catch-up that follows.
async fn fence_old_primary_scoped(
    ctx: &mut Context,
    old_primary: &str,
    scope: &FenceScope,
) -> Result<Vec<String>, StepError> {
    let flavor = ctx.flavor(old_primary).await?;
    let kept = ctx.plan.own_accounts(old_primary);
    // `gates.keep_sessions_of` keep their sessions, as on any demoted primary.
    let spared = demotion::kept_users(&ctx.plan, old_primary);
    let ended = demotion::end_sessions_in_scope(ctx, old_primary, scope, &spared).await?;
    if flavor == Flavor::Mysql
        && let Some(fence) = ctx.fence.as_mut().filter(|f| f.cluster == old_primary)
    {
        fence
            .session
            .exec("release the fenced tables", "UNLOCK TABLES")
            .await?;
    }
    let endpoint = ctx.endpoint(old_primary)?.clone();
    let mut session = Session::connect(&endpoint).await?;
    let wait = ctx.plan.gates.freeze_budget.as_secs().max(1);
    let fenced = async {
        session
            .exec(
                "bound the wait for the fenced databases",
                &format!("SET SESSION lock_wait_timeout = {wait}"),
            )
            .await?;
        scope::fence(&mut session, flavor, &scope.databases, &kept).await
    }
    .await;
    session.close().await;
    let done = fenced?;
    ctx.audit(
        old_primary,
        &format!(
            "scoped fence on {} ({ended} session(s) ended): {}",
            scope.databases.join(", "),
            done.join("; ")
        ),
        "ok",
    )
    .await;
    Ok(done)
}

/// On the plan's source under `scope: databases`, becoming primary again:
/// its databases take writes again (MySQL `READ ONLY = 0`, MariaDB the
/// recorded privileges granted back). Says what it did.
pub(super) async fn lift_scoped_fence(
    ctx: &mut Context,
    cluster: &str,
) -> Result<Vec<String>, StepError> {
    let Some(databases) = ctx.plan.fence_scope(cluster) else {
        return Ok(Vec::new());
    };
    let (session, flavor) = ctx.session_and_flavor(cluster).await?;
    let done = scope::lift(session, flavor, &databases).await?;
    if !done.is_empty() {
        ctx.audit(
            cluster,
            &format!("lift the scoped fence: {}", done.join("; ")),
            "ok",
        )
        .await;
    }
    Ok(done)
}

/// The new primary's scheduled events run from now on (as a replica it held
/// them disabled). Past the point of no return a failure here does not undo
/// the promotion: it is logged and audited for the operator to finish by hand.
async fn enable_events(ctx: &mut Context, cluster: &str) -> events::Changed {
    let enabled = async {
        // Inside the freeze: no new connection unless there is work.
        let schemas = ctx.plan.fence_scope(cluster);
        let (session, _) = ctx.session_and_flavor(cluster).await?;
        if !events::any(session, true, schemas.as_deref()).await? {
            return Ok(events::Changed::default());
        }
        let endpoint = ctx.endpoint(cluster)?.clone();
        let mut session = Session::connect(&endpoint).await?;
        let enabled = events::enable_on_new_primary(&mut session, schemas.as_deref()).await;
        session.close().await;
        enabled
    }
    .await;
    demotion::events_audited(ctx, cluster, "ENABLE", enabled).await
}

async fn check_candidate(
    ctx: &mut Context,
    candidate: &str,
    frozen: &Frozen,
) -> Result<(), StepError> {
    let (session, flavor) = ctx.session_and_flavor(candidate).await?;
    let frozen_set = GtidSet::parse(flavor, &frozen.executed)
        .map_err(|error| StepError::Failed(format!("frozen position: {error}")))?;
    let executed = server::executed(session, flavor).await?;
    let errant = catch_up::errant(ctx, candidate, &executed, &frozen_set, frozen).await?;
    if !errant.is_empty() {
        return Err(StepError::Refused(format!(
            "refusing to promote `{candidate}`: it has errant GTIDs {errant} that `{}` never had",
            frozen.cluster
        )));
    }
    if !executed.contains(&frozen_set) {
        return Err(StepError::Refused(format!(
            "refusing to promote `{candidate}`: it has not reached the frozen position {} ({} transaction(s) behind)",
            frozen.position,
            gtid::transactions_behind(flavor, &executed, &frozen_set)
        )));
    }
    Ok(())
}

/// `read_only = 1` on the old primary, through the fence connection when it
/// is alive (another connection would queue behind the global read lock).
async fn fence_old_primary(ctx: &mut Context, old_primary: &str) -> Result<(), StepError> {
    let flavor = ctx.flavor(old_primary).await?;
    if let Some(fence) = &mut ctx.fence
        && fence.cluster == old_primary
        && control::set_read_only(&mut fence.session, flavor, true)
            .await
            .is_ok()
    {
        ctx.audit(
            old_primary,
            "SET GLOBAL read_only = 1 (persistent fence)",
            "ok",
        )
        .await;
        return Ok(());
    }
    // The fence connection is gone, so its lock is gone too.
    let endpoint = ctx.endpoint(old_primary)?.clone();
    let mut session = Session::connect(&endpoint).await?;
    control::set_read_only(&mut session, flavor, true).await?;
    session.close().await;
    ctx.audit(
        old_primary,
        "SET GLOBAL read_only = 1 (persistent fence)",
        "ok",
    )
    .await;
    Ok(())
}

/// Demote the candidate back under the old primary. Only possible while it
/// has taken no writes of its own; after that a rollback is a reverse switchover.
pub async fn undo(
    ctx: &mut Context,
    candidate: &str,
    observed: &PromoteObserved,
) -> Result<(), StepError> {
    let old_primary = observed
        .old_primary
        .clone()
        .or_else(|| ctx.state.previous_primary.clone())
        .ok_or_else(|| StepError::Failed("the journal does not say who was primary".into()))?;
    let frozen_executed = observed.frozen_executed.as_deref().unwrap_or_default();
    let frozen_position = observed.frozen_position.as_deref().unwrap_or_default();
    let enabled = &observed.events_enabled.events;
    let flavor = ctx.flavor(candidate).await?;
    if !enabled.is_empty() {
        // Before read_only (MySQL's super_read_only refuses ALTER EVENT), in a
        // session of its own (each ALTER sets the event's session settings).
        let endpoint = ctx.endpoint(candidate)?.clone();
        let mut own = Session::connect(&endpoint).await?;
        let disabled = events::disable_on_replica(&mut own, flavor, Some(enabled), None).await;
        own.close().await;
        disabled?;
    }
    let (session, flavor) = ctx.session_and_flavor(candidate).await?;
    control::set_read_only(session, flavor, true).await?;
    let frozen_set = GtidSet::parse(flavor, frozen_executed)
        .map_err(|error| StepError::Failed(format!("frozen position: {error}")))?;
    let executed = server::executed(session, flavor).await?;
    let own = gtid::errant(&executed, &frozen_set);
    if !own.is_empty() {
        return Err(StepError::Failed(format!(
            "`{candidate}` took writes after promotion ({own}); demoting it would lose them. \
             It is read-only again; finish with `cutover resume` or reverse with `cutover rollback`"
        )));
    }
    if control::channel(session, flavor).await?.is_none() {
        control::set_replica_start(session, flavor, frozen_position).await?;
        replication::replicate_from(ctx, candidate, &old_primary).await?;
    }
    ctx.audit(
        candidate,
        "demote: SET GLOBAL read_only = 1; replicate from the old primary",
        "ok",
    )
    .await;
    let old_flavor = ctx.flavor(&old_primary).await?;
    if ctx.plan.fence_scope(&old_primary).is_some() {
        // Scoped: read_only was never set there; its databases were fenced.
        lift_scoped_fence(ctx, &old_primary).await?;
        ctx.state.primary = old_primary;
        return Ok(());
    }
    // A live fence still blocks writes until the freeze is undone; a second
    // connection would queue behind its lock, so use the fence's own.
    if let Some(fence) = ctx
        .fence
        .as_mut()
        .filter(|fence| fence.cluster == old_primary)
    {
        control::set_read_only(&mut fence.session, old_flavor, false).await?;
    } else {
        let (session, _) = ctx.session_and_flavor(&old_primary).await?;
        control::set_read_only(session, old_flavor, false).await?;
    }
    ctx.audit(&old_primary, "SET GLOBAL read_only = 0", "ok")
        .await;
    ctx.state.primary = old_primary;
    Ok(())
}

/// `old_primary`: the cluster that is primary when the step starts (the
/// plan's source going forward, the new primary in a reverse switchover).
pub fn describe(plan: &ValidatedPlan, old_primary: &str, candidate: &str) -> Description {
    let source = old_primary;
    let mut description = Description {
        cluster: candidate.to_string(),
        action: format!(
            "promote `{candidate}` (point of no return): refuse on errant GTIDs or short of the frozen position; \
             `{source}` read_only = 1; `{candidate}` leaves replication and becomes writable"
        ),
        commands: vec![
            format!("-- on {source}, through the fence connection:"),
            "SET GLOBAL read_only = 1   -- MySQL: super_read_only = 1".into(),
            format!("-- on {candidate}:"),
            "STOP ALL SLAVES; RESET SLAVE ALL   -- MySQL: STOP REPLICA; RESET REPLICA ALL".into(),
            "SET GLOBAL read_only = 0".into(),
            "-- each scheduled event it held disabled as a replica (SLAVESIDE_DISABLED), under its own definer, sql_mode, time zone and character set, outside the binary log:".into(),
            "SET SESSION sql_log_bin = 0; ALTER DEFINER = … EVENT … ENABLE".into(),
        ],
        verify: vec![
            format!("on {candidate}: SHOW ALL SLAVES STATUS is empty and SELECT @@read_only is 0"),
            format!("on {source}: SELECT @@read_only is 1"),
        ],
        inverse: format!(
            "while `{candidate}` has no writes of its own: read_only = 1 on it, CHANGE MASTER back to `{source}` from the frozen position, `{source}` read_only = 0; \
             after writes: a reverse switchover (`cutover rollback RUN_ID`)"
        ),
    };
    if let Some(databases) = plan.fence_scope(source) {
        let listed = databases.join(", ");
        description.action = format!(
            "promote `{candidate}` (point of no return): refuse on errant GTIDs or short of the frozen position; \
             on `{source}` only {listed} are fenced for good (scope: databases); `{candidate}` catches up with \
             `{source}`, leaves replication and becomes writable"
        );
        description.commands.splice(
            0..2,
            [
                format!("-- on {source}: KILL the sessions of {listed}'s applications; then, outside the binary log:"),
                format!("SET SESSION sql_log_bin = 0; ALTER SCHEMA <each of {listed}> READ ONLY = 1   -- MySQL (after UNLOCK TABLES on the fence connection)"),
                "REVOKE <their write privileges> ON <db>.* FROM <each application account>   -- MariaDB, recorded first in cutover.fenced_grants".into(),
            ],
        );
        description.verify[1] = format!(
            "on {source}: SELECT * FROM information_schema.SCHEMATA_EXTENSIONS shows READ ONLY=1 (MySQL); SELECT * FROM cutover.fenced_grants (MariaDB)"
        );
    }
    description
}

impl super::StepBehaviour for crate::plan::kinds::Promote {
    type Observed = PromoteObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<PromoteObserved, StepError> {
        act(ctx, &self.cluster).await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        observed: &PromoteObserved,
    ) -> Result<(), StepError> {
        undo(ctx, &self.cluster, observed).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(plan, &state.primary, &self.cluster)
    }

    fn needs(&self, _plan: &crate::plan::ValidatedPlan, needs: &mut super::PrecheckNeeds) {
        needs.candidates.insert(self.cluster.clone());
        needs.moves_replication = true;
    }

    fn needs_followers(&self) -> bool {
        true
    }

    fn establishes(&self) -> crate::plan::Established {
        crate::plan::Established::Primary
    }

    async fn live_fact(&self, plan: &crate::plan::ValidatedPlan) -> Option<String> {
        super::position_of(plan, &self.cluster).await
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    pub cluster: crate::plan::Located<String>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Promote {
    type Raw = PromoteStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        crate::plan::kinds::Promote {
            cluster: c.enabled_target(&raw.cluster, "promote candidate"),
        }
    }
}
