//! The run report: counts, status, a capped sample of errors and rejects.csv, assembled from what
//! each step recorded ([`assemble`]). Pure: the `report` Lambda gathers the records and stores
//! what this builds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{FileError, Refusal};
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
    /// Documents the transform staged (its own count of valid rows) in the chunks that were
    /// imported. The import accounts for each as inserted, updated, unchanged or refused; a chunk
    /// where it does not fails the accounting (see [`assemble`]).
    pub staged: u64,
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
    /// Chunks whose import did not account for every staged document, with both counts.
    unaccounted: Vec<String>,
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
                staged: 0,
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
            unaccounted: Vec::new(),
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
                r.staged += t.valid;
                let accounted = w.inserted + w.updated + w.unchanged + w.refused;
                if accounted != t.valid {
                    self.unaccounted.push(format!(
                        "chunk {}: the transform staged {} documents, the import accounted for {accounted}",
                        tally.index, t.valid
                    ));
                }
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
        if !self.unaccounted.is_empty() {
            let mismatch = format!(
                "the accounting does not hold: {}",
                self.unaccounted.join("; ")
            );
            r.reason = Some(match r.reason.take() {
                Some(reason) => format!("{reason}; {mismatch}"),
                None => mismatch,
            });
        }
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

/// Everything the `report` function gathered about a run; [`assemble`] turns it into the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: String,
    pub source: Source,
    pub schema: String,
    /// When the run was requested (RFC 3339).
    pub started_at: String,
    /// `None` when the run failed before a plan was stored.
    pub plan: Option<PlanRecord>,
    /// Why the run failed, when a step failed as a whole (see [`failure_reason`]).
    pub failure: Option<String>,
    pub artifacts: Artifacts,
}

/// The stored plan and what each of its chunks recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRecord {
    /// The file's header as written, for rejects.csv.
    pub header: Vec<String>,
    pub warnings: Vec<String>,
    pub validate_ms: u64,
    pub chunks: Vec<ChunkRecord>,
}

/// One chunk; `None` where its step did not finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkRecord {
    pub index: u32,
    pub rows: u64,
    pub transformed: Option<Transformed>,
    pub imported: Option<Imported>,
}

/// What the transform recorded for a chunk: its own count of valid rows (documents staged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transformed {
    pub tally: TransformTally,
    pub duration_ms: u64,
    pub rejected_rows: Vec<RejectedRow>,
}

/// What the import recorded for a chunk: what the database did with the staged documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub tally: WriteTally,
    pub duration_ms: u64,
    pub refusals: Vec<Refusal>,
}

/// Builds the report and rejects.csv of a run that finished at `finished`.
///
/// The transform's count of valid rows and the import's count of what it wrote come from two
/// steps; they are compared per chunk, and a difference fails the accounting with a reason instead
/// of being absorbed (the report's `valid` is what the import wrote).
pub fn assemble(run: RunRecord, finished: bson::DateTime) -> (Report, Vec<u8>) {
    let mut builder = ReportBuilder::new(&run.run_id, run.source, &run.schema);
    let mut steps = StepTimings::default();
    let mut header = Vec::new();
    if let Some(plan) = run.plan {
        steps.validate_ms = plan.validate_ms;
        builder.warnings(&plan.warnings);
        header = plan.header;
        for chunk in &plan.chunks {
            let mut tally = ChunkTally {
                index: chunk.index,
                rows: chunk.rows,
                ..ChunkTally::default()
            };
            if let (Some(t), Some(i)) = (&chunk.transformed, &chunk.imported) {
                steps.transform_ms += t.duration_ms;
                steps.import_ms += i.duration_ms;
                steps.slowest_chunk_ms = steps.slowest_chunk_ms.max(t.duration_ms + i.duration_ms);
                tally.transformed = Some(t.tally.clone());
                tally.written = Some(i.tally.clone());
                for row in &t.rejected_rows {
                    builder.rejected_row(row);
                }
                for r in &i.refusals {
                    builder.refused(r.row, r.line, &r.message);
                }
            }
            builder.chunk(&tally);
        }
    }
    if let Some(reason) = run.failure {
        builder.fail(reason);
    }
    let started = bson::DateTime::parse_rfc3339_str(&run.started_at).ok();
    let duration_ms = started
        .map(|s| (finished.timestamp_millis() - s.timestamp_millis()).max(0) as u64)
        .unwrap_or(0);
    let timings = Timings {
        started_at: run.started_at,
        finished_at: finished.try_to_rfc3339_string().unwrap_or_default(),
        duration_ms,
        rows_per_second: 0,
        steps,
    };
    let (mut report, rejects) = builder.finish(timings, run.artifacts, &header);
    report.timings.rows_per_second = (report.rows.total * 1000)
        .checked_div(duration_ms)
        .unwrap_or(0);
    (report, rejects)
}

