//! The ticket flows end to end: real RabbitMQ, the simulator over HTTP, the bridge in-process.

use std::time::Duration;

use serde_json::json;
use tixngo_bridge::flows::Flow;
use tixngo_sim::{Faults, Status};

use crate::helpers::*;

#[tokio::test]
async fn inject_then_control_ends_controlled_with_outcome_events() {
    let mut app = spawn_app().await;
    app.publish(Flow::Inject, &match_ticket("ACME", "A-1")).await;
    let event = app.event_for("inject.succeeded", "A-1").await;
    assert_eq!(event["organization"], "ACME");
    assert_eq!(event["tixngo_status"], "INJECTED");
    assert_eq!(event["s360_status"], "Printed");
    assert!(event["message_id"].is_string());

    app.publish(Flow::Control, &control_message("ACME", "A-1")).await;
    let event = app.event_for("control.succeeded", "A-1").await;
    assert_eq!(event["tixngo_status"], "CONTROLLED");
    assert_eq!(event["s360_status"], "Controlled");
    assert_eq!(app.sim.sim.status("ACME", "A-1"), Some(Status::Controlled));
}

#[tokio::test]
async fn inject_then_cancel_ends_deleted_and_a_later_control_is_rejected() {
    let mut app = spawn_app().await;
    app.publish(Flow::Inject, &match_ticket("ACME", "B-1")).await;
    app.event_for("inject.succeeded", "B-1").await;
    app.publish(Flow::Cancel, &cancel_message("ACME", "B-1")).await;
    let event = app.event_for("cancel.succeeded", "B-1").await;
    assert_eq!(event["s360_status"], "Cancelled");
    assert_eq!(app.sim.sim.status("ACME", "B-1"), Some(Status::Deleted));

    app.publish(Flow::Control, &control_message("ACME", "B-1")).await;
    let event = app.event_for("control.dead-lettered", "B-1").await;
    assert_eq!(event["error_class"], "rejected");
    let dead = app.take(&app.dlq(Flow::Control)).await;
    assert_eq!(dead.header("x-error-class"), "rejected");
    assert_eq!(dead.header("x-http-status"), 409);
    assert!(
        dead.header("x-error-message")
            .as_str()
            .unwrap()
            .contains("deleted"),
        "{dead:?}"
    );
    assert_eq!(dead.header("x-ticket-id"), "B-1");
    assert_eq!(dead.header("x-organization"), "ACME");
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_with_failure_headers() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    let dlq = app.dlq(Flow::Inject);
    let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
        (b"{not json".to_vec(), Some("application/json"), "not valid JSON"),
        (vec![0xff, 0xfe, 0x00], Some("application/json"), "UTF-8"),
        (
            serde_json::to_vec(&json!({"organization": "ACME", "ticket_id": "X"})).unwrap(),
            None,
            "does not match the schema",
        ),
        (
            serde_json::to_vec(&match_ticket("NOPE", "N-1")).unwrap(),
            Some("application/json"),
            "unknown organization",
        ),
        (
            serde_json::to_vec(&match_ticket("ACME", "C-1")).unwrap(),
            Some("text/plain"),
            "content type",
        ),
        (
            {
                let mut m = match_ticket("ACME", "L-1");
                m["ticket_id"] = json!("x".repeat(10_000));
                serde_json::to_vec(&m).unwrap()
            },
            Some("application/json"),
            "limit is 256",
        ),
        (
            {
                let mut m = match_ticket("ACME", "E-1");
                m["unexpected"] = json!(1);
                serde_json::to_vec(&m).unwrap()
            },
            Some("application/json"),
            "unknown field",
        ),
        // 10,000 levels deep: refused without recursing (no stack overflow).
        (
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            Some("application/json"),
            "invalid type: sequence",
        ),
    ];
    for (body, content_type, _) in &cases {
        app.publish_raw(Flow::Inject, body, *content_type).await;
    }
    let mut reasons = Vec::new();
    for _ in &cases {
        let dead = app.take(&dlq).await;
        assert_eq!(dead.header("x-error-class"), "invalid-message");
        assert_eq!(dead.header("x-original-queue"), "tixngo.inject");
        assert_eq!(dead.header("x-original-routing-key"), "ticket.inject");
        assert_eq!(dead.header("x-flow"), "inject");
        assert!(dead.header("x-first-failure-at").is_string());
        assert!(dead.header("x-error-message").as_str().unwrap().len() <= 1024);
        reasons.push(dead.header("x-error-message").as_str().unwrap().to_owned());
    }
    for (_, _, needle) in &cases {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no reason mentions {needle:?}: {reasons:#?}"
        );
    }
    let event = app.next_event().await;
    assert_eq!(event["type"], "inject.dead-lettered");
    assert_eq!(
        app.sim.sim.stats().requests.inject,
        0,
        "nothing invalid reached TIXnGO"
    );
}

