//! Field faults (issue 16), classes 3 to 7: what production RabbitMQ, HTTP and SMTP do to the
//! bridge. Class 1 (redirects) is in redirects.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use lapin::options::QueueDeleteOptions;
use lapin::types::FieldTable;
use serde_json::json;
use tixngo_bridge::config;
use tixngo_bridge::flows::Flow;
use tixngo_bridge::tixngo::{
    CallError, ErrorClass, TicketDocument, TixngoClient, client::http_client, mapping,
};

use crate::helpers::*;

/// What the stand-in in front of TIXnGO answers.
#[derive(Clone)]
pub enum Mode {
    /// Every call gets this status, content type and body (a proxy's error page, a broken release).
    Fixed {
        status: u16,
        content_type: Option<&'static str>,
        body: String,
    },
    /// Calls go through to the simulator at this origin (`http://127.0.0.1:PORT`).
    Forward(String),
}

/// A proxy in front of the simulator whose answer the test switches.
pub struct StandIn {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    mode: Arc<Mutex<Mode>>,
    /// Calls answered, whatever the mode.
    pub calls: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct StandInState {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    http: reqwest::Client,
}

async fn answer(State(state): State<StandInState>, request: Request) -> Response {
    state.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mode = state.mode.lock().unwrap().clone();
    match mode {
        Mode::Fixed {
            status,
            content_type,
            body,
        } => {
            let mut response = (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response();
            response.headers_mut().remove(axum::http::header::CONTENT_TYPE);
            if let Some(ct) = content_type {
                response
                    .headers_mut()
                    .insert(axum::http::header::CONTENT_TYPE, ct.parse().unwrap());
            }
            response
        }
        Mode::Forward(origin) => {
            let (parts, body) = request.into_parts();
            let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let url = format!(
                "{origin}{}",
                parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            let mut forwarded = state.http.request(parts.method.clone(), url).body(body);
            for (name, value) in &parts.headers {
                if name != axum::http::header::HOST {
                    forwarded = forwarded.header(name, value);
                }
            }
            let got = forwarded.send().await.unwrap();
            let status = got.status();
            let headers = got.headers().clone();
            let bytes = got.bytes().await.unwrap();
            let mut response = (status, bytes).into_response();
            for (name, value) in &headers {
                response.headers_mut().insert(name, value.clone());
            }
            response
        }
    }
}

impl StandIn {
    pub async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(mode));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let state = StandInState {
            mode: mode.clone(),
            calls: calls.clone(),
            http: reqwest::Client::new(),
        };
        let router = axum::Router::new().fallback(answer).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        StandIn {
            origin,
            mode,
            calls,
            task,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn html_page() -> Mode {
    Mode::Fixed {
        status: 200,
        content_type: Some("text/html; charset=utf-8"),
        body: "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>Back soon</body></html>"
            .into(),
    }
}

/// The sim's origin (`http://127.0.0.1:PORT`) from one of its interface URLs.
fn origin_of(base_url: &str) -> String {
    let url = url::Url::parse(base_url).unwrap();
    format!("http://{}:{}", url.host_str().unwrap(), url.port().unwrap())
}

fn metric(app: &TestApp, line_start: &str) -> Option<f64> {
    app.context
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Class 3: answers the bridge cannot read are TIXnGO's fault, not the ticket's
// ---------------------------------------------------------------------------------------------

fn client_for(base: &str) -> TixngoClient {
    let text = format!(
        "[[interfaces]]\norganization = \"ACME\"\nkind = \"tixngo\"\nurl = \"{base}\"\nusername = \"admin@acme.example\"\napi_key = \"k\"\n"
    );
    let settings = config::from_toml(&text).unwrap().validate_with(|_| None).unwrap();
    let http = http_client(&settings.tixngo).unwrap();
    TixngoClient::new(http, settings.interface("ACME").unwrap(), &settings.tixngo).unwrap()
}

fn ticket(id: &str) -> TicketDocument {
    let message = serde_json::from_value(match_ticket("ACME", id)).unwrap();
    TicketDocument {
        ticket_id: id.to_owned(),
        json: serde_json::value::to_raw_value(&mapping::to_tixngo(&message)).unwrap(),
    }
}

#[tokio::test]
async fn answers_that_are_not_the_contract_are_transient_protocol_errors_with_their_first_bytes() {
    let stand_in = StandIn::start(html_page()).await;
    let client = client_for(&format!("{}/ACME/organizer/tickets", stand_in.origin));
    let one = ticket("P-1");
    let cases: Vec<(&str, Mode, &str)> = vec![
        ("200 with an HTML page", html_page(), "<!DOCTYPE html>"),
        (
            "200 JSON that does not parse",
            Mode::Fixed {
                status: 200,
                content_type: Some("application/json"),
                body: "{\"results\": [".into(),
            },
            "{\\\"results\\\": [",
        ),
        (
            "200 without a content type",
            Mode::Fixed {
                status: 200,
                content_type: None,
                body: "{\"results\":[{\"ticketId\":\"P-1\",\"code\":201,\"status\":\"INJECTED\"}]}".into(),
            },
            "ticketId",
        ),
        (
            "a result count that does not match the batch",
            Mode::Fixed {
                status: 200,
                content_type: Some("application/json"),
                body: "{\"results\":[]}".into(),
            },
            "0 results for 1 tickets",
        ),
        (
            "an undocumented per-ticket code",
            Mode::Fixed {
                status: 200,
                content_type: Some("application/json"),
                body: "{\"results\":[{\"ticketId\":\"P-1\",\"code\":451}]}".into(),
            },
            "per-ticket code 451",
        ),
    ];
    for (what, mode, shows) in cases {
        stand_in.set(mode);
        let error = client.inject(&[&one]).await.expect_err(what);
        assert!(matches!(error, CallError::Protocol { .. }), "{what}: {error:?}");
        assert_eq!(error.class(), ErrorClass::Transient, "{what}: {error}");
        assert!(
            error.to_string().contains(shows),
            "{what}: `{error}` does not show `{shows}`"
        );
    }
}

#[tokio::test]
async fn a_proxy_answering_200_html_dead_letters_nothing_and_opens_the_breaker() {
    let stand_in = StandIn::start(html_page()).await;
    let base = format!("{}/ACME/organizer/tickets", stand_in.origin);
    let mut app = spawn_app_edited(
        "[tixngo]\nbreaker_threshold = 2\nbreaker_open_for = \"300ms\"\n",
        vec![tixngo_bridge::app::Part::Flow(Flow::Inject)],
        |toml| {
            let sim_acme = toml
                .lines()
                .find(|l| l.starts_with("url = ") && l.contains("/ACME/"))
                .unwrap()
                .to_owned();
            toml.replacen(&sim_acme, &format!("url = \"{base}\""), 1)
        },
    )
    .await;
    stand_in.set(html_page());
    for i in 0..3 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("H-{i}")))
            .await;
    }
    eventually("the HTML page was answered several times", || {
        stand_in.calls() >= 4
    })
    .await;
    eventually("the breaker opened", || {
        metric(
            &app,
            "tixngo_bridge_breaker_transitions_total{organization=\"ACME\",to=\"open\"}",
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    assert_eq!(
        app.queue_len(&app.dlq(Flow::Inject)).await,
        0,
        "dead-lettered for a proxy's page"
    );
    // The proxy is fixed: the waiting tickets go through.
    stand_in.set(Mode::Forward(origin_of(&app.sim.base_url("ACME"))));
    for i in 0..3 {
        app.event_for("inject.succeeded", &format!("H-{i}")).await;
    }
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0);
    app.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Class 6: the operator's mistake pauses the organization, it does not dead-letter its tickets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rotated_api_key_pauses_the_organization_without_dead_letters_until_the_key_works() {
    let mut app = spawn_app_with("[tixngo]\nbreaker_open_for = \"300ms\"\n", &[Flow::Inject]).await;
    let (_, acme_key) = ORGS[0];
    // The key was rotated in TIXnGO before the bridge's secret was updated.
    app.sim
        .sim
        .add_tenant("ACME", "rotated-key-not-yet-in-the-bridge");
    for i in 0..5 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("K-{i}")))
            .await;
    }
    eventually("the organization is paused for its key", || {
        metric(
            &app,
            "tixngo_bridge_organization_paused{organization=\"ACME\",reason=\"auth-refused\"}",
        ) == Some(1.0)
    })
    .await;
    // Another organization keeps flowing meanwhile.
    app.publish(Flow::Inject, &match_ticket("GLOBEX", "G-K-1")).await;
    app.event_for("inject.succeeded", "G-K-1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.queue_len(&app.dlq(Flow::Inject)).await,
        0,
        "a refused key dead-lettered tickets"
    );
    assert_eq!(
        metric(&app, "tixngo_bridge_retries_total"),
        None,
        "paused messages used their retries"
    );
    // The bridge's key becomes valid again (TIXnGO-side fix): a probe succeeds, all go through.
    app.sim.sim.add_tenant("ACME", acme_key);
    for i in 0..5 {
        app.event_for("inject.succeeded", &format!("K-{i}")).await;
    }
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0);
    assert_eq!(
        metric(
            &app,
            "tixngo_bridge_organization_paused{organization=\"ACME\",reason=\"auth-refused\"}"
        ),
        Some(0.0)
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_unresolvable_tixngo_host_pauses_the_organization_without_dead_letters() {
    let app = spawn_app_edited(
        "[tixngo]\nbreaker_open_for = \"300ms\"\n",
        vec![tixngo_bridge::app::Part::Flow(Flow::Inject)],
        |toml| {
            let sim_acme = toml
                .lines()
                .find(|l| l.starts_with("url = ") && l.contains("/ACME/"))
                .unwrap()
                .to_owned();
            toml.replacen(
                &sim_acme,
                "url = \"https://tixngo-bridge-test.invalid/ACME/organizer/tickets\"",
                1,
            )
        },
    )
    .await;
    for i in 0..3 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("D-{i}")))
            .await;
    }
    eventually("the organization is paused for DNS", || {
        metric(
            &app,
            "tixngo_bridge_organization_paused{organization=\"ACME\",reason=\"dns\"}",
        ) == Some(1.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0);
    assert_eq!(
        metric(&app, "tixngo_bridge_retries_total"),
        None,
        "paused messages used retries"
    );
}

// ---------------------------------------------------------------------------------------------
// Class 7: an event nobody is bound for is kept, counted and visible
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_outcome_event_no_queue_is_bound_for_is_kept_in_the_unrouted_queue() {
    let app = spawn_app_with("", &[Flow::Inject]).await;
    // S-360's consumer is not deployed: nothing is bound to the events exchange.
    app.channel
        .queue_unbind(
            EVENTS_QUEUE.into(),
            app.settings.topology.events_exchange.as_str().into(),
            "#".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    app.publish(Flow::Inject, &match_ticket("ACME", "U-1")).await;
    let unrouted = app.settings.topology.unrouted_events();
    let kept = app.take(&unrouted).await;
    let event: serde_json::Value = serde_json::from_slice(&kept.body).unwrap();
    assert_eq!(event["type"], json!("inject.succeeded"));
    assert_eq!(event["ticket_id"], json!("U-1"));
    assert_eq!(kept.header("x-unrouted-routing-key"), &json!("inject.succeeded"));
    assert_eq!(
        kept.header("x-unrouted-exchange"),
        &json!(app.settings.topology.events_exchange)
    );
    assert_eq!(
        metric(
            &app,
            "tixngo_bridge_events_unrouted_total{routing_key=\"inject.succeeded\"}"
        ),
        Some(1.0)
    );
    assert!(app.sim.sim.ticket("ACME", "U-1").is_some());
}

// ---------------------------------------------------------------------------------------------
// Class 4: topology drift
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_dlq_deleted_while_running_is_declared_again_and_the_invalid_message_dead_lettered() {
    let app = spawn_app_with("", &[Flow::Inject]).await;
    let dlq = app.dlq(Flow::Inject);
    app.channel
        .queue_delete(dlq.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    app.publish_raw(
        Flow::Inject,
        br#"{"organization":"ACME","ticket_id":"X-1","spectator":{"name":"Ada Lovelace"}}"#,
        Some("application/json"),
    )
    .await;
    // Reading a queue that does not exist closes the test's channel: give the bridge time first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let letter = app.take(&dlq).await;
    assert_eq!(letter.header("x-error-class"), &json!("invalid-message"));
    assert_eq!(
        app.queue_len(&app.settings.topology.work_queue(Flow::Inject))
            .await,
        0
    );
    let requeued: f64 = app
        .context
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("tixngo_bridge_messages_total{") && l.contains("outcome=\"requeued\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(requeued <= 1.0, "requeued {requeued} times: a redelivery loop");
}

#[tokio::test]
async fn a_queue_with_other_arguments_stops_start_up_with_exit_78_naming_it_and_the_migration() {
    let broker = TestBroker::new().await;
    let sim = spawn_sim().await;
    let old = config::from_toml(&test_settings_toml(&broker, &sim, ""))
        .unwrap()
        .validate_with(|_| None)
        .unwrap();
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    tixngo_bridge::broker::Topology::new(&old.topology)
        .declare(&channel)
        .await
        .unwrap();
    // The operator changes topology.delivery_limit from 20 to 5 and restarts.
    let text = test_settings_toml(
        &broker,
        &sim,
        "[topology]\nretry_tiers = [\"300ms\", \"600ms\"]\ndelivery_limit = 5\n",
    );
    let settings = config::from_toml(&text).unwrap().validate_with(|_| None).unwrap();
    let parts = Flow::ALL
        .iter()
        .copied()
        .map(tixngo_bridge::app::Part::Flow)
        .collect();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        tixngo_bridge::app::run(settings, parts, tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("start-up stops instead of retrying for ever");
    let error = result.expect_err("start-up refused");
    assert_eq!(error.exit_code(), 78, "{error:?}");
    let text = tixngo_bridge::telemetry::chain(&error);
    for shows in [
        "tixngo.",
        "x-delivery-limit",
        "x-delivery-limit=5",
        "delete_queue",
        "20",
    ] {
        assert!(text.contains(shows), "`{text}` does not show `{shows}`");
    }
}

// ---------------------------------------------------------------------------------------------
// Class 5: one refused e-mail recipient blocks nothing; a dead letter is always visible
// ---------------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_tixngo-bridge");

fn notifier_parts() -> Vec<tixngo_bridge::app::Part> {
    vec![
        tixngo_bridge::app::Part::Flow(Flow::Inject),
        tixngo_bridge::app::Part::Notifier,
    ]
}

async fn refusing_sink(addresses: &[&str]) -> SmtpSink {
    let mut args = Vec::new();
    for address in addresses {
        args.push(std::ffi::OsString::from("--refuse-rcpt"));
        args.push(std::ffi::OsString::from(*address));
    }
    SmtpSink::start_with(0, false, tempfile::tempdir().unwrap(), &args).await
}

/// The envelope recipients of every accepted e-mail (the sink's `.json` sidecars).
fn envelope_recipients(sink: &SmtpSink) -> Vec<String> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(sink.maildir.path()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "json") {
            let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            for to in meta["rcpt_tos"].as_array().unwrap() {
                all.push(to.as_str().unwrap().to_owned());
            }
        }
    }
    all.sort();
    all
}

fn invalid_acme(ticket: &str) -> serde_json::Value {
    let mut message = match_ticket("ACME", ticket);
    message["unexpected"] = json!("makes it invalid");
    message
}

#[tokio::test]
async fn a_refused_recipient_does_not_keep_the_digest_from_the_accepted_one() {
    let sink = refusing_sink(&["ops@acme.example"]).await;
    let app = spawn_app_edited(&sink.notifier_toml("1s"), notifier_parts(), |toml| {
        toml.replacen(
            "notification_emails = \"ops@acme.example\"",
            "notification_emails = \"ops@acme.example, ticketing@acme.example\"",
            1,
        )
    })
    .await;
    app.publish(Flow::Inject, &invalid_acme("R-1")).await;
    eventually("an e-mail to the accepted recipient", || {
        envelope_recipients(&sink) == vec!["ticketing@acme.example".to_owned()]
    })
    .await;
    let parked = app.settings.topology.parked(Flow::Inject);
    eventually_async("parked", || async { app.queue_len(&parked).await == 1 }).await;
    assert_eq!(
        metric(
            &app,
            "tixngo_bridge_email_recipients_refused_total{organization=\"ACME\",permanent=\"true\"}"
        ),
        Some(1.0)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.messages().len(), 1, "the digest was sent again");
}

#[tokio::test]
async fn nobody_of_the_organization_reachable_sends_the_digest_to_fallback_emails_once() {
    let sink = refusing_sink(&["ops@acme.example"]).await;
    let app = spawn_app_parts(&sink.notifier_toml("1s"), notifier_parts()).await;
    app.publish(Flow::Inject, &invalid_acme("R-2")).await;
    eventually("the digest went to the fallback address", || {
        envelope_recipients(&sink) == vec!["fallback@ops.example".to_owned()]
    })
    .await;
    let parked = app.settings.topology.parked(Flow::Inject);
    eventually_async("parked", || async { app.queue_len(&parked).await == 1 }).await;
    assert!(sink.messages()[0].contains("R-2"));
}

#[tokio::test]
async fn every_recipient_refused_for_good_is_not_retried_like_an_outage_and_the_letter_is_parked() {
    let sink = refusing_sink(&["ops@acme.example", "fallback@ops.example"]).await;
    let app = spawn_app_parts(&sink.notifier_toml("1s"), notifier_parts()).await;
    app.publish(Flow::Inject, &invalid_acme("R-3")).await;
    let parked = app.settings.topology.parked(Flow::Inject);
    eventually_async("parked without an e-mail", || async {
        app.queue_len(&parked).await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // One refusal per address list, then no more: a 550 is not an outage.
    assert_eq!(
        metric(
            &app,
            "tixngo_bridge_email_recipients_refused_total{organization=\"ACME\",permanent=\"true\"}"
        ),
        Some(2.0)
    );
    assert!(sink.messages().is_empty());
}

/// Issue 22, class 3, first example: while the notifier waits for a group's next window, its
/// new dead letters are in the DLQ, visible to `dlq list` and replayable.
#[tokio::test]
async fn dead_letters_waiting_for_the_next_digest_are_visible_to_dlq_list_and_replayable() {
    let sink = SmtpSink::start(0, false).await;
    let app = spawn_app_parts(&sink.notifier_toml("1m"), notifier_parts()).await;
    app.publish(Flow::Inject, &invalid_acme("V-0")).await;
    eventually("the first digest", || sink.messages().len() == 1).await;
    let parked = app.settings.topology.parked(Flow::Inject);
    eventually_async("parked", || async { app.queue_len(&parked).await == 1 }).await;
    for i in 1..=5 {
        app.publish(Flow::Inject, &invalid_acme(&format!("V-{i}"))).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, test_settings_toml(&app.broker, &app.sim, "")).unwrap();
    let dlq = |args: &'static [&'static str]| {
        let config = config.clone();
        async move {
            let output = tokio::process::Command::new(BIN)
                .arg("dlq")
                .args(args)
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).unwrap()
        }
    };
    // Give the flow time to dead-letter the five and the notifier several rounds.
    eventually_async("the five new dead letters are in the DLQ", || async {
        app.queue_len(&app.dlq(Flow::Inject)).await == 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let listing: serde_json::Value =
        serde_json::from_str(&dlq(&["list", "--organization", "ACME", "--json"]).await).unwrap();
    assert_eq!(listing["total"], json!(6), "{listing}");
    let replayed = dlq(&["replay", "--organization", "ACME"]).await;
    assert!(replayed.contains("replayed 6"), "{replayed}");
    assert_eq!(sink.messages().len(), 1, "a second digest within the window");
}

/// Class 4, the log side: at info level, a run where a DLQ is deleted and an invalid message
/// with personal data arrives logs no body, no header value and no personal data (lapin used to
/// print each returned message, body and headers as byte lists, at WARN).
#[tokio::test]
async fn info_logs_of_a_topology_drift_hold_no_body_header_value_or_personal_data() {
    let app = spawn_app_with("", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, test_settings_toml(&app.broker, &app.sim, "")).unwrap();
    let log_path = dir.path().join("bridge.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut bridge = tokio::process::Command::new(BIN)
        .args(["run", "--flows", "inject", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the bridge consumes", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("consuming") || l.contains("ready"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dlq = app.dlq(Flow::Inject);
    app.channel
        .queue_delete(dlq.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let mut message = match_ticket("ACME", "PII-1");
    message["spectator"]["first_name"] = json!("Zebulon");
    message["spectator"]["email"] = json!("zebulon.private@spectator.example");
    message["unexpected"] = json!("makes it invalid");
    let mut headers = FieldTable::default();
    headers.insert(
        "x-s360-note".into(),
        lapin::types::AMQPValue::LongString("header-value-private-42".into()),
    );
    app.publish_props(
        Flow::Inject,
        &serde_json::to_vec(&message).unwrap(),
        lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id("m-pii-1".into())
            .with_headers(headers),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let letter = app.take(&dlq).await;
    assert_eq!(letter.header("x-error-class"), &json!("invalid-message"));
    let _ = bridge.start_kill();
    let _ = bridge.wait().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let as_bytes = |s: &str| {
        s.bytes()
            .take(6)
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for private in [
        "Zebulon",
        "zebulon.private@spectator.example",
        "header-value-private-42",
        &as_bytes("Zebulon"),
        &as_bytes("zebulon.private"),
        &as_bytes("header-value"),
    ] {
        assert!(
            !log.contains(private),
            "`{private}` is in the info-level log:\n{log}"
        );
    }
}
