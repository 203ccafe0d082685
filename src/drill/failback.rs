//! Failback: bring the failed primary back fenced, rejoin it as a replica of
//! the new primary only if it holds nothing the new primary lacks (no errant
//! transactions), and optionally switch the primary role back to it.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{DrillError, Progress};
use crate::mysql::{control, gtid, server};
use crate::plan::{Drill, DrillFailure};
use crate::steps::context::Context;
use crate::steps::server_ops::{self, replication};

/// How long the recovered server may take to accept connections.
const RECOVER_LIMIT: Duration = Duration::from_secs(90);
/// How long the rejoined server may take to catch up with the new primary.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct FailbackReport {
    /// The server that failed and came back.
    pub cluster: String,
    pub rejoined: bool,
    pub replicating_from: Option<String>,
    /// What it held that the new primary never had (acknowledged writes that
    /// never left it): it cannot rejoin as it is.
    pub errant_gtids: Option<String>,
    pub switched_back: bool,
    pub error: Option<String>,
}

/// Rejoin `failed` under `promoted`, then switch back if the drill says so.
pub(super) async fn run(
    ctx: &mut Context,
    drill: &Drill,
    failure: DrillFailure,
    failed: &str,
    promoted: &str,
    progress: &mut Progress,
) -> FailbackReport {
    let mut report = FailbackReport {
        cluster: failed.to_string(),
        rejoined: false,
        replicating_from: None,
        errant_gtids: None,
        switched_back: false,
        error: None,
    };
    if let Err(error) = rejoin(ctx, drill, failure, failed, promoted, progress, &mut report).await {
        report.error = Some(error.to_string());
        return report;
    }
    if drill.switch_back {
        ctx.step = "switch-back".into();
        match crate::engine::switchover(ctx, failed, "drill-back").await {
            Ok(()) => {
                report.switched_back = true;
                report.replicating_from = None;
                progress.event("switched_back", format!("`{failed}` is primary again"));
            }
            Err(error) => report.error = Some(format!("switching back to `{failed}`: {error}")),
        }
    }
    report
}

async fn rejoin(
    ctx: &mut Context,
    drill: &Drill,
    failure: DrillFailure,
    failed: &str,
    promoted: &str,
    progress: &mut Progress,
    report: &mut FailbackReport,
) -> Result<(), DrillError> {
    if failure != DrillFailure::Planned {
        ctx.step = "recover".into();
        server_ops::hook::run(ctx, &drill.recover, drill.hook_timeout, Some(failed)).await?;
        let deadline = Instant::now() + RECOVER_LIMIT;
        loop {
            match ctx.session(failed).await {
                Ok(_) => break,
                Err(error) if Instant::now() >= deadline => {
                    return Err(DrillError::Failback(format!(
                        "`{failed}` did not come back within {} s after `{}`: {error}",
                        RECOVER_LIMIT.as_secs(),
                        drill.recover.join(" ")
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        // Whatever the recover command did, it takes no writes from here on.
        let (session, flavor) = ctx.session_and_flavor(failed).await?;
        control::set_read_only(session, flavor, true).await?;
        progress.event("recovered", format!("`{failed}` is back, read-only"));
    }
    let plan = ctx.plan.clone();
    let (session, flavor) = ctx.session_and_flavor(promoted).await?;
    let primary_executed = server::executed(session, flavor).await?;
    let (session, flavor) = ctx.session_and_flavor(failed).await?;
    let executed = server::executed(session, flavor).await?;
    let errant = gtid::errant(&executed, &primary_executed);
    if !errant.is_empty() {
        report.errant_gtids = Some(errant.to_string());
        return Err(DrillError::Failback(format!(
            "`{failed}` holds {errant}, which `{promoted}` never had (writes it took that never \
             reached a replica): it cannot rejoin as it is; rebuild it from `{promoted}` with a snapshot"
        )));
    }
    if failure != DrillFailure::Planned {
        // A former primary continues from what it holds itself, unless an
        // earlier (interrupted) attempt already pointed it at `promoted`.
        let (host, port) = crate::steps::address_of(&plan, promoted);
        let already = control::channel(session, flavor)
            .await?
            .is_some_and(|c| c.source_host == host && c.source_port == port);
        if !already {
            let position = control::binlog_position(session, flavor).await?;
            control::set_replica_start(session, flavor, &position).await?;
        }
        replication::replicate_from(ctx, failed, promoted).await?;
    }
    let (session, primary_flavor) = ctx.session_and_flavor(promoted).await?;
    let target = control::binlog_position(session, primary_flavor).await?;
    let (session, flavor) = ctx.session_and_flavor(failed).await?;
    if !control::wait_for_position(session, flavor, &target, CATCH_UP_LIMIT).await? {
        return Err(DrillError::Failback(format!(
            "`{failed}` replicates from `{promoted}` but did not reach {target} within {} s",
            CATCH_UP_LIMIT.as_secs()
        )));
    }
    let channel = control::channel(session, flavor).await?;
    report.replicating_from = channel.map(|c| format!("{}:{}", c.source_host, c.source_port));
    report.rejoined = true;
    progress.event(
        "rejoined",
        format!("`{failed}` replicates from `{promoted}` with no errant GTIDs"),
    );
    Ok(())
}
