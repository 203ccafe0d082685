//! `confirm`: a human says go (or `--yes` did), and a postpone file holds the
//! run here while it exists, like gh-ost's.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Description, StepError, millis};
use crate::steps::context::Context;

/// A postpone file older than this is forgotten, not obeyed forever.
const MAX_POSTPONE: Duration = Duration::from_secs(24 * 3600);

/// What `confirm` journals: who said yes, and how long a postpone file held it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfirmObserved {
    pub answer: String,
    pub postponed_ms: u64,
}

pub async fn act(
    ctx: &mut Context,
    message: Option<&str>,
    postpone_file: Option<&Path>,
) -> Result<ConfirmObserved, StepError> {
    let mut postponed = Duration::ZERO;
    if let Some(file) = postpone_file {
        let started = Instant::now();
        let mut announced = false;
        while file.exists() {
            if !announced {
                tracing::info!(
                    "postponed: waiting while {} exists (remove it to continue)",
                    file.display()
                );
                announced = true;
            }
            if started.elapsed() > MAX_POSTPONE {
                return Err(StepError::Refused(format!(
                    "still postponed by {} after {} h; remove it and resume",
                    file.display(),
                    MAX_POSTPONE.as_secs() / 3600
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        postponed = started.elapsed();
    }
    let question = message.unwrap_or("Continue?");
    let answer = if ctx.yes {
        "yes (--yes)"
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let asked = question.to_string();
        let confirmed = tokio::task::spawn_blocking(move || {
            let question = asked;
            eprint!("{question} [y/N] ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            matches!(line.trim(), "y" | "Y" | "yes" | "YES")
        })
        .await
        .unwrap_or(false);
        if !confirmed {
            return Err(StepError::Refused(format!("not confirmed: {question}")));
        }
        "yes (terminal)"
    } else {
        return Err(StepError::Refused(format!(
            "confirmation needed ({question}) and no terminal to ask: rerun with --yes"
        )));
    };
    Ok(ConfirmObserved {
        answer: answer.into(),
        postponed_ms: millis(postponed),
    })
}

pub fn describe(message: Option<&str>, postpone_file: Option<&Path>) -> Description {
    Description {
        cluster: "-".into(),
        action: format!(
            "ask \"{}\"{}",
            message.unwrap_or("Continue?"),
            postpone_file
                .map(|file| format!("; hold while {} exists", file.display()))
                .unwrap_or_default()
        ),
        commands: vec![],
        verify: vec![],
        inverse: "nothing to undo".into(),
    }
}

impl super::StepBehaviour for crate::plan::kinds::Confirm {
    type Observed = ConfirmObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<ConfirmObserved, StepError> {
        act(ctx, self.message.as_deref(), self.postpone_file.as_deref()).await
    }

    fn describe(
        &self,
        _plan: &crate::plan::ValidatedPlan,
        _state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(self.message.as_deref(), self.postpone_file.as_deref())
    }

    fn is_mutating(&self) -> bool {
        false
    }
}

// How it is written in a plan, and checked.

#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    #[serde(default)]
    pub message: Option<String>,
    /// While this file exists the run waits here.
    #[serde(default)]
    pub postpone_file: Option<String>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::Confirm {
    type Raw = ConfirmStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, _c: &mut dyn crate::plan::StepCheck) -> Self {
        crate::plan::kinds::Confirm {
            message: raw.message,
            postpone_file: raw.postpone_file.map(std::path::PathBuf::from),
        }
    }
}
