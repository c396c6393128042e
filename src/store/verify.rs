//! `chute verify`: a source's committed snapshot against the database, and `--repair`.
//!
//! Piece by piece (one piece's entries in memory at a time), the entries are grouped by the run
//! whose staged documents hold their rows ([`crate::delta::SnapshotBase::runs`]); each of those
//! runs' staged chunks that holds a wanted row is streamed (and left as soon as it gave every
//! wanted row), the rows are collected into batches of the store's batch size, and each batch's
//! products are read by key with one index-friendly `find` ([`super::filters::keys_filter`]) and
//! compared ([`super::drift`]). With `repair`, a batch's drifted products are written again right
//! away from their staged rows ([`WriteContext::reapply`]), so memory holds one piece and one
//! batch whatever the drift. A run whose staged documents are gone (staging expires after
//! StagingRetentionDays) has its products' claims checked only, and the result says so.
//!
//! Cost: every product of the snapshot is read once; each run's staged chunks are read once per
//! piece that has rows in them (a snapshot of one piece reads them once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use bson::{Bson, DateTime, Document, RawDocument};

use super::document::WriteContext;
use super::drift::{
    claim_hash, classify, database_term, snapshot_term, Expected, PieceCheck, Repaired, Verified,
};
use super::filters::keys_filter;
use super::snapshots::{snapshot_id, LEASES};
use super::staged::{read_staged, StagedDoc};
use super::Store;
use crate::blob::Blob;
use crate::delta::{decode, Entry, SnapshotBase};
use crate::error::ChuteError;
use crate::feed::Mode;
use crate::records::ChunkPlan;
use crate::run::{PlanRecord, RunKeys};
use crate::schema::{Schema, KEY_SEPARATOR};

/// What to verify.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    pub schema: &'a Schema,
    /// The feed source whose snapshot is compared.
    pub source: &'a str,
    /// Where runs stage their documents (`CHUTE_STAGING_PREFIX`), in the snapshot's bucket.
    pub staging_prefix: &'a str,
    /// Re-apply the drifted products' staged rows.
    pub repair: bool,
}

/// Where one run's staged rows are.
enum RunStaged {
    /// The run's chunks, each with its staged object's key and whether it is still there, and
    /// the run's file (`s3://bucket/key`, stamped on re-applied products as `_import.source`).
    Chunks {
        chunks: Vec<(ChunkPlan, String, bool)>,
        object: String,
    },
    /// Why none of them can be read.
    Gone(String),
}

/// A product to compare: its snapshot entry and, when found, its staged row (parsed, and as the
/// bytes a repair writes again).
struct Item {
    index: usize,
    staged: Option<(StagedDoc, Vec<u8>)>,
}

/// One piece's checksums so far.
#[derive(Default)]
struct Sums {
    snapshot: u64,
    database: u64,
}

/// What a batch is compared against: the request, the run its rows came from and the piece's
/// entries.
struct RunScope<'a> {
    request: &'a VerifyRequest<'a>,
    run_id: &'a str,
    object: &'a str,
    entries: &'a [Entry],
}

/// How long a repair holds its source's lease at most (if `chute verify --repair` dies, the
/// source is free again then).
const REPAIR_LEASE_MS: i64 = 3600 * 1000;

const GONE: &str = "staging expires after StagingRetentionDays";

impl Store {
    /// Compares `request.source`'s current snapshot with the database; `None` when the source
    /// has no snapshot in the schema's collection.
    ///
    /// A repair holds the source's lease ([`Store::take_lease`]) while it writes, so no run of the
    /// source interleaves with it (a run under way: [`ChuteError::SourceBusy`], nothing written);
    /// a plain comparison notes a run under way instead ([`Verified::running`]), whose writes may
    /// show as drift until it commits its snapshot.
    pub async fn verify_source(
        &self,
        blob: &Blob,
        request: &VerifyRequest<'_>,
    ) -> Result<Option<Verified>, ChuteError> {
        let collection = &request.schema.collection;
        if !request.repair {
            let running = self.lease_holder(collection, request.source).await?;
            let mut verified = self.compare(blob, request).await?;
            if let Some(v) = verified.as_mut() {
                v.running = running;
            }
            return Ok(verified);
        }
        let holder = format!("chute-verify-repair-{}", DateTime::now().timestamp_millis());
        let expires = DateTime::from_millis(DateTime::now().timestamp_millis() + REPAIR_LEASE_MS);
        if let Err(lease) = self
            .take_lease(collection, request.source, &holder, expires)
            .await?
        {
            return Err(ChuteError::SourceBusy(format!(
                "source '{}' is being imported into {collection} by run {} (since {}): a repair \
                 would interleave with it; repair once that run reported",
                request.source,
                lease.run_id,
                lease.since.try_to_rfc3339_string().unwrap_or_default()
            )));
        }
        let compared = self.compare(blob, request).await;
        let released = self
            .release_lease(collection, request.source, &holder)
            .await;
        let compared = compared?;
        released?;
        Ok(compared)
    }

