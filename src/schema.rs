//! Import schemas: what a file's columns mean, loaded from TOML in `schemas/`.
//!
//! A schema is data, not code, so a new feed (say stock levels keyed on `sku` + `warehouse`) is a new
//! TOML file. The rules each column declares are applied by [`crate::rules`].

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::SchemaError;
use crate::rules::{parse_cell, Case, Charset, ColumnType, Constraints};
use crate::value::{CellValue, Decimal};

/// One column as written in the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(rename = "type")]
    kind: ColumnType,
    #[serde(default)]
    required: bool,
    default: Option<toml::Value>,
    field: Option<String>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    charset: Option<String>,
    case: Option<Case>,
    min: Option<String>,
    max: Option<String>,
    scale: Option<u32>,
    separator: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternSpec {
    prefix: String,
    #[serde(rename = "type")]
    kind: ColumnType,
    field_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaSpec {
    name: String,
    collection: Option<String>,
    key: Vec<String>,
    #[serde(default = "default_delimiter")]
    delimiter: String,
    columns: Vec<ColumnSpec>,
    #[serde(default)]
    column_patterns: Vec<PatternSpec>,
    #[serde(default)]
    indexes: Vec<Vec<String>>,
}

fn default_delimiter() -> String {
    ",".to_string()
}

/// A column of a schema, ready to validate cells.
#[derive(Debug, Clone)]
pub struct Column {
    /// The canonical header name, used in every rejection.
    pub name: String,
    pub aliases: Vec<String>,
    pub kind: ColumnType,
    pub required: bool,
    /// Default value, already parsed, used when the cell is missing.
    pub default: Option<CellValue<'static>>,
    /// Dotted document path (`attributes.brand`).
    pub field: String,
    pub constraints: Constraints,
}

/// Columns matched by a header prefix (`attr.NAME` → `attributes.NAME`).
#[derive(Debug, Clone)]
pub struct ColumnPattern {
    pub prefix: String,
    pub kind: ColumnType,
    pub field_prefix: String,
}

/// An import schema.
#[derive(Debug, Clone)]
pub struct Schema {
    pub name: String,
    /// MongoDB collection the documents go to.
    pub collection: String,
    /// Canonical names of the natural key's columns, in order.
    pub key: Vec<String>,
    pub delimiter: u8,
    pub columns: Vec<Column>,
    pub patterns: Vec<ColumnPattern>,
    /// Secondary indexes (column names, ascending) the queries on this collection need.
    pub indexes: Vec<Vec<String>>,
}

/// The schema shipped as the default, compiled in so a Lambda needs no file system.
pub const PRODUCTS_TOML: &str = include_str!("../schemas/products.toml");

impl Schema {
    /// The default `products` schema.
    pub fn products() -> Schema {
        Schema::from_toml(PRODUCTS_TOML, "schemas/products.toml")
            .expect("the bundled products schema is valid")
    }

    /// Loads `NAME` from a directory of schemas (`schemas/NAME.toml`); `products` falls back to the
    /// bundled copy when the directory does not have it.
    pub fn load(dir: &Path, name: &str) -> Result<Schema, SchemaError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SchemaError::Invalid(format!(
                "schema name `{name}` must be letters, digits, `_` or `-`"
            )));
        }
        let path = dir.join(format!("{name}.toml"));
        match std::fs::read_to_string(&path) {
            Ok(text) => Schema::from_toml(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "products" => {
                Ok(Schema::products())
            }
            Err(source) => Err(SchemaError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    pub fn from_toml(text: &str, path: &str) -> Result<Schema, SchemaError> {
        let spec: SchemaSpec = toml::from_str(text).map_err(|e| SchemaError::Toml {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Schema::from_spec(spec)
    }

    fn from_spec(spec: SchemaSpec) -> Result<Schema, SchemaError> {
        let delimiter = match spec.delimiter.as_bytes() {
            [b] if b.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r' => *b,
            _ => {
                return Err(SchemaError::Invalid(format!(
                    "delimiter `{}` must be one ASCII character",
                    spec.delimiter
                )))
            }
        };
        let mut columns = Vec::with_capacity(spec.columns.len());
        let mut seen_names: HashMap<String, String> = HashMap::new();
        let mut seen_fields: HashMap<String, String> = HashMap::new();
        for c in spec.columns {
            for n in std::iter::once(&c.name).chain(&c.aliases) {
                let folded = fold_header(n);
                if let Some(other) = seen_names.insert(folded, c.name.clone()) {
                    return Err(SchemaError::Invalid(format!(
                        "header name `{n}` is used by both `{other}` and `{}`",
                        c.name
                    )));
                }
            }
            let field = c.field.clone().unwrap_or_else(|| c.name.clone());
            check_field_path(&field)?;
            if let Some(other) = seen_fields.insert(field.clone(), c.name.clone()) {
                return Err(SchemaError::Invalid(format!(
                    "field `{field}` is written by both `{other}` and `{}`",
                    c.name
                )));
            }
            let constraints = Constraints {
                min_length: c.min_length,
                max_length: c.max_length,
                charset: c
                    .charset
                    .as_deref()
                    .map(Charset::parse)
                    .transpose()
                    .map_err(SchemaError::Invalid)?,
                case: c.case,
                min: parse_bound(&c.name, "min", c.min.as_deref())?,
                max: parse_bound(&c.name, "max", c.max.as_deref())?,
                scale: c.scale,
                separator: c.separator.clone().unwrap_or_else(|| "|".to_string()),
            };
            let mut column = Column {
                name: c.name.clone(),
                aliases: c.aliases.clone(),
                kind: c.kind,
                required: c.required,
                default: None,
                field,
                constraints,
            };
            if let Some(value) = &c.default {
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(x) => x.to_string(),
                    _ => {
                        return Err(SchemaError::Invalid(format!(
                            "default of column `{}` must be a scalar",
                            c.name
                        )))
                    }
                };
                let default = parse_cell(column.kind, &column.constraints, &text).map_err(|e| {
                    SchemaError::Invalid(format!(
                        "default `{text}` of column `{}` fails its own rules: {}",
                        c.name, e.message
                    ))
                })?;
                column.default = Some(default.into_owned());
            }
            columns.push(column);
        }
        for k in &spec.key {
            match columns.iter().find(|c| &c.name == k) {
                // Keys compare exactly as written (after trimming): a case fold would make the
                // planner's fingerprints disagree with the stored key.
                Some(c)
                    if c.required
                        && c.kind == ColumnType::String
                        && c.constraints.case.is_none() => {}
                Some(_) => {
                    return Err(SchemaError::Invalid(format!(
                        "key column `{k}` must be a required string column without `case`"
                    )))
                }
                None => {
                    return Err(SchemaError::Invalid(format!(
                        "key column `{k}` is not a column"
                    )))
                }
            }
        }
        if spec.key.is_empty() {
            return Err(SchemaError::Invalid(
                "a schema needs at least one key column".into(),
            ));
        }
        let patterns = spec
            .column_patterns
            .into_iter()
            .map(|p| ColumnPattern {
                prefix: p.prefix,
                kind: p.kind,
                field_prefix: p.field_prefix,
            })
            .collect();
        for index in &spec.indexes {
            if let Some(unknown) = index
                .iter()
                .find(|f| !columns.iter().any(|c| &c.name == *f))
            {
                return Err(SchemaError::Invalid(format!(
                    "index column `{unknown}` is not a column"
                )));
            }
        }
        Ok(Schema {
            indexes: spec.indexes,
            collection: spec.collection.unwrap_or_else(|| spec.name.clone()),
            name: spec.name,
            key: spec.key,
            delimiter,
            columns,
            patterns,
        })
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

fn parse_bound(
    column: &str,
    which: &str,
    text: Option<&str>,
) -> Result<Option<Decimal>, SchemaError> {
    text.map(|t| {
        Decimal::parse(t).ok_or_else(|| {
            SchemaError::Invalid(format!("column `{column}`: {which} `{t}` is not a number"))
        })
    })
    .transpose()
}

/// MongoDB field names may not start with `$` nor be empty; dots separate levels.
fn check_field_path(field: &str) -> Result<(), SchemaError> {
    if field
        .split('.')
        .any(|part| part.is_empty() || part.starts_with('$') || part.contains('\0'))
    {
        return Err(SchemaError::Invalid(format!(
            "`{field}` is not a usable document field path"
        )));
    }
    Ok(())
}

/// Header cells compare case-insensitively after trimming.
pub fn fold_header(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Separates the parts of a composite key so `("ab","c")` and `("a","bc")` differ; the planner's
/// fingerprints, the transform and the writer all join keys with it.
pub const KEY_SEPARATOR: char = '\u{1f}';

/// A composite key as one string, parts joined by [`KEY_SEPARATOR`].
pub fn join_key<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut key = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            key.push(KEY_SEPARATOR);
        }
        key.push_str(part);
    }
    key
}
