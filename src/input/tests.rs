use std::collections::HashMap;
use std::io::Write;

use super::*;
use crate::format::{Delimiter, Format, FormatSpec};
use crate::pipeline::{process, process_with_progress};
use crate::plan::PlanOptions;
use crate::report::ReportBuilder;

const HEADER: &str = "sku,name,price,stock,category\n";

fn decode<'b>(bytes: &'b [u8], format: &Format) -> Decoded<'b> {
    decode_all(bytes, Some(&Schema::products()), format, None).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_declared_single_byte_encoding_is_transcoded_exactly() {
    let text = format!("{HEADER}A,Crème brûlée,10,1,café\n");
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
    let format = Format::default()
        .with(
            &FormatSpec {
                encoding: Some("windows-1252".into()),
                ..FormatSpec::default()
            },
            "test",
        )
        .unwrap();
    let decoded = decode(&bytes, &format);
    assert_eq!(std::str::from_utf8(&decoded.csv).unwrap(), text);
    assert_eq!(decoded.read_as.encoding, "windows-1252");
    assert!(matches!(decoded.csv, std::borrow::Cow::Owned(_)));
}

#[test]
fn a_utf16_bom_wins_over_the_declared_encoding() {
    let text = format!("{HEADER}A,Lampe à huile,10,1,home\n");
    for (bom, big_endian) in [([0xFF, 0xFE], false), ([0xFE, 0xFF], true)] {
        let mut bytes = bom.to_vec();
        for unit in text.encode_utf16() {
            let pair = if big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            };
            bytes.extend_from_slice(&pair);
        }
        let decoded = decode(&bytes, &Format::default());
        assert_eq!(std::str::from_utf8(&decoded.csv).unwrap(), text);
        let expected = if big_endian { "UTF-16BE" } else { "UTF-16LE" };
        assert_eq!(decoded.read_as.encoding, expected);
    }
}

#[test]
fn bytes_malformed_in_the_declared_encoding_are_rejected_not_replaced() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"A,ok,1,1,x\nB,\x82\xa0,1,1,x\nC,\x82,1,1,x\n");
    let format = Format {
        encoding: encoding_rs::SHIFT_JIS,
        ..Format::default()
    };
    let decoded = decode(&bytes, &format);
    let outcome = process_with_progress(
        &decoded.csv,
        &Schema::products(),
        decoded.format,
        &PlanOptions::default(),
        true,
        |_| {},
    )
    .unwrap();
    assert_eq!((outcome.valid(), outcome.rejected()), (2, 1));
    let rejected = &outcome.chunks[0].rejected[0];
    assert_eq!(
        (rejected.position.row, rejected.issues[0].code),
        (3, crate::Code::Encoding)
    );
}

#[test]
fn compression_is_told_by_magic_bytes_and_streamed() {
    let text = format!("{HEADER}A,Lamp,10,1,home\nB,Desk,20,2,office\n");
    let zstd = zstd::encode_all(text.as_bytes(), 3).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.add_directory("export/", stored).unwrap();
    zip.start_file("export/products.csv", stored).unwrap();
    zip.write_all(text.as_bytes()).unwrap();
    let zip = zip.finish().unwrap().into_inner();
    for (bytes, name) in [
        (gzip(text.as_bytes()), "gzip"),
        (zstd, "zstd"),
        (zip, "zip"),
    ] {
        let decoded = decode(&bytes, &Format::default());
        assert_eq!(std::str::from_utf8(&decoded.csv).unwrap(), text, "{name}");
        assert_eq!(decoded.read_as.compression.as_deref(), Some(name));
        assert_eq!(
            decoded.read_as.line(),
            format!("CSV ({name}), UTF-8, comma-separated, numbers like 1234.56")
        );
    }
    let plain = decode(text.as_bytes(), &Format::default());
    assert!(matches!(plain.csv, std::borrow::Cow::Borrowed(_)));
    assert_eq!(plain.read_as.compression, None);
}

