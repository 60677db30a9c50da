//! Turning a delivery into a typed message, or into a clear reason why it cannot be one.

use lapin::message::Delivery;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::settle::Known;
use crate::messages::TicketMessage;

/// A message that cannot be processed, ever: dead-lettered at once as `invalid-message`.
#[derive(Debug)]
pub struct Invalid {
    /// What is wrong, for the dead-letter header and the e-mail.
    pub reason: String,
    /// Organization and ticket id, as far as they could be read.
    pub known: Known,
}

/// Decodes and validates `delivery` as `M`.
pub fn decode<M: DeserializeOwned + TicketMessage>(
    delivery: &Delivery,
    max_bytes: usize,
) -> Result<M, Invalid> {
    let body = delivery.data.as_slice();
    let invalid = |reason: String, known: Known| Invalid { reason, known };
    if body.len() > max_bytes {
        return Err(invalid(
            format!(
                "body is {} bytes; the limit is {max_bytes} (worker.max_message_bytes)",
                body.len()
            ),
            Known::default(),
        ));
    }
    if let Some(content_type) = delivery.properties.content_type() {
        let essence = content_type.as_str().split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(invalid(
                format!(
                    "content type {:?} is not application/json",
                    crate::text::truncate(content_type.as_str(), 64)
                ),
                peek(body),
            ));
        }
    }
    if let Err(e) = std::str::from_utf8(body) {
        return Err(invalid(
            format!("body is not valid UTF-8 ({e})"),
            Known::default(),
        ));
    }
    let message: M = crate::messages::from_json(body).map_err(|e| {
        // serde_json reports some type mismatches (a list where an enum goes) as syntax
        // errors; only call the body not JSON when it really is not. The error names the field.
        let not_json = (e.source.is_syntax() || e.source.is_eof())
            && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err();
        let reason = if not_json {
            format!("body is not valid JSON: {e}")
        } else {
            format!("message does not match the schema: {e}")
        };
        invalid(reason, peek(body))
    })?;
    message.validate().map_err(|reason| {
        invalid(
            reason,
            Known {
                organization: Some(message.organization().to_owned()),
                ticket_id: Some(message.ticket_id().to_owned()),
            },
        )
    })?;
    Ok(message)
}

/// Reads organization and ticket id from a message that failed to decode, for the headers.
fn peek(body: &[u8]) -> Known {
    #[derive(Deserialize)]
    struct Ids {
        organization: Option<String>,
        ticket_id: Option<String>,
    }
    match serde_json::from_slice::<Ids>(body) {
        Ok(ids) => Known {
            organization: ids.organization,
            ticket_id: ids.ticket_id,
        },
        Err(_) => Known::default(),
    }
}
