//! Command-line interface: parse arguments, call the library, map errors to exit codes.

mod commands;
mod render;

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::error::{Error, ExitCode};
use crate::logging::{self, LogFormat};

const AFTER_HELP: &str = "\
Examples:
  cutover plan check plans/lab-switchover.yaml
  cutover plan schema > plan.schema.json
  cutover lab up --replicating && eval \"$(cutover lab env)\"
  cutover status --output json

Exit codes:
  0  success
  1  a step failed (the report says what state it left)
  2  invalid input: bad command-line use, an invalid plan, a missing secret or program
  3  a gate or precheck refused (nothing changed, or the phase was rolled back cleanly),
     or another run holds the plan's lock
  4  a data mismatch was found (rows, sums, or a broken audit chain)";

/// Zero-data-loss migration and cutover of MySQL-family databases, driven by YAML plans.
#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about,
    after_long_help = AFTER_HELP
)]
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
    /// State directory (runs, journal, audit log, lab).
    #[arg(long, global = true, env = "CUTOVER_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
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
    pub fn state_dir(&self) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(crate::store::Store::default_dir)
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
    Plan(PlanCommand),
    /// Disaster-recovery drills: run one, schedule them, list past ones.
    #[command(subcommand)]
    Drill(DrillCommand),
    /// List runs and their step states, or show one run.
    #[command(
        after_help = "Examples:\n  cutover status\n  cutover status 20261121-101500-a1b2c3 --output json"
    )]
    Status {
        /// A run id; without it, the most recent runs.
        run_id: Option<String>,
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Run a plan: live prechecks, then its phases in order, each step journaled.
    #[command(
        after_help = "Examples:\n  cutover run plans/lab-switchover.yaml --dry-run\n  cutover run plans/lab-switchover.yaml --yes\n  cutover run plans/lab-switchover.yaml --phase cutover --output json\n  cutover run plans/lab-migration.yaml --from-phase verify --yes\n\n\
Prechecks whose state an earlier phase of the run makes true (targets replicating\n\
after `replicate`, another primary after a switchover) run at the start of the\n\
phase that needs them; the dry run lists them as deferred.\n\n\
Exit codes: 0 completed (or the dry run found nothing wrong); 1 a step failed and\n\
the state is not what the plan started from (the report says what it left and the\n\
next command); 2 invalid plan or arguments; 3 a precheck or gate refused (before\n\
the run, or at a phase's start: earlier phases stay completed), or a\n\
`rollback: auto` phase failed and was undone cleanly, or the plan is locked by\n\
another run, or --from-phase found an earlier phase not completed; 4 a checksum\n\
step found a data mismatch."
    )]
    Run {
        plan: PathBuf,
        /// Connect read-only, run every precheck and print the exact operations; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run only this phase.
        #[arg(long, value_name = "NAME", conflicts_with = "from_phase")]
        phase: Option<String>,
        /// Run this phase and every later one; the earlier phases must have
        /// completed in earlier runs of the same plan file (refused, exit 3, naming them).
        #[arg(long, value_name = "NAME")]
        from_phase: Option<String>,
    },
    /// Continue an interrupted run from its journal: finish it if it passed the
    /// point of no return, otherwise roll the interrupted phase back.
    #[command(
        after_help = "Example:\n  cutover resume 20261121-101500-a1b2c3 --yes\n\n\
Exit codes: 0 the run finished; 3 it was rolled back (it had not passed the point\n\
of no return); 1 a step failed again; 2 unknown run or changed plan file."
    )]
    Resume {
        run_id: String,
        /// The plan file, when it moved since the run (it must be unchanged).
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Undo a run's completed phases, latest first; after a switchover this is
    /// the reverse switchover, with no acknowledged write lost.
    #[command(
        after_help = "Examples:\n  cutover rollback 20261121-101500-a1b2c3 --yes\n  cutover rollback 20261121-101500-a1b2c3 --to-phase cutover --yes\n\n\
Exit codes: 0 rolled back; 1 a rollback step failed (the report says what state it\n\
left); 2 unknown run, phase or changed plan file; 3 the plan is locked by another run."
    )]
    Rollback {
        run_id: String,
        /// Undo this phase and every later one (default: the whole run).
        #[arg(long, value_name = "NAME")]
        to_phase: Option<String>,
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Write through the application's DNS name like an application, then read
    /// every acknowledged write back from the primary.
    #[command(
        after_help = "Examples:\n  cutover probe plans/lab-switchover.yaml --duration 60\n  cutover probe plans/lab-switchover.yaml --duration 10m --rate 100 --watch-primaries --output json\n\n\
Stops at --duration or on Ctrl-C/SIGTERM, then reports. Writes to the\n\
`cutover_probe.writes` table as the plan's application user.\n\
Exit codes: 0 nothing lost or duplicated; 4 an acknowledged write is missing or\n\
duplicated, or two clusters were writable at once; 1 no primary for the read-back."
    )]
    Probe {
        plan: PathBuf,
        /// Seconds, or a duration like 90s or 10m.
        #[arg(long, value_parser = parse_seconds, default_value = "60")]
        duration: std::time::Duration,
        /// Writes per second.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5000))]
        rate: u32,
        /// Also poll read_only on every cluster every 20 ms and report overlaps.
        #[arg(long)]
        watch_primaries: bool,
    },
    /// Render the plan as a markdown runbook: every step, its SQL or DNS
    /// operation, how to verify it by hand, and its rollback.
    #[command(
        after_help = "Example:\n  cutover runbook plans/lab-switchover.yaml > runbooks/lab-switchover.md"
    )]
    Runbook { plan: PathBuf },
    /// Show every enabled cluster: reachable, flavor, role, source, fences, GTID
    /// position, replication threads, errant transactions, clock offset.
    #[command(
        after_help = "Examples:\n  cutover topology plans/lab-switchover.yaml\n  cutover topology plans/lab-switchover.yaml --output json\n\n\
Exit codes: 0 every cluster reached and none has errant transactions; 1 a cluster\n\
is unreachable (the others are still reported); 2 invalid plan or missing secret;\n\
4 a replica has errant transactions (it wins over 1)."
    )]
    Topology { plan: PathBuf },
    /// Replication lag of every enabled target, measured with the orchestrator's
    /// own heartbeat (no server clock is trusted), and transactions behind.
    #[command(
        after_help = "Examples:\n  cutover lag plans/lab-switchover.yaml\n  cutover lag plans/lab-switchover.yaml --watch\n  cutover lag plans/lab-switchover.yaml --watch --output json --duration 30s\n  cutover lag plans/lab-switchover.yaml --wait --max-lag-ms 200 --sustained 3s --timeout 60s\n\n\
Writes one row per process to `cutover.heartbeat` on the plan's source.\n\
Exit codes: 0 measured (or --wait passed); 1 a target could not be measured;\n\
2 invalid plan or arguments; 3 --wait timed out with targets over the limit."
    )]
    Lag(LagArgs),
    /// Compare the source's rows with every target's at one consistent point,
    /// down to the row and column, and reconcile money totals exactly.
    #[command(
        after_help = "Examples:\n  cutover checksum plans/lab-switchover.yaml\n  cutover checksum plans/lab-switchover.yaml --tables 'refunds.*' --output json\n  cutover checksum plans/lab-switchover.yaml --tables refunds.transactions --targets c1 c3\n\n\
Targets that replicate from the source are compared at one GTID position: their\n\
replication pauses for a moment while they reach it, and the source's writes wait\n\
a few milliseconds for a read lock. Other targets are compared live, and a\n\
difference is looked at twice (`settled`: stable or changing).\n\
Skips the `cutover` and `cutover_probe` schemas.\n\
Exit codes: 0 every row and total matches; 1 a cluster could not be compared (the\n\
others still are, and nothing differed); 2 invalid plan or arguments; 4 a row, a\n\
table's shape or a money total differs."
    )]
    Checksum(ChecksumArgs),
    /// Take one consistent snapshot of the source's databases and load it into
    /// every target at once; optionally start replication from its position.
    #[command(
        after_help = "Examples:\n  cutover snapshot plans/lab-migration.yaml --skip-binlog --replicate\n  cutover snapshot plans/lab-migration.yaml --targets c2 --replace --output json\n\n\
Targets must be empty (no table in the plan's databases) unless --replace is given,\n\
which drops and reloads those databases. --skip-binlog loads with sql_log_bin = 0:\n\
faster, and no local GTIDs; do not use it for a target that has replicas of its own\n\
(they would not receive the rows).\n\
Exit codes: 0 loaded into every target (and caught up, with --replicate); 1 a target\n\
or the source failed (the others carry on; the report names it); 2 invalid plan or\n\
arguments; 3 refused before anything changed (a target not empty, the source\n\
without binlog or GTIDs)."
    )]
    Snapshot(SnapshotArgs),
    /// Load a snapshot directory into the targets, after checking every file
    /// against its manifest; optionally start replication from its position.
    #[command(
        after_help = "Examples:\n  cutover restore /var/backups/refunds-snapshot plans/lab-migration.yaml --targets c2 --skip-binlog\n\n\
Every file's sha256 is checked before anything is loaded; a damaged or missing\n\
file is named and nothing changes (exit 3). Other exit codes as for `snapshot`."
    )]
    Restore {
        /// The snapshot directory (written by `cutover snapshot --directory`).
        #[arg(value_name = "DIRECTORY")]
        from: PathBuf,
        #[command(flatten)]
        load: SnapshotArgs,
    },
    /// The audit log of every change made to servers and DNS.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The local lab: MariaDB servers and BIND9 on loopback addresses.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct LagArgs {
    pub plan: PathBuf,
    /// Keep measuring: a live table on a terminal, JSON lines with --output json.
    #[arg(long, conflicts_with = "wait")]
    pub watch: bool,
    /// How long --watch runs.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1h")]
    pub duration: std::time::Duration,
    /// How often --watch reports.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "500ms")]
    pub every: std::time::Duration,
    /// Wait until every target stays under the limit for the window (the `wait_lag` gate).
    #[arg(long)]
    pub wait: bool,
    /// Gate limit; default: the plan's `gates.max_lag_ms`.
    #[arg(long, value_name = "MS")]
    pub max_lag_ms: Option<u64>,
    /// Gate window; default: the plan's `gates.sustained_for`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub sustained: Option<std::time::Duration>,
    /// Gate timeout; default: the plan's `gates.lag_timeout`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Heartbeat interval (10 ms or more); default: the plan's `gates.heartbeat_interval_ms`.
    #[arg(long, value_name = "MS")]
    pub interval_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    pub plan: PathBuf,
    /// Targets to load; default: every enabled target.
    #[arg(long, num_args = 1.., value_name = "CLUSTER")]
    pub targets: Vec<String>,
    /// Reader connections on the source (each with one loader per target).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Drop and reload databases that already hold tables on a target.
    #[arg(long)]
    pub replace: bool,
    /// Load with binary logging off (not for targets with replicas of their own).
    #[arg(long)]
    pub skip_binlog: bool,
    /// Then start each target replicating from the snapshot's position and wait until caught up.
    #[arg(long)]
    pub replicate: bool,
    /// Also write the snapshot to this new directory (gzip chunk files and a
    /// manifest with their sha256), for `cutover restore`.
    #[arg(long, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// How long --replicate waits for the targets to catch up.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10m")]
    pub replicate_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ChecksumArgs {
    pub plan: PathBuf,
    /// `schema.table` patterns (`*`, `?`); default: every table of the plan's databases.
    #[arg(long, num_args = 1.., value_name = "PATTERN")]
    pub tables: Vec<String>,
    /// Targets to compare; default: every enabled target.
    #[arg(long, num_args = 1.., value_name = "CLUSTER")]
    pub targets: Vec<String>,
    /// Chunks compared at once (each holds one session per cluster); bounded by the plan's pools.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Time each chunk should take; sizes adapt toward it.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "250ms")]
    pub chunk_time: std::time::Duration,
    /// Significant digits compared for FLOAT and DOUBLE columns (1-17).
    #[arg(long, value_name = "DIGITS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=17))]
    pub float_precision: u32,
    /// Columns reconciled by exact SUM and COUNT (`table.column`); default: every DECIMAL column.
    #[arg(long, num_args = 1.., value_name = "TABLE.COLUMN")]
    pub money_columns: Vec<String>,
    /// Print each table's whole-table checksum query (what every chunk runs, without
    /// the key range) and compare nothing.
    #[arg(long)]
    pub show_sql: bool,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate a plan without touching the network; exit 2 if it is invalid.
    #[command(after_help = "Example:\n  cutover plan check plans/lab-switchover.yaml")]
    Check {
        /// The plan file.
        plan: PathBuf,
    },
    /// Print the JSON Schema of the plan format.
    Schema,
}

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

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start legacy, c1, c2, c3, c6 (MariaDB) and ns1, ns2 (BIND9); seed the refunds dataset.
    #[command(
        after_help = "Examples:\n  cutover lab up\n  cutover lab up --replicating --rows 100000"
    )]
    Up {
        /// Transactions to seed into legacy (participants, ledger and audit rows scale with it).
        #[arg(long, default_value_t = crate::lab::DEFAULT_ROWS)]
        rows: u64,
        /// Start c1, c2, c3 and c6 as GTID replicas of legacy holding the same data.
        #[arg(long)]
        replicating: bool,
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
    /// Print `export` lines for the variables lab plans use: eval "$(cutover lab env)".
    Env {
        #[arg(long, env = "CUTOVER_LAB_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Fail the plan's drill primary on purpose (planned switchover, crash or
    /// isolation), fail over, measure RTO and RPO with the write probe, verify
    /// with checksums, fail back, and write markdown, JSON and HTML reports.
    #[command(
        after_help = "Examples:\n  cutover drill run plans/lab-dr-drill.yaml --yes\n  cutover drill run plans/lab-dr-drill.yaml --failure planned --yes --output json\n\n\
Exit codes: 0 every target met and every checksum matched; 1 a target was missed or a\n\
stage failed (the report says which); 2 invalid plan or arguments; 3 a precheck refused\n\
(nothing was injected); 4 a checksum found data that differs."
    )]
    Run {
        plan: PathBuf,
        /// Override the plan's `drill.failure`.
        #[arg(long, value_enum)]
        failure: Option<FailureArg>,
        /// Directory for the reports (default: `drills/` in the state directory).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
    },
    /// Finish a drill whose orchestrator died: from its journal and the live
    /// servers, complete the failover (or make it, if the primary is down and
    /// nobody took over), bring DNS and every replica onto the one writable
    /// cluster, then verify and fail back as the plan asks; the report says
    /// where it was interrupted.
    #[command(
        after_help = "Example:\n  cutover drill resume 20261130-221500-a1b2c3 --yes\n\n\
Exit codes: as `drill run`; 2 an unknown drill, a changed plan file, or a drill\n\
that is not interrupted."
    )]
    Resume {
        drill_id: String,
        /// The plan file, when it moved since the drill (it must be unchanged).
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Directory for the reports (default: `drills/` in the state directory).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
    },
    /// Store a schedule for a plan's drill (replacing its earlier one), list
    /// the schedules, or remove one. `drill daemon` runs them.
    #[command(
        after_help = "Examples:\n  cutover drill schedule plans/lab-dr-drill.yaml --cron '0 2 * * Sat' --tz Asia/Kolkata\n  cutover drill schedule plans/lab-dr-drill.yaml --cron '*/10 * * * * *'\n  cutover drill schedule --list\n  cutover drill schedule plans/lab-dr-drill.yaml --remove\n\n\
Five fields are minute hour day month weekday; six put seconds first."
    )]
    Schedule {
        #[arg(required_unless_present = "list")]
        plan: Option<PathBuf>,
        #[arg(long, required_unless_present_any = ["list", "remove"])]
        cron: Option<String>,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        #[arg(long, conflicts_with_all = ["cron", "remove"])]
        list: bool,
        #[arg(long, conflicts_with = "cron")]
        remove: bool,
    },
    /// Run the stored schedules until SIGTERM: one drill at a time, missed runs
    /// recorded (another drill still running, the daemon down, a broken plan).
    #[command(after_help = "Example:\n  cutover drill daemon --yes &\n\n\
