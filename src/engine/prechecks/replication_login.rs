//! Precheck: the plan's replication account logs in to every cluster a
//! replica will pull from, the way the replica will, and holds REPLICATION
//! SLAVE, before anything changes: a wrong password is a refusal now, not a
//! stalled replica after the point of no return.

use std::collections::BTreeSet;

use super::check::{CheckStatus, Precheck};
use crate::mysql::{Address, Endpoint, Session, control};
use crate::plan::ValidatedPlan;
use crate::secret::{self, SecretError};

/// Log in as the plan's replication account to every cluster a replica will
/// pull from, the way the replica will (TLS when the cluster has it), before
/// anything changes: a wrong password is a refusal now, not a stalled replica
/// after the point of no return.
///
/// `sources`: the clusters replicas will pull from in these phases: the
/// primary (for `replicate` and every re-pointed replica) and each promotion
/// candidate (the old primary and the others follow it afterwards).
pub async fn checks(
    plan: &ValidatedPlan,
    sources: &BTreeSet<String>,
) -> Result<Vec<Precheck>, SecretError> {
    let mut checks = Vec::new();
    let Some(account) = &plan.replication else {
        // Replicas then log in with the source's own account (which the
        // other prechecks already proved), as hand-written partial plans do.
        checks.push(Precheck {
            cluster: sources.iter().next().cloned().unwrap_or_default(),
            check: "replication login".into(),
            status: CheckStatus::Warn,
            detail: "the plan has no `replication:` account: replicas log in with the source's own account; give them one of their own".into(),
            phase: None,
        });
        return Ok(checks);
    };
    let password = secret::resolve(&account.password, "the replication account's password")?;
    for name in sources {
        let Some(cluster) = plan.cluster(name) else {
            continue;
        };
        let endpoint = Endpoint {
            name: format!("{name} (as {})", account.user),
            address: Address::Tcp {
                host: cluster.host.clone(),
                port: cluster.port,
            },
            user: account.user.clone(),
            password: Some(password.clone()),
            connect_timeout: cluster.pool.connect_timeout,
            query_timeout: cluster.pool.query_timeout,
            // A replica told MASTER_SSL=1 validates nothing but encrypts.
            tls: cluster.tls.as_ref().map(|_| crate::mysql::TlsSettings {
                ca_file: None,
                verify: false,
            }),
        };
        let (status, detail) = match Session::connect(&endpoint).await {
            Ok(mut session) => {
                let grants = control::global_privileges(&mut session).await;
                session.close().await;
                match grants {
                    Ok(granted)
                        if granted.iter().any(|p| {
                            matches!(
                                p.as_str(),
                                "ALL" | "REPLICATION SLAVE" | "REPLICATION REPLICA"
                            )
                        }) =>
                    {
                        (
                            CheckStatus::Pass,
                            format!(
                                "`{}` logs in and holds REPLICATION SLAVE (replicas will pull from `{name}`)",
                                account.user
                            ),
                        )
                    }
                    Ok(_) => (
                        CheckStatus::Fail,
                        format!(
                            "`{}` logs in but lacks REPLICATION SLAVE on `{name}`: GRANT REPLICATION SLAVE ON *.* TO it",
                            account.user
                        ),
                    ),
                    Err(error) => (CheckStatus::Fail, error.to_string()),
                }
            }
            Err(error) => (
                CheckStatus::Fail,
                format!(
                    "the replication account `{}` cannot log in to `{name}`, so no replica could pull from it: {error}; \
                     check the password in `replication:` (and that the account exists for this host)",
                    account.user
                ),
            ),
        };
        checks.push(Precheck {
            cluster: name.clone(),
            check: "replication login".into(),
            status,
            detail,
            phase: None,
        });
    }
    Ok(checks)
}
