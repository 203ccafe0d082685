//! `cutover state`: the state store itself.

use std::path::PathBuf;

use clap::Subcommand;

use super::{Cli, print_json};
use crate::error::Result;
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::store::{StateLocation, Store};

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy a local store's whole history (runs, journal, audit chain, drills
    /// and schedules) into an empty shared PostgreSQL store.
    #[command(after_help = migrate_help())]
    Migrate {
        /// The local state directory to copy from.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The shared store to copy into: postgres://user:password@host/db.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

fn migrate_help() -> String {
    format!(
        "{}{}",
        "Example:
  cutover state migrate --from ~/.local/state/cutover --to postgres://cutover@db.bank.internal/cutover

The shared store must hold no run and no audit entry yet, and no run of the
local store may hold its plan's lock. The audit chain verifies the same
afterwards (`cutover audit verify --state URL`).

",
        help_section(&[
            (ExitCode::Success, "copied"),
            (ExitCode::StepFailed, "the copy failed (nothing was committed)"),
            (ExitCode::InvalidInput, "not a shared store, not empty, a run still holds a lock, or unreachable"),
        ])
    )
}

pub async fn state(cli: &Cli, command: &StateCommand) -> Result<Outcome> {
    match command {
        StateCommand::Migrate { from, to } => {
            let shared = match StateLocation::parse(to) {
                StateLocation::Postgres(url) => Store::open_shared(&url).await?,
                StateLocation::Directory(_) => {
                    return Err(crate::store::StoreError::Settings(
                        "--to must be a postgres:// URL".into(),
                    )
                    .into());
                }
            };
            let local = Store::open(from).await?;
            let copied = local.copy_into(&shared).await;
            local.close().await;
            shared.close().await;
            let copied = copied?;
            if cli.global.json() {
                print_json(&serde_json::to_value(&copied).expect("counts serialise"));
            } else {
                println!(
                    "copied {} run(s), {} journal event(s), {} audit entr(ies), {} drill(s) and {} other row(s) from {} to {}",
                    copied.runs,
                    copied.events,
                    copied.audit_entries,
                    copied.drills,
                    copied.other_rows,
                    local.path().display(),
                    shared.path().display()
                );
            }
            Ok(Outcome::Success)
        }
    }
}
