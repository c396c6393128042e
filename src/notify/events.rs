//! EventBridge: the run-finished event ([`crate::run_event`]) on the account's default bus. The SDK
//! retries throttling and network errors; an entry the bus refuses is an error for the report to
//! log (like the email, the event never fails a run that is already reported).

use crate::error::ChuteError;
use crate::report::Report;
use crate::run_event::{RunFinished, DETAIL_TYPE, EVENT_SOURCE};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

/// Where run events go: anything that can take a [`RunFinished`] (the default bus in a function).
pub trait RunEvents {
    fn publish(
        &self,
        event: &RunFinished<'_>,
    ) -> impl std::future::Future<Output = Result<(), ChuteError>> + Send;
}

/// The account's default event bus (what the IAM policy grants `events:PutEvents` on).
#[derive(Clone)]
pub struct DefaultBus {
    client: aws_sdk_eventbridge::Client,
}

impl DefaultBus {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        DefaultBus {
            client: aws_sdk_eventbridge::Client::new(sdk),
        }
    }
}

impl RunEvents for DefaultBus {
    async fn publish(&self, event: &RunFinished<'_>) -> Result<(), ChuteError> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name("default")
            .source(EVENT_SOURCE)
            .detail_type(DETAIL_TYPE)
            .detail(event.detail())
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| crate::aws::classify("EventBridge PutEvents", e))?;
        // PutEvents answers 200 with per-entry errors (a throttled or refused entry).
        match out.entries().first() {
            Some(refused) if out.failed_entry_count() > 0 => Err(ChuteError::Transient(format!(
                "EventBridge PutEvents refused the run event: {}: {}",
                refused.error_code().unwrap_or("error"),
                refused.error_message().unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }
}

/// Publishes the run's event once its report is stored; a failure is logged, never raised: the
/// report and the email stand, and a retry of the step would send the email again.
pub async fn announce(bus: &impl RunEvents, report: &Report) {
    if let Err(e) = bus.publish(&RunFinished::of(report)).await {
        tracing::warn!(error = %e, "run-finished event not published; the report is stored");
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};

    use super::super::kept::KeepBody;
    use super::*;

    #[tokio::test]
    async fn one_entry_on_the_default_bus_with_the_runs_detail() {
        let kept = KeepBody::default();
        let config = aws_sdk_eventbridge::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("id", "secret", None, None, "test"))
            .interceptor(kept.clone())
            .build();
        let bus = DefaultBus {
            client: aws_sdk_eventbridge::Client::from_conf(config),
        };
        let report: Report = serde_json::from_value(serde_json::json!({
            "run_id": "r1", "schema": "products", "status": "PARTIAL", "staged": 0,
            "source": {"bucket": "b", "key": "incoming/a.csv", "etag": "e"},
            "rows": {"total": 2, "valid": 1, "rejected": 1, "duplicate": 0, "unprocessed": 0},
            "written": {"inserted": 1, "updated": 0, "unchanged": 0},
            "errors": [], "errors_total": 1, "errors_by_code": {}, "errors_by_column": {},
            "chunks": {"total": 1, "failed": []}, "warnings": [],
            "timings": {"started_at": "s", "finished_at": "f", "duration_ms": 1,
                        "steps": {"validate_ms": 0, "transform_ms": 0, "import_ms": 0, "slowest_chunk_ms": 0}},
            "artifacts": {"report": "reports/r1/report.json", "rejects": "r", "summary": "s"}
        }))
        .unwrap();
        let event = RunFinished::of(&report);
        assert!(
            bus.publish(&event).await.is_err(),
            "the request never leaves"
        );
        let body = kept.json();
        let entries = body["Entries"].as_array().expect("entries");
        assert_eq!(entries.len(), 1, "{body}");
        assert_eq!(entries[0]["EventBusName"], "default");
        assert_eq!(entries[0]["Source"], "chute");
        assert_eq!(entries[0]["DetailType"], "Run finished");
        let detail: serde_json::Value =
            serde_json::from_str(entries[0]["Detail"].as_str().unwrap()).unwrap();
        assert_eq!(detail["run_id"], "r1");
        assert_eq!(detail["status"], "PARTIAL");
        assert_eq!(detail["rows"]["rejected"], 1);
        assert_eq!(detail["report"], "s3://b/reports/r1/report.json");
    }
}
