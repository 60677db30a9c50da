//! Operations endpoints and metrics: /healthz, /readyz, /metrics against a running bridge.

use std::time::Duration;

use serde_json::Value;
use tixngo_bridge::flows::Flow;

use crate::helpers::*;

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let address = app.http_address.expect("http endpoint enabled in tests");
    let response = reqwest::get(format!("http://{address}{path}")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn health_readiness_and_metrics_reflect_the_running_bridge() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    assert_eq!(get(&app, "/healthz").await.0, 200);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (status, body) = get(&app, "/readyz").await;
        if status == 200 {
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["parts"]["inject"], true);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    app.publish(Flow::Inject, &match_ticket("ACME", "M-1")).await;
    app.event_for("inject.succeeded", "M-1").await;
    let mut bad = match_ticket("ACME", "M-2");
    bad["unexpected"] = serde_json::json!(true);
    app.publish(Flow::Inject, &bad).await;
    app.event_for("inject.dead-lettered", "M-2").await;

    // The outcome event is published before the message is acked and counted: poll.
    let expected = [
        r#"tixngo_bridge_messages_total{flow="inject",organization="ACME",outcome="succeeded"} 1"#,
        r#"tixngo_bridge_messages_total{flow="inject",organization="ACME",outcome="dead_lettered"} 1"#,
        r#"tixngo_bridge_dead_letters_total{flow="inject",class="invalid-message"} 1"#,
        r#"tixngo_bridge_tixngo_responses_total{organization="ACME",call="inject",status="ok"} 1"#,
        r#"tixngo_bridge_tixngo_call_duration_seconds_count{organization="ACME",call="inject"} 1"#,
        r#"tixngo_bridge_in_flight{flow="inject"} 0"#,
        r#"tixngo_bridge_breaker_state{organization="ACME"} 0"#,
    ];
    let mut metrics = String::new();
    for _ in 0..200 {
        let (status, body) = get(&app, "/metrics").await;
        assert_eq!(status, 200);
        metrics = body;
        if expected.iter().all(|line| metrics.contains(line)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in expected {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    for (_, key) in ORGS {
        assert!(!metrics.contains(key), "an API key leaked into /metrics");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_is_false_while_the_broker_connection_is_down_and_reconnects_are_counted() {
    // Slow reconnects so the disconnected window is wide enough to observe.
    let mut app = spawn_app_with(
        "[amqp]\nreconnect_min_delay = \"2s\"\nreconnect_max_delay = \"2s\"\n",
        &[Flow::Inject],
    )
    .await;
    eventually_async("ready", || async { get(&app, "/readyz").await.0 == 200 }).await;
    // The management API lists a new connection after a few seconds.
    while app.broker.close_connections("tixngo-bridge inject").await == 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually_async("unready while disconnected", || async {
        get(&app, "/readyz").await.0 == 503
    })
    .await;
    eventually_async("ready again", || async { get(&app, "/readyz").await.0 == 200 }).await;
    let (_, metrics) = get(&app, "/metrics").await;
    assert!(
        metrics.contains(r#"tixngo_bridge_reconnects_total{role="inject"} 1"#),
        "{metrics}"
    );
    // Still delivering after the reconnect.
    app.publish(Flow::Inject, &match_ticket("ACME", "R-1")).await;
    app.event_for("inject.succeeded", "R-1").await;
    app.stop().await.unwrap();
}

/// `--log-format json`: one JSON object per line, and every line about a message carries the
/// message's span (flow, organization, ticket id, message id).
#[tokio::test]
async fn json_logs_carry_the_message_span() {
    use tokio::io::AsyncBufReadExt;
    let app = spawn_app_with("", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, test_settings_toml(&app.broker, &app.sim, "")).unwrap();
    let mut bridge = tokio::process::Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
        .args(["--log-format", "json", "run", "--flows", "inject", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut bad = match_ticket("ACME", "LOG-1");
    bad["unexpected"] = serde_json::json!(true);
    app.publish(Flow::Inject, &bad).await;
    let mut lines = tokio::io::BufReader::new(bridge.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(TIMEOUT, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("bridge log ended");
            let parsed: Value = serde_json::from_str(&line).expect("every log line is JSON");
            if parsed["message"] == "dead-lettered" {
                return parsed;
            }
        }
    })
    .await
    .expect("a dead-lettered log line");
    let span = &line["span"];
    assert_eq!(span["name"], "message", "{line}");
    assert_eq!(span["flow"], "inject", "{line}");
    assert_eq!(span["organization"], "ACME", "{line}");
    assert_eq!(span["ticket_id"], "LOG-1", "{line}");
    assert!(
        span["message_id"].as_str().is_some_and(|id| id.len() > 8),
        "{line}"
    );
    bridge.start_kill().unwrap();
}
