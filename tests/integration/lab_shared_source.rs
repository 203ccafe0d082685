//! A source that holds other databases besides the plan's: only the plan's
//! travel. Writes into another database during the snapshot phase never reach
//! a target (a partner bank's cluster must not receive another business's
//! data), and replication keeps running there.

use std::time::Duration;

use crate::harness::{Flavor, LabFixture, WriteLoad, cluster, stdout_json};
use crate::lab_snapshot::migration_plan;

const TARGETS: [(&str, &str); 4] = [
    ("c1", "127.0.0.11"),
    ("c2", "127.0.0.12"),
    ("c3", "127.0.0.13"),
    ("c6", "127.0.0.16"),
];

#[test]
fn lab_only_the_plans_databases_replicate_from_a_shared_source() {
    only_the_plans_databases_replicate_from_a_shared_source(Flavor::MariaDb);
}

#[test]
fn lab_mysql_only_the_plans_databases_replicate_from_a_shared_source() {
    only_the_plans_databases_replicate_from_a_shared_source(Flavor::MySql);
}

fn only_the_plans_databases_replicate_from_a_shared_source(flavor: Flavor) {
    let fx = LabFixture::up_empty_as(flavor, 5_000);
    let plan = migration_plan(&fx);
    fx.admin_exec(
        "127.0.0.10",
        &[
            "CREATE DATABASE bars",
            "CREATE TABLE bars.w (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40) NOT NULL)",
            "INSERT INTO bars.w (v) VALUES ('before the snapshot')",
        ],
    );
    let refunds = WriteLoad::start(&fx);
    let bars = WriteLoad::of(&fx, |n| {
        format!(
            "INSERT INTO bars.w (v) VALUES ('w{n}'); UPDATE bars.w SET v = CONCAT('u', {n}) WHERE id = 1"
        )
    });
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
    std::thread::sleep(Duration::from_millis(500));
    let (into_refunds, into_bars) = (refunds.stop(), bars.stop());
    assert!(
        into_refunds > 20 && into_bars > 20,
        "{into_refunds} {into_bars}"
    );
    fx.wait_replicated();

    let output = fx
        .cutover()
        .args(["topology", "--output", "json"])
        .arg(&plan)
        .output()
        .unwrap();
    let topology = stdout_json(&output);
    for (name, ip) in TARGETS {
        let view = cluster(&topology, name);
        assert_eq!(view["replicating_from"], "legacy", "{view}");
        assert_eq!(view["replication"]["io_thread"], "running", "{view}");
        assert_eq!(view["replication"]["sql_thread"], "running", "{view}");
        assert!(
            view["errant_gtids"].is_null(),
            "filtered transactions are not errant: {view}"
        );
        let bars_there = fx.admin_value(
            ip,
            "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'bars'",
        );
        assert_eq!(bars_there, "0", "{name} never received bars");
    }
    // The dry run of the cutover shows each target's filter against the plan's.
    let output = fx
        .cutover()
        .args(["run", "--dry-run", "--phase", "cutover", "--output", "json"])
        .arg(&plan)
        .output()
        .unwrap();
    let dry = stdout_json(&output);
    for (name, _) in TARGETS {
        let filter = dry["prechecks"]
            .as_array()
            .unwrap_or_else(|| panic!("{dry}"))
            .iter()
            .find(|c| c["cluster"] == name && c["check"] == "replication filter")
            .unwrap_or_else(|| panic!("a replication filter check on {name}: {dry}"));
        assert_eq!(filter["status"], "pass", "{filter}");
        assert!(
            filter["detail"].as_str().unwrap().contains("refunds.%"),
            "{filter}"
        );
    }
    let output = fx
        .cutover()
        .args(["checksum", "--stats", "--output", "json"])
        .arg(&plan)
        .output()
        .unwrap();
    let report = stdout_json(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["status"], "match", "{report}");
    // Where the time went: every cluster's first pass, over every row compared.
    let stats = &report["stats"];
    assert_eq!(stats["rows"], report["rows_compared"], "{stats}");
    assert!(stats["chunks"].as_u64().unwrap() >= 3, "{stats}");
    let measured: Vec<&str> = stats["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["first_pass_ns_per_row"].as_u64().unwrap() > 0, "{c}");
            c["cluster"].as_str().unwrap()
        })
        .collect();
    assert_eq!(measured, ["legacy", "c1", "c2", "c3", "c6"], "{stats}");
    let transactions = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "refunds.transactions")
        .unwrap();
    assert!(
        transactions["rows"].as_u64().unwrap() >= 5_000 + into_refunds,
        "refunds' writes arrived: {transactions}"
    );
}
