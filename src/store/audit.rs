//! Append-only audit log of every change to a server or DNS, hash-chained so
//! that an edited, reordered or deleted entry is detected.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError};
use crate::whoami;

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

impl Store {
    /// Append one entry, chained to the previous one.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.database_error(e))?;
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.database_error(e))?;
        let issued: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.database_error(e))?;
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .map_err(|e| self.database_error(e))?;
        tx.commit().await.map_err(|e| self.database_error(e))?;
        Ok(seq)
    }

    /// Recompute the chain from the first entry.
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, run_id, step, target, action, result, prev_hash, hash
             FROM audit_log ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.database_error(e))?;
        let issued: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.database_error(e))?;
        let mut problems = Vec::new();
        let mut expected_prev = GENESIS_HASH.to_string();
        let mut expected_seq = 1_i64;
        for row in &rows {
            let seq: i64 = row.get("seq");
            let prev_hash: String = row.get("prev_hash");
            let hash: String = row.get("hash");
            if seq != expected_seq {
                problems.push(AuditProblem {
                    seq: Some(seq),
                    problem: format!("entries {expected_seq}..{} are missing (deleted)", seq - 1),
                });
            } else if prev_hash != expected_prev {
                problems.push(AuditProblem {
                    seq: Some(seq),
                    problem: "link to the previous entry is broken".to_string(),
                });
            }
            let recomputed = entry_hash(
                seq,
                row.get("at"),
                row.get("actor"),
                row.get("run_id"),
                row.get("step"),
                row.get("target"),
                row.get("action"),
                row.get("result"),
                &prev_hash,
            );
            if recomputed != hash {
                problems.push(AuditProblem {
                    seq: Some(seq),
                    problem: "entry was modified after it was written".to_string(),
                });
            }
            expected_prev = hash;
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
        let rows = sqlx::query(
            "SELECT seq, at, actor, run_id, step, target, action, result, hash FROM
               (SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?) ORDER BY seq",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .iter()
            .map(|row| StoredAuditEntry {
                seq: row.get("seq"),
                at: row.get("at"),
                actor: row.get("actor"),
                run_id: row.get("run_id"),
                step: row.get("step"),
                target: row.get("target"),
                action: row.get("action"),
                result: row.get("result"),
                hash: row.get("hash"),
            })
            .collect())
    }
}
