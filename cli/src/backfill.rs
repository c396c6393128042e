//! `chute backfill`: runs for the objects under the incoming prefix that have none for their exact
//! version (a lost S3 event, a trigger that failed all its retries, a bucket older than chute). The
//! run id, the execution input and the start are the ones the `trigger` function uses
//! ([`chute::app`]), so an object's run has one name whoever starts it, and Step Functions refuses
//! a second execution of it: running backfill twice starts nothing twice.

use std::process::ExitCode;

use chute::app::{run_input, wanted, Env, ObjectRef};
use serde::Serialize;

use crate::history::{runtime, since_rfc3339};
use crate::{Failure, Outcome};

pub const LONG_ABOUT: &str = "\
List the data files (.csv, .tsv, .txt, .gz, .zst, .zip, .xlsx) under the incoming prefix (CHUTE_INCOMING_PREFIX, default incoming/) and \
start a run for each one whose exact version (version id, else ETag) has no run in the \
import_runs ledger. Runs are started on CHUTE_STATE_MACHINE_ARN with the execution name and input \
the trigger function gives them, schema and chunk size from the object's metadata included, so an \
object the trigger already started is never started again: a second backfill starts nothing.

Each object is reported as: has-run (the ledger has its run, with the run's status), started, \
already-started (the execution existed, its ledger entry not yet), would-start (--dry-run).

EXAMPLES
    eval \"$(scripts/stack env)\"
    chute backfill --bucket chute-local --dry-run
    chute backfill --bucket my-imports --prefix incoming/shoes/ --since 2026-11-20";

#[derive(clap::Args)]
pub struct Args {
    /// The bucket the files were dropped in.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    /// Only keys under this prefix (inside the incoming prefix: `shoes/` and `incoming/shoes/`
    /// are the same).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Only objects last modified on or after this date (`2026-11-22` or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Say what would start, start nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct Backfilled {
    pub key: String,
    pub etag: String,
    pub version_id: Option<String>,
    pub last_modified: String,
    pub run_id: String,
    /// `has-run`, `started`, `already-started` or `would-start`.
    pub action: &'static str,
    /// The ledger status of an existing run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

pub fn run(args: &Args, json: bool) -> Outcome {
    let since = args.since.as_deref().map(since_rfc3339).transpose()?;
    let done = runtime()?.block_on(async {
        let env = Env::load().await?;
        let incoming = &env.config.incoming_prefix;
        let prefix = match &args.prefix {
            Some(p) if p.starts_with(incoming.as_str()) => p.clone(),
            Some(p) => format!("{incoming}{p}"),
            None => incoming.clone(),
        };
        let arn = match (&env.config.state_machine_arn, args.dry_run) {
            (Some(arn), _) => arn.clone(),
            (None, true) => String::new(),
            (None, false) => {
                return Err(Failure(
                    "CHUTE_STATE_MACHINE_ARN is not set (use --dry-run to only list)".into(),
                ))
            }
        };
        let store = env.store().await?;
        let mut done = Vec::new();
        for listed in env.blob.list(&args.bucket, &prefix).await? {
            let too_old = since
                .as_deref()
                .is_some_and(|s| listed.last_modified.as_str() < s);
            if !wanted(&env.config, &listed.key) || too_old {
                continue;
            }
            let info = env.blob.head(&args.bucket, &listed.key).await?;
            let object = ObjectRef {
                bucket: args.bucket.clone(),
                key: listed.key.clone(),
                etag: None,
                version_id: info.version_id.clone(),
            };
            let input = run_input(&env.config, &object, &info);
            let existing = store.run(&input.run_id).await?;
            let (action, status) = match existing {
                Some(run) => ("has-run", run.get_str("status").ok().map(str::to_string)),
                None if args.dry_run => ("would-start", None),
                None if env.workflow.start(&arn, &input).await? => ("started", None),
                None => ("already-started", None),
            };
            done.push(Backfilled {
                key: listed.key,
                etag: input.etag,
                version_id: input.version_id,
                last_modified: listed.last_modified,
                run_id: input.run_id,
                action,
                status,
            });
        }
        Ok::<_, Failure>(done)
    })?;
    if json {
        crate::output::json(&done);
    } else {
        let mut out = String::new();
        for b in &done {
            out += &format!(
                "{:<15}  {}  {}{}\n",
                b.action,
                b.key,
                b.run_id,
                b.status
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            );
        }
        let started = done.iter().filter(|b| b.action == "started").count();
        let would = done.iter().filter(|b| b.action == "would-start").count();
        out += &format!(
            "{} objects: {started} started{}, {} already had a run\n",
            done.len(),
            if args.dry_run {
                format!(", {would} would start (dry run)")
            } else {
                String::new()
            },
            done.len() - started - would
        );
        crate::output::print(&out);
    }
    Ok(ExitCode::SUCCESS)
}
