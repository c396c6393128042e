//! Rows to documents: validate every cell of a record against the schema, and write the valid
//! ones as BSON documents ready for staging, collecting every failing cell of the rest.
//!
//! A staged document is the product document plus `_import: {row, line, hash, defaults}`:
//! `hash` fingerprints the content so the writer can skip unchanged rows, and `defaults` holds the
//! defaults of columns the file does not have, which the writer sets only when it inserts (a file
//! without `active` must not reset `active` on products another feed maintains).
//!
//! ```
//! use chute::{plan::{plan, PlanOptions}, schema::Schema, transform::{RowRules, transform_chunk}};
//! let csv = "sku,name,price,stock,category\nA,Lamp,10,1,home\nB,,x,1,home\n";
//! let schema = Schema::products();
//! let format = schema.format.as_declared();
//! let plan = plan(csv.as_bytes(), &schema, format, &PlanOptions::default()).unwrap();
//! let rules = RowRules::new(&schema, &plan.header, format);
//! let chunk = &plan.chunks[0];
//! let bytes = &csv.as_bytes()[chunk.start as usize..chunk.end as usize];
//! let mut staged = Vec::new();
//! let outcome = transform_chunk(&rules, chunk, bytes, &[], &mut staged);
//! assert_eq!((outcome.valid, outcome.rejected.len()), (1, 1));
//! assert_eq!(outcome.rejected[0].issues.len(), 2); // empty name and bad price, both reported
//! ```

use serde::{Deserialize, Serialize};

use crate::bson_writer::DocWriter;
use crate::error::{Code, Position};
use crate::format::ResolvedFormat;
use crate::header::{Header, Target};
use crate::input::{NotUtf8, NotUtf8Rows};
use crate::records::{ChunkPlan, ChunkRecords, Fields};
use crate::rules::{parse_cell, scientific_notation, ColumnType};
use crate::schema::{join_key, Column, Schema};
use crate::value::{trim, CellValue};

/// Longest cell value quoted back in a rejection; longer ones are cut with `…`.
pub const MAX_QUOTED_VALUE: usize = 500;

/// Staged documents are uploaded in parts of this size (S3's multipart minimum is 5 MiB), so the
/// transform function holds about three parts, not a chunk's whole staged BSON (about three times
/// its CSV). See [`transform_chunk_parts`].
pub const STAGING_PART_BYTES: usize = 8 << 20;

/// Column name used for problems with a record as a whole (wrong field count).
pub const WHOLE_ROW: &str = "(row)";

/// One failing cell (or a whole-record problem) of a rejected row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub column: String,
    pub code: Code,
    pub message: String,
    pub value: String,
}

/// A rejected row with every problem found in it and its original fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    #[serde(flatten)]
    pub position: Position,
    pub issues: Vec<Issue>,
    pub fields: Vec<String>,
}

