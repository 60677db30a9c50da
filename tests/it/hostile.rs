//! Hostile input (issue 10, item 2).
//!
//! Property tests drive the pure parts (decoding and validation, the built-in mapping, ticket
//! templates, digest e-mails, header truncation) with arbitrary and adversarial input: none may
//! panic, and what they produce stays bounded. The end-to-end tests publish every kind of
//! broken message to a running bridge (real RabbitMQ, the simulator over HTTP): each ends as an
//! `invalid-message` dead letter with a clear reason, and a good message published after them
//! still succeeds, so nothing crashed and nothing blocks the queue.

use std::path::Path;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use proptest::prelude::*;
use serde_json::{Value, json};
use tixngo_bridge::broker::headers;
use tixngo_bridge::engine::decode::{Invalid, decode};
use tixngo_bridge::flows::Flow;
use tixngo_bridge::messages::{CancelMessage, ControlMessage, InjectMessage, StatusQuery};
use tixngo_bridge::notifier::digest::{self, GroupKey, Line};
use tixngo_bridge::tixngo::mapping;
use tixngo_bridge::tixngo::template::TicketTemplate;

use crate::helpers::*;

const EXAMPLE_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates/example.json.j2");
const MAX_BYTES: usize = 1024 * 1024;

fn delivery(body: Vec<u8>, content_type: Option<&str>) -> Delivery {
    let mut d = Delivery::mock(1, "s360.tickets".into(), "ticket.inject".into(), false, body);
    if let Some(ct) = content_type {
        d.properties = BasicProperties::default().with_content_type(ct.into());
    }
    d
}

/// Decodes `body` as every flow's message; returns the inject result.
fn decode_all(body: &[u8], content_type: Option<&str>) -> Result<InjectMessage, Invalid> {
    let d = delivery(body.to_vec(), content_type);
    let _ = decode::<CancelMessage>(&d, MAX_BYTES);
    let _ = decode::<ControlMessage>(&d, MAX_BYTES);
    let _ = decode::<StatusQuery>(&d, MAX_BYTES);
    decode::<InjectMessage>(&d, MAX_BYTES)
}