    /// The run holding `source`'s lease in `collection`, if one does and its lease is unexpired.
    async fn lease_holder(
        &self,
        collection: &str,
        source: &str,
    ) -> Result<Option<String>, ChuteError> {
        let lease = self
            .db
            .collection::<Document>(LEASES)
            .find_one(bson::doc! {"_id": snapshot_id(collection, source)})
            .await
            .map_err(super::classify)?;
        let Some(lease) = lease else {
            return Ok(None);
        };
        let unexpired = lease
            .get_datetime("expires")
            .is_ok_and(|expires| *expires > DateTime::now());
        Ok(lease
            .get_str("run_id")
            .ok()
            .filter(|_| unexpired)
            .map(str::to_string))
    }

    /// [`Store::verify_source`]'s comparison (and repair).
    async fn compare(
        &self,
        blob: &Blob,
        request: &VerifyRequest<'_>,
    ) -> Result<Option<Verified>, ChuteError> {
        let started = Instant::now();
        let schema = request.schema;
        let Some(manifest) = self.snapshot(&schema.collection, request.source).await? else {
            return Ok(None);
        };
        let base = manifest.current;
        let mut verified = Verified {
            collection: schema.collection.clone(),
            source: request.source.to_string(),
            snapshot_run: base.run_id.clone(),
            repaired: request.repair.then(Repaired::default),
            ..Verified::default()
        };
        let mut runs: HashMap<String, RunStaged> = HashMap::new();
        for piece in 0..base.pieces.max(1) {
            let key = base.piece_key(piece);
            let bytes = blob.get(&base.bucket, &key).await?;
            if let Some(&size) = base.piece_bytes.get(piece as usize) {
                if bytes.len() as u64 != size {
                    return Err(ChuteError::Fatal(format!(
                        "snapshot piece s3://{}/{key} is {} bytes; its run wrote {size}: the \
                         snapshot is damaged (the next run of the source takes the full path)",
                        base.bucket,
                        bytes.len()
                    )));
                }
            }
            let entries = decode(&bytes).map_err(|e| {
                ChuteError::Fatal(format!(
                    "snapshot piece s3://{}/{key} is unreadable: {e}",
                    base.bucket
                ))
            })?;
            drop(bytes);
            let mut sums = Sums::default();
            let mut by_run: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for (i, e) in entries.iter().enumerate() {
                by_run.entry(e.run).or_default().push(i);
            }
            for (run, indexes) in by_run {
                let run_id = run_of(&base, run);
                if !runs.contains_key(&run_id) {
                    let staged = self.run_staged(blob, request, &base, &run_id).await?;
                    runs.insert(run_id.clone(), staged);
                }
                let scope = RunScope {
                    request,
                    run_id: &run_id,
                    object: match &runs[&run_id] {
                        RunStaged::Chunks { object, .. } => object,
                        RunStaged::Gone(_) => "",
                    },
                    entries: &entries,
                };
                for &i in &indexes {
                    sums.snapshot = sums
                        .snapshot
                        .wrapping_add(snapshot_term(&expected(&scope, i)));
                }
                self.verify_run(
                    blob,
                    &base,
                    &runs[&run_id],
                    &scope,
                    &indexes,
                    &mut sums,
                    &mut verified,
                )
                .await?;
            }
            verified.pieces.push(PieceCheck::new(
                piece,
                entries.len() as u64,
                sums.snapshot,
                sums.database,
            ));
        }
        verified.duration_ms = started.elapsed().as_millis() as u64;
        Ok(Some(verified))
    }

