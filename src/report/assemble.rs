//! The report of a run from what each of its steps recorded.

use super::{
    Artifacts, ChunkTally, DeltaReport, FileObject, Report, ReportBuilder, StaleReport,
    StepTimings, Timings,
};
use crate::error::FileError;
use crate::feed::RunFeed;
use crate::header::Header;
use crate::run::{ImportRecord, TransformRecord};
use crate::schema::Schema;

/// Everything the `report` function gathered about a run; [`assemble`] turns it into the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: String,
    pub source: FileObject,
    pub schema: String,
    /// When the run was requested (RFC 3339).
    pub started_at: String,
    /// `None` when the run failed before a plan was stored.
    pub plan: Option<Planned>,
    /// Why the run failed, when a step failed as a whole (see [`failure_reason`]).
    pub failure: Option<String>,
    pub artifacts: Artifacts,
    pub feed: RunFeed,
    pub dry_run: bool,
    /// The stale marking of a full refresh, once every chunk was written (see
    /// [`RunRecord::complete`]).
    pub stale: Option<StaleReport>,
    /// What delta import did (filled by the report step once the snapshot is committed or not).
    pub delta: Option<DeltaReport>,
}

impl RunRecord {
    /// Every chunk was transformed and imported, with every staged document accounted for, and
    /// no step failed as a whole: only then may a full refresh mark anything stale.
    pub fn complete(&self) -> bool {
        let Some(plan) = &self.plan else { return false };
        self.failure.is_none()
            && plan
                .chunks
                .iter()
                .all(|c| match (&c.transformed, &c.imported) {
                    (Some(t), Some(i)) => i.counts.accounted() == t.counts.valid,
                    _ => false,
                })
    }

    /// The key cells (trimmed, in key order) of the rows the transform rejected, where every key
    /// cell is filled: the file still lists these products, so a full refresh must not count them
    /// stale because a price or a name was wrong.
    pub fn rejected_keys(&self, schema: &Schema) -> Vec<Vec<String>> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        let cells: Vec<&[u8]> = plan.header.iter().map(|n| n.as_bytes()).collect();
        let Ok(header) = Header::resolve(schema, &cells) else {
            return Vec::new();
        };
        let key_cells = header.key_cells(schema);
        plan.chunks
            .iter()
            .filter_map(|c| c.transformed.as_ref())
            .flat_map(|t| &t.rejected_rows)
            .filter_map(|row| {
                key_cells
                    .iter()
                    .map(|&i| Some(row.fields.get(i)?.trim()).filter(|k| !k.is_empty()))
                    .map(|k| k.map(str::to_string))
                    .collect()
            })
            .collect()
    }
}

/// The stored plan and what each of its chunks recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planned {
    /// The file's header as written, for rejects.csv.
    pub header: Vec<String>,
    pub warnings: Vec<String>,
    /// Why the schema's continuation rows are skipped ([`crate::run::PlanRecord::continuation`]).
    pub continuation: Option<String>,
    pub validate_ms: u64,
    pub chunks: Vec<ChunkRecord>,
    /// Whether the run diffed against its source's snapshot ([`crate::delta`]).
    pub delta: Option<crate::delta::DeltaPlan>,
    /// Database commands validate sent.
    pub validate_commands: u64,
}

/// One chunk: the records its steps stored, `None` where the step did not finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkRecord {
    pub index: u32,
    pub rows: u64,
    pub transformed: Option<TransformRecord>,
    pub imported: Option<ImportRecord>,
}

