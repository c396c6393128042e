//! Delta import's moves ([`crate::delta`] holds the rules): validate decides whether the run
//! diffs and against which snapshot; the import diffs its chunk piece by piece; the report step
//! finds a full refresh's stale keys from the snapshots and, once the run committed (every chunk
//! imported, the stale step done), writes the next snapshot and switches to it.

use std::collections::{HashMap, HashSet};

use crate::app::{is_reapply, Env};
use crate::delta::{
    decode, diff_chunk, encode, next_snapshot, piece_of, pieces_for, prune_runs, ChunkDiff,
    DeltaPlan, Entry, NextSnapshot, SnapshotBase,
};
use crate::error::ChuteError;
use crate::feed::{Mode, Stale};
use crate::report::{DeltaReport, RunRecord, StaleReport};
use crate::schema::{join_key, Schema};
use crate::store::{Store, Switched};

/// Validate's decision: the source's current snapshot unless it is missing, was taken under
/// another schema fingerprint, or the file asks for `chute-mode: reapply`; a snapshot whose
/// pieces cannot all be found turns delta off too (the reason says which).
pub async fn decide(
    env: &Env,
    store: &Store,
    schema: &Schema,
    source: &str,
    metadata: &HashMap<String, String>,
) -> Result<DeltaPlan, ChuteError> {
    let reapply = metadata.get("chute-mode").is_some_and(|m| is_reapply(m));
    let current = store
        .snapshot(&schema.collection, source)
        .await?
        .map(|m| m.current);
    let reapply_days = schema.feed.for_source(source).reapply_days;
    let now = bson::DateTime::now().timestamp_millis();
    let plan = DeltaPlan::decide(&schema.fingerprint, current, reapply, reapply_days, now);
    if let Some(base) = &plan.base {
        for p in 0..base.pieces {
            let problem = match env.blob.head(&base.bucket, &base.piece_key(p)).await {
                Err(e) => Some(e.to_string()),
                Ok(found) => match base.piece_bytes.get(p as usize) {
                    Some(&written) if written != found.size => Some(format!(
                        "it is {} bytes, {written} were written",
                        found.size
                    )),
                    _ => None,
                },
            };
            if let Some(problem) = problem {
                let reason = format!(
                    "the snapshot of run {} cannot be read (piece {p}: {problem})",
                    base.run_id
                );
                tracing::warn!(%reason, "delta off");
                return Ok(DeltaPlan::off(&schema.fingerprint, reason));
            }
        }
    }
    Ok(plan)
}

/// Piece `p` of `base`.
async fn piece(env: &Env, base: &SnapshotBase, p: u32) -> Result<Vec<Entry>, ChuteError> {
    let key = base.piece_key(p);
    let bytes = env.blob.get(&base.bucket, &key).await?;
    decode(&bytes).map_err(|e| ChuteError::Unreadable {
        what: format!("snapshot piece s3://{}/{key}", base.bucket),
        source: e.into(),
    })
}

/// Chunk `chunk`'s digest, as its transform stored it.
async fn digest(
    env: &Env,
    bucket: &str,
    run_id: &str,
    chunk: u32,
) -> Result<Vec<Entry>, ChuteError> {
    let key = env.config.keys(run_id).digest(chunk);
    let bytes = env.blob.get(bucket, &key).await?;
    decode(&bytes).map_err(|e| ChuteError::Unreadable {
        what: format!("chunk digest s3://{bucket}/{key}"),
        source: e.into(),
    })
}

/// What the snapshot says of one chunk, reading only the pieces its keys fall in, one at a time.
pub async fn chunk_diff(
    env: &Env,
    bucket: &str,
    run_id: &str,
    chunk: u32,
    base: &SnapshotBase,
) -> Result<ChunkDiff, ChuteError> {
    let current = digest(env, bucket, run_id, chunk).await?;
    let mut diff = ChunkDiff::default();
    let mut rest = current.as_slice();
    while let Some(first) = rest.first() {
        let p = piece_of(first.key_hash, base.pieces);
        let end = rest.partition_point(|e| piece_of(e.key_hash, base.pieces) == p);
        diff_chunk(&rest[..end], &piece(env, base, p).await?, &mut diff);
        rest = &rest[end..];
    }
    Ok(diff)
}

/// Every entry of `base`, in order.
async fn load_base(env: &Env, base: &SnapshotBase) -> Result<Vec<Entry>, ChuteError> {
    let mut entries = Vec::with_capacity(base.entries as usize);
    for p in 0..base.pieces {
        entries.extend(piece(env, base, p).await?);
    }
    Ok(entries)
}

