//! Validation of request items (tickets, cancellations, controls) read as raw JSON.
//!
//! Every problem is reported with its JSON path relative to the item (`event.address.zip`,
//! `ticketDetails.MAIN[2].key`); the item itself is the empty path `""`. Optional members may be
//! absent or `null`. Unknown members are accepted and ignored.

use serde::Serialize;
use serde_json::{Map, Value};

/// Longest accepted ticket id, in characters (documented limit).
pub const MAX_TICKET_ID_CHARS: usize = 256;
/// Longest accepted barcode, in characters (documented limit).
pub const MAX_BARCODE_CHARS: usize = 512;

const TICKET_TYPES: &[&str] = &["EVENT_TICKET", "DIGITAL_PRIVILEGE"];
const PRODUCT_TYPES: &[&str] = &[
    "MATCH",
    "EVENT",
    "OPEN_PASS",
    "SERVICE",
    "MEMBERSHIP_CARD",
    "SEASON_TICKET",
];
const ACTIVATION_METHODS: &[&str] = &["online", "offline"];
const DETAIL_SECTIONS: &[&str] = &["MAIN", "EXTRA", "HIDDEN"];

/// One problem found in a request item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldError {
    /// JSON path of the offending member, so the sender can find it without guessing.
    pub field: String,
    /// What is wrong with it, in plain words.
    pub message: String,
}

/// The outcome of checking one request item.
#[derive(Debug)]
pub(crate) enum Checked<T> {
    /// The item is usable.
    Valid {
        /// The item's ticket id.
        ticket_id: String,
        /// What the operation needs from the item.
        data: T,
    },
    /// The item is not usable; nothing may be stored.
    Invalid {
        /// The ticket id when the item carries one as a string (to count the call and echo it).
        ticket_id: Option<String>,
        /// Every problem found.
        errors: Vec<FieldError>,
    },
}

/// A valid ticket to inject.
#[derive(Debug)]
pub(crate) struct NewTicket {
    /// The whole ticket as sent: stored, and compared for idempotency.
    pub value: Value,
    /// The ticket's `transferable` flag (default true): transfer rules need it.
    pub transferable: bool,
}

/// Collects problems while walking one item.
struct Check {
    /// Problems found so far.
    errors: Vec<FieldError>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn is_present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

impl Check {
    fn new() -> Self {
        Check { errors: Vec::new() }
    }

    fn err(&mut self, field: String, message: impl Into<String>) {
        self.errors.push(FieldError {
            field,
            message: message.into(),
        });
    }

