//! Text helpers every layer uses (error bodies cut to size, timestamps as S-360 reads them).
//! A leaf: it imports nothing of the crate.

use chrono::{DateTime, SecondsFormat, Utc};

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Formats a time the way every header and event of the bridge does.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}