#[tokio::test]
async fn permanent_tixngo_rejection_is_dead_lettered_with_tixngo_answer() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    // Same ticket id, different content: TIXnGO answers 409 conflict for the second.
    app.publish(Flow::Inject, &match_ticket("ACME", "D-1")).await;
    app.event_for("inject.succeeded", "D-1").await;
    let mut changed = match_ticket("ACME", "D-1");
    changed["barcode"] = json!("QR-OTHER");
    app.publish(Flow::Inject, &changed).await;
    let event = app.event_for("inject.dead-lettered", "D-1").await;
    assert_eq!(event["error_class"], "rejected");
    let dead = app.take(&app.dlq(Flow::Inject)).await;
    assert_eq!(dead.header("x-http-status"), 409);
    assert_eq!(
        dead.body,
        serde_json::to_vec(&changed).unwrap(),
        "the dead letter keeps the original body"
    );
}

#[tokio::test]
async fn duplicate_deliveries_give_one_side_effect() {
    let mut app = spawn_app().await;
    for _ in 0..3 {
        app.publish(Flow::Inject, &match_ticket("ACME", "DUP-1")).await;
    }
    for _ in 0..3 {
        app.event_for("inject.succeeded", "DUP-1").await;
    }
    for _ in 0..2 {
        app.publish(Flow::Cancel, &cancel_message("ACME", "DUP-1")).await;
    }
    for _ in 0..2 {
        app.event_for("cancel.succeeded", "DUP-1").await;
    }
    let ticket = app.sim.sim.ticket("ACME", "DUP-1").unwrap();
    assert_eq!(ticket.calls.inject, 3);
    assert_eq!(ticket.side_effects.created, 1);
    assert_eq!(ticket.side_effects.deleted, 1);
}

