//! What RabbitMQ writes on a message it dead-letters itself (`x-death`), and the one reading of
//! a dead letter's failure class from it and the bridge's own `x-error-class`, shared by the
//! notifier and the `dlq` commands.

use chrono::{DateTime, TimeZone, Utc};
use lapin::types::{AMQPValue, FieldTable};

use super::headers::{self, get_str};
use crate::failure_class::FailureClass;

/// The broker's own dead-lettering history (most recent first).
pub const X_DEATH: &str = "x-death";
/// Reason of the first broker dead-lettering.
pub const X_FIRST_DEATH_REASON: &str = "x-first-death-reason";

/// The most recent entry of `x-death`.
#[derive(Debug, Clone, Default)]
pub struct Death {
    /// `delivery_limit`, `expired`, `rejected`, `maxlen`.
    pub reason: Option<String>,
    /// When the broker dead-lettered it.
    pub time: Option<DateTime<Utc>>,
}

/// The most recent `x-death` entry of `table`, if the broker dead-lettered the message.
pub fn latest_death(table: Option<&FieldTable>) -> Option<Death> {
    let AMQPValue::FieldArray(entries) = table?.inner().get(X_DEATH)? else {
        return None;
    };
    let AMQPValue::FieldTable(entry) = entries.as_slice().first()? else {
        return None;
    };
    let time = match entry.inner().get("time") {
        Some(AMQPValue::Timestamp(seconds)) => i64::try_from(*seconds)
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single()),
        _ => None,
    };
    Some(Death {
        reason: get_str(Some(entry), "reason"),
        time,
    })
}

/// A dead letter's failure class and when it last failed, from its headers: see
/// [`FailureClass::of_dead_letter`]. The time is the bridge's `x-last-failure-at`, or the
/// broker's when the broker's reason decided the class.
pub fn failure_of(table: Option<&FieldTable>) -> (FailureClass, Option<DateTime<Utc>>) {
    let bridge = get_str(table, headers::ERROR_CLASS);
    let death = latest_death(table);
    let reason = death
        .as_ref()
        .and_then(|d| d.reason.clone())
        .or_else(|| get_str(table, X_FIRST_DEATH_REASON));
    let class = FailureClass::of_dead_letter(bridge.as_deref(), reason.as_deref());
    let last = get_str(table, headers::LAST_FAILURE_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    let decided_by_broker = bridge
        .as_deref()
        .is_none_or(|b| b == FailureClass::Transient.as_str())
        && reason.is_some();
    let at = if decided_by_broker {
        death.and_then(|d| d.time).or(last)
    } else {
        last
    };
    (class, at)
}
