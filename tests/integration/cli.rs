//! The command-line contract: plan check, plan schema, status, help, exit codes.

use predicates::str::contains;

use crate::harness::{Sandbox, stdout_json, strings};

#[test]
fn lab_plans_are_valid() {
    let sandbox = Sandbox::new();
    for plan in [
        "plans/lab-switchover.yaml",
        "plans/lab-migration.yaml",
        "plans/docker-migration.yaml",
    ] {
        let output = sandbox
            .cutover()
            .args(["plan", "check", plan])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{plan}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json = sandbox
            .cutover()
            .args(["plan", "check", plan, "--output", "json"])
            .output()
            .unwrap();
        let document = stdout_json(&json);
        assert_eq!(document["valid"], true);
        assert_eq!(document["errors"], serde_json::json!([]));
    }
}

#[test]
fn plan_check_renders_the_expanded_switchover() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .cutover()
        .args(["plan", "check", "plans/lab-switchover.yaml"])
        .output()
        .unwrap();
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stdout));
}

#[test]
fn plan_check_renders_errors_with_snippets() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .cutover()
        .args([
            "plan",
            "check",
            "tests/plans/broken/04-unknown-cluster.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stderr));
}

#[test]
fn plan_schema_is_a_json_schema_of_the_format() {
    let sandbox = Sandbox::new();
    let output = sandbox.cutover().args(["plan", "schema"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let schema = stdout_json(&output);
    assert!(
        schema["$schema"]
            .as_str()
            .unwrap()
            .contains("json-schema.org")
    );
    for field in ["name", "clusters", "dns", "gates", "drill", "phases"] {
        assert!(schema["properties"][field].is_object(), "property {field}");
    }
    // A plan that only drills has no phases; validation asks for one otherwise.
    assert_eq!(strings(&schema["required"]), ["name", "clusters"]);
    let text = serde_json::to_string(&schema).unwrap();
    for kind in [
        "switchover",
        "wait_lag",
        "dns_switch",
        "reverse_replication",
        "catch_up",
    ] {
        assert!(text.contains(&format!("\"{kind}\"")), "step kind {kind}");
    }
    // Literal secrets are not part of the format.
    assert!(
        !text.contains("\"password\":"),
        "password must not be a schema property"
    );
}

#[test]
fn status_on_an_empty_store() {
    let sandbox = Sandbox::new();
    sandbox
        .cutover()
        .arg("status")
        .assert()
        .code(0)
        .stdout(contains("no runs recorded"));
    let json = sandbox
        .cutover()
        .args(["status", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(stdout_json(&json), serde_json::json!({ "runs": [] }));
}

#[test]
fn status_lists_recorded_runs_and_their_steps() {
    let sandbox = Sandbox::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run_id = runtime.block_on(async {
        let store = cutover::store::Store::open(&sandbox.state_dir())
            .await
            .unwrap();
        let plan =
            cutover::plan::load(&crate::harness::repo_root().join("plans/lab-switchover.yaml"))
                .unwrap();
        let run = store.create_run(&plan, true).await.unwrap();
        store
            .set_step_status(
                &run.run_id,
                0,
                0,
                &cutover::store::StepUpdate {
                    status: cutover::store::StepStatus::Completed,
                    elapsed_ms: Some(42),
                    positions: Some(serde_json::json!({"gtid": "0-10-47"})),
                    detail: None,
                },
            )
            .await
            .unwrap();
        store
            .finish_run(&run.run_id, cutover::store::RunStatus::Completed, None)
            .await
            .unwrap();
        store.close().await;
        run.run_id
    });
    let list = sandbox
        .cutover()
        .args(["status", "--output", "json"])
        .output()
        .unwrap();
    let document = stdout_json(&list);
    assert_eq!(document["runs"][0]["run_id"], run_id.as_str());
    assert_eq!(document["runs"][0]["status"], "completed");
    assert_eq!(document["runs"][0]["dry_run"], true);

    let one = sandbox
        .cutover()
        .args(["status", &run_id, "--output", "json"])
        .output()
        .unwrap();
    let run = stdout_json(&one);
    let first = &run["phases"][0]["steps"][0];
    assert_eq!(first["name"], "lag-under-gate");
    assert_eq!(first["kind"], "wait_lag");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["elapsed_ms"], 42);
    assert_eq!(first["positions"]["gtid"], "0-10-47");
    assert_eq!(run["phases"][1]["steps"][1]["name"], "switchover-c1.freeze");
    assert_eq!(run["phases"][1]["steps"][1]["status"], "pending");

    let human = sandbox
        .cutover()
        .args(["status", &run_id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("lag-under-gate") && text.contains("42 ms"),
        "{text}"
    );

    sandbox
        .cutover()
        .args(["status", "no-such-run"])
        .assert()
        .code(2)
        .stderr(contains("no run with id `no-such-run`"));
}

#[test]
fn help_documents_commands_examples_and_exit_codes() {
    let sandbox = Sandbox::new();
    let output = sandbox.cutover().arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "plan",
        "status",
        "lab",
        "audit",
        "Examples:",
        "Exit codes:",
        "4  a data mismatch",
    ] {
        assert!(help.contains(needle), "help mentions {needle}:\n{help}");
    }
    sandbox
        .cutover()
        .args(["lab", "up", "--help"])
        .assert()
        .code(0)
        .stdout(contains("--replicating"));
}

#[test]
fn bad_command_line_use_exits_2() {
    let sandbox = Sandbox::new();
    sandbox.cutover().arg("no-such-command").assert().code(2);
    sandbox.cutover().args(["plan", "check"]).assert().code(2);
    sandbox
        .cutover()
        .args(["status", "--output", "yaml"])
        .assert()
        .code(2);
}

#[test]
fn json_errors_are_one_document_on_stdout() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .cutover()
        .args(["status", "missing-run", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let document = stdout_json(&output);
    assert_eq!(document["exit_code"], 2);
    assert!(document["error"].as_str().unwrap().contains("missing-run"));
}

#[test]
fn audit_verify_on_a_fresh_store_is_intact() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .cutover()
        .args(["audit", "verify", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let document = stdout_json(&output);
    assert_eq!(document["intact"], true);
    assert_eq!(document["entries"], 0);
}

#[test]
fn completions_are_generated() {
    let sandbox = Sandbox::new();
    sandbox
        .cutover()
        .args(["completions", "bash"])
        .assert()
        .code(0)
        .stdout(contains("cutover"));
}

#[test]
fn lab_env_before_up_says_what_to_do() {
    let sandbox = Sandbox::new();
    sandbox
        .cutover()
        .args(["lab", "env"])
        .assert()
        .code(2)
        .stderr(contains("run `cutover lab up` first"));
}

#[test]
fn the_committed_runbook_is_what_the_plan_renders() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .cutover()
        .args(["runbook", "plans/lab-switchover.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let rendered = String::from_utf8(output.stdout).unwrap();
    let committed =
        std::fs::read_to_string(crate::harness::repo_root().join("runbooks/lab-switchover.md"))
            .unwrap();
    assert_eq!(
        rendered, committed,
        "regenerate with: cutover runbook plans/lab-switchover.yaml > runbooks/lab-switchover.md"
    );
    for kind in [
        "freeze",
        "catch_up",
        "promote",
        "dns_switch",
        "unfreeze",
        "reverse_replication",
        "repoint",
    ] {
        assert!(
            rendered.contains(&format!("({kind})")),
            "{kind} in the runbook"
        );
    }
    assert!(rendered.contains("FLUSH TABLES WITH READ LOCK"));
    assert!(rendered.contains("prereq yxrrset"));
}

/// Lease settings that leave no room for a missed renewal are refused with
/// exit 2 before anything else happens.
#[test]
fn lease_settings_that_cannot_work_are_refused() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .cutover()
        .env("CUTOVER_LEASE_TTL", "10s")
        .env("CUTOVER_LEASE_RENEW", "8s")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("renew at most every half TTL"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}
