//! Each loaded target made a replica of the source from the snapshot's GTID position, proven running and caught up.

use super::*;

/// What `replicate` did on one target.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStart {
    pub cluster: String,
    pub caught_up: bool,
    pub error: Option<String>,
}

/// Wait in one-second steps until the replica has applied `position`, so a
/// replication error (binary logs purged since the snapshot, a bad password)
/// is reported at once instead of at the timeout.
pub async fn catch_up(
    session: &mut Session,
    flavor: Flavor,
    position: &str,
    timeout: Duration,
) -> Result<bool, String> {
    let deadline = Instant::now() + timeout;
    let waiting = crate::progress::Waiting::start(
        format!("`{}` catching up", session.endpoint().name),
        timeout,
    );
    let result = catch_up_within(session, flavor, position, deadline, &waiting).await;
    waiting.finish();
    result
}

pub(super) async fn catch_up_within(
    session: &mut Session,
    flavor: Flavor,
    position: &str,
    deadline: Instant,
    waiting: &crate::progress::Waiting,
) -> Result<bool, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let step = left.min(Duration::from_secs(1));
        if control::wait_for_position(session, flavor, position, step)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(true);
        }
        let channels = server::replication(session, flavor)
            .await
            .map_err(|e| e.to_string())?;
        waiting.update(&format!(
            "to {position}: {}",
            channels
                .iter()
                .map(|c| match c.seconds_behind_source {
                    Some(seconds) => format!("{seconds} s behind its source"),
                    None => "behind by an unknown time".to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
        // A thread that stopped on an error will not recover by itself; one
        // that is retrying a connection might.
        if let Some(error) = channels.iter().find_map(|c| {
            let io = (c.io_thread == server::ThreadState::Stopped)
                .then(|| c.last_io_error.clone())
                .flatten();
            let sql = (c.sql_thread == server::ThreadState::Stopped)
                .then(|| c.last_sql_error.clone())
                .flatten();
            io.or(sql).filter(|e| !e.is_empty())
        }) {
            return Err(format!(
                "cluster `{}`: replication stopped: {error}",
                session.endpoint().name
            ));
        }
        if left <= step {
            return Ok(false);
        }
    }
}

/// Make each target a replica of the source from `position` (the snapshot's),
/// then wait until it has applied what the source has now. When `resuming`
/// an interrupted start, a target already set up to replicate from the source
/// keeps its position (it may have applied transactions past the snapshot)
/// and is only started.
pub async fn replicate(
    plan: &ValidatedPlan,
    targets: &[String],
    position: &str,
    timeout: Duration,
    resuming: bool,
) -> Result<Vec<ReplicaStart>, SnapshotError> {
    let proof_bound = plan.gates.replication_start_timeout;
    let source = plan.source().clone();
    let targets = targets_of(plan, targets)?;
    let (user, password) = match &plan.replication {
        Some(replication) => (
            replication.user.clone(),
            crate::secret::resolve(&replication.password, "replication password")?,
        ),
        None => (
            source.user.clone(),
            crate::secret::resolve(
                &source.password,
                &format!("cluster `{}` password", source.name),
            )?,
        ),
    };
    let source_endpoint = Endpoint::for_cluster(&source)?;
    let endpoints: Vec<Endpoint> = targets
        .iter()
        .map(Endpoint::for_cluster)
        .collect::<Result<_, _>>()?;
    let filter = control::replicated_tables(plan.databases.as_deref());
    let starts = join_all(endpoints.iter().map(|endpoint| {
        let source = &source;
        let user = &user;
        let password = &password;
        let filter = &filter;
        async move {
            let mut session = Session::connect(endpoint).await?;
            let flavor = server::facts(&mut session).await?.flavor;
            // A replica takes no writes of its own: fence it before it starts.
            control::set_read_only(&mut session, flavor, true).await?;
            if resuming {
                let channels = server::replication(&mut session, flavor).await?;
                let configured = channels
                    .iter()
                    .find(|c| c.source_host == source.host && c.source_port == source.port);
                if let Some(channel) = configured {
                    control::ensure_replication_filter(&mut session, flavor, filter).await?;
                    let running = channel.io_thread == server::ThreadState::Running
                        && channel.sql_thread == server::ThreadState::Running;
                    if !running {
                        control::start_replication(&mut session, flavor).await?;
                    }
                    return Ok::<_, MysqlError>((session, flavor));
                }
            }
            control::reset_replication(&mut session, flavor).await?;
            control::set_replica_start(&mut session, flavor, position).await?;
            control::change_source(
                &mut session,
                flavor,
                &control::SourceSpec {
                    host: &source.host,
                    port: source.port,
                    user,
                    password,
                    tls: source.tls.is_some(),
                    filter,
                },
            )
            .await?;
            control::start_replication(&mut session, flavor).await?;
            Ok::<_, MysqlError>((session, flavor))
        }
    }))
    .await;
    // What the source has now is what each replica must reach.
    let mut source_session = Session::connect(&source_endpoint)
        .await
        .map_err(SnapshotError::Source)?;
    let source_flavor = server::facts(&mut source_session)
        .await
        .map_err(SnapshotError::Source)?
        .flavor;
    let target_position = control::binlog_position(&mut source_session, source_flavor)
        .await
        .map_err(SnapshotError::Source)?;
    source_session.close().await;
    let mut out = Vec::new();
    let waits = join_all(starts.into_iter().map(|start| {
        let target_position = target_position.clone();
        let source = &source;
        async move {
            match start {
                Ok((mut session, flavor)) => {
                    // Connected and running first: a refused login never catches up.
                    let proof = crate::mysql::link::await_running(
                        &mut session,
                        flavor,
                        (&source.name, &source.host, source.port),
                        None,
                        proof_bound,
                    )
                    .await;
                    let reached = match proof {
                        Ok(_) => catch_up(&mut session, flavor, &target_position, timeout).await,
                        Err(error) => Err(error.to_string()),
                    };
                    session.close().await;
                    reached
                }
                Err(error) => Err(error.to_string()),
            }
        }
    }))
    .await;
    for (target, result) in targets.iter().zip(waits) {
        out.push(match result {
            Ok(true) => ReplicaStart {
                cluster: target.name.clone(),
                caught_up: true,
                error: None,
            },
            Ok(false) => ReplicaStart {
                cluster: target.name.clone(),
                caught_up: false,
                error: Some(format!(
                    "cluster `{}` replicates from {} but did not reach {target_position} within {} s",
                    target.name,
                    source.name,
                    timeout.as_secs()
                )),
            },
            Err(error) => ReplicaStart {
                cluster: target.name.clone(),
                caught_up: false,
                error: Some(error),
            },
        });
    }
    Ok(out)
}
