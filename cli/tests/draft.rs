//! `chute schema draft`, offline: a drafted schema loads, says what it guessed, and `chute check`
//! with it passes on the file it was drafted from.

mod common;

use std::path::Path;

use common::catalogue::generate;
use common::{check_args, chute, json, root, temp};

/// Drafts a schema for `file`, checks `file` with it, and returns (the TOML, the check's report).
fn draft_then_check(file: &Path, tag: &str) -> (String, serde_json::Value) {
    let out = chute(&["schema", "draft", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let toml = String::from_utf8(out.stdout).unwrap();
    let path = temp(tag).join("draft.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = chute(&check_args(file, "--schema-file", &path));
    assert_eq!(out.status.code(), Some(0), "{toml}\n{out:?}");
    (toml, json(&out))
}

#[test]
fn checking_the_clean_sample_with_its_draft_succeeds() {
    let (toml, report) = draft_then_check(&root().join("samples/products.csv"), "products");
    assert_eq!(report["status"], "SUCCEEDED", "{toml}\n{report}");
    assert!(toml.contains("key GUESSED: `sku`"), "{toml}");
}

#[test]
fn the_dirty_sample_only_loses_rows_no_schema_can_accept() {
    let (toml, report) = draft_then_check(&root().join("samples/dirty.csv"), "dirty");
    // A row with more fields than the header is rejected whatever the schema says.
    assert_eq!(report["rows"]["rejected"], 1, "{toml}\n{report}");
    assert_eq!(report["errors_by_code"]["field_count"], 1, "{report}");
    assert!(
        toml.contains("mixed"),
        "the price column with `abc` stays a string: {toml}"
    );
}

#[test]
fn a_generated_catalogue_gets_types_required_and_a_key_and_passes() {
    let file = temp("generated").join("catalogue.csv");
    std::fs::write(&file, generate(5000)).unwrap();
    let (toml, report) = draft_then_check(&file, "generated-check");
    assert_eq!(report["status"], "SUCCEEDED", "{toml}\n{report}");
    assert_eq!(report["rows"]["valid"], 5000);
    let out = chute(&["--json", "schema", "draft", file.to_str().unwrap()]);
    let draft = json(&out);
    let kind = |name: &str| {
        draft["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {draft}"))["type"]
            .clone()
    };
    assert_eq!(kind("price"), "decimal");
    assert_eq!(kind("stock"), "integer");
    assert_eq!(kind("active"), "boolean");
    assert_eq!(kind("created_at"), "timestamp");
    assert_eq!(kind("sku"), "string");
    assert_eq!(draft["key"], "sku");
    assert_eq!(draft["key_guessed"], true);
}

#[test]
fn zero_padded_and_mixed_columns_stay_strings_with_the_reason() {
    let file = temp("padded").join("codes.csv");
    std::fs::write(
        &file,
        "code,zip,qty\nA,007,1\nB,010,2\nC,123,x\nD,200,3\nE,300,4\n",
    )
    .unwrap();
    let out = chute(&["schema", "draft", file.to_str().unwrap(), "--key", "code"]);
    let toml = String::from_utf8(out.stdout).unwrap();
    assert!(toml.contains("zero-padded (`007`)"), "{toml}");
    assert!(
        toml.contains("mixed, 4 of 5 values are integer but `x` is not"),
        "{toml}"
    );
    assert!(toml.contains("key `code` (given)"), "{toml}");
    let out = chute(&["schema", "draft", file.to_str().unwrap(), "--key", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}
