//! Stale products after a full refresh: what a source supplied before but not in this run.
//!
//! Every document a source supplies carries `_sources.<source>.run_id`, the run that last did. After
//! every chunk of a `full` run was written, the claims of that source whose run id is not this run
//! are stale. The database finds them through a per-source index on that field (created here on
//! first use), with two range scans (`< run` and `> run`): the catalogue never passes through
//! memory, only one batch of keys at a time.
//!
//! Every change increments the product's `_rev`, as every writer does, so a concurrent write of
//! another source computed from the product as it was re-reads it instead of undoing the marking.
//!
//! A claim found stale is tagged (`_sources.<source>.stale_run` = this run, `stale_since`) and loses
//! its `run_id`, so it leaves the index range the next refresh scans: re-running a refresh marks
//! nothing new, and a redrive of this run counts the same set again by its tag. Under `delete` the
//! tagged claims are dropped ([`Store::drop_stale_claims`]) only after the outcome is recorded, so
//! that count survives a retry too.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use bson::{doc, Bson, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use tokio::sync::mpsc::Sender;

use super::classify::classify;
use super::filters::keys_filter;
use super::paths::{bson_text, key_text, lookup};
use super::staged::split_staged;
use super::Store;
use crate::error::ChuteError;
use crate::feed::{check_source_name, Stale};
use crate::rules::ColumnType;
use crate::schema::{join_key, Schema};

/// Keys quoted in the report; the CSV artifact has them all.
pub const STALE_SAMPLE: usize = 20;

/// One full refresh's stale marking.
#[derive(Debug, Clone)]
pub struct StaleRun<'a> {
    pub schema: &'a Schema,
    /// The feed source whose full refresh this is.
    pub feed_source: &'a str,
    pub run_id: &'a str,
    pub policy: Stale,
    /// Refuse to mark anything when more than this share of the source's products would go stale.
    pub max_stale_percent: f64,
    /// `chute-force-stale: true`: mark whatever the share.
    pub force: bool,
}

/// What the marking did (or, refused, would have done).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StaleMarked {
    /// The source's products before this run (its current claims plus those this run found stale).
    pub supplied: u64,
    /// Claims found stale (for `keep`, counted only).
    pub marked: u64,
    /// Claims found stale but left as they were: the marking was refused (`refused_reason`).
    pub candidates: u64,
    /// Documents deleted (`delete`, when no other source supplies them).
    pub deleted: u64,
    /// Why nothing was marked although claims were stale.
    pub refused_reason: Option<String>,
    /// The first [`STALE_SAMPLE`] stale keys.
    pub sample: Vec<String>,
}

impl Store {
    /// Marks the source's stale claims under `run.policy`, sending every stale key (in batches) to
    /// `keys` for the CSV artifact. Call it only once every chunk of the run was written.
    pub async fn mark_stale(
        &self,
        run: &StaleRun<'_>,
        keys: Sender<Vec<String>>,
    ) -> Result<StaleMarked, ChuteError> {
        check_source_name(run.feed_source).map_err(ChuteError::Config)?;
        let source = run.feed_source;
        let claim = format!("_sources.{source}");
        let run_field = format!("{claim}.run_id");
        let tag_field = format!("{claim}.stale_run");
        let products = self.db.collection::<Document>(&run.schema.collection);
        self.ensure_stale_indexes(run.schema, source).await?;

        let count = |filter: Document| {
            let products = products.clone();
            async move { products.count_documents(filter).await.map_err(classify) }
        };
        // Three index counts, each over its own range: this run's claims (the file's rows), the
        // candidates either side of it, and those this run tagged already (a redrive).
        let this_run = count(doc! {&run_field: run.run_id}).await?;
        let already = count(doc! {&tag_field: run.run_id}).await?;
        let below = doc! {&run_field: {"$lt": run.run_id}};
        let above = doc! {&run_field: {"$gt": run.run_id}};
        let candidates = count(below.clone()).await? + count(above.clone()).await?;
        let supplied = this_run + candidates + already;
        let stale = candidates + already;
        let mut marked = StaleMarked {
            supplied,
            ..StaleMarked::default()
        };
        if stale == 0 {
            return Ok(marked);
        }
        marked.refused_reason = refusal(run, stale, supplied, candidates);
        if marked.refused_reason.is_some() {
            marked.candidates = stale;
            return Ok(marked);
        }
        if run.policy == Stale::Keep {
            // Nothing changes, so the candidates are listed as they stand.
            for range in [below, above] {
                self.list_keys(run.schema, &[], range, |_, _| true, &keys, &mut marked)
                    .await?;
            }
            return Ok(marked);
        }
        for range in [below, above] {
            self.tag_stale(run, &claim, range).await?;
        }
        self.list_tagged(run, &keys, &mut marked).await?;
        Ok(marked)
    }

