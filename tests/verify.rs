//! `chute verify`'s library against a real MongoDB-protocol server (SecantusDB) and the tests'
//! local stack's S3: a source's snapshot is built by hand (staged documents, pieces, manifest;
//! tests/support/snapshot.rs), products are edited and deleted by hand, and the comparison lists
//! exactly those, `--repair` restores them, and a run whose staged documents are gone is checked
//! by claim only.

#[path = "support/snapshot.rs"]
mod snapshot;
mod support;

use std::collections::BTreeSet;

use bson::{doc, Bson, Document};
use chute::blob::Blob;
use chute::delta::{key_hash, piece_of};
use chute::feed::Mode;
use chute::schema::Schema;
use chute::store::{DriftKind, Store, StoreConfig, Verified, VerifyRequest};
use snapshot::{catalogue, commit_runs, HandRun, Place};
use support::{stack, unique, write_context, MongoServer};

async fn product(store: &Store, sku: &str) -> Option<Document> {
    store
        .database()
        .collection::<Document>("catalog")
        .find_one(doc! {"sku": sku})
        .await
        .unwrap()
}

async fn edit(store: &Store, sku: &str, update: Document) {
    let done = store
        .database()
        .collection::<Document>("catalog")
        .update_one(doc! {"sku": sku}, update)
        .await
        .unwrap();
    assert_eq!(done.modified_count, 1, "{sku}");
}

fn drifts(v: &Verified) -> Vec<(String, DriftKind, Option<String>, String, u64)> {
    let mut all: Vec<_> = v
        .drift
        .iter()
        .map(|d| {
            (
                d.key.clone(),
                d.kind,
                d.field.clone(),
                d.run_id.clone(),
                d.row,
            )
        })
        .collect();
    all.sort();
    all
}

fn differing(v: &Verified) -> BTreeSet<u32> {
    v.pieces
        .iter()
        .filter(|p| p.differs)
        .map(|p| p.piece)
        .collect()
}

