//! `validate`: file-level checks and the chunk plan. Streams the file once (planner), and a second
//! time over the chunks only when some key occurs more than once (to find which occurrence wins).

use std::io::BufReader;
use std::time::Instant;

use lambda_runtime::{Diagnostic, LambdaEvent};

use super::metrics::Metrics;
use super::{RunInput, ValidateOutput};
use crate::app::Env;
use crate::clock::elapsed_ms;
use crate::dedup::Occurrences;
use crate::error::{ChuteError, FileCode, FileError};
use crate::feed::Mode;
use crate::input::{self, PlanInput, StagedCopy, Staging};
use crate::plan::{plan, FingerprintSet, PlanOptions};
use crate::run::PlanRecord;
use crate::store::{RunStart, Store};
use crate::transform::{RowRules, STAGING_PART_BYTES};

pub async fn handle(env: &Env, event: LambdaEvent<RunInput>) -> Result<ValidateOutput, Diagnostic> {
    let input = &event.payload;
    let started = Instant::now();
    let schema = env.config.schema(&input.schema)?;
    let store = env.store().await?;
    let commands = store.commands();
    store
        .start_run(&RunStart {
            run_id: &input.run_id,
            bucket: &input.bucket,
            key: &input.key,
            etag: &input.etag,
            schema: &schema.name,
            feed_source: &input.feed_source,
            mode: input.mode,
            requested_at: &input.requested_at,
        })
        .await?;
    if let Some(refused) = &input.refused {
        return Err(ChuteError::from(refused.clone()).into());
    }
    if input.mode != Mode::DryRun {
        take_lease(env, store, &schema.collection, input).await?;
    }
    store.ensure_collection(&schema).await?;

    let options = PlanOptions {
        chunk_bytes: env.config.chunk_bytes(input.chunk_bytes),
        ..env.config.plan.clone()
    };
    let info = env.blob.head(&input.bucket, &input.key).await?;
    if info.size > options.max_file_bytes {
        return Err(ChuteError::from(FileError::new(
            FileCode::TooLarge,
            format!(
                "the file is {} bytes; the limit is {}",
                info.size, options.max_file_bytes
            ),
        ))
        .into());
    }
    let format = schema
        .format_for(&input.feed_source)
        .with_metadata(&info.metadata)
        .map_err(ChuteError::from)?;
    let sheet = info.metadata.get("chute-sheet").cloned();
    let delta =
        super::delta::decide(env, store, &schema, &input.feed_source, &info.metadata).await?;
    let body = env
        .blob
        .stream(&input.bucket, &input.key, Some(&input.etag))
        .await?;
    let reader = tokio_util::io::SyncIoBridge::new(body.into_async_read());
    // A file that is not plain UTF-8 CSV is decoded once (see `crate::input`): the planner reads
    // the decoded bytes while this task uploads them as the staged copy the chunks are ranges of.
    let (decided, decision) = tokio::sync::oneshot::channel();
    let (parts, received) = tokio::sync::mpsc::channel(1);
    let planning = {
        let schema = schema.clone();
        let options = options.clone();
        tokio::task::spawn_blocking(move || {
            let mut raw = BufReader::with_capacity(256 * 1024, reader);
            let input::Opened {
                reader,
                format,
                read_as,
                decoded,
                warnings,
            } = input::open(&mut raw, Some(&schema), &format, sheet.as_deref())?;
            // Spelled out: a bare `.send(` reads, to scripts/check_iam.py, like the mailer's.
            let _ = tokio::sync::oneshot::Sender::send(decided, decoded);
            let planned = if decoded {
                let staging = Staging::new(reader, STAGING_PART_BYTES, |part| {
                    parts.blocking_send(part).is_ok()
                });
                plan(staging, &schema, format, &options)?
            } else {
                drop(parts);
                plan(reader, &schema, format, &options)?
            };
            input::finish_reading(&mut raw, &read_as)?;
            Ok::<_, FileError>((planned, format, read_as, warnings))
        })
    };
    let keys = env.config.keys(&input.run_id);
    let staged_key = keys.decoded_input();
    let staged = match decision.await {
        Ok(true) => {
            env.blob
                .put_parts(
                    &input.bucket,
                    &staged_key,
                    "text/csv; charset=utf-8",
                    received,
                )
                .await?;
            let etag = env.blob.head(&input.bucket, &staged_key).await?.etag;
            Some(StagedCopy {
                key: staged_key,
                etag,
            })
        }
        _ => None,
    };
    let (planned, format, read_as, mut warnings) = planning
        .await
        .map_err(|e| ChuteError::Stopped {
            what: "planner".into(),
            source: e.into(),
        })?
        .map_err(ChuteError::from)?;
    warnings.extend(planned.header.warnings.iter().cloned());
    tracing::info!(
        rows = planned.rows,
        chunks = planned.chunks.len(),
        bytes = planned.file_bytes,
        read_as = %read_as.line(),
        "planned"
    );
    let (read_key, read_etag) = match &staged {
        Some(copy) => (&copy.key, &copy.etag),
        None => (&input.key, &input.etag),
    };

    let mut occurrences = Occurrences::default();
    if !planned.duplicate_fingerprints.is_empty() {
        let duplicated: FingerprintSet = planned.duplicate_fingerprints.iter().copied().collect();
        let rules = RowRules::new(&schema, &planned.header, format);
        for chunk in &planned.chunks {
            let bytes = env
                .blob
                .get_chunk(&input.bucket, read_key, chunk, read_etag)
                .await?;
            occurrences.scan_chunk(&rules, &planned.header, chunk, &bytes, &duplicated);
        }
    }
    let superseded = occurrences.superseded();
    let stored = PlanRecord {
        header: planned.header.names.clone(),
        chunks: planned.chunks.clone(),
        superseded: superseded.clone(),
        warnings: warnings.clone(),
        input: Some(PlanInput {
            read_as,
            format,
            staged,
        }),
        continuation: schema.continuation.as_ref().map(|c| c.reason.clone()),
        delta: Some(delta),
        commands: store.commands() - commands,
    };
    let plan_key = keys.plan();
    env.blob.put_json(&input.bucket, &plan_key, &stored).await?;
    // The Map's items, read by its ItemReader: never inline in the state (256 KiB limit).
    let chunks_key = keys.chunk_list();
    env.blob
        .put_json(&input.bucket, &chunks_key, &planned.chunks)
        .await?;
    let duration_ms = elapsed_ms(started);
    Metrics::new("validate", &input.run_id)
        .count("RowsRead", planned.rows)
        .count("Chunks", planned.chunks.len() as u64)
        .duration(duration_ms)
        .emit();
    Ok(ValidateOutput {
        rows: planned.rows,
        file_bytes: planned.file_bytes,
        chunk_count: planned.chunks.len() as u64,
        chunk_bytes: options.chunk_bytes,
        chunks_key,
        plan_key,
        import_budget_ms: info
            .metadata
            .get("chute-import-budget-ms")
            .and_then(|v| v.trim().parse().ok()),
        warnings,
        duplicate_keys: occurrences.duplicated_keys() as u64,
        superseded_rows: superseded.len() as u64,
        duration_ms,
    })
}

/// Takes the lease of the file's source, so no other run of it interleaves with this one (their
/// snapshots would each miss the other's rows). Held: `Chute.SourceBusy`, which the state machine
/// retries for a while before it reports the run failed with this message.
async fn take_lease(
    env: &Env,
    store: &Store,
    collection: &str,
    input: &RunInput,
) -> Result<(), ChuteError> {
    let expires = env.config.lease_expiry();
    match store
        .take_lease(collection, &input.feed_source, &input.run_id, expires)
        .await?
    {
        Ok(()) => Ok(()),
        Err(holder) => Err(ChuteError::SourceBusy(format!(
            "source '{}' is being imported into {collection} by run {} (since {}); runs of one \
             source never interleave. This file was not imported: upload it again once that run \
             reported (its lease expires at {} unless that run goes on)",
            input.feed_source,
            holder.run_id,
            holder.since.try_to_rfc3339_string().unwrap_or_default(),
            holder.expires.try_to_rfc3339_string().unwrap_or_default(),
        ))),
    }
}
