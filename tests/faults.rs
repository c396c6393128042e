//! Faults survived, through the whole local pipeline (the tests' own stack). Each test arranges its
//! fault on an observed event, checks the fault landed where it meant it to, and asserts exact
//! numbers afterwards. Tests here stop processes of the stack, so they run one at a time (a lock);
//! they signal exactly the processes the stack recorded, never a process name.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use bson::{doc, Bson, Document};
use serde_json::Value;
use support::{accounting_holds, stack, unique, Stack};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let report: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    accounting_holds(&report);
    report
}

fn n(report: &Value, path: &str) -> u64 {
    report
        .pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} in {report}"))
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
        stack().count(&format!("{prefix}-")).await,
        rows as u64,
        "no row lost, none duplicated"
    );
}

/// Runs `scripts/run-local` in the background; `finish` gives its output.
fn start_run(file: &std::path::Path, args: &[&str]) -> std::process::Child {
    Stack::script("run-local")
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

/// How many chunks the ledger records as imported (`progress.<chunk>.finished`) for the run whose
/// file name starts with `prefix`.
async fn finished_chunks(prefix: &str) -> usize {
    let run = stack()
        .database()
        .await
        .collection::<Document>("import_runs")
        .find_one(doc! {"_id": {"$regex": format!("^{prefix}-")}})
        .await
        .unwrap();
    let Some(progress) = run.and_then(|r| r.get_document("progress").ok().cloned()) else {
        return 0;
    };
    progress
        .values()
        .filter_map(Bson::as_document)
        .filter(|chunk| chunk.get_bool("finished") == Ok(true))
        .count()
}

/// Freezes (SIGSTOP) every running process of `function` and returns their pid names, for the
/// caller to let go (`thaw`).
fn freeze(function: &str) -> Vec<String> {
    let processes = stack().processes(function);
    for p in &processes {
        stack().signal(&p.pid_name, "-STOP");
    }
    processes.into_iter().map(|p| p.pid_name).collect()
}

fn thaw(frozen: &[String]) {
    for name in frozen {
        stack().signal(name, "-CONT");
    }
}

/// Waits until `ready` holds, then freezes the import function's processes (SIGSTOP) while one of
/// them holds an invocation, so nothing they do changes the state the caller reads next until the
/// caller lets them go (`thaw`). Imports caught between two invocations are let go and caught
/// again later. (The pool may start another process meanwhile; it works on another chunk.)
async fn freeze_import_mid_run<F, Fut>(ready: F) -> Vec<String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if !ready().await {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        let frozen = freeze("import");
        if stack()
            .processes("import")
            .iter()
            .any(|p| frozen.contains(&p.pid_name) && p.inflight.is_object())
        {
            return frozen;
        }
        thaw(&frozen);
    }
}

/// Lines the shim logged after `from` (its log only grows).
fn shim_lines_since(from: usize) -> Vec<String> {
    stack()
        .log("shim")
        .lines()
        .skip(from)
        .map(str::to_string)
        .collect()
}

/// Kills MongoDB, lets the `frozen` import go on into the dead server, waits until the shim logs
/// the import of the run of file `<prefix>.csv` failing transiently, and brings MongoDB back (same
/// port, same data) for the retry.
async fn kill_mongodb_until_the_import_fails(frozen: &[String], shim_from: usize, prefix: &str) {
    stack().signal("mongo", "-KILL");
    thaw(frozen);
    let run_tag = format!("run={prefix}-");
    loop {
        let failed = shim_lines_since(shim_from)
            .iter()
            .any(|l| l.contains("import/invocations: Chute.Transient") && l.contains(&run_tag));
        if failed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Stack::up();
}

#[tokio::test]
async fn mongodb_killed_during_import_and_restarted_the_retry_finishes_exactly() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    let prefix = unique("F");
    let rows = 3000;
    let file = write_csv(&format!("{prefix}.csv"), &prefix, rows, |i| format!("{i}"));
    let shim_from = stack().log("shim").lines().count();
    let run = start_run(&file, &["--chunk-bytes", "20000"]);
    // Documents are arriving and the import holds a chunk: freeze it, see what is written, crash
    // MongoDB, let the import go on into the dead server.
    let frozen =
        freeze_import_mid_run(|| async { stack().count(&format!("{prefix}-")).await > 0 }).await;
    let written = stack().count(&format!("{prefix}-")).await;
    assert!(
        written < rows as u64,
        "rows were still unwritten when MongoDB was killed ({written} of {rows})"
    );
    kill_mongodb_until_the_import_fails(&frozen, shim_from, &prefix).await;
    let report = report_of(finish(run).await);
    every_row_once(&report, &prefix, rows).await;
}

