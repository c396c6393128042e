//! Collection setup derived from the import schema: `$jsonSchema` validator and indexes.

use bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::{Collection, Database, IndexModel};

use super::{classify, RUNS};
use crate::error::ChuteError;
use crate::rules::ColumnType;
use crate::schema::{Column, Schema};

/// The validator the database enforces for documents of `schema`, whoever writes them. It mirrors
/// the schema's rules; fields of other feeds (merge semantics) are allowed.
pub fn json_schema(schema: &Schema) -> Document {
    let mut properties = Document::new();
    let mut required = Vec::new();
    for column in &schema.columns {
        insert_property(&mut properties, &column.field, property(column));
        if column.required && !column.field.contains('.') {
            required.push(Bson::String(column.field.clone()));
        }
    }
    for pattern in &schema.patterns {
        if let Some(parent) = pattern
            .field_prefix
            .strip_suffix('.')
            .filter(|p| !p.contains('.'))
        {
            ensure_object(&mut properties, parent);
        }
    }
    properties.insert("_import", doc! {"bsonType": "object"});
    properties.insert("first_imported_at", doc! {"bsonType": "date"});
    doc! {"$jsonSchema": {"bsonType": "object", "required": required, "properties": properties}}
}

fn ensure_object<'a>(properties: &'a mut Document, name: &str) -> &'a mut Document {
    if !properties.contains_key(name) {
        properties.insert(name, doc! {"bsonType": "object", "properties": {}});
    }
    properties
        .get_document_mut(name)
        .expect("just inserted")
        .get_document_mut("properties")
        .expect("object properties have properties")
}

fn insert_property(properties: &mut Document, path: &str, rule: Document) {
    match path.split_once('.') {
        Some((parent, rest)) => insert_property(ensure_object(properties, parent), rest, rule),
        None => {
            properties.insert(path, rule);
        }
    }
}

fn property(column: &Column) -> Document {
    let c = &column.constraints;
    let mut rule = Document::new();
    match column.kind {
        ColumnType::String => {
            rule.insert("bsonType", "string");
            if let Some(min) = c.min_length {
                rule.insert("minLength", min as i64);
            }
            if let Some(max) = c.max_length {
                rule.insert("maxLength", max as i64);
            }
            if let Some(charset) = &c.charset {
                rule.insert("pattern", charset_regex(&charset.spec));
            }
        }
        ColumnType::Decimal => {
            rule.insert("bsonType", "decimal");
            if let Some(min) = c.min {
                rule.insert(
                    "minimum",
                    Bson::Decimal128(bson::Decimal128::from_bytes(min.to_decimal128_bytes())),
                );
            }
            if let Some(max) = c.max {
                rule.insert(
                    "maximum",
                    Bson::Decimal128(bson::Decimal128::from_bytes(max.to_decimal128_bytes())),
                );
            }
        }
        ColumnType::Integer => {
            rule.insert("bsonType", vec!["int", "long"]);
            if let Some(min) = c.min.and_then(integer_bound) {
                rule.insert("minimum", min);
            }
            if let Some(max) = c.max.and_then(integer_bound) {
                rule.insert("maximum", max);
            }
        }
        ColumnType::Boolean => {
            rule.insert("bsonType", "bool");
        }
        ColumnType::Timestamp => {
            rule.insert("bsonType", "date");
        }
        ColumnType::Gtin => {
            rule.insert("bsonType", "string");
            rule.insert("pattern", "^[0-9]{14}$");
        }
        ColumnType::List => {
            rule.insert("bsonType", "array");
            rule.insert("items", doc! {"bsonType": "string"});
        }
    }
    rule
}

fn integer_bound(d: crate::value::Decimal) -> Option<i64> {
    let magnitude = i64::try_from(d.coefficient).ok()?;
    (d.scale == 0).then_some(if d.negative { -magnitude } else { magnitude })
}

