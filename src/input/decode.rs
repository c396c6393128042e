//! Streaming decoders: decompression recognised by magic bytes, transcoding to UTF-8, and the tee
//! that hands the decoded bytes to the staged copy's upload while the planner reads them.

use std::io::{self, BufRead, Read};

use encoding_rs::{Decoder, DecoderResult, Encoding};

use crate::error::{FileCode, FileError};

/// How the stored bytes are packed, told by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    /// A zip holding a CSV (its first file is read).
    Zip,
    /// A zip holding a spreadsheet (`[Content_Types].xml`, `xl/…` or `_rels/…` first).
    Xlsx,
}

impl Compression {
    /// Recognises the magic bytes at the start of `head`; `None` for anything else (plain text).
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            return Some(Compression::Gzip);
        }
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Some(Compression::Zstd);
        }
        if !head.starts_with(b"PK\x03\x04") {
            return None;
        }
        // The local file header: the first entry's name is at offset 30, its length at 26.
        let name = head
            .get(26..28)
            .map(|n| u16::from_le_bytes([n[0], n[1]]) as usize)
            .and_then(|len| head.get(30..30 + len))
            .unwrap_or_default();
        let spreadsheet = [&b"[Content_Types].xml"[..], b"xl/", b"_rels/", b"docProps/"];
        Some(if spreadsheet.iter().any(|p| name.starts_with(p)) {
            Compression::Xlsx
        } else {
            Compression::Zip
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Zip => "zip",
            Compression::Xlsx => "xlsx",
        }
    }

    /// The decompressed stream (a spreadsheet passes through: it is read whole elsewhere).
    pub fn decoder<'a, R: BufRead + Send + 'a>(
        self,
        input: &'a mut R,
    ) -> Result<Box<dyn Read + Send + 'a>, FileError> {
        let named = |inner: Box<dyn Read + Send + 'a>| -> Box<dyn Read + Send + 'a> {
            Box::new(Named {
                inner,
                compression: self,
            })
        };
        Ok(match self {
            Compression::Gzip => named(Box::new(flate2::bufread::MultiGzDecoder::new(input))),
            Compression::Zstd => named(Box::new(
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| broken(self, e))?,
            )),
            Compression::Zip => {
                // Directories and macOS resource forks can come before the CSV; streaming reads
                // them through to reach the next entry.
                while skipped_entry(input.fill_buf().map_err(|e| broken(self, e))?) {
                    let mut entry = zip::read::read_zipfile_from_stream(input)
                        .map_err(|e| broken(self, e))?
                        .ok_or_else(no_file)?;
                    io::copy(&mut entry, &mut io::sink()).map_err(|e| broken(self, e))?;
                }
                named(Box::new(
                    zip::read::read_zipfile_from_stream(input)
                        .map_err(|e| broken(self, e))?
                        .ok_or_else(no_file)?,
                ))
            }
            Compression::Xlsx => Box::new(input),
        })
    }
}

/// A decompressor whose read errors say which compression's data is damaged (a bare "corrupt
/// deflate stream" does not tell the sender it was the gzip).
struct Named<'a> {
    inner: Box<dyn Read + Send + 'a>,
    compression: Compression,
}

impl Read for Named<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the {} data is damaged: {e}", self.compression.name()),
            )
        })
    }
}

/// Refuses a zip holding a second file after the one read: `input` is the stored stream, just past
/// the first file's data. Read once the planner has read that file to its end, so the check costs
/// nothing but the entries that follow (a zip of one CSV has only its central directory left).
pub fn no_second_file<R: BufRead>(input: &mut R) -> Result<(), FileError> {
    let broken = |e| broken(Compression::Zip, e);
    while let Some(mut entry) = zip::read::read_zipfile_from_stream(input).map_err(broken)? {
        if !entry.is_dir() && !entry.name().starts_with("__MACOSX/") {
            return Err(FileError::new(
                FileCode::Unreadable,
                format!(
                    "the zip holds more than one file (`{}` follows the one read); put one CSV in a zip, or drop the files one by one",
                    entry.name()
                ),
            ));
        }
        io::copy(&mut entry, &mut io::sink()).map_err(|e| broken(zip::result::ZipError::Io(e)))?;
    }
    Ok(())
}

/// Whether the zip entry whose local header starts `head` is a directory or a macOS resource fork.
fn skipped_entry(head: &[u8]) -> bool {
    if !head.starts_with(b"PK\x03\x04") {
        return false;
    }
    let name = head
        .get(26..28)
        .map(|n| u16::from_le_bytes([n[0], n[1]]) as usize)
        .and_then(|len| head.get(30..30 + len))
        .unwrap_or_default();
    name.ends_with(b"/") || name.starts_with(b"__MACOSX/")
}

fn no_file() -> FileError {
    FileError::new(FileCode::EmptyFile, "the zip file holds no file")
}

fn broken(compression: Compression, e: impl std::fmt::Display) -> FileError {
    FileError::new(
        FileCode::Unreadable,
        format!("the {} data could not be read: {e}", compression.name()),
    )
}

/// Decodes `inner` from `encoding` into UTF-8. A BOM is removed; a malformed sequence becomes
/// the byte `0xFF` (never valid UTF-8), so its row is rejected as `encoding` instead of silently
/// carrying replacement characters.
pub struct Transcode<R> {
    inner: R,
    decoder: Decoder,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

const TRANSCODE_BUFFER: usize = 64 * 1024;

impl<R: BufRead> Transcode<R> {
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        Transcode {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            out: Vec::with_capacity(TRANSCODE_BUFFER),
            pos: 0,
            done: false,
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        while self.out.is_empty() && !self.done {
            let src = self.inner.fill_buf()?;
            let last = src.is_empty();
            self.out.resize(TRANSCODE_BUFFER, 0);
            let (result, read, written) =
                self.decoder
                    .decode_to_utf8_without_replacement(src, &mut self.out, last);
            self.inner.consume(read);
            self.out.truncate(written);
            match result {
                DecoderResult::InputEmpty => self.done = last,
                DecoderResult::OutputFull => {}
                DecoderResult::Malformed(_, _) => self.out.push(0xFF),
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Transcode<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Passes `inner`'s bytes through to the planner and hands them, in parts of at least `part_size`
/// bytes (the last may be smaller), to `emit`, which uploads the staged copy. `emit` returns false
/// when the upload gave up; reading then fails, which stops the planner.
pub struct Staging<R, F> {
    inner: R,
    part: Vec<u8>,
    part_size: usize,
    emit: F,
    /// Bytes handed over so far: the staged copy's size once the input is read.
    pub staged: u64,
}

impl<R: Read, F: FnMut(Vec<u8>) -> bool> Staging<R, F> {
    pub fn new(inner: R, part_size: usize, emit: F) -> Self {
        Staging {
            inner,
            part: Vec::with_capacity(part_size),
            part_size,
            emit,
            staged: 0,
        }
    }

    fn hand_over(&mut self) -> io::Result<()> {
        let part = std::mem::replace(&mut self.part, Vec::with_capacity(self.part_size));
        self.staged += part.len() as u64;
        if (self.emit)(part) {
            Ok(())
        } else {
            Err(io::Error::other("the upload of the decoded copy stopped"))
        }
    }
}

impl<R: Read, F: FnMut(Vec<u8>) -> bool> Read for Staging<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.part.extend_from_slice(&buf[..n]);
        if self.part.len() >= self.part_size || (n == 0 && !self.part.is_empty()) {
            self.hand_over()?;
        }
        Ok(n)
    }
}
