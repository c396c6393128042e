//! The run-finished event end to end: the report function publishes it on the default bus (moto's
//! EventBridge, reached through `AWS_ENDPOINT_URL`), the stack's rule delivers it to a log group
//! (`scripts/stack_tools.py provision`), and each run, SUCCEEDED or FAILED, has exactly one event
//! carrying its report's status, counts and location.

#[path = "support/run.rs"]
mod run;
mod support;

use run::{documents_in, n, run_local, Run};
use serde_json::Value;
use support::{stack, unique};

/// The events delivered for `run_id`.
fn events_of(run_id: &str) -> Vec<Value> {
    stack()
        .run_events()
        .into_iter()
        .filter(|e| e["detail"]["run_id"] == run_id)
        .collect()
}

/// The one event of `run`, checked against its report as stored (`--out` has S3's copy).
fn the_event_of(run: &Run) -> Value {
    let stored: Value =
        serde_json::from_slice(&std::fs::read(run.out.join("report.json")).unwrap()).unwrap();
    let report = &stored;
    assert_eq!(report["run_id"], run.report["run_id"]);
    let run_id = report["run_id"].as_str().unwrap();
    let events = events_of(run_id);
    assert_eq!(events.len(), 1, "one event per run: {events:#?}");
    let event = events.into_iter().next().unwrap();
    assert_eq!(event["source"], "chute");
    assert_eq!(event["detail-type"], "Run finished");
    let detail = &event["detail"];
    assert_eq!(detail["status"], report["status"]);
    assert_eq!(detail["rows"], report["rows"]);
    assert_eq!(detail["written"], report["written"]);
    assert_eq!(detail["errors_total"], report["errors_total"]);
    assert_eq!(detail["source"], report["feed"]["source"]);
    let bucket = report["source"]["bucket"].as_str().unwrap();
    assert_eq!(
        detail["file"],
        format!(
            "s3://{bucket}/{}",
            report["source"]["key"].as_str().unwrap()
        )
    );
    assert_eq!(
        detail["report"],
        format!(
            "s3://{bucket}/{}",
            report["artifacts"]["report"].as_str().unwrap()
        )
    );
    event
}

#[tokio::test]
async fn finished_runs_publish_one_event_each_with_their_counts() {
    let p = unique("EV");
    let run = run_local(
        "events-ok.csv",
        format!(
            "sku,name,price,stock,category\n{p}-1,Lamp,5,1,Home\n{p}-2,Desk,90,2,Office\n{p}-3,Bad,x,2,Office\n"
        ),
        &["--source", "erp"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "PARTIAL");
    let event = the_event_of(&run);
    assert_eq!(event["detail"]["source"], "erp");
    assert_eq!(n(&event, "/detail/rows/rejected"), 1);
    assert_eq!(
        n(&event, "/detail/written/inserted"),
        documents_in("products", &p).await.len() as u64
    );

    let clean = run_local(
        "events-clean.csv",
        format!("sku,name,price,stock,category\n{p}-4,Shelf,30,1,Home\n"),
        &[],
    );
    assert_eq!(clean.report["status"], "SUCCEEDED", "{}", clean.stderr);
    assert_eq!(n(&the_event_of(&clean), "/detail/written/inserted"), 1);
}

#[tokio::test]
async fn a_failed_run_publishes_one_event_with_its_reason() {
    let p = unique("EF");
    let run = run_local(
        "events-failed.csv",
        format!("sku,name,price,category\n{p}-1,Lamp,5,Home\n"),
        &["--source", "erp"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.report["status"], "FAILED");
    let event = the_event_of(&run);
    assert_eq!(event["detail"]["reason"], run.report["reason"]);
    assert_eq!(n(&event, "/detail/written/inserted"), 0);
    assert!(documents_in("products", &p).await.is_empty());
}
