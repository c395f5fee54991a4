//! The wall clock, read in one place: everything below the HTTP handlers and the
//! background tasks takes `now` as a value, so it is tested with a fixed clock.

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
