//! What a checksum found: per cluster, per table, the rows and columns that differ, the money totals reconciled exactly, and the human summary.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every row and every money total agrees on every compared cluster.
    Match,
    /// At least one row, table shape or total differs.
    Mismatch,
    /// No difference found, but some cluster could not be compared.
    Incomplete,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterOutcome {
    pub cluster: String,
    #[serde(flatten)]
    pub basis: Basis,
    pub status: &'static str,
    pub rows: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemaDifference {
    pub cluster: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableOutcome {
    pub table: String,
    pub status: Verdict,
    pub rows: u64,
    pub chunks: u64,
    /// The chunking key; empty when the table has none (compared whole).
    pub key: Vec<String>,
    pub warning: Option<String>,
    pub mismatches: Vec<RowMismatch>,
    pub schema_differences: Vec<SchemaDifference>,
    /// Differences seen once and gone on a second look (live comparisons).
    pub settled_on_recheck: u64,
    /// More rows differ than the report lists.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub table: String,
    pub column: String,
    pub cluster: String,
    /// Exact SUM as the server prints DECIMAL; `null` when every value is NULL.
    pub sum: Option<String>,
    pub count: u64,
    /// Target minus source, exact; `null` on the source.
    pub difference: Option<String>,
    pub matches: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChecksumReport {
    pub status: Verdict,
    /// Source rows compared (each against every compared target).
    pub rows_compared: u64,
    pub elapsed_ms: u64,
    /// The GTID position every `consistent` or `frozen` target was compared at.
    pub position: Option<String>,
    /// How long the source's writes waited for the consistent point.
    pub source_lock_ms: Option<u64>,
    pub workers: usize,
    pub clusters: Vec<ClusterOutcome>,
    pub tables: Vec<TableOutcome>,
    pub reconciliation: Vec<Reconciliation>,
    pub warnings: Vec<String>,
    /// Where the time went (`--stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<super::stats::Stats>,
}

impl ChecksumReport {
    pub fn outcome(&self) -> Outcome {
        match self.status {
            Verdict::Match => Outcome::Success,
            Verdict::Mismatch => ErrorKind::Mismatch.into(),
            Verdict::Incomplete => ErrorKind::Failed.into(),
        }
    }

    /// One line for logs and step details.
    pub fn summary(&self) -> String {
        let rows: usize = self.tables.iter().map(|t| t.mismatches.len()).sum();
        let shapes: usize = self.tables.iter().map(|t| t.schema_differences.len()).sum();
        let totals = self.reconciliation.iter().filter(|r| !r.matches).count();
        let failed: Vec<String> = self
            .clusters
            .iter()
            .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.cluster)))
            .collect();
        let mut text = format!(
            "checksum {}: {} rows in {} tables, {rows} differing rows, {shapes} table shape differences, {totals} differing totals",
            match self.status {
                Verdict::Match => "match",
                Verdict::Mismatch => "MISMATCH",
                Verdict::Incomplete => "incomplete",
            },
            self.rows_compared,
            self.tables.len()
        );
        if !failed.is_empty() {
            text.push_str(&format!("; not compared: {}", failed.join("; ")));
        }
        text
    }
}

/// Totals gathered from every outcome.
pub(super) struct Tally {
    pub(super) rows: Vec<u64>,
    pub(super) chunks: Vec<u64>,
    pub(super) mismatches: Vec<Vec<RowMismatch>>,
    pub(super) differing_chunks: Vec<u64>,
    pub(super) settled_on_recheck: Vec<u64>,
    /// `[table][participant][money column]` → (sum, non-null count, any non-null sum).
    pub(super) money: Vec<Vec<Vec<(Decimal, u64, bool)>>>,
    /// Rows compared per participant.
    pub(super) participant_rows: Vec<u64>,
    /// Participants that differed anywhere.
    pub(super) differed: Vec<bool>,
}

