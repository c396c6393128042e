//! `report`: gathers every chunk's outcome, writes report.json, rejects.csv and summary.html under
//! `reports/<run>/`, records the run in MongoDB, then emails it. The report is stored before the
//! email is tried, and an email failure is recorded in it, never fatal.

use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::transform::chunk_object;
use super::{
    diagnostic, emit_metrics, now_rfc3339, Env, Failure, ImportOutput, ReportInput, StoredPlan,
    TransformOutput,
};
use crate::error::ChuteError;
use crate::error::FileError;
use crate::notify::Email;
use crate::render::{render, Link};
use crate::report::{
    Artifacts, ChunkTally, EmailOutcome, EmailStatus, Report, ReportBuilder, Source, Status,
    StepTimings, Timings, TransformTally, WriteTally,
};

/// The small result the state machine branches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportOutput {
    pub status: Status,
    pub report_key: String,
    pub email: String,
}

pub async fn handle(
    env: &Env,
    event: LambdaEvent<ReportInput>,
) -> Result<ReportOutput, Diagnostic> {
    let input = event.payload;
    let span = tracing::info_span!("report", run_id = %input.run.run_id);
    async { run(env, &input).await.map_err(diagnostic) }
        .instrument(span)
        .await
}

/// The readable reason of a caught failure: a file error's message, or the error message inside
/// the Lambda error payload Step Functions puts in `Cause`.
pub fn failure_reason(failure: &Failure) -> String {
    let message = serde_json::from_str::<serde_json::Value>(&failure.cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| failure.cause.clone());
    match serde_json::from_str::<FileError>(&message) {
        Ok(file) => format!("{} ({})", file.message, file.code),
        Err(_) if message.is_empty() => failure.error.clone(),
        Err(_) => format!("{}: {}", failure.error, crate::error::redact(&message)),
    }
}

async fn run(env: &Env, input: &ReportInput) -> Result<ReportOutput, ChuteError> {
    let run = &input.run;
    let source = Source {
        bucket: run.bucket.clone(),
        key: run.key.clone(),
        etag: run.etag.clone(),
    };
    let mut builder = ReportBuilder::new(&run.run_id, source, &run.schema);
    let mut header = Vec::new();
    let mut steps = StepTimings::default();
    if let Some(plan) = &input.plan {
        steps.validate_ms = plan.duration_ms;
        let stored: StoredPlan = serde_json::from_slice(
            &env.blob.get(&run.bucket, &plan.plan_key).await?,
        )
        .map_err(|source| ChuteError::Unreadable {
            what: format!("plan {}", plan.plan_key),
            source,
        })?;
        builder.warnings(&stored.warnings);
        header = stored.header;
        for chunk in &stored.chunks {
            let mut tally = ChunkTally {
                index: chunk.index,
                rows: chunk.rows,
                ..ChunkTally::default()
            };
            let transformed = read_json::<TransformOutput>(
                env,
                &run.bucket,
                &env.config
                    .staging_key(&run.run_id, &chunk_object(chunk.index, "transform.json")),
            )
            .await?;
            let imported = read_json::<ImportOutput>(
                env,
                &run.bucket,
                &env.config
                    .staging_key(&run.run_id, &chunk_object(chunk.index, "import.json")),
            )
            .await?;
            if let (Some(t), Some(i)) = (&transformed, &imported) {
                steps.transform_ms += t.duration_ms;
                steps.import_ms += i.duration_ms;
                steps.slowest_chunk_ms = steps.slowest_chunk_ms.max(t.duration_ms + i.duration_ms);
                tally.transformed = Some(TransformTally {
                    valid: t.valid,
                    duplicate: t.duplicate,
                    rejected: t.rejected,
                });
                tally.written = Some(WriteTally {
                    inserted: i.inserted,
                    updated: i.updated,
                    unchanged: i.unchanged,
                    refused: i.refused,
                });
                for row in &t.rejected_rows {
                    builder.rejected_row(row);
                }
                for r in &i.refusals {
                    builder.refused(r.row, r.line, &r.message);
                }
            }
            builder.chunk(&tally);
        }
    }
    if let Some(failure) = &input.failure {
        builder.fail(failure_reason(failure));
    }
    let finished_at = now_rfc3339();
    let duration_ms = bson::DateTime::parse_rfc3339_str(&run.requested_at)
        .map(|start| {
            (bson::DateTime::now().timestamp_millis() - start.timestamp_millis()).max(0) as u64
        })
        .unwrap_or(0);
    let artifacts = Artifacts {
        report: env.config.report_key(&run.run_id, "report.json"),
        rejects: env.config.report_key(&run.run_id, "rejects.csv"),
        summary: env.config.report_key(&run.run_id, "summary.html"),
    };
    let timings = Timings {
        started_at: run.requested_at.clone(),
        finished_at,
        duration_ms,
        rows_per_second: 0,
        steps,
    };
    let (mut report, rejects) = builder.finish(timings, artifacts.clone(), &header);
    report.timings.rows_per_second = (report.rows.total * 1000)
        .checked_div(duration_ms)
        .unwrap_or(0);

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

    report.email = Some(send_email(env, &report, html, text).await);
    put_report(env, &report).await?;
    // The ledger copy is bookkeeping: with MongoDB down (often why a run failed) the stored report
    // and the email stand, and a retry here would send the email again.
    let ledger = async { env.store().await?.finish_run(&report).await };
    if let Err(e) = ledger.await {
        tracing::warn!(error = %e, "run not recorded in the import_runs ledger; the report is stored");
    }
    emit_metrics(
        "report",
        &run.run_id,
        &[
            ("RowsRead", report.rows.total as f64, "Count"),
            ("RowsRejected", report.rows.rejected as f64, "Count"),
            (
                "RowsWritten",
                (report.written.inserted + report.written.updated) as f64,
                "Count",
            ),
            (
                "Duration",
                report.timings.duration_ms as f64,
                "Milliseconds",
            ),
        ],
    );
    tracing::info!(
        status = report.status.as_str(),
        total = report.rows.total,
        rejected = report.rows.rejected,
        "run reported"
    );
    let email = report
        .email
        .as_ref()
        .map(|e| e.status.as_str().to_string())
        .unwrap_or_default();
    Ok(ReportOutput {
        status: report.status,
        report_key: artifacts.report,
        email,
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(
    env: &Env,
    bucket: &str,
    key: &str,
) -> Result<Option<T>, ChuteError> {
    match env.blob.get_if_exists(bucket, key).await? {
        Some(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ChuteError::Unreadable {
                    what: key.to_string(),
                    source,
                })
        }
        None => Ok(None),
    }
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
    ] {
        let url = if env.config.presign_seconds > 0 {
            let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(
                env.config.presign_seconds,
            ))
            .ok();
            match config {
                Some(c) => env
                    .blob
                    .client()
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .presigned(c)
                    .await
                    .ok()
                    .map(|p| p.uri().to_string()),
                None => None,
            }
        } else {
            None
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
