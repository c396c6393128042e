//! A source's snapshot built by hand, as delta import leaves one after its runs commit: each run's
//! staged documents and plan in S3 (`<staging>/<run>/chunk-NNNNN.bson`, `plan.json`), its rows
//! written to MongoDB through the store, then the snapshot pieces (`delta::encode`d entries, each
//! naming the run that staged its row) in S3 and the manifest switched to them. Included by the
//! suites that verify snapshots (`#[path = "support/snapshot.rs"] mod snapshot;`).

#![allow(dead_code)]

use std::collections::HashMap;

use chute::blob::Blob;
use chute::delta::{encode, piece_of, Entry, SnapshotBase};
use chute::feed::Mode;
use chute::plan::PlanOptions;
use chute::run::{PlanRecord, RunKeys};
use chute::schema::Schema;
use chute::store::{digest_part, split_staged, Store, WriteContext};

/// One run of a source: its file's rows, and whether its staged documents are put in S3 (a run
/// whose staging expired has none).
pub struct HandRun<'a> {
    pub run_id: &'a str,
    pub csv: &'a str,
    pub mode: Mode,
    pub staged_in_s3: bool,
}

/// Where the snapshot and the staged documents go.
pub struct Place<'a> {
    pub blob: &'a Blob,
    pub bucket: &'a str,
    /// The staging prefix (`CHUTE_STAGING_PREFIX`) and the snapshot prefix, unique per test.
    pub staging: &'a str,
    pub snapshots: &'a str,
}

/// The staged documents of `csv` per chunk (chunks of about `chunk_bytes` of the file), and the
/// plan record listing the chunks.
pub fn stage(schema: &Schema, csv: &str, chunk_bytes: u64) -> (PlanRecord, Vec<Vec<u8>>) {
    let options = PlanOptions {
        chunk_bytes,
        ..PlanOptions::default()
    };
    let outcome = chute::process(csv.as_bytes(), schema, &options).unwrap();
    let chunks = outcome.plan.chunks.clone();
    let mut staged = vec![Vec::new(); chunks.len()];
    for raw in split_staged(&outcome.staged).unwrap() {
        let row = raw.get_document("_import").unwrap().get_i64("row").unwrap() as u64;
        let at = chunks
            .iter()
            .position(|c| row >= c.first_row && row < c.first_row + c.rows)
            .unwrap();
        staged[at].extend_from_slice(raw.as_bytes());
    }
    let plan = PlanRecord {
        header: outcome.plan.header.names.clone(),
        chunks,
        superseded: Vec::new(),
        warnings: Vec::new(),
        input: None,
        continuation: None,
        delta: None,
        commands: 0,
    };
    (plan, staged)
}

/// Runs `runs` of `source` in order (staged, written to MongoDB) and commits a snapshot of
/// `pieces` pieces holding, per key, the last run's row; returns the snapshot.
pub async fn commit_runs(
    store: &Store,
    schema: &Schema,
    source: &str,
    place: &Place<'_>,
    runs: &[HandRun<'_>],
    pieces: u32,
) -> SnapshotBase {
    store.ensure_collection(schema).await.unwrap();
    let key_fields = schema.key_fields();
    let mut latest: HashMap<String, Entry> = HashMap::new();
    for (index, run) in runs.iter().enumerate() {
        let (plan, chunks) = stage(schema, run.csv, 300);
        let keys = RunKeys::new(place.staging, "", run.run_id);
        if run.staged_in_s3 {
            place
                .blob
                .put_json(place.bucket, &keys.plan(), &plan)
                .await
                .unwrap();
            for (chunk, bytes) in plan.chunks.iter().zip(&chunks) {
                place
                    .blob
                    .put(
                        place.bucket,
                        &keys.staged(chunk.index),
                        bytes.clone(),
                        "application/octet-stream",
                    )
                    .await
                    .unwrap();
            }
        }
        let all: Vec<u8> = chunks.concat();
        let ctx = WriteContext {
            run_id: run.run_id.to_string(),
            object: format!("s3://{}/incoming/{source}/{}.csv", place.bucket, run.run_id),
            feed_source: source.to_string(),
            mode: run.mode,
            at: bson::DateTime::now(),
            reapply: false,
        };
        let written = store.upsert_staged(schema, &all, &ctx).await.unwrap();
        assert_eq!(written.counts.refused, 0, "{:?}", written.refusals);
        for mut entry in digest_part(&all, &key_fields).unwrap() {
            entry.run = index as u32;
            latest.insert(entry.key.clone(), entry);
        }
    }
    let mut entries: Vec<Entry> = latest.into_values().collect();
    entries.sort();
    let last = runs.last().unwrap().run_id;
    let mut base = SnapshotBase {
        run_id: last.to_string(),
        bucket: place.bucket.to_string(),
        prefix: format!("{}{}/{source}/{last}/", place.snapshots, schema.collection),
        pieces,
        entries: entries.len() as u64,
        fingerprint: "hand-built".into(),
        runs: runs.iter().map(|r| r.run_id.to_string()).collect(),
        applied_at_ms: bson::DateTime::now().timestamp_millis(),
        piece_bytes: Vec::new(),
    };
    for p in 0..pieces {
        let piece: Vec<Entry> = entries
            .iter()
            .filter(|e| piece_of(e.key_hash, pieces) == p)
            .cloned()
            .collect();
        let bytes = encode(&piece);
        base.piece_bytes.push(bytes.len() as u64);
        place
            .blob
            .put(
                place.bucket,
                &base.piece_key(p),
                bytes,
                "application/octet-stream",
            )
            .await
            .unwrap();
    }
    let switched = store
        .switch_snapshot(&schema.collection, source, None, &base)
        .await
        .unwrap();
    assert!(
        matches!(switched, chute::store::Switched::Committed { .. }),
        "{switched:?}"
    );
    base
}

/// A catalogue file of products `<prefix>NNNN` numbered `range`, priced `price`, with GTINs from
/// `gtin_base` up (distinct per prefix: `match_also` would merge equal ones) and `mpn` left empty
/// for the numbers in `no_mpn`.
pub fn catalogue(
    prefix: &str,
    gtin_base: u32,
    range: std::ops::Range<u32>,
    price: &str,
    no_mpn: &[u32],
) -> String {
    let mut csv = String::from("sku,name,price,stock,gtin,mpn\n");
    for i in range {
        let mpn = if no_mpn.contains(&i) {
            String::new()
        } else {
            format!("M-{prefix}{i}")
        };
        csv.push_str(&format!(
            "{prefix}{i:04},Item {i},{price},{i},{:08},{mpn}\n",
            gtin_base + i
        ));
    }
    csv
}
