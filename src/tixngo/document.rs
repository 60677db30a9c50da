//! A ticket as TIXnGO receives it: what the built-in mapping or a template produce and the
//! client sends. A leaf of the TIXnGO layer (no configuration, no HTTP), so that templates,
//! compiled while the configuration loads, need nothing that needs the configuration.

use serde_json::value::RawValue;

/// A TIXnGO ticket document ready to send, with its id kept aside to check TIXnGO's answer.
#[derive(Debug, Clone)]
pub struct TicketDocument {
    /// `ticketId` of the document.
    pub ticket_id: String,
    /// The document, serialized once when the message is prepared.
    pub json: Box<RawValue>,
}
