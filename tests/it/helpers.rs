//! Test harness: a private RabbitMQ vhost per test, the simulator on port 0, and the bridge
//! running in-process against both (`spawn_app`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;
use tixngo_bridge::app::Part;
use tixngo_bridge::broker::Topology;
use tixngo_bridge::config::{self, Settings};
use tixngo_bridge::flows::Flow;
use tixngo_sim::{self as sim, RunningSim, SimConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A file of the repository, found from whichever workspace crate compiles this harness (the
/// bridge's tests and the tools crate's tests share it).
pub fn repo_file(relative: &str) -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join(relative))
        .find(|path| path.exists())
        .unwrap_or_else(|| manifest.join(relative))
}

/// A workspace binary: cargo builds them all into one directory under `cargo test --workspace`,
/// and tells each crate's tests where its own are.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let own = option_env!("CARGO_BIN_EXE_tixngo-bridge")
        .or(option_env!("CARGO_BIN_EXE_tixngo-lab"))
        .expect("the tests of a crate with a binary");
    let path = std::path::Path::new(own).with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo test --workspace` (or `cargo build --workspace`) first",
        path.display()
    );
    path
}

/// The `tixngo-sim` binary.
pub fn sim_binary() -> std::path::PathBuf {
    workspace_binary("tixngo-sim")
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn amqp_base() -> url::Url {
    let raw = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    url::Url::parse(&raw).expect("AMQP_URL is a URL")
}

fn management() -> String {
    std::env::var("RABBITMQ_MANAGEMENT_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".into())
}

/// A vhost of its own, deleted when dropped.
pub struct TestBroker {
    pub vhost: String,
    pub amqp_url: String,
    http: reqwest::Client,
}

impl TestBroker {
    pub async fn new() -> Self {
        let vhost = format!("tnb-{}", uuid::Uuid::new_v4().simple());
        let http = reqwest::Client::new();
        let base = management();
        let user = amqp_base().username().to_owned();
        let (u, p) = credentials();
        let put = http
            .put(format!("{base}/api/vhosts/{vhost}"))
            .basic_auth(&u, Some(&p))
            .send()
            .await;
        let put = put.expect("RabbitMQ management API reachable (scripts/test enables it)");
        assert!(put.status().is_success(), "create vhost: {}", put.status());
        let perms = http
            .put(format!("{base}/api/permissions/{vhost}/{user}"))
            .basic_auth(&u, Some(&p))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .unwrap();
        assert!(perms.status().is_success(), "set permissions: {}", perms.status());
        let mut url = amqp_base();
        url.set_path(&format!("/{vhost}"));
        Self {
            vhost,
            amqp_url: url.to_string(),
            http,
        }
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.amqp_url, ConnectionProperties::default())
            .await
            .unwrap()
    }

    /// The management API's view of a queue.
    pub async fn queue_info(&self, name: &str) -> Value {
        let (u, p) = credentials();
        self.http
            .get(format!("{}/api/queues/{}/{}", management(), self.vhost, name))
            .basic_auth(&u, Some(&p))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The name a client gave its connection (`client_properties.connection_name`), from the
    /// broker's name for it (`127.0.0.1:PORT -> 127.0.0.1:5672`).
    pub async fn client_connection_name(&self, broker_name: &str) -> String {
        let (u, p) = credentials();
        let encoded: String = url::form_urlencoded::byte_serialize(broker_name.as_bytes()).collect();
        let connection: Value = self
            .http
            .get(format!(
                "{}/api/connections/{}",
                management(),
                encoded.replace('+', "%20")
            ))
            .basic_auth(&u, Some(&p))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        connection["client_properties"]["connection_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Force-closes this vhost's connections whose name starts with `prefix`, as a broker
    /// restart or a network cut would. Returns how many were closed.
    pub async fn close_connections(&self, prefix: &str) -> usize {
        let (u, p) = credentials();
        let list: Vec<Value> = self
            .http
            .get(format!("{}/api/vhosts/{}/connections", management(), self.vhost))
            .basic_auth(&u, Some(&p))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut closed = 0;
        for connection in &list {
            let client_name = connection["client_properties"]["connection_name"]
                .as_str()
                .unwrap_or_default();
            if !client_name.starts_with(prefix) {
                continue;
            }
            let name = connection["name"].as_str().unwrap_or_default();
            let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
            let response = self
                .http
                .delete(format!(
                    "{}/api/connections/{}",
                    management(),
                    encoded.replace('+', "%20")
                ))
                .basic_auth(&u, Some(&p))
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                closed += 1;
            }
        }
        closed
    }
}

fn credentials() -> (String, String) {
    let url = amqp_base();
    let user = if url.username().is_empty() {
        "guest".to_owned()
    } else {
        url.username().to_owned()
    };
    (user, url.password().unwrap_or("guest").to_owned())
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let url = format!("{}/api/vhosts/{}", management(), self.vhost);
        let (u, p) = credentials();
        // Drop cannot await: delete from a short-lived thread with its own runtime.
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

pub const ORGS: [(&str, &str); 2] = [("ACME", "acme-secret-key-1"), ("GLOBEX", "globex-secret-key-2")];

/// A test's configuration: its vhost, the simulator's interfaces, short retry tiers, plus `extra`.
pub fn test_settings_toml(broker: &TestBroker, sim: &RunningSim, extra: &str) -> String {
    let url = &broker.amqp_url;
    // A test may tune [amqp]; the URL is always this test's vhost.
    let mut text = if extra.contains("[amqp]") {
        extra.replacen("[amqp]", &format!("[amqp]\nurl = \"{url}\""), 1)
    } else {
        format!(
            "{extra}\n[amqp]\nurl = \"{url}\"\nreconnect_min_delay = \"50ms\"\nreconnect_max_delay = \"500ms\"\n"
        )
    };
    if !extra.contains("[http]") {
        text.push_str("[http]\nlisten = \"127.0.0.1:0\"\n");
    }
    if !extra.contains("[topology]") {
        text.push_str("[topology]\nretry_tiers = [\"300ms\", \"600ms\"]\n");
    }
    if !extra.contains("[worker]") {
        text.push_str("[worker]\nin_process_min_delay = \"10ms\"\nin_process_max_delay = \"50ms\"\nshutdown_grace = \"5s\"\n");
    }
    for (org, key) in ORGS {
        text.push_str(&format!(
            "[[interfaces]]\norganization = \"{org}\"\nkind = \"tixngo\"\nurl = \"{}\"\nusername = \"admin@{}.example\"\napi_key = \"{key}\"\nnotification_emails = \"ops@{}.example\"\n",
            sim.base_url(org),
            org.to_lowercase(),
            org.to_lowercase()
        ));
    }
    text
}

pub async fn spawn_sim() -> RunningSim {
    let mut config = SimConfig::default();
    for (org, key) in ORGS {
        config = config.with_tenant(org, key);
    }
    sim::spawn(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// The bridge running in-process, with everything a test needs around it.
pub struct TestApp {
    pub broker: TestBroker,
    pub sim: RunningSim,
    pub settings: Settings,
    pub channel: Channel,
    /// Where /metrics, /healthz and /readyz answer.
    pub http_address: Option<std::net::SocketAddr>,
    /// The running bridge's shared state (metrics, health).
    pub context: tixngo_bridge::context::Context,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), tixngo_bridge::app::AppError>>>,
    _connection: Connection,
    events: lapin::Consumer,
}

pub const EVENTS_QUEUE: &str = "test.events";

pub async fn spawn_app() -> TestApp {
    spawn_app_with("", Flow::ALL).await
}

pub async fn spawn_app_with(extra: &str, flows: &[Flow]) -> TestApp {
    spawn_app_parts(extra, flows.iter().copied().map(Part::Flow).collect()).await
}

/// The bridge running `parts` (flows, poller, notifier), configured with `extra` TOML.
pub async fn spawn_app_parts(extra: &str, parts: Vec<Part>) -> TestApp {
    spawn_app_edited(extra, parts, |toml| toml).await
}

/// Like [`spawn_app_parts`], with the generated TOML passed through `edit` first (e.g. to give
/// one interface a template).
pub async fn spawn_app_edited(extra: &str, parts: Vec<Part>, edit: impl Fn(String) -> String) -> TestApp {
    spawn_app_on(spawn_sim().await, extra, parts, edit).await
}

/// Like [`spawn_app_edited`], against a simulator the test started (e.g. over TLS).
pub async fn spawn_app_on(
    sim: RunningSim,
    extra: &str,
    parts: Vec<Part>,
    edit: impl Fn(String) -> String,
) -> TestApp {
    let broker = TestBroker::new().await;
    let settings = config::from_toml(&edit(test_settings_toml(&broker, &sim, extra)))
        .unwrap()
        .validate_with(|_| None)
        .unwrap();
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    Topology::new(&settings.topology).declare(&channel).await.unwrap();
    channel
        .queue_declare(
            EVENTS_QUEUE.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            EVENTS_QUEUE.into(),
            settings.topology.events_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let events_channel = connection.create_channel().await.unwrap();
    let events = events_channel
        .basic_consume(
            EVENTS_QUEUE.into(),
            "test-events".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let running = tixngo_bridge::app::start(settings.clone(), parts, shutdown.clone())
        .await
        .unwrap();
    let http_address = running.http_address;
    let context = running.context.clone();
    let task = tokio::spawn(running.wait());
    TestApp {
        broker,
        sim,
        settings,
        channel,
        http_address,
        context,
        shutdown,
        task: Some(task),
        _connection: connection,
        events,
    }
}

impl TestApp {
    /// Publishes like S-360 does: JSON, persistent, with a message id; waits for the confirm.
    pub async fn publish(&self, flow: Flow, body: &Value) {
        self.publish_raw(flow, &serde_json::to_vec(body).unwrap(), Some("application/json"))
            .await;
    }

    pub async fn publish_raw(&self, flow: Flow, body: &[u8], content_type: Option<&str>) {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(uuid::Uuid::new_v4().to_string().into());
        if let Some(ct) = content_type {
            properties = properties.with_content_type(ct.into());
        }
        self.publish_props(flow, body, properties).await;
    }

    pub async fn publish_props(&self, flow: Flow, body: &[u8], properties: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                self.settings.topology.tickets_exchange.as_str().into(),
                flow.routing_key().as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            matches!(confirm, lapin::Confirmation::Ack(None)),
            "publish not confirmed: {confirm:?}"
        );
    }

    /// The next outcome event, as JSON.
    pub async fn next_event(&mut self) -> Value {
        let delivery = tokio::time::timeout(TIMEOUT, self.events.next())
            .await
            .expect("an outcome event in time")
            .expect("events consumer open")
            .expect("delivery");
        serde_json::from_slice(&delivery.data).unwrap()
    }

    /// Waits for an event of `kind` about `ticket_id`, skipping others.
    pub async fn event_for(&mut self, kind: &str, ticket_id: &str) -> Value {
        loop {
            let event = self.next_event().await;
            if event["type"] == kind && event["ticket_id"] == ticket_id {
                return event;
            }
        }
    }

    /// Takes one message from `queue`, waiting for it to arrive.
    pub async fn take(&self, queue: &str) -> Message {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(message) = self.try_take(queue).await {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message on {queue} in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn try_take(&self, queue: &str) -> Option<Message> {
        let got = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()?;
        let headers = got
            .delivery
            .properties
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .map(|(k, v)| (k.to_string(), amqp_to_json(v)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Message {
            headers,
            body: got.delivery.data.clone(),
        })
    }

    pub async fn queue_len(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    pub fn dlq(&self, flow: Flow) -> String {
        self.settings.topology.dlq(flow)
    }

    /// Stops the bridge (as SIGTERM would) and returns its result.
    pub async fn stop(&mut self) -> Result<(), tixngo_bridge::app::AppError> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A message read back from a queue.
#[derive(Debug)]
pub struct Message {
    pub headers: BTreeMap<String, Value>,
    pub body: Vec<u8>,
}

impl Message {
    pub fn header(&self, key: &str) -> &Value {
        self.headers.get(key).unwrap_or(&Value::Null)
    }
}

fn amqp_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::LongLongInt(i) => Value::from(*i),
        AMQPValue::LongInt(i) => Value::from(*i),
        AMQPValue::Boolean(b) => Value::Bool(*b),
        other => Value::String(format!("{other:?}")),
    }
}

/// A realistic injection message for a match ticket.
pub fn match_ticket(org: &str, ticket_id: &str) -> Value {
    serde_json::json!({
        "organization": org,
        "ticket_id": ticket_id,
        "issued_at": "2026-11-20T10:00:00+01:00",
        "product": {"kind": "match", "name": "Super League 2026/27", "code": "SL-M12"},
        "performance": {
            "id": "P-12", "start": "2026-12-06T18:00:00+01:00", "end": "2026-12-06T20:00:00+01:00",
            "host_team": "Servette FC", "opposing_team": "FC Basel 1893", "competition": "Super League"
        },
        "venue": {"site": "Stade de Genève", "street": "Route des Jeunes 16", "city": "Lancy", "zip": "1212", "country_code": "CH"},
        "seat": {"area": "Tribune Sud", "block": "B4", "row": "12", "number": "27", "entrance": "Porte 3"},
        "barcode": format!("QR-{ticket_id}"),
        "purchase": {"order_id": "O-98765", "purchased_at": "2026-11-20T09:58:00+01:00", "price": 45.0,
                     "currency": "CHF", "sales_channel": "INTERNET", "point_of_sale": "WEBSHOP"},
        "spectator": {"first_name": "Léa", "last_name": "Müller", "email": "lea@example.ch"}
    })
}

pub fn cancel_message(org: &str, ticket_id: &str) -> Value {
    serde_json::json!({
        "organization": org, "ticket_id": ticket_id, "reason": "refunded",
        "show_deleted_ticket": true, "cancelled_at": "2026-11-21T12:00:00Z"
    })
}

pub fn control_message(org: &str, ticket_id: &str) -> Value {
    serde_json::json!({
        "organization": org, "ticket_id": ticket_id, "controlled_at": "2026-12-06T17:31:12+01:00",
        "gate": "Porte 3", "control_point": "T3-L2"
    })
}

/// Polls `check` until it holds, or fails after [`TIMEOUT`].
/// Like [`eventually`] for checks that need to await.
pub async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A real SMTP server process (scripts/smtp-sink.py on aiosmtpd) storing every accepted
/// message as an .eml file; killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    pub maildir: tempfile::TempDir,
    _process: tokio::process::Child,
}

impl SmtpSink {
    /// Starts a sink on a free port (`port` 0) or a given one; `reject` answers 451 to every
    /// message.
    pub async fn start(port: u16, reject: bool) -> Self {
        Self::start_in(port, reject, tempfile::tempdir().unwrap()).await
    }

    pub async fn start_in(port: u16, reject: bool, maildir: tempfile::TempDir) -> Self {
        Self::start_with(port, reject, maildir, &[]).await
    }

    /// A sink speaking TLS with this PEM certificate and key: `mode` is `--starttls` (offered
    /// and required before MAIL) or `--implicit-tls` (SMTPS).
    pub async fn start_tls(mode: &str, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let args = [
            std::ffi::OsString::from("--tls-cert"),
            cert.into(),
            "--tls-key".into(),
            key.into(),
            mode.into(),
        ];
        Self::start_with(0, false, tempfile::tempdir().unwrap(), &args).await
    }

    /// Starts a sink with `extra_args` for scripts/smtp-sink.py (`--auth`, TLS options).
    pub async fn start_with(
        port: u16,
        reject: bool,
        maildir: tempfile::TempDir,
        extra_args: &[std::ffi::OsString],
    ) -> Self {
        use tokio::io::AsyncBufReadExt;
        let python = std::env::var("SMTP_SERVER_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let script = std::env::var("SMTP_SINK_SCRIPT")
            .unwrap_or_else(|_| repo_file("scripts/smtp-sink.py").display().to_string());
        let mut command = tokio::process::Command::new(python);
        command
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--maildir"])
            .arg(maildir.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if reject {
            command.arg("--reject");
        }
        command.args(extra_args);
        let mut process = command
            .spawn()
            .expect("start scripts/smtp-sink.py (python3-aiosmtpd)");
        let stdout = process.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("SMTP sink did not start")
            .unwrap()
            .expect("SMTP sink exited");
        let port = line.strip_prefix("READY ").unwrap().trim().parse().unwrap();
        Self {
            port,
            maildir,
            _process: process,
        }
    }

    /// Every accepted message, raw.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(self.maildir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| quoted_printable_decoded(&String::from_utf8_lossy(&std::fs::read(p).unwrap())))
            .collect()
    }

    /// The [notifier] configuration pointing at this sink.
    pub fn notifier_toml(&self, window: &str) -> String {
        smtp_toml(self.port, window)
    }
}

/// [notifier] configuration for an SMTP server on 127.0.0.1:`port`.
pub fn smtp_toml(port: u16, window: &str) -> String {
    format!(
        "[notifier]\nwindow = \"{window}\"\nfallback_emails = [\"fallback@ops.example\"]\nretry_min_delay = \"200ms\"\nretry_max_delay = \"1s\"\n[notifier.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"TIXnGO bridge <bridge@bridge.example>\"\ntimeout = \"5s\"\n"
    )
}

/// A free TCP port on 127.0.0.1 (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The message with quoted-printable soft line breaks and `=XX` escapes undone, so tests can
/// search the bodies as written (headers are left as they are).
fn quoted_printable_decoded(raw: &str) -> String {
    let Some((headers, body)) = raw.split_once("\r\n\r\n") else {
        return raw.to_owned();
    };
    let body = body.replace("=\r\n", "");
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && body.is_char_boundary(i + 3)
            && let Ok(byte) = u8::from_str_radix(&body[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    format!("{headers}\r\n\r\n{}", String::from_utf8_lossy(&out))
}
