//! What the writer decides for one staged row against the stored product, and the shape of the
//! product documents it writes. Every stored product has:
//!
//! - the row's fields (merge semantics: a row's absent optional fields keep their stored values);
//! - `_import: {run_id, source, row, line, hash, at}`: the run and row that last wrote product
//!   fields (`source` is the file, `s3://bucket/key`); `first_imported_at`, `first_run_id`;
//! - `_sources.<name>: {run_id, at, hash, outcome}`: per feed source, the last run of that source
//!   that supplied the product, when, the content hash of its row and what that write counted as
//!   (`updated`, `unchanged`, with `reactivated: true` / `merged: true` when so; no `outcome` on
//!   the insert that created the product, which `first_run_id` names). A
//!   write never removes another source's entry. Incremental runs leave the entry of an unchanged
//!   row as it was; full refreshes refresh it on every row they supply, so the products of a
//!   source whose `_sources.<name>.run_id` is not the refresh's run are the ones it no longer
//!   supplies (stale);
//! - `_provenance.<field>: "<source>"`: which source the field's current value came from (dotted
//!   fields nest: `_provenance.attributes.brand`). With the schema's `precedence`, a field whose
//!   value came from a higher-ranked source is never overwritten by a lower-ranked one; the lower
//!   one still fills the fields the higher one left absent. Without it the latest write wins;
//! - `_aliases: [key, …]`: keys of rows merged into this product through a `match_also` field;
//! - `active: false` and `stale_since` (a date) when a full refresh found the product stale; a
//!   source supplying it again sets `active: true` (unless its row sets `active` itself) and
//!   removes `stale_since`;
//! - `_rev`: a revision every writer of the product increments (stale marking included; absent
//!   until the first update, which makes it 1). Updates
//!   are conditional on the revision they were computed from, so two writers of one product (two
//!   chunks, two sources) never lose each other's fields: the loser re-reads and decides again.

use bson::{doc, Bson, DateTime, Document};

use super::paths::{bson_text, insert_path, lookup};
use super::staged::StagedDoc;
use crate::error::Refusal;
use crate::feed::{Feed, Mode};
use crate::run::Difference;

/// Who writes a document: the run, its file, its feed source and mode, and when. Stamped on every
/// product the run writes (`_import`, `_sources.<feed_source>`).
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub run_id: String,
    /// The file's object, `s3://bucket/key`.
    pub object: String,
    /// The feed source that sent the file ([`crate::routing::source`]).
    pub feed_source: String,
    pub mode: Mode,
    pub at: DateTime,
    /// Write every row even where its content hash equals the source's last one (`chute verify
    /// --repair` restoring a product edited by hand).
    pub reapply: bool,
}

/// `_import`: the run and row that wrote the product's fields.
fn import_stamp(doc: &StagedDoc, ctx: &WriteContext) -> Document {
    doc! {"run_id": &ctx.run_id, "source": &ctx.object, "row": doc.position.row as i64,
    "line": doc.position.line as i64, "hash": &doc.hash, "at": ctx.at}
}

/// The fields the writer reads of a stored product (the whole document in a dry run, to show
/// field differences).
pub(super) fn projection(
    ctx: &WriteContext,
    key_fields: &[&str],
    match_fields: &[&str],
) -> Option<Document> {
    if ctx.mode == Mode::DryRun {
        return None;
    }
    let mut p = doc! {"_id": 1, "_rev": 1, "_import.hash": 1, "first_run_id": 1, "_sources": 1,
    "_provenance": 1, "stale_since": 1, "_aliases": 1};
    for f in key_fields.iter().chain(match_fields) {
        p.insert(*f, 1);
    }
    Some(p)
}

/// What a write counted as, recorded in `_sources.<name>.outcome` so a retried batch of the same
/// run counts it the same way without writing it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Inserted,
    Updated,
    Unchanged,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Inserted => "inserted",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// A write's contribution to the chunk's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counted {
    pub outcome: Outcome,
    pub reactivated: bool,
    pub merged: bool,
}

/// A stored product as the writer read it.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub id: Bson,
    pub key_text: String,
    pub rev: Option<i64>,
    pub doc: Document,
}

impl Stored {
    pub fn new(doc: Document, key_text: String) -> Stored {
        Stored {
            id: doc.get("_id").cloned().unwrap_or(Bson::Null),
            rev: match doc.get("_rev") {
                Some(Bson::Int64(n)) => Some(*n),
                Some(Bson::Int32(n)) => Some(i64::from(*n)),
                _ => None,
            },
            key_text,
            doc,
        }
    }

