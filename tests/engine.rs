//! The engine over whole files: documents, rejections and accounting for the products schema.

use bson::{Bson, Document};
use chute::pipeline::{process, process_with_progress, FileOutcome};
use chute::plan::PlanOptions;
use chute::schema::Schema;
use chute::Code;

const HEADER: &str =
    "sku,name,description,price,currency,stock,category,brand,color,tags,created_at,active";

fn run(csv: &str) -> FileOutcome {
    run_with(csv, PlanOptions::default())
}

fn run_with(csv: &str, options: PlanOptions) -> FileOutcome {
    let outcome = process(csv.as_bytes(), &Schema::products(), &options).expect("file accepted");
    assert_eq!(
        outcome.plan.rows,
        outcome.valid() + outcome.rejected() + outcome.duplicate() + outcome.skipped(),
        "accounting: total = valid + rejected + duplicate + skipped"
    );
    outcome
}

fn documents(outcome: &FileOutcome) -> Vec<Document> {
    let mut bytes = outcome.staged.as_slice();
    let mut docs = Vec::new();
    while !bytes.is_empty() {
        docs.push(Document::from_reader(&mut bytes).expect("staged bytes are BSON"));
    }
    docs
}

fn issues(outcome: &FileOutcome) -> Vec<(u64, u64, String, Code, String)> {
    outcome
        .chunks
        .iter()
        .flat_map(|c| &c.rejected)
        .flat_map(|r| {
            r.issues.iter().map(move |i| {
                (
                    r.position.row,
                    r.position.line,
                    i.column.clone(),
                    i.code,
                    i.value.clone(),
                )
            })
        })
        .collect()
}

#[test]
fn a_clean_row_becomes_a_typed_document() {
    let csv = format!(
        "{HEADER}\nLAMP-1,  Desk lamp ,Warm light,19.90,eur,12,Home,Acme,Red, a|b | a||c ,2026-11-22T10:00:00+01:00,No\n"
    );
    let out = run(&csv);
    let docs = documents(&out);
    assert_eq!(docs.len(), 1);
    let d = &docs[0];
    assert_eq!(d.get_str("sku").unwrap(), "LAMP-1");
    assert_eq!(d.get_str("name").unwrap(), "Desk lamp");
    assert_eq!(d.get_str("description").unwrap(), "Warm light");
    match d.get("price").unwrap() {
        Bson::Decimal128(p) => assert_eq!(p.to_string(), "19.90"),
        other => panic!("price is {other:?}"),
    }
    assert_eq!(d.get_str("currency").unwrap(), "EUR");
    assert_eq!(d.get_i32("stock").unwrap(), 12);
    assert_eq!(d.get_str("category").unwrap(), "Home");
    let attributes = d.get_document("attributes").unwrap();
    assert_eq!(attributes.get_str("brand").unwrap(), "Acme");
    assert_eq!(attributes.get_str("color").unwrap(), "Red");
    let tags: Vec<&str> = d
        .get_array("tags")
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["a", "b", "c"]);
    assert_eq!(
        d.get_datetime("created_at").unwrap().timestamp_millis(),
        1_795_338_000_000
    );
    assert!(!d.get_bool("active").unwrap());
    let meta = d.get_document("_import").unwrap();
    assert_eq!(
        (meta.get_i64("row").unwrap(), meta.get_i64("line").unwrap()),
        (1, 2)
    );
    assert_eq!(meta.get_str("hash").unwrap().len(), 32);
}

#[test]
fn empty_optional_cells_are_left_out_or_take_their_default() {
    let out = run(&format!("{HEADER}\nA,Lamp,,5,,0,Home,,,,2026-01-31,\n"));
    let d = &documents(&out)[0];
    assert!(d.get("description").is_none());
    assert!(
        d.get("attributes").is_none(),
        "no attribute cell, no attributes sub-document"
    );
    assert!(d.get("tags").is_none());
    assert_eq!(d.get_str("currency").unwrap(), "USD");
    assert!(d.get_bool("active").unwrap());
    assert_eq!(
        d.get_datetime("created_at").unwrap().timestamp_millis(),
        1_769_817_600_000
    );
}

