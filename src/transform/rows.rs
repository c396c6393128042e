//! One row against the schema: [`RowRules`] checks every cell of a record into values (or
//! issues), then writes the valid row as its BSON document with the content hash the writer
//! compares.

use crate::bson_writer::DocWriter;
use crate::error::{Code, Position};
use crate::format::ResolvedFormat;
use crate::header::{Header, Target};
use crate::rules::{parse_cell, scientific_notation, ColumnType, Damage};
use crate::schema::{join_key, Column, Schema};
use crate::value::{trim, CellValue};

use super::{quote, Issue, WHOLE_ROW};

/// A document field fed by one slot, or a sub-document of such fields.
#[derive(Debug)]
struct Node {
    key: String,
    slot: Option<usize>,
    children: Vec<Node>,
}

fn insert_path(nodes: &mut Vec<Node>, path: &str, slot: usize) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let index = match nodes.iter().position(|n| n.key == head) {
        Some(i) => i,
        None => {
            nodes.push(Node {
                key: head.to_string(),
                slot: None,
                children: Vec::new(),
            });
            nodes.len() - 1
        }
    };
    match rest {
        Some(rest) => insert_path(&mut nodes[index].children, rest, slot),
        None => nodes[index].slot = Some(slot),
    }
}

/// The schema applied to one file's header and format: which cell feeds which column, how its
/// numbers are written, and the document shape.
pub struct RowRules<'s> {
    pub schema: &'s Schema,
    header: &'s Header,
    /// What the file is read with (its records are split on its delimiter).
    pub format: ResolvedFormat,
    /// Every column that can produce a value (schema columns, then pattern columns), with the
    /// header cell that feeds it.
    pub(super) slots: Vec<(&'s Column, Option<usize>)>,
    /// Which slot a header cell feeds (for quoting values in rejections).
    cell_slots: Vec<Option<usize>>,
    key_slots: Vec<usize>,
    /// String columns holding identifiers ([`Column::identifier`]): checked for spreadsheet damage.
    identifier_slots: Vec<usize>,
    /// Identifier columns whose damage is kept and counted instead (`damage = "warn"`).
    pub(super) warn_slots: Vec<usize>,
    /// Per header cell, whether a continuation row may fill it (`None`: the schema has none).
    continuation_cells: Option<Vec<bool>>,
    layout: Vec<Node>,
    /// BSON of the defaults of columns missing from the header (applied on insert only); the
    /// same for every row, so written once.
    insert_defaults: Option<Vec<u8>>,
}

