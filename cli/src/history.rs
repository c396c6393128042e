//! `chute runs` and `chute run RUN_ID`: run history from the `import_runs` ledger the functions
//! write (src/store/ledger.rs): one document per run, its status and, once reported, the report.

use std::process::ExitCode;

use bson::{doc, Bson, Document};
use chute::app::Env;
use chute::report::thousands;
use chute::store::RUNS;
use serde::Serialize;

use crate::{Failure, Outcome};

pub const RUNS_ABOUT: &str = "\
List runs from the import_runs ledger in MongoDB (CHUTE_MONGODB_URI, CHUTE_DATABASE), newest \
first: when each was requested, the file and its version (ETag), status (RUNNING until reported, \
then SUCCEEDED, PARTIAL or FAILED), row counts, duration and the run id.

EXAMPLES
    eval \"$(scripts/stack env)\"
    chute runs
    chute runs --status FAILED --since 2026-11-01
    chute runs --source incoming/shoes/ --limit 5
    chute --json runs | jq '.[].run_id'";

pub const RUN_ABOUT: &str = "\
Show one run from the import_runs ledger: its file and version, schema, status and reason, counts, \
what was written, duration, errors by code and where its report, rejects.csv and summary are.

EXIT STATUS
    0   the run is RUNNING, SUCCEEDED or PARTIAL
    1   the run FAILED
    2   no such run, or MongoDB is not reachable

EXAMPLES
    chute run products-2026-11-22-3f1c9a0b2d4e5f60
    chute --json run products-2026-11-22-3f1c9a0b2d4e5f60 | jq .report.rows";

#[derive(clap::Args)]
pub struct RunsArgs {
    /// Only files whose key starts with this (a folder like `incoming/shoes/`, or a whole key).
    #[arg(long, value_name = "KEY")]
    pub source: Option<String>,
    /// Only runs with this status: RUNNING, SUCCEEDED, PARTIAL or FAILED.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only runs requested on or after this date (`2026-11-22` or an RFC 3339 time).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// At most this many runs.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: i64,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The run id (the Step Functions execution name), as `chute runs` lists it.
    pub run_id: String,
}

/// One line of history.
#[derive(Debug, Serialize)]
pub struct RunLine {
    pub run_id: String,
    pub status: String,
    pub requested_at: String,
    pub finished_at: Option<String>,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub schema: String,
    pub rows: Option<u64>,
    pub valid: Option<u64>,
    pub rejected: Option<u64>,
    pub duplicate: Option<u64>,
    pub duration_ms: Option<u64>,
    /// `s3://bucket/reports/<run>/report.json`, once reported.
    pub report: Option<String>,
    /// Delta import: `on` or `off`, and the rows the database was sent (new and changed), the
    /// rows the snapshot proved unchanged and the database commands the run sent.
    pub delta: Option<String>,
    pub sent: Option<u64>,
    pub skipped: Option<u64>,
    pub commands: Option<u64>,
}

fn text(doc: &Document, path: &str) -> Option<String> {
    let mut parts = path.split('.').peekable();
    let mut current = doc;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return match current.get(part)? {
                Bson::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
        }
        current = current.get_document(part).ok()?;
    }
    None
}

fn number(doc: &Document, path: &str) -> Option<u64> {
    let (head, last) = path.rsplit_once('.').unwrap_or(("", path));
    let mut current = doc;
    for part in head.split('.').filter(|p| !p.is_empty()) {
        current = current.get_document(part).ok()?;
    }
    match current.get(last)? {
        Bson::Int32(n) => Some(*n as u64),
        Bson::Int64(n) => Some(*n as u64),
        Bson::Double(n) => Some(*n as u64),
        _ => None,
    }
}

