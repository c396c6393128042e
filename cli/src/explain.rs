//! `chute explain KEY`: one stored product as a person reads it. Each field's value comes with
//! the source that supplied it (`_provenance.<field>`), that source's run and when
//! (`_sources.<source>`), the run's file (from `_import` when that run wrote the document last,
//! else the `import_runs` ledger) and row (recorded for the last writer only); then the
//! document's sources, `match_also` aliases and stale state. `--json` prints the document itself.

use std::collections::BTreeMap;
use std::process::ExitCode;

use bson::{doc, Bson, Document};
use chute::app::Env;
use serde::Serialize;

use crate::check::load_schema;
use crate::history::runtime;
use crate::{Failure, Outcome};

pub const LONG_ABOUT: &str = "\
Show one stored document of a schema's collection, found by its natural key, field by field: each \
field's value, the source that supplied it, that source's run, the run's file and row, and when. \
When sources share a product, the schema's precedence decides whose value a field keeps, so two \
fields of one document can come from different runs and files. Then the document's sources (the \
last run of each), the keys merged into it through match_also (aliases) and whether a full \
refresh found it stale. A row number is recorded for the run that wrote the document last; for \
a field another run supplied the row is shown as `-` (the key finds it in that file). A composite \
key is given as one value per key column, in the schema's key order.

OUTPUT
    --field NAME   only that field (dotted for nested fields: attributes.brand)
    --json         the stored document as relaxed extended JSON (with --field: that field's \
explanation)

EXIT STATUS
    0   the document was found
    2   no such document or field, a wrong number of key values, or MongoDB is not reachable

EXAMPLES
    eval \"$(scripts/stack env)\"
    chute explain LAMP-001
    chute explain --schema catalog --field price LAMP-1
    chute explain SKU-1 WAREHOUSE-7 --schema stock
    chute --json explain LAMP-001 | jq ._sources";

#[derive(clap::Args)]
pub struct Args {
    /// The key value (one per key column of the schema).
    #[arg(required = true, value_name = "KEY")]
    pub key: Vec<String>,
    /// Schema name (default: CHUTE_SCHEMA, else products): gives the collection and key columns.
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,
    /// Explain only this field (dotted for nested fields, e.g. attributes.brand).
    #[arg(long, value_name = "NAME")]
    pub field: Option<String>,
}

/// Bookkeeping the writer keeps on every document: shown in the sections after the fields.
const METADATA: &[&str] = &[
    "_id",
    "_import",
    "_sources",
    "_provenance",
    "_aliases",
    "_rev",
    "first_imported_at",
    "first_run_id",
    "stale_since",
];

/// Where one field's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldOrigin {
    pub field: String,
    pub value: String,
    /// The feed source (`_provenance`); `None` for a value no source supplied (set by chute on
    /// reactivation) or written before sources were recorded.
    pub source: Option<String>,
    pub run_id: Option<String>,
    /// `s3://bucket/key` of the run's file.
    pub file: Option<String>,
    pub row: Option<i64>,
    pub line: Option<i64>,
    pub at: Option<String>,
}

/// The run (`_sources.<name>` or `_import`) a value is traced to.
struct RunStamp {
    run_id: Option<String>,
    at: Option<String>,
}

fn text(doc: &Document, name: &str) -> Option<String> {
    match doc.get(name)? {
        Bson::String(s) => Some(s.clone()),
        Bson::DateTime(t) => t.try_to_rfc3339_string().ok(),
        other => Some(other.to_string()),
    }
}

/// A value as a person reads it: `19.90`, not `{"$numberDecimal": "19.90"}`.
fn display(value: &Bson) -> String {
    match value {
        Bson::String(s) => s.clone(),
        Bson::Decimal128(d) => d.to_string(),
        Bson::DateTime(t) => t.try_to_rfc3339_string().unwrap_or_default(),
        other => other.clone().into_relaxed_extjson().to_string(),
    }
}

fn lookup<'d>(doc: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next()?)?;
    for part in parts {
        value = value.as_document()?.get(part)?;
    }
    Some(value)
}

/// The product's fields as dotted paths in stored order, bookkeeping left out.
fn fields(doc: &Document) -> Vec<(String, &Bson)> {
    fn walk<'d>(path: String, value: &'d Bson, out: &mut Vec<(String, &'d Bson)>) {
        match value {
            Bson::Document(sub) if !sub.is_empty() => {
                for (k, v) in sub {
                    walk(format!("{path}.{k}"), v, out);
                }
            }
            other => out.push((path, other)),
        }
    }
    let mut out = Vec::new();
    for (k, v) in doc.iter().filter(|(k, _)| !METADATA.contains(&k.as_str())) {
        walk(k.clone(), v, &mut out);
    }
    out
}

