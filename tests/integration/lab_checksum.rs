//! Checksums on the real lab: a match under load, exactly the planted
//! differences, no false mismatches, and a cluster lost in the middle.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Flavor, LabFixture, WriteLoad, cluster, stdout_json};

fn switchover_plan(fx: &LabFixture) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(crate::harness::repo_root().join("plans/lab-switchover.yaml"))
            .unwrap()
            .replace(
                "/tmp/cutover-postpone",
                &fx.sandbox.path().join("postpone").display().to_string(),
            );
    fx.sandbox.write("switchover.yaml", text)
}

fn checksum(fx: &LabFixture, plan: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let output = fx
        .cutover()
        .args(["checksum", "--output", "json"])
        .arg(plan)
        .args(extra)
        .output()
        .unwrap();
    if output.stdout.is_empty() {
        panic!("no report: {}", String::from_utf8_lossy(&output.stderr));
    }
    (output.status.code(), stdout_json(&output))
}

fn table<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {report}"))
}

fn all_mismatches(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["mismatches"].as_array().unwrap().iter().map(move |m| {
                let mut m = m.clone();
                m["table"] = t["table"].clone();
                m
            })
        })
        .collect()
}

fn assert_replicating(fx: &LabFixture, plan: &Path) {
    let output = fx
        .cutover()
        .args(["topology", "--output", "json"])
        .arg(plan)
        .output()
        .unwrap();
    let topology = stdout_json(&output);
    for name in ["c1", "c2", "c3", "c6"] {
        let view = cluster(&topology, name);
        assert_eq!(view["replicating_from"], "legacy", "{view}");
        assert_eq!(view["replication"]["io_thread"], "running", "{view}");
        assert_eq!(view["replication"]["sql_thread"], "running", "{view}");
    }
}

#[test]
fn lab_checksum_finds_exactly_the_rows_that_differ() {
    finds_exactly_the_rows_that_differ(Flavor::MariaDb);
}

#[test]
fn lab_mysql_checksum_finds_exactly_the_rows_that_differ() {
    finds_exactly_the_rows_that_differ(Flavor::MySql);
}

