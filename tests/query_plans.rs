//! Every query shape the store sends to a products collection uses an index. The store's commands
//! are captured from the driver's command events while it does everything a run does (inserts,
//! updates, `match_also` merges, a full refresh with a rejected row, stale marking under each
//! policy, a dry run's prediction) and `chute verify` reads (the products of snapshot keys); each
//! filter is then planned with `explain` (queryPlanner, so nothing runs) on the same server, and a
//! collection scan fails the test naming the command and its filter. SecantusDB plans some shapes
//! as scans that MongoDB proper indexes (an `$or`, any filter of two fields without a compound
//! index on both): the store writes shapes both servers index. One exception, by measurement: a
//! write statement whose filter fixes `_id` (the conditional update `{_id, _rev}`) is looked up by
//! `_id` when it runs (300 such updates took the same 0.17 s on 5,000 and on 40,000 documents),
//! although SecantusDB's find planner would scan for the same filter; MongoDB proper plans it as
//! an `_id` lookup.

mod support;

use std::sync::{Arc, Mutex};

use bson::{doc, Bson, Document};
use chute::feed::{Mode, Stale};
use chute::pipeline::process;
use chute::plan::PlanOptions;
use chute::schema::Schema;
use chute::store::{StaleRun, Store, StoreConfig, Supplied};
use mongodb::event::command::CommandEvent;
use support::{write_context, MongoServer};

/// The commands the store sent, as (command name, command).
type Sent = Arc<Mutex<Vec<(String, Document)>>>;

async fn observed_store(server: &MongoServer) -> (Store, Sent) {
    let sent: Sent = Arc::default();
    let seen = sent.clone();
    let mut config = StoreConfig::new(server.uri(), "chute_test");
    config.command_events = Some(std::sync::Arc::new(move |event: CommandEvent| {
        if let CommandEvent::Started(started) = event {
            seen.lock()
                .unwrap()
                .push((started.command_name.clone(), started.command.clone()));
        }
    }));
    (Store::connect(&config).await.unwrap(), sent)
}

fn staged(schema: &Schema, csv: &str) -> Vec<u8> {
    process(csv.as_bytes(), schema, &PlanOptions::default())
        .unwrap()
        .staged
}

fn stale_run<'a>(
    schema: &'a Schema,
    source: &'a str,
    run_id: &'a str,
    policy: Stale,
) -> StaleRun<'a> {
    StaleRun {
        schema,
        feed_source: source,
        run_id,
        policy,
        max_stale_percent: 100.0,
        force: false,
    }
}

/// A catalogue of `n` products, prices `price`, gtin and mpn set (the `match_also` fields).
fn catalogue(n: usize, price: &str) -> String {
    let mut csv = String::from("sku,name,price,stock,gtin,mpn\n");
    for i in 0..n {
        csv.push_str(&format!(
            "P{i:04},Item {i},{price},{i},{:08},M-{i}\n",
            10_000_000 + i
        ));
    }
    csv
}

/// Does what a run's import and report steps do to the catalog collection, through the store.
async fn exercise(store: &Store, schema: &Schema) {
    store.ensure_collection(schema).await.unwrap();
    let first = catalogue(60, "1.00");
    store
        .upsert_staged(
            schema,
            &staged(schema, &first),
            &write_context("r1", "erp", Mode::Full),
        )
        .await
        .unwrap();
    // `chute verify` reads the products of a batch of snapshot keys (and re-applies drift with
    // the writer above).
    let found = store
        .products_by_key(schema, &["P0001", "P0002", "P0099"])
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        2,
        "verify's read finds the stored products only"
    );
    // A second source supplies some of the products under other skus, found by gtin or mpn.
    let mut supplier = String::from("sku,name,price,stock,gtin,mpn\n");
    for i in 0..10 {
        supplier.push_str(&format!(
            "S{i:04},Other {i},2.00,1,{:08},\n",
            10_000_000 + i
        ));
    }
    for i in 10..20 {
        supplier.push_str(&format!("T{i:04},Other {i},2.00,1,,M-{i}\n"));
    }
    store
        .upsert_staged(
            schema,
            &staged(schema, &supplier),
            &write_context("s1", "supplier-a", Mode::Incremental),
        )
        .await
        .unwrap();
    // The next full refresh: new prices, the last ten products gone, one row rejected.
    let second = catalogue(50, "1.50");
    let to_write = staged(schema, &second);
    store
        .upsert_staged(schema, &to_write, &write_context("r2", "erp", Mode::Full))
        .await
        .unwrap();
    let mut supplied = Supplied::default();
    supplied.add_staged(schema, &to_write).unwrap();
    for policy in [Stale::Keep, Stale::Deactivate, Stale::Delete] {
        let run = stale_run(schema, "erp", "r2", policy);
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let drain = async move { while rx.recv().await.is_some() {} };
        let (predicted, ()) = tokio::join!(store.predict_stale(&run, &supplied, tx), drain);
        predicted.unwrap();
        store
            .keep_rejected_claims(
                &run,
                &[vec!["P0055".to_string()], vec!["P0056".to_string()]],
            )
            .await
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let drain = async move { while rx.recv().await.is_some() {} };
        let (marked, ()) = tokio::join!(store.mark_stale(&run, tx), drain);
        marked.unwrap();
        store.drop_stale_claims(&run).await.unwrap();
    }
    // A delta run's stale marking: the keys come from the snapshots, the products by key.
    let later = catalogue(40, "1.50");
    store
        .upsert_staged(
            schema,
            &staged(schema, &later),
            &write_context("r3", "erp", Mode::Full),
        )
        .await
        .unwrap();
    let stale: Vec<String> = (40..50).map(|i| format!("P{i:04}")).collect();
    for policy in [Stale::Deactivate, Stale::Delete] {
        let run = stale_run(schema, "erp", "r3", policy);
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let drain = async move { while rx.recv().await.is_some() {} };
        let (marked, ()) = tokio::join!(store.mark_stale_keys(&run, &stale, 1000, tx), drain);
        marked.unwrap();
        store.drop_stale_claims(&run).await.unwrap();
    }
}

