//! `freeze`: fence the primary against writes on a connection whose loss
//! releases the fence, drain or kill client sessions, capture the position.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Description, StepError, millis};
use crate::mysql::server;
use crate::mysql::{MysqlError, Session};
use crate::mysql::{control, scope};
use crate::plan::ValidatedPlan;
use crate::steps::context::{Context, Fence, FenceScope, Frozen};

/// What `freeze` journals: the frozen position and what the drain did.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FreezeObserved {
    pub cluster: String,
    pub frozen_position: String,
    pub frozen_executed: String,
    pub drain_ms: u64,
    pub killed_sessions: usize,
    pub budget_ms: u64,
    pub scope: Option<FenceScope>,
}

pub async fn act(
    ctx: &mut Context,
    cluster: &str,
    drain_timeout: Duration,
    budget: Duration,
) -> Result<FreezeObserved, StepError> {
    if let Some(fence) = &ctx.fence {
        return Err(StepError::Failed(format!(
            "`{}` is already frozen by this run",
            fence.cluster
        )));
    }
    let flavor = ctx.flavor(cluster).await?;
    let endpoint = ctx.endpoint(cluster)?.clone();
    let mut fence_session = Session::connect(&endpoint).await?;
    let connection_id = control::connection_id(&mut fence_session).await?;
    // If this process hangs or is cut off, the server drops the idle fence
    // connection (and its lock) at most two seconds after the budget.
    let idle_limit = budget.as_secs() + 2;
    fence_session
        .exec(
            "bound the fence connection",
            &format!(
                "SET SESSION wait_timeout = {idle_limit}, SESSION lock_wait_timeout = {idle_limit}"
            ),
        )
        .await?;

    let own_users = ctx.plan.own_accounts(cluster);
    let (lock, scope) = match ctx.plan.fence_scope(cluster) {
        None => ("FLUSH TABLES WITH READ LOCK".to_string(), None),
        Some(databases) => {
            let tables = scope::tables(&mut fence_session, &databases).await?;
            if tables.is_empty() {
                fence_session.close().await;
                return Err(StepError::Refused(format!(
                    "cluster `{cluster}`: `scope: databases` found no table in {} to fence",
                    databases.join(", ")
                )));
            }
            let accounts = scope::accounts(&mut fence_session, &databases, &own_users).await?;
            scope::prepare(&mut fence_session, flavor).await?;
            (
                scope::lock_statement(&tables),
                Some(FenceScope {
                    databases,
                    accounts,
                }),
            )
        }
    };
    // Writers queue from the moment the lock is requested, not from when it
    // is granted: the freeze, its budget and `write_freeze_ms` count from here.
    let requested = Instant::now();
    let (killed, fence_session) = lock_with_drain(
        ctx,
        cluster,
        fence_session,
        connection_id,
        drain_timeout,
        &own_users,
        (&lock, scope.as_ref()),
    )
    .await?;
    let drain = requested.elapsed();
    let audited = match &scope {
        None => "FLUSH TABLES WITH READ LOCK (session-held fence)".to_string(),
        Some(scope) => format!(
            "FLUSH TABLES … WITH READ LOCK on {} (session-held fence)",
            scope.databases.join(", ")
        ),
    };
    ctx.audit(cluster, &audited, "ok").await;

    let mut fence = Fence::new(
        cluster.to_string(),
        fence_session,
        connection_id,
        requested,
        budget,
    );
    let position = control::binlog_position(&mut fence.session, flavor).await?;
    let executed = server::executed(&mut fence.session, flavor).await?;
    // Nothing may commit under the fence; a moving position means something
    // bypasses it. A scoped fence leaves the other databases writing, so it
    // is not read again there.
    if scope.is_none() {
        let again = control::binlog_position(&mut fence.session, flavor).await?;
        if again != position {
            fence.release().await;
            return Err(StepError::Refused(format!(
                "cluster `{cluster}`: the GTID position moved under the write fence ({position} → {again}); \
                 something writes without the global read lock (a replication thread or an event?)"
            )));
        }
    }
    ctx.freeze_started = Some(requested);
    ctx.state.frozen = Some(Frozen {
        cluster: cluster.to_string(),
        position: position.clone(),
        executed: executed.to_string(),
        scope: scope.clone(),
    });
    ctx.fence = Some(fence);
    tracing::info!(
        "`{cluster}` frozen at {position} (writes held {} ms so far, {} ms of it draining, {killed} session(s) killed, budget {} ms)",
        requested.elapsed().as_millis(),
        drain.as_millis(),
        budget.as_millis()
    );
    Ok(FreezeObserved {
        cluster: cluster.to_string(),
        frozen_position: position,
        frozen_executed: executed.to_string(),
        drain_ms: millis(drain),
        killed_sessions: killed,
        budget_ms: millis(budget),
        scope,
    })
}

