//! Append-only audit log of every change to a server or DNS, hash-chained so
//! that an edited, reordered or deleted entry is detected.

use super::{Backend, Store, StoreError, exclusively, on_pool};
use crate::whoami;
use serde::Serialize;
use sha2::{Digest, Sha256};

const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One change, as the caller describes it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub run_id: Option<String>,
    pub step: Option<String>,
    /// The cluster or DNS server changed.
    pub target: String,
    /// What was done, e.g. `SET GLOBAL read_only = 1`. Never a secret.
    pub action: String,
    /// `ok` or the error.
    pub result: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditProblem {
    pub seq: Option<i64>,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditVerification {
    pub entries: u64,
    pub intact: bool,
    pub problems: Vec<AuditProblem>,
}

#[allow(clippy::too_many_arguments)]
fn entry_hash(
    seq: i64,
    at: &str,
    actor: &str,
    run_id: Option<&str>,
    step: Option<&str>,
    target: &str,
    action: &str,
    result: &str,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([
        seq, at, actor, run_id, step, target, action, result, prev_hash
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// A row of `audit_log`: seq, at, actor, run_id, step, target, action,
/// result, prev_hash, hash.
type AuditRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
);

impl Store {
    /// The highest sequence number ever issued: SQLite keeps it for an
    /// AUTOINCREMENT table, the PostgreSQL store in `audit_issued`.
    pub(super) fn issued_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'",
            Backend::Postgres(_) => "SELECT seq FROM audit_issued WHERE name = 'audit_log'",
        }
    }

    /// What records the sequence just issued, where the database does not.
    fn issue_sql(&self) -> Option<&'static str> {
        match self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(_) => Some(
                "INSERT INTO audit_issued (name, seq) VALUES ('audit_log', $1)
                 ON CONFLICT (name) DO UPDATE SET seq = GREATEST(audit_issued.seq, excluded.seq)",
            ),
        }
    }

    /// Append one entry, chained to the previous one.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let issued_sql = self.issued_sql();
        let issue_sql = self.issue_sql();
        let seq = exclusively!(self, "audit_log", |tx| {
            async {
            let db = |e| self.database_error(e);
            let last: Option<(i64, String)> =
                sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            let issued: Option<i64> = sqlx::query_scalar(issued_sql)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let prev_hash = last.map_or_else(|| GENESIS_HASH.to_string(), |(_, hash)| hash);
            let seq = issued.unwrap_or(0) + 1;
            let at = whoami::now();
            let actor = whoami::actor();
            let hash = entry_hash(
                seq,
                &at,
                &actor,
                entry.run_id.as_deref(),
                entry.step.as_deref(),
                &entry.target,
                &entry.action,
                &entry.result,
                &prev_hash,
            );
            sqlx::query(
                "INSERT INTO audit_log (seq, at, actor, run_id, step, target, action, result, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(seq)
            .bind(&at)
            .bind(&actor)
            .bind(&entry.run_id)
            .bind(&entry.step)
            .bind(&entry.target)
            .bind(&entry.action)
            .bind(&entry.result)
            .bind(&prev_hash)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(sql) = issue_sql {
                sqlx::query(sql)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            Ok::<_, StoreError>(seq)
        }
        .await
        });
        Ok(seq)
    }

    /// Every entry, oldest first, and the highest sequence ever issued.
    async fn audit_chain(&self) -> Result<(Vec<AuditRow>, Option<i64>), StoreError> {
        let issued_sql = self.issued_sql();
        on_pool!(self, |pool| async {
            let rows: Vec<AuditRow> = sqlx::query_as(
                "SELECT seq, at, actor, run_id, step, target, action, result, prev_hash, hash
                 FROM audit_log ORDER BY seq",
            )
            .fetch_all(pool)
            .await?;
            let issued: Option<i64> = sqlx::query_scalar(issued_sql).fetch_optional(pool).await?;
            Ok::<_, sqlx::Error>((rows, issued))
        }
        .await)
        .map_err(|e| self.database_error(e))
    }

    /// Recompute the chain from the first entry.
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        let (rows, issued) = self.audit_chain().await?;
        let mut problems = Vec::new();
        let mut expected_prev = GENESIS_HASH.to_string();
        let mut expected_seq = 1_i64;
        for (seq, at, actor, run_id, step, target, action, result, prev_hash, hash) in &rows {
            let seq = *seq;
            if seq != expected_seq {
                problems.push(AuditProblem {
                    seq: Some(seq),
                    problem: format!("entries {expected_seq}..{} are missing (deleted)", seq - 1),
                });
            } else if *prev_hash != expected_prev {
                problems.push(AuditProblem {
                    seq: Some(seq),
                    problem: "link to the previous entry is broken".to_string(),
                });
            }
            let recomputed = entry_hash(
                seq,
                at,
                actor,
                run_id.as_deref(),
                step.as_deref(),
                target,
                action,
                result,
                prev_hash,
            );
            if recomputed != *hash {
                problems.push(AuditProblem {
                    seq: Some(seq),
                    problem: "entry was modified after it was written".to_string(),
                });
            }
            expected_prev = hash.clone();
            expected_seq = seq + 1;
        }
        let highest_issued = issued.unwrap_or(0);
        if highest_issued >= expected_seq {
            problems.push(AuditProblem {
                seq: None,
                problem: format!(
                    "the last {} entr{} (up to {highest_issued}) were deleted",
                    highest_issued - expected_seq + 1,
                    if highest_issued == expected_seq {
                        "y"
                    } else {
                        "ies"
                    }
                ),
            });
        }
        Ok(AuditVerification {
            entries: rows.len() as u64,
            intact: problems.is_empty(),
            problems,
        })
    }
}

/// A stored audit entry, as listed by `cutover audit log`.
#[derive(Debug, Clone, Serialize)]
pub struct StoredAuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub run_id: Option<String>,
    pub step: Option<String>,
    pub target: String,
    pub action: String,
    pub result: String,
    pub hash: String,
}

impl Store {
    /// The most recent entries, oldest first.
    pub async fn audit_entries(&self, limit: u32) -> Result<Vec<StoredAuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT seq, at, actor, run_id, step, target, action, result, prev_hash, hash FROM
               (SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1) AS newest ORDER BY seq",
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .into_iter()
            .map(
                |(seq, at, actor, run_id, step, target, action, result, _, hash)| {
                    StoredAuditEntry {
                        seq,
                        at,
                        actor,
                        run_id,
                        step,
                        target,
                        action,
                        result,
                        hash,
                    }
                },
            )
            .collect())
    }
}
