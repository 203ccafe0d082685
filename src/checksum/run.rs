//! `checksum::run`: the comparison from connecting to the report, one
//! function per stage of the module's "Flow:".

use super::*;

/// Index of the source compared at the common point, and of the source read live.
pub(super) const SOURCE_AT_POINT: usize = 0;

pub(super) const SOURCE_LIVE: usize = 1;

pub(super) const FIRST_TARGET: usize = 2;

/// Session settings every comparing session shares: TIMESTAMP text in UTC,
/// repeatable-read snapshots.
pub(super) const SESSION_SETUP: &str = "SET SESSION time_zone = '+00:00'; \
     SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ";

pub(super) struct ClusterConnection {
    cluster: Cluster,
    endpoint: Endpoint,
    flavor: Flavor,
    dialect: Dialect,
}

pub(super) async fn connect(endpoint: &Endpoint) -> Result<Session, MysqlError> {
    let mut session = Session::connect(endpoint).await?;
    session.exec("prepare the session", SESSION_SETUP).await?;
    Ok(session)
}

pub(super) async fn server_version(session: &mut Session) -> Result<String, MysqlError> {
    Ok(session
        .query_first::<String>("read the server version", "SELECT VERSION()")
        .await?
        .unwrap_or_default())
}

/// Inside a freeze: check the target holds the frozen position, then snapshot.
pub(super) async fn at_frozen_position(
    control: &mut TargetControl,
    frozen: &str,
    sessions: &mut [Session],
) -> Result<(), String> {
    let reached = crate::mysql::control::wait_for_position(
        &mut control.session,
        control.flavor,
        frozen,
        Duration::from_secs(5),
    )
    .await
    .map_err(|e| e.to_string())?;
    if !reached {
        return Err(format!(
            "cluster `{}` has not applied the frozen position {frozen}",
            control.name
        ));
    }
    point::open_snapshots(sessions.iter_mut().collect())
        .await
        .map_err(|e| e.to_string())
}

/// Pause the consistent targets, hold the source's commits briefly (each
/// attempt within `limits.max_stall`), bring each target to
/// the source's position and snapshot it there, then resume every paused target.
/// Returns the point and the targets that could not join it.
pub(super) async fn establish_point(
    source_control: &mut Session,
    spare: &mut Session,
    flavor: Flavor,
    controls: &mut [Option<TargetControl>],
    sessions: &mut [Vec<Session>],
    consistent: &[usize],
    limits: point::PointLimits,
) -> Result<(point::SourcePoint, Vec<(usize, String)>), point::PointError> {
    let mut failures = Vec::new();
    let paused_results = join_all(
        controls
            .iter_mut()
            .enumerate()
            .filter(|(t, _)| consistent.contains(t))
            .filter_map(|(t, control)| Some((t, control.as_mut()?)))
            .map(|(t, control)| async move { (t, point::pause(control).await) }),
    )
    .await;
    let mut paused = Vec::new();
    for (t, result) in paused_results {
        match result {
            Ok(()) => paused.push(t),
            Err(error) => failures.push((t, error.to_string())),
        }
    }
    let (source_sessions, target_sessions) = sessions.split_at_mut(FIRST_TARGET);
    let locked = point::lock_source(
        source_control,
        spare,
        flavor,
        source_sessions[SOURCE_AT_POINT].iter_mut().collect(),
        limits,
    )
    .await;
    let brought = match &locked {
        Ok(source_point) => {
            join_all(
                controls
                    .iter_mut()
                    .zip(target_sessions.iter_mut())
                    .enumerate()
                    .filter(|(t, _)| paused.contains(t))
                    .filter_map(|(t, (control, list))| Some((t, control.as_mut()?, list)))
                    .map(|(t, control, list)| {
                        let position = source_point.position.clone();
                        async move {
                            let result = point::bring_to(
                                control,
                                &position,
                                limits.give_up_after,
                                list.iter_mut().collect(),
                            )
                            .await;
                            // Replication resumes whatever happened above.
                            let resumed = point::resume(control).await;
                            (t, result, resumed)
                        }
                    }),
            )
            .await
        }
        Err(_) => {
            join_all(
                controls
                    .iter_mut()
                    .enumerate()
                    .filter(|(t, _)| paused.contains(t))
                    .filter_map(|(t, control)| Some((t, control.as_mut()?)))
                    .map(|(t, control)| async move { (t, Ok(()), point::resume(control).await) }),
            )
            .await
        }
    };
    for (t, result, resumed) in brought {
        if let Err(error) = resumed {
            tracing::error!(
                "{error}: replication is stopped there; start it with START SLAVE (MariaDB) or START REPLICA (MySQL)"
            );
            failures.push((t, error.to_string()));
        } else if let Err(error) = result {
            failures.push((t, error));
        }
    }
    Ok((locked?, failures))
}

