//! S-360's messages to the bridge and the bridge's events back, as they travel in JSON.
//! The JSON Schemas under `schemas/` describe the same contract for other teams; a test keeps
//! the examples valid against both.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// Limits TIXnGO documents (ticket id 256, barcode 512): checked before calling TIXnGO so an
/// over-long field is an invalid message, not a TIXnGO rejection.
pub const MAX_TICKET_ID_CHARS: usize = 256;
/// See [`MAX_TICKET_ID_CHARS`].
pub const MAX_BARCODE_CHARS: usize = 512;
/// Any other free text: generous, but bounded.
pub const MAX_TEXT_CHARS: usize = 1024;

/// What every flow's message names.
pub trait TicketMessage {
    /// S-360 organization code.
    fn organization(&self) -> &str;
    /// S-360 ticket id.
    fn ticket_id(&self) -> &str;
    /// Rules JSON decoding cannot express (lengths, required sections per product kind).
    fn validate(&self) -> Result<(), String> {
        check_text("organization", self.organization(), 64)?;
        check_text("ticket_id", self.ticket_id(), MAX_TICKET_ID_CHARS)
    }
}

/// Fails when `value` is empty or longer than `max` characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(format!("{field} is {chars} characters long; the limit is {max}"));
    }
    Ok(())
}

fn check_optional(field: &str, value: &Option<String>, max: usize) -> Result<(), String> {
    match value {
        Some(v) if v.chars().count() > max => Err(format!("{field} is longer than {max} characters")),
        _ => Ok(()),
    }
}

/// Product kinds S-360 injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// A football (or other) match: single entry, with host and opposing team.
    Match,
    /// Any other event performance: single entry.
    Event,
    /// Entry on any day within a validity period.
    OpenPass,
    /// A service attached to an event (parking, hospitality, …).
    Service,
    /// Digital privilege: membership card, not transferable.
    MembershipCard,
    /// Digital privilege plus tickets for a season, not transferable.
    SeasonTicket,
}

impl ProductKind {
    /// Digital privileges are not transferable and can be linked to tickets.
    pub fn is_privilege(self) -> bool {
        matches!(self, ProductKind::MembershipCard | ProductKind::SeasonTicket)
    }
}

/// A ticket issued in S-360, to be created in TIXnGO.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectMessage {
    /// S-360 organization code.
    pub organization: String,
    /// S-360 ticket id; becomes TIXnGO's `ticketId`.
    pub ticket_id: String,
    /// When S-360 issued (printed) the ticket.
    pub issued_at: DateTime<FixedOffset>,
    /// What was sold.
    pub product: Product,
    /// The performance, for event tickets (match, event, service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<Performance>,
    /// Validity period, for open passes and digital privileges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<Validity>,
    /// Where the ticket is valid.
    pub venue: Venue,
    /// Seat, for seated products.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<Seat>,
    /// Tickets linked to a digital privilege (a season ticket's match tickets, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linked_ticket_ids: Vec<String>,
    /// Barcode content (TIXnGO limit: 512 characters).
    pub barcode: String,
    /// Sale.
    pub purchase: Purchase,
    /// Ticket holder.
    pub spectator: Spectator,
    /// When and how the barcode becomes visible, if not at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
}

/// The product.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Kind of product.
    pub kind: ProductKind,
    /// Product name as sold.
    pub name: String,
    /// S-360 product code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Season name, for season tickets and membership cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season: Option<String>,
}

/// A performance (match, concert, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Performance {
    /// S-360 performance id.
    pub id: String,
    /// Display name; for a match, defaults to "host - opposing".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Start time.
    pub start: DateTime<FixedOffset>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<FixedOffset>>,
    /// Home team, for matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_team: Option<String>,
    /// Visiting team, for matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opposing_team: Option<String>,
    /// Competition, for matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub competition: Option<String>,
}

/// A validity period.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validity {
    /// First valid moment.
    pub from: DateTime<FixedOffset>,
    /// Last valid moment.
    pub until: DateTime<FixedOffset>,
}

/// A venue: TIXnGO requires site, city, zip and country code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Venue {
    /// Site name (stadium, hall).
    pub site: String,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City.
    pub city: String,
    /// Postal code.
    pub zip: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country_code: String,
}

/// A seat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seat {
    /// Stand or area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    /// Row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
    /// Seat number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Entrance or gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrance: Option<String>,
}

/// The sale.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purchase {
    /// S-360 order id.
    pub order_id: String,
    /// When it was bought.
    pub purchased_at: DateTime<FixedOffset>,
    /// Price paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// ISO 4217 currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Sales channel (injection is done "as if by a point of sale").
    pub sales_channel: String,
    /// Point of sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_of_sale: Option<String>,
}

