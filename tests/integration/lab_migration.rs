//! The product's main job on the real lab: one `cutover run` of
//! `plans/lab-migration.yaml` from empty clusters to a completed cutover,
//! its dry run, and a plan continued with `--from-phase` after a failed verify.

use std::path::Path;

use crate::harness::{Flavor, LabFixture, stdout_json};
use crate::lab_cutover::{Probe, assert_nothing_lost, assert_primary, fingerprint, run_json};
use crate::lab_snapshot::migration_plan;

fn checks_with<'a>(report: &'a serde_json::Value, status: &str) -> Vec<&'a serde_json::Value> {
    report["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .collect()
}

fn checksum_matches(fx: &LabFixture, plan: &Path, at_least_rows: u64) {
    let (code, report) = run_json(
        fx.cutover()
            .args(["checksum", "--output", "json"])
            .arg(plan),
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "match", "{report}");
    assert!(
        report["rows_compared"].as_u64().unwrap() >= at_least_rows,
        "{report}"
    );
}

#[test]
fn lab_whole_migration_plan_runs_in_one_go_from_empty_clusters() {
    whole_migration_plan_runs_in_one_go_from_empty_clusters(Flavor::MariaDb);
}

/// On MySQL the snapshot loads with INSERTs (`local_infile` is off) and its
/// transactions are added to the targets' `gtid_purged` before they replicate.
#[test]
fn lab_mysql_whole_migration_plan_runs_in_one_go_from_empty_clusters() {
    whole_migration_plan_runs_in_one_go_from_empty_clusters(Flavor::MySql);
}