#[test]
fn defaults_of_columns_missing_from_the_header_apply_on_insert_only() {
    let out = run("sku,name,price,stock,category\nA,Lamp,5,1,Home\n");
    let d = &documents(&out)[0];
    assert!(
        d.get("active").is_none() && d.get("currency").is_none(),
        "not set on update"
    );
    let defaults = d
        .get_document("_import")
        .unwrap()
        .get_document("defaults")
        .unwrap();
    assert!(defaults.get_bool("active").unwrap());
    assert_eq!(defaults.get_str("currency").unwrap(), "USD");
}

#[test]
fn header_matches_aliases_case_insensitively_and_attr_columns() {
    let csv = " Product_ID ,TITLE,Price,Inventory_Count,category,Colour,attr.Material,Weight\nA,Lamp,5,3,Home,Blue,Oak,2kg\n";
    let out = run(csv);
    assert_eq!(
        out.plan.header.warnings,
        ["unknown columns ignored: Weight"]
    );
    let d = &documents(&out)[0];
    assert_eq!(d.get_str("sku").unwrap(), "A");
    assert_eq!(d.get_str("name").unwrap(), "Lamp");
    assert_eq!(d.get_i32("stock").unwrap(), 3);
    let attributes = d.get_document("attributes").unwrap();
    assert_eq!(attributes.get_str("color").unwrap(), "Blue");
    assert_eq!(attributes.get_str("Material").unwrap(), "Oak");
    assert!(d.get("Weight").is_none());
}

#[test]
fn every_failing_column_of_a_row_is_reported() {
    let csv = format!("{HEADER}\nbad sku!,,,-1.5,US,many,Home,,,,yesterday,maybe\n");
    let out = run(&csv);
    assert_eq!(out.valid(), 0);
    let got: Vec<(String, Code)> = issues(&out)
        .into_iter()
        .map(|(_, _, c, code, _)| (c, code))
        .collect();
    assert_eq!(
        got,
        [
            ("sku".to_string(), Code::Constraint),
            ("name".to_string(), Code::MissingValue),
            ("price".to_string(), Code::Constraint),
            ("currency".to_string(), Code::Constraint),
            ("stock".to_string(), Code::TypeError),
            ("created_at".to_string(), Code::TypeError),
            ("active".to_string(), Code::TypeError),
        ]
    );
}

#[test]
fn each_rule_rejects_with_its_code_and_value() {
    let cases: &[(&str, &str, Code, &str)] = &[
        ("A,Lamp,5,1,", "category", Code::MissingValue, ""),
        ("A,Lamp,5.999,1,Home", "price", Code::Constraint, "5.999"),
        ("A,Lamp,1e3,1,Home", "price", Code::TypeError, "1e3"),
        ("A,Lamp,\"1,000\",1,Home", "price", Code::TypeError, "1,000"),
        (
            "A,Lamp,5,2147483648,Home",
            "stock",
            Code::Constraint,
            "2147483648",
        ),
        ("A,Lamp,5,-1,Home", "stock", Code::Constraint, "-1"),
        ("A,Lamp,5,1.5,Home", "stock", Code::TypeError, "1.5"),
        ("A/B,Lamp,5,1,Home", "sku", Code::Constraint, "A/B"),
    ];
    for (row, column, code, value) in cases {
        let out = run(&format!("sku,name,price,stock,category\n{row}\n"));
        let got = issues(&out);
        assert_eq!(got.len(), 1, "{row}: {got:?}");
        assert_eq!(
            (got[0].2.as_str(), got[0].3, got[0].4.as_str()),
            (*column, *code, *value),
            "{row}"
        );
    }
    let long_sku = "S".repeat(65);
    let out = run(&format!(
        "sku,name,price,stock,category\n{long_sku},Lamp,5,1,Home\n"
    ));
    assert_eq!(issues(&out)[0].3, Code::Constraint);
    let long_name = "n".repeat(201);
    let out = run(&format!(
        "sku,name,price,stock,category\nA,{long_name},5,1,Home\nB,{},5,1,Home\n",
        "n".repeat(200)
    ));
    assert_eq!(out.valid(), 1);
    assert_eq!(issues(&out)[0].2, "name");
}

