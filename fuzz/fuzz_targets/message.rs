//! One S-360 delivery, as bytes, through everything that reads it: decoding and validation as
//! every flow's message, then for an injection the built-in mapping and the example template,
//! and the digest e-mail a dead letter of it would produce. Nothing may panic, and nothing may
//! grow far beyond the input.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use lapin::BasicProperties;
use lapin::message::Delivery;
use libfuzzer_sys::fuzz_target;
use tixngo_bridge::engine::decode::decode;
use tixngo_bridge::messages::{CancelMessage, ControlMessage, InjectMessage, StatusQuery};
use tixngo_bridge::notifier::digest::{self, GroupKey, Line};
use tixngo_bridge::tixngo::mapping;
use tixngo_bridge::tixngo::template::TicketTemplate;

static TEMPLATE: LazyLock<TicketTemplate> = LazyLock::new(|| {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/templates/example.json.j2"
    ));
    TicketTemplate::load(path).expect("the example template compiles")
});

const MAX_BYTES: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // A first byte 0-2 picks another content type (the rest is the body); anything else is a
    // JSON body as is, so real messages (schemas/examples) seed the corpus unchanged.
    let (content_type, body) = match data.split_first() {
        Some((0, rest)) => (None, rest),
        Some((1, rest)) => (Some("text/plain"), rest),
        Some((2, rest)) => (Some("application/JSON; charset=utf-8"), rest),
        _ => (Some("application/json"), data),
    };
    let mut delivery = Delivery::mock(
        1,
        "s360.tickets".into(),
        "ticket.inject".into(),
        false,
        body.to_vec(),
    );
    if let Some(ct) = content_type {
        delivery.properties = BasicProperties::default().with_content_type(ct.into());
    }
    let _ = decode::<CancelMessage>(&delivery, MAX_BYTES);
    let _ = decode::<ControlMessage>(&delivery, MAX_BYTES);
    let _ = decode::<StatusQuery>(&delivery, MAX_BYTES);
    let (ticket_id, error) = match decode::<InjectMessage>(&delivery, MAX_BYTES) {
        Ok(message) => {
            let mapped = serde_json::to_string(&mapping::to_tixngo(&message)).unwrap_or_default();
            assert!(
                mapped.len() <= 4 * body.len() + 4096,
                "mapping grew {} -> {}",
                body.len(),
                mapped.len()
            );
            if let Ok(doc) = TEMPLATE.render(&message) {
                assert!(doc.json.get().len() <= 4 * body.len() + 8192);
                assert_eq!(doc.ticket_id, message.ticket_id);
            }
            (Some(message.ticket_id.clone()), String::new())
        }
        Err(invalid) => {
            assert!(
                invalid.reason.len() <= body.len() + 512,
                "reason of {} bytes",
                invalid.reason.len()
            );
            (invalid.known.ticket_id, invalid.reason)
        }
    };
    let key = GroupKey {
        organization: Some("ACME".into()),
        flow: tixngo_bridge::flow::Flow::Inject,
        class: tixngo_bridge::failure_class::FailureClass::of_dead_letter(Some(&error), None),
    };
    let lines = [Line::new(ticket_id.as_deref(), Some(&error), Some(422))];
    if let Ok(email) = digest::render(
        &key,
        1,
        &lines,
        "tixngo.inject.parked",
        vec!["ops@acme.example".into()],
    ) {
        assert!(!email.subject.contains(['\r', '\n']));
        assert!(email.text.len() <= 8192);
    }
});
