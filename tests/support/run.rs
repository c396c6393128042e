//! One file through `scripts/run-local` on the tests' stack, and what the tests read back: the
//! report, the `--out` directory, the documents. Included next to `support` by the suites that run
//! files end to end (`#[path = "support/run.rs"] mod run;`); the cli tests include `support` alone.
//! Each suite uses part of it.

#![allow(dead_code)]

use std::path::PathBuf;

use bson::{doc, Document};
use futures_util::TryStreamExt;
use serde_json::Value;

use crate::support::{accounting_holds, stack, unique, Stack};

/// What `scripts/run-local` left: its exit code, the report it printed (accounting checked), the
/// `--out` directory and its stderr.
pub struct Run {
    pub code: i32,
    pub report: Value,
    pub out: PathBuf,
    pub stderr: String,
}

/// Writes `bytes` as `name` in a fresh directory and runs it with `args`. Without `--source`,
/// `--team` or `--resume` the run gets a source of its own: runs of one source wait for each
/// other (delta import's lease), and tests of other things should not.
pub fn run_local(name: &str, bytes: impl AsRef<[u8]>, args: &[&str]) -> Run {
    let own = unique("t");
    let mut args = args.to_vec();
    if !args
        .iter()
        .any(|a| ["--source", "--team", "--resume"].contains(a))
    {
        args.extend(["--source", own.as_str()]);
    }
    let dir = std::env::temp_dir().join(unique("chute-run-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let out = dir.join("out");
    let output = Stack::script("run-local")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .args(&args)
        .output()
        .expect("scripts/run-local runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is only the report JSON ({e}); stderr:\n{stderr}"));
    accounting_holds(&report); // every report, whatever the test looks at next
    Run {
        code: output.status.code().unwrap_or(-1),
        report,
        out,
        stderr,
    }
}

/// The documents of `collection` whose `sku` starts with `prefix`, by `sku`.
pub async fn documents_in(collection: &str, prefix: &str) -> Vec<Document> {
    let cursor = stack()
        .database()
        .await
        .collection::<Document>(collection)
        .find(doc! {"sku": {"$regex": format!("^{prefix}")}})
        .sort(doc! {"sku": 1})
        .await
        .unwrap();
    cursor.try_collect().await.unwrap()
}

/// The report's number at JSON pointer `path`.
pub fn n(report: &Value, path: &str) -> u64 {
    report
        .pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("report has {path}: {report}"))
}

/// The report's quoted errors as (row, line, column, code).
pub fn errors(report: &Value) -> Vec<(u64, u64, &str, &str)> {
    report["errors"]
        .as_array()
        .expect("the report quotes its errors")
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["line"].as_u64().unwrap(),
                e["column"].as_str().unwrap(),
                e["code"].as_str().unwrap(),
            )
        })
        .collect()
}

/// The report's (valid, rejected) row counts.
pub fn rows(report: &Value) -> (u64, u64) {
    (n(report, "/rows/valid"), n(report, "/rows/rejected"))
}
