//! Delta import end to end through the local stack: a feed sent again costs the database (almost)
//! nothing, a changed feed touches exactly what changed, and two runs of one source never
//! interleave. Each test has its own source and keys; they run one at a time, since each counts
//! what the whole server was sent.

#[path = "support/run.rs"]
mod run;
mod support;

use std::collections::BTreeMap;
use std::process::Stdio;

use bson::{doc, Document};
use run::{documents_in, n, Run};
use serde_json::Value;
use support::{accounting_holds, stack, unique, Stack};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `rows` products `<p>-00000…`, the price of row `i` given by `price`; rows `dropped` left out.
fn catalogue(
    p: &str,
    rows: usize,
    price: impl Fn(usize) -> f64,
    dropped: impl Fn(usize) -> bool,
) -> String {
    let mut csv = String::from("sku,name,price,stock,category\n");
    for i in (0..rows).filter(|i| !dropped(*i)) {
        csv.push_str(&format!(
            "{p}-{i:05},Item {i},{:.2},{},home\n",
            price(i),
            i % 50
        ));
    }
    csv
}

fn full(source: &str) -> [&str; 4] {
    ["--source", source, "--mode", "full"]
}

fn succeeded(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "SUCCEEDED", "{}", run.report);
}

/// Every stored product of prefix `p`, by sku, whole (revision, stamps and fields).
async fn products(p: &str) -> BTreeMap<String, Document> {
    documents_in("products", p)
        .await
        .into_iter()
        .map(|d| (d.get_str("sku").unwrap().to_string(), d))
        .collect()
}

/// The skus whose stored document differs between `before` and `after`.
fn touched(before: &BTreeMap<String, Document>, after: &BTreeMap<String, Document>) -> Vec<String> {
    after
        .iter()
        .filter(|(sku, d)| before.get(*sku) != Some(*d))
        .map(|(sku, _)| sku.clone())
        .collect()
}

/// The commands the server counted (`serverStatus.opcounters`, all kinds).
async fn opcounters() -> i64 {
    let status = stack()
        .database()
        .await
        .run_command(doc! {"serverStatus": 1})
        .await
        .unwrap();
    let counters = status.get_document("opcounters").unwrap();
    counters
        .values()
        .map(|v| v.as_i64().or(v.as_i32().map(i64::from)).unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn the_same_feed_again_modifies_no_document_and_sends_a_few_commands() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (p, source) = (unique("DS"), unique("same"));
    let csv = catalogue(&p, 2000, |i| 1.0 + i as f64, |_| false);
    let first = run::run_local("all.csv", &csv, &full(&source));
    succeeded(&first);
    assert_eq!(first.report["delta"]["status"], "off", "{}", first.report);
    assert!(first.report["delta"]["reason"]
        .as_str()
        .unwrap()
        .contains("no snapshot"));
    assert!(first.report["delta"]["snapshot"]
        .as_str()
        .unwrap()
        .starts_with("committed (2000 products"));
    let before = products(&p).await;

    let counted = opcounters().await;
    let again = run::run_local("all.csv", &csv, &full(&source));
    let sent = opcounters().await - counted;
    succeeded(&again);
    let delta = &again.report["delta"];
    assert_eq!(delta["status"], "on", "{}", again.report);
    assert_eq!(delta["base_run"], first.report["run_id"]);
    assert_eq!(
        (
            n(delta, "/unchanged"),
            n(delta, "/changed"),
            n(delta, "/new")
        ),
        (2000, 0, 0)
    );
    assert_eq!(n(&again.report, "/written/unchanged"), 2000);
    assert_eq!(n(&again.report, "/stale/marked"), 0);
    assert_eq!(touched(&before, &products(&p).await), Vec::<String>::new());
    let commands = n(delta, "/commands");
    assert!(commands <= 30, "{commands} commands: {delta}");
    // The server saw this run's commands and this test's own reads (serverStatus, the ledger).
    assert!(sent <= 40, "the server counted {sent} commands");
}

#[tokio::test]
async fn one_percent_changed_and_half_a_percent_removed_touch_exactly_those() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (p, source) = (unique("DC"), unique("change"));
    let rows = 2000;
    succeeded(&run::run_local(
        "all.csv",
        catalogue(&p, rows, |i| 1.0 + i as f64, |_| false),
        &full(&source),
    ));
    let before = products(&p).await;
    let changed = |i: usize| i % 100 == 3;
    let removed = |i: usize| i % 200 == 7;
    let next = catalogue(
        &p,
        rows,
        |i| 1.0 + i as f64 + if changed(i) { 0.5 } else { 0.0 },
        removed,
    );
    let run = run::run_local("all.csv", next, &full(&source));
    succeeded(&run);
    let delta = &run.report["delta"];
    assert_eq!(
        (
            n(delta, "/changed"),
            n(delta, "/unchanged"),
            n(delta, "/stale")
        ),
        (20, 1970, 10),
        "{delta}"
    );
    assert_eq!(n(&run.report, "/written/updated"), 20);
    assert_eq!(n(&run.report, "/stale/marked"), 10);
    let after = products(&p).await;
    let sku = |i: usize| format!("{p}-{i:05}");
    let mut expected: Vec<String> = (0..rows)
        .filter(|i| changed(*i) || removed(*i))
        .map(sku)
        .collect();
    expected.sort();
    assert_eq!(touched(&before, &after), expected);
    for i in (0..rows).filter(|i| removed(*i)) {
        assert_eq!(after[&sku(i)].get_bool("active"), Ok(false), "{}", sku(i));
    }
}

