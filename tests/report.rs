//! The report model and its renderings: status per outcome, accounting, rejects.csv safety, HTML
//! escaping, and the subject line.

use chute::error::Refusal;
use chute::render::{render, Link};
use chute::report::{Artifacts, ChunkTally, FileObject, ReportBuilder, Status, Timings};
use chute::run::{TransformCounts, WriteCounts};
use chute::transform::{Issue, RejectedRow};
use chute::{Code, Position};

fn source() -> FileObject {
    FileObject {
        bucket: "b".into(),
        key: "incoming/shoes/products-2026-11-22.csv".into(),
        etag: "e".into(),
        read_as: None,
    }
}

fn done(index: u32, rows: u64, rejected: u64, duplicate: u64) -> ChunkTally {
    let valid = rows - rejected - duplicate;
    ChunkTally {
        index,
        rows,
        transformed: Some(TransformCounts {
            rows,
            valid,
            duplicate,
            rejected,
            skipped: 0,
        }),
        not_utf8: None,
        damaged: Vec::new(),
        written: Some(WriteCounts {
            inserted: valid,
            ..WriteCounts::default()
        }),
    }
}

fn rejected(row: u64, column: &str, value: &str, fields: &[&str]) -> RejectedRow {
    RejectedRow {
        position: Position { row, line: row + 1 },
        issues: vec![Issue {
            column: column.into(),
            code: Code::TypeError,
            message: format!("{column} is wrong"),
            value: value.into(),
        }],
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

fn finish(builder: ReportBuilder) -> (chute::report::Report, String) {
    let (report, csv) = builder.finish(
        Timings::default(),
        Artifacts::default(),
        &["sku".into(), "price".into()],
    );
    (report, String::from_utf8(csv).unwrap())
}

#[test]
fn a_clean_run_succeeds() {
    let mut b = ReportBuilder::new("r", source(), "products");
    b.chunk(&done(0, 10, 0, 0));
    b.chunk(&done(1, 5, 0, 1));
    let (report, _) = finish(b);
    assert_eq!(report.status, Status::Succeeded);
    assert_eq!(
        (report.rows.total, report.rows.valid, report.rows.duplicate),
        (15, 14, 1)
    );
    assert_eq!(
        report.subject(),
        "[chute] SUCCEEDED products-2026-11-22.csv: 14 imported, 0 rejected"
    );
}

#[test]
fn skipped_continuation_rows_succeed_with_a_warning_and_appear_in_the_json_only_when_there() {
    let (clean, _) = finish({
        let mut b = ReportBuilder::new("r", source(), "shopify");
        b.chunk(&done(0, 4, 0, 0));
        b
    });
    assert!(!serde_json::to_string(&clean.rows)
        .unwrap()
        .contains("skipped"));
    let mut b = ReportBuilder::new("r", source(), "shopify");
    b.continuation("an image");
    let mut chunk = done(0, 4, 0, 0);
    let counts = chunk.transformed.as_mut().unwrap();
    (counts.valid, counts.skipped) = (3, 1);
    chunk.written.as_mut().unwrap().inserted = 3;
    b.chunk(&chunk);
    let (report, _) = finish(b);
    assert_eq!(report.status, Status::Succeeded);
    assert_eq!(
        (report.rows.total, report.rows.valid, report.rows.skipped),
        (4, 3, 1)
    );
    assert!(serde_json::to_string(&report.rows)
        .unwrap()
        .contains("\"skipped\":1"));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w == "1 continuation rows skipped (an image)"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn rejected_rows_make_a_partial_run_with_every_problem_in_rejects_csv() {
    let mut b = ReportBuilder::new("r", source(), "products");
    b.chunk(&done(0, 9_000, 1_000, 0));
    b.rejected_row(&rejected(
        7,
        "price",
        "=HYPERLINK(\"http://x\")",
        &["A-1", "=HYPERLINK(\"http://x\")"],
    ));
    b.rejected_row(&rejected(3, "price", "@SUM(A1)", &["A-0", "@SUM(A1)"]));
    b.refused(&Refusal {
        position: Position { row: 9, line: 10 },
        code: 121,
        message: "Document failed validation".into(),
    });
    let (report, csv) = finish(b);
    assert_eq!(report.status, Status::Partial);
    assert_eq!(
        report.subject(),
        "[chute] PARTIAL products-2026-11-22.csv: 8,000 imported, 1,000 rejected"
    );
    assert_eq!(report.errors_total, 3);
    assert_eq!(
        report
            .errors
            .iter()
            .map(|e| e.position.row)
            .collect::<Vec<_>>(),
        [3, 7, 9],
        "in row order"
    );
    assert_eq!(report.errors_by_code.get(&Code::Database), Some(&1));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "row,line,column,code,message,value,sku,price");
    assert_eq!(
        lines[1],
        "3,4,price,type_error,price is wrong,'@SUM(A1),A-0,'@SUM(A1)"
    );
    assert!(
        lines[2].contains(r#""'=HYPERLINK(""http://x"")""#),
        "{}",
        lines[2]
    );
    assert_eq!(lines.len(), 4);
}

#[test]
fn a_failed_chunk_is_partial_and_its_rows_are_unprocessed() {
    let mut b = ReportBuilder::new("r", source(), "products");
    b.chunk(&done(0, 100, 0, 0));
    b.chunk(&ChunkTally {
        index: 1,
        rows: 40,
        transformed: None,
        not_utf8: None,
        damaged: Vec::new(),
        written: None,
    });
    let (report, _) = finish(b);
    assert_eq!(report.status, Status::Partial);
    assert_eq!(report.chunks.failed, [1]);
    assert_eq!(
        (
            report.rows.total,
            report.rows.valid,
            report.rows.unprocessed
        ),
        (140, 100, 40)
    );
    assert_eq!(report.reason.as_deref(), Some("1 of 2 chunks failed"));
}

#[test]
fn a_file_refused_at_validation_fails() {
    let mut b = ReportBuilder::new("r", source(), "products");
    b.fail("the header lacks required column `stock`; it has: sku, name (missing_column)");
    let (report, _) = finish(b);
    assert_eq!(report.status, Status::Failed);
    assert_eq!(
        report.subject(),
        "[chute] FAILED products-2026-11-22.csv: the header lacks required column `stock`"
    );
}

#[test]
fn html_escapes_every_value_and_text_stays_plain() {
    let mut b = ReportBuilder::new("r", source(), "products");
    b.chunk(&done(0, 2, 1, 0));
    b.rejected_row(&rejected(
        1,
        "name",
        "<script>alert('x')</script>",
        &["A", "<b>"],
    ));
    b.warnings(&["unknown columns ignored: <img src=x onerror=alert(1)>".to_string()]);
    let (report, _) = finish(b);
    let links = [Link {
        label: "Report".into(),
        name: "s3://b/reports/r/report.json".into(),
        url: Some("https://x/?a=1&b=\"2\"".into()),
    }];
    let (html, text) = render(&report, &links);
    assert!(
        !html.contains("<script>alert") && html.contains("&lt;script&gt;"),
        "values are escaped"
    );
    assert!(!html.contains("<img src=x"), "warnings are escaped");
    // The template escapes `/` too; the CSS inliner parses and re-serialises the document, which
    // writes `/` plainly and keeps `&` and `"` escaped, so the value still cannot leave the attribute.
    assert!(
        html.contains("href=\"https://x/?a=1&amp;b=&quot;2&quot;\""),
        "attributes are escaped: {html}"
    );
    assert!(text.contains("Rows 2: 1 imported"), "{text}");
    assert!(
        text.contains("https://x/?a=1&b=\"2\""),
        "the text part is not HTML-escaped"
    );
}

#[test]
fn damaged_identifiers_kept_by_the_chunks_are_one_warning_per_column() {
    use chute::rules::DamagedValues;
    let damaged = |first_row, values| DamagedValues {
        column: "Variant Barcode".into(),
        damage: "in scientific notation".into(),
        values,
        first_row,
    };
    let mut b = ReportBuilder::new("r", source(), "products");
    // Chunks report in any order; the warning names the file's first such row.
    for (index, found) in [(1, damaged(120, 2)), (0, damaged(7, 1))] {
        b.chunk(&ChunkTally {
            damaged: vec![found],
            ..done(index, 100, 0, 0)
        });
    }
    let (report, _) = finish(b);
    assert_eq!(report.status, Status::Succeeded);
    assert_eq!(
        report.warnings,
        ["Variant Barcode: 3 values in scientific notation (first at row 7), kept as written; format the column as text before exporting"]
    );
}
