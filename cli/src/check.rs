//! `chute check FILE`: the engine of a run over a local file, offline.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use chute::format::Format;
use chute::input::decode_all;
use chute::pipeline::{process_with_progress, Progress};
use chute::report::{
    failure_reason, thousands, Artifacts, FileObject, Report, ReportBuilder, Status, Timings,
    Written,
};
use chute::schema::Schema;
use chute::settings::Config;

use crate::reading::ReadFlags;
use crate::{Failure, Outcome};

pub const LONG_ABOUT: &str = "\
Validate and transform a local file offline: no AWS, no MongoDB, no stack. The file goes through \
the library's in-memory pipeline (plan, duplicate resolution, the transform's row checks), the \
same code the validate and transform functions run, so the counts, error codes and rejected rows \
are those a run of the file would report; only the documents a run would write are not built. Nothing is written anywhere unless --out is given.

The file is read as a run reads it: gzip, zstd and zip by their magic bytes, UTF-16 by its BOM, an .xlsx from its first sheet (or --sheet), and the schema's [format] (or --source's [sources.NAME.format]). --encoding, --delimiter, --decimal and --thousands declare what the object metadata chute-encoding, chute-delimiter, chute-decimal and chute-thousands would.

It prints the status the run would have, the counts, errors by code and by column and the first \
rejected rows. With --out DIR it writes DIR/report.json and DIR/rejects.csv, built by the same \
report code as a run's (the `written` counts stay 0: nothing was written).

A progress bar (rows/s, ETA) shows on a terminal for files over 8 MiB; it is quiet otherwise.

EXIT STATUS
    0   the file would be SUCCEEDED or PARTIAL
    1   the file would be FAILED (for example a missing key column or an empty file)
    2   usage error, unreadable file or schema

EXAMPLES
    chute check products.csv
    chute check stock.csv --schema stock
    chute check feed.csv --schema-file drafts/feed.toml --out /tmp/feed
    chute check export.csv.gz --encoding windows-1252 --delimiter auto --decimal , --thousands .
    chute --json check products.csv | jq '.rows, .errors_by_code'";

/// Files larger than this get a progress bar on a terminal.
const PROGRESS_BYTES: usize = 8 << 20;
/// Chunks are cut smaller than a run's so the progress bar moves; the outcome does not depend on
/// chunk size (tests/chunking.rs).
const CHECK_CHUNK_BYTES: u64 = 4 << 20;
/// Rejected rows printed in the text summary.
const SHOWN_REJECTS: usize = 10;

#[derive(clap::Args)]
pub struct Args {
    /// The file to check: a CSV (any delimiter or encoding), compressed (gzip, zstd, zip) or an .xlsx.
    pub file: PathBuf,
    /// Schema name: built in, or CHUTE_SCHEMA_DIR/NAME.toml when that exists (default: CHUTE_SCHEMA, else products).
    #[arg(long, value_name = "NAME", conflicts_with = "schema_file")]
    pub schema: Option<String>,
    /// A schema TOML file (for example one `chute schema draft` wrote).
    #[arg(long, value_name = "PATH")]
    pub schema_file: Option<PathBuf>,
    /// Write report.json and rejects.csv into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Read the file as this feed source's does (its `[sources.NAME.format]`, if the schema has one).
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    #[command(flatten)]
    pub read: ReadFlags,
}

impl Args {
    /// How to read the file: the schema's format (or the source's), with the flags over it as
    /// object metadata would be.
    pub fn format(&self, schema: &Schema) -> Result<Format, Failure> {
        let base = match &self.source {
            Some(source) => schema.format_for(source),
            None => &schema.format,
        };
        self.read.over(base)
    }
}

/// The schema named by `--schema` / `--schema-file`, else the configured default.
pub fn load_schema(
    config: &Config,
    name: Option<&str>,
    file: Option<&Path>,
) -> Result<Schema, Failure> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
            Ok(Schema::from_toml(&text, &path.display().to_string())?)
        }
        None => Ok(config.schema(name.unwrap_or(&config.default_schema))?),
    }
}

/// How a file is read: its format and, for a spreadsheet, the sheet.
pub struct Reading<'a> {
    pub format: Format,
    pub sheet: Option<&'a str>,
}

/// What checking a file found: the report a run would store, and its rejects.csv.
pub struct Checked {
    pub report: Report,
    pub rejects: Vec<u8>,
}

/// Decodes `bytes` as the validate step does (compressed, UTF-16, other encodings, spreadsheets),
/// runs the engine over them and builds the report with the report module's builder, as the
/// `report` function does from the steps' records. `key` names the file in the report.
pub fn check_bytes(
    bytes: &[u8],
    schema: &Schema,
    reading: &Reading<'_>,
    config: &Config,
    key: String,
    progress: impl FnMut(Progress),
) -> Checked {
    let started_at = chute::clock::now_rfc3339();
    let start = Instant::now();
    let mut options = config.plan.clone();
    options.chunk_bytes = options.chunk_bytes.min(CHECK_CHUNK_BYTES);
    let decoded = decode_all(bytes, Some(schema), &reading.format, reading.sheet);
    let source = FileObject {
        key,
        read_as: decoded.as_ref().ok().map(|d| d.read_as.clone()),
        ..FileObject::default()
    };
    let mut builder = ReportBuilder::new("check", source, &schema.name);
    if let Some(c) = &schema.continuation {
        builder.continuation(&c.reason);
    }
    let outcome = decoded.and_then(|decoded| {
        builder.warnings(&decoded.warnings);
        process_with_progress(
            &decoded.csv,
            schema,
            decoded.format,
            &options,
            false,
            progress,
        )
    });
    let mut header = Vec::new();
    match &outcome {
        Ok(file) => {
            header = file.plan.header.names.clone();
            file.fill_report(&mut builder);
        }
        // The text a run's report gives for a file error (validate fails with the error as JSON).
        Err(e) => builder.fail(failure_reason(
            "Chute.InvalidFile",
            &serde_json::to_string(e).expect("serialisable"),
        )),
    }
    let duration_ms = start.elapsed().as_millis() as u64;
    let timings = Timings {
        started_at,
        finished_at: chute::clock::now_rfc3339(),
        duration_ms,
        ..Timings::default()
    };
    let (mut report, rejects) = builder.finish(timings, Artifacts::default(), &header);
    report.timings.rows_per_second = chute::report::rate(report.rows.total, duration_ms);
    // Nothing was written: the valid rows are what a run would write, not what it wrote.
    report.written = Written::default();
    Checked { report, rejects }
}