    /// Lists the claims this run tagged stale into `keys`, counting them in `marked` and, under
    /// `delete`, the documents that will go. Those are dropped by [`Store::drop_stale_claims`]
    /// once the outcome is recorded: a retry before that finds the same tagged claims and counts
    /// the same (dropping first left a retry nothing to count).
    pub(super) async fn list_tagged(
        &self,
        run: &StaleRun<'_>,
        keys: &Sender<Vec<String>>,
        marked: &mut StaleMarked,
    ) -> Result<(), ChuteError> {
        let tag_field = format!("_sources.{}.stale_run", run.feed_source);
        let deleting = run.policy == Stale::Delete;
        let only_here = AtomicU64::new(0);
        let also: &[&str] = if deleting { &["_sources"] } else { &[] };
        self.list_keys(
            run.schema,
            also,
            doc! {&tag_field: run.run_id},
            |doc, _| {
                if deleting && only_source(doc, run.feed_source) {
                    only_here.fetch_add(1, Ordering::Relaxed);
                }
                true
            },
            keys,
            marked,
        )
        .await?;
        marked.deleted = only_here.into_inner();
        Ok(())
    }

    /// Counts the claims of `keys` (the key cells of rows the file has but the transform
    /// rejected) as supplied by this run, so [`Store::mark_stale`] leaves them: a product whose
    /// row had a bad price is still in the catalogue. Integer key cells are matched as numbers,
    /// the rest as written. Returns the claims kept.
    pub async fn keep_rejected_claims(
        &self,
        run: &StaleRun<'_>,
        keys: &[Vec<String>],
    ) -> Result<u64, ChuteError> {
        let run_field = format!("_sources.{}.run_id", run.feed_source);
        let fields = run.schema.key_fields();
        let collection = self.db.collection::<Document>(&run.schema.collection);
        let mut kept = 0;
        for batch in keys.chunks(500) {
            let values: Vec<Vec<Bson>> = batch
                .iter()
                .map(|cells| key_values(run.schema, cells))
                .collect();
            let wanted: HashSet<String> = batch
                .iter()
                .map(|cells| join_key(cells.iter().map(String::as_str)))
                .collect();
            // Read the claims, then move each by `_id` on the claim read: an `$or` of the keys, or
            // the keys beside the claim in one filter, would be a collection scan on SecantusDB.
            let mut projection = doc! {"_id": 1, &run_field: 1};
            for field in &fields {
                projection.insert(*field, 1);
            }
            let mut cursor = collection
                .find(keys_filter(&fields, &values))
                .projection(projection)
                .await
                .map_err(classify)?;
            let mut updates = Vec::new();
            while cursor.advance().await.map_err(classify)? {
                let stored = cursor.deserialize_current().map_err(classify)?;
                let claim = lookup(&stored, &run_field).cloned();
                let ours = claim.as_ref().and_then(Bson::as_str) == Some(run.run_id);
                if claim.is_none() || ours || !wanted.contains(&key_text(&stored, &fields)) {
                    continue;
                }
                updates.push(doc! {
                    "q": {"_id": stored.get("_id").cloned().unwrap_or(Bson::Null), &run_field: claim},
                    "u": {"$set": {&run_field: run.run_id}, "$inc": {"_rev": 1_i64}},
                });
            }
            if updates.is_empty() {
                continue;
            }
            let reply = self
                .run_write(
                    doc! {"update": &run.schema.collection, "updates": updates, "ordered": false},
                )
                .await?;
            kept += count_of(&reply, "nModified");
        }
        Ok(kept)
    }

