//! The run report: counts, status, a capped sample of errors and rejects.csv, assembled from what
//! each step recorded ([`assemble`]). Pure: the `report` Lambda gathers the records and stores
//! what this builds.

mod assemble;
mod builder;
#[cfg(feature = "adapters")]
mod stale;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Code, Position};
use crate::feed::RunFeed;
use crate::input::NotUtf8Rows;
use crate::rules::DamagedValues;
use crate::run::{TransformCounts, WriteCounts};

pub use crate::run::{Difference, DIFFERENCE_SAMPLE};
pub use assemble::{assemble, failure_reason, ChunkRecord, Planned, RunRecord};
pub use builder::{neutralise, ReportBuilder};
#[cfg(feature = "adapters")]
pub use stale::stale_csv;

/// Errors quoted in report.json and the email; rejects.csv has them all.
pub const ERROR_SAMPLE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Succeeded,
    Partial,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Partial => "PARTIAL",
            Status::Failed => "FAILED",
        }
    }
}

/// The S3 object the run read (the report's `source`; the feed source is in its `feed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileObject {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    /// How the file was read: format, compression, encoding, delimiter, number format. Absent when
    /// the run failed before reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_as: Option<crate::input::ReadAs>,
}

/// `total = valid + rejected + duplicate + skipped + unprocessed`; `unprocessed` counts rows of
/// chunks that failed and is 0 otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rows {
    pub total: u64,
    pub valid: u64,
    pub rejected: u64,
    pub duplicate: u64,
    /// Continuation rows the schema declares; left out at 0 so reports keep their shape.
    #[serde(default, skip_serializing_if = "crate::run::is_zero")]
    pub skipped: u64,
    pub unprocessed: u64,
}

/// The run's [`WriteCounts`] as the report shows them (refusals are among its errors, reactivated
/// products in its stale block).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Of those, rows merged into a product another source (or key, `match_also`) supplies.
    #[serde(default)]
    pub merged: u64,
}

impl From<WriteCounts> for Written {
    fn from(counts: WriteCounts) -> Written {
        Written {
            inserted: counts.inserted,
            updated: counts.updated,
            unchanged: counts.unchanged,
            merged: counts.merged,
        }
    }
}

/// What a run did to stale products: `marked` claims this full refresh found stale (under
/// `keep`, counted only), `deleted` documents (under `delete`), `reactivated` stale products the
/// file supplied again. `refused_reason` says why nothing was marked although some were stale.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleReport {
    pub policy: String,
    pub marked: u64,
    /// Products found stale but not marked, because the run refused to (`refused_reason`).
    #[serde(default, skip_serializing_if = "crate::run::is_zero")]
    pub candidates: u64,
    pub deleted: u64,
    pub reactivated: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_reason: Option<String>,
    /// The first stale keys; the stale.csv artifact lists them all.
    pub sample: Vec<String>,
}

/// How the reason of a stale step that failed (not one that refused to mark) begins: such a run
/// commits no snapshot.
pub const STALE_UNFINISHED: &str = "the stale marking did not finish";

/// What delta import did for a run: whether it diffed against its source's snapshot, what the
/// snapshot said of the rows, the database commands the run sent, and what became of the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaReport {
    /// `on`: rows were diffed against the snapshot of `base_run`; `off`: every row went to the
    /// database (the full path), `reason` says why.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_run: Option<String>,
    /// Staged rows whose key the snapshot lacked, had with other content, had with the same
    /// content (never sent to the database).
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Keys a full refresh found stale by the snapshots (candidates, before the guards).
    pub stale: u64,
    /// Database commands the run sent (validate, every import invocation, the report step).
    pub commands: u64,
    /// The snapshot after the run: `committed (N products)`, or why it was not advanced.
    pub snapshot: String,
}

