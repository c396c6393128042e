//! Faults survived, through the whole local pipeline. Each test asserts exact numbers afterwards.
//! Tests here stop servers of the shared local stack, so they run one at a time (a lock).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bson::{doc, Document};
use serde_json::Value;
use support::{root, unique};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn stack(command: &str) -> String {
    let out = Command::new(root().join("scripts/stack"))
        .arg(command)
        .output()
        .unwrap();
    assert!(
        out.status.success() || command == "status",
        "scripts/stack {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mongo_uri() -> String {
    let env = stack("env");
    let line = env
        .lines()
        .find(|l| l.contains("CHUTE_MONGODB_URI="))
        .unwrap();
    line.split_once('=')
        .unwrap()
        .1
        .trim_matches('\'')
        .to_string()
}

async fn count(prefix: &str) -> u64 {
    let client = mongodb::Client::with_uri_str(mongo_uri()).await.unwrap();
    let products = client.database("chute").collection::<Document>("products");
    products
        .count_documents(doc! {"sku": {"$regex": format!("^{prefix}-")}})
        .await
        .unwrap_or(0)
}

fn write_csv(name: &str, prefix: &str, rows: usize, price: impl Fn(usize) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("chute-fault-"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("sku,name,price,stock,category\n");
    for i in 0..rows {
        csv.push_str(&format!("{prefix}-{i:05},Item {i},{},{i},Cat\n", price(i)));
    }
    let path = dir.join(name);
    std::fs::write(&path, csv).unwrap();
    path
}

fn report_of(output: std::process::Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run-local failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

fn n(report: &Value, path: &str) -> u64 {
    report
        .pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} in {report}"))
}

/// Signals the stack's MongoDB (`-KILL` as a crash, `-TERM` as a shutdown).
fn stop_mongo(signal: &str) {
    let pid = std::fs::read_to_string(root().join(".dev/pids/mongo.pid")).unwrap();
    let sent = Command::new("kill")
        .args([signal, pid.trim()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// A run of `rows` new rows ended with each row inserted exactly once, whatever was retried.
async fn every_row_once(report: &Value, prefix: &str, rows: usize) {
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(n(report, "/rows/total"), rows as u64);
    assert_eq!(
        n(report, "/written/inserted"),
        rows as u64,
        "each row counted once across the retries: {report}"
    );
    assert_eq!(
        count(prefix).await,
        rows as u64,
        "no row lost, none duplicated"
    );
}

#[tokio::test]
async fn mongodb_killed_during_import_and_restarted_the_retry_finishes_exactly() {
    let _one = ONE_AT_A_TIME.lock().await;
    stack("up");
    let prefix = unique("F");
    let rows = 3000;
    let file = write_csv("outage.csv", &prefix, rows, |i| format!("{i}"));
    let run = start_run(&file, &["--chunk-bytes", "20000"]);
    // Wait until documents are arriving, then kill the server as a crash would.
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&prefix).await == 0 {
        assert!(Instant::now() < deadline, "the import never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_mongo("-KILL");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack("up"); // restarts what died: same port, same data
    let report = report_of(finish(run).await);
    every_row_once(&report, &prefix, rows).await;
}

#[tokio::test]
async fn a_corrected_file_dropped_again_writes_only_what_changed() {
    let _one = ONE_AT_A_TIME.lock().await;
    stack("up");
    let prefix = unique("R");
    let first = write_csv("catalogue.csv", &prefix, 200, |i| format!("{i}.50"));
    let out = Command::new(root().join("scripts/run-local"))
        .arg(&first)
        .args(["--chunk-bytes", "2000"])
        .output()
        .unwrap();
    assert_eq!(n(&report_of(out), "/written/inserted"), 200);
    let corrected = write_csv("catalogue.csv", &prefix, 205, |i| {
        if i % 50 == 0 {
            "1.00".into()
        } else {
            format!("{i}.50")
        }
    });
    let report = report_of(
        Command::new(root().join("scripts/run-local"))
            .arg(&corrected)
            .args(["--chunk-bytes", "2000"])
            .output()
            .unwrap(),
    );
    let written = (
        n(&report, "/written/inserted"),
        n(&report, "/written/updated"),
        n(&report, "/written/unchanged"),
    );
    assert_eq!(written, (5, 4, 196), "{report}");
    assert_eq!(count(&prefix).await, 205);
}

/// Runs `scripts/run-local` in the background; `spawn_blocking` on its output gives the result.
fn start_run(file: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(root().join("scripts/run-local"))
        .arg(file)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn finish(run: std::process::Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || run.wait_with_output().unwrap())
        .await
        .unwrap()
}

/// How many chunks the ledger records as imported for the run whose file name starts with `prefix`.
async fn finished_chunks(prefix: &str) -> usize {
    let client = mongodb::Client::with_uri_str(mongo_uri()).await.unwrap();
    let run = client
        .database("chute")
        .collection::<Document>("import_runs")
        .find_one(doc! {"_id": {"$regex": format!("^{prefix}-")}})
        .await
        .unwrap();
    run.and_then(|r| r.get_document("chunks").ok().map(Document::len))
        .unwrap_or(0)
}

#[tokio::test]
async fn an_import_process_killed_mid_chunk_is_retried_exactly() {
    let _one = ONE_AT_A_TIME.lock().await;
    stack("up");
    let prefix = unique("K");
    let rows = 3000;
    let file = write_csv("killed.csv", &prefix, rows, |i| format!("{i}"));
    let shim_lines_before = std::fs::read_to_string(root().join(".dev/logs/shim.log"))
        .map_or(0, |log| log.lines().count());
    let run = start_run(&file, &["--chunk-bytes", "20000"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&prefix).await == 0 {
        assert!(Instant::now() < deadline, "the import never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGKILL the import function's process (the child of `cargo lambda watch`) as a crashed
    // sandbox dies. Lambda then fails the invocation with Runtime.ExitError and starts a new
    // sandbox; watch does neither, so restart it: the shim turns the dropped invocations into
    // Runtime.ExitError, and Step Functions retries those chunks.
    let killed = Command::new("pkill")
        .args(["-KILL", "-x", "import"])
        .status()
        .unwrap();
    assert!(killed.success(), "an import process was running");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack("reload");
    let report = report_of(finish(run).await);
    let shim_log = std::fs::read_to_string(root().join(".dev/logs/shim.log")).unwrap();
    assert!(
        shim_log.lines().count() > shim_lines_before
            && shim_log
                .lines()
                .skip(shim_lines_before)
                .any(|l| l.contains("import/invocations: Runtime.ExitError")),
        "the killed invocation failed as Lambda reports a crash"
    );
    every_row_once(&report, &prefix, rows).await;
}

#[tokio::test]
async fn a_run_that_failed_part_way_resumes_without_redoing_finished_chunks() {
    let _one = ONE_AT_A_TIME.lock().await;
    stack("up");
    let prefix = unique("P");
    let rows = 3000;
    let file = write_csv(&format!("{prefix}.csv"), &prefix, rows, |i| format!("{i}"));
    // Two large chunks and a small last one, all imported at once: the small one finishes first
    // and MongoDB is killed while the large ones are still writing.
    let run = start_run(&file, &["--chunk-bytes", "60000"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while finished_chunks(&prefix).await == 0 {
        assert!(Instant::now() < deadline, "no chunk was ever imported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // MongoDB goes away for longer than the retries last: the Map fails, the report says so.
    // (SIGTERM: SecantusDB loses its latest writes on SIGKILL, which a journaled mongod does not.)
    stop_mongo("-TERM");
    let report = report_of(finish(run).await);
    assert_eq!(report["status"], "PARTIAL", "{report}");
    assert!(n(&report, "/rows/unprocessed") > 0, "{report}");
    let run_id = report["run_id"].as_str().unwrap().to_string();

    stack("up"); // MongoDB back, same data
    let finished = finished_chunks(&prefix).await;
    assert!(
        (1..3).contains(&finished),
        "{finished} of 3 chunks finished"
    );
    let resumed = Command::new(root().join("scripts/run-local"))
        .args(["--resume", &run_id])
        .output()
        .unwrap();
    let report = report_of(resumed);
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(n(&report, "/rows/total"), rows as u64);
    assert_eq!(n(&report, "/rows/unprocessed"), 0);
    assert_eq!(n(&report, "/written/inserted"), rows as u64, "{report}");
    assert_eq!(count(&prefix).await, rows as u64);
    // Every chunk the failed attempt finished was a no-op the second time.
    let log = std::fs::read_to_string(root().join(".dev/logs/lambda.log")).unwrap();
    let replayed = log
        .lines()
        .filter(|l| l.contains(&format!("run_id={run_id}")) && l.contains("chunk already imported"))
        .count();
    assert_eq!(replayed, finished, "finished chunks were not redone");
}