fn finds_exactly_the_rows_that_differ(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = switchover_plan(&fx);
    // Replicated: a row with a NULL remark, a float sum, a JSON document.
    fx.admin_exec(
        "127.0.0.10",
        &[
            "UPDATE refunds.transactions SET remarks = NULL WHERE id = 1900",
            // Double arithmetic (`0.1 + 0.2` would be exact DECIMAL arithmetic).
            "UPDATE refunds.transactions SET fx_rate = 0.1e0 + 0.2e0 WHERE id = 1801",
            r#"UPDATE refunds.transactions SET metadata = '{"a":1,"b":[1,2],"note":"रिफंड ✓"}' WHERE id = 1800"#,
        ],
    );
    fx.wait_replicated();
    // On c1 only: the same values written differently, which must still match.
    fx.plant(
        "127.0.0.11",
        &[
            "UPDATE refunds.transactions SET fx_rate = 0.3, updated_at = updated_at WHERE id = 1801",
            r#"UPDATE refunds.transactions SET metadata = '{"note": "रिफंड ✓", "b": [1, 2], "a": 1}', updated_at = updated_at WHERE id = 1800"#,
        ],
    );

    // 1. Writes flowing on legacy: everything matches at one point.
    let load = WriteLoad::start(&fx);
    std::thread::sleep(Duration::from_millis(500));
    let (code, report) = checksum(&fx, &plan, &["--tables", "refunds.*"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "match");
    for name in ["c1", "c2", "c3", "c6"] {
        let view = cluster_result(&report, name);
        assert_eq!(view["status"], "match", "{view}");
        assert_eq!(view["basis"], "consistent", "{view}");
    }
    assert!(
        flavor.is_position(report["position"].as_str().unwrap()),
        "{report}"
    );
    assert!(report["source_lock_ms"].as_u64().unwrap() < 500, "{report}");
    let tables: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert!(
        !tables.iter().any(|t| t.starts_with("cutover")),
        "{tables:?}"
    );
    let participants = table(&report, "refunds.txn_participants");
    assert_eq!(
        participants["key"],
        serde_json::json!(["txn_id", "participant_seq"])
    );
    let audit = table(&report, "refunds.refund_audit_trail");
    assert_eq!(audit["key"], serde_json::json!([]));
    assert_eq!(audit["status"], "match");
    assert!(audit["warning"].as_str().unwrap().contains("no usable key"));
    assert!(report["rows_compared"].as_u64().unwrap() > 2000 * 6);
    assert_replicating(&fx, &plan);
    // At 17 significant digits 0.30000000000000004 and 0.3 do differ.
    let (code, exact) = checksum(
        &fx,
        &plan,
        &[
            "--tables",
            "refunds.transactions",
            "--targets",
            "c1",
            "--float-precision",
            "17",
        ],
    );
    assert_eq!(code, Some(4), "{exact}");
    let found = all_mismatches(&exact);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["key"], serde_json::json!({"id": 1801}));
    assert_eq!(found[0]["columns"], serde_json::json!(["fx_rate"]));

    // 2. Three planted differences, writes still flowing.
    fx.plant(
        "127.0.0.13",
        &[
            "UPDATE refunds.transactions SET amount = amount + 0.01, updated_at = updated_at WHERE id = 1500",
        ],
    );
    fx.plant(
        "127.0.0.16",
        &["DELETE FROM refunds.txn_participants WHERE txn_id = 1700 AND participant_seq = 1"],
    );
    fx.plant(
        "127.0.0.12",
        &[
            "INSERT INTO refunds.ledger_entries (id, txn_id, debit, credit, memo, entry_hash, posted_at) \
             VALUES (999999, 1, 5.0000, NULL, 'stray', X'5354524159000000000000000000ABCD', '2026-01-01 00:00:00')",
        ],
    );
    let (code, report) = checksum(&fx, &plan, &["--tables", "refunds.*"]);
    assert_eq!(code, Some(4), "{report}");
    assert_eq!(report["status"], "mismatch");
    let mut found = all_mismatches(&report);
    found.sort_by_key(|m| m["cluster"].as_str().unwrap().to_string());
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(found[0]["cluster"], "c2");
    assert_eq!(found[0]["table"], "refunds.ledger_entries");
    assert_eq!(found[0]["kind"], "extra");
    assert_eq!(found[0]["key"], serde_json::json!({"id": 999999}));
    assert_eq!(found[1]["cluster"], "c3");
    assert_eq!(found[1]["table"], "refunds.transactions");
    assert_eq!(found[1]["kind"], "different");
    assert_eq!(found[1]["key"], serde_json::json!({"id": 1500}));
    assert_eq!(found[1]["columns"], serde_json::json!(["amount"]));
    assert_eq!(found[2]["cluster"], "c6");
    assert_eq!(found[2]["table"], "refunds.txn_participants");
    assert_eq!(found[2]["kind"], "missing");
    assert_eq!(
        found[2]["key"],
        serde_json::json!({"txn_id": 1700, "participant_seq": 1})
    );
    assert_eq!(cluster_result(&report, "c1")["status"], "match");
    let amount = reconciliation(&report, "refunds.transactions", "amount", "c3");
    assert_eq!(amount["difference"], "0.01", "{amount}");
    assert_eq!(amount["matches"], false);
    for name in ["c1", "c2", "c6"] {
        let line = reconciliation(&report, "refunds.transactions", "amount", name);
        assert_eq!(line["difference"], "0.00", "{line}");
    }
    let ledger = reconciliation(&report, "refunds.ledger_entries", "debit", "c2");
    assert_eq!(ledger["difference"], "5.0000", "{ledger}");
    let written = load.stop();
    assert!(written > 50, "the load kept writing: {written}");
    assert_replicating(&fx, &plan);

    // 3. NULL and '' are told apart.
    fx.plant(
        "127.0.0.12",
        &["UPDATE refunds.transactions SET remarks = '', updated_at = updated_at WHERE id = 1900"],
    );
    let (code, report) = checksum(
        &fx,
        &plan,
        &["--tables", "refunds.transactions", "--targets", "c2"],
    );
    assert_eq!(code, Some(4), "{report}");
    let found = all_mismatches(&report);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["key"], serde_json::json!({"id": 1900}));
    assert_eq!(found[0]["columns"], serde_json::json!(["remarks"]));

    // Inside a write freeze: every cluster is at the frozen position, the
    // differences stop the phase, the freeze is released, exit 4.
    let text = std::fs::read_to_string(&plan).unwrap();
    let frozen = fx.sandbox.write(
        "frozen.yaml",
        format!(
            "{}\nphases:\n  - name: frozen-check\n    rollback: auto\n    steps:\n      \
             - freeze: {{}}\n      - catch_up: {{}}\n      - checksum: {{ tables: [\"refunds.*\"] }}\n      \
             - unfreeze: {{}}\n",
            &text[..text.find("\nphases:").unwrap()]
        ),
    );
    let output = fx
        .cutover()
        .args(["run", "--yes", "--output", "json"])
        .arg(&frozen)
        .output()
        .unwrap();
    let run = stdout_json(&output);
    assert_eq!(output.status.code(), Some(4), "{run}");
    assert_eq!(run["status"], "rolled_back", "{run}");
    assert_eq!(run["data_mismatch"], true, "{run}");
    assert!(
        run["detail"]
            .as_str()
            .unwrap()
            .contains("refunds.transactions c2 {\"id\":1900}"),
        "{run}"
    );
    let topology = stdout_json(
        &fx.cutover()
            .args(["topology", "--output", "json"])
            .arg(&plan)
            .output()
            .unwrap(),
    );
    assert_eq!(cluster(&topology, "legacy")["read_only"], false);
    // The global read lock is gone too (it would block even this admin write).
    fx.admin_exec(
        "127.0.0.10",
        &["UPDATE refunds.transactions SET remarks = remarks WHERE id = 1"],
    );

    // The human report names the same rows.
    let output = fx
        .cutover()
        .arg("checksum")
        .arg(&plan)
        .args(["--tables", "refunds.transactions", "--targets", "c2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("id=1900") && text.contains("remarks"),
        "{text}"
    );
}

