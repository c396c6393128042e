//! The error vocabulary, one type per level: [`Code`] for a rejected cell or row, [`FileCode`] for a
//! file refused as a whole, [`SchemaError`] for a schema, [`Refusal`] for a document the database
//! refused, and [`ChuteError`] for a failed step. The codes serialise to the stable snake_case
//! strings reports, tests and people filter on; [`ChuteError::error_type`] gives the `errorType` the state machine's Retry and
//! Catch clauses match verbatim.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `errorType` of failures worth retrying (network, throttling, database fail-over).
pub const TRANSIENT: &str = "Chute.Transient";
/// `errorType` of a file refused as a whole (header, encoding, size).
pub const INVALID_FILE: &str = "Chute.InvalidFile";
/// `errorType` of everything else: retrying would fail the same way.
pub const FATAL: &str = "Chute.Fatal";
/// `errorType` of a run whose source another run is importing: the state machine retries it
/// for a while (the other run finishes), then reports the run failed with the holder's name.
pub const SOURCE_BUSY: &str = "Chute.SourceBusy";

/// Declares a code enum whose variants serialise to, and `as_str` gives, one stable string each,
/// written once.
macro_rules! codes {
    ($(#[$doc:meta])* pub enum $name:ident {
        $($(#[$variant_doc:meta])* $variant:ident = $text:literal,)*
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$variant_doc])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Why a cell or row was rejected.
    pub enum Code {
        /// A required cell is empty after trimming.
        MissingValue = "missing_value",
        /// The cell does not parse as the column's type.
        TypeError = "type_error",
        /// The cell parses but breaks a declared constraint (length, charset, range, scale).
        Constraint = "constraint",
        /// A GTIN whose last digit is not the GS1 check digit of the others (a mistyped digit).
        CheckDigit = "check_digit",
        /// The record has a different number of fields than the header.
        FieldCount = "field_count",
        /// The record is not valid UTF-8.
        Encoding = "encoding",
        /// A spreadsheet damaged the cell before export: a formula error (`#N/A`), a key in
        /// scientific notation, a date turned into a serial number.
        SpreadsheetError = "spreadsheet_error",
        /// The database refused the document (validator, key or size); the message is the server's.
        Database = "database",
        /// A `match_also` field value names two different stored products; the message names both.
        Conflict = "conflict",
    }
}

codes! {
    /// Why a whole file was refused.
    pub enum FileCode {
        /// The header lacks a required column.
        MissingColumn = "missing_column",
        /// Two header cells feed the same column or field.
        DuplicateColumn = "duplicate_column",
        /// Not even a header row.
        EmptyFile = "empty_file",
        /// A header cell is not UTF-8.
        Encoding = "encoding",
        /// Larger than `CHUTE_MAX_FILE_BYTES`.
        TooLarge = "too_large",
        /// One record larger than `CHUTE_MAX_RECORD_BYTES` (often an unclosed quote).
        RecordTooLarge = "record_too_large",
        /// More header cells than `CHUTE_MAX_COLUMNS`.
        TooManyColumns = "too_many_columns",
        /// More keys than validate's memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) can check for
        /// duplicates.
        TooManyKeys = "too_many_keys",
        /// The bytes could not be read as CSV at all.
        Unreadable = "unreadable",
        /// The object's metadata or folder asks for what chute does not know (a `chute-mode`
        /// that is no mode, a source name that cannot be a field name).
        Settings = "settings",
    }
}

/// Lets callers compare a code with the string a report or a payload carries.
impl PartialEq<&str> for FileCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A failure that rejects the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct FileError {
    pub code: FileCode,
    pub message: String,
}

impl FileError {
    pub fn new(code: FileCode, message: impl Into<String>) -> Self {
        FileError {
            code,
            message: message.into(),
        }
    }
}

/// A schema that cannot be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("schema {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("no schema `{name}` (built in: {known})")]
    Unknown { name: String, known: String },
    #[error("invalid schema: {0}")]
    Invalid(String),
}

/// Where a record sits in its file, shared by every rejection type: `row` counts data records
/// (1 is the first after the header), `line` is the physical line it starts on (quoted newlines
/// make the two drift apart), so a person finds it in an editor and a script by row.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Position {
    pub row: u64,
    pub line: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} (line {})", self.row, self.line)
    }
}

/// A document the database refused, mapped back to its row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    #[serde(flatten)]
    pub position: Position,
    /// The server's error code (121: the validator refused it), or [`Refusal::CONFLICT`] when the
    /// writer refused the row itself.
    pub code: i32,
    pub message: String,
}