#[tokio::test]
async fn hand_edits_are_listed_and_repaired_and_expired_staging_is_checked_by_claim() {
    let s = stack();
    s.export();
    let blob = Blob::new(&chute::aws::sdk_config().await, true);
    let server = MongoServer::start().await;
    let store = Store::connect(&StoreConfig::new(server.uri(), "chute_test"))
        .await
        .unwrap();
    let schema = Schema::built_in("catalog").unwrap();
    let root = format!("verify-tests/{}/", unique("v"));
    let (staging, snapshots) = (format!("{root}staging/"), format!("{root}snapshots/"));
    let place = Place {
        blob: &blob,
        bucket: s.bucket(),
        staging: &staging,
        snapshots: &snapshots,
    };
    let request = VerifyRequest {
        schema: &schema,
        source: "erp",
        staging_prefix: &staging,
        repair: false,
    };
    assert_eq!(
        store.verify_source(&blob, &request).await.unwrap(),
        None,
        "no snapshot yet"
    );

    // r0's staging expired; r1 listed P0000..P0019 (P0011 without an mpn), r2 re-priced
    // P0000..P0004. The snapshot: R*, P0005.. from their runs, P0000..P0004 from r2.
    let r0 = catalogue("R", 20_000_000, 0..3, "7.00", &[]);
    let r1 = catalogue("P", 10_000_000, 0..20, "1.00", &[11]);
    let r2 = catalogue("P", 10_000_000, 0..5, "1.50", &[11]);
    let runs = [
        HandRun {
            run_id: "r0",
            csv: &r0,
            mode: Mode::Incremental,
            staged_in_s3: false,
        },
        HandRun {
            run_id: "r1",
            csv: &r1,
            mode: Mode::Incremental,
            staged_in_s3: true,
        },
        HandRun {
            run_id: "r2",
            csv: &r2,
            mode: Mode::Incremental,
            staged_in_s3: true,
        },
    ];
    let base = commit_runs(&store, &schema, "erp", &place, &runs, 2).await;
    assert_eq!(base.entries, 23);
    // Supplier A fills the mpn the ERP left empty: its field, not the ERP's.
    let supplier = "sku,name,price,stock,gtin,mpn\nP0011,Other,2.00,1,10000011,SA-11\n";
    store
        .upsert_staged(
            &schema,
            &snapshot::stage(&schema, supplier, 1 << 20).1.concat(),
            &write_context("s1", "supplier-a", Mode::Incremental),
        )
        .await
        .unwrap();

    let clean = store.verify_source(&blob, &request).await.unwrap().unwrap();
    assert_eq!(
        (clean.checked, clean.drifted, clean.snapshot_run.as_str()),
        (23, 0, "r2"),
        "{clean:?}"
    );
    assert_eq!(clean.pieces.len(), 2);
    assert!(differing(&clean).is_empty(), "{:?}", clean.pieces);
    assert_eq!(clean.claims_only.len(), 1, "{:?}", clean.claims_only);
    assert_eq!(
        (
            clean.claims_only[0].run_id.as_str(),
            clean.claims_only[0].products
        ),
        ("r0", 3)
    );
    assert!(clean.claims_only[0].reason.contains("StagingRetentionDays"));

    // By hand: an r2 price, an r1 product deleted, an r1 claim, the supplier's mpn, and the
    // claim of a product whose run's staging expired.
    edit(
        &store,
        "P0003",
        doc! {"$set": {"price": Bson::Decimal128("999.00".parse().unwrap())}},
    )
    .await;
    let deleted = store
        .database()
        .collection::<Document>("catalog")
        .delete_one(doc! {"sku": "P0012"})
        .await
        .unwrap();
    assert_eq!(deleted.deleted_count, 1);
    edit(
        &store,
        "P0016",
        doc! {"$set": {"_sources.erp.hash": "edited"}},
    )
    .await;
    edit(&store, "P0011", doc! {"$set": {"mpn": "HAND"}}).await;
    edit(
        &store,
        "R0001",
        doc! {"$set": {"_sources.erp.hash": "edited"}},
    )
    .await;

    let found = store.verify_source(&blob, &request).await.unwrap().unwrap();
    assert_eq!(
        drifts(&found),
        vec![
            (
                "P0003".into(),
                DriftKind::Field,
                Some("price".into()),
                "r2".into(),
                4
            ),
            ("P0012".into(), DriftKind::Missing, None, "r1".into(), 13),
            (
                "P0016".into(),
                DriftKind::ClaimChanged,
                None,
                "r1".into(),
                17
            ),
            (
                "R0001".into(),
                DriftKind::ClaimChanged,
                None,
                "r0".into(),
                2
            ),
        ]
    );
    let price = found.drift.iter().find(|d| d.key == "P0003").unwrap();
    assert_eq!(
        (price.stored.as_deref(), price.snapshot.as_deref()),
        (Some("999.00"), Some("1.50"))
    );
    assert_eq!(
        (
            found.checked,
            found.drifted,
            found.missing,
            found.claims,
            found.fields
        ),
        (23, 4, 1, 2, 1)
    );
    // The claim checksums see the deleted product and the changed claims, not the price.
    let piece = |sku: &str| piece_of(key_hash(sku), 2);
    assert_eq!(
        differing(&found),
        ["P0012", "P0016", "R0001"].map(piece).into_iter().collect()
    );

    let repairing = VerifyRequest {
        repair: true,
        ..request
    };
    // A run of the source under way: the comparison says so, a repair writes nothing.
    let hour = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() + 3_600_000);
    let taken = store
        .take_lease("catalog", "erp", "r3", hour)
        .await
        .unwrap();
    assert!(taken.is_ok());
    let busy = store.verify_source(&blob, &request).await.unwrap().unwrap();
    assert_eq!((busy.running.as_deref(), busy.drifted), (Some("r3"), 4));
    let refused = store.verify_source(&blob, &repairing).await.unwrap_err();
    assert!(
        matches!(&refused, chute::ChuteError::SourceBusy(m) if m.contains("run r3")),
        "{refused}"
    );
    assert!(product(&store, "P0012").await.is_none(), "nothing written");
    store.release_lease("catalog", "erp", "r3").await.unwrap();
    let repaired = store
        .verify_source(&blob, &repairing)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repaired.drifted, 4, "the repair pass reports what it found");
    assert_eq!(repaired.running, None);
    let r = repaired.repaired.as_ref().unwrap();
    assert_eq!(
        (
            r.reapplied,
            r.counts.inserted,
            r.counts.updated,
            r.counts.refused,
            r.unrepairable
        ),
        (3, 1, 2, 0, 1),
        "{r:?}"
    );

    let after = store.verify_source(&blob, &request).await.unwrap().unwrap();
    assert_eq!(
        after.running, None,
        "the repair gave the source's lease back"
    );
    assert!(store
        .take_lease("catalog", "erp", "r4", hour)
        .await
        .unwrap()
        .is_ok());
    assert_eq!(
        drifts(&after),
        vec![(
            "R0001".into(),
            DriftKind::ClaimChanged,
            None,
            "r0".into(),
            2
        )],
        "only the product whose staged row is gone is left"
    );
    let p3 = product(&store, "P0003").await.unwrap();
    assert_eq!(
        p3.get("price"),
        Some(&Bson::Decimal128("1.50".parse().unwrap()))
    );
    assert_eq!(
        p3.get_document("_import")
            .unwrap()
            .get_str("run_id")
            .unwrap(),
        "r2"
    );
    let p12 = product(&store, "P0012").await.expect("re-inserted");
    assert_eq!(p12.get_str("name").unwrap(), "Item 12");
    assert_eq!(
        p12.get("price"),
        Some(&Bson::Decimal128("1.00".parse().unwrap()))
    );
    assert_eq!(p12.get_str("first_run_id").unwrap(), "r1");
    let p16 = product(&store, "P0016").await.unwrap();
    assert_ne!(
        p16.get_document("_sources")
            .unwrap()
            .get_document("erp")
            .unwrap()
            .get_str("hash")
            .unwrap(),
        "edited"
    );
    let p11 = product(&store, "P0011").await.unwrap();
    assert_eq!(
        p11.get_str("mpn").unwrap(),
        "HAND",
        "not the ERP's field: untouched"
    );

    // A piece cut short is an error, not fewer products checked.
    let piece0 = blob.get(s.bucket(), &base.piece_key(0)).await.unwrap();
    blob.put(
        s.bucket(),
        &base.piece_key(0),
        piece0[..piece0.len() - 1].to_vec(),
        "application/octet-stream",
    )
    .await
    .unwrap();
    let damaged = store.verify_source(&blob, &request).await.unwrap_err();
    assert!(damaged.to_string().contains("damaged"), "{damaged}");
}
