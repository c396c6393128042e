//! Idempotent batched upserts of staged documents: look up what is stored under the batch's keys,
//! insert the new ones whole, `$set` the changed ones, count the rest as unchanged.

use std::collections::HashMap;

use bson::{doc, Bson, DateTime, Document, RawDocument};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use super::classify::{classify, refusal_message, DUPLICATE_KEY};
use super::staged::{bson_text, lookup, read_staged, split_staged, StagedDoc};
use super::Store;
use crate::error::{ChuteError, Refusal};
use crate::schema::{join_key, Schema};

/// Who wrote a document last: the run, its source and when.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub run_id: String,
    /// `s3://bucket/key`
    pub source: String,
    pub at: DateTime,
}

/// What writing one chunk did. `inserted + updated + unchanged + refused.len()` equals the
/// documents handed in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub refused: Vec<Refusal>,
}

impl WriteOutcome {
    pub fn add(&mut self, other: WriteOutcome) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.refused.extend(other.refused);
    }
}

/// How far [`Store::upsert_stream_until`] got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteProgress {
    pub outcome: WriteOutcome,
    /// Staged documents written (whole batches) and the bytes they took in the stream.
    pub documents: u64,
    pub bytes: u64,
    /// True when the stream ended: nothing is left to write.
    pub finished: bool,
}

impl Store {
    /// Upserts staged documents (concatenated BSON from the transform), batch by batch.
    ///
    /// Per document, against what is stored under its key:
    /// - written by this same run already (a retried batch whose reply was lost): counted as the
    ///   insert or update it was, not written again;
    /// - same content hash: `unchanged`, not written;
    /// - otherwise `$set` of every field the row has (absent optional fields keep their stored
    ///   values), `$setOnInsert` of `first_imported_at` and insert-only defaults.
    pub async fn upsert_staged(
        &self,
        schema: &Schema,
        staged: &[u8],
        ctx: &WriteContext,
    ) -> Result<WriteOutcome, ChuteError> {
        self.upsert_stream(schema, staged, ctx).await
    }

    /// [`Store::upsert_staged`] reading the staged documents from a stream one batch at a time, so
    /// memory holds one batch, not the chunk's staged file.
    pub async fn upsert_stream(
        &self,
        schema: &Schema,
        staged: impl AsyncRead + Unpin,
        ctx: &WriteContext,
    ) -> Result<WriteOutcome, ChuteError> {
        Ok(self
            .upsert_stream_until(schema, staged, ctx, 0, || false)
            .await?
            .outcome)
    }

    /// [`Store::upsert_stream`] that stops between batches once `out_of_time()` says so, having
    /// written at least one batch (so every call makes progress). It reads the next batch before
    /// asking, so it stops only with documents left: `finished` is false exactly then, and
    /// `documents`/`bytes` say how much of the stream was written (whole batches), where the next
    /// call resumes. `skipped` (documents before the stream's start) only names places in errors.
    pub async fn upsert_stream_until(
        &self,
        schema: &Schema,
        mut staged: impl AsyncRead + Unpin,
        ctx: &WriteContext,
        skipped: u64,
        out_of_time: impl Fn() -> bool,
    ) -> Result<WriteProgress, ChuteError> {
        let key_fields: Vec<&str> = schema
            .key
            .iter()
            .map(|k| {
                schema
                    .column(k)
                    .map(|c| c.field.as_str())
                    .unwrap_or(k.as_str())
            })
            .collect();
        let mut progress = WriteProgress::default();
        let mut batch = Vec::new();
        let mut read = skipped;
        loop {
            batch.clear();
            let mut in_batch = 0;
            while in_batch < self.batch_size && read_staged(&mut staged, &mut batch, read).await? {
                in_batch += 1;
                read += 1;
            }
            if in_batch == 0 {
                progress.finished = true;
                return Ok(progress);
            }
            if progress.documents > 0 && out_of_time() {
                return Ok(progress);
            }
            let docs = split_staged(&batch)?;
            progress
                .outcome
                .add(self.upsert_batch(schema, &key_fields, &docs, ctx).await?);
            progress.documents += in_batch as u64;
            progress.bytes += batch.len() as u64;
        }
    }

