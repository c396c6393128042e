//! Stale marking after a full refresh, against a real server and a hand-built catalogue: which
//! claims are stale, each policy, the safety limit, idempotence, and that the scan uses the index.

mod support;

use bson::{doc, Document};
use chute::error::ChuteError;
use chute::feed::Stale;
use chute::schema::Schema;
use chute::store::{StaleMarked, StaleRun, Store, StoreConfig, Supplied};
use support::MongoServer;
use tokio::sync::mpsc::Sender;

async fn store(server: &MongoServer) -> Store {
    let store = Store::connect(&StoreConfig::new(server.uri(), "chute_test"))
        .await
        .unwrap();
    store.ensure_collection(&Schema::products()).await.unwrap();
    store
}

/// `n` products `P-000…` supplied by `source`, the first `old` of them last by run `r1`, the
/// rest by `r2`; `other` also supplies the first one.
async fn catalogue(store: &Store, source: &str, n: usize, old: usize, other: Option<&str>) {
    let docs: Vec<Document> = (0..n)
        .map(|i| {
            let run = if i < old { "r1" } else { "r2" };
            let mut sources = doc! {source: {"run_id": run, "hash": "h"}};
            if let (0, Some(other)) = (i, other) {
                sources.insert(other, doc! {"run_id": "x1", "hash": "h"});
            }
            doc! {"sku": format!("P-{i:03}"), "name": "n", "price": bson::Bson::Decimal128("1.00".parse().unwrap()), "stock": 1, "category": "c", "active": true, "_sources": sources}
        })
        .collect();
    products(store).insert_many(docs).await.unwrap();
}

/// How many products name `run` as the last erp run that supplied them.
async fn erp_claims_of(store: &Store, run: &str) -> u64 {
    products(store)
        .count_documents(doc! {"_sources.erp.run_id": run})
        .await
        .unwrap()
}

fn products(store: &Store) -> mongodb::Collection<Document> {
    store.database().collection("products")
}

fn run<'a>(schema: &'a Schema, source: &'a str, run_id: &'a str, policy: Stale) -> StaleRun<'a> {
    StaleRun {
        schema,
        feed_source: source,
        run_id,
        policy,
        max_stale_percent: 10.0,
        force: false,
    }
}

/// Runs a marking or a prediction that sends the stale keys for the CSV, collecting them.
async fn collecting<F>(scan: impl FnOnce(Sender<Vec<String>>) -> F) -> (StaleMarked, Vec<String>)
where
    F: std::future::Future<Output = Result<StaleMarked, ChuteError>>,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let collect = async move {
        let mut keys = Vec::new();
        while let Some(batch) = rx.recv().await {
            keys.extend(batch);
        }
        keys
    };
    let (marked, keys) = tokio::join!(scan(tx), collect);
    (marked.unwrap(), keys)
}

/// Marks and collects every key sent for the CSV.
async fn mark(store: &Store, run: &StaleRun<'_>) -> (StaleMarked, Vec<String>) {
    collecting(|tx| store.mark_stale(run, tx)).await
}

async fn inactive(store: &Store) -> Vec<String> {
    let mut cursor = products(store)
        .find(doc! {"active": false})
        .sort(doc! {"sku": 1})
        .await
        .unwrap();
    let mut skus = Vec::new();
    while cursor.advance().await.unwrap() {
        let d: Document = cursor.deserialize_current().unwrap();
        assert!(d.get_datetime("stale_since").is_ok(), "{d}");
        skus.push(d.get_str("sku").unwrap().to_string());
    }
    skus
}

#[tokio::test]
async fn deactivate_marks_exactly_the_missing_products_once() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    catalogue(&store, "erp", 40, 2, None).await;

    let first = mark(&store, &run(&schema, "erp", "r2", Stale::Deactivate)).await;
    assert_eq!(
        (first.0.supplied, first.0.marked, first.0.deleted),
        (40, 2, 0)
    );
    assert_eq!(first.0.refused_reason, None);
    assert_eq!(first.1, ["P-000", "P-001"]);
    assert_eq!(first.0.sample, first.1);
    assert_eq!(inactive(&store).await, ["P-000", "P-001"]);
    let stale = products(&store)
        .find_one(doc! {"sku": "P-000"})
        .await
        .unwrap()
        .unwrap();
    let claim = stale
        .get_document("_sources")
        .unwrap()
        .get_document("erp")
        .unwrap();
    assert_eq!(claim.get_str("stale_run").unwrap(), "r2");
    assert_eq!(claim.get_str("last_run_id").unwrap(), "r1");
    assert!(claim.get("run_id").is_none(), "{claim}");

    // A redrive of the same run counts the same set, by its tag.
    let again = mark(&store, &run(&schema, "erp", "r2", Stale::Deactivate)).await;
    assert_eq!(again, first);

    // The next refresh (every current product restamped) marks nothing new.
    products(&store)
        .update_many(
            doc! {"_sources.erp.run_id": "r2"},
            doc! {"$set": {"_sources.erp.run_id": "r3"}},
        )
        .await
        .unwrap();
    let next = mark(&store, &run(&schema, "erp", "r3", Stale::Deactivate)).await;
    assert_eq!((next.0.supplied, next.0.marked), (38, 0));
    assert!(next.1.is_empty());
    assert_eq!(inactive(&store).await, ["P-000", "P-001"]);
}

