//! Printing to stdout that a closed pipe (`chute … | head`) does not turn into a panic.

use std::io::Write;

/// `text` on stdout; a reader that went away is not an error.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Pretty JSON on stdout.
pub fn json<T: serde::Serialize>(value: &T) {
    print(&(serde_json::to_string_pretty(value).expect("serialisable") + "\n"));
}
