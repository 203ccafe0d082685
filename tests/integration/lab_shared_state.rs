//! The state store shared through the lab's PostgreSQL: a switchover and its
//! rollback journaled there, read back by `status`, the audit chain verified
//! there, and nothing written to the local state directory.

use crate::harness::LabFixture;
use crate::lab_cutover::{SWITCHOVER_PHASE, assert_primary, run_json, switchover_plan};

#[test]
fn lab_a_switchover_and_its_rollback_are_journaled_in_the_shared_store() {
    let fx = LabFixture::up_shared();
    let url = fx.var("CUTOVER_LAB_STATE_URL").to_string();
    let plan = switchover_plan(&fx, "shared.yaml", SWITCHOVER_PHASE, &[]);
    let shared = |args: &[&str]| {
        let mut command = fx.cutover();
        command.env("CUTOVER_STATE", &url).args(args);
        command
    };

    let (code, run) = run_json(shared(&["run", "--yes", "--output", "json"]).arg(&plan));
    assert_eq!(code, Some(0), "{run}");
    assert_primary(&fx, &plan, "c1");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (code, rollback) =
        run_json(shared(&["rollback", &run_id, "--yes", "--output", "json", "--plan"]).arg(&plan));
    assert_eq!(code, Some(0), "{rollback}");
    assert_primary(&fx, &plan, "legacy");

    let (code, status) = run_json(&mut shared(&["status", &run_id, "--output", "json"]));
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["status"], "rolled_back", "{status}");
    let (code, verified) = run_json(&mut shared(&["audit", "verify", "--output", "json"]));
    assert_eq!(code, Some(0), "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");
    assert!(verified["entries"].as_u64().unwrap() > 5, "{verified}");
    // Where the URL is shown, its password is not.
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(!verified.to_string().contains(password), "{verified}");

    // Nothing of the run went to the local state directory.
    let (_, local) = run_json(fx.cutover().args(["status", "--output", "json"]));
    assert_eq!(local["runs"], serde_json::json!([]), "{local}");
}

/// `status RUN --follow` streams the journal while the run goes on, from a
/// process of its own: announced by PostgreSQL on the shared store, polled
/// on a local one. Each event arrives while the run still runs, in order,
/// and the follower stops when the run ends with every event printed.
#[test]
fn lab_a_run_is_followed_as_it_is_journaled_on_either_store() {
    let fx = LabFixture::up_shared();
    let phases = "  - name: waits\n    rollback: auto\n    steps:\n      - sleep: { duration: 1s }\n      - sleep: { duration: 1s }\n      - sleep: { duration: 1s }\n";
    let plan = switchover_plan(&fx, "waits.yaml", phases, &[]);
    let shared = fx.var("CUTOVER_LAB_STATE_URL").to_string();
    let local = fx.sandbox.state_dir().display().to_string();
    for state in [shared, local] {
        let mut runner = fx
            .background()
            .env("CUTOVER_STATE", &state)
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The run's id, as soon as it is journaled.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let run_id = loop {
            let (_, status) = run_json(
                fx.cutover()
                    .env("CUTOVER_STATE", &state)
                    .args(["status", "--output", "json"]),
            );
            if let Some(id) = status["runs"][0]["run_id"].as_str()
                && status["runs"][0]["status"] == "running"
            {
                break id.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "{status}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut follower = fx
            .background()
            .env("CUTOVER_STATE", &state)
            .args(["status", &run_id, "--follow", "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read the stream as it comes, noting when each line arrived.
        let started = std::time::Instant::now();
        let mut lines = Vec::new();
        let mut reader = std::io::BufReader::new(follower.stdout.take().unwrap());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0 {
            lines.push((
                started.elapsed(),
                serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            ));
            line.clear();
        }
        let ended = started.elapsed();
        assert!(
            follower.wait().unwrap().success(),
            "{state}: the follower ends with the run"
        );
        assert!(runner.wait().unwrap().success(), "{state}");
        let (_, status) = run_json(
            fx.cutover()
                .env("CUTOVER_STATE", &state)
                .args(["status", &run_id, "--output", "json"]),
        );
        let journal = status["journal"].as_array().unwrap();
        let streamed: Vec<&serde_json::Value> = lines.iter().map(|(_, event)| event).collect();
        assert_eq!(
            streamed,
            journal.iter().collect::<Vec<_>>(),
            "{state}: every event, in order"
        );
        // The last sleep's intent was printed a second or so before the end.
        let (last_intent_at, _) = lines
            .iter()
            .rfind(|(_, event)| event["kind"] == "intent")
            .unwrap();
        assert!(
            ended.saturating_sub(*last_intent_at) >= std::time::Duration::from_millis(600),
            "{state}: streamed while running (last intent at {last_intent_at:?}, end at {ended:?})"
        );
    }
}

/// A local history moved into the shared store: the same runs with the same
/// statuses, the same audit chain (it verifies there, entry for entry), and
/// a second migration into the now busy store is refused.
#[test]
fn lab_a_local_history_migrates_into_the_shared_store_and_its_audit_chain_still_verifies() {
    let fx = LabFixture::up_shared();
    let url = fx.var("CUTOVER_LAB_STATE_URL").to_string();
    let plan = switchover_plan(&fx, "local.yaml", SWITCHOVER_PHASE, &[]);
    // History on the local store: a switchover and its rollback.
    let (code, run) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (code, _) = run_json(
        fx.cutover()
            .args(["rollback", &run_id, "--yes", "--output", "json", "--plan"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0));
    let (_, local_runs) = run_json(fx.cutover().args(["status", "--output", "json"]));
    let (_, local_audit) = run_json(
        fx.cutover()
            .args(["audit", "log", "--limit", "1000", "--output", "json"]),
    );

    let local_dir = fx.sandbox.state_dir();
    let migrate = |target: &str| {
        let mut command = fx.cutover();
        command
            .args(["state", "migrate", "--output", "json", "--from"])
            .arg(&local_dir)
            .args(["--to", target]);
        run_json(&mut command)
    };
    let (code, copied) = migrate(&url);
    assert_eq!(code, Some(0), "{copied}");
    assert_eq!(copied["runs"], 1, "{copied}");
    let shared = |args: &[&str]| {
        let mut command = fx.cutover();
        command.env("CUTOVER_STATE", &url).args(args);
        run_json(&mut command)
    };
    let (_, shared_runs) = shared(&["status", "--output", "json"]);
    assert_eq!(shared_runs, local_runs, "the same runs, steps and statuses");
    let (_, shared_audit) = shared(&["audit", "log", "--limit", "1000", "--output", "json"]);
    assert_eq!(shared_audit, local_audit, "the same audit chain");
    let (code, verified) = shared(&["audit", "verify", "--output", "json"]);
    assert_eq!(code, Some(0), "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");
    // The journal carries on after the copied events.
    let (code, again) = shared(&["run", "--yes", "--output", "json", plan.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{again}");
    let (code, verified) = shared(&["audit", "verify", "--output", "json"]);
    assert_eq!(code, Some(0), "{verified}");

    let (code, refused) = migrate(&url);
    assert_eq!(code, Some(2), "{refused}");
    let (code, not_shared) = migrate(local_dir.to_str().unwrap());
    assert_eq!(code, Some(2), "{not_shared}");
}
