//! The payloads passed between the states of the state machine, and what each function returns.
//! Field names are the JSON the ASL reads (`$.plan`, `$.failure`, …): renaming one is a change to
//! `statemachine/`.

use serde::{Deserialize, Serialize};

pub use crate::app::RunInput;
use crate::error::Refusal;
use crate::feed::Mode;
use crate::records::ChunkPlan;
use crate::report::Status;
use crate::store::Difference;
use crate::transform::RejectedRow;

/// What `trigger` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerOutput {
    pub started: Vec<Started>,
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub run_id: String,
    pub key: String,
    /// False when the execution already existed (a duplicate delivery).
    pub new: bool,
}

/// What `validate` returns (the state's `$.plan`): small, whatever the file size. The chunk list
/// is not in it: the Map reads it from `chunks_key` with an `ItemReader`, so a file of any number
/// of chunks stays far below Step Functions' 256 KiB state limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOutput {
    pub rows: u64,
    pub file_bytes: u64,
    pub chunk_count: u64,
    /// The chunk size the plan used, after clamping (see [`crate::settings::Config::chunk_bytes`]).
    #[serde(default)]
    pub chunk_bytes: u64,
    /// `staging/<run>/chunks.json`: the Map's items, a JSON array of [`ChunkPlan`]s.
    #[serde(default)]
    pub chunks_key: String,
    pub plan_key: String,
    /// The per-file import time budget (object metadata `chute-import-budget-ms`), for tests and
    /// tuning; `null` when the file sets none. Always present: the ASL's ItemSelector reads it.
    #[serde(default)]
    pub import_budget_ms: Option<u64>,
    pub warnings: Vec<String>,
    pub duplicate_keys: u64,
    pub superseded_rows: u64,
    pub duration_ms: u64,
}

/// The plan details chunks need, stored in S3 (`staging/<run>/plan.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlan {
    pub header: Vec<String>,
    pub chunks: Vec<ChunkPlan>,
    /// Rows superseded by a later valid occurrence of their key (sorted).
    pub superseded: Vec<u64>,
    pub warnings: Vec<String>,
    /// How the file was read (encoding, delimiter, compression, number format) and where its
    /// decoded copy is; absent in plans stored before files other than plain CSV were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<crate::input::PlanInput>,
}

/// One Map item: the run plus one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInput {
    pub run_id: String,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub schema: String,
    /// Carried from [`RunInput::source`] to the import.
    pub source: String,
    /// Carried from [`RunInput::mode`] to the import.
    pub mode: Mode,
    pub plan_key: String,
    pub chunk: ChunkPlan,
    /// Carried from the plan to the import (see [`PlanOutput::import_budget_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_budget_ms: Option<u64>,
}

/// What `transform` returns and stores (`staging/<run>/chunk-<i>.transform.json`, with the rejected
/// rows; the returned copy leaves them out to stay small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformOutput {
    pub run_id: String,
    pub bucket: String,
    pub key: String,
    pub schema: String,
    pub source: String,
    pub mode: Mode,
    pub chunk: u32,
    pub rows: u64,
    pub valid: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub staged_key: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_rows: Vec<RejectedRow>,
    /// Of `rejected`: rows that are not UTF-8, and what they decode as (the report's hint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_utf8: Option<crate::input::NotUtf8Rows>,
    /// Carried from [`ChunkInput::import_budget_ms`] to the import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_budget_ms: Option<u64>,
}

/// What `import` returns and stores (`staging/<run>/chunk-<i>.import.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutput {
    pub run_id: String,
    pub chunk: u32,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub refused: u64,
    /// Of `updated`: products a full refresh had marked stale, active again.
    #[serde(default)]
    pub reactivated: u64,
    /// Of `updated` and `unchanged`: rows merged into another key's product by `match_also`.
    #[serde(default)]
    pub merged: u64,
    /// A dry run's sample of the field changes it would make (see [`crate::store::Difference`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
    pub duration_ms: u64,
    /// True when the ledger showed the chunk done and nothing was written.
    pub replayed: bool,
    /// False when this invocation ran out of its time budget with staged documents left: the
    /// counts are those so far, and the state machine invokes the import again, which resumes
    /// where the `import_runs` ledger says this one stopped.
    #[serde(default = "yes")]
    pub finished: bool,
    /// Staged documents of the chunk written so far (all of them once finished).
    #[serde(default)]
    pub position: u64,
    /// Invocations the chunk's import took so far.
    #[serde(default)]
    pub invocations: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
}