#[tokio::test]
async fn a_corrected_file_dropped_again_writes_only_what_changed() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    let prefix = unique("R");
    let first = write_csv("catalogue.csv", &prefix, 200, |i| format!("{i}.50"));
    let out = Stack::script("run-local")
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
        Stack::script("run-local")
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
    // 5 new rows; rows 0, 50, 100, 150 repriced; the other 196 as stored.
    assert_eq!(written, (5, 4, 196), "{report}");
    assert_eq!(stack().count(&format!("{prefix}-")).await, 205);
}

#[tokio::test]
async fn an_import_process_killed_mid_chunk_is_retried_exactly() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    let prefix = unique("K");
    let source = unique("killed");
    let rows = 3000;
    let file = write_csv(&format!("{prefix}.csv"), &prefix, rows, |i| format!("{i}"));
    let shim_from = stack().log("shim").lines().count();
    // The shim holds the import's first answer until its process exits: the kill lands after the
    // handler finished a chunk and before Lambda heard of it, the invocation is lost with the
    // process, and the rows of that chunk are already written. Nothing depends on timing.
    assert!(stack().tools(&["hold", "import"]));
    let args = ["--chunk-bytes", "20000", "--source", &source];
    let run = start_run(&file, &args);
    let holder = loop {
        if let Some(p) = stack().processes("import").into_iter().find(|p| p.holding) {
            break p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let written = stack().count(&format!("{prefix}-")).await;
    assert!(
        (1..rows as u64).contains(&written),
        "one chunk written, the rest not yet: {written} of {rows}"
    );
    assert_eq!(
        snapshot_run(&source).await,
        None,
        "no snapshot before the run commits"
    );
    // SIGKILL exactly the import process this stack runs, as a crashed sandbox dies: the shim fails
    // the invocation it held with Runtime.ExitError (as Lambda does) and starts a new process, and
    // Step Functions retries that chunk.
    let killed = holder.pid;
    stack().signal(&holder.pid_name, "-KILL");
    let report = report_of(finish(run).await);
    let log = shim_lines_since(shim_from);
    assert!(
        log.iter().any(|l| l.contains(&format!(
            "process {killed} killed by signal 9 holding invocation"
        ))),
        "the shim saw the process die mid-invocation: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("import/invocations: Runtime.ExitError")),
        "the killed invocation failed as Lambda reports a crash: {log:#?}"
    );
    assert_ne!(
        stack().pid(&holder.pid_name),
        killed,
        "a new process took over"
    );
    every_row_once(&report, &prefix, rows).await;
    // Committed once every chunk was in, and true to the database: the same rows again are all
    // skipped.
    assert_eq!(
        snapshot_run(&source).await.as_deref(),
        report["run_id"].as_str()
    );
    again_all_unchanged(&prefix, rows, |i| format!("{i}"), &args);
}

#[tokio::test]
async fn a_run_that_failed_part_way_resumes_without_redoing_finished_chunks() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    let prefix = unique("P");
    let rows = 3000;
    let file = write_csv(&format!("{prefix}.csv"), &prefix, rows, |i| format!("{i}"));
    // Several chunks: once one is imported and the import holds another, freeze it and take
    // MongoDB away for longer than the retries last: the Map fails, the report says so.
    let run = start_run(&file, &["--chunk-bytes", "20000"]);
    let frozen = freeze_import_mid_run(|| async { finished_chunks(&prefix).await > 0 }).await;
    // SIGTERM: SecantusDB loses its latest writes on SIGKILL, which a journaled mongod does not.
    let mongo = stack().pid("mongo");
    stack().signal("mongo", "-TERM");
    while support::running(mongo) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    thaw(&frozen);
    let report = report_of(finish(run).await);
    assert_eq!(report["status"], "PARTIAL", "{report}");
    assert!(n(&report, "/rows/unprocessed") > 0, "{report}");
    let run_id = report["run_id"].as_str().unwrap().to_string();

    Stack::up(); // MongoDB back, same data
    let finished = finished_chunks(&prefix).await;
    let chunks = n(&report, "/chunks/total") as usize;
    assert!(
        (1..chunks).contains(&finished),
        "{finished} of {chunks} chunks finished before MongoDB went away"
    );
    let report = report_of(
        Stack::script("run-local")
            .args(["--resume", &run_id])
            .output()
            .unwrap(),
    );
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(n(&report, "/rows/total"), rows as u64);
    assert_eq!(n(&report, "/rows/unprocessed"), 0);
    assert_eq!(n(&report, "/written/inserted"), rows as u64, "{report}");
    assert_eq!(stack().count(&format!("{prefix}-")).await, rows as u64);
    // Every chunk the failed attempt finished was a no-op the second time.
    let replayed = stack()
        .log("fn-import")
        .lines()
        .filter(|l| l.contains(&format!("run_id={run_id}")) && l.contains("chunk already imported"))
        .count();
    assert_eq!(replayed, finished, "finished chunks were not redone");
}

