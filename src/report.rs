//! The run report: counts, status, a capped sample of errors, rejects.csv and the HTML summary.
//! Pure: the `report` Lambda gathers the inputs and stores what this renders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::transform::RejectedRow;

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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub bucket: String,
    pub key: String,
    pub etag: String,
}

/// `total = valid + rejected + duplicate + unprocessed`; `unprocessed` counts rows of chunks that
/// failed and is 0 otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rows {
    pub total: u64,
    pub valid: u64,
    pub rejected: u64,
    pub duplicate: u64,
    pub unprocessed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// One rejected cell (or row), as quoted in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    pub row: u64,
    pub line: u64,
    pub column: String,
    pub code: String,
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
    pub rows_per_second: u64,
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
    pub source: Source,
    pub schema: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rows: Rows,
    pub written: Written,
    /// The first [`ERROR_SAMPLE`] errors in row order.
    pub errors: Vec<ErrorEntry>,
    pub errors_total: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub errors_by_column: BTreeMap<String, u64>,
    pub chunks: Chunks,
    pub warnings: Vec<String>,
    pub timings: Timings,
    pub artifacts: Artifacts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailStatus>,
}

/// What one chunk contributed; `None` parts mean that step did not finish for the chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkTally {
    pub index: u32,
    pub rows: u64,
    pub transformed: Option<TransformTally>,
    pub written: Option<WriteTally>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformTally {
    pub valid: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteTally {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub refused: u64,
}

/// Builds a report from per-chunk tallies and the rejected rows, in any order.
pub struct ReportBuilder {
    report: Report,
    rejects: Vec<RejectLine>,
}

/// One line of rejects.csv.
#[derive(Debug, Clone)]
struct RejectLine {
    entry: ErrorEntry,
    fields: Vec<String>,
}

impl ReportBuilder {
    pub fn new(run_id: &str, source: Source, schema: &str) -> Self {
        ReportBuilder {
            report: Report {
                run_id: run_id.to_string(),
                source,
                schema: schema.to_string(),
                status: Status::Succeeded,
                reason: None,
                rows: Rows::default(),
                written: Written::default(),
                errors: Vec::new(),
                errors_total: 0,
                errors_by_code: BTreeMap::new(),
                errors_by_column: BTreeMap::new(),
                chunks: Chunks::default(),
                warnings: Vec::new(),
                timings: Timings::default(),
                artifacts: Artifacts::default(),
                email: None,
            },
            rejects: Vec::new(),
        }
    }

    pub fn warnings(&mut self, warnings: &[String]) {
        self.report.warnings.extend_from_slice(warnings);
    }

    /// The file as a whole failed (or the run failed before chunks); `reason` says why.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.report.reason = Some(reason.into());
    }

    pub fn chunk(&mut self, tally: &ChunkTally) {
        let r = &mut self.report;
        r.rows.total += tally.rows;
        r.chunks.total += 1;
        match (&tally.transformed, &tally.written) {
            (Some(t), Some(w)) => {
                r.rows.valid += w.inserted + w.updated + w.unchanged;
                r.rows.rejected += t.rejected + w.refused;
                r.rows.duplicate += t.duplicate;
                r.written.inserted += w.inserted;
                r.written.updated += w.updated;
                r.written.unchanged += w.unchanged;
            }
            _ => {
                r.rows.unprocessed += tally.rows;
                r.chunks.failed.push(tally.index);
            }
        }
    }

    /// A row the transform rejected: one error (and one rejects.csv line) per problem.
    pub fn rejected_row(&mut self, row: &RejectedRow) {
        for issue in &row.issues {
            self.push(
                ErrorEntry {
                    row: row.row,
                    line: row.line,
                    column: issue.column.clone(),
                    code: issue.code.as_str().to_string(),
                    message: issue.message.clone(),
                    value: issue.value.clone(),
                },
                row.fields.clone(),
            );
        }
    }

    /// A document the database refused.
    pub fn refused(&mut self, row: u64, line: u64, message: &str) {
        self.push(
            ErrorEntry {
                row,
                line,
                column: crate::transform::WHOLE_ROW.to_string(),
                code: crate::error::Code::Database.as_str().to_string(),
                message: message.to_string(),
                value: String::new(),
            },
            Vec::new(),
        );
    }

    fn push(&mut self, entry: ErrorEntry, fields: Vec<String>) {
        let r = &mut self.report;
        r.errors_total += 1;
        *r.errors_by_code.entry(entry.code.clone()).or_default() += 1;
        *r.errors_by_column.entry(entry.column.clone()).or_default() += 1;
        self.rejects.push(RejectLine { entry, fields });
    }

    /// Final status and the error sample; `header` names the original columns in rejects.csv.
    pub fn finish(
        mut self,
        timings: Timings,
        artifacts: Artifacts,
        header: &[String],
    ) -> (Report, Vec<u8>) {
        // Stable: a row's problems keep the schema's column order.
        self.rejects.sort_by_key(|l| l.entry.row);
        let r = &mut self.report;
        r.errors = self
            .rejects
            .iter()
            .take(ERROR_SAMPLE)
            .map(|l| l.entry.clone())
            .collect();
        r.chunks.failed.sort_unstable();
        let imported_any = r.chunks.total > r.chunks.failed.len() as u64;
        r.status = if r.reason.is_some() && !imported_any {
            Status::Failed
        } else if r.reason.is_some() || !r.chunks.failed.is_empty() || r.rows.rejected > 0 {
            Status::Partial
        } else {
            Status::Succeeded
        };
        if r.reason.is_none() && !r.chunks.failed.is_empty() {
            r.reason = Some(format!(
                "{} of {} chunks failed",
                r.chunks.failed.len(),
                r.chunks.total
            ));
        }
        r.timings = timings;
        r.artifacts = artifacts;
        let csv = rejects_csv(&self.rejects, header);
        (self.report, csv)
    }
}

/// A cell a spreadsheet would run as a formula gets a leading `'`.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn rejects_csv(lines: &[RejectLine], header: &[String]) -> Vec<u8> {
    // Flexible: a rejected record may have more or fewer fields than the header.
    let mut out = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    let mut head: Vec<String> = ["row", "line", "column", "code", "message", "value"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    head.extend(header.iter().cloned());
    let write = |out: &mut csv::Writer<Vec<u8>>, cells: Vec<String>| {
        out.write_record(cells.iter().map(|c| neutralise(c).into_owned()))
            .expect("writing to memory succeeds");
    };
    write(&mut out, head);
    for l in lines {
        let e = &l.entry;
        let mut cells = vec![
            e.row.to_string(),
            e.line.to_string(),
            e.column.clone(),
            e.code.clone(),
            e.message.clone(),
            e.value.clone(),
        ];
        cells.extend(l.fields.iter().cloned());
        write(&mut out, cells);
    }
    out.into_inner().expect("writing to memory succeeds")
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

    /// `[chute] PARTIAL products.csv: 9,950 imported, 50 rejected`
    pub fn subject(&self) -> String {
        let mut subject = format!("[chute] {} {}: ", self.status.as_str(), self.file_name());
        if self.status == Status::Failed && self.rows.valid == 0 {
            subject.push_str(
                self.reason
                    .as_deref()
                    .map(first_sentence)
                    .unwrap_or("failed"),
            );
        } else {
            subject.push_str(&format!(
                "{} imported, {} rejected",
                thousands(self.rows.valid),
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
