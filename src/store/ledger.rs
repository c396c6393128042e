//! The run ledger (`import_runs`): one document per run, set when the run starts, when each chunk
//! is written and when the run is reported. A re-invoked import finds its chunk there and writes
//! nothing.

use bson::{doc, DateTime, Document};

use super::classify::classify;
use super::{Store, WriteOutcome};
use crate::error::ChuteError;
use crate::report::{Report, Status};

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
    pub requested_at: &'a str,
}

impl Store {
    /// Marks the run as running, with its source and schema.
    pub async fn start_run(&self, run: &RunStart<'_>) -> Result<(), ChuteError> {
        self.record_run(
            run.run_id,
            doc! {"status": RunState::Running.as_str(),
            "source": {"bucket": run.bucket, "key": run.key, "etag": run.etag},
            "schema": run.schema, "requested_at": run.requested_at},
        )
        .await
    }

    /// Records the reported run: its final status, when it finished and the report itself.
    pub async fn finish_run(&self, report: &Report) -> Result<(), ChuteError> {
        let report_doc = bson::to_bson(report).map_err(|e| ChuteError::Unwritable {
            what: "the report".into(),
            source: e.into(),
        })?;
        self.record_run(
            &report.run_id,
            doc! {"status": RunState::Reported(report.status).as_str(),
            "finished_at": &report.timings.finished_at, "report": report_doc},
        )
        .await
    }

    /// The ledger entry of a chunk already written by this run, if any.
    pub async fn finished_chunk(
        &self,
        run_id: &str,
        chunk: u32,
    ) -> Result<Option<WriteOutcome>, ChuteError> {
        let field = format!("chunks.{chunk}");
        let found = self
            .db
            .collection::<Document>(RUNS)
            .find_one(doc! {"_id": run_id, &field: {"$exists": true}})
            .projection(doc! {&field: 1})
            .await
            .map_err(classify)?;
        let Some(run) = found else { return Ok(None) };
        let what = || format!("ledger entry for chunk {chunk} of run {run_id}");
        let entry = run
            .get_document("chunks")
            .and_then(|c| c.get_document(chunk.to_string()))
            .map_err(|e| ChuteError::Unreadable {
                what: what(),
                source: e.into(),
            })?;
        bson::from_document(entry.clone())
            .map(Some)
            .map_err(|e| ChuteError::Unreadable {
                what: what(),
                source: e.into(),
            })
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
