//! Matching a file's header against a schema: which cell feeds which column, what is unknown, and
//! the file-level failures (missing or repeated columns) found before any row is read.

use crate::error::{FileCode, FileError};
use crate::rules::{ColumnType, Constraints, Damage};
use crate::schema::{fold_header, Column, Schema};

/// What one header cell feeds.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The schema column at this index.
    Column(usize),
    /// A column matched by a pattern (`attr.NAME`), at this index of [`Header::pattern_columns`].
    Pattern(usize),
    /// Not in the schema: ignored, named once in the warnings.
    Unknown,
}

/// A header resolved against a schema.
#[derive(Debug, Clone)]
pub struct Header {
    /// The header cells as written (trimmed).
    pub names: Vec<String>,
    /// One target per header cell.
    pub targets: Vec<Target>,
    /// For each schema column, the header cell that feeds it, if any.
    pub column_cells: Vec<Option<usize>>,
    /// Columns created from patterns, in header order, each with its header cell.
    pub pattern_columns: Vec<(Column, usize)>,
    /// Blank header cells at the end (`sku,name,,,`, a spreadsheet export's padding): ignored, and
    /// rows may leave them out.
    pub trailing_blank: usize,
    pub warnings: Vec<String>,
}

impl Header {
    /// Resolves raw header cells (already split by the CSV reader, BOM removed).
    pub fn resolve(schema: &Schema, cells: &[&[u8]]) -> Result<Header, FileError> {
        let mut names = Vec::with_capacity(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            let text = std::str::from_utf8(cell).map_err(|_| {
                FileError::new(
                    FileCode::Encoding,
                    format!(
                        "header cell {} is not UTF-8 ({:?}); save the file as UTF-8",
                        i + 1,
                        String::from_utf8_lossy(cell)
                    ),
                )
            })?;
            names.push(text.trim().to_string());
        }
        let trailing_blank = names.iter().rev().take_while(|n| n.is_empty()).count();
        let mut targets = Vec::with_capacity(names.len());
        let mut column_cells: Vec<Option<usize>> = vec![None; schema.columns.len()];
        let mut pattern_columns: Vec<(Column, usize)> = Vec::new();
        let mut unknown = Vec::new();
        let mut duplicates = Vec::new();
        for (cell, name) in names.iter().enumerate() {
            let folded = fold_header(name);
            let column = schema.columns.iter().position(|c| {
                fold_header(&c.name) == folded || c.aliases.iter().any(|a| fold_header(a) == folded)
            });
            if let Some(index) = column {
                if let Some(first) = column_cells[index] {
                    duplicates.push(format!(
                        "`{}` (header cells {} and {} both mean column `{}`)",
                        name,
                        first + 1,
                        cell + 1,
                        schema.columns[index].name
                    ));
                }
                column_cells[index] = Some(cell);
                targets.push(Target::Column(index));
                continue;
            }
            let pattern = schema
                .patterns
                .iter()
                .find(|p| folded.starts_with(&fold_header(&p.prefix)));
            match pattern {
                Some(p) => {
                    let suffix = name[p.prefix.len()..].trim();
                    if suffix.is_empty() || suffix.contains('.') || suffix.starts_with('$') {
                        unknown.push(name.clone());
                        targets.push(Target::Unknown);
                        continue;
                    }
                    let field = format!("{}{}", p.field_prefix, suffix);
                    if let Some((_, first)) = pattern_columns.iter().find(|(c, _)| c.field == field)
                    {
                        duplicates.push(format!(
                            "`{name}` (header cells {} and {})",
                            first + 1,
                            cell + 1
                        ));
                    }
                    targets.push(Target::Pattern(pattern_columns.len()));
                    pattern_columns.push((
                        Column {
                            name: name.clone(),
                            aliases: Vec::new(),
                            kind: p.kind,
                            required: false,
                            default: None,
                            field,
                            constraints: Constraints {
                                separator: "|".into(),
                                ..Constraints::default()
                            },
                            identifier: p.kind == ColumnType::Gtin,
                            damage: Damage::Reject,
                        },
                        cell,
                    ));
                }
                None if cell >= names.len() - trailing_blank => targets.push(Target::Unknown),
                None => {
                    unknown.push(if name.is_empty() {
                        format!("(blank, cell {})", cell + 1)
                    } else {
                        name.clone()
                    });
                    targets.push(Target::Unknown);
                }
            }
        }
        if !duplicates.is_empty() {
            return Err(FileError::new(
                FileCode::DuplicateColumn,
                format!("the header repeats a column: {}", duplicates.join(", ")),
            ));
        }
        // A pattern column must not shadow a declared field (`attr.brand` vs `brand`).
        if let Some((c, _)) = pattern_columns
            .iter()
            .find(|(c, _)| schema.columns.iter().any(|s| s.field == c.field))
        {
            return Err(FileError::new(
                FileCode::DuplicateColumn,
                format!(
                    "header `{}` writes field `{}`, which another column already writes",
                    c.name, c.field
                ),
            ));
        }
        let missing: Vec<String> = schema
            .columns
            .iter()
            .zip(&column_cells)
            .filter(|(c, cell)| c.required && cell.is_none())
            .map(|(c, _)| {
                if c.aliases.is_empty() {
                    format!("`{}`", c.name)
                } else {
                    format!("`{}` (or {})", c.name, c.aliases.join(", "))
                }
            })
            .collect();
        if !missing.is_empty() {
            return Err(FileError::new(
                FileCode::MissingColumn,
                format!(
                    "the header lacks required column{} {}; it has: {}",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", "),
                    names.join(", ")
                ),
            ));
        }
        let mut warnings = Vec::new();
        if !unknown.is_empty() {
            warnings.push(format!("unknown columns ignored: {}", unknown.join(", ")));
        }
        if trailing_blank > 0 {
            let first = names.len() - trailing_blank + 1;
            let cells = match trailing_blank {
                1 => format!("cell {first}"),
                _ => format!("cells {first}-{}", names.len()),
            };
            warnings.push(format!(
                "{trailing_blank} empty trailing header column{} ignored ({cells}, a spreadsheet export's padding)",
                if trailing_blank > 1 { "s" } else { "" }
            ));
        }
        Ok(Header {
            names,
            targets,
            column_cells,
            pattern_columns,
            trailing_blank,
            warnings,
        })
    }

    /// Whether a record of `fields` fields fits this header: all of them, or all but some of the
    /// blank trailing ones.
    pub fn fits(&self, fields: usize) -> bool {
        fields <= self.names.len() && fields + self.trailing_blank >= self.names.len()
    }

    /// Header cells of the key columns, in key order.
    pub fn key_cells(&self, schema: &Schema) -> Vec<usize> {
        schema
            .key
            .iter()
            .map(|k| {
                let index = schema
                    .columns
                    .iter()
                    .position(|c| &c.name == k)
                    .expect("key columns exist");
                self.column_cells[index].expect("required columns are present once resolved")
            })
            .collect()
    }
}
