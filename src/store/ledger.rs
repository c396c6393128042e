//! The run ledger (`import_runs`): one document per run, set when the run starts, when each chunk
//! is written and when the run is reported. A re-invoked import finds its chunk there and writes
//! nothing. An import that runs out of its time budget records how far it got
//! (`progress.<chunk>`), and the next invocation resumes from there.

use bson::{doc, DateTime, Document};
use serde::{Deserialize, Serialize};

use super::classify::classify;
use super::upsert::Difference;
use super::{Store, WriteOutcome};
use crate::error::ChuteError;
use crate::feed::Mode;
use crate::report::{Report, StaleReport, Status};

/// The ledger collection: one document per run.
pub const RUNS: &str = "import_runs";

/// Where a run stands in the ledger: running until reported, then the report's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Reported(Status),
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "RUNNING",
            RunState::Reported(status) => status.as_str(),
        }
    }
}

/// What the ledger records when a run starts.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    pub run_id: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub etag: &'a str,
    pub schema: &'a str,
    /// The feed source and mode: the ledger says which runs were dry runs or full refreshes.
    pub feed_source: &'a str,
    pub mode: Mode,
    pub requested_at: &'a str,
}

/// How far a chunk's import got (`progress.<chunk>` in the run's ledger document), updated after
/// each invocation that ran out of time and once more when the chunk is done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    /// Staged documents written so far, and the bytes of the staged file they take: the next
    /// invocation reads the staged file from `bytes` on.
    pub documents: u64,
    pub bytes: u64,
    /// The ETag of the staged file those offsets are in: if the transform re-ran since (a resumed
    /// run), the import starts the chunk over (recounting, not rewriting, what it wrote).
    #[serde(default)]
    pub staged_etag: String,
    /// Counts so far (`refused` is the number; the refusals themselves are in S3).
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub refused: u64,
    #[serde(default)]
    pub reactivated: u64,
    #[serde(default)]
    pub merged: u64,
    /// A dry run's sample of field differences so far (at most
    /// [`super::upsert::DIFFERENCE_SAMPLE`]).
    #[serde(default)]
    pub differences: Vec<Difference>,
    /// `documents` at the start of each earlier invocation that had refusals: each wrote them to
    /// `chunk-<i>.import-from-<documents>.json`, read back when the chunk finishes.
    pub refusal_parts: Vec<u64>,
    pub invocations: u32,
    /// Time spent writing, over all invocations.
    pub duration_ms: u64,
    pub finished: bool,
}

impl Store {
    /// Marks the run as running, with its source and schema.
    pub async fn start_run(&self, run: &RunStart<'_>) -> Result<(), ChuteError> {
        self.record_run(
            run.run_id,
            doc! {"status": RunState::Running.as_str(),
            "source": {"bucket": run.bucket, "key": run.key, "etag": run.etag},
            "schema": run.schema, "feed_source": run.feed_source, "mode": run.mode.as_str(),
            "requested_at": run.requested_at},
        )
        .await
    }

    /// Records the reported run: its final status, when it finished, its source, mode and whether
    /// it was a dry run (so a dry run is never mistaken for an import), and the report itself.
    pub async fn finish_run(&self, report: &Report) -> Result<(), ChuteError> {
        let report_doc = bson::to_bson(report).map_err(|e| ChuteError::Unwritable {
            what: "the report".into(),
            source: e.into(),
        })?;
        self.record_run(
            &report.run_id,
            doc! {"status": RunState::Reported(report.status).as_str(),
            "finished_at": &report.timings.finished_at, "dry_run": report.dry_run,
            "feed": {"source": &report.feed.source, "mode": &report.feed.mode},
            "report": report_doc},
        )
        .await
    }

    /// Records what the run's stale marking did, so a retried or redriven report repeats the
    /// numbers instead of recounting a catalogue it already changed (deleted documents are gone).
    pub async fn record_stale(&self, run_id: &str, stale: &StaleReport) -> Result<(), ChuteError> {
        let entry = bson::to_document(stale).map_err(|e| ChuteError::Unwritable {
            what: "the stale marking".into(),
            source: e.into(),
        })?;
        self.record_run(run_id, doc! {"stale": entry}).await
    }

