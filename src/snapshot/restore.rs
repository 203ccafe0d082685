//! `cutover restore`: a snapshot directory checked against its manifest, then loaded into the targets.

use super::*;

/// Load a snapshot directory into the targets, after checking every file
/// against its manifest. Replication can then start from the manifest's position.
pub async fn restore(
    path: &std::path::Path,
    plan: &ValidatedPlan,
    options: &SnapshotOptions,
) -> Result<SnapshotReport, SnapshotError> {
    let started = Instant::now();
    let manifest = directory::open_verified(path).map_err(|damage| SnapshotError::Corrupt {
        directory: path.display().to_string(),
        file: damage.file,
        problem: damage.problem,
    })?;
    if manifest.source != plan.source().name {
        return Err(SnapshotError::Corrupt {
            directory: path.display().to_string(),
            file: directory::MANIFEST.into(),
            problem: format!(
                "says the snapshot was taken from `{}`, but the plan's source is `{}`",
                manifest.source,
                plan.source().name
            ),
        });
    }
    let targets = targets_of(plan, &options.targets)?;
    let endpoints: Vec<Endpoint> = targets
        .iter()
        .map(Endpoint::for_cluster)
        .collect::<Result<_, _>>()?;
    let databases: Vec<String> = manifest
        .schema
        .databases
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let setup = loader_setup(options.skip_binlog, manifest.schema.history);
    let (controls, mut failures, shortfalls) = prepare_targets(
        &targets,
        &endpoints,
        &databases,
        &manifest.schema,
        options,
        None,
    )
    .await?;
    let workers = targets
        .iter()
        .map(|t| (t.pool.max as usize).saturating_sub(1))
        .fold(options.workers, usize::min)
        .max(1);
    let loaders = open_loaders(workers, &endpoints, &mut failures, &setup).await;
    let failures = Arc::new(Failures::new(failures, shortfalls));
    let inserts_only = Arc::new(Mutex::new(vec![false; targets.len()]));
    let files = Arc::new(Mutex::new(manifest.files.clone()));
    let format = manifest.format;
    let mut tasks = Vec::new();
    for mut loaders in loaders {
        let files = files.clone();
        let failures = failures.clone();
        let inserts_only = inserts_only.clone();
        let path = path.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut done: Vec<(String, u64, u64)> = Vec::new();
            loop {
                let next = files.lock().expect("not poisoned").pop();
                let Some(chunk) = next else { break };
                let file = path.join(&chunk.file);
                let content =
                    tokio::task::spawn_blocking(move || directory::read_chunk(&file, format)).await;
                let content = match content {
                    Ok(Ok(content)) => content,
                    Ok(Err(error)) => {
                        return Err(format!("{}: {error}", chunk.file));
                    }
                    Err(error) => return Err(format!("{}: {error}", chunk.file)),
                };
                let bytes = match content {
                    directory::Chunk::Statements(statements) => {
                        fan_out(&failures, &mut loaders, &chunk.table, &statements).await;
                        statements.iter().map(|s| s.len() as u64).sum()
                    }
                    directory::Chunk::Rows { header, data } => {
                        let load = LoadData {
                            sql: header.load_sql.clone(),
                            data: bytes::Bytes::from(data),
                            header,
                        };
                        load_everywhere(
                            &failures,
                            &mut loaders,
                            &chunk.table,
                            &load,
                            &inserts_only,
                            || rows_as_inserts(&load.header, &load.data),
                        )
                        .await;
                        load.data.len() as u64
                    }
                };
                done.push((chunk.table.clone(), chunk.rows, bytes));
            }
            for loader in loaders.into_iter().flatten() {
                loader.close().await;
            }
            Ok(done)
        }));
    }
    let mut per_table: std::collections::BTreeMap<String, (u64, u64, u64)> =
        std::collections::BTreeMap::new();
    let mut read_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(done)) => {
                for (table, rows, bytes) in done {
                    let entry = per_table.entry(table).or_default();
                    entry.0 += rows;
                    entry.1 += bytes;
                    entry.2 += 1;
                }
            }
            Ok(Err(error)) => read_error = Some(error),
            Err(error) => read_error = Some(error.to_string()),
        }
    }
    if let Some(error) = read_error {
        return Err(SnapshotError::Directory(error));
    }
    finish_targets(controls, &manifest.schema, &failures, false).await;
    let shortfalls = failures.shortfalls();
    let failures = failures.snapshot();
    let rows: u64 = per_table.values().map(|t| t.0).sum();
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let (status, clusters) = outcomes(&names, &failures, &shortfalls, rows);
    let mut warnings = shortfall_warnings(&names, &shortfalls);
    Ok(SnapshotReport {
        status,
        gtid_position: manifest.gtid_position.clone(),
        rows,
        bytes: per_table.values().map(|t| t.1).sum(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        source_lock_ms: 0,
        targets: clusters
            .iter()
            .filter(|c| c.error.is_none())
            .map(|c| c.cluster.clone())
            .collect(),
        clusters,
        tables: per_table
            .into_iter()
            .map(|(table, (rows, bytes, chunks))| TableCopy {
                table,
                rows,
                bytes,
                chunks,
                key: Vec::new(),
                warning: None,
            })
            .collect(),
        databases,
        warnings: {
            warnings.extend(super::copy::insert_fallback_warnings(
                &names,
                &inserts_only.lock().expect("not poisoned"),
            ));
            warnings
        },
        resumed: None,
    })
}
