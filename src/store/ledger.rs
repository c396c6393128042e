//! The run ledger (`import_runs`): one document per run, set when the run starts, as each chunk's
//! import goes (`progress.<chunk>`, an [`ImportProgress`]) and when the run is reported. An import
//! that runs out of its time budget records how far it got, and the next invocation resumes from
//! there; a re-invoked import whose chunk is `finished` there writes nothing.

use bson::{doc, DateTime, Document};

use super::classify::classify;
use super::Store;
use crate::error::ChuteError;
use crate::feed::Mode;
use crate::report::{Report, StaleReport, Status};
use crate::run::ImportProgress;

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
            "feed": {"source": &report.feed.source, "mode": report.feed.mode.as_str()},
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

    /// How far the chunk's import got, if an invocation recorded it.
    pub async fn chunk_progress(
        &self,
        run_id: &str,
        chunk: u32,
    ) -> Result<Option<ImportProgress>, ChuteError> {
        let field = format!("progress.{chunk}");
        let found = self
            .db
            .collection::<Document>(RUNS)
            .find_one(doc! {"_id": run_id, &field: {"$exists": true}})
            .projection(doc! {&field: 1})
            .await
            .map_err(classify)?;
        let unreadable = |e: String| ChuteError::Unreadable {
            what: format!("the import progress of chunk {chunk} of run {run_id}"),
            source: e.into(),
        };
        let Some(run) = found else { return Ok(None) };
        let entry = run
            .get_document("progress")
            .and_then(|p| p.get_document(chunk.to_string()))
            .map_err(|e| unreadable(e.to_string()))?;
        bson::from_document(entry.clone())
            .map(Some)
            .map_err(|e| unreadable(e.to_string()))
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
