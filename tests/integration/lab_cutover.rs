//! The executor against the real lab: switchover and rollback under a write
//! probe, freeze budget, DNS failures, errant candidates, dry runs and the
//! plan lock. Crashes are in `lab_crash.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cutover::dns;
use hickory_proto::rr::RecordType;

use crate::harness::{Flavor, LabFixture, cluster, runtime, stdout_json};

const NAMESERVERS: [&str; 2] = ["127.0.0.2:53", "127.0.0.3:53"];

/// `plans/lab-switchover.yaml` with its phases (and optionally more text) replaced.
pub(crate) fn switchover_plan(
    fx: &LabFixture,
    file: &str,
    phases: &str,
    edits: &[(&str, &str)],
) -> PathBuf {
    let original =
        std::fs::read_to_string(crate::harness::repo_root().join("plans/lab-switchover.yaml"))
            .unwrap();
    let mut text = original[..original.find("\nphases:").unwrap()].to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "plan has {from}");
        text = text.replace(from, to);
    }
    text.push_str("\nphases:\n");
    text.push_str(phases);
    fx.sandbox.write(file, text)
}

pub(crate) const SWITCHOVER_PHASE: &str =
    "  - name: cutover\n    rollback: auto\n    steps:\n      - switchover: { to: c1 }\n";

/// `cutover probe` in the background, writing through DNS and polling read_only everywhere.
pub(crate) struct Probe {
    child: Child,
}

impl Probe {
    pub(crate) fn start(fx: &LabFixture, plan: &Path) -> Probe {
        let child = fx
            .background()
            .args([
                "probe",
                "--duration",
                "600",
                "--rate",
                "100",
                "--watch-primaries",
                "--output",
                "json",
            ])
            .arg(plan)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        Probe { child }
    }

