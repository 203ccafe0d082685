//! `scope: databases`: a switchover off a shared source fences only the
//! plan's databases. Another business's application on legacy (`loyalty`,
//! driven by sysbench as its own account) keeps committing through the
//! switchover and its rollback, while the probe on `refunds` loses nothing
//! and never sees two writable copies of it, also when the run is killed
//! inside the freeze or past the promotion and resumed. With `scope: server`
//! the same switchover stops that application, as it always did.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Flavor, LabFixture, stdout_json};
use crate::lab_cutover::{Probe, assert_nothing_lost};
use crate::lab_snapshot::migration_plan;

const TARGETS: [(&str, &str); 4] = [
    ("c1", "127.0.0.11"),
    ("c2", "127.0.0.12"),
    ("c3", "127.0.0.13"),
    ("c6", "127.0.0.16"),
];
const LEGACY: &str = "127.0.0.10";

#[test]
fn lab_a_scoped_switchover_leaves_the_sources_other_database_writing() {
    scoped_switchover_and_rollback(Flavor::MariaDb);
}

#[test]
fn lab_mysql_a_scoped_switchover_leaves_the_sources_other_database_writing() {
    scoped_switchover_and_rollback(Flavor::MySql);
}

/// sysbench as the other application, on legacy's `loyalty` database.
fn sysbench(fx: &LabFixture, command: &str, extra: &[&str]) -> Command {
    let mut sysbench = Command::new("sysbench");
    sysbench.args([
        "oltp_write_only",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.10",
        "--mysql-port=13306",
        "--mysql-db=loyalty",
        "--tables=1",
        "--table-size=2000",
    ]);
    sysbench.arg(format!(
        "--mysql-user={}",
        fx.var("CUTOVER_LAB_OTHER_APP_USER")
    ));
    sysbench.arg(format!(
        "--mysql-password={}",
        fx.var("CUTOVER_LAB_OTHER_APP_PASSWORD")
    ));
    sysbench.args(extra).arg(command);
    sysbench
}