#[tokio::test]
async fn a_dead_lambda_service_stops_a_run_with_exit_2_and_up_recovers() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    let prefix = unique("D");
    let file = write_csv(&format!("{prefix}.csv"), &prefix, 10, |i| format!("{i}"));
    // The shim runs the functions; without it nothing can progress. Stop exactly this stack's.
    stack().signal("shim", "-KILL");
    let status = Stack::script("stack").arg("status").output().unwrap();
    assert!(!status.status.success(), "status reports the dead shim");
    // run-local brings the stack up first: a shim that died before the run is restarted.
    let out = Stack::script("run-local").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let status = Stack::script("stack").arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("function import: running"), "{text}");

    // The shim dies while the run waits in Validate (frozen so the run cannot finish first):
    // run-local notices, names it, says how to recover, exits 2.
    let second = write_csv(&format!("{prefix}b.csv"), &prefix, 10, |i| format!("{i}"));
    freeze("validate");
    let run = start_run(&second, &[]);
    while !stack()
        .processes("validate")
        .iter()
        .any(|p| p.inflight.is_object())
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stack().signal("shim", "-KILL"); // its function processes die with it
    let out = finish(run).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot make progress") && stderr.contains("scripts/stack up"),
        "{stderr}"
    );
    let status = Stack::script("stack").arg("status").output().unwrap();
    assert!(!status.status.success(), "status reports the dead shim");
    Stack::up();
    let status = Stack::script("stack").arg("status").output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

/// Runs `rows` rows priced by `price` again under `args`: a snapshot true to the database skips
/// every one of them.
fn again_all_unchanged(prefix: &str, rows: usize, price: impl Fn(usize) -> String, args: &[&str]) {
    let again = write_csv(&format!("{prefix}-again.csv"), prefix, rows, price);
    let output = Stack::script("run-local")
        .arg(&again)
        .args(args)
        .output()
        .unwrap();
    let again = report_of(output);
    assert_eq!(n(&again, "/delta/unchanged"), rows as u64, "{again}");
}

/// The run the source's current snapshot was committed by (`chute_snapshots`).
async fn snapshot_run(source: &str) -> Option<String> {
    let current = support::current_snapshot(source).await?;
    current.get_str("run_id").ok().map(str::to_string)
}

#[tokio::test]
async fn mongodb_killed_mid_delta_run_never_advances_the_snapshot_past_the_database() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    let prefix = unique("K");
    let source = unique("kill");
    let rows = 3000;
    let args = [
        "--chunk-bytes",
        "20000",
        "--source",
        &source,
        "--mode",
        "full",
    ];
    let seed = write_csv(&format!("{prefix}.csv"), &prefix, rows, |i| format!("{i}"));
    let seeded = report_of(
        Stack::script("run-local")
            .arg(&seed)
            .args(args)
            .output()
            .unwrap(),
    );
    let seed_run = seeded["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        snapshot_run(&source).await.as_deref(),
        Some(seed_run.as_str())
    );

    // Every price changes, so every chunk has rows to write.
    let repriced = write_csv(&format!("{prefix}.csv"), &prefix, rows, |i| {
        format!("{i}.25")
    });
    let shim_from = stack().log("shim").lines().count();
    let run = start_run(&repriced, &args);
    let products = stack().database().await.collection::<Document>("products");
    let repriced_rows = || {
        let products = products.clone();
        let prefix = prefix.clone();
        async move {
            products
                .count_documents(
                    doc! {"sku": {"$regex": format!("^{prefix}-")}, "_rev": {"$gte": 1}},
                )
                .await
                .unwrap()
        }
    };
    let frozen = freeze_import_mid_run(|| async { repriced_rows().await > 0 }).await;
    let written = repriced_rows().await;
    assert!(
        written < rows as u64,
        "rows were still unwritten ({written} of {rows})"
    );
    // Part of the run is in the database; the snapshot is still the seed's.
    assert_eq!(
        snapshot_run(&source).await.as_deref(),
        Some(seed_run.as_str())
    );
    kill_mongodb_until_the_import_fails(&frozen, shim_from, &prefix).await;
    let report = report_of(finish(run).await);
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(n(&report, "/written/updated"), rows as u64, "{report}");
    assert_eq!(
        snapshot_run(&source).await.as_deref(),
        report["run_id"].as_str(),
        "committed once every chunk was imported"
    );
    // The snapshot is what the database holds: the same file again skips every row, and every
    // stored price is the file's.
    again_all_unchanged(&prefix, rows, |i| format!("{i}.25"), &args);
    let mut cursor = products
        .find(doc! {"sku": {"$regex": format!("^{prefix}-")}})
        .await
        .unwrap();
    let mut checked = 0;
    while cursor.advance().await.unwrap() {
        let d: Document = cursor.deserialize_current().unwrap();
        let sku = d.get_str("sku").unwrap();
        let i: usize = sku.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(
            d.get("price"),
            Some(&Bson::Decimal128(format!("{i}.25").parse().unwrap())),
            "{sku}"
        );
        checked += 1;
    }
    assert_eq!(checked, rows);
}