    fn stamp(&self, source: &str) -> Option<&Document> {
        self.doc
            .get_document("_sources")
            .ok()
            .and_then(|s| s.get_document(source).ok())
    }

    /// Whether this source's last row for the product had this content. Products written before
    /// sources were recorded compare with the hash of their last write.
    fn same_content(&self, source: &str, hash: &str) -> bool {
        match self.stamp(source) {
            Some(stamp) => stamp.get_str("hash").ok() == Some(hash),
            None if !self.doc.contains_key("_sources") => {
                self.doc
                    .get_document("_import")
                    .and_then(|i| i.get_str("hash"))
                    .ok()
                    == Some(hash)
            }
            None => false,
        }
    }

    /// What this run already wrote for this row (a retried batch whose reply was lost).
    fn written_by(&self, ctx: &WriteContext, hash: &str) -> Option<Counted> {
        let stamp = self.stamp(&ctx.feed_source)?;
        if stamp.get_str("run_id").ok() != Some(ctx.run_id.as_str())
            || stamp.get_str("hash").ok() != Some(hash)
        {
            return None;
        }
        let outcome = match stamp.get_str("outcome") {
            Ok("unchanged") => Outcome::Unchanged,
            Ok("updated") => Outcome::Updated,
            _ if self.doc.get_str("first_run_id").ok() == Some(ctx.run_id.as_str()) => {
                Outcome::Inserted
            }
            _ => Outcome::Updated,
        };
        Some(Counted {
            outcome,
            reactivated: stamp.get_bool("reactivated").unwrap_or(false),
            merged: stamp.get_bool("merged").unwrap_or(false),
        })
    }

    fn is_stale(&self) -> bool {
        self.doc.contains_key("stale_since")
    }

    pub fn has_alias(&self, key_text: &str) -> bool {
        self.doc
            .get_array("_aliases")
            .is_ok_and(|a| a.iter().any(|v| v.as_str() == Some(key_text)))
    }
}

/// Where a staged row goes.
pub(super) enum Target<'s> {
    /// No product has its key (nor, with `match_also`, its match fields).
    New,
    /// The product stored under its key, or (`merged`) the one its `match_also` field found.
    Existing { stored: &'s Stored, merged: bool },
    /// Its `match_also` fields name two different products.
    Conflict(String),
}

/// What to do with one staged row.
pub(super) enum Decision {
    /// This run wrote it already: count it as then, write nothing.
    Written(Counted),
    /// Nothing to write (`merged`: the row's key is an alias of the product).
    Unchanged {
        merged: bool,
    },
    Insert(Document),
    Update {
        /// `{q, u}` of an `update` statement, conditional on the revision read.
        statement: Document,
        counted: Counted,
        differences: Vec<Difference>,
    },
    Refuse(Refusal),
}

