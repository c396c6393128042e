//! The report for people: an HTML summary and a plain-text email body, rendered from templates in
//! `templates/` with every value escaped. The HTML's `<style>` block is inlined into `style`
//! attributes (css-inline), since Outlook and several webmail clients drop `<style>`.

use std::collections::BTreeMap;

use minijinja::{context, Environment};
use serde::Serialize;

use crate::report::{thousands, ErrorEntry, Report};

/// Rows quoted in the "first rejected rows" table.
const FIRST_ERRORS: usize = 20;
/// Entries in the "most common problems" table.
const TOP_PROBLEMS: usize = 10;

/// An artifact to link: a presigned URL in AWS, or just its S3 location locally.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub label: String,
    pub name: String,
    pub url: Option<String>,
}

#[derive(Serialize)]
struct Problem<'a> {
    column: &'a str,
    code: &'a str,
    count: u64,
    example: &'a ErrorEntry,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Autoescape follows the template name: `.html` escapes HTML, `.txt` nothing.
    env.add_template("summary.html", include_str!("../templates/summary.html"))
        .expect("template parses");
    env.add_template("summary.txt", include_str!("../templates/summary.txt"))
        .expect("template parses");
    env
}

/// Renders `(html, text)`.
pub fn render(report: &Report, links: &[Link]) -> (String, String) {
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut examples: BTreeMap<(&str, &str), &ErrorEntry> = BTreeMap::new();
    // Counts per (column, code) come from the sample; the per-code totals are in the report.
    for e in &report.errors {
        *counts.entry((&e.column, e.code.as_str())).or_default() += 1;
        examples.entry((&e.column, e.code.as_str())).or_insert(e);
    }
    let mut problems: Vec<Problem> = counts
        .iter()
        .map(|(&(column, code), &count)| Problem {
            column,
            code,
            count,
            example: examples[&(column, code)],
        })
        .collect();
    problems.sort_by(|a, b| b.count.cmp(&a.count).then(a.column.cmp(b.column)));
    problems.truncate(TOP_PROBLEMS);
    let r = report;
    let seconds = r.timings.duration_ms as f64 / 1000.0;
    let numbers = context! {
        total => thousands(r.rows.total), valid => thousands(r.rows.valid), rejected => thousands(r.rows.rejected),
        duplicate => thousands(r.rows.duplicate), unprocessed => thousands(r.rows.unprocessed),
        skipped => thousands(r.rows.skipped),
        inserted => thousands(r.written.inserted), updated => thousands(r.written.updated),
        unchanged => thousands(r.written.unchanged), merged => thousands(r.written.merged), rate => r.timings.rows_per_second.map(thousands),
    };
    let ctx = context! {
        r => report,
        n => numbers,
        subject => report.subject(),
        file_name => report.file_name(),
        read_as => report.source.read_as.as_ref().map(crate::input::ReadAs::line),
        duration => format!("{seconds:.1} s"),
        problems => problems,
        first_errors => &report.errors[..report.errors.len().min(FIRST_ERRORS)],
        links => links,
    };
    let env = environment();
    let html = env
        .get_template("summary.html")
        .and_then(|t| t.render(&ctx))
        .expect("summary.html renders");
    let html = inline_css(&html);
    let text = env
        .get_template("summary.txt")
        .and_then(|t| t.render(&ctx))
        .expect("summary.txt renders");
    (html, text)
}

