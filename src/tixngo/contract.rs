//! The TIXnGO ticket contract as the bridge checks it: the "Ticket fields" table of
//! docs/tixngo-api.md, section 3, and nothing more. One set of rules and limits for every ticket
//! the bridge sends, whether the built-in mapping or a template made it (the mapping meets it by
//! construction from a validated message; `tests/it/templates.rs` checks that it does).
//!
//! The simulator has its own implementation of the same table (`src/sim/validate.rs`) and shares
//! no code with this one, so a mistake in one cannot hide in the other.

use chrono::DateTime;
use serde_json::{Map, Value};

use crate::messages::{MAX_BARCODE_CHARS, MAX_TICKET_ID_CHARS};

/// `ticketType` values.
const TICKET_TYPES: &[&str] = &["EVENT_TICKET", "DIGITAL_PRIVILEGE"];
/// `productType` values.
const PRODUCT_TYPES: &[&str] = &[
    "MATCH",
    "EVENT",
    "OPEN_PASS",
    "SERVICE",
    "MEMBERSHIP_CARD",
    "SEASON_TICKET",
];
/// `activationParameters.method` values.
const ACTIVATION_METHODS: &[&str] = &["online", "offline"];

/// One field of a ticket that breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field's path in the ticket, as docs/tixngo-api.md writes it (`event.address.zip`,
    /// `ticketDetails.MAIN[2].key`); empty for the ticket itself.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} {}", self.path, self.message)
        }
    }
}

/// Every way `ticket` breaks the TIXnGO contract, in field order; empty when it meets it.
pub fn check_ticket(ticket: &Value) -> Vec<FieldProblem> {
    let mut check = Checker::default();
    let Some(ticket) = ticket.as_object() else {
        check.err("", "the ticket must be one JSON object");
        return check.problems;
    };
    check.text(ticket, "", "ticketId", true, Some(MAX_TICKET_ID_CHARS));
    check.one_of(ticket, "", "ticketType", TICKET_TYPES);
    check.one_of(ticket, "", "productType", PRODUCT_TYPES);
    if let Some(v) = present(ticket, "transferable")
        && !v.is_boolean()
    {
        check.err("transferable", "must be a boolean");
    }
    if let Some(v) = present(ticket, "linkedTicketIds") {
        match v.as_array() {
            Some(ids) => {
                for (i, id) in ids.iter().enumerate() {
                    check.text_value(&format!("linkedTicketIds[{i}]"), id, Some(MAX_TICKET_ID_CHARS));
                }
            }
            None => check.err("linkedTicketIds", "must be an array"),
        }
    }
    if let Some(event) = check.object(ticket, "", "event", true) {
        check.text(event, "event.", "name", true, None);
        let start = check.date(event, "event.", "startDate", true);
        let end = check.date(event, "event.", "endDate", false);
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            check.err("event.endDate", "must not be before event.startDate");
        }
        check.text(event, "event.", "id", false, None);
        if let Some(address) = check.object(event, "event.", "address", true) {
            for field in ["site", "city", "zip"] {
                check.text(address, "event.address.", field, true, None);
            }
            check.text(address, "event.address.", "street", false, None);
            check.letters(address, "event.address.", "countryCode", 2, true);
        }
    }
    if let Some(purchase) = check.object(ticket, "", "purchaseDetails", true) {
        check.date(purchase, "purchaseDetails.", "purchaseDate", true);
        if let Some(v) = present(purchase, "price")
            && !v.is_number()
        {
            check.err("purchaseDetails.price", "must be a number");
        }
        check.letters(purchase, "purchaseDetails.", "currency", 3, false);
        for field in ["orderId", "salesChannel", "pointOfSale"] {
            check.string(purchase, "purchaseDetails.", field);
        }
    }
    if let Some(security) = check.object(ticket, "", "security", true) {
        check.text(security, "security.", "barcode", true, Some(MAX_BARCODE_CHARS));
        check.string(security, "security.", "barcodeType");
    }
    if let Some(spectator) = check.object(ticket, "", "spectatorDetails", true) {
        for field in ["firstName", "lastName", "email"] {
            check.string(spectator, "spectatorDetails.", field);
        }
    }
    if let Some(activation) = check.object(ticket, "", "activationParameters", false) {
        check.string(activation, "activationParameters.", "groupId");
        if present(activation, "method").is_none() {
            check.err("activationParameters.method", "is required");
        }
        check.one_of(activation, "activationParameters.", "method", ACTIVATION_METHODS);
        check.date(activation, "activationParameters.", "time", false);
    }
    if let Some(details) = check.object(ticket, "", "ticketDetails", false) {
        for section in ["MAIN", "EXTRA", "HIDDEN"] {
            let Some(v) = present(details, section) else {
                continue;
            };
            let Some(lines) = v.as_array() else {
                check.err(&format!("ticketDetails.{section}"), "must be an array");
                continue;
            };
            for (i, line) in lines.iter().enumerate() {
                let at = format!("ticketDetails.{section}[{i}]");
                match line.as_object() {
                    Some(line) => {
                        for member in ["key", "value"] {
                            if !line.get(member).is_some_and(Value::is_string) {
                                check.err(&format!("{at}.{member}"), "is required and must be a string");
                            }
                        }
                    }
                    None => check.err(&at, "must be an object"),
                }
            }
        }
    }
    check.problems
}