pub(super) fn describe_shape_difference(
    table: &TableSpec,
    shape: Option<&[(String, String)]>,
) -> String {
    let Some(shape) = shape else {
        return format!("table {} does not exist", table.display_name());
    };
    let ours = table.shape();
    let missing: Vec<String> = ours
        .iter()
        .filter(|c| !shape.contains(c))
        .map(|(name, data_type)| format!("{name} {data_type}"))
        .collect();
    let extra: Vec<String> = shape
        .iter()
        .filter(|c| !ours.contains(c))
        .map(|(name, data_type)| format!("{name} {data_type}"))
        .collect();
    if missing.is_empty() && extra.is_empty() {
        "columns are in a different order".to_string()
    } else {
        format!(
            "columns differ: the source has [{}], this cluster has [{}]",
            missing.join(", "),
            extra.join(", ")
        )
    }
}

/// Compare the plan's source with its targets, stage by stage as the module's
/// "Flow:" names them.
pub async fn run(
    plan: &ValidatedPlan,
    options: &ChecksumOptions,
) -> Result<ChecksumReport, ChecksumError> {
    let started = Instant::now();
    let targets = selected_targets(plan, options)?;
    let mut warnings = Vec::new();
    let mut clusters = Clusters::connect(plan, &targets, options, &mut warnings).await?;
    let tables =
        discover_tables(&mut clusters.source_control, plan, options, &mut warnings).await?;
    let shapes = compare_shapes(&mut clusters, &tables).await;
    let money = money_columns(&tables, &options.money_columns);
    warn_unmatched_money_columns(&tables, &money, options, &mut warnings);
    let bases = classify_targets(&mut clusters, plan, options).await;
    let workers = worker_count(plan, &clusters, &bases, options);
    let mut open = WorkerSessions::open(&clusters, &targets, &bases, workers).await?;
    let (position, source_lock_ms) =
        take_point(plan, options, &mut clusters, &bases, &mut open).await?;
    let (slots, participant_errors) = open.hand_out(workers, &clusters.target_errors).await;
    let shared = Arc::new(Shared::new(
        tables,
        open.participants,
        money,
        shapes.excluded,
        options.chunk_time,
    ));
    for (p, error) in participant_errors.iter().enumerate() {
        if let Some(error) = error {
            shared.fail(p, error.clone());
        }
    }
    let reference_source = if open.any_at_point {
        SOURCE_AT_POINT
    } else {
        SOURCE_LIVE
    };
    let setup = started.elapsed();
    let compared = super::chunks::compare_chunks(
        &shared,
        open.walker,
        reference_source,
        slots,
        workers,
        options,
    )
    .await;
    clusters.close().await;
    let mut report = compared.tally.report(
        &shared,
        &bases,
        shapes.differences,
        position,
        source_lock_ms,
        workers,
        warnings,
        started.elapsed(),
    );
    if options.stats {
        report.stats = Some(compared.stats.finish(
            &shared,
            setup,
            compared.elapsed,
            compared.key_walk,
            workers,
            started.elapsed(),
        ));
    }
    Ok(report)
}

