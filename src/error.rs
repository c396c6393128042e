//! The three kinds of failure the state machine tells apart. Their names are the `errorType` of a
//! failed Lambda task and appear verbatim in the ASL's Retry and Catch clauses.

use crate::header::FileError;

/// `errorType` of failures worth retrying (network, throttling, database fail-over).
pub const TRANSIENT: &str = "Chute.Transient";
/// `errorType` of a file refused as a whole (header, encoding, size).
pub const INVALID_FILE: &str = "Chute.InvalidFile";
/// `errorType` of everything else: retrying would fail the same way.
pub const FATAL: &str = "Chute.Fatal";

#[derive(Debug, thiserror::Error)]
pub enum ChuteError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    InvalidFile(FileError),
    #[error("{0}")]
    Fatal(String),
}

impl ChuteError {
    /// The stable name Step Functions matches on.
    pub fn error_type(&self) -> &'static str {
        match self {
            ChuteError::Transient(_) => TRANSIENT,
            ChuteError::InvalidFile(_) => INVALID_FILE,
            ChuteError::Fatal(_) => FATAL,
        }
    }
}

impl From<FileError> for ChuteError {
    fn from(e: FileError) -> Self {
        ChuteError::InvalidFile(e)
    }
}

/// Removes connection strings (which may carry passwords) from text bound for logs or reports.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("mongodb") {
        let candidate = &rest[at..];
        let scheme_len = if candidate.starts_with("mongodb://") {
            "mongodb://".len()
        } else if candidate.starts_with("mongodb+srv://") {
            "mongodb+srv://".len()
        } else {
            out.push_str(&rest[..at + "mongodb".len()]);
            rest = &rest[at + "mongodb".len()..];
            continue;
        };
        out.push_str(&rest[..at]);
        let end = candidate[scheme_len..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',' || c == ')')
            .map_or(candidate.len(), |i| i + scheme_len);
        out.push_str("mongodb://<redacted>");
        rest = &candidate[end..];
    }
    out.push_str(rest);
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
}