/// What transforming one chunk produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOutcome {
    pub rows: u64,
    /// Documents written to the staging buffer.
    pub valid: u64,
    /// Valid rows superseded by a later occurrence of their key.
    pub duplicate: u64,
    /// Continuation rows ([`crate::schema::Continuation`]): skipped, neither valid nor rejected.
    #[serde(default)]
    pub skipped: u64,
    pub rejected: Vec<RejectedRow>,
    /// Rejected rows that are not UTF-8, and what they decode as (the report's hint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_utf8: Option<NotUtf8Rows>,
}

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
    slots: Vec<(&'s Column, Option<usize>)>,
    /// Which slot a header cell feeds (for quoting values in rejections).
    cell_slots: Vec<Option<usize>>,
    key_slots: Vec<usize>,
    /// String columns holding identifiers ([`Column::identifier`]): checked for spreadsheet damage.
    identifier_slots: Vec<usize>,
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
            .map(|(slot, _)| slot)
            .collect::<Vec<usize>>();
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
            continuation_cells,
            layout,
            insert_defaults,
        }
    }

    /// Whether a record is a continuation row: some cells filled, all of them continuation
    /// columns (never a key column, so its key is empty).
    fn is_continuation(&self, record: &csv::StringRecord) -> bool {
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
    fn encoding_issue(&self, record: &csv::ByteRecord, field: usize) -> Issue {
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
    fn fields(&self, record: &csv::ByteRecord) -> Vec<String> {
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

/// Cuts long values so one runaway cell cannot blow up a report.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_VALUE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Transforms one chunk: every valid row not in `superseded` (sorted row numbers) is written to
/// `staged` as a BSON document; every invalid row is returned with all its problems.
pub fn transform_chunk(
    rules: &RowRules<'_>,
    chunk: &ChunkPlan,
    bytes: &[u8],
    superseded: &[u64],
    staged: &mut Vec<u8>,
) -> ChunkOutcome {
    // Staged BSON is larger than the CSV it comes from (field names and `_import` per document):
    // reserve at least that once instead of regrowing from empty.
    staged.reserve(bytes.len() + bytes.len() / 2);
    transform_into(
        rules,
        chunk,
        bytes,
        superseded,
        Some(staged),
        usize::MAX,
        |_| {},
    )
}

/// The outcome [`transform_chunk`] would return (counts and rejected rows), without writing any
/// document: for a check that wants only the outcome, building and hashing each row's BSON is
/// about a third of the transform's time.
///
/// ```
/// use chute::{plan::{plan, PlanOptions}, schema::Schema, transform::{RowRules, check_chunk, transform_chunk}};
/// let csv = "sku,name,price,stock,category\nA,Lamp,10,1,home\nB,,x,1,home\n";
/// let schema = Schema::products();
/// let format = schema.format.as_declared();
/// let plan = plan(csv.as_bytes(), &schema, format, &PlanOptions::default()).unwrap();
/// let rules = RowRules::new(&schema, &plan.header, format);
/// let chunk = &plan.chunks[0];
/// let bytes = &csv.as_bytes()[chunk.start as usize..chunk.end as usize];
/// let checked = check_chunk(&rules, chunk, bytes, &[]);
/// assert_eq!(checked, transform_chunk(&rules, chunk, bytes, &[], &mut Vec::new()));
/// assert_eq!((checked.valid, checked.rejected.len()), (1, 1));
/// ```
pub fn check_chunk(
    rules: &RowRules<'_>,
    chunk: &ChunkPlan,
    bytes: &[u8],
    superseded: &[u64],
) -> ChunkOutcome {
    transform_into(rules, chunk, bytes, superseded, None, usize::MAX, |_| {})
}

/// Like [`transform_chunk`], but hands the staged documents over in parts of at least `part_size`
/// bytes (the last may be smaller), cut between documents. A chunk's staged BSON is about three
/// times its CSV: the transform Lambda uploads each part while the next fills instead of holding
/// it all.
///
/// ```
/// use chute::{plan::{plan, PlanOptions}, schema::Schema, transform::{RowRules, transform_chunk_parts}};
/// let csv = "sku,name,price,stock,category\nA,Lamp,10,1,home\nB,Desk,90,2,office\n";
/// let schema = Schema::products();
/// let format = schema.format.as_declared();
/// let plan = plan(csv.as_bytes(), &schema, format, &PlanOptions::default()).unwrap();
/// let rules = RowRules::new(&schema, &plan.header, format);
/// let chunk = &plan.chunks[0];
/// let bytes = &csv.as_bytes()[chunk.start as usize..chunk.end as usize];
/// let mut parts = Vec::new();
/// let outcome = transform_chunk_parts(&rules, chunk, bytes, &[], 1, |part| parts.push(part));
/// assert_eq!((outcome.valid, parts.len()), (2, 2)); // one document per part at this tiny size
/// ```
pub fn transform_chunk_parts(
    rules: &RowRules<'_>,
    chunk: &ChunkPlan,
    bytes: &[u8],
    superseded: &[u64],
    part_size: usize,
    mut emit: impl FnMut(Vec<u8>),
) -> ChunkOutcome {
    // Room for the part plus the document that crosses its end, so a part rarely regrows.
    let capacity = part_size.saturating_add(part_size / 8).min(bytes.len() * 2);
    let mut part = Vec::with_capacity(capacity);
    let outcome = transform_into(
        rules,
        chunk,
        bytes,
        superseded,
        Some(&mut part),
        part_size,
        |full| emit(std::mem::replace(full, Vec::with_capacity(capacity))),
    );
    if !part.is_empty() {
        emit(part);
    }
    outcome
}

/// The row loop: `full` gets `staged` whenever it reaches `part_size` bytes; without `staged`
/// valid rows are only counted.
fn transform_into(
    rules: &RowRules<'_>,
    chunk: &ChunkPlan,
    bytes: &[u8],
    superseded: &[u64],
    mut staged: Option<&mut Vec<u8>>,
    part_size: usize,
    mut full: impl FnMut(&mut Vec<u8>),
) -> ChunkOutcome {
    let mut records = ChunkRecords::new(rules.format.delimiter, chunk, bytes);
    let mut record = csv::StringRecord::new();
    let mut spare_values = Vec::new();
    let mut issues = Vec::new();
    let mut outcome = ChunkOutcome::default();
    let mut not_utf8 = NotUtf8::default();
    while let Some(located) = records.next(&mut record) {
        outcome.rows += 1;
        if matches!(&located.fields, Fields::Text(text) if rules.is_continuation(text)) {
            outcome.skipped += 1;
            continue;
        }
        let mut values = recycle(std::mem::take(&mut spare_values));
        let valid = match &located.fields {
            Fields::Text(text) => rules.check(text, &mut values, &mut issues),
            Fields::NotUtf8 { record, field } => {
                not_utf8.count(located.position.row, record.as_slice());
                issues.push(rules.encoding_issue(record, *field));
                false
            }
        };
        if !valid {
            outcome.rejected.push(RejectedRow {
                position: located.position,
                issues: std::mem::take(&mut issues),
                fields: rules.fields(located.fields.bytes()),
            });
        } else if superseded.binary_search(&located.position.row).is_ok() {
            outcome.duplicate += 1;
        } else {
            outcome.valid += 1;
            if let Some(staged) = staged.as_deref_mut() {
                rules.write_document(&values, located.position, staged);
                if staged.len() >= part_size {
                    full(staged);
                }
            }
        }
        spare_values = recycle(values);
    }
    outcome.not_utf8 = not_utf8.finish();
    outcome
}

/// Hands a values vector's allocation from one record's lifetime to the next (it is emptied, so
/// nothing borrowed survives; collecting in place keeps the buffer).
pub fn recycle<'b>(mut values: Vec<Option<CellValue<'_>>>) -> Vec<Option<CellValue<'b>>> {
    values.clear();
    values.into_iter().map(|_| None).collect()
}
