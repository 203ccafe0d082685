//! DR drills on the real lab: planned and crash drills measure RTO and RPO,
//! report every timeline event, fail back to a healthy replica and match; a
//! lost write is reported exactly as the read-back finds it; a missed target
//! fails the drill.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::harness::{Flavor, LabFixture, runtime};
use crate::lab_cutover::{assert_primary, run_json};

/// `plans/lab-dr-drill.yaml` with its hooks calling this build's binary.
pub(crate) fn drill_plan(fx: &LabFixture, file: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text =
        std::fs::read_to_string(crate::harness::repo_root().join("plans/lab-dr-drill.yaml"))
            .unwrap()
            .replace(
                "[cutover, lab,",
                &format!("[{}, lab,", env!("CARGO_BIN_EXE_cutover")),
            );
    for (from, to) in edits {
        assert!(text.contains(from), "plan has {from}");
        text = text.replace(from, to);
    }
    fx.sandbox.write(file, text)
}

pub(crate) fn drill(
    fx: &LabFixture,
    plan: &Path,
    failure: &str,
) -> (Option<i32>, serde_json::Value) {
    let reports = fx.sandbox.path().join("reports");
    run_json(
        fx.cutover()
            .args([
                "drill",
                "run",
                "--yes",
                "--output",
                "json",
                "--failure",
                failure,
            ])
            .arg("--report-dir")
            .arg(&reports)
            .arg(plan),
    )
}

