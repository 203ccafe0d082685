//! Hot rows: eight application writers moving balances between twenty rows
//! (`cutover lab load`) while a checksum, a snapshot and a switchover run.
//! The writers measure the longest time with no commit: every consistent
//! point must hold them for milliseconds, never the seconds a global read
//! lock queued behind a row-lock wait costs, and a freeze must report the
//! stall they saw.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::harness::{Flavor, LabFixture, stdout_json};
use crate::lab_cutover::{SWITCHOVER_PHASE, run_json, switchover_plan};

/// The longest a consistent point may leave the writers without a commit.
pub(crate) const POINT_STALL_LIMIT_MS: u64 = 250;

pub(crate) struct HotLoad {
    child: Child,
}

impl HotLoad {
    pub(crate) fn start(fx: &LabFixture, seconds: u64, follow_primary: bool) -> HotLoad {
        HotLoad::paced(fx, seconds, follow_primary, 0)
    }

    /// At most `rate` transactions a second (0: unpaced).
    pub(crate) fn paced(fx: &LabFixture, seconds: u64, follow_primary: bool, rate: u32) -> HotLoad {
        let child = fx
            .background()
            .args(["lab", "load", "--output", "json", "--duration"])
            .arg(format!("{seconds}s"))
            .arg(format!("--rate={rate}"))
            .args(follow_primary.then_some("--follow-primary"))
            .arg("--dir")
            .arg(fx.lab_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Let the writers reach full speed first.
        std::thread::sleep(Duration::from_millis(1500));
        HotLoad { child }
    }

    pub(crate) fn finish(self) -> serde_json::Value {
        let output = self.child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "lab load: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = stdout_json(&output);
        assert!(
            report["commits"].as_u64().unwrap() > 1000,
            "the load ran: {report}"
        );
        report
    }
}

/// Three runs of `cutover ARGS --output json PLAN` under the hot-row load:
/// each exits 0 with `status`, reports a pause within the limit, and the
/// writers never go longer than the limit without a commit.
fn three_runs_hold_the_writers_for_milliseconds(
    fx: &LabFixture,
    args: &[&str],
    plan: &std::path::Path,
    status: &str,
) {
    let load = HotLoad::start(fx, 10, false);
    for round in 1..=3 {
        let (code, report) = run_json(fx.cutover().args(args).args(["--output", "json"]).arg(plan));
        assert_eq!(code, Some(0), "{args:?} round {round}: {report}");
        assert_eq!(report["status"], status, "{args:?} round {round}: {report}");
        let paused = report["source_lock_ms"].as_u64().unwrap();
        assert!(
            paused <= POINT_STALL_LIMIT_MS,
            "{args:?} round {round}: paused {paused} ms"
        );
    }
    let load = load.finish();
    let gap = load["longest_gap_ms"].as_u64().unwrap();
    assert!(
        gap <= POINT_STALL_LIMIT_MS,
        "{args:?}: the writers went {gap} ms without a commit: {load}"
    );
}

#[test]
fn lab_checksums_under_hot_rows_hold_the_writers_for_milliseconds() {
    checksums_under_hot_rows_hold_the_writers_for_milliseconds(Flavor::MariaDb);
}

#[test]
fn lab_mysql_checksums_under_hot_rows_hold_the_writers_for_milliseconds() {
    checksums_under_hot_rows_hold_the_writers_for_milliseconds(Flavor::MySql);
}

fn checksums_under_hot_rows_hold_the_writers_for_milliseconds(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = crate::harness::repo_root().join("plans/lab-switchover.yaml");
    three_runs_hold_the_writers_for_milliseconds(&fx, &["checksum"], &plan, "match");
}

#[test]
fn lab_snapshots_under_hot_rows_hold_the_writers_for_milliseconds() {
    snapshots_under_hot_rows_hold_the_writers_for_milliseconds(Flavor::MariaDb);
}

#[test]
fn lab_mysql_snapshots_under_hot_rows_hold_the_writers_for_milliseconds() {
    snapshots_under_hot_rows_hold_the_writers_for_milliseconds(Flavor::MySql);
}

fn snapshots_under_hot_rows_hold_the_writers_for_milliseconds(flavor: Flavor) {
    let fx = LabFixture::up_empty_as(flavor, 2000);
    let plan = crate::harness::repo_root().join("plans/lab-migration.yaml");
    three_runs_hold_the_writers_for_milliseconds(
        &fx,
        &["snapshot", "--targets", "c2", "--replace"],
        &plan,
        "completed",
    );
}

/// Under hot rows the freeze completes inside its budget, and the
/// `write_freeze_ms` it reports is, within 50 ms, what the writers (who
/// follow the primary) lived: no shorter than their longest common gap, less
/// the pause a writer that found no writable server takes before it looks
/// again, and no longer than the longest wait of any one of them.
#[test]
fn lab_a_switchover_and_its_rollback_under_hot_rows_report_the_stall_the_writers_saw() {
    a_switchover_and_its_rollback_under_hot_rows_report_the_stall_the_writers_saw(Flavor::MariaDb);
}

#[test]
fn lab_mysql_a_switchover_and_its_rollback_under_hot_rows_report_the_stall_the_writers_saw() {
    a_switchover_and_its_rollback_under_hot_rows_report_the_stall_the_writers_saw(Flavor::MySql);
}

fn a_switchover_and_its_rollback_under_hot_rows_report_the_stall_the_writers_saw(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = switchover_plan(&fx, "hot.yaml", SWITCHOVER_PHASE, &[]);
    // Unpaced, the writers commit about 2,000 transactions a second on a MySQL
    // primary here, more than its replicas apply on two cores (about 1,300):
    // the switch back would find legacy thousands behind and refuse at its
    // freeze budget. A primary whose replicas keep up is the case under test.
    let rate = match flavor {
        Flavor::MariaDb => 0,
        Flavor::MySql => 1000,
    };
    let load = HotLoad::paced(&fx, 8, true, rate);
    let (code, run) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_freeze_is_what_the_writers_saw(&run, &load.finish(), 3000);

    let run_id = run["run_id"].as_str().unwrap();
    let load = HotLoad::paced(&fx, 8, true, rate);
    let (code, rollback) = run_json(
        fx.cutover()
            .args(["rollback", run_id, "--yes", "--output", "json"])
            .arg("--plan")
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{rollback}");
    assert_freeze_is_what_the_writers_saw(&rollback, &load.finish(), 3000);
}

fn assert_freeze_is_what_the_writers_saw(
    report: &serde_json::Value,
    load: &serde_json::Value,
    budget_ms: u64,
) {
    let freeze = report["write_freeze_ms"].as_u64().unwrap();
    let gap = load["longest_gap_ms"].as_u64().unwrap();
    let writer_wait = load["longest_writer_wait_ms"].as_u64().unwrap();
    let reconnect_pause = load["reconnect_pause_ms"].as_u64().unwrap();
    assert!(freeze <= budget_ms, "freeze {freeze} ms over the budget");
    // No writer committed for at least `gap` (nothing may hide there, but a
    // writer whose session was ended during the freeze finds every server
    // read-only and looks again only after its reconnect pause), and the
    // writer held longest waited `writer_wait` (the freeze says no more): a
    // transaction already past its updates may commit while the lock drains,
    // splitting the writers' common gap.
    assert!(
        gap <= freeze + reconnect_pause + 50 && freeze <= writer_wait + 50,
        "the report says writes were frozen {freeze} ms; the writers saw {gap} ms without any commit \
         (each pausing {reconnect_pause} ms before looking for a writable server again), and one waited \
         {writer_wait} ms: {load}"
    );
}

/// A planned drill under hot rows: the failover's freeze and the drill's
/// verifying checksums (each at one consistent point) all get through, and
/// every verification matches.
#[test]
fn lab_a_planned_drill_under_hot_rows_passes_and_its_checksums_match() {
    a_planned_drill_under_hot_rows_passes_and_its_checksums_match(Flavor::MariaDb);
}

#[test]
fn lab_mysql_a_planned_drill_under_hot_rows_passes_and_its_checksums_match() {
    a_planned_drill_under_hot_rows_passes_and_its_checksums_match(Flavor::MySql);
}

fn a_planned_drill_under_hot_rows_passes_and_its_checksums_match(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = crate::lab_drill::drill_plan(&fx, "drill.yaml", &[]);
    let load = HotLoad::start(&fx, 20, true);
    let (code, report) = crate::lab_drill::drill(&fx, &plan, "planned");
    let load = load.finish();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "passed", "{report}");
    let verifications = report["verifications"].as_array().unwrap();
    assert!(!verifications.is_empty(), "{report}");
    for verification in verifications {
        assert_eq!(verification["status"], "match", "{verification}");
    }
    // Two freezes (the failover and the switch back) within their 3 s
    // budgets; nothing else may stop the writers for longer.
    let gap = load["longest_gap_ms"].as_u64().unwrap();
    assert!(
        gap <= 3000,
        "the writers went {gap} ms without a commit: {load}"
    );
}

/// A source that cannot give a point within the limits is refused (exit 3)
/// naming the limit, with nothing changed on any target: here another backup
/// holds its stage on legacy, as mariadb-backup would.
#[test]
fn lab_a_source_busy_past_the_limits_is_refused_with_nothing_changed() {
    let fx = LabFixture::up_empty(500);
    let text =
        std::fs::read_to_string(crate::harness::repo_root().join("plans/lab-migration.yaml"))
            .unwrap()
            .replace(
                "  lag_timeout: 2m\n",
                "  lag_timeout: 2s\n  max_source_stall_ms: 20\n",
            );
    assert!(text.contains("max_source_stall_ms: 20"));
    let plan = fx.sandbox.write("busy.yaml", text);
    let runtime = crate::harness::runtime();
    let mut backup = runtime.block_on(async {
        let mut session = cutover::mysql::Session::connect(&fx.admin_endpoint("127.0.0.10"))
            .await
            .unwrap();
        session
            .exec("hold a backup stage", "BACKUP STAGE START")
            .await
            .unwrap();
        session
    });
    let started = std::time::Instant::now();
    let output = fx
        .cutover()
        .args(["snapshot", "--targets", "c2", "--output", "json"])
        .arg(&plan)
        .output()
        .unwrap();
    let waited = started.elapsed();
    runtime.block_on(async {
        backup
            .exec("end the backup stage", "BACKUP STAGE END")
            .await
            .unwrap();
        backup.close().await;
    });
    let error = stdout_json(&output);
    assert_eq!(output.status.code(), Some(3), "{error}");
    assert_eq!(error["kind"], "refused", "{error}");
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("no consistent point on `legacy`") && message.contains("20 ms"),
        "{message}"
    );
    assert!(waited < Duration::from_secs(15), "gave up after {waited:?}");
    // Nothing changed: c2 never got the database.
    let databases: Vec<String> = runtime.block_on(async {
        let mut session = cutover::mysql::Session::connect(&fx.admin_endpoint("127.0.0.12"))
            .await
            .unwrap();
        let names = session
            .query(
                "list databases",
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA",
            )
            .await
            .unwrap();
        session.close().await;
        names
    });
    assert!(
        !databases.iter().any(|name| name == "refunds"),
        "{databases:?}"
    );
}
