//! Secrets (issue 10, item 3): API keys and the AMQP and SMTP passwords never appear in logs,
//! errors, metrics, dead-letter headers, outcome events, e-mails or `config check` output.
//!
//! The real binary runs every flow, the poller and the notifier at log level `trace` (lapin,
//! reqwest, hyper and lettre included) against a RabbitMQ user with a password, the simulator
//! and an SMTP server requiring AUTH. One organization's key is wrong, so TIXnGO's refusals and
//! the bridge's error paths are exercised too. Everything the bridge wrote or sent is then
//! searched for every secret, also in the encodings a protocol log would show (SASL PLAIN,
//! base64 for SMTP AUTH).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use serde_json::json;
use tixngo_bridge::dlq::letter::amqp_to_json;
use tixngo_bridge::flows::Flow;
use tixngo_sim::{self as sim, SimConfig, Status};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_tixngo-bridge");

/// What must never show: each secret and the forms a wire-level log would give it.
struct Secrets {
    acme_key: String,
    /// Configured for GLOBEX but not what the simulator expects: every GLOBEX call is refused.
    globex_key: String,
    amqp_user: String,
    amqp_password: String,
    smtp_user: String,
    smtp_password: String,
}

impl Secrets {
    fn new() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Self {
            acme_key: format!("acme-key-{tag}"),
            globex_key: format!("globex-key-{tag}"),
            amqp_user: format!("bridge-{}", &tag[..8]),
            amqp_password: format!("amqp-pw-{tag}"),
            smtp_user: "mailer".into(),
            smtp_password: format!("smtp-pw-{tag}"),
        }
    }

    /// (name, needle) pairs to search for.
    fn needles(&self) -> Vec<(String, String)> {
        let b64 = |s: &str| base64(s.as_bytes());
        let mut needles = vec![
            ("ACME API key".to_owned(), self.acme_key.clone()),
            ("GLOBEX API key".to_owned(), self.globex_key.clone()),
            ("AMQP password".to_owned(), self.amqp_password.clone()),
            ("SMTP password".to_owned(), self.smtp_password.clone()),
            (
                "SMTP password, base64 (AUTH LOGIN)".to_owned(),
                b64(&self.smtp_password),
            ),
            (
                "SMTP AUTH PLAIN".to_owned(),
                b64(&format!("\0{}\0{}", self.smtp_user, self.smtp_password)),
            ),
        ];
        // A secret written as a byte list (a `Debug` of `&[u8]`): its first 12 bytes.
        for (name, secret) in [
            ("AMQP password", &self.amqp_password),
            ("SMTP password", &self.smtp_password),
            ("ACME API key", &self.acme_key),
        ] {
            let bytes: Vec<String> = secret.bytes().take(12).map(|b| b.to_string()).collect();
            needles.push((format!("{name} as bytes"), bytes.join(", ")));
        }
        needles
    }
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A RabbitMQ user with a password and rights on the test's vhost only, deleted when dropped.
struct AmqpUser {
    management: String,
    admin: (String, String),
    name: String,
}

impl AmqpUser {
    async fn create(broker: &TestBroker, name: &str, password: &str) -> Self {
        let admin_url = url::Url::parse(&broker.amqp_url).unwrap();
        let admin = (
            admin_url.username().to_owned(),
            admin_url.password().unwrap_or("guest").to_owned(),
        );
        let management =
            std::env::var("RABBITMQ_MANAGEMENT_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".into());
        let http = reqwest::Client::new();
        let user = http
            .put(format!("{management}/api/users/{name}"))
            .basic_auth(&admin.0, Some(&admin.1))
            .json(&json!({"password": password, "tags": ""}))
            .send()
            .await
            .unwrap();
        assert!(user.status().is_success(), "create user: {}", user.status());
        let perms = http
            .put(format!("{management}/api/permissions/{}/{name}", broker.vhost))
            .basic_auth(&admin.0, Some(&admin.1))
            .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .unwrap();
        assert!(perms.status().is_success(), "permissions: {}", perms.status());
        Self {
            management,
            admin,
            name: name.to_owned(),
        }
    }
}

impl Drop for AmqpUser {
    fn drop(&mut self) {
        let url = format!("{}/api/users/{}", self.management, self.name);
        let (u, p) = self.admin.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                let _ = reqwest::Client::new()
                    .delete(url)
                    .basic_auth(u, Some(p))
                    .send()
                    .await;
            });
        })
        .join();
    }
}

/// scripts/smtp-sink.py requiring AUTH; killed when dropped.
struct AuthSink {
    sink: SmtpSink,
}

impl AuthSink {
    async fn start(user: &str, password: &str) -> Self {
        let args = ["--auth".into(), format!("{user}:{password}").into()];
        let sink = SmtpSink::start_with(0, false, tempfile::tempdir().unwrap(), &args).await;
        Self { sink }
    }