/// Strings a hostile or careless exporter could put in any field.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("\r\nBcc: victim@evil.example\r\n".to_owned()),
        Just("<script>alert(1)</script><b>x</b>&amp;".to_owned()),
        Just("{{ 7 * 7 }}{% raw %}\"'\\".to_owned()),
        Just("\u{0000}\u{0007}\u{001b}[31m\u{202e}\u{feff}".to_owned()),
        Just("日本語 émoji 🎟️ ".repeat(40)),
        "\\PC{0,40}",
        ".{0,300}",
        (1usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

fn opt(s: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(s)
}

/// An injection message shaped like S-360's, every string field hostile.
fn hostile_inject() -> impl Strategy<Value = Value> {
    let kinds = prop_oneof![
        Just("match"),
        Just("event"),
        Just("open_pass"),
        Just("service"),
        Just("membership_card"),
        Just("season_ticket"),
    ];
    (
        (nasty_string(), nasty_string(), nasty_string(), kinds),
        (opt(nasty_string()), opt(nasty_string()), nasty_string()),
        (opt(nasty_string()), opt(nasty_string()), opt(nasty_string())),
        (nasty_string(), nasty_string(), nasty_string(), opt(nasty_string())),
        (opt(nasty_string()), opt(nasty_string()), opt(nasty_string())),
        proptest::collection::vec(nasty_string(), 0..3),
        (nasty_string(), nasty_string(), opt(nasty_string())),
        any::<bool>(),
    )
        .prop_map(
            |(
                (ticket_id, barcode, product_name, kind),
                (code, season, perf_id),
                (host, opposing, competition),
                (site, city, zip, street),
                (area, first, last),
                linked,
                (order_id, channel, email),
                valid_codes,
            )| {
                let mut m = json!({
                    "organization": "ACME",
                    "ticket_id": ticket_id,
                    "issued_at": "2026-11-20T10:00:00+01:00",
                    "product": {"kind": kind, "name": product_name, "code": code, "season": season},
                    "performance": {"id": perf_id, "start": "2026-12-06T18:00:00+01:00",
                                    "host_team": host, "opposing_team": opposing,
                                    "competition": competition, "name": null},
                    "validity": {"from": "2026-07-01T00:00:00Z", "until": "2027-06-30T23:59:59Z"},
                    "venue": {"site": site, "street": street, "city": city, "zip": zip,
                              "country_code": if valid_codes { "CH" } else { "ch\r\n" }},
                    "seat": {"area": area, "block": "B4"},
                    "linked_ticket_ids": linked,
                    "barcode": barcode,
                    "purchase": {"order_id": order_id, "purchased_at": "2026-11-20T09:58:00+01:00",
                                 "sales_channel": channel, "currency": if valid_codes { "CHF" } else { "<b>" }},
                    "spectator": {"first_name": first, "last_name": last, "email": email},
                });
                // Optional fields: absent rather than null, as S-360 exports them.
                strip_nulls(&mut m);
                m
            },
        )
}

fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        nasty_string().prop_map(Value::from),
        Just(json!("2026-11-20T10:00:00+01:00")),
        Just(json!("ACME")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("organization".to_owned()),
                    Just("ticket_id".to_owned()),
                    Just("product".to_owned()),
                    Just("kind".to_owned()),
                    Just("venue".to_owned()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every string anywhere inside `value`.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes under any content type: a message or a reason, never a panic. What is
    /// known of a broken message is only what it said.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        content_type in opt(prop_oneof![
            Just("application/json".to_owned()),
            Just("Application/JSON; charset=utf-8".to_owned()),
            "\\PC{0,80}",
        ]),
    ) {
        if let Err(invalid) = decode_all(&body, content_type.as_deref()) {
            prop_assert!(!invalid.reason.is_empty());
            // The reason quotes at most what the message held, plus a fixed text.
            prop_assert!(invalid.reason.len() <= body.len() + 512, "{}", invalid.reason);
        }
    }

    /// Arbitrary JSON (wrong types, missing and extra fields) as every flow's message.
    #[test]
    fn decoding_arbitrary_json_never_panics(value in any_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Ok(message) = decode_all(&body, Some("application/json")) {
            let ticket = mapping::to_tixngo(&message);
            prop_assert_eq!(&ticket["ticketId"], &json!(message.ticket_id));
        }
    }

    /// Hostile strings in every field: either refused with a reason naming the field, or
    /// mapped and rendered with every string passed through exactly (JSON-escaped, never
    /// interpreted), the output bounded by the input.
    #[test]
    fn hostile_strings_are_refused_or_passed_through_exactly(message in hostile_inject()) {
        let body = serde_json::to_vec(&message).unwrap();
        let decoded = decode_all(&body, Some("application/json"));
        let message = match decoded {
            Err(invalid) => {
                prop_assert!(!invalid.reason.is_empty());
                return Ok(());
            }
            Ok(m) => m,
        };
        let mapped = mapping::to_tixngo(&message);
        let mapped_text = serde_json::to_string(&mapped).unwrap();
        // Every field appears at most a few times (event name = host + opposing, …).
        prop_assert!(mapped_text.len() <= 4 * body.len() + 4096, "{} from {}", mapped_text.len(), body.len());
        prop_assert_eq!(mapped["ticketId"].as_str(), Some(message.ticket_id.as_str()));
        prop_assert_eq!(mapped["security"]["barcode"].as_str(), Some(message.barcode.as_str()));
        prop_assert_eq!(mapped["event"]["address"]["site"].as_str(), Some(message.venue.site.as_str()));
        prop_assert_eq!(
            mapped["spectatorDetails"]["lastName"].as_str(),
            message.spectator.last_name.as_deref()
        );

        let template = TicketTemplate::load(Path::new(EXAMPLE_TEMPLATE)).unwrap();
        match template.render(&message) {
            Ok(doc) => {
                prop_assert!(doc.json.get().len() <= 4 * body.len() + 8192);
                let rendered: Value = serde_json::from_str(doc.json.get()).unwrap();
                prop_assert_eq!(rendered["ticketId"].as_str(), Some(message.ticket_id.as_str()));
                prop_assert_eq!(&doc.ticket_id, &message.ticket_id);
                prop_assert_eq!(rendered["security"]["barcode"].as_str(), Some(message.barcode.as_str()));
                // No string of the output appeared from nowhere: a value cannot inject keys.
                let mut out = Vec::new();
                strings(&rendered, &mut out);
                let mut input = Vec::new();
                strings(&serde_json::to_value(&message).unwrap(), &mut input);
                for s in out.iter().filter(|s| s.contains("{{") || s.contains("\r\n")) {
                    prop_assert!(input.iter().any(|i| i.contains(s.as_str()) || s.contains(i.as_str())), "{s:?}");
                }
            }
            // A template may refuse (a field too long for TIXnGO): with a reason, not a panic.
            Err(reason) => prop_assert!(reason.contains("template"), "{reason}"),
        }
    }

    /// Digest e-mails: whatever a dead letter's headers say, the subject is one line, the
    /// text has no injected line, the HTML no injected markup, and the size is bounded.
    #[test]
    fn digest_emails_stay_inert_and_bounded(
        lines in proptest::collection::vec((opt(nasty_string()), opt(nasty_string()), any::<Option<i64>>()), 0..20),
        class in nasty_string(),
    ) {
        let key = GroupKey { organization: Some("ACME".into()), flow: Flow::Inject, class: tixngo_bridge::failure_class::FailureClass::of_dead_letter(Some(&class), None) };
        let lines: Vec<Line> = lines.iter().map(|(t, e, s)| Line::new(t.as_deref(), e.as_deref(), *s)).collect();
        let email = digest::render(&key, lines.len(), &lines, "tixngo.inject.parked", vec!["ops@acme.example".into()]).unwrap();
        prop_assert!(!email.subject.contains(['\r', '\n']));
        prop_assert!(!email.text.contains("\r\nBcc"));
        prop_assert!(!email.text.contains("\nBcc"));
        prop_assert!(!email.html.contains("<script>") && !email.html.contains("<b>x</b>"));
        // 128 characters of ticket id and 300 of error per line, at most 4 bytes each.
        prop_assert!(email.text.len() <= 2048 + lines.len() * (4 * 430 + 64));
    }

    /// Header values are cut on a character boundary, to at most the limit.
    #[test]
    fn header_truncation_is_bounded_and_a_prefix(text in "\\PC{0,2000}", max in 0usize..1500) {
        let cut = headers::truncate(&text, max);
        prop_assert!(cut.len() <= max.max(3));
        let kept = cut.strip_suffix("...").unwrap_or(&cut);
        prop_assert!(text.starts_with(kept));
    }
}

