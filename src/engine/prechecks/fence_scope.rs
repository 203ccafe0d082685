//! Precheck: a fence scoped to the plan's databases (`scope: databases`) can
//! be put up and taken down on this source, and reaches every writer.
//!
//! MySQL needs a read-only schema (8.0.22+). MariaDB fences by revoking the
//! applications' database-level write privileges, so the orchestrator must be
//! able to grant them back, a table-level grant would escape it, and an
//! account with global write privileges is not reached at all (said as a
//! warning: administrators usually hold them). Both keep writing the source's
//! other databases while a promoted cluster writes the plan's, so on MariaDB
//! each needs a GTID domain of its own.

use super::check::{CheckStatus, Precheck};
use crate::mysql::{Endpoint, Flavor, MysqlError, Session, scope, server};
use crate::plan::ValidatedPlan;
use crate::secret::SecretError;

/// One `scoped fence` result on the source.
fn fenced(source: &str, status: CheckStatus, detail: String) -> Precheck {
    precheck(source, "scoped fence", status, detail)
}

fn precheck(cluster: &str, check: &str, status: CheckStatus, detail: String) -> Precheck {
    Precheck {
        cluster: cluster.to_string(),
        check: check.to_string(),
        status,
        detail,
        phase: None,
    }
}

/// Whether `grants` (SHOW GRANTS lines) let the account grant privileges on
/// `database` (a grant option on it or on everything).
fn may_grant_on(grants: &[String], database: &str) -> bool {
    let on_database = format!("ON `{}`.*", database.replace('`', "``"));
    grants.iter().any(|line| {
        line.contains("WITH GRANT OPTION")
            && (line.contains("ON *.*") || line.contains(&on_database))
    })
}

