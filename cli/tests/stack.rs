//! `chute runs`, `run`, `backfill` and `explain` against the tests' own local stack (.dev/test),
//! and `chute check` agreeing row for row with a real local run of the held-in samples. Every
//! setting the binary gets comes from the stack's local.env, never from this shell.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{check_args, json, root, run_ok, temp};
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
    let run = run_ok(Stack::script("run-local").arg(file).arg("--out").arg(out));
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn check_agrees_row_for_row_with_a_local_run_of_each_sample() {
    for sample in ["dirty.csv", "products.csv"] {
        let file = fresh_copy(sample, "agree");
        let ran = temp(&unique("ran"));
        let checked = temp(&unique("checked"));
        let real = run_local(&file, &ran);
        let out = chute(&check_args(&file, "--out", &checked));
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

    // The trigger's run of this file is the one backfill names: nothing to start.
    let listed = chute_json(&[
        "backfill",
        "--bucket",
        stack().bucket(),
        "--prefix",
        key,
        "--dry-run",
    ]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["run_id"], run_id);
    assert_eq!(listed[0]["action"], "has-run");
    assert_eq!(
        chute(&["runs", "--since", "yesterday"]).status.code(),
        Some(2)
    );
}

/// `chute --json ARGS…`, which must exit 0.
fn chute_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = chute(&all);
    assert_eq!(out.status.code(), Some(0), "chute {args:?}: {out:?}");
    json(&out)
}

