//! Feeds end to end through the local stack (`scripts/run-local` → trigger → the real state machine
//! → SecantusDB), with the `catalog` schema (sources `erp` > `supplier-a`, `match_also` gtin/mpn):
//! full refreshes and their stale products, precedence between sources, `match_also` merges and
//! conflicts, and dry runs. Every test uses its own source names and keys, so runs of other tests
//! on the same stack never count as its stale products.

#[path = "support/run.rs"]
mod run;
mod support;

use bson::{doc, Bson, Document};

use run::{documents_in, n, Run};
use serde_json::Value;
use support::{stack, unique};

const HEADER: &str = "sku,name,price,stock,gtin,mpn,brand";

/// Runs `csv` with the `catalog` schema.
fn run_local(name: &str, csv: &str, args: &[&str]) -> Run {
    let args: Vec<&str> = ["--schema", "catalog"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    run::run_local(name, csv, &args)
}

/// `n` rows `<p>-000…` priced 10.00.
fn rows(p: &str, range: std::ops::Range<usize>) -> String {
    let mut csv = format!("{HEADER}\n");
    for i in range {
        csv.push_str(&format!("{p}-{i:03},Item {i},10.00,5,,,\n"));
    }
    csv
}

async fn documents(prefix: &str) -> Vec<Document> {
    documents_in("catalog", prefix).await
}

fn written(report: &Value) -> (u64, u64, u64) {
    (
        n(report, "/written/inserted"),
        n(report, "/written/updated"),
        n(report, "/written/unchanged"),
    )
}

fn skus(docs: &[Document], inactive: bool) -> Vec<String> {
    docs.iter()
        .filter(|d| d.get_bool("active").unwrap_or(true) != inactive)
        .map(|d| d.get_str("sku").unwrap().to_string())
        .collect()
}

fn succeeded(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "SUCCEEDED", "{}", run.report);
}