#[test]
fn wrong_field_count_and_invalid_utf8_reject_the_whole_row() {
    let mut csv =
        b"sku,name,price,stock,category\nA,Lamp,5,1\nB,L\xe4mpe,5,1,Home\nC,Lamp,5,1,Home\n"
            .to_vec();
    csv.extend_from_slice(b"D,Lamp,5,1,Home,extra\n");
    let out = process(&csv, &Schema::products(), &PlanOptions::default()).unwrap();
    assert_eq!(out.valid(), 1);
    let got: Vec<(u64, String, Code)> = out.chunks[0]
        .rejected
        .iter()
        .map(|r| (r.position.row, r.issues[0].column.clone(), r.issues[0].code))
        .collect();
    assert_eq!(
        got,
        [
            (1, "(row)".to_string(), Code::FieldCount),
            (2, "name".to_string(), Code::Encoding),
            (4, "(row)".to_string(), Code::FieldCount)
        ]
    );
    assert!(out.chunks[0].rejected[1].issues[0]
        .value
        .contains("L\u{fffd}mpe"));
    let lines: Vec<u64> = out.chunks[0]
        .rejected
        .iter()
        .map(|r| r.position.line)
        .collect();
    assert_eq!(lines, [2, 3, 5]);
    assert_eq!(
        out.chunks[0].rejected[1].fields,
        ["B", "L\u{fffd}mpe", "5", "1", "Home"]
    );
}

#[test]
fn a_quote_that_never_closes_is_named_with_the_line_it_opened_on() {
    let out = run(
        "sku,name,price,stock,category\nA,Lamp,5,1,Home\nB,\"oops,5,1,Home\nC,Lamp,5,1,Home\nD,Lamp,5,1,Home\n",
    );
    assert_eq!(out.valid(), 1);
    let rejected = &out.chunks[0].rejected;
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (rejected[0].position.row, rejected[0].position.line),
        (2, 3)
    );
    let issue = &rejected[0].issues[0];
    assert_eq!(issue.code, Code::FieldCount);
    assert!(
        issue
            .message
            .starts_with("has an unclosed quote: the quote opened on line 3 never closes")
            && issue
                .message
                .contains("which has 2 fields; the header has 5"),
        "{}",
        issue.message
    );
    // A last row with its quotes closed and a field missing is only a field count.
    let out = run("sku,name,price,stock,category\nA,\"Lamp, big\",5,1\n");
    let issue = &out.chunks[0].rejected[0].issues[0];
    assert_eq!(issue.message, "has 4 fields; the header has 5");
}

#[test]
fn rows_and_lines_follow_quoted_newlines_bom_and_crlf() {
    let csv = "\u{feff}sku,name,price,stock,category\r\nA,\"two\r\nlines\",5,1,Home\r\nB,Lamp,x,1,Home\r\n\r\nC,Lamp,y,1,Home\r\n";
    let out = run(csv);
    let got: Vec<(u64, u64)> = issues(&out)
        .into_iter()
        .map(|(row, line, ..)| (row, line))
        .collect();
    assert_eq!(got, [(2, 4), (3, 6)]);
    assert_eq!(documents(&out)[0].get_str("name").unwrap(), "two\r\nlines");
}

#[test]
fn the_last_valid_occurrence_of_a_key_wins_across_chunks() {
    // A: rows 1 and 3 valid, row 5 invalid -> row 3 wins, row 1 duplicate, row 5 rejected.
    let csv = "sku,name,price,stock,category\nA,first,1,1,Home\nB,b,1,1,Home\nA,second,2,1,Home\nC,c,1,1,Home\nA,third,bad,1,Home\n";
    for chunk_bytes in [1, 20, 40, 1 << 20] {
        let out = run_with(
            csv,
            PlanOptions {
                chunk_bytes,
                ..PlanOptions::default()
            },
        );
        assert_eq!(out.superseded, [1]);
        assert_eq!(
            (out.valid(), out.duplicate(), out.rejected()),
            (3, 1, 1),
            "chunk_bytes {chunk_bytes}"
        );
        let docs = documents(&out);
        let a: Vec<&Document> = docs
            .iter()
            .filter(|d| d.get_str("sku").unwrap() == "A")
            .collect();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].get_str("name").unwrap(), "second");
    }
}