fn event_names(report: &serde_json::Value) -> Vec<String> {
    report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// The probe's sequence numbers present on one server.
fn probe_rows(fx: &LabFixture, ip: &str, probe_id: &str) -> BTreeSet<u64> {
    let endpoint = fx.admin_endpoint(ip);
    let sql = format!("SELECT seq FROM cutover_probe.writes WHERE probe_id = '{probe_id}'");
    runtime().block_on(async move {
        let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
        let rows: Vec<u64> = session.query("read probe rows", &sql).await.unwrap();
        session.close().await;
        rows.into_iter().collect()
    })
}

fn assert_complete(report: &serde_json::Value, events: &[&str]) {
    assert_eq!(report["status"], "passed", "{report}");
    let names = event_names(report);
    for event in events {
        assert!(names.iter().any(|n| n == event), "{event} in {names:?}");
    }
    let rto = report["rto"]["measured_ms"].as_u64().unwrap();
    assert!(rto > 0 && rto < 30_000, "{}", report["rto"]);
    assert_eq!(report["rto"]["met"], true);
    assert_eq!(report["rpo"]["met"], true, "{}", report["rpo"]);
    assert!(report["probe"]["acknowledged"].as_u64().unwrap() > 50);
    for verification in report["verifications"].as_array().unwrap() {
        assert_eq!(verification["status"], "match", "{verification}");
    }
    assert_eq!(report["failback"]["rejoined"], true);
    assert_eq!(report["failback"]["switched_back"], true);
    // Three reports, the HTML one with its SVG timeline naming every event.
    let files: Vec<&str> = report["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files[0]).unwrap()).unwrap();
    assert_eq!(json["drill_id"], report["drill_id"]);
    assert!(
        std::fs::read_to_string(files[1])
            .unwrap()
            .contains("## Timeline")
    );
    let html = std::fs::read_to_string(files[2]).unwrap();
    assert!(html.contains("<svg") && html.contains("writes / 250 ms"));
    for event in events {
        assert!(html.contains(&format!(">{event} (")), "{event} drawn");
    }
}

#[test]
fn lab_planned_and_crash_drills_measure_rto_and_rpo_and_fail_back() {
    planned_and_crash_drills_measure_rto_and_rpo_and_fail_back(Flavor::MariaDb);
}

#[test]
fn lab_mysql_planned_and_crash_drills_measure_rto_and_rpo_and_fail_back() {
    planned_and_crash_drills_measure_rto_and_rpo_and_fail_back(Flavor::MySql);
}

fn planned_and_crash_drills_measure_rto_and_rpo_and_fail_back(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = drill_plan(&fx, "drill.yaml", &[]);

    // A planned drill that stays on the DR cluster: legacy is left a healthy
    // replica of c1 with no errant GTIDs.
    let stay = drill_plan(
        &fx,
        "stay.yaml",
        &[("switch_back: true", "switch_back: false")],
    );
    let (code, planned) = drill(&fx, &stay, "planned");
    assert_eq!(code, Some(0), "{planned}");
    assert_eq!(planned["failure"], "planned");
    assert_eq!(planned["promoted"], "c1");
    let names = event_names(&planned);
    for event in [
        "injection",
        "promotion",
        "dns_switch",
        "first_write",
        "rejoined",
        "failback",
    ] {
        assert!(names.iter().any(|n| n == event), "{event} in {names:?}");
    }
    assert_eq!(planned["failback"]["switched_back"], false);
    assert_primary(&fx, &plan, "c1");
    // And back, as a planned drill of c1 whose DR cluster is legacy.
    let back = drill_plan(
        &fx,
        "back.yaml",
        &[
            ("primary: legacy", "primary: c1"),
            ("dr: [c1, c2, c3, c6]", "dr: [legacy]"),
            ("switch_back: true", "switch_back: false"),
        ],
    );
    let (code, returned) = drill(&fx, &back, "planned");
    assert_eq!(code, Some(0), "{returned}");
    assert_eq!(returned["promoted"], "legacy");
    assert_primary(&fx, &plan, "legacy");

    let (code, planned) = drill(&fx, &plan, "planned");
    assert_eq!(code, Some(0), "{planned}");
    assert_complete(
        &planned,
        &[
            "injection",
            "promotion",
            "dns_switch",
            "first_write",
            "failback",
        ],
    );
    assert_primary(&fx, &plan, "legacy");

    let (code, crash) = drill(&fx, &plan, "crash");
    assert_eq!(code, Some(0), "{crash}");
    assert_complete(
        &crash,
        &[
            "injection",
            "detection",
            "promotion",
            "dns_switch",
            "first_write",
            "recovered",
            "rejoined",
            "failback",
        ],
    );
    // The most advanced replica took over; the crashed server came back as a
    // replica with no errant GTIDs, then took its role back; everything matches.
    let candidates = crash["failover"]["candidates"].as_array().unwrap();
    let promoted = crash["promoted"].as_str().unwrap();
    let most = candidates
        .iter()
        .map(|c| c["transactions"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        candidates
            .iter()
            .any(|c| c["cluster"] == promoted && c["transactions"] == most)
    );
    assert!(candidates.iter().all(|c| c["errant_gtids"].is_null()));
    assert_primary(&fx, &plan, "legacy");
    let (code, checksum) = run_json(
        fx.cutover()
            .args(["checksum", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{checksum}");

    // An impossible RTO target is reported as missed, with a non-zero exit.
    let strict = drill_plan(&fx, "strict.yaml", &[("rto: 30s", "rto: 1ms")]);
    let (code, missed) = drill(&fx, &strict, "crash");
    assert_eq!(code, Some(1), "{missed}");
    assert_eq!(missed["status"], "missed", "{missed}");
    assert_eq!(missed["rto"]["met"], false);
    assert_eq!(missed["rto"]["target_ms"], 1);

    // History keeps all three, with their targets and the trend.
    let (code, history) = run_json(fx.cutover().args(["drill", "history", "--output", "json"]));
    assert_eq!(code, Some(0));
    let drills = history["drills"].as_array().unwrap();
    let statuses: Vec<&str> = drills
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["passed", "passed", "passed", "passed", "missed"]);
    assert_eq!(drills[4]["rto_target_ms"], 1);
    assert_ne!(history["trend"]["direction"], "unknown");
}

#[test]
fn lab_crash_drill_reports_exactly_the_writes_it_lost() {
    crash_drill_reports_exactly_the_writes_it_lost(Flavor::MariaDb);
}

#[test]
fn lab_mysql_crash_drill_reports_exactly_the_writes_it_lost() {
    crash_drill_reports_exactly_the_writes_it_lost(Flavor::MySql);
}

fn crash_drill_reports_exactly_the_writes_it_lost(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = drill_plan(&fx, "drill.yaml", &[]);
    // No replica receives anything more from legacy: every write it
    // acknowledges from now on is lost when it crashes.
    for ip in ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.16"] {
        fx.admin_exec(ip, &["STOP REPLICA IO_THREAD"]);
    }
    let (code, report) = drill(&fx, &plan, "crash");
    assert_eq!(code, Some(1), "{report}");
    let lost: BTreeSet<u64> = report["rpo"]["lost_sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert!(
        lost.len() >= 40,
        "a second of writes before the crash was lost: {lost:?}"
    );
    assert_eq!(report["rpo"]["lost_writes"], lost.len());
    assert_eq!(report["rpo"]["met"], false, "c6's rpo is 0s");
    assert!(report["rpo"]["measured_ms"].as_u64().unwrap() >= 500);

    // The read-back's view: legacy (back, read-only) holds the writes that the
    // new primary does not; the drill reported each acknowledged one of them.
    let probe_id = report["probe"]["probe_id"].as_str().unwrap();
    let promoted = report["promoted"].as_str().unwrap();
    let promoted_ip = match promoted {
        "c1" => "127.0.0.11",
        "c2" => "127.0.0.12",
        "c3" => "127.0.0.13",
        _ => "127.0.0.16",
    };
    let on_legacy = probe_rows(&fx, "127.0.0.10", probe_id);
    let on_new_primary = probe_rows(&fx, promoted_ip, probe_id);
    let only_on_legacy: BTreeSet<u64> = on_legacy.difference(&on_new_primary).copied().collect();
    assert!(
        lost.is_subset(&only_on_legacy),
        "{lost:?} vs {only_on_legacy:?}"
    );
    // At most the one write in flight at the crash committed unacknowledged.
    assert!(only_on_legacy.len() <= lost.len() + 1);
    assert!(lost.iter().all(|seq| !on_new_primary.contains(seq)));

    // Legacy cannot rejoin as it is: those writes are errant on it, and said so.
    let failback = &report["failback"];
    assert_eq!(failback["rejoined"], false, "{failback}");
    assert!(
        flavor.is_position(failback["errant_gtids"].as_str().unwrap()),
        "{failback}"
    );
    assert!(failback["error"].as_str().unwrap().contains("never had"));
}

/// A background `cutover drill daemon`, stopped with SIGTERM (or killed if the test fails).
struct Daemon(Option<std::process::Child>);

impl Daemon {
    fn start(fx: &LabFixture) -> Daemon {
        let child = fx
            .background()
            .args(["drill", "daemon", "--yes", "--output", "json"])
            .arg("--report-dir")
            .arg(fx.sandbox.path().join("reports"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Daemon(Some(child))
    }

    /// SIGTERM, then the exit code and the summary it printed.
    fn stop(mut self) -> (Option<i32>, serde_json::Value) {
        let child = self.0.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            serde_json::from_slice(&output.stdout).unwrap_or_default(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drills_recorded(fx: &LabFixture) -> Vec<serde_json::Value> {
    let (_, history) = run_json(fx.cutover().args(["drill", "history", "--output", "json"]));
    history["drills"].as_array().cloned().unwrap_or_default()
}

fn wait_for_drills(
    fx: &LabFixture,
    count: usize,
    limit: std::time::Duration,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let drills = drills_recorded(fx);
        if drills.len() >= count || std::time::Instant::now() >= deadline {
            return drills;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn lab_daemon_runs_scheduled_drills_and_keeps_the_schedule_across_restarts() {
    let fx = LabFixture::up();
    let plan = drill_plan(&fx, "drill.yaml", &[("failure: crash", "failure: planned")]);
    let (code, saved) = run_json(
        fx.cutover()
            .args([
                "drill",
                "schedule",
                "--cron",
                "*/10 * * * * *",
                "--output",
                "json",
            ])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{saved}");
    assert_eq!(saved["cron"], "*/10 * * * * *");

    let daemon = Daemon::start(&fx);
    let drills = wait_for_drills(&fx, 2, std::time::Duration::from_secs(45));
    let (code, summary) = daemon.stop();
    assert_eq!(code, Some(0), "a clean stop on SIGTERM: {summary}");
    assert!(drills.len() >= 2, "{drills:?}");
    assert!(summary["drills_run"].as_u64().unwrap() >= 2, "{summary}");
    for drill in &drills {
        assert_eq!(drill["status"], "passed", "{drill}");
        assert_eq!(drill["failure"], "planned");
        assert!(drill["rto_ms"].as_u64().is_some());
    }
    // Never two at once: each started after the one before had finished.
    let (_, record) = run_json(fx.cutover().args(["status", "--output", "json"]));
    assert!(
        record["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] != "running")
    );

    // Down for a due time, then up again: the schedule is still there, the
    // miss is recorded, and drills go on.
    std::thread::sleep(std::time::Duration::from_secs(11));
    let before = drills_recorded(&fx).len();
    let daemon = Daemon::start(&fx);
    let drills = wait_for_drills(&fx, before + 1, std::time::Duration::from_secs(30));
    let (code, summary) = daemon.stop();
    assert_eq!(code, Some(0), "{summary}");
    assert!(
        drills.len() > before,
        "the restarted daemon ran a drill: {summary}"
    );
    let (_, listed) = run_json(
        fx.cutover()
            .args(["drill", "schedule", "--list", "--output", "json"]),
    );
    assert_eq!(listed["schedules"].as_array().unwrap().len(), 1, "{listed}");
    assert!(
        listed["missed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["reason"] == "the daemon was not running"),
        "{listed}"
    );
    assert_primary(&fx, &plan, "legacy");
}

#[test]
fn lab_a_drill_killed_at_every_stage_converges_on_resume() {
    // A crash drill's stages, in the order it journals them.
    let stages = [
        "prechecks",
        "probe_started",
        "injection",
        "detection",
        "promotion",
        "dns_switch",
        "first_write",
        "verified",
        "failback_started",
        "recovered",
        "rejoined",
        "switched_back",
        "failback",
        "verified_again",
    ];
    for stage in stages {
        // A lab of its own each time: a crash can leave legacy holding a
        // write that never reached a replica, and then it is not rejoined:
        // the stages from `rejoined` on are then never reached, and that
        // stage is tried again on a new lab (at most three times).
        let mut attempts = 0;
        let (fx, plan) = loop {
            attempts += 1;
            let fx = LabFixture::up();
            let plan = drill_plan(&fx, "drill.yaml", &[]);
            let reports = fx.sandbox.path().join("reports");
            let killed = fx
                .cutover()
                .env(cutover::engine::recovery::KILL_AT_DRILL_STAGE_ENV, stage)
                .args([
                    "drill",
                    "run",
                    "--yes",
                    "--failure",
                    "crash",
                    "--output",
                    "json",
                    "--report-dir",
                ])
                .arg(&reports)
                .arg(&plan)
                .output()
                .unwrap();
            if killed.status.code().is_none() {
                break (fx, plan);
            }
            let finished: serde_json::Value =
                serde_json::from_slice(&killed.stdout).unwrap_or_default();
            let never_rejoined = !finished["failback"]["errant_gtids"].is_null()
                && matches!(
                    stage,
                    "rejoined" | "switched_back" | "failback" | "verified_again"
                );
            assert!(
                never_rejoined && attempts < 3,
                "killed at `{stage}` (attempt {attempts}): exit {:?}, {finished}\n{}",
                killed.status.code(),
                String::from_utf8_lossy(&killed.stderr)
            );
            eprintln!(
                "`{stage}` not reached: legacy kept {} that no replica had; trying again",
                finished["failback"]["errant_gtids"]
            );
        };
        let (_, status) = run_json(fx.cutover().args(["status", "--output", "json"]));
        let drill_id = status["runs"][0]["run_id"].as_str().unwrap().to_string();
        assert_eq!(
            status["runs"][0]["status"], "interrupted",
            "{stage}: {status}"
        );
        assert_eq!(status["runs"][0]["drill_stage"], stage, "{status}");

        // `cutover resume` of a drill's run is the drill's own resume.
        let (code, report) = run_json(
            fx.cutover()
                .args(["resume", &drill_id, "--yes", "--output", "json"]),
        );
        eprintln!(
            "killed at `{stage}`: resume exit {code:?}, status {}, promoted {}, failback {}, lost {}",
            report["status"], report["promoted"], report["failback"], report["rpo"]["lost_writes"]
        );
        assert!(
            matches!(code, Some(0) | Some(1)),
            "{stage}: {code:?} {report}"
        );
        assert_eq!(report["interrupted"]["stage"], stage, "{report}");
        let (_, after) = run_json(fx.cutover().args(["status", &drill_id, "--output", "json"]));
        assert_ne!(after["status"], "interrupted", "{stage}: {after}");
        if matches!(stage, "prechecks" | "probe_started") {
            assert_eq!(report["status"], "interrupted", "{report}");
            assert_primary(&fx, &plan, "legacy");
            continue;
        }
        assert!(
            report["rto"]["measured_ms"].as_u64().is_some(),
            "{stage}: {report}"
        );
        assert!(
            report["verifications"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["status"] == "match" || v["status"] == "skipped"),
            "{stage}: {report}"
        );
        let errant = &report["failback"]["errant_gtids"];
        if errant.is_null() {
            // Rejoined and switched back: one writable primary (legacy), DNS
            // on it at both authoritatives, everyone else following it.
            assert_eq!(report["rpo"]["lost_writes"], 0, "{stage}: {report}");
            assert_primary(&fx, &plan, "legacy");
        } else {
            // The crash kept a write legacy committed but never sent: it is
            // reported, counted, and legacy is left out; the rest converged.
            assert!(
                report["rpo"]["lost_writes"].as_u64().unwrap() >= 1,
                "{report}"
            );
            let promoted = report["promoted"].as_str().unwrap();
            crate::lab_cutover::assert_dns_on(promoted);
            let topology = crate::lab_cutover::topology(&fx, &plan);
            for view in topology["clusters"].as_array().unwrap() {
                match view["name"].as_str().unwrap() {
                    "legacy" => assert_eq!(view["read_only"], true, "{view}"),
                    name if name == promoted => assert_eq!(view["read_only"], false, "{view}"),
                    _ => assert_eq!(view["replicating_from"], promoted, "{view}"),
                }
            }
        }
    }
}

#[test]
fn lab_a_daemon_killed_mid_drill_resumes_that_drill_first_when_restarted() {
    let fx = LabFixture::up();
    let plan = drill_plan(&fx, "drill.yaml", &[]);
    let (code, saved) = run_json(
        fx.cutover()
            .args([
                "drill",
                "schedule",
                "--cron",
                "*/10 * * * * *",
                "--output",
                "json",
            ])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{saved}");
    // The daemon dies with its drill at the promotion: legacy crashed, c1
    // promoted, no failback, nobody watching.
    let mut dying = fx
        .background()
        .env(
            cutover::engine::recovery::KILL_AT_DRILL_STAGE_ENV,
            "promotion",
        )
        .args(["drill", "daemon", "--yes", "--report-dir"])
        .arg(fx.sandbox.path().join("reports"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let status = loop {
        if let Some(status) = dying.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never reached the promotion"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(status.code(), None, "killed at the promotion");
    let (_, runs) = run_json(fx.cutover().args(["status", "--output", "json"]));
    let drill_id = runs["runs"][0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(runs["runs"][0]["status"], "interrupted", "{runs}");
    assert!(drills_recorded(&fx).is_empty(), "nothing recorded yet");

    // Restarted, it finishes that drill before anything else.
    let daemon = Daemon::start(&fx);
    let drills = wait_for_drills(&fx, 1, std::time::Duration::from_secs(60));
    let (code, summary) = daemon.stop();
    assert_eq!(code, Some(0), "{summary}");
    assert!(
        summary["drills_resumed"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_eq!(
        drills[drills.len() - 1]["drill_id"],
        drill_id.as_str(),
        "{drills:?}"
    );
    let (_, status) = run_json(fx.cutover().args(["status", &drill_id, "--output", "json"]));
    assert_ne!(status["status"], "interrupted", "{status}");
    let (_, listed) = run_json(
        fx.cutover()
            .args(["drill", "schedule", "--list", "--output", "json"]),
    );
    assert!(
        listed["missed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("drill {drill_id} was interrupted; resumed"))),
        "{listed}"
    );
    assert_primary(&fx, &plan, "legacy");
}
