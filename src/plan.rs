//! The chunk planner: one streaming pass over a file that cuts it into chunks at exact record
//! boundaries and finds keys that occur more than once.
//!
//! Quoted fields may hold newlines, so a chunk boundary can only come from the parser itself: each
//! chunk starts where a record starts, and carries the row and line numbers of that record so reading
//! chunks one by one numbers rows exactly as a single pass would.
//!
//! ```
//! use chute::{plan::{plan, PlanOptions}, schema::Schema};
//! let csv = "sku,name,price,stock,category\nA,Lamp,10,1,home\nB,Desk,99.5,2,home\nA,Lamp,11,1,home\n";
//! let options = PlanOptions { chunk_bytes: 20, ..PlanOptions::default() };
//! let schema = Schema::products();
//! let plan = plan(csv.as_bytes(), &schema, schema.format.as_declared(), &options).unwrap();
//! assert_eq!(plan.rows, 3);
//! assert_eq!(plan.chunks.len(), 2);
//! assert_eq!(plan.duplicate_fingerprints.len(), 1); // `A` twice
//! ```

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader, Read};

use serde::{Deserialize, Serialize};

use crate::error::{FileCode, FileError};
use crate::format::ResolvedFormat;
use crate::header::Header;
use crate::records::{csv_reader, ChunkPlan};
use crate::schema::{Schema, KEY_SEPARATOR};

/// Limits and sizes for planning; all are configuration with safe defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Target chunk size in bytes; a chunk ends at the first record boundary at or past it.
    pub chunk_bytes: u64,
    /// Largest file accepted.
    pub max_file_bytes: u64,
    /// Largest single record (a runaway quote can swallow the rest of a file into one record).
    pub max_record_bytes: usize,
    /// Most header columns accepted.
    pub max_columns: usize,
    /// Most keys (rows with a key) the planner holds a fingerprint of: past it the file is refused
    /// as `too_many_keys` instead of running the function out of memory. See
    /// [`max_keys_for_memory`].
    pub max_keys: u64,
}

/// Bytes the planner holds per key: an 8-byte fingerprint, measured at ~12 MB per million keys with
/// the vector's growth (README Performance), plus a margin.
const BYTES_PER_KEY: u64 = 16;
/// Memory kept for everything else in the process: runtime, clients, read buffers, the plan.
const HEADROOM_MB: u64 = 256;

/// The key ceiling of a process with `memory_mb` of memory (a Lambda's
/// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`).
pub fn max_keys_for_memory(memory_mb: u64) -> u64 {
    memory_mb.saturating_sub(HEADROOM_MB) * 1024 * 1024 / BYTES_PER_KEY
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            chunk_bytes: 64 * 1024 * 1024,
            max_file_bytes: 50 * 1024 * 1024 * 1024,
            max_record_bytes: 1024 * 1024,
            max_columns: 1000,
            max_keys: u64::MAX,
        }
    }
}

/// The result of planning a file.
#[derive(Debug, Clone)]
pub struct Plan {
    pub header: Header,
    /// Byte offset where data starts (after the BOM and header).
    pub data_start: u64,
    pub file_bytes: u64,
    pub rows: u64,
    pub chunks: Vec<ChunkPlan>,
    /// Fingerprints of keys seen more than once, sorted. Rows carrying them need a second look
    /// (see [`crate::dedup`]) to decide which occurrence wins; a fingerprint collision only costs
    /// that look, since the second pass compares the keys themselves.
    pub duplicate_fingerprints: Vec<u64>,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Fingerprint of a record's natural key: 8 bytes whatever the key length. Cells are trimmed, as
/// the row rules trim them.
pub fn key_fingerprint(record: &csv::ByteRecord, key_cells: &[usize]) -> Option<u64> {
    if let [cell] = key_cells {
        let value = trim_cell(record.get(*cell)?);
        return (!value.is_empty()).then(|| xxhash_rust::xxh3::xxh3_64(value));
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    for (i, &cell) in key_cells.iter().enumerate() {
        let value = trim_cell(record.get(cell)?);
        if value.is_empty() {
            return None;
        }
        if i > 0 {
            hasher.update(&[KEY_SEPARATOR as u8]);
        }
        hasher.update(value);
    }
    Some(hasher.digest())
}

/// Trims as the row rules do (Unicode whitespace), so equal keys get equal fingerprints.
fn trim_cell(cell: &[u8]) -> &[u8] {
    if cell.is_ascii() {
        return cell.trim_ascii();
    }
    match std::str::from_utf8(cell) {
        Ok(text) => text.trim().as_bytes(),
        Err(_) => cell.trim_ascii(),
    }
}

/// Fingerprints are already uniformly distributed; hashing them again is wasted work.
#[derive(Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

pub type FingerprintSet = HashSet<u64, BuildHasherDefault<FingerprintHasher>>;

/// Reads a whole file once, split as `format` says: resolves the header, cuts chunks, finds
/// duplicate keys.
pub fn plan<R: Read>(
    input: R,
    schema: &Schema,
    format: ResolvedFormat,
    options: &PlanOptions,
) -> Result<Plan, FileError> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let bom = {
        let head = input.fill_buf().map_err(io_error)?;
        if head.starts_with(UTF8_BOM) {
            UTF8_BOM.len()
        } else {
            0
        }
    };
    input.consume(bom);
    let bom = bom as u64;

    let mut reader = csv_reader(format.delimiter, input);
    let mut record = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut record).map_err(csv_error)? {
        return Err(FileError::new(
            FileCode::EmptyFile,
            "the file is empty: it has no header row",
        ));
    }
    if record.len() > options.max_columns {
        return Err(FileError::new(
            FileCode::TooManyColumns,
            format!(
                "the header has {} columns; at most {} are accepted",
                record.len(),
                options.max_columns
            ),
        ));
    }
    let cells: Vec<&[u8]> = record.iter().collect();
    let header = Header::resolve(schema, &cells)?;
    let key_cells = header.key_cells(schema);
    let data_start = bom + reader.position().byte();

