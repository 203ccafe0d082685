//! Live prechecks for a run or dry run. Read-only: queries, `SHOW` statements
//! and DNS queries (one of them TSIG-signed), never a write.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

mod check;
mod disk_space;
mod fence_scope;
mod kept_accounts;
mod replication_filter;
mod replication_login;
mod shared_source;
mod snapshot_fidelity;

pub use check::{CheckStatus, Precheck};

use super::deferral::PrecheckSchedule;
use crate::dns;
use crate::mysql::{Flavor, Session, control};
use crate::plan::{Phase, ValidatedPlan};
use crate::secret::{self, SecretError};
use crate::steps::{PrecheckNeeds, StepBehaviour};
use crate::topology::{self, ClusterView};

/// What the selected phases will do, so only the relevant checks run.
fn needs(plan: &ValidatedPlan, phases: &[&Phase]) -> PrecheckNeeds {
    let mut needs = PrecheckNeeds::default();
    for step in phases.iter().flat_map(|phase| &phase.steps) {
        step.kind.needs(plan, &mut needs);
    }
    needs
}

/// Where the run stands when the prechecks run: before it (the plan's source
/// is primary) or at the start of a later phase (whatever the run made true).
#[derive(Debug, Clone)]
pub struct Scope {
    /// The cluster that takes writes now.
    pub primary: String,
    /// The cluster the DNS record names now.
    pub dns_points_to: String,
    /// Clusters that must replicate from the primary now.
    pub must_follow: BTreeSet<String>,
    /// Clusters whose replication an earlier phase of this run will set up:
    /// not checked now (the phase that needs it checks it at its start).
    pub deferred: BTreeSet<String>,
}

impl Scope {
    /// Before the run: the source is primary and DNS names it.
    pub fn before_run(plan: &ValidatedPlan, schedule: &PrecheckSchedule) -> Scope {
        let source = plan.source().name.clone();
        Scope {
            primary: source.clone(),
            dns_points_to: source,
            must_follow: schedule.must_follow_now.clone(),
            deferred: schedule.deferred_clusters.clone(),
        }
    }

    /// At the start of `phase`, with the roles the run has made so far.
    pub fn at_phase_start(
        plan: &ValidatedPlan,
        phase: &Phase,
        primary: &str,
        dns_points_to: &str,
    ) -> Scope {
        let needs_followers = phase.steps.iter().any(|s| s.kind.needs_followers());
        Scope {
            primary: primary.to_string(),
            dns_points_to: dns_points_to.to_string(),
            must_follow: if needs_followers {
                plan.enabled_clusters()
                    .map(|c| c.name.clone())
                    .filter(|name| name != primary)
                    .collect()
            } else {
                BTreeSet::new()
            },
            deferred: BTreeSet::new(),
        }
    }
}

