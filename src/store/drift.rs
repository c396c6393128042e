//! What `chute verify` finds when it compares a source's snapshot with the database (pure; the
//! reading is [`super::verify`]). Per product the snapshot says: this source supplied key K with
//! content hash H at row R of run X, and X's staged document of that row holds the fields it set.
//! The stored product drifted when:
//!
//! - it is gone ([`DriftKind::Missing`]);
//! - the source's claim `_sources.<source>` is gone ([`DriftKind::ClaimMissing`]) or names
//!   another content hash ([`DriftKind::ClaimChanged`]);
//! - a field the staged document sets, whose `_provenance` is this source, holds another value
//!   ([`DriftKind::Field`]). A field another source supplied is that source's (precedence or a
//!   later write decided it), not drift.
//!
//! Per snapshot piece, an order-free checksum of `(key, claim hash)` is summed on both sides
//! ([`claim_sum`]), so a report says which pieces differ; the content comparison covers every
//! product whatever the checksums say (a field edited by hand leaves the claim as it was).

use bson::{Bson, Document};
use serde::Serialize;

use super::document::display;
use super::paths::lookup;
use super::staged::StagedDoc;
use crate::run::WriteCounts;
use crate::schema::KEY_SEPARATOR;

/// At most this many drifts are listed in a [`Verified`]; the counts cover all.
pub const DRIFT_LISTED: usize = 10_000;

/// How a stored product differs from what the snapshot says its source supplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// No document has the key.
    Missing,
    /// The document has no `_sources.<source>`.
    ClaimMissing,
    /// `_sources.<source>.hash` is not the snapshot's content hash.
    ClaimChanged,
    /// A field the source supplied (its `_provenance`) holds another value than its row set.
    Field,
}

impl DriftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::ClaimMissing => "claim-missing",
            DriftKind::ClaimChanged => "claim-changed",
            DriftKind::Field => "field",
        }
    }
}

/// One difference between a stored product and the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The product's key (composite keys as `a/b`).
    pub key: String,
    pub kind: DriftKind,
    /// The field (dotted), for [`DriftKind::Field`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What the database holds (none: absent).
    pub stored: Option<String>,
    /// What the snapshot's row set (none: unknown, the staged documents are gone).
    pub snapshot: Option<String>,
    /// The run whose staged row the snapshot entry came from, and the row.
    pub run_id: String,
    pub row: u64,
}

/// What the snapshot says of one product: its key text (parts joined as the writer joins them),
/// content hash (0: claimed, content unknown), and the run and row that supplied it.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub key: &'a str,
    pub hash: u128,
    pub run_id: &'a str,
    pub row: u64,
}

impl Expected<'_> {
    /// The content hash as the transform writes it (`_import.hash`, `_sources.<name>.hash`).
    pub fn hash_hex(&self) -> String {
        format!("{:032x}", self.hash)
    }
}

/// A key as a person reads it.
pub fn display_key(key: &str) -> String {
    key.replace(KEY_SEPARATOR, "/")
}

/// `_sources.<source>.hash` of a stored product: `None` when the claim is gone, `Some("")` when
/// it has no hash.
pub fn claim_hash<'d>(stored: &'d Document, source: &str) -> Option<&'d str> {
    let stamp = stored
        .get_document("_sources")
        .ok()?
        .get_document(source)
        .ok()?;
    Some(stamp.get_str("hash").unwrap_or(""))
}

/// The drifts of one product. `staged` is the row's staged document when it is still in S3
/// (without it only the claim is checked).
pub(super) fn classify(
    expected: &Expected<'_>,
    source: &str,
    stored: Option<&Document>,
    staged: Option<&StagedDoc>,
) -> Vec<Drift> {
    let drift =
        |kind, field: Option<&str>, stored: Option<String>, snapshot: Option<String>| Drift {
            key: display_key(expected.key),
            kind,
            field: field.map(str::to_string),
            stored,
            snapshot,
            run_id: expected.run_id.to_string(),
            row: expected.row,
        };
    let Some(stored) = stored else {
        return vec![drift(DriftKind::Missing, None, None, None)];
    };
    let mut drifts = Vec::new();
    let known = expected.hash != 0;
    match claim_hash(stored, source) {
        None => drifts.push(drift(
            DriftKind::ClaimMissing,
            None,
            None,
            known.then(|| expected.hash_hex()),
        )),
        Some(hash) if known && hash != expected.hash_hex() => drifts.push(drift(
            DriftKind::ClaimChanged,
            None,
            Some(hash.to_string()),
            Some(expected.hash_hex()),
        )),
        Some(_) => {}
    }
    let Some(staged) = staged else {
        return drifts;
    };
    let provenance = stored.get_document("_provenance").ok();
    for (path, value) in staged.fields() {
        let owner = provenance
            .and_then(|p| lookup(p, path))
            .and_then(Bson::as_str);
        if owner != Some(source) {
            continue;
        }
        let now = lookup(stored, path);
        if now != Some(value) {
            drifts.push(drift(
                DriftKind::Field,
                Some(path),
                now.map(display),
                Some(display(value)),
            ));
        }
    }
    drifts
}