/// Decides the write of `doc` against `target`.
pub(super) fn decide(
    doc: &StagedDoc,
    target: Target<'_>,
    ctx: &WriteContext,
    feed: &Feed,
    key_fields: &[&str],
) -> Decision {
    let (stored, merged) = match target {
        Target::New => return Decision::Insert(new_document(doc, ctx)),
        Target::Conflict(message) => {
            return Decision::Refuse(Refusal {
                position: doc.position,
                code: Refusal::CONFLICT,
                message,
            })
        }
        Target::Existing { stored, merged } => (stored, merged),
    };
    // A re-apply (`chute verify --repair`) writes the row again whatever its stamps say: the
    // product was changed by hand since, so neither "written by this run" nor "same content as
    // the source's last row" tells what the document holds.
    if !ctx.reapply {
        if let Some(counted) = stored.written_by(ctx, &doc.hash) {
            return Decision::Written(counted);
        }
    }
    let me = ctx.feed_source.as_str();
    let reactivated = stored.is_stale();
    let new_alias = merged && !stored.has_alias(&doc.key_text);
    let same = !ctx.reapply && stored.same_content(me, &doc.hash);
    let stamp_fields = |outcome: Outcome, set: &mut Document| {
        let mut stamp = doc! {"run_id": &ctx.run_id, "at": ctx.at, "hash": &doc.hash, "outcome": outcome.as_str()};
        if reactivated {
            stamp.insert("reactivated", true);
        }
        if merged {
            stamp.insert("merged", true);
        }
        set.insert(format!("_sources.{me}"), stamp);
    };
    if same && !reactivated && !new_alias {
        if ctx.mode != Mode::Full {
            return Decision::Unchanged { merged };
        }
        // A full refresh restamps what it supplies, so the stale finder sees it. Only this
        // source's own entry changes: no revision needed, nobody else's write can be lost.
        let mut set = Document::new();
        stamp_fields(Outcome::Unchanged, &mut set);
        return Decision::Update {
            statement: doc! {"q": {"_id": stored.id.clone()}, "u": {"$set": set}},
            counted: Counted {
                outcome: Outcome::Unchanged,
                reactivated: false,
                merged,
            },
            differences: Vec::new(),
        };
    }
    let my_rank = feed.rank(me);
    let provenance = stored.doc.get_document("_provenance").ok();
    let mut set = Document::new();
    let mut differences = Vec::new();
    let mut wrote_fields = false;
    if !same {
        for (path, value) in doc.fields() {
            if merged && key_fields.contains(&path.as_str()) {
                continue; // the product keeps its own key; this row's key becomes an alias
            }
            let owner = provenance
                .and_then(|p| lookup(p, path))
                .and_then(Bson::as_str);
            // Provenance is written with the value, so a field a source left absent has none.
            if owner.is_some_and(|o| o != me && feed.rank(o) < my_rank) {
                continue; // a higher-ranked source supplied it
            }
            if ctx.mode == Mode::DryRun {
                let old = lookup(&stored.doc, path);
                if old != Some(value) {
                    differences.push(Difference {
                        key: stored.key_text.replace(crate::schema::KEY_SEPARATOR, "/"),
                        field: path.clone(),
                        old: old.map(display),
                        new: Some(display(value)),
                    });
                }
            }
            set.insert(path.clone(), value.clone());
            set.insert(format!("_provenance.{path}"), me);
            wrote_fields = true;
        }
    }
    if wrote_fields {
        set.insert("_import", import_stamp(doc, ctx));
    }
    let mut update = Document::new();
    if reactivated {
        if !set.contains_key("active") {
            set.insert("active", true);
        }
        update.insert("$unset", doc! {"stale_since": ""});
    }
    if new_alias {
        update.insert("$addToSet", doc! {"_aliases": &doc.key_text});
    }
    let outcome = if wrote_fields || reactivated || new_alias {
        Outcome::Updated
    } else {
        Outcome::Unchanged
    };
    stamp_fields(outcome, &mut set);
    update.insert("$set", set);
    update.insert("$inc", doc! {"_rev": 1_i64});
    let rev = stored.rev.map_or(Bson::Null, Bson::Int64);
    Decision::Update {
        statement: doc! {"q": {"_id": stored.id.clone(), "_rev": rev}, "u": update},
        counted: Counted {
            outcome,
            reactivated,
            merged,
        },
        differences,
    }
}

/// The whole document of a row whose key is not stored.
pub(super) fn new_document(doc: &StagedDoc, ctx: &WriteContext) -> Document {
    let me = ctx.feed_source.as_str();
    let mut out = doc! {"_id": bson::oid::ObjectId::new()};
    let mut provenance = Document::new();
    for (path, value) in doc.fields().chain(doc.defaults()) {
        insert_path(&mut out, path, value.clone());
        insert_path(&mut provenance, path, Bson::String(me.to_string()));
    }
    out.insert("_import", import_stamp(doc, ctx));
    out.insert("first_imported_at", ctx.at);
    out.insert("first_run_id", &ctx.run_id);
    // No `outcome` (`first_run_id` says it was this run's insert) and no `_rev` (absent is the
    // first revision): every element costs the server on the insert-heavy path.
    out.insert(
        "_sources",
        doc! {me: {"run_id": &ctx.run_id, "at": ctx.at, "hash": &doc.hash}},
    );
    out.insert("_provenance", provenance);
    out
}

