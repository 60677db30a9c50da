//! One dead letter as an operator sees it: what failed, when and why, read from its failure
//! headers, with fallbacks for messages that lack them (dead-lettered by the broker itself, or
//! written by something else than the bridge).

use chrono::{DateTime, TimeZone, Utc};
use lapin::BasicProperties;
use lapin::types::AMQPValue;
use serde_json::{Value, json};

use super::source::Source;
use crate::broker::headers::{self, get_int, get_str};
use crate::failure_class::FailureClass;
use crate::flow::Flow;

/// Header the quorum queue adds to a message it delivers again: how often it was returned.
pub const DELIVERY_COUNT: &str = "x-delivery-count";
pub use crate::broker::death::{X_DEATH, X_FIRST_DEATH_REASON};

/// A dead letter read from a dlq or parked queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Queue it was read from: the operator may need to look at it with other tools.
    pub queue: String,
    /// dlq or parked: tells fresh dead letters from already-notified ones.
    pub source: Source,
    /// Its flow, which decides the work queue it is replayed to: `x-flow`, or the queue's.
    pub flow: Flow,
    /// `x-organization`, else the body's `organization`; `None` when neither says.
    pub organization: Option<String>,
    /// `x-ticket-id`, else the body's `ticket_id`.
    pub ticket_id: Option<String>,
    /// `x-error-class`, else derived from the broker's `x-death`, else `unknown`.
    pub error_class: FailureClass,
    /// TIXnGO's status code, when the failure had one: groups refusals by cause.
    pub http_status: Option<i64>,
    /// The failure's reason in words.
    pub error_message: Option<String>,
    /// Delayed-retry tiers used before it was dead-lettered.
    pub retry_count: Option<i64>,
    /// How often an operator replayed it already: a message replayed many times needs a fix,
    /// not another replay.
    pub replay_count: Option<i64>,
    /// How often the queue returned it unacknowledged (`x-delivery-count`), which reading with
    /// `list`/`show` also raises; see the module documentation.
    pub delivery_count: Option<i64>,
    /// `x-first-failure-at` as written (RFC 3339).
    pub first_failure_at: Option<String>,
    /// `x-last-failure-at` as written (RFC 3339).
    pub last_failure_at: Option<String>,
    /// When it last failed, for `--since`/`--until`: `x-last-failure-at`, or for a message the
    /// broker dead-lettered, the time of that dead-lettering.
    pub failed_at: Option<DateTime<Utc>>,
    /// S-360's message id, for tracing a message across systems.
    pub message_id: Option<String>,
    /// All properties and headers, as replay must carry them.
    pub properties: BasicProperties,
    /// The body exactly as S-360 sent it.
    pub body: Vec<u8>,
}

impl DeadLetter {
    /// Reads a message delivered from `queue`, which belongs to `queue_flow`. Never fails: what
    /// cannot be read is `None` or `unknown`.
    pub fn read(
        queue: &str,
        source: Source,
        queue_flow: Flow,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Self {
        let table = properties.headers().as_ref();
        let from_body = BodyIdentity::read(body);
        let flow = get_str(table, headers::FLOW)
            .and_then(|f| f.parse().ok())
            .unwrap_or(queue_flow);
        let organization = get_str(table, headers::ORGANIZATION).or(from_body.organization);
        let ticket_id = get_str(table, headers::TICKET_ID).or(from_body.ticket_id);
        let last_failure_at = get_str(table, headers::LAST_FAILURE_AT);
        let (error_class, failed_at) = crate::broker::death::failure_of(table);
        Self {
            queue: queue.to_owned(),
            source,
            flow,
            organization,
            ticket_id,
            error_class,
            http_status: get_int(table, headers::HTTP_STATUS),
            error_message: get_str(table, headers::ERROR_MESSAGE),
            retry_count: get_int(table, headers::RETRY_COUNT),
            replay_count: get_int(table, headers::REPLAY_COUNT),
            delivery_count: get_int(table, DELIVERY_COUNT),
            first_failure_at: get_str(table, headers::FIRST_FAILURE_AT),
            last_failure_at,
            failed_at,
            message_id: properties.message_id().as_ref().map(|m| m.as_str().to_owned()),
            properties: properties.clone(),
            body: body.to_vec(),
        }
    }

    /// Every field as JSON, headers and body included (`dlq show --json`). A body that is UTF-8
    /// is the string `body`; any other body is `body: null` and its exact bytes in `body_hex`.
    pub fn to_json(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .properties
            .headers()
            .as_ref()
            .map(|t| {
                t.inner()
                    .iter()
                    .map(|(k, v)| (k.to_string(), amqp_to_json(v)))
                    .collect()
            })
            .unwrap_or_default();
        let (body, body_hex) = match std::str::from_utf8(&self.body) {
            Ok(text) => (Value::from(text), None),
            Err(_) => (Value::Null, Some(crate::output::hex(&self.body))),
        };
        let mut json = json!({
            "queue": self.queue,
            "source": self.source.as_str(),
            "flow": self.flow.as_str(),
            "organization": self.organization,
            "ticket_id": self.ticket_id,
            "error_class": self.error_class.as_str(),
            "http_status": self.http_status,
            "error_message": self.error_message,
            "retry_count": self.retry_count,
            "replay_count": self.replay_count,
            "delivery_count": self.delivery_count,
            "first_failure_at": self.first_failure_at,
            "last_failure_at": self.last_failure_at,
            "failed_at": self.failed_at.map(headers::rfc3339),
            "message_id": self.message_id,
            "content_type": self.properties.content_type().as_ref().map(|c| c.as_str()),
            "correlation_id": self.properties.correlation_id().as_ref().map(|c| c.as_str()),
            "headers": headers,
            "body": body,
        });
        if let Some(body_hex) = body_hex {
            json["body_hex"] = Value::from(body_hex);
        }
        json
    }
}

/// The identity fields of a body, for messages whose headers do not name them.
#[derive(Default, serde::Deserialize)]
struct BodyIdentity {
    /// Every S-360 message names its organization.
    #[serde(default, deserialize_with = "string_only")]
    organization: Option<String>,
    /// ... and its ticket.
    #[serde(default, deserialize_with = "string_only")]
    ticket_id: Option<String>,
}

impl BodyIdentity {
    fn read(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// A string, or `None` for any other JSON value (a broken message must not hide the other field).
fn string_only<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value: Value = serde::Deserialize::deserialize(deserializer)?;
    Ok(match value {
        Value::String(s) => Some(headers::truncate(&s, headers::MAX_VALUE_BYTES)),
        _ => None,
    })
}

/// A header value as JSON; timestamps become RFC 3339, byte arrays lossy text.
pub fn amqp_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(v) => json!(v),
        AMQPValue::ShortShortUInt(v) => json!(v),
        AMQPValue::ShortInt(v) => json!(v),
        AMQPValue::ShortUInt(v) => json!(v),
        AMQPValue::LongInt(v) => json!(v),
        AMQPValue::LongUInt(v) => json!(v),
        AMQPValue::LongLongInt(v) => json!(v),
        AMQPValue::Float(v) => json!(v),
        AMQPValue::Double(v) => json!(v),
        AMQPValue::DecimalValue(d) => json!(format!("{}e-{}", d.value, d.scale)),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => bytes_to_json(s.as_bytes()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::Timestamp(t) => i64::try_from(*t)
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .map(|t| json!(headers::rfc3339(t)))
            .unwrap_or_else(|| json!(t)),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.to_string(), amqp_to_json(v)))
                .collect(),
        ),
        AMQPValue::ByteArray(b) => bytes_to_json(b.as_slice()),
        AMQPValue::Void => Value::Null,
    }
}