impl Refusal {
    /// The writer's own code for a `match_also` conflict. MongoDB's codes are positive, so a
    /// negative one never collides with the server's.
    pub const CONFLICT: i32 = -1;

    /// The row code the report files this refusal under.
    pub fn row_code(&self) -> Code {
        if self.code == Refusal::CONFLICT {
            Code::Conflict
        } else {
            Code::Database
        }
    }
}

/// Why a step failed. Every variant but `Transient` and `InvalidFile` is fatal: retrying would
/// fail the same way. MongoDB and AWS errors are kept as (redacted) text, never as a source: the
/// driver's own text can carry the connection string.
#[derive(Debug, thiserror::Error)]
pub enum ChuteError {
    /// Network, throttling, database fail-over: worth retrying.
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    InvalidFile(FileError),
    /// A setting is missing or malformed.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A stored record (plan, chunk outcome, ledger entry) does not read back as what wrote it.
    #[error("{what} is unreadable: {source}")]
    Unreadable {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A value cannot be encoded for storage (JSON in S3, BSON in the ledger).
    #[error("{what} cannot be stored: {source}")]
    Unwritable {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A blocking task panicked or was cancelled.
    #[error("{what} stopped: {source}")]
    Stopped {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Fatal(String),
    /// Another run of the file's source holds its lease ([`crate::store::Lease`]).
    #[error("{0}")]
    SourceBusy(String),
}

impl ChuteError {
    /// The stable name Step Functions matches on.
    pub fn error_type(&self) -> &'static str {
        match self {
            ChuteError::Transient(_) => TRANSIENT,
            ChuteError::InvalidFile(_) => INVALID_FILE,
            ChuteError::SourceBusy(_) => SOURCE_BUSY,
            _ => FATAL,
        }
    }
}

impl From<FileError> for ChuteError {
    fn from(e: FileError) -> Self {
        ChuteError::InvalidFile(e)
    }
}

const SCHEMES: [&str; 2] = ["mongodb+srv://", "mongodb://"];

/// Removes connection strings (which may carry passwords) from text bound for logs or reports,
/// whatever the case of the scheme (`MONGODB://` and `MongoDB+SRV://` connect as well).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let lower = text.to_ascii_lowercase();
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("mongodb") {
        let at = from + found;
        let Some(scheme) = SCHEMES.iter().find(|s| lower[at..].starts_with(**s)) else {
            from = at + "mongodb".len();
            continue;
        };
        let body = at + scheme.len();
        let end = text[body..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',' || c == ')')
            .map_or(text.len(), |i| i + body);
        out.push_str(&text[copied..at]);
        out.push_str("mongodb://<redacted>");
        copied = end;
        from = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_are_redacted() {
        let text = "failed to reach mongodb+srv://user:secret@cluster0.x.net/db?w=1, and mongodb://a:b@h:1 (twice); mongodb is fine";
        let clean = redact(text);
        assert!(
            !clean.contains("secret") && !clean.contains("a:b@"),
            "{clean}"
        );
        assert_eq!(clean, "failed to reach mongodb://<redacted>, and mongodb://<redacted> (twice); mongodb is fine");
    }

    #[test]
    fn any_case_of_the_scheme_is_redacted() {
        for uri in [
            "MONGODB://u:secret@h",
            "MongoDB+SRV://u:secret@cluster0.x.net/db",
            "mongoDB://u:secret@h:1/db",
        ] {
            let clean = redact(&format!("cannot reach {uri} now"));
            assert_eq!(clean, "cannot reach mongodb://<redacted> now", "{uri}");
        }
        assert_eq!(redact("MongoDB is down"), "MongoDB is down");
    }

    #[test]
    fn codes_serialise_to_their_stable_strings() {
        assert_eq!(
            serde_json::to_string(&Code::MissingValue).unwrap(),
            "\"missing_value\""
        );
        assert_eq!(
            serde_json::to_string(&FileCode::EmptyFile).unwrap(),
            "\"empty_file\""
        );
        let file = FileError::new(FileCode::MissingColumn, "no sku");
        assert_eq!(
            serde_json::to_string(&file).unwrap(),
            r#"{"code":"missing_column","message":"no sku"}"#
        );
        for code in [
            FileCode::MissingColumn,
            FileCode::DuplicateColumn,
            FileCode::EmptyFile,
            FileCode::Encoding,
            FileCode::TooLarge,
            FileCode::RecordTooLarge,
            FileCode::TooManyColumns,
            FileCode::TooManyKeys,
            FileCode::Unreadable,
            FileCode::Settings,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
