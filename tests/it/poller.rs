//! Continuous status retrieval: the diff poller, in-process.

use std::collections::BTreeSet;

use tixngo_bridge::app::Part;
use tixngo_bridge::flows::Flow;
use tixngo_bridge::sim::Status;

use crate::helpers::*;

const FAST: &str = "[status_sync]\ninterval = \"100ms\"\npage_size = 7\n";

#[tokio::test]
async fn spectator_side_changes_become_status_changed_events_in_order() {
    let mut app = spawn_app_parts(FAST, vec![Part::Flow(Flow::Inject), Part::Poller]).await;
    for i in 0..3 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("P-{i}")))
            .await;
    }
    // Not event_for: it would skip status.changed events that arrive meanwhile.
    eventually("injected", || app.sim.sim.ticket_ids("ACME").len() == 3).await;
    for i in 0..3 {
        let id = format!("P-{i}");
        app.sim.sim.transition("ACME", &id, Status::Downloaded).unwrap();
        app.sim.sim.transition("ACME", &id, Status::Transferred).unwrap();
        app.sim
            .sim
            .transition("ACME", &id, Status::OnlineActivated)
            .unwrap();
    }
    // 3 injections + 9 transitions, read over several pages of 7.
    let mut seen = Vec::new();
    while seen.len() < 12 {
        let event = app.next_event().await;
        if event["type"] == "status.changed" {
            seen.push((
                event["ticket_id"].as_str().unwrap().to_owned(),
                event["previous_tixngo_status"].as_str().map(str::to_owned),
                event["tixngo_status"].as_str().unwrap().to_owned(),
                event["s360_status"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let for_p0: Vec<_> = seen.iter().filter(|(id, ..)| id == "P-0").collect();
    assert_eq!(
        for_p0
            .iter()
            .map(|(_, prev, now, _)| (prev.as_deref(), now.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (None, "INJECTED"),
            (Some("INJECTED"), "DOWNLOADED"),
            (Some("DOWNLOADED"), "TRANSFERRED"),
            (Some("TRANSFERRED"), "ONLINE_ACTIVATED"),
        ]
    );
    assert!(for_p0.iter().all(|(.., s360)| s360 == "Printed"), "{for_p0:?}");
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert!(app.sim.sim.stats().tenants["ACME"].diff_max_concurrent <= 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn three_pollers_in_one_vhost_never_poll_an_organization_twice_at_once_and_publish_once() {
    let mut first = spawn_app_parts(FAST, vec![Part::Poller]).await;
    // Two more bridges on the same vhost and simulator.
    let mut others = Vec::new();
    for _ in 0..2 {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = tixngo_bridge::app::start(first.settings.clone(), vec![Part::Poller], shutdown.clone())
            .await
            .unwrap();
        others.push((shutdown, tokio::spawn(running.wait())));
    }
    let acme = first.context.organizations.get("ACME").unwrap().clone();
    for i in 0..20 {
        inject_directly(&acme, &format!("T-{i}")).await;
    }
    for i in 0..20 {
        first
            .sim
            .sim
            .transition("ACME", &format!("T-{i}"), Status::Downloaded)
            .unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut count = 0;
    while count < 40 {
        let event = first.next_event().await;
        if event["type"] == "status.changed" && event["organization"] == "ACME" {
            count += 1;
            assert!(
                seen.insert((event["ticket_id"].to_string(), event["tixngo_status"].to_string())),
                "duplicate {event}"
            );
        }
    }
    // Steady state: a few more rounds, nothing new.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(first.queue_len(EVENTS_QUEUE).await, 0, "no extra events");
    let stats = first.sim.sim.stats();
    assert_eq!(stats.tenants["ACME"].diff_max_concurrent, 1);
    assert_eq!(stats.tenants["GLOBEX"].diff_max_concurrent, 1);
    for (shutdown, task) in others {
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
    first.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_poller_continues_from_the_stored_key() {
    let mut app = spawn_app_parts(FAST, vec![Part::Poller]).await;
    let acme = app.context.organizations.get("ACME").unwrap().clone();
    inject_directly(&acme, "K-1").await;
    let event = app.event_for("status.changed", "K-1").await;
    assert_eq!(event["tixngo_status"], "INJECTED");
    let settings = app.settings.clone();
    app.stop().await.unwrap();

    app.sim.sim.transition("ACME", "K-1", Status::Downloaded).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tixngo_bridge::app::start(settings, vec![Part::Poller], shutdown.clone())
        .await
        .unwrap();
    let task = tokio::spawn(running.wait());
    let event = app.event_for("status.changed", "K-1").await;
    assert_eq!(
        event["tixngo_status"], "DOWNLOADED",
        "the injection is not published again"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(app.queue_len(EVENTS_QUEUE).await, 0, "nothing repeated");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Injects a ticket straight into the simulator with the organization's own client.
async fn inject_directly(organization: &tixngo_bridge::orgs::Organization, ticket_id: &str) {
    let message: tixngo_bridge::messages::InjectMessage =
        serde_json::from_value(match_ticket(organization.code(), ticket_id)).unwrap();
    let document = organization.render(&message).unwrap();
    organization.client.inject(&[&document]).await.unwrap();
}
