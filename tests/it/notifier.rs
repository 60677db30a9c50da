//! The dead-letter notifier against a real SMTP server process (scripts/smtp-sink.py).

use serde_json::json;
use tixngo_bridge::app::Part;
use tixngo_bridge::flows::Flow;

use crate::helpers::*;

fn parts() -> Vec<Part> {
    vec![Part::Flow(Flow::Inject), Part::Notifier]
}

#[tokio::test]
async fn a_rejected_ticket_gives_one_digest_naming_it_and_the_replay_command_then_is_parked() {
    let sink = SmtpSink::start(0, false).await;
    let mut app = spawn_app_parts(&sink.notifier_toml("1s"), parts()).await;
    // Same id, different content: TIXnGO answers 409, a permanent rejection.
    app.publish(Flow::Inject, &match_ticket("ACME", "N-1")).await;
    app.event_for("inject.succeeded", "N-1").await;
    let mut changed = match_ticket("ACME", "N-1");
    changed["barcode"] = json!("QR-OTHER");
    app.publish(Flow::Inject, &changed).await;
    app.event_for("inject.dead-lettered", "N-1").await;

    eventually("one e-mail", || sink.messages().len() == 1).await;
    let parked = app.settings.topology.parked(Flow::Inject);
    eventually_async("parked", || async { app.queue_len(&parked).await == 1 }).await;
    let email = &sink.messages()[0];
    assert!(email.contains("To: ops@acme.example"), "{email}");
    assert!(
        email.contains("Subject: [tixngo-bridge] ACME inject: 1 ticket(s) not delivered (rejected)"),
        "{email}"
    );
    assert!(email.contains("N-1"));
    assert!(
        email.contains("tixngo-bridge dlq replay --flow inject --organization ACME --error-class rejected")
    );
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0);
    let message = app.take(&parked).await;
    assert_eq!(message.header("x-error-class"), "rejected");
    assert!(message.header("x-notified-at").is_string());
    for (_, key) in ORGS {
        assert!(!email.contains(key), "an API key leaked into an e-mail");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_storm_of_dead_letters_gives_a_handful_of_emails_and_hostile_values_stay_inert() {
    let sink = SmtpSink::start(0, false).await;
    let mut app = spawn_app_parts(&sink.notifier_toml("2s"), parts()).await;
    const N: usize = 400;
    for i in 0..N {
        // Invalid (unknown field) but naming ACME and a hostile ticket id.
        let mut message = match_ticket("ACME", &format!("S-{i}\r\nBcc: victim@evil.example <b>x</b>"));
        message["unexpected"] = json!("<script>alert(1)</script>\r\nX-Injected: yes");
        app.publish(Flow::Inject, &message).await;
    }
    let parked = app.settings.topology.parked(Flow::Inject);
    eventually_async("every dead letter parked", || async {
        app.queue_len(&parked).await == N as u32
    })
    .await;
    let emails = sink.messages();
    assert!(
        (1..=4).contains(&emails.len()),
        "{} e-mails for {N} dead letters",
        emails.len()
    );
    for email in &emails {
        let headers = email.split("\r\n\r\n").next().unwrap();
        assert!(
            !headers.contains("victim@evil.example"),
            "header injected:\n{headers}"
        );
        assert!(!headers.contains("X-Injected"), "header injected:\n{headers}");
        let html = email
            .split("Content-Type: text/html")
            .nth(1)
            .expect("an HTML part");
        assert!(!html.contains("<b>x</b>"), "HTML not escaped: {html}");
        assert!(html.contains("&lt;b&gt;x&lt;"), "HTML not escaped");
        assert!(email.contains("invalid-message"));
    }
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn while_smtp_is_down_dead_letters_stay_in_the_dlq_and_go_out_once_it_is_back() {
    let port = free_port();
    let mut app = spawn_app_parts(&smtp_toml(port, "500ms"), parts()).await;
    for i in 0..5 {
        let mut message = match_ticket("GLOBEX", &format!("D-{i}"));
        message["unexpected"] = json!(1);
        app.publish(Flow::Inject, &message).await;
    }
    let parked = app.settings.topology.parked(Flow::Inject);
    // Nothing listens: the notifier retries and parks nothing.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(app.queue_len(&parked).await, 0);
    let failed = app.context.metrics.encode();
    assert!(
        failed.contains(r#"tixngo_bridge_emails_total{outcome="failed"}"#),
        "{failed}"
    );

    // A server that refuses (451) is no better.
    let refusing = SmtpSink::start(port, true).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(app.queue_len(&parked).await, 0);
    drop(refusing);

    let sink = SmtpSink::start(port, false).await;
    eventually_async("all parked", || async { app.queue_len(&parked).await == 5 }).await;
    let emails = sink.messages();
    assert_eq!(emails.len(), 1, "one digest for the whole group");
    for i in 0..5 {
        assert!(emails[0].contains(&format!("D-{i}")));
    }
    assert!(emails[0].contains("To: ops@globex.example"));
    app.stop().await.unwrap();
}