impl<'s> RowRules<'s> {
    pub fn new(schema: &'s Schema, header: &'s Header, format: ResolvedFormat) -> Self {
        let mut slots: Vec<(&Column, Option<usize>)> = schema
            .columns
            .iter()
            .zip(&header.column_cells)
            .map(|(c, cell)| (c, *cell))
            .collect();
        slots.extend(
            header
                .pattern_columns
                .iter()
                .map(|(c, cell)| (c, Some(*cell))),
        );
        let mut cell_slots = vec![None; header.names.len()];
        for (slot, (_, cell)) in slots.iter().enumerate() {
            if let Some(cell) = cell {
                cell_slots[*cell] = Some(slot);
            }
        }
        debug_assert!(header
            .targets
            .iter()
            .zip(&cell_slots)
            .all(|(t, s)| (*t == Target::Unknown) == s.is_none()));
        let key_slots = schema
            .key
            .iter()
            .map(|k| {
                schema
                    .columns
                    .iter()
                    .position(|c| &c.name == k)
                    .expect("key columns exist")
            })
            .collect::<Vec<usize>>();
        let identifier_slots = schema
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.identifier && c.kind == ColumnType::String)
            .filter(|(_, c)| c.damage == Damage::Reject)
            .map(|(slot, _)| slot)
            .collect::<Vec<usize>>();
        let warn_slots = schema.columns.iter().enumerate();
        let warn_slots = warn_slots.filter(|(_, c)| c.damage == Damage::Warn);
        let warn_slots = warn_slots.map(|(slot, _)| slot).collect();
        let continuation_cells = schema.continuation.as_ref().map(|c| {
            let columns =
                |slot: &Option<usize>| slot.is_some_and(|s| c.columns.contains(&slots[s].0.name));
            cell_slots.iter().map(columns).collect()
        });
        let mut layout = Vec::new();
        let mut defaults_layout = Vec::new();
        let mut defaults = Vec::new();
        for (slot, (column, cell)) in slots.iter().enumerate() {
            let missing_default = cell.is_none().then_some(column.default.as_ref()).flatten();
            if cell.is_some() {
                insert_path(&mut layout, &column.field, slot);
            } else if missing_default.is_some() {
                insert_path(&mut defaults_layout, &column.field, slot);
            }
            defaults.push(missing_default.map(CellValue::borrowed));
        }
        let insert_defaults = (!defaults_layout.is_empty()).then(|| {
            let mut bytes = Vec::new();
            let mut doc = DocWriter::new(&mut bytes);
            write_nodes(&mut doc, &defaults_layout, &defaults);
            doc.end();
            bytes
        });
        RowRules {
            schema,
            header,
            format,
            slots,
            cell_slots,
            key_slots,
            identifier_slots,
            warn_slots,
            continuation_cells,
            layout,
            insert_defaults,
        }
    }

    /// Whether a record is a continuation row: some cells filled, all of them continuation
    /// columns (never a key column, so its key is empty).
    pub(super) fn is_continuation(&self, record: &csv::StringRecord) -> bool {
        let Some(allowed) = &self.continuation_cells else {
            return false;
        };
        let mut filled = record
            .iter()
            .enumerate()
            .filter(|(_, text)| !trim(text).is_empty())
            .peekable();
        filled.peek().is_some() && filled.all(|(cell, _)| allowed.get(cell) == Some(&true))
    }

    /// Validates one record. On success `values` holds one optional value per slot (borrowing the
    /// record's text); on failure `issues` lists every failing cell.
    pub fn check<'r>(
        &'r self,
        record: &'r csv::StringRecord,
        values: &mut Vec<Option<CellValue<'r>>>,
        issues: &mut Vec<Issue>,
    ) -> bool {
        values.clear();
        issues.clear();
        if record.len() != self.header.names.len() && !self.header.fits(record.len()) {
            issues.push(self.field_count_issue(record.as_byte_record()));
            return false;
        }
        for (column, cell) in &self.slots {
            let text = cell.and_then(|c| record.get(c)).map_or("", trim);
            let parsed = if text.is_empty() {
                None
            } else {
                // Keys are the one place a spreadsheet's rewrite of a number is silent damage.
                match parse_cell(column.kind, &column.constraints, &self.format.numbers, text) {
                    Ok(CellValue::List(items)) if items.is_empty() => None,
                    Ok(value) => Some(value),
                    Err(e) if e.code == Code::SpreadsheetError && column.damage == Damage::Warn => {
                        Some(CellValue::String(text.into()))
                    }
                    Err(e) => {
                        issues.push(Issue {
                            column: column.name.clone(),
                            code: e.code,
                            message: format!("{} {}", column.name, e.message),
                            value: quote(text),
                        });
                        values.push(None);
                        continue;
                    }
                }
            };
            let value = match parsed {
                Some(v) => Some(v),
                None if column.required => {
                    issues.push(Issue {
                        column: column.name.clone(),
                        code: Code::MissingValue,
                        message: format!("{} is required but empty", column.name),
                        value: text.to_string(),
                    });
                    None
                }
                // Present but empty: the default applies. Absent columns are left to insert_defaults.
                None if cell.is_some() => column.default.as_ref().map(CellValue::borrowed),
                None => None,
            };
            values.push(value);
        }
        // Identifiers are where a spreadsheet's rewrite of a number is silent damage (any string
        // passes their type); checked once a row, and a value starting with a letter (most keys)
        // is passed by one byte test. GTIN columns find it in their own parser.
        for &slot in &self.identifier_slots {
            let (column, cell) = self.slots[slot];
            let text = cell.and_then(|c| record.get(c)).map_or("", trim);
            if !text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                continue;
            }
            if let Some(e) = scientific_notation(text) {
                // The spreadsheet's damage explains any other complaint about the cell.
                issues.retain(|i| i.column != column.name);
                issues.push(Issue {
                    column: column.name.clone(),
                    code: e.code,
                    message: format!("{} {}", column.name, e.message),
                    value: quote(text),
                });
                values[slot] = None;
            }
        }
        issues.is_empty()
    }

    fn field_count_issue(&self, record: &csv::ByteRecord) -> Issue {
        Issue {
            column: WHOLE_ROW.to_string(),
            code: Code::FieldCount,
            message: format!(
                "has {} fields; the header has {}",
                record.len(),
                self.header.names.len()
            ),
            value: quote(
                &self
                    .fields(record)
                    .join(&char::from(self.format.delimiter).to_string()),
            ),
        }
    }

    /// Why a record that is not UTF-8 is refused, naming its first bad field.
    pub(super) fn encoding_issue(&self, record: &csv::ByteRecord, field: usize) -> Issue {
        if !self.header.fits(record.len()) {
            return self.field_count_issue(record);
        }
        Issue {
            column: self.header.names[field].clone(),
            code: Code::Encoding,
            message: "is not valid UTF-8 in the encoding the file was read as: declare the file's encoding (object metadata chute-encoding; the report's warnings say what these rows decode as) or save it as UTF-8"
                .to_string(),
            value: quote(&String::from_utf8_lossy(&record[field])),
        }
    }

    /// The natural key of a checked row (`values` from a successful [`RowRules::check`]), key parts
    /// joined by [`crate::schema::KEY_SEPARATOR`].
    pub fn key(&self, values: &[Option<CellValue>]) -> String {
        join_key(self.key_slots.iter().map(|slot| match &values[*slot] {
            Some(CellValue::String(s)) => s.as_ref(),
            _ => "",
        }))
    }

    /// Writes a checked row as a staged document.
    pub fn write_document(
        &self,
        values: &[Option<CellValue>],
        position: Position,
        out: &mut Vec<u8>,
    ) {
        let mut doc = DocWriter::new(out);
        write_nodes(&mut doc, &self.layout, values);
        let hash = xxhash_rust::xxh3::xxh3_128(doc.elements());
        let mut meta = doc.begin("_import", false);
        meta.int64("row", position.row as i64);
        meta.int64("line", position.line as i64);
        meta.string("hash", hex32(hash, &mut [0; 32]));
        if let Some(defaults) = &self.insert_defaults {
            meta.document("defaults", defaults);
        }
        meta.end();
        doc.end();
    }

    /// The original fields of a record, for rejects.csv.
    pub(super) fn fields(&self, record: &csv::ByteRecord) -> Vec<String> {
        record
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    /// Which schema column a header cell feeds, if any.
    pub fn column_of_cell(&self, cell: usize) -> Option<&Column> {
        self.cell_slots
            .get(cell)
            .copied()
            .flatten()
            .map(|s| self.slots[s].0)
    }
}

