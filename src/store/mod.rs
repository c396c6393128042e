//! The MongoDB writer: collection setup, idempotent batched upserts and the run ledger.
//!
//! Writes use the `update` command through `run_command`, many `{q, u, upsert}` statements per
//! command, unordered. Chosen over `Client::bulk_write` because that needs MongoDB 8.0+ (DocumentDB
//! and older Atlas tiers lack it) and over concurrent `update_one` because one command per batch was
//! 2–10× faster here. The driver does not retry `run_command`; the state machine does, and every
//! statement is idempotent, so a retried batch cannot double-count or duplicate (see
//! [`Store::upsert_staged`]).

mod setup;

use std::collections::HashMap;
use std::time::Duration;

use bson::{doc, Bson, DateTime, Document, RawDocument};
use mongodb::event::{command::CommandEvent, EventHandler};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{redact, ChuteError, Refusal};
use crate::schema::{join_key, Schema};

pub use setup::json_schema;

/// Statements per `update` command: large enough to amortise round trips, small enough that one
/// command stays far below the 48 MB message limit with 1 MiB records.
pub const DEFAULT_BATCH: usize = 1000;

/// Where the documents go and how the client behaves.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub uri: String,
    pub database: String,
    /// How long an operation waits for a usable server before failing as transient.
    pub server_selection_timeout: Duration,
    pub batch_size: usize,
    /// Sees every command the driver sends and its reply (tests observe writes with it).
    pub command_events: Option<EventHandler<CommandEvent>>,
}

impl StoreConfig {
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        StoreConfig {
            uri: uri.into(),
            database: database.into(),
            server_selection_timeout: Duration::from_secs(20),
            batch_size: DEFAULT_BATCH,
            command_events: None,
        }
    }
}

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

/// A MongoDB connection for one container: build it once and share it.
#[derive(Clone)]
pub struct Store {
    client: Client,
    db: Database,
    batch_size: usize,
}

/// The ledger collection: one document per run.
pub const RUNS: &str = "import_runs";