    /// A member that must be there (non-null).
    fn required<'a>(&mut self, obj: &'a Map<String, Value>, parent: &str, key: &str) -> Option<&'a Value> {
        let v = is_present(obj.get(key));
        if v.is_none() {
            self.err(join(parent, key), "required");
        }
        v
    }

    fn object<'a>(&mut self, v: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.err(path.to_owned(), "must be an object");
                None
            }
        }
    }

    fn string<'a>(&mut self, v: &'a Value, path: &str) -> Option<&'a str> {
        match v {
            Value::String(s) => Some(s),
            _ => {
                self.err(path.to_owned(), "must be a string");
                None
            }
        }
    }

    /// A required object member.
    fn req_object<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<&'a Map<String, Value>> {
        let v = self.required(obj, parent, key)?;
        self.object(v, &join(parent, key))
    }

    /// An optional object member.
    fn opt_object<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<&'a Map<String, Value>> {
        let v = is_present(obj.get(key))?;
        self.object(v, &join(parent, key))
    }

    /// A required string member that must not be empty, at most `max` characters.
    fn req_text(&mut self, obj: &Map<String, Value>, parent: &str, key: &str, max: Option<usize>) {
        let path = join(parent, key);
        let Some(v) = self.required(obj, parent, key) else {
            return;
        };
        if let Some(s) = self.string(v, &path) {
            self.text_rules(s, &path, max);
        }
    }

    fn text_rules(&mut self, s: &str, path: &str, max: Option<usize>) {
        if s.is_empty() {
            self.err(path.to_owned(), "must not be empty");
        } else if let Some(max) = max
            && s.chars().count() > max
        {
            self.err(path.to_owned(), format!("must be at most {max} characters"));
        }
    }

    /// An optional string member (any content, empty allowed).
    fn opt_string(&mut self, obj: &Map<String, Value>, parent: &str, key: &str) {
        if let Some(v) = is_present(obj.get(key)) {
            self.string(v, &join(parent, key));
        }
    }

    fn date(&mut self, v: &Value, path: &str) {
        if let Some(s) = self.string(v, path)
            && chrono::DateTime::parse_from_rfc3339(s).is_err()
        {
            self.err(path.to_owned(), "must be an RFC 3339 date-time");
        }
    }

    fn req_date(&mut self, obj: &Map<String, Value>, parent: &str, key: &str) {
        if let Some(v) = self.required(obj, parent, key) {
            self.date(v, &join(parent, key));
        }
    }

    fn opt_date(&mut self, obj: &Map<String, Value>, parent: &str, key: &str) {
        if let Some(v) = is_present(obj.get(key)) {
            self.date(v, &join(parent, key));
        }
    }

    fn one_of(&mut self, v: &Value, path: &str, allowed: &[&str]) {
        if let Some(s) = self.string(v, path)
            && !allowed.contains(&s)
        {
            self.err(path.to_owned(), format!("must be one of: {}", allowed.join(", ")));
        }
    }

    fn opt_one_of(&mut self, obj: &Map<String, Value>, parent: &str, key: &str, allowed: &[&str]) {
        if let Some(v) = is_present(obj.get(key)) {
            self.one_of(v, &join(parent, key), allowed);
        }
    }

    fn opt_bool(&mut self, obj: &Map<String, Value>, parent: &str, key: &str) -> Option<bool> {
        let v = is_present(obj.get(key))?;
        match v {
            Value::Bool(b) => Some(*b),
            _ => {
                self.err(join(parent, key), "must be a boolean");
                None
            }
        }
    }

    fn letters(&mut self, obj: &Map<String, Value>, parent: &str, key: &str, n: usize, required: bool) {
        let path = join(parent, key);
        let v = if required {
            self.required(obj, parent, key)
        } else {
            is_present(obj.get(key))
        };
        let Some(v) = v else {
            return;
        };
        if let Some(s) = self.string(v, &path)
            && (s.len() != n || !s.bytes().all(|b| b.is_ascii_uppercase()))
        {
            self.err(path, format!("must be {n} upper-case letters"));
        }
    }

    /// The item's `ticketId`: required, non-empty, at most 256 characters.
    fn ticket_id(&mut self, obj: &Map<String, Value>) -> Option<String> {
        let v = self.required(obj, "", "ticketId")?;
        let s = self.string(v, "ticketId")?;
        let before = self.errors.len();
        self.text_rules(s, "ticketId", Some(MAX_TICKET_ID_CHARS));
        (self.errors.len() == before).then(|| s.to_owned())
    }

    /// The valid ticket id, or the (possibly absent) id and the problems.
    fn finish(self, obj: &Map<String, Value>, id: Option<String>) -> Result<String, Checked<Never>> {
        match id {
            Some(ticket_id) if self.errors.is_empty() => Ok(ticket_id),
            _ => Err(Checked::Invalid {
                ticket_id: obj.get("ticketId").and_then(Value::as_str).map(str::to_owned),
                errors: self.errors,
            }),
        }
    }
}

/// Uninhabited payload: lets [`Check::finish`] return an `Invalid` usable for any `T`.
#[derive(Debug)]
pub(crate) enum Never {}

impl Checked<Never> {
    fn widen<T>(self) -> Checked<T> {
        match self {
            Checked::Invalid { ticket_id, errors } => Checked::Invalid { ticket_id, errors },
            Checked::Valid { data, .. } => match data {},
        }
    }
}

fn not_an_object<T>() -> Checked<T> {
    Checked::Invalid {
        ticket_id: None,
        errors: vec![FieldError {
            field: String::new(),
            message: "must be an object".to_owned(),
        }],
    }
}

