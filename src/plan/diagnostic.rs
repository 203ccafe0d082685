//! Plan errors with positions, rendered with a source snippet.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::located::Position;

/// One problem in a plan file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanError {
    pub message: String,
    pub line: u64,
    pub column: u64,
    /// What to change, when the message alone does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The text at the position is a secret: snippets mask it.
    #[serde(skip)]
    pub secret_at_position: bool,
}

impl PlanError {
    pub fn at(position: Position, message: impl Into<String>) -> Self {
        PlanError {
            message: message.into(),
            line: position.line,
            column: position.column,
            help: None,
            secret_at_position: false,
        }
    }

    pub fn masking_secret(mut self) -> Self {
        self.secret_at_position = true;
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }
}

/// Every problem found in one plan file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.summary())]
pub struct PlanErrors {
    pub path: PathBuf,
    pub errors: Vec<PlanError>,
    /// The file's text, when it was readable, for snippets.
    pub source_text: Option<String>,
}

impl PlanErrors {
    pub fn single(path: &Path, error: PlanError, source_text: Option<String>) -> Self {
        PlanErrors {
            path: path.to_path_buf(),
            errors: vec![error],
            source_text,
        }
    }

    /// One line naming the file, the first problem and how many more there are.
    pub fn summary(&self) -> String {
        let Some(first) = self.errors.first() else {
            return format!("{}: invalid plan", self.path.display());
        };
        let more = match self.errors.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        format!(
            "{}:{}:{}: {}{}",
            self.path.display(),
            first.line,
            first.column,
            first.message,
            more
        )
    }

    /// Every error as `path:line:col: message`, a source snippet with a caret, and help.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for error in &self.errors {
            let _ = writeln!(out, "error: {}", error.message);
            let _ = writeln!(
                out,
                "  --> {}:{}:{}",
                self.path.display(),
                error.line,
                error.column
            );
            if let Some(snippet) = self.snippet(error.position(), error.secret_at_position) {
                out.push_str(&snippet);
            }
            if let Some(help) = &error.help {
                let _ = writeln!(out, "  = help: {help}");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{}: {} error{}",
            self.path.display(),
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        );
        out
    }

    fn snippet(&self, position: Position, mask: bool) -> Option<String> {
        if !position.is_known() {
            return None;
        }
        let text = self.source_text.as_deref()?;
        let line_text = text.lines().nth(usize::try_from(position.line).ok()? - 1)?;
        let keep = usize::try_from(position.column)
            .unwrap_or(1)
            .saturating_sub(1);
        // Long lines (minified or hostile input) are cut so a snippet stays one screen wide.
        let shown: String = if mask {
            line_text.chars().take(keep).chain("****".chars()).collect()
        } else {
            line_text.chars().take(160).collect()
        };
        let number = position.line.to_string();
        let gutter = " ".repeat(number.len());
        let caret_pad: String = shown
            .chars()
            .take(
                usize::try_from(position.column)
                    .unwrap_or(1)
                    .saturating_sub(1),
            )
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        Some(format!(
            "{gutter} |\n{number} | {shown}\n{gutter} | {caret_pad}^\n"
        ))
    }
}