#[test]
fn header_problems_fail_the_whole_file() {
    let schema = Schema::products();
    let options = PlanOptions::default();
    let err = process(
        b"sku,title,price,category\nA,Lamp,5,Home\n",
        &schema,
        &options,
    )
    .err()
    .unwrap();
    assert_eq!(err.code, "missing_column");
    assert!(
        err.message
            .contains("`stock` (or inventory_count, quantity, stock_level)"),
        "{}",
        err.message
    );
    let err = process(b"sku,id,name,price,stock,category\n", &schema, &options)
        .err()
        .unwrap();
    assert_eq!(err.code, "duplicate_column");
    let err = process(b"", &schema, &options).err().unwrap();
    assert_eq!(err.code, "empty_file");
    let err = process(b"sku,n\xe4me,price\n", &schema, &options)
        .err()
        .unwrap();
    assert_eq!(err.code, "encoding");
    let err = process(
        b"sku;name;price;stock;category\nA;L;1;1;H\n",
        &schema,
        &options,
    )
    .err()
    .unwrap();
    assert_eq!(
        err.code, "missing_column",
        "a `;` file read with `,` has one odd column"
    );
    let wide = (0..10_000)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let err = process(wide.as_bytes(), &schema, &options).err().unwrap();
    assert_eq!(err.code, "too_many_columns");
}

#[test]
fn a_header_only_file_has_no_chunks_and_no_rows() {
    let out = run("sku,name,price,stock,category\n");
    assert_eq!((out.plan.rows, out.plan.chunks.len()), (0, 0));
}

#[test]
fn oversized_records_are_refused_with_their_row() {
    let csv = format!(
        "sku,name,price,stock,category\nA,\"{}\",1,1,H\n",
        "x".repeat(2000)
    );
    let options = PlanOptions {
        max_record_bytes: 1000,
        ..PlanOptions::default()
    };
    let err = process(csv.as_bytes(), &Schema::products(), &options)
        .err()
        .unwrap();
    assert_eq!(err.code, "record_too_large");
    assert!(
        err.message.contains("row 1 (near line 2)"),
        "{}",
        err.message
    );
}

#[test]
fn a_second_schema_needs_no_code() {
    let toml = r#"
        name = "stock_levels"
        key = ["sku", "warehouse"]
        delimiter = ";"
        [[columns]]
        name = "sku"
        type = "string"
        required = true
        [[columns]]
        name = "warehouse"
        type = "string"
        required = true
        [[columns]]
        name = "quantity"
        type = "integer"
        required = true
        min = "0"
    "#;
    let schema = Schema::from_toml(toml, "stock_levels.toml").unwrap();
    let csv = b"sku;warehouse;quantity\nA;north;5\nA;south;6\nA;north;7\n";
    let out = process(csv, &schema, &PlanOptions::default()).unwrap();
    assert_eq!((out.valid(), out.duplicate()), (2, 1));
}

