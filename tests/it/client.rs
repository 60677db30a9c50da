//! The TIXnGO client against the simulator, over HTTP: every row of docs/tixngo-api.md mapped to
//! success, transient or permanent, and the API key nowhere to be seen.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tixngo_bridge::config::{self, Settings};
use tixngo_bridge::tixngo::{
    CallError, CancelItem, ControlItem, ErrorClass, TicketDocument, TixngoClient, client::http_client,
    mapping,
};
use tixngo_sim::{Faults, Status};
use tracing::instrument::WithSubscriber;

use crate::helpers::{ORGS, match_ticket, spawn_sim};

fn settings_for(url: &str, key: &str, timeout: &str) -> Settings {
    let text = format!(
        "[tixngo]\nrequest_timeout = \"{timeout}\"\nconnect_timeout = \"1s\"\n[[interfaces]]\norganization = \"ACME\"\nkind = \"tixngo\"\nurl = \"{url}\"\nusername = \"admin@acme.example\"\napi_key = \"{key}\"\n"
    );
    config::from_toml(&text).unwrap().validate_with(|_| None).unwrap()
}

fn client(url: &str, key: &str) -> TixngoClient {
    client_with_timeout(url, key, "5s")
}

fn client_with_timeout(url: &str, key: &str, timeout: &str) -> TixngoClient {
    let settings = settings_for(url, key, timeout);
    let http = http_client(&settings.tixngo).unwrap();
    TixngoClient::new(http, settings.interface("ACME").unwrap(), &settings.tixngo).unwrap()
}

fn document(ticket_id: &str) -> TicketDocument {
    let message = serde_json::from_value(match_ticket("ACME", ticket_id)).unwrap();
    TicketDocument {
        ticket_id: ticket_id.to_owned(),
        json: serde_json::value::to_raw_value(&mapping::to_tixngo(&message)).unwrap(),
    }
}

fn cancel(ticket_id: &str) -> CancelItem {
    CancelItem {
        ticket_id: ticket_id.into(),
        reason: "refund".into(),
        show_deleted_ticket: true,
    }
}

fn control(ticket_id: &str) -> ControlItem {
    ControlItem {
        ticket_id: ticket_id.into(),
        controlled_at: "2026-12-06T17:31:12Z".into(),
        gate: Some("Porte 3".into()),
        control_point: None,
    }
}

#[tokio::test]
async fn inject_created_unchanged_conflict_invalid() {
    let sim = spawn_sim().await;
    let c = client(&sim.base_url("ACME"), ORGS[0].1);
    let a = document("C-1");
    let results = c.inject(&[&a]).await.unwrap();
    let ok = results[0].as_ref().unwrap();
    assert_eq!(ok.status.as_deref(), Some("INJECTED"));
    assert!(!ok.unchanged);

    let again = c.inject(&[&a]).await.unwrap();
    assert!(
        again[0].as_ref().unwrap().unchanged,
        "identical repeat is an idempotent success"
    );

    let mut changed: serde_json::Value = serde_json::from_str(a.json.get()).unwrap();
    changed["security"]["barcode"] = json!("QR-OTHER");
    let conflict = TicketDocument {
        ticket_id: "C-1".into(),
        json: serde_json::value::to_raw_value(&changed).unwrap(),
    };
    let mut invalid: serde_json::Value = serde_json::from_str(document("C-2").json.get()).unwrap();
    invalid["event"]["address"].as_object_mut().unwrap().remove("zip");
    let invalid = TicketDocument {
        ticket_id: "C-2".into(),
        json: serde_json::value::to_raw_value(&invalid).unwrap(),
    };
    let b = document("C-3");
    let results = c.inject(&[&conflict, &invalid, &b]).await.unwrap();
    let conflict = results[0].as_ref().unwrap_err();
    assert_eq!((conflict.code, conflict.class), (409, ErrorClass::Permanent));
    let invalid = results[1].as_ref().unwrap_err();
    assert_eq!((invalid.code, invalid.class), (422, ErrorClass::Permanent));
    assert!(
        invalid.message.contains("event.address.zip"),
        "{}",
        invalid.message
    );
    assert!(results[2].is_ok(), "one bad ticket never fails its neighbours");
}