#[tokio::test]
async fn deactivate_leaves_a_product_another_source_still_supplies_active() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    catalogue(&store, "erp", 40, 2, Some("supplier-a")).await;

    let (marked, keys) = mark(&store, &run(&schema, "erp", "r2", Stale::Deactivate)).await;
    assert_eq!(marked.marked, 2);
    assert_eq!(keys, ["P-000", "P-001"], "both erp claims are stale");
    assert_eq!(
        inactive(&store).await,
        ["P-001"],
        "supplier-a still supplies P-000"
    );
    let shared = products(&store)
        .find_one(doc! {"sku": "P-000"})
        .await
        .unwrap()
        .unwrap();
    assert!(shared.get("stale_since").is_none(), "{shared}");
    let claim = shared
        .get_document("_sources")
        .unwrap()
        .get_document("erp")
        .unwrap();
    assert_eq!(claim.get_str("stale_run").unwrap(), "r2");
}

#[tokio::test]
async fn more_than_the_limit_marks_nothing_and_says_why_unless_forced() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    catalogue(&store, "erp", 10, 4, None).await;

    let refused = mark(&store, &run(&schema, "erp", "r2", Stale::Deactivate)).await;
    assert_eq!(
        (refused.0.supplied, refused.0.marked, refused.0.candidates),
        (10, 0, 4),
        "a refused marking reports its candidates, not a marked count"
    );
    let reason = refused.0.refused_reason.unwrap();
    assert!(reason.contains("4 of the 10 products"), "{reason}");
    assert!(
        reason.contains("40.0%") && reason.contains("chute-force-stale"),
        "{reason}"
    );
    assert!(refused.1.is_empty());
    assert!(inactive(&store).await.is_empty());
    assert_eq!(erp_claims_of(&store, "r1").await, 4);

    let forced = StaleRun {
        force: true,
        ..run(&schema, "erp", "r2", Stale::Deactivate)
    };
    let forced = mark(&store, &forced).await;
    assert_eq!((forced.0.marked, forced.0.refused_reason), (4, None));
    assert_eq!(inactive(&store).await.len(), 4);
}

#[tokio::test]
async fn delete_drops_the_claim_and_only_an_unshared_document() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    catalogue(&store, "erp", 20, 2, Some("supplier-a")).await;

    let delete = run(&schema, "erp", "r2", Stale::Delete);
    let (marked, keys) = mark(&store, &delete).await;
    assert_eq!((marked.marked, marked.deleted), (2, 1));
    assert_eq!(keys, ["P-000", "P-001"]);
    let all = || async { products(&store).count_documents(doc! {}).await.unwrap() };
    assert_eq!(
        all().await,
        20,
        "the claims go once the outcome is recorded"
    );
    // A retried report before the record (the function died after marking) counts the same.
    let (again, keys_again) = mark(&store, &delete).await;
    assert_eq!((again.marked, again.deleted, keys_again), (2, 1, keys));

    assert_eq!(store.drop_stale_claims(&delete).await.unwrap(), 1);
    assert_eq!(all().await, 19);
    // One after the record finishes an interrupted drop, and repeats nothing.
    assert_eq!(store.drop_stale_claims(&delete).await.unwrap(), 0);
    assert_eq!(all().await, 19);
    let shared = products(&store)
        .find_one(doc! {"sku": "P-000"})
        .await
        .unwrap()
        .expect("another source still supplies P-000");
    let sources = shared.get_document("_sources").unwrap();
    assert_eq!(sources.keys().collect::<Vec<_>>(), ["supplier-a"]);
    assert!(
        shared.get_bool("active").unwrap(),
        "delete does not deactivate"
    );
}

#[tokio::test]
async fn keep_counts_and_changes_nothing() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    catalogue(&store, "erp", 20, 1, None).await;

    let (marked, keys) = mark(&store, &run(&schema, "erp", "r2", Stale::Keep)).await;
    assert_eq!((marked.marked, marked.deleted), (1, 0));
    assert_eq!(keys, ["P-000"]);
    assert!(inactive(&store).await.is_empty());
    assert_eq!(erp_claims_of(&store, "r1").await, 1);
}