    let mut chunks = Vec::new();
    // Every key's fingerprint, sorted at the end to find repeats: appending is sequential and
    // 8 bytes a row, where a hash set costs a cache miss per row and several times the memory.
    let mut fingerprints: Vec<u64> = Vec::new();
    let mut rows: u64 = 0;
    let mut current: Option<ChunkPlan> = None;
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        rows += 1;
        let position = record
            .position()
            .expect("records read from a reader have a position");
        let start = bom + position.byte();
        // The csv reader counts every LF it passes, quoted or not: the line at `start`.
        let line = position.line();
        check_size(start, options)?;
        if record.as_slice().len() > options.max_record_bytes {
            return Err(FileError::new(
                FileCode::RecordTooLarge,
                format!(
                    "row {rows} (near line {line}) is {} bytes; records over {} bytes are refused (often an unclosed quote)",
                    record.as_slice().len(),
                    options.max_record_bytes
                ),
            ));
        }
        match &mut current {
            Some(chunk) if start - chunk.start < options.chunk_bytes => chunk.rows += 1,
            _ => {
                if let Some(mut done) = current.take() {
                    done.end = start;
                    chunks.push(done);
                }
                current = Some(ChunkPlan {
                    index: chunks.len() as u32,
                    start,
                    end: start,
                    first_row: rows,
                    first_line: line,
                    rows: 1,
                });
            }
        }
        fingerprints.extend(key_fingerprint(&record, &key_cells));
        if fingerprints.len() as u64 > options.max_keys {
            return Err(FileError::new(
                FileCode::TooManyKeys,
                format!(
                    "row {rows} (near line {line}) takes the file past {} keys, the most validate's memory can check for duplicates; give validate more memory (stack parameter ValidateMemoryMb, up to 10240 MB) or split the file",
                    options.max_keys
                ),
            ));
        }
    }
    let file_bytes = bom + reader.position().byte();
    check_size(file_bytes, options)?;
    if let Some(mut done) = current.take() {
        done.end = file_bytes;
        chunks.push(done);
    }
    let duplicate_fingerprints = repeated(fingerprints);
    Ok(Plan {
        header,
        data_start,
        file_bytes,
        rows,
        chunks,
        duplicate_fingerprints,
    })
}

/// The values that occur more than once, sorted and each once.
fn repeated(mut values: Vec<u64>) -> Vec<u64> {
    values.sort_unstable();
    let mut repeats: Vec<u64> = values
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    repeats.dedup();
    repeats
}

fn check_size(bytes: u64, options: &PlanOptions) -> Result<(), FileError> {
    if bytes > options.max_file_bytes {
        return Err(FileError::new(
            FileCode::TooLarge,
            format!(
                "the file is larger than the {} byte limit",
                options.max_file_bytes
            ),
        ));
    }
    Ok(())
}

fn io_error(e: std::io::Error) -> FileError {
    FileError::new(
        FileCode::Unreadable,
        format!("the file could not be read: {e}"),
    )
}

fn csv_error(e: csv::Error) -> FileError {
    FileError::new(
        FileCode::Unreadable,
        format!("the file could not be read: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_ceiling_follows_memory() {
        assert_eq!(max_keys_for_memory(1024), 50_331_648);
        assert_eq!(max_keys_for_memory(3008), 180_355_072);
        assert_eq!(max_keys_for_memory(100), 0);
    }
}
