//! `chute explain KEY`: one product as stored, with the `_import` metadata the import writes on
//! every document (which run and source file last wrote it, from which row, when) and the run that
//! first inserted it.

use std::process::ExitCode;

use bson::{doc, Bson, Document};
use chute::app::Env;

use crate::check::load_schema;
use crate::history::runtime;
use crate::{Failure, Outcome};

pub const LONG_ABOUT: &str = "\
Show one stored document of a schema's collection, found by its natural key, with where it came \
from: the run and source file that last wrote it (`_import`: run id, source, row and line, when) \
and the run that first inserted it (`first_run_id`, `first_imported_at`). A composite key is given \
as one value per key column, in the schema's key order.

EXIT STATUS
    0   the document was found
    2   no such document, a wrong number of key values, or MongoDB is not reachable

EXAMPLES
    eval \"$(scripts/stack env)\"
    chute explain LAMP-001
    chute explain SKU-1 WAREHOUSE-7 --schema stock
    chute --json explain LAMP-001 | jq ._import";

#[derive(clap::Args)]
pub struct Args {
    /// The key value (one per key column of the schema).
    #[arg(required = true, value_name = "KEY")]
    pub key: Vec<String>,
    /// Schema name (default: CHUTE_SCHEMA, else products): gives the collection and key columns.
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,
}

fn text(doc: &Document, name: &str) -> String {
    match doc.get(name) {
        Some(Bson::String(s)) => s.clone(),
        Some(Bson::DateTime(t)) => t.try_to_rfc3339_string().unwrap_or_default(),
        Some(other) => other.to_string(),
        None => "-".into(),
    }
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
        Ok::<_, Failure>((schema, filter, found))
    })?;
    let (schema, filter, Some(document)) = found else {
        let (schema, filter, _) = found;
        return Err(Failure(format!(
            "no document {filter} in collection `{}`",
            schema.collection
        )));
    };
    if json {
        crate::output::json(&Bson::Document(document).into_relaxed_extjson());
        return Ok(ExitCode::SUCCESS);
    }
    let import = document.get_document("_import").ok();
    let mut out = format!("{} {filter}\n", schema.collection);
    match import {
        Some(i) => {
            out += &format!(
                "last written by run {} from {} (row {}, line {}) at {}\n",
                text(i, "run_id"),
                text(i, "source"),
                text(i, "row"),
                text(i, "line"),
                text(i, "at")
            );
        }
        None => out += "no _import metadata: not written by chute\n",
    }
    out += &format!(
        "first inserted by run {} at {}\n",
        text(&document, "first_run_id"),
        text(&document, "first_imported_at")
    );
    out += &serde_json::to_string_pretty(&Bson::Document(document).into_relaxed_extjson())
        .expect("serialisable");
    out += "\n";
    crate::output::print(&out);
    Ok(ExitCode::SUCCESS)
}
