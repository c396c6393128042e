//! Files as teams export them: other encodings, other delimiters, decimal commas, compressed files,
//! spreadsheets. Everything here turns such a file into the plain UTF-8 CSV the rest of the engine
//! reads, and says what it did ([`ReadAs`], shown in the report's `source` and the email).
//!
//! **Design: decode once, stage, plan over the staged copy.** The validate step plans chunks as
//! byte ranges and each transform reads its range with a ranged GET. Byte ranges of a gzip stream,
//! a UTF-16 file or an `.xlsx` mean nothing, so when the object is not plain UTF-8 CSV, validate
//! streams it once through the decoders ([`open`]) and uploads the decoded CSV to
//! `staging/<run>/input.csv` (multipart, 8 MiB parts, while the planner reads the same bytes: memory
//! stays bounded whatever the size), then plans over that copy; transforms read ranges of the
//! copy. A plain UTF-8 file (BOM or not) takes exactly the old path: no copy, no extra pass. The
//! alternative, seekable compression indexes per format, would not cover UTF-16 or spreadsheets
//! and costs a decompression from the start of each chunk's block.
//!
//! What is recognised, and how:
//! - compression by magic bytes, never by name: gzip (`1f 8b`, multi-member too), zstd
//!   (`28 b5 2f fd`), zip (`PK\3\4`) holding one CSV (its first file; streamed, not seeked);
//! - an `.xlsx` is a zip whose first entry is spreadsheet XML: its first sheet (or the one named by
//!   `chute-sheet`) is read with calamine and written as CSV, one line per sheet row, so reported
//!   lines are the sheet's row numbers (unless a cell holds a line break);
//! - encodings: a UTF-16 LE/BE BOM, else the declared encoding (`chute-encoding`, the schema's or
//!   the source's `[format] encoding`, default UTF-8), any WHATWG label `encoding_rs` knows. Bytes
//!   malformed in the declared encoding become an invalid UTF-8 byte, so the row is rejected as
//!   `encoding`, never turned into replacement characters;
//! - delimiters: fixed, or `auto` ([`choose_delimiter`] by the schema's columns; without a schema,
//!   as `chute schema draft` reads a sample, [`widest_delimiter`]).
//!
//! The default stays strict UTF-8: a stray non-UTF-8 row is rejected, and the report adds a hint
//! with what the rows decode as ([`NotUtf8`], using `chardetng`, fed by the transform).

mod decode;
mod detect;
mod sheet;

use std::io::{BufRead, BufReader, Read};

use encoding_rs::Encoding;
use serde::{Deserialize, Serialize};

use crate::error::{FileCode, FileError};
use crate::format::{delimiter_name, Delimiter, Format, ResolvedFormat};
use crate::header::{Header, Target};
use crate::schema::Schema;

pub use decode::{Compression, Staging};
pub use detect::{NotUtf8, NotUtf8Rows};

/// The delimiters `delimiter = "auto"` tries, in order of preference on a tie.
pub const AUTO_CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// How a file was read: in the stored plan for the transforms, in the report's `source` for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAs {
    /// `csv` or `xlsx`.
    pub format: String,
    /// `gzip`, `zstd` or `zip`; absent when the file was not compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// The encoding the bytes were decoded from (`UTF-8`, `windows-1252`, `UTF-16LE`).
    pub encoding: String,
    /// `,` `;` `|` or `tab`.
    pub delimiter: String,
    /// The number format as an example: `1234.56`, `1.234,56`, `1 234,56`.
    pub numbers: String,
    /// The sheet read, for a spreadsheet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
}

impl ReadAs {
    /// One line for the email: `CSV (gzip), windows-1252, semicolon-separated, numbers like 1.234,56`.
    pub fn line(&self) -> String {
        let mut line = self.format.to_uppercase();
        if let Some(sheet) = &self.sheet {
            line.push_str(&format!(" sheet {sheet}"));
        }
        if let Some(compression) = &self.compression {
            line.push_str(&format!(" ({compression})"));
        }
        if self.format == "csv" {
            let separated = match self.delimiter.as_str() {
                "," => "comma",
                ";" => "semicolon",
                "|" => "pipe",
                other => other,
            };
            line.push_str(&format!(", {}, {separated}-separated", self.encoding));
        }
        line.push_str(&format!(", numbers like {}", self.numbers));
        line
    }
}

/// How validate read the file, stored in the plan: the transforms read the same way (and from the
/// staged copy when there is one), the report shows [`ReadAs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInput {
    pub read_as: ReadAs,
    /// Stored as `delimiter` and `numbers` beside `read_as`.
    #[serde(flatten)]
    pub format: ResolvedFormat,
    /// The decoded copy (`staging/<run>/input.csv`) chunks are byte ranges of; `None` for a plain
    /// UTF-8 CSV, whose chunks are ranges of the object itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<StagedCopy>,
}