#[test]
fn bad_input_gets_a_specific_message_never_a_panic() {
    let schema = Schema::products();
    let small = PlanOptions {
        max_file_bytes: 64,
        ..PlanOptions::default()
    };
    let long = format!(
        "sku,name,price,stock,category\n{}",
        "A,B,1,1,C\n".repeat(10)
    );
    assert_eq!(
        process(long.as_bytes(), &schema, &small)
            .err()
            .unwrap()
            .code,
        "too_large"
    );

    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let err = process(&garbage, &schema, &PlanOptions::default())
        .err()
        .expect("garbage is refused as a file");
    assert!(
        [
            "encoding",
            "missing_column",
            "record_too_large",
            "duplicate_column"
        ]
        .contains(&err.code.as_str()),
        "{err:?}"
    );

    let blank_lines = process(b"\n\n\r\n", &schema, &PlanOptions::default())
        .err()
        .unwrap();
    assert_eq!(blank_lines.code, "empty_file");

    // Latin-1 data rows: each one rejected with `encoding`, the header (ASCII) is fine.
    let latin1 = b"sku,name,price,stock,category\nA,Caf\xe9,1,1,Home\nB,Cafe,1,1,Home\n";
    let out = process(latin1, &schema, &PlanOptions::default()).unwrap();
    assert_eq!((out.valid(), out.rejected()), (1, 1));
    assert_eq!(out.chunks[0].rejected[0].issues[0].code, Code::Encoding);

    // An unclosed quote swallows the rest of the file into one record: refused with its row.
    let runaway = format!(
        "sku,name,price,stock,category\nA,\"oops,1,1,Home\n{}",
        "B,x,1,1,Home\n".repeat(200)
    );
    let options = PlanOptions {
        max_record_bytes: 1000,
        ..PlanOptions::default()
    };
    let err = process(runaway.as_bytes(), &schema, &options)
        .err()
        .unwrap();
    assert_eq!(err.code, "record_too_large");
    assert!(err.message.contains("unclosed quote"), "{}", err.message);
}

#[test]
fn staged_parts_are_cut_between_documents_and_add_up_to_the_whole() {
    use chute::transform::{transform_chunk, transform_chunk_parts, RowRules};
    let mut csv = format!("{HEADER}\n");
    for i in 0..200 {
        let price = if i % 10 == 3 { "-1" } else { "9.50" };
        csv.push_str(&format!(
            "S{i},Name {i},\"d, {i}\",{price},usd,{i},Home,B,Red,a|b,2026-01-02,yes\n"
        ));
    }
    let schema = Schema::products();
    let format = schema.format.as_declared();
    let plan = chute::plan::plan(csv.as_bytes(), &schema, format, &PlanOptions::default()).unwrap();
    let rules = RowRules::new(&schema, &plan.header, format);
    let chunk = &plan.chunks[0];
    let bytes = &csv.as_bytes()[chunk.start as usize..chunk.end as usize];
    let mut whole = Vec::new();
    let expected = transform_chunk(&rules, chunk, bytes, &[7, 8], &mut whole);
    for part_size in [1, 500, 4096, whole.len() - 1, whole.len(), 1 << 30] {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let outcome =
            transform_chunk_parts(&rules, chunk, bytes, &[7, 8], part_size, |p| parts.push(p));
        assert_eq!(outcome, expected, "part size {part_size}");
        assert_eq!(parts.concat(), whole, "part size {part_size}");
        let (last, full) = parts.split_last().unwrap();
        assert!(!last.is_empty());
        for part in full {
            assert!(part.len() >= part_size, "part size {part_size}");
        }
        for part in &parts {
            let mut rest = part.as_slice();
            while !rest.is_empty() {
                Document::from_reader(&mut rest).expect("a part holds whole documents");
            }
        }
    }
    assert_eq!((expected.valid, expected.duplicate), (178, 2));
}