/// Each field's origin. `files` maps run ids to their file (from the ledger) for runs other than
/// the document's last writer.
pub fn origins(doc: &Document, files: &BTreeMap<String, String>) -> Vec<FieldOrigin> {
    let import = doc.get_document("_import").ok();
    let last_run = import.and_then(|i| text(i, "run_id"));
    let sources = doc.get_document("_sources").ok();
    let provenance = doc.get_document("_provenance").ok();
    fields(doc)
        .into_iter()
        .map(|(field, value)| {
            let source = provenance
                .and_then(|p| lookup(p, &field))
                .and_then(Bson::as_str)
                .map(str::to_string);
            let stamp = match (&source, provenance) {
                (Some(s), _) => {
                    sources
                        .and_then(|all| all.get_document(s).ok())
                        .map(|s| RunStamp {
                            run_id: text(s, "run_id"),
                            at: text(s, "at"),
                        })
                }
                // Written before sources were recorded: the last writer wrote every field.
                (None, None) => import.map(|i| RunStamp {
                    run_id: text(i, "run_id"),
                    at: text(i, "at"),
                }),
                (None, Some(_)) => None,
            };
            let run_id = stamp.as_ref().and_then(|s| s.run_id.clone());
            let last_writer = run_id.is_some() && run_id == last_run;
            let from_import = |name: &str| {
                import
                    .filter(|_| last_writer)
                    .and_then(|i| match i.get(name) {
                        Some(Bson::Int64(n)) => Some(*n),
                        Some(Bson::Int32(n)) => Some(i64::from(*n)),
                        _ => None,
                    })
            };
            FieldOrigin {
                value: display(value),
                file: if last_writer {
                    import.and_then(|i| text(i, "source"))
                } else {
                    run_id.as_ref().and_then(|r| files.get(r).cloned())
                },
                row: from_import("row"),
                line: from_import("line"),
                at: stamp.and_then(|s| s.at),
                run_id,
                source,
                field,
            }
        })
        .collect()
}

/// The runs whose file the document does not name (it names only its last writer's).
fn runs_to_look_up(doc: &Document) -> Vec<String> {
    let last = doc
        .get_document("_import")
        .ok()
        .and_then(|i| text(i, "run_id"));
    let mut runs: Vec<String> = doc
        .get_document("_sources")
        .map(|s| {
            s.iter()
                .filter_map(|(_, v)| v.as_document().and_then(|d| text(d, "run_id")))
                .filter(|r| Some(r) != last.as_ref())
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs.dedup();
    runs
}

fn dash(value: &Option<impl ToString>) -> String {
    value
        .as_ref()
        .map_or_else(|| "-".into(), ToString::to_string)
}

/// One field as a sentence (`--field`).
fn sentence(o: &FieldOrigin) -> String {
    match &o.run_id {
        None => format!(
            "{} = {}: no source recorded (set by chute, not by a file)\n",
            o.field, o.value
        ),
        Some(run) => format!(
            "{} = {} from source {}, run {run}, file {}{}, at {}\n",
            o.field,
            o.value,
            dash(&o.source),
            dash(&o.file),
            match (o.row, o.line) {
                (Some(row), Some(line)) => format!(" (row {row}, line {line})"),
                _ => String::new(),
            },
            dash(&o.at)
        ),
    }
}

/// The field table, then sources, aliases and stale state.
pub fn render(
    collection: &str,
    filter: &Document,
    doc: &Document,
    origins: &[FieldOrigin],
) -> String {
    let rows: Vec<[String; 7]> = origins
        .iter()
        .map(|o| {
            [
                o.field.clone(),
                o.value.clone(),
                dash(&o.source),
                dash(&o.run_id),
                dash(&o.file),
                dash(&o.row),
                dash(&o.at),
            ]
        })
        .collect();
    let header = ["FIELD", "VALUE", "SOURCE", "RUN", "FILE", "ROW", "AT"].map(String::from);
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!("{collection} {filter}\n");
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    }
    out += "\n";
    match doc.get_document("_sources") {
        Ok(sources) if !sources.is_empty() => {
            for (name, stamp) in sources {
                let Some(stamp) = stamp.as_document() else {
                    continue;
                };
                let mut how: Vec<String> = text(stamp, "outcome").into_iter().collect();
                for flag in ["merged", "reactivated"] {
                    if stamp.get_bool(flag).unwrap_or(false) {
                        how.push(flag.into());
                    }
                }
                out += &format!(
                    "source {name}: last supplied by run {} at {}{}\n",
                    dash(&text(stamp, "run_id")),
                    dash(&text(stamp, "at")),
                    if how.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", how.join(", "))
                    }
                );
            }
        }
        _ => out += "sources: none recorded (written before sources were)\n",
    }
    let aliases: Vec<String> = doc
        .get_array("_aliases")
        .map(|a| a.iter().map(display).collect())
        .unwrap_or_default();
    out += &if aliases.is_empty() {
        "aliases: none\n".to_string()
    } else {
        format!(
            "aliases: {} (keys of rows merged into this product by match_also)\n",
            aliases.join(", ")
        )
    };
    out += &match doc.get("stale_since") {
        Some(since) => format!(
            "stale: since {} (a full refresh of its source no longer listed it)\n",
            display(since)
        ),
        None => "stale: no\n".to_string(),
    };
    out += &format!(
        "first inserted by run {} at {}\n",
        dash(&text(doc, "first_run_id")),
        dash(&text(doc, "first_imported_at"))
    );
    out
}

