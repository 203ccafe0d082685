//! The state store's own suite, run on both backends: an SQLite file in a
//! temporary directory, and the lab's PostgreSQL (a database of its own per
//! test). Each case is one function over a `Store`; `store_cases!` makes a
//! test of it per backend.

use std::path::Path;

use cutover::lab::postgres::LabPostgres;
use cutover::outcome::{ExitCode, exit_code};
use std::time::Duration;

use cutover::store::{
    AuditEntry, AuditVerification, Event, EventKind, PlanLock, RunStatus, Store, StoreError,
};

use crate::harness::{Sandbox, runtime};

/// A fresh store of each kind for one case.
async fn sqlite(sandbox: &Sandbox) -> Store {
    Store::open(&sandbox.path().join("state")).await.unwrap()
}

/// The lab's PostgreSQL for one test, stopped and removed however it ends.
struct Server(LabPostgres);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.remove();
    }
}

async fn postgres(sandbox: &Sandbox, case: &str) -> (Server, Store) {
    let server = Server(LabPostgres::new(sandbox.path()));
    let server_ref = &server.0;
    let password = "store-suite-password";
    server_ref.start(password).await.unwrap();
    server_ref.create(password, case).await.unwrap();
    let store = Store::open_shared(&LabPostgres::url_of(password, case))
        .await
        .unwrap();
    (server, store)
}

macro_rules! store_cases {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $case() {
                    let sandbox = crate::harness::Sandbox::new();
                    crate::harness::runtime().block_on(async {
                        let store = super::sqlite(&sandbox).await;
                        super::$case(&store).await;
                        store.close().await;
                    });
                }
            )*
        }
        mod lab_on_postgres {
            $(
                #[test]
                fn $case() {
                    let sandbox = crate::harness::Sandbox::new();
                    crate::harness::runtime().block_on(async {
                        let (server, store) = super::postgres(&sandbox, stringify!($case)).await;
                        super::$case(&store).await;
                        store.close().await;
                        assert!(server.0.remove(), "the lab's PostgreSQL stops");
                    });
                }
            )*
        }
    };
}

store_cases!(
    a_second_holder_of_the_plan_lock_is_refused_with_exit_3,
    a_lock_whose_process_is_gone_is_taken_over,
    a_lock_held_on_another_host_is_not_taken_over,
    an_untouched_audit_chain_verifies,
    an_edited_audit_entry_is_detected,
    a_deleted_audit_entry_is_detected,
    a_deleted_last_entry_is_detected,
    a_rewritten_chain_with_a_forged_hash_is_detected,
    the_journal_records_intent_and_result_and_reads_on_from_an_event,
    drills_schedules_and_misses_are_kept,
    snapshot_progress_is_kept_per_target_and_table,
    a_lease_takes_a_higher_epoch_each_time_and_its_holder_renews_it,
    an_expired_lease_is_taken_over_and_the_old_holder_can_write_nothing,
    a_live_lease_of_another_host_is_refused_with_its_expiry,
);

async fn a_second_holder_of_the_plan_lock_is_refused_with_exit_3(store: &Store) {
    let lock = store
        .acquire_plan_lock("lab-switchover", "run-a")
        .await
        .unwrap();
    let refused = store
        .acquire_plan_lock("lab-switchover", "run-b")
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("locked by run run-a"), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert_eq!(exit_code(refused.kind()), ExitCode::Refused);
    assert!(refused.hint().unwrap().contains("cutover status run-a"));
    // Another plan is independent.
    let other = store
        .acquire_plan_lock("lab-migration", "run-c")
        .await
        .unwrap();
    store.release_plan_lock(lock).await.unwrap();
    store.release_plan_lock(other).await.unwrap();
    let again = store
        .acquire_plan_lock("lab-switchover", "run-d")
        .await
        .unwrap();
    assert_eq!(again.run_id, "run-d");
}

async fn a_lock_whose_process_is_gone_is_taken_over(store: &Store) {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    store
        .execute_unchecked(format!(
            "INSERT INTO plan_locks (plan_name, run_id, actor, host, pid, pid_start_time, acquired_at)
             VALUES ('p', 'crashed-run', 'someone', '{host}', {dead_pid}, 1, 'then')"
        ))
        .await
        .unwrap();
    let lock = store.acquire_plan_lock("p", "new-run").await.unwrap();
    assert_eq!(lock.run_id, "new-run");
}

async fn a_lock_held_on_another_host_is_not_taken_over(store: &Store) {
    store
        .execute_unchecked(
            "INSERT INTO plan_locks (plan_name, run_id, actor, host, pid, pid_start_time, acquired_at)
             VALUES ('p', 'remote-run', 'ops@db-bastion', 'db-bastion', 1, NULL, 'then')"
                .into(),
        )
        .await
        .unwrap();
    let error = store.acquire_plan_lock("p", "mine").await.unwrap_err();
    assert!(error.to_string().contains("on db-bastion"), "{error}");
}

