//! The dead-letter notifier: drains every flow's `<prefix>.<flow>.dlq`, groups dead letters by
//! organization, flow and error class, and sends one digest e-mail per group per window to the
//! organization's `notification_emails` (the global `fallback_emails` for messages of no known
//! organization, or of one without addresses). Only once the SMTP server has accepted the
//! e-mail is each message moved to `<prefix>.<flow>.parked` (confirm, then ack).
//!
//! Pacing: a group's first e-mail goes out `min(window, 10 s)` after its first dead letter, so a
//! storm is gathered rather than mailed one by one; after that a group gets at most one e-mail
//! per window. While SMTP is down the messages stay unacked (so in the DLQ) and the send is
//! retried with back-off. If the notifier dies, the broker returns what it held to the DLQ and
//! the next notifier mails them again: e-mails are at-least-once, dead letters are never lost.
//! Several notifiers are safe (each message is held by one of them), but each sends its own
//! digests: with R replicas a group gets up to R e-mails per window. Run the notifier in one
//! deployment (`run --flows notifier`, one replica) to get exactly one.

pub mod digest;
pub mod smtp;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio::time::Instant;

use crate::broker::headers;
use crate::broker::{self, BrokerError, ConfirmedPublisher, Outgoing};
use crate::context::Context;
use crate::engine::EngineError;
use crate::engine::settle::carried_properties;
use crate::engine::supervisor::{SessionFailure, supervise};
use crate::flow::Flow;
use digest::{GroupKey, Line};
use smtp::{Email, Mailer};

/// The part name (logs, `/readyz`, metrics).
pub const PART: &str = "notifier";
/// Header added when a message is parked after its e-mail went out.
pub const NOTIFIED_AT: &str = "x-notified-at";
/// Dead letters held (unacked) at once while their digests wait; more stay in the DLQ for the
/// next window.
const MAX_HELD: u16 = 10_000;
/// Longest wait before a group's first e-mail.
const MAX_GATHER: Duration = Duration::from_secs(10);

/// Runs the notifier until shutdown.
pub async fn run(context: Context) -> Result<(), EngineError> {
    let Some(smtp) = context.settings.notifier.smtp.clone() else {
        tracing::warn!("notifier asked for but no [notifier.smtp] configured; not running");
        return Ok(());
    };
    let mailer = match Mailer::new(&smtp) {
        Ok(mailer) => std::sync::Arc::new(mailer),
        Err(error) => {
            tracing::error!(error = %crate::telemetry::chain(&error), "notifier cannot start");
            return Ok(());
        }
    };
    supervise(PART, &context, || session(context.clone(), mailer.clone())).await
}

/// Dead letters of one group waiting for their e-mail.
struct Group {
    /// The messages, unacked.
    held: Vec<(Delivery, Line)>,
    /// When to try sending.
    due: Instant,
    /// Failed sends in a row, for the back-off.
    failures: u32,
}

async fn session(context: Context, mailer: std::sync::Arc<Mailer>) -> Result<(), SessionFailure> {
    let settings = context.settings.clone();
    let broker::Session {
        connection,
        publisher,
        channel,
    } = broker::open_session(&settings, PART, MAX_HELD)
        .await
        .map_err(SessionFailure::setup)?;
    let setup = async {
        let mut consumers = Vec::new();
        for &flow in Flow::ALL {
            let queue = settings.topology.dlq(flow);
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("notifier-{flow}-{}", std::process::id()).as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(BrokerError::amqp("basic.consume"))?;
            consumers.push(consumer.map(move |delivery| (flow, delivery)));
        }
        Ok::<_, BrokerError>(futures::stream::select_all(consumers))
    };
    let mut deliveries = setup.await.map_err(SessionFailure::setup)?;
    context.health.set_ready(PART, true);
    tracing::info!("notifier draining the dead-letter queues");

    let mut groups: HashMap<GroupKey, Group> = HashMap::new();
    let mut last_sent: HashMap<GroupKey, Instant> = HashMap::new();
    let notifier = &settings.notifier;
    let gather = notifier.window.min(MAX_GATHER);
    let outcome = 'session: loop {
        let next_due = groups.values().map(|g| g.due).min();
        tokio::select! {
            biased;
            _ = context.shutdown.cancelled() => break Ok(()),
            _ = sleep_until(next_due), if next_due.is_some() => {
                let now = Instant::now();
                let due: Vec<GroupKey> = groups.iter().filter(|(_, g)| g.due <= now).map(|(k, _)| k.clone()).collect();
                for key in due {
                    let Some(mut group) = groups.remove(&key) else { continue };
                    match send(&context, &mailer, &publisher, &key, &mut group).await {
                        Ok(true) => {
                            last_sent.insert(key, Instant::now());
                        }
                        Ok(false) => {
                            group.failures += 1;
                            group.due = Instant::now() + backoff(notifier, group.failures);
                            groups.insert(key, group);
                        }
                        // The rest stays unacked and returns to the DLQ with the session.
                        Err(error) => break 'session Err(error),
                    }
                }
            }
            next = deliveries.next() => {
                let Some((flow, delivery)) = next else {
                    break Err(BrokerError::Amqp {
                        operation: "consume dead letters",
                        source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed)),
                    });
                };
                let delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(error) => break Err(BrokerError::Amqp { operation: "consume dead letters", source: error }),
                };
                let (key, line) = classify(&context, flow, &delivery);
                let now = Instant::now();
                let group = groups.entry(key.clone()).or_insert_with(|| Group {
                    held: Vec::new(),
                    due: last_sent
                        .get(&key)
                        .map_or(now + gather, |sent| (*sent + notifier.window).max(now + gather)),
                    failures: 0,
                });
                group.held.push((delivery, line));
            }
        }
    };
    // Whatever is still held goes back to the DLQ when the channel closes.
    drop(groups);
    let _ = channel.close(200, "bye".into()).await;
    let _ = connection.close(200, "bye".into()).await;
    outcome.map_err(SessionFailure::running)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn backoff(notifier: &crate::config::NotifierSettings, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    notifier
        .retry_min_delay
        .saturating_mul(factor)
        .min(notifier.retry_max_delay)
}

