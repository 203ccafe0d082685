//! Precheck: the other databases a source holds besides the plan's. Their
//! writes never reach a target (every link carries the plan's databases
//! only), but a freeze of the source stops them too: the cutover fences the
//! whole server unless the plan says `scope: databases`. Said before the
//! window, with when each was last written.

use super::check::{CheckStatus, Precheck};
use crate::mysql::{Endpoint, Flavor, MysqlError, Session, quote, server};
use crate::plan::ValidatedPlan;
use crate::secret::SecretError;
use crate::tables::schema;

/// One other database: its tables and how long ago one was last written
/// (`None`: not since the server started, or the server does not say).
#[derive(Debug, Clone, PartialEq)]
struct Other {
    name: String,
    tables: u64,
    idle_seconds: Option<u64>,
    /// The server caches the write time (MySQL): it may be old.
    cached: bool,
}

/// MySQL caches `UPDATE_TIME` (for `information_schema_stats_expiry`, a
/// day by default); refreshing it on a busy source opens every table's
/// statistics while the application writes, which a precheck must not do. So
/// MySQL's last-write times may be old, and say so.
async fn others(session: &mut Session, plan: &ValidatedPlan) -> Result<Vec<Other>, MysqlError> {
    let cached = server::facts(session).await?.flavor == Flavor::Mysql;
    let excluded: Vec<String> = schema::EXCLUDED_SCHEMAS
        .iter()
        .map(|s| s.to_string())
        .chain(plan.databases.clone().unwrap_or_default())
        .map(|s| quote(&s))
        .collect();
    // A write landing while the statement runs is later than its NOW():
    // without the floor at 0 that reads as a negative count of seconds.
    let rows: Vec<(String, u64, Option<u64>)> = session
        .query(
            "list the source's other databases",
            &format!(
                "SELECT s.SCHEMA_NAME, COUNT(t.TABLE_NAME), \
                 GREATEST(TIMESTAMPDIFF(SECOND, MAX(t.UPDATE_TIME), NOW()), 0) \
                 FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t \
                 ON t.TABLE_SCHEMA = s.SCHEMA_NAME AND t.TABLE_TYPE = 'BASE TABLE' \
                 WHERE s.SCHEMA_NAME NOT IN ({}) GROUP BY s.SCHEMA_NAME ORDER BY s.SCHEMA_NAME",
                excluded.join(", ")
            ),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(name, tables, idle_seconds)| Other {
            name,
            tables,
            idle_seconds,
            cached,
        })
        .collect())
}

fn describe(others: &[Other]) -> String {
    others
        .iter()
        .map(|o| {
            let written = match (o.idle_seconds, o.cached) {
                (Some(seconds), false) => format!("last written {seconds} s ago"),
                (Some(seconds), true) => {
                    format!("last written at least {seconds} s ago, as cached")
                }
                (None, false) => "no write seen since the server started".into(),
                (None, true) => "no write time cached".into(),
            };
            format!("`{}` ({} table(s), {written})", o.name, o.tables)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The verdict: nothing else on the source passes; other databases warn when
/// the plan freezes the whole source (their writes stop with it), and pass
/// otherwise (their writes simply never reach a target, and a scoped fence
/// leaves them alone).
fn judge(
    others: &[Other],
    plan_names_databases: bool,
    freezes: bool,
    scoped: bool,
) -> (CheckStatus, String) {
    if others.is_empty() {
        return (
            CheckStatus::Pass,
            "holds no database besides the plan's".into(),
        );
    }
    if !plan_names_databases {
        return (
            CheckStatus::Pass,
            format!(
                "the plan names no `databases:`, so every database moves: {}",
                describe(others)
            ),
        );
    }
    let listed = describe(others);
    if freezes && scoped {
        (
            CheckStatus::Pass,
            format!(
                "also holds {listed}: replication carries none of them to the targets, and \
                 `scope: databases` fences only the plan's databases (their tables locked for the \
                 freeze, then kept from the applications), so their writes go on"
            ),
        )
    } else if freezes {
        (
            CheckStatus::Warn,
            format!(
                "also holds {listed}: replication carries none of them to the targets, but the \
                 switchover's freeze fences the whole server (`scope: server`), so their writes \
                 stop for the freeze and fail against read_only afterwards; `scope: databases` \
                 would fence only the plan's"
            ),
        )
    } else {
        (
            CheckStatus::Pass,
            format!("also holds {listed}: replication carries none of them to the targets"),
        )
    }
}

pub async fn check(
    plan: &ValidatedPlan,
    source: &str,
    freezes: bool,
) -> Result<Vec<Precheck>, SecretError> {
    let Some(cluster) = plan.cluster(source) else {
        return Ok(vec![]);
    };
    let Ok(mut session) = Session::connect(&Endpoint::for_cluster(cluster)?).await else {
        return Ok(vec![]);
    };
    let found = others(&mut session, plan).await;
    session.close().await;
    let (status, detail) = match found {
        Ok(others) => judge(
            &others,
            plan.databases.is_some(),
            freezes,
            plan.fence_scope(source).is_some(),
        ),
        Err(error) => (
            CheckStatus::Warn,
            format!("cannot list the other databases: {error}"),
        ),
    };
    Ok(vec![Precheck {
        cluster: source.to_string(),
        check: "other databases".into(),
        status,
        detail,
        phase: None,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_databases_warn_only_when_the_freeze_stops_them() {
        let bars = vec![Other {
            name: "bars".into(),
            tables: 1,
            idle_seconds: Some(3),
            cached: false,
        }];
        assert_eq!(judge(&[], true, true, false).0, CheckStatus::Pass);
        let (status, detail) = judge(&bars, true, true, false);
        assert_eq!(status, CheckStatus::Warn);
        assert!(
            detail.contains("`bars` (1 table(s), last written 3 s ago)"),
            "{detail}"
        );
        assert_eq!(judge(&bars, true, false, false).0, CheckStatus::Pass);
        let (status, detail) = judge(&bars, true, true, true);
        assert_eq!(status, CheckStatus::Pass);
        assert!(detail.contains("scope: databases"), "{detail}");
        assert!(
            judge(&bars, false, true, false)
                .1
                .contains("every database moves")
        );
    }
}