async fn audited(store: &Store) {
    for (index, action) in ["SET GLOBAL read_only = 1", "STOP SLAVE", "DNS CAS"]
        .iter()
        .enumerate()
    {
        let seq = store
            .audit(&AuditEntry {
                run_id: Some("run-1".into()),
                step: Some(format!("step-{index}")),
                target: "c1".into(),
                action: action.to_string(),
                result: "ok".into(),
            })
            .await
            .unwrap();
        assert_eq!(seq, index as i64 + 1);
    }
}

/// Three chained entries, changed behind the store's back by `tampering`, then verified.
async fn verify_after(store: &Store, tampering: &str) -> AuditVerification {
    audited(store).await;
    store.execute_unchecked(tampering.into()).await.unwrap();
    store.verify_audit().await.unwrap()
}

async fn an_untouched_audit_chain_verifies(store: &Store) {
    audited(store).await;
    let verification = store.verify_audit().await.unwrap();
    assert!(verification.intact, "{verification:?}");
    assert_eq!(verification.entries, 3);
    let entries = store.audit_entries(2).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 3],
        "the last two, oldest first"
    );
}

async fn an_edited_audit_entry_is_detected(store: &Store) {
    let verification = verify_after(
        store,
        "UPDATE audit_log SET result = 'failed' WHERE seq = 2",
    )
    .await;
    assert!(!verification.intact);
    assert_eq!(verification.problems.len(), 1, "{verification:?}");
    assert_eq!(verification.problems[0].seq, Some(2));
    assert!(verification.problems[0].problem.contains("modified"));
}

async fn a_deleted_audit_entry_is_detected(store: &Store) {
    let verification = verify_after(store, "DELETE FROM audit_log WHERE seq = 2").await;
    assert!(!verification.intact);
    assert!(
        verification
            .problems
            .iter()
            .any(|p| p.problem.contains("missing")),
        "{verification:?}"
    );
}

async fn a_deleted_last_entry_is_detected(store: &Store) {
    let verification = verify_after(store, "DELETE FROM audit_log WHERE seq = 3").await;
    assert!(!verification.intact);
    assert!(
        verification
            .problems
            .iter()
            .any(|p| p.problem.contains("last 1 entry")),
        "{verification:?}"
    );
    // The next entry does not reuse the deleted number.
    let seq = store
        .audit(&AuditEntry {
            run_id: None,
            step: None,
            target: "c1".into(),
            action: "after the deletion".into(),
            result: "ok".into(),
        })
        .await
        .unwrap();
    assert_eq!(seq, 4);
}

async fn a_rewritten_chain_with_a_forged_hash_is_detected(store: &Store) {
    // Edit the entry and replace only its own hash: the next link breaks.
    let verification = verify_after(
        store,
        "UPDATE audit_log SET action = 'nothing', hash = 'forged' WHERE seq = 1",
    )
    .await;
    assert!(!verification.intact);
    assert!(verification.problems.len() >= 2, "{verification:?}");
}

fn lab_switchover_plan() -> cutover::plan::ValidatedPlan {
    cutover::plan::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/lab-switchover.yaml"))
        .unwrap()
}

async fn the_journal_records_intent_and_result_and_reads_on_from_an_event(store: &Store) {
    let plan = lab_switchover_plan();
    let run = store.create_run(&plan, false).await.unwrap();
    let positions = serde_json::json!({"frozen_gtid": "0-10-99"});
    let intent = store
        .record(
            &run.run_id,
            Event::new(EventKind::Intent)
                .phase("cutover")
                .step("switchover-c1.freeze")
                .cluster(Some("legacy")),
        )
        .await
        .unwrap();
    store
        .record(
            &run.run_id,
            Event::new(EventKind::Result)
                .phase("cutover")
                .step("switchover-c1.freeze")
                .cluster(Some("legacy"))
                .positions(&positions)
                .message("ok"),
        )
        .await
        .unwrap();
    let events = store.events(&run.run_id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["kind"], "intent");
    assert_eq!(events[1]["positions"]["frozen_gtid"], "0-10-99");
    let later = store.events_after(&run.run_id, intent).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["message"], "ok");
    let recorded = store.run(&run.run_id).await.unwrap();
    assert_eq!(recorded.status, RunStatus::Running);
    assert!(!recorded.dry_run);
    assert_eq!(recorded.phases.len(), 2);
    assert_eq!(recorded.phases[1].steps.len(), 8);
    store.mark_point_of_no_return(&run.run_id).await.unwrap();
    store
        .finish_run(&run.run_id, RunStatus::Completed, Some("done"))
        .await
        .unwrap();
    let finished = store.run(&run.run_id).await.unwrap();
    assert!(finished.point_of_no_return);
    assert_eq!(finished.status, RunStatus::Completed);
    assert_eq!(finished.detail.as_deref(), Some("done"));
    assert_eq!(store.runs(5).await.unwrap().len(), 1);
    let unknown = store.run("no-such-run").await.unwrap_err();
    assert_eq!(exit_code(unknown.kind()), ExitCode::InvalidInput);
}