/// Take the global read lock (or, scoped, the fenced tables' locks). Busy
/// client sessions (scoped: those of the fenced applications) get
/// `drain_timeout` to finish; then they are killed, and after a second
/// `drain_timeout` the lock attempt is abandoned.
async fn lock_with_drain(
    ctx: &Context,
    cluster: &str,
    mut fence_session: Session,
    connection_id: u64,
    drain_timeout: Duration,
    own_users: &[String],
    (lock, scope): (&str, Option<&FenceScope>),
) -> Result<(usize, Session), StepError> {
    let endpoint = ctx.endpoint(cluster)?.clone();
    let excluded: Vec<String> = own_users.to_vec();
    let scope = scope.cloned();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(drain_timeout).await;
        let mut session = Session::connect(&endpoint).await?;
        let users: Vec<&str> = excluded.iter().map(String::as_str).collect();
        let mut killed = 0usize;
        for client in control::client_sessions(&mut session, &users).await? {
            let in_scope = scope.as_ref().is_none_or(|scope| scope.covers(&client));
            if client.busy && client.id != connection_id && in_scope {
                control::kill_connection(&mut session, client.id).await?;
                killed += 1;
            }
        }
        tokio::time::sleep(drain_timeout.max(Duration::from_millis(200))).await;
        // Still waiting: give up the attempt rather than queue behind it.
        let _ = session
            .exec(
                "abandon the lock attempt",
                &format!("KILL QUERY {connection_id}"),
            )
            .await;
        session.close().await;
        Ok::<usize, MysqlError>(killed)
    });
    let limit = drain_timeout * 2 + Duration::from_secs(5);
    let locked = fence_session
        .exec_within(limit, "take the write lock", lock)
        .await;
    let killed = if killer.is_finished() {
        killer.await.ok().and_then(Result::ok).unwrap_or(0)
    } else {
        killer.abort();
        0
    };
    match locked {
        Ok(()) => Ok((killed, fence_session)),
        Err(error) => {
            fence_session.close().await;
            Err(StepError::Refused(format!(
                "cluster `{cluster}`: could not fence writes within the drain timeout ({} ms, {killed} busy session(s) killed): {error}",
                drain_timeout.as_millis()
            )))
        }
    }
}

/// Release the fence and make sure the primary takes writes again.
pub async fn undo(ctx: &mut Context, cluster: &str) -> Result<(), StepError> {
    if let Some(fence) = ctx.fence.take() {
        let held = fence.release().await;
        ctx.write_freeze_ms = Some(millis(held));
        ctx.audit(cluster, "UNLOCK TABLES (release fence)", "ok")
            .await;
    }
    if ctx.state.primary == cluster {
        let (session, flavor) = ctx.session_and_flavor(cluster).await?;
        if control::read_only(session).await? {
            control::set_read_only(session, flavor, false).await?;
            ctx.audit(cluster, "SET GLOBAL read_only = 0", "ok").await;
        }
    }
    Ok(())
}

