//! The MongoDB writer against a real server: counts, merge, last-wins, refusals, outages, ledger.

mod support;

use bson::{doc, Bson, DateTime, Document};
use chute::error::Refusal;
use chute::feed::Mode;
use chute::pipeline::process;
use chute::plan::PlanOptions;
use chute::run::{ImportProgress, WriteCounts};
use chute::schema::Schema;
use chute::store::{Store, StoreConfig, WriteContext, WriteOutcome};
use chute::Position;
use support::{product_indexes, products_by_sku, written, MongoServer};

const HEADER: &str = "sku,name,price,stock,category,brand,active";

fn staged(csv: &str, chunk_bytes: u64) -> Vec<Vec<u8>> {
    let schema = Schema::products();
    let out = process(
        csv.as_bytes(),
        &schema,
        &PlanOptions {
            chunk_bytes,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(out.rejected(), 0, "test data is valid");
    // Split the staged stream back per chunk, by the number of documents each chunk wrote.
    let docs = chute::store::split_staged(&out.staged).unwrap();
    let mut at = 0;
    out.chunks
        .iter()
        .map(|c| {
            let bytes: Vec<u8> = docs[at..at + c.valid as usize]
                .iter()
                .flat_map(|d| d.as_bytes().to_vec())
                .collect();
            at += c.valid as usize;
            bytes
        })
        .collect()
}

fn ctx(run: &str) -> WriteContext {
    WriteContext {
        run_id: run.to_string(),
        object: format!("s3://bucket/incoming/{run}.csv"),
        feed_source: "default".into(),
        mode: Mode::Incremental,
        at: DateTime::now(),
        reapply: false,
    }
}

async fn store(server: &MongoServer) -> Store {
    let store = store_of(server).await;
    store.ensure_collection(&Schema::products()).await.unwrap();
    store
}

async fn store_of(server: &MongoServer) -> Store {
    Store::connect(&StoreConfig::new(server.uri(), "chute_test"))
        .await
        .unwrap()
}

/// Writes staged documents as run `run`; a store error fails the test.
async fn write(store: &Store, schema: &Schema, staged: &[u8], run: &str) -> WriteOutcome {
    store
        .upsert_staged(schema, staged, &ctx(run))
        .await
        .unwrap()
}

fn rows(n: usize, price: impl Fn(usize) -> String) -> String {
    let mut csv = format!("{HEADER}\n");
    for i in 0..n {
        csv.push_str(&format!(
            "SKU-{i:04},Item {i},{},{i},Cat{},Brand{i},yes\n",
            price(i),
            i % 3
        ));
    }
    csv
}

#[tokio::test]
async fn first_run_rerun_and_corrected_rerun_count_exactly() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    let original = staged(&rows(50, |i| format!("{i}.50")), 1 << 20).concat();
    let first = write(&store, &schema, &original, "run-1").await;
    assert_eq!(first.counts, written(50, 0, 0, 0));
    let again = write(&store, &schema, &original, "run-2").await;
    assert_eq!(again.counts, written(0, 0, 50, 0));
    // Two prices change and one row is new.
    let corrected = staged(
        &rows(51, |i| {
            if i == 3 || i == 7 {
                "99.99".into()
            } else {
                format!("{i}.50")
            }
        }),
        1 << 20,
    )
    .concat();
    let fixed = write(&store, &schema, &corrected, "run-3").await;
    assert_eq!(fixed.counts, written(1, 2, 48, 0));

    let docs = products_by_sku(&store).await;
    assert_eq!(docs.len(), 51);
    let d3 = &docs[3];
    assert_eq!(
        d3.get("price").unwrap(),
        &Bson::Decimal128("99.99".parse().unwrap())
    );
    assert_eq!(d3.get_i32("stock").unwrap(), 3);
    assert_eq!(
        d3.get_document("_import")
            .unwrap()
            .get_str("run_id")
            .unwrap(),
        "run-3"
    );
    assert_eq!(d3.get_str("first_run_id").unwrap(), "run-1");
    assert_eq!(
        docs[4]
            .get_document("_import")
            .unwrap()
            .get_str("run_id")
            .unwrap(),
        "run-1",
        "unchanged rows are not rewritten"
    );
}

#[tokio::test]
async fn a_retried_batch_counts_as_the_write_it_was() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    let data = staged(&rows(20, |i| format!("{i}")), 1 << 20).concat();
    let first = write(&store, &schema, &data, "run-1").await;
    let retried = write(&store, &schema, &data, "run-1").await;
    assert_eq!(first.counts, written(20, 0, 0, 0));
    assert_eq!(
        retried, first,
        "same run, same chunk: same counts, nothing written twice"
    );
    assert_eq!(products_by_sku(&store).await.len(), 20);
}

