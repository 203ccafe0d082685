//! Precheck: what a snapshot could not reproduce on a target, said before the
//! change window. A table whose storage engine the target lacks would be
//! missing there (a failure); an object whose definer the loading account may
//! not set would run with that account's rights (a warning naming each).

use std::collections::BTreeMap;

use super::check::{CheckStatus, Precheck};
use crate::mysql::{Endpoint, Flavor, MysqlError, Session, control, quote, server};
use crate::plan::ValidatedPlan;
use crate::secret::SecretError;

/// What the source's snapshot would carry, as far as a target must support it.
#[derive(Debug, Default)]
struct Carried {
    /// Engine → the tables that use it (`schema.table`).
    engines: BTreeMap<String, Vec<String>>,
    /// `kind schema.name` of each routine, trigger, view and event with a definer.
    with_definers: Vec<String>,
    /// MariaDB system-versioned tables, which carry their history.
    versioned: Vec<String>,
    /// MariaDB sequences.
    sequences: Vec<String>,
}

async fn carried(session: &mut Session, plan: &ValidatedPlan) -> Result<Carried, MysqlError> {
    let databases = crate::snapshot::databases(session, plan).await?;
    let mut carried = Carried::default();
    if databases.is_empty() {
        return Ok(carried);
    }
    let in_list = databases
        .iter()
        .map(|d| quote(d))
        .collect::<Vec<_>>()
        .join(", ");
    let tables: Vec<(String, String, String, String)> = session
        .query(
            "list the tables' engines",
            &format!(
                "SELECT UPPER(ENGINE), TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA IN ({in_list}) AND ENGINE IS NOT NULL \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME"
            ),
        )
        .await?;
    for (engine, schema, table, table_type) in tables {
        let name = format!("{schema}.{table}");
        match table_type.as_str() {
            "SYSTEM VERSIONED" => carried.versioned.push(name.clone()),
            "SEQUENCE" => carried.sequences.push(name.clone()),
            _ => {}
        }
        carried.engines.entry(engine).or_default().push(name);
    }
    let objects: Vec<(String, String)> = session
        .query(
            "list objects with definers",
            &format!(
                "SELECT LOWER(ROUTINE_TYPE), CONCAT(ROUTINE_SCHEMA, '.', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN ({in_list}) \
                 UNION ALL SELECT 'trigger', CONCAT(TRIGGER_SCHEMA, '.', TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN ({in_list}) \
                 UNION ALL SELECT 'view', CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN ({in_list}) \
                 UNION ALL SELECT 'event', CONCAT(EVENT_SCHEMA, '.', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN ({in_list})"
            ),
        )
        .await?;
    carried.with_definers = objects
        .into_iter()
        .map(|(kind, name)| format!("{kind} {name}"))
        .collect();
    Ok(carried)
}

/// The privileges that let an account create an object for another definer.
fn may_set_definers(flavor: Flavor, granted: &[String]) -> bool {
    let names: &[&str] = match flavor {
        Flavor::Mariadb => &["ALL", "SUPER", "SET USER"],
        Flavor::Mysql => &["ALL", "SUPER", "SET_ANY_DEFINER", "SET_USER_ID"],
    };
    granted.iter().any(|g| names.contains(&g.as_str()))
}

fn definer_privilege(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "SET USER (or SUPER)",
        Flavor::Mysql => "SET_ANY_DEFINER (or SUPER)",
    }
}

/// `what` of up to five names, then how many more.
fn listed(names: &[String]) -> String {
    let mut text = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}