/// Header bytes as JSON: a string when they are UTF-8, else `{"hex": "…"}` with their exact
/// bytes (never a lossy string: `dlq show --json` must let the original be recovered).
fn bytes_to_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!({ "hex": crate::output::hex(bytes) }),
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldArray, FieldTable, LongString, ShortString};

    #[test]
    fn header_bytes_that_are_not_utf8_stay_recoverable() {
        assert_eq!(bytes_to_json(b"ok"), json!("ok"));
        assert_eq!(bytes_to_json(&[0xff, 0x1b]), json!({"hex": "ff1b"}));
    }

    use super::*;

    fn props(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert(ShortString::from(*k), v.clone());
        }
        BasicProperties::default().with_headers(table)
    }

    fn s(text: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(text))
    }

    #[test]
    fn missing_headers_read_as_unknown_without_failing() {
        let letter = DeadLetter::read(
            "tixngo.cancel.parked",
            Source::Parked,
            Flow::Cancel,
            &BasicProperties::default(),
            &[0xff, 0x00],
        );
        assert_eq!(letter.flow, Flow::Cancel);
        assert_eq!(letter.organization, None);
        assert_eq!(letter.error_class, FailureClass::Unknown);
        assert_eq!(letter.failed_at, None);
        assert_eq!(letter.to_json()["organization"], Value::Null);
    }

    #[test]
    fn broker_dead_letters_get_their_class_from_x_death_and_identity_from_the_body() {
        let death = FieldTable::from(
            [
                (ShortString::from("reason"), s("delivery_limit")),
                (ShortString::from("queue"), s("tixngo.inject")),
                (ShortString::from("time"), AMQPValue::Timestamp(1_800_000_000)),
            ]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        );
        let properties = props(&[
            (
                X_DEATH,
                AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
            ),
            (headers::ERROR_CLASS, s("transient")),
            (headers::LAST_FAILURE_AT, s("2020-01-01T00:00:00Z")),
        ]);
        let letter = DeadLetter::read(
            "tixngo.inject.dlq",
            Source::Dlq,
            Flow::Inject,
            &properties,
            br#"{"organization":"ACME","ticket_id":"T-1","product":{}}"#,
        );
        assert_eq!(letter.error_class, FailureClass::DeliveryLimit);
        assert_eq!(letter.organization.as_deref(), Some("ACME"));
        assert_eq!(letter.ticket_id.as_deref(), Some("T-1"));
        assert_eq!(letter.failed_at.map(|t| t.timestamp()), Some(1_800_000_000));
    }

    #[test]
    fn the_bridge_headers_win_and_x_flow_overrides_the_queue() {
        let properties = props(&[
            (headers::ERROR_CLASS, s("rejected")),
            (headers::ORGANIZATION, s("GLOBEX")),
            (headers::HTTP_STATUS, AMQPValue::LongLongInt(409)),
            (headers::FLOW, s("control")),
            (X_FIRST_DEATH_REASON, s("expired")),
        ]);
        let letter = DeadLetter::read(
            "tixngo.inject.parked",
            Source::Parked,
            Flow::Inject,
            &properties,
            br#"{"organization":"ACME","ticket_id":7}"#,
        );
        assert_eq!(letter.error_class, FailureClass::Rejected);
        assert_eq!(letter.organization.as_deref(), Some("GLOBEX"));
        assert_eq!(letter.ticket_id, None);
        assert_eq!(letter.http_status, Some(409));
        assert_eq!(letter.flow, Flow::Control);
    }
}
