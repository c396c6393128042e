//! The writer's feed semantics against a real server: source stamps, full-refresh restamps,
//! reactivation, precedence and provenance, `match_also` merges and conflicts, concurrent writers,
//! and dry runs.

mod support;

use bson::{doc, Bson, DateTime, Document};
use chute::error::{Code, Refusal};
use chute::feed::Mode;
use chute::pipeline::process;
use chute::plan::PlanOptions;
use chute::run::WriteCounts;
use chute::schema::Schema;
use chute::store::{Store, StoreConfig, WriteContext, WriteOutcome};
use support::{product_indexes, products_by_sku, write_context, written, MongoServer};

/// The products schema with two more identifying columns, `gtin` and `mpn`, and `feed` appended.
fn schema(feed: &str) -> Schema {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/products.toml"
    ))
    .unwrap();
    let text = format!(
        "{base}\n[[columns]]\nname = \"gtin\"\ntype = \"string\"\n\n\
         [[columns]]\nname = \"mpn\"\ntype = \"string\"\n\n{feed}\n"
    );
    Schema::from_toml(&text, "feeds-test.toml").unwrap()
}

fn staged(schema: &Schema, csv: &str) -> Vec<u8> {
    let out = process(csv.as_bytes(), schema, &PlanOptions::default()).unwrap();
    assert_eq!(out.rejected(), 0, "test data is valid");
    out.staged
}

async fn connect(server: &MongoServer, batch_size: usize) -> Store {
    let mut config = StoreConfig::new(server.uri(), "chute_test");
    config.batch_size = batch_size;
    Store::connect(&config).await.unwrap()
}

async fn setup(server: &MongoServer, schema: &Schema) -> Store {
    let store = connect(server, 1000).await;
    store.ensure_collection(schema).await.unwrap();
    store
}

async fn product(store: &Store, sku: &str) -> Document {
    store
        .database()
        .collection::<Document>("products")
        .find_one(doc! {"sku": sku})
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no product {sku}"))
}

fn text<'d>(doc: &'d Document, path: &str) -> &'d str {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next().unwrap());
    for part in parts {
        value = value.and_then(Bson::as_document).and_then(|d| d.get(part));
    }
    value
        .and_then(Bson::as_str)
        .unwrap_or_else(|| panic!("{path} is not a string in {doc}"))
}

fn price(doc: &Document) -> String {
    doc.get("price").unwrap().to_string()
}

async fn write(store: &Store, schema: &Schema, csv: &str, ctx: &WriteContext) -> WriteOutcome {
    store
        .upsert_staged(schema, &staged(schema, csv), ctx)
        .await
        .unwrap()
}

const HEADER: &str = "sku,name,price,stock,category";

fn catalogue(n: usize, price: &str) -> String {
    let mut csv = format!("{HEADER}\n");
    for i in 0..n {
        csv.push_str(&format!("P{i:03},Item {i},{price},{i},Home\n"));
    }
    csv
}

#[tokio::test]
async fn each_source_stamps_what_it_supplied_and_keeps_the_others_stamps() {
    let server = MongoServer::start().await;
    let schema = schema("");
    let store = setup(&server, &schema).await;
    let erp = write(
        &store,
        &schema,
        &catalogue(2, "5"),
        &write_context("run-e", "erp", Mode::Incremental),
    )
    .await;
    assert_eq!(erp.counts, written(2, 0, 0, 0));
    let supplier = write(
        &store,
        &schema,
        &format!("{HEADER}\nP001,Item 1,6,1,Home\n"),
        &write_context("run-s", "supplier", Mode::Incremental),
    )
    .await;
    assert_eq!(supplier.counts, written(0, 1, 0, 0));
    let p1 = product(&store, "P001").await;
    let sources = p1.get_document("_sources").unwrap();
    let keys: Vec<&str> = sources.keys().map(String::as_str).collect();
    assert_eq!(keys, ["erp", "supplier"]);
    assert_eq!(text(&p1, "_sources.erp.run_id"), "run-e");
    assert_eq!(text(&p1, "_sources.supplier.run_id"), "run-s");
    assert_ne!(
        text(&p1, "_sources.erp.hash"),
        text(&p1, "_sources.supplier.hash")
    );
    assert!(sources
        .get_document("supplier")
        .unwrap()
        .get_datetime("at")
        .is_ok());
    let p0 = product(&store, "P000").await;
    let keys: Vec<&str> = p0
        .get_document("_sources")
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["erp"], "only the source that supplied it");
    // Without precedence the latest write wins, and each field says where it came from.
    assert_eq!(price(&p1), "6");
    assert_eq!(text(&p1, "_provenance.price"), "supplier");
    assert_eq!(
        text(&p1, "_provenance.currency"),
        "erp",
        "the insert's default"
    );
    assert_eq!(text(&p0, "_provenance.price"), "erp");
}