/// One product's term of a piece checksum: its key and the claim's content hash (`None`: no
/// document or no claim). The checksum of a piece is the wrapping sum of its products' terms, so
/// it does not depend on the order products are read in.
pub fn claim_sum(key: &str, claim: Option<&str>) -> u64 {
    let mut bytes = Vec::with_capacity(key.len() + 34);
    bytes.extend_from_slice(key.as_bytes());
    match claim {
        Some(hash) => {
            bytes.push(0x1e);
            bytes.extend_from_slice(hash.as_bytes());
        }
        None => bytes.push(0x15),
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The snapshot's term of a product in its piece's checksum. An entry of unknown content (hash
/// 0) counts as "claimed", whatever hash the claim has.
pub fn snapshot_term(expected: &Expected<'_>) -> u64 {
    match expected.hash {
        0 => claim_sum(expected.key, Some("*")),
        _ => claim_sum(expected.key, Some(&expected.hash_hex())),
    }
}

/// The database's term of a product in its piece's checksum, from its claim's hash (`None`: no
/// document or no claim).
pub fn database_term(expected: &Expected<'_>, claim: Option<&str>) -> u64 {
    match claim {
        Some(_) if expected.hash == 0 => claim_sum(expected.key, Some("*")),
        claim => claim_sum(expected.key, claim),
    }
}

/// One snapshot piece's checksums.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PieceCheck {
    pub piece: u32,
    pub entries: u64,
    /// Of the snapshot's `(key, hash)` entries and of the database's `(key, _sources.<source>.hash)`
    /// for the same keys, as hex.
    pub snapshot: String,
    pub database: String,
    pub differs: bool,
}

impl PieceCheck {
    pub fn new(piece: u32, entries: u64, snapshot: u64, database: u64) -> PieceCheck {
        PieceCheck {
            piece,
            entries,
            snapshot: format!("{snapshot:016x}"),
            database: format!("{database:016x}"),
            differs: snapshot != database,
        }
    }
}

/// Products whose run's staged documents could not be read: only their claims were checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimsOnly {
    pub run_id: String,
    pub products: u64,
    pub reason: String,
}

/// What `--repair` re-applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Repaired {
    /// Drifted products whose staged row was written again, and what the writes counted as.
    pub reapplied: u64,
    pub counts: WriteCounts,
    /// The writer's refusals, as `row N: message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
    /// Drifted products whose staged row is gone (staging expired): not repairable here (a run
    /// with `chute-mode: reapply` restores a deleted one, not an edited field).
    pub unrepairable: u64,
}

/// A source's snapshot compared with the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub collection: String,
    pub source: String,
    /// The run that committed the snapshot compared.
    pub snapshot_run: String,
    pub pieces: Vec<PieceCheck>,
    /// Products compared (every entry of the snapshot).
    pub checked: u64,
    /// Products with at least one drift, and of those: missing, with a claim missing or changed,
    /// with a field changed.
    pub drifted: u64,
    pub missing: u64,
    pub claims: u64,
    pub fields: u64,
    /// The drifts, in snapshot order, at most [`DRIFT_LISTED`]; `unlisted` says how many more.
    pub drift: Vec<Drift>,
    pub unlisted: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claims_only: Vec<ClaimsOnly>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<Repaired>,
    /// A run of the source under way (it holds the source's lease): its writes show as drift
    /// until it commits its snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    pub duration_ms: u64,
}