    /// SIGTERM, then the probe's report.
    pub(crate) fn finish(self) -> serde_json::Value {
        let output = crate::harness::terminate(self.child);
        assert!(
            matches!(output.status.code(), Some(0) | Some(4)),
            "probe: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout_json(&output)
    }
}

pub(crate) fn assert_nothing_lost(report: &serde_json::Value) {
    assert_eq!(report["lost"], 0, "no acknowledged write lost: {report}");
    assert_eq!(report["duplicates"], 0, "no duplicate: {report}");
    assert!(
        report["acknowledged"].as_u64().unwrap() > 100,
        "the probe wrote: {report}"
    );
    let writable = &report["writable_primaries"];
    assert!(writable["rounds"].as_u64().unwrap() > 50, "{writable}");
    assert_eq!(
        writable["overlap_rounds"], 0,
        "never two writable primaries: {writable}"
    );
}

pub(crate) fn topology(fx: &LabFixture, plan: &Path) -> serde_json::Value {
    let output = fx
        .cutover()
        .args(["topology", "--output", "json"])
        .arg(plan)
        .output()
        .unwrap();
    stdout_json(&output)
}

pub(crate) fn assert_primary(fx: &LabFixture, plan: &Path, primary: &str) {
    let topology = topology(fx, plan);
    for name in ["legacy", "c1", "c2", "c3", "c6"] {
        let view = cluster(&topology, name);
        if name == primary {
            assert_eq!(view["role"], "primary", "{name}: {view}");
            assert_eq!(view["read_only"], false, "{name} writable");
        } else {
            assert_eq!(
                view["replicating_from"], primary,
                "{name} follows {primary}: {view}"
            );
            assert_eq!(view["read_only"], true, "{name} read-only");
            assert!(view["errant_gtids"].is_null(), "{name}: {view}");
            let replication = &view["replication"];
            assert_eq!(replication["io_thread"], "running", "{name}: {view}");
            assert_eq!(replication["sql_thread"], "running", "{name}: {view}");
        }
    }
    assert_dns_on(primary);
}

/// `refunds-primary` names `primary` on both authoritative servers, with the AA bit.
pub(crate) fn assert_dns_on(primary: &str) {
    let expected = format!("{primary}.bank.internal.");
    runtime().block_on(async {
        for server in NAMESERVERS {
            let answer = dns::query_authoritative(
                server.parse().unwrap(),
                "refunds-primary.bank.internal.",
                RecordType::CNAME,
                Duration::from_secs(1),
            )
            .await
            .unwrap();
            assert_eq!(answer.values, std::slice::from_ref(&expected), "{server}");
            assert!(answer.authoritative, "{server}");
        }
    });
}

pub(crate) fn run_json(command: &mut assert_cmd::Command) -> (Option<i32>, serde_json::Value) {
    let output = command.output().unwrap();
    let code = output.status.code();
    let document = if output.stdout.is_empty() {
        serde_json::Value::Null
    } else {
        stdout_json(&output)
    };
    if document.is_null() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    (code, document)
}

/// GTID positions, read_only flags and the DNS serial: what a dry run must not change.
pub(crate) fn fingerprint(fx: &LabFixture, plan: &Path) -> String {
    let topology = topology(fx, plan);
    let mut out = String::new();
    for view in topology["clusters"].as_array().unwrap() {
        out.push_str(&format!(
            "{} {} {}\n",
            view["name"], view["gtid_position"], view["read_only"]
        ));
    }
    let serial = runtime().block_on(dns::soa_serial(
        NAMESERVERS[0].parse().unwrap(),
        "bank.internal.",
        Duration::from_secs(1),
    ));
    out.push_str(&format!("serial {}\n", serial.unwrap()));
    out
}

#[test]
fn lab_switchover_and_rollback_lose_no_acknowledged_write() {
    switchover_and_rollback_lose_no_acknowledged_write(Flavor::MariaDb);
}

#[test]
fn lab_mysql_switchover_and_rollback_lose_no_acknowledged_write() {
    switchover_and_rollback_lose_no_acknowledged_write(Flavor::MySql);
}

fn switchover_and_rollback_lose_no_acknowledged_write(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = crate::harness::repo_root().join("plans/lab-switchover.yaml");

    // Dry run: a stopped replica fails its precheck; nothing changes either way.
    fx.admin_exec("127.0.0.12", &["STOP REPLICA"]);
    let before = fingerprint(&fx, &plan);
    let (code, report) = run_json(
        fx.cutover()
            .args(["run", "--dry-run", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(3), "{report}");
    let failed: Vec<_> = report["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["cluster"], "c2");
    assert_eq!(failed[0]["check"], "replication");
    fx.admin_exec("127.0.0.12", &["START REPLICA"]);
    let (code, report) = run_json(
        fx.cutover()
            .args(["run", "--dry-run", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["dry_run"], true);
    let operations = report["operations"].as_array().unwrap();
    // wait_lag, checksum, confirm and the seven switchover steps.
    assert_eq!(operations.len(), 10, "{operations:?}");
    assert!(
        operations.iter().any(|op| op["kind"] == "checksum"),
        "{operations:?}"
    );
    assert!(
        operations
            .iter()
            .all(|op| op["inverse"].as_str().is_some_and(|i| !i.is_empty()))
    );
    let freeze = operations.iter().find(|op| op["kind"] == "freeze").unwrap();
    assert!(
        flavor.mentions_position(freeze["current"].as_str().unwrap()),
        "{freeze}"
    );
    assert_eq!(
        fingerprint(&fx, &plan),
        before,
        "the dry run changed nothing"
    );

    let probe = Probe::start(&fx, &plan);

    // A second run of the same plan is refused while the first holds the lock
    // (the first waits at its confirm step while the postpone file exists).
    let postpone = PathBuf::from("/tmp/cutover-postpone");
    std::fs::write(&postpone, "hold").unwrap();
    let first = fx
        .background()
        .args(["run", "--yes", "--output", "json"])
        .arg(&plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(5000));
    let second = fx
        .cutover()
        .args(["run", "--yes"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("locked by run"));
    std::fs::remove_file(&postpone).unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = stdout_json(&first);
    assert_eq!(report["status"], "completed");
    let freeze_ms = report["write_freeze_ms"].as_u64().unwrap();
    assert!(freeze_ms < 3000, "within the budget: {freeze_ms} ms");
    assert_primary(&fx, &plan, "c1");

    // The reverse switchover.
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let (code, report) = run_json(
        fx.cutover()
            .args(["rollback", &run_id, "--yes", "--output", "json"]),
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "rolled_back");
    assert_primary(&fx, &plan, "legacy");

    let probe = probe.finish();
    assert_nothing_lost(&probe);
    assert!(
        probe["max_unavailable_ms"].as_u64().unwrap() < 3000,
        "{probe}"
    );
}

#[test]
fn lab_failures_inside_the_freeze_roll_back_cleanly() {
    let fx = LabFixture::up();
    let lab = fx.lab_dir();
    let admin = |ip: &str, sql: &str| {
        vec![
            "mariadb".to_string(),
            format!("-h{ip}"),
            "-P13306".into(),
            format!("-u{}", fx.var("CUTOVER_LAB_ADMIN_USER")),
            format!("-p{}", fx.var("CUTOVER_LAB_ADMIN_PASSWORD")),
            "--skip-ssl".into(),
            "-e".into(),
            sql.to_string(),
        ]
    };
    let hook = |command: Vec<String>| {
        format!(
            "      - hook: {{ command: [{}] }}\n",
            command
                .iter()
                .map(|part| format!("{part:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let plain = switchover_plan(
        &fx,
        "plain.yaml",
        SWITCHOVER_PHASE,
        &[("freeze_budget_ms: 3000", "freeze_budget_ms: 1500")],
    );
    let probe = Probe::start(&fx, &plain);

    // 1. c1 stops receiving after the prechecks and legacy then takes a write, so
    //    c1 is certainly short of the frozen position: catch-up cannot finish, the
    //    freeze ends at its budget and the phase is undone.
    let stop_c1 = switchover_plan(
        &fx,
        "stop-c1.yaml",
        &format!(
            "  - name: cutover\n    rollback: auto\n    steps:\n{}{}      - switchover: {{ to: c1 }}\n",
            hook(admin("127.0.0.11", "STOP SLAVE IO_THREAD")),
            hook(admin(
                "127.0.0.10",
                "INSERT INTO cutover_probe.writes (probe_id, seq, written_at_us) VALUES ('hook0001', 0, 0)"
            ))
        ),
        &[("freeze_budget_ms: 3000", "freeze_budget_ms: 1500")],
    );
    let started = Instant::now();
    let (code, report) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&stop_c1),
    );
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["status"], "rolled_back");
    assert!(
        report["detail"]
            .as_str()
            .unwrap()
            .contains("did not reach the frozen position"),
        "{report}"
    );
    let freeze_ms = report["write_freeze_ms"].as_u64().unwrap();
    assert!(
        freeze_ms <= 1500 + 1000,
        "writable again within budget + 1 s: {freeze_ms} ms"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    fx.admin_exec("127.0.0.11", &["START SLAVE"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_primary(&fx, &plain, "legacy");

    // 2. A wrong TSIG secret at dns_switch (the key file is rewritten after the prechecks).
    let key_file = fx
        .sandbox
        .write("tsig.key", fx.var("CUTOVER_LAB_TSIG_SECRET"));
    let wrong = "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZw==";
    let swap_key = switchover_plan(
        &fx,
        "swap-key.yaml",
        &format!(
            "  - name: cutover\n    rollback: auto\n    steps:\n{}      - switchover: {{ to: c1 }}\n",
            hook(vec![
                "sh".into(),
                "-c".into(),
                format!("printf %s {wrong} > {}", key_file.display())
            ])
        ),
        &[(
            "secret_env: CUTOVER_LAB_TSIG_SECRET",
            &format!("secret_file: {}", key_file.display()),
        )],
    );
    let (code, report) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&swap_key),
    );
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["status"], "rolled_back");
    let detail = report["detail"].as_str().unwrap();
    assert!(detail.contains("TSIG authentication failed"), "{detail}");
    assert!(
        !detail.contains(wrong) && !detail.contains(fx.var("CUTOVER_LAB_TSIG_SECRET")),
        "no secret in errors"
    );
    assert_primary(&fx, &plain, "legacy");

    // 3. ns1 (the update server) stops after the prechecks.
    let named_pid = lab.join("ns1/named.pid");
    assert!(named_pid.exists(), "{}", named_pid.display());
    let stop_ns1 = switchover_plan(
        &fx,
        "stop-ns1.yaml",
        &format!(
            "  - name: cutover\n    rollback: auto\n    steps:\n{}      - switchover: {{ to: c1 }}\n",
            hook(vec![
                "sh".into(),
                "-c".into(),
                format!("kill $(cat {}); sleep 0.5", named_pid.display())
            ])
        ),
        &[],
    );
    let (code, report) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&stop_ns1),
    );
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["status"], "rolled_back");
    assert!(
        report["detail"].as_str().unwrap().contains("127.0.0.2:53"),
        "{report}"
    );
    let topology = topology(&fx, &plain);
    assert_eq!(cluster(&topology, "legacy")["read_only"], false);
    for name in ["c1", "c2", "c3", "c6"] {
        assert_eq!(
            cluster(&topology, name)["replicating_from"],
            "legacy",
            "{name}"
        );
        assert_eq!(cluster(&topology, name)["read_only"], true, "{name}");
    }

    // 4. An errant transaction on c1 is refused at precheck, before any freeze.
    fx.admin_exec("127.0.0.11", &["CREATE DATABASE errant_on_c1"]);
    let (code, report) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plain),
    );
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["status"], "refused");
    assert!(
        report["detail"]
            .as_str()
            .unwrap()
            .contains("c1 errant GTIDs"),
        "{report}"
    );
    assert!(report["write_freeze_ms"].is_null(), "never frozen");
    let steps = &report["phases"][0]["steps"];
    assert!(
        steps
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "pending"),
        "{steps}"
    );