    /// Reads the staged rows of `indexes` (entries of one run) and compares their products.
    #[allow(clippy::too_many_arguments)]
    async fn verify_run(
        &self,
        blob: &Blob,
        base: &SnapshotBase,
        staged: &RunStaged,
        scope: &RunScope<'_>,
        indexes: &[usize],
        sums: &mut Sums,
        verified: &mut Verified,
    ) -> Result<(), ChuteError> {
        // Entries checked by claim only, with why.
        let mut claims_only: Vec<(String, Vec<usize>)> = Vec::new();
        let (chunks, wanted) = match staged {
            RunStaged::Gone(reason) => {
                claims_only.push((reason.clone(), indexes.to_vec()));
                (&[][..], &[][..])
            }
            RunStaged::Chunks { chunks, .. } => (chunks.as_slice(), indexes),
        };
        let entries = scope.entries;
        let mut per_chunk: BTreeMap<usize, HashMap<u64, usize>> = BTreeMap::new();
        let mut unknown = Vec::new();
        let mut not_staged = Vec::new();
        for &i in wanted {
            let e = &entries[i];
            if e.hash == 0 {
                unknown.push(i);
                continue;
            }
            match chunks
                .iter()
                .position(|(c, _, _)| e.row >= c.first_row && e.row < c.first_row + c.rows)
            {
                Some(at) => {
                    per_chunk.entry(at).or_default().insert(e.row, i);
                }
                None => not_staged.push(i),
            }
        }
        let key_fields = scope.request.schema.key_fields();
        let mut batch: Vec<Item> = Vec::new();
        let mut gone = Vec::new();
        for (at, mut wanted) in per_chunk {
            let (chunk, key, present) = &chunks[at];
            if !present {
                gone.push((chunk.index, wanted.into_values().collect::<Vec<_>>()));
                continue;
            }
            let mut reader = blob.reader(&base.bucket, key).await?;
            let mut bytes = Vec::new();
            let mut read = 0;
            while !wanted.is_empty() {
                bytes.clear();
                if !read_staged(&mut reader, &mut bytes, read).await? {
                    break;
                }
                read += 1;
                let raw = RawDocument::from_bytes(&bytes).map_err(|e| ChuteError::Unreadable {
                    what: format!("staged document {read} of s3://{}/{key}", base.bucket),
                    source: e.into(),
                })?;
                let row = raw
                    .get_document("_import")
                    .ok()
                    .and_then(|m| m.get_i64("row").ok());
                let Some(i) = row.and_then(|r| wanted.remove(&(r as u64))) else {
                    continue;
                };
                let doc = StagedDoc::parse(raw, &key_fields)?;
                let e = &entries[i];
                if doc.key_text != e.key || doc.hash != format!("{:032x}", e.hash) {
                    not_staged.push(i);
                    continue;
                }
                batch.push(Item {
                    index: i,
                    staged: Some((doc, bytes.clone())),
                });
                if batch.len() >= self.batch_size {
                    self.check_batch(scope, &mut batch, sums, verified).await?;
                }
            }
            not_staged.extend(wanted.into_values());
        }
        self.check_batch(scope, &mut batch, sums, verified).await?;
        for (chunk, indexes) in gone {
            claims_only.push((
                format!("its staged chunk {chunk} is gone ({GONE}): claims checked only"),
                indexes,
            ));
        }
        claims_only.push((
            "the snapshot records its claim, not its content (a rejected row kept it)".into(),
            unknown,
        ));
        claims_only.push((
            "its row is not in the run's staged documents: claims checked only".into(),
            not_staged,
        ));
        for (reason, indexes) in claims_only {
            verified.claims_only(scope.run_id, indexes.len() as u64, &reason);
            for chunk in indexes.chunks(self.batch_size) {
                let mut batch: Vec<Item> = chunk
                    .iter()
                    .map(|&index| Item {
                        index,
                        staged: None,
                    })
                    .collect();
                self.check_batch(scope, &mut batch, sums, verified).await?;
            }
        }
        Ok(())
    }