    async fn upsert_batch(
        &self,
        schema: &Schema,
        key_fields: &[&str],
        batch: &[&RawDocument],
        ctx: &WriteContext,
    ) -> Result<WriteOutcome, ChuteError> {
        let staged: Vec<StagedDoc> = batch
            .iter()
            .map(|raw| StagedDoc::parse(raw, key_fields))
            .collect::<Result<_, _>>()?;
        let stored = self.stored_state(schema, key_fields, &staged).await?;
        let mut outcome = WriteOutcome::default();
        let mut new_docs: Vec<&StagedDoc> = Vec::new();
        let mut changed: Vec<&StagedDoc> = Vec::new();
        for doc in &staged {
            match stored.get(&doc.key_text) {
                Some(s)
                    if s.run_id.as_deref() == Some(ctx.run_id.as_str())
                        && s.hash.as_deref() == Some(&doc.hash) =>
                {
                    if s.first_run_id.as_deref() == Some(ctx.run_id.as_str()) {
                        outcome.inserted += 1;
                    } else {
                        outcome.updated += 1;
                    }
                }
                Some(s) if s.hash.as_deref() == Some(&doc.hash) => outcome.unchanged += 1,
                Some(_) => changed.push(doc),
                None => new_docs.push(doc),
            }
        }
        // Keys not stored yet are inserted whole: far cheaper for the server than an upsert. A
        // key that appeared since the lookup (another writer) fails with a duplicate key and is
        // upserted instead.
        let mut raced = self
            .insert_new(schema, &new_docs, ctx, &mut outcome)
            .await?;
        changed.append(&mut raced);
        self.update_changed(schema, &changed, ctx, &mut outcome)
            .await?;
        outcome.refused.sort_by_key(|r| r.position);
        Ok(outcome)
    }