#[tokio::test]
async fn a_full_refresh_restamps_unchanged_products_and_still_counts_them_unchanged() {
    let server = MongoServer::start().await;
    let schema = schema("");
    let store = setup(&server, &schema).await;
    let file = catalogue(5, "5");
    let first = write(
        &store,
        &schema,
        &file,
        &write_context("run-1", "erp", Mode::Incremental),
    )
    .await;
    assert_eq!(first.counts, written(5, 0, 0, 0));
    let full = write(
        &store,
        &schema,
        &file,
        &write_context("run-2", "erp", Mode::Full),
    )
    .await;
    assert_eq!(full.counts, written(0, 0, 5, 0));
    for doc in products_by_sku(&store).await {
        assert_eq!(text(&doc, "_sources.erp.run_id"), "run-2", "{doc}");
        assert_eq!(text(&doc, "_sources.erp.outcome"), "unchanged");
        assert_eq!(
            text(&doc, "_import.run_id"),
            "run-1",
            "fields not rewritten"
        );
    }
    // The same full run retried: counted as before, nothing written.
    let retried = write(
        &store,
        &schema,
        &file,
        &write_context("run-2", "erp", Mode::Full),
    )
    .await;
    assert_eq!(retried, full);
    // An incremental run leaves unchanged products' stamps as they were (no write at all).
    let incremental = write(
        &store,
        &schema,
        &file,
        &write_context("run-3", "erp", Mode::Incremental),
    )
    .await;
    assert_eq!(incremental.counts, written(0, 0, 5, 0));
    for doc in products_by_sku(&store).await {
        assert_eq!(text(&doc, "_sources.erp.run_id"), "run-2");
    }
}

#[tokio::test]
async fn a_stale_product_supplied_again_is_active_again() {
    let server = MongoServer::start().await;
    let schema = schema("");
    let store = setup(&server, &schema).await;
    let file = catalogue(3, "5");
    write(
        &store,
        &schema,
        &file,
        &write_context("run-1", "erp", Mode::Full),
    )
    .await;
    // What a full refresh that missed P001 leaves.
    store
        .database()
        .collection::<Document>("products")
        .update_one(
            doc! {"sku": "P001"},
            doc! {"$set": {"active": false, "stale_since": DateTime::now()}, "$inc": {"_rev": 1_i64}},
        )
        .await
        .unwrap();
    let back = write(
        &store,
        &schema,
        &file,
        &write_context("run-2", "erp", Mode::Full),
    )
    .await;
    assert_eq!(
        back.counts,
        WriteCounts {
            updated: 1,
            unchanged: 2,
            reactivated: 1,
            ..WriteCounts::default()
        }
    );
    let p1 = product(&store, "P001").await;
    assert!(p1.get_bool("active").unwrap());
    assert!(!p1.contains_key("stale_since"), "{p1}");
    assert_eq!(text(&p1, "_sources.erp.run_id"), "run-2");
    let again = write(
        &store,
        &schema,
        &file,
        &write_context("run-3", "erp", Mode::Full),
    )
    .await;
    assert_eq!(again.counts, written(0, 0, 3, 0));
}

const PRECEDENCE: &str = "[feed]\nprecedence = [\"erp\", \"supplier\"]\n";

