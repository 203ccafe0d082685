//! The targets' sessions: fenced read-only before anything loads, refused when not empty, one loader per worker, finished with indexes, triggers and views, and cleared of a partial chunk before a resume.

use super::*;

/// Session settings of every loading session.
pub(super) fn loader_setup(skip_binlog: bool, history: bool) -> String {
    let mut sql = String::from(
        "SET SESSION time_zone = '+00:00', SESSION foreign_key_checks = 0, \
         SESSION unique_checks = 0, SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    );
    if history {
        // MariaDB 10.11+: a system-versioned table's history rows keep their times.
        sql.push_str("; SET SESSION system_versioning_insert_history = 1");
    }
    if skip_binlog {
        sql.push_str("; SET SESSION sql_log_bin = 0");
    }
    sql
}

pub(super) async fn connect(endpoint: &Endpoint, setup: &str) -> Result<Session, MysqlError> {
    let mut session = Session::connect(endpoint).await?;
    session.exec("prepare the session", setup).await?;
    Ok(session)
}

pub(super) fn targets_of(
    plan: &ValidatedPlan,
    names: &[String],
) -> Result<Vec<Cluster>, SnapshotError> {
    if names.is_empty() {
        return Ok(plan.enabled_targets().cloned().collect());
    }
    names
        .iter()
        .map(|name| {
            plan.enabled_targets()
                .find(|c| &c.name == name)
                .cloned()
                .ok_or_else(|| SnapshotError::UnknownTarget(name.clone()))
        })
        .collect()
}

/// A target is about to hold a copy of the source: from now on it must never
/// take an application's write, so it is read-only before the first row lands
/// (the loader's account writes through `read_only`: READ_ONLY ADMIN on
/// MariaDB, CONNECTION_ADMIN or SUPER on MySQL, which the prechecks ask for).
pub(super) async fn fence_target(session: &mut Session) -> Result<(), MysqlError> {
    session
        .exec(
            "make the target read-only before loading it",
            "SET GLOBAL read_only = 1",
        )
        .await
}

/// Connect to each target, refuse one that is not empty (unless replacing),
/// and create the schema. A target that fails is recorded; the others go on.
pub(super) async fn prepare_targets(
    targets: &[Cluster],
    endpoints: &[Endpoint],
    databases: &[String],
    schema: &Schema,
    options: &SnapshotOptions,
    recorded: Option<&Recorded>,
) -> Result<Prepared, SnapshotError> {
    let setup = loader_setup(options.skip_binlog, schema.history);
    let mut failures: Vec<Option<String>> = vec![None; targets.len()];
    let mut controls: Vec<Option<Session>> = Vec::new();
    let business = business_databases(databases);
    for (t, endpoint) in endpoints.iter().enumerate() {
        match connect(endpoint, &setup).await {
            Ok(mut session) => match emptiness(&mut session, &business).await {
                // A resumed target holds the earlier attempt's rows; its check passed then.
                Ok(Some(_)) if recorded.is_some_and(|r| r.prepared.contains(&targets[t].name)) => {
                    controls.push(Some(session))
                }
                Ok(Some(detail)) if !options.replace => {
                    return Err(SnapshotError::NotEmpty {
                        cluster: targets[t].name.clone(),
                        detail,
                    });
                }
                Ok(_) => match fence_target(&mut session).await {
                    Ok(()) => controls.push(Some(session)),
                    Err(error) => {
                        failures[t] = Some(error.to_string());
                        controls.push(None);
                    }
                },
                Err(error) => {
                    failures[t] = Some(error.to_string());
                    controls.push(None);
                }
            },
            Err(error) => {
                failures[t] = Some(error.to_string());
                controls.push(None);
            }
        }
    }
    let created = join_all(
        controls
            .iter_mut()
            .enumerate()
            .filter_map(|(t, s)| Some((t, s.as_mut()?)))
            .map(|(t, session)| async move {
                let replace = options.replace && recorded.is_none();
                let mut shortfall = Shortfall::default();
                let result =
                    create_schema(session, schema, replace, recorded.is_some(), &mut shortfall)
                        .await;
                (t, result, shortfall)
            }),
    )
    .await;
    let mut shortfalls = vec![Shortfall::default(); targets.len()];
    for (t, result, shortfall) in created {
        shortfalls[t] = shortfall;
        if let Err(error) = result {
            failures[t] = Some(error.to_string());
            controls[t] = None;
        }
    }
    if failures.iter().all(Option::is_some) {
        return Err(SnapshotError::AllTargetsFailed(
            failures
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    Ok((controls, failures, shortfalls))
}

/// Each target's schema session (`None`: it failed), its failure, and what it refused.
pub(super) type Prepared = (Vec<Option<Session>>, Vec<Option<String>>, Vec<Shortfall>);

/// One loader session per healthy target, for each worker.
pub(super) async fn open_loaders(
    workers: usize,
    endpoints: &[Endpoint],
    failures: &mut [Option<String>],
    setup: &str,
) -> Vec<Vec<Option<Session>>> {
    let mut all = Vec::new();
    for _ in 0..workers {
        let mut loaders = Vec::new();
        for (t, endpoint) in endpoints.iter().enumerate() {
            if failures[t].is_some() {
                loaders.push(None);
                continue;
            }
            match connect(endpoint, setup).await {
                Ok(session) => loaders.push(Some(session)),
                Err(error) => {
                    failures[t] = Some(error.to_string());
                    loaders.push(None);
                }
            }
        }
        all.push(loaders);
    }
    all
}

/// Indexes, triggers and views on every target that took the rows; then close.
pub(super) async fn finish_targets(
    controls: Vec<Option<Session>>,
    schema: &Schema,
    failures: &Failures,
    resuming: bool,
) {
    let mut controls = controls;
    let finished = join_all(
        controls
            .iter_mut()
            .enumerate()
            .filter(|(t, _)| !failures.failed(*t))
            .filter_map(|(t, s)| Some((t, s.as_mut()?)))
            .map(|(t, session)| async move {
                let mut shortfall = failures.take_shortfall(t);
                let result = finish_schema(session, schema, resuming, &mut shortfall).await;
                failures.put_shortfall(t, shortfall);
                (t, result)
            }),
    )
    .await;
    for (t, result) in finished {
        if let Err(error) = result {
            failures.fail(t, error.to_string());
        }
    }
    for session in controls.into_iter().flatten() {
        session.close().await;
    }
}

/// Before a resume loads: on each target, drop triggers (so reloading a chunk
/// fires none; they are created again at the end), delete what lies beyond the
/// part it keeps, and empty the tables it keeps nothing of.
pub(super) async fn clear_for_resume(
    controls: &mut [Option<Session>],
    failures: &mut [Option<String>],
    databases: &[String],
    tables: &[TableSpec],
    resumes: &[TableResume],
) {
    for (t, control) in controls.iter_mut().enumerate() {
        let Some(session) = control.as_mut() else {
            continue;
        };
        let cleared = async {
            let in_list = databases
                .iter()
                .map(|d| quote(d))
                .collect::<Vec<_>>()
                .join(", ");
            let triggers: Vec<(String, String)> = session
                .query(
                    "list triggers",
                    &format!(
                        "SELECT TRIGGER_SCHEMA, TRIGGER_NAME FROM information_schema.TRIGGERS \
                         WHERE TRIGGER_SCHEMA IN ({in_list})"
                    ),
                )
                .await?;
            for (schema, name) in triggers {
                session
                    .exec(
                        "drop a trigger until the rows are in",
                        &format!("DROP TRIGGER IF EXISTS {}.{}", ident(&schema), ident(&name)),
                    )
                    .await?;
            }
            for (table, resume) in tables.iter().zip(resumes) {
                let sql = match (&resume.zone, resume.keeps[t]) {
                    (Some(Loaded::All), true) => continue,
                    (Some(Loaded::UpTo { up_to }), true) => format!(
                        "DELETE FROM {} WHERE {}",
                        table_name(table),
                        chunk::predicate(
                            table,
                            &Range {
                                after: Some(up_to.clone()),
                                up_to: None,
                            }
                        )
                    ),
                    // TRUNCATE refuses a system-versioned table: its rows, then
                    // the history they and the earlier attempt left.
                    _ if table.versioned => format!(
                        "DELETE FROM {name}; DELETE HISTORY FROM {name}",
                        name = table_name(table)
                    ),
                    _ => format!("TRUNCATE TABLE {}", table_name(table)),
                };
                session
                    .exec("clear what the interrupted snapshot left", &sql)
                    .await?;
            }
            Ok::<_, MysqlError>(())
        };
        if let Err(error) = cleared.await {
            failures[t] = Some(error.to_string());
            *control = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_sessions_skip_the_binlog_only_when_asked() {
        assert!(!loader_setup(false, false).contains("sql_log_bin"));
        assert!(loader_setup(true, false).contains("SET SESSION sql_log_bin = 0"));
        assert!(loader_setup(true, false).contains("NO_AUTO_VALUE_ON_ZERO"));
        assert!(!loader_setup(false, false).contains("system_versioning"));
        assert!(loader_setup(false, true).contains("system_versioning_insert_history = 1"));
    }
}
