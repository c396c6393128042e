//! Adding up chunk tallies and rejections into a report, and writing rejects.csv.

use std::collections::BTreeMap;

use super::{
    Artifacts, ChunkTally, Chunks, Difference, ErrorEntry, FileObject, Report, Rows, StaleReport,
    Status, Timings, Written, ERROR_SAMPLE,
};
use crate::error::Refusal;
use crate::feed::RunFeed;
use crate::input::NotUtf8Rows;
use crate::rules::DamagedValues;
use crate::run::{keep_sample, WriteCounts};
use crate::transform::RejectedRow;

/// Builds a report from per-chunk tallies and the rejected rows, in any order.
pub struct ReportBuilder {
    report: Report,
    rejects: Vec<RejectLine>,
    /// Chunks whose import did not account for every staged document, with both counts.
    unaccounted: Vec<String>,
    /// What the imports wrote, over all chunks.
    written: WriteCounts,
    /// Each chunk's rows that are not UTF-8, for the one hint the warnings get.
    not_utf8: Vec<NotUtf8Rows>,
    damaged: Vec<DamagedValues>,
    /// The schema's reason for skipping continuation rows, quoted in their warning.
    continuation: Option<String>,
}

/// One line of rejects.csv.
#[derive(Debug, Clone)]
struct RejectLine {
    entry: ErrorEntry,
    fields: Vec<String>,
}

impl ReportBuilder {
    pub fn new(run_id: &str, source: FileObject, schema: &str) -> Self {
        ReportBuilder {
            report: Report {
                run_id: run_id.to_string(),
                source,
                schema: schema.to_string(),
                feed: RunFeed::default(),
                dry_run: false,
                status: Status::Succeeded,
                reason: None,
                rows: Rows::default(),
                written: Written::default(),
                stale: None,
                delta: None,
                differences: Vec::new(),
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
            written: WriteCounts::default(),
            not_utf8: Vec::new(),
            damaged: Vec::new(),
            continuation: None,
        }
    }

    /// The schema's `[continuation] reason`, quoted when rows were skipped.
    pub fn continuation(&mut self, reason: &str) {
        self.continuation = Some(reason.to_string());
    }

    /// The file's source and mode, and whether this is a dry run.
    pub fn feed(&mut self, feed: RunFeed, dry_run: bool) {
        self.report.feed = feed;
        self.report.dry_run = dry_run;
    }

    /// The stale marking of a full refresh; one that refused to mark makes the run PARTIAL.
    pub fn stale(&mut self, stale: StaleReport) {
        self.report.stale = Some(stale);
    }

    /// Field differences a dry run's import found, kept up to [`super::DIFFERENCE_SAMPLE`].
    pub fn differences(&mut self, differences: &[Difference]) {
        keep_sample(&mut self.report.differences, differences);
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
        if let Some(found) = &tally.not_utf8 {
            self.not_utf8.push(found.clone());
        }
        self.damaged.extend(tally.damaged.iter().cloned());
        match (&tally.transformed, &tally.written) {
            (Some(t), Some(w)) => {
                r.rows.valid += w.inserted + w.updated + w.unchanged;
                r.rows.rejected += t.rejected + w.refused;
                r.rows.duplicate += t.duplicate;
                r.rows.skipped += t.skipped;
                self.written += *w;
                r.staged += t.valid;
                let accounted = w.accounted();
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
                    position: row.position,
                    column: issue.column.clone(),
                    code: issue.code,
                    message: issue.message.clone(),
                    value: issue.value.clone(),
                },
                row.fields.clone(),
            );
        }
    }

    /// A document the database refused (`database`), or the writer did (`conflict`: a
    /// `match_also` value that names two products).
    pub fn refused(&mut self, refusal: &Refusal) {
        self.push(
            ErrorEntry {
                position: refusal.position,
                column: crate::transform::WHOLE_ROW.to_string(),
                code: refusal.row_code(),
                message: refusal.message.clone(),
                value: String::new(),
            },
            Vec::new(),
        );
    }

    fn push(&mut self, entry: ErrorEntry, fields: Vec<String>) {
        let r = &mut self.report;
        r.errors_total += 1;
        *r.errors_by_code.entry(entry.code).or_default() += 1;
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
        self.rejects.sort_by_key(|l| l.entry.position);
        let r = &mut self.report;
        r.errors = self
            .rejects
            .iter()
            .take(ERROR_SAMPLE)
            .map(|l| l.entry.clone())
            .collect();
        r.chunks.failed.sort_unstable();
        r.warnings
            .extend(NotUtf8Rows::merge(&self.not_utf8).map(|n| n.warning()));
        r.warnings.extend(
            DamagedValues::merge(&self.damaged)
                .iter()
                .map(DamagedValues::warning),
        );
        if r.rows.skipped > 0 {
            let why = self.continuation.as_deref().unwrap_or(
                "rows with an empty key that fill only the schema's [continuation] columns",
            );
            r.warnings.push(format!(
                "{} continuation rows skipped ({why})",
                r.rows.skipped
            ));
        }
        r.written = Written::from(self.written);
        if self.written.reactivated > 0 && r.stale.is_none() {
            r.stale = Some(StaleReport::default());
        }
        let stale_refused = r.stale.as_mut().and_then(|stale| {
            stale.reactivated = self.written.reactivated;
            stale.refused_reason.clone()
        });
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
        } else if r.reason.is_some()
            || stale_refused.is_some()
            || !r.chunks.failed.is_empty()
            || r.rows.rejected > 0
        {
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
        if let Some(refused) = stale_refused {
            r.reason = Some(match r.reason.take() {
                Some(reason) => format!("{reason}; {refused}"),
                None => refused,
            });
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
            e.position.row.to_string(),
            e.position.line.to_string(),
            e.column.clone(),
            e.code.to_string(),
            e.message.clone(),
            e.value.clone(),
        ];
        cells.extend(l.fields.iter().cloned());
        write(&mut out, cells);
    }
    out.into_inner().expect("writing to memory succeeds")
}