/// The ticket holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spectator {
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// E-mail the ticket is delivered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Barcode activation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// `online` or `offline`.
    pub method: ActivationMethod,
    /// When the barcode is shown.
    pub time: DateTime<FixedOffset>,
    /// Tickets activated together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}

/// Activation methods TIXnGO documents.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationMethod {
    /// Activated by TIXnGO's servers.
    Online,
    /// Activated on the device.
    Offline,
}

impl TicketMessage for InjectMessage {
    fn organization(&self) -> &str {
        &self.organization
    }
    fn ticket_id(&self) -> &str {
        &self.ticket_id
    }
    fn validate(&self) -> Result<(), String> {
        check_text("organization", &self.organization, 64)?;
        check_text("ticket_id", &self.ticket_id, MAX_TICKET_ID_CHARS)?;
        check_text("barcode", &self.barcode, MAX_BARCODE_CHARS)?;
        check_text("product.name", &self.product.name, MAX_TEXT_CHARS)?;
        check_text("venue.site", &self.venue.site, MAX_TEXT_CHARS)?;
        check_text("venue.city", &self.venue.city, MAX_TEXT_CHARS)?;
        check_text("venue.zip", &self.venue.zip, 32)?;
        check_text("purchase.order_id", &self.purchase.order_id, MAX_TEXT_CHARS)?;
        check_text(
            "purchase.sales_channel",
            &self.purchase.sales_channel,
            MAX_TEXT_CHARS,
        )?;
        let cc = &self.venue.country_code;
        if cc.len() != 2 || !cc.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "venue.country_code {cc:?} is not an ISO 3166-1 alpha-2 code (e.g. CH)"
            ));
        }
        if let Some(currency) = &self.purchase.currency
            && (currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(format!(
                "purchase.currency {currency:?} is not an ISO 4217 code (e.g. CHF)"
            ));
        }
        for (field, value) in [
            ("product.code", &self.product.code),
            ("product.season", &self.product.season),
            ("venue.street", &self.venue.street),
            ("purchase.point_of_sale", &self.purchase.point_of_sale),
            ("spectator.first_name", &self.spectator.first_name),
            ("spectator.last_name", &self.spectator.last_name),
            ("spectator.email", &self.spectator.email),
        ] {
            check_optional(field, value, MAX_TEXT_CHARS)?;
        }
        if let Some(p) = &self.performance {
            check_text("performance.id", &p.id, MAX_TEXT_CHARS)?;
            for (field, value) in [
                ("performance.name", &p.name),
                ("performance.host_team", &p.host_team),
                ("performance.opposing_team", &p.opposing_team),
                ("performance.competition", &p.competition),
            ] {
                check_optional(field, value, MAX_TEXT_CHARS)?;
            }
        }
        if let Some(seat) = &self.seat {
            for (field, value) in [
                ("seat.area", &seat.area),
                ("seat.block", &seat.block),
                ("seat.row", &seat.row),
                ("seat.number", &seat.number),
                ("seat.entrance", &seat.entrance),
            ] {
                check_optional(field, value, MAX_TEXT_CHARS)?;
            }
        }
        if self.linked_ticket_ids.len() > 1000 {
            return Err("linked_ticket_ids has more than 1000 entries".into());
        }
        for id in &self.linked_ticket_ids {
            check_text("linked_ticket_ids[]", id, MAX_TICKET_ID_CHARS)?;
        }
        if !self.product.kind.is_privilege() && !self.linked_ticket_ids.is_empty() {
            return Err(
                "linked_ticket_ids is only for digital privileges (membership_card, season_ticket)".into(),
            );
        }
        let kind = self.product.kind;
        match kind {
            ProductKind::Match | ProductKind::Event | ProductKind::Service => {
                let Some(p) = &self.performance else {
                    return Err(format!(
                        "performance is required for product kind {}",
                        kind_name(kind)
                    ));
                };
                if kind == ProductKind::Match && (p.host_team.is_none() || p.opposing_team.is_none()) {
                    return Err(
                        "performance.host_team and performance.opposing_team are required for a match".into(),
                    );
                }
                if let Some(end) = p.end
                    && end < p.start
                {
                    return Err("performance.end is before performance.start".into());
                }
            }
            ProductKind::OpenPass | ProductKind::MembershipCard | ProductKind::SeasonTicket => {
                let Some(v) = &self.validity else {
                    return Err(format!(
                        "validity is required for product kind {}",
                        kind_name(kind)
                    ));
                };
                if v.until < v.from {
                    return Err("validity.until is before validity.from".into());
                }
                if kind == ProductKind::SeasonTicket && self.product.season.is_none() {
                    return Err("product.season is required for a season ticket".into());
                }
            }
        }
        Ok(())
    }
}

/// The snake_case name of a product kind, as in messages.
pub fn kind_name(kind: ProductKind) -> &'static str {
    match kind {
        ProductKind::Match => "match",
        ProductKind::Event => "event",
        ProductKind::OpenPass => "open_pass",
        ProductKind::Service => "service",
        ProductKind::MembershipCard => "membership_card",
        ProductKind::SeasonTicket => "season_ticket",
    }
}

