//! `tixngo-bridge dlq` against the real broker: the real binary reads and moves dead letters
//! that the running bridge (in-process) then delivers to the simulator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::Value;
use tixngo_bridge::app::Part;
use tixngo_bridge::broker::headers;
use tixngo_bridge::flows::Flow;
use tixngo_sim::Faults;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_tixngo-bridge");

/// The bridge's configuration for this test, as a file for the binary.
struct Config {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Config {
    fn new(app: &TestApp, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.toml");
        std::fs::write(&path, test_settings_toml(&app.broker, &app.sim, extra)).unwrap();
        Self { path, _dir: dir }
    }

    /// Runs `tixngo-bridge dlq <args>` to completion.
    async fn dlq(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(BIN)
            .arg("dlq")
            .args(args)
            .arg("--config")
            .arg(&self.path)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    }

    /// Runs it and expects exit 0; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.dlq(args).await;
        assert!(output.status.success(), "dlq {args:?}: {}", describe(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args).await).unwrap()
    }

    /// (flow, ticket id or "unknown") of every dead letter left, from `dlq show --json`.
    async fn remaining(&self) -> BTreeSet<(String, String)> {
        self.json(&["show"])
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["flow"].as_str().unwrap().to_owned(),
                    m["ticket_id"].as_str().unwrap_or("unknown").to_owned(),
                )
            })
            .collect()
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    FieldTable::from(
        entries
            .into_iter()
            .map(|(k, v)| (ShortString::from(k), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn ago(duration: Duration) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(duration).unwrap()
}

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// One dead letter to place in a dlq or parked queue.
struct Letter {
    flow: Flow,
    parked: bool,
    org: &'static str,
    ticket: &'static str,
    /// `None`: dead-lettered by the broker for the delivery limit (`x-death`, no bridge headers).
    class: Option<&'static str>,
    http: Option<i64>,
    failed: Duration,
}

impl Letter {
    fn body(&self) -> Value {
        match self.flow {
            Flow::Cancel => cancel_message(self.org, self.ticket),
            _ => match_ticket(self.org, self.ticket),
        }
    }

    /// The headers the bridge (or the broker) would have written.
    fn headers(&self) -> FieldTable {
        let at = ago(self.failed);
        let Some(class) = self.class else {
            let death = table(vec![
                ("reason", text("delivery_limit")),
                ("queue", text(&format!("tixngo.{}", self.flow))),
                ("exchange", text("s360.tickets")),
                ("count", AMQPValue::LongLongInt(1)),
                ("time", AMQPValue::Timestamp(at.timestamp() as u64)),
            ]);
            return table(vec![
                (
                    "x-death",
                    AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
                ),
                ("x-first-death-reason", text("delivery_limit")),
                ("x-first-death-queue", text(&format!("tixngo.{}", self.flow))),
            ]);
        };
        let mut entries = vec![
            (headers::ERROR_CLASS, text(class)),
            (
                headers::ERROR_MESSAGE,
                text(&format!("{class} for {}", self.ticket)),
            ),
            (headers::FLOW, text(self.flow.as_str())),
            (headers::ORGANIZATION, text(self.org)),
            (headers::TICKET_ID, text(self.ticket)),
            (headers::ORIGINAL_QUEUE, text(&format!("tixngo.{}", self.flow))),
            (headers::ORIGINAL_ROUTING_KEY, text(&self.flow.routing_key())),
            (headers::RETRY_COUNT, AMQPValue::LongLongInt(2)),
            ("x-deferred-count", AMQPValue::LongLongInt(1)),
            (
                headers::FIRST_FAILURE_AT,
                text(&headers::rfc3339(at - chrono::Duration::minutes(5))),
            ),
            (headers::LAST_FAILURE_AT, text(&headers::rfc3339(at))),
        ];
        if let Some(http) = self.http {
            entries.push((headers::HTTP_STATUS, AMQPValue::LongLongInt(http)));
        }
        table(entries)
    }
}

/// Publishes straight into a dead-letter queue, as the bridge or the broker would have.
async fn place(app: &TestApp, queue: &str, body: &[u8], properties: BasicProperties) {
    let confirm = app
        .channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties.with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(confirm, lapin::Confirmation::Ack(None)), "{confirm:?}");
}

async fn place_letter(app: &TestApp, letter: &Letter) {
    let topology = &app.settings.topology;
    let queue = if letter.parked {
        topology.parked(letter.flow)
    } else {
        topology.dlq(letter.flow)
    };
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(format!("msg-{}-{}", letter.flow, letter.ticket).into())
        .with_headers(letter.headers());
    place(
        app,
        &queue,
        &serde_json::to_vec(&letter.body()).unwrap(),
        properties,
    )
    .await;
}

/// Seven dead letters across flows, queues, organizations, classes and failure times. X-1 is
/// injected first (through the bridge) so that its cancellation can succeed when replayed.
fn seed_letters() -> Vec<Letter> {
    let l = |flow, parked, org, ticket, class, http, failed| Letter {
        flow,
        parked,
        org,
        ticket,
        class,
        http,
        failed,
    };
    vec![
        l(
            Flow::Inject,
            true,
            "ACME",
            "A-1",
            Some("rejected"),
            Some(409),
            3 * HOUR,
        ),
        l(
            Flow::Inject,
            true,
            "ACME",
            "A-2",
            Some("retries-exhausted"),
            Some(503),
            HOUR,
        ),
        l(
            Flow::Inject,
            false,
            "ACME",
            "A-3",
            Some("invalid-message"),
            None,
            10 * MIN,
        ),
        l(
            Flow::Inject,
            true,
            "GLOBEX",
            "G-1",
            Some("rejected"),
            Some(409),
            HOUR,
        ),
        l(
            Flow::Inject,
            false,
            "GLOBEX",
            "G-2",
            Some("retries-exhausted"),
            Some(503),
            3 * HOUR,
        ),
        l(Flow::Inject, false, "GLOBEX", "G-3", None, None, 150 * MIN),
        l(
            Flow::Cancel,
            true,
            "ACME",
            "X-1",
            Some("rejected"),
            Some(404),
            HOUR,
        ),
    ]
}

async fn seed(app: &mut TestApp) -> Vec<Letter> {
    app.publish(Flow::Inject, &match_ticket("ACME", "X-1")).await;
    app.event_for("inject.succeeded", "X-1").await;
    let letters = seed_letters();
    for letter in &letters {
        place_letter(app, letter).await;
    }
    letters
}

/// The bridge running `Inject` and `Cancel`, seeded, with its config file.
async fn seeded() -> (TestApp, Config, Vec<Letter>) {
    let mut app = spawn_app_with("", &[Flow::Inject, Flow::Cancel]).await;
    let letters = seed(&mut app).await;
    let config = Config::new(&app, "");
    (app, config, letters)
}

/// Whether the flow's side effect happened exactly once at the simulator.
fn delivered_once(app: &TestApp, flow: Flow, org: &str, ticket: &str) -> bool {
    app.sim.sim.ticket(org, ticket).is_some_and(|t| match flow {
        Flow::Cancel => t.side_effects.deleted == 1,
        _ => t.side_effects.created == 1,
    })
}

/// Replays with `filter`, then checks that exactly `expected` (ticket ids) left the dead
/// letters, that each was delivered once, and that nothing else reached the simulator.
async fn replay_moves_exactly(filter: &[&str], expected: &[&str]) {
    let (app, config, letters) = seeded().await;
    let mut args = vec!["replay"];
    args.extend_from_slice(filter);
    let out = config.ok(&args).await;
    assert!(
        out.contains(&format!("replayed {}, skipped ", expected.len())),
        "{out}"
    );
    assert!(out.contains("failed 0"), "{out}");
    let left: BTreeSet<_> = letters
        .iter()
        .filter(|l| !expected.contains(&l.ticket))
        .map(|l| (l.flow.to_string(), l.ticket.to_owned()))
        .collect();
    assert_eq!(config.remaining().await, left, "after replay {filter:?}");
    for letter in letters.iter().filter(|l| expected.contains(&l.ticket)) {
        eventually(&format!("{} {} delivered", letter.flow, letter.ticket), || {
            delivered_once(&app, letter.flow, letter.org, letter.ticket)
        })
        .await;
    }
    for letter in letters.iter().filter(|l| !expected.contains(&l.ticket)) {
        if letter.flow == Flow::Inject {
            assert!(
                app.sim.sim.ticket(letter.org, letter.ticket).is_none(),
                "{} was not replayed but reached TIXnGO",
                letter.ticket
            );
        }
    }
    assert_eq!(
        app.sim.sim.ticket("ACME", "X-1").unwrap().side_effects.deleted,
        u64::from(expected.contains(&"X-1"))
    );
    // Replayed messages succeeded: none came back as a dead letter.
    assert_eq!(config.remaining().await, left);
}

#[tokio::test]
async fn list_counts_by_flow_organization_class_and_status_and_leaves_every_message() {
    let (app, config, letters) = seeded().await;
    // A message with no headers and no readable body: listed as unknown, never a crash.
    place(
        &app,
        &app.settings.topology.parked(Flow::Control),
        b"\xff\xfe garbage",
        BasicProperties::default(),
    )
    .await;
    let total = letters.len() as u64 + 1;

    let listing = config.json(&["list"]).await;
    assert_eq!(listing["total"], total, "{listing:#}");
    assert_eq!(listing["scanned"], total);
    assert_eq!(listing["dlq"], 3);
    assert_eq!(listing["parked"], total - 3);
    let groups: BTreeSet<(String, String, String, String, u64, u64)> = listing["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["flow"].as_str().unwrap().to_owned(),
                g["organization"].to_string(),
                g["error_class"].as_str().unwrap().to_owned(),
                g["http_status"].to_string(),
                g["dlq"].as_u64().unwrap(),
                g["parked"].as_u64().unwrap(),
            )
        })
        .collect();
    let g = |flow: &str, org: Value, class: &str, http: Value, dlq, parked| {
        (
            flow.to_owned(),
            org.to_string(),
            class.to_owned(),
            http.to_string(),
            dlq,
            parked,
        )
    };
    let expected: BTreeSet<_> = [
        g("inject", "ACME".into(), "rejected", 409.into(), 0, 1),
        g("inject", "ACME".into(), "retries-exhausted", 503.into(), 0, 1),
        g("inject", "ACME".into(), "invalid-message", Value::Null, 1, 0),
        g("inject", "GLOBEX".into(), "rejected", 409.into(), 0, 1),
        g("inject", "GLOBEX".into(), "retries-exhausted", 503.into(), 1, 0),
        // Dead-lettered by the broker: class from x-death, organization from the body.
        g("inject", "GLOBEX".into(), "delivery-limit", Value::Null, 1, 0),
        g("cancel", "ACME".into(), "rejected", 404.into(), 0, 1),
        g("control", Value::Null, "unknown", Value::Null, 0, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(groups, expected);

    // Filters apply to list too; the table names the unknowns.
    let acme = config
        .json(&["list", "--organization", "ACME", "--flow", "inject"])
        .await;
    assert_eq!(acme["total"], 3, "{acme:#}");
    let table = config.ok(&["list"]).await;
    assert!(table.starts_with("FLOW"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("control") && l.contains("unknown")),
        "{table}"
    );
    assert!(
        table.contains(&format!("total {total} (dlq 3, parked {})", total - 3)),
        "{table}"
    );

    // Nothing moved: every queue holds what it held, and nothing reached TIXnGO.
    for flow in [Flow::Inject, Flow::Cancel, Flow::Control] {
        let topology = &app.settings.topology;
        let held = app.queue_len(&topology.dlq(flow)).await + app.queue_len(&topology.parked(flow)).await;
        let seeded = letters.iter().filter(|l| l.flow == flow).count() as u32;
        assert_eq!(held, seeded + u32::from(flow == Flow::Control), "{flow}");
    }
    assert_eq!(app.sim.sim.ticket_ids("GLOBEX").len(), 0);
    // Each read returns the messages to their queue, which the quorum queue may count
    // (RabbitMQ 3.x-4.2 do; see src/dlq/mod.rs): reported, not asserted.
    let after = config.json(&["list"]).await;
    assert_eq!(after["total"], total);
    println!(
        "max x-delivery-count after three reads: {}",
        after["max_delivery_count"]
    );
}

#[tokio::test]
async fn show_prints_failure_headers_and_body_of_the_matching_messages() {
    let (_app, config, _) = seeded().await;
    let shown = config.json(&["show", "--ticket", "A-2"]).await;
    let shown = shown.as_array().unwrap();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    let m = &shown[0];
    assert_eq!(m["queue"], "tixngo.inject.parked");
    assert_eq!(m["source"], "parked");
    assert_eq!(m["organization"], "ACME");
    assert_eq!(m["error_class"], "retries-exhausted");
    assert_eq!(m["http_status"], 503);
    assert_eq!(m["retry_count"], 2);
    assert_eq!(m["error_message"], "retries-exhausted for A-2");
    assert_eq!(m["message_id"], "msg-inject-A-2");
    assert_eq!(m["headers"]["x-original-routing-key"], "ticket.inject");
    let body: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, match_ticket("ACME", "A-2"));

    let text = config
        .ok(&["show", "--organization", "GLOBEX", "--limit", "2"])
        .await;
    assert!(text.ends_with("2 message(s)\n"), "{text}");
    let all = config.ok(&["show", "--organization", "GLOBEX"]).await;
    assert!(all.contains("error: delivery-limit"), "{all}");
    assert!(all.contains("error: rejected (HTTP 409)"), "{all}");
    assert!(
        all.contains("\"ticket_id\": \"G-1\""),
        "the body is printed: {all}"
    );
    assert!(all.ends_with("3 message(s)\n"), "{all}");
}

