//! Collection setup derived from the import schema: `$jsonSchema` validator and indexes.

use bson::{doc, Bson, Document};
use mongodb::{Database, IndexModel};

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

/// Creates the collection with its validator (or updates the validator), and the indexes: unique
/// on the natural key, plus those the schema lists. Safe to run on every cold start.
pub async fn ensure_collection(db: &Database, schema: &Schema) -> Result<(), ChuteError> {
    const NAMESPACE_EXISTS: i32 = 48;
    let validator = json_schema(schema);
    let created = db
        .run_command(doc! {"create": &schema.collection, "validator": validator.clone(), "validationLevel": "strict", "validationAction": "error"})
        .await;
    match created {
        Ok(_) => {}
        Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == NAMESPACE_EXISTS) =>
        {
            db.run_command(doc! {"collMod": &schema.collection, "validator": validator, "validationLevel": "strict", "validationAction": "error"})
                .await
                .map_err(classify)?;
        }
        Err(e) => return Err(classify(e)),
    }
    let products = db.collection::<Document>(&schema.collection);
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
    products.create_indexes(indexes).await.map_err(classify)?;
    db.collection::<Document>(RUNS)
        .create_indexes(vec![
            IndexModel::builder()
                .keys(doc! {"status": 1, "created_at": -1})
                .build(),
            IndexModel::builder()
                .keys(doc! {"source.key": 1, "created_at": -1})
                .build(),
        ])
        .await
        .map_err(classify)?;
    Ok(())
}