/// One rejected cell (or row), as quoted in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    #[serde(flatten)]
    pub position: Position,
    pub column: String,
    pub code: Code,
    pub message: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunks {
    pub total: u64,
    pub failed: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    /// Rows per second over the whole run, only where it means something (see [`rate`]): "0 rows/s"
    /// for a small file reads like a fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<u64>,
    /// Time spent in each step, summed over chunks (chunks run in parallel, so the sum can
    /// exceed the wall time).
    pub steps: StepTimings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTimings {
    pub validate_ms: u64,
    pub transform_ms: u64,
    pub import_ms: u64,
    /// The slowest chunk (transform + import): what bounds the wall time at full concurrency.
    pub slowest_chunk_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifacts {
    pub report: String,
    pub rejects: String,
    pub summary: String,
    /// stale.csv: every key a full refresh found stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
}

/// What became of the report's email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailOutcome {
    Sent,
    Failed,
    /// No sender or no recipients configured.
    Skipped,
}

impl EmailOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailOutcome::Sent => "sent",
            EmailOutcome::Failed => "failed",
            EmailOutcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailStatus {
    pub status: EmailOutcome,
    pub to: Vec<String>,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    pub source: FileObject,
    pub schema: String,
    /// Who sent the file and how it applies: `incremental` (rows merged in), `full` (the file is
    /// the source's whole catalogue; what it no longer lists is stale) or `dry-run`.
    #[serde(default)]
    pub feed: RunFeed,
    /// A dry run: every count says what the run *would* have done; nothing was written.
    #[serde(default)]
    pub dry_run: bool,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rows: Rows,
    pub written: Written,
    /// Present for a full refresh, or when the file brought stale products back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<StaleReport>,
    /// What delta import did ([`crate::delta`]); absent for runs that stopped before a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaReport>,
    /// Dry run: the first [`DIFFERENCE_SAMPLE`] field differences of documents it would update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
    /// Documents the transform staged (its own count of valid rows) in the chunks that were
    /// imported. The import accounts for each as inserted, updated, unchanged or refused; a chunk
    /// where it does not fails the accounting (see [`assemble`]).
    pub staged: u64,
    /// The first [`ERROR_SAMPLE`] errors in row order.
    pub errors: Vec<ErrorEntry>,
    pub errors_total: u64,
    pub errors_by_code: BTreeMap<Code, u64>,
    pub errors_by_column: BTreeMap<String, u64>,
    pub chunks: Chunks,
    pub warnings: Vec<String>,
    pub timings: Timings,
    pub artifacts: Artifacts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailStatus>,
}

/// What one chunk contributed; `None` parts mean that step did not finish for the chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkTally {
    pub index: u32,
    pub rows: u64,
    pub transformed: Option<TransformCounts>,
    /// Of the transform's `rejected`: rows that are not UTF-8, and what they decode as.
    pub not_utf8: Option<NotUtf8Rows>,
    /// Damaged identifiers the transform kept as written (`damage = "warn"`).
    pub damaged: Vec<DamagedValues>,
    pub written: Option<WriteCounts>,
}

impl Report {
    /// File name of the source (`products-2026-11-22.csv`).
    pub fn file_name(&self) -> &str {
        self.source
            .key
            .rsplit('/')
            .next()
            .unwrap_or(&self.source.key)
    }

    /// `[chute] PARTIAL products.csv: 9,950 imported, 50 rejected`; a dry run says so first and
    /// counts what it would import.
    pub fn subject(&self) -> String {
        let dry = if self.dry_run { "DRY RUN " } else { "" };
        let mut subject = format!(
            "[chute] {dry}{} {}: ",
            self.status.as_str(),
            self.file_name()
        );
        if self.status == Status::Failed && self.rows.valid == 0 {
            subject.push_str(
                self.reason
                    .as_deref()
                    .map(first_sentence)
                    .unwrap_or("failed"),
            );
        } else {
            subject.push_str(&format!(
                "{} {}, {} rejected",
                thousands(self.rows.valid),
                if self.dry_run {
                    "would be imported"
                } else {
                    "imported"
                },
                thousands(self.rows.rejected)
            ));
        }
        subject
    }
}

fn first_sentence(text: &str) -> &str {
    let cut = text.find(['.', ';', '\n']).unwrap_or(text.len()).min(120);
    let mut end = cut;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The rate a report shows: only for a run of at least [`RATE_MIN_MS`] and [`RATE_MIN_ROWS`] rows,
/// where a rate says something about speed rather than about start-up.
pub fn rate(rows: u64, duration_ms: u64) -> Option<u64> {
    (duration_ms >= RATE_MIN_MS && rows >= RATE_MIN_ROWS).then(|| rows * 1000 / duration_ms)
}

pub const RATE_MIN_MS: u64 = 1000;
pub const RATE_MIN_ROWS: u64 = 1000;

/// `9950` → `9,950`
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
