//! Command-line interface: parse arguments, call the library, and map what
//! it returns to output and exit codes. One file per command holds its
//! arguments, its `--help` text, its handler and its human rendering; only
//! this layer writes to stdout and stderr.

mod audit;
mod checksum;
mod drill;
mod lab;
mod lag;
mod plan;
mod probe;
mod render;
mod resume;
mod rollback;
mod run;
mod snapshot;
mod state;
mod status;
mod topology;

use crate::store::{StateLocation, Store};
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::error::{Error, ExitCode, Result};
use crate::logging::{self, LogFormat};
use crate::outcome::Outcome;
use crate::plan::ValidatedPlan;

pub use self::checksum::ChecksumArgs;
pub use self::lag::LagArgs;
pub use self::snapshot::SnapshotArgs;

const EXAMPLES: &str = "\
Examples:
  cutover plan check plans/lab-switchover.yaml
  cutover plan schema > plan.schema.json
  cutover lab up --replicating && eval \"$(cutover lab env)\"
  cutover status --output json";

fn after_help() -> String {
    format!("{EXAMPLES}\n\n{}", crate::outcome::help_section_all())
}

/// Zero-data-loss migration and cutover of MySQL-family databases, driven by YAML plans.
#[derive(Debug, Parser)]
#[command(name = "cutover", version, about, after_long_help = after_help())]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// Result format on stdout: a human table or one JSON document.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where runs, the journal, locks, the audit log and drills are kept: a
    /// directory (an SQLite file, the default), or the URL of a PostgreSQL
    /// database several hosts share (postgres://user:password@host/db).
    /// Lab directories and drill reports stay in a local directory.
    #[arg(long, global = true, env = "CUTOVER_STATE", value_name = "DIR|URL")]
    pub state: Option<String>,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Answer yes to every confirmation.
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
}

impl GlobalOptions {
    /// Where the state store is.
    pub fn state_location(&self) -> StateLocation {
        match self.state.as_deref().filter(|state| !state.is_empty()) {
            Some(state) => StateLocation::parse(state),
            None => StateLocation::Directory(Store::default_dir()),
        }
    }

    /// The local directory for what stays on this machine (labs, reports):
    /// the state directory, or the default one when the store is shared.
    pub fn state_dir(&self) -> PathBuf {
        match self.state_location() {
            StateLocation::Directory(dir) => dir,
            StateLocation::Postgres(_) => Store::default_dir(),
        }
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate plans and print the plan format's JSON Schema.
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Disaster-recovery drills: run one, schedule them, list past ones.
    #[command(subcommand)]
    Drill(drill::DrillCommand),
    /// List runs and their step states, or show one run.
    #[command(after_help = status::help())]
    Status(status::StatusArgs),
    /// Run a plan: live prechecks, then its phases in order, each step journaled.
    #[command(after_help = run::help())]
    Run(run::RunArgs),
    /// Continue an interrupted run from its journal: finish it if it passed the
    /// point of no return, otherwise roll the interrupted phase back.
    #[command(after_help = resume::help())]
    Resume(resume::ResumeArgs),
    /// Undo a run's completed phases, latest first; after a switchover this is
    /// the reverse switchover, with no acknowledged write lost.
    #[command(after_help = rollback::help())]
    Rollback(rollback::RollbackArgs),
    /// Write through the application's DNS name like an application, then read
    /// every acknowledged write back from the primary.
    #[command(after_help = probe::help())]
    Probe(probe::ProbeArgs),
    /// Render the plan as a markdown runbook: every step, its SQL or DNS
    /// operation, how to verify it by hand, and its rollback.
    #[command(
        after_help = "Example:\n  cutover runbook plans/lab-switchover.yaml > runbooks/lab-switchover.md"
    )]
    Runbook { plan: PathBuf },
    /// Show every enabled cluster: reachable, flavor, role, source, fences, GTID
    /// position, replication threads, errant transactions, clock offset.
    #[command(after_help = topology::help())]
    Topology(topology::TopologyArgs),
    /// Replication lag of every enabled target, measured with the orchestrator's
    /// own heartbeat (no server clock is trusted), and transactions behind.
    #[command(after_help = lag::help())]
    Lag(LagArgs),
    /// Compare the source's rows with every target's at one consistent point,
    /// down to the row and column, and reconcile money totals exactly.
    #[command(after_help = checksum::help())]
    Checksum(ChecksumArgs),
    /// Take one consistent snapshot of the source's databases and load it into
    /// every target at once; optionally start replication from its position.
    #[command(after_help = snapshot::help())]
    Snapshot(SnapshotArgs),
    /// Load a snapshot directory into the targets, after checking every file
    /// against its manifest; optionally start replication from its position.
    #[command(after_help = snapshot::restore_help())]
    Restore(snapshot::RestoreArgs),
    /// The audit log of every change made to servers and DNS.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The local lab: MariaDB servers and BIND9 on loopback addresses.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// The state store: copy a local history into a shared PostgreSQL store.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The one place a parsed command meets its handler.
