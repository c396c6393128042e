//! `report`: reads every chunk's recorded outcome, marks a full refresh's stale products (the
//! run's last step, once every chunk is written; [`crate::store::Store::mark_stale`]), has
//! [`crate::report::assemble`] build the report, stores report.json, rejects.csv, summary.html and
//! stale.csv under `reports/<run>/`, records the run in MongoDB, emails it and publishes the
//! run-finished event ([`crate::run_event`]). The report is stored before the email is tried, and
//! an email or event failure is recorded or logged, never fatal.

use lambda_runtime::{Diagnostic, LambdaEvent};

use super::metrics::Metrics;
use super::{Env, PlanOutput, ReportInput, ReportOutput, RunInput, StoredPlan};
use crate::error::ChuteError;
use crate::feed::{Mode, Stale};
use crate::input::ReadAs;
use crate::notify::Email;
use crate::render::{render, Link};
use crate::report::{
    assemble, failure_reason, stale_csv, Artifacts, ChunkRecord, EmailOutcome, EmailStatus, Feed,
    Imported, PlanRecord, Report, RunRecord, Source, StaleReport, Transformed,
};
use crate::schema::join_key;
use crate::store::{StaleRun, Store, Supplied};
use crate::transform::STAGING_PART_BYTES;

pub async fn handle(
    env: &Env,
    event: LambdaEvent<ReportInput>,
) -> Result<ReportOutput, Diagnostic> {
    let input = &event.payload;
    let run = &input.run;
    let (plan, read_as) = match &input.plan {
        Some(plan) => {
            let (record, read_as) = read_plan(env, run, plan).await?;
            (Some(record), read_as)
        }
        None => (None, None),
    };
    let mut artifacts = Artifacts {
        report: env.config.report_key(&run.run_id, "report.json"),
        rejects: env.config.report_key(&run.run_id, "rejects.csv"),
        summary: env.config.report_key(&run.run_id, "summary.html"),
        stale: None,
    };
    let mut record = RunRecord {
        run_id: run.run_id.clone(),
        source: Source {
            bucket: run.bucket.clone(),
            key: run.key.clone(),
            etag: run.etag.clone(),
            read_as,
        },
        schema: run.schema.clone(),
        started_at: run.requested_at.clone(),
        plan,
        failure: input
            .failure
            .as_ref()
            .map(|f| failure_reason(&f.error, &f.cause)),
        artifacts: artifacts.clone(),
        feed: Feed {
            source: run.source.clone(),
            mode: run.mode.as_str().to_string(),
        },
        dry_run: run.mode == Mode::DryRun,
        stale: None,
    };
    if run.mode == Mode::Full || (run.mode == Mode::DryRun && full_by_configuration(env, run)?) {
        let (stale, key) = match mark_stale(env, run, &record).await {
            Ok(marked) => marked,
            // Worth a retry of the whole step (the tags make a second marking finish the first).
            Err(e @ ChuteError::Transient(_)) => return Err(e.into()),
            // Anything else would fail every retry: the run is still reported, PARTIAL, saying so.
            Err(e) => (
                StaleReport {
                    refused_reason: Some(format!(
                        "the stale marking did not finish: {}",
                        crate::error::redact(&e.to_string())
                    )),
                    ..StaleReport::default()
                },
                None,
            ),
        };
        record.stale = Some(stale);
        artifacts.stale = key;
        record.artifacts = artifacts.clone();
    }
    let (mut report, rejects) = assemble(record, bson::DateTime::now());

    let links = links(env, &run.bucket, &artifacts).await;
    let (html, text) = render(&report, &links);
    env.blob
        .put(
            &run.bucket,
            &artifacts.rejects,
            rejects,
            "text/csv; charset=utf-8",
        )
        .await?;
    env.blob
        .put(
            &run.bucket,
            &artifacts.summary,
            html.clone().into_bytes(),
            "text/html; charset=utf-8",
        )
        .await?;
    put_report(env, &report).await?;

    let email = send_email(env, &report, html, text).await;
    let email_status = email.status;
    report.email = Some(email);
    put_report(env, &report).await?;
    // The ledger copy is bookkeeping: with MongoDB down (often why a run failed) the stored report
    // and the email stand, and a retry here would send the email again.
    let ledger = async { env.store().await?.finish_run(&report).await };
    if let Err(e) = ledger.await {
        tracing::warn!(error = %e, "run not recorded in the import_runs ledger; the report is stored");
    }
    crate::notify::events::announce(&env.events, &report).await;
    Metrics::new("report", &run.run_id)
        .count("RowsRead", report.rows.total)
        .count("RowsRejected", report.rows.rejected)
        .count(
            "RowsWritten",
            report.written.inserted + report.written.updated,
        )
        .count("StaleMarked", report.stale.as_ref().map_or(0, |s| s.marked))
        .duration(report.timings.duration_ms)
        .emit();
    Metrics::new("report", &run.run_id)
        .dimension("Status", report.status.as_str())
        .count("Runs", 1)
        .emit();
    tracing::info!(
        status = report.status.as_str(),
        total = report.rows.total,
        rejected = report.rows.rejected,
        "run reported"
    );
    Ok(ReportOutput {
        status: report.status,
        report_key: artifacts.report,
        email: email_status.as_str().to_string(),
    })
}