#[tokio::test]
async fn rows_merge_into_stored_documents() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    let full = staged(
        "sku,name,price,stock,category,brand,active\nA,Lamp,5,1,Home,Acme,no\n",
        1 << 20,
    )
    .concat();
    write(&store, &schema, &full, "run-1").await;
    // Another feed without brand/active/currency: those keep their stored values.
    let partial = staged(
        "sku,name,price,stock,category\nA,Lamp XL,6,2,Home\nB,Desk,7,3,Office\n",
        1 << 20,
    )
    .concat();
    let outcome = write(&store, &schema, &partial, "run-2").await;
    assert_eq!(outcome.counts, written(1, 1, 0, 0));
    let docs = products_by_sku(&store).await;
    let a = &docs[0];
    assert_eq!(a.get_str("name").unwrap(), "Lamp XL");
    assert_eq!(
        a.get_document("attributes")
            .unwrap()
            .get_str("brand")
            .unwrap(),
        "Acme"
    );
    assert!(
        !a.get_bool("active").unwrap(),
        "an absent column does not reset a stored value"
    );
    assert_eq!(a.get_str("currency").unwrap(), "USD");
    let b = &docs[1];
    assert!(b.get_bool("active").unwrap(), "defaults apply on insert");
    assert!(b.get_datetime("first_imported_at").is_ok());
}

#[tokio::test]
async fn a_key_stored_between_lookup_and_insert_is_updated_not_lost() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    // Two documents for one key in one batch: both look new at lookup time, so the second insert
    // meets the first one's key, exactly as when another writer stores the key in between.
    let first = staged(&format!("{HEADER}\nA,Lamp,5,1,Home,Acme,yes\n"), 1 << 20).concat();
    let second = staged(&format!("{HEADER}\nA,Lamp v2,6,1,Home,Acme,yes\n"), 1 << 20).concat();
    let outcome = write(&store, &schema, &[first, second].concat(), "run-1").await;
    assert_eq!(outcome.counts, written(1, 1, 0, 0));
    let docs = products_by_sku(&store).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].get_str("name").unwrap(), "Lamp v2");
    let mut fields: Vec<&str> = docs[0].keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "_id",
            "_import",
            "_provenance",
            "_rev",
            "_sources",
            "active",
            "attributes",
            "category",
            "currency",
            "first_imported_at",
            "first_run_id",
            "name",
            "price",
            "sku",
            "stock"
        ]
    );
}