impl RunLine {
    pub fn from_ledger(d: &Document) -> RunLine {
        let bucket = text(d, "source.bucket").unwrap_or_default();
        RunLine {
            run_id: text(d, "_id").unwrap_or_default(),
            status: text(d, "status").unwrap_or_default(),
            requested_at: text(d, "requested_at").unwrap_or_default(),
            finished_at: text(d, "finished_at"),
            key: text(d, "source.key").unwrap_or_default(),
            etag: text(d, "source.etag").unwrap_or_default(),
            schema: text(d, "schema").unwrap_or_default(),
            rows: number(d, "report.rows.total"),
            valid: number(d, "report.rows.valid"),
            rejected: number(d, "report.rows.rejected"),
            duplicate: number(d, "report.rows.duplicate"),
            duration_ms: number(d, "report.timings.duration_ms"),
            report: text(d, "report.artifacts.report").map(|k| format!("s3://{bucket}/{k}")),
            bucket,
            delta: text(d, "report.delta.status"),
            // A run with delta off sent every document it staged.
            sent: match text(d, "report.delta.status").as_deref() {
                Some("off") => number(d, "report.staged"),
                _ => number(d, "report.delta.new")
                    .zip(number(d, "report.delta.changed"))
                    .map(|(new, changed)| new + changed),
            },
            skipped: number(d, "report.delta.unchanged"),
            commands: number(d, "report.delta.commands"),
        }
    }
}

fn count(n: Option<u64>) -> String {
    n.map(thousands).unwrap_or_else(|| "-".into())
}