    /// Inserts documents for keys that were not stored; returns those that turned out to exist.
    async fn insert_new<'d>(
        &self,
        schema: &Schema,
        docs: &[&'d StagedDoc],
        ctx: &WriteContext,
        outcome: &mut WriteOutcome,
    ) -> Result<Vec<&'d StagedDoc>, ChuteError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let documents: Vec<Document> = docs.iter().map(|d| d.new_document(ctx)).collect();
        let reply = self
            .write_command(
                doc! {"insert": &schema.collection, "documents": documents, "ordered": false},
            )
            .await?;
        outcome.inserted += number(&reply, "n");
        let mut raced = Vec::new();
        for (doc, error) in write_errors(&reply, docs)? {
            if error.code == DUPLICATE_KEY {
                raced.push(doc);
            } else {
                outcome.refused.push(error.refusal(doc));
            }
        }
        Ok(raced)
    }

    /// `$set`s the fields of documents whose stored content differs (upserting, so a key deleted
    /// since the lookup comes back).
    async fn update_changed(
        &self,
        schema: &Schema,
        docs: &[&StagedDoc],
        ctx: &WriteContext,
        outcome: &mut WriteOutcome,
    ) -> Result<(), ChuteError> {
        if docs.is_empty() {
            return Ok(());
        }
        let statements: Vec<Document> = docs.iter().map(|d| d.statement(ctx)).collect();
        let reply = self
            .write_command(
                doc! {"update": &schema.collection, "updates": statements, "ordered": false},
            )
            .await?;
        let upserted = reply
            .get_array("upserted")
            .map(|a| a.len() as u64)
            .unwrap_or(0);
        let matched = number(&reply, "n").saturating_sub(upserted);
        let modified = number(&reply, "nModified");
        outcome.inserted += upserted;
        outcome.updated += modified;
        outcome.unchanged += matched.saturating_sub(modified);
        for (doc, error) in write_errors(&reply, docs)? {
            outcome.refused.push(error.refusal(doc));
        }
        Ok(())
    }

    /// Runs an unordered write command; per-document errors stay in the reply for the caller.
    async fn write_command(&self, command: Document) -> Result<Document, ChuteError> {
        let reply = self.db.run_command(command).await.map_err(classify)?;
        if let Ok(wce) = reply.get_document("writeConcernError") {
            return Err(ChuteError::Transient(format!(
                "write concern not satisfied: {wce}"
            )));
        }
        Ok(reply)
    }

    /// Hash and writer of the stored documents for a batch's keys.
    async fn stored_state(
        &self,
        schema: &Schema,
        key_fields: &[&str],
        staged: &[StagedDoc],
    ) -> Result<HashMap<String, StoredState>, ChuteError> {
        let filter = if key_fields.len() == 1 {
            let values: Vec<Bson> = staged.iter().map(|d| d.key[0].1.clone()).collect();
            doc! { key_fields[0]: {"$in": values} }
        } else {
            let alternatives: Vec<Document> = staged
                .iter()
                .map(|d| d.key.iter().cloned().collect())
                .collect();
            doc! {"$or": alternatives}
        };
        let mut projection =
            doc! {"_id": 0, "_import.hash": 1, "_import.run_id": 1, "first_run_id": 1};
        for f in key_fields {
            projection.insert(*f, 1);
        }
        let mut cursor = self
            .db
            .collection::<Document>(&schema.collection)
            .find(filter)
            .projection(projection)
            .batch_size(self.batch_size as u32)
            .await
            .map_err(classify)?;
        let mut stored = HashMap::with_capacity(staged.len());
        while cursor.advance().await.map_err(classify)? {
            let d: Document = cursor.deserialize_current().map_err(classify)?;
            let parts: Vec<String> = key_fields
                .iter()
                .map(|f| lookup(&d, f).map(bson_text).unwrap_or_default())
                .collect();
            let key_text = join_key(parts.iter().map(String::as_str));
            let import = d.get_document("_import").ok();
            stored.insert(
                key_text,
                StoredState {
                    hash: import
                        .and_then(|i| i.get_str("hash").ok())
                        .map(str::to_string),
                    run_id: import
                        .and_then(|i| i.get_str("run_id").ok())
                        .map(str::to_string),
                    first_run_id: d.get_str("first_run_id").ok().map(str::to_string),
                },
            );
        }
        Ok(stored)
    }
}

/// One `writeErrors` entry of a write command's reply.
struct WriteError {
    code: i32,
    message: String,
}

impl WriteError {
    fn refusal(&self, doc: &StagedDoc) -> Refusal {
        Refusal {
            position: doc.position,
            code: self.code,
            message: self.message.clone(),
        }
    }
}

/// The per-document errors of a write command, each with the document it concerns.
fn write_errors<'d>(
    reply: &Document,
    docs: &[&'d StagedDoc],
) -> Result<Vec<(&'d StagedDoc, WriteError)>, ChuteError> {
    let Ok(errors) = reply.get_array("writeErrors") else {
        return Ok(Vec::new());
    };
    errors
        .iter()
        .filter_map(Bson::as_document)
        .map(|e| {
            let index = e.get_i32("index").unwrap_or(-1);
            let code = e.get_i32("code").unwrap_or(0);
            let message = e.get_str("errmsg").unwrap_or("refused");
            let doc = usize::try_from(index)
                .ok()
                .and_then(|i| docs.get(i))
                .ok_or_else(|| {
                    ChuteError::Fatal(format!(
                        "server reported a write error for unknown statement {index}: {message}"
                    ))
                })?;
            let message = refusal_message(code, message, e);
            Ok((*doc, WriteError { code, message }))
        })
        .collect()
}

struct StoredState {
    hash: Option<String>,
    run_id: Option<String>,
    first_run_id: Option<String>,
}

fn number(reply: &Document, field: &str) -> u64 {
    match reply.get(field) {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}
