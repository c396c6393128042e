//! The hint for a UTF-8 file with rows that are not UTF-8: how many, and what they decode as.
//! The rows are still rejected (a mixed file must not be guessed into mojibake); the hint tells
//! the sender which `chute-encoding` would read them.

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};

/// Bytes of bad rows the detector sees at most: plenty for a guess, bounded for a huge file.
const MAX_FED: usize = 1 << 20;

/// Rows of a UTF-8 read that are not UTF-8, and a detector fed with them.
pub struct NotUtf8 {
    rows: u64,
    first_row: u64,
    detector: EncodingDetector,
    fed: usize,
}

impl Default for NotUtf8 {
    fn default() -> Self {
        NotUtf8 {
            rows: 0,
            first_row: 0,
            detector: EncodingDetector::new(Iso2022JpDetection::Deny),
            fed: 0,
        }
    }
}

impl NotUtf8 {
    /// Counts data row `row`, whose bytes are `record`, if it is not UTF-8.
    pub fn check(&mut self, row: u64, record: &[u8]) {
        if std::str::from_utf8(record).is_ok() {
            return;
        }
        self.count(row, record);
    }

    #[cold]
    fn count(&mut self, row: u64, record: &[u8]) {
        if self.rows == 0 {
            self.first_row = row;
        }
        self.rows += 1;
        if self.fed < MAX_FED {
            self.detector.feed(record, false);
            self.detector.feed(b"\n", false);
            self.fed += record.len() + 1;
        }
    }

    /// `412 rows are not UTF-8 (the first is row 7); they decode as windows-1252 — set …`.
    pub fn warning(self) -> Option<String> {
        if self.rows == 0 {
            return None;
        }
        let mut detector = self.detector;
        detector.feed(b"", true);
        let guess = detector.guess(None, Utf8Detection::Deny).name();
        let rows = match self.rows {
            1 => "1 row is".to_string(),
            n => format!("{n} rows are"),
        };
        Some(format!(
            "{rows} not UTF-8 (the first is row {}); they decode as {guess} — set chute-encoding: {guess} (object metadata) or encoding = \"{guess}\" in the schema's [format]",
            self.first_row
        ))
    }
}

/// Validates the bytes the planner reads as UTF-8 a block at a time, which costs far less than
/// validating record by record; once a block fails (an invalid byte, or a character cut at the
/// block's end) records are checked one by one ([`NotUtf8::check`]) from there on. A record's
/// bytes are all read by the time it is parsed, so no bad record is missed.
pub struct Utf8Watch<R> {
    inner: R,
    invalid: bool,
}

impl<R> Utf8Watch<R> {
    pub fn new(inner: R) -> Self {
        Utf8Watch {
            inner,
            invalid: false,
        }
    }

    /// Whether some block read so far was not (wholly) UTF-8.
    pub fn seen_invalid(&self) -> bool {
        self.invalid
    }
}

impl<R: std::io::Read> std::io::Read for Utf8Watch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        // encoding_rs validates with SIMD (simdutf8): several times faster than `str::from_utf8`.
        if !self.invalid && encoding_rs::Encoding::utf8_valid_up_to(&buf[..n]) != n {
            self.invalid = true;
        }
        Ok(n)
    }
}
