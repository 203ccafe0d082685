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