#[tokio::test]
async fn the_stale_scan_is_an_index_range_scan() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    catalogue(&store, "erp", 30, 1, None).await;
    mark(&store, &run(&schema, "erp", "r2", Stale::Keep)).await;

    for filter in [
        doc! {"_sources.erp.run_id": {"$lt": "r2"}},
        doc! {"_sources.erp.run_id": {"$gt": "r2"}},
        doc! {"_sources.erp.stale_run": "r2"},
    ] {
        let explain = store
            .database()
            .run_command(doc! {"explain": {"find": "products", "filter": filter.clone()}, "verbosity": "executionStats"})
            .await
            .unwrap();
        let examined = explain
            .get_document("executionStats")
            .unwrap()
            .get("totalDocsExamined")
            .cloned();
        let plan = explain
            .get_document("queryPlanner")
            .unwrap()
            .get_document("winningPlan")
            .unwrap();
        let text = plan.to_string();
        assert!(text.contains("IXSCAN"), "{filter}: {text}");
        assert_ne!(
            examined,
            Some(bson::Bson::Int32(30)),
            "{filter}: scanned every document"
        );
    }
}

/// A file that supplies `keys` (and no `match_also` values).
fn supplying(keys: impl Iterator<Item = String>) -> Supplied {
    let mut supplied = Supplied::default();
    supplied.keys = keys.collect();
    supplied
}

/// Predicts and collects every key sent for the CSV.
async fn predict(
    store: &Store,
    run: &StaleRun<'_>,
    supplied: &Supplied,
) -> (StaleMarked, Vec<String>) {
    collecting(|tx| store.predict_stale(run, supplied, tx)).await
}

#[tokio::test]
async fn a_dry_run_predicts_from_the_file_keys_and_changes_nothing() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    catalogue(&store, "erp", 20, 0, None).await;
    let before = erp_claims_of(&store, "r2").await;

    let supplied = supplying((1..20).map(|i| format!("P-{i:03}")));
    let (one, keys) = predict(&store, &run(&schema, "erp", "r9", Stale::Delete), &supplied).await;
    assert_eq!(
        (one.supplied, one.marked, one.refused_reason),
        (20, 1, None)
    );
    assert_eq!(keys, ["P-000"]);

    let supplied = supplying((8..20).map(|i| format!("P-{i:03}")));
    let (many, keys) = predict(&store, &run(&schema, "erp", "r9", Stale::Delete), &supplied).await;
    assert_eq!(
        (many.marked, many.candidates),
        (0, 8),
        "refused: candidates"
    );
    assert_eq!(keys.len(), 8, "the CSV lists what would be stale");
    assert!(many
        .refused_reason
        .unwrap()
        .contains("8 of the 20 products"));

    assert_eq!(before, 20);
    assert_eq!(erp_claims_of(&store, "r2").await, 20, "nothing changed");
}

/// The dry run's prediction against what the real run then does, where the file's row for a
/// product comes under a new key and merges into it by `match_also` (before, the prediction
/// listed that product as stale: its key is not in the file).
#[tokio::test]
async fn a_dry_run_counts_a_product_its_file_merges_into_as_supplied() {
    use chute::feed::Mode;
    use chute::store::WriteContext;
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/products.toml"
    ))
    .unwrap();
    let text = format!(
        "{base}\n[[columns]]\nname = \"gtin\"\ntype = \"string\"\n\n[feed]\nmatch_also = [\"gtin\"]\n"
    );
    let schema = Schema::from_toml(&text, "gtin.toml").unwrap();
    store.ensure_collection(&schema).await.unwrap();
    let file = |rows: &mut dyn Iterator<Item = String>| {
        let mut csv = "sku,name,price,stock,category,gtin\n".to_string();
        for row in rows {
            csv += &row;
        }
        let out = chute::process(csv.as_bytes(), &schema, &chute::PlanOptions::default()).unwrap();
        assert_eq!(out.rejected(), 0);
        out.staged
    };
    let write = |staged: Vec<u8>, run: &str, mode: Mode| {
        let ctx = WriteContext {
            run_id: run.into(),
            object: format!("s3://bucket/incoming/erp/{run}.csv"),
            feed_source: "erp".into(),
            mode,
            at: bson::DateTime::now(),
            reapply: false,
        };
        let store = &store;
        let schema = &schema;
        async move { store.upsert_staged(schema, &staged, &ctx).await.unwrap() }
    };
    let row = |sku: &str, i: usize| format!("{sku},n,1.00,1,c,G{i}\n");
    write(
        file(&mut (1..=20).map(|i| row(&format!("P{i}"), i))),
        "r1",
        Mode::Full,
    )
    .await;
    // The refresh: P1 is gone; P2's row comes as S-2 with P2's GTIN.
    let next = file(
        &mut (3..=20)
            .map(|i| row(&format!("P{i}"), i))
            .chain([row("S-2", 2)]),
    );
    let mut supplied = Supplied::default();
    supplied.add_staged(&schema, &next).unwrap();
    let (predicted, predicted_keys) = predict(
        &store,
        &run(&schema, "erp", "r2", Stale::Deactivate),
        &supplied,
    )
    .await;
    let real = write(next, "r2", Mode::Full).await;
    assert_eq!(real.counts.merged, 1, "S-2 merges into P2");
    let (marked, keys) = mark(&store, &run(&schema, "erp", "r2", Stale::Deactivate)).await;
    assert_eq!(keys, ["P1"]);
    assert_eq!((predicted_keys, predicted.marked), (keys, marked.marked));
}

