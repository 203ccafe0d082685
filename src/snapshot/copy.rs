//! The copy itself: chunks queued by walking keys on the source, each read once and written to every healthy target at once, with lock conflicts retried and `LOAD DATA` refusals answered with INSERTs.

use super::*;

/// One chunk or one keyless table to copy.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) table: usize,
    /// The chunk's number within its table, in key order.
    pub(super) seq: u64,
    /// `None`: a keyless table, streamed whole.
    pub(super) range: Option<Range>,
    /// Per target: it already holds this chunk (a resume), so it is checked
    /// against the snapshot and reloaded only if it differs.
    pub(super) check: Vec<bool>,
}

/// Per target: the first error that took it out of the load, and what it
/// did not take (a table or object it refused) while the rest went on.
pub(super) struct Failures {
    targets: Mutex<Vec<Option<String>>>,
    shortfalls: Mutex<Vec<Shortfall>>,
}

impl Failures {
    pub(super) fn new(targets: Vec<Option<String>>, shortfalls: Vec<Shortfall>) -> Failures {
        Failures {
            targets: Mutex::new(targets),
            shortfalls: Mutex::new(shortfalls),
        }
    }

    pub(super) fn fail(&self, target: usize, error: String) {
        let mut failures = self.targets.lock().expect("not poisoned");
        if failures[target].is_none() {
            tracing::warn!("{error}; the other targets carry on");
            failures[target] = Some(error);
        }
    }

    pub(super) fn failed(&self, target: usize) -> bool {
        self.targets.lock().expect("not poisoned")[target].is_some()
    }

    pub(super) fn snapshot(&self) -> Vec<Option<String>> {
        self.targets.lock().expect("not poisoned").clone()
    }

    /// The target does not load `table` (it refused the table or its rows).
    pub(super) fn skips(&self, target: usize, table: &str) -> bool {
        self.shortfalls.lock().expect("not poisoned")[target]
            .skipped_tables
            .contains(table)
    }

    /// The target refused `table`'s rows: it loads no more of them, and the
    /// other tables go on.
    pub(super) fn table_failed(&self, target: usize, table: &str, error: &MysqlError) {
        let mut shortfalls = self.shortfalls.lock().expect("not poisoned");
        let shortfall = &mut shortfalls[target];
        if shortfall.skipped_tables.insert(table.to_string()) {
            tracing::warn!("rows of `{table}`: {error}; the other tables carry on");
            shortfall
                .missing
                .push(format!("rows of table `{table}`: {error}"));
        }
    }

    /// Take one target's shortfall out to work on it across awaits.
    pub(super) fn take_shortfall(&self, target: usize) -> Shortfall {
        std::mem::take(&mut self.shortfalls.lock().expect("not poisoned")[target])
    }

    pub(super) fn put_shortfall(&self, target: usize, shortfall: Shortfall) {
        self.shortfalls.lock().expect("not poisoned")[target] = shortfall;
    }

    pub(super) fn shortfalls(&self) -> Vec<Shortfall> {
        self.shortfalls.lock().expect("not poisoned").clone()
    }
}

pub(super) struct Shared {
    pub(super) tables: Vec<TableSpec>,
    pub(super) targets: Vec<String>,
    pub(super) failures: Failures,
    pub(super) source_failure: Mutex<Option<String>>,
    /// Where chunk files go, when the snapshot is also written to a directory.
    pub(super) directory: Option<directory::Writer>,
    /// Per target: it refused `LOAD DATA LOCAL`, so it is loaded with INSERTs.
    pub(super) inserts_only: Mutex<Vec<bool>>,
    /// Per table: what a resume keeps on each target.
    pub(super) resumes: Vec<TableResume>,
    /// How a chunk is checksummed when a resume checks it.
    pub(super) dialect: Dialect,
    pub(super) chunks_kept: AtomicU64,
    pub(super) chunks_reloaded: AtomicU64,
}

impl Shared {
    /// Load rows into every healthy target (LOAD DATA, or INSERTs where it is
    /// refused), and write them to the snapshot directory when there is one;
    /// returns the bytes sent to each target.
    pub(super) async fn send(
        &self,
        table: usize,
        rows: Vec<Row>,
        loaders: &mut [Option<Session>],
    ) -> u64 {
        let spec = &self.tables[table];
        let load = load_data(spec, &rows);
        let count = rows.len() as u64;
        let name = spec.display_name();
        load_everywhere(
            &self.failures,
            loaders,
            &name,
            &load,
            &self.inserts_only,
            || insert_statements(spec, rows),
        )
        .await;
        // A write failure fails the directory (reported at the end), not the load.
        if let Some(writer) = &self.directory {
            writer.write(spec, count, &load.header, &load.data);
        }
        load.data.len() as u64
    }
}