async fn drills_schedules_and_misses_are_kept(store: &Store) {
    store
        .save_drill_schedule("/plans/dr.yaml", "dr", "*/10 * * * * *", "UTC")
        .await
        .unwrap();
    store
        .set_drill_due("/plans/dr.yaml", "2026-12-01T10:00:00Z")
        .await
        .unwrap();
    let schedules = store.drill_schedules().await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert_eq!(
        schedules[0].last_due_at.as_deref(),
        Some("2026-12-01T10:00:00Z")
    );
    store
        .record_drill_miss(
            "/plans/dr.yaml",
            "2026-12-01T10:00:10Z",
            "the daemon was not running",
        )
        .await
        .unwrap();
    let misses = store.drill_misses(10).await.unwrap();
    assert_eq!(misses.len(), 1);
    assert_eq!(misses[0].reason, "the daemon was not running");
    for (id, started) in [
        ("d-1", "2026-12-01T10:00:00Z"),
        ("d-2", "2026-12-01T11:00:00Z"),
    ] {
        store
            .record_drill(
                &cutover::store::DrillRecord {
                    drill_id: id.into(),
                    plan: "dr".into(),
                    failure: "crash".into(),
                    started_at: started.into(),
                    status: "passed".into(),
                    primary: "legacy".into(),
                    promoted: Some("c1".into()),
                    rto_ms: Some(1500),
                    rto_target_ms: None,
                    rpo_ms: 0,
                    rpo_target_ms: Some(0),
                    lost_writes: 0,
                    report_dir: None,
                },
                &serde_json::json!({"status": "passed"}),
            )
            .await
            .unwrap();
    }
    let newest = store.drills(Some("dr"), 1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].drill_id, "d-2");
    assert_eq!(store.drills(None, 10).await.unwrap()[0].drill_id, "d-1");
    assert!(store.remove_drill_schedule("/plans/dr.yaml").await.unwrap());
    assert!(!store.remove_drill_schedule("/plans/dr.yaml").await.unwrap());
}