#[test]
fn a_file_past_the_key_ceiling_is_refused_while_planning() {
    let schema = Schema::products();
    let csv = format!(
        "sku,name,price,stock,category\n{}",
        (0..5)
            .map(|i| format!("S{i},N,1,1,C\n"))
            .collect::<String>()
    );
    let at = |max_keys| PlanOptions {
        max_keys,
        ..PlanOptions::default()
    };
    assert_eq!(
        chute::plan::plan(csv.as_bytes(), &schema, schema.format.as_declared(), &at(5))
            .unwrap()
            .rows,
        5
    );
    let err = chute::plan::plan(csv.as_bytes(), &schema, schema.format.as_declared(), &at(3))
        .err()
        .unwrap();
    assert_eq!(err.code, "too_many_keys");
    assert!(
        err.message
            .starts_with("row 4 (near line 5) takes the file past 3 keys"),
        "the refusal names the row and the limit: {}",
        err.message
    );
    assert!(err.message.contains("ValidateMemoryMb"), "{}", err.message);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

    /// A check (`keep_staged` off: no document built) finds exactly what the transform finds:
    /// the same counts, rejections and superseded duplicates, whatever the chunk size.
    #[test]
    fn a_check_finds_what_the_transform_finds(
        rows in proptest::collection::vec((0u8..5, proptest::sample::select(vec!["1.50", "2", "x", "1.234", ""]), 0u8..3), 0..50),
        chunk_bytes in proptest::prop_oneof![proptest::strategy::Just(1u64), 2u64..300, proptest::strategy::Just(1u64 << 30)],
    ) {
        let mut csv = String::from("sku,name,price,stock,category\n");
        for (sku, price, stock) in rows {
            csv += &format!("S{sku},Lamp,{price},{stock},home\n");
        }
        let options = PlanOptions { chunk_bytes, ..PlanOptions::default() };
        let schema = Schema::products();
        let transformed = process(csv.as_bytes(), &schema, &options).unwrap();
        let checked = process_with_progress(csv.as_bytes(), &schema, schema.format.as_declared(), &options, false, |_| {}).unwrap();
        proptest::prop_assert_eq!(&checked.chunks, &transformed.chunks);
        proptest::prop_assert_eq!(&checked.superseded, &transformed.superseded);
        proptest::prop_assert!(checked.staged.is_empty());
        proptest::prop_assert_eq!(transformed.staged.is_empty(), transformed.valid() == 0);
    }
}

#[test]
fn identifiers_are_checked_for_spreadsheet_damage_and_gtins_for_their_check_digit() {
    let toml = r#"
        name = "barcodes"
        key = ["sku"]
        [[columns]]
        name = "sku"
        type = "string"
        required = true
        [[columns]]
        name = "barcode"
        type = "gtin"
        [[columns]]
        name = "mpn"
        type = "string"
        identifier = true
        [[columns]]
        name = "color"
        type = "string"
    "#;
    let schema = Schema::from_toml(toml, "barcodes.toml").unwrap();
    let csv = "sku,barcode,mpn,color\n\
               A1,036000291452,12345,red\n\
               A2,0036000291452,1.2345E+5,red\n\
               A3,036000291453,1,red\n\
               A4,3.65275E+11,1,red\n\
               A5,96385074,2,1.5E+3\n";
    let out = process(csv.as_bytes(), &schema, &PlanOptions::default()).unwrap();
    let found: Vec<(u64, String, Code)> = issues(&out)
        .into_iter()
        .map(|(row, _, column, code, _)| (row, column, code))
        .collect();
    assert_eq!(
        found,
        [
            (2, "mpn".to_string(), Code::SpreadsheetError),
            (3, "barcode".to_string(), Code::CheckDigit),
            (4, "barcode".to_string(), Code::SpreadsheetError),
        ]
    );
    let stored: Vec<(String, String, String)> = documents(&out)
        .iter()
        .map(|d| {
            let text = |f: &str| d.get_str(f).unwrap().to_string();
            (text("sku"), text("barcode"), text("color"))
        })
        .collect();
    assert_eq!(
        stored,
        [
            ("A1".into(), "00036000291452".into(), "red".into()),
            ("A5".into(), "00000096385074".into(), "1.5E+3".into()),
        ],
        "a GTIN is stored in its 14-digit form; a column that holds no identifiers is left as written"
    );
}

