//! Two orchestrators, "host-a" and "host-b" (`CUTOVER_HOST_ID`), on one
//! shared store (the lab's PostgreSQL): a run whose holder died or stopped
//! is taken over only once its lease expired, and a holder that wakes up
//! after that acts on nothing and writes nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::LabFixture;
use crate::lab_cutover::{
    Probe, SWITCHOVER_PHASE, assert_nothing_lost, assert_primary, fingerprint, run_json,
    switchover_plan,
};

const TTL: &str = "4s";
const RENEW: &str = "1s";

/// `cutover` as orchestrator `host` on the shared store, with short leases.
fn orchestrator(fx: &LabFixture, host: &str) -> Command {
    let mut command = fx.background();
    command
        .env("CUTOVER_STATE", fx.var("CUTOVER_LAB_STATE_URL"))
        .env("CUTOVER_HOST_ID", host)
        .env("CUTOVER_LEASE_TTL", TTL)
        .env("CUTOVER_LEASE_RENEW", RENEW);
    command
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// host-b resumes `run_id`: refused (exit 3, naming host-a and the lease's
/// expiry) while host-a's lease lives, then, once it expired, takes the run
/// over. Returns the report of the resume that went through, and how many
/// times it was refused first.
fn take_over(fx: &LabFixture, run_id: &str) -> (serde_json::Value, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = 0;
    loop {
        let output = orchestrator(fx, "host-b")
            .args(["resume", run_id, "--yes", "--output", "json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() == Some(3) && stderr.contains("is locked by run") {
            assert!(stderr.contains("on host-a"), "{stderr}");
            assert!(stderr.contains("lease expires in"), "{stderr}");
            refused += 1;
            assert!(Instant::now() < deadline, "still refused: {stderr}");
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        assert_eq!(output.status.code(), Some(0), "resume on host-b: {stderr}");
        return (json_of(&output), refused);
    }
}

fn shared_audit_is_intact(fx: &LabFixture) {
    let output = orchestrator(fx, "host-b")
        .args(["audit", "verify", "--output", "json"])
        .output()
        .unwrap();
    let verified = json_of(&output);
    assert_eq!(output.status.code(), Some(0), "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");
}

/// The switchover's orchestrator on host-a is SIGKILLed after promote; host-b
/// is refused until the lease expires, then finishes the run; the probe
/// loses nothing and the shared audit chain verifies.
#[test]
fn lab_a_run_killed_after_promote_is_finished_by_another_host_once_its_lease_expired() {
    let fx = LabFixture::up_shared();
    let plan = switchover_plan(&fx, "takeover.yaml", SWITCHOVER_PHASE, &[]);
    let probe = Probe::start(&fx, &plan);
    // Steps: freeze, catch_up, promote, dns_switch: killed as dns_switch starts.
    let killed = orchestrator(&fx, "host-a")
        .env(cutover::engine::recovery::KILL_AT_STEP_ENV, "4")
        .args(["run", "--yes", "--output", "json"])
        .arg(&plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        killed.status.code(),
        None,
        "killed: {}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let run_id = last_run(&fx);

    let (report, refused) = take_over(&fx, &run_id);
    assert!(refused >= 1, "host-b was refused while the lease lived");
    assert_eq!(report["status"], "completed", "{report}");
    assert_primary(&fx, &plan, "c1");
    assert_nothing_lost(&probe.finish());
    shared_audit_is_intact(&fx);
}

/// host-a is SIGSTOPped in the middle of its phase; host-b takes the run
/// over after the lease expired and finishes it; host-a, continued, takes
/// no step and writes nothing: same journal, same servers, exit 3 with the
/// reason.
#[test]
fn lab_a_stopped_holder_that_wakes_after_a_takeover_acts_on_nothing() {
    let fx = LabFixture::up_shared();
    let phases = "  - name: cutover\n    rollback: auto\n    steps:\n      - sleep: { duration: 3s }\n      - switchover: { to: c1 }\n";
    let plan = switchover_plan(&fx, "paused.yaml", phases, &[]);
    let mut holder = orchestrator(&fx, "host-a")
        .args(["run", "--yes", "--output", "json"])
        .arg(&plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run_id = wait_for_step(&fx, "sleep");
    let pid = Pid::from_raw(holder.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();

    let (report, refused) = take_over(&fx, &run_id);
    assert!(refused >= 1, "host-b was refused while the lease lived");
    assert_eq!(report["status"], "completed", "{report}");
    assert_primary(&fx, &plan, "c1");
    let journal_before = journal(&fx, &run_id);
    let servers_before = fingerprint(&fx, &plan);

    kill(pid, Signal::SIGCONT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while holder.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "host-a did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = holder.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("lost the lease") || stderr.contains("lease of plan"),
        "{stderr}"
    );
    assert_eq!(
        journal(&fx, &run_id),
        journal_before,
        "host-a wrote nothing"
    );
    assert_eq!(
        fingerprint(&fx, &plan),
        servers_before,
        "host-a acted on nothing"
    );
    assert_primary(&fx, &plan, "c1");
    shared_audit_is_intact(&fx);
}

/// The newest run in the shared store.
fn last_run(fx: &LabFixture) -> String {
    let (_, status) = run_json(orchestrator_command(fx).args(["status", "--output", "json"]));
    status["runs"][0]["run_id"].as_str().unwrap().to_string()
}

fn orchestrator_command(fx: &LabFixture) -> assert_cmd::Command {
    let mut command = fx.cutover();
    command
        .env("CUTOVER_STATE", fx.var("CUTOVER_LAB_STATE_URL"))
        .env("CUTOVER_HOST_ID", "host-b");
    command
}

/// Wait (at most 30 s) until the newest run has `step` running; its id.
fn wait_for_step(fx: &LabFixture, step: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = run_json(orchestrator_command(fx).args(["status", "--output", "json"]));
        if let Some(run) = status["runs"].get(0) {
            let running = run["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|phase| phase["steps"].as_array().cloned().unwrap_or_default())
                .any(|s| s["name"] == step && s["status"] == "running");
            if running {
                return run["run_id"].as_str().unwrap().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no run reached `{step}`: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The run's journal as text: every event, in order.
fn journal(fx: &LabFixture, run_id: &str) -> String {
    let (_, status) =
        run_json(orchestrator_command(fx).args(["status", run_id, "--output", "json"]));
    assert!(
        status["journal"].as_array().is_some_and(|j| !j.is_empty()),
        "{status}"
    );
    format!(
        "{} {}\n{}\n{}",
        status["status"], status["ended_at"], status["phases"], status["journal"]
    )
}

/// `cutover drill daemon` as orchestrator `host` on the shared store.
fn daemon(fx: &LabFixture, host: &str) -> std::process::Child {
    orchestrator(fx, host)
        .args(["drill", "daemon", "--yes", "--output", "json"])
        .arg("--report-dir")
        .arg(fx.sandbox.path().join(format!("reports-{host}")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn shared_drills(fx: &LabFixture) -> Vec<serde_json::Value> {
    let (_, history) =
        run_json(orchestrator_command(fx).args(["drill", "history", "--output", "json"]));
    history["drills"].as_array().cloned().unwrap_or_default()
}

/// Due times claimed for the schedule of `plan`, with who claimed each.
fn claims(fx: &LabFixture, plan: &Path) -> Vec<(String, String)> {
    let url = fx.var("CUTOVER_LAB_STATE_URL").to_string();
    let path = std::fs::canonicalize(plan).unwrap().display().to_string();
    crate::harness::runtime().block_on(async {
        let store = cutover::store::Store::open_shared(&url).await.unwrap();
        let claims = store.drill_claims(&path).await.unwrap();
        store.close().await;
        claims
    })
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within {} s: {what}",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Two drill daemons on one store, one schedule every 10 s: each due time is
/// claimed by one daemon and run once; SIGKILL the one that ran the last
/// drill, and the other runs the next due drills.
#[test]
fn lab_two_drill_daemons_run_each_due_drill_once_and_one_carries_on_alone() {
    let fx = LabFixture::up_shared();
    let plan =
        crate::lab_drill::drill_plan(&fx, "drill.yaml", &[("failure: crash", "failure: planned")]);
    let (code, saved) = run_json(
        orchestrator_command(&fx)
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
    let mut daemons = vec![
        ("host-a", daemon(&fx, "host-a")),
        ("host-b", daemon(&fx, "host-b")),
    ];

    wait_until(
        Duration::from_secs(75),
        "three drills by two daemons",
        || shared_drills(&fx).len() >= 3,
    );
    // The daemon that claimed the last due time dies.
    let last_holder = claims(&fx, &plan)
        .into_iter()
        .rfind(|(due, _)| !due.starts_with("resume"))
        .map(|(_, holder)| holder)
        .unwrap();
    let victim = daemons
        .iter()
        .position(|(host, _)| last_holder.starts_with(host))
        .unwrap();
    let (dead, mut child) = daemons.remove(victim);
    child.kill().unwrap();
    child.wait().unwrap();
    let (survivor, _) = daemons[0];
    let killed_at = claims(&fx, &plan).len();
    let before = shared_drills(&fx).len();

    wait_until(
        Duration::from_secs(60),
        "two more drills by the survivor",
        || shared_drills(&fx).len() >= before + 2,
    );
    let (_, mut child) = daemons.remove(0);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    child.wait().unwrap();

    let claims = claims(&fx, &plan);
    let due: Vec<&(String, String)> = claims
        .iter()
        .filter(|(d, _)| !d.starts_with("resume"))
        .collect();
    assert!(
        due.iter().any(|(_, holder)| holder.starts_with(dead)),
        "{dead} took due times before it died: {claims:?}"
    );
    assert!(
        claims[killed_at..]
            .iter()
            .filter(|(d, _)| !d.starts_with("resume"))
            .all(|(_, holder)| holder.starts_with(survivor)),
        "after {dead} died, only {survivor} claims: {claims:?}"
    );
    // Each due time once: as many drills and misses as claimed due times,
    // and never two drills at once.
    let drills = shared_drills(&fx);
    let (_, listed) = run_json(
        orchestrator_command(&fx).args(["drill", "schedule", "--list", "--output", "json"]),
    );
    let misses = listed["missed"].as_array().cloned().unwrap_or_default();
    let mut missed_due: Vec<&str> = misses.iter().filter_map(|m| m["due_at"].as_str()).collect();
    missed_due.sort();
    let unique = missed_due.len();
    missed_due.dedup();
    assert_eq!(
        missed_due.len(),
        unique,
        "a miss recorded twice: {misses:?}"
    );
    assert!(
        drills.len() + misses.len() >= due.len() - 1 && drills.len() <= due.len(),
        "{} drills and {} misses for {} claimed due times: {claims:?}",
        drills.len(),
        misses.len(),
        due.len()
    );
    for drill in &drills {
        assert_eq!(drill["status"], "passed", "{drill}");
    }
    assert_primary(&fx, &plan, "legacy");
    shared_audit_is_intact(&fx);
}