/// The filters of a command that reads documents of `collection`, with what `explain` needs of it.
fn queries(name: &str, command: &Document, collection: &str) -> Vec<Document> {
    let on = |field: &str| command.get_str(field).is_ok_and(|c| c == collection);
    let statements = |list: &str, filter: &str| -> Vec<Document> {
        command
            .get_array(list)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Bson::as_document)
                    .filter_map(|s| s.get_document(filter).ok().cloned())
                    .filter(|q| !q.contains_key("_id"))
                    .map(|q| doc! {"find": collection, "filter": q})
                    .collect()
            })
            .unwrap_or_default()
    };
    match name {
        "find" if on("find") => {
            let mut find = doc! {"find": collection, "filter": command.get_document("filter").cloned().unwrap_or_default()};
            for option in ["sort", "hint", "projection"] {
                if let Some(value) = command.get(option) {
                    find.insert(option, value.clone());
                }
            }
            vec![find]
        }
        "count" if on("count") => vec![
            doc! {"find": collection, "filter": command.get_document("query").cloned().unwrap_or_default()},
        ],
        "aggregate" if on("aggregate") => {
            let first_match = command
                .get_array("pipeline")
                .ok()
                .and_then(|p| p.first())
                .and_then(Bson::as_document)
                .and_then(|stage| stage.get_document("$match").ok().cloned())
                .unwrap_or_default();
            vec![doc! {"find": collection, "filter": first_match}]
        }
        "update" if on("update") => statements("updates", "q"),
        "delete" if on("delete") => statements("deletes", "q"),
        _ => Vec::new(),
    }
}

/// The plan's stages, depth first.
fn stages(plan: &Document, out: &mut Vec<String>) {
    if let Ok(stage) = plan.get_str("stage") {
        out.push(stage.to_string());
    }
    for (_, value) in plan {
        match value {
            Bson::Document(child) => stages(child, out),
            Bson::Array(children) => children
                .iter()
                .filter_map(Bson::as_document)
                .for_each(|c| stages(c, out)),
            _ => {}
        }
    }
}

#[tokio::test]
async fn every_query_the_store_sends_to_the_products_collection_uses_an_index() {
    let server = MongoServer::start().await;
    let (store, sent) = observed_store(&server).await;
    let schema = Schema::built_in("catalog").unwrap();
    exercise(&store, &schema).await;
    let commands = sent.lock().unwrap().clone();
    let mut planned = 0;
    let mut scans = Vec::new();
    for (name, command) in &commands {
        for query in queries(name, command, &schema.collection) {
            let explained = store
                .database()
                .run_command(doc! {"explain": query.clone(), "verbosity": "queryPlanner"})
                .await
                .unwrap();
            let winning = explained
                .get_document("queryPlanner")
                .and_then(|p| p.get_document("winningPlan"))
                .unwrap_or_else(|_| panic!("explain of {query} has no winning plan: {explained}"));
            let mut seen = Vec::new();
            stages(winning, &mut seen);
            planned += 1;
            if seen.iter().any(|s| s == "COLLSCAN") {
                scans.push(format!("{name}: {query}"));
            }
        }
    }
    let kinds: std::collections::BTreeSet<&str> =
        commands.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        planned >= 10 && kinds.contains("update") && kinds.contains("find"),
        "the store's reads and writes were observed (planned {planned} of {kinds:?})"
    );
    assert!(
        scans.is_empty(),
        "collection scans of {}:\n{}",
        schema.collection,
        scans.join("\n")
    );
}
