//! `demo`: the published mix is real work for a running bridge (`--publish-only`), and the
//! self-contained demo sums it up; its SMTP sink speaks enough SMTP for lettre.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use tixngo_bridge::flows::Flow;
use tixngo_lab::demo::{Demo, DemoOptions, SmtpSink, smtp_sink};

use crate::helpers::*;

#[tokio::test]
async fn the_demo_mix_is_delivered_and_its_broken_messages_are_dead_lettered() {
    let mut app = spawn_app_with("", &[Flow::Inject, Flow::Cancel, Flow::Control]).await;
    let published = tixngo_lab::demo::publish_mix(&app.settings).await.unwrap();
    let orgs = app.settings.interfaces.len();
    assert_eq!(published.by_routing_key["ticket.inject"], orgs * 7 + 2);
    assert_eq!(published.broken, orgs + 2);
    let expected = published.by_routing_key.values().sum::<usize>();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..expected {
        let event = app.next_event().await;
        *outcomes
            .entry(event["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        outcomes.get("inject.succeeded"),
        Some(&(orgs * 6)),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get("inject.dead-lettered"),
        Some(&(orgs + 2)),
        "{outcomes:?}"
    );
    // Control and cancel may race their injection; they retry until it exists.
    assert_eq!(outcomes.get("control.succeeded"), Some(&orgs), "{outcomes:?}");
    assert_eq!(outcomes.get("cancel.succeeded"), Some(&orgs), "{outcomes:?}");
    app.stop().await.unwrap();
}

/// The whole `demo` in-process on this test's vhost: every message has its outcome, the broken
/// ones are the invalid-message dead letters, the notifier's e-mails reach the embedded sink and
/// the simulator's moves come back as status changes.
#[tokio::test]
async fn the_self_contained_demo_delivers_the_mix_and_sums_it_up() {
    let broker = TestBroker::new().await;
    let output = tempfile::tempdir().unwrap();
    let mut options = DemoOptions::new(SecretString::from(broker.amqp_url.clone()));
    options.output_dir = output.path().to_owned();
    options.timeout = Duration::from_secs(90);
    let mut demo = Demo::start(options).await.unwrap();
    let summary = demo.run().await.unwrap();
    let orgs = demo.settings().interfaces.len();
    let where_next = demo.where_next(&summary, "tixngo-bridge", true);
    demo.stop().await.unwrap();

    let text = summary.to_string();
    assert_eq!(summary.published["inject"], orgs * 7 + 2, "{text}");
    assert_eq!(summary.delivered.get("inject"), Some(&(orgs * 6)), "{text}");
    assert_eq!(summary.delivered.get("control"), Some(&orgs), "{text}");
    assert_eq!(summary.delivered.get("cancel"), Some(&orgs), "{text}");
    assert_eq!(
        summary.delivered.values().sum::<usize>() + summary.broken,
        summary.published.values().sum::<usize>(),
        "{text}"
    );
    assert_eq!(
        summary.dead_letters_by_class,
        BTreeMap::from([("invalid-message".to_owned(), summary.broken)]),
        "{text}"
    );
    assert_eq!(summary.broken, orgs + 2);
    let acme = summary
        .emails
        .iter()
        .find(|mail| mail.recipients.iter().any(|r| r == "ops@acme.example"))
        .unwrap_or_else(|| panic!("an e-mail to ACME's address: {text}"));
    assert!(acme.subject.contains("ACME"), "{}", acme.subject);
    let file = acme.path.as_ref().expect("the e-mail was written out");
    assert!(file.starts_with(output.path()), "{}", file.display());
    assert!(String::from_utf8_lossy(&std::fs::read(file).unwrap()).contains("invalid-message"));
    assert!(
        summary
            .status_changes
            .get("DOWNLOADED")
            .is_some_and(|n| *n >= orgs),
        "{text}"
    );
    assert!(summary.status_change_count() > 0);
    for table_line in ["inject", "invalid-message", "Status changes", "E-mails"] {
        assert!(text.contains(table_line), "{table_line} in {text}");
    }
    assert!(where_next.contains("dlq list --config"), "{where_next}");
    assert!(
        !where_next.contains("guest:guest") && !text.contains("guest:guest"),
        "no password printed"
    );
    assert!(output.path().join("metrics.txt").is_file());
    // The written configuration really works for the commands the summary suggests.
    let settings = tixngo_bridge::config::load(&output.path().join("demo.toml")).unwrap();
    assert_eq!(settings.topology.queue_prefix, "tixngo-demo");
    // The notifier parks each dead letter once its e-mail is accepted (just after the sink has it).
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    let parked = settings.topology.parked(Flow::Inject);
    eventually_async("every broken message parked", || {
        let (channel, parked) = (&channel, &parked);
        async move {
            let declared = channel
                .queue_declare(
                    parked.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await
                .unwrap();
            declared.message_count() as usize == summary.broken
        }
    })
    .await;
}

/// The demo empties the queues under its prefix at start, so it refuses one without "demo".
#[tokio::test]
async fn a_demo_refuses_a_prefix_that_could_be_production() {
    let mut options = DemoOptions::new(SecretString::from("amqp://127.0.0.1:5672/%2f".to_owned()));
    options.prefix = "tixngo".into();
    let error = Demo::start(options).await.err().expect("refused");
    assert_eq!(error.exit_code(), tixngo_bridge::cli::EXIT_USAGE, "{error}");
}

#[tokio::test]
async fn an_unreachable_broker_is_exit_69() {
    let port = free_port();
    let output = tempfile::tempdir().unwrap();
    let mut options = DemoOptions::new(SecretString::from(format!(
        "amqp://guest:guest@127.0.0.1:{port}/%2f"
    )));
    options.output_dir = output.path().to_owned();
    let error = Demo::start(options).await.err().expect("unreachable");
    assert_eq!(error.exit_code(), tixngo_bridge::cli::EXIT_UNAVAILABLE, "{error}");
    let message = tixngo_bridge::telemetry::chain(&error);
    assert!(message.contains("scripts/demo"), "{message}");
    assert!(!message.contains("guest:guest"), "{message}");
}

/// The demo's SMTP sink takes a real lettre client's e-mail, dot-stuffed lines included.
#[tokio::test]
async fn the_demo_smtp_sink_receives_what_lettre_sends() {
    use lettre::message::Mailbox;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start("127.0.0.1:0".parse().unwrap(), Some(dir.path().join("mail")))
        .await
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.addr.port())
        .build();
    for n in 0..2 {
        let message = Message::builder()
            .from("Bridge <bridge@demo.example>".parse::<Mailbox>().unwrap())
            .to("ops@acme.example".parse::<Mailbox>().unwrap())
            .cc("audit@acme.example".parse::<Mailbox>().unwrap())
            .subject(format!("ACME digest {n}"))
            .body(format!(
                "first line\r\n.a line starting with a dot\r\n..two dots\r\nlast {n}\r\n"
            ))
            .unwrap();
        transport.send(message).await.unwrap();
    }
    let received = sink.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].from, "bridge@demo.example");
    assert_eq!(
        received[0].recipients,
        vec!["ops@acme.example".to_owned(), "audit@acme.example".to_owned()]
    );
    assert_eq!(received[1].subject, "ACME digest 1");
    let body = String::from_utf8_lossy(&received[0].data);
    assert!(
        body.contains("\r\n.a line starting with a dot\r\n..two dots\r\n"),
        "{body}"
    );
    let file = std::fs::read(received[1].path.as_ref().unwrap()).unwrap();
    assert_eq!(file, received[1].data);
    sink.shutdown().await;
}