impl Verified {
    /// Counts and lists one product's drifts.
    pub fn add(&mut self, drifts: Vec<Drift>) {
        self.checked += 1;
        if drifts.is_empty() {
            return;
        }
        self.drifted += 1;
        let has = |kinds: &[DriftKind]| drifts.iter().any(|d| kinds.contains(&d.kind));
        self.missing += u64::from(has(&[DriftKind::Missing]));
        self.claims += u64::from(has(&[DriftKind::ClaimMissing, DriftKind::ClaimChanged]));
        self.fields += u64::from(has(&[DriftKind::Field]));
        for d in drifts {
            if self.drift.len() < DRIFT_LISTED {
                self.drift.push(d);
            } else {
                self.unlisted += 1;
            }
        }
    }

    /// Counts `products` of `run_id` as checked by claim only, for `reason`.
    pub fn claims_only(&mut self, run_id: &str, products: u64, reason: &str) {
        if products == 0 {
            return;
        }
        match self
            .claims_only
            .iter_mut()
            .find(|c| c.run_id == run_id && c.reason == reason)
        {
            Some(c) => c.products += products,
            None => self.claims_only.push(ClaimsOnly {
                run_id: run_id.to_string(),
                products,
                reason: reason.to_string(),
            }),
        }
    }

    /// Whether the database holds what the snapshot says.
    pub fn clean(&self) -> bool {
        self.drifted == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::process;
    use crate::plan::PlanOptions;
    use crate::schema::Schema;
    use bson::{doc, RawDocument};

    const SOURCE: &str = "erp";

    /// LAMP-1's staged row as the transform writes it, and the product as the writer stored it.
    fn staged_and_stored() -> (Vec<u8>, Document) {
        let schema = Schema::built_in("catalog").unwrap();
        let csv = "sku,name,price,stock,gtin,mpn\nLAMP-1,Desk lamp,19.90,4,12345678,M-1\n";
        let staged = process(csv.as_bytes(), &schema, &PlanOptions::default())
            .unwrap()
            .staged;
        let parsed = StagedDoc::parse(RawDocument::from_bytes(&staged).unwrap(), &["sku"]).unwrap();
        let mut stored = doc! {"_id": 1};
        let mut provenance = Document::new();
        for (path, value) in parsed.fields() {
            super::super::paths::insert_path(&mut stored, path, value.clone());
            super::super::paths::insert_path(&mut provenance, path, Bson::from(SOURCE));
        }
        stored.insert(
            "_sources",
            doc! {SOURCE: {"run_id": "r1", "hash": &parsed.hash}},
        );
        stored.insert("_provenance", provenance);
        (staged, stored)
    }

    fn parse(staged: &[u8]) -> StagedDoc {
        StagedDoc::parse(RawDocument::from_bytes(staged).unwrap(), &["sku"]).unwrap()
    }

    fn expected(staged: &StagedDoc) -> Expected<'_> {
        Expected {
            key: &staged.key_text,
            hash: crate::delta::entries::parse_hash(&staged.hash).unwrap(),
            run_id: "r1",
            row: 1,
        }
    }

    fn kinds(drifts: &[Drift]) -> Vec<(DriftKind, Option<&str>)> {
        drifts
            .iter()
            .map(|d| (d.kind, d.field.as_deref()))
            .collect()
    }

    #[test]
    fn a_product_as_its_source_wrote_it_has_no_drift() {
        let (bytes, stored) = staged_and_stored();
        let staged = parse(&bytes);
        assert_eq!(
            classify(&expected(&staged), SOURCE, Some(&stored), Some(&staged)),
            vec![]
        );
    }

    #[test]
    fn a_field_edited_by_hand_is_listed_with_both_values() {
        let (bytes, mut stored) = staged_and_stored();
        let staged = parse(&bytes);
        stored.insert("price", Bson::Decimal128("5.00".parse().unwrap()));
        let drifts = classify(&expected(&staged), SOURCE, Some(&stored), Some(&staged));
        assert_eq!(
            drifts,
            vec![Drift {
                key: "LAMP-1".into(),
                kind: DriftKind::Field,
                field: Some("price".into()),
                stored: Some("5.00".into()),
                snapshot: Some("19.90".into()),
                run_id: "r1".into(),
                row: 1,
            }]
        );
        stored.remove("name");
        let drifts = classify(&expected(&staged), SOURCE, Some(&stored), Some(&staged));
        assert_eq!(
            kinds(&drifts),
            [
                (DriftKind::Field, Some("name")),
                (DriftKind::Field, Some("price"))
            ]
        );
        assert_eq!(
            drifts[0].stored, None,
            "a removed field is stored as nothing"
        );
    }

