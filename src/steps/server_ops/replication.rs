//! Point a replica at a source and prove the link runs: what `repoint`,
//! `reverse_replication`, `promote`'s inverse and the drills' failover and
//! failback all do.

use crate::mysql::{Flavor, Session, control, link};
use crate::plan::Scope;
use crate::steps::context::Context;
use crate::steps::{StepError, address_of};

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
