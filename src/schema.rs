//! Import schemas: what a file's columns mean, written in TOML in `schemas/`.
//!
//! A schema is data, not code, so a new feed (like `stock_levels`, keyed on `sku` + `warehouse`) is
//! a new TOML file. Every file in `schemas/` is compiled in (see `build.rs`), because a Lambda ships
//! only its binary; a directory given at run time may override them. The rules each column declares
//! are applied by [`crate::rules`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::error::SchemaError;
use crate::feed::{Feed, FeedSpec, SourceSpec};
use crate::format::{Format, FormatSpec};
use crate::rules::{parse_cell, Case, Charset, ColumnType, Constraints, Damage};
use crate::value::{CellValue, Decimal, NumberFormat};

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
    #[serde(default)]
    identifier: bool,
    #[serde(default)]
    damage: Damage,
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
    /// The old spelling of `[format] delimiter`, still read.
    delimiter: Option<String>,
    #[serde(default)]
    format: FormatSpec,
    columns: Vec<ColumnSpec>,
    #[serde(default)]
    column_patterns: Vec<PatternSpec>,
    #[serde(default)]
    indexes: Vec<Vec<String>>,
    /// `[feed]`: modes, stale policy, precedence and matching (see [`crate::feed`]).
    feed: Option<FeedSpec>,
    /// `[sources.<name>]`: per-source overrides of `[feed]`.
    #[serde(default)]
    sources: BTreeMap<String, SourceSpec>,
    continuation: Option<Continuation>,
}

/// `[continuation]`: rows a platform writes on purpose with an empty key and only some columns
/// filled (Shopify's extra image rows). They are counted as skipped with `reason`, never rejected,
/// never imported.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continuation {
    /// The only columns such a row may fill (canonical names).
    pub columns: Vec<String>,
    /// What such a row is, quoted in the report's warning.
    pub reason: String,
}

/// The `format` tables of `[sources.<name>]`; everything else in those tables is the feed's.
#[derive(Deserialize)]
struct SourceFormats {
    #[serde(default)]
    sources: BTreeMap<String, SourceFormat>,
}

#[derive(Deserialize)]
struct SourceFormat {
    format: Option<FormatSpec>,
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
    /// Holds identifiers (codes, barcodes, part numbers) that a spreadsheet may have turned into
    /// numbers: keys, `match_also` columns, GTINs and columns declared `identifier = true`.
    pub identifier: bool,
    /// What a damaged identifier does: reject its row (the default) or warn and keep it.
    pub damage: Damage,
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
    /// How files of this schema are read (`[format]`): encoding, delimiter, number format. What
    /// one file is read with is a [`crate::format::ResolvedFormat`] beside the schema.
    pub format: Format,
    /// Sources whose files are read differently (`[sources.<name>.format]`): see
    /// [`Schema::format_for`].
    pub source_formats: BTreeMap<String, Format>,
    pub columns: Vec<Column>,
    pub patterns: Vec<ColumnPattern>,
    /// Secondary indexes (column names, ascending) the queries on this collection need.
    pub indexes: Vec<Vec<String>>,
    /// How files of several sources and modes write into the collection.
    pub feed: Feed,
    /// Rows to skip rather than reject, if the schema declares them.
    pub continuation: Option<Continuation>,
    /// chute's version and a hash of the schema's TOML: documents written under another
    /// fingerprint may differ for the same row, so a snapshot taken under one is not diffed
    /// against under another ([`crate::delta`]).
    pub fingerprint: String,
}

/// The schemas compiled in: `BUILT_IN`, generated by `build.rs` from `schemas/*.toml`.
mod built_in {
    include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
}

impl Schema {
    /// The default `products` schema.
    pub fn products() -> Schema {
        Schema::built_in("products").expect("the built-in products schema is valid")
    }

