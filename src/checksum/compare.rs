//! Workers that checksum chunks on every participant at once, and bisect the
//! chunks that differ down to rows and columns.
//!
//! A worker owns a [`Slot`]: one session per participant, all opened at the
//! same consistent point. Only one small row per chunk and participant comes
//! back; rows are fetched only for leaves of at most [`LEAF_ROWS`] rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mysql_async::Row;
use serde::Serialize;
use tokio::sync::mpsc;

use super::canonical::{self, Dialect, Form};
use super::chunk::{self, ChunkSizer, Key, Range};
use super::schema::TableSpec;
use crate::mysql::{MysqlError, Session};
use crate::tables::hash::{ChunkSum, checksum_on, chunk_sql};

/// Chunks at or under this many rows are compared row by row.
pub const LEAF_ROWS: u64 = 256;
/// Rows reported per table and cluster before the rest is summarised.
pub const MAX_REPORTED_ROWS: usize = 1_000;
/// A live comparison looks again after this pause before calling a difference stable.
const RECHECK_PAUSE: Duration = Duration::from_millis(300);

/// Who is compared: the source (once at the consistent point, once live when
/// some target cannot be compared at that point) and every target.
#[derive(Debug, Clone)]
pub struct Participant {
    pub cluster: String,
    pub dialect: Dialect,
    /// The participant this one is compared with (`None` for the source).
    pub reference: Option<usize>,
    /// Compared without a common point: differences are looked at twice.
    pub live: bool,
}

/// One session per participant; `None` once it failed or is not used.
pub struct Slot {
    pub sessions: Vec<Option<Session>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    Missing,
    Extra,
    Different,
}

/// Whether a live difference held still between two looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// Compared at one consistent point, or unchanged on a second look.
    Stable,
    /// The rows were still changing; compare again when writes are quiet.
    Changing,
}

/// Key column → value, in the key's column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyMap(pub Vec<(String, serde_json::Value)>);

impl Serialize for KeyMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (column, value) in &self.0 {
            map.serialize_entry(column, value)?;
        }
        map.end()
    }
}