fn selected_targets(
    plan: &ValidatedPlan,
    options: &ChecksumOptions,
) -> Result<Vec<Cluster>, ChecksumError> {
    if options.targets.is_empty() {
        return Ok(plan.enabled_targets().cloned().collect());
    }
    options
        .targets
        .iter()
        .map(|name| {
            plan.enabled_targets()
                .find(|c| &c.name == name)
                .cloned()
                .ok_or_else(|| ChecksumError::UnknownTarget(name.clone()))
        })
        .collect()
}

/// The source and every target, connected once for control; a target that
/// cannot be reached is recorded and left out, the source is required.
pub(super) struct Clusters {
    pub(super) source: ClusterConnection,
    pub(super) source_control: Session,
    pub(super) controls: Vec<Option<TargetControl>>,
    pub(super) connections: Vec<Option<ClusterConnection>>,
    pub(super) target_errors: Vec<Option<String>>,
}

impl Clusters {
    async fn connect(
        plan: &ValidatedPlan,
        targets: &[Cluster],
        options: &ChecksumOptions,
        warnings: &mut Vec<String>,
    ) -> Result<Clusters, ChecksumError> {
        let source_cluster = plan.source().clone();
        let source_endpoint = Endpoint::for_cluster(&source_cluster)?;
        let target_endpoints: Vec<Endpoint> = targets
            .iter()
            .map(Endpoint::for_cluster)
            .collect::<Result<_, _>>()?;
        let mut source_control = connect(&source_endpoint)
            .await
            .map_err(ChecksumError::Source)?;
        let source_version = server_version(&mut source_control)
            .await
            .map_err(ChecksumError::Source)?;
        let source_flavor = Flavor::from_version(&source_version);
        let dialect_for = |flavor: Flavor, version: &str| Dialect {
            json: JsonNormaliser::for_server(flavor, version),
            float_precision: options.float_precision,
        };
        let source = ClusterConnection {
            cluster: source_cluster,
            endpoint: source_endpoint,
            flavor: source_flavor,
            dialect: dialect_for(source_flavor, &source_version),
        };
        let mut target_errors: Vec<Option<String>> = vec![None; targets.len()];
        let mut controls: Vec<Option<TargetControl>> = Vec::new();
        let mut connections: Vec<Option<ClusterConnection>> = Vec::new();
        let connected = join_all(target_endpoints.iter().map(|endpoint| async move {
            let mut session = connect(endpoint).await?;
            let version = server_version(&mut session).await?;
            Ok::<_, MysqlError>((session, version))
        }))
        .await;
        for (i, result) in connected.into_iter().enumerate() {
            match result {
                Ok((session, version)) => {
                    let flavor = Flavor::from_version(&version);
                    controls.push(Some(TargetControl {
                        name: targets[i].name.clone(),
                        flavor,
                        session,
                        channel: None,
                    }));
                    connections.push(Some(ClusterConnection {
                        cluster: targets[i].clone(),
                        endpoint: target_endpoints[i].clone(),
                        flavor,
                        dialect: dialect_for(flavor, &version),
                    }));
                }
                Err(error) => {
                    target_errors[i] = Some(error.to_string());
                    controls.push(None);
                    connections.push(None);
                }
            }
        }
        // Only a comparison across flavors can differ by JSON formatting alone.
        if connections
            .iter()
            .flatten()
            .any(|c| c.flavor != source.flavor)
        {
            warnings.push(
                "JSON columns are normalised differently by MySQL and MariaDB; a JSON column \
                 compared across flavors may report differences that are only formatting"
                    .to_string(),
            );
        }
        Ok(Clusters {
            source,
            source_control,
            controls,
            connections,
            target_errors,
        })
    }

    async fn close(self) {
        self.source_control.close().await;
        for control in self.controls.into_iter().flatten() {
            control.session.close().await;
        }
    }
}