pub fn run(args: &Args, json: bool) -> Outcome {
    let config = Config::from_env()?;
    let schema = load_schema(&config, args.schema.as_deref(), args.schema_file.as_deref())?;
    let cannot_read =
        |e: std::io::Error| Failure(format!("cannot read {}: {e}", args.file.display()));
    let file = std::fs::File::open(&args.file).map_err(cannot_read)?;
    let (mapped, read);
    // SAFETY: the map is read-only and private; the one hazard is another process truncating the
    // file during the check, which faults (SIGBUS) instead of giving a wrong answer. What cannot be
    // mapped (a pipe, /dev/stdin) is read instead.
    let bytes: &[u8] = match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => {
            mapped = map;
            &mapped
        }
        Err(_) => {
            read = std::fs::read(&args.file).map_err(cannot_read)?;
            &read
        }
    };
    let bar = if bytes.len() > PROGRESS_BYTES && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {human_pos}/{human_len} rows  {rate}  ETA {eta}",
            )
            .expect("valid template")
            .with_key("rate", rows_per_second),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let reading = Reading {
        format: args.format(&schema)?,
        sheet: args.read.sheet.as_deref(),
    };
    let key = args.file.display().to_string();
    let checked = check_bytes(bytes, &schema, &reading, &config, key, |p| match p {
        Progress::Planned { rows } => bar.set_length(rows),
        Progress::Chunk { rows } => bar.inc(rows),
    });
    bar.finish_and_clear();
    let report = &checked.report;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
        let write = |name: &str, body: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, body)
                .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
        };
        write(
            "report.json",
            &serde_json::to_vec_pretty(report).expect("serialisable"),
        )?;
        write("rejects.csv", &checked.rejects)?;
        eprintln!(
            "wrote {} and {}",
            dir.join("report.json").display(),
            dir.join("rejects.csv").display()
        );
    }
    if json {
        crate::output::json(report);
    } else {
        crate::output::print(&summary(report));
    }
    Ok(if report.status == Status::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The bar's rate: rows so far over time so far, once a chunk is done (not "0 rows/s" before).
fn rows_per_second(state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write) {
    let seconds = state.elapsed().as_secs_f64();
    if state.pos() > 0 && seconds > 0.0 {
        let rate = (state.pos() as f64 / seconds) as u64;
        let _ = write!(out, "{} rows/s", thousands(rate));
    }
}

/// The text summary: status, counts, errors by code and column, the first rejected rows.
pub fn summary(r: &Report) -> String {
    let mut out = String::new();
    let verdict = match r.status {
        Status::Succeeded => "every row would be imported",
        Status::Partial => "would be imported, with rows rejected",
        Status::Failed => "would be rejected as a whole",
    };
    out += &format!(
        "{}: {} ({verdict}) with schema `{}`\n",
        r.source.key,
        r.status.as_str(),
        r.schema
    );
    if let Some(reason) = &r.reason {
        out += &format!("  reason: {reason}\n");
    }
    out += &format!(
        "  rows {}   valid {}   rejected {}   duplicate {}",
        thousands(r.rows.total),
        thousands(r.rows.valid),
        thousands(r.rows.rejected),
        thousands(r.rows.duplicate)
    );
    if r.rows.skipped > 0 {
        out += &format!("   skipped {}", thousands(r.rows.skipped));
    }
    out.push('\n');
    for w in &r.warnings {
        out += &format!("  warning: {w}\n");
    }
    if r.errors_total > 0 {
        /// Most frequent first, ties by name.
        fn list<K: std::fmt::Display>(m: &std::collections::BTreeMap<K, u64>) -> String {
            let mut v: Vec<_> = m.iter().map(|(k, n)| (k.to_string(), *n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v.iter()
                .map(|(k, n)| format!("{k} {}", thousands(*n)))
                .collect::<Vec<_>>()
                .join(", ")
        }
        out += &format!("  errors by code: {}\n", list(&r.errors_by_code));
        out += &format!("  errors by column: {}\n", list(&r.errors_by_column));
        out += "  first rejected rows:\n";
        for e in r.errors.iter().take(SHOWN_REJECTS) {
            out += &format!(
                "    row {} (line {}) {} {}: {}{}\n",
                e.position.row,
                e.position.line,
                e.column,
                e.code,
                e.message,
                if e.value.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", e.value)
                }
            );
        }
        if r.errors_total as usize > SHOWN_REJECTS {
            out += &format!(
                "    … {} more (all in rejects.csv with --out)\n",
                thousands(r.errors_total - SHOWN_REJECTS as u64)
            );
        }
    }
    out += &format!("  checked in {} ms\n", r.timings.duration_ms);
    out
}
