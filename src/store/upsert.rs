//! Idempotent batched writes of staged documents: read what is stored under the batch's keys (and,
//! with `match_also`, the products their match fields or aliases name), decide each row
//! ([`super::document`], which also describes the stored document's shape), insert the new ones
//! whole, send the changed ones as updates conditional on the revision read, count the rest as
//! unchanged. Rows whose product another writer changed in between are read and decided again. A
//! dry run decides the same way and sends nothing.

use std::collections::{HashMap, HashSet};

use bson::{doc, Bson, Document, RawDocument};
use tokio::io::AsyncRead;

use super::classify::{classify, refusal_message, DUPLICATE_KEY};
use super::document::{
    decide, projection, Counted, Decision, Outcome, Stored, Target, WriteContext,
};
use super::filters::keys_filter;
use super::paths::{bson_text, key_text, lookup};
use super::staged::{digest_entry, read_staged, split_staged, StagedDoc};
use super::Store;
use crate::delta::ChunkDiff;
use crate::error::{ChuteError, Refusal};
use crate::feed::Mode;
use crate::run::{keep_sample, Difference, WriteCounts, DIFFERENCE_SAMPLE};
use crate::schema::{Schema, KEY_SEPARATOR};

/// What writing staged documents did: the counts, the refused rows (as many as
/// `counts.refused`) and, in a dry run, a sample of the field changes of updated documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub counts: WriteCounts,
    pub refusals: Vec<Refusal>,
    pub differences: Vec<Difference>,
}

impl WriteOutcome {
    fn count(&mut self, counted: Counted) {
        let counts = &mut self.counts;
        match counted.outcome {
            Outcome::Inserted => counts.inserted += 1,
            Outcome::Updated => counts.updated += 1,
            Outcome::Unchanged => counts.unchanged += 1,
        }
        counts.reactivated += u64::from(counted.reactivated);
        counts.merged += u64::from(counted.merged);
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.counts.refused += 1;
        self.refusals.push(refusal);
    }

