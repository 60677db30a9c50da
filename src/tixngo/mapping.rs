//! The built-in mapping of an S-360 injection to a TIXnGO ticket (interfaces of kind `tixngo`).
//! The shape it produces is the one docs/tixngo-api.md documents.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::Serialize;
use serde_json::Value;

use crate::messages::{ActivationMethod, InjectMessage, ProductKind};

fn date(time: &DateTime<FixedOffset>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// TIXnGO's `productType` for a product kind.
pub fn product_type(kind: ProductKind) -> &'static str {
    match kind {
        ProductKind::Match => "MATCH",
        ProductKind::Event => "EVENT",
        ProductKind::OpenPass => "OPEN_PASS",
        ProductKind::Service => "SERVICE",
        ProductKind::MembershipCard => "MEMBERSHIP_CARD",
        ProductKind::SeasonTicket => "SEASON_TICKET",
    }
}

/// A TIXnGO ticket as the built-in mapping makes it, borrowing from its message: serialized
/// straight to the request body, without building a `serde_json::Value` first (that cost about
/// half of the bridge's own CPU per ticket).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket<'a> {
    /// S-360's ticket id, TIXnGO's idempotency key.
    ticket_id: &'a str,
    /// `EVENT_TICKET` or `DIGITAL_PRIVILEGE`.
    ticket_type: &'static str,
    /// See [`product_type`].
    product_type: &'static str,
    /// Digital privileges are personal; event tickets may be transferred.
    transferable: bool,
    /// Tickets sold together (e.g. a parking ticket with a match ticket).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    linked_ticket_ids: &'a [String],
    /// What the ticket is for.
    event: Event<'a>,
    /// The order.
    purchase_details: PurchaseDetails<'a>,
    /// The barcode shown at the gate.
    security: Security<'a>,
    /// The holder.
    spectator_details: SpectatorDetails<'a>,
    /// When and how the ticket may be activated, if S-360 says.
    #[serde(skip_serializing_if = "Option::is_none")]
    activation_parameters: Option<ActivationParameters<'a>>,
    /// Key/value lines shown in the wallet, by section.
    ticket_details: TicketDetails<'a>,
}

/// `event` of a ticket.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    /// The performance id, or the product code of a privilege.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    /// Performance name, teams, or product name and season.
    name: Cow<'a, str>,
    /// Start of the performance or of the validity.
    start_date: String,
    /// End of the performance or of the validity.
    #[serde(skip_serializing_if = "Option::is_none")]
    end_date: Option<String>,
    /// The venue.
    address: Address<'a>,
}

/// `event.address`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Address<'a> {
    /// Venue name.
    site: &'a str,
    /// Street, when S-360 has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    street: Option<&'a str>,
    /// City.
    city: &'a str,
    /// Postal code.
    zip: &'a str,
    /// ISO 3166 country code.
    country_code: &'a str,
}

/// `purchaseDetails`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseDetails<'a> {
    /// S-360's order.
    order_id: &'a str,
    /// When it was bought.
    purchase_date: String,
    /// Price, when S-360 sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
    /// Currency of the price.
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'a str>,
    /// Where it was sold.
    sales_channel: &'a str,
    /// Point of sale, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    point_of_sale: Option<&'a str>,
}

/// `security`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Security<'a> {
    /// The barcode.
    barcode: &'a str,
    /// Always `QRCODE`.
    barcode_type: &'static str,
}

/// `spectatorDetails`: only what S-360 knows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SpectatorDetails<'a> {
    /// First name.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    /// Last name.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
    /// E-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

/// `activationParameters`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ActivationParameters<'a> {
    /// Tickets activated together.
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    /// `online` or `offline`.
    method: &'static str,
    /// When activation opens.
    time: String,
}

/// `ticketDetails`: the wallet's lines.
#[derive(Debug, Serialize)]
struct TicketDetails<'a> {
    /// Shown first.
    #[serde(rename = "MAIN")]
    main: Vec<Detail<'a>>,
    /// Shown on the back.
    #[serde(rename = "EXTRA")]
    extra: Vec<Detail<'a>>,
    /// Not shown: for TIXnGO's and S-360's own use.
    #[serde(rename = "HIDDEN")]
    hidden: Vec<Detail<'a>>,
}

/// One wallet line.
#[derive(Debug, Serialize)]
struct Detail<'a> {
    /// Label key.
    key: &'static str,
    /// Value.
    value: Cow<'a, str>,
}

fn detail<'a>(key: &'static str, value: impl Into<Cow<'a, str>>) -> Detail<'a> {
    Detail {
        key,
        value: value.into(),
    }
}