/// Checks one ticket of an injection request.
pub(crate) fn ticket(value: Value) -> Checked<NewTicket> {
    let Value::Object(obj) = &value else {
        return not_an_object();
    };
    let mut c = Check::new();
    let id = c.ticket_id(obj);
    c.opt_one_of(obj, "", "ticketType", TICKET_TYPES);
    c.opt_one_of(obj, "", "productType", PRODUCT_TYPES);
    let transferable = c.opt_bool(obj, "", "transferable").unwrap_or(true);
    if let Some(v) = is_present(obj.get("linkedTicketIds")) {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("linkedTicketIds[{i}]");
                    if let Some(s) = c.string(item, &path) {
                        c.text_rules(s, &path, Some(MAX_TICKET_ID_CHARS));
                    }
                }
            }
            _ => c.err("linkedTicketIds".to_owned(), "must be an array"),
        }
    }

    if let Some(event) = c.req_object(obj, "", "event") {
        c.opt_string(event, "event", "id");
        c.req_text(event, "event", "name", None);
        c.req_date(event, "event", "startDate");
        c.opt_date(event, "event", "endDate");
        if let (Some(start), Some(end)) = (
            event.get("startDate").and_then(Value::as_str).and_then(rfc3339),
            event.get("endDate").and_then(Value::as_str).and_then(rfc3339),
        ) && end < start
        {
            c.err("event.endDate".to_owned(), "must not be before event.startDate");
        }
        if let Some(address) = c.req_object(event, "event", "address") {
            let p = "event.address";
            c.req_text(address, p, "site", None);
            c.opt_string(address, p, "street");
            c.req_text(address, p, "city", None);
            c.req_text(address, p, "zip", None);
            c.letters(address, p, "countryCode", 2, true);
        }
    }

    if let Some(purchase) = c.req_object(obj, "", "purchaseDetails") {
        let p = "purchaseDetails";
        c.opt_string(purchase, p, "orderId");
        c.req_date(purchase, p, "purchaseDate");
        if let Some(v) = is_present(purchase.get("price"))
            && !v.is_number()
        {
            c.err(join(p, "price"), "must be a number");
        }
        c.letters(purchase, p, "currency", 3, false);
        c.opt_string(purchase, p, "salesChannel");
        c.opt_string(purchase, p, "pointOfSale");
    }

    if let Some(security) = c.req_object(obj, "", "security") {
        c.req_text(security, "security", "barcode", Some(MAX_BARCODE_CHARS));
        c.opt_string(security, "security", "barcodeType");
    }

    if let Some(spectator) = c.req_object(obj, "", "spectatorDetails") {
        for key in ["firstName", "lastName", "email"] {
            c.opt_string(spectator, "spectatorDetails", key);
        }
    }

    if let Some(activation) = c.opt_object(obj, "", "activationParameters") {
        let p = "activationParameters";
        c.opt_string(activation, p, "groupId");
        if let Some(v) = c.required(activation, p, "method") {
            c.one_of(v, &join(p, "method"), ACTIVATION_METHODS);
        }
        c.opt_date(activation, p, "time");
    }

    if let Some(details) = c.opt_object(obj, "", "ticketDetails") {
        for section in DETAIL_SECTIONS {
            let Some(v) = is_present(details.get(*section)) else {
                continue;
            };
            let Value::Array(entries) = v else {
                c.err(format!("ticketDetails.{section}"), "must be an array");
                continue;
            };
            for (i, entry) in entries.iter().enumerate() {
                let path = format!("ticketDetails.{section}[{i}]");
                if let Some(e) = c.object(entry, &path) {
                    for key in ["key", "value"] {
                        if let Some(v) = c.required(e, &path, key) {
                            c.string(v, &join(&path, key));
                        }
                    }
                }
            }
        }
    }

    match c.finish(obj, id) {
        Ok(ticket_id) => Checked::Valid {
            ticket_id,
            data: NewTicket { value, transferable },
        },
        Err(invalid) => invalid.widen(),
    }
}

