//! Riding through broker connection losses and a TIXnGO outage (issue 8's done-when).

use std::time::Duration;

use tixngo_bridge::flows::Flow;
use tixngo_bridge::sim::Faults;

use crate::helpers::*;

async fn close_bridge_connections(app: &TestApp) {
    // The management API lists a new connection after a few seconds.
    while app.broker.close_connections("tixngo-bridge inject").await == 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn five_thousand_tickets_survive_three_connection_closes_and_a_30s_outage_exactly_once() {
    const N: usize = 5000;
    // Retry tiers long enough that parked messages do not churn the broker during the outage;
    // a quick breaker so the outage is noticed at once.
    let extra = "[topology]\nretry_tiers = [\"3s\", \"6s\", \"12s\"]\n\
                 [tixngo]\nbreaker_threshold = 3\nbreaker_open_for = \"1s\"\n";
    let mut app = spawn_app_with(extra, &[Flow::Inject]).await;
    let id = |i: usize| format!("R-{i}");
    let org = |i: usize| ORGS[i % 2].0;
    for i in 0..N / 2 {
        app.publish(Flow::Inject, &match_ticket(org(i), &id(i))).await;
    }
    close_bridge_connections(&app).await;

    app.sim.sim.set_faults(
        None,
        Faults {
            outage: true,
            ..Faults::none()
        },
    );
    let outage_started = tokio::time::Instant::now();
    for i in N / 2..N {
        app.publish(Flow::Inject, &match_ticket(org(i), &id(i))).await;
    }
    tokio::time::sleep_until(outage_started + Duration::from_secs(10)).await;
    close_bridge_connections(&app).await;
    tokio::time::sleep_until(outage_started + Duration::from_secs(20)).await;
    close_bridge_connections(&app).await;
    tokio::time::sleep_until(outage_started + Duration::from_secs(30)).await;
    app.sim.sim.clear_faults(None);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = app.sim.sim.stats();
        let stored: u64 = stats.tenants.values().map(|t| t.tickets).sum();
        if stored == N as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {stored} of {N} tickets reached TIXnGO"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for i in 0..N {
        let ticket = app.sim.sim.ticket(org(i), &id(i)).expect("every ticket injected");
        assert_eq!(ticket.side_effects.created, 1, "{} created once", id(i));
    }
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0, "no dead letter");
    let metrics = app.context.metrics.encode();
    let value = |prefix: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(
        value(r#"tixngo_bridge_reconnects_total{role="inject"}"#) >= 3,
        "{metrics}"
    );
    assert!(
        value("tixngo_bridge_breaker_transitions_total{") >= 2,
        "{metrics}"
    );
    for org in ["ACME", "GLOBEX"] {
        assert!(
            value(&format!(
                r#"tixngo_bridge_breaker_transitions_total{{organization="{org}",to="open"}}"#
            )) >= 1,
            "{metrics}"
        );
        assert!(
            value(&format!(
                r#"tixngo_bridge_breaker_transitions_total{{organization="{org}",to="closed"}}"#
            )) >= 1,
            "{metrics}"
        );
    }
    app.stop().await.unwrap();
}