async fn discover_tables(
    source_control: &mut Session,
    plan: &ValidatedPlan,
    options: &ChecksumOptions,
    warnings: &mut Vec<String>,
) -> Result<Vec<TableSpec>, ChecksumError> {
    let tables = schema::discover(source_control, plan.databases.as_deref(), &options.tables)
        .await
        .map_err(ChecksumError::Source)?;
    if tables.is_empty() {
        return Err(ChecksumError::NoTables(format!(
            "nothing on `{}` matches {}; check `databases:` in the plan or the table patterns",
            plan.source().name,
            if options.tables.is_empty() {
                "the plan's databases".to_string()
            } else {
                options.tables.join(", ")
            }
        )));
    }
    for table in tables.iter().filter(|t| t.key.is_none()) {
        let warning = format!(
            "{} has no primary key or NOT NULL unique key: compared as a whole table, and a \
             difference cannot be narrowed to rows",
            table.display_name()
        );
        tracing::warn!("{warning}");
        warnings.push(warning);
    }
    Ok(tables)
}

/// Tables whose shape differs on a target: that target is left out of them.
struct Shapes {
    /// (table, participant) pairs not compared.
    excluded: Vec<(usize, usize)>,
    differences: Vec<Vec<SchemaDifference>>,
}

async fn compare_shapes(clusters: &mut Clusters, tables: &[TableSpec]) -> Shapes {
    let mut excluded = Vec::new();
    let mut differences: Vec<Vec<SchemaDifference>> = vec![Vec::new(); tables.len()];
    for (t, control) in clusters.controls.iter_mut().enumerate() {
        let Some(control) = control else { continue };
        for (i, table) in tables.iter().enumerate() {
            match schema::shape_on(&mut control.session, &table.schema, &table.name).await {
                Ok(Some(shape)) if shape == table.shape() => {}
                Ok(shape) => {
                    excluded.push((i, FIRST_TARGET + t));
                    differences[i].push(SchemaDifference {
                        cluster: control.name.clone(),
                        detail: describe_shape_difference(table, shape.as_deref()),
                    });
                }
                Err(error) => {
                    clusters.target_errors[t] = Some(error.to_string());
                    break;
                }
            }
        }
    }
    Shapes {
        excluded,
        differences,
    }
}

