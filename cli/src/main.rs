//! `chute`: the command line of the chute importer. Every rule it applies comes from the `chute`
//! library the Lambda functions run; this crate only reads arguments, calls it and prints.

mod backfill;
mod check;
mod draft;
mod explain;
mod history;
mod output;
mod reading;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ABOUT: &str =
    "Check product CSVs before dropping them, draft schemas, see run history, backfill";

const LONG_ABOUT: &str = "\
chute imports product CSVs dropped in S3 (under incoming/) into MongoDB through a Step Functions \
state machine. This command answers the everyday questions around it with the same library the \
functions run, so a rule, an error code or a duplicate resolution is never written twice.

SUBCOMMANDS
    check FILE          validate and transform a local file offline, exactly as a run would
    schema draft FILE   print an editable schema TOML inferred from a sample
    runs                run history from the import_runs ledger (MongoDB)
    run RUN_ID          one run: file, version, status, counts, duration, report location
    backfill            start runs for uploaded files that have none (same run ids as the trigger)
    explain KEY         one stored product field by field: value, source, run, file, row
    verify --source S   a source's delta snapshot against the database: the drift (products
                        edited or deleted by hand), per-piece checksums first; --repair
                        re-applies exactly the drifted products

SETTINGS
    The same environment variables as the functions: CHUTE_MONGODB_URI, CHUTE_DATABASE,
    AWS_ENDPOINT_URL, CHUTE_STATE_MACHINE_ARN, CHUTE_SCHEMA, CHUTE_SCHEMA_DIR (optional: its NAME.toml wins over the built-in schema NAME),
    CHUTE_INCOMING_PREFIX, CHUTE_CHUNK_BYTES, ... For the local stack:
        eval \"$(scripts/stack env)\"

EXIT STATUS
    0   done (a checked file would be SUCCEEDED or PARTIAL; verify found no drift or repaired it)
    1   the file would be FAILED, or the run looked at FAILED, or verify found drift
    2   usage error, or an environment problem (unreadable file, bad schema, unreachable service)

EXAMPLES
    chute check incoming/products.csv
    chute check feed.csv --schema stock --out /tmp/feed-check
    chute --json check feed.csv | jq .rows
    chute schema draft feed.csv --key sku > schemas/feed.toml
    chute verify --source erp --schema catalog --repair";

#[derive(Parser)]
#[command(name = "chute", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// Print JSON on stdout instead of text (for scripts); messages still go to stderr.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and transform a local CSV offline, with the rules, codes and duplicate resolution
    /// of a real run.
    #[command(long_about = check::LONG_ABOUT)]
    Check(check::Args),
    /// List runs from the import_runs ledger, newest first.
    #[command(long_about = history::RUNS_ABOUT)]
    Runs(history::RunsArgs),
    /// Show one run: file, version, status, counts, duration, where its report is.
    #[command(long_about = history::RUN_ABOUT)]
    Run(history::RunArgs),
    /// Start runs for objects under the incoming prefix that have none for their exact version.
    #[command(long_about = backfill::LONG_ABOUT)]
    Backfill(backfill::Args),
    /// Show one stored product field by field: value, source, run, file and row, when.
    #[command(long_about = explain::LONG_ABOUT)]
    Explain(explain::Args),
    /// Compare a source's delta snapshot with the database: list the drift, optionally repair it.
    #[command(long_about = verify::LONG_ABOUT)]
    Verify(verify::Args),
    /// Schemas: `chute schema draft FILE` writes one from a sample.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Print an editable schema TOML inferred from a sample CSV.
    #[command(long_about = draft::LONG_ABOUT)]
    Draft(draft::Args),
}

/// An error that stops a subcommand: exit 2 with the message on stderr.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// What a subcommand returns: its exit status, or why it could not run.
pub type Outcome = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(&args, cli.json),
        Command::Schema(SchemaCommand::Draft(args)) => draft::run(&args, cli.json),
        Command::Runs(args) => history::runs(&args, cli.json),
        Command::Backfill(args) => backfill::run(&args, cli.json),
        Command::Explain(args) => explain::run(&args, cli.json),
        Command::Run(args) => history::run(&args, cli.json),
        Command::Verify(args) => verify::run(&args, cli.json),
    };
    match result {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("chute: {message}");
            ExitCode::from(2)
        }
    }
}
