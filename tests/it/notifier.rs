//! The dead-letter notifier against a real SMTP server process (scripts/smtp-sink.py).

use serde_json::json;
use tixngo_bridge::app::Part;
use tixngo_bridge::flows::Flow;
use tixngo_sim::Status;

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

/// Issue 7's done-when: a TIXnGO refusal for ACME gives one e-mail naming the ticket and the
/// replay command; once the cause is fixed, `dlq replay --flow inject --organization ACME`
/// delivers it, `dlq list` shows nothing left for ACME, and GLOBEX's parked message is untouched.
/// The refusal is one only TIXnGO can know (a template mistake is now refused when the
/// configuration loads): a stale ticket of the same id with other content in TIXnGO (`409`), which
/// the organizer then removes.
#[tokio::test]
async fn validation_failure_is_mailed_then_replayed_after_the_fix_leaving_other_organizations() {
    let sink = SmtpSink::start(0, false).await;
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/templates/example.json.j2"
    ))
    .unwrap();
    let template = dir.path().join("acme.json.j2");
    std::fs::write(&template, &good).unwrap();
    let with_template = |toml: String| {
        toml.replacen(
            "organization = \"ACME\"\nkind = \"tixngo\"",
            &format!(
                "organization = \"ACME\"\nkind = \"tixngo_with_template\"\ntemplate = \"{}\"",
                template.display()
            ),
            1,
        )
    };
    let extra = sink.notifier_toml("1s");
    let mut app = spawn_app_edited(&extra, parts(), with_template).await;
    // The cause: TIXnGO already holds a V-1 with another barcode (left over from a test run).
    let mut stale = match_ticket("ACME", "V-1");
    stale["barcode"] = json!("STALE-BARCODE-1");
    let stale: tixngo_bridge::messages::InjectMessage = serde_json::from_value(stale).unwrap();
    let organizations = tixngo_bridge::orgs::Organizations::new(&app.settings).unwrap();
    let acme = organizations.get("ACME").unwrap();
    let document = acme.render(&stale).unwrap();
    let created = acme.client.inject(&[&document]).await.unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    app.publish(Flow::Inject, &match_ticket("ACME", "V-1")).await;
    let event = app.event_for("inject.dead-lettered", "V-1").await;
    assert_eq!(event["error_class"], "rejected");
    let mut bad = match_ticket("GLOBEX", "G-1");
    bad["unexpected"] = json!(1);
    app.publish(Flow::Inject, &bad).await;
    let parked = app.settings.topology.parked(Flow::Inject);
    eventually_async("both parked", || async { app.queue_len(&parked).await == 2 }).await;
    let emails = sink.messages();
    let acme: Vec<_> = emails
        .iter()
        .filter(|e| e.contains("To: ops@acme.example"))
        .collect();
    assert_eq!(acme.len(), 1, "one e-mail for ACME");
    assert!(
        acme[0].contains("V-1") && acme[0].contains("HTTP 409"),
        "{}",
        acme[0]
    );
    assert!(acme[0].contains("tixngo-bridge dlq replay --flow inject --organization ACME"));
    app.stop().await.unwrap();

    // The fix (the organizer removes the stale ticket from TIXnGO), then the replay the e-mail
    // names, with the real binary.
    app.sim.sim.reset();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        with_template(test_settings_toml(&app.broker, &app.sim, &extra)),
    )
    .unwrap();
    let settings = tixngo_bridge::config::load(&config).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tixngo_bridge::app::start(settings, vec![Part::Flow(Flow::Inject)], shutdown.clone())
        .await
        .unwrap();
    let bridge = tokio::spawn(running.wait());
    let bin = env!("CARGO_BIN_EXE_tixngo-bridge");
    let replay = tokio::process::Command::new(bin)
        .args([
            "dlq",
            "replay",
            "--flow",
            "inject",
            "--organization",
            "ACME",
            "--config",
        ])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    app.event_for("inject.succeeded", "V-1").await;
    assert_eq!(
        app.sim.sim.ticket("ACME", "V-1").unwrap().status,
        Some(Status::Injected)
    );
    let list = tokio::process::Command::new(bin)
        .args(["dlq", "list", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success());
    assert!(!listed.contains("ACME"), "{listed}");
    assert!(listed.contains("GLOBEX"), "{listed}");
    let left = app.take(&parked).await;
    assert_eq!(left.header("x-organization"), "GLOBEX");
    assert_eq!(app.queue_len(&parked).await, 0);
    shutdown.cancel();
    bridge.await.unwrap().unwrap();
}