pub async fn dispatch(cli: &Cli) -> Result<Outcome> {
    match &cli.command {
        Command::Plan(command) => plan::plan(cli, command),
        Command::Status(args) => status::status(cli, args).await,
        Command::Topology(args) => topology::topology(cli, args).await,
        Command::Run(args) => run::run(cli, args).await,
        Command::Resume(args) => resume::resume(cli, args).await,
        Command::Rollback(args) => rollback::rollback(cli, args).await,
        Command::Probe(args) => probe::probe(cli, args).await,
        Command::Drill(command) => drill::drill(cli, command).await,
        Command::Runbook { plan } => {
            let plan = crate::plan::load(plan)?;
            print!("{}", crate::runbook::render(&plan));
            Ok(Outcome::Success)
        }
        Command::Lag(args) => lag::lag(cli, args).await,
        Command::Checksum(args) => checksum::checksum(cli, args).await,
        Command::Snapshot(args) => snapshot::snapshot(cli, args, None).await,
        Command::Restore(args) => snapshot::snapshot(cli, &args.load, Some(&args.from)).await,
        Command::Audit(command) => audit::audit(cli, command).await,
        Command::Lab(command) => lab::lab(cli, command).await,
        Command::State(command) => state::state(cli, command).await,
        Command::Completions { shell } => {
            print_completions(*shell);
            Ok(Outcome::Success)
        }
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    );
}

/// The plan a journaled run used: `--plan`, else the path it recorded.
async fn plan_of_run(store: &Store, run_id: &str, path: Option<&Path>) -> Result<ValidatedPlan> {
    let recorded = store.run(run_id).await?.plan_path;
    let path = path.map_or_else(|| std::path::PathBuf::from(&recorded), Path::to_path_buf);
    if !path.exists() {
        return Err(Error::Usage(format!(
            "plan file {} (recorded by run {run_id}) is not there; pass --plan PATH",
            path.display()
        )));
    }
    Ok(crate::plan::load(&path)?)
}

/// Changes on a terminal are confirmed by a human, or by --yes.
fn confirm(cli: &Cli, question: &str) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if cli.global.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!("{question}: confirm with --yes")));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed; nothing changed".into()))
    }
}

/// Entry point used by the binary: parse, run, report, and return the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    ExitCode::Success
                }
                _ => ExitCode::InvalidInput,
            };
        }
    };
    let verbosity = if cli.global.quiet {
        -1
    } else {
        cli.global.verbose.min(3) as i8
    };
    logging::init(cli.global.log_format, verbosity);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::StepFailed;
        }
    };
    let result = runtime.block_on(dispatch(&cli));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(outcome) => crate::outcome::exit_code(outcome),
        Err(error) => {
            report_error(&cli, &error);
            error.exit_code()
        }
    }
}

fn report_error(cli: &Cli, error: &Error) {
    if cli.global.json() {
        let document = serde_json::json!({
            "error": error.to_string(),
            "kind": error.kind(),
            "hint": error.hint(),
            "cluster": error.cluster(),
            "exit_code": error.exit_code().code(),
        });
        println!("{document}");
    }
    let color = logging::use_color();
    let prefix = if color {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    };
    match error {
        Error::Plan(errors) if !cli.global.json() => eprint!("{}", errors.render()),
        _ => eprintln!("{prefix}: {error}"),
    }
    if let Some(hint) = error.hint() {
        eprintln!("hint: {hint}");
    }
}

fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text).map_err(|error| error.to_string()),
    }
}

fn print_completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "cutover", &mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_top_level_help_lists_every_exit_code_from_the_table() {
        let help = after_help();
        for code in ExitCode::ALL {
            assert!(
                help.contains(&format!("  {}  {}", code.code(), code.description())),
                "exit code {} documented:\n{help}",
                code.code()
            );
        }
    }

    /// Every command's exit codes come from the one table: each listed code
    /// is under the table's name, in order, and 2 (bad arguments) is always there.
    #[test]
    fn every_command_lists_its_exit_codes_under_the_tables_names() {
        let mut root = Cli::command();
        root.build();
        let mut checked = 0;
        let mut stack: Vec<clap::Command> = root.get_subcommands().cloned().collect();
        while let Some(command) = stack.pop() {
            stack.extend(command.get_subcommands().cloned());
            let Some(help) = command.get_after_help().map(|h| h.to_string()) else {
                continue;
            };
            let Some((_, codes)) = help.split_once("Exit codes:") else {
                continue;
            };
            let mut listed = Vec::new();
            for line in codes
                .lines()
                .filter(|l| l.starts_with("  ") && !l.starts_with("     "))
            {
                let line = line.trim_start();
                let (number, rest) = line.split_once("  ").expect("`N  name: meaning`");
                let number: u8 = number.parse().expect("a code");
                let code = ExitCode::ALL
                    .into_iter()
                    .find(|code| code.code() == number)
                    .unwrap_or_else(|| {
                        panic!("{}: unknown exit code {number}", command.get_name())
                    });
                assert!(
                    rest.starts_with(&format!("{}: ", code.name())),
                    "{}: code {number} listed as `{rest}`",
                    command.get_name()
                );
                listed.push(number);
            }
            assert!(
                listed.windows(2).all(|w| w[0] < w[1]),
                "{}: {listed:?}",
                command.get_name()
            );
            assert!(listed.contains(&2), "{}: {listed:?}", command.get_name());
            checked += 1;
        }
        assert!(checked >= 12, "only {checked} commands list exit codes");
    }
}
