//! How a file is read: the `[format]` settings a schema, a source or an object's metadata declare
//! ([`Format`]), and what one file was actually read with ([`ResolvedFormat`]).
//!
//! A leaf: the schema keeps its declared [`Format`] as its TOML says, and the per-file
//! [`ResolvedFormat`] (the `auto` delimiter chosen, the number format) travels beside the schema
//! into the planner, the row rules and the transforms, as a value, not written into the schema.

use std::collections::HashMap;

use encoding_rs::Encoding;
use serde::{Deserialize, Serialize};

use crate::error::{FileCode, FileError};
use crate::value::NumberFormat;

/// A `[format]` table (schema or `[sources.NAME.format]`), or the object metadata overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatSpec {
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
    pub decimal: Option<String>,
    pub thousands: Option<String>,
}

impl FormatSpec {
    /// The overrides in an object's user metadata: `chute-encoding`, `chute-delimiter`,
    /// `chute-decimal`, `chute-thousands`.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> FormatSpec {
        let get = |key: &str| metadata.get(key).cloned();
        FormatSpec {
            encoding: get("chute-encoding"),
            delimiter: get("chute-delimiter"),
            decimal: get("chute-decimal"),
            thousands: get("chute-thousands"),
        }
    }
}

/// A field delimiter: one byte, or chosen per file from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Byte(u8),
    Auto,
}

/// How to read a file: resolved from the schema's `[format]`, then the source's, then metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Format {
    /// The declared encoding (a UTF-16 BOM overrides it, as browsers do).
    pub encoding: &'static Encoding,
    pub delimiter: Delimiter,
    pub numbers: NumberFormat,
}

impl Default for Format {
    fn default() -> Self {
        Format {
            encoding: encoding_rs::UTF_8,
            delimiter: Delimiter::Byte(b','),
            numbers: NumberFormat::default(),
        }
    }
}

impl Format {
    /// This format with the keys `spec` sets replaced; `what` names where they come from in errors
    /// (`object metadata`, `schema products`).
    pub fn with(&self, spec: &FormatSpec, what: &str) -> Result<Format, String> {
        let mut format = self.clone();
        if let Some(label) = &spec.encoding {
            format.encoding = Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
                format!("{what}: encoding `{label}` is not an encoding label (WHATWG names like utf-8, windows-1252, iso-8859-15, shift_jis, utf-16le)")
            })?;
        }
        if let Some(text) = &spec.delimiter {
            format.delimiter = parse_delimiter(text).map_err(|e| format!("{what}: {e}"))?;
        }
        if let Some(text) = &spec.decimal {
            format.numbers.decimal = match text.as_str() {
                "." => '.',
                "," => ',',
                _ => return Err(format!("{what}: decimal `{text}` must be `.` or `,`")),
            };
        }
        if let Some(text) = &spec.thousands {
            format.numbers.thousands = match text.as_str() {
                "" | "none" => None,
                "." => Some('.'),
                "," => Some(','),
                // Spelled out too: S3 trims a metadata value that is a lone space to nothing.
                " " | "space" => Some(' '),
                _ => {
                    return Err(format!(
                        "{what}: thousands `{text}` must be `.`, `,`, `space` or `none`"
                    ))
                }
            };
        }
        if format.numbers.thousands == Some(format.numbers.decimal) {
            return Err(format!(
                "{what}: the thousands separator and the decimal mark are both `{}`",
                format.numbers.decimal
            ));
        }
        Ok(format)
    }

    /// This format with an object's metadata overrides applied; a bad value refuses the file.
    pub fn with_metadata(&self, metadata: &HashMap<String, String>) -> Result<Format, FileError> {
        self.with(&FormatSpec::from_metadata(metadata), "object metadata")
            .map_err(|m| FileError::new(FileCode::Unreadable, m))
    }

    /// The format as declared, without looking at a file: an `auto` delimiter reads as `,` (a
    /// plan stored before formats were recorded, and files in memory that need no detection).
    pub fn as_declared(&self) -> ResolvedFormat {
        ResolvedFormat {
            delimiter: match self.delimiter {
                Delimiter::Byte(b) => b,
                Delimiter::Auto => b',',
            },
            numbers: self.numbers,
        }
    }
}

/// What one file is read with once it is decoded to UTF-8 CSV: the delimiter (an `auto` one
/// chosen) and the number format. Stored in the plan (flattened into its `input`), so every
/// transform reads the file as validate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedFormat {
    pub delimiter: u8,
    pub numbers: NumberFormat,
}

impl Default for ResolvedFormat {
    fn default() -> Self {
        Format::default().as_declared()
    }
}

/// `,` `;` `|`, `tab` or `\t`, any other single ASCII character but a quote or line break, or `auto`.
pub fn parse_delimiter(text: &str) -> Result<Delimiter, String> {
    match text {
        "auto" => Ok(Delimiter::Auto),
        "tab" | "\\t" | "\t" => Ok(Delimiter::Byte(b'\t')),
        _ => match text.as_bytes() {
            [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => Ok(Delimiter::Byte(*b)),
            _ => Err(format!(
                "delimiter `{text}` must be one ASCII character, `tab` or `auto`"
            )),
        },
    }
}

/// A delimiter as people read it (`tab` for the invisible one).
pub fn delimiter_name(byte: u8) -> String {
    match byte {
        b'\t' => "tab".to_string(),
        b => char::from(b).to_string(),
    }
}
