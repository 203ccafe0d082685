//! Resuming an interrupted snapshot from the journal.
//!
//! While it loads, the snapshot journals per target and table how far the
//! rows are in: every chunk up to a key (`up_to`), or the whole table. The
//! first snapshot's consistent view died with the process, so a resume takes a
//! new one and, per target and table:
//! - checks each chunk the journal says is in against the new snapshot (one
//!   checksum per side) and reloads only the chunks that differ;
//! - deletes whatever lies beyond the journaled key (a chunk loaded but not yet
//!   journaled, a half-written one) and loads the rest as usual.
//!
//! Nothing relies on the journal being exact: what it claims is checked, and
//! what it does not claim is cleared, so no row is duplicated or stale.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::store::{SnapshotProgress, Store, StoreError};
use crate::tables::chunk::{Key, Range};

/// The journal's table name for "this target passed the empty-target check".
const PREPARED: &str = "*";

/// How far one target's copy of one table got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "loaded")]
pub enum Loaded {
    /// Every row of the table.
    All,
    /// Every row whose key is at most `up_to`.
    UpTo { up_to: Key },
}

/// Where a snapshot step journals its progress.
#[derive(Clone)]
pub struct Journal {
    pub store: Store,
    pub run_id: String,
    /// `phase/step`: one run may hold several snapshot steps.
    pub step: String,
}

/// What the journal holds for an interrupted snapshot.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// Targets that passed the empty-target check (they hold only our rows).
    pub prepared: Vec<String>,
    /// `(target, table)` → how far its rows are in.
    pub loaded: HashMap<(String, String), Loaded>,
}

impl Journal {
    pub async fn read(&self) -> Result<Recorded, StoreError> {
        let mut recorded = Recorded::default();
        for entry in self
            .store
            .snapshot_progress(&self.run_id, &self.step)
            .await?
        {
            if entry.table == PREPARED {
                recorded.prepared.push(entry.target);
            } else if let Ok(loaded) = serde_json::from_str::<Loaded>(&entry.loaded) {
                recorded.loaded.insert((entry.target, entry.table), loaded);
            }
        }
        Ok(recorded)
    }

    pub async fn prepared(&self, targets: &[String]) -> Result<(), StoreError> {
        let entries: Vec<SnapshotProgress> = targets
            .iter()
            .map(|target| SnapshotProgress {
                target: target.clone(),
                table: PREPARED.to_string(),
                loaded: "prepared".to_string(),
            })
            .collect();
        self.store
            .save_snapshot_progress(&self.run_id, &self.step, &entries)
            .await
    }

    pub async fn save(&self, entries: &[(String, String, Loaded)]) -> Result<(), StoreError> {
        let entries: Vec<SnapshotProgress> = entries
            .iter()
            .map(|(target, table, loaded)| SnapshotProgress {
                target: target.clone(),
                table: table.clone(),
                loaded: serde_json::to_string(loaded).expect("serialisable"),
            })
            .collect();
        self.store
            .save_snapshot_progress(&self.run_id, &self.step, &entries)
            .await
    }

    /// A new snapshot starts: what an earlier one journaled no longer applies.
    pub async fn clear(&self) -> Result<(), StoreError> {
        self.store
            .clear_snapshot_progress(&self.run_id, &self.step)
            .await
    }
}

/// What a resumed snapshot does with one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableResume {
    /// The part of the table whose chunks are checked, not blindly loaded:
    /// `None` when no target keeps anything.
    pub zone: Option<Loaded>,
    /// Per target: it keeps its rows in `zone` (checked chunk by chunk) and
    /// loses everything beyond; a target that does not keep is emptied.
    pub keeps: Vec<bool>,
}

impl TableResume {
    /// A table loaded from scratch everywhere.
    pub fn fresh(targets: usize) -> TableResume {
        TableResume {
            zone: None,
            keeps: vec![false; targets],
        }
    }

    /// The key ranges to walk, each with the targets that check it: the
    /// checked zone first, then the rest of the table (loaded everywhere).
    pub fn ranges(&self) -> Vec<(Range, Vec<bool>)> {
        let nobody = vec![false; self.keeps.len()];
        match &self.zone {
            None => vec![(Range::all(), nobody)],
            Some(Loaded::All) => vec![(Range::all(), self.keeps.clone())],
            Some(Loaded::UpTo { up_to }) => vec![
                (
                    Range {
                        after: None,
                        up_to: Some(up_to.clone()),
                    },
                    self.keeps.clone(),
                ),
                (
                    Range {
                        after: Some(up_to.clone()),
                        up_to: None,
                    },
                    nobody,
                ),
            ],
        }
    }
}

/// Choose, for one table, the journaled progress most targets share; those
/// targets keep their rows up to it, the others start the table again. (Every
/// healthy target takes every chunk, so they normally agree; one that failed
/// part-way is the usual odd one out.) A keyless table is kept only whole.
pub fn plan_table(
    table: &str,
    targets: &[String],
    keyed: bool,
    recorded: &Recorded,
) -> TableResume {
    let progress: Vec<Option<&Loaded>> = targets
        .iter()
        .map(|target| {
            recorded
                .loaded
                .get(&(target.clone(), table.to_string()))
                .filter(|loaded| keyed || **loaded == Loaded::All)
        })
        .collect();
    let mut best: Option<(&Loaded, usize)> = None;
    for candidate in progress.iter().flatten() {
        let count = progress
            .iter()
            .filter(|other| **other == Some(*candidate))
            .count();
        if best.is_none_or(|(_, most)| count > most) {
            best = Some((candidate, count));
        }
    }
    match best {
        None => TableResume::fresh(targets.len()),
        Some((zone, _)) => TableResume {
            zone: Some(zone.clone()),
            keeps: progress.iter().map(|p| *p == Some(zone)).collect(),
        },
    }
}