/// Which group a dead letter belongs to, and its digest line. Header values are untrusted: the
/// organization must be a configured one, the class a plain token.
fn classify(context: &Context, flow: Flow, delivery: &Delivery) -> (GroupKey, Line) {
    let table = delivery.properties.headers().as_ref();
    let organization = headers::get_str(table, headers::ORGANIZATION)
        .filter(|code| context.organizations.get(code).is_some());
    // The one classifier `dlq` uses too, so the e-mail's `dlq replay --error-class` selects
    // exactly the messages it lists.
    let (class, _) = crate::broker::death::failure_of(table);
    let line = Line::new(
        headers::get_str(table, headers::TICKET_ID).as_deref(),
        headers::get_str(table, headers::ERROR_MESSAGE).as_deref(),
        headers::get_int(table, headers::HTTP_STATUS),
    );
    (
        GroupKey {
            organization,
            flow,
            class,
        },
        line,
    )
}

/// Mails one group, then parks its messages. `Ok(false)`: SMTP refused, retry later.
async fn send(
    context: &Context,
    mailer: &Mailer,
    publisher: &ConfirmedPublisher,
    key: &GroupKey,
    group: &mut Group,
) -> Result<bool, BrokerError> {
    let settings = &context.settings;
    let notifier = &settings.notifier;
    let to = key
        .organization
        .as_deref()
        .and_then(|code| context.organizations.get(code))
        .map(|org| org.interface.notification_emails.clone())
        .filter(|emails| !emails.is_empty())
        .unwrap_or_else(|| notifier.fallback_emails.clone());
    let parked = settings.topology.parked(key.flow);
    let lines: Vec<Line> = group
        .held
        .iter()
        .take(notifier.max_listed)
        .map(|(_, line)| line.clone())
        .collect();
    let organization = key.organization.as_deref().unwrap_or("unknown");
    if to.is_empty() {
        tracing::error!(
            organization,
            flow = %key.flow,
            "no notification_emails and no notifier.fallback_emails: dead letters parked without an e-mail"
        );
    } else {
        let email: Email = match digest::render(key, group.held.len(), &lines, &parked, to) {
            Ok(email) => email,
            Err(error) => {
                // Our own templates: a failure here is a bug, not bad input. Keep the messages.
                tracing::error!(%error, "cannot render the digest e-mail");
                context.metrics.email("failed");
                return Ok(false);
            }
        };
        if let Err(error) = mailer.send(&email).await {
            context.metrics.email("failed");
            tracing::warn!(
                organization,
                flow = %key.flow,
                error = %crate::telemetry::chain(&error),
                "digest e-mail not accepted; the dead letters stay in the DLQ and the send is retried"
            );
            return Ok(false);
        }
        context.metrics.email("sent");
        tracing::info!(
            organization,
            flow = %key.flow,
            class = %key.class,
            count = group.held.len(),
            "digest e-mail sent"
        );
    }
    let now = headers::rfc3339(chrono::Utc::now());
    while let Some((delivery, _)) = group.held.pop() {
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        table.insert(NOTIFIED_AT.into(), AMQPValue::LongString(now.as_str().into()));
        let outgoing = Outgoing {
            exchange: settings.topology.dead_letter_exchange.clone(),
            routing_key: parked.clone(),
            body: delivery.data.clone(),
            properties: carried_properties(&delivery.properties).with_headers(table),
            mandatory: true,
        };
        if let Err(error) = publisher.publish(outgoing).await {
            // Not parked: leave it unacked; it returns to the DLQ when the session restarts and
            // is mailed again. Keep the rest for the same reason.
            drop(delivery);
            return Err(BrokerError::Amqp {
                operation: "park dead letter",
                source: lapin::Error::from(lapin::ErrorKind::IOError(std::sync::Arc::new(
                    std::io::Error::other(error.to_string()),
                ))),
            });
        }
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(BrokerError::amqp("ack dead letter"))?;
    }
    Ok(true)
}
