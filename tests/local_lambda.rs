//! The local Lambda service (scripts/lambda_shim.py) behaves like Lambda, through the whole local
//! pipeline on the tests' stack: a crash costs only the invocation the process held, a function
//! runs several invocations at once in separate processes, and an invocation is ended at its
//! deadline with Lambda's timeout error, which the state machine retries. Every fault is arranged
//! on what the shim records (its processes, their invocations), never after a sleep. The tests
//! signal and reconfigure the stack's processes, so they run one at a time (a lock).

mod support;

#[path = "support/run.rs"]
mod run;

use std::process::Stdio;
use std::time::Duration;

use run::{n, run_local};
use serde_json::Value;
use support::{accounting_holds, stack, unique, Stack};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn csv(prefix: &str, rows: usize) -> String {
    let mut csv = String::from("sku,name,price,stock,category\n");
    for i in 0..rows {
        csv.push_str(&format!("{prefix}-{i:05},Item {i},{i}.50,{i},Cat\n"));
    }
    csv
}

/// Every event of the run's execution that names `error` (as its error or in its cause).
fn events_naming(run_id: &str, error: &str) -> Vec<Value> {
    stack()
        .history(run_id)
        .into_iter()
        .filter(|e| e.to_string().contains(error))
        .collect()
}

async fn observe(what: &str, mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("observed: {what}");
}

/// Undoes a shim knob (`release import`, `timeout validate`) even when the test fails midway, so
/// the next test finds the stack as the template configures it.
struct Reset(&'static [&'static str]);

impl Drop for Reset {
    fn drop(&mut self) {
        let _ = stack().tools(self.0); // best effort: a failing test must still report its own panic
    }
}

/// The report of a `run-local` started in the background, once it ends; the run succeeded.
async fn succeeded(run: std::process::Child) -> Value {
    let output = tokio::task::spawn_blocking(move || run.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    accounting_holds(&report);
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    report
}

#[tokio::test]
async fn a_function_killed_three_times_fails_no_invocation_of_the_next_run() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    // Each process is killed while it waits for work, and the next one is awaited until it asks
    // for work itself: a dead process's wait must not take the next run's invocation.
    for _ in 0..3 {
        let killed = stack().pid("fn-validate");
        stack().signal("fn-validate", "-KILL");
        observe("validate's next process asks for work", || {
            stack()
                .processes("validate")
                .iter()
                .any(|p| p.pid_name == "fn-validate" && p.pid != killed && p.state == "idle")
        })
        .await;
    }
    let prefix = unique("X");
    let run = run_local(&format!("{prefix}.csv"), csv(&prefix, 20), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "SUCCEEDED", "{}", run.report);
    let run_id = run.report["run_id"].as_str().unwrap();
    assert_eq!(
        events_naming(run_id, "Runtime.ExitError"),
        Vec::<Value>::new(),
        "no invocation of the run went to a dead process"
    );
    assert_eq!(n(&run.report, "/written/inserted"), 20);
}

#[tokio::test]
async fn two_imports_of_one_run_are_in_flight_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    // The first two import answers are held: while the first waits, the Map's next chunk needs an
    // import too, and only a second process can take it.
    assert!(stack().tools(&["hold", "import", "--answers", "2"]));
    let _release = Reset(&["release", "import"]);
    let prefix = unique("C");
    let rows = 3000;
    let dir = std::env::temp_dir().join(unique("chute-pool-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{prefix}.csv"));
    std::fs::write(&file, csv(&prefix, rows)).unwrap();
    let run = Stack::script("run-local")
        .arg(&file)
        .args(["--chunk-bytes", "20000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut held = Vec::new();
    observe("two import processes hold invocations of the run", || {
        held = stack()
            .processes("import")
            .into_iter()
            .filter(|p| p.holding && p.inflight.is_object())
            .collect();
        held.len() == 2
    })
    .await;
    assert_eq!(
        held[0].inflight["run"], held[1].inflight["run"],
        "one run's two imports"
    );
    assert_ne!(held[0].inflight["chunk"], held[1].inflight["chunk"]);
    assert_ne!(held[0].pid, held[1].pid, "in two processes");
    assert!(stack().tools(&["release", "import"]));
    let report = succeeded(run).await;
    assert_eq!(n(&report, "/written/inserted"), rows as u64);
    assert_eq!(stack().count(&format!("{prefix}-")).await, rows as u64);
}

#[tokio::test]
async fn a_stopped_function_is_timed_out_at_its_deadline_and_the_retry_succeeds() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    let timeouts_before = stack().function("validate")["timeouts"].as_u64().unwrap();
    // Validate's timeout is shortened from the template's 900 s for this test only, and every
    // validate process is stopped: the run's first validate invocation cannot finish.
    assert!(stack().tools(&["timeout", "validate", "2"]));
    let reset = Reset(&["timeout", "validate"]);
    let frozen = stack().processes("validate");
    for p in &frozen {
        stack().signal(&p.pid_name, "-STOP");
    }
    let prefix = unique("T");
    let dir = std::env::temp_dir().join(unique("chute-timeout-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{prefix}.csv"));
    std::fs::write(&file, csv(&prefix, 20)).unwrap();
    let run = Stack::script("run-local")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    observe("the shim timed out a validate invocation", || {
        stack().function("validate")["timeouts"].as_u64().unwrap() > timeouts_before
    })
    .await;
    // The retry runs with the template's timeout, in whichever process takes it.
    drop(reset);
    for p in &frozen {
        if support::running(p.pid) {
            stack().signal(&p.pid_name, "-CONT");
        }
    }
    let report = succeeded(run).await;
    let run_id = report["run_id"].as_str().unwrap();
    let timed_out = events_naming(run_id, "Sandbox.Timedout");
    assert_eq!(timed_out.len(), 1, "one attempt timed out: {timed_out:#?}");
    assert!(
        timed_out[0]
            .to_string()
            .contains("Task timed out after 2.00 seconds"),
        "Lambda's timeout message: {:#?}",
        timed_out[0]
    );
    assert!(
        frozen.iter().any(|p| !support::running(p.pid)),
        "the stopped process that held the invocation was killed"
    );
}