#[tokio::test]
async fn last_occurrence_wins_whatever_order_chunks_are_written() {
    let server = MongoServer::start().await;
    let store = Store::connect(&StoreConfig::new(server.uri(), "chute_test"))
        .await
        .unwrap();
    let mut csv = format!("{HEADER}\n");
    for i in 0..30 {
        csv.push_str(&format!("K{},v{i},{i},{i},Cat,B,yes\n", i % 7));
    }
    let chunks = staged(&csv, 120);
    assert!(chunks.len() >= 3, "the file spans chunks");
    // Write order cannot matter only because each key is staged once, in the chunk of its last
    // valid row: hold that, so a planner that kept a winner per chunk fails here (and the
    // backward order below would then leave an older row stored).
    let mut staged_keys: Vec<String> = chunks
        .iter()
        .flat_map(|c| chute::store::split_staged(c).unwrap())
        .map(|d| d.get_str("sku").unwrap().to_string())
        .collect();
    staged_keys.sort_unstable();
    assert_eq!(staged_keys, ["K0", "K1", "K2", "K3", "K4", "K5", "K6"]);
    let schema = Schema::products();
    for (database, order) in [("forward", false), ("backward", true)] {
        let store = Store::connect(&StoreConfig::new(server.uri(), database))
            .await
            .unwrap();
        store.ensure_collection(&schema).await.unwrap();
        let mut total = WriteOutcome::default();
        let mut list: Vec<&Vec<u8>> = chunks.iter().collect();
        if order {
            list.reverse();
        }
        for chunk in list {
            total.add(write(&store, &schema, chunk, "run-1").await);
        }
        assert_eq!(
            total.counts,
            written(7, 0, 0, 0),
            "{database}: only winners are written"
        );
        let docs = products_by_sku(&store).await;
        let names: Vec<&str> = docs.iter().map(|d| d.get_str("name").unwrap()).collect();
        assert_eq!(
            names,
            ["v28", "v29", "v23", "v24", "v25", "v26", "v27"],
            "{database}"
        );
    }
    drop(store);
}

#[tokio::test]
async fn a_document_the_validator_refuses_is_reported_with_its_row() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    let schema = Schema::products();
    let good = staged("sku,name,price,stock,category\nA,Lamp,5,1,Home\n", 1 << 20).concat();
    // A staged document another writer got wrong: stock as a string.
    let bad = doc! {"sku": "B", "name": "Desk", "price": Bson::Decimal128("7".parse().unwrap()), "stock": "lots", "category": "Office",
    "_import": {"row": 2i64, "line": 3i64, "hash": "00"}};
    let mut bytes = good.clone();
    bad.to_writer(&mut bytes).unwrap();
    let outcome = write(&store, &schema, &bytes, "run-1").await;
    let message = outcome.refusals[0].message.clone();
    assert!(message.contains("stock"), "{message}");
    assert_eq!(
        outcome,
        WriteOutcome {
            counts: WriteCounts {
                inserted: 1,
                refused: 1,
                ..WriteCounts::default()
            },
            refusals: vec![Refusal {
                position: Position { row: 2, line: 3 },
                code: 121,
                message,
            }],
            differences: Vec::new(),
        }
    );
    assert_eq!(products_by_sku(&store).await.len(), 1);
}

/// The writer is held inside the driver's event for its first acknowledged write until the server
/// is dead, so the kill always lands mid-chunk with rows still unwritten, on any machine speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_during_a_write_is_transient_and_the_retry_is_exact() {
    use mongodb::event::command::CommandEvent;
    use std::sync::mpsc;
    use std::sync::Mutex;

    let mut server = MongoServer::start().await;
    store(&server).await; // collection set up before the observed client starts
    let (acknowledged, first_write) = mpsc::channel::<()>();
    let (release, killed) = mpsc::channel::<()>();
    let hold = Mutex::new(Some((acknowledged, killed)));
    let mut config = StoreConfig::new(server.uri(), "chute_test");
    config.server_selection_timeout = std::time::Duration::from_secs(2);
    config.batch_size = 100;
    config.command_events = Some(std::sync::Arc::new(move |event: CommandEvent| {
        if let CommandEvent::Succeeded(done) = event {
            if matches!(done.command_name.as_str(), "insert" | "update") {
                // Only the first write blocks; the driver's task waits here until the kill.
                if let Some((acknowledged, killed)) = hold.lock().unwrap().take() {
                    acknowledged.send(()).unwrap();
                    killed.recv().unwrap();
                }
            }
        }
    }));
    let store = Store::connect(&config).await.unwrap();
    let schema = Schema::products();
    let data = staged(&rows(600, |i| format!("{i}")), 1 << 20).concat();
    let writing = {
        let store = store.clone();
        let data = data.clone();
        let schema = schema.clone();
        tokio::spawn(async move { store.upsert_staged(&schema, &data, &ctx("run-1")).await })
    };
    tokio::task::spawn_blocking(move || first_write.recv())
        .await
        .unwrap()
        .expect("the writer acknowledged a first batch");
    server.kill();
    release.send(()).unwrap();
    let first = writing.await.unwrap();
    match first {
        Err(e) => assert_eq!(e.error_type(), "Chute.Transient", "{e}"),
        Ok(o) => panic!("the write went on after the server was killed ({o:?})"),
    }
    server.launch().await;
    let observer = store_of(&server).await;
    let written_before_retry = observer
        .database()
        .collection::<Document>("products")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert!(
        written_before_retry <= 100,
        "no write after the first batch reached the server: {written_before_retry}"
    );
    let retried = write(&store, &schema, &data, "run-1").await;
    assert_eq!(
        retried.counts,
        written(600, 0, 0, 0),
        "the retry counts every row once, the 100 already written included"
    );
    let docs = products_by_sku(&store).await;
    assert_eq!(docs.len(), 600);
    assert!(docs
        .iter()
        .enumerate()
        .all(|(i, d)| d.get_i32("stock").unwrap() == i as i32));
}

