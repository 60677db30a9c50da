//! Riding through broker connection losses and a TIXnGO outage (issue 8's done-when).

use std::time::Duration;

use tixngo_bridge::flows::Flow;
use tixngo_sim::Faults;

use crate::helpers::*;

fn reconnects(app: &TestApp) -> u64 {
    let metrics = app.context.metrics.encode();
    metrics
        .lines()
        .find(|l| l.starts_with(r#"tixngo_bridge_reconnects_total{role="inject"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Force-closes the bridge's connection until the bridge has noticed and reconnected once more
/// (the management API lists connections with a delay, and may still list a closed one).
async fn close_bridge_connections(app: &TestApp) {
    let before = reconnects(app);
    loop {
        app.broker.close_connections("tixngo-bridge inject").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if reconnects(app) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

fn bridge_process(config: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
        .args(["run", "--flows", "inject", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// SIGTERM drains and exits 0; SIGKILL leaves its unacked messages to the broker, which
/// redelivers them to the survivor: every ticket ends created exactly once, none dead-lettered.
#[tokio::test]
async fn sigterm_and_sigkill_mid_stream_lose_nothing_and_double_nothing() {
    let app = spawn_app_with("", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    // Slow TIXnGO so the kills land while tickets are in flight.
    std::fs::write(&config, test_settings_toml(&app.broker, &app.sim, "")).unwrap();
    app.sim.sim.set_faults(
        None,
        Faults {
            latency_ms: 20,
            ..Faults::none()
        },
    );
    let mut terminated = bridge_process(&config);
    let mut killed = bridge_process(&config);
    let survivor = bridge_process(&config);
    let ids: Vec<String> = (0..1500).map(|i| format!("K-{i}")).collect();
    for (n, id) in ids.iter().enumerate() {
        app.publish(Flow::Inject, &match_ticket("ACME", id)).await;
        if n == 500 {
            killed.start_kill().unwrap();
        }
        if n == 1000 {
            let pid = terminated.id().unwrap().to_string();
            let status = tokio::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .await
                .unwrap();
            assert!(status.success());
        }
    }
    let exit = tokio::time::timeout(TIMEOUT, terminated.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "SIGTERM ends with exit 0 after draining, got {exit:?}"
    );
    killed.wait().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while app.sim.sim.ticket_ids("ACME").len() < ids.len() {
        assert!(tokio::time::Instant::now() < deadline, "tickets missing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &ids {
        let ticket = app.sim.sim.ticket("ACME", id).unwrap();
        assert_eq!(ticket.side_effects.created, 1, "{id}");
    }
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0);
    drop(survivor);
}

/// One organization's TIXnGO down: the other's tickets keep flowing during the outage, and the
/// first's all arrive after it, with zero dead letters.
#[tokio::test]
async fn an_outage_of_one_organization_leaves_the_other_flowing() {
    let extra = "[topology]\nretry_tiers = [\"1s\", \"2s\"]\n[tixngo]\nbreaker_threshold = 2\nbreaker_open_for = \"500ms\"\n";
    let mut app = spawn_app_with(extra, &[Flow::Inject]).await;
    app.sim.sim.set_faults(
        Some("ACME"),
        Faults {
            outage: true,
            ..Faults::none()
        },
    );
    for i in 0..50 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("A-{i}")))
            .await;
        app.publish(Flow::Inject, &match_ticket("GLOBEX", &format!("G-{i}")))
            .await;
    }
    eventually("GLOBEX flows during ACME's outage", || {
        app.sim.sim.ticket_ids("GLOBEX").len() == 50
    })
    .await;
    assert!(app.sim.sim.ticket_ids("ACME").is_empty());
    // Longer than the retry horizon (1 s + 2 s): the breaker parks rather than burns attempts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    app.sim.sim.clear_faults(Some("ACME"));
    eventually("ACME drains after the outage", || {
        app.sim.sim.ticket_ids("ACME").len() == 50
    })
    .await;
    assert_eq!(
        app.queue_len(&app.dlq(Flow::Inject)).await,
        0,
        "zero dead letters"
    );
    app.stop().await.unwrap();
}

/// `rate_limit` paces one organization's TIXnGO calls (here 10/s, one ticket per call): 21
/// calls cannot be made in under 2 s. A lower bound on elapsed time is the behaviour under
/// test, not a speed claim.
#[tokio::test]
async fn a_rate_limited_organization_gets_at_most_its_calls_per_second() {
    let extra = "[worker]\nbatch_max = 1\nbatch_linger = \"0ms\"\n";
    let limited = |toml: String| {
        toml.replacen(
            "organization = \"ACME\"\n",
            "organization = \"ACME\"\nrate_limit = 10.0\n",
            1,
        )
    };
    let mut app = spawn_app_edited(extra, vec![tixngo_bridge::app::Part::Flow(Flow::Inject)], limited).await;
    let started = tokio::time::Instant::now();
    for i in 0..21 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("L-{i}")))
            .await;
    }
    eventually("all injected", || app.sim.sim.ticket_ids("ACME").len() == 21).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "21 calls at 10/s took only {:?}",
        started.elapsed()
    );
    assert_eq!(app.sim.sim.stats().requests.inject, 21);
    app.stop().await.unwrap();
}