impl Tally {
    pub(super) fn new(shared: &Shared) -> Tally {
        let tables = shared.tables.len();
        let participants = shared.participants.len();
        Tally {
            rows: vec![0; tables],
            chunks: vec![0; tables],
            mismatches: vec![Vec::new(); tables],
            differing_chunks: vec![0; tables],
            settled_on_recheck: vec![0; tables],
            money: shared
                .money
                .iter()
                .map(|columns| vec![vec![(Decimal::zero(), 0, false); columns.len()]; participants])
                .collect(),
            participant_rows: vec![0; participants],
            differed: vec![false; participants],
        }
    }

    pub(super) fn add(&mut self, shared: &Shared, outcome: compare::Outcome) {
        let t = outcome.table;
        self.rows[t] += outcome.rows;
        self.chunks[t] += 1;
        self.settled_on_recheck[t] += outcome.settled_on_recheck;
        if !outcome.differing.is_empty() {
            self.differing_chunks[t] += 1;
        }
        for p in &outcome.differing {
            self.differed[*p] = true;
        }
        for (p, sum) in outcome.sums.iter().enumerate() {
            let Some(sum) = sum else { continue };
            self.participant_rows[p] += sum.count;
            for (m, (total, count)) in sum.money.iter().enumerate() {
                let slot = &mut self.money[t][p][m];
                if let Some(total) = total.as_deref().and_then(Decimal::parse) {
                    slot.0 = slot.0.add(&total);
                    slot.2 = true;
                }
                slot.1 += count;
            }
        }
        self.mismatches[t].extend(outcome.mismatches);
        let _ = shared;
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn report(
        mut self,
        shared: &Shared,
        bases: &[Option<Basis>],
        schema_differences: Vec<Vec<SchemaDifference>>,
        position: Option<String>,
        source_lock_ms: Option<u64>,
        workers: usize,
        warnings: Vec<String>,
        elapsed: Duration,
    ) -> ChecksumReport {
        let failures = shared.failures.lock().expect("not poisoned").clone();
        let source_failure = failures[SOURCE_AT_POINT]
            .clone()
            .or_else(|| failures[SOURCE_LIVE].clone());
        let mut clusters = vec![ClusterOutcome {
            cluster: shared.participants[SOURCE_AT_POINT].cluster.clone(),
            basis: Basis::Consistent,
            status: if source_failure.is_some() {
                "error"
            } else {
                "source"
            },
            rows: self.participant_rows[SOURCE_AT_POINT].max(self.participant_rows[SOURCE_LIVE]),
            error: source_failure,
        }];
        let mut reconciliation = Vec::new();
        for (t, participant) in shared.participants.iter().enumerate().skip(FIRST_TARGET) {
            let target = t - FIRST_TARGET;
            let reference = participant.reference.expect("targets have a reference");
            let error = failures[t].clone().or_else(|| {
                failures[reference]
                    .clone()
                    .map(|e| format!("the source failed: {e}"))
            });
            let shape_differs = schema_differences
                .iter()
                .any(|list| list.iter().any(|d| d.cluster == participant.cluster));
            clusters.push(ClusterOutcome {
                cluster: participant.cluster.clone(),
                basis: bases[target]
                    .clone()
                    .unwrap_or_else(|| Basis::Live("not reachable".to_string())),
                status: if self.differed[t] || shape_differs {
                    "mismatch"
                } else if error.is_some() {
                    "error"
                } else {
                    "match"
                },
                rows: self.participant_rows[t],
                error,
            });
        }
        let mut tables = Vec::new();
        for (i, table) in shared.tables.iter().enumerate() {
            let mut mismatches = std::mem::take(&mut self.mismatches[i]);
            mismatches.sort_by(|a, b| {
                a.cluster
                    .cmp(&b.cluster)
                    .then_with(|| a.key.to_string().cmp(&b.key.to_string()))
            });
            let truncated = shared.participants.iter().enumerate().any(|(p, _)| {
                mismatches
                    .iter()
                    .filter(|m| m.cluster == shared.participants[p].cluster)
                    .count()
                    >= compare::MAX_REPORTED_ROWS
            });
            // Money totals: each target against the source it was compared with.
            for (m, column) in shared.money[i].iter().enumerate() {
                let column_name = &table.columns[*column].name;
                let source_total = |p: usize| self.money[i][p][m].clone();
                let primary_source = if shared
                    .participants
                    .iter()
                    .skip(FIRST_TARGET)
                    .any(|p| p.reference == Some(SOURCE_AT_POINT))
                {
                    SOURCE_AT_POINT
                } else {
                    SOURCE_LIVE
                };
                let (sum, count, any) = source_total(primary_source);
                reconciliation.push(Reconciliation {
                    table: table.display_name(),
                    column: column_name.clone(),
                    cluster: shared.participants[primary_source].cluster.clone(),
                    sum: any.then(|| sum.to_string()),
                    count,
                    difference: None,
                    matches: true,
                });
                for (p, participant) in shared.participants.iter().enumerate().skip(FIRST_TARGET) {
                    if failures[p].is_some()
                        || shared.excluded.contains(&(i, p))
                        || participant.reference.is_none()
                    {
                        continue;
                    }
                    let reference = participant.reference.expect("checked");
                    let (ref_sum, ref_count, _) = source_total(reference);
                    let (sum, count, any) = source_total(p);
                    let difference = sum.subtract(&ref_sum);
                    let matches = difference.is_zero() && count == ref_count;
                    reconciliation.push(Reconciliation {
                        table: table.display_name(),
                        column: column_name.clone(),
                        cluster: participant.cluster.clone(),
                        sum: any.then(|| sum.to_string()),
                        count,
                        difference: Some(difference.to_string()),
                        matches,
                    });
                }
            }
            let status = if !mismatches.is_empty()
                || self.differing_chunks[i] > 0
                || !schema_differences[i].is_empty()
            {
                Verdict::Mismatch
            } else if failures.iter().any(Option::is_some) {
                Verdict::Incomplete
            } else {
                Verdict::Match
            };
            tables.push(TableOutcome {
                table: table.display_name(),
                status,
                rows: self.rows[i],
                chunks: self.chunks[i],
                key: table.key_columns().iter().map(|c| c.name.clone()).collect(),
                warning: table
                    .key
                    .is_none()
                    .then(|| "no usable key: compared as a whole table".to_string()),
                mismatches,
                schema_differences: schema_differences[i].clone(),
                settled_on_recheck: self.settled_on_recheck[i],
                truncated,
            });
        }
        let status = if tables.iter().any(|t| t.status == Verdict::Mismatch)
            || reconciliation.iter().any(|r| !r.matches)
        {
            Verdict::Mismatch
        } else if clusters.iter().any(|c| c.error.is_some()) {
            Verdict::Incomplete
        } else {
            Verdict::Match
        };
        ChecksumReport {
            stats: None,
            status,
            rows_compared: self.rows.iter().sum(),
            elapsed_ms: elapsed.as_millis() as u64,
            position,
            source_lock_ms,
            workers,
            clusters,
            tables,
            reconciliation,
            warnings,
        }
    }
}

/// The human summary: one line per cluster, per table, per differing row and total.
pub fn render(report: &ChecksumReport) -> String {
    let mut out = String::new();
    let clusters: Vec<Vec<String>> = report
        .clusters
        .iter()
        .map(|c| {
            vec![
                c.cluster.clone(),
                match &c.basis {
                    Basis::Consistent => "consistent point".to_string(),
                    Basis::Frozen => "frozen position".to_string(),
                    Basis::Live(reason) => format!("live ({reason})"),
                },
                c.status.to_string(),
                c.rows.to_string(),
                c.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&crate::text::table(
        &["CLUSTER", "COMPARED AT", "STATUS", "ROWS", "ERROR"],
        &clusters,
    ));
    out.push('\n');
    let tables: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.clone(),
                format!("{:?}", t.status).to_lowercase(),
                t.rows.to_string(),
                t.chunks.to_string(),
                if t.key.is_empty() {
                    "(none)".to_string()
                } else {
                    t.key.join(", ")
                },
                t.mismatches.len().to_string(),
            ]
        })
        .collect();
    out.push_str(&crate::text::table(
        &["TABLE", "STATUS", "ROWS", "CHUNKS", "KEY", "DIFFERING ROWS"],
        &tables,
    ));
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .flat_map(|t| {
            t.mismatches.iter().map(move |m| {
                vec![
                    t.table.clone(),
                    m.cluster.clone(),
                    m.detail.clone().unwrap_or_else(|| m.key.to_string()),
                    format!("{:?}", m.kind).to_lowercase(),
                    m.columns.join(", "),
                    format!("{:?}", m.settled).to_lowercase(),
                ]
            })
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&crate::text::table(
            &["TABLE", "CLUSTER", "KEY", "KIND", "COLUMNS", "SETTLED"],
            &rows,
        ));
    }
    for table in &report.tables {
        for difference in &table.schema_differences {
            out.push_str(&format!(
                "\n{} on {}: {}\n",
                table.table, difference.cluster, difference.detail
            ));
        }
    }
    let mut totals: BTreeMap<(String, String), Vec<&Reconciliation>> = BTreeMap::new();
    for line in &report.reconciliation {
        totals
            .entry((line.table.clone(), line.column.clone()))
            .or_default()
            .push(line);
    }
    if !totals.is_empty() {
        let rows: Vec<Vec<String>> = totals
            .values()
            .flatten()
            .map(|r| {
                vec![
                    format!("{}.{}", r.table, r.column),
                    r.cluster.clone(),
                    r.sum.clone().unwrap_or_else(|| "NULL".to_string()),
                    r.count.to_string(),
                    r.difference.clone().unwrap_or_else(|| "-".to_string()),
                    if r.matches { "ok" } else { "DIFFERS" }.to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&crate::text::table(
            &["MONEY COLUMN", "CLUSTER", "SUM", "COUNT", "DIFFERENCE", ""],
            &rows,
        ));
    }
    for warning in &report.warnings {
        out.push_str(&format!("\nwarning: {warning}"));
    }
    out.push_str(&format!(
        "\n{} ({} ms{}{})\n",
        report.summary(),
        report.elapsed_ms,
        report
            .position
            .as_ref()
            .map(|p| format!(", at GTID {p}"))
            .unwrap_or_default(),
        report
            .source_lock_ms
            .map(|ms| format!(", source writes paused {ms} ms"))
            .unwrap_or_default()
    ));
    if let Some(stats) = &report.stats {
        out.push_str(&super::stats::render(stats));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::compare::KeyMap;
    use crate::checksum::{MismatchKind, Settled};

    /// The human summary an operator reads after `cutover checksum`: the
    /// clusters, the tables, the row that differs and the money total.
    #[test]
    fn the_human_summary_names_the_row_the_column_and_the_money() {
        let report = ChecksumReport {
            stats: None,
            status: Verdict::Mismatch,
            rows_compared: 3000,
            elapsed_ms: 412,
            position: Some("0-10-1234".into()),
            source_lock_ms: Some(3),
            workers: 4,
            clusters: vec![
                ClusterOutcome {
                    cluster: "c1".into(),
                    basis: Basis::Consistent,
                    status: "compared",
                    rows: 3000,
                    error: None,
                },
                ClusterOutcome {
                    cluster: "c6".into(),
                    basis: Basis::Live("replicates from another source".into()),
                    status: "failed",
                    rows: 0,
                    error: Some("cluster `c6`: cannot connect: refused".into()),
                },
            ],
            tables: vec![TableOutcome {
                table: "refunds.transactions".into(),
                status: Verdict::Mismatch,
                rows: 3000,
                chunks: 3,
                key: vec!["id".into()],
                warning: None,
                mismatches: vec![RowMismatch {
                    cluster: "c1".into(),
                    key: KeyMap(vec![("id".into(), serde_json::json!(1900))]),
                    kind: MismatchKind::Different,
                    columns: vec!["amount".into()],
                    settled: Settled::Stable,
                    detail: None,
                }],
                schema_differences: Vec::new(),
                settled_on_recheck: 0,
                truncated: false,
            }],
            reconciliation: vec![Reconciliation {
                table: "refunds.transactions".into(),
                column: "amount".into(),
                cluster: "c1".into(),
                sum: Some("1500000.01".into()),
                count: 3000,
                difference: Some("0.01".into()),
                matches: false,
            }],
            warnings: vec!["JSON columns are normalised differently by MySQL and MariaDB".into()],
        };
        insta::assert_snapshot!(render(&report));
    }
}
