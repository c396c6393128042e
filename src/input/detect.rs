//! The hint for a UTF-8 file with rows that are not UTF-8: how many, and what they decode as.
//! The rows are still rejected (a mixed file must not be guessed into mojibake); the hint tells
//! the sender which `chute-encoding` would read them.
//!
//! The transform finds such rows anyway (it reads every record as UTF-8), so the detector is fed
//! there, on the rejection path only: a clean file pays nothing for the hint. Each chunk returns
//! its [`NotUtf8Rows`]; the report adds them up ([`NotUtf8Rows::merge`]).

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use serde::{Deserialize, Serialize};

/// Bytes of bad rows the detector sees at most: plenty for a guess, bounded for a huge chunk.
const MAX_FED: usize = 1 << 20;

/// Rows of one chunk that are not UTF-8, and a detector fed with them (built with the first such
/// row: a clean chunk never makes one).
#[derive(Default)]
pub struct NotUtf8 {
    rows: u64,
    first_row: u64,
    detector: Option<EncodingDetector>,
    fed: usize,
}

impl NotUtf8 {
    /// Counts data row `row`, whose bytes `record` are not UTF-8.
    #[cold]
    pub fn count(&mut self, row: u64, record: &[u8]) {
        if self.rows == 0 {
            self.first_row = row;
        }
        self.rows += 1;
        if self.fed < MAX_FED {
            let detector = self
                .detector
                .get_or_insert_with(|| EncodingDetector::new(Iso2022JpDetection::Deny));
            detector.feed(record, false);
            detector.feed(b"\n", false);
            self.fed += record.len() + 1;
        }
    }

    /// The count and the detector's guess, if any row was counted.
    pub fn finish(self) -> Option<NotUtf8Rows> {
        let mut detector = self.detector?;
        detector.feed(b"", true);
        Some(NotUtf8Rows {
            rows: self.rows,
            first_row: self.first_row,
            decode_as: detector.guess(None, Utf8Detection::Deny).name().to_string(),
        })
    }
}

/// Rows that are not UTF-8 (of a chunk, or of the file once merged) and what they decode as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotUtf8Rows {
    pub rows: u64,
    /// The first such row's number (data rows from 1).
    pub first_row: u64,
    /// The encoding `chardetng` guesses for those rows' bytes (a WHATWG name, `windows-1252`).
    pub decode_as: String,
}

impl NotUtf8Rows {
    /// The chunks' findings as one: rows added up, the first row, and the guess most rows got
    /// (the first such guess on a tie).
    pub fn merge<'a>(chunks: impl IntoIterator<Item = &'a NotUtf8Rows>) -> Option<NotUtf8Rows> {
        let chunks: Vec<&NotUtf8Rows> = chunks.into_iter().collect();
        let rows_as = |name: &str| -> u64 {
            chunks
                .iter()
                .filter(|c| c.decode_as == name)
                .map(|c| c.rows)
                .sum()
        };
        // `max_by_key` keeps the last of equals: reversed, that is the first.
        let guess = chunks.iter().rev().max_by_key(|c| rows_as(&c.decode_as))?;
        Some(NotUtf8Rows {
            rows: chunks.iter().map(|c| c.rows).sum(),
            first_row: chunks.iter().map(|c| c.first_row).min()?,
            decode_as: guess.decode_as.clone(),
        })
    }

    /// `412 rows are not UTF-8 (the first is row 7); they decode as windows-1252 — set …`.
    pub fn warning(&self) -> String {
        let rows = match self.rows {
            1 => "1 row is".to_string(),
            n => format!("{n} rows are"),
        };
        let guess = &self.decode_as;
        format!(
            "{rows} not UTF-8 (the first is row {}); they decode as {guess} — set chute-encoding: {guess} (object metadata) or encoding = \"{guess}\" in the schema's [format]",
            self.first_row
        )
    }
}
