//! `checksum`: compare rows and money totals of the source with the targets.
//! A gate: it changes nothing, and a difference stops the phase.

use serde::{Deserialize, Serialize};

use super::{Description, StepError};
use crate::checksum::{self, ChecksumOptions, Verdict};
use crate::plan::ValidatedPlan;
use crate::steps::context::Context;

/// What a matching `checksum` journals.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChecksumObserved {
    pub rows_compared: u64,
    pub position: Option<String>,
    pub source_lock_ms: Option<u64>,
    pub elapsed_ms: u64,
}

pub async fn act(
    ctx: &mut Context,
    targets: &[String],
    tables: &[String],
    float_precision: u32,
    money_columns: &[String],
) -> Result<ChecksumObserved, StepError> {
    let options = ChecksumOptions {
        targets: targets.to_vec(),
        tables: tables.to_vec(),
        float_precision,
        money_columns: money_columns.to_vec(),
        // Inside a freeze every cluster already holds the frozen position.
        frozen_at: ctx
            .state
            .frozen
            .as_ref()
            .map(|frozen| frozen.position.clone()),
        progress: false,
        ..ChecksumOptions::new()
    };
    let report = checksum::run(&ctx.plan, &options)
        .await
        .map_err(|error| match error {
            checksum::ChecksumError::Secret(error) => StepError::Secret(error),
            other => StepError::Failed(other.to_string()),
        })?;
    let summary = report.summary();
    tracing::info!("{summary}");
    let differing: Vec<String> = report
        .tables
        .iter()
        .flat_map(|table| {
            table.mismatches.iter().map(move |row| {
                format!(
                    "{} {} {} {}{}",
                    table.table,
                    row.cluster,
                    serde_json::to_string(&row.key).unwrap_or_default(),
                    serde_json::to_string(&row.kind)
                        .unwrap_or_default()
                        .trim_matches('"'),
                    if row.columns.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", row.columns.join(", "))
                    }
                )
            })
        })
        .take(20)
        .collect();
    match report.status {
        Verdict::Match => Ok(ChecksumObserved {
            rows_compared: report.rows_compared,
            position: report.position,
            source_lock_ms: report.source_lock_ms,
            elapsed_ms: report.elapsed_ms,
        }),
        Verdict::Mismatch => {
            ctx.data_mismatch = true;
            Err(StepError::Mismatch(format!(
                "{summary}{}; run `cutover checksum PLAN` for the full report",
                if differing.is_empty() {
                    String::new()
                } else {
                    format!(": {}", differing.join("; "))
                }
            )))
        }
        Verdict::Incomplete => Err(StepError::Failed(summary)),
    }
}

pub fn describe(
    plan: &ValidatedPlan,
    targets: &[String],
    tables: &[String],
    float_precision: u32,
) -> Description {
    let targets = if targets.is_empty() {
        plan.enabled_targets()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    } else {
        targets.to_vec()
    };
    let tables_text = if tables.is_empty() {
        "every table of the plan's databases".to_string()
    } else {
        tables.join(", ")
    };
    let source = &plan.source().name;
    Description {
        cluster: format!("{source}, {}", targets.join(", ")),
        action: format!(
            "compare {tables_text} on {source} with {} row by row at one GTID position \
             (floats to {float_precision} digits) and reconcile DECIMAL totals",
            targets.join(", ")
        ),
        commands: vec![
            format!("STOP SLAVE on {}", targets.join(", ")),
            crate::tables::point::describe_hold(source, "", plan.gates.max_source_stall),
            "on each target: START SLAVE UNTIL master_gtid_pos = <position>; START TRANSACTION WITH CONSISTENT SNAPSHOT; START SLAVE".into(),
            format!(
                "cutover checksum PLAN --targets {} {}",
                targets.join(" "),
                if tables.is_empty() {
                    String::new()
                } else {
                    format!("--tables {}", tables.join(" "))
                }
            )
            .trim_end()
            .to_string(),
        ],
        verify: vec!["every table `match`, every money total `ok`".into()],
        inverse: "nothing to undo (reads only; replication is resumed at once)".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Checksum {
    type Observed = ChecksumObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<ChecksumObserved, StepError> {
        act(
            ctx,
            &self.targets,
            &self.tables,
            self.float_precision,
            &self.money_columns,
        )
        .await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(plan, &self.targets, &self.tables, self.float_precision)
    }

    fn needs(&self, _plan: &crate::plan::ValidatedPlan, needs: &mut super::PrecheckNeeds) {
        needs.checksums = true;
    }

    fn continues_after_interruption(&self) -> bool {
        true
    }

    fn needs_followers(&self) -> bool {
        true
    }

    fn is_mutating(&self) -> bool {
        false
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecksumStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    #[serde(default)]
    pub targets: Option<Vec<crate::plan::Located<String>>>,
    /// Table patterns such as `refunds.*` or `refunds.transactions`.
    #[serde(default)]
    pub tables: Option<Vec<crate::plan::Located<String>>>,
    /// Significant digits compared for FLOAT/DOUBLE columns.
    #[serde(default)]
    pub float_precision: Option<crate::plan::Located<i64>>,
    /// Columns reconciled by SUM and COUNT (`table.column`); default every DECIMAL column.
    #[serde(default)]
    pub money_columns: Option<Vec<crate::plan::Located<String>>>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Checksum {
    type Raw = ChecksumStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        let tables = raw
            .tables
            .unwrap_or_default()
            .into_iter()
            .map(|pattern| {
                if pattern.value.trim().is_empty() || pattern.value.contains(char::is_whitespace) {
                    c.error(
                        pattern.position,
                        format!("table pattern `{}` is empty or has spaces", pattern.value),
                    );
                }
                pattern.value
            })
            .collect();
        let money_columns = raw
            .money_columns
            .unwrap_or_default()
            .into_iter()
            .map(|column| {
                if column.value.split('.').count() < 2 {
                    c.error(
                        column.position,
                        format!(
                            "money column `{}` must be written `table.column`",
                            column.value
                        ),
                    );
                }
                column.value
            })
            .collect();
        crate::plan::kinds::Checksum {
            targets: c.targets(raw.targets.as_ref(), "checksum target"),
            tables,
            float_precision: raw.float_precision.as_ref().map_or(12, |precision| {
                c.number(precision, 1, 17, "checksum float_precision") as u32
            }),
            money_columns,
        }
    }
}