    /// Reads the products of `batch` by key, compares each, and (repairing) writes the drifted
    /// ones' staged rows again. Empties `batch`.
    async fn check_batch(
        &self,
        scope: &RunScope<'_>,
        batch: &mut Vec<Item>,
        sums: &mut Sums,
        verified: &mut Verified,
    ) -> Result<(), ChuteError> {
        if batch.is_empty() {
            return Ok(());
        }
        let request = scope.request;
        let schema = request.schema;
        let keys: Vec<&str> = batch
            .iter()
            .map(|item| scope.entries[item.index].key.as_str())
            .collect();
        let found = self.products_by_key(schema, &keys).await?;
        let mut again = Vec::new();
        let mut reapplied = 0;
        let mut unrepairable = 0;
        for item in batch.drain(..) {
            let expected = expected(scope, item.index);
            let stored = found.get(expected.key);
            let claim = stored.and_then(|d| claim_hash(d, request.source));
            sums.database = sums.database.wrapping_add(database_term(&expected, claim));
            let drifts = classify(
                &expected,
                request.source,
                stored,
                item.staged.as_ref().map(|(doc, _)| doc),
            );
            let drifted = !drifts.is_empty();
            verified.add(drifts);
            match item.staged {
                Some((_, bytes)) if drifted && request.repair => {
                    again.extend_from_slice(&bytes);
                    reapplied += 1;
                }
                None if drifted && request.repair => unrepairable += 1,
                _ => {}
            }
        }
        let Some(repaired) = verified.repaired.as_mut() else {
            return Ok(());
        };
        repaired.unrepairable += unrepairable;
        if reapplied == 0 {
            return Ok(());
        }
        let ctx = WriteContext {
            run_id: scope.run_id.to_string(),
            object: scope.object.to_string(),
            feed_source: request.source.to_string(),
            mode: Mode::Incremental,
            at: DateTime::now(),
            reapply: true,
        };
        let outcome = self.upsert_staged(schema, &again, &ctx).await?;
        repaired.reapplied += reapplied;
        repaired.counts += outcome.counts;
        repaired.refusals.extend(
            outcome
                .refusals
                .iter()
                .map(|r| format!("row {}: {}", r.position.row, r.message)),
        );
        Ok(())
    }

    /// The stored products of `keys` (key texts, parts joined as the writer joins them), by key
    /// text: one `find` of the key fields' `$in`s ([`keys_filter`]), the key index's shape.
    pub async fn products_by_key(
        &self,
        schema: &Schema,
        keys: &[&str],
    ) -> Result<HashMap<String, Document>, ChuteError> {
        let key_fields = schema.key_fields();
        // Key columns are strings (the schema refuses others), so a key's parts are its values.
        let values: Vec<Vec<Bson>> = keys
            .iter()
            .map(|k| k.split(KEY_SEPARATOR).map(Bson::from).collect())
            .collect();
        let filter = keys_filter(&key_fields, &values);
        // A composite key's filter is a superset: only the products of `keys` are kept.
        let wanted: HashSet<&str> = keys.iter().copied().collect();
        Ok(self
            .find_products(schema, &key_fields, filter, None)
            .await?
            .into_iter()
            .filter(|s| wanted.contains(s.key_text.as_str()))
            .map(|s| (s.key_text, s.doc))
            .collect())
    }

    /// Where run `run_id`'s staged rows are, if still anywhere.
    async fn run_staged(
        &self,
        blob: &Blob,
        request: &VerifyRequest<'_>,
        base: &SnapshotBase,
        run_id: &str,
    ) -> Result<RunStaged, ChuteError> {
        let keys = RunKeys::new(request.staging_prefix, "", run_id);
        let plan: Option<PlanRecord> = blob.get_json_if_exists(&base.bucket, &keys.plan()).await?;
        let Some(plan) = plan else {
            return Ok(RunStaged::Gone(format!(
                "its run's staged documents are gone (no {}; {GONE}): claims checked only",
                keys.plan()
            )));
        };
        let listed: HashSet<String> = blob
            .list(
                &base.bucket,
                &format!("{}{run_id}/", request.staging_prefix),
            )
            .await?
            .into_iter()
            .map(|l| l.key)
            .collect();
        let chunks = plan
            .chunks
            .into_iter()
            .map(|c| {
                let key = keys.staged(c.index);
                let present = listed.contains(&key);
                (c, key, present)
            })
            .collect();
        let object = self
            .run(run_id)
            .await?
            .and_then(|run| {
                let source = run.get_document("source").ok()?;
                Some(format!(
                    "s3://{}/{}",
                    source.get_str("bucket").ok()?,
                    source.get_str("key").ok()?
                ))
            })
            .unwrap_or_else(|| format!("chute verify --repair of run {run_id}"));
        Ok(RunStaged::Chunks { chunks, object })
    }
}

/// The run id of entry run index `run`: a snapshot written before runs were recorded names only
/// the run that committed it.
fn run_of(base: &SnapshotBase, run: u32) -> String {
    match base.runs.get(run as usize) {
        Some(id) => id.clone(),
        None if base.runs.is_empty() => base.run_id.clone(),
        None => format!("(run #{run}, not named by the snapshot)"),
    }
}

fn expected<'a>(scope: &RunScope<'a>, index: usize) -> Expected<'a> {
    let e = &scope.entries[index];
    Expected {
        key: &e.key,
        hash: e.hash,
        run_id: scope.run_id,
        row: e.row,
    }
}
