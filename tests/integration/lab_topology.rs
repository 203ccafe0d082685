//! Topology, TLS, errant GTIDs, clock skew and heartbeat lag against a real lab.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Flavor, LabFixture, PlanCluster, cluster, runtime, stdout_json};

fn topology(lab: &LabFixture, plan: &std::path::Path) -> (serde_json::Value, i32) {
    let output = lab
        .cutover()
        .args(["topology", "--output", "json"])
        .arg(plan)
        .output()
        .unwrap();
    (stdout_json(&output), output.status.code().unwrap_or(-1))
}

fn number(value: &serde_json::Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {value}"))
}

#[test]
fn lab_quiet_topology_and_lag_over_tls() {
    quiet_topology_and_lag_over_tls(Flavor::MariaDb);
}

#[test]
fn lab_mysql_quiet_topology_and_lag_over_tls() {
    quiet_topology_and_lag_over_tls(Flavor::MySql);
}

fn quiet_topology_and_lag_over_tls(flavor: Flavor) {
    let lab = LabFixture::up_as(flavor, 2000);
    let ca = lab.var("CUTOVER_LAB_CA").to_string();
    let tls = format!("    tls: {{ ca_file: {ca}, verify: true }}\n");
    let changes: Vec<PlanCluster> = crate::harness::LAB_CLUSTERS
        .iter()
        .map(|(name, _)| PlanCluster::lab(name, &tls))
        .collect();
    let plan = lab.plan("tls.yaml", &changes);

    let (document, code) = topology(&lab, &plan);
    assert_eq!(code, 0, "{document}");
    let legacy = cluster(&document, "legacy");
    assert_eq!(legacy["role"], "primary");
    assert_eq!(legacy["read_only"], false);
    assert_eq!(legacy["flavor"], flavor.name());
    for name in ["c1", "c2", "c3", "c6"] {
        let replica = cluster(&document, name);
        assert_eq!(replica["reachable"], true, "{replica}");
        assert_eq!(replica["role"], "replica");
        assert_eq!(replica["replicating_from"], "legacy");
        assert_eq!(replica["read_only"], true);
        assert!(replica["errant_gtids"].is_null(), "{replica}");
        assert_eq!(replica["replication"]["io_thread"], "running");
        assert!(
            flavor.is_position(replica["gtid_position"].as_str().unwrap()),
            "{replica}"
        );
    }

    // Acceptance 1: quiet state.
    let output = lab
        .cutover()
        .args(["lag", "--output", "json"])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(output.status.success());
    let lag = stdout_json(&output);
    for name in ["c1", "c2", "c3", "c6"] {
        let target = cluster(&lag, name);
        assert_eq!(target["basis"], "monotonic", "{target}");
        assert!(number(&target["lag_ms"]) < 100.0, "{target}");
        assert_eq!(target["transactions_behind"], 0, "{target}");
    }

    // A CA that did not sign the servers' certificate is refused, naming the cluster.
    let other_ca = lab.sandbox.path().join("other-ca");
    std::fs::create_dir_all(&other_ca).unwrap();
    let openssl = cutover::lab::process::find_program("openssl").unwrap();
    cutover::lab::tls::generate_ca(&openssl, &other_ca, "other").unwrap();
    let wrong = format!(
        "    tls: {{ ca_file: {}, verify: true }}\n",
        other_ca.join("ca.pem").display()
    );
    let plan = lab.plan("wrong-ca.yaml", &[PlanCluster::lab("c1", &wrong)]);
    let (document, code) = topology(&lab, &plan);
    assert_eq!(code, 1);
    let c1 = cluster(&document, "c1");
    assert_eq!(c1["reachable"], false);
    let error = c1["error"].as_str().unwrap();
    assert!(error.starts_with("cluster `c1`"), "{error}");
    assert!(
        error.contains("certificate") && error.contains("ca_file"),
        "{error}"
    );
    assert_eq!(cluster(&document, "c2")["reachable"], true);

    // A server without TLS is refused when the plan requires it.
    lab.cutover()
        .args(["lab", "restart", "c6", "--without-tls", "-q", "--dir"])
        .arg(lab.lab_dir())
        .assert()
        .success();
    let plan = lab.plan("no-tls.yaml", &[PlanCluster::lab("c6", &tls)]);
    let (document, code) = topology(&lab, &plan);
    assert_eq!(code, 1);
    let error = cluster(&document, "c6")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.starts_with("cluster `c6`"), "{error}");
    assert!(error.contains("does not offer it"), "{error}");
    // Restarted, it is still a read-only replica.
    assert_eq!(cluster(&document, "c1")["read_only"], true);
}

/// Inserts on legacy every 20 ms until stopped (bounded to 30 s).
fn start_writes(lab: &LabFixture) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    lab.admin_exec(
        "127.0.0.10",
        &[
            "CREATE DATABASE IF NOT EXISTS load_test",
            "CREATE TABLE IF NOT EXISTS load_test.writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let endpoint = lab.admin_endpoint("127.0.0.10");
    let flag = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
            let started = Instant::now();
            let mut written = 0;
            while !flag.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
                session
                    .exec("write", "INSERT INTO load_test.writes (at) VALUES (NOW(6))")
                    .await
                    .unwrap();
                written += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            session.close().await;
            written
        })
    });
    (stop, handle)
}