/// The readable reason of a step's caught failure (`Error` and `Cause` as Step Functions passes
/// them): a file error's message and code, or the error message inside the Lambda error payload.
pub fn failure_reason(error: &str, cause: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string());
    match serde_json::from_str::<FileError>(&message) {
        Ok(file) => format!("{} ({})", file.message, file.code),
        Err(_) if message.is_empty() => error.to_string(),
        Err(_) => format!("{error}: {}", crate::error::redact(&message)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
    use crate::transform::Issue;

    fn at(text: &str) -> bson::DateTime {
        bson::DateTime::parse_rfc3339_str(text).unwrap()
    }

    fn chunk(index: u32, rows: u64, staged: u64, written: WriteTally) -> ChunkRecord {
        ChunkRecord {
            index,
            rows,
            transformed: Some(Transformed {
                tally: TransformTally {
                    valid: staged,
                    duplicate: 0,
                    rejected: rows - staged,
                },
                duration_ms: 10,
                rejected_rows: Vec::new(),
            }),
            imported: Some(Imported {
                tally: written,
                duration_ms: 20,
                refusals: Vec::new(),
            }),
        }
    }

    fn written(inserted: u64, refused: u64) -> WriteTally {
        WriteTally {
            inserted,
            updated: 0,
            unchanged: 0,
            refused,
        }
    }

    fn run(chunks: Vec<ChunkRecord>) -> RunRecord {
        RunRecord {
            run_id: "run-1".into(),
            source: Source {
                bucket: "b".into(),
                key: "incoming/products.csv".into(),
                etag: "e".into(),
            },
            schema: "products".into(),
            started_at: "2026-11-22T10:00:00Z".into(),
            plan: Some(PlanRecord {
                header: vec!["sku".into()],
                warnings: vec!["unknown columns ignored: x".into()],
                validate_ms: 5,
                chunks,
            }),
            failure: None,
            artifacts: Artifacts::default(),
        }
    }

    #[test]
    fn a_run_whose_counts_agree_succeeds_with_both_counts_kept() {
        let record = run(vec![
            chunk(0, 10, 10, written(10, 0)),
            chunk(1, 5, 5, written(4, 1)),
        ]);
        let (report, _) = assemble(record, at("2026-11-22T10:00:02Z"));
        assert_eq!(
            report.status,
            Status::Partial,
            "one refusal is a rejected row"
        );
        assert_eq!(report.reason, None);
        assert_eq!(
            (report.rows.total, report.rows.valid, report.rows.rejected),
            (15, 14, 1)
        );
        assert_eq!(report.staged, 15);
        assert_eq!(report.timings.duration_ms, 2000);
        assert_eq!(report.timings.rows_per_second, 7);
        assert_eq!(report.timings.steps.validate_ms, 5);
        assert_eq!(report.timings.steps.transform_ms, 20);
        assert_eq!(report.timings.steps.slowest_chunk_ms, 30);
        assert_eq!(
            report.warnings,
            vec!["unknown columns ignored: x".to_string()]
        );
    }

    #[test]
    fn an_import_that_does_not_account_for_every_staged_document_is_an_error() {
        let record = run(vec![
            chunk(0, 10, 10, written(10, 0)),
            chunk(1, 10, 10, written(7, 0)),
        ]);
        let (report, _) = assemble(record, at("2026-11-22T10:00:01Z"));
        assert_ne!(report.status, Status::Succeeded);
        assert_eq!(report.rows.valid, 17, "valid is what the import wrote");
        assert_eq!(
            report.staged, 20,
            "the transform's own count is kept beside it"
        );
        let reason = report.reason.expect("a mismatch has a reason");
        assert!(
            reason.contains("chunk 1")
                && reason.contains("staged 10")
                && reason.contains("accounted for 7"),
            "{reason}"
        );
    }

    #[test]
    fn chunks_without_outcomes_are_unprocessed_and_a_failure_is_the_reason() {
        let mut record = run(vec![
            chunk(0, 10, 10, written(10, 0)),
            ChunkRecord {
                index: 1,
                rows: 4,
                ..ChunkRecord::default()
            },
        ]);
        record.failure = Some("Chute.Fatal: boom".into());
        let (report, _) = assemble(record, at("2026-11-22T10:00:01Z"));
        assert_eq!(report.status, Status::Partial);
        assert_eq!(report.rows.unprocessed, 4);
        assert_eq!(report.chunks.failed, vec![1]);
        assert_eq!(report.reason.as_deref(), Some("Chute.Fatal: boom"));
    }

    #[test]
    fn rejected_rows_and_refusals_reach_the_errors_and_rejects_csv() {
        let mut c = chunk(0, 3, 2, written(1, 1));
        if let Some(t) = &mut c.transformed {
            t.rejected_rows.push(RejectedRow {
                row: 1,
                line: 2,
                issues: vec![Issue {
                    column: "price".into(),
                    code: Code::TypeError,
                    message: "price is not a decimal number".into(),
                    value: "x".into(),
                }],
                fields: vec!["A".into()],
            });
        }
        if let Some(i) = &mut c.imported {
            i.refusals.push(Refusal {
                row: 3,
                line: 4,
                code: 121,
                message: "Document failed validation".into(),
            });
        }
        let (report, csv) = assemble(run(vec![c]), at("2026-11-22T10:00:01Z"));
        let codes: Vec<&str> = report.errors.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["type_error", "database"]);
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
    }

    #[test]
    fn a_run_without_a_plan_fails_with_the_file_error_as_reason() {
        let mut record = run(Vec::new());
        record.plan = None;
        record.failure = Some(failure_reason(
            "Chute.InvalidFile",
            r#"{"errorType":"Chute.InvalidFile","errorMessage":"{\"code\":\"empty_file\",\"message\":\"the file is empty\"}"}"#,
        ));
        let (report, _) = assemble(record, at("2026-11-22T10:00:01Z"));
        assert_eq!(report.status, Status::Failed);
        assert_eq!(
            report.reason.as_deref(),
            Some("the file is empty (empty_file)")
        );
        assert_eq!(report.timings.finished_at, "2026-11-22T10:00:01Z");
    }

    #[test]
    fn failure_reasons_never_carry_a_connection_string() {
        let reason = failure_reason(
            "Chute.Transient",
            r#"{"errorMessage":"MongoDB unavailable: MongoDB://u:pw@h:1"}"#,
        );
        assert_eq!(
            reason,
            "Chute.Transient: MongoDB unavailable: mongodb://<redacted>"
        );
    }
}
