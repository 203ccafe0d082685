//! Precheck: every account in `gates.keep_sessions_of` exists on the primary
//! whose sessions a switchover ends, so a typo does not silently let the
//! switchover end the sessions the operator meant to keep.

use super::check::{CheckStatus, Precheck};
use crate::mysql::{Endpoint, Session, quote};
use crate::plan::ValidatedPlan;
use crate::secret::SecretError;

pub async fn check(plan: &ValidatedPlan, primary: &str) -> Result<Vec<Precheck>, SecretError> {
    let gates = &plan.gates;
    if !gates.end_old_sessions || gates.keep_sessions_of.is_empty() {
        return Ok(vec![]);
    }
    let Some(cluster) = plan.cluster(primary) else {
        return Ok(vec![]);
    };
    let endpoint = Endpoint::for_cluster(cluster)?;
    let mut session = match Session::connect(&endpoint).await {
        Ok(session) => session,
        // Reachability is its own check.
        Err(_) => return Ok(vec![]),
    };
    let mut out = Vec::new();
    for kept in &gates.keep_sessions_of {
        let found: Result<Option<u64>, _> = session
            .query_first(
                "look for a kept account",
                &format!(
                    "SELECT COUNT(*) FROM mysql.user WHERE User = {}",
                    quote(&kept.user)
                ),
            )
            .await;
        let (status, detail) = match found {
            Ok(Some(count)) if count > 0 => (
                CheckStatus::Pass,
                format!(
                    "`{}`'s sessions are kept when `{primary}` is demoted",
                    kept.user
                ),
            ),
            Ok(_) => (
                CheckStatus::Fail,
                format!(
                    "{}:{}: gates.keep_sessions_of names `{}`, which is no account on `{primary}`",
                    plan.path.display(),
                    kept.at,
                    kept.user
                ),
            ),
            Err(error) => (
                CheckStatus::Warn,
                format!("cannot read mysql.user to find `{}`: {error}", kept.user),
            ),
        };
        out.push(Precheck {
            cluster: primary.to_string(),
            check: "kept sessions".into(),
            status,
            detail,
            phase: None,
        });
    }
    session.close().await;
    Ok(out)
}