/// The TIXnGO ticket for a validated injection message.
pub fn ticket(message: &InjectMessage) -> Ticket<'_> {
    let kind = message.product.kind;
    let product = &message.product;
    let (name, start, end, event_id): (Cow<'_, str>, _, _, _) =
        match (&message.performance, &message.validity) {
            (Some(p), _) => {
                let name = match (&p.name, &p.host_team, &p.opposing_team) {
                    (Some(name), _, _) => Cow::Borrowed(name.as_str()),
                    (None, Some(host), Some(opposing)) => Cow::Owned(format!("{host} - {opposing}")),
                    _ => Cow::Borrowed(product.name.as_str()),
                };
                (
                    name,
                    date(&p.start),
                    p.end.as_ref().map(date),
                    Some(p.id.as_str()),
                )
            }
            (None, Some(v)) => {
                let name = match &product.season {
                    Some(season) => Cow::Owned(format!("{} {season}", product.name)),
                    None => Cow::Borrowed(product.name.as_str()),
                };
                (name, date(&v.from), Some(date(&v.until)), product.code.as_deref())
            }
            // `validate` requires one of the two; keep the mapping total anyway.
            (None, None) => (
                Cow::Borrowed(product.name.as_str()),
                date(&message.issued_at),
                None,
                None,
            ),
        };

    let mut main = vec![detail("product", product.name.as_str())];
    if let Some(competition) = message
        .performance
        .as_ref()
        .and_then(|p| p.competition.as_deref())
    {
        main.push(detail("competition", competition));
    }
    if let Some(season) = &product.season {
        main.push(detail("season", season.as_str()));
    }
    if let Some(seat) = &message.seat {
        for (key, value) in [
            ("area", &seat.area),
            ("block", &seat.block),
            ("row", &seat.row),
            ("seat", &seat.number),
            ("entrance", &seat.entrance),
        ] {
            if let Some(value) = value {
                main.push(detail(key, value.as_str()));
            }
        }
    }
    let mut extra = Vec::new();
    if let Some(v) = &message.validity {
        extra.push(detail("validFrom", date(&v.from)));
        extra.push(detail("validUntil", date(&v.until)));
    }
    let mut hidden = vec![detail("s360ProductKind", crate::messages::kind_name(kind))];
    if let Some(code) = &product.code {
        hidden.push(detail("s360ProductCode", code.as_str()));
    }

    let venue = &message.venue;
    let purchase = &message.purchase;
    let spectator = &message.spectator;
    Ticket {
        ticket_id: &message.ticket_id,
        ticket_type: if kind.is_privilege() {
            "DIGITAL_PRIVILEGE"
        } else {
            "EVENT_TICKET"
        },
        product_type: product_type(kind),
        transferable: !kind.is_privilege(),
        linked_ticket_ids: &message.linked_ticket_ids,
        event: Event {
            id: event_id,
            name,
            start_date: start,
            end_date: end,
            address: Address {
                site: &venue.site,
                street: venue.street.as_deref(),
                city: &venue.city,
                zip: &venue.zip,
                country_code: &venue.country_code,
            },
        },
        purchase_details: PurchaseDetails {
            order_id: &purchase.order_id,
            purchase_date: date(&purchase.purchased_at),
            price: purchase.price,
            currency: purchase.currency.as_deref(),
            sales_channel: &purchase.sales_channel,
            point_of_sale: purchase.point_of_sale.as_deref(),
        },
        security: Security {
            barcode: &message.barcode,
            barcode_type: "QRCODE",
        },
        spectator_details: SpectatorDetails {
            first_name: spectator.first_name.as_deref(),
            last_name: spectator.last_name.as_deref(),
            email: spectator.email.as_deref(),
        },
        activation_parameters: message.activation.as_ref().map(|a| ActivationParameters {
            group_id: a.group_id.as_deref(),
            method: match a.method {
                ActivationMethod::Online => "online",
                ActivationMethod::Offline => "offline",
            },
            time: date(&a.time),
        }),
        ticket_details: TicketDetails { main, extra, hidden },
    }
}

/// The TIXnGO ticket for a validated injection message, as a JSON value (for templates' callers
/// and tests that inspect it; the bridge itself serializes [`ticket`] directly).
pub fn to_tixngo(message: &InjectMessage) -> Value {
    // Only strings, booleans, finite-or-null numbers and sequences: serializing cannot fail.
    serde_json::to_value(ticket(message)).unwrap_or(Value::Null)
}