/// Every chunk's digest of the run, merged in order.
async fn load_current(
    env: &Env,
    bucket: &str,
    record: &RunRecord,
) -> Result<Vec<Entry>, ChuteError> {
    let mut entries = Vec::new();
    for chunk in record.plan.iter().flat_map(|p| &p.chunks) {
        entries.extend(digest(env, bucket, &record.run_id, chunk.index).await?);
    }
    entries.sort_unstable();
    Ok(entries)
}

/// The keys of the rows the file has but the transform rejected (they still supply their product).
fn rejected_keys(record: &RunRecord, schema: &Schema) -> HashSet<String> {
    record
        .rejected_keys(schema)
        .iter()
        .map(|k| join_key(k.iter().map(String::as_str)))
        .collect()
}

/// What the report step diffs: the snapshot the run diffed against (empty when delta was off)
/// and every chunk's digest, read once for the stale keys and the next snapshot.
pub struct Loaded {
    base: Vec<Entry>,
    current: Vec<Entry>,
}

/// Reads the run's snapshot and digests, when the run may use them: it has a delta decision and
/// imported every chunk (else nothing is marked stale and nothing committed).
pub async fn load(env: &Env, record: &RunRecord) -> Result<Option<Loaded>, ChuteError> {
    let Some(plan) = record.plan.as_ref().and_then(|p| p.delta.as_ref()) else {
        return Ok(None);
    };
    if !record.complete() {
        return Ok(None);
    }
    let base = match &plan.base {
        Some(base) => load_base(env, base).await?,
        None => Vec::new(),
    };
    let current = load_current(env, &record.source.bucket, record).await?;
    Ok(Some(Loaded { base, current }))
}

/// A full refresh's stale keys by the snapshots: in the snapshot, not listed by the file's staged
/// rows nor by its rejected ones. Returns them with the snapshot's size.
pub fn stale_keys(loaded: &Loaded, record: &RunRecord, schema: &Schema) -> (Vec<String>, u64) {
    let rejected = rejected_keys(record, schema);
    let stale = crate::delta::stale_keys(&loaded.base, &loaded.current, &rejected);
    (stale, loaded.base.len() as u64)
}

/// Writes the run's next snapshot and makes it current, when the run committed: not a dry run,
/// every chunk imported, and for a full refresh a finished stale step (one taken by the full
/// path must also have marked every stale product, or the snapshot would forget the claims it
/// left). `marked` are the keys the stale step marked. Returns what became of the snapshot.
pub async fn commit(
    env: &Env,
    store: &Store,
    record: &RunRecord,
    schema: &Schema,
    marked: &HashSet<String>,
    loaded: Option<Loaded>,
) -> Result<String, ChuteError> {
    let source = &record.feed.source;
    let Some(plan) = record.plan.as_ref().and_then(|p| p.delta.as_ref()) else {
        return Ok("not advanced: the run has no delta decision".into());
    };
    let stale = record.stale.as_ref();
    if record.dry_run {
        return Ok("unchanged (a dry run)".into());
    }
    if !record.complete() {
        return Ok("not advanced: the run did not import every row".into());
    }
    if record.feed.mode == Mode::Full {
        let Some(stale) = stale else {
            return Ok("not advanced: the stale step did not run".into());
        };
        let finished = stale
            .refused_reason
            .as_deref()
            .is_none_or(|r| !r.starts_with(crate::report::STALE_UNFINISHED));
        let all_marked = marked_all(stale) || (stale.refused_reason.is_none() && stale.marked == 0);
        if !finished || (plan.base.is_none() && !all_marked) {
            return Ok(format!(
                "not advanced: {}",
                stale
                    .refused_reason
                    .as_deref()
                    .unwrap_or("the full path kept stale products a snapshot would forget")
            ));
        }
    }
    let bucket = &record.source.bucket;
    let Some(Loaded { base, current }) = loaded else {
        return Ok("not advanced: the snapshot and the chunks' digests were not read".into());
    };
    let refused = refused_keys(record, &current);
    let (base_entries, mut runs) = match &plan.base {
        Some(snapshot) => (base, snapshot.runs.clone()),
        None => (fallback_base(record, schema), Vec::new()),
    };
    let run = runs.len() as u32;
    runs.push(record.run_id.clone());
    let mut entries = next_snapshot(
        base_entries,
        current,
        &NextSnapshot {
            kept: &refused,
            marked,
            run,
        },
    );
    let runs = prune_runs(&mut entries, runs);
    let pieces = pieces_for(entries.len() as u64, env.config.snapshot_piece_entries);
    let mut next = SnapshotBase {
        run_id: record.run_id.clone(),
        bucket: bucket.clone(),
        prefix: env
            .config
            .snapshot_prefix(&schema.collection, source, &record.run_id),
        pieces,
        entries: entries.len() as u64,
        fingerprint: plan.fingerprint.clone(),
        runs,
        applied_at_ms: match &plan.base {
            Some(base) => base.applied_at_ms,
            None => bson::DateTime::now().timestamp_millis(),
        },
        piece_bytes: Vec::with_capacity(pieces as usize),
    };
    let mut rest = entries.as_slice();
    for p in 0..pieces {
        let end = rest.partition_point(|e| piece_of(e.key_hash, pieces) == p);
        let bytes = encode(&rest[..end]);
        next.piece_bytes.push(bytes.len() as u64);
        env.blob
            .put(
                bucket,
                &next.piece_key(p),
                bytes,
                "application/octet-stream",
            )
            .await?;
        rest = &rest[end..];
    }
    let based_on = plan.base.as_ref().map(|b| b.run_id.as_str());
    Ok(
        match store
            .switch_snapshot(&schema.collection, source, based_on, &next)
            .await?
        {
            Switched::Committed { retired } => {
                // The snapshot before the replaced one: no run can be diffing against it now (a
                // dry run started before this switch still finds the replaced one).
                if let Some(old) = retired {
                    retire(env, &old).await;
                }
                committed(&next)
            }
            Switched::Already => committed(&next),
            Switched::Conflict { current } => format!(
                "not advanced: the current snapshot is run {}'s, not the one this run diffed against",
                current.as_deref().unwrap_or("none")
            ),
        },
    )
}

