//! The payloads passed between the states of the state machine, and what each function returns.
//! Field names are the JSON the ASL reads (`$.plan`, `$.failure`, …): renaming one is a change to
//! `statemachine/`. `transform` and `import` return the records they store
//! ([`crate::run::TransformRecord`], [`crate::run::ImportRecord`]).

use serde::{Deserialize, Serialize};

pub use crate::app::RunInput;
use crate::feed::Mode;
use crate::records::ChunkPlan;
use crate::report::Status;
use crate::run::TransformRecord;

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
pub struct ValidateOutput {
    pub rows: u64,
    pub file_bytes: u64,
    pub chunk_count: u64,
    /// The chunk size the plan used, after clamping (see [`crate::settings::Config::chunk_bytes`]).
    #[serde(default)]
    pub chunk_bytes: u64,
    /// The Map's items, a JSON array of [`ChunkPlan`]s ([`crate::run::RunKeys::chunk_list`]).
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

/// One Map item: the run plus one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInput {
    pub run_id: String,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub schema: String,
    /// Carried from [`RunInput::feed_source`] to the import.
    #[serde(rename = "source")]
    pub feed_source: String,
    /// Carried from [`RunInput::mode`] to the import.
    pub mode: Mode,
    pub plan_key: String,
    pub chunk: ChunkPlan,
    /// Carried from the plan to the import (see [`ValidateOutput::import_budget_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_budget_ms: Option<u64>,
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
    pub plan: Option<ValidateOutput>,
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

impl Traced for TransformRecord {
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
