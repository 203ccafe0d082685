//! The executor killed against the real lab: a switchover killed before each
//! of its steps, and a rollback killed anywhere, each converge when run again
//! with nothing lost.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Flavor, LabFixture, runtime};
use crate::lab_cutover::{
    Probe, SWITCHOVER_PHASE, assert_nothing_lost, assert_primary, run_json, switchover_plan,
    topology,
};

#[test]
fn lab_a_crash_at_every_step_boundary_resumes_or_rolls_back() {
    crash_at_every_step_boundary(Flavor::MariaDb);
}

#[test]
fn lab_mysql_a_crash_at_every_step_boundary_resumes_or_rolls_back() {
    crash_at_every_step_boundary(Flavor::MySql);
}

/// Killed before each step of a switchover, the run resumes to the end past
/// the point of no return and rolls back before it, with nothing lost.
fn crash_at_every_step_boundary(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = switchover_plan(&fx, "switchover.yaml", SWITCHOVER_PHASE, &[]);
    let probe = Probe::start(&fx, &plan);
    let budget = Duration::from_millis(3000);
    // Steps: freeze, catch_up, promote, dns_switch, unfreeze, reverse_replication, repoint.
    for kill_at in 1..=7u32 {
        let killed = fx
            .cutover()
            .env(cutover::engine::KILL_AT_STEP_ENV, kill_at.to_string())
            .args(["run", "--yes"])
            .arg(&plan)
            .output()
            .unwrap();
        let killed_at = Instant::now();
        assert_eq!(
            killed.status.code(),
            None,
            "killed by SIGKILL before step {kill_at}: {}{}",
            String::from_utf8_lossy(&killed.stdout),
            String::from_utf8_lossy(&killed.stderr)
        );
        let (_, status) = run_json(fx.cutover().args(["status", "--output", "json"]));
        let run_id = status["runs"][0]["run_id"].as_str().unwrap().to_string();
        assert_eq!(status["runs"][0]["status"], "interrupted");
        let passed_point_of_no_return = kill_at > 3;
        if !passed_point_of_no_return {
            // Without any resume, the source takes writes again inside the budget.
            let endpoint = fx.admin_endpoint("127.0.0.10");
            let wrote = runtime().block_on(async {
                let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
                let ok = session
                    .exec_within(
                        budget,
                        "write after the crash",
                        &format!("INSERT INTO cutover_probe.writes (probe_id, seq, written_at_us) VALUES ('crash', {kill_at}, 0)"),
                    )
                    .await;
                session.close().await;
                ok
            });
            assert!(wrote.is_ok(), "kill at {kill_at}: {wrote:?}");
            assert!(killed_at.elapsed() < budget + Duration::from_secs(1));
        }
        let (code, report) = run_json(
            fx.cutover()
                .args(["resume", &run_id, "--yes", "--output", "json"]),
        );
        if passed_point_of_no_return {
            assert_eq!(code, Some(0), "kill at {kill_at}: {report}");
            assert_eq!(report["status"], "completed");
            assert_primary(&fx, &plan, "c1");
            let (code, report) = run_json(
                fx.cutover()
                    .args(["rollback", &run_id, "--yes", "--output", "json"]),
            );
            assert_eq!(code, Some(0), "rollback after kill at {kill_at}: {report}");
        } else {
            assert_eq!(code, Some(3), "kill at {kill_at}: {report}");
            assert_eq!(report["status"], "rolled_back");
        }
        assert_primary(&fx, &plan, "legacy");
    }
    let probe = probe.finish();
    assert_nothing_lost(&probe);
}

/// `cutover rollback RUN_ID` in the background, SIGKILLed after `after`.
fn rollback_killed_after(fx: &LabFixture, run_id: &str, after: Duration) {
    let mut child = fx
        .background()
        .args(["rollback", run_id, "--yes", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
}

/// At most one cluster is writable right now, and exactly one once a command returned.
fn writable_clusters(fx: &LabFixture, plan: &Path) -> Vec<String> {
    topology(fx, plan)["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|view| view["read_only"] == false)
        .map(|view| view["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn lab_a_rollback_killed_anywhere_converges_when_run_again() {
    let fx = LabFixture::up();
    let plan = switchover_plan(&fx, "switchover.yaml", SWITCHOVER_PHASE, &[]);
    let probe = Probe::start(&fx, &plan);
    let switch = || {
        let (code, run) = run_json(
            fx.cutover()
                .args(["run", "--yes", "--output", "json"])
                .arg(&plan),
        );
        assert_eq!(code, Some(0), "{run}");
        run["run_id"].as_str().unwrap().to_string()
    };
    let converge = |run_id: &str, what: &str| {
        assert!(
            writable_clusters(&fx, &plan).len() <= 1,
            "{what}: never two writable"
        );
        let (_, status) = run_json(fx.cutover().args(["status", run_id, "--output", "json"]));
        assert_eq!(status["status"], "interrupted", "{what}: {status}");
        let (code, report) = run_json(
            fx.cutover()
                .args(["rollback", run_id, "--yes", "--output", "json"]),
        );
        assert_eq!(code, Some(0), "{what}: {report}");
        assert_eq!(report["status"], "rolled_back", "{what}: {report}");
        assert_eq!(writable_clusters(&fx, &plan), ["legacy"], "{what}");
        assert_primary(&fx, &plan, "legacy");
    };
    // The reverse switchover's steps: reverse_replication, freeze, catch_up,
    // promote, dns_switch, unfreeze, reverse_replication, repoint.
    for kill_at in 1..=8u32 {
        let run_id = switch();
        let killed = fx
            .cutover()
            .env(cutover::engine::KILL_AT_STEP_ENV, kill_at.to_string())
            .args(["rollback", &run_id, "--yes"])
            .output()
            .unwrap();
        assert_eq!(
            killed.status.code(),
            None,
            "killed before rollback step {kill_at}: {}",
            String::from_utf8_lossy(&killed.stderr)
        );
        converge(&run_id, &format!("killed before rollback step {kill_at}"));
    }
    // Inside the steps, at whatever instant the clock says.
    for after_ms in [40u64, 80, 120, 160, 220] {
        let run_id = switch();
        rollback_killed_after(&fx, &run_id, Duration::from_millis(after_ms));
        let (_, status) = run_json(fx.cutover().args(["status", &run_id, "--output", "json"]));
        if status["status"] == "rolled_back" {
            assert_primary(&fx, &plan, "legacy");
            continue;
        }
        converge(&run_id, &format!("killed {after_ms} ms into the rollback"));
    }
    // `resume` finishes an interrupted rollback too.
    let run_id = switch();
    let killed = fx
        .cutover()
        .env(cutover::engine::KILL_AT_STEP_ENV, "5")
        .args(["rollback", &run_id, "--yes"])
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None);
    let (code, report) = run_json(
        fx.cutover()
            .args(["resume", &run_id, "--yes", "--output", "json"]),
    );
    assert_eq!(code, Some(3), "resume finishes the rollback: {report}");
    assert_eq!(report["status"], "rolled_back");
    assert_primary(&fx, &plan, "legacy");

    let probe = probe.finish();
    assert_nothing_lost(&probe);
}