/// 10,000 levels of nesting in every place a value can go: refused without a stack overflow.
#[test]
fn deep_nesting_is_refused_without_recursing() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let deep = format!("{}1{}", open.repeat(10_000), close.repeat(10_000));
        let wrapped = format!("{{\"organization\":\"ACME\",\"ticket_id\":{deep}}}");
        for body in [deep.as_str(), wrapped.as_str()] {
            let invalid = decode_all(body.as_bytes(), Some("application/json")).unwrap_err();
            assert!(!invalid.reason.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// End to end: a running bridge.

/// Every string field of `message`, set to `value`.
fn with_every_string(message: &mut Value, value: &str) {
    match message {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                // Identity and fixed-format fields keep a valid shape; the rest is hostile.
                if matches!(
                    key.as_str(),
                    "organization" | "kind" | "country_code" | "currency" | "zip"
                ) || key.ends_with("_at")
                    || matches!(key.as_str(), "start" | "end" | "from" | "until" | "time")
                {
                    continue;
                }
                if v.is_string() {
                    let keep = v.as_str().unwrap_or_default().to_owned();
                    *v = json!(format!("{keep}{value}"));
                } else {
                    with_every_string(v, value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| with_every_string(v, value)),
        _ => {}
    }
}

fn body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[tokio::test]
async fn every_broken_message_is_dead_lettered_with_a_reason_and_the_queue_keeps_flowing() {
    let mut app = spawn_app_with("[worker]\nmax_message_bytes = 65536\n", &[Flow::Inject]).await;
    let dlq = app.dlq(Flow::Inject);
    let good = |id: &str| match_ticket("ACME", id);
    let mut missing = good("H-MISSING");
    missing.as_object_mut().unwrap().remove("barcode");
    let mut extra = good("H-EXTRA");
    extra["venue"]["floor"] = json!(3);
    let mut wrong_type = good("H-TYPE");
    wrong_type["purchase"]["price"] = json!("45 CHF");
    let mut wrong_kind = good("H-KIND");
    wrong_kind["product"]["kind"] = json!(["match"]);
    let mut null_id = good("H-NULL");
    null_id["ticket_id"] = Value::Null;
    let mut huge_body = good("H-BIG");
    huge_body["spectator"]["email"] = json!("x".repeat(70_000));
    let cases: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        (
            "invalid UTF-8",
            b"{\"organization\":\"ACME\xff\xfe\"}".to_vec(),
            Some("application/json"),
            "not valid UTF-8",
        ),
        (
            "not JSON",
            b"<ticket id='1'/>".to_vec(),
            Some("application/json"),
            "not valid JSON",
        ),
        (
            "empty body",
            Vec::new(),
            Some("application/json"),
            "not valid JSON",
        ),
        (
            "nested 10,000 deep",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            Some("application/json"),
            "does not match the schema",
        ),
        (
            "nested objects 10,000 deep",
            format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes(),
            Some("application/json"),
            "unknown field `a`",
        ),
        (
            "over the size limit",
            body(&huge_body),
            Some("application/json"),
            "the limit is 65536",
        ),
        (
            "missing field",
            body(&missing),
            Some("application/json"),
            "missing field `barcode`",
        ),
        (
            "extra field",
            body(&extra),
            Some("application/json"),
            "unknown field `floor`",
        ),
        (
            "wrong type",
            body(&wrong_type),
            Some("application/json"),
            "invalid type: string \"45 CHF\"",
        ),
        // serde_json words this one as a syntax error; the body is JSON, so it is a schema problem.
        (
            "wrong enum type",
            body(&wrong_kind),
            Some("application/json"),
            "message does not match the schema",
        ),
        (
            "null ticket id",
            body(&null_id),
            Some("application/json"),
            "invalid type: null",
        ),
        (
            "unknown organization",
            body(&match_ticket("INITECH", "H-ORG")),
            Some("application/json"),
            "unknown organization \"INITECH\"",
        ),
        (
            "10,000-character ticket id",
            body(&good(&"T".repeat(10_000))),
            Some("application/json"),
            "ticket_id is 10000 characters long; the limit is 256",
        ),
        (
            "wrong content type",
            body(&good("H-CT")),
            Some("application/xml"),
            "content type \"application/xml\"",
        ),
        (
            "JSON array",
            b"[]".to_vec(),
            Some("application/json"),
            "does not match the schema",
        ),
        (
            "JSON string",
            b"\"ACME\"".to_vec(),
            None,
            "does not match the schema",
        ),
    ];
    for (_, bytes, content_type, _) in &cases {
        app.publish_raw(Flow::Inject, bytes, *content_type).await;
    }
    // Published after every broken one, on the same queue: it must still go through.
    app.publish(Flow::Inject, &good("H-GOOD")).await;
    app.event_for("inject.succeeded", "H-GOOD").await;

    let mut dead = Vec::new();
    for _ in &cases {
        dead.push(app.take(&dlq).await);
    }
    assert!(
        app.try_take(&dlq).await.is_none(),
        "more dead letters than broken messages"
    );
    for (name, bytes, _, needle) in &cases {
        let letter = dead
            .iter()
            .find(|d| &d.body == bytes)
            .unwrap_or_else(|| panic!("{name}: no dead letter kept its body"));
        assert_eq!(letter.header("x-error-class"), "invalid-message", "{name}");
        let reason = letter.header("x-error-message").as_str().unwrap();
        assert!(
            reason.len() <= headers::MAX_ERROR_MESSAGE_BYTES,
            "{name}: {} bytes",
            reason.len()
        );
        assert!(
            reason.contains(needle),
            "{name}: {reason:?} does not say {needle:?}"
        );
        for key in ["x-ticket-id", "x-organization"] {
            if let Some(v) = letter.header(key).as_str() {
                assert!(
                    v.len() <= headers::MAX_VALUE_BYTES,
                    "{name}: {key} is {} bytes",
                    v.len()
                );
            }
        }
    }
    let long_id = dead
        .iter()
        .find(|d| d.body == body(&good(&"T".repeat(10_000))))
        .unwrap();
    assert!(long_id.header("x-ticket-id").as_str().unwrap().ends_with("..."));
    assert_eq!(
        app.sim.sim.stats().requests.inject,
        1,
        "only the good ticket reached TIXnGO"
    );
    assert_eq!(
        app.queue_len(&app.settings.topology.work_queue(Flow::Inject))
            .await,
        0
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn crlf_and_html_in_every_string_field_pass_through_unchanged() {
    let hostile = "\r\nBcc: victim@evil.example\r\n<script>alert(1)</script>&amp;\"'\\{{ x }}";
    let mut app = spawn_app().await;
    let mut inject = match_ticket("ACME", "X-1");
    with_every_string(&mut inject, hostile);
    let ticket_id = inject["ticket_id"].as_str().unwrap().to_owned();
    let mut cancel = cancel_message("ACME", "ignored");
    with_every_string(&mut cancel, hostile);
    cancel["ticket_id"] = json!(ticket_id);
    let mut control = control_message("ACME", "ignored");
    with_every_string(&mut control, hostile);
    control["ticket_id"] = json!(ticket_id);

    app.publish(Flow::Inject, &inject).await;
    let event = app.next_event().await;
    assert_eq!(event["type"], "inject.succeeded", "{event:#}");
    let stored = app.sim.sim.ticket("ACME", &ticket_id).unwrap().ticket.unwrap();
    assert_eq!(
        stored["spectatorDetails"]["lastName"],
        inject["spectator"]["last_name"]
    );
    assert_eq!(stored["security"]["barcode"], inject["barcode"]);
    assert_eq!(
        stored["event"]["name"],
        inject["performance"]["host_team"]
            .as_str()
            .map(|h| {
                format!(
                    "{h} - {}",
                    inject["performance"]["opposing_team"].as_str().unwrap()
                )
            })
            .unwrap()
    );
    app.publish(Flow::Control, &control).await;
    app.event_for("control.succeeded", &ticket_id).await;
    let control_seen = app.sim.sim.ticket("ACME", &ticket_id).unwrap().control.unwrap();
    assert_eq!(control_seen["gate"], control["gate"]);
    app.publish(Flow::Cancel, &cancel).await;
    let event = app.event_for("cancel.succeeded", &ticket_id).await;
    assert_eq!(
        event["ticket_id"],
        json!(ticket_id),
        "the outcome event carries the id as JSON"
    );
    let cancellation = app
        .sim
        .sim
        .ticket("ACME", &ticket_id)
        .unwrap()
        .cancellation
        .unwrap();
    assert_eq!(cancellation["reason"], cancel["reason"]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn crlf_and_html_rendered_by_a_template_stay_json_escaped() {
    let hostile = "\r\n\"}, \"injected\": true, \"x\": {\"<b>";
    let template = TicketTemplate::load(Path::new(EXAMPLE_TEMPLATE)).unwrap();
    let mut m = match_ticket("ACME", "X-TPL");
    with_every_string(&mut m, hostile);
    let message: InjectMessage = serde_json::from_value(m.clone()).unwrap();
    let doc = template.render(&message).unwrap();
    let rendered: Value = serde_json::from_str(doc.json.get()).unwrap();
    assert!(
        rendered.get("injected").is_none(),
        "a value broke out of its string"
    );
    assert_eq!(
        rendered["spectatorDetails"]["lastName"],
        m["spectator"]["last_name"]
    );
    assert_eq!(rendered["ticketId"], m["ticket_id"]);
}

/// S-360 headers close to the frame size: the bridge adds its failure headers and still
/// dead-letters the message (no connection killed by an oversized frame, no redelivery loop).
#[tokio::test]
async fn a_huge_header_table_is_still_dead_lettered() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    let mut table = FieldTable::default();
    table.insert(
        ShortString::from("x-s360-blob"),
        AMQPValue::LongString(LongString::from("h".repeat(129_000))),
    );
    let mut bad = match_ticket("ACME", "BIG-HEADERS");
    bad["unexpected"] = json!(1);
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(table);
    app.publish_props(Flow::Inject, &body(&bad), properties).await;
    app.publish(Flow::Inject, &match_ticket("ACME", "AFTER-BIG"))
        .await;
    app.event_for("inject.succeeded", "AFTER-BIG").await;
    let letter = app.take(&app.dlq(Flow::Inject)).await;
    assert_eq!(letter.header("x-error-class"), "invalid-message");
    assert_eq!(letter.header("x-s360-blob").as_str().map(str::len), Some(129_000));
    app.stop().await.unwrap();
}

/// A poison message: one that crashes nothing but can never be settled, so it would come back
/// forever. No message found here makes the bridge itself fail that way (it dead-letters every
/// message it can read or not, and an oversized header table is republished fine), so a
/// stand-in plays the broken consumer: it takes the message from the real work queue and gives
/// it back, once with a nack and requeue (a worker that errors out) and once by closing its
/// channel without an ack (a worker killed mid-message, as SIGKILL does). The work queue is the
/// bridge's own quorum queue, declared by the bridge with `delivery_limit = 2`: after the limit
/// the broker, not the consumer, dead-letters the message to the flow's DLQ, where the bridge's
/// tools class it `delivery-limit`. A real bridge started afterwards still processes the queue.
#[tokio::test]
async fn poison_message_is_bounded_by_the_delivery_limit() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
    use tixngo_bridge::app::Part;
    use tixngo_bridge::dlq::{DeadLetter, Source};

    const LIMIT: u32 = 2;
    let extra = format!("[topology]\ndelivery_limit = {LIMIT}\nretry_tiers = [\"300ms\"]\n");
    // Only the cancel flow runs: the inject queue is the stand-in's alone.
    let mut app = spawn_app_parts(&extra, vec![Part::Flow(Flow::Cancel)]).await;
    let work = app.settings.topology.work_queue(Flow::Inject);
    assert_eq!(
        app.broker.queue_info(&work).await["arguments"]["x-delivery-limit"],
        LIMIT
    );
    let poison = match_ticket("ACME", "POISON-1");
    app.publish(Flow::Inject, &poison).await;

    let connection = app.broker.connect().await;
    let mut deliveries = 0u32;
    loop {
        let channel = connection.create_channel().await.unwrap();
        channel.basic_qos(1, BasicQosOptions::default()).await.unwrap();
        let mut consumer = channel
            .basic_consume(
                work.as_str().into(),
                "stand-in".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else {
            break; // Nothing left to deliver: the broker took it away.
        };
        deliveries += 1;
        assert_eq!(delivery.data, body(&poison));
        if deliveries % 2 == 1 {
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        // Otherwise: dropped unsettled, returned when its channel closes.
        channel.close(200, "stand-in gives up".into()).await.unwrap();
        assert!(
            deliveries <= LIMIT + 1,
            "delivered {deliveries} times: the limit did not hold"
        );
    }
    // Exactly when the broker gives up differs between RabbitMQ versions (3.10.8 dead-letters
    // after 2 deliveries with a limit of 2); either way it is bounded.
    assert!(
        (LIMIT..=LIMIT + 1).contains(&deliveries),
        "delivered {deliveries} times"
    );

    let dlq = app.dlq(Flow::Inject);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let raw = loop {
        let got = app
            .channel
            .basic_get(
                dlq.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if let Some(got) = got {
            break got.delivery;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poison never reached the DLQ"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let letter = DeadLetter::read(&dlq, Source::Dlq, Flow::Inject, &raw.properties, &raw.data);
    assert_eq!(
        letter.error_class,
        tixngo_bridge::failure_class::FailureClass::DeliveryLimit
    );
    assert_eq!(letter.ticket_id.as_deref(), Some("POISON-1"));
    assert_eq!(raw.data, body(&poison), "the body is kept for replay");
    assert_eq!(app.queue_len(&work).await, 0);

    // The queue is not blocked: a real bridge consuming it now delivers a ticket.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tixngo_bridge::app::start(
        app.settings.clone(),
        vec![Part::Flow(Flow::Inject)],
        shutdown.clone(),
    )
    .await
    .unwrap();
    app.publish(Flow::Inject, &match_ticket("ACME", "AFTER-POISON"))
        .await;
    app.event_for("inject.succeeded", "AFTER-POISON").await;
    shutdown.cancel();
    running.wait().await.unwrap();
    app.stop().await.unwrap();
}
