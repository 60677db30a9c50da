//! One dead-letter vocabulary (issue 17, item 4): the class an e-mail names is the class `dlq`
//! selects by, so the replay command an e-mail prints replays exactly what it lists.

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use tixngo_bridge::app::Part;
use tixngo_bridge::flow::Flow;

use crate::helpers::*;

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

/// What the broker leaves on a message that was between retries (`x-error-class: transient`,
/// written by the bridge when it went to a retry tier) when its worker kept crashing and the
/// work queue's delivery limit dead-lettered it.
fn broker_dead_lettered_retry(ticket_id: &str) -> BasicProperties {
    let mut death = FieldTable::default();
    death.insert(ShortString::from("reason"), s("delivery_limit"));
    death.insert(ShortString::from("queue"), s("tixngo.inject"));
    let mut headers = FieldTable::default();
    for (k, v) in [
        ("x-error-class", "transient"),
        ("x-error-message", "TIXnGO answered HTTP 503: unavailable"),
        ("x-organization", "ACME"),
        ("x-ticket-id", ticket_id),
        ("x-flow", "inject"),
        ("x-first-death-reason", "delivery_limit"),
    ] {
        headers.insert(ShortString::from(k), s(v));
    }
    headers.insert(
        ShortString::from("x-death"),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(headers)
}

#[tokio::test]
async fn the_replay_command_of_an_email_replays_exactly_what_it_lists() {
    let sink = SmtpSink::start(0, false).await;
    let extra = sink.notifier_toml("1s");
    let mut app = spawn_app_parts(&extra, vec![Part::Notifier]).await;
    let dlq = app.settings.topology.dlq(Flow::Inject);
    for ticket in ["VOC-1", "VOC-2"] {
        let body = serde_json::to_vec(&match_ticket("ACME", ticket)).unwrap();
        app.channel
            .basic_publish(
                "".into(),
                dlq.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                broker_dead_lettered_retry(ticket),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually("the digest e-mail", || !sink.messages().is_empty()).await;
    let email = sink.messages().remove(0);
    assert!(email.contains("VOC-1") && email.contains("VOC-2"), "{email}");
    // The class the broker's reason gives, not the bridge's `transient` between retries.
    assert!(!email.contains("transient"), "{email}");
    let command = email
        .lines()
        .find(|l| l.trim_start().starts_with("tixngo-bridge dlq replay"))
        .unwrap_or_else(|| panic!("no replay command in {email}"))
        .trim()
        .to_owned();
    assert!(command.contains("--error-class delivery-limit"), "{command}");
    app.stop().await.unwrap();

    // The command as printed (program name aside), against this test's configuration.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, test_settings_toml(&app.broker, &app.sim, &extra)).unwrap();
    let mut args: Vec<String> = command.split_whitespace().skip(1).map(str::to_owned).collect();
    if !args.iter().any(|a| a == "--config") {
        args.extend(["--config".to_owned(), config.display().to_string()]);
    } else {
        let at = args.iter().position(|a| a == "--config").unwrap();
        args[at + 1] = config.display().to_string();
    }
    let replay = tokio::process::Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
        .args(&args)
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(out.contains("replayed 2"), "{out}");
    assert_eq!(
        app.queue_len(&app.settings.topology.work_queue(Flow::Inject))
            .await,
        2
    );
}
