//! Files as teams really export them, end to end through the local stack (`scripts/run-local`):
//! a declared windows-1252 file, UTF-16 with a BOM, semicolons with decimal commas, a large gzip
//! cut into several chunks, spreadsheet damage, an `.xlsx`, and a zip of two files (refused). Each
//! checks the report (counts, codes, how the file was read), the email's "Read as" line and the
//! documents in MongoDB.

#[path = "support/run.rs"]
mod run;
mod support;

use bson::{doc, Bson, Document};

use run::{documents_in, errors, n, rows, Run};
use serde_json::Value;
use support::{stack, unique};

/// Uploads `bytes` as `incoming/<name>` with object metadata `meta` and runs it.
fn run_local(name: &str, bytes: &[u8], meta: &[(&str, &str)]) -> Run {
    let meta: Vec<String> = meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let args: Vec<&str> = meta.iter().flat_map(|m| ["--meta", m.as_str()]).collect();
    run::run_local(name, bytes, &args)
}

async fn documents(prefix: &str) -> Vec<Document> {
    documents_in("products", prefix).await
}

/// The email's HTML as SES received it.
fn email_html(run: &Run) -> String {
    std::fs::read_to_string(run.out.join("email.html")).unwrap()
}

fn decimal(text: &str) -> Bson {
    Bson::Decimal128(text.parse().unwrap())
}

#[tokio::test]
async fn a_declared_windows_1252_file_is_transcoded_and_an_undeclared_one_gets_a_hint() {
    let p = unique("W");
    let text = format!(
        "sku,name,price,stock,category\n{p}-1,Crème brûlée,4.50,3,Café\n{p}-2,Œuvre №,1,1,Déco\n"
    );
    // `№` is not in windows-1252: the sender's export would have written `?`.
    let text = text.replace('№', "?");
    let bytes = encoding_rs::WINDOWS_1252.encode(&text).0.into_owned();

    let run = run_local("latin.csv", &bytes, &[("chute-encoding", "windows-1252")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "SUCCEEDED", "{}", run.report);
    assert_eq!(n(&run.report, "/written/inserted"), 2);
    let read_as = &run.report["source"]["read_as"];
    assert_eq!(read_as["encoding"], "windows-1252", "{read_as}");
    assert_eq!(read_as["format"], "csv");
    assert!(read_as.get("compression").is_none(), "{read_as}");
    let docs = documents(&p).await;
    let names: Vec<&str> = docs.iter().map(|d| d.get_str("name").unwrap()).collect();
    assert_eq!(names, ["Crème brûlée", "Œuvre ?"]);
    assert_eq!(docs[0].get_str("category").unwrap(), "Café");
    assert!(
        email_html(&run)
            .contains("Read as CSV, windows-1252, comma-separated, numbers like 1234.56"),
        "{}",
        email_html(&run)
    );

    // The same bytes without the declaration: strict UTF-8 rejects both rows and says what they are.
    let q = unique("V");
    let bytes = encoding_rs::WINDOWS_1252
        .encode(&text.replace(&p, &q))
        .0
        .into_owned();
    let run = run_local("latin-undeclared.csv", &bytes, &[]);
    assert_eq!(run.report["status"], "PARTIAL", "{}", run.report);
    assert_eq!(n(&run.report, "/rows/valid"), 0);
    assert_eq!(run.report["errors_by_code"]["encoding"], 2);
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains(
            "2 rows are not UTF-8 (the first is row 1); they decode as windows-1252 — set chute-encoding: windows-1252"
        ),
        "{warnings}"
    );
    assert!(documents(&q).await.is_empty());
}

#[tokio::test]
async fn a_utf16_le_file_with_a_bom_is_read_without_being_declared() {
    let p = unique("U");
    let text = format!("sku,name,price,stock,category\r\n{p}-1,Ölkanne 日本,2.5,1,Küche\r\n{p}-2,Mug,3,2,Kitchen\r\n");
    let mut bytes = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    let run = run_local("utf16.csv", &bytes, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "SUCCEEDED", "{}", run.report);
    assert_eq!(run.report["source"]["read_as"]["encoding"], "UTF-16LE");
    let docs = documents(&p).await;
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].get_str("name").unwrap(), "Ölkanne 日本");
    assert_eq!(docs[0].get("price"), Some(&decimal("2.5")));
}

