//! `import`: one chunk's staged documents upserted into MongoDB, to a time budget. The run ledger
//! (`progress.<chunk>.finished`) makes a re-invoked, finished chunk a no-op that returns its stored
//! record; the writer's per-run recount makes a retried, half-finished batch exact.
//!
//! No invocation depends on the cluster's speed: the import writes batch by batch until its budget
//! (the invocation's deadline less [`SAFETY_MARGIN`], or less when `CHUTE_IMPORT_BUDGET_MS` or the
//! file's `chute-import-budget-ms` asks) is spent, records in the `import_runs` ledger how far it
//! got, and returns `finished: false`; the state machine invokes it again (a Choice after Import)
//! and it resumes from the recorded position, reading the staged file from there on.

use std::time::{Duration, Instant};

use bson::DateTime;
use lambda_runtime::{Diagnostic, LambdaEvent};

use super::metrics::Metrics;
use crate::app::Env;
use crate::clock::elapsed_ms;
use crate::error::Refusal;
use crate::feed::Mode;
use crate::run::{
    keep_sample, DeltaCounts, ImportProgress, ImportRecord, PlanRecord, TransformRecord,
    WriteCounts,
};
use crate::store::{WriteContext, WriteOutcome, WriteProgress};

/// Left of the invocation's time when the import stops starting batches: one batch (1,000
/// documents) still in flight, the S3 and ledger writes after it, and the peek at the next batch.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(60);

