//! A switchover as a real pooled application lives it: SQLAlchemy's
//! QueuePool over PyMySQL (tests/clients/pooled_writer.py), persistent
//! connections through the DNS name, resolved by the system resolver inside a
//! private mount namespace whose /etc/resolv.conf names the lab's ns1. A pool
//! drops a connection only on a disconnect error, so it follows a switchover
//! only if the demoted primary's sessions are ended.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::{Flavor, LabFixture, repo_root, stdout_json};
use crate::lab_cutover::{assert_primary, run_json};

pub(crate) struct PooledClient {
    child: Child,
}

impl PooledClient {
    /// The client writing for at most `limit`, resolving through ns1 only.
    pub(crate) fn start(fx: &LabFixture, limit: Duration) -> PooledClient {
        let resolv = fx.sandbox.write("resolv.conf", "nameserver 127.0.0.2\n");
        let script = repo_root().join("tests/clients/pooled_writer.py");
        let child = std::process::Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(format!(
                "mount --bind {} /etc/resolv.conf && exec /usr/bin/python3 {} \
                 --host refunds-primary.bank.internal --port 13306 --user refunds_app \
                 --password-env CUTOVER_LAB_APP_PASSWORD --threads 4 --duration {}",
                resolv.display(),
                script.display(),
                limit.as_secs()
            ))
            .env(
                "CUTOVER_LAB_APP_PASSWORD",
                fx.var("CUTOVER_LAB_APP_PASSWORD"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare and /usr/bin/python3 (scripts/install-deps installs them)");
        std::thread::sleep(Duration::from_millis(1500));
        PooledClient { child }
    }

    pub(crate) fn finish(self) -> serde_json::Value {
        let output = crate::harness::terminate(self.child);
        assert!(
            output.status.success(),
            "pooled client: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout_json(&output)
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
fn epoch_ms(text: &str) -> i64 {
    let at = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What the client lived through in one switchover.
#[derive(Debug)]
pub(crate) struct Lived {
    /// The longest time without a commit around the unfreeze.
    pub gap_ms: i64,
    /// From the unfreeze to the first commit on the new primary.
    pub to_new_primary_ms: i64,
    /// Commits on the old primary more than a second after the unfreeze.
    pub late_on_old: usize,
}

/// `commits`: `[ms, server_id]` sorted by time; `until_ms`: the next switchover.
pub(crate) fn lived(
    commits: &[(i64, u64)],
    unfreeze_ms: i64,
    until_ms: i64,
    old: u64,
    new: u64,
) -> Lived {
    let window: Vec<i64> = commits
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| (unfreeze_ms - 3_000..unfreeze_ms + 3_000).contains(at))
        .collect();
    let gap_ms = window
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(6_000);
    let to_new_primary_ms = commits
        .iter()
        .find(|(at, server)| *server == new && *at >= unfreeze_ms - 1_000)
        .map_or(i64::MAX, |(at, _)| at - unfreeze_ms);
    let late_on_old = commits
        .iter()
        .filter(|(at, server)| *server == old && (unfreeze_ms + 1_000..until_ms).contains(at))
        .count();
    Lived {
        gap_ms,
        to_new_primary_ms,
        late_on_old,
    }
}

/// Unfreeze times (ms) of a run, in order, with the cluster each demoted.
fn unfreezes(fx: &LabFixture, run_id: &str) -> Vec<(i64, String)> {
    audited(fx, run_id, |action| {
        action == "UNLOCK TABLES (release fence)"
    })
}

/// When each freeze of a run held its lock (ms), in order: from the next
/// freeze on, the cluster demoted before may be about to become primary again.
fn freezes(fx: &LabFixture, run_id: &str) -> Vec<i64> {
    audited(fx, run_id, |action| {
        action.ends_with("(session-held fence)")
    })
    .into_iter()
    .map(|(at, _)| at)
    .collect()
}

/// The audit entries of a run whose action `wanted` accepts: (ms, target).
fn audited(fx: &LabFixture, run_id: &str, wanted: fn(&str) -> bool) -> Vec<(i64, String)> {
    let output = fx
        .cutover()
        .args(["audit", "log", "--output", "json"])
        .output()
        .unwrap();
    let log = stdout_json(&output);
    let mut out: Vec<(i64, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["run_id"] == run_id && e["action"].as_str().is_some_and(wanted))
        .map(|e| {
            (
                epoch_ms(e["at"].as_str().unwrap()),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn server_id(name: &str) -> u64 {
    match name {
        "legacy" => 10,
        "c1" => 11,
        other => panic!("no server id for {other}"),
    }
}

fn plan(fx: &LabFixture) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("plans/lab-switchover.yaml")).unwrap();
    fx.sandbox.write("switchover.yaml", text)
}

fn switch_and_back(fx: &LabFixture, plan: &Path) -> String {
    let (code, run) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(plan),
    );
    assert_eq!(code, Some(0), "{run}");
    let ended = &run["sessions_ended"];
    assert_eq!(ended[0]["cluster"], "legacy", "{run}");
    assert!(
        ended[0]["sessions"].as_u64().unwrap() >= 4,
        "the pool's four: {run}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (code, back) = run_json(
        fx.cutover()
            .args(["rollback", &run_id, "--yes", "--output", "json"]),
    );
    assert_eq!(code, Some(0), "{back}");
    assert_eq!(back["sessions_ended"][0]["cluster"], "c1", "{back}");
    std::thread::sleep(Duration::from_secs(2));
    run_id
}

#[test]
fn lab_a_pooled_application_follows_every_switchover_and_rollback() {
    a_pooled_application_follows_every_switchover_and_rollback(Flavor::MariaDb);
}

#[test]
fn lab_mysql_a_pooled_application_follows_every_switchover_and_rollback() {
    a_pooled_application_follows_every_switchover_and_rollback(Flavor::MySql);
}

fn a_pooled_application_follows_every_switchover_and_rollback(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 2000);
    let plan = plan(&fx);
    let client = PooledClient::start(&fx, Duration::from_secs(120));
    let started = now_ms();
    let runs = [switch_and_back(&fx, &plan), switch_and_back(&fx, &plan)];
    std::thread::sleep(Duration::from_secs(1));
    let report = client.finish();

    let mut commits: Vec<(i64, u64)> = report["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_i64().unwrap(), c[1].as_u64().unwrap()))
        .collect();
    commits.sort();
    assert!(commits.len() > 1_000, "the client wrote: {}", commits.len());
    assert!(commits[0].0 >= started - 5_000);
    let mut switches = Vec::new();
    let mut fences = Vec::new();
    for run_id in &runs {
        fences.extend(freezes(&fx, run_id));
        let of_run = unfreezes(&fx, run_id);
        assert_eq!(of_run.len(), 2, "forward and reverse: {of_run:?}");
        switches.extend(of_run);
    }
    switches.sort();
    let mut gaps = Vec::new();
    for (unfreeze_ms, demoted) in &switches {
        // Until the next switchover's freeze: its promote may make the
        // demoted cluster primary again, and commits there are then its own.
        let until_ms = fences
            .iter()
            .copied()
            .filter(|at| at > unfreeze_ms)
            .min()
            .unwrap_or(i64::MAX);
        let (old, new) = match demoted.as_str() {
            "legacy" => (10, 11),
            _ => (server_id(demoted), 10),
        };
        let lived = lived(&commits, *unfreeze_ms, until_ms, old, new);
        eprintln!("switch away from {demoted}: {lived:?}");
        assert!(
            lived.to_new_primary_ms <= 1_000,
            "commits on the new primary within 1 s of the unfreeze: {lived:?}"
        );
        assert_eq!(
            lived.late_on_old, 0,
            "nothing lands on the old primary later"
        );
        gaps.push(lived.gap_ms);
    }
    gaps.sort();
    let p50 = (gaps[1] + gaps[2]) / 2;
    eprintln!(
        "client-observed gaps {gaps:?} ms (p50 {p50}), {} errors, {} connections opened",
        report["error_count"], report["connections_opened"]
    );
    assert!(p50 < 300, "p50 gap {p50} ms: {gaps:?}");
    assert!(gaps.iter().all(|gap| *gap < 1_000), "{gaps:?}");

    assert_primary(&fx, &plan, "legacy");
    let (code, checksum) = run_json(
        fx.cutover()
            .args(["checksum", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{checksum}");
}

#[test]
fn lab_sessions_are_left_alone_when_the_plan_says_so() {
    let fx = LabFixture::up();
    // An account to keep that the primary does not have is refused with its line.
    let text = std::fs::read_to_string(repo_root().join("plans/lab-switchover.yaml"))
        .unwrap()
        .replace("gates:\n", "gates:\n  keep_sessions_of: [refunds_batch]\n");
    let line = text
        .lines()
        .position(|l| l.contains("keep_sessions_of"))
        .unwrap()
        + 1;
    let typo = fx.sandbox.write("typo.yaml", text);
    let (code, dry) = run_json(
        fx.cutover()
            .args(["run", "--dry-run", "--output", "json"])
            .arg(&typo),
    );
    assert_eq!(code, Some(3), "{dry}");
    let kept: Vec<&serde_json::Value> = dry["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "kept sessions")
        .collect();
    assert_eq!(kept.len(), 1, "{dry}");
    assert_eq!(kept[0]["status"], "fail");
    let detail = kept[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("typo.yaml:{line}:")) && detail.contains("`refunds_batch`"),
        "{detail}"
    );

    let text = std::fs::read_to_string(repo_root().join("plans/lab-switchover.yaml"))
        .unwrap()
        .replace("gates:\n", "gates:\n  end_old_sessions: false\n");
    let plan = fx.sandbox.write("keep.yaml", text);
    let client = PooledClient::start(&fx, Duration::from_secs(60));
    let (code, run) = run_json(
        fx.cutover()
            .args(["run", "--yes", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(run["sessions_ended"], serde_json::json!([]), "{run}");
    std::thread::sleep(Duration::from_secs(3));
    let report = client.finish();
    // The pool stays on the read-only legacy: exactly the outage the default prevents.
    let unfreeze = unfreezes(&fx, run["run_id"].as_str().unwrap())[0].0;
    let after: Vec<u64> = report["commits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[0].as_i64().unwrap() > unfreeze + 500)
        .map(|c| c[1].as_u64().unwrap())
        .collect();
    assert!(after.is_empty(), "no commit lands anywhere: {after:?}");
    assert!(
        report["error_count"].as_u64().unwrap() > 100,
        "read-only errors"
    );
}