#[test]
fn lab_stopped_replica_lag_climbs_and_the_gate_follows() {
    stopped_replica_lag_climbs_and_the_gate_follows(Flavor::MariaDb);
}

#[test]
fn lab_mysql_stopped_replica_lag_climbs_and_the_gate_follows() {
    stopped_replica_lag_climbs_and_the_gate_follows(Flavor::MySql);
}

fn stopped_replica_lag_climbs_and_the_gate_follows(flavor: Flavor) {
    let lab = LabFixture::up_as(flavor, 2000);
    let plan = lab.plan("plan.yaml", &[]);
    let (stop_writes, writer) = start_writes(&lab);

    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
    watch
        .args(["lag", "--watch", "--output", "json", "--every", "100ms"])
        .args(["--duration", "9s"])
        .arg(&plan)
        .env("CUTOVER_STATE", lab.sandbox.state_dir())
        .env("NO_COLOR", "1")
        .envs(lab.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut watch = watch.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    lab.admin_exec("127.0.0.12", &["STOP REPLICA"]);
    let stopped = Instant::now();
    let refused = lab
        .cutover()
        .args([
            "lag",
            "--wait",
            "--max-lag-ms",
            "200",
            "--sustained",
            "300ms",
        ])
        .args(["--timeout", "1500ms"])
        .arg(&plan)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("lag gate refused") && stderr.contains("c2 ("),
        "{stderr}"
    );
    for healthy in ["c1 (", "c3 (", "c6 ("] {
        assert!(!stderr.contains(healthy), "{stderr}");
    }
    std::thread::sleep(Duration::from_millis(2000).saturating_sub(stopped.elapsed()));
    lab.admin_exec("127.0.0.12", &["START REPLICA"]);

    lab.cutover()
        .args(["lag", "--wait", "--max-lag-ms", "100", "--sustained", "1s"])
        .args(["--timeout", "10s"])
        .arg(&plan)
        .assert()
        .success();

    let lines: Vec<serde_json::Value> = BufReader::new(watch.stdout.take().unwrap())
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect();
    assert!(watch.wait().unwrap().success());
    stop_writes.store(true, Ordering::SeqCst);
    assert!(writer.join().unwrap() > 50, "writes were flowing");

    let lags = |name: &str| -> Vec<f64> {
        lines
            .iter()
            .filter_map(|line| cluster(line, name)["lag_ms"].as_f64())
            .collect()
    };
    let c2 = lags("c2");
    let peak = c2.iter().copied().fold(0.0, f64::max);
    assert!(peak > 1500.0, "c2 peaked at {peak} ms");
    assert!(*c2.last().unwrap() < 100.0, "c2 ended at {:?}", c2.last());
    let c1_peak = lags("c1").into_iter().fold(0.0, f64::max);
    assert!(c1_peak < 500.0, "c1 peaked at {c1_peak} ms");
}

#[test]
fn lab_skewed_clock_does_not_move_our_lag() {
    skewed_clock_does_not_move_our_lag(Flavor::MariaDb);
}

#[test]
fn lab_mysql_skewed_clock_does_not_move_our_lag() {
    skewed_clock_does_not_move_our_lag(Flavor::MySql);
}

fn skewed_clock_does_not_move_our_lag(flavor: Flavor) {
    let lab = LabFixture::up_as(flavor, 2000);
    let plan = lab.plan("plan.yaml", &[]);
    lab.cutover()
        .args(["lab", "restart", "c2", "--clock-offset", "5", "-q", "--dir"])
        .arg(lab.lab_dir())
        .assert()
        .success();

    let (document, code) = topology(&lab, &plan);
    assert_eq!(code, 0, "{document}");
    let c2 = cluster(&document, "c2");
    let offset = number(&c2["clock_offset_ms"]);
    assert!((offset - 5000.0).abs() < 300.0, "c2 offset {offset}");
    assert_eq!(c2["clock_skew_warning"], true);
    let c1 = cluster(&document, "c1");
    assert!(number(&c1["clock_offset_ms"]).abs() < 300.0, "{c1}");
    assert_eq!(c1["clock_skew_warning"], false);

    // Once the restarted replica has reconnected (MySQL's takes a few hundred
    // milliseconds), our lag holds under the gate although its clock is 5 s off.
    lab.cutover()
        .args(["lag", "--wait", "--max-lag-ms", "200", "--sustained", "1s"])
        .args(["--timeout", "10s"])
        .arg(&plan)
        .assert()
        .success();
    let output = lab
        .cutover()
        .args(["lag", "--output", "json"])
        .arg(&plan)
        .output()
        .unwrap();
    let lag = stdout_json(&output);
    let c2 = cluster(&lag, "c2");
    assert!(number(&c2["lag_ms"]) < 200.0, "{c2}");
    // What a timestamp heartbeat (pt-heartbeat) would say for the same replica.
    let timestamp_lag = number(&c2["timestamp_lag_ms"]);
    assert!(timestamp_lag > 4000.0, "{c2}");
    assert!(number(&cluster(&lag, "c1")["timestamp_lag_ms"]).abs() < 1000.0);
}