/// An object the run wrote and reads back: ranged GETs check its ETag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedCopy {
    pub key: String,
    pub etag: String,
}

/// A file opened for planning: the plain UTF-8 CSV to read, the delimiter and number format it
/// is read with, and what was done to get there.
pub struct Opened<'a> {
    pub reader: Box<dyn BufRead + Send + 'a>,
    pub format: ResolvedFormat,
    pub read_as: ReadAs,
    /// False for a plain UTF-8 CSV: its bytes are read as they are, no staged copy needed.
    pub decoded: bool,
    /// What the reading chose (the `auto` delimiter), for the report's warnings.
    pub warnings: Vec<String>,
}

/// Reads at most this much of an `.xlsx` (it is read into memory: the format needs seeking).
pub const MAX_XLSX_BYTES: u64 = 512 << 20;

/// Opens `input` (the object's bytes as stored) read with `format`: recognises compression and
/// spreadsheets by their magic bytes, transcodes, and resolves an `auto` delimiter, by the
/// `schema`'s known columns or, without a schema (a sample being drafted), by the most header
/// cells. `sheet` names the sheet of a spreadsheet (`chute-sheet`), else the first.
pub fn open<'a, R: BufRead + Send + 'a>(
    input: &'a mut R,
    schema: Option<&Schema>,
    format: &Format,
    sheet: Option<&str>,
) -> Result<Opened<'a>, FileError> {
    let magic = input.fill_buf().map_err(unreadable)?.to_vec();
    let compression = Compression::sniff(&magic);
    let mut decompressed: Box<dyn BufRead + Send + 'a> = match compression {
        Some(c) => Box::new(BufReader::with_capacity(256 * 1024, c.decoder(input)?)),
        None => Box::new(input),
    };
    let (mut reader, encoding, sheet_read): (Box<dyn BufRead + Send + 'a>, _, _) = if compression
        == Some(Compression::Xlsx)
    {
        let mut bytes = Vec::new();
        (&mut decompressed)
            .take(MAX_XLSX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        if bytes.len() as u64 > MAX_XLSX_BYTES {
            return Err(FileError::new(
                FileCode::TooLarge,
                format!("the spreadsheet is larger than {MAX_XLSX_BYTES} bytes; export it as CSV"),
            ));
        }
        let (csv, name) = sheet::to_csv(bytes, sheet)?;
        (
            Box::new(std::io::Cursor::new(csv)),
            encoding_rs::UTF_8,
            Some(name),
        )
    } else {
        let head = decompressed.fill_buf().map_err(unreadable)?;
        let encoding = Encoding::for_bom(head).map_or(format.encoding, |(e, _)| e);
        if encoding == encoding_rs::UTF_8 {
            (decompressed, encoding, None)
        } else {
            let transcoded = decode::Transcode::new(decompressed, encoding);
            (
                Box::new(BufReader::with_capacity(256 * 1024, transcoded)),
                encoding,
                None,
            )
        }
    };
    let mut warnings = Vec::new();
    let delimiter = match (sheet_read.is_some(), format.delimiter) {
        (true, _) => b',',
        (false, Delimiter::Byte(b)) => b,
        (false, Delimiter::Auto) => {
            let (byte, warning) = match schema {
                Some(schema) => choose_delimiter(&mut reader, schema)?,
                None => widest_delimiter(&mut reader)?,
            };
            warnings.push(warning);
            byte
        }
    };
    let decoded = compression.is_some() || encoding != encoding_rs::UTF_8;
    Ok(Opened {
        reader,
        format: ResolvedFormat {
            delimiter,
            numbers: format.numbers,
        },
        read_as: ReadAs {
            format: if sheet_read.is_some() { "xlsx" } else { "csv" }.to_string(),
            compression: compression
                .filter(|c| *c != Compression::Xlsx)
                .map(|c| c.name().to_string()),
            encoding: encoding.name().to_string(),
            delimiter: delimiter_name(delimiter),
            numbers: format.numbers.example(),
            sheet: sheet_read,
        },
        decoded,
        warnings,
    })
}

/// `delimiter = "auto"`: the candidate (`,` `;` tab `|`) under which the header row resolves
/// against the schema with the most known columns; a tie goes to the earlier candidate. Refuses the
/// file, naming the candidates, when none resolves.
pub fn choose_delimiter(
    reader: &mut dyn BufRead,
    schema: &Schema,
) -> Result<(u8, String), FileError> {
    let line = header_line(reader)?;
    let mut best: Option<(u8, usize)> = None;
    let mut first_error = None;
    for candidate in AUTO_CANDIDATES {
        let Some(record) = split_header(line, candidate) else {
            continue;
        };
        let cells: Vec<&[u8]> = record.iter().collect();
        match Header::resolve(schema, &cells) {
            Ok(header) => {
                let known = header
                    .targets
                    .iter()
                    .filter(|t| **t != Target::Unknown)
                    .count();
                if best.is_none_or(|(_, most)| known > most) {
                    best = Some((candidate, known));
                }
            }
            Err(e) => {
                first_error.get_or_insert(e.message);
            }
        }
    }
    let tried = AUTO_CANDIDATES
        .iter()
        .map(|&b| format!("`{}`", delimiter_name(b)))
        .collect::<Vec<_>>()
        .join(" ");
    match best {
        Some((byte, known)) => Ok((
            byte,
            format!(
                "delimiter auto: `{}` splits the header into {known} known columns (tried {tried})",
                delimiter_name(byte)
            ),
        )),
        None => Err(FileError::new(
            FileCode::MissingColumn,
            format!(
                "delimiter auto: the header matches the schema under none of {tried}; split on `,`: {}",
                first_error.unwrap_or_default()
            ),
        )),
    }
}

/// `delimiter = "auto"` without a schema to match (`chute schema draft`): the candidate that
/// splits the header into the most non-empty cells; a tie goes to the earlier candidate.
pub fn widest_delimiter(reader: &mut dyn BufRead) -> Result<(u8, String), FileError> {
    let line = header_line(reader)?;
    let mut best = (AUTO_CANDIDATES[0], 0);
    for candidate in AUTO_CANDIDATES {
        let cells = split_header(line, candidate).map_or(0, |record| {
            record.iter().filter(|cell| !cell.is_empty()).count()
        });
        if cells > best.1 {
            best = (candidate, cells);
        }
    }
    let (byte, cells) = best;
    Ok((
        byte,
        format!(
            "delimiter auto: `{}` splits the header into {cells} columns, the most of {}",
            delimiter_name(byte),
            AUTO_CANDIDATES
                .iter()
                .map(|&b| format!("`{}`", delimiter_name(b)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ))
}

/// The first line of the decoded file (BOM removed), as far as the reader's buffer holds it.
fn header_line(reader: &mut dyn BufRead) -> Result<&[u8], FileError> {
    let head = reader.fill_buf().map_err(unreadable)?;
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    Ok(match memchr::memchr(b'\n', head) {
        Some(end) => &head[..end],
        None => head,
    })
}

/// The header line split on `candidate`, or `None` when it does not read as a record.
fn split_header(line: &[u8], candidate: u8) -> Option<csv::ByteRecord> {
    let mut record = csv::ByteRecord::new();
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(candidate)
        .from_reader(line)
        .read_byte_record(&mut record)
        .ok()?;
    Some(record)
}

fn unreadable(e: std::io::Error) -> FileError {
    FileError::new(
        FileCode::Unreadable,
        format!("the file could not be read: {e}"),
    )
}

/// What must still hold once the planner has read an opened file to its end (`input` is the stream
/// [`open`] was given, now past the data read): a zip held no other file. Nothing to read for any
/// other file.
pub fn finish_reading<R: BufRead>(input: &mut R, read_as: &ReadAs) -> Result<(), FileError> {
    if read_as.compression.as_deref() == Some(Compression::Zip.name()) {
        decode::no_second_file(input)?;
    }
    Ok(())
}

/// A whole file (as stored: compressed, UTF-16, a spreadsheet…) as plain UTF-8 CSV in memory,
/// for `chute check`, `chute schema draft` and tests: the same [`open`] the validate step streams
/// through, so all of them read a file alike. A plain UTF-8 CSV comes back borrowed, uncopied.
pub struct Decoded<'b> {
    pub csv: std::borrow::Cow<'b, [u8]>,
    pub format: ResolvedFormat,
    pub read_as: ReadAs,
    pub warnings: Vec<String>,
}

pub fn decode_all<'b>(
    bytes: &'b [u8],
    schema: Option<&Schema>,
    format: &Format,
    sheet: Option<&str>,
) -> Result<Decoded<'b>, FileError> {
    let mut input = bytes;
    let Opened {
        mut reader,
        format,
        read_as,
        decoded,
        warnings,
    } = open(&mut input, schema, format, sheet)?;
    let csv = if decoded {
        let mut csv = Vec::new();
        reader.read_to_end(&mut csv).map_err(unreadable)?;
        drop(reader);
        finish_reading(&mut input, &read_as)?;
        std::borrow::Cow::Owned(csv)
    } else {
        std::borrow::Cow::Borrowed(bytes)
    };
    Ok(Decoded {
        csv,
        format,
        read_as,
        warnings,
    })
}

#[cfg(test)]
mod tests;
