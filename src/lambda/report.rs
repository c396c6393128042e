//! `report`: reads every chunk's recorded outcome, has [`super::stale`] mark a full refresh's
//! stale products (the run's last step, once every chunk is written), has
//! [`crate::report::assemble`] build the report, stores report.json, rejects.csv, summary.html and
//! stale.csv under `reports/<run>/`, records the run in MongoDB, emails it and publishes the
//! run-finished event ([`crate::run_event`]). The report is stored before the email is tried, and
//! an email or event failure is recorded or logged, never fatal.

use std::collections::HashSet;

use lambda_runtime::{Diagnostic, LambdaEvent};

use super::metrics::Metrics;
use super::{delta, stale, ReportInput, ReportOutput, RunInput, ValidateOutput};
use crate::app::Env;
use crate::error::ChuteError;
use crate::feed::{Mode, RunFeed};
use crate::input::ReadAs;
use crate::notify::Email;
use crate::render::{render, Link};
use crate::report::{
    assemble, failure_reason, Artifacts, ChunkRecord, DeltaReport, EmailOutcome, EmailStatus,
    FileObject, Planned, Report, RunRecord,
};
use crate::run::{ImportRecord, PlanRecord, TransformRecord};

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
    let keys = env.config.keys(&run.run_id);
    let mut artifacts = Artifacts {
        report: keys.report(),
        rejects: keys.rejects(),
        summary: keys.summary(),
        stale: None,
    };
    let mut record = RunRecord {
        run_id: run.run_id.clone(),
        source: FileObject {
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
        feed: RunFeed {
            source: run.feed_source.clone(),
            mode: run.mode,
        },
        dry_run: run.mode == Mode::DryRun,
        stale: None,
        delta: None,
    };
    let commands = match env.store().await {
        Ok(store) => store.commands(),
        Err(_) => 0,
    };
    // The snapshot and the digests, read once for the stale keys and the next snapshot. Transient
    // trouble retries the step; any other leaves the stale step unfinished and nothing committed.
    let loaded = match delta::load(env, &record).await {
        Ok(loaded) => loaded,
        Err(e @ ChuteError::Transient(_)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "the snapshot or a digest could not be read");
            None
        }
    };
    let mut stale_found = Vec::new();
    if let Some((stale, key, found)) = stale::mark(env, run, &record, loaded.as_ref()).await? {
        record.stale = Some(stale);
        artifacts.stale = key;
        record.artifacts = artifacts.clone();
        stale_found = found;
    }
    record.delta = finish_delta(env, run, &record, stale_found, commands, loaded).await;
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

/// Commits the run's snapshot (when it may: [`delta::commit`]), gives the source's lease back and
/// returns the report's delta section. A failure here never fails the report: a snapshot not
/// advanced only costs the next run more writes.
async fn finish_delta(
    env: &Env,
    run: &RunInput,
    record: &RunRecord,
    stale_found: Vec<String>,
    commands_before: u64,
    loaded: Option<delta::Loaded>,
) -> Option<DeltaReport> {
    let found = stale_found.len() as u64;
    let store = match env.store().await {
        Ok(store) => store,
        Err(e) => return delta::report(record, found, 0, format!("not advanced: {e}")),
    };
    let schema = env.config.schema(&run.schema);
    let has_plan = record.plan.as_ref().is_some_and(|p| p.delta.is_some());
    let snapshot = match &schema {
        Ok(schema) if has_plan => {
            let marked: HashSet<String> = match &record.stale {
                Some(stale) if delta::marked_all(stale) => stale_found.into_iter().collect(),
                _ => HashSet::new(),
            };
            delta::commit(env, store, record, schema, &marked, loaded)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "snapshot not committed");
                    format!("not advanced: {}", crate::error::redact(&e.to_string()))
                })
        }
        _ => String::new(),
    };
    // Once the snapshot is switched (never before: the next run must diff against it), the source
    // is free again, whatever became of this run (one that failed before its plan took it too).
    if let (true, Ok(schema)) = (run.mode != Mode::DryRun, &schema) {
        if let Err(e) = store
            .release_lease(&schema.collection, &run.feed_source, &run.run_id)
            .await
        {
            tracing::warn!(error = %e, "the source's lease was not released; it expires");
        }
    }
    let commands = store.commands().saturating_sub(commands_before);
    delta::report(record, found, commands, snapshot)
}

/// The stored plan and what each of its chunks recorded (a chunk whose step failed left nothing).
async fn read_plan(
    env: &Env,
    run: &RunInput,
    plan: &ValidateOutput,
) -> Result<(Planned, Option<ReadAs>), ChuteError> {
    let stored: PlanRecord = env.blob.get_json(&run.bucket, &plan.plan_key).await?;
    let keys = env.config.keys(&run.run_id);
    let mut chunks = Vec::with_capacity(stored.chunks.len());
    for chunk in &stored.chunks {
        let transformed: Option<TransformRecord> = env
            .blob
            .get_json_if_exists(&run.bucket, &keys.transform_record(chunk.index))
            .await?;
        let imported: Option<ImportRecord> = env
            .blob
            .get_json_if_exists(&run.bucket, &keys.import_record(chunk.index))
            .await?;
        chunks.push(ChunkRecord {
            index: chunk.index,
            rows: chunk.rows,
            transformed,
            imported,
        });
    }
    let record = Planned {
        header: stored.header,
        warnings: stored.warnings,
        continuation: stored.continuation,
        validate_ms: plan.duration_ms,
        chunks,
        delta: stored.delta,
        validate_commands: stored.commands,
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