#[test]
fn a_file_supplies_its_keys_as_the_stale_scan_joins_them() {
    let schema = Schema::products();
    let csv = "sku,name,price,stock,category\nA-1,a,1.00,1,c\nB-2,b,2.00,2,c\n";
    let out = chute::process(csv.as_bytes(), &schema, &chute::PlanOptions::default()).unwrap();
    let mut supplied = Supplied::default();
    supplied.add_staged(&schema, &out.staged).unwrap();
    let mut keys: Vec<&String> = supplied.keys.iter().collect();
    keys.sort();
    assert_eq!(keys, ["A-1", "B-2"]);
    assert!(supplied.supplies(&doc! {"sku": "A-1"}, "A-1", &[]));
    assert!(!supplied.supplies(&doc! {"sku": "C-3"}, "C-3", &[]));
    assert!(
        supplied.supplies(&doc! {"sku": "C-3", "_aliases": ["B-2"]}, "C-3", &[]),
        "a product a row of the file was merged into before is supplied by that row"
    );
}

/// Scale: the marking's work follows the stale set, not the catalogue. 50,000 products of one
/// source (plus 50,000 of another), 500 stale: run with `--ignored --nocapture` to see the times.
#[tokio::test]
#[ignore = "inserts 100,000 documents (about a minute on SecantusDB)"]
async fn marking_a_small_stale_set_in_a_large_catalogue() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    let started = std::time::Instant::now();
    for (source, offset) in [("erp", 0), ("other", 50_000)] {
        for block in 0..50 {
            let docs: Vec<Document> = (0..1000)
                .map(|i| {
                    let n = offset + block * 1000 + i;
                    let run = if source == "erp" && n < 500 {
                        "r1"
                    } else {
                        "r2"
                    };
                    doc! {"sku": format!("S-{n:06}"), "name": "n",
                    "price": bson::Bson::Decimal128("1.00".parse().unwrap()), "stock": 1,
                    "category": "c", "active": true, "_sources": {source: {"run_id": run}}}
                })
                .collect();
            products(&store).insert_many(docs).await.unwrap();
        }
    }
    println!("inserted 100,000 in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let (marked, keys) = mark(&store, &run(&schema, "erp", "r2", Stale::Deactivate)).await;
    println!(
        "marked {} of {} in {:?}",
        marked.marked,
        marked.supplied,
        started.elapsed()
    );
    assert_eq!(
        (marked.supplied, marked.marked, keys.len()),
        (50_000, 500, 500)
    );
    let started = std::time::Instant::now();
    let (again, _) = mark(&store, &run(&schema, "erp", "r2", Stale::Deactivate)).await;
    println!("redrive (counted by tag) in {:?}", started.elapsed());
    assert_eq!(again, marked);
}

#[tokio::test]
async fn a_product_whose_row_was_rejected_is_not_stale() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    catalogue(&store, "erp", 20, 2, None).await;
    let refresh = run(&schema, "erp", "r2", Stale::Deactivate);
    // P-001's row was in the file with a bad price; NEW-1 is not in the catalogue.
    let kept = store
        .keep_rejected_claims(&refresh, &[vec!["P-001".into()], vec!["NEW-1".into()]])
        .await
        .unwrap();
    assert_eq!(kept, 1);
    let (marked, keys) = mark(&store, &refresh).await;
    assert_eq!((marked.supplied, marked.marked), (20, 1));
    assert_eq!(keys, ["P-000"]);
    assert_eq!(inactive(&store).await, ["P-000"]);
}