/// Whether the file's source is configured for full refreshes (a dry run's mode replaces it).
fn full_by_configuration(env: &Env, run: &RunInput) -> Result<bool, ChuteError> {
    let schema = env.config.schema(&run.schema)?;
    Ok(schema.feed.for_source(&run.source).mode == Mode::Full)
}

/// A full refresh's stale products, marked once every chunk was written (else nothing is marked
/// and the report says why), the keys streamed into `stale.csv`; returns the outcome and the CSV's
/// key. A retried or redriven report repeats what the ledger recorded. A dry run predicts them
/// from the keys its staged documents supply, and marks nothing.
async fn mark_stale(
    env: &Env,
    run: &RunInput,
    record: &RunRecord,
) -> Result<(StaleReport, Option<String>), ChuteError> {
    let schema = env.config.schema(&run.schema)?;
    let policy = schema.feed.for_source(&run.source);
    let mut outcome = StaleReport {
        policy: stale_name(policy.stale).to_string(),
        ..StaleReport::default()
    };
    if !record.complete() {
        outcome.refused_reason = Some(
            "nothing marked stale: the full refresh did not import every row it staged".into(),
        );
        return Ok((outcome, None));
    }
    let store = env.store().await?;
    let key = env.config.report_key(&run.run_id, "stale.csv");
    let dry_run = run.mode == Mode::DryRun;
    let stale_run = StaleRun {
        schema: &schema,
        source: &run.source,
        run_id: &run.run_id,
        policy: policy.stale,
        max_stale_percent: f64::from(policy.max_stale_percent),
        force: run.force_stale,
    };
    if !dry_run {
        if let Some(recorded) = store.recorded_stale(&run.run_id).await? {
            drop_if_deleting(store, &stale_run, &recorded).await?;
            return Ok((recorded, Some(key)));
        }
    }
    let (keys_tx, keys_rx) = tokio::sync::mpsc::channel(2);
    let (parts_tx, parts_rx) = tokio::sync::mpsc::channel(1);
    // Rows the file has but the transform rejected still supply their products.
    let rejected = record.rejected_keys(&schema);
    let marking = async {
        if dry_run {
            let mut supplied = supplied(env, run, record, &schema).await?;
            supplied.keys.extend(
                rejected
                    .iter()
                    .map(|k| join_key(k.iter().map(String::as_str))),
            );
            store.predict_stale(&stale_run, &supplied, keys_tx).await
        } else {
            store.keep_rejected_claims(&stale_run, &rejected).await?;
            store.mark_stale(&stale_run, keys_tx).await
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
    outcome.deleted = marked.deleted;
    outcome.refused_reason = marked.refused_reason;
    outcome.sample = marked.sample;
    if !dry_run {
        store.record_stale(&run.run_id, &outcome).await?;
        drop_if_deleting(store, &stale_run, &outcome).await?;
    }
    Ok((outcome, Some(key)))
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
                &env.config.chunk_key(&run.run_id, chunk.index, "bson"),
            )
            .await?;
        supplied.add_staged(schema, &staged)?;
    }
    Ok(supplied)
}