fn actions(listed: &serde_json::Value) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap().to_string(),
                b["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn backfill_starts_each_missing_run_once_and_explain_shows_what_it_wrote() {
    let s = stack();
    s.export();
    let blob = chute::blob::Blob::new(&chute::aws::sdk_config().await, true);
    let folder = unique("bf");
    let header =
        "sku,name,description,price,currency,stock,category,brand,color,tags,created_at,active";
    let sku = |n: u32| format!("BF-{folder}-{n}");
    let keys = [
        format!("incoming/{folder}/a.csv"),
        format!("incoming/{folder}/b.CSV"),
    ];
    for (n, key) in keys.iter().enumerate() {
        let body = format!(
            "{header}\n{},Backfilled lamp,,9.99,usd,1,Home,Lumo,Black,,2026-11-01,yes\n",
            sku(n as u32)
        );
        blob.put(s.bucket(), key, body.into_bytes(), "text/csv")
            .await
            .unwrap();
    }
    let notes = format!("incoming/{folder}/notes.pdf");
    blob.put(s.bucket(), &notes, b"not a csv".to_vec(), "text/plain")
        .await
        .unwrap();
    let prefix = format!("{folder}/");
    let backfill = |dry: bool| {
        let mut args = vec!["backfill", "--bucket", s.bucket(), "--prefix", &prefix];
        if dry {
            args.push("--dry-run");
        }
        chute_json(&args)
    };

    let both = |action: &str| -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.clone(), action.to_string()))
            .collect()
    };
    let dry = backfill(true);
    assert_eq!(actions(&dry), both("would-start"));
    let first = backfill(false);
    assert_eq!(actions(&first), both("started"));
    for (a, b) in dry
        .as_array()
        .unwrap()
        .iter()
        .zip(first.as_array().unwrap())
    {
        assert_eq!(a["run_id"], b["run_id"], "the dry run names the same runs");
    }
    let b_run = first[1]["run_id"].as_str().unwrap();
    assert!(
        b_run.starts_with("b-"),
        "`.CSV` is dropped from the run id: {b_run}"
    );
    let second = backfill(false);
    assert!(
        actions(&second).iter().all(|(_, a)| a != "started"),
        "a second backfill starts nothing: {second}"
    );

    // Both runs finish, and the product is stored with the run that wrote it.
    let a_run = first[0]["run_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for run in [&a_run, &b_run.to_string()] {
        loop {
            let out = chute(&["--json", "run", run]);
            if out.status.code() == Some(0) && json(&out)["status"] != "RUNNING" {
                assert_eq!(json(&out)["status"], "SUCCEEDED");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {run} did not finish"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    let third = backfill(false);
    assert!(
        actions(&third).iter().all(|(_, a)| a == "has-run"),
        "{third}"
    );

    let product = chute_json(&["explain", &sku(0)]);
    assert_eq!(product["sku"], sku(0));
    assert_eq!(product["_import"]["run_id"], a_run.as_str());
    assert_eq!(product["first_run_id"], a_run.as_str());
    let text = chute(&["explain", &sku(0)]);
    let text = String::from_utf8(text.stdout).unwrap();
    let name = text
        .lines()
        .find(|l| l.starts_with("name "))
        .unwrap_or_else(|| panic!("one line per field: {text}"));
    for part in [
        "Backfilled lamp",
        a_run.as_str(),
        &format!("s3://{}/{}", s.bucket(), keys[0]),
    ] {
        assert!(name.contains(part), "{name}");
    }
    assert_eq!(
        chute(&["explain", "NO-SUCH-SKU-EVER"]).status.code(),
        Some(2)
    );
    assert_eq!(chute(&["explain", "A", "B"]).status.code(), Some(2));
}

/// `scripts/run-local FILE ARGS…` on the tests' stack: its report JSON.
fn run_feed(name: &str, csv: &str, args: &[&str]) -> serde_json::Value {
    let file = temp(&unique("feed")).join(name);
    std::fs::write(&file, csv).unwrap();
    let run = run_ok(Stack::script("run-local").arg(&file).args(args));
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn explain_traces_each_field_to_the_source_that_supplied_it() {
    let s = stack();
    let p = unique("EX");
    // A GTIN no other test's product has: the unique tag's digits (pid, clock).
    let digits: String = p.chars().filter(char::is_ascii_digit).collect();
    let gtin = format!("9{:0>13}", &digits[digits.len().saturating_sub(13)..]);
    let header = "sku,name,price,stock,gtin,mpn,brand";
    // Incremental, whatever the sources' configured mode: a full refresh here would mark the
    // catalogue products of other tests stale.
    let erp = run_feed(
        "erp.csv",
        &format!("{header}\n{p}-LAMP,Desk lamp,19.90,12,{gtin},,\n"),
        &[
            "--schema",
            "catalog",
            "--source",
            "erp",
            "--mode",
            "incremental",
        ],
    );
    let supplier = run_feed(
        "supplier-a.csv",
        &format!("{header}\n{p}-SA,Desk lamp LED,17.50,40,{gtin},,Lumo\n"),
        &[
            "--schema",
            "catalog",
            "--source",
            "supplier-a",
            "--mode",
            "incremental",
        ],
    );
    assert_eq!(supplier["written"]["merged"], 1, "{supplier}");
    let erp_file = format!(
        "s3://{}/{}",
        s.bucket(),
        erp["source"]["key"].as_str().unwrap()
    );
    let supplier_file = format!(
        "s3://{}/{}",
        s.bucket(),
        supplier["source"]["key"].as_str().unwrap()
    );
    let erp_run = erp["run_id"].as_str().unwrap();
    let supplier_run = supplier["run_id"].as_str().unwrap();
    let key = format!("{p}-LAMP");

    // The supplier's run wrote the document last, but the ERP ranks higher: price is the ERP's.
    let price = json(&chute(&[
        "--json", "explain", "--schema", "catalog", "--field", "price", &key,
    ]));
    assert_eq!(price["value"], "19.90");
    assert_eq!(price["source"], "erp");
    assert_eq!(price["run_id"], erp_run);
    assert_eq!(price["file"], erp_file.as_str());
    let sentence = chute(&["explain", "--schema", "catalog", "--field", "price", &key]);
    let sentence = String::from_utf8(sentence.stdout).unwrap();
    assert!(
        sentence.starts_with(&format!(
            "price = 19.90 from source erp, run {erp_run}, file {erp_file}"
        )),
        "{sentence}"
    );

    let text = chute(&["explain", "--schema", "catalog", &key]);
    assert_eq!(text.status.code(), Some(0), "{text:?}");
    let text = String::from_utf8(text.stdout).unwrap();
    let line = |field: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{field} ")))
            .unwrap_or_else(|| panic!("no line for {field}: {text}"))
            .to_string()
    };
    for part in ["19.90", "erp", erp_run, erp_file.as_str()] {
        assert!(line("price").contains(part), "{text}");
    }
    // The brand the ERP left empty, from the supplier's row (the last writer: its row is known).
    for part in ["Lumo", "supplier-a", supplier_run, supplier_file.as_str()] {
        assert!(line("attributes.brand").contains(part), "{text}");
    }
    assert!(text.contains(&format!("aliases: {p}-SA ")), "{text}");
    assert!(text.contains("stale: no"), "{text}");
    assert!(
        text.contains(&format!(
            "source supplier-a: last supplied by run {supplier_run}"
        )),
        "{text}"
    );
    assert!(!text.contains("$numberDecimal"), "{text}");

    let document = json(&chute(&["--json", "explain", "--schema", "catalog", &key]));
    assert_eq!(document["_aliases"], serde_json::json!([format!("{p}-SA")]));
    assert_eq!(document["_provenance"]["price"], "erp");
    let missing = chute(&["explain", "--schema", "catalog", "--field", "weight", &key]);
    assert_eq!(missing.status.code(), Some(2));
}

/// Issue 25's "done when" for drift: a file of a source run twice through the local stack (the
/// second run diffs against the first's snapshot and commits its own), a product's price edited
/// and another product deleted by hand; `chute verify` lists both (exit 1), `--repair` restores
/// both, and the source verifies clean (exit 0).
#[tokio::test]
async fn verify_lists_hand_edits_of_a_delta_snapshot_and_repair_restores_them() {
    let s = stack();
    let tag = unique("ve");
    let source = tag.as_str();
    let prefix = tag.to_uppercase();
    // GTINs and MPNs no other test's catalog products have (`match_also` merges equal ones).
    let gtin_base = 100_000_000_000u64 + (std::process::id() as u64 % 9_000) * 10_000_000;
    let mut csv = String::from("sku,name,price,stock,gtin,mpn\n");
    for i in 0..30u64 {
        csv += &format!(
            "{prefix}-{i:04},Item {i},{i}.50,{i},{},M-{prefix}-{i}\n",
            gtin_base + (tag.len() as u64 * 1000) + i
        );
    }
    let file = temp(&tag).join(format!("{tag}.csv"));
    std::fs::write(&file, csv).unwrap();
    for (n, delta) in [(1, "off"), (2, "on")] {
        let out = temp(&unique("ve-out"));
        let ran = run_ok(
            Stack::script("run-local")
                .arg(&file)
                .args(["--schema", "catalog", "--source", source, "--out"])
                .arg(&out),
        );
        let report: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
        assert_eq!(report["status"], "SUCCEEDED", "run {n}: {report}");
        assert_eq!(report["delta"]["status"], delta, "run {n}: {report}");
    }
    let catalog = s.database().await.collection::<bson::Document>("catalog");
    let (edited, deleted) = (format!("{prefix}-0003"), format!("{prefix}-0007"));
    let price = |v: &str| bson::Bson::Decimal128(v.parse().unwrap());
    let changed = catalog
        .update_one(
            bson::doc! {"sku": &edited},
            bson::doc! {"$set": {"price": price("999.00")}},
        )
        .await
        .unwrap();
    assert_eq!(changed.modified_count, 1);
    let gone = catalog
        .delete_one(bson::doc! {"sku": &deleted})
        .await
        .unwrap();
    assert_eq!(gone.deleted_count, 1);

    let verify = ["verify", "--source", source, "--schema", "catalog"];
    let out = chute(&[&["--json"][..], &verify].concat());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let found = json(&out);
    assert_eq!(
        (found["checked"].as_u64(), found["drifted"].as_u64()),
        (Some(30), Some(2))
    );
    let listed: Vec<(&str, &str, &str)> = found["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["key"].as_str().unwrap(),
                d["kind"].as_str().unwrap(),
                d["field"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        listed.len(),
        2,
        "the price and the deleted product only: {listed:?}"
    );
    assert!(
        listed.contains(&(edited.as_str(), "field", "price")),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(deleted.as_str(), "missing", "-")),
        "{listed:?}"
    );
    let text = String::from_utf8(chute(&verify).stdout).unwrap();
    assert!(
        text.contains(&format!(
            "{edited}  field price: stored `999.00`, snapshot `3.50`"
        )),
        "{text}"
    );

    let out = chute(&[&["--json"][..], &verify, &["--repair"]].concat());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let repaired = json(&out);
    assert_eq!(repaired["repaired"]["reapplied"], 2, "{repaired}");
    assert_eq!(repaired["repaired"]["counts"]["inserted"], 1, "{repaired}");
    assert_eq!(repaired["repaired"]["counts"]["updated"], 1, "{repaired}");
    assert_eq!(repaired["after_repair"]["drifted"], 0, "{repaired}");
    let restored = catalog
        .find_one(bson::doc! {"sku": &edited})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restored.get("price"), Some(&price("3.50")));
    let back = catalog
        .find_one(bson::doc! {"sku": &deleted})
        .await
        .unwrap()
        .expect("the deleted product is inserted again");
    assert_eq!(back.get("price"), Some(&price("7.50")));
    assert_eq!(back.get_str("name").unwrap(), "Item 7");

    let out = chute(&verify);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("no drift: 30 products"));
    assert_eq!(
        chute(&["verify", "--source", "never-ran", "--schema", "catalog"])
            .status
            .code(),
        Some(2),
        "no snapshot is a setup error"
    );
}