pub fn run(args: &Args, json: bool) -> Outcome {
    let found = runtime()?.block_on(async {
        let env = Env::load().await?;
        let schema = load_schema(&env.config, args.schema.as_deref(), None)?;
        if args.key.len() != schema.key.len() {
            return Err(Failure(format!(
                "schema `{}` has {} key column(s) ({}); {} value(s) given",
                schema.name,
                schema.key.len(),
                schema.key.join(", "),
                args.key.len()
            )));
        }
        let mut filter = doc! {};
        for (column, value) in schema.key.iter().zip(&args.key) {
            let field = schema
                .column(column)
                .map(|c| c.field.clone())
                .unwrap_or_else(|| column.clone());
            filter.insert(field, value.trim());
        }
        let store = env.store().await?;
        let found = store
            .database()
            .collection::<Document>(&schema.collection)
            .find_one(filter.clone())
            .await?;
        let Some(document) = found else {
            return Err(Failure(format!(
                "no document {filter} in collection `{}`",
                schema.collection
            )));
        };
        let mut files = BTreeMap::new();
        for run_id in runs_to_look_up(&document) {
            if let Some(run) = store.run(&run_id).await? {
                let source = run.get_document("source").ok();
                if let (Some(bucket), Some(key)) = (
                    source.and_then(|s| text(s, "bucket")),
                    source.and_then(|s| text(s, "key")),
                ) {
                    files.insert(run_id, format!("s3://{bucket}/{key}"));
                }
            }
        }
        Ok::<_, Failure>((schema, filter, document, files))
    })?;
    let (schema, filter, document, files) = found;
    let origins = origins(&document, &files);
    if let Some(field) = &args.field {
        let Some(origin) = origins.iter().find(|o| &o.field == field) else {
            let names: Vec<&str> = origins.iter().map(|o| o.field.as_str()).collect();
            return Err(Failure(format!(
                "{} {filter} has no field `{field}`; it has {}",
                schema.collection,
                names.join(", ")
            )));
        };
        if json {
            crate::output::json(origin);
        } else {
            crate::output::print(&sentence(origin));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        crate::output::json(&Bson::Document(document).into_relaxed_extjson());
        return Ok(ExitCode::SUCCESS);
    }
    crate::output::print(&render(&schema.collection, &filter, &document, &origins));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> bson::DateTime {
        bson::DateTime::from_millis(ms)
    }

    /// LAMP-1 as two sources leave it: the ERP's run wrote price and name first, supplier A's
    /// later run (the last writer) could only fill the brand the ERP left empty, and merged its
    /// own key through match_also.
    fn shared_product() -> Document {
        doc! {
            "_id": 1, "sku": "LAMP-1", "name": "Desk lamp",
            "price": Bson::Decimal128("19.90".parse().unwrap()),
            "attributes": {"brand": "Lumo"},
            "_import": {"run_id": "sa-2", "source": "s3://b/incoming/supplier-a.csv", "row": 3_i64, "line": 4_i64, "hash": "h", "at": at(2_000)},
            "_sources": {
                "erp": {"run_id": "erp-1", "at": at(1_000), "hash": "h1"},
                "supplier-a": {"run_id": "sa-2", "at": at(2_000), "hash": "h2", "outcome": "updated", "merged": true},
            },
            "_provenance": {"sku": "erp", "name": "erp", "price": "erp", "attributes": {"brand": "supplier-a"}},
            "_aliases": ["SA-778"],
            "first_run_id": "erp-1", "first_imported_at": at(1_000), "_rev": 1_i64,
        }
    }

    fn files() -> BTreeMap<String, String> {
        BTreeMap::from([("erp-1".to_string(), "s3://b/incoming/erp.csv".to_string())])
    }

    #[test]
    fn a_field_is_traced_to_the_source_that_supplied_it_not_the_last_writer() {
        let doc = shared_product();
        assert_eq!(runs_to_look_up(&doc), ["erp-1"]);
        let origins = origins(&doc, &files());
        let price = origins.iter().find(|o| o.field == "price").unwrap();
        assert_eq!(
            price,
            &FieldOrigin {
                field: "price".into(),
                value: "19.90".into(),
                source: Some("erp".into()),
                run_id: Some("erp-1".into()),
                file: Some("s3://b/incoming/erp.csv".into()),
                row: None,
                line: None,
                at: Some("1970-01-01T00:00:01Z".into()),
            }
        );
        let brand = origins
            .iter()
            .find(|o| o.field == "attributes.brand")
            .unwrap();
        assert_eq!(
            (
                brand.source.as_deref(),
                brand.run_id.as_deref(),
                brand.file.as_deref(),
                brand.row
            ),
            (
                Some("supplier-a"),
                Some("sa-2"),
                Some("s3://b/incoming/supplier-a.csv"),
                Some(3)
            )
        );
        let listed: Vec<&str> = origins.iter().map(|o| o.field.as_str()).collect();
        assert_eq!(listed, ["sku", "name", "price", "attributes.brand"]);
    }

    #[test]
    fn the_text_shows_one_line_per_field_then_sources_aliases_and_stale_state() {
        let mut doc = shared_product();
        doc.insert("stale_since", at(3_000));
        doc.insert("active", false);
        let text = render(
            "catalog",
            &doc! {"sku": "LAMP-1"},
            &doc,
            &origins(&doc, &files()),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "catalog { \"sku\": \"LAMP-1\" }");
        assert!(lines[1].starts_with("FIELD"), "{text}");
        let price = lines.iter().find(|l| l.starts_with("price ")).unwrap();
        for part in [
            "19.90",
            "erp",
            "erp-1",
            "s3://b/incoming/erp.csv",
            "1970-01-01T00:00:01Z",
        ] {
            assert!(price.contains(part), "{price}");
        }
        let active = lines.iter().find(|l| l.starts_with("active ")).unwrap();
        assert!(active.contains("false"), "{active}");
        assert!(text.contains("source supplier-a: last supplied by run sa-2 at 1970-01-01T00:00:02Z (updated, merged)"), "{text}");
        assert!(text.contains("aliases: SA-778 "), "{text}");
        assert!(text.contains("stale: since 1970-01-01T00:00:03Z"), "{text}");
        assert!(!text.contains("$numberDecimal"), "{text}");
    }

    #[test]
    fn a_value_no_source_supplied_says_so() {
        let mut doc = shared_product();
        doc.insert("active", true);
        let origins = origins(&doc, &files());
        let active = origins.iter().find(|o| o.field == "active").unwrap();
        assert_eq!(
            (active.source.as_ref(), active.run_id.as_ref()),
            (None, None)
        );
        assert!(sentence(active).contains("no source recorded"));
        let price = origins.iter().find(|o| o.field == "price").unwrap();
        assert_eq!(
            sentence(price),
            "price = 19.90 from source erp, run erp-1, file s3://b/incoming/erp.csv, at 1970-01-01T00:00:01Z\n"
        );
    }

    #[test]
    fn a_document_written_before_sources_were_recorded_is_traced_to_its_last_writer() {
        let doc = doc! {"_id": 1, "sku": "OLD-1", "price": 5,
        "_import": {"run_id": "r0", "source": "s3://b/incoming/old.csv", "row": 1_i64, "line": 2_i64, "at": at(0)}};
        let origins = origins(&doc, &BTreeMap::new());
        assert!(origins.iter().all(|o| o.run_id.as_deref() == Some("r0")
            && o.row == Some(1)
            && o.file.as_deref() == Some("s3://b/incoming/old.csv")));
    }
}