/// Turns chunk completions, which arrive out of order, into the journaled
/// progress: a target's table is in up to the end of the longest run of
/// chunks completed from the first one.
#[derive(Debug)]
pub struct Tracker {
    /// `[table][target]`.
    lanes: Vec<Vec<Lane>>,
}

#[derive(Debug, Default, Clone)]
struct Lane {
    /// The next chunk number the run of completed chunks waits for.
    next: u64,
    /// Completed chunks past a gap: number → where the chunk ends.
    waiting: BTreeMap<u64, Option<Key>>,
    loaded: Option<Loaded>,
    changed: bool,
}

impl Tracker {
    pub fn new(tables: usize, targets: usize) -> Tracker {
        Tracker {
            lanes: vec![vec![Lane::default(); targets]; tables],
        }
    }

    /// Chunk `seq` of `table` is in on `target`; it ends at `up_to` (`None`:
    /// the end of the table).
    pub fn completed(&mut self, table: usize, target: usize, seq: u64, up_to: Option<Key>) {
        let lane = &mut self.lanes[table][target];
        lane.waiting.insert(seq, up_to);
        while let Some(up_to) = lane.waiting.remove(&lane.next) {
            lane.next += 1;
            lane.loaded = Some(match up_to {
                Some(key) => Loaded::UpTo { up_to: key },
                None => Loaded::All,
            });
            lane.changed = true;
        }
    }

    /// Progress that changed since the last call: `(table, target, loaded)`.
    pub fn changes(&mut self) -> Vec<(usize, usize, Loaded)> {
        let mut out = Vec::new();
        for (table, lanes) in self.lanes.iter_mut().enumerate() {
            for (target, lane) in lanes.iter_mut().enumerate() {
                if lane.changed {
                    lane.changed = false;
                    if let Some(loaded) = &lane.loaded {
                        out.push((table, target, loaded.clone()));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::chunk::KeyValue;

    fn key(n: u64) -> Key {
        vec![KeyValue::Number(n.to_string())]
    }

    fn recorded(entries: &[(&str, &str, Loaded)]) -> Recorded {
        Recorded {
            prepared: vec![],
            loaded: entries
                .iter()
                .map(|(t, table, l)| ((t.to_string(), table.to_string()), l.clone()))
                .collect(),
        }
    }

    #[test]
    fn completions_out_of_order_advance_only_the_unbroken_run() {
        let mut tracker = Tracker::new(1, 2);
        tracker.completed(0, 0, 1, Some(key(200)));
        assert!(tracker.changes().is_empty(), "chunk 0 is still missing");
        tracker.completed(0, 0, 0, Some(key(100)));
        assert_eq!(
            tracker.changes(),
            vec![(0, 0, Loaded::UpTo { up_to: key(200) })]
        );
        tracker.completed(0, 0, 3, None);
        assert!(tracker.changes().is_empty());
        tracker.completed(0, 0, 2, Some(key(300)));
        tracker.completed(0, 1, 0, Some(key(100)));
        assert_eq!(
            tracker.changes(),
            vec![
                (0, 0, Loaded::All),
                (0, 1, Loaded::UpTo { up_to: key(100) })
            ]
        );
        assert!(tracker.changes().is_empty(), "reported once");
    }

    #[test]
    fn the_most_shared_progress_is_kept_and_the_odd_target_starts_again() {
        let targets: Vec<String> = ["c1", "c2", "c3"].iter().map(|s| s.to_string()).collect();
        let journal = recorded(&[
            ("c1", "db.t", Loaded::UpTo { up_to: key(500) }),
            ("c2", "db.t", Loaded::UpTo { up_to: key(100) }),
            ("c3", "db.t", Loaded::UpTo { up_to: key(500) }),
        ]);
        let plan = plan_table("db.t", &targets, true, &journal);
        assert_eq!(plan.zone, Some(Loaded::UpTo { up_to: key(500) }));
        assert_eq!(plan.keeps, vec![true, false, true]);
        let ranges = plan.ranges();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].0.up_to, Some(key(500)));
        assert_eq!(ranges[0].1, vec![true, false, true]);
        assert_eq!(ranges[1].0.after, Some(key(500)));
        assert_eq!(ranges[1].1, vec![false, false, false]);
    }

    #[test]
    fn nothing_journaled_or_a_partial_keyless_table_starts_again() {
        let targets: Vec<String> = ["c1", "c2"].iter().map(|s| s.to_string()).collect();
        let empty = Recorded::default();
        assert_eq!(
            plan_table("db.t", &targets, true, &empty),
            TableResume::fresh(2)
        );
        // A keyless table has no key to stop at: only a whole copy is kept.
        let journal = recorded(&[
            ("c1", "db.audit", Loaded::All),
            ("c2", "db.audit", Loaded::UpTo { up_to: key(1) }),
        ]);
        let plan = plan_table("db.audit", &targets, false, &journal);
        assert_eq!(plan.zone, Some(Loaded::All));
        assert_eq!(plan.keeps, vec![true, false]);
        assert_eq!(plan.ranges(), vec![(Range::all(), vec![true, false])]);
    }

    #[test]
    fn progress_survives_the_journal_round_trip() {
        let loaded = Loaded::UpTo {
            up_to: vec![
                KeyValue::Number("7".into()),
                KeyValue::Text("a\tb".into()),
                KeyValue::Bytes(vec![0, 255]),
            ],
        };
        let text = serde_json::to_string(&loaded).unwrap();
        assert_eq!(serde_json::from_str::<Loaded>(&text).unwrap(), loaded);
    }
}