#[tokio::test]
async fn the_ledger_remembers_how_far_each_chunk_got() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    assert_eq!(store.chunk_progress("run-9", 0).await.unwrap(), None);
    let progress = ImportProgress {
        documents: 6,
        bytes: 600,
        counts: WriteCounts {
            inserted: 3,
            updated: 2,
            unchanged: 1,
            ..WriteCounts::default()
        },
        invocations: 1,
        finished: true,
        ..ImportProgress::default()
    };
    store.record_progress("run-9", 0, &progress).await.unwrap();
    store
        .record_run("run-9", doc! {"status": "RUNNING"})
        .await
        .unwrap();
    assert_eq!(
        store.chunk_progress("run-9", 0).await.unwrap(),
        Some(progress)
    );
    assert_eq!(store.chunk_progress("run-9", 1).await.unwrap(), None);
    let run = store.run("run-9").await.unwrap().unwrap();
    assert_eq!(run.get_str("status").unwrap(), "RUNNING");
}

#[tokio::test]
async fn collection_setup_is_idempotent_and_builds_indexes() {
    let server = MongoServer::start().await;
    let store = store(&server).await;
    store.ensure_collection(&Schema::products()).await.unwrap();
    let names = product_indexes(&store).await;
    assert!(names.contains(&"products_key".to_string()), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("category_1_price_1")),
        "{names:?}"
    );
}

/// What a `readWrite`-only user relies on: an unchanged schema sends no `collMod` and no
/// `createIndexes`; a changed one sends both.
#[tokio::test]
async fn setup_changes_the_collection_only_when_the_schema_differs() {
    use mongodb::event::command::CommandEvent;
    use std::sync::{Arc, Mutex};

    let server = MongoServer::start().await;
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut config = StoreConfig::new(server.uri(), "chute_test");
    config.command_events = Some(std::sync::Arc::new({
        let sent = sent.clone();
        move |event: CommandEvent| {
            if let CommandEvent::Started(started) = event {
                sent.lock().unwrap().push(started.command_name);
            }
        }
    }));
    let store = Store::connect(&config).await.unwrap();
    let setup = |schema: Schema| {
        let store = store.clone();
        let sent = sent.clone();
        async move {
            sent.lock().unwrap().clear();
            store.ensure_collection(&schema).await.unwrap();
            let sent = sent.lock().unwrap().clone();
            let count = |name: &str| sent.iter().filter(|c| *c == name).count();
            (count("create"), count("collMod"), count("createIndexes"))
        }
    };
    assert_eq!(
        setup(Schema::products()).await,
        (1, 0, 2),
        "first run: the collection, its indexes and the ledger's"
    );
    assert_eq!(setup(Schema::products()).await, (0, 0, 0), "unchanged");
    let mut changed = Schema::products();
    let name = changed
        .columns
        .iter_mut()
        .find(|c| c.name == "name")
        .unwrap();
    name.constraints.max_length = Some(300);
    changed.indexes.push(vec!["name".into()]);
    assert_eq!(
        setup(changed.clone()).await,
        (0, 1, 1),
        "validator and index changed"
    );
    assert_eq!(setup(changed).await, (0, 0, 0), "and now stored");
    let validator = store
        .database()
        .run_command(doc! {"listCollections": 1, "filter": {"name": "products"}})
        .await
        .unwrap();
    assert!(
        validator.to_string().contains("300"),
        "collMod stored the new validator: {validator}"
    );
}