impl Store {
    /// Connects lazily (the first operation dials); fails only on a malformed URI.
    pub async fn connect(config: &StoreConfig) -> Result<Store, ChuteError> {
        let mut options = ClientOptions::parse(&config.uri).await.map_err(|e| {
            ChuteError::Fatal(format!(
                "MongoDB URI is not usable: {}",
                redact(&e.to_string())
            ))
        })?;
        options.app_name = Some("chute".into());
        options.connect_timeout = Some(Duration::from_secs(5));
        options.server_selection_timeout = Some(config.server_selection_timeout);
        // A Lambda container runs one invocation at a time; a few sockets are plenty.
        options.max_pool_size = Some(4);
        options.min_pool_size = Some(0);
        options.command_event_handler = config.command_events.clone();
        let client = Client::with_options(options).map_err(classify)?;
        let db = client.database(&config.database);
        Ok(Store {
            client,
            db,
            batch_size: config.batch_size.max(1),
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn ping(&self) -> Result<(), ChuteError> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Creates or updates the collection, its `$jsonSchema` validator and indexes; safe to repeat.
    pub async fn ensure_collection(&self, schema: &Schema) -> Result<(), ChuteError> {
        setup::ensure_collection(&self.db, schema).await
    }

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
        mut staged: impl AsyncRead + Unpin,
        ctx: &WriteContext,
    ) -> Result<WriteOutcome, ChuteError> {
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
        let mut outcome = WriteOutcome::default();
        let mut batch = Vec::new();
        let mut read = 0;
        loop {
            batch.clear();
            let mut in_batch = 0;
            while in_batch < self.batch_size && read_staged(&mut staged, &mut batch, read).await? {
                in_batch += 1;
                read += 1;
            }
            if in_batch == 0 {
                return Ok(outcome);
            }
            let docs = split_staged(&batch)?;
            outcome.add(self.upsert_batch(schema, &key_fields, &docs, ctx).await?);
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
        outcome.refused.sort_by_key(|r| r.row);
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
        const DUPLICATE_KEY: i32 = 11000;
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
        let entry = run
            .get_document("chunks")
            .and_then(|c| c.get_document(chunk.to_string()))
            .map_err(|e| {
                ChuteError::Fatal(format!(
                    "ledger entry for chunk {chunk} of run {run_id} is malformed: {e}"
                ))
            })?;
        bson::from_document(entry.clone()).map(Some).map_err(|e| {
            ChuteError::Fatal(format!(
                "ledger entry for chunk {chunk} of run {run_id} is malformed: {e}"
            ))
        })
    }

    /// Records a written chunk in the run's ledger document.
    pub async fn record_chunk(
        &self,
        run_id: &str,
        chunk: u32,
        outcome: &WriteOutcome,
    ) -> Result<(), ChuteError> {
        let entry = bson::to_document(outcome).map_err(|e| ChuteError::Fatal(e.to_string()))?;
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

    /// Sets run-level fields (source, status, counts…) on the run's ledger document.
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

    pub fn client(&self) -> &Client {
        &self.client
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
            row: doc.row,
            line: doc.line,
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

/// One staged document, split into what the update statement needs.
struct StagedDoc {
    key: Vec<(String, Bson)>,
    key_text: String,
    row: u64,
    line: u64,
    hash: String,
    set: Document,
    defaults: Document,
}

impl StagedDoc {
    fn parse(raw: &RawDocument, key_fields: &[&str]) -> Result<StagedDoc, ChuteError> {
        let bad = |what: &str| ChuteError::Fatal(format!("staged document is malformed: {what}"));
        let doc = Document::try_from(raw).map_err(|e| bad(&e.to_string()))?;
        let meta = doc.get_document("_import").map_err(|_| bad("no _import"))?;
        let row = meta.get_i64("row").map_err(|_| bad("no _import.row"))? as u64;
        let line = meta.get_i64("line").map_err(|_| bad("no _import.line"))? as u64;
        let hash = meta
            .get_str("hash")
            .map_err(|_| bad("no _import.hash"))?
            .to_string();
        let mut defaults = Document::new();
        if let Ok(d) = meta.get_document("defaults") {
            flatten("", d, &mut defaults);
        }
        let mut set = Document::new();
        for (k, v) in &doc {
            if k == "_import" {
                continue;
            }
            match v {
                Bson::Document(sub) => flatten(k, sub, &mut set),
                other => {
                    set.insert(k.clone(), other.clone());
                }
            }
        }
        let key: Vec<(String, Bson)> = key_fields
            .iter()
            .map(|f| {
                lookup(&doc, f)
                    .cloned()
                    .map(|v| (f.to_string(), v))
                    .ok_or_else(|| bad(&format!("row {row} has no key field {f}")))
            })
            .collect::<Result<_, _>>()?;
        let parts: Vec<String> = key.iter().map(|(_, v)| bson_text(v)).collect();
        let key_text = join_key(parts.iter().map(String::as_str));
        Ok(StagedDoc {
            key,
            key_text,
            row,
            line,
            hash,
            set,
            defaults,
        })
    }

    fn statement(&self, ctx: &WriteContext) -> Document {
        let filter: Document = self.key.iter().cloned().collect();
        let mut set = self.set.clone();
        set.insert("_import", self.import_meta(ctx));
        let mut on_insert = self.defaults.clone();
        on_insert.insert("first_imported_at", ctx.at);
        on_insert.insert("first_run_id", &ctx.run_id);
        doc! {"q": filter, "u": {"$set": set, "$setOnInsert": on_insert}, "upsert": true, "multi": false}
    }

    /// The whole document [`StagedDoc::statement`] would create when its key is not stored.
    fn new_document(&self, ctx: &WriteContext) -> Document {
        let mut doc = doc! {"_id": bson::oid::ObjectId::new()};
        for (path, value) in self.set.iter().chain(&self.defaults) {
            insert_path(&mut doc, path, value.clone());
        }
        doc.insert("_import", self.import_meta(ctx));
        doc.insert("first_imported_at", ctx.at);
        doc.insert("first_run_id", &ctx.run_id);
        doc
    }

    fn import_meta(&self, ctx: &WriteContext) -> Document {
        doc! {"run_id": &ctx.run_id, "source": &ctx.source, "row": self.row as i64, "line": self.line as i64, "hash": &self.hash, "at": ctx.at}
    }
}

/// Sub-documents become dotted paths so `$set` merges them field by field.
fn flatten(prefix: &str, doc: &Document, out: &mut Document) {
    for (k, v) in doc {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Bson::Document(sub) if !sub.is_empty() => flatten(&path, sub, out),
            other => {
                out.insert(path, other.clone());
            }
        }
    }
}

/// Sets a dotted path, creating sub-documents on the way (the inverse of [`flatten`]).
fn insert_path(doc: &mut Document, path: &str, value: Bson) {
    match path.split_once('.') {
        None => {
            doc.insert(path, value);
        }
        Some((head, rest)) => {
            if !matches!(doc.get(head), Some(Bson::Document(_))) {
                doc.insert(head, Document::new());
            }
            if let Some(Bson::Document(sub)) = doc.get_mut(head) {
                insert_path(sub, rest, value);
            }
        }
    }
}

fn lookup<'d>(doc: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next()?)?;
    for part in parts {
        value = value.as_document()?.get(part)?;
    }
    Some(value)
}

fn bson_text(v: &Bson) -> String {
    match v {
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(reply: &Document, field: &str) -> u64 {
    match reply.get(field) {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}

/// Adds the validator's reasons to its terse "Document failed validation".
fn refusal_message(code: i32, message: &str, error: &Document) -> String {
    const DOCUMENT_VALIDATION_FAILURE: i32 = 121;
    const DUPLICATE_KEY: i32 = 11000;
    match code {
        DOCUMENT_VALIDATION_FAILURE => match error
            .get_document("errInfo")
            .and_then(|i| i.get_document("details"))
        {
            Ok(details) => format!(
                "{message}: {}",
                bson::Bson::Document(details.clone()).into_relaxed_extjson()
            ),
            Err(_) => message.to_string(),
        },
        DUPLICATE_KEY => format!("{message} (another document already has this key)"),
        _ => message.to_string(),
    }
}

/// Appends the next staged document of `staged` to `batch`; `false` at a clean end of the stream.
/// `read` (documents read before) only names the place of a problem.
async fn read_staged(
    staged: &mut (impl AsyncRead + Unpin),
    batch: &mut Vec<u8>,
    read: u64,
) -> Result<bool, ChuteError> {
    let truncated =
        || ChuteError::Fatal(format!("staged file is truncated after {read} documents"));
    let cut_off = |e: std::io::Error| {
        ChuteError::Transient(format!(
            "reading the staged file was cut off after {read} documents: {e}"
        ))
    };
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match staged.read(&mut prefix[filled..]).await.map_err(cut_off)? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(truncated()),
            n => filled += n,
        }
    }
    let len = i32::from_le_bytes(prefix);
    if !(5..=MAX_STAGED_DOCUMENT).contains(&len) {
        return Err(ChuteError::Fatal(format!(
            "staged document {} has an impossible length {len}",
            read + 1
        )));
    }
    let start = batch.len();
    batch.extend_from_slice(&prefix);
    batch.resize(start + len as usize, 0);
    match staged.read_exact(&mut batch[start + 4..]).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(truncated()),
        Err(e) => Err(cut_off(e)),
    }
}

/// MongoDB's document size limit, which no staged document can exceed.
const MAX_STAGED_DOCUMENT: i32 = 16 * 1024 * 1024;

/// Splits concatenated BSON documents without copying.
pub fn split_staged(mut bytes: &[u8]) -> Result<Vec<&RawDocument>, ChuteError> {
    let mut docs = Vec::new();
    while !bytes.is_empty() {
        let len = bytes
            .get(..4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or(0);
        if len < 5 || len > bytes.len() {
            return Err(ChuteError::Fatal(format!(
                "staged file is truncated after {} documents",
                docs.len()
            )));
        }
        let doc = RawDocument::from_bytes(&bytes[..len]).map_err(|e| {
            ChuteError::Fatal(format!(
                "staged document {} is not BSON: {e}",
                docs.len() + 1
            ))
        })?;
        docs.push(doc);
        bytes = &bytes[len..];
    }
    Ok(docs)
}

/// Sorts driver errors into what a retry can fix and what it cannot. The text is scrubbed of
/// connection strings.
pub fn classify(e: mongodb::error::Error) -> ChuteError {
    use mongodb::error::ErrorKind;
    // Network, fail-over and shutdown codes of the server (HostUnreachable, HostNotFound,
    // NetworkTimeout, ShutdownInProgress, PrimarySteppedDown, ExceededTimeLimit, SocketException,
    // NotWritablePrimary, InterruptedAtShutdown, InterruptedDueToReplStateChange,
    // NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary, StaleConfig, WriteConflict).
    const TRANSIENT_CODES: &[i32] = &[
        6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 13388, 112,
    ];
    let text = redact(&e.to_string());
    let transient = e.contains_label("RetryableWriteError")
        || e.contains_label("TransientTransactionError")
        || e.contains_label("RetryableError")
        || match e.kind.as_ref() {
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. } => true,
            ErrorKind::Command(c) => TRANSIENT_CODES.contains(&c.code),
            _ => false,
        };
    if transient {
        ChuteError::Transient(format!("MongoDB unavailable: {text}"))
    } else {
        ChuteError::Fatal(format!("MongoDB error: {text}"))
    }
}
