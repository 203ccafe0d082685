//! Snapshots on the real lab: loaded under a write load, replicating, and
//! matching; a target that is not empty is refused unless replaced.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Flavor, LabFixture, WriteLoad, cluster, repo_root, runtime, stdout_json};

pub(crate) fn migration_plan(fx: &LabFixture) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("plans/lab-migration.yaml"))
        .unwrap()
        .replace(
            "/tmp/cutover-postpone",
            &fx.sandbox.path().join("postpone").display().to_string(),
        );
    fx.sandbox.write("migration.yaml", text)
}

/// `cutover ARGS --output json PLAN`: its exit code and its report.
pub(crate) fn json_of(
    fx: &LabFixture,
    args: &[&str],
    plan: &Path,
) -> (Option<i32>, serde_json::Value) {
    let output = fx
        .cutover()
        .args(args)
        .args(["--output", "json"])
        .arg(plan)
        .output()
        .unwrap();
    if output.stdout.is_empty() {
        panic!(
            "{args:?}: no report: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (output.status.code(), stdout_json(&output))
}

#[test]
fn lab_snapshot_under_load_replicates_and_matches() {
    snapshot_under_load_replicates_and_matches(Flavor::MariaDb);
}

#[test]
fn lab_mysql_snapshot_under_load_replicates_and_matches() {
    snapshot_under_load_replicates_and_matches(Flavor::MySql);
}

fn snapshot_under_load_replicates_and_matches(flavor: Flavor) {
    let fx = LabFixture::up_empty_as(flavor, 20_000);
    let plan = migration_plan(&fx);
    // c6 refuses LOAD DATA LOCAL (as MySQL 8 does by default): it gets INSERTs.
    fx.admin_exec("127.0.0.16", &["SET GLOBAL local_infile = 0"]);
    let load = WriteLoad::start(&fx);
    std::thread::sleep(Duration::from_millis(300));
    let output = fx
        .cutover()
        .args(["run", "--yes", "--phase", "snapshot", "--output", "json"])
        .arg(&plan)
        .output()
        .unwrap();
    let run = stdout_json(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{run}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(run["status"], "completed");
    std::thread::sleep(Duration::from_millis(500));
    let written = load.stop();
    assert!(
        written > 20,
        "the load kept writing during the snapshot: {written}"
    );

    let (_, topology) = json_of(&fx, &["topology"], &plan);
    for name in ["c1", "c2", "c3", "c6"] {
        let view = cluster(&topology, name);
        assert_eq!(view["replicating_from"], "legacy", "{view}");
        assert_eq!(view["read_only"], true, "{view}");
        assert!(view["errant_gtids"].is_null(), "{view}");
    }
    // The checksum compares at one point, after everything written so far.
    let (code, report) = json_of(&fx, &["checksum"], &plan);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "match");
    let transactions = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "refunds.transactions")
        .unwrap();
    assert!(
        transactions["rows"].as_u64().unwrap() >= 20_000 + written,
        "rows written during the snapshot arrived through replication: {transactions}"
    );
    // Secondary indexes, the view and the function came along.
    let found = [
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'refunds' \
         AND INDEX_NAME = 'idx_created_at'",
        "SELECT CAST(refunds.to_paise(1.25) AS CHAR)",
        "SELECT CAST(COUNT(*) > 0 AS CHAR) FROM refunds.daily_refund_totals",
    ]
    .map(|sql| fx.admin_value("127.0.0.13", sql));
    assert_eq!(found, ["1", "125", "1"]);
}

#[test]
fn lab_snapshot_refuses_a_target_that_is_not_empty_unless_replaced() {
    let fx = LabFixture::up_empty(2_000);
    let plan = migration_plan(&fx);
    fx.admin_exec(
        "127.0.0.12",
        &[
            "CREATE DATABASE refunds",
            "CREATE TABLE refunds.transactions (id INT PRIMARY KEY)",
            "INSERT INTO refunds.transactions VALUES (1)",
        ],
    );
    // The dry run says so before the window.
    let (code, dry) = json_of(&fx, &["run", "--dry-run", "--phase", "snapshot"], &plan);
    assert_eq!(code, Some(3), "{dry}");
    let failed: Vec<&serde_json::Value> = dry["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["cluster"], "c2");
    assert_eq!(failed[0]["check"], "empty for the snapshot");

    let output = fx
        .cutover()
        .args(["snapshot", "--skip-binlog"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("target `c2` is not empty") && stderr.contains("--replace"),
        "{stderr}"
    );
    // Nothing was loaded anywhere.
    let (_, topology) = json_of(&fx, &["topology"], &plan);
    assert!(cluster(&topology, "c1")["replicating_from"].is_null());

    let (code, report) = json_of(
        &fx,
        &["snapshot", "--skip-binlog", "--replace", "--replicate"],
        &plan,
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "completed");
    assert_eq!(
        report["targets"],
        serde_json::json!(["c1", "c2", "c3", "c6"])
    );
    assert!(
        report["gtid_position"]
            .as_str()
            .unwrap()
            .starts_with("0-10-")
    );
    let (code, checksum) = json_of(&fx, &["checksum"], &plan);
    assert_eq!(code, Some(0), "{checksum}");
}

#[test]
fn lab_restore_checks_every_file_and_names_a_damaged_one() {
    restore_checks_every_file_and_names_a_damaged_one(Flavor::MariaDb);
}

#[test]
fn lab_mysql_restore_checks_every_file_and_names_a_damaged_one() {
    restore_checks_every_file_and_names_a_damaged_one(Flavor::MySql);
}

fn restore_checks_every_file_and_names_a_damaged_one(flavor: Flavor) {
    let fx = LabFixture::up_empty_as(flavor, 5_000);
    let plan = migration_plan(&fx);
    let directory = fx.sandbox.path().join("snapshot");
    let (code, report) = json_of(
        &fx,
        &[
            "snapshot",
            "--targets",
            "c1",
            "--skip-binlog",
            "--replicate",
            "--directory",
            directory.to_str().unwrap(),
        ],
        &plan,
    );
    assert_eq!(code, Some(0), "{report}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(directory.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["gtid_position"], report["gtid_position"]);
    let files = manifest["files"].as_array().unwrap();
    assert!(files.len() >= 4, "{manifest}");

    // A damaged copy is refused before anything is loaded, naming the file.
    let damaged = fx.sandbox.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for entry in std::fs::read_dir(&directory).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
    }
    let victim = files[files.len() / 2]["file"].as_str().unwrap();
    let mut bytes = std::fs::read(damaged.join(victim)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(damaged.join(victim), bytes).unwrap();
    let output = fx
        .cutover()
        .args(["restore"])
        .arg(&damaged)
        .arg(&plan)
        .args(["--targets", "c2", "--skip-binlog"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(victim) && stderr.contains("sha256"),
        "{stderr}"
    );
    let (_, topology) = json_of(&fx, &["topology"], &plan);
    assert!(cluster(&topology, "c2")["replicating_from"].is_null());

    // The intact copy restores (LOAD DATA, and INSERTs made from the same rows
    // for c6, which refuses it), replicates from its position and matches.
    fx.admin_exec("127.0.0.16", &["SET GLOBAL local_infile = 0"]);
    let output = fx
        .cutover()
        .args(["restore", "--output", "json"])
        .arg(&directory)
        .arg(&plan)
        .args([
            "--targets",
            "c2",
            "c3",
            "c6",
            "--skip-binlog",
            "--replicate",
        ])
        .output()
        .unwrap();
    let restored = stdout_json(&output);
    assert_eq!(output.status.code(), Some(0), "{restored}");
    assert_eq!(restored["rows"], report["rows"]);
    let (code, checksum) = json_of(&fx, &["checksum"], &plan);
    assert_eq!(code, Some(0), "{checksum}");
    for name in ["c1", "c2", "c3", "c6"] {
        let view = checksum["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cluster"] == name)
            .unwrap();
        assert_eq!(view["basis"], "consistent", "{view}");
    }
}

/// The running snapshot's id and the targets that journaled loaded chunks of
/// `table`, read from its state store.
fn journaled_targets(fx: &LabFixture, table: &str) -> Option<(String, usize)> {
    runtime().block_on(async {
        let store = cutover::store::Store::open(&fx.sandbox.state_dir())
            .await
            .ok()?;
        let run = store.runs(1).await.ok()?.into_iter().next()?;
        let step = format!("snapshot/{}", run.phases[0].steps[0].name);
        let progress = store.snapshot_progress(&run.run_id, &step).await.ok()?;
        store.close().await;
        let targets = progress
            .iter()
            .filter(|p| p.table == table && p.loaded != "prepared")
            .count();
        Some((run.run_id, targets))
    })
}

fn count_on(fx: &LabFixture, ip: &str, sql: &str) -> u64 {
    let endpoint = fx.admin_endpoint(ip);
    let sql = sql.to_string();
    runtime().block_on(async move {
        let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
        let count: Option<u64> = session.query_first("count", &sql).await.unwrap();
        session.close().await;
        count.unwrap()
    })
}

/// Rows in every table of `refunds` on one server.
fn rows_in_refunds(fx: &LabFixture, ip: &str) -> u64 {
    let endpoint = fx.admin_endpoint(ip);
    runtime().block_on(async move {
        let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
        let tables: Vec<String> = session
            .query(
                "list tables",
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = 'refunds' AND TABLE_TYPE = 'BASE TABLE'",
            )
            .await
            .unwrap();
        let mut rows = 0;
        for table in tables {
            let count: Option<u64> = session
                .query_first("count", &format!("SELECT COUNT(*) FROM refunds.`{table}`"))
                .await
                .unwrap();
            rows += count.unwrap();
        }
        session.close().await;
        rows
    })
}

#[test]
fn lab_snapshot_killed_midway_resumes_per_chunk_and_target() {
    let fx = LabFixture::up_empty(100_000);
    let plan = migration_plan(&fx);
    let load = WriteLoad::start(&fx);
    let mut child = fx
        .background()
        .args(["run", "--yes", "--phase", "snapshot", "-q"])
        .arg(&plan)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(fx.sandbox.path().join("run.log")).unwrap())
        .spawn()
        .unwrap();
    // SIGKILL once every target journaled chunks of the first table, well before the end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        assert!(Instant::now() < deadline, "the snapshot journaled nothing");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the snapshot ended ({status}) before it could be killed:\n{}",
                std::fs::read_to_string(fx.sandbox.path().join("run.log")).unwrap_or_default()
            );
        }
        if let Some((run_id, targets)) = journaled_targets(&fx, "refunds.ledger_entries")
            && targets == 4
        {
            child.kill().unwrap();
            child.wait().unwrap();
            break run_id;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let partial = rows_in_refunds(&fx, "127.0.0.11");
    let source_rows = rows_in_refunds(&fx, "127.0.0.10");
    assert!(
        partial > 0 && partial < source_rows,
        "killed midway: c1 has {partial} of {source_rows} rows"
    );
    // Rows the first attempt copied change before the resume: their chunk
    // must be reloaded on every target.
    fx.admin_exec(
        "127.0.0.10",
        &[
            "UPDATE refunds.ledger_entries SET memo = 'changed after the kill' WHERE id = 1",
            "DELETE FROM refunds.ledger_entries WHERE id = 2",
        ],
    );

    let output = fx
        .cutover()
        .args(["resume", &run_id, "--yes", "--output", "json"])
        .output()
        .unwrap();
    let resumed = stdout_json(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{resumed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(resumed["status"], "completed");
    std::thread::sleep(Duration::from_millis(300));
    let written = load.stop();
    assert!(written > 20, "the load ran throughout: {written}");

    let record = stdout_json(
        &fx.cutover()
            .args(["status", &run_id, "--output", "json"])
            .output()
            .unwrap(),
    );
    let snapshot = &record["phases"][0]["steps"][0];
    assert_eq!(snapshot["status"], "completed", "{snapshot}");
    let counts = &snapshot["positions"]["resumed"];
    eprintln!(
        "killed with {partial} of {source_rows} rows on c1; the resume took {} ms: {counts}",
        resumed["elapsed_ms"]
    );
    let kept = counts["chunks_kept"].as_u64().unwrap();
    let reloaded = counts["chunks_reloaded"].as_u64().unwrap();
    assert!(
        reloaded >= 4,
        "the changed chunk was reloaded on every target: {counts}"
    );
    assert!(
        kept > reloaded,
        "journaled chunks that still matched were kept: {counts}"
    );

    fx.wait_replicated();
    let (_, topology) = json_of(&fx, &["topology"], &plan);
    for name in ["c1", "c2", "c3", "c6"] {
        let view = cluster(&topology, name);
        assert_eq!(view["replicating_from"], "legacy", "{view}");
        assert!(view["errant_gtids"].is_null(), "{view}");
    }
    let (code, report) = json_of(&fx, &["checksum"], &plan);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "match");
    // No row twice: every table, the keyless one included, has the source's count.
    for table in report["tables"].as_array().unwrap() {
        let name = table["table"].as_str().unwrap();
        let source = count_on(&fx, "127.0.0.10", &format!("SELECT COUNT(*) FROM {name}"));
        for ip in ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.16"] {
            assert_eq!(
                count_on(&fx, ip, &format!("SELECT COUNT(*) FROM {name}")),
                source,
                "{name} on {ip}"
            );
        }
    }
}
