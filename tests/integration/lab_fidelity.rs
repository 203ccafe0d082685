//! Snapshot fidelity on a schema written to be hard (`tests/zoo`): every
//! column type at its edges, partitioning of every kind, generated and
//! invisible columns, foreign keys that cascade, reference their own table and
//! form a cycle, every index kind, MariaDB's sequences and system-versioned
//! tables, routines, ordered triggers, views over views, events, definers and
//! SQL SECURITY. The oracle is exact: every value as hex (or a FLOAT/DOUBLE as
//! the DOUBLE it is), every object through `SHOW CREATE`.
//!
//! One run per flavor: `snapshot --directory` into c1 and `restore` into c2,
//! c3 and c6, both replicating; compared; more writes through replication;
//! compared again; `checksum` matches, then finds one flipped bit in each type.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::harness::{Flavor, LabFixture, repo_root, runtime};
use crate::lab_fidelity_changes::one_flipped_bit_per_type_is_found;
use crate::lab_snapshot::{json_of, migration_plan};

const LEGACY: &str = "127.0.0.10";
const TARGETS: [(&str, &str); 4] = [
    ("c1", "127.0.0.11"),
    ("c2", "127.0.0.12"),
    ("c3", "127.0.0.13"),
    ("c6", "127.0.0.16"),
];
const ALL: [&str; 5] = [
    "127.0.0.10",
    "127.0.0.11",
    "127.0.0.12",
    "127.0.0.13",
    "127.0.0.16",
];

/// A script's statements, honouring the client's `DELIMITER` lines.
fn statements(script: &str) -> Vec<String> {
    let mut delimiter = ";".to_string();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if let Some(new) = trimmed.strip_prefix("DELIMITER ") {
            delimiter = new.trim().to_string();
            continue;
        }
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with("--")) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(delimiter.as_str()) {
            let end = current.rfind(delimiter.as_str()).unwrap();
            out.push(current[..end].trim().to_string());
            current.clear();
        }
    }
    assert!(current.trim().is_empty(), "unterminated: {current}");
    out
}

/// Run a script from `tests/zoo` on one server as the lab's admin.
fn run_script(fx: &LabFixture, ip: &str, file: &str) {
    let text = std::fs::read_to_string(repo_root().join("tests/zoo").join(file)).unwrap();
    let endpoint = fx.admin_endpoint(ip);
    runtime().block_on(async {
        let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
        for sql in statements(&text) {
            session
                .exec("zoo statement", &sql)
                .await
                .unwrap_or_else(|e| panic!("{file}: {sql}: {e}"));
        }
        session.close().await;
    });
}