async fn mariadb_checks(
    session: &mut Session,
    plan: &ValidatedPlan,
    source: &str,
    databases: &[String],
) -> Result<Vec<Precheck>, MysqlError> {
    let mut out = Vec::new();
    let grants: Vec<String> = session
        .query("read the orchestrator's grants", "SHOW GRANTS")
        .await?;
    let missing: Vec<&String> = databases
        .iter()
        .filter(|db| !may_grant_on(&grants, db))
        .collect();
    out.push(if missing.is_empty() {
        fenced(
            source,
            CheckStatus::Pass,
            format!(
                "fences {} by revoking the applications' write privileges there (recorded in \
                 cutover.fenced_grants, granted back by a rollback)",
                databases.join(", ")
            ),
        )
    } else {
        fenced(
            source,
            CheckStatus::Fail,
            format!(
                "the orchestrator account cannot grant privileges on {}: grant it \
                 `GRANT SELECT ON <db>.* TO … WITH GRANT OPTION` so a scoped fence can revoke \
                 the applications' writes and give them back",
                missing
                    .iter()
                    .map(|db| format!("`{db}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    });
    let own = plan.own_accounts(source);
    let table_grants: Vec<(String, String, String)> = session
        .query(
            "list table-level write grants",
            &format!(
                "SELECT User, Db, Table_name FROM mysql.tables_priv WHERE Db IN ({}) \
                 AND (FIND_IN_SET('Insert', Table_priv) OR FIND_IN_SET('Update', Table_priv) \
                 OR FIND_IN_SET('Delete', Table_priv)) ORDER BY User, Db, Table_name",
                scope::in_list(databases)
            ),
        )
        .await?;
    if !table_grants.is_empty() {
        out.push(fenced(
            source,
            CheckStatus::Fail,
            format!(
                "table-level write grants would escape the fence: {}; \
                 grant them on the database instead",
                table_grants
                    .iter()
                    .map(|(user, db, table)| format!("`{user}` on `{db}`.`{table}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let global: Vec<String> = session
        .query(
            "list accounts with global write privileges",
            "SELECT DISTINCT User FROM mysql.user WHERE (Insert_priv = 'Y' OR Update_priv = 'Y' \
             OR Delete_priv = 'Y') AND User <> '' ORDER BY User",
        )
        .await?;
    let global: Vec<String> = global.into_iter().filter(|u| !own.contains(u)).collect();
    if !global.is_empty() {
        out.push(fenced(
            source,
            CheckStatus::Warn,
            format!(
                "{} can still write {} after the fence (global privileges, which a database-level \
                 revoke does not reach): keep them off it during the switchover",
                global
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                databases.join(", ")
            ),
        ));
    }
    Ok(out)
}

async fn domain(cluster: &crate::plan::Cluster) -> Result<Option<u32>, SecretError> {
    let Ok(mut session) = Session::connect(&Endpoint::for_cluster(cluster)?).await else {
        return Ok(None);
    };
    let domain = gtid_domain(&mut session).await;
    session.close().await;
    Ok(domain)
}

async fn gtid_domain(session: &mut Session) -> Option<u32> {
    session
        .query_first("read the GTID domain", "SELECT @@GLOBAL.gtid_domain_id")
        .await
        .ok()
        .flatten()
}

/// The checks for `source` under a scoped fence; `candidates` are the
/// clusters a switchover promotes while the source keeps writing.
pub async fn checks(
    plan: &ValidatedPlan,
    source: &str,
    candidates: &[String],
) -> Result<Vec<Precheck>, SecretError> {
    let (Some(databases), Some(cluster)) = (plan.fence_scope(source), plan.cluster(source)) else {
        return Ok(vec![]);
    };
    let Ok(mut session) = Session::connect(&Endpoint::for_cluster(cluster)?).await else {
        return Ok(vec![]);
    };
    let checked = async {
        let flavor = server::flavor(&mut session).await?;
        match flavor {
            Flavor::Mysql => {
                let supported = session
                    .query_first::<u64>(
                        "look for read-only schemas",
                        "SELECT COUNT(*) FROM information_schema.SCHEMATA_EXTENSIONS",
                    )
                    .await
                    .is_ok();
                Ok((
                    flavor,
                    vec![if supported {
                        fenced(
                            source,
                            CheckStatus::Pass,
                            format!(
                                "fences {} with ALTER SCHEMA … READ ONLY = 1 after the promotion",
                                databases.join(", ")
                            ),
                        )
                    } else {
                        fenced(
                            source,
                            CheckStatus::Fail,
                            "this MySQL has no read-only schema (8.0.22+): use `scope: server`"
                                .into(),
                        )
                    }],
                ))
            }
            Flavor::Mariadb => Ok((
                flavor,
                mariadb_checks(&mut session, plan, source, &databases).await?,
            )),
        }
    }
    .await;
    let checked: Result<(Flavor, Vec<Precheck>), MysqlError> = checked;
    let shared = match checked {
        Ok((Flavor::Mariadb, _)) => gtid_domain(&mut session).await,
        _ => None,
    };
    session.close().await;
    let (flavor, mut out) = match checked {
        Ok(found) => found,
        Err(error) => {
            return Ok(vec![fenced(
                source,
                CheckStatus::Fail,
                format!("cannot check the scoped fence: {error}"),
            )]);
        }
    };
    if flavor == Flavor::Mariadb {
        for candidate in candidates {
            let Some(target) = plan.cluster(candidate) else {
                continue;
            };
            let theirs = domain(target).await?;
            if shared.is_some() && theirs == shared {
                out.push(precheck(
                    candidate,
                    "GTID domain",
                    CheckStatus::Fail,
                    format!(
                        "writes GTID domain {} like `{source}`, which keeps writing its other databases \
                         after the switchover: give it a domain of its own (SET GLOBAL gtid_domain_id, \
                         and in its configuration)",
                        theirs.unwrap_or(0)
                    ),
                ));
            } else if let Some(theirs) = theirs {
                out.push(precheck(
                    candidate,
                    "GTID domain",
                    CheckStatus::Pass,
                    format!("writes GTID domain {theirs}, apart from `{source}`'s"),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_option_on_the_database_or_everything_lets_the_fence_give_back() {
        let on_refunds =
            vec!["GRANT SELECT ON `refunds`.* TO `cutover`@`127.%` WITH GRANT OPTION".to_string()];
        assert!(may_grant_on(&on_refunds, "refunds"));
        assert!(!may_grant_on(&on_refunds, "cutover_probe"));
        let everything =
            vec!["GRANT ALL PRIVILEGES ON *.* TO `a`@`%` WITH GRANT OPTION".to_string()];
        assert!(may_grant_on(&everything, "cutover_probe"));
        let plain = vec!["GRANT INSERT ON `refunds`.* TO `a`@`%`".to_string()];
        assert!(!may_grant_on(&plain, "refunds"));
    }
}
