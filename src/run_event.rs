//! The run-finished event: what the report step publishes on the account's default EventBridge
//! bus once a run's report is stored, so chat, on-call and ticketing tools can follow runs with a
//! rule instead of reading email. Pure: built from the [`Report`]; `notify::events` sends it.
//!
//! Rules match on `source` (`chute`), `detail-type` (`Run finished`) and the detail's fields, e.g.
//! `{"source": ["chute"], "detail": {"status": ["FAILED"], "source": ["erp"]}}`.

use serde::Serialize;

use crate::report::{Report, Rows, Written};

/// The event's `source`, what every rule on chute's runs names.
pub const EVENT_SOURCE: &str = "chute";
/// The event's `detail-type`.
pub const DETAIL_TYPE: &str = "Run finished";

/// The event's `detail`: who sent which file, how it ended, the report's counts and where the
/// report is, so a rule's target can say all that without reading S3.
#[derive(Debug, Serialize)]
pub struct RunFinished<'r> {
    pub run_id: &'r str,
    /// The file, `s3://bucket/key`.
    pub file: String,
    pub etag: &'r str,
    /// The feed source (`chute-source`, else the team folder, else `default`).
    pub source: &'r str,
    pub mode: &'r str,
    pub dry_run: bool,
    pub schema: &'r str,
    pub status: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'r str>,
    pub rows: &'r Rows,
    pub written: &'r Written,
    /// Products a full refresh marked stale (absent when the run was no full refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_marked: Option<u64>,
    pub errors_total: u64,
    /// `s3://bucket/reports/<run>/report.json`.
    pub report: String,
    pub started_at: &'r str,
    pub finished_at: &'r str,
    pub duration_ms: u64,
}

impl<'r> RunFinished<'r> {
    pub fn of(report: &'r Report) -> RunFinished<'r> {
        let bucket = &report.source.bucket;
        RunFinished {
            run_id: &report.run_id,
            file: format!("s3://{bucket}/{}", report.source.key),
            etag: &report.source.etag,
            source: &report.feed.source,
            mode: report.feed.mode.as_str(),
            dry_run: report.dry_run,
            schema: &report.schema,
            status: report.status.as_str(),
            reason: report.reason.as_deref(),
            rows: &report.rows,
            written: &report.written,
            stale_marked: report.stale.as_ref().map(|s| s.marked),
            errors_total: report.errors_total,
            report: format!("s3://{bucket}/{}", report.artifacts.report),
            started_at: &report.timings.started_at,
            finished_at: &report.timings.finished_at,
            duration_ms: report.timings.duration_ms,
        }
    }

    /// The `Detail` string PutEvents takes.
    pub fn detail(&self) -> String {
        serde_json::to_string(self).expect("serialisable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{Mode, RunFeed};
    use crate::report::{Artifacts, FileObject, StaleReport, Status};

    fn report() -> Report {
        let mut report: Report = serde_json::from_value(serde_json::json!({
            "run_id": "erp-1", "schema": "catalog", "status": "FAILED", "staged": 0,
            "source": {"bucket": "b", "key": "incoming/erp/feed.csv", "etag": "e1"},
            "rows": {"total": 5, "valid": 3, "rejected": 1, "duplicate": 1, "unprocessed": 0},
            "written": {"inserted": 2, "updated": 1, "unchanged": 0, "merged": 0},
            "errors": [], "errors_total": 1, "errors_by_code": {}, "errors_by_column": {},
            "chunks": {"total": 1, "failed": []}, "warnings": [],
            "timings": {"started_at": "s", "finished_at": "f", "duration_ms": 7,
                        "steps": {"validate_ms": 1, "transform_ms": 1, "import_ms": 1, "slowest_chunk_ms": 1}},
            "artifacts": {"report": "reports/erp-1/report.json", "rejects": "r", "summary": "s"}
        }))
        .unwrap();
        report.feed = RunFeed {
            source: "erp".into(),
            mode: Mode::Full,
        };
        report.reason = Some("the file has no header".into());
        report
    }

    #[test]
    fn the_detail_carries_the_reports_counts_and_where_the_report_is() {
        let mut report = report();
        report.stale = Some(StaleReport {
            marked: 4,
            ..StaleReport::default()
        });
        let detail: serde_json::Value =
            serde_json::from_str(&RunFinished::of(&report).detail()).unwrap();
        assert_eq!(
            detail,
            serde_json::json!({
                "run_id": "erp-1", "file": "s3://b/incoming/erp/feed.csv", "etag": "e1",
                "source": "erp", "mode": "full", "dry_run": false, "schema": "catalog",
                "status": "FAILED", "reason": "the file has no header",
                "rows": {"total": 5, "valid": 3, "rejected": 1, "duplicate": 1, "unprocessed": 0},
                "written": {"inserted": 2, "updated": 1, "unchanged": 0, "merged": 0},
                "stale_marked": 4, "errors_total": 1,
                "report": "s3://b/reports/erp-1/report.json",
                "started_at": "s", "finished_at": "f", "duration_ms": 7
            })
        );
    }

    #[test]
    fn a_run_that_was_no_full_refresh_has_no_stale_count_and_a_success_no_reason() {
        let mut report = report();
        report.status = Status::Succeeded;
        report.reason = None;
        report.source = FileObject {
            bucket: "b".into(),
            key: "k".into(),
            ..FileObject::default()
        };
        report.artifacts = Artifacts::default();
        let detail: serde_json::Value =
            serde_json::from_str(&RunFinished::of(&report).detail()).unwrap();
        assert_eq!(detail["status"], "SUCCEEDED");
        assert!(detail.get("stale_marked").is_none(), "{detail}");
        assert!(detail.get("reason").is_none(), "{detail}");
    }
}