#[tokio::test]
async fn replay_by_flow_moves_exactly_that_flow() {
    replay_moves_exactly(&["--flow", "cancel"], &["X-1"]).await;
}

#[tokio::test]
async fn replay_by_organization_moves_exactly_that_organization_across_flows_and_queues() {
    replay_moves_exactly(&["--organization", "ACME"], &["A-1", "A-2", "A-3", "X-1"]).await;
}

#[tokio::test]
async fn replay_by_ticket_moves_exactly_those_tickets() {
    replay_moves_exactly(&["--ticket", "A-2", "--ticket", "G-1"], &["A-2", "G-1"]).await;
}

#[tokio::test]
async fn replay_by_error_class_moves_exactly_that_class() {
    replay_moves_exactly(&["--error-class", "retries-exhausted"], &["A-2", "G-2"]).await;
}

#[tokio::test]
async fn replay_by_time_window_moves_exactly_what_failed_in_it() {
    replay_moves_exactly(&["--since", "2h", "--until", "30m"], &["A-2", "G-1", "X-1"]).await;
}

#[tokio::test]
async fn replay_by_rfc3339_time_window_combined_with_a_queue() {
    let since = headers::rfc3339(ago(4 * HOUR));
    let until = headers::rfc3339(ago(2 * HOUR));
    replay_moves_exactly(
        &["--since", &since, "--until", &until, "--queue", "dlq"],
        &["G-2", "G-3"],
    )
    .await;
}

