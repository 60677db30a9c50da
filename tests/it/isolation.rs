//! Issue 16, class 2: whatever one organization's TIXnGO does (429 with a long `Retry-After`,
//! 30 s latency, hanging connections, an outage), every other organization keeps flowing.
//!
//! Each test queues 100 ACME injections and then one GLOBEX injection, with ACME's TIXnGO
//! misbehaving and GLOBEX's healthy, and asserts that GLOBEX's ticket is delivered while ACME is
//! still stuck: before any ACME success and before ACME's stall could have ended. No speed is
//! asserted; the only time bounds are far below the stall ACME's fault imposes.

use std::time::Duration;

use tixngo_bridge::flows::Flow;
use tixngo_sim::Faults;

use crate::helpers::*;

/// ACME injections queued ahead of GLOBEX's one.
const ACME_TICKETS: usize = 100;

/// Publishes 100 ACME tickets then one GLOBEX ticket, and waits for GLOBEX's
/// `inject.succeeded`. Fails if an ACME ticket succeeds first or if GLOBEX takes `bound`.
/// Returns how long GLOBEX took.
async fn globex_overtakes_acme(app: &mut TestApp, bound: Duration) -> Duration {
    for i in 0..ACME_TICKETS {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("A-{i}")))
            .await;
    }
    let started = tokio::time::Instant::now();
    app.publish(Flow::Inject, &match_ticket("GLOBEX", "G-1")).await;
    let deadline = started + bound;
    loop {
        let event = tokio::time::timeout_at(deadline, app.next_event())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "GLOBEX's ticket was not delivered within {bound:?} while ACME's TIXnGO was misbehaving: {:?}",
                    app.sim.sim.stats()
                )
            });
        if event["type"] != "inject.succeeded" {
            continue;
        }
        assert_ne!(
            event["organization"], "ACME",
            "an ACME ticket succeeded before GLOBEX's: ACME was not stuck, or GLOBEX waited for it"
        );
        if event["ticket_id"] == "G-1" {
            return started.elapsed();
        }
    }
}

#[tokio::test]
async fn globex_flows_while_acme_is_throttled_with_retry_after_120() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            rate_limit_rate: 1.0,
            retry_after_secs: 120,
            ..Faults::none()
        },
    );
    // Before the fix the engine slept the whole 120 s holding the flow's units.
    globex_overtakes_acme(&mut app, Duration::from_secs(30)).await;
    let first_wave = app.sim.sim.stats().faults_injected.rate_limit;
    assert!(first_wave >= 1, "ACME was called");
    // Retry-After 120 is longer than worker.max_in_process_wait: ACME is paused (breaker) for
    // 120 s, its messages parked in the retry tier (300 ms here) rather than held, and its
    // TIXnGO is not called again meanwhile although they come back every 300 ms.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = app.sim.sim.stats();
    assert_eq!(
        stats.faults_injected.rate_limit, first_wave,
        "Retry-After honoured: no ACME call during the pause: {stats:?}"
    );
    assert_eq!(stats.tenants["ACME"].tickets, 0, "{stats:?}");
}

#[tokio::test]
async fn globex_flows_while_acme_answers_after_8_seconds() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            latency_ms: 8_000,
            ..Faults::none()
        },
    );
    // Before the fix GLOBEX waited for ACME's first batch (8 s) and came after its 50 successes.
    globex_overtakes_acme(&mut app, Duration::from_secs(6)).await;
    // ACME is slow, not broken: its tickets arrive once, later (in any order).
    let mut succeeded = std::collections::HashSet::new();
    while succeeded.len() < ACME_TICKETS {
        let event = app.next_event().await;
        if event["type"] == "inject.succeeded" && event["organization"] == "ACME" {
            succeeded.insert(event["ticket_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(app.sim.sim.stats().tenants["ACME"].tickets, ACME_TICKETS as u64);
}

#[tokio::test]
async fn globex_flows_while_acme_calls_hang() {
    let mut app = spawn_app_with("[tixngo]\nrequest_timeout = \"20s\"\n", &[Flow::Inject]).await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            timeout_rate: 1.0,
            timeout_applies: false,
            ..Faults::none()
        },
    );
    // Before the fix GLOBEX waited for ACME's calls to time out (20 s).
    globex_overtakes_acme(&mut app, Duration::from_secs(8)).await;
    assert!(
        app.sim.sim.stats().faults_injected.timeout >= 1,
        "ACME's calls hung"
    );
}

#[tokio::test]
async fn globex_flows_while_acme_answers_503_to_everything() {
    // A 503 storm the breaker has not caught (threshold out of reach) with a realistic
    // in-process back-off (the test default is 10-50 ms): ACME's batches wait 3 s before each
    // retry, holding only ACME's call slots.
    let mut app = spawn_app_with(
        "[worker]\nin_process_min_delay = \"3s\"\nin_process_max_delay = \"3s\"\n\
         max_in_process_wait = \"5s\"\nshutdown_grace = \"5s\"\n\
         [tixngo]\nbreaker_threshold = 1000\n",
        &[Flow::Inject],
    )
    .await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            outage: true,
            ..Faults::none()
        },
    );
    globex_overtakes_acme(&mut app, Duration::from_secs(20)).await;
    // GLOBEX did not wait for ACME's back-off: when it was delivered ACME had had at most its
    // eight first calls, none retried yet (before the fix GLOBEX waited until ACME's batches,
    // holding every unit of the flow, had been retried three times).
    let stats = app.sim.sim.stats();
    let calls = stats.faults_injected.outage;
    assert!(
        (1..=8).contains(&calls),
        "GLOBEX delivered before any ACME retry: {calls} ACME calls {stats:?}"
    );
}

#[tokio::test]
async fn globex_flows_while_a_slow_acme_backlog_fills_the_prefetch() {
    // ACME's backlog is larger than what the bridge may hold: its two calls of five take 8 s,
    // ten more wait, and the broker delivers nothing else. After max_in_process_wait without a
    // free call ACME's waiting messages are parked in the retry tier, so the broker can deliver
    // GLOBEX's (before the fix GLOBEX waited behind every ACME wave).
    let mut app = spawn_app_with(
        "[worker]\nprefetch = 20\nbatch_max = 5\nmax_concurrent_calls = 2\n\
         max_in_process_wait = \"500ms\"\nin_process_min_delay = \"10ms\"\n\
         in_process_max_delay = \"50ms\"\nshutdown_grace = \"5s\"\n",
        &[Flow::Inject],
    )
    .await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            latency_ms: 8_000,
            ..Faults::none()
        },
    );
    globex_overtakes_acme(&mut app, Duration::from_secs(6)).await;
    // Parked, not lost: every ACME ticket still arrives, once.
    let ids: Vec<String> = (0..ACME_TICKETS).map(|i| format!("A-{i}")).collect();
    app.sim.sim.clear_faults(Some("ACME"));
    eventually("every ACME ticket injected", || {
        app.sim.sim.stats().tenants["ACME"].tickets == ACME_TICKETS as u64
    })
    .await;
    assert_eq!(app.sim.sim.ticket_ids("ACME").len(), ids.len());
}