#[tokio::test]
async fn the_higher_ranked_source_keeps_its_fields_in_either_arrival_order() {
    let erp_file = "sku,name,price,stock,category\nA,Lamp,10.00,1,Home\n";
    let supplier_file = "sku,name,price,stock,category,brand\nA,Lamp (supplier),9.90,7,Home,Acme\n";
    let outsider_file = "sku,name,price,stock,category,color\nA,Lamp?,1,1,Home,red\n";
    for erp_first in [true, false] {
        let server = MongoServer::start().await;
        let schema = schema(PRECEDENCE);
        let store = setup(&server, &schema).await;
        let erp = write_context("run-e", "erp", Mode::Incremental);
        let supplier = write_context("run-s", "supplier", Mode::Incremental);
        if erp_first {
            write(&store, &schema, erp_file, &erp).await;
            let late = write(&store, &schema, supplier_file, &supplier).await;
            assert_eq!(late.counts, written(0, 1, 0, 0), "it fills brand");
        } else {
            write(&store, &schema, supplier_file, &supplier).await;
            let late = write(&store, &schema, erp_file, &erp).await;
            assert_eq!(late.counts, written(0, 1, 0, 0));
        }
        // A source not in the list ranks below both: it only fills what nobody supplied.
        write(
            &store,
            &schema,
            outsider_file,
            &write_context("run-o", "outsider", Mode::Incremental),
        )
        .await;
        let a = product(&store, "A").await;
        let order = if erp_first {
            "erp first"
        } else {
            "supplier first"
        };
        assert_eq!(price(&a), "10.00", "{order}");
        assert_eq!(text(&a, "name"), "Lamp", "{order}");
        assert_eq!(a.get_i32("stock").unwrap(), 1, "{order}");
        assert_eq!(
            text(&a, "attributes.brand"),
            "Acme",
            "{order}: filled by the supplier"
        );
        assert_eq!(
            text(&a, "attributes.color"),
            "red",
            "{order}: filled by the outsider"
        );
        for (field, source) in [
            ("price", "erp"),
            ("name", "erp"),
            ("stock", "erp"),
            ("attributes.brand", "supplier"),
            ("attributes.color", "outsider"),
        ] {
            assert_eq!(
                text(&a, &format!("_provenance.{field}")),
                source,
                "{order}: {field}"
            );
        }
        let sources: Vec<&str> = a
            .get_document("_sources")
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(sources.len(), 3, "{order}: {sources:?}");
    }
}

#[tokio::test]
async fn a_row_with_a_new_key_merges_into_the_one_product_its_match_field_finds() {
    let server = MongoServer::start().await;
    let schema = schema("[feed]\nmatch_also = [\"gtin\", \"mpn\"]\n");
    let store = setup(&server, &schema).await;
    let names = product_indexes(&store).await;
    for index in ["gtin_1", "mpn_1", "_aliases_1"] {
        assert!(names.iter().any(|n| n == index), "{index}: {names:?}");
    }
    let header = "sku,name,price,stock,category,gtin,mpn";
    let first = write(
        &store,
        &schema,
        &format!(
            "{header}\nP1,Lamp,5,1,Home,4006381333931,M-1\nP2,Desk,7,1,Office,4006381333948,M-2\n"
        ),
        &write_context("run-1", "erp", Mode::Incremental),
    )
    .await;
    assert_eq!(first.counts, written(2, 0, 0, 0));
    let supplier = write_context("run-2", "supplier", Mode::Incremental);
    let merged = write(
        &store,
        &schema,
        &format!("{header}\nS-77,Lamp (supplier),6,3,Home,4006381333931,\n"),
        &supplier,
    )
    .await;
    assert_eq!(
        merged.counts,
        WriteCounts {
            updated: 1,
            merged: 1,
            ..WriteCounts::default()
        }
    );
    let docs = products_by_sku(&store).await;
    assert_eq!(docs.len(), 2, "no duplicate product");
    let p1 = &docs[0];
    assert_eq!(text(p1, "sku"), "P1", "the product keeps its key");
    assert_eq!(p1.get_array("_aliases").unwrap(), &vec![Bson::from("S-77")]);
    assert_eq!(text(p1, "name"), "Lamp (supplier)");
    assert_eq!(text(p1, "_provenance.name"), "supplier");
    assert_eq!(text(p1, "_provenance.sku"), "erp");
    assert_eq!(text(p1, "_sources.supplier.run_id"), "run-2");
    // The same file again: the alias finds the product, nothing changes, no alias twice.
    let again = write(
        &store,
        &schema,
        &format!("{header}\nS-77,Lamp (supplier),6,3,Home,4006381333931,\n"),
        &write_context("run-3", "supplier", Mode::Incremental),
    )
    .await;
    assert_eq!(
        again.counts,
        WriteCounts {
            unchanged: 1,
            merged: 1,
            ..WriteCounts::default()
        }
    );
    assert_eq!(
        product(&store, "P1")
            .await
            .get_array("_aliases")
            .unwrap()
            .len(),
        1
    );

    // gtin names P1, mpn names P2: the row is refused, naming both.
    let conflict = write(
        &store,
        &schema,
        &format!("{header}\nX-1,Odd,1,1,Home,4006381333931,M-2\n"),
        &supplier,
    )
    .await;
    assert_eq!(conflict.counts, written(0, 0, 0, 1));
    let refusal = &conflict.refusals[0];
    assert_eq!((refusal.position.row, refusal.position.line), (1, 2));
    assert_eq!(refusal.code, Refusal::CONFLICT);
    assert_eq!(refusal.row_code(), Code::Conflict);
    assert!(
        refusal.message.contains("`P1`")
            && refusal.message.contains("`P2`")
            && refusal.message.contains("`X-1`"),
        "{}",
        refusal.message
    );
    assert_eq!(products_by_sku(&store).await.len(), 2);
}