    /// Every accepted message, raw (as sent on the wire).
    fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.sink.maildir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    }
}

fn config_toml(
    amqp_url: &str,
    sim: &sim::RunningSim,
    http_port: u16,
    sink: &AuthSink,
    s: &Secrets,
) -> String {
    let mut text = format!(
        r#"[amqp]
url = "{amqp_url}"
reconnect_min_delay = "50ms"
reconnect_max_delay = "500ms"
[http]
listen = "127.0.0.1:{http_port}"
[topology]
retry_tiers = ["300ms", "600ms"]
[worker]
in_process_min_delay = "10ms"
in_process_max_delay = "50ms"
shutdown_grace = "5s"
[status_sync]
interval = "200ms"
error_min_delay = "100ms"
error_max_delay = "500ms"
[notifier]
window = "1s"
fallback_emails = ["fallback@ops.example"]
retry_min_delay = "200ms"
retry_max_delay = "1s"
[notifier.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
username = "{smtp_user}"
password = "{smtp_password}"
from = "TIXnGO bridge <bridge@bridge.example>"
timeout = "5s"
"#,
        port = sink.sink.port,
        smtp_user = s.smtp_user,
        smtp_password = s.smtp_password,
    );
    for (org, key) in [("ACME", &s.acme_key), ("GLOBEX", &s.globex_key)] {
        text.push_str(&format!(
            "[[interfaces]]\norganization = \"{org}\"\nkind = \"tixngo\"\nurl = \"{}\"\nusername = \"admin@{org}.example\"\napi_key = \"{key}\"\nnotification_emails = \"ops@{org}.example\"\n",
            sim.base_url(org)
        ));
    }
    text
}

/// Runs the binary with `args` at trace level; returns its exit code and stdout + stderr.
async fn run_to_end(args: &[&str], config: &Path) -> (Option<i32>, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "trace")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command finished")
    .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

fn assert_clean(what: &str, text: &str, secrets: &Secrets) {
    for (name, needle) in secrets.needles() {
        if let Some(at) = text.find(&needle) {
            let start = text[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
            let end = (at + needle.len() + 200).min(text.len());
            let end = (end..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            panic!("{name} found in {what}:\n...{}...", &text[start..end]);
        }
    }
}

#[tokio::test]
async fn no_secret_appears_in_any_output_of_any_flow_at_trace_level() {
    let secrets = Secrets::new();
    let broker = TestBroker::new().await;
    let _user = AmqpUser::create(&broker, &secrets.amqp_user, &secrets.amqp_password).await;
    let sim = sim::spawn(
        SimConfig::default()
            .with_tenant("ACME", &secrets.acme_key)
            .with_tenant("GLOBEX", "the-key-globex-really-has"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sink = AuthSink::start(&secrets.smtp_user, &secrets.smtp_password).await;
    let mut amqp_url = url::Url::parse(&broker.amqp_url).unwrap();
    amqp_url.set_username(&secrets.amqp_user).unwrap();
    amqp_url.set_password(Some(&secrets.amqp_password)).unwrap();
    let http_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        config_toml(amqp_url.as_str(), &sim, http_port, &sink, &secrets),
    )
    .unwrap();

    // config check: the effective configuration, printed.
    let (code, check) = run_to_end(&["config", "check"], &config).await;
    assert_eq!(code, Some(0), "{check}");
    assert!(check.contains("***"), "{check}");
    assert_clean("`config check` output", &check, &secrets);

    // The real bridge, every part, trace level, output to files.
    let log_path = dir.path().join("bridge.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut bridge = tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    eventually_async("the bridge ready", || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    // The test's own view of the broker (as guest, the admin).
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    let defaults = tixngo_bridge::config::TopologySettings::default();
    let topology = &defaults;
    let events = "secrets.events";
    let replies = "secrets.replies";
    for queue in [events, replies] {
        channel
            .queue_declare(queue.into(), Default::default(), Default::default())
            .await
            .unwrap();
    }
    channel
        .queue_bind(
            events.into(),
            topology.events_exchange.as_str().into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let publish = |flow: Flow, body: serde_json::Value, properties: BasicProperties| {
        let channel = channel.clone();
        let exchange = topology.tickets_exchange.clone();
        async move {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    flow.routing_key().as_str().into(),
                    Default::default(),
                    &serde_json::to_vec(&body).unwrap(),
                    properties.with_content_type("application/json".into()),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let plain = BasicProperties::default;
    // Every flow, the good and the failing paths.
    publish(Flow::Inject, match_ticket("ACME", "S-1"), plain()).await;
    publish(Flow::Inject, match_ticket("ACME", "S-2"), plain()).await;
    eventually("injected", || sim.sim.ticket_ids("ACME").len() == 2).await;
    publish(Flow::Control, control_message("ACME", "S-1"), plain()).await;
    publish(Flow::Cancel, cancel_message("ACME", "S-2"), plain()).await;
    publish(
        Flow::Status,
        json!({"organization": "ACME", "ticket_id": "S-1"}),
        plain()
            .with_reply_to(replies.into())
            .with_correlation_id("c-1".into()),
    )
    .await;
    publish(
        Flow::Status,
        json!({"organization": "ACME", "ticket_id": "S-2"}),
        plain(),
    )
    .await;
    // GLOBEX's key is refused: TIXnGO's 401 on every flow and in the poller.
    publish(Flow::Inject, match_ticket("GLOBEX", "G-1"), plain()).await;
    publish(Flow::Cancel, cancel_message("GLOBEX", "G-1"), plain()).await;
    // Invalid: dead-lettered at once, then e-mailed over authenticated SMTP.
    let mut invalid = match_ticket("ACME", "S-BAD");
    invalid["unexpected"] = json!(true);
    publish(Flow::Inject, invalid, plain()).await;
    // A change on TIXnGO's side for the poller.
    eventually("controlled", || {
        sim.sim.status("ACME", "S-1") == Some(Status::Controlled)
    })
    .await;
    sim.sim.transition("ACME", "S-1", Status::Transferred).ok();

    // Wait for the outcomes: the e-mail (the invalid message; GLOBEX's refused key pauses
    // GLOBEX instead of dead-lettering its tickets: field faults, class 6), GLOBEX paused, the
    // reply, a status.changed.
    eventually("e-mails sent", || !sink.messages().is_empty()).await;
    eventually("GLOBEX paused", || {
        std::fs::read_to_string(&log_path)
            .is_ok_and(|log| log.contains("TIXnGO refuses every call of this organization"))
    })
    .await;
    let mut event_bodies = Vec::new();
    let mut saw_status_changed = false;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !saw_status_changed || event_bodies.len() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events so far: {event_bodies:#?}"
        );
        match channel
            .basic_get(events.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(got) => {
                let text = String::from_utf8_lossy(&got.delivery.data).into_owned();
                saw_status_changed |= text.contains("status.changed");
                event_bodies.push(text);
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let reply = loop {
        if let Some(got) = channel
            .basic_get(replies.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break String::from_utf8_lossy(&got.delivery.data).into_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no status reply");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tixngo_bridge_"), "{metrics}");

    // Stop the bridge as Kubernetes would, so its shutdown is logged too.
    let pid = bridge.id().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(30), bridge.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the bridge exited with {status}");

    // Dead letters: headers and bodies, from the DLQs and the parked queues.
    let mut letters = String::new();
    for flow in Flow::ALL {
        for queue in [topology.dlq(*flow), topology.parked(*flow)] {
            while let Some(got) = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                // Debug would print header strings as byte lists: write them as text.
                for (key, value) in got
                    .delivery
                    .properties
                    .headers()
                    .clone()
                    .unwrap_or_default()
                    .inner()
                {
                    letters.push_str(&format!("{key}: {}\n", amqp_to_json(value)));
                }
                letters.push_str(&String::from_utf8_lossy(&got.delivery.data));
                letters.push('\n');
            }
        }
    }
    assert!(letters.contains("invalid-message"), "{letters}");

    let log = std::fs::read_to_string(&log_path).unwrap();
    if let Ok(keep) = std::env::var("SECRETS_TEST_KEEP_LOG") {
        std::fs::write(keep, &log).unwrap();
    }
    assert!(log.contains("TRACE"), "the log is at trace level");
    assert!(log.contains("lapin"), "lapin's own trace lines are included");
    assert_clean("the bridge's log", &log, &secrets);
    assert_clean("outcome events", &event_bodies.join("\n"), &secrets);
    assert_clean("the status reply", &reply, &secrets);
    assert_clean("dead letters", &letters, &secrets);
    assert_clean("e-mails", &sink.messages().join("\n"), &secrets);
    assert_clean("/metrics", &metrics, &secrets);

    // Failing at start-up: a broker that refuses the password, a port nobody listens on.
    let mut wrong = amqp_url.clone();
    wrong
        .set_password(Some(&format!("{}-wrong", secrets.amqp_password)))
        .unwrap();
    let mut closed = amqp_url.clone();
    closed.set_port(Some(free_port())).unwrap();
    for (what, url) in [("a refused password", wrong), ("a closed port", closed)] {
        let text = config_toml(url.as_str(), &sim, free_port(), &sink, &secrets);
        std::fs::write(&config, text).unwrap();
        let (code, output) = run_to_end(&["topology", "declare"], &config).await;
        assert_ne!(code, Some(0), "{what}: {output}");
        assert_clean(&format!("`topology declare` with {what}"), &output, &secrets);
    }
}
