//! Time as reports and ledgers write it.

/// RFC 3339 "now" for reports and ledgers.
pub fn now_rfc3339() -> String {
    bson::DateTime::now()
        .try_to_rfc3339_string()
        .unwrap_or_default()
}

/// Milliseconds since `start`.
pub fn elapsed_ms(start: std::time::Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