pub async fn run(
    plan: &ValidatedPlan,
    phases: &[&Phase],
    scope: &Scope,
) -> Result<Vec<Precheck>, SecretError> {
    let needs = needs(plan, phases);
    let topology = topology::discover(plan).await?;
    let source = scope.primary.clone();
    let mut checks = Vec::new();
    let mut server_ids: HashMap<u64, Vec<String>> = HashMap::new();

    for view in &topology.clusters {
        let mut check = |check: &str, status: CheckStatus, detail: String| {
            checks.push(Precheck {
                cluster: view.name.clone(),
                check: check.to_string(),
                status,
                detail,
                phase: None,
            })
        };
        if !view.reachable {
            check(
                "reachable",
                CheckStatus::Fail,
                view.error.clone().unwrap_or_else(|| "unreachable".into()),
            );
            continue;
        }
        let server = view.server.as_ref().expect("reachable clusters have facts");
        check(
            "reachable",
            CheckStatus::Pass,
            format!(
                "{} {} at {}",
                flavor_name(server.flavor),
                server.version,
                view.address
            ),
        );
        server_ids
            .entry(server.server_id)
            .or_default()
            .push(view.name.clone());
        let is_source = view.name == source;
        let is_candidate = needs.candidates.contains(&view.name);

        // Binary log and GTID settings the moves rely on.
        let mut binlog_problems = Vec::new();
        let mut binlog_warnings = Vec::new();
        if !server.log_bin {
            if is_source || is_candidate {
                binlog_problems.push("log_bin is OFF".to_string());
            } else {
                binlog_warnings.push("log_bin is OFF".to_string());
            }
        }
        match server.binlog_format.as_deref() {
            Some("ROW") => {}
            other => {
                let text = format!(
                    "binlog_format is {} (needs ROW)",
                    other.unwrap_or("unknown")
                );
                if is_source || is_candidate {
                    binlog_problems.push(text);
                } else {
                    binlog_warnings.push(text);
                }
            }
        }
        if server.log_replica_updates != Some(true) {
            let text = "log_slave_updates is OFF".to_string();
            if is_candidate {
                binlog_problems.push(format!(
                    "{text} (a new primary must log what it replicated)"
                ));
            } else {
                binlog_warnings.push(text);
            }
        }
        match server.flavor {
            Flavor::Mysql if server.gtid_mode.as_deref() != Some("ON") => {
                binlog_problems.push(format!(
                    "gtid_mode is {}",
                    server.gtid_mode.as_deref().unwrap_or("unknown")
                ))
            }
            Flavor::Mariadb if server.gtid_strict_mode != Some(true) => {
                binlog_warnings.push("gtid_strict_mode is OFF".into())
            }
            _ => {}
        }
        check(
            "binlog and GTID",
            if !binlog_problems.is_empty() {
                CheckStatus::Fail
            } else if !binlog_warnings.is_empty() {
                CheckStatus::Warn
            } else {
                CheckStatus::Pass
            },
            if binlog_problems.is_empty() && binlog_warnings.is_empty() {
                format!(
                    "log_bin ON, ROW, log_slave_updates ON, server_id {}",
                    server.server_id
                )
            } else {
                [binlog_problems, binlog_warnings].concat().join("; ")
            },
        );

        if is_source {
            check(
                "writable",
                if view.read_only == Some(true) {
                    CheckStatus::Fail
                } else {
                    CheckStatus::Pass
                },
                if view.read_only == Some(true) {
                    format!(
                        "`{source}` is read-only: was it already switched over? see `cutover status`"
                    )
                } else {
                    "read_only = 0".into()
                },
            );
        } else if !scope.deferred.contains(&view.name) {
            replication_checks(
                view,
                &source,
                scope.must_follow.contains(&view.name),
                &mut check,
            );
        }

        if let Some(offset) = view.clock_offset_ms {
            check(
                "clock skew",
                if view.clock_skew_warning {
                    CheckStatus::Warn
                } else {
                    CheckStatus::Pass
                },
                format!("{offset:+.0} ms against this host (reported only; lag uses one clock)"),
            );
        }
    }

    // A snapshot loads only empty targets: say so before the window, not in it.
    for (cluster, endpoint) in topology::endpoints(plan)? {
        if !needs.snapshot_targets.contains(&cluster.name)
            || !topology
                .clusters
                .iter()
                .any(|view| view.name == cluster.name && view.reachable)
        {
            continue;
        }
        let (status, detail) = match Session::connect(&endpoint).await {
            Ok(mut session) => {
                let found =
                    crate::snapshot::existing_tables(&mut session, plan.databases.as_deref()).await;
                session.close().await;
                match found {
                    Ok(None) => (
                        CheckStatus::Pass,
                        "no table in the snapshot's databases".into(),
                    ),
                    Ok(Some(detail)) => (
                        CheckStatus::Fail,
                        format!(
                            "{detail}; the snapshot refuses it (set `replace: true` to drop and reload)"
                        ),
                    ),
                    Err(error) => (CheckStatus::Fail, error.to_string()),
                }
            }
            Err(error) => (CheckStatus::Fail, error.to_string()),
        };
        checks.push(Precheck {
            cluster: cluster.name.clone(),
            check: "empty for the snapshot".into(),
            status,
            detail,
            phase: None,
        });
    }

    if needs.loads {
        let reachable = |name: &str| {
            topology
                .clusters
                .iter()
                .any(|view| view.name == name && view.reachable)
        };
        checks.extend(
            disk_space::checks(
                plan,
                &needs.loaded_targets,
                needs.snapshot_directory.as_deref(),
                &reachable,
            )
            .await?,
        );
        let loaded: Vec<String> = needs
            .loaded_targets
            .iter()
            .filter(|name| reachable(name))
            .cloned()
            .collect();
        checks.extend(snapshot_fidelity::checks(plan, &loaded).await?);
    }

    for (cluster, endpoint) in topology::endpoints(plan)? {
        if !topology
            .clusters
            .iter()
            .any(|view| view.name == cluster.name && view.reachable)
        {
            continue;
        }
        let is_source = cluster.name == source;
        let duties = Duties {
            freezes: needs.freezes.contains(&cluster.name),
            read_lock: needs.checksums && is_source,
            moves_replication: needs.moves_replication
                || ((needs.checksums || needs.loads || needs.starts_replication) && !is_source),
        };
        let status = match Session::connect(&endpoint).await {
            Ok(mut session) => {
                let flavor = topology
                    .clusters
                    .iter()
                    .find(|view| view.name == cluster.name)
                    .and_then(|view| view.flavor)
                    .unwrap_or(Flavor::Mariadb);
                let result = control::global_privileges(&mut session).await;
                session.close().await;
                match result {
                    Ok(granted) => privilege_check(flavor, &granted, &duties),
                    Err(error) => (CheckStatus::Fail, error.to_string()),
                }
            }
            Err(error) => (CheckStatus::Fail, error.to_string()),
        };
        checks.push(Precheck {
            cluster: cluster.name.clone(),
            check: "privileges".into(),
            status: status.0,
            detail: status.1,
            phase: None,
        });
    }

    for (id, names) in &server_ids {
        if names.len() > 1 {
            checks.push(Precheck {
                cluster: names.join(", "),
                check: "unique server_id".into(),
                status: CheckStatus::Fail,
                detail: format!("server_id {id} is shared by {}", names.join(", ")),
                phase: None,
            });
        }
    }

    if needs.dns_switch {
        dns_checks(plan, &scope.dns_points_to, &mut checks).await?;
    }
    if needs.moves_replication || needs.starts_replication {
        let mut sources = needs.candidates.clone();
        sources.insert(source.clone());
        checks.extend(replication_login::checks(plan, &sources).await?);
        let targets: Vec<String> = topology
            .clusters
            .iter()
            .filter(|view| view.reachable && view.name != source)
            .map(|view| view.name.clone())
            .collect();
        checks.extend(replication_filter::checks(plan, &targets).await?);
        checks.extend(shared_source::check(plan, &source, needs.freezes.contains(&source)).await?);
    }
    if needs.freezes.contains(&source) {
        let candidates: Vec<String> = needs.candidates.iter().cloned().collect();
        checks.extend(fence_scope::checks(plan, &source, &candidates).await?);
    }
    if !needs.candidates.is_empty() {
        checks.extend(kept_accounts::check(plan, &source).await?);
    }
    Ok(checks)
}