    pub fn add(&mut self, other: WriteOutcome) {
        self.counts += other.counts;
        self.refusals.extend(other.refusals);
        keep_sample(&mut self.differences, &other.differences);
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
    /// Writes staged documents (concatenated BSON from the transform), batch by batch.
    ///
    /// Per document, against the product stored under its key (or merged into by `match_also`):
    /// - written by this same run already (a retried batch whose reply was lost): counted as the
    ///   write it was (`_sources.<name>.outcome`), not written again;
    /// - same content hash as this source's last row: `unchanged`, not written (a full refresh
    ///   refreshes only the source's stamp; a stale product is reactivated);
    /// - otherwise `$set` of every field the row has that no higher-ranked source supplied (absent
    ///   optional fields keep their stored values); a new key is inserted whole, with
    ///   `first_imported_at` and insert-only defaults.
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
            .upsert_stream_until(schema, staged, ctx, 0, None, || false)
            .await?
            .outcome)
    }

    /// [`Store::upsert_stream`] that stops between batches once `out_of_time()` says so, having
    /// written at least one batch (so every call makes progress). It reads the next batch before
    /// asking, so it stops only with documents left: `finished` is false exactly then, and
    /// `documents`/`bytes` say how much of the stream was written (whole batches), where the next
    /// call resumes. `skipped` (documents before the stream's start) only names places in errors.
    /// Documents `unchanged` says the source's snapshot has with the same content are counted
    /// `unchanged` and never reach the database (no read, no write: [`crate::delta`]).
    pub async fn upsert_stream_until(
        &self,
        schema: &Schema,
        mut staged: impl AsyncRead + Unpin,
        ctx: &WriteContext,
        skipped: u64,
        unchanged: Option<&ChunkDiff>,
        out_of_time: impl Fn() -> bool,
    ) -> Result<WriteProgress, ChuteError> {
        let key_fields = schema.key_fields();
        let mut progress = WriteProgress::default();
        let mut batch = Vec::new();
        let mut read = skipped;
        loop {
            // A batch is up to `batch_size` documents for the database: the unchanged ones read
            // on the way are counted, not sent, so a 1 % change costs a handful of commands.
            batch.clear();
            let (mut in_batch, mut passed, mut passed_bytes, mut ended) = (0, 0u64, 0u64, false);
            while in_batch < self.batch_size {
                let start = batch.len();
                if !read_staged(&mut staged, &mut batch, read).await? {
                    ended = true;
                    break;
                }
                read += 1;
                if let Some(diff) = unchanged {
                    let raw = RawDocument::from_bytes(&batch[start..]).map_err(|e| {
                        ChuteError::Fatal(format!("staged document {read} is malformed: {e}"))
                    })?;
                    let entry = digest_entry(raw, &key_fields)?;
                    if diff.is_unchanged(&entry.key, entry.hash) {
                        passed += 1;
                        passed_bytes += (batch.len() - start) as u64;
                        batch.truncate(start);
                        continue;
                    }
                }
                in_batch += 1;
            }
            if in_batch == 0 && passed == 0 {
                progress.finished = true;
                return Ok(progress);
            }
            if progress.documents > 0 && out_of_time() {
                return Ok(progress);
            }
            if in_batch > 0 {
                let docs = split_staged(&batch)?;
                progress
                    .outcome
                    .add(self.upsert_batch(schema, &key_fields, &docs, ctx).await?);
            }
            progress.outcome.counts.unchanged += passed;
            progress.documents += in_batch as u64 + passed;
            progress.bytes += batch.len() as u64 + passed_bytes;
            if ended {
                progress.finished = true;
                return Ok(progress);
            }
        }
    }

    /// Writes one batch: read the stored products, decide each row ([`decide`]), insert the new
    /// ones, send the conditional updates; rows whose product another writer changed in between
    /// (a duplicate key on insert, a revision that moved) are read and decided again.
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
        let match_fields = schema.match_fields();
        let mut outcome = WriteOutcome::default();
        let mut pending: Vec<&StagedDoc> = staged.iter().collect();
        for _ in 0..MAX_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let found = self
                .read_products(schema, key_fields, &match_fields, &pending, ctx)
                .await?;
            let mut inserts: Vec<(&StagedDoc, Document)> = Vec::new();
            let mut updates: Vec<(&StagedDoc, Document, Counted)> = Vec::new();
            for doc in pending {
                match decide(
                    doc,
                    found.target(doc, &match_fields),
                    ctx,
                    &schema.feed,
                    key_fields,
                ) {
                    Decision::Written(counted) => outcome.count(counted),
                    Decision::Unchanged { merged } => outcome.count(Counted {
                        outcome: Outcome::Unchanged,
                        reactivated: false,
                        merged,
                    }),
                    Decision::Refuse(refusal) => outcome.refuse(refusal),
                    Decision::Insert(document) => inserts.push((doc, document)),
                    Decision::Update {
                        statement,
                        counted,
                        differences,
                    } => {
                        if counted.outcome == Outcome::Updated {
                            outcome.differences.extend(differences);
                        }
                        updates.push((doc, statement, counted));
                    }
                }
            }
            if ctx.mode == Mode::DryRun {
                // What the writes below would count, from the same decisions; nothing is sent.
                outcome.counts.inserted += inserts.len() as u64;
                for (_, _, counted) in updates {
                    outcome.count(counted);
                }
                pending = Vec::new();
                break;
            }
            pending = self.insert_new(schema, inserts, &mut outcome).await?;
            pending.extend(
                self.update_existing(schema, updates, ctx, &mut outcome)
                    .await?,
            );
        }
        if !pending.is_empty() {
            return Err(ChuteError::Transient(format!(
                "{} products of the batch were changed by other writers in each of {MAX_ROUNDS} \
                 rounds of reading and writing them",
                pending.len()
            )));
        }
        outcome.differences.truncate(DIFFERENCE_SAMPLE);
        outcome.refusals.sort_by_key(|r| r.position);
        Ok(outcome)
    }

    /// Inserts the documents of rows whose key was not stored; returns the rows whose key another
    /// writer stored since the read (to decide again).
    async fn insert_new<'d>(
        &self,
        schema: &Schema,
        inserts: Vec<(&'d StagedDoc, Document)>,
        outcome: &mut WriteOutcome,
    ) -> Result<Vec<&'d StagedDoc>, ChuteError> {
        if inserts.is_empty() {
            return Ok(Vec::new());
        }
        let (docs, documents): (Vec<&StagedDoc>, Vec<Document>) = inserts.into_iter().unzip();
        let reply = self
            .write_command(
                doc! {"insert": &schema.collection, "documents": documents, "ordered": false},
            )
            .await?;
        outcome.counts.inserted += number(&reply, "n");
        let mut raced = Vec::new();
        for (doc, error) in write_errors(&reply, &docs)? {
            if error.code == DUPLICATE_KEY {
                raced.push(doc);
            } else {
                outcome.refuse(error.refusal(doc));
            }
        }
        Ok(raced)
    }

    /// Sends the conditional updates; counts those that applied and returns the rows whose
    /// product changed since the read (to decide again).
    async fn update_existing<'d>(
        &self,
        schema: &Schema,
        updates: Vec<(&'d StagedDoc, Document, Counted)>,
        ctx: &WriteContext,
        outcome: &mut WriteOutcome,
    ) -> Result<Vec<&'d StagedDoc>, ChuteError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<&StagedDoc> = updates.iter().map(|(d, _, _)| *d).collect();
        let statements: Vec<Document> = updates.iter().map(|(_, s, _)| s.clone()).collect();
        let reply = self
            .write_command(
                doc! {"update": &schema.collection, "updates": statements, "ordered": false},
            )
            .await?;
        let mut refused = vec![false; updates.len()];
        for (doc, error) in write_errors(&reply, &docs)? {
            if let Some(i) = docs.iter().position(|d| std::ptr::eq(*d, doc)) {
                refused[i] = true;
            }
            outcome.refuse(error.refusal(doc));
        }
        let sent: Vec<usize> = (0..updates.len()).filter(|i| !refused[*i]).collect();
        let applied = if number(&reply, "n") == sent.len() as u64 {
            vec![true; updates.len()]
        } else {
            // Some filters matched nothing: see which rows' stamps are now this run's.
            let ids: Vec<Bson> = sent
                .iter()
                .map(|i| {
                    updates[*i]
                        .1
                        .get_document("q")
                        .map(|q| q.get("_id").cloned())
                })
                .filter_map(|q| q.ok().flatten())
                .collect();
            let stamped = self.stamped(schema, ctx, ids).await?;
            updates
                .iter()
                .map(|(doc, _, _)| stamped.contains(&doc.hash))
                .collect()
        };
        let mut raced = Vec::new();
        for i in sent {
            let (doc, _, counted) = &updates[i];
            if applied[i] {
                outcome.count(*counted);
            } else {
                raced.push(*doc);
            }
        }
        Ok(raced)
    }

    /// The row hashes this run's source stamped on the products `ids`.
    async fn stamped(
        &self,
        schema: &Schema,
        ctx: &WriteContext,
        ids: Vec<Bson>,
    ) -> Result<HashSet<String>, ChuteError> {
        let stamp = format!("_sources.{}", ctx.feed_source);
        let mut cursor = self
            .db
            .collection::<Document>(&schema.collection)
            .find(doc! {"_id": {"$in": ids}, format!("{stamp}.run_id"): &ctx.run_id})
            .projection(doc! {&stamp: 1})
            .await
            .map_err(classify)?;
        let mut hashes = HashSet::new();
        while cursor.advance().await.map_err(classify)? {
            let d: Document = cursor.deserialize_current().map_err(classify)?;
            if let Some(Bson::String(hash)) = lookup(&d, &format!("{stamp}.hash")) {
                hashes.insert(hash.clone());
            }
        }
        Ok(hashes)
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

    /// The stored products of a batch's rows: by key, and for rows whose key is not stored, by
    /// `match_also` field or alias.
    async fn read_products(
        &self,
        schema: &Schema,
        key_fields: &[&str],
        match_fields: &[&str],
        staged: &[&StagedDoc],
        ctx: &WriteContext,
    ) -> Result<Found, ChuteError> {
        let projection = projection(ctx, key_fields, match_fields);
        let keys: Vec<Vec<Bson>> = staged
            .iter()
            .map(|d| d.key.iter().map(|(_, v)| v.clone()).collect())
            .collect();
        let filter = keys_filter(key_fields, &keys);
        let mut found = Found::default();
        // A composite key's filter is a superset of the batch's keys; the extra products are
        // never looked up (rows find their product by their own key text).
        for stored in self
            .find_products(schema, key_fields, filter, projection.clone())
            .await?
        {
            found.by_key.insert(stored.key_text.clone(), stored);
        }
        let unknown: Vec<&&StagedDoc> = staged
            .iter()
            .filter(|d| !found.by_key.contains_key(&d.key_text))
            .collect();
        if match_fields.is_empty() || unknown.is_empty() {
            return Ok(found);
        }
        // One find per way of matching (an `$or` of them is a collection scan on SecantusDB).
        let aliases: Vec<&str> = unknown.iter().map(|d| d.key_text.as_str()).collect();
        let mut filters = vec![doc! {"_aliases": {"$in": aliases}}];
        for field in match_fields {
            let values: Vec<Bson> = unknown
                .iter()
                .filter_map(|d| d.field(field).cloned())
                .collect();
            if !values.is_empty() {
                filters.push(doc! {*field: {"$in": values}});
            }
        }
        let mut seen = HashSet::new();
        for filter in filters {
            for stored in self
                .find_products(schema, key_fields, filter, projection.clone())
                .await?
            {
                if seen.insert(stored.doc.get("_id").map(Bson::to_string)) {
                    found.matched.push(stored);
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn find_products(
        &self,
        schema: &Schema,
        key_fields: &[&str],
        filter: Document,
        projection: Option<Document>,
    ) -> Result<Vec<Stored>, ChuteError> {
        let mut cursor = self
            .db
            .collection::<Document>(&schema.collection)
            .find(filter)
            .with_options(
                mongodb::options::FindOptions::builder()
                    .projection(projection)
                    .batch_size(self.batch_size as u32)
                    .build(),
            )
            .await
            .map_err(classify)?;
        let mut stored = Vec::new();
        while cursor.advance().await.map_err(classify)? {
            let d: Document = cursor.deserialize_current().map_err(classify)?;
            let key = key_text(&d, key_fields);
            stored.push(Stored::new(d, key));
        }
        Ok(stored)
    }
}

/// Rounds of read, decide and write a batch may take before its contention is reported as
/// transient (each round settles at least the rows nobody else wrote in between).
const MAX_ROUNDS: usize = 16;

/// The stored products a batch's rows may go to.
#[derive(Default)]
struct Found {
    by_key: HashMap<String, Stored>,
    /// Found by a `match_also` field or an alias, for rows whose key is not stored.
    matched: Vec<Stored>,
}

impl Found {
    fn target<'s>(&'s self, doc: &StagedDoc, match_fields: &[&str]) -> Target<'s> {
        if let Some(stored) = self.by_key.get(&doc.key_text) {
            return Target::Existing {
                stored,
                merged: false,
            };
        }
        let hits: Vec<&Stored> = self
            .matched
            .iter()
            .filter(|s| {
                s.has_alias(&doc.key_text)
                    || match_fields
                        .iter()
                        .any(|f| doc.field(f).is_some_and(|v| lookup(&s.doc, f) == Some(v)))
            })
            .collect();
        match hits.as_slice() {
            [] => Target::New,
            [stored] => Target::Existing {
                stored,
                merged: true,
            },
            several => {
                let by: Vec<String> = match_fields
                    .iter()
                    .filter_map(|f| doc.field(f).map(|v| format!("{f} `{}`", bson_text(v))))
                    .collect();
                let keys: Vec<String> = several
                    .iter()
                    .map(|s| format!("`{}`", s.key_text.replace(KEY_SEPARATOR, "/")))
                    .collect();
                Target::Conflict(format!(
                    "{} matches {} different products ({}); a row may merge into one only, so \
                     the row with key `{}` is not written",
                    by.join(", "),
                    several.len(),
                    keys.join(" and "),
                    doc.key_text.replace(KEY_SEPARATOR, "/")
                ))
            }
        }
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

fn number(reply: &Document, field: &str) -> u64 {
    match reply.get(field) {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}