fn start_other_application(fx: &LabFixture, seconds: u64) -> Child {
    sysbench(
        fx,
        "run",
        &[
            // One thread: no deadlock of its own to ignore, so any error ends it.
            "--threads=1",
            "--mysql-ignore-errors=none",
            "--report-interval=1",
            &format!("--time={seconds}"),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("sysbench (scripts/install-deps installs it)")
}

/// What sysbench saw: every one-second interval's transactions, its errors,
/// and its longest statement (the longest the application waited).
struct OtherApplication {
    succeeded: bool,
    per_second: Vec<f64>,
    ignored_errors: Option<u64>,
    max_latency_ms: f64,
    text: String,
}

fn finish_other_application(child: Child) -> OtherApplication {
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let per_second = text
        .lines()
        .filter(|line| line.starts_with('['))
        .filter_map(|line| line.split(" tps: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let field = |name: &str| {
        text.lines()
            .find(|line| line.trim_start().starts_with(name))
            .map(|line| line.trim().to_string())
            .unwrap_or_default()
    };
    let max_latency_ms = field("max:")
        .trim_start_matches("max:")
        .trim()
        .parse()
        .unwrap_or(f64::NAN);
    OtherApplication {
        succeeded: output.status.success(),
        per_second,
        ignored_errors: field("ignored errors:")
            .trim_start_matches("ignored errors:")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok()),
        max_latency_ms,
        text,
    }
}

fn with_scope(fx: &LabFixture, scope: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(migration_plan(fx))
        .unwrap()
        .replace(
            "databases: [refunds]",
            &format!("databases: [refunds]\nscope: {scope}"),
        );
    fx.sandbox.write(&format!("migration-{scope}.yaml"), text)
}

fn run(fx: &LabFixture, args: &[&str], plan: Option<&Path>) -> (Option<i32>, serde_json::Value) {
    let mut command = fx.cutover();
    command.args(args).args(["--output", "json"]);
    if let Some(plan) = plan {
        command.arg(plan);
    }
    let output = command.output().unwrap();
    assert!(
        !output.stdout.is_empty(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = stdout_json(&output);
    (output.status.code(), report)
}

fn scoped_switchover_and_rollback(flavor: Flavor) {
    let fx = LabFixture::up_empty_as(flavor, 3_000);
    if flavor == Flavor::MariaDb {
        // Legacy keeps writing its other database while a cluster writes
        // refunds: each needs a GTID domain of its own (the precheck says so).
        for (_, ip) in TARGETS {
            let id = fx.admin_value(ip, "SELECT CAST(@@server_id AS CHAR)");
            fx.admin_exec(ip, &[&format!("SET GLOBAL gtid_domain_id = {id}")]);
        }
    }
    fx.admin_exec(LEGACY, &["CREATE DATABASE loyalty"]);
    let prepared = sysbench(&fx, "prepare", &[]).output().unwrap();
    assert!(
        prepared.status.success(),
        "{}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let scoped = with_scope(&fx, "databases");
    let (code, report) = run(&fx, &["run", "--yes", "--phase", "snapshot"], Some(&scoped));
    assert_eq!(code, Some(0), "{report}");

    if flavor == Flavor::MariaDb {
        // A candidate writing the source's own GTID domain is refused.
        fx.admin_exec("127.0.0.11", &["SET GLOBAL gtid_domain_id = 0"]);
        let (code, dry) = run(
            &fx,
            &["run", "--dry-run", "--phase", "cutover"],
            Some(&scoped),
        );
        assert_ne!(code, Some(0), "{dry}");
        let domain = precheck(&dry, "c1", "GTID domain");
        assert_eq!(domain["status"], "fail", "{domain}");
        fx.admin_exec("127.0.0.11", &["SET GLOBAL gtid_domain_id = 11"]);
    }
    let (code, dry) = run(
        &fx,
        &["run", "--dry-run", "--phase", "cutover"],
        Some(&scoped),
    );
    assert_eq!(code, Some(0), "{dry}");
    let shared = precheck(&dry, "legacy", "other databases");
    let detail = shared["detail"].as_str().unwrap();
    assert!(
        detail.contains("loyalty") && detail.contains("scope: databases"),
        "{shared}"
    );
    let fence = precheck(&dry, "legacy", "scoped fence");
    assert_eq!(fence["status"], "pass", "{fence}");

    let other = start_other_application(&fx, 60);
    let probe = Probe::start(&fx, &scoped);
    let (code, forward) = run(&fx, &["run", "--yes", "--phase", "cutover"], Some(&scoped));
    assert_eq!(code, Some(0), "{forward}");
    assert_eq!(forward["status"], "completed", "{forward}");
    assert_fenced(&fx, true);
    std::thread::sleep(Duration::from_secs(2));
    let run_id = forward["run_id"].as_str().unwrap().to_string();
    let (code, back) = run(&fx, &["rollback", &run_id, "--yes"], None);
    assert_eq!(code, Some(0), "{back}");
    assert_fenced(&fx, false);

    // Killed inside the freeze (before catch_up) the run rolls back; killed
    // past the promotion (before dns_switch) it finishes. Either way the
    // fence ends where the run does.
    for kill_at in [3u32, 5] {
        let killed = fx
            .cutover()
            .env(cutover::engine::KILL_AT_STEP_ENV, kill_at.to_string())
            .args(["run", "--yes", "--phase", "cutover"])
            .arg(&scoped)
            .output()
            .unwrap();
        assert_eq!(killed.status.code(), None, "killed before step {kill_at}");
        let (_, status) = run(&fx, &["status"], None);
        let run_id = status["runs"][0]["run_id"].as_str().unwrap().to_string();
        let (code, resumed) = run(&fx, &["resume", &run_id, "--yes"], None);
        if kill_at == 5 {
            assert_eq!(code, Some(0), "kill at {kill_at}: {resumed}");
            assert_eq!(resumed["status"], "completed", "{resumed}");
            assert_fenced(&fx, true);
            let (code, back) = run(&fx, &["rollback", &run_id, "--yes"], None);
            assert_eq!(code, Some(0), "{back}");
        } else {
            assert_eq!(code, Some(3), "kill at {kill_at}: {resumed}");
            assert_eq!(resumed["status"], "rolled_back", "{resumed}");
        }
        assert_fenced(&fx, false);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_nothing_lost(&probe.finish());

    let loyalty = finish_other_application(other);
    eprintln!(
        "loyalty through scoped switchovers, their rollbacks and two crashes: longest statement {} ms, \
         transactions per second {:?}",
        loyalty.max_latency_ms, loyalty.per_second
    );
    assert!(loyalty.succeeded, "{}", loyalty.text);
    assert_eq!(loyalty.ignored_errors, Some(0), "{}", loyalty.text);
    assert!(loyalty.per_second.len() >= 55, "{}", loyalty.text);
    assert!(
        loyalty.per_second.iter().all(|tps| *tps > 0.0),
        "it committed in every second: {}",
        loyalty.text
    );
    for (name, ip) in TARGETS {
        let there = fx.admin_value(
            ip,
            "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'loyalty'",
        );
        assert_eq!(there, "0", "{name} never received loyalty");
    }
    let (code, checksum) = run(&fx, &["checksum"], Some(&scoped));
    assert_eq!(code, Some(0), "{checksum}");

    // The same switchover fencing the whole server stops the other
    // application: its busy session is ended by the freeze's drain or the
    // unfreeze, or refused by read_only.
    let other = start_other_application(&fx, 20);
    std::thread::sleep(Duration::from_secs(2));
    let server = with_scope(&fx, "server");
    let (code, forward) = run(&fx, &["run", "--yes", "--phase", "cutover"], Some(&server));
    assert_eq!(code, Some(0), "{forward}");
    let loyalty = finish_other_application(other);
    assert!(!loyalty.succeeded, "{}", loyalty.text);
    assert!(
        ["read-only", "read_only", "Lost connection"]
            .iter()
            .any(|stopped| loyalty.text.contains(stopped)),
        "{}",
        loyalty.text
    );
}

fn precheck<'a>(dry: &'a serde_json::Value, cluster: &str, check: &str) -> &'a serde_json::Value {
    dry["prechecks"]
        .as_array()
        .unwrap_or_else(|| panic!("{dry}"))
        .iter()
        .find(|c| c["cluster"] == cluster && c["check"] == check)
        .unwrap_or_else(|| panic!("no `{check}` on {cluster}: {dry}"))
}

/// Whether `refunds` on legacy is fenced for the application: MySQL marks
/// it `READ ONLY`; MariaDB takes the application's write privileges away.
fn assert_fenced(fx: &LabFixture, fenced: bool) {
    let read_only = fx.admin_value(LEGACY, "SELECT IF(@@GLOBAL.read_only, '1', '0')");
    assert_eq!(read_only, "0", "legacy itself stays writable");
    let grants = match fx.flavor {
        Flavor::MySql => fx.admin_value(
            LEGACY,
            "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.SCHEMATA_EXTENSIONS \
             WHERE SCHEMA_NAME IN ('refunds', 'cutover_probe') AND OPTIONS LIKE '%READ ONLY=1%'",
        ),
        Flavor::MariaDb => fx.admin_value(
            LEGACY,
            "SELECT CAST(COUNT(*) AS CHAR) FROM mysql.db \
             WHERE User = 'refunds_app' AND Db IN ('refunds', 'cutover_probe') AND Insert_priv = 'N'",
        ),
    };
    assert_eq!(grants, if fenced { "2" } else { "0" }, "fenced: {fenced}");
}