/// How long this invocation may start batches for: until the deadline (`deadline_ms`, epoch
/// milliseconds; 0 when unknown) less [`SAFETY_MARGIN`], and no longer than `cap_ms` (the
/// configured or per-file budget). Whatever it says, at least one batch is written.
pub fn budget(deadline_ms: u64, now_ms: u64, cap_ms: Option<u64>) -> Option<Duration> {
    let from_deadline = (deadline_ms > 0).then(|| {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(SAFETY_MARGIN)
    });
    match (from_deadline, cap_ms.map(Duration::from_millis)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub async fn handle(
    env: &Env,
    event: LambdaEvent<TransformRecord>,
) -> Result<ImportRecord, Diagnostic> {
    let input = &event.payload;
    let started = Instant::now();
    let cap = match (env.config.import_budget_ms, input.import_budget_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let budget = budget(event.context.deadline, epoch_ms(), cap);
    let store = env.store().await?;
    let commands = store.commands();
    let keys = env.config.keys(&input.run_id);
    let record_key = keys.import_record(input.chunk);
    let recorded = store.chunk_progress(&input.run_id, input.chunk).await?;
    if recorded.as_ref().is_some_and(|p| p.finished) {
        if let Some(mut record) = env
            .blob
            .get_json_if_exists::<ImportRecord>(&input.bucket, &record_key)
            .await?
        {
            tracing::info!("chunk already imported; nothing written");
            record.replayed = true;
            record.refusals.clear();
            return Ok(record);
        }
    }
    let staged_etag = env.blob.head(&input.bucket, &input.staged_key).await?.etag;
    let mut before = recorded.filter(|p| !p.finished).unwrap_or_default();
    if before.documents > 0 && before.staged_etag != staged_etag {
        tracing::warn!(
            written = before.documents,
            "the staged file changed since the last invocation (the transform ran again): the \
             chunk starts over; what was written is recounted, not rewritten"
        );
        before = ImportProgress {
            invocations: before.invocations,
            duration_ms: before.duration_ms,
            ..ImportProgress::default()
        };
    }
    let schema = env.config.schema(&input.schema)?;
    if input.mode != Mode::DryRun {
        store
            .renew_lease(
                &schema.collection,
                &input.feed_source,
                &input.run_id,
                env.config.lease_expiry(),
            )
            .await?;
    }
    // Delta: the rows the source's snapshot has with the same content never reach the database.
    let plan: PlanRecord = env.blob.get_json(&input.bucket, &keys.plan()).await?;
    let diff = match plan.delta.as_ref().and_then(|d| d.base.as_ref()) {
        Some(base) => Some(
            super::delta::chunk_diff(env, &input.bucket, &input.run_id, input.chunk, base).await?,
        ),
        None => None,
    };
    let ctx = WriteContext {
        run_id: input.run_id.clone(),
        object: format!("s3://{}/{}", input.bucket, input.key),
        feed_source: input.feed_source.clone(),
        mode: input.mode,
        at: DateTime::now(),
        reapply: false,
    };
    let valid = input.counts.valid;
    let step = match &diff {
        // Nothing in the chunk changed: not even the staged file is read.
        Some(diff) if before.documents == 0 && diff.counts.unchanged == valid => WriteProgress {
            outcome: WriteOutcome {
                counts: WriteCounts {
                    unchanged: valid,
                    ..WriteCounts::default()
                },
                ..WriteOutcome::default()
            },
            documents: valid,
            bytes: 0,
            finished: true,
        },
        _ => {
            let staged = env
                .blob
                .reader_from(&input.bucket, &input.staged_key, before.bytes, &staged_etag)
                .await?;
            let out_of_time = || budget.is_some_and(|b| started.elapsed() >= b);
            store
                .upsert_stream_until(
                    &schema,
                    staged,
                    &ctx,
                    before.documents,
                    diff.as_ref(),
                    out_of_time,
                )
                .await?
        }
    };
    let outcome = &step.outcome;
    let mut counts = before.counts;
    counts += outcome.counts;
    let mut differences = before.differences.clone();
    keep_sample(&mut differences, &outcome.differences);
    let mut progress = ImportProgress {
        documents: before.documents + step.documents,
        bytes: before.bytes + step.bytes,
        staged_etag,
        counts,
        differences,
        refusal_parts: before.refusal_parts.clone(),
        invocations: before.invocations + 1,
        duration_ms: before.duration_ms + elapsed_ms(started),
        finished: step.finished,
        delta: DeltaCounts {
            commands: before.delta.commands,
            ..diff.map(|d| d.counts).unwrap_or_default()
        },
    };
    if !step.finished {
        // Refusals of this invocation go to S3 before the ledger names them: a crash between the
        // two leaves an unnamed object that the retry (starting at the same place) overwrites.
        if !outcome.refusals.is_empty() {
            let part = keys.refusal_part(input.chunk, before.documents);
            env.blob
                .put_json(&input.bucket, &part, &outcome.refusals)
                .await?;
            progress.refusal_parts.push(before.documents);
        }
        progress.delta.commands += store.commands() - commands + 1;
        store
            .record_progress(&input.run_id, input.chunk, &progress)
            .await?;
        tracing::info!(
            written = progress.documents,
            invocations = progress.invocations,
            ms = elapsed_ms(started),
            "time budget spent; the chunk continues in the next invocation"
        );
        emit_metrics(&input.run_id, outcome, false, started);
        return Ok(ImportRecord::of(
            &input.run_id,
            input.chunk,
            &progress,
            Vec::new(),
        ));
    }

    let mut refusals: Vec<Refusal> = Vec::with_capacity(progress.counts.refused as usize);
    for from in &before.refusal_parts {
        let part = keys.refusal_part(input.chunk, *from);
        refusals.extend(
            env.blob
                .get_json::<Vec<Refusal>>(&input.bucket, &part)
                .await?,
        );
    }
    refusals.extend(outcome.refusals.iter().cloned());
    refusals.sort_by_key(|r| r.position);
    // This invocation's commands, the ledger write below included.
    progress.delta.commands += store.commands() - commands + 1;
    // The record first, then its completion in the ledger: a finished chunk has a record to replay.
    let mut record = ImportRecord::of(&input.run_id, input.chunk, &progress, refusals);
    env.blob
        .put_json(&input.bucket, &record_key, &record)
        .await?;
    store
        .record_progress(&input.run_id, input.chunk, &progress)
        .await?;
    record.refusals.clear();
    tracing::info!(
        counts = ?record.counts,
        invocations = record.invocations,
        ms = record.duration_ms,
        "chunk imported"
    );
    emit_metrics(&input.run_id, outcome, true, started);
    Ok(record)
}

/// What this invocation wrote, as EMF metrics (whether or not the chunk is finished).
fn emit_metrics(run_id: &str, outcome: &WriteOutcome, finished: bool, started: Instant) {
    let counts = &outcome.counts;
    Metrics::new("import", run_id)
        .count("Continuations", u64::from(!finished))
        .count("RowsWritten", counts.inserted + counts.updated)
        .count("RowsUnchanged", counts.unchanged)
        .count("RowsRefused", counts.refused)
        .duration(elapsed_ms(started))
        .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_deadline_less_the_margin_capped_by_the_setting() {
        let now = 1_000_000_000;
        let margin = SAFETY_MARGIN.as_millis() as u64;
        let deadline = now + 900_000;
        assert_eq!(
            budget(deadline, now, None),
            Some(Duration::from_millis(900_000 - margin))
        );
        assert_eq!(
            budget(deadline, now, Some(5)),
            Some(Duration::from_millis(5))
        );
        assert_eq!(budget(now + 10, now, None), Some(Duration::ZERO), "near");
        assert_eq!(budget(now - 10, now, None), Some(Duration::ZERO), "past");
        assert_eq!(budget(0, now, None), None, "no deadline known");
        assert_eq!(budget(0, now, Some(7)), Some(Duration::from_millis(7)));
    }
}
