//! Emergency failover, for when the primary is gone: pick the most advanced
//! healthy replica by GTID (refusing one with errant transactions), let it
//! apply its relay log, promote it, re-point the others under it and switch
//! DNS (compare-and-swap, verified on every authoritative server).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::DrillError;
use crate::mysql::{GtidSet, control, server};
use crate::plan::Cluster;
use crate::steps::context::Context;
use crate::steps::server_ops::{self, replication};

/// How long a replica may take to apply what it had received from the dead primary.
const RELAY_APPLY_LIMIT: Duration = Duration::from_secs(30);

/// What the failover saw of one DR cluster.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateView {
    pub cluster: String,
    /// Reachable, replicating from the failed primary, relay log applied.
    pub healthy: bool,
    /// Executed GTIDs once its relay log was applied.
    pub executed: Option<String>,
    pub transactions: u64,
    /// Transactions from an origin the failed primary's history never had.
    pub errant_gtids: Option<String>,
    pub problem: Option<String>,
}

/// The outcome of a failover.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    pub promoted: String,
    pub candidates: Vec<CandidateView>,
    /// Healthy clusters now replicating from the promoted one.
    pub repointed: Vec<String>,
    #[serde(skip)]
    pub promoted_at: Option<Instant>,
    #[serde(skip)]
    pub dns_switched_at: Option<Instant>,
}

/// Transactions of `executed` whose origin (MariaDB domain and server, MySQL
/// UUID) is not among `known`'s: written somewhere other than the primary's lineage.
pub fn foreign_transactions(executed: &GtidSet, known: &GtidSet) -> GtidSet {
    let origins: Vec<_> = known.origins().map(|(origin, _)| origin.clone()).collect();
    let mut errant = GtidSet::new();
    for (origin, intervals) in executed.origins() {
        if !origins.contains(origin) {
            for &(start, end) in intervals.ranges() {
                errant.add(origin.clone(), start, end);
            }
        }
    }
    errant
}