    /// The names of the schemas compiled in, sorted.
    pub fn built_in_names() -> impl Iterator<Item = &'static str> {
        built_in::BUILT_IN.iter().map(|(name, _)| *name)
    }

    /// The schema compiled in from `schemas/NAME.toml`.
    pub fn built_in(name: &str) -> Result<Schema, SchemaError> {
        check_name(name)?;
        match built_in::BUILT_IN.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => Schema::from_toml(text, &format!("schemas/{name}.toml")),
            None => Err(SchemaError::Unknown {
                name: name.to_string(),
                known: Schema::built_in_names().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// `NAME` from `dir/NAME.toml` when the directory has it (an override, or a schema added
    /// without a rebuild), else the built-in one.
    pub fn load(dir: &Path, name: &str) -> Result<Schema, SchemaError> {
        check_name(name)?;
        let path = dir.join(format!("{name}.toml"));
        match std::fs::read_to_string(&path) {
            Ok(text) => Schema::from_toml(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Schema::built_in(name),
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
        // `[sources.<name>.format]` is the file-format part of a source's table ([`crate::feed`]
        // reads the rest and leaves it out), read here in a second pass over the same text.
        let formats: SourceFormats = toml::from_str(text).map_err(|e| SchemaError::Toml {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut schema = Schema::from_spec(spec)?;
        schema.fingerprint = format!(
            "{}-{:016x}",
            env!("CARGO_PKG_VERSION"),
            xxhash_rust::xxh3::xxh3_64(text.as_bytes())
        );
        for (source, table) in formats.sources {
            if let Some(spec) = table.format {
                let format = schema
                    .format
                    .with(&spec, &format!("[sources.{source}.format]"))
                    .map_err(SchemaError::Invalid)?;
                schema.source_formats.insert(source, format);
            }
        }
        Ok(schema)
    }

    /// How files from `source` are read: its `[sources.<name>.format]` over the schema's `[format]`.
    pub fn format_for(&self, source: &str) -> &Format {
        self.source_formats.get(source).unwrap_or(&self.format)
    }

    fn from_spec(spec: SchemaSpec) -> Result<Schema, SchemaError> {
        let mut format_spec = spec.format.clone();
        match (&spec.delimiter, &format_spec.delimiter) {
            (Some(old), Some(new)) if old != new => {
                return Err(SchemaError::Invalid(format!(
                    "delimiter `{old}` and [format] delimiter `{new}` disagree; keep one"
                )))
            }
            (Some(old), _) => format_spec.delimiter = Some(old.clone()),
            _ => {}
        }
        let format = Format::default()
            .with(&format_spec, &format!("schema {}", spec.name))
            .map_err(SchemaError::Invalid)?;
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
                identifier: c.identifier || c.kind == ColumnType::Gtin,
                damage: c.damage,
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
                // Defaults are written plainly in the TOML, whatever the files' number format.
                let plain = NumberFormat::default();
                let default =
                    parse_cell(column.kind, &column.constraints, &plain, &text).map_err(|e| {
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
        if let Some(unknown) = spec
            .continuation
            .iter()
            .flat_map(|c| &c.columns)
            .find(|name| !columns.iter().any(|c| &c.name == *name) || spec.key.contains(name))
        {
            return Err(SchemaError::Invalid(format!(
                "continuation column `{unknown}` is not a column, or is a key column"
            )));
        }
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let feed = Feed::from_spec(spec.feed, spec.sources, &names)?;
        for column in &mut columns {
            column.identifier |=
                spec.key.contains(&column.name) || feed.match_also.contains(&column.name);
            // A key kept as written would store the product under a number's rendering.
            if column.damage == Damage::Warn
                && (!column.identifier || spec.key.contains(&column.name))
            {
                return Err(SchemaError::Invalid(format!(
                    "column `{}`: damage = \"warn\" is for identifier columns that are not keys (identifier = true, gtin, match_also)",
                    column.name
                )));
            }
        }
        Ok(Schema {
            feed,
            indexes: spec.indexes,
            collection: spec.collection.unwrap_or_else(|| spec.name.clone()),
            name: spec.name,
            key: spec.key,
            format,
            source_formats: BTreeMap::new(),
            columns,
            patterns,
            continuation: spec.continuation,
            fingerprint: String::new(),
        })
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The document field column `name` is stored under (the name itself when no column has it).
    pub fn field_of<'s>(&'s self, name: &'s str) -> &'s str {
        self.column(name).map_or(name, |c| c.field.as_str())
    }

    /// The document fields of the natural key, in key order.
    pub fn key_fields(&self) -> Vec<&str> {
        self.key.iter().map(|k| self.field_of(k)).collect()
    }

    /// The document fields of the feed's `match_also` columns.
    pub fn match_fields(&self) -> Vec<&str> {
        self.feed
            .match_also
            .iter()
            .map(|c| self.field_of(c))
            .collect()
    }
}

/// Whether `c` may be part of a schema name. A schema name becomes a file name: no paths, no
/// surprises.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_name(name: &str) -> Result<(), SchemaError> {
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(SchemaError::Invalid(format!(
            "schema name `{name}` must be letters, digits, `_` or `-`"
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_is_built_in_valid_and_named_after_its_file() {
        let names: Vec<&str> = Schema::built_in_names().collect();
        assert!(
            names.contains(&"products") && names.contains(&"stock_levels"),
            "{names:?}"
        );
        for name in names {
            assert_eq!(Schema::built_in(name).unwrap().name, name);
        }
        let stock = Schema::built_in("stock_levels").unwrap();
        assert_eq!(stock.key, ["sku", "warehouse"]);
        assert_eq!(stock.collection, "stock_levels");
        let shopify = Schema::built_in("shopify").unwrap();
        assert_eq!(
            shopify.continuation.unwrap().reason,
            "an image of the product above"
        );
    }

    #[test]
    fn continuation_columns_must_be_columns_other_than_the_key() {
        let products = built_in::BUILT_IN
            .iter()
            .find(|(n, _)| *n == "products")
            .unwrap()
            .1;
        let with = |columns: &str| {
            let table = format!("\n[continuation]\ncolumns = {columns}\nreason = \"x\"\n");
            Schema::from_toml(&format!("{products}{table}"), "p.toml")
        };
        assert_eq!(
            with("[\"description\"]")
                .unwrap()
                .continuation
                .unwrap()
                .columns,
            ["description"]
        );
        for wrong in ["[\"sku\"]", "[\"nope\"]"] {
            let err = with(wrong).unwrap_err().to_string();
            assert!(err.contains("continuation column"), "{err}");
        }
    }

    #[test]
    fn feed_settings_are_read_from_the_schema_file_and_checked_against_its_columns() {
        let products = built_in::BUILT_IN
            .iter()
            .find(|(n, _)| *n == "products")
            .unwrap()
            .1;
        let feed = "[feed]\nprecedence = [\"erp\"]\nmatch_also = [\"name\"]\n\
                    [sources.erp]\nmode = \"full\"\n[sources.erp.format]\nencoding = \"latin1\"\n";
        let schema = Schema::from_toml(&format!("{products}\n{feed}"), "p.toml").unwrap();
        assert_eq!(schema.feed.for_source("erp").mode, crate::feed::Mode::Full);
        assert_eq!(schema.feed.match_also, ["name"]);
        assert_eq!(Schema::products().feed, crate::feed::Feed::default());
        let wrong = feed.replace("match_also = [\"name\"]", "match_also = [\"gtin\"]");
        let err = Schema::from_toml(&format!("{products}\n{wrong}"), "p.toml").unwrap_err();
        assert!(
            err.to_string().contains("match_also column `gtin`"),
            "{err}"
        );
    }

    #[test]
    fn a_file_in_the_override_directory_wins_over_the_built_in_one() {
        let dir = std::env::temp_dir().join(format!("chute-schemas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = built_in::BUILT_IN
            .iter()
            .find(|(n, _)| *n == "products")
            .unwrap()
            .1
            .replace("collection = \"products\"", "collection = \"products_v2\"");
        std::fs::write(dir.join("products.toml"), text).unwrap();
        assert_eq!(
            Schema::load(&dir, "products").unwrap().collection,
            "products_v2"
        );
        assert_eq!(
            Schema::load(&dir, "stock_levels").unwrap().collection,
            "stock_levels",
            "a schema the directory lacks is the built-in one"
        );
        let unknown = Schema::load(&dir, "nope").unwrap_err().to_string();
        assert!(
            unknown.contains("`nope`") && unknown.contains("products, shopify, stock_levels"),
            "{unknown}"
        );
        assert!(Schema::load(&dir, "../products").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