    let probe = probe.finish();
    assert_nothing_lost(&probe);
}

#[test]
fn lab_a_resumed_checksum_that_finds_a_difference_exits_4() {
    let fx = LabFixture::up();
    fx.admin_exec(
        "127.0.0.13",
        &[
            "SET sql_log_bin = 0",
            "UPDATE refunds.transactions SET amount = amount + 0.01, updated_at = updated_at WHERE id = 3",
        ],
    );
    let plan = switchover_plan(
        &fx,
        "verify.yaml",
        "  - name: verify\n    rollback: manual\n    steps:\n      - checksum: { tables: [\"refunds.*\"] }\n",
        &[],
    );
    let killed = fx
        .cutover()
        .env(cutover::engine::KILL_AT_STEP_ENV, "1")
        .args(["run", "--yes"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None, "killed before the checksum");
    let (_, status) = run_json(fx.cutover().args(["status", "--output", "json"]));
    let run_id = status["runs"][0]["run_id"].as_str().unwrap().to_string();
    let (code, report) = run_json(
        fx.cutover()
            .args(["resume", &run_id, "--yes", "--output", "json"]),
    );
    assert_eq!(code, Some(4), "{report}");
    assert!(report["data_mismatch"].as_bool().unwrap(), "{report}");
    assert!(
        report["detail"].as_str().unwrap().contains("c3"),
        "names the cluster: {report}"
    );
}

#[test]
fn lab_replication_that_cannot_log_in_fails_its_step_with_the_servers_error() {
    replication_that_cannot_log_in(Flavor::MariaDb);
}

/// On MySQL 9.7 the accounts use `caching_sha2_password` and the plan has no
/// TLS: the reverse link authenticates with the source's public key.
#[test]
fn lab_mysql_replication_that_cannot_log_in_fails_its_step_with_the_servers_error() {
    replication_that_cannot_log_in(Flavor::MySql);
}

/// The replication password changes after the prechecks (a hook): the
/// reverse link fails its step with the server's own error, and with the
/// password back, resume proves every link running and finishes.
fn replication_that_cannot_log_in(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    // Outside the binary log, and on MySQL through super_read_only, which
    // fences even the admin on its replicas.
    let alter = |password: &str| {
        let change = format!(
            "SET sql_log_bin = 0; ALTER USER cutover_repl@'127.%' IDENTIFIED BY '{password}'"
        );
        if flavor == Flavor::MySql {
            format!(
                "SET @fenced = @@GLOBAL.super_read_only; SET GLOBAL super_read_only = 0; {change}; \
                 SET GLOBAL super_read_only = @fenced"
            )
        } else {
            change
        }
    };
    let admin = fx.sandbox.write(
        "admin.cnf",
        format!(
            "[client]\nuser={}\npassword={}\n",
            fx.var("CUTOVER_LAB_ADMIN_USER"),
            fx.var("CUTOVER_LAB_ADMIN_PASSWORD")
        ),
    );
    // After the prechecks passed, the replication account's password changes
    // on every server: links already running keep going, new ones cannot log in.
    let change = format!(
        "for ip in 10 11 12 13 16; do mariadb --defaults-extra-file={} -h127.0.0.$ip -P13306 --skip-ssl \
         -e \"{}\" || exit 1; done",
        admin.display(),
        alter("changed-by-a-hook")
    );
    let phases = format!(
        "  - name: cutover\n    rollback: manual\n    steps:\n      - hook: {{ name: change-password, command: [sh, -c, {change:?}] }}\n      - switchover: {{ to: c1 }}\n"
    );
    let plan = switchover_plan(
        &fx,
        "password.yaml",
        &phases,
        &[("gates:\n", "gates:\n  replication_start_timeout: 2s\n")],
    );
    let (code, run) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(1), "{run}");
    assert_eq!(run["status"], "failed", "{run}");
    let detail = run["detail"].as_str().unwrap();
    eprintln!("{detail}");
    assert!(
        detail.contains("reverse_replication")
            && detail.contains("cluster `legacy`: replication from `c1` is not running")
            && detail.contains("Access denied"),
        "the server's own error, the cluster and the link: {detail}"
    );
    assert!(detail.contains("password"), "and the fix: {detail}");
    let steps = run["phases"][0]["steps"].as_array().unwrap();
    let failed = steps.iter().find(|s| s["status"] == "failed").unwrap();
    assert_eq!(failed["kind"], "reverse_replication", "{run}");

    // With the right password back, resume proves the link and finishes.
    let password = fx.var("CUTOVER_LAB_REPL_PASSWORD").to_string();
    for (_, ip) in crate::harness::LAB_CLUSTERS {
        fx.admin_exec(ip, &[&alter(&password)]);
    }
    let run_id = run["run_id"].as_str().unwrap();
    let (code, resumed) = run_json(
        fx.cutover()
            .args(["resume", run_id, "--yes", "--output", "json"]),
    );
    assert_eq!(code, Some(0), "{resumed}");
    let links = resumed["replication_links"].as_array().unwrap();
    assert!(
        links.iter().any(|l| l["replica"] == "legacy"
            && l["source"] == "c1"
            && l["io_thread"] == "running"
            && l["sql_thread"] == "running"
            && l["transactions_behind"] == 0),
        "{links:?}"
    );
    assert_eq!(links.len(), 4, "legacy, c2, c3 and c6 under c1: {links:?}");
    assert_primary(&fx, &plan, "c1");
}