#[tokio::test]
async fn semicolons_and_decimal_commas_are_read_exactly_and_ambiguity_is_refused() {
    let p = unique("S");
    let text = format!(
        "sku;name;price;stock;category\n\
         {p}-1;Lamp, large;1.234,56;1.200;Home\n\
         {p}-2;Desk;12,5;3;Office\n\
         {p}-3;Chair;1,234.56;1;Office\n\
         {p}-4;Mat;1.23,4;1;Home\n"
    );
    let meta = [
        ("chute-delimiter", "auto"),
        ("chute-decimal", ","),
        ("chute-thousands", "."),
    ];
    let run = run_local("semicolons.csv", text.as_bytes(), &meta);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "PARTIAL", "{}", run.report);
    assert_eq!(rows(&run.report), (2, 2));
    assert_eq!(
        errors(&run.report),
        [(3, 4, "price", "type_error"), (4, 5, "price", "type_error")]
    );
    let message = run.report["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("declared number format 1.234,56"),
        "{message}"
    );
    let read_as = &run.report["source"]["read_as"];
    assert_eq!(
        (&read_as["delimiter"], &read_as["numbers"]),
        (&Value::from(";"), &Value::from("1.234,56"))
    );
    assert!(
        run.report["warnings"]
            .to_string()
            .contains("delimiter auto: `;` splits the header into 5 known columns"),
        "{}",
        run.report["warnings"]
    );
    let docs = documents(&p).await;
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].get("price"), Some(&decimal("1234.56")));
    assert_eq!(docs[0].get_i32("stock").unwrap(), 1200);
    assert_eq!(docs[0].get_str("name").unwrap(), "Lamp, large");
    assert_eq!(docs[1].get("price"), Some(&decimal("12.5")));
}

/// Rows of about 100 bytes, every 10,000th with a negative price.
fn large_csv(prefix: &str, rows: usize) -> String {
    let mut text = String::from("sku,name,description,price,stock,category\n");
    for i in 1..=rows {
        let price = if i % 10_000 == 0 {
            "-1".to_string()
        } else {
            format!("{}.{:02}", i % 500, i % 100)
        };
        text.push_str(&format!(
            "{prefix}-{i:06},Product {i},A deterministic description of item number {i:06},{price},{},Cat{}\n",
            i % 97,
            i % 13
        ));
    }
    text
}

#[tokio::test]
async fn a_large_gzip_is_decoded_once_staged_and_cut_into_chunks() {
    let p = unique("G");
    let rows = 100_000;
    let text = large_csv(&p, rows);
    let chunk_bytes: u64 = 2 << 20;
    let products = chute::Schema::products();
    let expected_chunks = chute::plan(
        text.as_bytes(),
        &products,
        products.format.as_declared(),
        &chute::PlanOptions {
            chunk_bytes,
            ..chute::PlanOptions::default()
        },
    )
    .unwrap()
    .chunks
    .len() as u64;
    assert!(expected_chunks >= 4, "{expected_chunks}");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, text.as_bytes()).unwrap();
    let gz = encoder.finish().unwrap();

    let run = run_local(
        "large.csv.gz",
        &gz,
        &[("chute-chunk-bytes", &chunk_bytes.to_string())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "PARTIAL", "{}", run.report);
    assert_eq!(n(&run.report, "/rows/total"), rows as u64);
    assert_eq!(n(&run.report, "/rows/rejected"), 10);
    assert_eq!(n(&run.report, "/written/inserted"), 99_990);
    assert_eq!(n(&run.report, "/chunks/total"), expected_chunks);
    assert_eq!(run.report["source"]["read_as"]["compression"], "gzip");
    let rejected: Vec<u64> = errors(&run.report).iter().map(|e| e.0).collect();
    assert_eq!(rejected, (1..=10).map(|k| k * 10_000).collect::<Vec<u64>>());
    assert_eq!(stack().count(&p).await, 99_990);
    let products = stack().database().await.collection::<Document>("products");
    let last = products
        .find_one(doc! {"sku": format!("{p}-099999")})
        .await
        .unwrap()
        .expect("the last chunk's rows are imported");
    assert_eq!(last.get("price"), Some(&decimal("499.99")));
    assert_eq!(
        last.get_str("description").unwrap(),
        "A deterministic description of item number 099999"
    );
}

