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

mod rows;

use serde::{Deserialize, Serialize};

use crate::error::{Code, Position};
use crate::input::{NotUtf8, NotUtf8Rows};
use crate::records::{unclosed_quote, ChunkPlan, ChunkRecords, Fields};
use crate::rules::{damage_of, DamagedValues};
use crate::value::{trim, CellValue};

pub use rows::RowRules;

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
    /// Damaged identifiers kept as written (`damage = "warn"`), for the report's warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamagedValues>,
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
            if located.unclosed_quote {
                for issue in issues.iter_mut().filter(|i| i.code == Code::FieldCount) {
                    issue.message = unclosed_quote(located.position.line, &issue.message);
                }
            }
            outcome.rejected.push(RejectedRow {
                position: located.position,
                issues: std::mem::take(&mut issues),
                fields: rules.fields(located.fields.bytes()),
            });
        } else if superseded.binary_search(&located.position.row).is_ok() {
            outcome.duplicate += 1;
        } else {
            outcome.valid += 1;
            if let Fields::Text(text) = &located.fields {
                for &slot in &rules.warn_slots {
                    let (column, cell) = rules.slots[slot];
                    let value = cell.and_then(|c| text.get(c)).map_or("", trim);
                    if let Some(damage) = damage_of(column.kind, value) {
                        let row = located.position.row;
                        DamagedValues::count(&mut outcome.damaged, &column.name, damage, row);
                    }
                }
            }
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
