//! Stale marking, the second job of the report step: a full refresh's products its file no longer
//! lists are marked (or, under `delete`, dropped) once every chunk is written, their keys streamed
//! into `stale.csv`; a dry run of a full source predicts them and marks nothing. Called by the
//! report step before it assembles the report: a transient failure here fails the step, whose retry
//! repeats what the ledger recorded ([`crate::store::Store::recorded_stale`]) instead of marking
//! twice.

use super::delta::Loaded;
use super::RunInput;
use crate::app::Env;
use crate::error::ChuteError;
use crate::feed::{Mode, Stale};
use crate::report::{stale_csv, RunRecord, StaleReport};
use crate::schema::join_key;
use crate::store::{list_stale, StaleRun, Store, Supplied};
use crate::transform::STAGING_PART_BYTES;

/// What the run's stale marking did and the key of its `stale.csv`; `None` when the run is no full
/// refresh. Only a transient failure is an error (worth a retry of the step: the tags make a second
/// marking finish the first); any other failure would fail every retry, so the run is still
/// reported, PARTIAL, saying why.
pub async fn mark(
    env: &Env,
    run: &RunInput,
    record: &RunRecord,
    loaded: Option<&Loaded>,
) -> Result<Option<(StaleReport, Option<String>, Vec<String>)>, ChuteError> {
    if !(run.mode == Mode::Full || (run.mode == Mode::DryRun && full_by_configuration(env, run)?)) {
        return Ok(None);
    }
    match mark_stale(env, run, record, loaded).await {
        Ok(marked) => Ok(Some(marked)),
        Err(e @ ChuteError::Transient(_)) => Err(e),
        Err(e) => Ok(Some((
            StaleReport {
                refused_reason: Some(format!(
                    "{}: {}",
                    crate::report::STALE_UNFINISHED,
                    crate::error::redact(&e.to_string())
                )),
                ..StaleReport::default()
            },
            None,
            Vec::new(),
        ))),
    }
}

/// Whether the file's source is configured for full refreshes (a dry run's mode replaces it).
fn full_by_configuration(env: &Env, run: &RunInput) -> Result<bool, ChuteError> {
    let schema = env.config.schema(&run.schema)?;
    Ok(schema.feed.for_source(&run.feed_source).mode == Mode::Full)
}

/// A full refresh's stale products, marked once every chunk was written (else nothing is marked
/// and the report says why), the keys streamed into `stale.csv`; returns the outcome, the CSV's
/// key and, for a delta run, the stale keys the snapshots gave. A retried or redriven report
/// repeats what the ledger recorded. A dry run predicts them, and marks nothing: a delta run from
/// the snapshots alone, otherwise from the keys its staged documents supply.
async fn mark_stale(
    env: &Env,
    run: &RunInput,
    record: &RunRecord,
    loaded: Option<&Loaded>,
) -> Result<(StaleReport, Option<String>, Vec<String>), ChuteError> {
    let schema = env.config.schema(&run.schema)?;
    let policy = schema.feed.for_source(&run.feed_source);
    let mut outcome = StaleReport {
        policy: policy.stale.as_str().to_string(),
        ..StaleReport::default()
    };
    if !record.complete() {
        outcome.refused_reason = Some(
            "nothing marked stale: the full refresh did not import every row it staged".into(),
        );
        return Ok((outcome, None, Vec::new()));
    }
    let base = record
        .plan
        .as_ref()
        .and_then(|p| p.delta.as_ref())
        .and_then(|d| d.base.as_ref());
    let (by_snapshot, supplied_before) = match (base, loaded) {
        (Some(_), Some(loaded)) => {
            let (keys, supplied) = super::delta::stale_keys(loaded, record, &schema);
            (Some(keys), supplied)
        }
        (Some(base), None) => {
            return Err(ChuteError::Fatal(format!(
                "the snapshot of run {} was not read",
                base.run_id
            )))
        }
        (None, _) => (None, 0),
    };
    let store = env.store().await?;
    let key = env.config.keys(&run.run_id).stale();
    let dry_run = run.mode == Mode::DryRun;
    let stale_run = StaleRun {
        schema: &schema,
        feed_source: &run.feed_source,
        run_id: &run.run_id,
        policy: policy.stale,
        max_stale_percent: f64::from(policy.max_stale_percent),
        force: run.force_stale,
    };
    if !dry_run {
        if let Some(recorded) = store.recorded_stale(&run.run_id).await? {
            drop_if_deleting(store, &stale_run, &recorded).await?;
            return Ok((recorded, Some(key), by_snapshot.unwrap_or_default()));
        }
    }
    let (keys_tx, keys_rx) = tokio::sync::mpsc::channel(2);
    let (parts_tx, parts_rx) = tokio::sync::mpsc::channel(1);
    // Rows the file has but the transform rejected still supply their products.
    let rejected = record.rejected_keys(&schema);
    let marking = async {
        match (by_snapshot.as_deref(), dry_run) {
            (Some(stale), true) => {
                // A dry run's prediction from the snapshots alone: no database read.
                list_stale(&stale_run, stale, supplied_before, keys_tx).await
            }
            (Some(stale), false) => {
                store
                    .mark_stale_keys(&stale_run, stale, supplied_before, keys_tx)
                    .await
            }
            (None, true) => {
                let mut supplied = supplied(env, run, record, &schema).await?;
                supplied.keys.extend(
                    rejected
                        .iter()
                        .map(|k| join_key(k.iter().map(String::as_str))),
                );
                store.predict_stale(&stale_run, &supplied, keys_tx).await
            }
            (None, false) => {
                store.keep_rejected_claims(&stale_run, &rejected).await?;
                store.mark_stale(&stale_run, keys_tx).await
            }
        }
    };
    let (marked, (), stored) = tokio::join!(
        marking,
        stale_csv(keys_rx, parts_tx, STAGING_PART_BYTES),
        env.blob
            .put_parts(&run.bucket, &key, "text/csv; charset=utf-8", parts_rx),
    );
    stored?;
    let marked = marked?;
    outcome.marked = marked.marked;
    outcome.candidates = marked.candidates;
    outcome.deleted = marked.deleted;
    outcome.refused_reason = marked.refused_reason;
    outcome.sample = marked.sample;
    if !dry_run {
        store.record_stale(&run.run_id, &outcome).await?;
        drop_if_deleting(store, &stale_run, &outcome).await?;
    }
    Ok((outcome, Some(key), by_snapshot.unwrap_or_default()))
}

/// Under `delete`, drops the claims the marking tagged, once its outcome is recorded: a retry
/// before that counts them again, one after it finishes the drop and repeats the record.
async fn drop_if_deleting(
    store: &Store,
    run: &StaleRun<'_>,
    outcome: &StaleReport,
) -> Result<(), ChuteError> {
    if run.policy == Stale::Delete && outcome.refused_reason.is_none() {
        store.drop_stale_claims(run).await?;
    }
    Ok(())
}

/// What a dry run's file supplies: every chunk's staged documents.
async fn supplied(
    env: &Env,
    run: &RunInput,
    record: &RunRecord,
    schema: &crate::schema::Schema,
) -> Result<Supplied, ChuteError> {
    let mut supplied = Supplied::default();
    for chunk in record.plan.iter().flat_map(|p| &p.chunks) {
        let staged = env
            .blob
            .get(
                &run.bucket,
                &env.config.keys(&run.run_id).staged(chunk.index),
            )
            .await?;
        supplied.add_staged(schema, &staged)?;
    }
    Ok(supplied)
}