pub fn describe(
    plan: &ValidatedPlan,
    cluster: &str,
    drain_timeout: Duration,
    budget: Duration,
) -> Description {
    if let Some(databases) = plan.fence_scope(cluster) {
        return Description {
            cluster: cluster.to_string(),
            action: format!(
                "fence writes to {} only on `{cluster}` (scope: databases): their tables locked on a dedicated connection; \
                 busy sessions of their applications get {} ms, then are killed; budget {} ms; the other databases keep writing",
                databases.join(", "),
                drain_timeout.as_millis(),
                budget.as_millis()
            ),
            commands: vec![
                format!("SET SESSION wait_timeout = {}", budget.as_secs() + 2),
                format!(
                    "FLUSH TABLES <every table of {}> WITH READ LOCK",
                    databases.join(", ")
                ),
                "SELECT @@GLOBAL.gtid_binlog_pos   -- the frozen position (MySQL: @@GLOBAL.gtid_executed)".into(),
            ],
            verify: vec![
                "SHOW PROCESSLIST: the applications' writes to those databases wait on 'Waiting for table metadata lock'; other databases' writes run".into(),
            ],
            inverse: "UNLOCK TABLES (or close the fence connection)".into(),
        };
    }
    Description {
        cluster: cluster.to_string(),
        action: format!(
            "fence writes on `{cluster}`: global read lock on a dedicated connection; busy client sessions get {} ms, then are killed; budget {} ms",
            drain_timeout.as_millis(),
            budget.as_millis()
        ),
        commands: vec![
            format!("SET SESSION wait_timeout = {}", budget.as_secs() + 2),
            "FLUSH TABLES WITH READ LOCK".into(),
            "SELECT @@GLOBAL.gtid_binlog_pos   -- the frozen position (MySQL: @@GLOBAL.gtid_executed)".into(),
        ],
        verify: vec![
            "SELECT @@GLOBAL.gtid_binlog_pos twice: it must not move".into(),
            "SHOW PROCESSLIST: application writes wait on 'Waiting for backup lock' / global read lock".into(),
        ],
        inverse: "UNLOCK TABLES (or close the fence connection); read_only stays 0".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Freeze {
    type Observed = FreezeObserved;

    fn time_bound(&self, _plan: &crate::plan::ValidatedPlan) -> std::time::Duration {
        self.drain_timeout * 2 + self.budget
    }

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<FreezeObserved, StepError> {
        act(ctx, &self.cluster, self.drain_timeout, self.budget).await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        _observed: &FreezeObserved,
    ) -> Result<(), StepError> {
        undo(ctx, &self.cluster).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(plan, &self.cluster, self.drain_timeout, self.budget)
    }

    fn needs(&self, _plan: &crate::plan::ValidatedPlan, needs: &mut super::PrecheckNeeds) {
        needs.freezes.insert(self.cluster.clone());
    }

    async fn live_fact(&self, plan: &crate::plan::ValidatedPlan) -> Option<String> {
        super::position_of(plan, &self.cluster).await
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    /// Default: the source.
    #[serde(default)]
    pub cluster: Option<crate::plan::Located<String>>,
    #[serde(default)]
    pub drain_timeout: Option<crate::plan::Located<crate::plan::model::HumanDuration>>,
    #[serde(default)]
    pub budget_ms: Option<crate::plan::Located<i64>>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Freeze {
    type Raw = FreezeStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        let gates = c.gates().clone();
        crate::plan::kinds::Freeze {
            cluster: match &raw.cluster {
                Some(cluster) => c.enabled_cluster(cluster),
                None => c.source_name(),
            },
            drain_timeout: c.optional_duration(
                raw.drain_timeout.as_ref(),
                gates.drain_timeout,
                std::time::Duration::ZERO,
                std::time::Duration::from_secs(600),
                "freeze drain_timeout",
            ),
            budget: raw.budget_ms.as_ref().map_or(gates.freeze_budget, |value| {
                c.millis(value, 100, 600_000, "freeze budget_ms")
            }),
        }
    }
}