fn duration(ms: Option<u64>) -> String {
    ms.map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// The ledger filter of `chute runs`.
pub fn filter(args: &RunsArgs) -> Result<Document, Failure> {
    let mut filter = doc! {};
    if let Some(source) = &args.source {
        let escaped: String = source
            .chars()
            .flat_map(|c| {
                let special = "\\^$.|?*+()[]{}".contains(c);
                special.then_some('\\').into_iter().chain(Some(c))
            })
            .collect();
        filter.insert("source.key", doc! {"$regex": format!("^{escaped}")});
    }
    if let Some(status) = &args.status {
        let status = status.to_ascii_uppercase();
        if !["RUNNING", "SUCCEEDED", "PARTIAL", "FAILED"].contains(&status.as_str()) {
            return Err(Failure(format!(
                "--status {status}: use RUNNING, SUCCEEDED, PARTIAL or FAILED"
            )));
        }
        filter.insert("status", status);
    }
    if let Some(since) = &args.since {
        filter.insert("requested_at", doc! {"$gte": since_rfc3339(since)?});
    }
    Ok(filter)
}

/// `2026-11-22` or an RFC 3339 time, as the RFC 3339 text the ledger's `requested_at` compares to.
pub fn since_rfc3339(since: &str) -> Result<String, Failure> {
    let text = if since.len() == 10 {
        format!("{since}T00:00:00Z")
    } else {
        since.to_string()
    };
    bson::DateTime::parse_rfc3339_str(&text)
        .ok()
        .and_then(|t| t.try_to_rfc3339_string().ok())
        .ok_or_else(|| {
            Failure(format!(
                "--since {since}: use a date (2026-11-22) or an RFC 3339 time"
            ))
        })
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn runs(args: &RunsArgs, json: bool) -> Outcome {
    let filter = filter(args)?;
    let lines = runtime()?.block_on(async {
        let env = Env::load().await?;
        let store = env.store().await?;
        let mut cursor = store
            .database()
            .collection::<Document>(RUNS)
            .find(filter)
            .sort(doc! {"requested_at": -1, "_id": 1})
            .limit(args.limit.max(1))
            .await?;
        let mut lines = Vec::new();
        while cursor.advance().await? {
            lines.push(RunLine::from_ledger(&cursor.deserialize_current()?));
        }
        Ok::<_, Failure>(lines)
    })?;
    if json {
        crate::output::json(&lines);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{:<20}  {:<9}  {:>7}  {:>7}  {:>8}  {:>5}  {:>7}  {:>7}  {:>6}  {:>8}  {}\n",
        "REQUESTED",
        "STATUS",
        "ROWS",
        "VALID",
        "REJECTED",
        "DELTA",
        "SENT",
        "SKIPPED",
        "DB-CMD",
        "DURATION",
        "FILE (ETAG) · RUN"
    );
    for l in &lines {
        out += &format!(
            "{:<20}  {:<9}  {:>7}  {:>7}  {:>8}  {:>5}  {:>7}  {:>7}  {:>6}  {:>8}  {} ({}) · {}\n",
            l.requested_at.get(..19).unwrap_or(&l.requested_at),
            l.status,
            count(l.rows),
            count(l.valid),
            count(l.rejected),
            l.delta.as_deref().unwrap_or("-"),
            count(l.sent),
            count(l.skipped),
            count(l.commands),
            duration(l.duration_ms),
            l.key,
            l.etag.get(..12).unwrap_or(&l.etag),
            l.run_id
        );
    }
    if lines.is_empty() {
        out += "(no runs match)\n";
    }
    crate::output::print(&out);
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: &RunArgs, json: bool) -> Outcome {
    let found = runtime()?.block_on(async {
        let env = Env::load().await?;
        Ok::<_, Failure>(env.store().await?.run(&args.run_id).await?)
    })?;
    let Some(doc) = found else {
        return Err(Failure(format!(
            "no run {} in the import_runs ledger",
            args.run_id
        )));
    };
    let line = RunLine::from_ledger(&doc);
    let failed = line.status == "FAILED";
    if json {
        crate::output::json(&Bson::Document(doc).into_relaxed_extjson());
    } else {
        let mut out = format!("run       {}\n", line.run_id);
        out += &format!("file      s3://{}/{}\n", line.bucket, line.key);
        out += &format!("version   ETag {}\n", line.etag);
        out += &format!("schema    {}\n", line.schema);
        out += &format!("status    {}\n", line.status);
        if let Some(reason) = text(&doc, "report.reason") {
            out += &format!("reason    {reason}\n");
        }
        out += &format!("requested {}\n", line.requested_at);
        if let Some(finished) = &line.finished_at {
            out += &format!("finished  {finished} ({})\n", duration(line.duration_ms));
        }
        if line.rows.is_some() {
            out += &format!(
                "rows      {} total, {} valid, {} rejected, {} duplicate\n",
                count(line.rows),
                count(line.valid),
                count(line.rejected),
                count(line.duplicate)
            );
            out += &format!(
                "written   {} inserted, {} updated, {} unchanged\n",
                count(number(&doc, "report.written.inserted")),
                count(number(&doc, "report.written.updated")),
                count(number(&doc, "report.written.unchanged"))
            );
        }
        if let Some(status) = &line.delta {
            let why = text(&doc, "report.delta.reason")
                .or_else(|| text(&doc, "report.delta.base_run").map(|r| format!("against run {r}")))
                .unwrap_or_default();
            out += &format!(
                "delta     {status} ({why}): {} new, {} changed, {} unchanged (not sent), {} stale; \
                 {} database commands; snapshot {}\n",
                count(number(&doc, "report.delta.new")),
                count(number(&doc, "report.delta.changed")),
                count(line.skipped),
                count(number(&doc, "report.delta.stale")),
                count(line.commands),
                text(&doc, "report.delta.snapshot").unwrap_or_else(|| "-".into())
            );
        }
        if let Ok(codes) = doc
            .get_document("report")
            .and_then(|r| r.get_document("errors_by_code"))
        {
            if !codes.is_empty() {
                let list: Vec<String> = codes
                    .iter()
                    .map(|(code, n)| format!("{code} {n}"))
                    .collect();
                out += &format!("errors    {}\n", list.join(", "));
            }
        }
        for (label, name) in [
            ("report", "report"),
            ("rejects", "rejects"),
            ("summary", "summary"),
        ] {
            if let Some(key) = text(&doc, &format!("report.artifacts.{name}")) {
                out += &format!("{label:<9} s3://{}/{key}\n", line.bucket);
            }
        }
        crate::output::print(&out);
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
