//! MySQL 9.7 LTS: the lab's five servers run Debian unstable's mysqld from the
//! root `scripts/mysql-root` prepares, with GTIDs, `caching_sha2_password`
//! accounts, TLS replication and `super_read_only` replicas. The same
//! capabilities as on MariaDB, proven on it: topology, a switchover and its
//! rollback under the write probe, and checksums and snapshots under hot rows.

use crate::harness::{LabFixture, cluster, repo_root};
use crate::lab_cutover::{Probe, assert_nothing_lost, assert_primary, run_json, topology};
use crate::lab_hot_rows::three_runs_hold_the_writers_for_milliseconds;

#[test]
fn lab_mysql_comes_up_as_a_bank_would_run_it() {
    let fx = LabFixture::up_mysql();
    let plan = repo_root().join("plans/lab-switchover.yaml");
    let document = topology(&fx, &plan);
    for (name, _) in crate::harness::LAB_CLUSTERS {
        let view = cluster(&document, name);
        assert!(
            view["version"].as_str().unwrap().starts_with("9.7."),
            "{name}: {view}"
        );
        assert_eq!(view["flavor"], "mysql", "{name}: {view}");
        assert!(
            view["errant_gtids"].is_null() || view["errant_gtids"] == "",
            "{name}: {view}"
        );
        if name != "legacy" {
            // MySQL's read_only lets privileged accounts write: replicas
            // are fenced with super_read_only.
            assert_eq!(view["super_read_only"], true, "{name}: {view}");
        }
    }
    assert_primary(&fx, &plan, "legacy");
    // GTID sets are MySQL's uuid sets.
    let gtid = cluster(&document, "legacy")["gtid_position"]
        .as_str()
        .unwrap();
    assert!(gtid.contains(':') && gtid.len() > 36, "{gtid}");
    let plugins: Vec<(String, String)> = crate::harness::runtime().block_on(async {
        let mut legacy = cutover::mysql::Session::connect(&fx.admin_endpoint("127.0.0.10"))
            .await
            .unwrap();
        let plugins = legacy
            .query(
                "account plugins",
                "SELECT user, plugin FROM mysql.user WHERE user LIKE 'cutover%' OR user = 'refunds_app'",
            )
            .await
            .unwrap();
        legacy.close().await;
        plugins
    });
    assert_eq!(plugins.len(), 4, "{plugins:?}");
    assert!(
        plugins
            .iter()
            .all(|(_, plugin)| plugin == "caching_sha2_password"),
        "{plugins:?}"
    );
}

#[test]
fn lab_mysql_switchover_and_rollback_lose_no_acknowledged_write() {
    let fx = LabFixture::up_mysql();
    let plan = repo_root().join("plans/lab-switchover.yaml");
    let probe = Probe::start(&fx, &plan);
    let (code, run) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_primary(&fx, &plan, "c1");
    let run_id = run["run_id"].as_str().unwrap();
    let (code, rollback) = run_json(
        fx.cutover()
            .args(["rollback", run_id, "--yes", "--output", "json"]),
    );
    assert_eq!(code, Some(0), "{rollback}");
    assert_primary(&fx, &plan, "legacy");
    let report = probe.finish();
    assert_nothing_lost(&report);
}

#[test]
fn lab_mysql_checksums_and_snapshots_under_hot_rows_hold_the_writers_for_milliseconds() {
    let fx = LabFixture::up_mysql();
    let plan = repo_root().join("plans/lab-switchover.yaml");
    three_runs_hold_the_writers_for_milliseconds(&fx, &["checksum"], &plan, "match");
    drop(fx);
    let fx = LabFixture::up_mysql_empty(2000);
    let plan = repo_root().join("plans/lab-migration.yaml");
    three_runs_hold_the_writers_for_milliseconds(
        &fx,
        &["snapshot", "--targets", "c2", "--replace"],
        &plan,
        "completed",
    );
}

/// The whole migration plan in one run on MySQL: the snapshot (INSERTs, as
/// `local_infile` is off), replication from the snapshot's position (its
/// transactions added to the targets' `gtid_purged`), the verify phase and
/// the switchover, under the write probe.
#[test]
fn lab_mysql_whole_migration_plan_runs_in_one_go_and_loses_nothing() {
    let fx = LabFixture::up_mysql_empty(2000);
    let plan = repo_root().join("plans/lab-migration.yaml");
    // A wrong replication password fails the dry run's prechecks, naming the
    // account and never the password, before anything changes.
    let (code, wrong) = run_json(
        fx.cutover()
            .env("CUTOVER_LAB_REPL_PASSWORD", "not-the-password")
            .args(["run", "--dry-run", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(3), "{wrong}");
    let failed: Vec<&serde_json::Value> = wrong["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert!(!failed.is_empty(), "{wrong}");
    assert!(
        failed.iter().all(|c| c["check"] == "replication login"
            && c["detail"].as_str().unwrap().contains("cutover_repl")
            && !c["detail"].as_str().unwrap().contains("not-the-password")),
        "{failed:?}"
    );
    let probe = Probe::start(&fx, &plan);
    let (code, run) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_primary(&fx, &plan, "c1");
    let report = probe.finish();
    assert_nothing_lost(&report);
}

/// Planned and crash drills on MySQL: fail over, measure RTO and RPO with
/// the write probe, verify with checksums, fail back.
#[test]
fn lab_mysql_planned_and_crash_drills_pass_and_fail_back() {
    let fx = LabFixture::up_mysql();
    let plan = crate::lab_drill::drill_plan(&fx, "drill.yaml", &[]);
    for failure in ["planned", "crash"] {
        let (code, report) = crate::lab_drill::drill(&fx, &plan, failure);
        assert_eq!(code, Some(0), "{failure}: {report}");
        assert_eq!(report["status"], "passed", "{failure}: {report}");
        assert_eq!(report["rto"]["met"], true, "{failure}: {}", report["rto"]);
        assert_eq!(report["rpo"]["met"], true, "{failure}: {}", report["rpo"]);
        for verification in report["verifications"].as_array().unwrap() {
            assert_eq!(verification["status"], "match", "{failure}: {verification}");
        }
        assert_eq!(
            report["failback"]["switched_back"], true,
            "{failure}: {report}"
        );
        assert_primary(&fx, &plan, "legacy");
    }
}
