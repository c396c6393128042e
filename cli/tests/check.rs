//! `chute check`, offline: the built binary on the held-in samples and on made-up files; no server.

mod common;

use common::{chute, json, root, temp};

#[test]
fn the_dirty_sample_is_partial_with_its_codes_and_writes_both_files() {
    let out_dir = temp("dirty");
    let dirty = root().join("samples/dirty.csv");
    let out = chute(&[
        "--json",
        "check",
        dirty.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(report["status"], "PARTIAL");
    assert_eq!(report["rows"]["total"], 7);
    assert_eq!(report["rows"]["valid"], 3);
    assert_eq!(report["rows"]["rejected"], 3);
    assert_eq!(report["rows"]["duplicate"], 1);
    assert_eq!(
        report["written"]["inserted"], 0,
        "nothing is written offline"
    );
    assert_eq!(report["errors_by_code"]["field_count"], 1);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(stored, report);
    let rejects = std::fs::read_to_string(out_dir.join("rejects.csv")).unwrap();
    assert!(
        rejects.starts_with("row,line,column,code,message,value,sku,"),
        "{rejects}"
    );
    assert_eq!(
        rejects.lines().count() as u64,
        1 + report["errors_total"].as_u64().unwrap()
    );

    let text = chute(&["check", dirty.to_str().unwrap()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("PARTIAL") && text.contains("errors by code: constraint 3"),
        "{text}"
    );
    assert!(text.contains("row 7 (line 8) (row) field_count"), "{text}");
}

#[test]
fn a_clean_file_succeeds_and_a_file_error_fails_with_exit_1() {
    let products = root().join("samples/products.csv");
    let out = chute(&["check", products.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCEEDED"));

    let dir = temp("failed");
    let no_key = dir.join("no-key.csv");
    std::fs::write(&no_key, "name,price\nA,1.00\n").unwrap();
    let out = chute(&["--json", "check", no_key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json(&out);
    assert_eq!(report["status"], "FAILED");
    assert!(
        report["reason"].as_str().unwrap().ends_with(")"),
        "{report}"
    );
}

#[test]
fn usage_and_environment_errors_exit_2() {
    assert_eq!(chute(&["check"]).status.code(), Some(2));
    assert_eq!(
        chute(&["check", "/no/such/file.csv"]).status.code(),
        Some(2)
    );
    let products = root().join("samples/products.csv");
    let out = chute(&["check", products.to_str().unwrap(), "--schema", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let help = chute(&["check", "--help"]);
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("EXIT STATUS") && help.contains("EXAMPLES"),
        "{help}"
    );
}

#[test]
fn a_file_the_pipeline_decodes_is_checked_the_same_way() {
    let dir = temp("utf16");
    let file = dir.join("utf16.csv");
    let text = "sku,name,price,stock,category\nA-1,Ölkanne,2.5,1,Küche\nA-2,,1,1,Home\n";
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&file, bytes).unwrap();
    let out = chute(&["--json", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(report["source"]["read_as"]["encoding"], "UTF-16LE");
    assert_eq!(
        (&report["rows"]["valid"], &report["rows"]["rejected"]),
        (&1.into(), &1.into())
    );
    assert_eq!(report["errors"][0]["code"], "missing_value");
}