fn flavor_name(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "MariaDB",
        Flavor::Mysql => "MySQL",
    }
}

fn replication_checks(
    view: &ClusterView,
    source: &str,
    must_follow_source: bool,
    check: &mut impl FnMut(&str, CheckStatus, String),
) {
    let Some(replication) = &view.replication else {
        check(
            "replication",
            if must_follow_source {
                CheckStatus::Fail
            } else {
                CheckStatus::Warn
            },
            format!("`{}` does not replicate from anyone", view.name),
        );
        return;
    };
    use crate::mysql::server::ThreadState;
    let threads_ok = replication.io_thread == ThreadState::Running
        && replication.sql_thread == ThreadState::Running;
    let from = view
        .replicating_from
        .as_deref()
        .unwrap_or("a server outside the plan");
    if !threads_ok {
        check(
            "replication",
            CheckStatus::Fail,
            format!(
                "from {from}: IO thread {:?}, SQL thread {:?}{}",
                replication.io_thread,
                replication.sql_thread,
                replication
                    .last_io_error
                    .iter()
                    .chain(&replication.last_sql_error)
                    .map(|error| format!("; {error}"))
                    .collect::<String>()
            ),
        );
    } else if must_follow_source && view.replicating_from.as_deref() != Some(source) {
        check(
            "replication",
            CheckStatus::Fail,
            format!("replicates from {from}, not from the source `{source}`"),
        );
    } else {
        check(
            "replication",
            CheckStatus::Pass,
            format!("from {from}, both threads running"),
        );
    }
    match &view.errant_gtids {
        Some(errant) => check(
            "errant GTIDs",
            CheckStatus::Fail,
            format!(
                "{errant}: transactions `{from}` never had; it must not be promoted or followed"
            ),
        ),
        None => check("errant GTIDs", CheckStatus::Pass, "none".into()),
    }
    let behind = replication.seconds_behind_source;
    check(
        "lag",
        match behind {
            Some(0) => CheckStatus::Pass,
            _ => CheckStatus::Warn,
        },
        match behind {
            Some(seconds) => format!(
                "Seconds_Behind_Master {seconds}; the wait_lag step measures it to the millisecond"
            ),
            None => "Seconds_Behind_Master unknown".into(),
        },
    );
}