/// A member that is there and not `null` (optional members may be either).
fn present<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

/// Collects problems.
#[derive(Default)]
struct Checker {
    /// Found so far.
    problems: Vec<FieldProblem>,
}

impl Checker {
    fn err(&mut self, path: &str, message: &str) {
        self.problems.push(FieldProblem {
            path: path.to_owned(),
            message: message.to_owned(),
        });
    }

    fn required(&mut self, object: &Map<String, Value>, prefix: &str, name: &str) -> bool {
        if present(object, name).is_some() {
            return true;
        }
        self.err(&format!("{prefix}{name}"), "is required");
        false
    }

    fn object<'a>(
        &mut self,
        object: &'a Map<String, Value>,
        prefix: &str,
        name: &str,
        required: bool,
    ) -> Option<&'a Map<String, Value>> {
        if required && !self.required(object, prefix, name) {
            return None;
        }
        let value = present(object, name)?;
        let inner = value.as_object();
        if inner.is_none() {
            self.err(&format!("{prefix}{name}"), "must be an object");
        }
        inner
    }

    /// A string that must not be empty (nor only blanks), with an optional length limit.
    fn text(
        &mut self,
        object: &Map<String, Value>,
        prefix: &str,
        name: &str,
        required: bool,
        max: Option<usize>,
    ) {
        if required && !self.required(object, prefix, name) {
            return;
        }
        if let Some(value) = present(object, name) {
            self.text_value(&format!("{prefix}{name}"), value, max);
        }
    }

    fn text_value(&mut self, path: &str, value: &Value, max: Option<usize>) {
        match value.as_str() {
            None => self.err(path, "must be a string"),
            Some(s) if s.trim().is_empty() => self.err(path, "must not be empty"),
            Some(s) => {
                if let Some(max) = max
                    && s.chars().count() > max
                {
                    self.err(path, &format!("must be at most {max} characters"));
                }
            }
        }
    }

    /// An optional string of any content.
    fn string(&mut self, object: &Map<String, Value>, prefix: &str, name: &str) {
        if let Some(value) = present(object, name)
            && !value.is_string()
        {
            self.err(&format!("{prefix}{name}"), "must be a string");
        }
    }

    fn one_of(&mut self, object: &Map<String, Value>, prefix: &str, name: &str, allowed: &[&str]) {
        if let Some(value) = present(object, name)
            && !value.as_str().is_some_and(|s| allowed.contains(&s))
        {
            self.err(
                &format!("{prefix}{name}"),
                &format!("must be one of: {}", allowed.join(", ")),
            );
        }
    }

    fn letters(&mut self, object: &Map<String, Value>, prefix: &str, name: &str, n: usize, required: bool) {
        if required && !self.required(object, prefix, name) {
            return;
        }
        if let Some(value) = present(object, name)
            && !value
                .as_str()
                .is_some_and(|s| s.len() == n && s.bytes().all(|b| b.is_ascii_uppercase()))
        {
            self.err(
                &format!("{prefix}{name}"),
                &format!("must be {n} upper-case letters"),
            );
        }
    }

    fn date(
        &mut self,
        object: &Map<String, Value>,
        prefix: &str,
        name: &str,
        required: bool,
    ) -> Option<DateTime<chrono::FixedOffset>> {
        if required && !self.required(object, prefix, name) {
            return None;
        }
        let value = present(object, name)?;
        let parsed = value.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        if parsed.is_none() {
            self.err(&format!("{prefix}{name}"), "must be an RFC 3339 date-time");
        }
        parsed
    }
}
