//! `chute runs`, `run`, `backfill` and `explain` against the tests' own local stack (.dev/test),
//! and `chute check` agreeing row for row with a real local run of the held-in samples. Every
//! setting the binary gets comes from the stack's local.env, never from this shell.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{json, root, temp};
use support::{stack, unique, Stack};

/// The binary aimed at the tests' stack.
fn chute(args: &[&str]) -> Output {
    let s = stack();
    let mut command = common::command();
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_EC2_METADATA_DISABLED",
        "CHUTE_S3_PATH_STYLE",
        "CHUTE_DATABASE",
        "CHUTE_MONGODB_URI",
        "CHUTE_MONGODB_TIMEOUT_SECONDS",
        "CHUTE_STATE_MACHINE_ARN",
        "CHUTE_SCHEMA_DIR",
    ] {
        command.env(name, s.get(name));
    }
    command.args(args).output().unwrap()
}

/// A copy of `sample` under a name no earlier run used.
fn fresh_copy(sample: &str, tag: &str) -> PathBuf {
    let name = format!("{}-{}.csv", sample.trim_end_matches(".csv"), unique(tag));
    let path = temp(tag).join(name);
    std::fs::copy(root().join("samples").join(sample), &path).unwrap();
    path
}

/// `scripts/run-local FILE --out DIR` on the tests' stack: its report JSON.
fn run_local(file: &Path, out: &Path) -> serde_json::Value {
    let run = Stack::script("run-local")
        .arg(file)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "run-local: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn check_agrees_row_for_row_with_a_local_run_of_each_sample() {
    for sample in ["dirty.csv", "products.csv"] {
        let file = fresh_copy(sample, "agree");
        let ran = temp(&unique("ran"));
        let checked = temp(&unique("checked"));
        let real = run_local(&file, &ran);
        let out = chute(&[
            "--json",
            "check",
            file.to_str().unwrap(),
            "--out",
            checked.to_str().unwrap(),
        ]);
        let offline = json(&out);
        for field in [
            "/status",
            "/rows",
            "/errors_total",
            "/errors_by_code",
            "/errors_by_column",
            "/errors",
            "/warnings",
        ] {
            assert_eq!(
                offline.pointer(field),
                real.pointer(field),
                "{sample}: {field} differs between chute check and a run"
            );
        }
        let rejects = |dir: &Path| std::fs::read_to_string(dir.join("rejects.csv")).unwrap();
        assert_eq!(rejects(&checked), rejects(&ran), "{sample}: rejects.csv");
    }
}

#[test]
fn runs_and_run_show_a_finished_run_from_the_ledger() {
    let file = fresh_copy("dirty.csv", "runs");
    let real = run_local(&file, &temp(&unique("runs-out")));
    let run_id = real["run_id"].as_str().unwrap();
    let key = real["source"]["key"].as_str().unwrap();

    let out = chute(&["--json", "runs", "--source", key, "--since", "2026-01-01"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = json(&out);
    let lines = lines.as_array().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["run_id"], run_id);
    assert_eq!(lines[0]["status"], "PARTIAL");
    assert_eq!(lines[0]["rows"], 7);
    assert_eq!(lines[0]["etag"], real["source"]["etag"]);
    assert!(lines[0]["report"]
        .as_str()
        .unwrap()
        .ends_with("/report.json"));

    let out = chute(&["--json", "runs", "--source", key, "--status", "FAILED"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 0);
    let text = chute(&["runs", "--source", key]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(run_id) && text.contains("PARTIAL"), "{text}");

    let out = chute(&["run", run_id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("reports/{run_id}/report.json")),
        "{text}"
    );
    assert!(
        text.contains("7 total, 3 valid, 3 rejected, 1 duplicate"),
        "{text}"
    );
    let out = chute(&["--json", "run", run_id]);
    assert_eq!(json(&out)["report"]["rows"]["valid"], 3);
    assert_eq!(chute(&["run", "no-such-run"]).status.code(), Some(2));
    assert_eq!(
        chute(&["runs", "--since", "yesterday"]).status.code(),
        Some(2)
    );
}