/// What the selected steps will do on one cluster.
struct Duties {
    freezes: bool,
    /// A brief hold of commits (a checksum's consistent point on the source).
    read_lock: bool,
    moves_replication: bool,
}

/// Privileges a step needs; each entry is satisfied by any one of its names.
fn privilege_check(flavor: Flavor, granted: &[String], duties: &Duties) -> (CheckStatus, String) {
    let Duties {
        freezes,
        read_lock,
        moves_replication,
    } = *duties;
    if granted.iter().any(|p| p == "ALL") {
        return (CheckStatus::Pass, "ALL PRIVILEGES".into());
    }
    let mut needed: Vec<(&str, Vec<&str>)> = Vec::new();
    let (read_only, kill, replication_admin, monitor) = match flavor {
        Flavor::Mariadb => (
            vec!["READ_ONLY ADMIN", "SUPER"],
            vec!["CONNECTION ADMIN", "SUPER"],
            vec!["REPLICATION SLAVE ADMIN", "SUPER"],
            vec![
                "SLAVE MONITOR",
                "REPLICATION CLIENT",
                "BINLOG MONITOR",
                "SUPER",
            ],
        ),
        Flavor::Mysql => (
            vec!["SYSTEM_VARIABLES_ADMIN", "SUPER"],
            vec!["CONNECTION_ADMIN", "SUPER"],
            vec!["REPLICATION_SLAVE_ADMIN", "SUPER"],
            vec!["REPLICATION CLIENT", "SUPER"],
        ),
    };
    needed.push(("read replication status", monitor));
    if freezes || read_lock {
        needed.push((
            "hold commits (BACKUP STAGE or the global read lock)",
            vec!["RELOAD"],
        ));
    }
    if freezes {
        needed.push(("see every session", vec!["PROCESS"]));
        needed.push(("kill client sessions", kill));
    }
    if freezes || moves_replication {
        needed.push(("set read_only", read_only));
    }
    if moves_replication {
        needed.push(("change replication", replication_admin));
    }
    let missing: Vec<String> = needed
        .iter()
        .filter(|(_, any_of)| !any_of.iter().any(|name| granted.iter().any(|g| g == name)))
        .map(|(why, any_of)| format!("{} (to {why})", any_of.join(" or ")))
        .collect();
    if missing.is_empty() {
        (
            CheckStatus::Pass,
            format!("{} needed privilege(s) granted", needed.len()),
        )
    } else {
        (
            CheckStatus::Fail,
            format!("missing: {}", missing.join(", ")),
        )
    }
}