/// Starts `scripts/run-local` in the background.
fn start(name: &str, csv: &str, args: &[&str]) -> std::process::Child {
    let dir = std::env::temp_dir().join(unique("chute-delta-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, csv).unwrap();
    Stack::script("run-local")
        .arg(&file)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn report_of(run: std::process::Child) -> Value {
    let output = tokio::task::spawn_blocking(move || run.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run-local failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    accounting_holds(&report);
    report
}

#[tokio::test]
async fn two_full_refreshes_of_one_source_started_together_call_nothing_missing() {
    let _one = ONE_AT_A_TIME.lock().await;
    Stack::up();
    let (p, source) = (unique("DO"), unique("overlap"));
    let csv = catalogue(&p, 1500, |i| 1.0 + i as f64, |_| false);
    let first = start("monday.csv", &csv, &full(&source));
    // The second starts once the first holds the source's lease, so their runs overlap.
    let leases = stack()
        .database()
        .await
        .collection::<Document>("chute_leases");
    loop {
        let held = leases
            .find_one(doc! {"_id": format!("products/{source}")})
            .await
            .unwrap();
        if held.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let second = start("monday-again.csv", &csv, &full(&source));
    let (first, second) = (report_of(first).await, report_of(second).await);
    for report in [&first, &second] {
        assert_eq!(report["status"], "SUCCEEDED", "{report}");
        let stale = &report["stale"];
        assert_eq!(
            (
                n(stale, "/marked"),
                stale.get("candidates"),
                stale.get("refused_reason")
            ),
            (0, None, None),
            "nothing called missing: {report}"
        );
    }
    assert_eq!(
        second["delta"]["base_run"], first["run_id"],
        "the second ran after the first committed: {second}"
    );
    let docs = products(&p).await;
    assert_eq!(docs.len(), 1500);
    assert!(docs.values().all(|d| d.get_bool("active").unwrap_or(true)));
}

#[tokio::test]
async fn a_file_asking_for_a_reapply_takes_the_full_path_and_says_why() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (p, source) = (unique("DR"), unique("reapply"));
    let csv = catalogue(&p, 300, |i| 2.0 + i as f64, |_| false);
    let incremental = ["--source", source.as_str()];
    succeeded(&run::run_local("all.csv", &csv, &incremental));
    let delta_run = run::run_local("all.csv", &csv, &incremental);
    succeeded(&delta_run);
    assert_eq!(delta_run.report["delta"]["status"], "on");
    assert_eq!(n(&delta_run.report, "/delta/unchanged"), 300);

    let reapplied = run::run_local(
        "all.csv",
        &csv,
        &["--source", source.as_str(), "--meta", "chute-mode=reapply"],
    );
    succeeded(&reapplied);
    let delta = &reapplied.report["delta"];
    assert_eq!(delta["status"], "off", "{delta}");
    assert!(delta["reason"]
        .as_str()
        .unwrap()
        .contains("chute-mode: reapply"));
    assert_eq!(reapplied.report["feed"]["mode"], "incremental");
    // Every row went to the database, which found each as stored.
    assert_eq!(n(&reapplied.report, "/delta/unchanged"), 0);
    assert_eq!(n(&reapplied.report, "/written/unchanged"), 300);
    assert!(delta["snapshot"].as_str().unwrap().starts_with("committed"));
}

#[tokio::test]
async fn a_damaged_snapshot_turns_delta_off_and_the_run_takes_the_full_path() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (p, source) = (unique("DX"), unique("damaged"));
    let csv = catalogue(&p, 200, |i| 3.0 + i as f64, |_| false);
    let args = full(&source);
    let first = run::run_local("all.csv", &csv, &args);
    succeeded(&first);
    // Cut the snapshot's piece short, as a bad copy or a hand edit of the bucket would.
    stack().export();
    let env = chute::app::Env::load().await.unwrap();
    let current = support::current_snapshot(&source).await.unwrap();
    let piece = format!("{}piece-000-of-001.bin", current.get_str("prefix").unwrap());
    let bucket = current.get_str("bucket").unwrap();
    let bytes = env.blob.get(bucket, &piece).await.unwrap();
    env.blob
        .put(
            bucket,
            &piece,
            bytes[..bytes.len() / 2].to_vec(),
            "application/octet-stream",
        )
        .await
        .unwrap();

    let again = run::run_local("all.csv", &csv, &args);
    succeeded(&again);
    let delta = &again.report["delta"];
    assert_eq!(delta["status"], "off", "{delta}");
    let reason = delta["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot be read") && reason.contains("piece 0"),
        "{reason}"
    );
    assert_eq!(
        n(&again.report, "/written/unchanged"),
        200,
        "every row to the database"
    );
    assert_eq!(
        n(&again.report, "/stale/marked"),
        0,
        "nothing called missing"
    );
    assert!(delta["snapshot"].as_str().unwrap().starts_with("committed"));
    // The fresh snapshot is whole again: the next run diffs.
    let third = run::run_local("all.csv", &csv, &args);
    succeeded(&third);
    assert_eq!(third.report["delta"]["status"], "on");
    assert_eq!(n(&third.report, "/delta/unchanged"), 200);
}