fn yes() -> bool {
    true
}

/// A caught failure as Step Functions passes it (`{"Error", "Cause"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// The `report` input: the whole execution state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportInput {
    #[serde(flatten)]
    pub run: RunInput,
    #[serde(default)]
    pub plan: Option<PlanOutput>,
    #[serde(default)]
    pub failure: Option<Failure>,
}

/// What `report` returns: the small result the state machine branches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportOutput {
    pub status: Status,
    pub report_key: String,
    pub email: String,
}

/// The run (and chunk) an event belongs to: [`super::serve`] puts them on every log line of the
/// invocation.
pub trait Traced {
    fn run_id(&self) -> Option<&str>;
    fn chunk(&self) -> Option<u32> {
        None
    }
}

/// S3 and EventBridge events name objects, not runs.
impl Traced for serde_json::Value {
    fn run_id(&self) -> Option<&str> {
        None
    }
}

impl Traced for RunInput {
    fn run_id(&self) -> Option<&str> {
        Some(&self.run_id)
    }
}

impl Traced for ChunkInput {
    fn run_id(&self) -> Option<&str> {
        Some(&self.run_id)
    }
    fn chunk(&self) -> Option<u32> {
        Some(self.chunk.index)
    }
}

impl Traced for TransformOutput {
    fn run_id(&self) -> Option<&str> {
        Some(&self.run_id)
    }
    fn chunk(&self) -> Option<u32> {
        Some(self.chunk)
    }
}

impl Traced for ReportInput {
    fn run_id(&self) -> Option<&str> {
        Some(&self.run.run_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Code, Position};
    use crate::input::NotUtf8Rows;
    use crate::report::{Imported, Transformed};
    use crate::transform::Issue;

    /// The report reads the chunk records the transform and import store; the layouts must agree.
    #[test]
    fn stored_chunk_records_read_back_as_the_report_sees_them() {
        let rejected = RejectedRow {
            position: Position { row: 2, line: 3 },
            issues: vec![Issue {
                column: "price".into(),
                code: Code::TypeError,
                message: "price is not a number".into(),
                value: "x".into(),
            }],
            fields: vec!["A".into()],
        };
        let transformed = TransformOutput {
            run_id: "run".into(),
            bucket: "b".into(),
            key: "k".into(),
            schema: "products".into(),
            source: "default".into(),
            mode: Mode::Incremental,
            chunk: 1,
            rows: 5,
            valid: 3,
            duplicate: 1,
            rejected: 1,
            staged_key: "s".into(),
            duration_ms: 40,
            rejected_rows: vec![rejected.clone()],
            not_utf8: Some(NotUtf8Rows {
                rows: 1,
                first_row: 2,
                decode_as: "windows-1252".into(),
            }),
            import_budget_ms: None,
        };
        let seen: Transformed =
            serde_json::from_slice(&serde_json::to_vec(&transformed).unwrap()).unwrap();
        let tally = &seen.tally;
        assert_eq!((tally.valid, tally.duplicate, tally.rejected), (3, 1, 1));
        assert_eq!((seen.duration_ms, seen.rejections), (40, vec![rejected]));
        assert_eq!(tally.not_utf8, transformed.not_utf8);

        let refusal = Refusal {
            position: Position { row: 4, line: 5 },
            code: 121,
            message: "Document failed validation".into(),
        };
        let imported = ImportOutput {
            run_id: "run".into(),
            chunk: 1,
            inserted: 1,
            updated: 1,
            unchanged: 0,
            refused: 1,
            reactivated: 0,
            merged: 0,
            differences: Vec::new(),
            duration_ms: 60,
            replayed: false,
            finished: true,
            position: 3,
            invocations: 1,
            refusals: vec![refusal.clone()],
        };
        let seen: Imported =
            serde_json::from_slice(&serde_json::to_vec(&imported).unwrap()).unwrap();
        let tally = &seen.tally;
        assert_eq!(
            (
                tally.inserted,
                tally.updated,
                tally.unchanged,
                tally.refused
            ),
            (1, 1, 0, 1)
        );
        assert_eq!((seen.duration_ms, seen.rejections), (60, vec![refusal]));
    }
}