fn cells(row: mysql_async::Row) -> Vec<String> {
    row.unwrap()
        .into_iter()
        .map(|value| match value {
            mysql_async::Value::NULL => "NULL".to_string(),
            mysql_async::Value::Bytes(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            other => other.as_sql(true),
        })
        .collect()
}

/// The exact text of one column's value: hex for anything with bytes, the
/// DOUBLE for FLOAT and DOUBLE (printed to the last bit), plain text for
/// integers, decimals and times.
fn exact(column: &str, data_type: &str) -> String {
    let c = format!("`{}`", column.replace('`', "``"));
    match data_type {
        "float" | "double" | "real" => format!("CAST(CAST({c} AS DOUBLE) AS CHAR)"),
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "decimal" | "year" | "date"
        | "datetime" | "timestamp" | "time" => format!("CAST({c} AS CHAR)"),
        _ => format!("HEX({c})"),
    }
}

/// Everything `zoo` holds on one server, keyed by what it is: each table's
/// rows (sorted) and definition, each object's `SHOW CREATE`, each sequence's
/// state. Events are read with their status, which the caller compares.
fn zoo_state(fx: &LabFixture, ip: &str) -> BTreeMap<String, String> {
    let endpoint = fx.admin_endpoint(ip);
    runtime().block_on(async {
        let mut s = cutover::mysql::Session::connect(&endpoint).await.unwrap();
        s.exec("oracle session", "SET SESSION time_zone = '+00:00'")
            .await
            .unwrap();
        let mut state = BTreeMap::new();
        let first = |rows: Vec<mysql_async::Row>| -> Vec<String> {
            rows.into_iter().next().map(cells).unwrap_or_default()
        };
        let show = "SHOW CREATE DATABASE zoo";
        state.insert(
            "database".into(),
            first(s.query(show, show).await.unwrap()).join("\n"),
        );
        let tables: Vec<(String, String)> = s
            .query(
                "tables",
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = 'zoo' ORDER BY TABLE_NAME",
            )
            .await
            .unwrap();
        for (table, kind) in tables {
            let quoted = format!("zoo.`{}`", table.replace('`', "``"));
            let sql = match kind.as_str() {
                "VIEW" => format!("SHOW CREATE VIEW {quoted}"),
                _ => format!("SHOW CREATE TABLE {quoted}"),
            };
            state.insert(
                format!("{kind} {table}"),
                first(s.query("show", &sql).await.unwrap()).join("\n"),
            );
            if kind == "VIEW" {
                continue;
            }
            let columns: Vec<(String, String)> = s
                .query(
                    "columns",
                    &format!(
                        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
                         WHERE TABLE_SCHEMA = 'zoo' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
                    ),
                )
                .await
                .unwrap();
            let mut parts: Vec<String> = columns
                .iter()
                .map(|(name, data_type)| {
                    format!("IFNULL({}, 'NULL')", exact(name, &data_type.to_lowercase()))
                })
                .collect();
            let mut from = quoted.clone();
            if kind == "SYSTEM VERSIONED" {
                parts.push("CAST(row_start AS CHAR)".into());
                parts.push("CAST(row_end AS CHAR)".into());
                from.push_str(" FOR SYSTEM_TIME ALL");
            }
            let mut rows: Vec<String> = s
                .query(
                    "rows",
                    &format!("SELECT CONCAT_WS('|', {}) FROM {from}", parts.join(", ")),
                )
                .await
                .unwrap();
            rows.sort();
            state.insert(format!("rows {table}"), rows.join("\n"));
        }
        let routines: Vec<(String, String)> = s
            .query(
                "routines",
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = 'zoo'",
            )
            .await
            .unwrap();
        for (name, kind) in routines {
            let sql = format!("SHOW CREATE {kind} zoo.{name}");
            state.insert(
                format!("{kind} {name}"),
                first(s.query("show", &sql).await.unwrap()).join("\n"),
            );
        }
        let triggers: Vec<(String, u64)> = s
            .query(
                "triggers",
                "SELECT TRIGGER_NAME, ACTION_ORDER FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = 'zoo'",
            )
            .await
            .unwrap();
        for (name, order) in triggers {
            let sql = format!("SHOW CREATE TRIGGER zoo.{name}");
            // Every column but `Created`, which is when this server made it.
            let mut shown = first(s.query("show", &sql).await.unwrap());
            shown.truncate(6);
            state.insert(
                format!("TRIGGER {name}"),
                format!("{}\norder {order}", shown.join("\n")),
            );
        }
        let events: Vec<(String, String)> = s
            .query(
                "events",
                "SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'zoo'",
            )
            .await
            .unwrap();
        for (name, status) in events {
            let sql = format!("SHOW CREATE EVENT zoo.{name}");
            let shown = first(s.query("show", &sql).await.unwrap()).join("\n");
            state.insert(format!("EVENT {name}"), format!("{shown}\nstatus {status}"));
        }
        let sequences: Vec<String> = s
            .query(
                "sequences",
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = 'zoo' AND TABLE_TYPE = 'SEQUENCE'",
            )
            .await
            .unwrap();
        for name in sequences {
            let sql = format!("SELECT * FROM zoo.{name}");
            state.insert(
                format!("state {name}"),
                first(s.query("state", &sql).await.unwrap()).join(","),
            );
        }
        s.close().await;
        state
    })
}

/// What a target may show differently, as the README documents: an event
/// the source runs is held disabled on a replica; where the loading account
/// may not set definers (the MySQL lab's), objects carry the loading account.
fn documented(flavor: Flavor, key: &str, text: &str) -> String {
    let mut text = text.to_string();
    if key.starts_with("EVENT ") {
        text = text
            .replace("DISABLE ON SLAVE", "ENABLE")
            .replace("DISABLE ON REPLICA", "ENABLE")
            .replace("status SLAVESIDE_DISABLED", "status ENABLED")
            .replace("status REPLICA_SIDE_DISABLED", "status ENABLED");
    }
    if flavor == Flavor::MySql {
        for (user, host) in [("zoo_owner", "%"), ("cutover", "127.%")] {
            for q in ['`', '"'] {
                text = text.replace(&format!("DEFINER={q}{user}{q}@{q}{host}{q} "), "DEFINER=… ");
            }
        }
    }
    text
}

fn assert_same_zoo(fx: &LabFixture, when: &str) {
    let source = zoo_state(fx, LEGACY);
    assert!(source.len() > 40, "the zoo is loaded: {:?}", source.keys());
    for (name, ip) in TARGETS {
        let target = zoo_state(fx, ip);
        let keys = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&target), keys(&source), "{when}: objects on {name}");
        for (key, expected) in &source {
            let expected = documented(fx.flavor, key, expected);
            let found = documented(fx.flavor, key, &target[key]);
            if found != expected {
                let at = expected
                    .chars()
                    .zip(found.chars())
                    .position(|(a, b)| a != b)
                    .unwrap_or(expected.len().min(found.len()));
                let from = if expected.len() < 3000 {
                    0
                } else {
                    at.saturating_sub(80)
                };
                panic!(
                    "{when}: {key} differs on {name} at character {at}:\n legacy: …{}\n {name}: …{}",
                    expected.chars().skip(from).take(3000).collect::<String>(),
                    found.chars().skip(from).take(3000).collect::<String>()
                );
            }
        }
    }
}