fn cluster_result<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"] == name)
        .unwrap_or_else(|| panic!("no cluster {name} in {report}"))
}

fn reconciliation<'a>(
    report: &'a serde_json::Value,
    table: &str,
    column: &str,
    cluster: &str,
) -> &'a serde_json::Value {
    report["reconciliation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == table && r["column"] == column && r["cluster"] == cluster)
        .unwrap_or_else(|| panic!("no {table}.{column} on {cluster} in {report}"))
}

#[test]
fn lab_checksum_reports_a_cluster_lost_midway_and_still_compares_the_others() {
    let fx = LabFixture::up_with_rows(30_000);
    let plan = switchover_plan(&fx);
    let mut child = fx
        .background()
        .args([
            "checksum",
            "--output",
            "json",
            "--workers",
            "1",
            "--chunk-time",
            "10ms",
        ])
        .arg(&plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the consistent point, then stop c2 abruptly.
    let stderr = child.stderr.take().unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no consistent point: {log:#?}"));
        let done = line.contains("consistent point taken");
        log.push(line);
        if done {
            break;
        }
    }
    // The comparison of 180,000 rows takes about 400 ms after the point here:
    // a kill 50 ms in lands while it runs (300 ms raced it to the end).
    std::thread::sleep(Duration::from_millis(50));
    let pid_file = fx.lab_dir().join("c2/lab.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = stdout_json(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert_eq!(report["status"], "incomplete", "{report}");
    let c2 = cluster_result(&report, "c2");
    assert_eq!(c2["status"], "error", "{c2}");
    assert!(c2["error"].as_str().unwrap().contains("`c2`"), "{c2}");
    for name in ["c1", "c3", "c6"] {
        let view = cluster_result(&report, name);
        assert_eq!(view["status"], "match", "{view}");
        assert!(view["error"].is_null(), "{view}");
        assert_eq!(
            view["rows"],
            cluster_result(&report, "legacy")["rows"],
            "the others compared every row: {report}"
        );
    }
    assert!(all_mismatches(&report).is_empty(), "{report}");
}