#[tokio::test]
async fn replay_with_limit_moves_exactly_that_many() {
    let (app, config, _) = seeded().await;
    let out = config
        .ok(&["replay", "--organization", "GLOBEX", "--limit", "2"])
        .await;
    assert!(out.contains("replayed 2,"), "{out}");
    assert!(out.contains("stopped at --limit"), "{out}");
    let left = config.json(&["list", "--organization", "GLOBEX"]).await;
    assert_eq!(left["total"], 1, "{left:#}");
    eventually("two GLOBEX tickets delivered", || {
        app.sim.sim.ticket_ids("GLOBEX").len() == 2
            && app
                .sim
                .sim
                .ticket_ids("GLOBEX")
                .iter()
                .all(|id| delivered_once(&app, Flow::Inject, "GLOBEX", id))
    })
    .await;
    assert_eq!(config.json(&["list"]).await["total"], 5);
}

#[tokio::test]
async fn replay_dry_run_lists_the_selection_and_moves_nothing() {
    let (app, config, letters) = seeded().await;
    let out = config
        .ok(&["replay", "--organization", "ACME", "--dry-run"])
        .await;
    assert!(
        out.contains("would replay 4, skipped 3 (not matching); dry run, nothing moved"),
        "{out}"
    );
    for ticket in ["A-1", "A-2", "A-3", "X-1"] {
        assert!(out.lines().any(|l| l.contains(&format!("  {ticket}  "))), "{out}");
    }
    assert_eq!(config.remaining().await.len(), letters.len());
    assert_eq!(
        app.queue_len(&app.settings.topology.work_queue(Flow::Inject))
            .await,
        0
    );
    assert!(app.sim.sim.ticket("ACME", "A-1").is_none());
}