    /// A dry run of a full refresh: which of the source's products a real run would find stale,
    /// given what the file supplies ([`Supplied`], from its staged documents: the file's keys are
    /// in memory, the catalogue is not). Writes nothing (beyond creating the per-source indexes);
    /// every would-be stale key goes to `keys`, and `refused_reason` says when a real run would
    /// refuse to mark them.
    pub async fn predict_stale(
        &self,
        run: &StaleRun<'_>,
        supplied: &Supplied,
        keys: Sender<Vec<String>>,
    ) -> Result<StaleMarked, ChuteError> {
        check_source_name(run.feed_source).map_err(ChuteError::Config)?;
        self.ensure_stale_indexes(run.schema, run.feed_source)
            .await?;
        let current = doc! {format!("_sources.{}.run_id", run.feed_source): {"$gte": ""}};
        let total = self
            .db
            .collection::<Document>(&run.schema.collection)
            .count_documents(current.clone())
            .await
            .map_err(classify)?;
        let mut marked = StaleMarked {
            supplied: total,
            ..StaleMarked::default()
        };
        let match_fields = run.schema.match_fields();
        let mut projected = match_fields.clone();
        projected.push("_aliases");
        self.list_keys(
            run.schema,
            &projected,
            current,
            |doc, key| !supplied.supplies(doc, key, &match_fields),
            &keys,
            &mut marked,
        )
        .await?;
        marked.refused_reason = refusal(run, marked.marked, total, marked.marked);
        if marked.refused_reason.is_some() {
            marked.candidates = std::mem::take(&mut marked.marked);
        }
        Ok(marked)
    }