/// Two sources write the same products at once. The supplier's first batch is held right after
/// its read until the erp's whole file is written, so it decides from a stale read: first (new
/// keys) its inserts meet the erp's, then (products the supplier alone supplied so far, so it
/// believes it owns their price) its updates meet products the erp changed since. Nothing of the
/// erp's may be lost, the supplier's fields still fill the rest, and every row is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_writing_the_same_products_at_once_lose_nothing() {
    use mongodb::event::command::CommandEvent;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    type Hold = (mpsc::Sender<()>, mpsc::Receiver<()>);
    let server = MongoServer::start().await;
    let schema = schema(PRECEDENCE);
    setup(&server, &schema).await;
    let erp_store = connect(&server, 10).await;
    let hold: Arc<Mutex<Option<Hold>>> = Arc::new(Mutex::new(None));
    let finds = Arc::new(Mutex::new(0_usize));
    let mut config = StoreConfig::new(server.uri(), "chute_test");
    config.batch_size = 10;
    config.command_events = Some(std::sync::Arc::new({
        let (hold, finds) = (hold.clone(), finds.clone());
        move |event: CommandEvent| {
            if let CommandEvent::Succeeded(done) = event {
                if done.command_name == "find" {
                    *finds.lock().unwrap() += 1;
                    if let Some((read, release)) = hold.lock().unwrap().take() {
                        read.send(()).unwrap();
                        release.recv().unwrap();
                    }
                }
            }
        }
    }));
    let supplier_store = Store::connect(&config).await.unwrap();
    let n = 30;
    let file = |prefix: &str, brand: Option<&str>, price: &str| {
        let mut csv = String::from("sku,name,price,stock,category,brand\n");
        for i in 0..n {
            let brand = brand.map(|b| format!("{b}-{i}")).unwrap_or_default();
            csv.push_str(&format!("{prefix}{i:03},Item {i},{price},1,Home,{brand}\n"));
        }
        csv
    };
    for (round, prefix) in ["P", "Q"].into_iter().enumerate() {
        if prefix == "Q" {
            let alone = write_context("run-s-alone", "supplier", Mode::Incremental);
            let first = write(
                &supplier_store,
                &schema,
                &file(prefix, Some("old"), "7"),
                &alone,
            )
            .await;
            assert_eq!(
                first.counts,
                WriteCounts {
                    inserted: n as u64,
                    ..WriteCounts::default()
                }
            );
        }
        let (read, supplier_read) = mpsc::channel();
        let (release, released) = mpsc::channel();
        *hold.lock().unwrap() = Some((read, released));
        *finds.lock().unwrap() = 0;
        let erp_data = staged(&schema, &file(prefix, None, "10"));
        let supplier_data = staged(&schema, &file(prefix, Some("new"), "8"));
        let erp_ctx = write_context(&format!("run-e{round}"), "erp", Mode::Incremental);
        let supplier_ctx = write_context(&format!("run-s{round}"), "supplier", Mode::Incremental);
        let supplier = tokio::spawn({
            let (store, schema, ctx) =
                (supplier_store.clone(), schema.clone(), supplier_ctx.clone());
            async move { store.upsert_staged(&schema, &supplier_data, &ctx).await }
        });
        let (erp, supplier) = tokio::join!(
            async {
                tokio::task::spawn_blocking(move || supplier_read.recv())
                    .await
                    .unwrap()
                    .expect("the supplier read its first batch");
                let erp = erp_store.upsert_staged(&schema, &erp_data, &erp_ctx).await;
                release.send(()).unwrap();
                erp
            },
            supplier
        );
        let (erp, supplier) = (erp.unwrap(), supplier.unwrap().unwrap());
        let docs: Vec<Document> = products_by_sku(&erp_store)
            .await
            .into_iter()
            .filter(|d| text(d, "sku").starts_with(prefix))
            .collect();
        assert_eq!(docs.len(), n);
        for (i, doc) in docs.iter().enumerate() {
            assert_eq!(price(doc), "10", "{prefix}: the erp's price is kept: {doc}");
            assert_eq!(text(doc, "attributes.brand"), format!("new-{i}"), "{doc}");
            assert_eq!(text(doc, "_provenance.price"), "erp");
            assert_eq!(text(doc, "_provenance.attributes.brand"), "supplier");
            assert_eq!(text(doc, "_sources.erp.run_id"), erp_ctx.run_id);
            assert_eq!(text(doc, "_sources.supplier.run_id"), supplier_ctx.run_id);
        }
        if prefix == "P" {
            assert_eq!(
                erp.counts,
                WriteCounts {
                    inserted: n as u64,
                    ..WriteCounts::default()
                }
            );
        } else {
            assert_eq!(
                erp.counts,
                WriteCounts {
                    updated: n as u64,
                    ..WriteCounts::default()
                }
            );
        }
        assert_eq!(
            supplier.counts,
            WriteCounts {
                updated: n as u64,
                ..WriteCounts::default()
            },
            "{prefix}: it fills brand"
        );
        assert!(
            *finds.lock().unwrap() > n / 10,
            "{prefix}: the held batch met the erp's writes and was read and decided again"
        );
    }
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_predicts_what_the_real_run_then_does() {
    let server = MongoServer::start().await;
    let schema = schema("[feed]\nmatch_also = [\"gtin\", \"mpn\"]\n");
    let store = setup(&server, &schema).await;
    let header = "sku,name,price,stock,category,gtin,mpn";
    write(
        &store,
        &schema,
        &format!("{header}\nP1,Lamp,5,1,Home,G1,M1\nP2,Desk,7,1,Office,G2,M2\nP3,Chair,9,1,Office,G3,M3\n"),
        &write_context("run-1", "erp", Mode::Incremental),
    )
    .await;
    let before = products_by_sku(&store).await;
    // P1 changes price and stock, P2 is unchanged, S-3 merges into P3, P4 is new, X conflicts.
    let next = format!(
        "{header}\nP1,Lamp,5.50,4,Home,G1,M1\nP2,Desk,7,1,Office,G2,M2\nS-3,Chair,9,1,Office,G3,\nP4,Shelf,3,1,Home,G4,M4\nX,Odd,1,1,Home,G1,M2\n"
    );
    let dry = write(
        &store,
        &schema,
        &next,
        &write_context("run-2", "erp", Mode::DryRun),
    )
    .await;
    assert_eq!(
        products_by_sku(&store).await,
        before,
        "a dry run changes no document"
    );
    assert_eq!(
        dry.counts,
        WriteCounts {
            inserted: 1,
            updated: 2,
            unchanged: 1,
            refused: 1,
            merged: 1,
            reactivated: 0,
        }
    );
    assert_eq!(dry.refusals[0].row_code(), Code::Conflict);
    let mut differences: Vec<(String, String, Option<String>, Option<String>)> = dry
        .differences
        .iter()
        .map(|d| (d.key.clone(), d.field.clone(), d.old.clone(), d.new.clone()))
        .collect();
    differences.sort();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        differences,
        [
            ("P1".into(), "price".into(), some("5"), some("5.50")),
            ("P1".into(), "stock".into(), some("1"), some("4")),
        ]
    );
    let real = write(
        &store,
        &schema,
        &next,
        &write_context("run-2", "erp", Mode::Incremental),
    )
    .await;
    assert_eq!(
        WriteOutcome {
            differences: Vec::new(),
            ..dry
        },
        real,
        "the prediction is what the write did"
    );
    assert_eq!(products_by_sku(&store).await.len(), 4);
}
