//! Failure headers: what the bridge writes on a message it retries or dead-letters, and reads
//! back when it sees the message again. The bridge keeps its own retry count instead of relying
//! on `x-death`, which recent RabbitMQ versions stop updating for republished messages.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;

use crate::failure_class::FailureClass;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Delayed-retry tiers this message has been through.
pub const RETRY_COUNT: &str = "x-retry-count";
/// How many times an operator replayed this message from the dead letters.
pub const REPLAY_COUNT: &str = "x-replay-count";
/// `invalid-message`, `rejected`, `retries-exhausted`, or `delivery-limit` (set by the notifier
/// for messages the broker dead-lettered itself).
pub const ERROR_CLASS: &str = "x-error-class";
/// Human-readable reason, cut to [`MAX_ERROR_MESSAGE_BYTES`].
pub const ERROR_MESSAGE: &str = "x-error-message";
/// TIXnGO's HTTP status (or per-ticket code), when there was one.
pub const HTTP_STATUS: &str = "x-http-status";
/// Work queue the message was consumed from.
pub const ORIGINAL_QUEUE: &str = "x-original-queue";
/// Routing key S-360 published it with.
pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
/// When the first failure happened (RFC 3339).
pub const FIRST_FAILURE_AT: &str = "x-first-failure-at";
/// When the last failure happened (RFC 3339).
pub const LAST_FAILURE_AT: &str = "x-last-failure-at";
/// S-360 organization, when the message could be read far enough to know it.
pub const ORGANIZATION: &str = "x-organization";
/// Ticket id, when known.
pub const TICKET_ID: &str = "x-ticket-id";
/// Flow name.
pub const FLOW: &str = "x-flow";

/// A failure message is cut to this many bytes: an oversized header can exceed the frame size
/// and kill the connection.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;
/// Any other free-text header value (ticket id, organization) is cut to this.
pub const MAX_VALUE_BYTES: usize = 512;

pub use crate::text::truncate;

/// Reads a string header.
pub fn get_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Reads an integer header, whatever integer type the publisher used.
pub fn get_int(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    match headers?.inner().get(key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

/// Sets a string header, cut to `max` bytes.
pub fn set_str(headers: &mut FieldTable, key: &str, value: &str, max: usize) {
    headers.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(truncate(value, max))),
    );
}

/// Sets an integer header.
pub fn set_int(headers: &mut FieldTable, key: &str, value: i64) {
    headers.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
}

pub use crate::text::rfc3339;

/// What went wrong, to be written as failure headers.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    /// Error class.
    pub class: FailureClass,
    /// Reason.
    pub message: &'a str,
    /// HTTP status or per-ticket code from TIXnGO.
    pub http_status: Option<u16>,
}

/// Adds or updates the failure headers on `headers` (a copy of the original's).
pub fn record_failure(
    headers: &mut FieldTable,
    failure: &Failure<'_>,
    now: DateTime<Utc>,
    context: &FailureContext<'_>,
) {
    let now = rfc3339(now);
    if get_str(Some(headers), FIRST_FAILURE_AT).is_none() {
        set_str(headers, FIRST_FAILURE_AT, &now, 64);
    }
    set_str(headers, LAST_FAILURE_AT, &now, 64);
    set_str(headers, ERROR_CLASS, failure.class.as_str(), 64);
    set_str(headers, ERROR_MESSAGE, failure.message, MAX_ERROR_MESSAGE_BYTES);
    match failure.http_status {
        Some(status) => set_int(headers, HTTP_STATUS, i64::from(status)),
        None => {
            headers.inner_mut_remove(HTTP_STATUS);
        }
    }
    set_str(headers, FLOW, context.flow, 32);
    set_str(headers, ORIGINAL_QUEUE, context.queue, MAX_VALUE_BYTES);
    set_str(
        headers,
        ORIGINAL_ROUTING_KEY,
        context.routing_key,
        MAX_VALUE_BYTES,
    );
    if let Some(organization) = context.organization {
        set_str(headers, ORGANIZATION, organization, MAX_VALUE_BYTES);
    }
    if let Some(ticket_id) = context.ticket_id {
        set_str(headers, TICKET_ID, ticket_id, MAX_VALUE_BYTES);
    }
}

/// Where the failed message came from.
#[derive(Debug, Clone)]
pub struct FailureContext<'a> {
    /// Flow name.
    pub flow: &'a str,
    /// Work queue.
    pub queue: &'a str,
    /// Original routing key.
    pub routing_key: &'a str,
    /// Organization, if known.
    pub organization: Option<&'a str>,
    /// Ticket id, if known.
    pub ticket_id: Option<&'a str>,
}

/// `FieldTable` has no remove; rebuilding it is cheap for a handful of headers.
trait RemoveKey {
    fn inner_mut_remove(&mut self, key: &str);
}

impl RemoveKey for FieldTable {
    fn inner_mut_remove(&mut self, key: &str) {
        if self.inner().contains_key(key) {
            let kept: std::collections::BTreeMap<_, _> = self
                .inner()
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            *self = FieldTable::from(kept);
        }
    }
}

/// Marks a message deferred by an open breaker (not counted as a retry).
pub const DEFERRED_COUNT: &str = "x-deferred-count";

/// The properties a republished message keeps. Built afresh rather than copied so that
/// `expiration` (would cut a retry short) and `user_id` (checked by the broker against the
/// bridge's own user) are not carried over.
pub fn carried_properties(original: &BasicProperties) -> BasicProperties {
    let mut properties = BasicProperties::default();
    if let Some(v) = original.content_type() {
        properties = properties.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        properties = properties.with_content_encoding(v.clone());
    }
    if let Some(v) = original.message_id() {
        properties = properties.with_message_id(v.clone());
    }
    if let Some(v) = original.correlation_id() {
        properties = properties.with_correlation_id(v.clone());
    }
    if let Some(v) = original.reply_to() {
        properties = properties.with_reply_to(v.clone());
    }
    if let Some(v) = original.timestamp() {
        properties = properties.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        properties = properties.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        properties = properties.with_app_id(v.clone());
    }
    properties
}