    /// The per-source indexes the stale scan and its tag count use; safe to repeat.
    pub(super) async fn ensure_stale_indexes(
        &self,
        schema: &Schema,
        source: &str,
    ) -> Result<(), ChuteError> {
        let indexes = ["run_id", "stale_run"].map(|field| {
            IndexModel::builder()
                .keys(doc! {format!("_sources.{source}.{field}"): 1})
                .options(
                    IndexOptions::builder()
                        .name(format!("_sources_{source}_{field}"))
                        .sparse(true)
                        .build(),
                )
                .build()
        });
        self.db
            .collection::<Document>(&schema.collection)
            .create_indexes(indexes)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Tags the claims in `range` (one index range) as stale, batch by batch; each batch leaves the
    /// range, so the loop ends. A claim re-supplied in between no longer matches its statement.
    async fn tag_stale(
        &self,
        run: &StaleRun<'_>,
        claim: &str,
        range: Document,
    ) -> Result<(), ChuteError> {
        let products = self.db.collection::<Document>(&run.schema.collection);
        let now = DateTime::now();
        loop {
            let batch = self
                .first_batch(&products, range.clone(), doc! {"_id": 1, "_sources": 1})
                .await?;
            if batch.is_empty() {
                return Ok(());
            }
            let statements: Vec<Document> = batch
                .iter()
                .map(|d| tag_statement(run, claim, d, now))
                .collect();
            self.run_write(
                doc! {"update": &run.schema.collection, "updates": statements, "ordered": false},
            )
            .await?;
        }
    }

    /// Sends the keys of the documents matching `filter` that are `wanted` (given the document's
    /// key and `also` fields, and its key text) to `keys`, batch by batch, counting them.
    pub(super) async fn list_keys(
        &self,
        schema: &Schema,
        also: &[&str],
        filter: Document,
        wanted: impl Fn(&Document, &str) -> bool,
        keys: &Sender<Vec<String>>,
        marked: &mut StaleMarked,
    ) -> Result<(), ChuteError> {
        let key_fields = schema.key_fields();
        let mut projection = doc! {"_id": 0};
        for f in key_fields.iter().chain(also) {
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
        let mut batch = Vec::with_capacity(self.batch_size);
        while cursor.advance().await.map_err(classify)? {
            let d: Document = cursor.deserialize_current().map_err(classify)?;
            let key = key_text(&d, &key_fields);
            if !wanted(&d, &key) {
                continue;
            }
            if marked.sample.len() < STALE_SAMPLE {
                marked.sample.push(key.clone());
            }
            marked.marked += 1;
            batch.push(key);
            if batch.len() == self.batch_size {
                send(keys, std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            send(keys, batch).await?;
        }
        Ok(())
    }

    /// `delete`: drops the claims [`Store::mark_stale`] tagged for this run; a document no other
    /// source supplies goes. Call it once the marking's outcome is recorded; calling it again (a
    /// retried report) drops whatever an interrupted call left. Returns the documents deleted.
    pub async fn drop_stale_claims(&self, run: &StaleRun<'_>) -> Result<u64, ChuteError> {
        check_source_name(run.feed_source).map_err(ChuteError::Config)?;
        let claim = format!("_sources.{}", run.feed_source);
        let tag_field = format!("{claim}.stale_run");
        let tagged = doc! {&tag_field: run.run_id};
        let products = self.db.collection::<Document>(&run.schema.collection);
        let mut deleted = 0;
        loop {
            let batch = self
                .first_batch(&products, tagged.clone(), doc! {"_id": 1, "_sources": 1})
                .await?;
            if batch.is_empty() {
                return Ok(deleted);
            }
            let (only, shared): (Vec<&Document>, Vec<&Document>) =
                batch.iter().partition(|d| only_source(d, run.feed_source));
            let id = |d: &Document| d.get("_id").cloned().unwrap_or(Bson::Null);
            if !only.is_empty() {
                let deletes: Vec<Document> = only
                    .iter()
                    .map(|d| doc! {"q": {"_id": id(d), &tag_field: run.run_id}, "limit": 1})
                    .collect();
                let reply = self
                    .run_write(doc! {"delete": &run.schema.collection, "deletes": deletes, "ordered": false})
                    .await?;
                deleted += count_of(&reply, "n");
            }
            if !shared.is_empty() {
                let updates: Vec<Document> = shared
                    .iter()
                    .map(|d| doc! {"q": {"_id": id(d), &tag_field: run.run_id}, "u": {"$unset": {&claim: ""}, "$inc": {"_rev": 1_i64}}})
                    .collect();
                self.run_write(
                    doc! {"update": &run.schema.collection, "updates": updates, "ordered": false},
                )
                .await?;
            }
        }
    }

    /// Up to one batch of the documents matching `filter`.
    async fn first_batch(
        &self,
        products: &mongodb::Collection<Document>,
        filter: Document,
        projection: Document,
    ) -> Result<Vec<Document>, ChuteError> {
        let mut cursor = products
            .find(filter)
            .projection(projection)
            .limit(self.batch_size as i64)
            .await
            .map_err(classify)?;
        let mut batch = Vec::with_capacity(self.batch_size);
        while cursor.advance().await.map_err(classify)? {
            batch.push(cursor.deserialize_current().map_err(classify)?);
        }
        Ok(batch)
    }

    /// An unordered write command whose every statement must succeed.
    pub(super) async fn run_write(&self, command: Document) -> Result<Document, ChuteError> {
        let reply = self.db.run_command(command).await.map_err(classify)?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            return Err(ChuteError::Transient(format!(
                "marking stale products failed: {}",
                errors
                    .first()
                    .and_then(Bson::as_document)
                    .and_then(|e| e.get_str("errmsg").ok())
                    .unwrap_or("write error")
            )));
        }
        if let Ok(wce) = reply.get_document("writeConcernError") {
            return Err(ChuteError::Transient(format!(
                "write concern not satisfied: {wce}"
            )));
        }
        Ok(reply)
    }
}

/// A key's cells as the documents store them: integer key columns as numbers, the rest as
/// written.
pub(super) fn key_values(schema: &Schema, cells: &[String]) -> Vec<Bson> {
    schema
        .key
        .iter()
        .zip(cells)
        .map(
            |(column, cell)| match (schema.column(column).map(|c| c.kind), cell.parse::<i64>()) {
                (Some(ColumnType::Integer), Ok(n)) => Bson::Int64(n),
                _ => Bson::String(cell.clone()),
            },
        )
        .collect()
}

/// The statement tagging `product`'s claim (`claim` = `_sources.<source>`) as stale for `run`:
/// conditional on the claim's run id as read, so a claim re-supplied in between is left alone;
/// under `deactivate` the product goes inactive unless another source still supplies it.
pub(super) fn tag_statement(
    run: &StaleRun<'_>,
    claim: &str,
    product: &Document,
    now: DateTime,
) -> Document {
    let run_field = format!("{claim}.run_id");
    let previous = lookup(product, &run_field).cloned().unwrap_or(Bson::Null);
    let mut set = doc! {
        format!("{claim}.stale_run"): run.run_id,
        format!("{claim}.stale_since"): now,
        format!("{claim}.last_run_id"): previous.clone(),
    };
    if run.policy == Stale::Deactivate && !supplied_elsewhere(product, run.feed_source) {
        set.insert("active", false);
        set.insert("stale_since", now);
    }
    doc! {
        "q": {"_id": product.get("_id").cloned().unwrap_or(Bson::Null), &run_field: previous},
        "u": {"$set": set, "$unset": {&run_field: ""}, "$inc": {"_rev": 1_i64}},
    }
}

/// Whether another source still supplies the product (its claim is not stale): then a refresh
/// of `source` that no longer lists it tags only its own claim, and the product stays active.
fn supplied_elsewhere(product: &Document, source: &str) -> bool {
    product.get_document("_sources").is_ok_and(|sources| {
        sources.iter().any(|(name, claim)| {
            name != source
                && claim
                    .as_document()
                    .is_some_and(|c| c.contains_key("run_id"))
        })
    })
}

/// Whether `source` is the only source of the product `doc` (with `_sources` projected).
fn only_source(doc: &Document, source: &str) -> bool {
    doc.get_document("_sources")
        .map(|s| s.keys().all(|k| k == source))
        .unwrap_or(true)
}

/// Why a refresh marks nothing: `stale` of the source's `supplied` products would go, more than
/// its `max_stale_percent` allows, `fresh` of them newly, and no `chute-force-stale`.
pub(super) fn refusal(run: &StaleRun<'_>, stale: u64, supplied: u64, fresh: u64) -> Option<String> {
    if supplied == 0 || fresh == 0 || run.force {
        return None;
    }
    let percent = stale as f64 * 100.0 / supplied as f64;
    (percent > run.max_stale_percent).then(|| {
        format!(
            "nothing marked stale: {stale} of the {supplied} products source '{}' supplied \
             before are missing from this full refresh ({percent:.1}%, more than \
             max_stale_percent = {}); a truncated or wrong file must not empty the catalogue. \
             Set object metadata chute-force-stale: true to mark them anyway",
            run.feed_source, run.max_stale_percent
        )
    })
}

/// What a dry run's file supplies, from its staged documents: its keys, and its rows' values of the
/// `match_also` fields, through which a row whose key is not stored merges into (and so supplies)
/// a product stored under another key.
#[derive(Debug, Default)]
pub struct Supplied {
    pub keys: HashSet<String>,
    /// `(field, value as text)` of every row's `match_also` fields.
    matches: HashSet<(String, String)>,
}

impl Supplied {
    /// Adds the rows of one chunk's staged file.
    pub fn add_staged(&mut self, schema: &Schema, staged: &[u8]) -> Result<(), ChuteError> {
        let key_fields = schema.key_fields();
        let match_fields = schema.match_fields();
        for raw in split_staged(staged)? {
            let d = Document::try_from(raw).map_err(|e| ChuteError::Unreadable {
                what: "a staged document".into(),
                source: e.into(),
            })?;
            self.keys.insert(key_text(&d, &key_fields));
            for field in &match_fields {
                if let Some(value) = lookup(&d, field) {
                    self.matches.insert((field.to_string(), bson_text(value)));
                }
            }
        }
        Ok(())
    }

    /// Whether the file supplies the stored product `doc` (key text `key`): by its key, or, as
    /// the writer merges a row (`match_also`), by a row whose key is one of the product's
    /// `_aliases` or whose match field has the product's value. The writer merges only a row whose
    /// own key is not stored and that finds one product alone; a row that fails either is still
    /// counted as supplying here, so a prediction can miss a product the run would mark, never
    /// list one the run keeps.
    pub fn supplies(&self, doc: &Document, key: &str, match_fields: &[&str]) -> bool {
        if self.keys.contains(key) {
            return true;
        }
        let aliased = doc.get_array("_aliases").is_ok_and(|aliases| {
            aliases
                .iter()
                .filter_map(Bson::as_str)
                .any(|alias| self.keys.contains(alias))
        });
        aliased
            || match_fields.iter().any(|field| {
                lookup(doc, field).is_some_and(|value| {
                    self.matches
                        .contains(&(field.to_string(), bson_text(value)))
                })
            })
    }
}

pub(super) async fn send(keys: &Sender<Vec<String>>, batch: Vec<String>) -> Result<(), ChuteError> {
    keys.send(batch)
        .await
        .map_err(|_| ChuteError::Fatal("the stale key list stopped reading".into()))
}

fn count_of(reply: &Document, field: &str) -> u64 {
    match reply.get(field) {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}