fn warn_unmatched_money_columns(
    tables: &[TableSpec],
    money: &[Vec<usize>],
    options: &ChecksumOptions,
    warnings: &mut Vec<String>,
) {
    for name in &options.money_columns {
        let found = tables.iter().zip(money).any(|(table, columns)| {
            columns.iter().any(|c| {
                let column = &table.columns[*c].name;
                *name == format!("{}.{}", table.name, column)
                    || *name == format!("{}.{}.{}", table.schema, table.name, column)
            })
        });
        if !found {
            let warning = format!(
                "money column `{name}` matches no compared column; write it `table.column` or `schema.table.column`"
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
    }
}

/// How each reachable target is compared: at the consistent point, at the
/// frozen position, or live.
async fn classify_targets(
    clusters: &mut Clusters,
    plan: &ValidatedPlan,
    options: &ChecksumOptions,
) -> Vec<Option<Basis>> {
    let source = plan.source();
    let mut bases: Vec<Option<Basis>> = vec![None; clusters.controls.len()];
    for (t, control) in clusters.controls.iter_mut().enumerate() {
        let Some(control) = control
            .as_mut()
            .filter(|_| clusters.target_errors[t].is_none())
        else {
            continue;
        };
        bases[t] = Some(if options.frozen_at.is_some() {
            Basis::Frozen
        } else {
            match point::classify(
                &source.host,
                source.port,
                &source.name,
                source.pool.connect_timeout,
                control,
            )
            .await
            {
                Ok(basis) => basis,
                Err(error) => {
                    clusters.target_errors[t] = Some(error.to_string());
                    continue;
                }
            }
        });
    }
    bases
}

/// Workers: bounded by every pool (the source also keeps a control and a
/// key-walking session).
fn worker_count(
    plan: &ValidatedPlan,
    clusters: &Clusters,
    bases: &[Option<Basis>],
    options: &ChecksumOptions,
) -> usize {
    let (any_at_point, any_live) = source_readings(bases);
    let source_per_worker = usize::from(any_at_point) + usize::from(any_live);
    let mut workers = options
        .workers
        .unwrap_or(ChecksumOptions::DEFAULT_WORKERS)
        .max(1);
    workers = workers
        .min((plan.source().pool.max as usize).saturating_sub(2).max(1) / source_per_worker.max(1));
    for connection in clusters.connections.iter().flatten() {
        workers = workers.min(
            (connection.cluster.pool.max as usize)
                .saturating_sub(1)
                .max(1),
        );
    }
    workers.max(1)
}

/// Which readings of the source the targets need: one at the common point
/// (a consistent or frozen target), one live (a live target).
fn source_readings(bases: &[Option<Basis>]) -> (bool, bool) {
    let at_point = bases
        .iter()
        .flatten()
        .any(|b| matches!(b, Basis::Consistent | Basis::Frozen));
    let live = bases.iter().flatten().any(|b| matches!(b, Basis::Live(_)));
    (at_point, live)
}

/// Every participant's sessions (the source twice: at the point and live,
/// then each target), one per worker, and the source's key-walking session.
pub(super) struct WorkerSessions {
    participants: Vec<Participant>,
    sessions: Vec<Vec<Session>>,
    participant_errors: Vec<Option<String>>,
    walker: Session,
    any_at_point: bool,
}

impl WorkerSessions {
    async fn open(
        clusters: &Clusters,
        targets: &[Cluster],
        bases: &[Option<Basis>],
        workers: usize,
    ) -> Result<WorkerSessions, ChecksumError> {
        let source = &clusters.source;
        let (any_at_point, any_live) = source_readings(bases);
        let participant_count = FIRST_TARGET + targets.len();
        let mut participants: Vec<Participant> = Vec::with_capacity(participant_count);
        for live in [false, true] {
            participants.push(Participant {
                cluster: source.cluster.name.clone(),
                dialect: source.dialect,
                reference: None,
                live,
            });
        }
        for (t, target) in targets.iter().enumerate() {
            let live = matches!(bases[t], Some(Basis::Live(_)));
            participants.push(Participant {
                cluster: target.name.clone(),
                dialect: clusters.connections[t]
                    .as_ref()
                    .map_or(source.dialect, |c| c.dialect),
                reference: Some(if live { SOURCE_LIVE } else { SOURCE_AT_POINT }),
                live,
            });
        }
        let mut wanted: Vec<Option<&Endpoint>> = vec![None; participant_count];
        if any_at_point {
            wanted[SOURCE_AT_POINT] = Some(&source.endpoint);
        }
        if any_live {
            wanted[SOURCE_LIVE] = Some(&source.endpoint);
        }
        for (t, connection) in clusters.connections.iter().enumerate() {
            if let (Some(connection), Some(_)) = (connection, &bases[t]) {
                wanted[FIRST_TARGET + t] = Some(&connection.endpoint);
            }
        }
        let opened = join_all(wanted.iter().map(|endpoint| async move {
            match endpoint {
                None => Ok(Vec::new()),
                Some(endpoint) => {
                    let sessions = join_all((0..workers).map(|_| connect(endpoint))).await;
                    sessions.into_iter().collect::<Result<Vec<_>, _>>()
                }
            }
        }))
        .await;
        let mut sessions: Vec<Vec<Session>> = Vec::with_capacity(participant_count);
        let mut participant_errors: Vec<Option<String>> = vec![None; participant_count];
        for (p, result) in opened.into_iter().enumerate() {
            match result {
                Ok(list) => sessions.push(list),
                Err(error) if p < FIRST_TARGET => return Err(ChecksumError::Source(error)),
                Err(error) => {
                    participant_errors[p] = Some(error.to_string());
                    sessions.push(Vec::new());
                }
            }
        }
        let walker = connect(&source.endpoint)
            .await
            .map_err(ChecksumError::Source)?;
        Ok(WorkerSessions {
            participants,
            sessions,
            participant_errors,
            walker,
            any_at_point,
        })
    }

    /// Hand each worker one session per participant; a participant that
    /// failed anywhere has its sessions closed.
    async fn hand_out(
        &mut self,
        workers: usize,
        target_errors: &[Option<String>],
    ) -> (Vec<Slot>, Vec<Option<String>>) {
        let participant_count = self.participants.len();
        let mut slots: Vec<Slot> = (0..workers)
            .map(|_| Slot {
                sessions: (0..participant_count).map(|_| None).collect(),
            })
            .collect();
        let mut errors = std::mem::take(&mut self.participant_errors);
        for (p, list) in std::mem::take(&mut self.sessions).into_iter().enumerate() {
            if errors[p].is_some() {
                for session in list {
                    session.close().await;
                }
                continue;
            }
            for (w, session) in list.into_iter().enumerate() {
                slots[w].sessions[p] = Some(session);
            }
        }
        for (t, error) in target_errors.iter().enumerate() {
            if let Some(error) = error {
                errors[FIRST_TARGET + t] = Some(error.clone());
            }
        }
        (slots, errors)
    }
}

/// The common point: the frozen position inside a freeze, else one GTID
/// position every consistent target is brought to. Returns it and how long
/// the source's writes waited.
async fn take_point(
    plan: &ValidatedPlan,
    options: &ChecksumOptions,
    clusters: &mut Clusters,
    bases: &[Option<Basis>],
    open: &mut WorkerSessions,
) -> Result<(Option<String>, Option<u64>), ChecksumError> {
    if let Some(frozen) = &options.frozen_at {
        let (source_sessions, target_sessions) = open.sessions.split_at_mut(FIRST_TARGET);
        point::open_snapshots(source_sessions[SOURCE_AT_POINT].iter_mut().collect())
            .await
            .map_err(ChecksumError::Source)?;
        let results = join_all(
            clusters
                .controls
                .iter_mut()
                .zip(target_sessions.iter_mut())
                .filter_map(|(control, list)| Some((control.as_mut()?, list)))
                .map(|(control, list)| at_frozen_position(control, frozen, list)),
        )
        .await;
        for (t, result) in results.into_iter().enumerate() {
            if let Err(error) = result {
                open.participant_errors[FIRST_TARGET + t] = Some(error);
            }
        }
        return Ok((Some(frozen.clone()), None));
    }
    if !open.any_at_point {
        return Ok((None, None));
    }
    let consistent: Vec<usize> = (0..bases.len())
        .filter(|t| {
            bases[*t] == Some(Basis::Consistent)
                && open.participant_errors[FIRST_TARGET + t].is_none()
        })
        .collect();
    let (point, failures) = establish_point(
        &mut clusters.source_control,
        &mut open.walker,
        clusters.source.flavor,
        &mut clusters.controls,
        &mut open.sessions,
        &consistent,
        point::PointLimits {
            max_stall: plan.gates.max_source_stall,
            give_up_after: plan.gates.lag_timeout.min(Duration::from_secs(120)),
        },
    )
    .await
    .map_err(|error| match error {
        point::PointError::Mysql(error) => ChecksumError::Source(error),
        busy => ChecksumError::NoPoint(busy.to_string()),
    })?;
    tracing::info!(
        position = %point.position,
        lock_ms = point.locked_for.as_millis() as u64,
        attempts = point.attempts,
        "consistent point taken on {}",
        clusters.source.cluster.name
    );
    for (t, error) in failures {
        open.participant_errors[FIRST_TARGET + t] = Some(error);
    }
    // What the source's writers waited, cancelled attempts included.
    Ok((
        Some(point.position),
        Some(point.longest_stall.as_millis() as u64),
    ))
}