    /// The stale marking the run recorded, if it got that far.
    pub async fn recorded_stale(&self, run_id: &str) -> Result<Option<StaleReport>, ChuteError> {
        let Some(run) = self.run(run_id).await? else {
            return Ok(None);
        };
        let Ok(entry) = run.get_document("stale") else {
            return Ok(None);
        };
        bson::from_document(entry.clone())
            .map(Some)
            .map_err(|e| ChuteError::Unreadable {
                what: format!("the stale marking of run {run_id}"),
                source: e.into(),
            })
    }

    /// The ledger entry of a chunk already written by this run, if any.
    pub async fn finished_chunk(
        &self,
        run_id: &str,
        chunk: u32,
    ) -> Result<Option<WriteOutcome>, ChuteError> {
        self.chunk_entry(run_id, "chunks", chunk, "ledger entry")
            .await
    }

    /// `<section>.<chunk>` of the run's ledger document, decoded; None when not recorded.
    async fn chunk_entry<T: serde::de::DeserializeOwned>(
        &self,
        run_id: &str,
        section: &str,
        chunk: u32,
        name: &str,
    ) -> Result<Option<T>, ChuteError> {
        let field = format!("{section}.{chunk}");
        let found = self
            .db
            .collection::<Document>(RUNS)
            .find_one(doc! {"_id": run_id, &field: {"$exists": true}})
            .projection(doc! {&field: 1})
            .await
            .map_err(classify)?;
        let Some(run) = found else { return Ok(None) };
        let unreadable = |e: bson::de::Error| ChuteError::Unreadable {
            what: format!("{name} for chunk {chunk} of run {run_id}"),
            source: e.into(),
        };
        let entry = run
            .get_document(section)
            .and_then(|c| c.get_document(chunk.to_string()))
            .map_err(|e| ChuteError::Unreadable {
                what: format!("{name} for chunk {chunk} of run {run_id}"),
                source: e.into(),
            })?;
        bson::from_document(entry.clone())
            .map(Some)
            .map_err(unreadable)
    }

    /// Records a written chunk in the run's ledger: its counts (the refusals are in its S3 record).
    pub async fn finish_chunk(
        &self,
        run_id: &str,
        chunk: u32,
        outcome: &WriteOutcome,
    ) -> Result<(), ChuteError> {
        let counts = WriteOutcome {
            refused: Vec::new(),
            ..outcome.clone()
        };
        let entry = bson::to_document(&counts).map_err(|e| ChuteError::Unwritable {
            what: "the chunk outcome".into(),
            source: e.into(),
        })?;
        self.db
            .collection::<Document>(RUNS)
            .update_one(
                doc! {"_id": run_id},
                doc! {"$set": {format!("chunks.{chunk}"): entry, "updated_at": DateTime::now()}, "$setOnInsert": {"created_at": DateTime::now()}},
            )
            .upsert(true)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// How far the chunk's import got, if an invocation recorded it.
    pub async fn chunk_progress(
        &self,
        run_id: &str,
        chunk: u32,
    ) -> Result<Option<ImportProgress>, ChuteError> {
        self.chunk_entry(run_id, "progress", chunk, "ledger progress")
            .await
    }

    /// Records how far the chunk's import got (one atomic `$set` of position and counts).
    pub async fn record_progress(
        &self,
        run_id: &str,
        chunk: u32,
        progress: &ImportProgress,
    ) -> Result<(), ChuteError> {
        let entry = bson::to_document(progress).map_err(|e| ChuteError::Unwritable {
            what: "the chunk's import progress".into(),
            source: e.into(),
        })?;
        self.record_run(run_id, doc! {format!("progress.{chunk}"): entry})
            .await
    }

    /// Sets run-level fields on the run's ledger document; [`Store::start_run`] and
    /// [`Store::finish_run`] say which.
    pub async fn record_run(&self, run_id: &str, fields: Document) -> Result<(), ChuteError> {
        let mut set = fields;
        set.insert("updated_at", DateTime::now());
        self.db
            .collection::<Document>(RUNS)
            .update_one(
                doc! {"_id": run_id},
                doc! {"$set": set, "$setOnInsert": {"created_at": DateTime::now()}},
            )
            .upsert(true)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// The run's ledger document.
    pub async fn run(&self, run_id: &str) -> Result<Option<Document>, ChuteError> {
        self.db
            .collection::<Document>(RUNS)
            .find_one(doc! {"_id": run_id})
            .await
            .map_err(classify)
    }
}