async fn dns_checks(
    plan: &ValidatedPlan,
    source: &str,
    checks: &mut Vec<Precheck>,
) -> Result<(), SecretError> {
    let Some(config) = &plan.dns else {
        return Ok(());
    };
    let timeout = Duration::from_millis(1500);
    let expected = config.values.get(source).cloned().unwrap_or_default();
    for server in &config.authoritative {
        let (status, detail) = match dns::query_authoritative(
            *server,
            &config.record,
            config.record_type.into(),
            timeout,
        )
        .await
        {
            Ok(answer)
                if answer.authoritative
                    && answer.values.len() == 1
                    && dns::same_value(&answer.values[0], &expected) =>
            {
                (
                    CheckStatus::Pass,
                    format!("{} = {expected} (authoritative)", config.record),
                )
            }
            Ok(answer) => (
                CheckStatus::Fail,
                format!(
                    "{} answers {:?} (aa={}), the plan expects {expected}",
                    config.record, answer.values, answer.authoritative
                ),
            ),
            Err(error) => (CheckStatus::Fail, error.to_string()),
        };
        checks.push(Precheck {
            cluster: format!("dns {server}"),
            check: "record".into(),
            status,
            detail,
            phase: None,
        });
    }
    let key = dns::TsigKey {
        name: config.tsig.name.clone(),
        algorithm: config.tsig.algorithm,
        secret: secret::resolve(
            &config.tsig.secret,
            &format!("TSIG key `{}`", config.tsig.name),
        )?,
    };
    let (status, detail) =
        match dns::signed_soa_query(config.update_server, &config.zone, &key, timeout).await {
            Ok(serial) => (
                CheckStatus::Pass,
                format!(
                    "signed query with key `{}` accepted (serial {serial})",
                    key.name
                ),
            ),
            Err(error) => (CheckStatus::Fail, error.to_string()),
        };
    checks.push(Precheck {
        cluster: format!("dns {}", config.update_server),
        check: "TSIG key".into(),
        status,
        detail,
        phase: None,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    fn duties(freezes: bool, moves_replication: bool) -> Duties {
        Duties {
            freezes,
            read_lock: false,
            moves_replication,
        }
    }

    #[test]
    fn a_checksum_needs_reload_on_the_source_and_replication_rights_on_targets() {
        let source = Duties {
            freezes: false,
            read_lock: true,
            moves_replication: false,
        };
        let (status, detail) =
            privilege_check(Flavor::Mariadb, &granted(&["SLAVE MONITOR"]), &source);
        assert_eq!(status, CheckStatus::Fail);
        assert!(detail.contains("RELOAD"), "{detail}");
        assert!(!detail.contains("REPLICATION SLAVE ADMIN"), "{detail}");
    }

    #[test]
    fn a_freeze_needs_reload_process_and_kill_rights() {
        let (status, detail) = privilege_check(
            Flavor::Mariadb,
            &granted(&[
                "SLAVE MONITOR",
                "READ_ONLY ADMIN",
                "REPLICATION SLAVE ADMIN",
            ]),
            &duties(true, true),
        );
        assert_eq!(status, CheckStatus::Fail);
        assert!(
            detail.contains("RELOAD") && detail.contains("PROCESS"),
            "{detail}"
        );
        assert!(detail.contains("CONNECTION ADMIN or SUPER"), "{detail}");
    }

    #[test]
    fn super_covers_the_admin_privileges_and_all_covers_everything() {
        let (status, _) = privilege_check(
            Flavor::Mariadb,
            &granted(&["RELOAD", "PROCESS", "SUPER"]),
            &duties(true, true),
        );
        assert_eq!(status, CheckStatus::Pass);
        assert_eq!(
            privilege_check(Flavor::Mysql, &granted(&["ALL"]), &duties(true, true)).0,
            CheckStatus::Pass
        );
        assert_eq!(
            privilege_check(Flavor::Mysql, &granted(&["RELOAD"]), &duties(true, false)).0,
            CheckStatus::Fail
        );
    }
}