/// Look at one DR cluster and wait (bounded) until it has applied its relay log.
async fn inspect(
    ctx: &mut Context,
    name: &str,
    primary: &Cluster,
    baseline: &GtidSet,
) -> CandidateView {
    let mut view = CandidateView {
        cluster: name.to_string(),
        healthy: false,
        executed: None,
        transactions: 0,
        errant_gtids: None,
        problem: None,
    };
    let result = async {
        let (session, flavor) = ctx.session_and_flavor(name).await?;
        let deadline = Instant::now() + RELAY_APPLY_LIMIT;
        loop {
            let channels = server::replication(session, flavor).await?;
            let Some(channel) = channels
                .iter()
                .find(|c| c.source_host == primary.host && c.source_port == primary.port)
            else {
                return Ok::<_, crate::mysql::MysqlError>((
                    None,
                    Some(format!("does not replicate from `{}`", primary.name)),
                ));
            };
            if channel.sql_thread == server::ThreadState::Stopped
                && let Some(error) = channel.last_sql_error.as_ref().filter(|e| !e.is_empty())
            {
                return Ok((None, Some(format!("its applier stopped: {error}"))));
            }
            let executed = server::executed(session, flavor).await?;
            let received = channel
                .retrieved_gtids
                .as_deref()
                .and_then(|text| GtidSet::parse(flavor, text).ok())
                .unwrap_or_default();
            if executed.contains(&received) {
                return Ok((Some(executed), None));
            }
            if Instant::now() >= deadline {
                return Ok((
                    Some(executed),
                    Some(format!(
                        "did not apply its relay log within {} s",
                        RELAY_APPLY_LIMIT.as_secs()
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    match result {
        Ok((executed, problem)) => {
            if let Some(executed) = &executed {
                let errant = foreign_transactions(executed, baseline);
                view.transactions = executed.count();
                view.executed = Some(executed.to_string());
                view.errant_gtids = (!errant.is_empty()).then(|| errant.to_string());
            }
            view.healthy = problem.is_none() && executed.is_some();
            view.problem = problem;
        }
        Err(error) => view.problem = Some(format!("unreachable: {error}")),
    }
    view
}

/// The candidate to promote: the healthy one that has executed the most,
/// the plan's order breaking ties.
pub fn most_advanced(candidates: &[CandidateView]) -> Option<&CandidateView> {
    candidates
        .iter()
        .filter(|c| c.healthy)
        .fold(None, |best: Option<&CandidateView>, c| match best {
            Some(best) if best.transactions >= c.transactions => Some(best),
            _ => Some(c),
        })
}

/// Inspect the DR clusters and pick the one to promote, without changing anything.
pub async fn choose(
    ctx: &mut Context,
    dr: &[String],
    primary: &Cluster,
    baseline: &GtidSet,
) -> Result<(String, Vec<CandidateView>), DrillError> {
    let mut candidates = Vec::new();
    for name in dr {
        candidates.push(inspect(ctx, name, primary, baseline).await);
    }
    let Some(best) = most_advanced(&candidates) else {
        return Err(DrillError::Failover(format!(
            "no DR cluster can take over: {}",
            candidates
                .iter()
                .map(|c| format!("{}: {}", c.cluster, c.problem.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    };
    if let Some(errant) = &best.errant_gtids {
        return Err(DrillError::Failover(format!(
            "refusing to promote `{}`, the most advanced replica: it has errant GTIDs {errant} that `{}` never had",
            best.cluster, primary.name
        )));
    }
    Ok((best.cluster.clone(), candidates))
}

/// Promote the chosen candidate, re-point the other healthy ones, switch DNS.
pub async fn run(
    ctx: &mut Context,
    dr: &[String],
    primary: &Cluster,
    baseline: &GtidSet,
) -> Result<Failover, DrillError> {
    let (promoted, candidates) = choose(ctx, dr, primary, baseline).await?;
    {
        let (session, flavor) = ctx.session_and_flavor(&promoted).await?;
        control::reset_replication(session, flavor).await?;
        control::set_read_only(session, flavor, false).await?;
    }
    let promoted_at = Instant::now();
    ctx.audit(
        &promoted,
        &format!(
            "emergency promotion (`{}` is down): STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
            primary.name
        ),
        "ok",
    )
    .await;
    ctx.state.previous_primary = Some(primary.name.clone());
    ctx.state.primary = promoted.clone();
    // Past here `promoted` takes writes: a failure must say so.
    let after_promotion = |error: crate::steps::StepError| {
        DrillError::Failover(format!(
            "`{promoted}` was promoted (writable), then: {error}; finish by hand: re-point the \
             other replicas to it and switch DNS"
        ))
    };
    let mut repointed = Vec::new();
    for other in candidates
        .iter()
        .filter(|c| c.healthy && c.cluster != promoted)
    {
        replication::replicate_from(ctx, &other.cluster, &promoted)
            .await
            .map_err(after_promotion)?;
        repointed.push(other.cluster.clone());
    }
    let timeout = ctx.plan.gates.dns_verify_timeout;
    let observed = server_ops::dns::switch(ctx, &primary.name, &promoted, timeout)
        .await
        .map_err(after_promotion)?;
    // The record changed when the update was accepted, before every
    // authoritative server was seen answering it.
    let verify = Duration::from_millis(observed.verify_ms);
    let dns_switched_at = Instant::now()
        .checked_sub(verify)
        .unwrap_or_else(Instant::now);
    Ok(Failover {
        promoted,
        candidates,
        repointed,
        promoted_at: Some(promoted_at),
        dns_switched_at: Some(dns_switched_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::Flavor;

    fn view(name: &str, healthy: bool, transactions: u64) -> CandidateView {
        CandidateView {
            cluster: name.into(),
            healthy,
            executed: None,
            transactions,
            errant_gtids: None,
            problem: None,
        }
    }

    #[test]
    fn the_most_advanced_healthy_replica_wins_and_ties_keep_plan_order() {
        let candidates = [
            view("c1", true, 100),
            view("c2", false, 500),
            view("c3", true, 120),
            view("c6", true, 120),
        ];
        assert_eq!(most_advanced(&candidates).unwrap().cluster, "c3");
        assert!(most_advanced(&[view("c1", false, 1)]).is_none());
    }

    #[test]
    fn transactions_from_an_unknown_origin_are_errant() {
        let primary = GtidSet::parse(Flavor::Mariadb, "0-10-500,0-11-20").unwrap();
        let replica = GtidSet::parse(Flavor::Mariadb, "0-10-520,0-11-20,0-12-3").unwrap();
        assert_eq!(
            foreign_transactions(&replica, &primary).to_string(),
            "0-12-3"
        );
        let clean = GtidSet::parse(Flavor::Mariadb, "0-10-530").unwrap();
        assert!(foreign_transactions(&clean, &primary).is_empty());
    }
}