#[tokio::test]
async fn cancel_and_control_rows() {
    let sim = spawn_sim().await;
    let c = client(&sim.base_url("ACME"), ORGS[0].1);
    // Not injected yet: 404, transient (the injection may still be on its way).
    for result in [
        c.cancel(&[&cancel("K-1")]).await.unwrap(),
        c.control(&[&control("K-1")]).await.unwrap(),
    ] {
        let e = result[0].as_ref().unwrap_err();
        assert_eq!((e.code, e.class), (404, ErrorClass::Transient));
    }
    c.inject(&[&document("K-1"), &document("K-2")]).await.unwrap();
    for _ in 0..2 {
        let r = c.control(&[&control("K-1")]).await.unwrap();
        assert_eq!(
            r[0].as_ref().unwrap().status.as_deref(),
            Some("CONTROLLED"),
            "repeat is idempotent"
        );
    }
    for _ in 0..2 {
        let r = c.cancel(&[&cancel("K-2")]).await.unwrap();
        assert_eq!(
            r[0].as_ref().unwrap().status.as_deref(),
            Some("DELETED"),
            "repeat is idempotent"
        );
    }
    let r = c.control(&[&control("K-2")]).await.unwrap();
    let e = r[0].as_ref().unwrap_err();
    assert_eq!((e.code, e.class), (409, ErrorClass::Permanent));
    assert_eq!(sim.sim.ticket("ACME", "K-2").unwrap().side_effects.deleted, 1);
}

#[tokio::test]
async fn status_and_diff() {
    let sim = spawn_sim().await;
    let c = client(&sim.base_url("ACME"), ORGS[0].1);
    assert_eq!(
        c.status("S-1").await.unwrap(),
        None,
        "unknown ticket is not an error"
    );
    c.inject(&[&document("S-1"), &document("S-2")]).await.unwrap();
    sim.sim.transition("ACME", "S-1", Status::Downloaded).unwrap();
    assert_eq!(c.status("S-1").await.unwrap().unwrap().status, "DOWNLOADED");

    let first = c.diff(None, 2).await.unwrap();
    assert_eq!(first.changes.len(), 2);
    assert!(first.has_more);
    let second = c.diff(Some(&first.next_page_key), 2).await.unwrap();
    assert_eq!(second.changes.len(), 1);
    assert_eq!(second.changes[0].previous_status.as_deref(), Some("INJECTED"));
    assert_eq!(second.changes[0].status, "DOWNLOADED");
    let empty = c.diff(Some(&second.next_page_key), 2).await.unwrap();
    assert!(empty.changes.is_empty());
    assert_eq!(empty.next_page_key, second.next_page_key);
}

#[tokio::test]
async fn whole_call_failures_are_classified() {
    let sim = spawn_sim().await;
    let doc = document("F-1");

    let wrong_key = client(&sim.base_url("ACME"), "not-the-key");
    let e = wrong_key.inject(&[&doc]).await.unwrap_err();
    assert_eq!(
        (e.http_status(), e.class()),
        // No ticket can cause a refused key: the organization is paused (field faults, class 6).
        (Some(401), ErrorClass::Pause),
        "{e}"
    );

    let c = client(&sim.base_url("ACME"), ORGS[0].1);
    sim.sim.set_faults(
        Some("ACME"),
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    );
    let e = c.inject(&[&doc]).await.unwrap_err();
    assert_eq!((e.http_status(), e.class()), (Some(503), ErrorClass::Transient));

    sim.sim.set_faults(
        Some("ACME"),
        Faults {
            rate_limit_rate: 1.0,
            retry_after_secs: 7,
            ..Faults::default()
        },
    );
    let e = c.inject(&[&doc]).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(
        e.retry_after(),
        Some(Duration::from_secs(7)),
        "Retry-After honoured"
    );

    sim.sim.set_faults(
        Some("ACME"),
        Faults {
            timeout_rate: 1.0,
            ..Faults::default()
        },
    );
    let quick = client_with_timeout(&sim.base_url("ACME"), ORGS[0].1, "300ms");
    let e = quick.inject(&[&doc]).await.unwrap_err();
    assert!(matches!(e, CallError::Timeout(_)), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);

    sim.sim.clear_faults(Some("ACME"));
    let nobody = client("http://127.0.0.1:9/ACME/organizer/tickets", ORGS[0].1);
    let e = nobody.inject(&[&doc]).await.unwrap_err();
    assert!(matches!(e, CallError::Connect(_)), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);
}

/// A `tracing` writer that keeps every line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_api_key_never_appears_in_logs_errors_or_debug() {
    let sim = spawn_sim().await;
    let key = ORGS[0].1;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let c = client(&sim.base_url("ACME"), key);
    let mut texts = vec![format!("{c:?}")];
    async {
        let doc = document("Z-1");
        c.inject(&[&doc]).await.unwrap();
        sim.sim.set_faults(
            Some("ACME"),
            Faults {
                error_rate: 1.0,
                ..Faults::default()
            },
        );
        texts.push(c.inject(&[&doc]).await.unwrap_err().to_string());
        sim.sim.clear_faults(Some("ACME"));
        let wrong = client(&sim.base_url("ACME"), "another-secret-key");
        texts.push(format!("{:?}", wrong.inject(&[&doc]).await.unwrap_err()));
    }
    .with_subscriber(subscriber)
    .await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.contains(key), "API key in the logs");
    for text in texts {
        assert!(
            !text.contains(key) && !text.contains("another-secret-key"),
            "{text}"
        );
    }
}