/// A value as a person reads it in a report: strings as they are, the rest as relaxed Extended
/// JSON (`19.99` for a decimal, an ISO date for a timestamp).
pub(super) fn display(value: &Bson) -> String {
    match value {
        Bson::String(_) => bson_text(value),
        Bson::Decimal128(d) => d.to_string(),
        other => other.clone().into_relaxed_extjson().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::process;
    use crate::plan::PlanOptions;
    use crate::schema::Schema;

    /// The catalog schema and LAMP-1's row as its transform stages it.
    fn lamp() -> (Schema, StagedDoc) {
        let schema = Schema::built_in("catalog").unwrap();
        let csv = "sku,name,price,stock,gtin,mpn\nLAMP-1,Desk lamp,19.90,4,12345678,M-1\n";
        let bytes = process(csv.as_bytes(), &schema, &PlanOptions::default())
            .unwrap()
            .staged;
        let raw = bson::RawDocument::from_bytes(&bytes).unwrap();
        let doc = StagedDoc::parse(raw, &schema.key_fields()).unwrap();
        (schema, doc)
    }

    fn context(run: &str, source: &str, reapply: bool) -> WriteContext {
        WriteContext {
            run_id: run.into(),
            object: "s3://b/incoming/erp.csv".into(),
            feed_source: source.into(),
            mode: Mode::Incremental,
            at: DateTime::from_millis(0),
            reapply,
        }
    }

    /// LAMP-1 as run r1 of the ERP wrote it, then edited by hand (price) with its brand-new
    /// `name` supplied by a higher-ranked source than `source`.
    fn edited(doc: &StagedDoc, name_owner: &str) -> Stored {
        let mut stored = new_document(doc, &context("r1", "erp", false));
        stored.insert("price", Bson::Decimal128("1.00".parse().unwrap()));
        stored.insert("name", "Renamed");
        stored
            .get_document_mut("_provenance")
            .unwrap()
            .insert("name", name_owner);
        stored.insert("_rev", 3_i64);
        Stored::new(stored, doc.key_text.clone())
    }

    fn set_of(decision: &Decision) -> &Document {
        match decision {
            Decision::Update { statement, .. } => statement
                .get_document("u")
                .unwrap()
                .get_document("$set")
                .unwrap(),
            _ => panic!("not an update"),
        }
    }

    #[test]
    fn a_reapply_sets_the_rows_fields_again_where_a_plain_write_sees_nothing_to_do() {
        let (schema, doc) = lamp();
        let keys = schema.key_fields();
        let stored = edited(&doc, "erp");
        let target = || Target::Existing {
            stored: &stored,
            merged: false,
        };
        // The same run's stamp and hash: a plain write counts it as written before.
        let same_run = decide(
            &doc,
            target(),
            &context("r1", "erp", false),
            &schema.feed,
            &keys,
        );
        assert!(matches!(same_run, Decision::Written(_)));
        // Another run with the same content: unchanged, nothing sent.
        let later = decide(
            &doc,
            target(),
            &context("r2", "erp", false),
            &schema.feed,
            &keys,
        );
        assert!(matches!(later, Decision::Unchanged { .. }));
        // A re-apply writes the row's fields again, conditional on the revision read.
        let again = decide(
            &doc,
            target(),
            &context("r1", "erp", true),
            &schema.feed,
            &keys,
        );
        let set = set_of(&again);
        assert_eq!(set.get("price"), doc.field("price"));
        assert_eq!(set.get("name"), doc.field("name"));
        assert_eq!(
            set.get_document("_sources.erp")
                .unwrap()
                .get_str("hash")
                .unwrap(),
            doc.hash
        );
        let Decision::Update {
            statement, counted, ..
        } = &again
        else {
            unreachable!()
        };
        assert_eq!(counted.outcome, Outcome::Updated);
        assert_eq!(
            statement
                .get_document("q")
                .unwrap()
                .get_i64("_rev")
                .unwrap(),
            3
        );
    }

    #[test]
    fn a_reapply_still_respects_precedence() {
        let (schema, doc) = lamp();
        let keys = schema.key_fields();
        // supplier-a ranks below erp: the erp-owned name stays, its own fields are set again.
        let stored = edited(&doc, "erp");
        let target = Target::Existing {
            stored: &stored,
            merged: false,
        };
        let again = decide(
            &doc,
            target,
            &context("s1", "supplier-a", true),
            &schema.feed,
            &keys,
        );
        let set = set_of(&again);
        assert!(!set.contains_key("name"), "{set}");
        assert!(!set.contains_key("price"), "{set}");
        assert_eq!(
            set.get_document("_sources.supplier-a")
                .unwrap()
                .get_str("hash")
                .unwrap(),
            doc.hash
        );
    }
}
