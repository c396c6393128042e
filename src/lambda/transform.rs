//! `transform`: one chunk. Ranged GET, validate rows, build documents, stage them in S3 as BSON
//! (`bsondump` reads it) with the chunk's rejected rows beside them.

use std::time::Instant;

use lambda_runtime::{Diagnostic, LambdaEvent};

use super::metrics::Metrics;
use super::ChunkInput;
use crate::app::Env;
use crate::clock::elapsed_ms;
use crate::dedup::rows_in_chunk;
use crate::delta::encode;
use crate::error::ChuteError;
use crate::header::Header;
use crate::run::{PlanRecord, TransformRecord};
use crate::store::digest_part;
use crate::transform::{transform_chunk_parts, RowRules, STAGING_PART_BYTES};

pub async fn handle(
    env: &Env,
    event: LambdaEvent<ChunkInput>,
) -> Result<TransformRecord, Diagnostic> {
    let input = &event.payload;
    let started = Instant::now();
    let schema = env.config.schema(&input.schema)?;
    let stored: PlanRecord = env.blob.get_json(&input.bucket, &input.plan_key).await?;
    // Read as validate read it: its delimiter and number format, from its decoded copy if any.
    let (format, key, etag) = match &stored.input {
        Some(read) => match &read.staged {
            Some(copy) => (read.format, &copy.key, &copy.etag),
            None => (read.format, &input.key, &input.etag),
        },
        None => (schema.format.as_declared(), &input.key, &input.etag),
    };
    let cells: Vec<&[u8]> = stored.header.iter().map(|h| h.as_bytes()).collect();
    let header = Header::resolve(&schema, &cells).map_err(ChuteError::from)?;
    let chunk = input.chunk;
    let bytes = env.blob.get_chunk(&input.bucket, key, &chunk, etag).await?;
    let superseded = rows_in_chunk(&stored.superseded, &chunk).to_vec();
    let keys = env.config.keys(&input.run_id);
    let staged_key = keys.staged(chunk.index);
    // Rows are turned into documents on a blocking thread while this task uploads the staged
    // parts as they fill: one part in the channel, one uploading, one filling.
    let (parts, received) = tokio::sync::mpsc::channel(1);
    // Each part's documents also go into the chunk's digest (key, content hash, row), which the
    // import diffs against the source's snapshot ([`crate::delta`]).
    let transformed = tokio::task::spawn_blocking(move || {
        let rules = RowRules::new(&schema, &header, format);
        let key_fields = schema.key_fields();
        let mut digest = Ok(Vec::new());
        let outcome = transform_chunk_parts(
            &rules,
            &chunk,
            &bytes,
            &superseded,
            STAGING_PART_BYTES,
            |part| {
                if let Ok(entries) = &mut digest {
                    match digest_part(&part, &key_fields) {
                        Ok(more) => entries.extend(more),
                        Err(e) => digest = Err(e),
                    }
                }
                // Fails only when the upload gave up; its error is the one reported.
                let _ = parts.blocking_send(part);
            },
        );
        (outcome, digest)
    });
    let uploaded = env
        .blob
        .put_parts(&input.bucket, &staged_key, "application/bson", received)
        .await;
    let (outcome, digest) = transformed.await.map_err(|e| ChuteError::Stopped {
        what: format!("chunk {} transform", chunk.index),
        source: e.into(),
    })?;
    uploaded?;
    let mut digest = digest?;
    digest.sort_unstable();
    env.blob
        .put(
            &input.bucket,
            &keys.digest(chunk.index),
            encode(&digest),
            "application/octet-stream",
        )
        .await?;
    if outcome.rows != chunk.rows {
        return Err(ChuteError::Fatal(format!(
            "chunk {} held {} rows; the plan says {}",
            chunk.index, outcome.rows, chunk.rows
        ))
        .into());
    }
    let mut record = TransformRecord {
        run_id: input.run_id.clone(),
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        schema: input.schema.clone(),
        feed_source: input.feed_source.clone(),
        mode: input.mode,
        chunk: chunk.index,
        counts: (&outcome).into(),
        staged_key,
        duration_ms: elapsed_ms(started),
        rejected_rows: outcome.rejected,
        not_utf8: outcome.not_utf8,
        damaged: outcome.damaged,
        import_budget_ms: input.import_budget_ms,
    };
    env.blob
        .put_json(&input.bucket, &keys.transform_record(chunk.index), &record)
        .await?;
    record.rejected_rows.clear();
    tracing::info!(counts = ?record.counts, ms = record.duration_ms, "chunk transformed");
    Metrics::new("transform", &input.run_id)
        .count("RowsRead", record.counts.rows)
        .count("RowsRejected", record.counts.rejected)
        .duration(record.duration_ms)
        .emit();
    Ok(record)
}
