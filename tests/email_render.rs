//! The summary email in a real browser: rendered with CSS inlined, opened in headless Chromium
//! (Debian's `chromium`; scripts/ensure-chromium installs it), screenshotted. The screenshot is kept
//! in out/email-render/ to look at; the test asserts it was produced and is not a blank page.

use std::path::{Path, PathBuf};
use std::process::Command;

use chute::pipeline::process;
use chute::plan::PlanOptions;
use chute::render::{render, Link};
use chute::report::{FileObject, ReportBuilder, Timings};
use chute::schema::Schema;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The report of samples/dirty.csv as a run would give it: rejected rows, a duplicate, a warning.
fn dirty_report() -> chute::Report {
    let bytes = std::fs::read(root().join("samples/dirty.csv")).unwrap();
    let outcome = process(&bytes, &Schema::products(), &PlanOptions::default()).unwrap();
    let source = FileObject {
        bucket: "chute-local".into(),
        key: "incoming/shoes/dirty.csv".into(),
        etag: "720bb8a52ce20fb5afd58a464b841f6e".into(),
        read_as: None,
    };
    let mut builder = ReportBuilder::new("dirty-a74030e8b93067f8", source, "products");
    outcome.fill_report(&mut builder);
    let timings = Timings {
        started_at: "2026-12-01T11:18:32.363Z".into(),
        finished_at: "2026-12-01T11:18:32.983Z".into(),
        duration_ms: 620,
        ..Timings::default()
    };
    builder
        .finish(timings, Default::default(), &outcome.plan.header.names)
        .0
}

/// Screenshots `html` (a file in `dir`) with headless Chromium; returns the PNG's size in bytes.
fn screenshot(dir: &Path, name: &str, html: &str) -> u64 {
    let page = dir.join(format!("{name}.html"));
    let png = dir.join(format!("{name}.png"));
    std::fs::write(&page, html).unwrap();
    let _ = std::fs::remove_file(&png);
    let profile = dir.join(format!("profile-{name}"));
    let _ = std::fs::remove_dir_all(&profile);
    let status = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--screenshot={}", png.display()),
            "--window-size=1000,1400",
            &format!("file://{}", page.display()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): run scripts/ensure-chromium, which installs it")
        });
    assert!(status.success(), "chromium exited with {status}");
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::metadata(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()))
        .len()
}

#[test]
fn the_summary_email_renders_in_a_real_browser_with_its_css_inlined() {
    let dir = root().join("out/email-render");
    std::fs::create_dir_all(&dir).unwrap();
    let links = vec![Link {
        label: "Report (JSON)".into(),
        name: "s3://chute-local/reports/dirty-a74030e8b93067f8/report.json".into(),
        url: None,
    }];
    let (html, _) = render(&dirty_report(), &links);
    assert!(
        !html.contains("<style"),
        "the CSS is inlined, no <style> left"
    );
    assert!(html.contains(" style=\""), "elements carry their styles");

    let blank = screenshot(&dir, "blank", "<!doctype html><html><body></body></html>");
    let summary = screenshot(&dir, "summary", &html);
    assert!(
        summary > blank * 3,
        "the summary screenshot ({summary} bytes) is no bigger than a blank page's ({blank} bytes): {}",
        dir.join("summary.png").display()
    );
}