async fn snapshot_progress_is_kept_per_target_and_table(store: &Store) {
    let plan = lab_switchover_plan();
    let run = store.create_run(&plan, false).await.unwrap();
    let entry = |target: &str, loaded: &str| cutover::store::SnapshotProgress {
        target: target.into(),
        table: "refunds.transactions".into(),
        loaded: loaded.into(),
    };
    store
        .save_snapshot_progress(
            &run.run_id,
            "snapshot",
            &[entry("c1", "[1]"), entry("c2", "[1]")],
        )
        .await
        .unwrap();
    store
        .save_snapshot_progress(&run.run_id, "snapshot", &[entry("c1", "[1,2]")])
        .await
        .unwrap();
    let progress = store
        .snapshot_progress(&run.run_id, "snapshot")
        .await
        .unwrap();
    assert_eq!(progress, [entry("c1", "[1,2]"), entry("c2", "[1]")]);
    store
        .clear_snapshot_progress(&run.run_id, "snapshot")
        .await
        .unwrap();
    assert!(
        store
            .snapshot_progress(&run.run_id, "snapshot")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_lease_takes_a_higher_epoch_each_time_and_its_holder_renews_it(store: &Store) {
    let first = store.acquire_plan_lock("p", "run-a").await.unwrap();
    let left = store.plan_lock_remaining(&first).await.unwrap();
    assert!(
        left > Duration::from_secs(25) && left <= Duration::from_secs(30),
        "{left:?}"
    );
    assert_eq!(
        store.renew_plan_lock(&first).await.unwrap(),
        Duration::from_secs(30)
    );
    store.release_plan_lock(first.clone()).await.unwrap();
    let second = store.acquire_plan_lock("p", "run-b").await.unwrap();
    assert!(second.epoch > first.epoch, "{first:?} then {second:?}");
    // The released holder's token is spent: nothing it renews or writes counts.
    assert!(matches!(
        store.renew_plan_lock(&first).await,
        Err(StoreError::LeaseLost { .. })
    ));
}

/// Move `lock`'s lease to another host, with `expires_in_ms` left by the
/// store's clock (negative: expired).
async fn held_elsewhere(store: &Store, lock: &PlanLock, expires_in_ms: i64) {
    let left = store.plan_lock_remaining(lock).await.unwrap().as_millis() as i64;
    store
        .execute_unchecked(format!(
            "UPDATE plan_locks SET host = 'host-a', expires_at_ms = expires_at_ms - {} WHERE plan_name = '{}'",
            left - expires_in_ms,
            lock.plan
        ))
        .await
        .unwrap();
}

async fn an_expired_lease_is_taken_over_and_the_old_holder_can_write_nothing(store: &Store) {
    let plan = lab_switchover_plan();
    let run = store.create_run(&plan, false).await.unwrap();
    let old = store
        .acquire_plan_lock(&plan.name, &run.run_id)
        .await
        .unwrap();
    let old_holder = store.fenced_by(&old);
    old_holder
        .record(&run.run_id, Event::new(EventKind::Note).message("before"))
        .await
        .unwrap();
    held_elsewhere(store, &old, -1).await;
    let new = store
        .acquire_plan_lock(&plan.name, &run.run_id)
        .await
        .unwrap();
    assert!(new.epoch > old.epoch);
    let new_holder = store.fenced_by(&new);
    // The deposed holder: no journal write, no step status, no renewal.
    let refused = old_holder
        .record(&run.run_id, Event::new(EventKind::Note).message("after"))
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::LeaseLost { .. }), "{refused}");
    assert_eq!(exit_code(refused.kind()), ExitCode::Refused);
    assert!(refused.to_string().contains(&run.run_id), "{refused}");
    assert!(matches!(
        old_holder
            .finish_run(&run.run_id, RunStatus::Failed, None)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.renew_plan_lock(&old).await,
        Err(StoreError::LeaseLost { .. })
    ));
    new_holder
        .record(
            &run.run_id,
            Event::new(EventKind::Note).message("taken over"),
        )
        .await
        .unwrap();
    let messages: Vec<String> = store
        .events(&run.run_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(messages, ["before", "taken over"]);
    assert_eq!(
        store.run(&run.run_id).await.unwrap().status,
        RunStatus::Running
    );
}

async fn a_live_lease_of_another_host_is_refused_with_its_expiry(store: &Store) {
    let lock = store.acquire_plan_lock("p", "run-a").await.unwrap();
    held_elsewhere(store, &lock, 20_000).await;
    let refused = store.acquire_plan_lock("p", "run-b").await.unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("on host-a"), "{text}");
    assert!(
        text.contains("lease expires in 19.") || text.contains("lease expires in 20.0"),
        "{text}"
    );
    assert_eq!(exit_code(refused.kind()), ExitCode::Refused);
}

/// Bad input for a shared store: each a one-line error naming what to fix,
/// with the password never shown.
#[test]
fn lab_a_shared_store_that_cannot_be_used_says_why_in_one_line() {
    let sandbox = Sandbox::new();
    runtime().block_on(async {
        let guard = Server(LabPostgres::new(sandbox.path()));
        let server = &guard.0;
        server.start("the-right-password").await.unwrap();
        let cases = [
            (
                LabPostgres::url_of("a-wrong-password", "cutover"),
                "refused the user and password",
            ),
            (
                LabPostgres::url_of("the-right-password", "no_such_database"),
                "does not exist",
            ),
            (
                "postgres://cutover:the-right-password@127.0.0.41:15432/cutover".to_string(),
                "connection refused",
            ),
            (
                "postgres://cutover:the-right-password@127.0.0.40:notaport/cutover".to_string(),
                "not a PostgreSQL URL",
            ),
        ];
        for (url, expected) in cases {
            let Err(error) = Store::open_shared(&url).await else {
                panic!("{url} opened");
            };
            let text = error.to_string();
            assert!(text.contains(expected), "{text}");
            assert!(
                !text.contains("password@") && !text.contains("-password"),
                "{text}"
            );
            assert_eq!(exit_code(error.kind()), ExitCode::InvalidInput, "{text}");
            assert!(error.hint().is_some());
        }
        // Tables set up by a newer cutover.
        server.create("the-right-password", "newer").await.unwrap();
        let url = LabPostgres::url_of("the-right-password", "newer");
        let store = Store::open_shared(&url).await.unwrap();
        store
            .execute_unchecked(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES (99, 'from the future', TRUE, '\\x00', 0)"
                    .into(),
            )
            .await
            .unwrap();
        store.close().await;
        let Err(error) = Store::open_shared(&url).await else {
            panic!("a store from a newer cutover opened");
        };
        assert!(error.to_string().contains("newer cutover"), "{error}");
        assert_eq!(exit_code(error.kind()), ExitCode::InvalidInput, "{error}");
        assert!(server.remove());
    });
}