#[tokio::test]
async fn cancel_before_inject_is_retried_until_the_injection_lands() {
    let mut app = spawn_app_with("", &[Flow::Cancel]).await;
    app.publish(Flow::Cancel, &cancel_message("ACME", "EARLY-1"))
        .await;
    // Let it fail at least once (404: not injected yet), then inject it out of band.
    eventually("a cancel attempt", || {
        app.sim
            .sim
            .ticket("ACME", "EARLY-1")
            .is_some_and(|t| t.calls.cancel > 0)
    })
    .await;
    let client = reqwest::Client::new();
    let mut ticket = tixngo_bridge::tixngo::mapping::to_tixngo(
        &serde_json::from_value(match_ticket("ACME", "EARLY-1")).unwrap(),
    );
    ticket["ticketId"] = json!("EARLY-1");
    let response = client
        .post(app.sim.base_url("ACME"))
        .header("X-Api-Key", ORGS[0].1)
        .json(&json!({"tickets": [ticket]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    app.event_for("cancel.succeeded", "EARLY-1").await;
    assert_eq!(app.sim.sim.status("ACME", "EARLY-1"), Some(Status::Deleted));
    assert_eq!(app.queue_len(&app.dlq(Flow::Cancel)).await, 0);
}

#[tokio::test]
async fn transient_failures_go_through_retry_tiers_then_dead_letter() {
    // The breaker would park the message during the outage; this test is about the tiers.
    let mut app = spawn_app_with("[tixngo]\nbreaker_threshold = 1000\n", &[Flow::Inject]).await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            outage: true,
            ..Faults::default()
        },
    );
    app.publish(Flow::Inject, &match_ticket("ACME", "T-1")).await;
    let event = app.event_for("inject.dead-lettered", "T-1").await;
    assert_eq!(event["error_class"], "retries-exhausted");
    let dead = app.take(&app.dlq(Flow::Inject)).await;
    assert_eq!(dead.header("x-error-class"), "retries-exhausted");
    assert_eq!(dead.header("x-retry-count"), 2, "both tiers were used: {dead:?}");
    assert_eq!(dead.header("x-http-status"), 503);
}

#[tokio::test]
async fn an_outage_shorter_than_the_retry_horizon_ends_with_zero_dead_letters() {
    let mut app = spawn_app_with(
        "[topology]\nretry_tiers = [\"300ms\", \"1s\", \"3s\"]\n",
        &[Flow::Inject],
    )
    .await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            outage: true,
            ..Faults::default()
        },
    );
    for i in 0..20 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("O-{i}")))
            .await;
    }
    app.publish(Flow::Inject, &match_ticket("GLOBEX", "G-1")).await;
    // The other organization is not held up by ACME's outage.
    app.event_for("inject.succeeded", "G-1").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    app.sim.sim.clear_faults(Some("ACME"));
    let mut done = std::collections::BTreeSet::new();
    while done.len() < 20 {
        let event = app.next_event().await;
        assert_ne!(event["type"], "inject.dead-lettered", "{event}");
        if event["type"] == "inject.succeeded" {
            done.insert(event["ticket_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0);
}

#[tokio::test]
async fn status_query_replies_to_reply_to_with_correlation_id() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    let mut app = spawn_app_with("", &[Flow::Inject, Flow::Status]).await;
    app.publish(Flow::Inject, &match_ticket("ACME", "S-1")).await;
    app.event_for("inject.succeeded", "S-1").await;
    app.sim.sim.transition("ACME", "S-1", Status::Downloaded).unwrap();

    let reply_queue = app
        .channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replies = app
        .channel
        .basic_consume(
            reply_queue.name().clone(),
            "replies".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for (ticket, correlation) in [("S-1", "c-1"), ("UNKNOWN-1", "c-2")] {
        let properties = lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_reply_to(reply_queue.name().clone())
            .with_correlation_id(correlation.into());
        let body = serde_json::to_vec(&json!({"organization": "ACME", "ticket_id": ticket})).unwrap();
        app.publish_props(Flow::Status, &body, properties).await;
        let reply = tokio::time::timeout(TIMEOUT, replies.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            reply.properties.correlation_id().as_ref().unwrap().as_str(),
            correlation
        );
        let reply: serde_json::Value = serde_json::from_slice(&reply.data).unwrap();
        if ticket == "S-1" {
            assert_eq!(reply["found"], true);
            assert_eq!(reply["tixngo_status"], "DOWNLOADED");
            assert_eq!(reply["s360_status"], "Printed");
        } else {
            assert_eq!(
                reply["found"], false,
                "unknown ticket is a reply, not a dead letter"
            );
        }
    }
    assert_eq!(app.queue_len(&app.dlq(Flow::Status)).await, 0);
}

#[tokio::test]
async fn many_tickets_two_bridges_none_lost_none_doubled() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    // A second bridge on the same queues: competing consumers.
    let second = tokio::spawn(tixngo_bridge::app::run(
        app.settings.clone(),
        vec![tixngo_bridge::app::Part::Flow(Flow::Inject)],
        tokio_util::sync::CancellationToken::new(),
    ));
    let n = 1000;
    for i in 0..n {
        let org = if i % 2 == 0 { "ACME" } else { "GLOBEX" };
        app.publish(Flow::Inject, &match_ticket(org, &format!("M-{i}")))
            .await;
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < n {
        let event = app.next_event().await;
        assert_eq!(event["type"], "inject.succeeded", "{event}");
        seen.insert(event["ticket_id"].as_str().unwrap().to_owned());
    }
    let stats = app.sim.sim.stats();
    let created: u64 = ["ACME", "GLOBEX"]
        .iter()
        .flat_map(|org| app.sim.sim.ticket_ids(org).into_iter().map(move |id| (org, id)))
        .map(|(org, id)| app.sim.sim.ticket(org, &id).unwrap().side_effects.created)
        .sum();
    assert_eq!(created, n as u64, "{stats:?}");
    second.abort();
}

/// Every ticket of `ids` exists once in the simulator, created exactly once.
fn assert_created_once(app: &TestApp, org: &str, ids: &[String]) -> bool {
    ids.iter().all(|id| {
        app.sim
            .sim
            .ticket(org, id)
            .is_some_and(|t| t.side_effects.created == 1)
    })
}

#[tokio::test]
async fn connections_closed_mid_stream_lose_nothing() {
    let app = spawn_app_with("", &[Flow::Inject]).await;
    let ids: Vec<String> = (0..300).map(|i| format!("R-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        app.publish(Flow::Inject, &match_ticket("ACME", id)).await;
        if i == 100 || i == 200 {
            // The management API lists a connection a few seconds after it opens.
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            while app.broker.close_connections("tixngo-bridge").await == 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no bridge connection to close"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    eventually("every ticket injected once", || {
        assert_created_once(&app, "ACME", &ids)
    })
    .await;
    assert_eq!(app.sim.sim.ticket_ids("ACME").len(), ids.len());
}

#[tokio::test]
async fn graceful_stop_mid_stream_then_restart_loses_nothing() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    app.sim.sim.set_faults(
        None,
        Faults {
            latency_ms: 20,
            ..Faults::default()
        },
    );
    let ids: Vec<String> = (0..200).map(|i| format!("G-{i}")).collect();
    for id in &ids {
        app.publish(Flow::Inject, &match_ticket("GLOBEX", id)).await;
    }
    eventually("some tickets in flight", || {
        !app.sim.sim.ticket_ids("GLOBEX").is_empty()
    })
    .await;
    app.stop().await.expect("a graceful stop is a clean exit");
    let restarted = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(tixngo_bridge::app::run(
        app.settings.clone(),
        vec![tixngo_bridge::app::Part::Flow(Flow::Inject)],
        restarted.clone(),
    ));
    eventually("every ticket injected once", || {
        assert_created_once(&app, "GLOBEX", &ids)
    })
    .await;
    restarted.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn two_bridge_processes_share_1000_tickets_none_lost_none_doubled() {
    let app = spawn_app_with("", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, test_settings_toml(&app.broker, &app.sim, "")).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
                .args(["run", "--flows", "inject", "--config"])
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = (0..1000).map(|i| format!("P-{i}")).collect();
    for id in &ids {
        app.publish(Flow::Inject, &match_ticket("ACME", id)).await;
    }
    eventually("every ticket injected exactly once", || {
        assert_created_once(&app, "ACME", &ids)
    })
    .await;
    assert_eq!(app.sim.sim.ticket_ids("ACME").len(), 1000);
    drop(workers);
}

#[tokio::test]
async fn max_concurrent_calls_bounds_an_organizations_calls_and_batch_max_their_size() {
    // One call at a time for ACME, two tickets per call: six tickets take three calls one after
    // the other, so at least three simulated latencies (a lower bound: it cannot be faster).
    let mut app = spawn_app_with(
        "[worker]\nmax_concurrent_calls = 1\nbatch_max = 2\nbatch_linger = \"2s\"\n",
        &[Flow::Inject],
    )
    .await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            latency_ms: 300,
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    for n in 0..6 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("BOUND-{n}")))
            .await;
    }
    for n in 0..6 {
        app.event_for("inject.succeeded", &format!("BOUND-{n}")).await;
    }
    let stats = app.sim.sim.stats();
    assert_eq!(stats.items.inject, 6, "{stats:?}");
    assert!(
        stats.requests.inject >= 3,
        "at most two tickets per call: {stats:?}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "one call at a time: {:?}",
        started.elapsed()
    );
}
