//! `cutover audit`: the hash-chained log of every change made to servers and DNS.

use clap::Subcommand;

use super::render::table;
use super::{Cli, print_json};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 4 if any entry was edited or deleted.
    Verify,
    /// List audit entries.
    Log {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub async fn audit(cli: &Cli, command: &AuditCommand) -> Result<Outcome> {
    match command {
        AuditCommand::Verify => audit_verify(cli).await,
        AuditCommand::Log { limit } => audit_log(cli, *limit).await,
    }
}

async fn audit_verify(cli: &Cli) -> Result<Outcome> {
    let store = Store::open_at(&cli.global.state_location()).await?;
    let verification = store.verify_audit().await?;
    store.close().await;
    if cli.global.json() {
        print_json(&serde_json::to_value(&verification).expect("verification serialises"));
    } else if verification.intact {
        println!(
            "audit log {}: {} entries, hash chain intact",
            store.path().display(),
            verification.entries
        );
    } else {
        for problem in &verification.problems {
            match problem.seq {
                Some(seq) => println!("entry {seq}: {}", problem.problem),
                None => println!("{}", problem.problem),
            }
        }
    }
    if verification.intact {
        Ok(Outcome::Success)
    } else {
        Err(Error::AuditBroken {
            path: store.path().display().to_string(),
            problems: verification.problems.len(),
        })
    }
}

async fn audit_log(cli: &Cli, limit: u32) -> Result<Outcome> {
    let store = Store::open_at(&cli.global.state_location()).await?;
    let entries = store.audit_entries(limit).await?;
    store.close().await;
    if cli.global.json() {
        print_json(&serde_json::json!({ "entries": entries }));
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    e.at.clone(),
                    e.actor.clone(),
                    e.run_id.clone().unwrap_or_else(|| "-".into()),
                    e.target.clone(),
                    e.action.clone(),
                    e.result.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["SEQ", "AT", "ACTOR", "RUN", "TARGET", "ACTION", "RESULT"],
                &rows
            )
        );
    }
    Ok(Outcome::Success)
}