/// Builds the report and rejects.csv of a run that finished at `finished`.
///
/// The transform's count of valid rows and the import's count of what it wrote come from two
/// steps; they are compared per chunk, and a difference fails the accounting with a reason instead
/// of being absorbed (the report's `valid` is what the import wrote).
pub fn assemble(run: RunRecord, finished: bson::DateTime) -> (Report, Vec<u8>) {
    let mut builder = ReportBuilder::new(&run.run_id, run.source, &run.schema);
    builder.feed(run.feed, run.dry_run);
    let mut steps = StepTimings::default();
    let mut header = Vec::new();
    if let Some(plan) = run.plan {
        steps.validate_ms = plan.validate_ms;
        builder.warnings(&plan.warnings);
        if let Some(reason) = &plan.continuation {
            builder.continuation(reason);
        }
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
                tally.transformed = Some(t.counts);
                tally.not_utf8 = t.not_utf8.clone();
                tally.damaged = t.damaged.clone();
                tally.written = Some(i.counts);
                for row in &t.rejected_rows {
                    builder.rejected_row(row);
                }
                for r in &i.refusals {
                    builder.refused(r);
                }
                builder.differences(&i.differences);
            }
            builder.chunk(&tally);
        }
    }
    if let Some(reason) = run.failure {
        builder.fail(reason);
    }
    if let Some(stale) = run.stale {
        builder.stale(stale);
    }
    let started = bson::DateTime::parse_rfc3339_str(&run.started_at).ok();
    let duration_ms = started
        .map(|s| (finished.timestamp_millis() - s.timestamp_millis()).max(0) as u64)
        .unwrap_or(0);
    let timings = Timings {
        started_at: run.started_at,
        finished_at: finished.try_to_rfc3339_string().unwrap_or_default(),
        duration_ms,
        rows_per_second: None,
        steps,
    };
    let (mut report, rejects) = builder.finish(timings, run.artifacts, &header);
    report.delta = run.delta;
    report.timings.rows_per_second = super::rate(report.rows.total, duration_ms);
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Code, Position, Refusal};
    use crate::report::Status;
    use crate::run::{TransformCounts, WriteCounts};
    use crate::transform::{Issue, RejectedRow};

    fn at(text: &str) -> bson::DateTime {
        bson::DateTime::parse_rfc3339_str(text).unwrap()
    }

    fn chunk(index: u32, rows: u64, staged: u64, written: WriteCounts) -> ChunkRecord {
        ChunkRecord {
            index,
            rows,
            transformed: Some(TransformRecord {
                run_id: "run-1".into(),
                bucket: "b".into(),
                key: "incoming/products.csv".into(),
                schema: "products".into(),
                feed_source: "default".into(),
                mode: crate::feed::Mode::Incremental,
                chunk: index,
                counts: TransformCounts {
                    rows,
                    valid: staged,
                    duplicate: 0,
                    rejected: rows - staged,
                    skipped: 0,
                },
                staged_key: "s".into(),
                duration_ms: 10,
                rejected_rows: Vec::new(),
                not_utf8: None,
                damaged: Vec::new(),
                import_budget_ms: None,
            }),
            imported: Some(ImportRecord {
                run_id: "run-1".into(),
                chunk: index,
                counts: written,
                differences: Vec::new(),
                duration_ms: 20,
                replayed: false,
                finished: true,
                position: staged,
                invocations: 1,
                refusals: Vec::new(),
                delta: Default::default(),
            }),
        }
    }

    fn written(inserted: u64, refused: u64) -> WriteCounts {
        WriteCounts {
            inserted,
            refused,
            ..WriteCounts::default()
        }
    }

    fn run(chunks: Vec<ChunkRecord>) -> RunRecord {
        RunRecord {
            run_id: "run-1".into(),
            source: FileObject {
                bucket: "b".into(),
                key: "incoming/products.csv".into(),
                etag: "e".into(),
                read_as: None,
            },
            schema: "products".into(),
            started_at: "2026-11-22T10:00:00Z".into(),
            plan: Some(Planned {
                header: vec!["sku".into()],
                warnings: vec!["unknown columns ignored: x".into()],
                validate_ms: 5,
                chunks,
                ..Planned::default()
            }),
            failure: None,
            artifacts: Artifacts::default(),
            ..RunRecord::default()
        }
    }

    /// The report of `chunks`, two seconds after the run started.
    fn report_of(chunks: Vec<ChunkRecord>) -> Report {
        assemble(run(chunks), at("2026-11-22T10:00:02Z")).0
    }

    #[test]
    fn counts_that_agree_are_both_kept_and_add_no_reason() {
        let report = report_of(vec![
            chunk(0, 10, 10, written(10, 0)),
            chunk(1, 5, 5, written(4, 1)),
        ]);
        assert_eq!(report.reason, None);
        assert_eq!(
            report.status,
            Status::Partial,
            "a refusal is a rejected row"
        );
        assert_eq!(
            (report.rows.total, report.rows.valid, report.rows.rejected),
            (15, 14, 1)
        );
        assert_eq!(report.staged, 15);
        assert_eq!(report.timings.duration_ms, 2000);
        assert_eq!(
            report.timings.rows_per_second, None,
            "15 rows in 2 s: no rate worth showing"
        );
        assert_eq!(report.timings.steps.validate_ms, 5);
        assert_eq!(report.timings.steps.transform_ms, 20);
        assert_eq!(report.timings.steps.slowest_chunk_ms, 30);
        assert_eq!(
            report.warnings,
            vec!["unknown columns ignored: x".to_string()]
        );
    }

    #[test]
    fn a_rate_is_given_only_for_runs_of_a_second_and_a_thousand_rows() {
        assert_eq!(super::super::rate(999, 60_000), None);
        assert_eq!(super::super::rate(1_000_000, 999), None);
        assert_eq!(super::super::rate(3000, 2000), Some(1500));
        let report = report_of(vec![chunk(0, 4000, 4000, written(4000, 0))]);
        assert_eq!(report.timings.rows_per_second, Some(2000));
    }

    #[test]
    fn an_import_that_does_not_account_for_every_staged_document_is_an_error() {
        let report = report_of(vec![
            chunk(0, 10, 10, written(10, 0)),
            chunk(1, 10, 10, written(7, 0)),
        ]);
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
    fn only_a_run_that_imported_every_staged_row_may_mark_stale_products() {
        assert!(run(vec![chunk(0, 10, 9, written(8, 1))]).complete());
        assert!(!run(vec![chunk(0, 10, 9, written(8, 0))]).complete());
        let unprocessed = ChunkRecord {
            index: 1,
            rows: 4,
            ..ChunkRecord::default()
        };
        assert!(!run(vec![chunk(0, 10, 10, written(10, 0)), unprocessed]).complete());
        let mut failed = run(vec![chunk(0, 10, 10, written(10, 0))]);
        failed.failure = Some("Chute.Fatal: boom".into());
        assert!(!failed.complete());
        assert!(!RunRecord::default().complete(), "no plan");
    }

    #[test]
    fn a_refused_stale_marking_makes_the_run_partial_and_says_why() {
        let mut c = chunk(0, 10, 10, written(10, 0));
        if let Some(i) = c.imported.as_mut() {
            i.counts = WriteCounts {
                inserted: 6,
                updated: 4,
                reactivated: 2,
                merged: 1,
                ..WriteCounts::default()
            };
        }
        let mut record = run(vec![c]);
        record.feed = RunFeed {
            source: "erp".into(),
            mode: crate::feed::Mode::Full,
        };
        record.stale = Some(StaleReport {
            policy: "deactivate".into(),
            marked: 40,
            refused_reason: Some("nothing marked stale: 40 of 100".into()),
            ..StaleReport::default()
        });
        let (report, _) = assemble(record, at("2026-11-22T10:00:01Z"));
        assert_eq!(report.status, Status::Partial);
        assert_eq!(
            report.reason.as_deref(),
            Some("nothing marked stale: 40 of 100")
        );
        let stale = report.stale.unwrap();
        assert_eq!((stale.marked, stale.reactivated), (40, 2));
        assert_eq!((report.written.updated, report.written.merged), (4, 1));
        assert_eq!(report.feed.source, "erp");
    }

    #[test]
    fn an_incremental_run_shows_a_stale_block_only_when_it_reactivated_products() {
        let report = report_of(vec![chunk(0, 10, 10, written(10, 0))]);
        assert_eq!((report.status, report.stale), (Status::Succeeded, None));
        let mut c = chunk(0, 10, 10, written(10, 0));
        if let Some(i) = c.imported.as_mut() {
            i.counts.reactivated = 3;
        }
        let report = report_of(vec![c]);
        assert_eq!(report.status, Status::Succeeded);
        assert_eq!(report.stale.map(|s| s.reactivated), Some(3));
    }

    #[test]
    fn rejected_rows_and_refusals_reach_the_errors_and_rejects_csv() {
        let mut c = chunk(0, 4, 3, written(1, 2));
        if let Some(t) = &mut c.transformed {
            t.rejected_rows.push(RejectedRow {
                position: Position { row: 1, line: 2 },
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
                position: Position { row: 3, line: 4 },
                code: 121,
                message: "Document failed validation".into(),
            });
            i.refusals.push(Refusal {
                position: Position { row: 4, line: 5 },
                code: Refusal::CONFLICT,
                message: "gtin 1 matches products A and B".into(),
            });
        }
        let (report, csv) = assemble(run(vec![c]), at("2026-11-22T10:00:01Z"));
        let codes: Vec<&str> = report.errors.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["type_error", "database", "conflict"]);
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 4, "{csv}");
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

    #[test]
    fn rejected_rows_with_their_key_cells_filled_still_name_their_products() {
        let rejected = |row: u64, fields: &[&str]| RejectedRow {
            position: Position { row, line: row + 1 },
            issues: Vec::new(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
        };
        let mut c = chunk(0, 5, 2, written(2, 0));
        if let Some(t) = &mut c.transformed {
            t.rejected_rows = vec![
                rejected(1, &["Lamp", " A-1 ", "x"]),
                rejected(2, &["Desk", "  ", "1"]),
                rejected(3, &["Chair"]),
            ];
        }
        let mut record = run(vec![c]);
        if let Some(plan) = &mut record.plan {
            plan.header = ["name", "SKU", "price", "stock", "category"]
                .map(String::from)
                .to_vec();
        }
        assert_eq!(
            record.rejected_keys(&Schema::products()),
            vec![vec!["A-1".to_string()]],
            "an empty or missing key cell names no product"
        );
    }
}
