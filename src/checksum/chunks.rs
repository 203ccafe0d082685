//! The chunks' part of a checksum: the key walk feeding the workers, their
//! outcomes tallied as they come, and where the time went.

use super::*;

/// What comparing the chunks gave: the tally, and where the time went.
pub(super) struct Compared {
    pub(super) tally: Tally,
    pub(super) stats: super::stats::Collector,
    pub(super) elapsed: Duration,
    pub(super) key_walk: Duration,
}

/// Walk keys into chunks on the source and let the workers hash each chunk
/// on every participant at once, tallying outcomes as they come.
pub(super) async fn compare_chunks(
    shared: &Arc<Shared>,
    walker: Session,
    reference_source: usize,
    slots: Vec<Slot>,
    workers: usize,
    options: &ChecksumOptions,
) -> Compared {
    let started = Instant::now();
    let progress = crate::progress::Progress::new(
        &schema::sizes(&shared.tables),
        options.progress,
        "checksum",
    );
    let (job_sender, job_receiver) = mpsc::channel(workers * 2);
    let job_receiver = Arc::new(tokio::sync::Mutex::new(job_receiver));
    let (outcome_sender, mut outcome_receiver) = mpsc::channel(workers * 4);
    let walk = tokio::spawn(compare::walk(
        shared.clone(),
        walker,
        reference_source,
        job_sender,
    ));
    let mut worker_tasks = Vec::new();
    for slot in slots {
        worker_tasks.push(tokio::spawn(compare::work(
            shared.clone(),
            slot,
            job_receiver.clone(),
            outcome_sender.clone(),
        )));
    }
    drop(outcome_sender);
    let mut tally = Tally::new(shared);
    let mut stats = super::stats::Collector::new(shared.participants.len());
    while let Some(outcome) = outcome_receiver.recv().await {
        progress.advance(outcome.table, outcome.rows, 0);
        stats.chunk(outcome.rows, outcome.held, &outcome.first_pass);
        tally.add(shared, outcome);
    }
    let elapsed = started.elapsed();
    progress.finish();
    let mut key_walk = Duration::ZERO;
    if let Ok((walker, walking)) = walk.await {
        key_walk = walking;
        walker.close().await;
    }
    for task in worker_tasks {
        if let Ok(slot) = task.await {
            for session in slot.sessions.into_iter().flatten() {
                session.close().await;
            }
        }
    }
    Compared {
        tally,
        stats,
        elapsed,
        key_walk,
    }
}
