//! `import`: one chunk's staged documents upserted into MongoDB. The run ledger makes a re-invoked,
//! finished chunk a no-op; the writer's per-run recount makes a retried, half-finished one exact.

use std::time::Instant;

use bson::DateTime;
use lambda_runtime::{Diagnostic, LambdaEvent};

use super::metrics::Metrics;
use super::{elapsed_ms, Env, ImportOutput, TransformOutput};
use crate::store::WriteContext;

pub async fn handle(
    env: &Env,
    event: LambdaEvent<TransformOutput>,
) -> Result<ImportOutput, Diagnostic> {
    let input = &event.payload;
    let started = Instant::now();
    let store = env.store().await?;
    let record_key = env
        .config
        .chunk_key(&input.run_id, input.chunk, "import.json");
    if store
        .finished_chunk(&input.run_id, input.chunk)
        .await?
        .is_some()
    {
        if let Some(mut recorded) = env
            .blob
            .get_json_if_exists::<ImportOutput>(&input.bucket, &record_key)
            .await?
        {
            tracing::info!("chunk already imported; nothing written");
            recorded.replayed = true;
            recorded.refusals.clear();
            return Ok(recorded);
        }
    }
    let schema = env.config.schema(&input.schema)?;
    let staged = env.blob.reader(&input.bucket, &input.staged_key).await?;
    let ctx = WriteContext {
        run_id: input.run_id.clone(),
        source: format!("s3://{}/{}", input.bucket, input.key),
        at: DateTime::now(),
    };
    let outcome = store.upsert_stream(&schema, staged, &ctx).await?;
    let mut output = ImportOutput {
        run_id: input.run_id.clone(),
        chunk: input.chunk,
        inserted: outcome.inserted,
        updated: outcome.updated,
        unchanged: outcome.unchanged,
        refused: outcome.refused.len() as u64,
        duration_ms: elapsed_ms(started),
        replayed: false,
        refusals: outcome.refused.clone(),
    };
    env.blob
        .put_json(&input.bucket, &record_key, &output)
        .await?;
    store
        .finish_chunk(&input.run_id, input.chunk, &outcome)
        .await?;
    output.refusals.clear();
    tracing::info!(
        inserted = output.inserted,
        updated = output.updated,
        unchanged = output.unchanged,
        refused = output.refused,
        ms = output.duration_ms,
        "chunk imported"
    );
    Metrics::new("import", &input.run_id)
        .count("RowsWritten", output.inserted + output.updated)
        .count("RowsUnchanged", output.unchanged)
        .count("RowsRefused", output.refused)
        .duration(output.duration_ms)
        .emit();
    Ok(output)
}