/// One chunk into every healthy target: LOAD DATA, and the statements
/// `inserts` makes for the targets that refuse it.
pub(super) async fn load_everywhere(
    failures: &Failures,
    loaders: &mut [Option<Session>],
    table: &str,
    load: &LoadData,
    inserts_only: &Mutex<Vec<bool>>,
    inserts: impl FnOnce() -> Vec<String>,
) {
    // Targets that refused this table take none of its rows.
    let mut parked: Vec<(usize, Session)> = Vec::new();
    for (t, loader) in loaders.iter_mut().enumerate() {
        if failures.skips(t, table)
            && let Some(session) = loader.take()
        {
            parked.push((t, session));
        }
    }
    load_unparked(failures, loaders, table, load, inserts_only, inserts).await;
    for (t, session) in parked {
        loaders[t] = Some(session);
    }
}

async fn load_unparked(
    failures: &Failures,
    loaders: &mut [Option<Session>],
    table: &str,
    load: &LoadData,
    inserts_only: &Mutex<Vec<bool>>,
    inserts: impl FnOnce() -> Vec<String>,
) {
    let by_insert = fan_out_load(failures, loaders, table, load, inserts_only).await;
    if by_insert.is_empty() {
        return;
    }
    let statements = inserts();
    let mut chosen: Vec<Option<Session>> = loaders
        .iter_mut()
        .enumerate()
        .map(|(t, loader)| {
            if by_insert.contains(&t) {
                loader.take()
            } else {
                None
            }
        })
        .collect();
    fan_out(failures, &mut chosen, table, &statements).await;
    for (t, loader) in chosen.into_iter().enumerate() {
        if by_insert.contains(&t) {
            loaders[t] = loader;
        }
    }
}

/// A worker's connections: one reader on the source's snapshot, one loader per target.
pub(super) struct Slot {
    pub(super) reader: Session,
    pub(super) loaders: Vec<Option<Session>>,
}

#[derive(Debug, Default)]
pub(super) struct Copied {
    pub(super) table: usize,
    pub(super) seq: u64,
    /// Where the chunk ends (`None`: the end of the table).
    pub(super) up_to: Option<chunk::Key>,
    /// Per target: the chunk is in.
    pub(super) done: Vec<bool>,
    pub(super) rows: u64,
    pub(super) bytes: u64,
}