/// Line and message bounds: an over-long line ends the session with 500, a bare client that
/// talks out of order gets 503s, and the session goes on after them.
#[tokio::test]
async fn the_demo_smtp_sink_bounds_lines_and_sequence() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let sink = SmtpSink::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let stream = tokio::net::TcpStream::connect(sink.addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>) -> String {
        lines.next_line().await.unwrap().unwrap_or_default()
    }
    assert!(next_line(&mut lines).await.starts_with("220 "));
    write.write_all(b"MAIL FROM:<a@b.example>\r\n").await.unwrap();
    assert!(next_line(&mut lines).await.starts_with("503 "));
    write.write_all(b"HELO client\r\nNOOP\r\nDATA\r\n").await.unwrap();
    assert!(next_line(&mut lines).await.starts_with("250 "));
    assert!(next_line(&mut lines).await.starts_with("250 "));
    assert!(next_line(&mut lines).await.starts_with("503 "));
    let long = format!("NOOP {}\r\n", "x".repeat(smtp_sink::MAX_LINE));
    write.write_all(long.as_bytes()).await.unwrap();
    assert!(next_line(&mut lines).await.starts_with("500 "));
    assert_eq!(sink.count(), 0);
}

/// A second run on the same broker starts from emptied queues and fresh status-sync tokens (the
/// first run's name another simulator's diff position): its figures are its own.
#[tokio::test]
async fn a_second_demo_run_on_the_same_broker_counts_only_its_own_work() {
    let broker = TestBroker::new().await;
    let output = tempfile::tempdir().unwrap();
    let mut summaries = Vec::new();
    for _ in 0..2 {
        let mut options = DemoOptions::new(SecretString::from(broker.amqp_url.clone()));
        options.output_dir = output.path().to_owned();
        options.timeout = Duration::from_secs(90);
        summaries.push(tixngo_lab::demo::run(options).await.unwrap());
    }
    let (first, second) = (&summaries[0], &summaries[1]);
    assert_ne!(first.run, second.run);
    assert_eq!(first.delivered, second.delivered, "{second}");
    assert_eq!(
        first.dead_letters_by_class, second.dead_letters_by_class,
        "{second}"
    );
    assert_eq!(first.emails.len(), second.emails.len(), "{second}");
    assert!(second.status_changes.contains_key("TRANSFERRED"), "{second}");
    let mails = std::fs::read_dir(output.path().join("mail")).unwrap().count();
    assert_eq!(mails, second.emails.len(), "the first run's e-mails were cleared");
}