#[test]
fn damage_warn_keeps_damaged_identifiers_as_written_and_counts_them_across_chunks() {
    let toml = r#"
        name = "barcodes"
        key = ["sku"]
        [[columns]]
        name = "sku"
        type = "string"
        required = true
        [[columns]]
        name = "Variant Barcode"
        type = "gtin"
        damage = "warn"
        [[columns]]
        name = "mpn"
        type = "string"
        identifier = true
        damage = "warn"
    "#;
    let schema = Schema::from_toml(toml, "barcodes.toml").unwrap();
    let mut csv = "sku,Variant Barcode,mpn\n".to_string();
    for i in 1..=40 {
        let barcode = match i % 10 {
            7 => "3.65275E+11",
            9 => "36000291452",
            _ => "036000291452",
        };
        let mpn = if i == 12 { "1.2345E+5" } else { "M-1" };
        csv.push_str(&format!("S{i},{barcode},{mpn}\n"));
    }
    // A wrong check digit is no spreadsheet's doing: still rejected.
    csv.push_str("S41,036000291453,M-1\n");
    let options = PlanOptions {
        chunk_bytes: 200,
        ..PlanOptions::default()
    };
    let out = process(csv.as_bytes(), &schema, &options).unwrap();
    assert!(out.chunks.len() > 2, "{} chunks", out.chunks.len());
    assert_eq!((out.valid(), out.rejected()), (40, 1));
    assert_eq!(issues(&out)[0].3, Code::CheckDigit);
    let stored: Vec<(String, String)> = documents(&out)
        .iter()
        .filter(|d| ["S7", "S9", "S12"].contains(&d.get_str("sku").unwrap()))
        .map(|d| {
            let text = |f: &str| d.get_str(f).unwrap().to_string();
            (text("Variant Barcode"), text("mpn"))
        })
        .collect();
    assert_eq!(
        stored,
        [
            ("3.65275E+11".into(), "M-1".into()),
            ("36000291452".into(), "M-1".into()),
            ("00036000291452".into(), "1.2345E+5".into()),
        ]
    );
    let merged = chute::rules::DamagedValues::merge(out.chunks.iter().flat_map(|c| &c.damaged));
    let warnings: Vec<String> = merged.iter().map(|d| d.warning()).collect();
    assert_eq!(
        warnings,
        [
            "Variant Barcode: 4 values in scientific notation (first at row 7), kept as written; format the column as text before exporting",
            "Variant Barcode: 4 values with their leading zeros stripped (first at row 9), kept as written; format the column as text before exporting",
            "mpn: 1 value in scientific notation (first at row 12), kept as written; format the column as text before exporting",
        ]
    );
    // A key cannot be kept damaged, nor a column that holds no identifiers.
    for column in ["sku", "plain"] {
        let toml = "name = \"k\"\nkey = [\"sku\"]\n[[columns]]\nname = \"sku\"\ntype = \"string\"\nrequired = true\n[[columns]]\nname = \"plain\"\ntype = \"string\"\n"
        .replace(
            &format!("name = \"{column}\"\ntype = \"string\"\n"),
            &format!("name = \"{column}\"\ntype = \"string\"\ndamage = \"warn\"\n"),
        );
        let err = Schema::from_toml(&toml, "k.toml").unwrap_err().to_string();
        assert!(
            err.contains("damage = \"warn\" is for identifier columns"),
            "{err}"
        );
    }
}

#[test]
fn continuation_rows_are_skipped_not_rejected_imported_or_duplicates() {
    let products = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/products.toml"
    ))
    .unwrap();
    let table = "\n[continuation]\ncolumns = [\"description\", \"tags\"]\nreason = \"more text\"\n";
    let schema = Schema::from_toml(&format!("{products}{table}"), "p.toml").unwrap();
    let csv = format!(
        "{HEADER}\nA,Lamp,,10,,1,home,,,,,\n,,second line,,,,,,,x|y,,\n,,third line,,,,,,,,,\n\
         ,,,10,,,,,,,,\n,,,,,,,,,,,\nA,Lamp,,12,,1,home,,,,,\n"
    );
    let out = process(csv.as_bytes(), &schema, &PlanOptions::default()).unwrap();
    // Two continuation rows; an empty key with a price, and an all-empty row, are still rejected.
    assert_eq!(
        (
            out.plan.rows,
            out.valid(),
            out.skipped(),
            out.rejected(),
            out.duplicate()
        ),
        (6, 1, 2, 2, 1)
    );
    assert_eq!(documents(&out).len(), 1);
    assert!(
        issues(&out).iter().all(|i| i.0 == 4 || i.0 == 5),
        "{:?}",
        issues(&out)
    );
}