#[tokio::test]
async fn a_full_refresh_marks_exactly_the_missing_products_and_a_rerun_marks_nothing_new() {
    let p = unique("FR");
    let source = unique("full");
    let full = ["--source", source.as_str(), "--mode", "full"];
    let first = run_local("all.csv", &rows(&p, 0..100), &full);
    succeeded(&first);
    assert_eq!(first.report["feed"]["source"], source.as_str());
    assert_eq!(first.report["feed"]["mode"], "full");
    assert_eq!(
        n(&first.report, "/stale/marked"),
        0,
        "nothing supplied before"
    );

    // Products 10..15 are gone from the next refresh: 5 of 100. Product 5's row is there but
    // rejected (a bad price): still in the catalogue, so not stale; the run is PARTIAL, so it can
    // be resumed below.
    let mut csv = rows(&p, 0..5);
    csv.push_str(&format!("{p}-005,Broken,not-a-price,5,,,\n"));
    csv.push_str(rows(&p, 6..10).split_once('\n').unwrap().1);
    csv.push_str(rows(&p, 15..100).split_once('\n').unwrap().1);
    let refresh = run_local("all.csv", &csv, &full);
    assert_eq!(refresh.code, 0, "{}", refresh.stderr);
    assert_eq!(refresh.report["status"], "PARTIAL");
    assert_eq!(n(&refresh.report, "/rows/rejected"), 1);
    let stale = &refresh.report["stale"];
    assert_eq!(stale["policy"], "deactivate");
    assert_eq!((n(stale, "/marked"), n(stale, "/deleted")), (5, 0));
    let missing: Vec<String> = (10..15).map(|i| format!("{p}-{i:03}")).collect();
    assert_eq!(stale["sample"], serde_json::json!(missing));
    assert_eq!(written(&refresh.report), (0, 0, 94));
    let docs = documents(&p).await;
    assert_eq!(docs.len(), 100, "deactivated, not deleted");
    assert_eq!(skus(&docs, true), missing);
    for d in docs.iter().filter(|d| !d.get_bool("active").unwrap()) {
        assert!(d.get_datetime("stale_since").is_ok(), "{d}");
    }
    let csv_lines = std::fs::read_to_string(refresh.out.join("stale.csv")).unwrap();
    let mut expected = vec!["key".to_string()];
    expected.extend(missing.iter().cloned());
    assert_eq!(csv_lines.lines().collect::<Vec<_>>(), expected);
    let email = std::fs::read_to_string(refresh.out.join("email.html")).unwrap();
    assert!(
        email.contains("Marked stale") && email.contains("stale.csv"),
        "{email}"
    );

    // The run redriven (its report runs again): the same five, marked once.
    let run_id = refresh.report["run_id"].as_str().unwrap();
    let resumed = run_local("all.csv", &csv, &["--resume", run_id]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(resumed.report["run_id"], run_id);
    assert_eq!(resumed.report["stale"], refresh.report["stale"]);
    assert_eq!(skus(&documents(&p).await, true), missing);

    // The same refresh again: the five are stale already, nothing new is marked.
    let again = run_local("all.csv", &csv, &full);
    assert_eq!(again.report["status"], "PARTIAL", "{}", again.report);
    assert_eq!(n(&again.report, "/stale/marked"), 0, "{}", again.report);
    assert_eq!(skus(&documents(&p).await, true), missing);

    // A product that comes back is active again, without stale_since.
    let back = format!("{HEADER}\n{p}-010,Item 10,10.00,5,,,\n");
    let back = run_local("back.csv", &back, &["--source", source.as_str()]);
    succeeded(&back);
    assert_eq!(n(&back.report, "/stale/reactivated"), 1, "{}", back.report);
    let docs = documents(&p).await;
    let revived = docs
        .iter()
        .find(|d| d.get_str("sku").unwrap() == missing[0])
        .unwrap();
    assert!(revived.get_bool("active").unwrap(), "{revived}");
    assert!(revived.get("stale_since").is_none(), "{revived}");
}

#[tokio::test]
async fn a_refresh_missing_forty_percent_marks_nothing_and_says_why() {
    let p = unique("FT");
    let source = unique("trunc");
    let full = ["--source", source.as_str(), "--mode", "full"];
    succeeded(&run_local("forty.csv", &rows(&p, 0..20), &full));

    let truncated = run_local("forty.csv", &rows(&p, 0..12), &full);
    assert_eq!(truncated.code, 0, "{}", truncated.stderr);
    assert_eq!(
        truncated.report["status"], "PARTIAL",
        "{}",
        truncated.report
    );
    let reason = truncated.report["reason"].as_str().unwrap();
    assert!(
        reason.contains("nothing marked stale")
            && reason.contains("8 of the 20 products")
            && reason.contains("40.0%")
            && reason.contains("max_stale_percent = 10"),
        "{reason}"
    );
    assert_eq!(truncated.report["stale"]["refused_reason"], reason);
    assert!(
        skus(&documents(&p).await, true).is_empty(),
        "nothing deactivated"
    );

    // The same file forced: the eight are marked.
    let mut forced = full.to_vec();
    forced.push("--force-stale");
    let forced = run_local("forty.csv", &rows(&p, 0..12), &forced);
    succeeded(&forced);
    assert_eq!(n(&forced.report, "/stale/marked"), 8);
    assert_eq!(skus(&documents(&p).await, true).len(), 8);
}

#[tokio::test]
async fn the_higher_ranked_price_stays_when_a_lower_ranked_file_arrives_later() {
    let p = unique("PR");
    let incremental = |source: &'static str| ["--source", source, "--mode", "incremental"];
    let erp = format!("{HEADER}\n{p}-1,Desk lamp,9.90,3,,,\n");
    succeeded(&run_local("erp.csv", &erp, &incremental("erp")));
    let supplier = format!("{HEADER}\n{p}-1,Desk lamp (supplier),12.00,8,,,Lumo\n");
    let later = run_local("supplier.csv", &supplier, &incremental("supplier-a"));
    succeeded(&later);

    let docs = documents(&p).await;
    assert_eq!(docs.len(), 1);
    let d = &docs[0];
    assert_eq!(
        d.get("price"),
        Some(&Bson::Decimal128("9.90".parse().unwrap()))
    );
    assert_eq!(d.get_str("name").unwrap(), "Desk lamp");
    assert_eq!(
        d.get_document("attributes")
            .unwrap()
            .get_str("brand")
            .unwrap(),
        "Lumo",
        "a lower-ranked source fills what the higher one leaves empty"
    );
    let provenance = d.get_document("_provenance").unwrap();
    assert_eq!(provenance.get_str("price").unwrap(), "erp");
    assert_eq!(
        provenance
            .get_document("attributes")
            .unwrap()
            .get_str("brand")
            .unwrap(),
        "supplier-a"
    );
    let sources = d.get_document("_sources").unwrap();
    assert!(
        sources.contains_key("erp") && sources.contains_key("supplier-a"),
        "{sources}"
    );
}

#[tokio::test]
async fn a_match_also_hit_merges_and_a_double_hit_is_rejected_with_conflict() {
    let p = unique("MA");
    // GTINs unique to this test: 13 digits from the clock.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let g1 = format!("{:013}", stamp % 10_000_000_000_000);
    let g2 = format!("{:013}", (stamp + 1) % 10_000_000_000_000);
    let incremental = |source: &'static str| ["--source", source, "--mode", "incremental"];
    let erp = format!(
        "{HEADER}\n{p}-A,Kettle,20.00,1,{g1},{p}-MA,\n{p}-B,Toaster,30.00,1,{g2},{p}-MB,\n"
    );
    succeeded(&run_local("erp.csv", &erp, &incremental("erp")));

    let supplier =
        format!("{HEADER}\n{p}-X,Kettle,19.00,4,{g1},,Steam\n{p}-Y,Mystery,5.00,1,{g1},{p}-MB,\n");
    let run = run_local("supplier.csv", &supplier, &incremental("supplier-a"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["status"], "PARTIAL");
    assert_eq!(n(&run.report, "/rows/rejected"), 1);
    assert_eq!(n(&run.report, "/written/merged"), 1);
    let error = &run.report["errors"][0];
    assert_eq!(
        (error["row"].as_u64(), error["code"].as_str()),
        (Some(2), Some("conflict"))
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{p}-A")) && message.contains(&format!("{p}-B")),
        "names both products: {message}"
    );

    let docs = documents(&p).await;
    let keys: Vec<&str> = docs.iter().map(|d| d.get_str("sku").unwrap()).collect();
    assert_eq!(
        keys,
        [format!("{p}-A"), format!("{p}-B")],
        "no duplicate product"
    );
    let kettle = &docs[0];
    assert_eq!(
        kettle.get_array("_aliases").unwrap(),
        &vec![Bson::String(format!("{p}-X"))]
    );
    assert_eq!(
        kettle.get("price"),
        Some(&Bson::Decimal128("20.00".parse().unwrap()))
    );
    assert_eq!(
        kettle
            .get_document("attributes")
            .unwrap()
            .get_str("brand")
            .unwrap(),
        "Steam"
    );
}

#[tokio::test]
async fn a_dry_run_changes_no_document_and_predicts_the_real_run() {
    let p = unique("DR");
    let source = unique("dry");
    let incremental = ["--source", source.as_str(), "--mode", "incremental"];
    succeeded(&run_local("seed.csv", &rows(&p, 0..10), &incremental));
    let before = documents(&p).await;

    // 3 new prices, 2 new products, 7 unchanged.
    let mut csv = format!("{HEADER}\n");
    for i in 0..12 {
        let price = if i < 3 { "12.50" } else { "10.00" };
        csv.push_str(&format!("{p}-{i:03},Item {i},{price},5,,,\n"));
    }
    let dry = run_local(
        "next.csv",
        &csv,
        &["--source", source.as_str(), "--dry-run"],
    );
    succeeded(&dry);
    assert_eq!(dry.report["dry_run"], true);
    assert_eq!(dry.report["feed"]["mode"], "dry-run");
    assert_eq!(written(&dry.report), (2, 3, 7));
    let differences = dry.report["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 3, "{}", dry.report);
    assert_eq!(differences[0]["key"], format!("{p}-000"));
    assert_eq!(differences[0]["field"], "price");
    assert!(differences[0]["old"].as_str().unwrap().contains("10.00"));
    assert!(differences[0]["new"].as_str().unwrap().contains("12.50"));
    assert_eq!(documents(&p).await, before, "a dry run writes nothing");
    let mail: Value =
        serde_json::from_slice(&std::fs::read(dry.out.join("email.json")).unwrap()).unwrap();
    assert!(
        mail["subject"]
            .as_str()
            .unwrap()
            .starts_with("[chute] DRY RUN SUCCEEDED next.csv"),
        "{mail}"
    );
    let html = std::fs::read_to_string(dry.out.join("email.html")).unwrap();
    assert!(
        html.contains("Would be inserted") && html.contains("→ "),
        "{html}"
    );
    let ledger = stack()
        .database()
        .await
        .collection::<Document>("import_runs")
        .find_one(doc! {"_id": dry.report["run_id"].as_str().unwrap()})
        .await
        .unwrap()
        .unwrap();
    assert!(ledger.get_bool("dry_run").unwrap(), "{ledger}");
    let feed = ledger.get_document("feed").unwrap();
    assert_eq!(
        (
            feed.get_str("source").unwrap(),
            feed.get_str("mode").unwrap()
        ),
        (source.as_str(), "dry-run")
    );

    let real = run_local("next.csv", &csv, &incremental);
    succeeded(&real);
    assert_eq!(written(&real.report), written(&dry.report));
    assert_eq!(real.report["dry_run"], false);
    assert_eq!(documents(&p).await.len(), 12);
}

#[tokio::test]
async fn a_dry_run_of_a_full_refresh_predicts_the_stale_products_the_real_run_marks() {
    // supplier-b is configured for full refreshes (delete, at most 5%). Only this test uses it; its
    // first, forced refresh retires whatever earlier runs on this stack left under that source.
    let p = unique("DF");
    let source = ["--source", "supplier-b"];
    let seed = run_local(
        "weekly.csv",
        &rows(&p, 0..40),
        &["--source", "supplier-b", "--force-stale"],
    );
    assert_eq!(seed.code, 0, "{}", seed.stderr);
    assert_eq!(seed.report["feed"]["mode"], "full");

    // Product 39 is gone (1 of 40), 0..3 change price, 40 and 41 are new.
    let mut csv = format!("{HEADER}\n");
    for i in (0..39).chain(40..42) {
        let price = if i < 3 { "11.00" } else { "10.00" };
        csv.push_str(&format!("{p}-{i:03},Item {i},{price},5,,,\n"));
    }
    let before = documents(&p).await;
    let dry = run_local("weekly.csv", &csv, &["--source", "supplier-b", "--dry-run"]);
    succeeded(&dry);
    assert_eq!(written(&dry.report), (2, 3, 36));
    let stale = &dry.report["stale"];
    assert_eq!(
        (stale["policy"].as_str(), n(stale, "/marked")),
        (Some("delete"), 1)
    );
    assert_eq!(stale["sample"], serde_json::json!([format!("{p}-039")]));
    let text = std::fs::read_to_string(dry.out.join("stale.csv")).unwrap();
    assert_eq!(text, format!("key\n{p}-039\n"));
    assert_eq!(documents(&p).await, before, "a dry run writes nothing");

    let real = run_local("weekly.csv", &csv, &source);
    succeeded(&real);
    assert_eq!(written(&real.report), written(&dry.report));
    assert_eq!(
        (
            n(&real.report, "/stale/marked"),
            n(&real.report, "/stale/deleted")
        ),
        (1, 1)
    );
    let docs = documents(&p).await;
    assert_eq!(docs.len(), 41);
    assert!(docs
        .iter()
        .all(|d| d.get_str("sku").unwrap() != format!("{p}-039")));
}