/// The zoo's owner exists everywhere, as a bank's accounts would; every
/// server runs its event scheduler, so an event a replica wrongly ran would
/// show as rows the source never wrote.
fn prepare(fx: &LabFixture) {
    for ip in ALL {
        fx.admin_exec(
            ip,
            &[
                "SET SESSION sql_log_bin = 0",
                "CREATE USER IF NOT EXISTS 'zoo_owner'@'%' IDENTIFIED BY 'zoo-owner-pass-1'",
                "GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE, EVENT, TRIGGER ON zoo.* TO 'zoo_owner'@'%'",
                "SET GLOBAL event_scheduler = ON",
            ],
        );
    }
    let zoo = match fx.flavor {
        Flavor::MariaDb => "mariadb.sql",
        Flavor::MySql => "mysql.sql",
    };
    run_script(fx, LEGACY, zoo);
}

#[test]
fn lab_snapshot_and_restore_reproduce_the_zoo_exactly() {
    snapshot_and_restore_reproduce_the_zoo_exactly(Flavor::MariaDb);
}

#[test]
fn lab_mysql_snapshot_and_restore_reproduce_the_zoo_exactly() {
    snapshot_and_restore_reproduce_the_zoo_exactly(Flavor::MySql);
}

fn snapshot_and_restore_reproduce_the_zoo_exactly(flavor: Flavor) {
    let fx = LabFixture::up_empty_as(flavor, 200);
    prepare(&fx);
    let text = std::fs::read_to_string(migration_plan(&fx))
        .unwrap()
        .replace("databases: [refunds]", "databases: [refunds, zoo]");
    let plan = fx.sandbox.write("zoo.yaml", text);
    // The dry run says, before the window, which definers would be lost.
    let (code, dry) = json_of(&fx, &["run", "--dry-run"], &plan);
    assert_eq!(code, Some(0), "{dry}");
    let definers = dry["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"] == "c1" && c["check"] == "definers")
        .unwrap_or_else(|| panic!("a definers check on c1: {dry}"))
        .clone();
    match flavor {
        Flavor::MariaDb => {
            assert_eq!(definers["status"], "pass", "{definers}");
            let history = dry["prechecks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["cluster"] == "c1" && c["check"] == "history")
                .unwrap_or_else(|| panic!("a history check on c1: {dry}"));
            assert_eq!(history["status"], "pass", "{history}");
        }
        Flavor::MySql => {
            assert_eq!(definers["status"], "warn", "{definers}");
            let detail = definers["detail"].as_str().unwrap();
            assert!(
                detail.contains("SET_ANY_DEFINER") && detail.contains("function zoo.paise"),
                "{detail}"
            );
        }
    }
    let directory = fx.sandbox.path().join("zoo-snapshot");
    let directory_arg = directory.display().to_string();

    // c1 straight from legacy (and into a directory), the others from that directory.
    let (code, snapshot) = json_of(
        &fx,
        &[
            "snapshot",
            "--targets",
            "c1",
            "--directory",
            &directory_arg,
            "--skip-binlog",
            "--replicate",
        ],
        &plan,
    );
    assert_eq!(code, Some(0), "{snapshot}");
    let (code, restore) = json_of(
        &fx,
        &[
            "restore",
            &directory_arg,
            "--targets",
            "c2",
            "c3",
            "c6",
            "--skip-binlog",
            "--replicate",
        ],
        &plan,
    );
    assert_eq!(code, Some(0), "{restore}");
    for report in [&snapshot, &restore] {
        let warnings = report["warnings"].to_string();
        match flavor {
            // The loading account has SUPER: every definer is kept.
            Flavor::MariaDb => assert!(!warnings.contains("definer"), "{warnings}"),
            // The MySQL lab's account lacks SET_ANY_DEFINER: each object is named.
            Flavor::MySql => {
                for object in [
                    "function `zoo`.`paise`",
                    "procedure `zoo`.`transfer`",
                    "trigger `zoo`.`ledger_audit`",
                    "view `zoo`.`ledger_totals`",
                    "event `zoo`.`tick`",
                ] {
                    assert!(
                        warnings.contains(&format!("{object} was created without its definer")),
                        "{object}: {warnings}"
                    );
                }
                assert!(warnings.contains("SET_ANY_DEFINER"), "{warnings}");
            }
        }
    }
    // Wait for the event's ticks to reach the targets, then stop the source's
    // scheduler so the comparison sees a still source.
    std::thread::sleep(Duration::from_millis(2500));
    let quiet = || {
        fx.admin_exec(LEGACY, &["SET GLOBAL event_scheduler = OFF"]);
        std::thread::sleep(Duration::from_millis(1200));
        fx.wait_replicated();
    };
    quiet();
    let ticks = fx.admin_value(LEGACY, "SELECT CAST(COUNT(*) AS CHAR) FROM zoo.ticks");
    assert!(
        ticks.parse::<u64>().unwrap() >= 2,
        "the event ran on legacy: {ticks}"
    );
    assert_same_zoo(&fx, "after the snapshot and the restore");

    // Writes after the snapshot, through every kind of table, by replication.
    fx.admin_exec(LEGACY, &["SET GLOBAL event_scheduler = ON"]);
    run_script(&fx, LEGACY, "writes.sql");
    if flavor == Flavor::MariaDb {
        run_script(&fx, LEGACY, "mariadb-writes.sql");
    }
    std::thread::sleep(Duration::from_millis(1500));
    quiet();
    assert_same_zoo(&fx, "after more writes through replication");
    let audit = fx.admin_value("127.0.0.13", "SELECT CAST(COUNT(*) AS CHAR) FROM zoo.audit");
    assert_eq!(
        audit, "6",
        "the source's triggers' rows arrived once, not fired again"
    );

    // The checksum sees every type without a false difference …
    let (code, checksum) = json_of(&fx, &["checksum", "--tables", "zoo.*"], &plan);
    assert_eq!(code, Some(0), "{checksum}");
    assert_eq!(checksum["status"], "match", "{checksum}");
    events_follow_the_primary(&fx, &plan);
    // … and one flipped bit in each type on c2.
    one_flipped_bit_per_type_is_found(&fx, &plan);
}

