//! `cutover lab`: the local lab of MariaDB or MySQL servers and BIND9 on loopback addresses.

use std::path::PathBuf;

use clap::Subcommand;

use super::render::table;
use super::{Cli, print_json};
use crate::error::{Error, Result};
use crate::lab::{Lab, StartOptions, UpOptions};
use crate::outcome::Outcome;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start legacy, c1, c2, c3, c6 (MariaDB, or MySQL 9.7) and ns1, ns2 (BIND9); seed the refunds dataset.
    #[command(
        after_help = "Examples:\n  cutover lab up\n  cutover lab up --replicating --rows 100000\n  cutover lab up --flavor mysql --replicating"
    )]
    Up {
        /// Transactions to seed into legacy (participants, ledger and audit rows scale with it).
        #[arg(long, default_value_t = crate::lab::DEFAULT_ROWS)]
        rows: u64,
        /// Start c1, c2, c3 and c6 as GTID replicas of legacy holding the same data.
        #[arg(long)]
        replicating: bool,
        /// The database server: Debian 12's MariaDB, or MySQL 9.7 LTS from the
        /// root `scripts/mysql-root` prepares.
        #[arg(long, value_enum, default_value_t = FlavorArg::Mariadb)]
        flavor: FlavorArg,
        /// Also start a PostgreSQL (Debian's postgresql-15) for a shared
        /// state store; `lab env` then exports its URL as CUTOVER_LAB_STATE_URL.
        #[arg(long)]
        postgres: bool,
        /// Lab directory.
        #[arg(long, env = "CUTOVER_LAB_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Stop the lab's own processes and remove its data.
    Down {
        #[arg(long, env = "CUTOVER_LAB_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Show which lab processes are running.
    Status {
        #[arg(long, env = "CUTOVER_LAB_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Restart one database server, optionally with its wall clock moved (libfaketime)
    /// or without TLS; a read-only server comes back read-only.
    #[command(
        after_help = "Examples:\n  cutover lab restart c2 --clock-offset 5\n  cutover lab restart c6 --without-tls\n  cutover lab restart c2"
    )]
    Restart {
        /// legacy, c1, c2, c3 or c6.
        server: String,
        /// Seconds to move the server's wall clock (negative: behind).
        #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
        clock_offset: Option<f64>,
        /// Start without TLS.
        #[arg(long)]
        without_tls: bool,
        /// Start with read_only = 1 (a failed primary coming back must not take writes).
        #[arg(long)]
        read_only: bool,
        #[arg(long, env = "CUTOVER_LAB_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Fail one database server for a drill: SIGKILL it (a crash), or with
    /// --isolate SIGSTOP it (it stops answering). `lab restart` brings it back.
    #[command(
        after_help = "Examples:\n  cutover lab kill legacy\n  cutover lab kill c1 --isolate\n  cutover lab restart legacy --read-only"
    )]
    Kill {
        /// legacy, c1, c2, c3 or c6.
        server: String,
        #[arg(long)]
        isolate: bool,
        #[arg(long, env = "CUTOVER_LAB_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write to a few hot rows from N application sessions (each transaction
    /// moves a balance between two of them) and report the longest time the
    /// writers saw no commit; stops at --duration or on Ctrl-C.
    #[command(
        after_help = "Examples:\n  cutover lab load\n  cutover lab load --writers 8 --rows 20 --duration 60s --output json"
    )]
    Load {
        /// The server written to.
        #[arg(long, default_value = "legacy")]
        server: String,
        /// Concurrent writers.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
        writers: u32,
        /// Rows they share.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
        rows: u32,
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
        duration: std::time::Duration,
        /// At most this many transactions a second, all writers together
        /// (0: as fast as they can).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        rate: u32,
        /// After an error, reconnect to whichever lab server takes writes
        /// (as through a proxy), so the load follows a switchover.
        #[arg(long)]
        follow_primary: bool,
        #[arg(long, env = "CUTOVER_LAB_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print `export` lines for the variables lab plans use: eval "$(cutover lab env)".
    Env {
        #[arg(long, env = "CUTOVER_LAB_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn lab_for(cli: &Cli, dir: &Option<std::path::PathBuf>) -> Lab {
    Lab::new(
        dir.clone()
            .unwrap_or_else(|| Lab::default_dir(&cli.global.state_dir())),
    )
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FlavorArg {
    Mariadb,
    Mysql,
}

pub async fn lab(cli: &Cli, command: &LabCommand) -> Result<Outcome> {
    match command {
        LabCommand::Up {
            rows,
            replicating,
            flavor,
            postgres,
            dir,
        } => {
            if *rows == 0 {
                return Err(Error::Usage("--rows must be at least 1".into()));
            }
            let lab = lab_for(cli, dir);
            let status = lab
                .up(&UpOptions {
                    rows: *rows,
                    replicating: *replicating,
                    flavor: match flavor {
                        FlavorArg::Mariadb => crate::lab::LabFlavor::Mariadb,
                        FlavorArg::Mysql => crate::lab::LabFlavor::Mysql,
                    },
                    postgres: *postgres,
                })
                .await?;
            print_lab_status(cli, &status);
            if !cli.global.json() {
                println!("\nnext: eval \"$(cutover lab env)\"");
            }
        }
        LabCommand::Down { dir } => {
            let lab = lab_for(cli, dir);
            lab.down()?;
            if cli.global.json() {
                print_json(&serde_json::json!({ "dir": lab.dir(), "down": true }));
            } else {
                println!("lab in {} stopped and removed", lab.dir().display());
            }
        }
        LabCommand::Restart {
            server,
            clock_offset,
            without_tls,
            read_only,
            dir,
        } => {
            if clock_offset.is_some_and(|offset| !offset.is_finite() || offset.abs() > 86_400.0) {
                return Err(Error::Usage(
                    "--clock-offset must be a number of seconds within ±86400".into(),
                ));
            }
            let lab = lab_for(cli, dir);
            let options = StartOptions {
                clock_offset_secs: *clock_offset,
                without_tls: *without_tls,
                read_only: *read_only,
            };
            lab.restart(server, &options).await?;
            if cli.global.json() {
                print_json(&serde_json::json!({
                    "server": server,
                    "restarted": true,
                    "clock_offset_secs": clock_offset,
                    "tls": !without_tls,
                }));
            } else {
                println!("{server} restarted");
            }
        }
        LabCommand::Load {
            server,
            writers,
            rows,
            duration,
            rate,
            follow_primary,
            dir,
        } => {
            let load = crate::lab::hot_rows::HotRowLoad {
                writers: *writers as usize,
                rows: *rows,
                duration: *duration,
                rate: *rate,
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let signals = crate::shutdown::install();
            let watcher = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    signals.await;
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                })
            };
            let report = lab_for(cli, dir)
                .load(server, &load, *follow_primary, stop)
                .await;
            watcher.abort();
            let report = report?;
            if cli.global.json() {
                print_json(&serde_json::to_value(&report).expect("load report serialises"));
            } else {
                println!(
                    "{} writers on {} rows of {} for {} ms: {} commits, {} errors retried; longest without a commit {} ms (from {} ms), longest one writer waited {} ms",
                    report.writers,
                    report.rows,
                    crate::lab::hot_rows::TABLE,
                    report.elapsed_ms,
                    report.commits,
                    report.errors,
                    report.longest_gap_ms,
                    report.longest_gap_at_ms,
                    report.longest_writer_wait_ms
                );
            }
        }
        LabCommand::Kill {
            server,
            isolate,
            dir,
        } => {
            lab_for(cli, dir).kill(server, *isolate)?;
            if cli.global.json() {
                print_json(&serde_json::json!({
                    "server": server,
                    "failed": if *isolate { "isolated" } else { "killed" },
                }));
            } else if *isolate {
                println!(
                    "{server} isolated (SIGSTOP); `cutover lab restart {server}` brings it back"
                );
            } else {
                println!(
                    "{server} killed (SIGKILL); `cutover lab restart {server}` brings it back"
                );
            }
        }
        LabCommand::Status { dir } => {
            let status = lab_for(cli, dir).status();
            print_lab_status(cli, &status);
        }
        LabCommand::Env { dir } => {
            let lab = lab_for(cli, dir);
            let variables = lab.env()?;
            if cli.global.json() {
                let map: serde_json::Map<String, serde_json::Value> = variables
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), serde_json::Value::String(value)))
                    .collect();
                print_json(&serde_json::Value::Object(map));
            } else {
                for (name, value) in variables {
                    println!("export {name}={}", crate::lab::shell_quote(&value));
                }
            }
        }
    }
    Ok(Outcome::Success)
}

fn print_lab_status(cli: &Cli, status: &crate::lab::LabStatus) {
    if cli.global.json() {
        print_json(&serde_json::to_value(status).expect("status serialises"));
        return;
    }
    println!(
        "lab {}{}",
        status.dir.display(),
        match (status.initialized, status.replicating) {
            (false, _) => " (not set up)".to_string(),
            (true, Some(true)) => format!(" (replicating, {} rows)", status.rows.unwrap_or(0)),
            (true, _) => format!(
                " (clusters empty, {} rows on legacy)",
                status.rows.unwrap_or(0)
            ),
        }
    );
    let rows: Vec<Vec<String>> = status
        .processes
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.kind.to_string(),
                p.address.clone(),
                if p.running {
                    "running".into()
                } else {
                    "stopped".into()
                },
                p.pid.map_or("-".into(), |pid| pid.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["NAME", "KIND", "ADDRESS", "STATE", "PID"], &rows)
    );
}
