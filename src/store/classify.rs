//! Sorting MongoDB's errors: what a retry can fix, what it cannot, and what a refusal means.

use bson::Document;

use crate::error::{redact, ChuteError};

/// A unique index already holds the key.
pub const DUPLICATE_KEY: i32 = 11000;
/// The collection's `$jsonSchema` validator refused the document.
pub const DOCUMENT_VALIDATION_FAILURE: i32 = 121;
/// Network, fail-over and shutdown codes of the server (HostUnreachable, HostNotFound,
/// NetworkTimeout, ShutdownInProgress, PrimarySteppedDown, ExceededTimeLimit, SocketException,
/// NotWritablePrimary, InterruptedAtShutdown, InterruptedDueToReplStateChange,
/// NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary, StaleConfig, WriteConflict).
pub const TRANSIENT_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 13388, 112,
];

/// Sorts driver errors into what a retry can fix and what it cannot. The text is scrubbed of
/// connection strings.
pub fn classify(e: mongodb::error::Error) -> ChuteError {
    use mongodb::error::ErrorKind;
    let text = redact(&e.to_string());
    let transient = e.contains_label("RetryableWriteError")
        || e.contains_label("TransientTransactionError")
        || e.contains_label("RetryableError")
        || match e.kind.as_ref() {
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. } => true,
            ErrorKind::Command(c) => TRANSIENT_CODES.contains(&c.code),
            _ => false,
        };
    if transient {
        ChuteError::Transient(format!("MongoDB unavailable: {text}"))
    } else {
        ChuteError::Fatal(format!("MongoDB error: {text}"))
    }
}

/// Adds the validator's reasons to its terse "Document failed validation".
pub fn refusal_message(code: i32, message: &str, error: &Document) -> String {
    match code {
        DOCUMENT_VALIDATION_FAILURE => match error
            .get_document("errInfo")
            .and_then(|i| i.get_document("details"))
        {
            Ok(details) => format!(
                "{message}: {}",
                bson::Bson::Document(details.clone()).into_relaxed_extjson()
            ),
            Err(_) => message.to_string(),
        },
        DUPLICATE_KEY => format!("{message} (another document already has this key)"),
        _ => message.to_string(),
    }
}