fn stale_name(stale: Stale) -> &'static str {
    match stale {
        Stale::Deactivate => "deactivate",
        Stale::Delete => "delete",
        Stale::Keep => "keep",
    }
}

/// The stored plan and what each of its chunks recorded (a chunk whose step failed left nothing).
async fn read_plan(
    env: &Env,
    run: &RunInput,
    plan: &PlanOutput,
) -> Result<(PlanRecord, Option<ReadAs>), ChuteError> {
    let stored: StoredPlan = env.blob.get_json(&run.bucket, &plan.plan_key).await?;
    let mut chunks = Vec::with_capacity(stored.chunks.len());
    for chunk in &stored.chunks {
        let record = |suffix| env.config.chunk_key(&run.run_id, chunk.index, suffix);
        let transformed: Option<Transformed> = env
            .blob
            .get_json_if_exists(&run.bucket, &record("transform.json"))
            .await?;
        let imported: Option<Imported> = env
            .blob
            .get_json_if_exists(&run.bucket, &record("import.json"))
            .await?;
        chunks.push(ChunkRecord {
            index: chunk.index,
            rows: chunk.rows,
            transformed,
            imported,
        });
    }
    let record = PlanRecord {
        header: stored.header,
        warnings: stored.warnings,
        validate_ms: plan.duration_ms,
        chunks,
    };
    Ok((record, stored.input.map(|i| i.read_as)))
}

async fn put_report(env: &Env, report: &Report) -> Result<(), ChuteError> {
    let body = serde_json::to_vec_pretty(report).expect("serialisable");
    env.blob
        .put(
            &report.source.bucket,
            &report.artifacts.report,
            body,
            "application/json",
        )
        .await
}

/// Presigned links in AWS (`CHUTE_PRESIGN_SECONDS` > 0), S3 locations otherwise.
async fn links(env: &Env, bucket: &str, artifacts: &Artifacts) -> Vec<Link> {
    let mut links = Vec::new();
    for (label, key) in [
        ("Report (JSON)", &artifacts.report),
        ("Rejected rows (CSV)", &artifacts.rejects),
        ("Summary", &artifacts.summary),
    ]
    .into_iter()
    .chain(
        artifacts
            .stale
            .as_ref()
            .map(|key| ("Stale products (CSV)", key)),
    ) {
        let url = match env.config.presign_seconds {
            0 => None,
            seconds => env.blob.presign_get(bucket, key, seconds).await,
        };
        links.push(Link {
            label: label.to_string(),
            name: format!("s3://{bucket}/{key}"),
            url,
        });
    }
    links
}

async fn send_email(env: &Env, report: &Report, html: String, text: String) -> EmailStatus {
    let to = env.config.routing.recipients(
        &env.config.incoming_prefix,
        &report.source.key,
        report.status,
    );
    let subject = report.subject();
    let Some(from) = env.config.email_from.clone().filter(|_| !to.is_empty()) else {
        return EmailStatus {
            status: EmailOutcome::Skipped,
            to,
            subject,
            message_id: None,
            error: Some("no sender or no recipients configured".into()),
        };
    };
    let email = Email {
        from,
        to: to.clone(),
        subject: subject.clone(),
        html,
        text,
    };
    match env.mailer.send(&email, env.config.email_attempts).await {
        Ok(id) => EmailStatus {
            status: EmailOutcome::Sent,
            to,
            subject,
            message_id: Some(id),
            error: None,
        },
        Err(e) => {
            tracing::warn!(error = %e, "email not sent; the report is stored");
            EmailStatus {
                status: EmailOutcome::Failed,
                to,
                subject,
                message_id: None,
                error: Some(e.to_string()),
            }
        }
    }
}