impl std::fmt::Display for KeyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(c, v)| format!("{c}={v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RowMismatch {
    pub cluster: String,
    /// Empty when the table has no usable key (see `detail`).
    pub key: KeyMap,
    pub kind: MismatchKind,
    pub columns: Vec<String>,
    pub settled: Settled,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One chunk of one table, to be compared on every participant.
#[derive(Debug, Clone)]
pub struct Job {
    pub table: usize,
    pub range: Range,
}

/// What a worker found for one job.
#[derive(Debug)]
pub struct Outcome {
    pub table: usize,
    /// Rows in the chunk on the source.
    pub rows: u64,
    pub elapsed: Duration,
    /// How long the worker held the chunk, localising included.
    pub held: Duration,
    /// Per participant: how long its first-pass query took (`None`: not run).
    pub first_pass: Vec<Option<Duration>>,
    /// Per participant: its sums, or `None` when it was not compared.
    pub sums: Vec<Option<ChunkSum>>,
    /// Participants whose chunk differed from their reference (after normalisation).
    pub differing: Vec<usize>,
    pub mismatches: Vec<RowMismatch>,
    /// Differences a second look no longer saw (live comparisons only).
    pub settled_on_recheck: u64,
}

/// State every worker reads, and the little they write.
pub struct Shared {
    pub tables: Vec<TableSpec>,
    pub participants: Vec<Participant>,
    /// Per table: the money columns (positions in the table's columns).
    pub money: Vec<Vec<usize>>,
    /// `(table, participant)` pairs left out (the target's table differs in shape).
    pub excluded: Vec<(usize, usize)>,
    /// Per participant: the first error that took it out.
    pub failures: Mutex<Vec<Option<String>>>,
    pub sizers: Mutex<Vec<ChunkSizer>>,
    /// Rows reported so far per `(table, participant)`, to bound the report.
    reported: Mutex<HashMap<(usize, usize), usize>>,
}

impl Shared {
    pub fn new(
        tables: Vec<TableSpec>,
        participants: Vec<Participant>,
        money: Vec<Vec<usize>>,
        excluded: Vec<(usize, usize)>,
        chunk_time: Duration,
    ) -> Shared {
        let count = participants.len();
        let sizers = tables.iter().map(|_| ChunkSizer::new(chunk_time)).collect();
        Shared {
            tables,
            participants,
            money,
            excluded,
            failures: Mutex::new(vec![None; count]),
            sizers: Mutex::new(sizers),
            reported: Mutex::new(HashMap::new()),
        }
    }

    pub fn fail(&self, participant: usize, error: String) {
        let mut failures = self.failures.lock().expect("not poisoned");
        if failures[participant].is_none() {
            tracing::warn!("{error}");
            failures[participant] = Some(error);
        }
    }

    pub fn failure(&self, participant: usize) -> Option<String> {
        self.failures.lock().expect("not poisoned")[participant].clone()
    }

    /// A participant takes part in `table` while it and its reference are healthy.
    fn takes_part(&self, table: usize, participant: usize) -> bool {
        let failures = self.failures.lock().expect("not poisoned");
        let healthy = |p: usize| failures[p].is_none();
        !self.excluded.contains(&(table, participant))
            && healthy(participant)
            && self.participants[participant].reference.is_none_or(healthy)
    }

    /// Room left to report rows for this table and participant.
    fn report_room(&self, table: usize, participant: usize) -> usize {
        let reported = self.reported.lock().expect("not poisoned");
        MAX_REPORTED_ROWS.saturating_sub(*reported.get(&(table, participant)).unwrap_or(&0))
    }

    fn count_reported(&self, table: usize, participant: usize, rows: usize) {
        *self
            .reported
            .lock()
            .expect("not poisoned")
            .entry((table, participant))
            .or_default() += rows;
    }
}

/// Checksum `range` on the given participants at once; failures take the
/// participant out and are recorded. Also says how long each query took.
async fn checksum_all(
    shared: &Shared,
    slot: &mut Slot,
    table: usize,
    range: &Range,
    form: Form,
    who: &[usize],
) -> (Vec<Option<ChunkSum>>, Vec<Option<Duration>>) {
    let spec = &shared.tables[table];
    let money = &shared.money[table];
    let mut sums = vec![None; slot.sessions.len()];
    let mut timings = vec![None; slot.sessions.len()];
    let queries = slot
        .sessions
        .iter_mut()
        .enumerate()
        .filter(|(p, _)| who.contains(p))
        .filter_map(|(p, session)| {
            let session = session.as_mut()?;
            let sql = chunk_sql(spec, money, range, form, &shared.participants[p].dialect);
            Some(async move {
                let started = Instant::now();
                let result = checksum_on(session, &sql, money.len()).await;
                (p, result, started.elapsed())
            })
        });
    for (p, result, took) in join_all(queries).await {
        timings[p] = Some(took);
        match result {
            Ok(sum) => sums[p] = Some(sum),
            Err(error) => {
                shared.fail(p, error.to_string());
                slot.sessions[p] = None;
            }
        }
    }
    (sums, timings)
}

/// Drop sessions of participants that failed in another worker.
fn forget_failed(shared: &Shared, slot: &mut Slot) {
    let failures = shared.failures.lock().expect("not poisoned");
    for (p, failure) in failures.iter().enumerate() {
        if failure.is_some() {
            slot.sessions[p] = None;
        }
    }
}

/// Compare one chunk everywhere; localise what differs.
pub async fn process(shared: &Shared, slot: &mut Slot, job: &Job) -> Outcome {
    forget_failed(shared, slot);
    let who: Vec<usize> = (0..shared.participants.len())
        .filter(|p| shared.takes_part(job.table, *p) && slot.sessions[*p].is_some())
        .collect();
    let started = Instant::now();
    let (sums, first_pass) =
        checksum_all(shared, slot, job.table, &job.range, Form::Fast, &who).await;
    let elapsed = started.elapsed();
    // The source takes part at the point, live, or both: count whichever ran.
    let reference_rows = sums
        .iter()
        .enumerate()
        .filter(|(p, _)| shared.participants[*p].reference.is_none())
        .find_map(|(_, sum)| sum.as_ref().map(|s| s.count))
        .unwrap_or(0);
    let mut outcome = Outcome {
        table: job.table,
        rows: reference_rows,
        elapsed,
        held: Duration::ZERO,
        first_pass,
        sums,
        differing: Vec::new(),
        mismatches: Vec::new(),
        settled_on_recheck: 0,
    };
    for target in who.iter().copied() {
        let Some(reference) = shared.participants[target].reference else {
            continue;
        };
        let (Some(ours), Some(theirs)) = (&outcome.sums[target], &outcome.sums[reference]) else {
            continue;
        };
        if ours.same_rows(theirs) {
            continue;
        }
        let mut settled = Settled::Stable;
        if shared.participants[target].live {
            tokio::time::sleep(RECHECK_PAUSE).await;
            let (again, _) = checksum_all(
                shared,
                slot,
                job.table,
                &job.range,
                Form::Fast,
                &[reference, target],
            )
            .await;
            match (&again[reference], &again[target]) {
                (Some(r), Some(t)) if r.same_rows(t) => {
                    outcome.settled_on_recheck += 1;
                    continue;
                }
                (Some(r), Some(t)) => {
                    if !(r.same_rows(theirs) && t.same_rows(ours)) {
                        settled = Settled::Changing;
                    }
                }
                _ => continue,
            }
        }
        match localise(shared, slot, job, reference, target, settled).await {
            Ok(Some(rows)) => {
                outcome.differing.push(target);
                outcome.mismatches.extend(rows);
            }
            // The normalised form (JSON key order, character set) agrees.
            Ok(None) => {}
            Err((participant, error)) => {
                shared.fail(participant, error.to_string());
                slot.sessions[participant] = None;
            }
        }
    }
    outcome
}

/// Bisect a differing range down to rows. `Ok(None)`: the normalised form
/// matches after all. Rows beyond the report bound are not fetched.
async fn localise(
    shared: &Shared,
    slot: &mut Slot,
    job: &Job,
    reference: usize,
    target: usize,
    settled: Settled,
) -> Result<Option<Vec<RowMismatch>>, (usize, MysqlError)> {
    let spec = &shared.tables[job.table];
    let mut found = Vec::new();
    let mut differs = false;
    let mut pending = vec![job.range.clone()];
    while let Some(range) = pending.pop() {
        let sums = checksum_pair(shared, slot, job.table, &range, reference, target).await?;
        let (r, t) = sums;
        if r.same_rows(&t) {
            continue;
        }
        differs = true;
        let room = shared.report_room(job.table, target);
        if spec.key.is_none() {
            // Without a key there is nothing to bisect on: the table differs as a whole.
            found.push(RowMismatch {
                cluster: shared.participants[target].cluster.clone(),
                key: KeyMap::default(),
                kind: MismatchKind::Different,
                columns: Vec::new(),
                settled,
                detail: Some(format!(
                    "no usable key: the table differs as a whole ({} rows on the source, {} here)",
                    r.count, t.count
                )),
            });
            break;
        }
        if room == 0 {
            break;
        }
        // Split on the side with more rows while the range is large; small
        // ranges (or ones with nothing to split on) are compared row by row.
        let middle = if r.count.max(t.count) <= LEAF_ROWS {
            None
        } else {
            let (wider, wider_count) = if t.count > r.count {
                (target, t.count)
            } else {
                (reference, r.count)
            };
            let session = slot.sessions[wider]
                .as_mut()
                .expect("a compared participant has a session");
            chunk::middle_key(session, spec, &range, wider_count / 2)
                .await
                .map_err(|e| (wider, e))?
        };
        match middle {
            Some(middle) => {
                pending.push(Range {
                    after: Some(middle.clone()),
                    up_to: range.up_to.clone(),
                });
                pending.push(Range {
                    after: range.after.clone(),
                    up_to: Some(middle),
                });
            }
            None => {
                let rows =
                    compare_rows(shared, slot, job.table, &range, reference, target, settled)
                        .await?;
                let rows: Vec<RowMismatch> = rows.into_iter().take(room).collect();
                shared.count_reported(job.table, target, rows.len());
                found.extend(rows);
            }
        }
    }
    Ok(differs.then_some(found))
}

async fn checksum_pair(
    shared: &Shared,
    slot: &mut Slot,
    table: usize,
    range: &Range,
    reference: usize,
    target: usize,
) -> Result<(ChunkSum, ChunkSum), (usize, MysqlError)> {
    let spec = &shared.tables[table];
    let money = &shared.money[table];
    let mut results = Vec::new();
    for p in [reference, target] {
        let session = slot.sessions[p]
            .as_mut()
            .expect("a compared participant has a session");
        let sql = chunk_sql(
            spec,
            money,
            range,
            Form::Normalised,
            &shared.participants[p].dialect,
        );
        results.push(
            checksum_on(session, &sql, money.len())
                .await
                .map_err(|e| (p, e))?,
        );
    }
    let t = results.pop().expect("two results");
    let r = results.pop().expect("two results");
    Ok((r, t))
}

/// Key and hash of every row in a small range.
async fn row_hashes(
    session: &mut Session,
    table: &TableSpec,
    range: &Range,
    dialect: &Dialect,
) -> Result<Vec<(Key, String)>, MysqlError> {
    let sql = format!(
        "SELECT {}, LEFT(SHA2({}, 256), 16) FROM {}{} WHERE {} ORDER BY {}",
        chunk::key_select(table),
        canonical::row_text(table, Form::Normalised, dialect),
        canonical::table_name(table),
        chunk::index_hint(table),
        chunk::predicate(table, range),
        chunk::key_order(table)
    );
    let rows: Vec<Row> = session.query("read row hashes", &sql).await?;
    let width = table.key_columns().len();
    Ok(rows
        .into_iter()
        .map(|mut row| {
            let hash: String = row
                .take::<Option<String>, _>(width)
                .flatten()
                .unwrap_or_default();
            (chunk::key_of(table, row, 0), hash)
        })
        .collect())
}

async fn compare_rows(
    shared: &Shared,
    slot: &mut Slot,
    table: usize,
    range: &Range,
    reference: usize,
    target: usize,
    settled: Settled,
) -> Result<Vec<RowMismatch>, (usize, MysqlError)> {
    let spec = &shared.tables[table];
    let mut sides = Vec::new();
    for p in [reference, target] {
        let session = slot.sessions[p]
            .as_mut()
            .expect("a compared participant has a session");
        sides.push(
            row_hashes(session, spec, range, &shared.participants[p].dialect)
                .await
                .map_err(|e| (p, e))?,
        );
    }
    let theirs = sides.pop().expect("two sides");
    let ours = sides.pop().expect("two sides");
    let target_rows: HashMap<&Key, &String> = theirs.iter().map(|(k, h)| (k, h)).collect();
    let reference_keys: std::collections::HashSet<&Key> = ours.iter().map(|(k, _)| k).collect();
    let cluster = &shared.participants[target].cluster;
    let mut found = Vec::new();
    for (key, hash) in &ours {
        match target_rows.get(key) {
            None => found.push(mismatch(spec, cluster, key, MismatchKind::Missing, settled)),
            Some(other) if *other != hash => {
                let mut row = mismatch(spec, cluster, key, MismatchKind::Different, settled);
                row.columns =
                    differing_columns(shared, slot, table, key, reference, target).await?;
                found.push(row);
            }
            Some(_) => {}
        }
    }
    for (key, _) in &theirs {
        if !reference_keys.contains(key) {
            found.push(mismatch(spec, cluster, key, MismatchKind::Extra, settled));
        }
    }
    Ok(found)
}

fn mismatch(
    table: &TableSpec,
    cluster: &str,
    key: &Key,
    kind: MismatchKind,
    settled: Settled,
) -> RowMismatch {
    RowMismatch {
        cluster: cluster.to_string(),
        key: KeyMap(
            table
                .key_columns()
                .iter()
                .zip(key)
                .map(|(column, value)| (column.name.clone(), value.to_json()))
                .collect(),
        ),
        kind,
        columns: Vec::new(),
        settled,
        detail: None,
    }
}

/// Names of the columns whose canonical values differ for one row.
async fn differing_columns(
    shared: &Shared,
    slot: &mut Slot,
    table: usize,
    key: &Key,
    reference: usize,
    target: usize,
) -> Result<Vec<String>, (usize, MysqlError)> {
    let spec = &shared.tables[table];
    let equal_key = spec
        .key_columns()
        .iter()
        .zip(key)
        .map(|(column, value)| format!("{} = {}", canonical::ident(&column.name), value.literal()))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut sides: Vec<Vec<Option<String>>> = Vec::new();
    for p in [reference, target] {
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            canonical::column_hashes(spec, &shared.participants[p].dialect)
                .iter()
                .map(|h| format!("CAST({h} AS CHAR)"))
                .collect::<Vec<_>>()
                .join(", "),
            canonical::table_name(spec),
            equal_key
        );
        let session = slot.sessions[p]
            .as_mut()
            .expect("a compared participant has a session");
        let row: Option<Row> = session
            .query_first("compare a row's columns", &sql)
            .await
            .map_err(|e| (p, e))?;
        let values = row
            .map(|mut row| {
                (0..spec.columns.len())
                    .map(|i| row.take::<Option<String>, _>(i).flatten())
                    .collect()
            })
            .unwrap_or_default();
        sides.push(values);
    }
    Ok(spec
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| sides[0].get(*i) != sides[1].get(*i))
        .map(|(_, column)| column.name.clone())
        .collect())
}