#[tokio::test]
async fn a_delivery_limit_dead_letter_from_the_broker_is_classed_and_replayed() {
    // Delivery limit 1, nothing consuming: the test itself plays the crashing worker.
    let extra = "[topology]\nretry_tiers = [\"300ms\", \"600ms\"]\ndelivery_limit = 1\n";
    let mut app = spawn_app_with(extra, &[]).await;
    app.publish(Flow::Inject, &match_ticket("ACME", "R-1")).await;
    let work = app.settings.topology.work_queue(Flow::Inject);
    let dlq = app.dlq(Flow::Inject);
    for _ in 0..10 {
        if app.queue_len(&dlq).await > 0 {
            break;
        }
        if let Some(got) = app
            .channel
            .basic_get(work.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            got.delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually_async(|| async { app.queue_len(&dlq).await == 1 }).await;
    let config = Config::new(&app, extra);
    let shown = config.json(&["show"]).await;
    let real = &shown.as_array().unwrap()[0];
    assert_eq!(real["error_class"], "delivery-limit", "{real:#}");
    assert_eq!(real["organization"], "ACME", "from the body");
    assert_eq!(real["ticket_id"], "R-1");
    assert!(real["failed_at"].is_string(), "time from x-death: {real:#}");

    // Now a bridge runs, the crafted dead letters join the real one.
    let running = tokio::spawn(tixngo_bridge::app::run(
        app.settings.clone(),
        vec![Part::Flow(Flow::Inject), Part::Flow(Flow::Cancel)],
        tokio_util::sync::CancellationToken::new(),
    ));
    let letters = seed(&mut app).await;
    let out = config.ok(&["replay", "--error-class", "delivery-limit"]).await;
    assert!(
        out.contains(&format!(
            "replayed 2, skipped {} (not matching), failed 0",
            letters.len() - 1
        )),
        "{out}"
    );
    eventually("R-1 and G-3 delivered", || {
        delivered_once(&app, Flow::Inject, "ACME", "R-1")
            && delivered_once(&app, Flow::Inject, "GLOBEX", "G-3")
    })
    .await;
    assert_eq!(
        config.json(&["list", "--error-class", "delivery-limit"]).await["total"],
        0
    );
    assert_eq!(config.json(&["list"]).await["total"], letters.len() - 1);
    running.abort();
}

async fn eventually_async<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn replayed_messages_keep_body_and_properties_reset_retries_and_count_replays() {
    // No bridge consuming: the replayed message waits in the work queue for inspection.
    let app = spawn_app_with("", &[]).await;
    let config = Config::new(&app, "");
    let letter = &seed_letters()[1];
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id("s360-msg-7".into())
        .with_correlation_id("corr-7".into())
        .with_headers(letter.headers());
    let body = serde_json::to_vec(&letter.body()).unwrap();
    place(
        &app,
        &app.settings.topology.parked(Flow::Inject),
        &body,
        properties,
    )
    .await;

    let work = app.settings.topology.work_queue(Flow::Inject);
    for round in 1..=2 {
        config.ok(&["replay"]).await;
        let got = app
            .channel
            .basic_get(work.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("the replayed message is in the work queue");
        let replayed = got.delivery;
        assert_eq!(replayed.data, body);
        let p = &replayed.properties;
        assert_eq!(p.message_id().as_ref().unwrap().as_str(), "s360-msg-7");
        assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "corr-7");
        assert_eq!(p.content_type().as_ref().unwrap().as_str(), "application/json");
        assert_eq!(*p.delivery_mode(), Some(2));
        let h = p.headers().clone().unwrap();
        assert_eq!(headers::get_int(Some(&h), headers::REPLAY_COUNT), Some(round));
        for gone in [
            headers::RETRY_COUNT,
            "x-deferred-count",
            headers::ERROR_CLASS,
            headers::ERROR_MESSAGE,
            headers::HTTP_STATUS,
            headers::LAST_FAILURE_AT,
            "x-death",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept in round {round}: {h:?}");
        }
        for kept in [
            headers::ORGANIZATION,
            headers::TICKET_ID,
            headers::FLOW,
            headers::FIRST_FAILURE_AT,
            headers::ORIGINAL_ROUTING_KEY,
        ] {
            assert!(h.contains_key(kept), "{kept} lost in round {round}");
        }
        // As if it failed again: back to parked with the headers it had, for the next round.
        let mut again = h.clone();
        again.insert(headers::ERROR_CLASS.into(), text("rejected"));
        place(
            &app,
            &app.settings.topology.parked(Flow::Inject),
            &replayed.data,
            replayed.properties.clone().with_headers(again),
        )
        .await;
    }
}

#[tokio::test]
async fn purge_needs_yes_and_deletes_exactly_the_matching_messages() {
    let (_app, config, letters) = seeded().await;
    let refused = config.dlq(&["purge", "--organization", "GLOBEX"]).await;
    assert_eq!(refused.status.code(), Some(64), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(config.remaining().await.len(), letters.len());

    let out = config.ok(&["purge", "--organization", "GLOBEX", "--yes"]).await;
    assert!(
        out.contains(&format!(
            "purged 3, skipped {} (not matching), failed 0",
            letters.len() - 3
        )),
        "{out}"
    );
    let left: BTreeSet<_> = config.remaining().await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(left, ["A-1", "A-2", "A-3", "X-1"].map(String::from).into());
}

/// Issue 7's done-when: after an ACME outage dead-lettered tickets of both organizations, the
/// cause is fixed for ACME and `dlq replay --flow inject --organization ACME` delivers ACME's,
/// `dlq list` shows nothing left for ACME, and GLOBEX's dead letters are untouched.
#[tokio::test]
async fn after_the_fix_replay_by_flow_and_organization_delivers_acme_and_leaves_globex() {
    // The breaker would defer instead of exhausting retries; this is about dead letters.
    let extra = "[tixngo]\nbreaker_threshold = 1000\n";
    let mut app = spawn_app_with(extra, &[Flow::Inject]).await;
    let outage = Faults {
        outage: true,
        ..Faults::default()
    };
    app.sim.sim.set_faults(Some("ACME"), outage.clone());
    app.sim.sim.set_faults(Some("GLOBEX"), outage);
    let acme = ["D-1", "D-2", "D-3"];
    for id in acme {
        app.publish(Flow::Inject, &match_ticket("ACME", id)).await;
    }
    app.publish(Flow::Inject, &match_ticket("GLOBEX", "H-1")).await;
    let mut dead = BTreeSet::new();
    while dead.len() < 4 {
        let event = app.next_event().await;
        if event["type"] == "inject.dead-lettered" {
            assert_eq!(event["error_class"], "retries-exhausted");
            dead.insert(event["ticket_id"].as_str().unwrap().to_owned());
        }
    }
    let config = Config::new(&app, extra);
    let before = config.json(&["list", "--organization", "GLOBEX"]).await;
    assert_eq!(before["total"], 1);

    app.sim.sim.clear_faults(Some("ACME"));
    let out = config
        .ok(&["replay", "--flow", "inject", "--organization", "ACME"])
        .await;
    assert!(
        out.contains("replayed 3, skipped 1 (not matching), failed 0"),
        "{out}"
    );
    let mut succeeded = BTreeSet::new();
    while succeeded.len() < acme.len() {
        let event = app.next_event().await;
        assert_ne!(event["type"], "inject.dead-lettered", "{event}");
        if event["type"] == "inject.succeeded" {
            assert_eq!(event["organization"], "ACME");
            succeeded.insert(event["ticket_id"].as_str().unwrap().to_owned());
        }
    }
    for id in acme {
        assert!(delivered_once(&app, Flow::Inject, "ACME", id));
    }
    let acme_left = config.json(&["list", "--organization", "ACME"]).await;
    assert_eq!(acme_left["total"], 0, "{acme_left:#}");
    assert_eq!(acme_left["groups"], serde_json::json!([]));
    let globex = config.json(&["list", "--organization", "GLOBEX"]).await;
    assert_eq!(globex["groups"], before["groups"], "GLOBEX untouched");
    assert!(
        app.sim
            .sim
            .ticket("GLOBEX", "H-1")
            .is_none_or(|t| t.side_effects.created == 0)
    );
}

/// A replay killed with SIGKILL halfway, then run again: every message ends delivered (once, as
/// far as TIXnGO's state goes) and none is lost in between.
#[tokio::test]
async fn a_replay_killed_halfway_then_rerun_loses_nothing() {
    let app = spawn_app_with("", &[Flow::Inject]).await;
    let config = Config::new(&app, "");
    let ids: Vec<String> = (0..30).map(|i| format!("K-{i}")).collect();
    let parked = app.settings.topology.parked(Flow::Inject);
    for id in &ids {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(table(vec![
                (headers::ERROR_CLASS, text("retries-exhausted")),
                (headers::ORGANIZATION, text("ACME")),
                (headers::TICKET_ID, text(id)),
            ]));
        let body = serde_json::to_vec(&match_ticket("ACME", id)).unwrap();
        place(&app, &parked, &body, properties).await;
    }

    let mut slow = tokio::process::Command::new(BIN)
        .args(["dlq", "replay", "--flow", "inject", "--rate", "2/s", "--config"])
        .arg(&config.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let created = || {
        ids.iter()
            .filter(|id| {
                app.sim
                    .sim
                    .ticket("ACME", id)
                    .is_some_and(|t| t.side_effects.created > 0)
            })
            .count()
    };
    eventually("a few replays delivered", || created() >= 3).await;
    slow.start_kill().unwrap();
    let status = slow.wait().await.unwrap();
    assert!(!status.success(), "killed, not finished: {status:?}");

    // The killed process's unacked messages return to the queue once the broker sees its
    // connection drop: wait until every ticket is delivered or parked again.
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let still_parked = loop {
        let parked: BTreeSet<String> = config.remaining().await.into_iter().map(|(_, t)| t).collect();
        let delivered: BTreeSet<String> = ids
            .iter()
            .filter(|id| app.sim.sim.ticket("ACME", id).is_some())
            .cloned()
            .collect();
        if parked.union(&delivered).cloned().collect::<BTreeSet<_>>() == all {
            break parked;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lost: {:?}",
            all.difference(&parked.union(&delivered).cloned().collect())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !still_parked.is_empty(),
        "the kill came after the whole replay; it was meant to land halfway"
    );

    let out = config.ok(&["replay", "--flow", "inject"]).await;
    assert!(out.contains("failed 0"), "{out}");
    eventually("every ticket delivered exactly once", || {
        ids.iter()
            .all(|id| delivered_once(&app, Flow::Inject, "ACME", id))
    })
    .await;
    assert!(config.remaining().await.is_empty());
    assert_eq!(app.sim.sim.ticket_ids("ACME").len(), ids.len());
}

#[tokio::test]
async fn broker_unavailable_exits_69_without_showing_the_password_and_bad_config_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    let sim = spawn_sim().await;
    let broker_toml = format!(
        "[amqp]\nurl = \"amqp://guest:s3cret-pw@127.0.0.1:1/%2f\"\n[[interfaces]]\norganization = \"ACME\"\nkind = \"tixngo\"\nurl = \"{}\"\nusername = \"a@b.example\"\napi_key = \"k\"\nnotification_emails = \"ops@acme.example\"\n",
        sim.base_url("ACME")
    );
    std::fs::write(&config, broker_toml).unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["dlq", "list", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", describe(&out));
    assert!(!describe(&out).contains("s3cret-pw"), "{}", describe(&out));

    std::fs::write(&config, "[amqp]\nnope = 1\n").unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["dlq", "replay", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
}

/// A ticket id that retitles and clears a terminal if printed raw (the example).
const HOSTILE_TICKET: &str = "T-\u{1b}]2;pwned\u{7}\u{1b}[2J";
/// A body that is not UTF-8 (nor text).
const BINARY_BODY: &[u8] = &[0xff, 0x00, 0x1b, b'[', b'2', b'J', 0x80, b'\n'];

#[tokio::test]
async fn hostile_dead_letters_are_shown_escaped_and_their_bytes_stay_recoverable() {
    let app = spawn_app_with("", &[Flow::Inject]).await;
    let config = Config::new(&app, "");
    let dlq = app.settings.topology.dlq(Flow::Inject);
    let hostile_headers = || {
        table(vec![
            (headers::ERROR_CLASS, text("invalid-message")),
            (headers::ERROR_MESSAGE, text("bad\r\nreason \u{1b}[31mred")),
            (headers::FLOW, text("inject")),
            (headers::ORGANIZATION, text("ACME\r\nEVIL")),
            (headers::TICKET_ID, text(HOSTILE_TICKET)),
            ("x-note\u{1b}[2J", text("v")),
        ])
    };
    let mut body = match_ticket("ACME", HOSTILE_TICKET);
    body["spectator"]["last_name"] = serde_json::json!("\u{202e}evil");
    place(
        &app,
        &dlq,
        &serde_json::to_vec(&body).unwrap(),
        BasicProperties::default().with_headers(hostile_headers()),
    )
    .await;
    place(
        &app,
        &dlq,
        BINARY_BODY,
        BasicProperties::default().with_headers(table(vec![
            (headers::ERROR_CLASS, text("invalid-message")),
            (headers::FLOW, text("inject")),
            (headers::TICKET_ID, text("BIN-1")),
        ])),
    )
    .await;

    for args in [&["replay", "--dry-run"][..], &["show"], &["list"]] {
        // Messages the previous command read go back to the queue as its connection closes:
        // give the broker a moment rather than reading an empty queue.
        let mut output = config.dlq(args).await;
        for _ in 0..20 {
            if String::from_utf8_lossy(&output.stdout).contains("BIN-1")
                || (args[0] == "list" && String::from_utf8_lossy(&output.stdout).contains("total 2"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            output = config.dlq(args).await;
        }
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        let stdout = String::from_utf8(output.stdout.clone()).expect("text output is UTF-8");
        for bad in ['\u{1b}', '\u{7}', '\r', '\u{202e}', '\u{80}'] {
            assert!(!stdout.contains(bad), "{args:?} printed {bad:?} raw: {stdout:?}");
        }
        assert!(
            !stdout.as_bytes().iter().any(|&b| b == 0xff || b == 0x00),
            "{args:?}: {stdout:?}"
        );
        if args[0] != "list" {
            assert!(stdout.contains("T-\\u{1b}]2;pwned\\u{7}\\u{1b}[2J"), "{stdout}");
        }
        if args[0] == "show" {
            assert!(stdout.contains("ACME\\r\\nEVIL"), "{stdout}");
            assert!(stdout.contains("not UTF-8, hex"), "{stdout}");
            assert!(stdout.contains("ff001b5b324a800a"), "{stdout}");
        }
    }
    // JSON keeps the original values, and the exact bytes of a body that is not UTF-8.
    let shown = config.json(&["show"]).await;
    let shown = shown.as_array().unwrap();
    let hostile = shown.iter().find(|m| m["ticket_id"] == HOSTILE_TICKET).unwrap();
    assert_eq!(hostile["organization"], "ACME\r\nEVIL");
    let binary = shown.iter().find(|m| m["ticket_id"] == "BIN-1").unwrap();
    assert_eq!(binary["body"], Value::Null);
    let hex = binary["body_hex"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(bytes, BINARY_BODY);

    // A reader that goes away (`dlq show | head -1`) ends the command quietly.
    for args in [&["show"][..], &["list"], &["show", "--json"]] {
        let mut child = tokio::process::Command::new(BIN)
            .arg("dlq")
            .args(args)
            .arg("--config")
            .arg(&config.path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