fn whole_migration_plan_runs_in_one_go_from_empty_clusters(flavor: Flavor) {
    let fx = LabFixture::up_empty_as(flavor, 5_000);
    let plan = migration_plan(&fx);
    let before = fingerprint(&fx, &plan);

    // The dry run passes on a fresh lab, listing what waits for which phase.
    let (code, dry) = run_json(
        fx.cutover()
            .args(["run", "--dry-run", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{dry}");
    assert!(checks_with(&dry, "fail").is_empty(), "{dry}");
    let deferred = dry["deferred"].as_array().unwrap();
    for phase in ["verify", "cutover"] {
        for cluster in ["c1", "c2", "c3", "c6"] {
            assert!(
                deferred.iter().any(|d| d["phase"] == phase
                    && d["cluster"] == cluster
                    && d["check"] == "replication"
                    && d["reason"].as_str().unwrap().contains("phase `snapshot`")),
                "{phase}/{cluster} deferred: {deferred:?}"
            );
        }
    }
    assert_eq!(dry["operations"].as_array().unwrap().len(), 12, "{dry}");
    let logins: Vec<&serde_json::Value> = dry["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "replication login")
        .collect();
    assert_eq!(logins.len(), 2, "the source and the candidate: {logins:?}");

    // A wrong replication password is a precheck failure before anything changes.
    let (code, wrong) = run_json(
        fx.cutover()
            .env("CUTOVER_LAB_REPL_PASSWORD", "not-the-password")
            .args(["run", "--dry-run", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(3), "{wrong}");
    let failed = checks_with(&wrong, "fail");
    assert!(!failed.is_empty(), "{wrong}");
    assert!(
        failed.iter().all(|c| c["check"] == "replication login"
            && c["detail"].as_str().unwrap().contains("cutover_repl")
            && !c["detail"].as_str().unwrap().contains("not-the-password")),
        "{failed:?}"
    );
    assert_eq!(
        fingerprint(&fx, &plan),
        before,
        "the dry runs changed nothing"
    );

    // One run: snapshot, verify, cutover, with the application writing throughout.
    let probe = Probe::start(&fx, &plan);
    let (code, run) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan),
    );
    let report = probe.finish();
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    for phase in run["phases"].as_array().unwrap() {
        assert_eq!(phase["status"], "completed", "{phase}");
    }
    // The deferred checks ran at the start of their phases, against the live servers.
    for phase in ["verify", "cutover"] {
        let at_start: Vec<&serde_json::Value> = run["prechecks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["phase"] == phase && c["check"] == "replication")
            .collect();
        assert_eq!(at_start.len(), 4, "{phase}: {at_start:?}");
        assert!(
            at_start.iter().all(|c| c["status"] == "pass"),
            "{at_start:?}"
        );
    }
    assert_nothing_lost(&report);
    assert_eq!(report["writable_primaries"]["max_writable"], 1, "{report}");
    assert_primary(&fx, &plan, "c1");
    checksum_matches(&fx, &plan, 5_000);

    // Lag after the switchover is measured from c1: no heartbeat lands in the
    // demoted legacy, so the cutover's rollback still finds it a clean replica.
    let (code, lag) = run_json(fx.cutover().args(["lag", "--output", "json"]).arg(&plan));
    assert_eq!(code, Some(0), "{lag}");
    let measured: Vec<&str> = lag["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(measured, ["legacy", "c2", "c3", "c6"], "{lag}");
    let run_id = run["run_id"].as_str().unwrap();
    let (code, back) = run_json(fx.cutover().args([
        "rollback",
        run_id,
        "--to-phase",
        "cutover",
        "--yes",
        "--output",
        "json",
    ]));
    assert_eq!(code, Some(0), "{back}");
    assert_primary(&fx, &plan, "legacy");
    checksum_matches(&fx, &plan, 5_000);
}

#[test]
fn lab_a_failed_verify_stops_the_plan_and_from_phase_finishes_it() {
    let fx = LabFixture::up_empty(2_000);
    // The snapshot phase ends by changing one amount on c2 behind replication's back.
    let admin = fx.sandbox.write(
        "admin.cnf",
        format!(
            "[client]\nuser={}\npassword={}\n",
            fx.var("CUTOVER_LAB_ADMIN_USER"),
            fx.var("CUTOVER_LAB_ADMIN_PASSWORD")
        ),
    );
    let plant = |delta: &str| {
        format!(
            "[mariadb, --defaults-extra-file={}, -h127.0.0.12, -P13306, --skip-ssl, -e, \
             \"SET sql_log_bin = 0; UPDATE refunds.transactions SET amount = amount {delta}, updated_at = updated_at WHERE id = 7\"]",
            admin.display()
        )
    };
    let text = std::fs::read_to_string(migration_plan(&fx))
        .unwrap()
        .replace(
            "      - replicate: { timeout: 10m }\n",
            &format!(
                "      - replicate: {{ timeout: 10m }}\n      - hook: {{ name: plant, command: {} }}\n",
                plant("+ 0.01")
            ),
        );
    let plan = fx.sandbox.write("planted.yaml", text);

    let (code, first) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(4), "a data mismatch: {first}");
    assert!(first["data_mismatch"].as_bool().unwrap(), "{first}");
    let statuses: Vec<&str> = first["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["completed", "failed", "pending"], "{first}");
    let first_id = first["run_id"].as_str().unwrap().to_string();

    // The cutover cannot start while verify has not completed for this plan.
    let output = fx
        .cutover()
        .args(["run", "--yes", "--from-phase", "cutover"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`verify`"), "{stderr}");
    assert!(!stderr.contains("`snapshot`"), "{stderr}");

    // Fixed by hand, the plan continues from verify in a new run.
    fx.admin_exec(
        "127.0.0.12",
        &[
            "SET sql_log_bin = 0",
            "UPDATE refunds.transactions SET amount = amount - 0.01, updated_at = updated_at WHERE id = 7",
        ],
    );
    let (code, second) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--from-phase", "verify", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{second}");
    assert_eq!(second["status"], "completed");
    let phases = second["phases"].as_array().unwrap();
    assert_eq!(phases[0]["completed_in"], first_id.as_str(), "{second}");
    assert_eq!(phases[1]["status"], "completed");
    assert_eq!(phases[2]["status"], "completed");
    assert_primary(&fx, &plan, "c1");
    checksum_matches(&fx, &plan, 2_000);
    let second_id = second["run_id"].as_str().unwrap().to_string();
    let output = fx.cutover().args(["status", &second_id]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("snapshot") && l.contains(&format!("(run {first_id})"))),
        "{text}"
    );

    // Rolling back past the carried phase undoes it in the run that completed it.
    let (code, back) = run_json(
        fx.cutover()
            .args(["rollback", &second_id, "--to-phase", "snapshot", "--yes"])
            .args(["--output", "json"]),
    );
    assert_eq!(code, Some(0), "{back}");
    assert_eq!(back["primary"], "legacy", "{back}");
    let output = fx
        .cutover()
        .args(["status", &first_id, "--output", "json"])
        .output()
        .unwrap();
    let first_now = stdout_json(&output);
    assert_eq!(
        first_now["phases"][0]["status"], "rolled_back",
        "{first_now}"
    );
    // Nothing completed is left to continue from.
    let output = fx
        .cutover()
        .args(["run", "--yes", "--from-phase", "verify"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
}