/// Walk every table's key on the source and queue its chunks, sizing each
/// from what the workers measured. Stops early if the receiver is gone.
/// Returns the session and the time its key queries took.
pub async fn walk(
    shared: Arc<Shared>,
    session: Session,
    source: usize,
    jobs: mpsc::Sender<Job>,
) -> (Session, Duration) {
    let mut walking = Duration::ZERO;
    let session = walk_keys(&shared, session, source, &jobs, &mut walking).await;
    (session, walking)
}

async fn walk_keys(
    shared: &Shared,
    mut session: Session,
    source: usize,
    jobs: &mpsc::Sender<Job>,
    walking: &mut Duration,
) -> Session {
    for (index, table) in shared.tables.iter().enumerate() {
        if table.key.is_none() {
            if jobs
                .send(Job {
                    table: index,
                    range: Range::all(),
                })
                .await
                .is_err()
            {
                break;
            }
            continue;
        }
        // An evenly spread integer key is cut by arithmetic: no query reads
        // the source's index to find each boundary.
        let asked = Instant::now();
        let rows = shared.sizers.lock().expect("not poisoned")[index].rows();
        let span = chunk::span_walker(&mut session, table, rows).await;
        *walking += asked.elapsed();
        let mut span = match span {
            Ok(span) => span,
            Err(error) => {
                shared.fail(source, error.to_string());
                return session;
            }
        };
        let mut walker = chunk::KeyWalker::default();
        loop {
            if shared.failure(source).is_some() {
                return session;
            }
            let rows = shared.sizers.lock().expect("not poisoned")[index].rows();
            let asked = Instant::now();
            let next = match &mut span {
                Some(span) => Ok(span.next(rows)),
                None => walker.next(&mut session, table, rows).await,
            };
            *walking += asked.elapsed();
            match next {
                Ok(Some(range)) => {
                    if jobs
                        .send(Job {
                            table: index,
                            range,
                        })
                        .await
                        .is_err()
                    {
                        return session;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    shared.fail(source, error.to_string());
                    return session;
                }
            }
        }
    }
    session
}

/// A worker: take jobs until there are none, report each outcome.
pub async fn work(
    shared: Arc<Shared>,
    mut slot: Slot,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    outcomes: mpsc::Sender<Outcome>,
) -> Slot {
    loop {
        let job = jobs.lock().await.recv().await;
        let Some(job) = job else { break };
        let started = Instant::now();
        let mut outcome = process(&shared, &mut slot, &job).await;
        outcome.held = started.elapsed();
        {
            let mut sizers = shared.sizers.lock().expect("not poisoned");
            sizers[job.table].observe(outcome.rows, outcome.elapsed);
        }
        if outcomes.send(outcome).await.is_err() {
            break;
        }
    }
    slot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::canonical::JsonNormaliser;
    use crate::tables::chunk::KeyValue;
    use crate::tables::schema::{ChunkKey, Column, ColumnClass};

    #[test]
    fn chunk_sql_returns_one_small_row() {
        let table = TableSpec {
            schema: "refunds".into(),
            name: "transactions".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    data_type: "bigint".into(),
                    class: ColumnClass::Integer,
                    nullable: false,
                    generated: false,
                },
                Column {
                    name: "amount".into(),
                    data_type: "decimal".into(),
                    class: ColumnClass::Decimal,
                    nullable: false,
                    generated: false,
                },
            ],
            key: Some(ChunkKey {
                index: "PRIMARY".into(),
                columns: vec![0],
            }),
            estimated_rows: 0,
            versioned: false,
        };
        let dialect = Dialect {
            json: JsonNormaliser::MariadbNormalize,
            float_precision: 12,
        };
        let range = Range {
            after: Some(vec![KeyValue::Number("5".into())]),
            up_to: None,
        };
        // The first pass: one CRC32 per row, BIT_XOR only (keyed rows are
        // distinct), nothing materialised.
        let sql = chunk_sql(&table, &[1], &range, Form::Fast, &dialect);
        assert_eq!(
            sql,
            "SELECT COUNT(*), '0', CAST(COALESCE(BIT_XOR(CRC32(CONCAT_WS('|', `id`, `amount`))), 0) AS CHAR), \
             CAST(SUM(`amount`) AS CHAR), COUNT(`amount`) FROM `refunds`.`transactions` FORCE INDEX (`PRIMARY`) \
             WHERE (`id` > 5)"
        );
        // The exact pass, and any pass over rows without a key: 64 bits of
        // SHA-256, summed as well as XORed, computed once per row.
        let sql = chunk_sql(&table, &[1], &range, Form::Normalised, &dialect);
        assert_eq!(
            sql,
            "SELECT COUNT(*), CAST(COALESCE(SUM(h), 0) AS CHAR), CAST(COALESCE(BIT_XOR(h), 0) AS CHAR), \
             CAST(SUM(m0) AS CHAR), COUNT(m0) FROM (SELECT CAST(CONV(LEFT(SHA2(CONCAT_WS('|', `id`, `amount`), 256), 16), 16, 10) AS UNSIGNED) AS h, \
             `amount` AS m0 FROM `refunds`.`transactions` FORCE INDEX (`PRIMARY`) WHERE (`id` > 5) \
             LIMIT 18446744073709551615) AS chunk_rows"
        );
        let keyless = TableSpec { key: None, ..table };
        let sql = chunk_sql(&keyless, &[], &Range::all(), Form::Fast, &dialect);
        assert!(
            sql.contains("SUM(h)") && sql.contains("CRC32(CONCAT_WS"),
            "{sql}"
        );
    }
}
