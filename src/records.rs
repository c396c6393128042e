//! Reading CSV records with the settings every pass shares (planner, duplicate scan, transform),
//! so all passes agree on where records start, and numbering a chunk's rows and lines as one pass
//! over the whole file would.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::Position;

/// One chunk: a byte range of the file holding whole records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlan {
    pub index: u32,
    /// Byte offset of the chunk's first record.
    pub start: u64,
    /// Byte offset one past the chunk's end (the next chunk's start, or the file length).
    pub end: u64,
    /// Data record number of the first record (the first record after the header is row 1).
    pub first_row: u64,
    /// Physical line at the chunk's first byte (the header is line 1). A chunk can begin with the
    /// previous record's line ending or blank lines; the chunk reader counts past them.
    pub first_line: u64,
    pub rows: u64,
}

/// Builds a CSV reader with the settings every pass uses (so all passes agree on records), split
/// on the file's `delimiter` (its [`crate::format::ResolvedFormat`]'s).
pub fn csv_reader<R: Read>(delimiter: u8, input: R) -> csv::Reader<R> {
    reader_settings(delimiter).from_reader(input)
}

fn reader_settings(delimiter: u8) -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(256 * 1024);
    builder
}

/// A wrong field count's message (`field_count`, "has 2 fields; …") when a quote opened on `line`
/// never closed ([`Located::unclosed_quote`]): the quote is the cause to name.
pub fn unclosed_quote(line: u64, field_count: &str) -> String {
    format!("has an unclosed quote: the quote opened on line {line} never closes, so the rest of the file was read as this one row, which {field_count}; close the quote (and double a quote inside a quoted field: `\"\"`)")
}

/// Reads a chunk's bytes record by record, numbering rows and lines as a single pass over the
/// whole file would.
pub struct ChunkRecords<'a> {
    bytes: &'a [u8],
    reader: csv::Reader<&'a [u8]>,
    delimiter: u8,
    next_row: u64,
    /// Line and chunk offset where the previous record's content starts.
    line: u64,
    offset: usize,
}

/// A record and where it sits in the file.
pub struct Located<'r> {
    pub position: Position,
    pub fields: Fields<'r>,
    /// The record runs to the chunk's end with an odd number of quotes: a quote that never closed
    /// swallowed the rest of the chunk, so a wrong field count is that quote's doing.
    pub unclosed_quote: bool,
}

/// A record's fields: text, or (rarely) the raw bytes of a record that is not UTF-8.
pub enum Fields<'r> {
    Text(&'r csv::StringRecord),
    NotUtf8 {
        record: csv::ByteRecord,
        /// The first field that is not UTF-8.
        field: usize,
    },
}

impl Fields<'_> {
    pub fn bytes(&self) -> &csv::ByteRecord {
        match self {
            Fields::Text(record) => record.as_byte_record(),
            Fields::NotUtf8 { record, .. } => record,
        }
    }
}

impl<'a> ChunkRecords<'a> {
    /// Records of `bytes` (the chunk's range of the file) split on `delimiter`.
    pub fn new(delimiter: u8, chunk: &ChunkPlan, bytes: &'a [u8]) -> Self {
        ChunkRecords {
            bytes,
            reader: csv_reader(delimiter, bytes),
            delimiter,
            next_row: chunk.first_row,
            line: chunk.first_line,
            offset: 0,
        }
    }

    /// Reads the next record into `record`; `None` at the end of the chunk.
    pub fn next<'r>(&mut self, record: &'r mut csv::StringRecord) -> Option<Located<'r>> {
        // Reading from a byte slice cannot fail with I/O; the one other error is invalid UTF-8,
        // after which the reader has consumed the record and goes on with the next.
        let (span, fields) = match self.reader.read_record(record) {
            Ok(false) => return None,
            Ok(true) => (
                record.position().map_or(self.offset, |p| p.byte() as usize),
                Fields::Text(record),
            ),
            Err(e) => match e.into_kind() {
                csv::ErrorKind::Utf8 { pos, err } => {
                    let span = pos.map_or(self.offset, |p| p.byte() as usize);
                    (
                        span,
                        Fields::NotUtf8 {
                            record: self.raw_record(span),
                            field: err.field(),
                        },
                    )
                }
                _ => return None,
            },
        };
        // Only a chunk's last record can run to its end, so the quotes are counted once a chunk.
        let unclosed_quote = self.reader.position().byte() as usize >= self.bytes.len()
            && memchr::memchr_iter(b'"', &self.bytes[span..]).count() % 2 == 1;
        let row = self.next_row;
        self.next_row += 1;
        let content = span
            + self.bytes[span..]
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
        self.line += memchr::memchr_iter(b'\n', &self.bytes[self.offset..content]).count() as u64;
        self.offset = content;
        Some(Located {
            position: Position {
                row,
                line: self.line,
            },
            fields,
            unclosed_quote,
        })
    }

    /// Re-reads the record starting at `span` as bytes (the text reader drops a non-UTF-8 record).
    fn raw_record(&self, span: usize) -> csv::ByteRecord {
        let mut raw = csv::ByteRecord::new();
        let mut reader = reader_settings(self.delimiter).from_reader(&self.bytes[span..]);
        // Same bytes, same settings: this reads the record the text reader refused.
        let _ = reader.read_byte_record(&mut raw);
        raw
    }
}