/// `A-Za-z0-9._-` as an anchored regex, escaping what a regex class treats specially.
fn charset_regex(spec: &str) -> String {
    let mut class = String::new();
    let chars: Vec<char> = spec.chars().collect();
    let escape = |c: char, out: &mut String| {
        if matches!(c, '\\' | ']' | '[' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    };
    let mut i = 0;
    while i < chars.len() {
        if i + 2 < chars.len() && chars[i + 1] == '-' {
            escape(chars[i], &mut class);
            class.push('-');
            escape(chars[i + 2], &mut class);
            i += 3;
        } else {
            escape(chars[i], &mut class);
            i += 1;
        }
    }
    format!("^[{class}]*$")
}

/// Creates the collection with its validator and the indexes (unique on the natural key, those the
/// schema lists, and the `match_also` fields and `_aliases` when the feed matches), comparing first: `collMod` and `createIndexes` are sent only when what is
/// stored differs from the schema. `readWrite` does not allow `collMod`, so after a one-time setup
/// by a user that may (`dbAdmin`), a user with only `readWrite` runs every import.
pub async fn ensure_collection(db: &Database, schema: &Schema) -> Result<(), ChuteError> {
    const NAMESPACE_EXISTS: i32 = 48;
    let validator = json_schema(schema);
    let stored = match stored_options(db, &schema.collection).await? {
        Some(options) => Some(options),
        None => {
            let created = db
                .run_command(doc! {"create": &schema.collection, "validator": validator.clone(), "validationLevel": "strict", "validationAction": "error"})
                .await;
            match created {
                Ok(_) => None,
                // Another run created it since the look: compare with what it stored.
                Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == NAMESPACE_EXISTS) => {
                    stored_options(db, &schema.collection).await?
                }
                Err(e) => return Err(classify(e)),
            }
        }
    };
    if stored.is_some_and(|options| !validates_as(&options, &validator)) {
        db.run_command(doc! {"collMod": &schema.collection, "validator": validator, "validationLevel": "strict", "validationAction": "error"})
            .await
            .map_err(classify)?;
    }
    let mut key = Document::new();
    for k in &schema.key {
        let field = schema.column(k).map_or(k.as_str(), |c| c.field.as_str());
        key.insert(field, 1);
    }
    let mut indexes = vec![IndexModel::builder()
        .keys(key)
        .options(
            mongodb::options::IndexOptions::builder()
                .unique(true)
                .name(format!("{}_key", schema.name))
                .build(),
        )
        .build()];
    for fields in &schema.indexes {
        let mut keys = Document::new();
        for f in fields {
            keys.insert(schema.column(f).map_or(f.as_str(), |c| c.field.as_str()), 1);
        }
        indexes.push(IndexModel::builder().keys(keys).build());
    }
    // A row with a new key finds the product it merges into by these (see `match_also`).
    for column in &schema.feed.match_also {
        let field = schema
            .column(column)
            .map_or(column.as_str(), |c| c.field.as_str());
        indexes.push(IndexModel::builder().keys(doc! {field: 1}).build());
    }
    if !schema.feed.match_also.is_empty() {
        indexes.push(IndexModel::builder().keys(doc! {"_aliases": 1}).build());
    }
    ensure_indexes(db.collection(&schema.collection), indexes).await?;
    ensure_indexes(
        db.collection(RUNS),
        vec![
            IndexModel::builder()
                .keys(doc! {"status": 1, "created_at": -1})
                .build(),
            IndexModel::builder()
                .keys(doc! {"source.key": 1, "created_at": -1})
                .build(),
        ],
    )
    .await
}

/// The collection's stored options (`listCollections`), or `None` when it does not exist.
async fn stored_options(db: &Database, name: &str) -> Result<Option<Document>, ChuteError> {
    let reply = db
        .run_command(doc! {"listCollections": 1, "filter": {"name": name}})
        .await
        .map_err(classify)?;
    let first = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .ok()
        .and_then(|batch| batch.first())
        .and_then(Bson::as_document);
    Ok(first.map(|c| c.get_document("options").cloned().unwrap_or_default()))
}

/// Whether stored collection options enforce exactly `validator`, strictly and as errors (the
/// server's defaults when the options do not say).
fn validates_as(options: &Document, validator: &Document) -> bool {
    options.get_document("validator").ok() == Some(validator)
        && options.get_str("validationLevel").unwrap_or("strict") == "strict"
        && options.get_str("validationAction").unwrap_or("error") == "error"
}

/// Creates those of `wanted` that the collection has no index for (same keys in the same order,
/// same uniqueness); sends nothing when it has them all.
async fn ensure_indexes(
    collection: Collection<Document>,
    wanted: Vec<IndexModel>,
) -> Result<(), ChuteError> {
    const NAMESPACE_NOT_FOUND: i32 = 26;
    let mut stored: Vec<IndexModel> = Vec::new();
    match collection.list_indexes().await {
        Ok(mut cursor) => {
            while cursor.advance().await.map_err(classify)? {
                stored.push(cursor.deserialize_current().map_err(classify)?);
            }
        }
        Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == NAMESPACE_NOT_FOUND) =>
            {}
        Err(e) => return Err(classify(e)),
    }
    let missing: Vec<IndexModel> = wanted
        .into_iter()
        .filter(|w| !stored.iter().any(|s| same_index(s, w)))
        .collect();
    if !missing.is_empty() {
        collection.create_indexes(missing).await.map_err(classify)?;
    }
    Ok(())
}

fn same_index(stored: &IndexModel, wanted: &IndexModel) -> bool {
    let unique = |i: &IndexModel| i.options.as_ref().and_then(|o| o.unique).unwrap_or(false);
    // Order matters in a compound index; a server may give a direction back as another number type.
    stored.keys.len() == wanted.keys.len()
        && stored
            .keys
            .iter()
            .zip(&wanted.keys)
            .all(|((a, x), (b, y))| {
                a == b && (x == y || number(x).is_some_and(|x| Some(x) == number(y)))
            })
        && unique(stored) == unique(wanted)
}

fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(x) => Some(*x),
        _ => None,
    }
}