#[test]
fn lab_resume_checks_the_servers_before_it_says_completed() {
    let fx = LabFixture::up();
    let plan = switchover_plan(&fx, "switchover.yaml", SWITCHOVER_PHASE, &[]);
    // Every step done, the process killed before it closed the run.
    let killed = fx
        .cutover()
        .env(cutover::engine::KILL_AT_STEP_ENV, "8")
        .args(["run", "--yes"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None, "killed after the last step");
    let (_, status) = run_json(fx.cutover().args(["status", "--output", "json"]));
    let run_id = status["runs"][0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(status["runs"][0]["status"], "interrupted");

    // Someone puts DNS back on legacy by hand.
    let secret = fx.var("CUTOVER_LAB_TSIG_SECRET").to_string();
    let mut nsupdate = std::process::Command::new("nsupdate")
        .args(["-y", &format!("hmac-sha256:cutover-lab:{secret}")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    nsupdate
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"server 127.0.0.2 53\nzone bank.internal\nupdate delete refunds-primary.bank.internal CNAME\n\
              update add refunds-primary.bank.internal 5 CNAME legacy.bank.internal.\nsend\n",
        )
        .unwrap();
    assert!(nsupdate.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));

    let before = fingerprint(&fx, &plan);
    let output = fx
        .cutover()
        .args(["resume", &run_id, "--yes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Journal: primary `c1`, DNS → `c1`")
            && stderr.contains("answers [\"legacy.bank.internal.\"]")
            && stderr.contains("Nothing was changed"),
        "both states: {stderr}"
    );
    assert_eq!(fingerprint(&fx, &plan), before, "nothing changed");
    let (_, status) = run_json(fx.cutover().args(["status", &run_id, "--output", "json"]));
    assert_eq!(
        status["status"], "interrupted",
        "the run stays open: {status}"
    );
}
