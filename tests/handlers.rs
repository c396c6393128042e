//! Each Lambda handler called directly with a fixture (`LambdaEvent::new`), against the local
//! stack's S3, SES, Step Functions (moto) and MongoDB (SecantusDB).

mod support;

use std::sync::OnceLock;

use chute::app::{Env, RunInput};
use chute::lambda::{self, ChunkInput, ReportInput};
use chute::run::{ImportProgress, ImportRecord, TransformRecord};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use support::{root, unique};

/// The tests' stack, with this process pointed at it as the stack's functions are, but writing to
/// a database of this suite's own.
fn stack() -> &'static support::Stack {
    static READY: OnceLock<()> = OnceLock::new();
    let stack = support::stack();
    READY.get_or_init(|| {
        stack.export();
        std::env::set_var("CHUTE_DATABASE", "chute_handlers");
        std::env::set_var("CHUTE_EMAIL_ATTEMPTS", "1");
    });
    stack
}

async fn env() -> Env {
    stack();
    Env::load().await.unwrap()
}

fn event<T>(payload: T) -> LambdaEvent<T> {
    LambdaEvent::new(payload, Context::default())
}

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(root().join("events").join(name)).unwrap()).unwrap()
}

async fn upload(env: &Env, key: &str, csv: &str) -> String {
    env.blob
        .put(stack().bucket(), key, csv.as_bytes().to_vec(), "text/csv")
        .await
        .unwrap();
    env.blob.head(stack().bucket(), key).await.unwrap().etag
}

/// What the state machine's Catch hands the Report task.
fn failure(error_type: &str, message: &str) -> lambda::Failure {
    lambda::Failure {
        error: error_type.into(),
        cause: serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string(),
    }
}

/// The Map's items as Validate stored them for the ItemReader.
async fn chunks(env: &Env, plan: &lambda::ValidateOutput) -> Vec<chute::records::ChunkPlan> {
    let items: Vec<chute::records::ChunkPlan> = env
        .blob
        .get_json(stack().bucket(), &plan.chunks_key)
        .await
        .unwrap();
    assert_eq!(items.len() as u64, plan.chunk_count);
    items
}

async fn stored_report(env: &Env, key: &str) -> Value {
    serde_json::from_slice(&env.blob.get(stack().bucket(), key).await.unwrap()).unwrap()
}

fn run_input(run_id: &str, key: &str, etag: &str) -> RunInput {
    let mut input: RunInput = serde_json::from_value(fixture("validate.json")).unwrap();
    input.run_id = run_id.to_string();
    input.key = key.to_string();
    input.etag = etag.to_string();
    input.requested_at = chute::clock::now_rfc3339();
    // Its own source: validate takes the source's lease, which only a report gives back.
    input.feed_source = unique("h");
    input
}

