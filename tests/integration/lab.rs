//! The lab for real: MariaDB replication and BIND9 with TSIG, then a clean teardown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cutover::dns::{self, DnsError, RecordSpec, TsigKey};
use cutover::lab::{Lab, NAMESERVERS, SERVERS};
use cutover::mysql::Session;
use cutover::plan::{DnsRecordType, TsigAlgorithmName};
use cutover::secret::Secret;
use hickory_proto::rr::RecordType;

use crate::harness::{Sandbox, stdout_json};

/// Live (non-zombie) processes whose command line mentions `needle`.
fn live_processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default();
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rfind(')')
                    .map(|i| stat[i + 1..].trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie && cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

async fn wait_for_answer(
    server: SocketAddr,
    expected: &str,
    limit: Duration,
) -> dns::AuthoritativeAnswer {
    let deadline = Instant::now() + limit;
    loop {
        let answer = dns::query_authoritative(
            server,
            "refunds-primary.bank.internal.",
            RecordType::CNAME,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        if answer.values == [expected] || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn lab_replicates_serves_dns_with_tsig_and_tears_down() {
    let sandbox = Sandbox::new();
    let lab_dir = sandbox.path().join("lab");
    let up = sandbox
        .cutover()
        .args([
            "lab",
            "up",
            "--replicating",
            "--rows",
            "2000",
            "--output",
            "json",
            "--dir",
        ])
        .arg(&lab_dir)
        .output()
        .unwrap();
    assert_eq!(
        up.status.code(),
        Some(0),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let status = stdout_json(&up);
    assert!(
        status["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["running"] == true),
        "{status}"
    );

    // Teardown runs even when an assertion below fails.
    struct Down<'a>(&'a Sandbox, std::path::PathBuf);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .cutover()
                .args(["lab", "down", "--dir"])
                .arg(&self.1)
                .output();
        }
    }
    let guard = Down(&sandbox, lab_dir.clone());

    // `up` twice is harmless.
    sandbox
        .cutover()
        .args(["lab", "up", "--replicating", "--rows", "2000", "--dir"])
        .arg(&lab_dir)
        .assert()
        .code(0);

    let env = sandbox
        .cutover()
        .args(["lab", "env", "--dir"])
        .arg(&lab_dir)
        .output()
        .unwrap();
    let env_text = String::from_utf8_lossy(&env.stdout);
    for variable in [
        "CUTOVER_LAB_ADMIN_USER",
        "CUTOVER_LAB_ADMIN_PASSWORD",
        "CUTOVER_LAB_PASSWORD",
        "CUTOVER_LAB_TSIG_SECRET",
    ] {
        assert!(
            env_text.contains(&format!("export {variable}=")),
            "{env_text}"
        );
    }

    let lab = Lab::new(&lab_dir);
    let secrets = lab.secrets().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // A write on legacy reaches every cluster.
        let marker = format!("lab-test-{}", std::process::id());
        let mut legacy = Session::connect(&SERVERS[0].admin_endpoint(&secrets)).await.unwrap();
        legacy
            .exec(
                "write a marker row",
                &format!(
                    "INSERT INTO refunds.refund_audit_trail (txn_id, event, actor, recorded_at) VALUES (1, 'LABTEST', '{marker}', NOW(6))"
                ),
            )
            .await
            .unwrap();
        let position: String = legacy.query_first("position", "SELECT @@GLOBAL.gtid_binlog_pos").await.unwrap().unwrap();
        legacy.close().await;
        for replica in &SERVERS[1..] {
            let mut session = Session::connect(&replica.admin_endpoint(&secrets)).await.unwrap();
            let waited: Option<i64> = session
                .query_first("wait", &format!("SELECT MASTER_GTID_WAIT('{position}', 20)"))
                .await
                .unwrap();
            assert_eq!(waited, Some(0), "{} caught up", replica.name);
            let count: Option<i64> = session
                .query_first(
                    "read the marker",
                    &format!("SELECT COUNT(*) FROM refunds.refund_audit_trail WHERE actor = '{marker}'"),
                )
                .await
                .unwrap();
            assert_eq!(count, Some(1), "{} has the write", replica.name);
            let read_only: Option<i64> = session.query_first("read_only", "SELECT @@GLOBAL.read_only").await.unwrap();
            assert_eq!(read_only, Some(1), "{} is a read-only replica", replica.name);
            session.close().await;
        }

        // Both name servers answer legacy authoritatively.
        for nameserver in NAMESERVERS {
            let answer = wait_for_answer(nameserver.address(), "legacy.bank.internal.", Duration::from_secs(5)).await;
            assert!(answer.authoritative, "{} AA bit", nameserver.name);
            assert_eq!(answer.values, ["legacy.bank.internal."], "{}", nameserver.name);
        }

        let spec = RecordSpec {
            zone: "bank.internal.".into(),
            record: "refunds-primary.bank.internal.".into(),
            record_type: DnsRecordType::Cname,
            ttl: 5,
        };
        let key = TsigKey {
            name: "cutover-lab".into(),
            algorithm: TsigAlgorithmName::HmacSha256,
            secret: Secret::new(secrets.tsig.clone()),
        };
        let ns1 = NAMESERVERS[0].address();
        let timeout = Duration::from_secs(3);

        // Unsigned: refused, nothing changes.
        let unsigned = dns::compare_and_swap(ns1, &spec, "legacy.bank.internal.", "c1.bank.internal.", None, timeout).await;
        assert!(matches!(unsigned, Err(DnsError::Refused { .. })), "{unsigned:?}");

        // Wrong secret: reported as a TSIG authentication failure.
        let wrong = TsigKey {
            secret: Secret::new("d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZw=="),
            ..key.clone()
        };
        let rejected = dns::compare_and_swap(ns1, &spec, "legacy.bank.internal.", "c1.bank.internal.", Some(&wrong), timeout).await;
        assert!(matches!(rejected, Err(DnsError::TsigAuth { .. })), "{rejected:?}");
        assert_eq!(
            wait_for_answer(ns1, "legacy.bank.internal.", Duration::ZERO).await.values,
            ["legacy.bank.internal."]
        );

        // Signed compare-and-swap with a stale expectation: not applied.
        let stale = dns::compare_and_swap(ns1, &spec, "c2.bank.internal.", "c1.bank.internal.", Some(&key), timeout).await;
        assert!(matches!(stale, Err(DnsError::NotExpected { .. })), "{stale:?}");

        // Signed and expected: applied, and the secondary follows through NOTIFY/IXFR.
        let serial_before = dns::soa_serial(ns1, "bank.internal.", timeout).await.unwrap();
        dns::compare_and_swap(ns1, &spec, "legacy.bank.internal.", "c1.bank.internal.", Some(&key), timeout)
            .await
            .unwrap();
        for nameserver in NAMESERVERS {
            let answer = wait_for_answer(nameserver.address(), "c1.bank.internal.", Duration::from_secs(15)).await;
            assert_eq!(answer.values, ["c1.bank.internal."], "{} follows the update", nameserver.name);
            assert!(answer.authoritative);
        }
        let serial_ns1 = dns::soa_serial(ns1, "bank.internal.", timeout).await.unwrap();
        let serial_ns2 = dns::soa_serial(NAMESERVERS[1].address(), "bank.internal.", timeout).await.unwrap();
        assert!(serial_ns1 > serial_before);
        assert_eq!(serial_ns1, serial_ns2, "secondary has the primary's serial");
    });

    drop(guard);
    let lab_path = lab_dir.display().to_string();
    assert!(!lab_dir.exists(), "lab directory removed");
    let left = live_processes_mentioning(&lab_path);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
