//! The built-in mapping of an S-360 injection to a TIXnGO ticket (interfaces of kind `tixngo`).
//! The shape it produces is the one docs/tixngo-api.md documents.

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde_json::{Map, Value, json};

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

/// The TIXnGO ticket for a validated injection message.
pub fn to_tixngo(message: &InjectMessage) -> Value {
    let kind = message.product.kind;
    let (name, start, end, event_id) = match (&message.performance, &message.validity) {
        (Some(p), _) => {
            let name = match (&p.name, &p.host_team, &p.opposing_team) {
                (Some(name), _, _) => name.clone(),
                (None, Some(host), Some(opposing)) => format!("{host} - {opposing}"),
                _ => message.product.name.clone(),
            };
            (name, date(&p.start), p.end.as_ref().map(date), Some(p.id.clone()))
        }
        (None, Some(v)) => {
            let name = match &message.product.season {
                Some(season) => format!("{} {season}", message.product.name),
                None => message.product.name.clone(),
            };
            (
                name,
                date(&v.from),
                Some(date(&v.until)),
                message.product.code.clone(),
            )
        }
        // `validate` requires one of the two; keep the mapping total anyway.
        (None, None) => (message.product.name.clone(), date(&message.issued_at), None, None),
    };

    let mut address = Map::new();
    address.insert("site".into(), json!(message.venue.site));
    if let Some(street) = &message.venue.street {
        address.insert("street".into(), json!(street));
    }
    address.insert("city".into(), json!(message.venue.city));
    address.insert("zip".into(), json!(message.venue.zip));
    address.insert("countryCode".into(), json!(message.venue.country_code));

    let mut event = Map::new();
    if let Some(id) = event_id {
        event.insert("id".into(), json!(id));
    }
    event.insert("name".into(), json!(name));
    event.insert("startDate".into(), json!(start));
    if let Some(end) = end {
        event.insert("endDate".into(), json!(end));
    }
    event.insert("address".into(), Value::Object(address));

    let mut purchase = Map::new();
    purchase.insert("orderId".into(), json!(message.purchase.order_id));
    purchase.insert("purchaseDate".into(), json!(date(&message.purchase.purchased_at)));
    if let Some(price) = message.purchase.price {
        purchase.insert("price".into(), json!(price));
    }
    if let Some(currency) = &message.purchase.currency {
        purchase.insert("currency".into(), json!(currency));
    }
    purchase.insert("salesChannel".into(), json!(message.purchase.sales_channel));
    if let Some(pos) = &message.purchase.point_of_sale {
        purchase.insert("pointOfSale".into(), json!(pos));
    }

    let mut spectator = Map::new();
    for (key, value) in [
        ("firstName", &message.spectator.first_name),
        ("lastName", &message.spectator.last_name),
        ("email", &message.spectator.email),
    ] {
        if let Some(value) = value {
            spectator.insert(key.into(), json!(value));
        }
    }

    let mut main = Vec::new();
    let mut extra = Vec::new();
    let mut hidden = vec![json!({"key": "s360ProductKind", "value": crate::messages::kind_name(kind)})];
    main.push(json!({"key": "product", "value": message.product.name}));
    if let Some(p) = &message.performance
        && let Some(competition) = &p.competition
    {
        main.push(json!({"key": "competition", "value": competition}));
    }
    if let Some(season) = &message.product.season {
        main.push(json!({"key": "season", "value": season}));
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
                main.push(json!({"key": key, "value": value}));
            }
        }
    }
    if let Some(v) = &message.validity {
        extra.push(json!({"key": "validFrom", "value": date(&v.from)}));
        extra.push(json!({"key": "validUntil", "value": date(&v.until)}));
    }
    if let Some(code) = &message.product.code {
        hidden.push(json!({"key": "s360ProductCode", "value": code}));
    }

    let mut ticket = Map::new();
    ticket.insert("ticketId".into(), json!(message.ticket_id));
    ticket.insert(
        "ticketType".into(),
        json!(if kind.is_privilege() {
            "DIGITAL_PRIVILEGE"
        } else {
            "EVENT_TICKET"
        }),
    );
    ticket.insert("productType".into(), json!(product_type(kind)));
    ticket.insert("transferable".into(), json!(!kind.is_privilege()));
    if !message.linked_ticket_ids.is_empty() {
        ticket.insert("linkedTicketIds".into(), json!(message.linked_ticket_ids));
    }
    ticket.insert("event".into(), Value::Object(event));
    ticket.insert("purchaseDetails".into(), Value::Object(purchase));
    ticket.insert(
        "security".into(),
        json!({"barcode": message.barcode, "barcodeType": "QRCODE"}),
    );
    ticket.insert("spectatorDetails".into(), Value::Object(spectator));
    if let Some(a) = &message.activation {
        let mut activation = Map::new();
        if let Some(group) = &a.group_id {
            activation.insert("groupId".into(), json!(group));
        }
        activation.insert(
            "method".into(),
            json!(match a.method {
                ActivationMethod::Online => "online",
                ActivationMethod::Offline => "offline",
            }),
        );
        activation.insert("time".into(), json!(date(&a.time)));
        ticket.insert("activationParameters".into(), Value::Object(activation));
    }
    ticket.insert(
        "ticketDetails".into(),
        json!({"MAIN": main, "EXTRA": extra, "HIDDEN": hidden}),
    );
    Value::Object(ticket)
}