/// A ticket cancelled (or invalidated) in S-360, to be deleted in TIXnGO.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelMessage {
    /// S-360 organization code.
    pub organization: String,
    /// S-360 ticket id.
    pub ticket_id: String,
    /// Why (shown to the spectator by TIXnGO).
    pub reason: String,
    /// Whether the deleted ticket stays visible in the spectator's wallet.
    #[serde(default)]
    pub show_deleted_ticket: bool,
    /// True for an invalidation rather than a cancellation (S-360 reports both as Cancelled).
    #[serde(default)]
    pub invalidated: bool,
    /// When S-360 cancelled it.
    pub cancelled_at: DateTime<FixedOffset>,
}

impl TicketMessage for CancelMessage {
    fn organization(&self) -> &str {
        &self.organization
    }
    fn ticket_id(&self) -> &str {
        &self.ticket_id
    }
    fn validate(&self) -> Result<(), String> {
        check_text("organization", &self.organization, 64)?;
        check_text("ticket_id", &self.ticket_id, MAX_TICKET_ID_CHARS)?;
        check_text("reason", &self.reason, MAX_TEXT_CHARS)
    }
}

/// A ticket scanned at the gate, to be marked controlled in TIXnGO.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlMessage {
    /// S-360 organization code.
    pub organization: String,
    /// S-360 ticket id.
    pub ticket_id: String,
    /// When it was scanned.
    pub controlled_at: DateTime<FixedOffset>,
    /// Gate, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// Control point (device or lane), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_point: Option<String>,
}

impl TicketMessage for ControlMessage {
    fn organization(&self) -> &str {
        &self.organization
    }
    fn ticket_id(&self) -> &str {
        &self.ticket_id
    }
    fn validate(&self) -> Result<(), String> {
        check_text("organization", &self.organization, 64)?;
        check_text("ticket_id", &self.ticket_id, MAX_TICKET_ID_CHARS)?;
        check_optional("gate", &self.gate, MAX_TEXT_CHARS)?;
        check_optional("control_point", &self.control_point, MAX_TEXT_CHARS)
    }
}

/// A question: what is this ticket's status in TIXnGO?
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// S-360 organization code.
    pub organization: String,
    /// S-360 ticket id.
    pub ticket_id: String,
}

impl TicketMessage for StatusQuery {
    fn organization(&self) -> &str {
        &self.organization
    }
    fn ticket_id(&self) -> &str {
        &self.ticket_id
    }
}

/// An event the bridge publishes to S-360 on `s360.ticket-events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutcomeEvent {
    /// `<flow>.succeeded`, `<flow>.dead-lettered` or `status.changed`; also the routing key.
    #[serde(rename = "type")]
    pub kind: String,
    /// S-360 organization (absent when the message was unreadable).
    pub organization: Option<String>,
    /// Ticket id (absent when the message was unreadable).
    pub ticket_id: Option<String>,
    /// TIXnGO status after the operation, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tixngo_status: Option<String>,
    /// Previous TIXnGO status (status changes).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_tixngo_status: Option<String>,
    /// The status S-360 should show: Printed, Controlled, Cancelled.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub s360_status: Option<String>,
    /// Error class, for dead letters.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_class: Option<String>,
    /// Error message, for dead letters.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_message: Option<String>,
    /// AMQP message id of the S-360 message this answers, for tracing.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message_id: Option<String>,
    /// When the bridge observed the outcome (RFC 3339).
    pub at: String,
}

/// A JSON body that does not deserialize, with the field it is about.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe_parse_error(.path, .source))]
pub struct ParseError {
    /// Where in the message: `performance.start`, `linked_ticket_ids[2]`; `.` for the message
    /// itself.
    pub path: String,
    /// What serde_json found there.
    pub source: serde_json::Error,
}

fn describe_parse_error(path: &str, error: &serde_json::Error) -> String {
    // The field says where; a line and column of a one-line message do not.
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) if path != "." => &text[..at],
        _ => &text,
    };
    if path == "." {
        text.to_owned()
    } else {
        format!("{path}: {text}")
    }
}

/// Deserializes a message from JSON, naming the field a refusal is about (a refused date is
/// `performance.start: premature end of input`, not a column).
pub fn from_json<M: serde::de::DeserializeOwned>(body: &[u8]) -> Result<M, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: Result<M, _> = serde_path_to_error::deserialize(&mut deserializer);
    match parsed {
        Ok(message) => deserializer.end().map(|()| message).map_err(|source| ParseError {
            path: ".".to_owned(),
            source,
        }),
        Err(error) => Err(ParseError {
            path: error.path().to_string(),
            source: error.into_inner(),
        }),
    }
}