/// The cutover's promote enables on c1 the event it held disabled as a
/// replica (its definer and settings kept), and the rollback disables it again.
fn events_follow_the_primary(fx: &LabFixture, plan: &Path) {
    let status = |ip: &str, event: &str| {
        fx.admin_value(
            ip,
            &format!(
                "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'zoo' AND EVENT_NAME = '{event}'"
            ),
        )
    };
    let disabled = ["SLAVESIDE_DISABLED", "REPLICA_SIDE_DISABLED"];
    assert!(disabled.contains(&status("127.0.0.11", "tick").as_str()));
    let before = zoo_state(fx, "127.0.0.11")["EVENT tick"].clone();
    fx.admin_exec(LEGACY, &["SET GLOBAL event_scheduler = ON"]);
    // The same clusters, the cutover phase alone (the zoo was loaded by hand).
    let text = std::fs::read_to_string(plan).unwrap();
    let phases = text.find("\nphases:").unwrap();
    let cutover = text.find("  - name: cutover").unwrap();
    let plan = &fx.sandbox.write(
        "zoo-cutover.yaml",
        format!("{}\nphases:\n{}", &text[..phases], &text[cutover..]),
    );
    let (code, run) = json_of(fx, &["run", "--yes"], plan);
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(status("127.0.0.11", "tick"), "ENABLED");
    assert_eq!(status("127.0.0.11", "monthly_close"), "DISABLED");
    assert!(
        disabled.contains(&status(LEGACY, "tick").as_str()),
        "the demoted legacy runs it no more"
    );
    let after = zoo_state(fx, "127.0.0.11")["EVENT tick"].clone();
    assert_eq!(
        documented(fx.flavor, "EVENT tick", &after),
        documented(fx.flavor, "EVENT tick", &before),
        "enabling kept the event's definer, sql_mode, time zone and character set"
    );
    let c1 = fx.admin_value("127.0.0.11", "SELECT CAST(@@server_id AS CHAR)");
    std::thread::sleep(Duration::from_millis(2500));
    let fired = fx.admin_value(
        "127.0.0.11",
        &format!("SELECT CAST(COUNT(*) AS CHAR) FROM zoo.ticks WHERE server_id = {c1}"),
    );
    assert_ne!(fired, "0", "the event runs on the new primary");

    let run_id = run["run_id"].as_str().unwrap();
    let output = fx
        .cutover()
        .args(["rollback", run_id, "--to-phase", "cutover", "--yes"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(disabled.contains(&status("127.0.0.11", "tick").as_str()));
    assert_eq!(status(LEGACY, "tick"), "ENABLED", "legacy runs it again");
    fx.admin_exec(LEGACY, &["SET GLOBAL event_scheduler = OFF"]);
    std::thread::sleep(Duration::from_millis(1200));
    fx.wait_replicated();
}

/// A table one target cannot hold (its storage engine is not installed
/// there): the dry run fails on it before the window; a snapshot taken anyway
/// names it with the server's error on every target and loads the rest.
#[test]
fn lab_a_table_no_target_can_hold_is_named_and_the_rest_still_loads() {
    let fx = LabFixture::up_empty_as(Flavor::MariaDb, 300);
    fx.admin_exec(
        LEGACY,
        &[
            "INSTALL SONAME 'ha_archive'",
            "CREATE TABLE refunds.archived (id INT NOT NULL, note VARCHAR(20)) ENGINE=ARCHIVE",
            "INSERT INTO refunds.archived VALUES (1, 'kept for years'), (2, 'and years')",
        ],
    );
    let plan = migration_plan(&fx);

    let (code, dry) = json_of(&fx, &["run", "--dry-run"], &plan);
    assert_eq!(code, Some(3), "{dry}");
    for (name, _) in TARGETS {
        let engines = dry["prechecks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cluster"] == name && c["check"] == "storage engines")
            .unwrap_or_else(|| panic!("a storage engines check on {name}: {dry}"));
        assert_eq!(engines["status"], "fail", "{engines}");
        let detail = engines["detail"].as_str().unwrap();
        assert!(
            detail.contains("ARCHIVE") && detail.contains("refunds.archived"),
            "{detail}"
        );
    }

    let (code, report) = json_of(&fx, &["snapshot", "--skip-binlog"], &plan);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["status"], "partial", "{report}");
    for (name, ip) in TARGETS {
        let outcome = report["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cluster"] == name)
            .unwrap();
        assert_eq!(outcome["status"], "incomplete", "{outcome}");
        let missing = outcome["missing"].to_string();
        assert!(
            missing.contains("table `refunds.archived`") && missing.contains("1286"),
            "{missing}"
        );
        // Everything else is there.
        let rows = fx.admin_value(
            ip,
            "SELECT CAST(COUNT(*) AS CHAR) FROM refunds.transactions",
        );
        assert_eq!(rows, "300", "{name}");
        let view = fx.admin_value(
            ip,
            "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'refunds'",
        );
        assert_ne!(view, "0", "{name}: the views came along");
    }
    assert!(
        report["targets"].as_array().unwrap().is_empty(),
        "an incomplete target is not offered for replication: {report}"
    );
}
