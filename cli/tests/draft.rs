//! `chute schema draft`, offline: a drafted schema loads, says what it guessed, and `chute check`
//! with it passes on the file it was drafted from.

mod common;

use std::path::Path;

use common::catalogue::generate;
use common::{check_args, chute, file_with, json, latin1, root, temp, utf16le, EUROPEAN};

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

/// The drafted `[[columns]]` table of `column`.
fn column_of<'t>(toml: &'t str, column: &str) -> &'t str {
    let start = toml
        .find(&format!("name = \"{column}\""))
        .unwrap_or_else(|| panic!("no column {column} in {toml}"));
    let rest = &toml[start..];
    &rest[..rest.find("[[columns]]").unwrap_or(rest.len())]
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

/// `chute --json schema draft FILE`, with its columns (name, type, required, notes, counts) and key.
fn drafted(file: &Path) -> serde_json::Value {
    let out = chute(&["--json", "schema", "draft", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    json(&out)
}

/// The sample as an .xlsx: numbers a spreadsheet would hold as numbers (`12`, `9.5`) are number
/// cells, everything else text.
fn as_xlsx(csv_text: &[u8]) -> Vec<u8> {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv_text);
    for (row, record) in reader.records().enumerate() {
        for (col, cell) in record.unwrap().iter().enumerate() {
            let (row, col) = (row as u32, col as u16);
            match cell.parse::<f64>() {
                Ok(number) if number.to_string() == cell => sheet.write_number(row, col, number),
                _ => sheet.write_string(row, col, cell),
            }
            .unwrap();
        }
    }
    workbook.save_to_buffer().unwrap()
}

#[test]
fn a_gzip_utf16_or_xlsx_sample_is_drafted_as_its_plain_csv() {
    use std::io::Write;
    let dir = temp("formats");
    let text = generate(400);
    let plain = dir.join("catalogue.csv");
    std::fs::write(&plain, &text).unwrap();
    let gzip = dir.join("catalogue.csv.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&text).unwrap();
    std::fs::write(&gzip, encoder.finish().unwrap()).unwrap();
    let utf16 = dir.join("catalogue-utf16.csv");
    std::fs::write(&utf16, utf16le(std::str::from_utf8(&text).unwrap())).unwrap();
    let xlsx = dir.join("catalogue.xlsx");
    std::fs::write(&xlsx, as_xlsx(&text)).unwrap();

    let expected = drafted(&plain);
    assert_eq!(expected["read_as"]["encoding"], "UTF-8", "{expected}");
    for (file, what, (field, value)) in [
        (&gzip, "gzip", ("compression", "gzip")),
        (&utf16, "UTF-16", ("encoding", "UTF-16LE")),
        (&xlsx, "xlsx", ("format", "xlsx")),
    ] {
        let draft = drafted(file);
        assert_eq!(draft["read_as"][field], value, "{what}: {draft}");
        assert_eq!(draft["columns"], expected["columns"], "{what}");
        assert_eq!(
            (&draft["key"], &draft["rows_sampled"]),
            (&expected["key"], &expected["rows_sampled"]),
            "{what}"
        );
    }
    // And `chute check` with the gzip's draft reads the gzip as the draft did.
    let (toml, report) = draft_then_check(&gzip, "formats-check");
    assert_eq!(report["status"], "SUCCEEDED", "{toml}\n{report}");
    assert!(toml.contains("# Read as CSV (gzip), UTF-8"), "{toml}");
}

#[test]
fn a_declared_encoding_and_number_format_are_drafted_into_the_format_table() {
    let text = "réf;prix;stock\nA-1;1.234,50;3\nB-2;9,95;12\nC-3;12,00;0\n";
    let file = file_with("declared", "prix.csv", latin1(text));
    let args = [&["schema", "draft", file.to_str().unwrap()][..], &EUROPEAN].concat();
    let out = chute(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let toml = String::from_utf8(out.stdout).unwrap();
    assert!(
        toml.contains(
            "[format]\ndelimiter = \";\"\nencoding = \"windows-1252\"\ndecimal = \",\"\nthousands = \".\"\n"
        ),
        "{toml}"
    );
    assert!(toml.contains("name = \"réf\""), "{toml}");
    assert!(
        toml.contains("name = \"prix\"\n# aliases = []  (other header names of this column, if feeds differ)\ntype = \"decimal\""),
        "{toml}"
    );
    let schema = file.with_file_name("prix.toml");
    std::fs::write(&schema, &toml).unwrap();
    let out = chute(&check_args(&file, "--schema-file", &schema));
    let report = json(&out);
    assert_eq!(report["status"], "SUCCEEDED", "{toml}\n{report}");
    assert_eq!(report["rows"]["valid"], 3, "{report}");
}

#[test]
fn whole_numbers_with_decimals_and_bare_points_are_drafted_as_decimals_with_their_scale() {
    let file = temp("prices").join("prices.csv");
    std::fs::write(
        &file,
        "sku,price,weight,grams\nA,25,.5,100\nB,95,5.,250\nC,17.99,.25,80\n",
    )
    .unwrap();
    let draft = json(&chute(&[
        "--json",
        "schema",
        "draft",
        file.to_str().unwrap(),
    ]));
    let column = |name: &str| {
        let c = draft["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {draft}"));
        (c["type"].clone(), c["scale"].clone())
    };
    assert_eq!(column("price"), ("decimal".into(), 2.into()), "{draft}");
    assert_eq!(column("weight"), ("decimal".into(), 2.into()), "{draft}");
    assert_eq!(column("grams"), ("integer".into(), serde_json::Value::Null));
    let toml = draft["toml"].as_str().unwrap();
    assert!(
        toml.contains("# whole numbers and decimals together (`25`, `17.99`): decimal"),
        "{toml}"
    );
    // `chute check` with the draft takes `.5` and `5.` as the run does.
    let (toml, report) = draft_then_check(&file, "prices-check");
    assert_eq!(report["status"], "SUCCEEDED", "{toml}\n{report}");
    assert_eq!(report["rows"]["valid"], 3, "{report}");
}

#[test]
fn a_barcode_column_is_drafted_as_gtin_and_excel_damage_is_then_rejected() {
    // Shopify's product CSV after a save in Excel: one barcode in scientific notation.
    let file = temp("shopify").join("products_export.csv");
    std::fs::write(
        &file,
        "Handle,Variant SKU,Variant Price,Variant Barcode,EAN-13,Supplier Code,ref,UPC\n\
         shirt,SH-1,25,036000291452,,A1,0012,4006381333931\n\
         shirt,SH-2,17.99,3.65275E+11,4006381333931,B2,0034,4006381333932\n\
         mug,MG-1,9.5,3652750000129,,C3,0056,\n\
         cap,CP-1,12,96385074,8712345678906,D4,0078,\n",
    )
    .unwrap();
    let draft = json(&chute(&[
        "--json",
        "schema",
        "draft",
        file.to_str().unwrap(),
        "--key",
        "Variant SKU",
    ]));
    let column = |name: &str| {
        let c = draft["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {draft}"));
        (
            c["type"].as_str().unwrap().to_string(),
            c["identifier"] == true,
        )
    };
    assert_eq!(column("Variant Barcode"), ("gtin".into(), false), "{draft}");
    assert_eq!(column("EAN-13"), ("gtin".into(), false), "{draft}");
    assert_eq!(column("Supplier Code"), ("string".into(), true), "{draft}");
    assert_eq!(
        column("ref"),
        ("string".into(), true),
        "zero-padded: {draft}"
    );
    assert_eq!(column("Handle"), ("string".into(), false), "{draft}");
    // A mistyped check digit: not a GTIN column, and not a number either.
    assert_eq!(column("UPC"), ("string".into(), true), "{draft}");
    assert_eq!(column("Variant SKU"), ("string".into(), false), "the key");
    let toml = draft["toml"].as_str().unwrap();
    assert!(
        toml.contains("# Excel damaged 1 sampled value (`3.65275E+11`)")
            && toml.contains("format the column as text before exporting"),
        "{toml}"
    );
    assert!(toml.contains("identifier = true"), "{toml}");
    assert!(
        toml.contains(
            "# stays a string although named like a barcode: `4006381333932` ends in check digit 2"
        ),
        "{toml}"
    );

    let schema = file.with_file_name("products_export.toml");
    std::fs::write(&schema, toml).unwrap();
    let report = json(&chute(&check_args(&file, "--schema-file", &schema)));
    assert_eq!(report["rows"]["valid"], 3, "{report}");
    assert_eq!(report["errors_by_code"]["spreadsheet_error"], 1, "{report}");
    let error = &report["errors"][0];
    assert_eq!(error["code"], "spreadsheet_error", "{report}");
    assert_eq!(error["column"], "Variant Barcode", "{report}");
    assert!(
        error["value"].as_str().unwrap().contains("3.65275E+11"),
        "{report}"
    );
}

#[test]
fn a_decimal_comma_file_drafts_its_format_and_decimal_columns_and_passes() {
    let file = file_with(
        "decimal-comma",
        "preise.csv",
        "sku;preis;gewicht;aktiv\nA1;1.234,50;0,5;TRUE\nA2;9,95;1,25;false\nA3;12;2;yes\n",
    );
    let (toml, report) = draft_then_check(&file, "decimal-comma-check");
    assert_eq!(report["status"], "SUCCEEDED", "{toml}\n{report}");
    assert!(toml.contains("decimal = \",\""), "{toml}");
    assert!(toml.contains("thousands = \".\""), "{toml}");
    assert!(toml.contains("# detected"), "{toml}");
    for column in ["preis", "gewicht"] {
        assert!(
            column_of(&toml, column).contains("type = \"decimal\""),
            "{toml}"
        );
    }
    assert!(
        column_of(&toml, "aktiv").contains("type = \"boolean\""),
        "{toml}"
    );
}

#[test]
fn consistent_separators_draft_a_list() {
    let file = file_with(
        "tags",
        "tagged.csv",
        "sku,tags,note\nA1,a|b|c,plain\nA2,b|d,text\nA3,e|f,more\n",
    );
    let (toml, report) = draft_then_check(&file, "tags-check");
    assert_eq!(report["status"], "SUCCEEDED", "{toml}\n{report}");
    let tags = column_of(&toml, "tags");
    assert!(tags.contains("type = \"list\""), "{toml}");
    assert!(tags.contains("separator = \"|\""), "{toml}");
    assert!(
        column_of(&toml, "note").contains("type = \"string\""),
        "{toml}"
    );
}