Exit codes: 0 stopped by SIGTERM or SIGINT; 2 nothing scheduled or a schedule is invalid.")]
    Daemon {
        /// Directory for the reports (default: `drills/` in the state directory).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
    },
    /// Past drills with RTO and RPO against their targets, and the RTO trend.
    #[command(
        after_help = "Examples:\n  cutover drill history\n  cutover drill history --plan lab-dr-drill --output json"
    )]
    History {
        /// Only drills of this plan (its `name`).
        #[arg(long)]
        plan: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FailureArg {
    Planned,
    Crash,
    Isolate,
}

impl From<FailureArg> for crate::plan::DrillFailure {
    fn from(value: FailureArg) -> Self {
        match value {
            FailureArg::Planned => crate::plan::DrillFailure::Planned,
            FailureArg::Crash => crate::plan::DrillFailure::Crash,
            FailureArg::Isolate => crate::plan::DrillFailure::Isolate,
        }
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
    let result = runtime.block_on(commands::dispatch(&cli));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
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
}

fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text).map_err(|error| error.to_string()),
    }
}

pub(crate) fn print_completions(shell: clap_complete::Shell) {
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
    fn exit_code_text_matches_the_enum() {
        for (code, word) in [
            (0, "success"),
            (1, "step failed"),
            (2, "invalid input"),
            (3, "refused"),
            (4, "mismatch"),
        ] {
            assert!(
                AFTER_HELP.contains(&format!("{code}  ")) && AFTER_HELP.contains(word),
                "exit code {code} ({word}) documented"
            );
        }
    }
}