fn write_nodes(doc: &mut DocWriter<'_>, nodes: &[Node], values: &[Option<CellValue>]) {
    for node in nodes {
        if let Some(slot) = node.slot {
            if let Some(value) = &values[slot] {
                write_value(doc, &node.key, value);
            }
        } else if node.children.iter().any(|c| has_value(c, values)) {
            let mut sub = doc.begin(&node.key, false);
            write_nodes(&mut sub, &node.children, values);
            sub.end();
        }
    }
}

fn has_value(node: &Node, values: &[Option<CellValue>]) -> bool {
    node.slot.is_some_and(|s| values[s].is_some())
        || node.children.iter().any(|c| has_value(c, values))
}

fn write_value(doc: &mut DocWriter<'_>, key: &str, value: &CellValue) {
    match value {
        CellValue::String(s) => doc.string(key, s),
        CellValue::Decimal(d) => doc.decimal128(key, d.to_decimal128_bytes()),
        CellValue::Integer(n) => match i32::try_from(*n) {
            Ok(small) => doc.int32(key, small),
            Err(_) => doc.int64(key, *n),
        },
        CellValue::Boolean(b) => doc.boolean(key, *b),
        CellValue::Timestamp(ms) => doc.datetime(key, *ms),
        CellValue::List(items) => {
            let mut array = doc.begin(key, true);
            for (i, item) in items.iter().enumerate() {
                array.array_string(i, item);
            }
            array.end();
        }
    }
}

/// Lower-case hex of a 128-bit hash, written into `buf` (no allocation per row).
fn hex32(hash: u128, buf: &mut [u8; 32]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = DIGITS[(hash >> (124 - 4 * i) & 0xf) as usize];
    }
    std::str::from_utf8(buf).expect("hex digits are ASCII")
}