/// `html` with its `<style>` rules moved into `style` attributes (and the `<style>` block removed).
/// Only the document's own CSS: this build of css-inline cannot fetch stylesheets.
pub fn inline_css(html: &str) -> String {
    match css_inline::inline(html) {
        Ok(inlined) => inlined,
        Err(e) => {
            // The template's CSS is fixed, so this is a bug; the email still goes, styled or not.
            tracing::warn!(error = %e, "the summary's CSS could not be inlined");
            html.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{Mode, RunFeed};
    use crate::report::{Difference, FileObject, ReportBuilder, StaleReport, Timings};

    fn rendered(rows_per_second: Option<u64>) -> (String, String) {
        let (report, _) = ReportBuilder::new("run-1", FileObject::default(), "products").finish(
            Timings {
                duration_ms: 300,
                rows_per_second,
                ..Timings::default()
            },
            Default::default(),
            &[],
        );
        render(&report, &[])
    }

    #[test]
    fn a_dry_run_says_so_and_counts_what_it_would_do() {
        let mut builder = ReportBuilder::new(
            "run-1",
            FileObject {
                key: "incoming/erp/p.csv".into(),
                ..FileObject::default()
            },
            "products",
        );
        builder.feed(
            RunFeed {
                source: "erp".into(),
                mode: Mode::DryRun,
            },
            true,
        );
        builder.stale(StaleReport {
            policy: "deactivate".into(),
            marked: 2,
            sample: vec!["A-1".into(), "A-2".into()],
            ..StaleReport::default()
        });
        builder.differences(&[Difference {
            key: "A-3".into(),
            field: "price".into(),
            old: Some("9.90".into()),
            new: Some("8.50".into()),
        }]);
        let (report, _) = builder.finish(Timings::default(), Default::default(), &[]);
        assert!(report
            .subject()
            .starts_with("[chute] DRY RUN SUCCEEDED p.csv: 0 would be imported"));
        let (html, text) = render(&report, &[]);
        for needle in [
            "DRY RUN",
            "Would be inserted",
            "Would be marked stale",
            "source <code",
            ">A-1</code>",
            "→ 8.50",
        ] {
            assert!(html.contains(needle), "{needle}: {html}");
        }
        for needle in [
            "DRY RUN: nothing was written",
            "Source:   erp (mode dry-run)",
            "0 would be inserted",
            "2 would be marked stale",
            "First stale keys: A-1, A-2",
            "A-3 price: 9.90 → 8.50",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn the_delta_and_refused_stale_candidates_are_told() {
        let (mut report, _) = ReportBuilder::new("run-2", FileObject::default(), "products")
            .finish(Timings::default(), Default::default(), &[]);
        report.delta = Some(crate::report::DeltaReport {
            status: "on".into(),
            base_run: Some("run-1".into()),
            new: 1,
            changed: 2,
            unchanged: 3,
            stale: 4,
            commands: 9,
            snapshot: "committed (6 products in 1 piece)".into(),
            ..Default::default()
        });
        report.stale = Some(StaleReport {
            policy: "deactivate".into(),
            candidates: 4,
            refused_reason: Some("nothing marked stale: too many".into()),
            ..StaleReport::default()
        });
        let (html, text) = render(&report, &[]);
        let told =
            "1 new, 2 changed, 3 unchanged (never sent to the database), 4 stale by the snapshot";
        for page in [&html, &text] {
            assert!(page.contains(told), "{page}");
            assert!(page.contains("run-1"), "{page}");
            assert!(page.contains("4 found stale, not marked"), "{page}");
        }
        assert!(
            text.contains("0 marked stale (4 found stale, not marked)"),
            "{text}"
        );
    }

    #[test]
    fn the_css_is_inlined_into_style_attributes() {
        let (html, _) = rendered(None);
        assert!(!html.contains("<style"), "{html}");
        assert!(
            html.contains(r#"class="card" style="#) && html.contains("max-width: 860px"),
            "{html}"
        );
    }

    #[test]
    fn a_rate_shows_only_when_the_report_has_one() {
        let (html, text) = rendered(None);
        assert!(
            !html.contains("rows/s") && !text.contains("rows/s"),
            "{text}"
        );
        let (html, text) = rendered(Some(12_345));
        assert!(html.contains("12,345 rows/s"), "{html}");
        assert!(text.contains("(12,345 rows/s)"), "{text}");
    }
}