#[tokio::test]
async fn connection_strings_never_reach_error_texts() {
    let secret = "s3cr3t-pa55";
    // Malformed (bad port): refused when the client is built.
    let malformed = format!("mongodb://chute:{secret}@127.0.0.1:notaport/chute");
    let err = Store::connect(&StoreConfig::new(malformed, "chute_test"))
        .await
        .err()
        .expect("a malformed URI is refused");
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(
        err.to_string().contains("MongoDB URI is not usable"),
        "{err}"
    );
    // What a function returns to Lambda (and Lambda logs), whatever the case of the scheme.
    for scheme in ["mongodb", "MONGODB", "MongoDB+SRV"] {
        let uri = format!("{scheme}://chute:{secret}@127.0.0.1:notaport/chute");
        let err = Store::connect(&StoreConfig::new(uri, "chute_test"))
            .await
            .err()
            .expect("a malformed URI is refused");
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert!(
            !diagnostic.error_message.contains(secret),
            "{}",
            diagnostic.error_message
        );
    }

    // Well-formed but nobody listens: the first operation fails as transient.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = StoreConfig::new(
        format!("mongodb://chute:{secret}@127.0.0.1:{port}/chute?directConnection=true"),
        "chute_test",
    );
    config.server_selection_timeout = std::time::Duration::from_millis(500);
    let store = Store::connect(&config).await.unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(err.to_string().contains("MongoDB unavailable"), "{err}");
    let err = store
        .upsert_staged(
            &Schema::products(),
            &staged(&rows(1, |_| "1".into()), 1 << 20).concat(),
            &ctx("run-x"),
        )
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
}

#[tokio::test]
async fn a_staged_stream_is_written_batch_by_batch_and_a_truncated_one_is_refused() {
    use chute::error::ChuteError;
    use tokio::io::AsyncWriteExt;
    let server = MongoServer::start().await;
    let mut config = StoreConfig::new(server.uri(), "chute_test");
    config.batch_size = 2;
    let store = Store::connect(&config).await.unwrap();
    let schema = Schema::products();
    store.ensure_collection(&schema).await.unwrap();
    let bytes = staged(&rows(5, |i| format!("{i}.50")), 1 << 20).concat();

    // The reader hands out at most 3 bytes per read, as a network stream may.
    let stream = |bytes: Vec<u8>| {
        let (mut writer, reader) = tokio::io::duplex(3);
        tokio::spawn(async move { writer.write_all(&bytes).await.unwrap() });
        reader
    };
    let outcome = store
        .upsert_stream(&schema, stream(bytes.clone()), &ctx("run-1"))
        .await
        .unwrap();
    assert_eq!(outcome.counts, written(5, 0, 0, 0));

    store.database().drop().await.unwrap();
    store.ensure_collection(&schema).await.unwrap();
    let cut = bytes[..bytes.len() - 3].to_vec();
    match store
        .upsert_stream(&schema, stream(cut), &ctx("run-2"))
        .await
    {
        Err(ChuteError::Fatal(message)) => {
            assert!(message.contains("truncated after 4 documents"), "{message}")
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    // Batches before the cut are written; a retry after a new transform makes the run exact.
    assert_eq!(products_by_sku(&store).await.len(), 4);
}