/// Validates `input`, which must refuse the file as invalid, then reports the run: the refusal and
/// the stored report's reason (the run must be FAILED).
async fn refused_and_reported(env: &Env, input: RunInput) -> (lambda_runtime::Diagnostic, String) {
    let err = lambda::validate::handle(env, event(input.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Chute.InvalidFile");
    let out = lambda::report::handle(
        env,
        event(ReportInput {
            run: input,
            plan: None,
            failure: Some(failure(&err.error_type, &err.error_message)),
        }),
    )
    .await
    .unwrap();
    assert_eq!(out.status, chute::report::Status::Failed);
    let reason = stored_report(env, &out.report_key).await["reason"]
        .as_str()
        .unwrap()
        .to_string();
    (err, reason)
}

/// The first chunk of `plan`, as the Map hands it to transform.
async fn first_chunk(env: &Env, input: &RunInput, plan: &lambda::ValidateOutput) -> ChunkInput {
    ChunkInput {
        run_id: input.run_id.clone(),
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        etag: input.etag.clone(),
        schema: input.schema.clone(),
        feed_source: input.feed_source.clone(),
        mode: input.mode,
        plan_key: plan.plan_key.clone(),
        chunk: chunks(env, plan).await[0],
        import_budget_ms: None,
    }
}

/// `rows` valid products keyed `RUN_ID-NNN`, uploaded, validated as one chunk and transformed.
async fn one_transformed_chunk(env: &Env, run_id: &str, rows: u64) -> TransformRecord {
    let key = format!("incoming/{run_id}.csv");
    let mut csv = String::from("sku,name,price,stock,category\n");
    for i in 0..rows {
        csv.push_str(&format!("{run_id}-{i:03},Lamp {i},{i},1,Home\n"));
    }
    let etag = upload(env, &key, &csv).await;
    let input = run_input(run_id, &key, &etag);
    let plan = lambda::validate::handle(env, event(input.clone()))
        .await
        .unwrap();
    assert_eq!(plan.chunk_count, 1);
    let chunk = first_chunk(env, &input, &plan).await;
    let transformed = lambda::transform::handle(env, event(chunk)).await.unwrap();
    assert_eq!(transformed.counts.valid, rows);
    transformed
}

#[tokio::test]
async fn trigger_starts_one_execution_per_object_version() {
    let env = env().await;
    let key = format!("incoming/{}.csv", unique("trigger"));
    upload(
        &env,
        &key,
        "sku,name,price,stock,category\nA,Lamp,1,1,Home\n",
    )
    .await;
    let mut s3_event = fixture("trigger.json");
    s3_event["Records"][0]["s3"]["object"]["key"] = key.clone().into();
    s3_event["Records"][0]["s3"]["object"]["eTag"] = Value::Null;
    // Two deliveries at once, then a third later, and the EventBridge form of the same upload.
    let (a, b) = tokio::join!(
        lambda::trigger::handle(&env, event(s3_event.clone())),
        lambda::trigger::handle(&env, event(s3_event.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.started[0].run_id, b.started[0].run_id);
    assert_eq!(
        [a.started[0].new, b.started[0].new]
            .iter()
            .filter(|n| **n)
            .count(),
        1,
        "exactly one execution: {a:?} {b:?}"
    );
    let again = lambda::trigger::handle(&env, event(s3_event))
        .await
        .unwrap();
    assert!(!again.started[0].new);
    let mut bridge = fixture("trigger-eventbridge.json");
    bridge["detail"]["object"]["key"] = key.clone().into();
    bridge["detail"]["object"]["etag"] = Value::Null;
    let via_bridge = lambda::trigger::handle(&env, event(bridge)).await.unwrap();
    assert_eq!(via_bridge.started[0].run_id, a.started[0].run_id);
    assert!(!via_bridge.started[0].new);

    let mut other = fixture("trigger.json");
    other["Records"][0]["s3"]["object"]["key"] = "incoming/notes.pdf".into();
    let ignored = lambda::trigger::handle(&env, event(other)).await.unwrap();
    assert_eq!(
        (ignored.started.len(), ignored.ignored.as_slice()),
        (0, ["incoming/notes.pdf".to_string()].as_slice())
    );
}

#[tokio::test]
async fn validate_transform_import_report_chain() {
    let env = env().await;
    let run_id = unique("chain");
    let key = format!("incoming/{run_id}.csv");
    let csv = format!("sku,name,price,stock,category\n{run_id}-1,Lamp,1,1,Home\n{run_id}-2,,1,1,Home\n{run_id}-1,Lamp 2,2,1,Home\n");
    let etag = upload(&env, &key, &csv).await;
    let input = run_input(&run_id, &key, &etag);

    let plan = lambda::validate::handle(&env, event(input.clone()))
        .await
        .unwrap();
    assert_eq!(
        (
            plan.rows,
            plan.chunk_count,
            plan.duplicate_keys,
            plan.superseded_rows
        ),
        (3, 1, 1, 1)
    );

    let chunk = first_chunk(&env, &input, &plan).await;
    let transformed: TransformRecord = lambda::transform::handle(&env, event(chunk)).await.unwrap();
    assert_eq!(
        (
            transformed.counts.valid,
            transformed.counts.rejected,
            transformed.counts.duplicate
        ),
        (1, 1, 1)
    );
    assert!(
        transformed.rejected_rows.is_empty(),
        "the returned copy stays small"
    );

    let imported = lambda::import::handle(&env, event(transformed.clone()))
        .await
        .unwrap();
    assert_eq!(
        (
            imported.counts.inserted,
            imported.counts.updated,
            imported.counts.unchanged,
            imported.replayed
        ),
        (1, 0, 0, false)
    );
    let replay = lambda::import::handle(&env, event(transformed))
        .await
        .unwrap();
    assert!(
        replay.replayed,
        "a re-invoked finished chunk changes nothing"
    );
    assert_eq!(
        (
            replay.counts.inserted,
            replay.counts.updated,
            replay.counts.unchanged
        ),
        (1, 0, 0)
    );

    let report_input = ReportInput {
        run: input,
        plan: Some(plan),
        failure: None,
    };
    let out = lambda::report::handle(&env, event(report_input))
        .await
        .unwrap();
    assert_eq!(out.status, chute::report::Status::Partial);
    assert_eq!(out.email, "sent");
    let report = stored_report(&env, &out.report_key).await;
    assert_eq!(
        report["rows"],
        serde_json::json!({"total": 3, "valid": 1, "rejected": 1, "duplicate": 1, "unprocessed": 0})
    );
    support::accounting_holds(&report);
    let run = env
        .store()
        .await
        .unwrap()
        .run(&run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.get_str("status").unwrap(), "PARTIAL");
}

#[tokio::test]
async fn validate_refuses_a_bad_file_with_the_invalid_file_error() {
    let env = env().await;
    let run_id = unique("invalid");
    let key = format!("incoming/{run_id}.csv");
    let etag = upload(&env, &key, "sku,name,price\nA,B,1\n").await;
    let err = lambda::validate::handle(&env, event(run_input(&run_id, &key, &etag)))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Chute.InvalidFile");
    let file_error: chute::FileError = serde_json::from_str(&err.error_message).unwrap();
    assert_eq!(file_error.code, "missing_column");
}

/// Validate's memory sets the key ceiling (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`); here it is 2 keys.
#[tokio::test]
async fn a_file_past_the_key_ceiling_ends_in_a_failed_report_naming_the_limit() {
    let mut env = env().await;
    env.config.plan.max_keys = 2;
    let run_id = unique("keys");
    let key = format!("incoming/{run_id}.csv");
    let etag = upload(
        &env,
        &key,
        "sku,name,price,stock,category\nA,L,1,1,H\nB,L,1,1,H\nC,L,1,1,H\n",
    )
    .await;
    let input = run_input(&run_id, &key, &etag);
    let (_, reason) = refused_and_reported(&env, input).await;
    assert!(
        reason.contains("past 2 keys")
            && reason.contains("ValidateMemoryMb")
            && reason.ends_with("(too_many_keys)"),
        "{reason}"
    );
}

/// An unknown `chute-mode` must neither be guessed (a typo of `dry-run` would write) nor lost (no
/// report): the run starts, validate refuses the file, the report says why.
#[tokio::test]
async fn metadata_naming_an_unknown_mode_ends_in_a_failed_report_naming_the_value() {
    let env = env().await;
    let run_id = unique("badmode");
    let key = format!("incoming/erp/{run_id}.csv");
    upload(&env, &key, "sku,name,price,stock,category\nA,L,1,1,H\n").await;
    let mut info = env.blob.head(stack().bucket(), &key).await.unwrap();
    info.metadata.insert("chute-mode".into(), "dryrun".into());
    let object = chute::app::ObjectRef {
        bucket: stack().bucket().into(),
        key: key.clone(),
        etag: None,
        version_id: None,
    };
    let input = chute::app::run_input(&env.config, &object, &info);
    assert_eq!(
        (input.feed_source.as_str(), input.mode),
        ("erp", chute::feed::Mode::DryRun)
    );
    let (err, reason) = refused_and_reported(&env, input).await;
    let file_error: chute::FileError = serde_json::from_str(&err.error_message).unwrap();
    assert_eq!(file_error.code, "settings");
    assert!(
        reason.contains("chute-mode `dryrun` is not a mode"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_file_changed_during_the_run_is_not_read_half_old_half_new() {
    let env = env().await;
    let run_id = unique("changed");
    let key = format!("incoming/{run_id}.csv");
    let etag = upload(&env, &key, "sku,name,price,stock,category\nA,B,1,1,C\n").await;
    upload(&env, &key, "sku,name,price,stock,category\nA,B,2,1,C\n").await;
    let err = lambda::validate::handle(&env, event(run_input(&run_id, &key, &etag)))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Chute.Fatal", "{}", err.error_message);
    assert!(
        err.error_message.contains("PreconditionFailed"),
        "{}",
        err.error_message
    );
}

#[tokio::test]
async fn a_failed_validation_still_gets_a_report_and_an_email_failure_is_recorded() {
    let mut env = env().await;
    env.config.email_from = Some("nobody@unverified.invalid".into());
    let run_id = unique("failed");
    let key = format!("incoming/{run_id}.csv");
    let input = run_input(&run_id, &key, "0");
    let failure = failure(
        "Chute.InvalidFile",
        r#"{"code":"empty_file","message":"the file is empty: it has no header row"}"#,
    );
    let out = lambda::report::handle(
        &env,
        event(ReportInput {
            run: input,
            plan: None,
            failure: Some(failure),
        }),
    )
    .await
    .unwrap();
    assert_eq!(out.status, chute::report::Status::Failed);
    assert_eq!(
        out.email, "failed",
        "SES refused the unverified sender; the run still ends"
    );
    let report = stored_report(&env, &out.report_key).await;
    assert_eq!(
        report["reason"],
        "the file is empty: it has no header row (empty_file)"
    );
    assert_eq!(report["email"]["status"], "failed");
    assert!(
        report["email"]["error"].as_str().unwrap().contains("SES"),
        "{report}"
    );
}

#[tokio::test]
async fn the_report_stands_and_is_sent_once_when_mongodb_is_down() {
    let mut env = env().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.config.mongodb_uri = Some(format!("mongodb://127.0.0.1:{port}/?directConnection=true"));
    let run_id = unique("nodb");
    let key = format!("incoming/{run_id}.csv");
    let failure = failure("Chute.Transient", "MongoDB unavailable");
    // Ok, not Err: an error here would make Step Functions retry the Report task and send the
    // email once per attempt.
    let out = lambda::report::handle(
        &env,
        event(ReportInput {
            run: run_input(&run_id, &key, "0"),
            plan: None,
            failure: Some(failure),
        }),
    )
    .await
    .unwrap();
    assert_eq!(out.status, chute::report::Status::Failed);
    assert_eq!(out.email, "sent");
    let report = stored_report(&env, &out.report_key).await;
    assert_eq!(report["run_id"], run_id.as_str());
    let file = format!("{run_id}.csv");
    let sent: Vec<_> = stack()
        .sent_emails()
        .into_iter()
        .filter(|m| m["subject"].as_str().is_some_and(|s| s.contains(&file)))
        .collect();
    assert_eq!(sent.len(), 1, "one email for the run: {sent:#?}");
}

#[tokio::test]
async fn staged_parts_become_one_object_and_the_import_reads_it_back_as_a_stream() {
    use tokio::io::AsyncReadExt;
    let env = env().await;
    // Zero parts, one part (plain PUT) and three parts (multipart: all but the last ≥ 5 MiB).
    let big = |fill: u8, len: usize| vec![fill; len];
    let cases = [
        vec![],
        vec![b"one".to_vec()],
        vec![big(1, 5 << 20), big(2, (5 << 20) + 7), b"tail".to_vec()],
    ];
    for parts in cases {
        let key = format!("staging/{}/parts.bson", unique("parts"));
        let (sender, received) = tokio::sync::mpsc::channel(1);
        let expected = parts.concat();
        let producer = tokio::spawn(async move {
            for part in parts {
                sender.send(part).await.unwrap();
            }
        });
        let size = env
            .blob
            .put_parts(stack().bucket(), &key, "application/bson", received)
            .await
            .unwrap();
        producer.await.unwrap();
        assert_eq!(size, expected.len() as u64);
        let mut read = Vec::new();
        env.blob
            .reader(stack().bucket(), &key)
            .await
            .unwrap()
            .read_to_end(&mut read)
            .await
            .unwrap();
        assert!(read == expected, "{} bytes read back", read.len());
    }
}

/// An invocation whose deadline is `SAFETY_MARGIN` plus a millisecond away: its budget is spent at
/// once, so it writes exactly one batch and stops (as a slow cluster near Lambda's 15 minutes
/// would).
fn near_deadline<T>(payload: T) -> LambdaEvent<T> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut context = Context::default();
    context.deadline = now + lambda::import::SAFETY_MARGIN.as_millis() as u64 + 1;
    LambdaEvent::new(payload, context)
}

#[tokio::test]
async fn a_chunk_imports_over_several_invocations_with_exact_counts_and_no_document_written_twice()
{
    let run_id = unique("budget");
    let (env, sent) = observed_env(&run_id, 7).await;
    let rows = 40;
    let transformed = one_transformed_chunk(&env, &run_id, rows).await;

    // 40 documents in batches of 7: six invocations, each one batch further.
    let store = env.store().await.unwrap();
    let mut outputs = Vec::new();
    loop {
        let out = lambda::import::handle(&env, near_deadline(transformed.clone()))
            .await
            .unwrap();
        let done = out.finished;
        outputs.push(out);
        if outputs.len() == 2 {
            // The second invocation's ledger record is lost (a crash after its writes): the next
            // one resumes where the first stopped, recounts that batch and writes nothing twice.
            let first = &outputs[0];
            let second = store
                .chunk_progress(&run_id, transformed.chunk)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((second.documents, second.invocations), (14, 2));
            let first_progress = ImportProgress {
                documents: first.position,
                bytes: bytes_of_first(&env, &transformed, 7).await,
                counts: first.counts,
                invocations: 1,
                ..second
            };
            store
                .record_progress(&run_id, transformed.chunk, &first_progress)
                .await
                .unwrap();
        }
        if done {
            break;
        }
        assert!(
            outputs.len() < 20,
            "the import never finished: {outputs:#?}"
        );
    }
    let positions: Vec<u64> = outputs.iter().map(|o| o.position).collect();
    assert_eq!(positions, [7, 14, 14, 21, 28, 35, 40], "{outputs:#?}");
    assert!(outputs[..6].iter().all(|o| !o.finished));
    let last = outputs.last().unwrap();
    assert_eq!(
        (
            last.counts.inserted,
            last.counts.updated,
            last.counts.unchanged,
            last.counts.refused
        ),
        (rows, 0, 0, 0),
        "exact counts over the invocations"
    );
    assert_eq!(
        last.invocations, 6,
        "the lost record's invocation is not counted"
    );

    let mut written = sent.lock().unwrap().clone();
    let sent_count = written.len();
    written.sort();
    written.dedup();
    assert_eq!(
        (sent_count, written.len()),
        (rows as usize, rows as usize),
        "every document sent to MongoDB once"
    );
    let stored = store
        .database()
        .collection::<bson::Document>("products")
        .count_documents(bson::doc! {"sku": {"$regex": format!("^{run_id}")}})
        .await
        .unwrap();
    assert_eq!(stored, rows);
    let record: ImportRecord = env
        .blob
        .get_json(
            stack().bucket(),
            &env.config.keys(&run_id).import_record(transformed.chunk),
        )
        .await
        .unwrap();
    assert_eq!((record.counts.inserted, record.finished), (rows, true));

    let replay = lambda::import::handle(&env, near_deadline(transformed))
        .await
        .unwrap();
    assert!(replay.replayed && replay.finished);
    assert_eq!(
        sent.lock().unwrap().len(),
        rows as usize,
        "the replay wrote nothing"
    );
}

/// An `Env` whose store writes `batch` documents a command and records the sku of every document
/// it sends to be written (inserted whole or `$set`) whose sku starts with `prefix`.
async fn observed_env(
    prefix: &str,
    batch: usize,
) -> (Env, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use chute::store::{Store, StoreConfig};
    use mongodb::event::command::CommandEvent;
    use std::sync::{Arc, Mutex};

    let env = env().await;
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = sent.clone();
    let prefix = prefix.to_string();
    let mut config = StoreConfig::new(
        stack().get("CHUTE_MONGODB_URI"),
        std::env::var("CHUTE_DATABASE").unwrap(),
    );
    config.batch_size = batch;
    config.command_events = Some(std::sync::Arc::new(move |event: CommandEvent| {
        let CommandEvent::Started(started) = event else {
            return;
        };
        let docs: Vec<bson::Document> = match started.command_name.as_str() {
            "insert" => started
                .command
                .get_array("documents")
                .map(|a| a.iter().filter_map(|d| d.as_document().cloned()).collect())
                .unwrap_or_default(),
            "update" => started
                .command
                .get_array("updates")
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_document()?.get_document("q").ok().cloned())
                        .collect()
                })
                .unwrap_or_default(),
            _ => return,
        };
        let mut seen = seen.lock().unwrap();
        for doc in docs {
            if let Ok(sku) = doc.get_str("sku") {
                if sku.starts_with(&prefix) {
                    seen.push(sku.to_string());
                }
            }
        }
    }));
    assert!(env.use_store(Store::connect(&config).await.unwrap()));
    (env, sent)
}

/// The staged bytes of the chunk's first `documents` documents.
async fn bytes_of_first(env: &Env, transformed: &TransformRecord, documents: usize) -> u64 {
    let staged = env
        .blob
        .get(stack().bucket(), &transformed.staged_key)
        .await
        .unwrap();
    let docs = chute::store::split_staged(&staged).unwrap();
    docs[..documents]
        .iter()
        .map(|d| d.as_bytes().len() as u64)
        .sum()
}

#[tokio::test]
async fn a_staged_file_changed_between_invocations_restarts_the_chunk_with_exact_counts() {
    let run_id = unique("restaged");
    let (env, sent) = observed_env(&run_id, 5).await;
    let rows = 20;
    let transformed = one_transformed_chunk(&env, &run_id, rows).await;
    let first = lambda::import::handle(&env, near_deadline(transformed.clone()))
        .await
        .unwrap();
    assert_eq!((first.position, first.finished), (5, false));
    // The staged file is replaced by one with the same documents in the opposite order: the
    // recorded byte offset means nothing in it, so the import must start over.
    let staged = env
        .blob
        .get(stack().bucket(), &transformed.staged_key)
        .await
        .unwrap();
    let reversed: Vec<u8> = chute::store::split_staged(&staged)
        .unwrap()
        .iter()
        .rev()
        .flat_map(|d| d.as_bytes().to_vec())
        .collect();
    env.blob
        .put(
            stack().bucket(),
            &transformed.staged_key,
            reversed,
            "application/bson",
        )
        .await
        .unwrap();
    let mut positions = vec![first.position];
    let last = loop {
        let out = lambda::import::handle(&env, near_deadline(transformed.clone()))
            .await
            .unwrap();
        positions.push(out.position);
        if out.finished {
            break out;
        }
        assert!(positions.len() < 20, "never finished: {positions:?}");
    };
    assert_eq!(positions, [5, 5, 10, 15, 20]);
    assert_eq!(
        (
            last.counts.inserted,
            last.counts.updated,
            last.counts.unchanged,
            last.invocations
        ),
        (rows, 0, 0, 5)
    );
    let mut written = sent.lock().unwrap().clone();
    written.sort();
    written.dedup();
    assert_eq!(
        (sent.lock().unwrap().len(), written.len()),
        (rows as usize, rows as usize),
        "the first batch was recounted, not written again"
    );
}