/// A zip of `entries` (name, contents; a name ending in `/` is a directory), deflated.
fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, text) in entries {
        if name.ends_with('/') {
            zip.add_directory(*name, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn a_zip_with_a_second_file_is_refused_naming_it_not_half_read() {
    let text = format!(
        "{HEADER}A,Lamp,10,1,home
"
    );
    let two = zip_of(&[("products.csv", &text), ("more/stock.csv", &text)]);
    let err = match decode_all(&two, Some(&Schema::products()), &Format::default(), None) {
        Ok(_) => panic!("a zip of two files was read"),
        Err(e) => e,
    };
    assert_eq!(err.code, FileCode::Unreadable);
    assert!(err.message.contains("`more/stock.csv`"), "{err}");
    // What a Mac's archiver adds after the file is not a second file.
    let mac = zip_of(&[
        ("products.csv", &text),
        ("__MACOSX/", ""),
        ("__MACOSX/._products.csv", "fork"),
    ]);
    let decoded = decode(&mac, &Format::default());
    assert_eq!(std::str::from_utf8(&decoded.csv).unwrap(), text);
}

#[test]
fn a_broken_gzip_is_an_unreadable_file() {
    let mut bytes = gzip(HEADER.repeat(100).as_bytes());
    bytes.truncate(bytes.len() / 2);
    let err = match decode_all(&bytes, Some(&Schema::products()), &Format::default(), None) {
        Ok(_) => panic!("a cut gzip stream decodes"),
        Err(e) => e,
    };
    assert_eq!(err.code, FileCode::Unreadable, "{err}");
}

#[test]
fn the_auto_delimiter_is_the_one_that_resolves_the_header() {
    let auto = Format {
        delimiter: Delimiter::Auto,
        ..Format::default()
    };
    let text = "sku;name;price;stock;category\nA;Lamp, large;10;1;home\n";
    let decoded = decode(text.as_bytes(), &auto);
    assert_eq!(decoded.format.delimiter, b';');
    assert_eq!(decoded.read_as.delimiter, ";");
    assert!(decoded.warnings[0].contains("`;` splits the header into 5 known columns"));
    let tabs = decode(b"sku\tname\tprice\tstock\tcategory\n", &auto);
    assert_eq!(tabs.read_as.delimiter, "tab");
    let err = match decode_all(b"sku:name:price\n", Some(&Schema::products()), &auto, None) {
        Ok(_) => panic!("no candidate resolves this header"),
        Err(e) => e,
    };
    assert_eq!(err.code, FileCode::MissingColumn);
    assert!(err.message.contains("`,` `;` `tab` `|`"), "{}", err.message);
}

#[test]
fn metadata_overrides_the_schema_format_and_bad_values_are_named() {
    let metadata: HashMap<String, String> = [
        ("chute-delimiter", ";"),
        ("chute-decimal", ","),
        ("chute-thousands", "."),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let format = Format::default().with_metadata(&metadata).unwrap();
    assert_eq!(format.delimiter, Delimiter::Byte(b';'));
    assert_eq!(format.numbers.example(), "1.234,56");
    let bad: HashMap<String, String> =
        [("chute-encoding".to_string(), "klingon".to_string())].into();
    let err = Format::default().with_metadata(&bad).unwrap_err();
    assert!(err.message.contains("klingon"), "{err}");
    let clash: HashMap<String, String> = [("chute-thousands".to_string(), ".".to_string())].into();
    assert!(Format::default().with_metadata(&clash).is_err());
}

#[test]
fn a_schema_declares_its_format_and_the_old_delimiter_key_still_works() {
    let schema = |extra: &str| {
        let text = format!(
            "name = \"t\"\nkey = [\"sku\"]\n{extra}\n[[columns]]\nname = \"sku\"\ntype = \"string\"\nrequired = true\n[[columns]]\nname = \"price\"\ntype = \"decimal\"\ndefault = \"0.5\"\n"
        );
        Schema::from_toml(&text, "t.toml")
    };
    let old = schema("delimiter = \";\"").unwrap();
    assert_eq!(old.format.as_declared().delimiter, b';');
    let new = schema(
        "[format]\ndelimiter = \"auto\"\ndecimal = \",\"\nthousands = \" \"\nencoding = \"latin1\"",
    )
    .unwrap();
    assert_eq!(new.format.delimiter, Delimiter::Auto);
    assert_eq!(new.format.encoding, encoding_rs::WINDOWS_1252);
    assert_eq!(new.format.numbers.example(), "1 234,56");
    let text = "sku;price\nA;1 234,5\nB;\n";
    let decoded = decode_all(text.as_bytes(), Some(&new), &new.format, None).unwrap();
    let outcome = process_with_progress(
        &decoded.csv,
        &new,
        decoded.format,
        &PlanOptions::default(),
        true,
        |_| {},
    )
    .unwrap();
    assert_eq!((outcome.valid(), outcome.rejected()), (2, 0));
    assert!(schema("delimiter = \";\"\n[format]\ndelimiter = \",\"").is_err());
}

#[test]
fn rows_that_are_not_utf8_get_a_hint_with_what_they_decode_as() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"A,Lamp,10,1,home\n");
    for i in 0..3 {
        let row =
            format!("B{i},Cr\u{e8}me br\u{fb}l\u{e9}e \u{e0} la fran\u{e7}aise,10,1,caf\u{e9}\n");
        bytes.extend_from_slice(&encoding_rs::WINDOWS_1252.encode(&row).0);
    }
    // Chunks of about a row each: every chunk finds its own rows, the report adds them up.
    let options = PlanOptions {
        chunk_bytes: 16,
        ..PlanOptions::default()
    };
    let outcome = process(&bytes, &Schema::products(), &options).unwrap();
    assert_eq!((outcome.chunks.len(), outcome.rejected()), (4, 3));
    let found: Vec<u64> = outcome
        .chunks
        .iter()
        .flat_map(|c| &c.not_utf8)
        .map(|n| n.rows)
        .collect();
    assert_eq!(found, [1, 1, 1]);
    let mut builder = ReportBuilder::new("r", Default::default(), "products");
    outcome.fill_report(&mut builder);
    let (report, _) = builder.finish(Default::default(), Default::default(), &[]);
    let warning = report.warnings.last().unwrap();
    assert!(
        warning
            .starts_with("3 rows are not UTF-8 (the first is row 2); they decode as windows-1252"),
        "{warning}"
    );
}

#[test]
fn chunk_hints_merge_into_one_with_the_guess_most_rows_got() {
    let found = |rows, first_row, decode_as: &str| NotUtf8Rows {
        rows,
        first_row,
        decode_as: decode_as.into(),
    };
    let chunks = [
        found(2, 40, "windows-1250"),
        found(3, 7, "windows-1252"),
        found(2, 90, "windows-1250"),
    ];
    assert_eq!(
        NotUtf8Rows::merge(&chunks),
        Some(found(7, 7, "windows-1250"))
    );
    assert_eq!(NotUtf8Rows::merge(&chunks[1..2]), Some(chunks[1].clone()));
    assert_eq!(NotUtf8Rows::merge(&[]), None);
    let one = found(1, 3, "Shift_JIS").warning();
    assert!(
        one.starts_with("1 row is not UTF-8 (the first is row 3); they decode as Shift_JIS"),
        "{one}"
    );
}

#[test]
fn trailing_blank_header_columns_are_tolerated_and_named() {
    let text =
        "sku,name,price,stock,category,,,\nA,Lamp,10,1,home,,,\nB,Desk,20,2,office\nC,Mat,5,1\n";
    let outcome = process(
        text.as_bytes(),
        &Schema::products(),
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!((outcome.valid(), outcome.rejected()), (2, 1));
    assert_eq!(
        outcome.chunks[0].rejected[0].issues[0].code,
        crate::Code::FieldCount
    );
    assert_eq!(
        outcome.plan.header.warnings,
        ["3 empty trailing header columns ignored (cells 6-8, a spreadsheet export's padding)"]
    );
}

#[test]
fn a_source_table_can_read_its_files_differently() {
    let products = include_str!("../../schemas/products.toml");
    let text = format!(
        "{products}\n[format]\ndecimal = \",\"\n[sources.erp]\nmode = \"full\"\n[sources.erp.format]\nencoding = \"latin1\"\ndelimiter = \";\"\n[sources.web]\nmode = \"full\"\n"
    );
    let schema = Schema::from_toml(&text, "p.toml").unwrap();
    let erp = schema.format_for("erp");
    assert_eq!(erp.encoding, encoding_rs::WINDOWS_1252);
    assert_eq!(erp.delimiter, Delimiter::Byte(b';'));
    assert_eq!(
        erp.numbers.decimal, ',',
        "the schema's [format] is the base"
    );
    assert_eq!(schema.format_for("web"), &schema.format);
    assert_eq!(schema.format_for("default").encoding, encoding_rs::UTF_8);
    let bad = text.replace("encoding = \"latin1\"", "encoding = \"klingon\"");
    let err = Schema::from_toml(&bad, "p.toml").unwrap_err().to_string();
    assert!(
        err.contains("[sources.erp.format]") && err.contains("klingon"),
        "{err}"
    );
}

#[test]
fn the_stored_plan_input_keeps_its_shape_with_the_format_flattened() {
    let input = PlanInput {
        read_as: ReadAs {
            format: "csv".into(),
            compression: None,
            encoding: "UTF-8".into(),
            delimiter: ";".into(),
            numbers: "1.234,56".into(),
            sheet: None,
        },
        format: ResolvedFormat {
            delimiter: b';',
            numbers: crate::value::NumberFormat {
                decimal: ',',
                thousands: Some('.'),
            },
        },
        staged: None,
    };
    let json = serde_json::to_string(&input).unwrap();
    assert_eq!(
        json,
        r#"{"read_as":{"format":"csv","encoding":"UTF-8","delimiter":";","numbers":"1.234,56"},"delimiter":59,"numbers":{"decimal":",","thousands":"."}}"#
    );
    assert_eq!(serde_json::from_str::<PlanInput>(&json).unwrap(), input);
}
