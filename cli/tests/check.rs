//! `chute check`, offline: the built binary on the held-in samples and on made-up files; no server.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::catalogue::generate;
use common::{check_args, chute, file_with, isolated, json, latin1, root, temp, utf16le, EUROPEAN};

#[test]
fn the_dirty_sample_is_partial_with_its_codes_and_writes_both_files() {
    let out_dir = temp("dirty");
    let dirty = root().join("samples/dirty.csv");
    let out = chute(&check_args(&dirty, "--out", &out_dir));
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

/// The benchmark's generated file at 80,000 rows (9 MB): over the 8 MiB past which a terminal
/// gets a progress bar, with 1 row in 100 rejected.
fn large_file(tag: &str) -> PathBuf {
    let path = temp(tag).join("large.csv");
    std::fs::write(&path, generate(80_000)).unwrap();
    path
}

#[test]
fn a_large_file_checked_with_stderr_not_a_terminal_prints_no_progress() {
    let file = large_file("quiet");
    let out = chute(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("rows 80,000   valid 79,200   rejected 800   duplicate 0"),
        "{text}"
    );
}

#[test]
fn on_a_terminal_a_large_file_gets_a_progress_bar_with_rows_per_second() {
    let file = large_file("tty");
    // util-linux `script` runs the command on a pseudo-terminal and copies the screen to stdout.
    let command = format!("{} check {}", env!("CARGO_BIN_EXE_chute"), file.display());
    let out = isolated(Command::new("script"))
        .args(["-qfec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("util-linux `script` runs the command on a pseudo-terminal");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    // The first frame is drawn once the file is planned, the next ones as chunks finish (the
    // bar's first frames are never rate-limited), so each of these is on the screen.
    assert!(screen.contains(" 0/80,000 rows"), "{screen}");
    assert!(screen.contains(" rows/s  ETA "), "{screen}");
    assert!(screen.contains("rows 80,000   valid 79,200"), "{screen}");

    // The same file, small enough to need no bar: the screen holds the summary only.
    let small = temp("tty-small").join("small.csv");
    std::fs::write(&small, generate(1_000)).unwrap();
    let command = format!("{} check {}", env!("CARGO_BIN_EXE_chute"), small.display());
    let out = isolated(Command::new("script"))
        .args(["-qfec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(!screen.contains("rows/s"), "{screen}");
    assert!(screen.contains("rows 1,000   valid 990"), "{screen}");
}

#[test]
fn a_file_the_pipeline_decodes_is_checked_the_same_way() {
    let text = "sku,name,price,stock,category\nA-1,Ölkanne,2.5,1,Küche\nA-2,,1,1,Home\n";
    let file = file_with("utf16", "utf16.csv", utf16le(text));
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

/// A European Excel export: windows-1252, semicolons, decimal commas with `.` thousands.
fn european_export(dir: &std::path::Path) -> PathBuf {
    let file = dir.join("export.csv");
    let text =
        "sku;name;price;stock;category\nA-1;Crème brûlée;1.234,50;3;Küche\nA-2;Café;2,5;1;Küche\n";
    std::fs::write(&file, latin1(text)).unwrap();
    file
}

#[test]
fn flags_declare_a_file_format_as_object_metadata_would() {
    let dir = temp("european");
    let file = european_export(&dir);
    let path = file.to_str().unwrap();
    // Read as the schema says (comma-separated UTF-8), the header has none of the key columns:
    // the file would fail, which is exit 1, not a usage error.
    let out = chute(&["--json", "check", path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(json(&out)["status"], "FAILED");

    // The delimiter found, but the encoding and the numbers not declared: the rows are rejected
    // and the warnings say what was chosen and what the rows decode as.
    let out = chute(&["--json", "check", path, "--delimiter", "auto"]);
    let report = json(&out);
    assert_eq!(report["rows"]["rejected"], 2, "{report}");
    assert_eq!(report["errors_by_code"]["encoding"], 2, "{report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("`;` splits the header"), "{warnings}");
    assert!(
        warnings.contains("they decode as windows-1252"),
        "{warnings}"
    );

    let declared = [&["--delimiter", "auto"][..], &EUROPEAN].concat();
    let out = chute(&[&["--json", "check", path][..], &declared].concat());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(report["rows"]["valid"], 2);
    assert_eq!(report["source"]["read_as"]["encoding"], "windows-1252");
    assert_eq!(report["source"]["read_as"]["numbers"], "1.234,56");

    let out = chute(&["check", path, "--thousands", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("thousands `x`"), "{stderr}");
}

#[test]
fn a_source_reads_its_files_with_its_own_format_table() {
    let dir = temp("source-format");
    let file = european_export(&dir);
    let mut schema = std::fs::read_to_string(root().join("schemas/products.toml")).unwrap();
    schema += "\n[sources.eu.format]\nencoding = \"windows-1252\"\ndelimiter = \";\"\ndecimal = \",\"\nthousands = \".\"\n";
    let schema_file = dir.join("products.toml");
    std::fs::write(&schema_file, schema).unwrap();
    let args = |source: &'static str| {
        let mut args = vec!["--json", "check", file.to_str().unwrap()];
        args.extend(["--schema-file", schema_file.to_str().unwrap()]);
        if !source.is_empty() {
            args.extend(["--source", source]);
        }
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |source| {
        let args = args(source);
        chute(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert_eq!(json(&run(""))["status"], "FAILED");
    let report = json(&run("eu"));
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(report["source"]["read_as"]["delimiter"], ";");
}

#[test]
fn a_file_that_cannot_be_decoded_would_fail_its_run() {
    let dir = temp("broken-gzip");
    let file = dir.join("products.csv.gz");
    // A gzip header and then nothing a deflate stream can be.
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    bytes.extend_from_slice(&[0xff; 64]);
    std::fs::write(&file, bytes).unwrap();
    let out = chute(&["--json", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json(&out);
    assert_eq!(report["status"], "FAILED");
    assert!(
        report["reason"].as_str().unwrap().contains("gzip"),
        "{report}"
    );
}

#[test]
fn a_schema_saying_damage_warn_keeps_excel_damaged_barcodes_and_warns_once_per_column() {
    let dir = temp("damage-warn");
    let file = dir.join("export.csv");
    std::fs::write(
        &file,
        "sku,Variant Barcode\nA,036000291452\nB,3.65275E+11\nC,4.6347E+11\n",
    )
    .unwrap();
    let schema = dir.join("export.toml");
    std::fs::write(
        &schema,
        "name = \"export\"\nkey = [\"sku\"]\n\
         [[columns]]\nname = \"sku\"\ntype = \"string\"\nrequired = true\n\
         [[columns]]\nname = \"Variant Barcode\"\ntype = \"gtin\"\ndamage = \"warn\"\n",
    )
    .unwrap();
    let report = json(&chute(&check_args(&file, "--schema-file", &schema)));
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(report["rows"]["valid"], 3, "{report}");
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            == "Variant Barcode: 2 values in scientific notation (first at row 2), kept as written; format the column as text before exporting"),
        "{report}"
    );
}

#[test]
fn platform_exports_are_checked_with_the_shipped_schemas_as_a_run_counts_them() {
    let shopify = root().join("samples/platforms/shopify_products.csv");
    let out = chute(&[
        "--json",
        "check",
        shopify.to_str().unwrap(),
        "--schema",
        "shopify",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(
        (&report["rows"]["valid"], &report["rows"]["skipped"]),
        (&3.into(), &3.into())
    );
    assert!(
        report["warnings"]
            .to_string()
            .contains("3 continuation rows skipped (an image of the product above)"),
        "{report}"
    );
    let excel = std::fs::read_to_string(&shopify)
        .unwrap()
        .replace("036000291469", "3.65275E+11");
    let damaged = file_with("platforms", "damaged.csv", excel);
    let text = chute(&["check", damaged.to_str().unwrap(), "--schema", "shopify"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("skipped 3")
            && text.contains("row 2 (line 3) Variant Barcode spreadsheet_error")
            && text.contains("[3.65275E+11]"),
        "{text}"
    );
    let woo = root().join("samples/platforms/woocommerce_products.csv");
    let out = chute(&[
        "--json",
        "check",
        woo.to_str().unwrap(),
        "--schema",
        "woocommerce",
    ]);
    assert_eq!(json(&out)["status"], "SUCCEEDED", "{out:?}");
}