/// Run one load statement again when InnoDB chose it as a deadlock victim or
/// it timed out on a lock (a resumed chunk's DELETE next to another chunk's
/// insert): the server rolled the whole statement back, so repeating it is safe.
pub(super) async fn retrying_lock_conflicts(
    session: &mut Session,
    statement: Statement<'_>,
) -> Result<(), MysqlError> {
    const ATTEMPTS: u64 = 4;
    let mut attempt = 1;
    loop {
        let result = match statement {
            Statement::LoadData(sql, data) => {
                session.load_data("load rows", sql, data.clone()).await
            }
            Statement::Insert(sql) => session.exec("load rows", sql).await,
            Statement::Delete(sql) => session.exec("delete a chunk that changed", sql).await,
        };
        match result {
            Err(error) if attempt < ATTEMPTS && lock_conflict(&error) => {
                tracing::debug!("{error}; trying again");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A statement that writes a chunk on a target.
#[derive(Clone, Copy)]
pub(super) enum Statement<'a> {
    LoadData(&'a str, &'a bytes::Bytes),
    Insert(&'a str),
    Delete(&'a str),
}

/// Deadlock (1213) or lock wait timeout (1205).
pub(super) fn lock_conflict(error: &MysqlError) -> bool {
    error.is_server_error(&[1213, 1205])
}

/// The server refuses `LOAD DATA LOCAL` (`local_infile=OFF`, MySQL 8's default):
/// MariaDB 4166, MySQL 3948, older servers 1148.
pub(super) fn local_infile_refused(error: &MysqlError) -> bool {
    error.is_server_error(&[4166, 3948, 1148])
}

/// What the report says of each target that took INSERT statements.
pub(super) fn insert_fallback_warnings(targets: &[String], inserts_only: &[bool]) -> Vec<String> {
    targets
        .iter()
        .zip(inserts_only)
        .filter(|(_, inserts)| **inserts)
        .map(|(target, _)| {
            format!(
                "`{target}` refuses LOAD DATA LOCAL (local_infile=OFF): its rows went in as INSERT \
                 statements, the same values more slowly; SET GLOBAL local_infile=ON there to load faster"
            )
        })
        .collect()
}

/// Load one chunk into every healthy target at once. Returns the targets
/// that refuse `LOAD DATA LOCAL`, which take INSERT statements instead.
pub(super) async fn fan_out_load(
    failures: &Failures,
    loaders: &mut [Option<Session>],
    table: &str,
    load: &LoadData,
    inserts_only: &Mutex<Vec<bool>>,
) -> Vec<usize> {
    let skip = inserts_only.lock().expect("not poisoned").clone();
    let writes = loaders
        .iter_mut()
        .enumerate()
        .filter(|(t, _)| !failures.failed(*t) && !skip[*t])
        .filter_map(|(t, loader)| Some((t, loader.as_mut()?)))
        .map(|(t, loader)| async move {
            retrying_lock_conflicts(loader, Statement::LoadData(&load.sql, &load.data))
                .await
                .map_err(|e| (t, e))
        });
    let mut refused = Vec::new();
    for result in join_all(writes).await {
        match result {
            Err((t, error)) if local_infile_refused(&error) => {
                tracing::warn!("{error}: loading it with INSERT statements instead");
                inserts_only.lock().expect("not poisoned")[t] = true;
                refused.push(t);
            }
            Err((t, error)) => refused_or_lost(failures, loaders, t, table, &error),
            Ok(()) => {}
        }
    }
    (0..loaders.len())
        .filter(|t| skip[*t] && !failures.failed(*t))
        .chain(refused)
        .collect()
}

/// A load that failed on one target: a statement the server refused costs
/// that table on that target; a lost session costs the target.
fn refused_or_lost(
    failures: &Failures,
    loaders: &mut [Option<Session>],
    target: usize,
    table: &str,
    error: &MysqlError,
) {
    if error.server_code().is_some() {
        failures.table_failed(target, table, error);
    } else {
        failures.fail(target, error.to_string());
        loaders[target] = None;
    }
}

/// Write the statements to every healthy target at once.
pub(super) async fn fan_out(
    failures: &Failures,
    loaders: &mut [Option<Session>],
    table: &str,
    statements: &[String],
) {
    let writes = loaders
        .iter_mut()
        .enumerate()
        .filter(|(t, _)| !failures.failed(*t))
        .filter_map(|(t, loader)| Some((t, loader.as_mut()?)))
        .map(|(t, loader)| async move {
            for sql in statements {
                retrying_lock_conflicts(loader, Statement::Insert(sql))
                    .await
                    .map_err(|e| (t, e))?;
            }
            Ok::<(), (usize, MysqlError)>(())
        });
    for result in join_all(writes).await {
        if let Err((t, error)) = result {
            refused_or_lost(failures, loaders, t, table, &error);
        }
    }
}

/// For a resume: checksum the chunk on the source and on every target that
/// already holds it. Targets that match keep it (returned `true`); the others
/// have the chunk's rows deleted so it can be loaded again.
pub(super) async fn check_chunk(
    shared: &Shared,
    slot: &mut Slot,
    job: &Job,
) -> Result<(Vec<bool>, u64), MysqlError> {
    let table = &shared.tables[job.table];
    let range = job.range.clone().unwrap_or_else(Range::all);
    let sql =
        crate::tables::hash::chunk_sql(table, &[], &range, canonical::Form::Fast, &shared.dialect);
    let source = crate::tables::hash::checksum_on(&mut slot.reader, &sql, 0).await?;
    let delete = format!(
        "DELETE FROM {} WHERE {}",
        table_name(table),
        chunk::predicate(table, &range)
    );
    let mut kept = vec![false; slot.loaders.len()];
    let checks = slot
        .loaders
        .iter_mut()
        .enumerate()
        .filter(|(t, _)| job.check[*t] && !shared.failures.failed(*t))
        .filter_map(|(t, loader)| Some((t, loader.as_mut()?)))
        .map(|(t, loader)| {
            let (sql, delete, source) = (&sql, &delete, &source);
            async move {
                let checked = async {
                    let same = crate::tables::hash::checksum_on(loader, sql, 0).await? == *source;
                    if !same {
                        retrying_lock_conflicts(loader, Statement::Delete(delete)).await?;
                    }
                    Ok::<_, MysqlError>(same)
                };
                (t, checked.await)
            }
        });
    let results = join_all(checks).await;
    for (t, result) in results {
        match result {
            Ok(same) => {
                kept[t] = same;
                let counter = if same {
                    &shared.chunks_kept
                } else {
                    &shared.chunks_reloaded
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                shared.failures.fail(t, error.to_string());
                slot.loaders[t] = None;
            }
        }
    }
    Ok((kept, source.count))
}

pub(super) async fn copy(
    shared: &Shared,
    slot: &mut Slot,
    job: &Job,
) -> Result<Copied, MysqlError> {
    let table = &shared.tables[job.table];
    let columns = select_list(table);
    let name = table.display_name();
    // A target holds the chunk when it is still loading and took this table.
    let holds = |t: usize| !shared.failures.failed(t) && !shared.failures.skips(t, &name);
    let mut copied = Copied {
        table: job.table,
        seq: job.seq,
        up_to: job.range.as_ref().and_then(|r| r.up_to.clone()),
        ..Copied::default()
    };
    // A resume: targets whose copy of the chunk still matches are left out.
    let mut kept = vec![false; slot.loaders.len()];
    if job.check.iter().any(|c| *c) {
        let (matched, rows) = check_chunk(shared, slot, job).await?;
        kept = matched;
        let everyone_kept = (0..kept.len())
            .all(|t| kept[t] || shared.failures.failed(t) || slot.loaders[t].is_none());
        if everyone_kept && shared.directory.is_none() {
            copied.rows = rows;
            copied.done = (0..kept.len()).map(holds).collect();
            return Ok(copied);
        }
    }
    let mut parked: Vec<(usize, Session)> = Vec::new();
    for (t, loader) in slot.loaders.iter_mut().enumerate() {
        if kept[t]
            && let Some(session) = loader.take()
        {
            parked.push((t, session));
        }
    }
    let result = copy_rows(shared, slot, job, &columns, &mut copied).await;
    for (t, session) in parked {
        slot.loaders[t] = Some(session);
    }
    result?;
    copied.done = (0..kept.len()).map(holds).collect();
    Ok(copied)
}

/// Read the chunk once and send it to every target still holding a loader.
pub(super) async fn copy_rows(
    shared: &Shared,
    slot: &mut Slot,
    job: &Job,
    columns: &str,
    copied: &mut Copied,
) -> Result<(), MysqlError> {
    let table = &shared.tables[job.table];
    let Slot { reader, loaders } = slot;
    match &job.range {
        Some(range) => {
            let sql = format!(
                "SELECT {columns} FROM {}{} WHERE {} ORDER BY {}",
                table_name(table),
                chunk::index_hint(table),
                chunk::predicate(table, range),
                chunk::key_order(table)
            );
            let rows: Vec<Row> = reader.query("read a chunk", &sql).await?;
            copied.rows = rows.len() as u64;
            copied.bytes = shared.send(job.table, rows, loaders).await;
        }
        None => {
            // No key to range over: one stream, written batch by batch as it is read.
            let sql = format!(
                "SELECT {columns} FROM {}{}",
                table_name(table),
                table.history_clause()
            );
            let mut stream = reader.stream("stream a table without a key", &sql).await?;
            while let Some(rows) = stream.next_batch(CHUNK_ROWS as usize).await? {
                copied.rows += rows.len() as u64;
                copied.bytes += shared.send(job.table, rows, loaders).await;
            }
        }
    }
    Ok(())
}

/// Queue every table's chunks, walking keys on the source.
/// A resume walks first the part of a table the targets already hold (each
/// chunk checked), then the rest.
pub(super) async fn walk(
    shared: Arc<Shared>,
    mut session: Session,
    jobs: mpsc::Sender<Job>,
) -> Session {
    for (index, table) in shared.tables.iter().enumerate() {
        let mut seq = 0;
        if table.key.is_none() {
            let check = shared.resumes[index].ranges().remove(0).1;
            let job = Job {
                table: index,
                seq,
                range: None,
                check,
            };
            if jobs.send(job).await.is_err() {
                break;
            }
            continue;
        }
        for (zone, check) in shared.resumes[index].ranges() {
            let mut walker = chunk::KeyWalker::within(zone);
            loop {
                match walker.next(&mut session, table, CHUNK_ROWS).await {
                    Ok(Some(range)) => {
                        let job = Job {
                            table: index,
                            seq,
                            range: Some(range),
                            check: check.clone(),
                        };
                        seq += 1;
                        if jobs.send(job).await.is_err() {
                            return session;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        *shared.source_failure.lock().expect("not poisoned") =
                            Some(error.to_string());
                        return session;
                    }
                }
            }
        }
    }
    session
}

pub(super) async fn work(
    shared: Arc<Shared>,
    mut slot: Slot,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    copied: mpsc::Sender<Copied>,
) -> Slot {
    loop {
        let job = jobs.lock().await.recv().await;
        let Some(job) = job else { break };
        if shared
            .source_failure
            .lock()
            .expect("not poisoned")
            .is_some()
        {
            break;
        }
        match copy(&shared, &mut slot, &job).await {
            Ok(done) => {
                if copied.send(done).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                *shared.source_failure.lock().expect("not poisoned") = Some(error.to_string());
                break;
            }
        }
    }
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_targets_that_took_inserts_are_named() {
        let targets = ["c1".to_string(), "c2".to_string(), "c6".to_string()];
        let warnings = insert_fallback_warnings(&targets, &[false, true, true]);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].starts_with("`c2` refuses LOAD DATA LOCAL (local_infile=OFF)"));
        assert!(warnings[1].starts_with("`c6`"));
        assert!(insert_fallback_warnings(&targets, &[false; 3]).is_empty());
    }
}