/// One target's checks against what the snapshot carries.
async fn target_checks(
    session: &mut Session,
    carried: &Carried,
) -> Result<Vec<(&'static str, CheckStatus, String)>, MysqlError> {
    let mut out = Vec::new();
    let supported: Vec<String> = session
        .query(
            "list storage engines",
            "SELECT UPPER(ENGINE) FROM information_schema.ENGINES WHERE SUPPORT IN ('YES', 'DEFAULT')",
        )
        .await?;
    let lacking: Vec<String> = carried
        .engines
        .iter()
        .filter(|(engine, _)| !supported.contains(engine))
        .map(|(engine, tables)| format!("{engine} (for {})", listed(tables)))
        .collect();
    out.push(if lacking.is_empty() {
        (
            "storage engines",
            CheckStatus::Pass,
            format!(
                "has every engine the snapshot's tables use ({})",
                carried.engines.len()
            ),
        )
    } else {
        (
            "storage engines",
            CheckStatus::Fail,
            format!(
                "lacks {}: those tables would be missing after the snapshot; install the engine \
                 or convert the tables on the source",
                lacking.join("; ")
            ),
        )
    });
    let flavor = server::facts(session).await?.flavor;
    if !carried.versioned.is_empty() {
        // The loading sessions write history rows with this (MariaDB 10.11+).
        let history = session
            .query_first::<i64>(
                "look for system_versioning_insert_history",
                "SELECT @@system_versioning_insert_history",
            )
            .await
            .is_ok();
        out.push(if history {
            (
                "history",
                CheckStatus::Pass,
                format!("takes the history of {}", listed(&carried.versioned)),
            )
        } else {
            (
                "history",
                CheckStatus::Fail,
                format!(
                    "cannot take the history of the system-versioned {} \
                     (system_versioning_insert_history needs MariaDB 10.11 or later)",
                    listed(&carried.versioned)
                ),
            )
        });
    }
    if !carried.sequences.is_empty() && flavor == Flavor::Mysql {
        out.push((
            "sequences",
            CheckStatus::Fail,
            format!(
                "MySQL has no sequences: {} would be missing",
                listed(&carried.sequences)
            ),
        ));
    }
    if !carried.with_definers.is_empty() {
        let granted = control::global_privileges(session).await?;
        out.push(if may_set_definers(flavor, &granted) {
            (
                "definers",
                CheckStatus::Pass,
                format!(
                    "the loading account may set definers: {} object(s) keep theirs",
                    carried.with_definers.len()
                ),
            )
        } else {
            (
                "definers",
                CheckStatus::Warn,
                format!(
                    "the loading account lacks {}: {} would be created without their definers \
                     and run with the loading account's rights; grant it to keep them",
                    definer_privilege(flavor),
                    listed(&carried.with_definers)
                ),
            )
        });
    }
    Ok(out)
}

/// The checks of every target a snapshot loads (reachability and emptiness
/// are checked elsewhere; an unreachable server is skipped here).
pub async fn checks(
    plan: &ValidatedPlan,
    targets: &[String],
) -> Result<Vec<Precheck>, SecretError> {
    if targets.is_empty() {
        return Ok(vec![]);
    }
    let source = plan.source();
    let mut session = match Session::connect(&Endpoint::for_cluster(source)?).await {
        Ok(session) => session,
        Err(_) => return Ok(vec![]),
    };
    let read = carried(&mut session, plan).await;
    session.close().await;
    let carried = match read {
        Ok(carried) => carried,
        Err(error) => {
            return Ok(vec![Precheck {
                cluster: source.name.clone(),
                check: "what the snapshot carries".into(),
                status: CheckStatus::Fail,
                detail: error.to_string(),
                phase: None,
            }]);
        }
    };
    let mut out = Vec::new();
    for name in targets {
        let Some(cluster) = plan.cluster(name) else {
            continue;
        };
        let Ok(mut session) = Session::connect(&Endpoint::for_cluster(cluster)?).await else {
            continue;
        };
        let result = target_checks(&mut session, &carried).await;
        session.close().await;
        match result {
            Ok(found) => out.extend(found.into_iter().map(|(check, status, detail)| Precheck {
                cluster: name.clone(),
                check: check.into(),
                status,
                detail,
                phase: None,
            })),
            Err(error) => out.push(Precheck {
                cluster: name.clone(),
                check: "snapshot fidelity".into(),
                status: CheckStatus::Fail,
                detail: error.to_string(),
                phase: None,
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn definers_need_the_flavors_own_privilege() {
        assert!(may_set_definers(Flavor::Mariadb, &granted(&["SET USER"])));
        assert!(may_set_definers(Flavor::Mariadb, &granted(&["SUPER"])));
        assert!(!may_set_definers(
            Flavor::Mariadb,
            &granted(&["SET_ANY_DEFINER"])
        ));
        assert!(may_set_definers(
            Flavor::Mysql,
            &granted(&["SET_ANY_DEFINER"])
        ));
        assert!(may_set_definers(Flavor::Mysql, &granted(&["ALL"])));
        assert!(!may_set_definers(
            Flavor::Mysql,
            &granted(&["CREATE ROUTINE", "TRIGGER"])
        ));
    }

    #[test]
    fn long_lists_are_cut_after_five() {
        let names: Vec<String> = (1..=7).map(|i| format!("t{i}")).collect();
        assert_eq!(listed(&names), "t1, t2, t3, t4, t5 and 2 more");
        assert_eq!(listed(&names[..2]), "t1, t2");
    }
}
