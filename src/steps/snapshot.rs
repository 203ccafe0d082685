//! `snapshot`: one consistent snapshot of the source loaded into every target.
//! Its inverse drops what it loaded.

use serde::{Deserialize, Serialize};

use super::{Description, StepError};
use crate::outcome::ErrorKind;
use crate::plan::ValidatedPlan;
use crate::snapshot::resume::Journal;
use crate::snapshot::{self, SnapshotError, SnapshotOptions};
use crate::steps::context::Context;

/// What `snapshot` journals: what it loaded where, for the inverse.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotObserved {
    pub gtid_position: String,
    pub rows: u64,
    pub bytes: u64,
    pub source_lock_ms: u64,
    pub databases: Vec<String>,
    pub targets: Vec<String>,
    pub resumed: Option<crate::snapshot::Resumed>,
    pub warnings: Vec<String>,
}

pub async fn act(
    ctx: &mut Context,
    targets: &[String],
    workers: u32,
    replace: bool,
    skip_binlog: bool,
    directory: Option<&std::path::Path>,
) -> Result<SnapshotObserved, StepError> {
    let options = SnapshotOptions {
        targets: targets.to_vec(),
        workers: workers as usize,
        replace,
        skip_binlog,
        directory: directory.map(std::path::Path::to_path_buf),
        progress: false,
        resume: ctx.resuming,
    };
    let journal = Journal {
        store: ctx.store.clone(),
        run_id: ctx.run_id.clone(),
        step: format!("{}/{}", ctx.phase, ctx.step),
    };
    let report = snapshot::run(&ctx.plan, &options, Some(&journal))
        .await
        .map_err(|error| match error {
            SnapshotError::Secret(error) => StepError::Secret(error),
            error => {
                let text = match error.hint() {
                    Some(hint) => format!("{error}; {hint}"),
                    None => error.to_string(),
                };
                match error.kind() {
                    ErrorKind::Refused => StepError::Refused(text),
                    _ => StepError::Failed(text),
                }
            }
        })?;
    tracing::info!(
        "snapshot at {}: {} rows, {} bytes into {} in {} ms",
        report.gtid_position,
        report.rows,
        report.bytes,
        report.targets.join(", "),
        report.elapsed_ms
    );
    let failed: Vec<String> = report
        .clusters
        .iter()
        .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.cluster)))
        .collect();
    if !failed.is_empty() {
        return Err(StepError::Failed(format!(
            "the snapshot did not load into every target ({}); loaded: {}",
            failed.join("; "),
            report.targets.join(", ")
        )));
    }
    ctx.state.snapshot_position = Some(report.gtid_position.clone());
    Ok(SnapshotObserved {
        gtid_position: report.gtid_position,
        rows: report.rows,
        bytes: report.bytes,
        source_lock_ms: report.source_lock_ms,
        databases: report.databases,
        targets: report.targets,
        resumed: report.resumed,
        warnings: report.warnings,
    })
}

/// Drop the databases the snapshot loaded, on the targets it loaded.
pub async fn undo(ctx: &mut Context, observed: &SnapshotObserved) -> Result<(), StepError> {
    for target in &observed.targets {
        let session = ctx.session(target).await?;
        for database in &observed.databases {
            session
                .exec(
                    "drop a snapshot's database",
                    &format!(
                        "SET SESSION sql_log_bin = 0; DROP DATABASE IF EXISTS {}; SET SESSION sql_log_bin = 1",
                        crate::tables::canonical::ident(database)
                    ),
                )
                .await?;
        }
        ctx.audit(target, "drop snapshot databases", "ok").await;
    }
    ctx.state.snapshot_position = None;
    Ok(())
}

pub fn describe(
    plan: &ValidatedPlan,
    targets: &[String],
    workers: u32,
    replace: bool,
    skip_binlog: bool,
) -> Description {
    let source = &plan.source().name;
    let targets = if targets.is_empty() {
        plan.enabled_targets().map(|c| c.name.clone()).collect()
    } else {
        targets.to_vec()
    };
    let databases = plan
        .databases
        .as_ref()
        .map_or("every database".to_string(), |list| list.join(", "));
    Description {
        cluster: format!("{source} → {}", targets.join(", ")),
        action: format!(
            "copy {databases} from {source} at one GTID position into {} with {workers} reader(s){}{}",
            targets.join(", "),
            if replace { ", replacing what is there" } else { "; refuse targets that are not empty" },
            if skip_binlog { ", loading with sql_log_bin = 0" } else { "" }
        ),
        commands: vec![
            crate::tables::point::describe_hold(source, &format!(" ×{workers}"), plan.gates.max_source_stall),
            "on each target: CREATE DATABASE / routines / CREATE TABLE (primary key only)".into(),
            "per key-range chunk: SELECT … ORDER BY key on the source, INSERT … VALUES (…),(…) on every target at once".into(),
            "on each target: ALTER TABLE … ADD KEY …; CREATE TRIGGER …; CREATE VIEW …".into(),
        ],
        verify: vec!["cutover checksum PLAN after `replicate`: every table `match`".into()],
        inverse: format!("DROP DATABASE {databases} on {}", targets.join(", ")),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Snapshot {
    type Observed = SnapshotObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<SnapshotObserved, StepError> {
        act(
            ctx,
            &self.targets,
            self.workers,
            self.replace,
            self.skip_binlog,
            self.directory.as_deref(),
        )
        .await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        observed: &SnapshotObserved,
    ) -> Result<(), StepError> {
        undo(ctx, observed).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(
            plan,
            &self.targets,
            self.workers,
            self.replace,
            self.skip_binlog,
        )
    }

    fn needs(&self, plan: &crate::plan::ValidatedPlan, needs: &mut super::PrecheckNeeds) {
        needs.loads = true;
        let loaded: Vec<String> = if self.targets.is_empty() {
            plan.enabled_targets().map(|c| c.name.clone()).collect()
        } else {
            self.targets.clone()
        };
        needs.loaded_targets.extend(loaded.iter().cloned());
        if !self.replace {
            needs.snapshot_targets.extend(loaded);
        }
        if self.directory.is_some() {
            needs.snapshot_directory.clone_from(&self.directory);
        }
    }

    fn continues_after_interruption(&self) -> bool {
        true
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    /// Default: every enabled target.
    #[serde(default)]
    pub targets: Option<Vec<crate::plan::Located<String>>>,
    /// Parallel reader connections on the source.
    #[serde(default)]
    pub workers: Option<crate::plan::Located<i64>>,
    /// Also write a snapshot directory here.
    #[serde(default)]
    pub directory: Option<String>,
    /// Replace existing data on targets that are not empty.
    #[serde(default)]
    pub replace: Option<bool>,
    /// Load with binary logging off on the targets (unsafe when a target has replicas of its own).
    #[serde(default)]
    pub skip_binlog: Option<bool>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Snapshot {
    type Raw = SnapshotStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        crate::plan::kinds::Snapshot {
            targets: c.targets(raw.targets.as_ref(), "snapshot target"),
            workers: raw.workers.as_ref().map_or(4, |workers| {
                c.number(workers, 1, 64, "snapshot workers") as u32
            }),
            directory: raw.directory.map(std::path::PathBuf::from),
            replace: raw.replace.unwrap_or(false),
            skip_binlog: raw.skip_binlog.unwrap_or(false),
        }
    }
}