fn rfc3339(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// Checks one item of a cancellation request; the valid item is kept as sent.
pub(crate) fn cancellation(value: Value) -> Checked<Value> {
    let Value::Object(obj) = &value else {
        return not_an_object();
    };
    let mut c = Check::new();
    let id = c.ticket_id(obj);
    if let Some(v) = c.required(obj, "", "reason") {
        c.string(v, "reason");
    }
    if let Some(v) = c.required(obj, "", "showDeletedTicket")
        && !v.is_boolean()
    {
        c.err("showDeletedTicket".to_owned(), "must be a boolean");
    }
    match c.finish(obj, id) {
        Ok(ticket_id) => Checked::Valid {
            ticket_id,
            data: value,
        },
        Err(invalid) => invalid.widen(),
    }
}

/// Checks one item of a control request; the valid item is kept as sent.
pub(crate) fn control(value: Value) -> Checked<Value> {
    let Value::Object(obj) = &value else {
        return not_an_object();
    };
    let mut c = Check::new();
    let id = c.ticket_id(obj);
    c.req_date(obj, "", "controlledAt");
    c.opt_string(obj, "", "gate");
    c.opt_string(obj, "", "controlPoint");
    match c.finish(obj, id) {
        Ok(ticket_id) => Checked::Valid {
            ticket_id,
            data: value,
        },
        Err(invalid) => invalid.widen(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "ticketId": "T-1",
            "event": {"name": "Final", "startDate": "2030-05-01T20:00:00+02:00",
                      "address": {"site": "Stade", "city": "Genève", "zip": "1200", "countryCode": "CH"}},
            "purchaseDetails": {"purchaseDate": "2030-01-01T10:00:00Z", "price": 10.5, "currency": "CHF"},
            "security": {"barcode": "123"},
            "spectatorDetails": {},
            "ticketDetails": {"MAIN": [{"key": "Seat", "value": "12"}]},
            "whatever": 1
        })
    }

    fn fields(c: Checked<NewTicket>) -> Vec<String> {
        match c {
            Checked::Valid { .. } => vec![],
            Checked::Invalid { errors, .. } => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn valid_ticket_passes() {
        match ticket(valid()) {
            Checked::Valid { ticket_id, data } => {
                assert_eq!(ticket_id, "T-1");
                assert!(data.transferable);
            }
            Checked::Invalid { errors, .. } => panic!("{errors:?}"),
        }
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let mut t = valid();
        t["event"]["address"].as_object_mut().unwrap().remove("zip");
        t["event"]["address"]["countryCode"] = json!("ch");
        t["security"]["barcode"] = json!("x".repeat(513));
        t["purchaseDetails"]["purchaseDate"] = json!("yesterday");
        t["ticketDetails"]["MAIN"][0]["value"] = json!(3);
        t.as_object_mut().unwrap().remove("spectatorDetails");
        assert_eq!(
            fields(ticket(t)),
            vec![
                "event.address.zip",
                "event.address.countryCode",
                "purchaseDetails.purchaseDate",
                "security.barcode",
                "spectatorDetails",
                "ticketDetails.MAIN[0].value",
            ]
        );
    }

    #[test]
    fn ticket_id_limits() {
        let mut t = valid();
        t["ticketId"] = json!("x".repeat(257));
        assert_eq!(fields(ticket(t)), vec!["ticketId"]);
        let mut t = valid();
        t["ticketId"] = json!("é".repeat(256));
        assert!(fields(ticket(t)).is_empty());
        assert_eq!(fields(ticket(json!([1]))), vec![""]);
    }

    #[test]
    fn cancellation_and_control_items() {
        assert!(matches!(
            cancellation(json!({"ticketId": "a", "reason": "r", "showDeletedTicket": true})),
            Checked::Valid { .. }
        ));
        match cancellation(json!({"ticketId": "a", "showDeletedTicket": "yes"})) {
            Checked::Invalid { ticket_id, errors } => {
                assert_eq!(ticket_id.as_deref(), Some("a"));
                assert_eq!(errors.len(), 2);
            }
            Checked::Valid { .. } => panic!("should be invalid"),
        }
        assert!(matches!(
            control(json!({"ticketId": "a", "controlledAt": "2030-01-01T10:00:00Z", "gate": null})),
            Checked::Valid { .. }
        ));
        assert!(matches!(
            control(json!({"ticketId": "a"})),
            Checked::Invalid { .. }
        ));
    }
}