#[tokio::test]
async fn spreadsheet_damage_is_rejected_with_its_own_code() {
    let p = unique("X");
    let text = format!(
        "sku,name,price,stock,category,created_at,,\n\
         {p}-1,Lamp,10,1,Home,2026-11-01,,\n\
         {p}-2,Desk,#N/A,1,Office,,,\n\
         1.23457E+11,Chair,5,1,Office,,,\n\
         {p}-4,#VALUE!,5,1,Office,,,\n\
         {p}-5,Mat,5,1,Home,45992,,\n\
         {p}-6,Rug,7,2,Home,\n"
    );
    let run = run_local("damaged.csv", text.as_bytes(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "PARTIAL", "{}", run.report);
    assert_eq!(rows(&run.report), (2, 4));
    assert_eq!(
        errors(&run.report),
        [
            (2, 3, "price", "spreadsheet_error"),
            (3, 4, "sku", "spreadsheet_error"),
            (4, 5, "name", "spreadsheet_error"),
            (5, 6, "created_at", "spreadsheet_error"),
        ]
    );
    let messages: Vec<&str> = run.report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].contains("spreadsheet error #N/A"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("a spreadsheet turned this identifier into a number"),
        "{}",
        messages[1]
    );
    assert!(
        messages[3].contains("2025-12-01")
            && messages[3].contains("a spreadsheet changed this date"),
        "{}",
        messages[3]
    );
    assert!(
        run.report["warnings"]
            .to_string()
            .contains("2 empty trailing header columns ignored (cells 7-8"),
        "{}",
        run.report["warnings"]
    );
    let skus: Vec<String> = documents(&p)
        .await
        .iter()
        .map(|d| d.get_str("sku").unwrap().to_string())
        .collect();
    assert_eq!(skus, [format!("{p}-1"), format!("{p}-6")]);
}

#[tokio::test]
async fn an_xlsx_is_read_from_the_named_sheet_with_the_sheet_s_row_numbers() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let p = unique("L");
    let mut workbook = Workbook::new();
    workbook
        .add_worksheet()
        .set_name("Notes")
        .unwrap()
        .write_string(0, 0, "not the data")
        .unwrap();
    let sheet = workbook.add_worksheet().set_name("Products").unwrap();
    for (col, name) in ["sku", "name", "price", "stock", "category", "created_at"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, col as u16, *name).unwrap();
    }
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let day = ExcelDateTime::parse_from_str("2026-11-01").unwrap();
    sheet.write_string(1, 0, format!("{p}-1")).unwrap();
    sheet.write_string(1, 1, "Lamp, \"large\"").unwrap();
    sheet.write_number(1, 2, 19.9).unwrap();
    sheet.write_number(1, 3, 12).unwrap();
    sheet.write_string(1, 4, "Home").unwrap();
    sheet.write_datetime_with_format(1, 5, &day, &date).unwrap();
    // Row 3 of the sheet is blank; row 4 has a price that is text.
    sheet.write_string(3, 0, format!("{p}-2")).unwrap();
    sheet.write_string(3, 1, "Desk").unwrap();
    sheet.write_string(3, 2, "cheap").unwrap();
    sheet.write_number(3, 3, 1).unwrap();
    sheet.write_string(3, 4, "Office").unwrap();
    let bytes = workbook.save_to_buffer().unwrap();

    let run = run_local("products.xlsx", &bytes, &[("chute-sheet", "Products")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "PARTIAL", "{}", run.report);
    assert_eq!(errors(&run.report), [(2, 4, "price", "type_error")]);
    let read_as = &run.report["source"]["read_as"];
    assert_eq!(
        (&read_as["format"], &read_as["sheet"]),
        (&Value::from("xlsx"), &Value::from("Products"))
    );
    let docs = documents(&p).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].get_str("name").unwrap(), "Lamp, \"large\"");
    assert_eq!(docs[0].get("price"), Some(&decimal("19.9")));
    assert_eq!(docs[0].get_i32("stock").unwrap(), 12);
    assert_eq!(
        docs[0]
            .get_datetime("created_at")
            .unwrap()
            .try_to_rfc3339_string()
            .unwrap(),
        "2026-11-01T00:00:00Z"
    );
    assert!(
        email_html(&run).contains("Read as XLSX sheet Products, numbers like 1234.56"),
        "{}",
        email_html(&run)
    );
}

#[tokio::test]
async fn a_zip_holding_two_files_fails_naming_the_second_and_writes_nothing() {
    let p = unique("Z");
    let text = format!("sku,name,price,stock,category\n{p}-1,Lamp,10,1,home\n");
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for name in ["products.csv", "stock.csv"] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, text.as_bytes()).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let run = run_local("export.zip", &bytes, &[]);
    assert_eq!(run.report["status"], "FAILED", "{}", run.report);
    let reason = run.report["reason"].as_str().unwrap();
    assert!(
        reason.contains("`stock.csv`") && reason.contains("unreadable"),
        "{reason}"
    );
    assert_eq!(stack().count(&p).await, 0);
}