/// What the report says of a committed snapshot.
fn committed(next: &SnapshotBase) -> String {
    format!(
        "committed ({} products in {} piece{})",
        next.entries,
        next.pieces,
        if next.pieces == 1 { "" } else { "s" }
    )
}

/// Deletes a retired snapshot's pieces; one left behind costs storage only, so a failure is logged.
async fn retire(env: &Env, old: &SnapshotBase) {
    for p in 0..old.pieces {
        if let Err(e) = env.blob.delete(&old.bucket, &old.piece_key(p)).await {
            tracing::warn!(error = %e, run = %old.run_id, "a retired snapshot piece was not deleted");
        }
    }
}

/// The base a full-path run's next snapshot starts from: nothing, but for a full refresh the
/// keys of its rejected rows (their claims were kept, so the snapshot must know them; their
/// content is unknown, so the next run writes them).
fn fallback_base(record: &RunRecord, schema: &Schema) -> Vec<Entry> {
    if record.feed.mode != Mode::Full {
        return Vec::new();
    }
    let mut entries: Vec<Entry> = rejected_keys(record, schema)
        .into_iter()
        .map(|key| Entry::new(key, 0, 0))
        .collect();
    entries.sort_unstable();
    entries
}

/// The keys of the staged rows the database refused (their snapshot entry stays as it was).
fn refused_keys(record: &RunRecord, current: &[Entry]) -> HashSet<String> {
    let rows: HashSet<u64> = record
        .plan
        .iter()
        .flat_map(|p| &p.chunks)
        .filter_map(|c| c.imported.as_ref())
        .flat_map(|i| &i.refusals)
        .map(|r| r.position.row)
        .collect();
    if rows.is_empty() {
        return HashSet::new();
    }
    current
        .iter()
        .filter(|e| rows.contains(&e.row))
        .map(|e| e.key.clone())
        .collect()
}

/// Whether a full refresh's stale step marked (tagged or dropped) the stale keys it found.
pub fn marked_all(stale: &StaleReport) -> bool {
    stale.refused_reason.is_none() && stale.policy != Stale::Keep.as_str()
}

/// The report's delta section: the plan's decision, the chunks' counts, the run's commands and
/// what became of the snapshot.
pub fn report(
    record: &RunRecord,
    stale: u64,
    commands: u64,
    snapshot: String,
) -> Option<DeltaReport> {
    let planned = record.plan.as_ref()?;
    let plan = planned.delta.as_ref()?;
    let mut delta = DeltaReport {
        status: if plan.base.is_some() { "on" } else { "off" }.into(),
        reason: plan.off.clone(),
        base_run: plan.base.as_ref().map(|b| b.run_id.clone()),
        stale,
        commands: planned.validate_commands + commands,
        snapshot,
        ..DeltaReport::default()
    };
    for imported in planned.chunks.iter().filter_map(|c| c.imported.as_ref()) {
        delta.new += imported.delta.new;
        delta.changed += imported.delta.changed;
        delta.unchanged += imported.delta.unchanged;
        delta.commands += imported.delta.commands;
    }
    Some(delta)
}