#[test]
fn lab_errant_transaction_is_reported_on_its_replica() {
    errant_transaction_is_reported_on_its_replica(Flavor::MariaDb);
}

#[test]
fn lab_mysql_errant_transaction_is_reported_on_its_replica() {
    errant_transaction_is_reported_on_its_replica(Flavor::MySql);
}

fn errant_transaction_is_reported_on_its_replica(flavor: Flavor) {
    let lab = LabFixture::up_as(flavor, 2000);
    let plan = lab.plan("plan.yaml", &[]);
    match flavor {
        Flavor::MariaDb => lab.admin_exec(
            "127.0.0.13",
            &[
                "SET SESSION sql_log_bin = 1",
                "CREATE DATABASE errant_write",
            ],
        ),
        // A tagged GTID (MySQL 8.3+), past super_read_only as an admin might.
        Flavor::MySql => lab.admin_exec(
            "127.0.0.13",
            &[
                "SET GLOBAL super_read_only = OFF",
                "SET SESSION gtid_next = 'AUTOMATIC:errant'",
                "CREATE DATABASE errant_write",
                "SET SESSION gtid_next = 'AUTOMATIC'",
                "SET GLOBAL super_read_only = ON",
            ],
        ),
    }
    let (document, code) = topology(&lab, &plan);
    assert_eq!(code, 4, "{document}");
    let errant = cluster(&document, "c3")["errant_gtids"]
        .as_str()
        .unwrap()
        .to_string();
    match flavor {
        Flavor::MariaDb => assert!(errant.starts_with("0-13-"), "{errant}"),
        Flavor::MySql => assert!(
            errant.len() > 36 && errant[36..] == *":errant:1",
            "{errant}"
        ),
    }
    for name in ["legacy", "c1", "c2", "c6"] {
        assert!(cluster(&document, name)["errant_gtids"].is_null());
    }
    lab.cutover()
        .arg("topology")
        .arg(&plan)
        .assert()
        .code(4)
        .stdout(predicates::str::contains(format!(
            "c3: errant transactions (not on its source legacy): {errant}"
        )));
}

#[test]
fn lab_blackholed_and_stopped_clusters_are_unreachable_without_hanging() {
    blackholed_and_stopped_clusters_are_unreachable_without_hanging(Flavor::MariaDb);
}

#[test]
fn lab_mysql_blackholed_and_stopped_clusters_are_unreachable_without_hanging() {
    blackholed_and_stopped_clusters_are_unreachable_without_hanging(Flavor::MySql);
}

fn blackholed_and_stopped_clusters_are_unreachable_without_hanging(flavor: Flavor) {
    let lab = LabFixture::up_as(flavor, 2000);
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let holding = Arc::clone(&done);
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && !holding.load(Ordering::SeqCst) {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let plan = lab.plan(
        "plan.yaml",
        &[PlanCluster {
            name: "c3",
            host: "127.0.0.1",
            port,
            extra: "",
        }],
    );
    let started = Instant::now();
    let (document, code) = topology(&lab, &plan);
    let elapsed = started.elapsed();
    assert_eq!(code, 1);
    // connect_timeout_ms is 1000 in the plan: timeout + 1 s at most.
    assert!(elapsed < Duration::from_millis(2000), "took {elapsed:?}");
    let c3 = cluster(&document, "c3");
    assert_eq!(c3["reachable"], false);
    let error = c3["error"].as_str().unwrap();
    assert!(
        error.contains("cluster `c3`") && error.contains("timed out after 1000 ms"),
        "{error}"
    );
    for name in ["legacy", "c1", "c2", "c6"] {
        assert_eq!(cluster(&document, name)["reachable"], true);
    }

    // A killed server: refused at once, reported with the connection error.
    let status = lab
        .cutover()
        .args(["lab", "status", "--output", "json", "--dir"])
        .arg(lab.lab_dir())
        .output()
        .unwrap();
    let pid = stdout_json(&status)["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "c6")
        .and_then(|p| p["pid"].as_u64())
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let plan = lab.plan("plan-all.yaml", &[]);
    let (document, code) = topology(&lab, &plan);
    assert_eq!(code, 1);
    let error = cluster(&document, "c6")["error"].as_str().unwrap();
    assert!(
        error.contains("cluster `c6`") && error.contains("cannot connect"),
        "{error}"
    );
    assert!(error.to_lowercase().contains("refused"), "{error}");
    assert_eq!(cluster(&document, "c1")["reachable"], true);
    done.store(true, Ordering::SeqCst);
    holder.join().unwrap();
}