    #[test]
    fn a_field_another_source_supplied_is_not_drift() {
        let (bytes, mut stored) = staged_and_stored();
        let staged = parse(&bytes);
        stored.insert("price", Bson::Decimal128("17.00".parse().unwrap()));
        stored
            .get_document_mut("_provenance")
            .unwrap()
            .insert("price", "supplier-a");
        assert_eq!(
            classify(&expected(&staged), SOURCE, Some(&stored), Some(&staged)),
            vec![]
        );
    }

    #[test]
    fn a_missing_product_or_claim_is_drift_and_a_claim_without_content_is_checked_for_presence() {
        let (bytes, mut stored) = staged_and_stored();
        let staged = parse(&bytes);
        let e = expected(&staged);
        let missing = classify(&e, SOURCE, None, Some(&staged));
        assert_eq!(kinds(&missing), [(DriftKind::Missing, None)]);
        assert_eq!((missing[0].run_id.as_str(), missing[0].row), ("r1", 1));

        stored
            .get_document_mut("_sources")
            .unwrap()
            .insert(SOURCE, doc! {"run_id": "r1", "hash": "0123"});
        let changed = classify(&e, SOURCE, Some(&stored), None);
        assert_eq!(kinds(&changed), [(DriftKind::ClaimChanged, None)]);
        assert_eq!(changed[0].stored.as_deref(), Some("0123"));
        assert_eq!(changed[0].snapshot, Some(staged.hash.clone()));
        let unknown = Expected { hash: 0, ..e };
        assert_eq!(classify(&unknown, SOURCE, Some(&stored), None), vec![]);

        stored.get_document_mut("_sources").unwrap().remove(SOURCE);
        for e in [e, unknown] {
            assert_eq!(
                kinds(&classify(&e, SOURCE, Some(&stored), None)),
                [(DriftKind::ClaimMissing, None)]
            );
        }
    }

    #[test]
    fn piece_checksums_ignore_order_and_see_a_changed_or_missing_claim() {
        let terms = |claims: &[(&str, Option<&str>)]| {
            claims
                .iter()
                .fold(0u64, |sum, (k, h)| sum.wrapping_add(claim_sum(k, *h)))
        };
        let snapshot = terms(&[("A", Some("01")), ("B", Some("02"))]);
        assert_eq!(snapshot, terms(&[("B", Some("02")), ("A", Some("01"))]));
        assert_ne!(snapshot, terms(&[("A", Some("01")), ("B", Some("03"))]));
        assert_ne!(snapshot, terms(&[("A", Some("01")), ("B", None)]));
        assert_ne!(claim_sum("A", Some("")), claim_sum("A", None));
        let e = Expected {
            key: "A",
            hash: 1,
            run_id: "r",
            row: 1,
        };
        assert_eq!(snapshot_term(&e), database_term(&e, Some(&e.hash_hex())));
        assert_ne!(snapshot_term(&e), database_term(&e, Some("other")));
        assert_ne!(snapshot_term(&e), database_term(&e, None));
        let claimed = Expected { hash: 0, ..e };
        assert_eq!(
            snapshot_term(&claimed),
            database_term(&claimed, Some("any"))
        );
        assert_ne!(snapshot_term(&claimed), database_term(&claimed, None));
        let check = PieceCheck::new(3, 2, snapshot, snapshot);
        assert!(!check.differs);
        assert_eq!(check.snapshot.len(), 16);
    }

    #[test]
    fn counts_are_per_product_and_the_list_is_capped() {
        let mut verified = Verified::default();
        let d = |kind| Drift {
            key: "K".into(),
            kind,
            field: None,
            stored: None,
            snapshot: None,
            run_id: "r".into(),
            row: 1,
        };
        verified.add(vec![]);
        verified.add(vec![
            d(DriftKind::ClaimChanged),
            d(DriftKind::Field),
            d(DriftKind::Field),
        ]);
        verified.add(vec![d(DriftKind::Missing)]);
        assert_eq!(
            (
                verified.checked,
                verified.drifted,
                verified.missing,
                verified.claims,
                verified.fields
            ),
            (3, 2, 1, 1, 1)
        );
        for _ in 0..DRIFT_LISTED {
            verified.add(vec![d(DriftKind::Field)]);
        }
        assert_eq!(verified.drift.len(), DRIFT_LISTED);
        assert_eq!(verified.unlisted, 4);
        verified.claims_only("r0", 2, "gone");
        verified.claims_only("r0", 3, "gone");
        assert_eq!(verified.claims_only[0].products, 5);
    }
}
