//! The dead-letter notifier: reads every flow's `<prefix>.<flow>.dlq` in rounds, groups dead
//! letters by organization, flow and error class, and sends one digest e-mail per group per
//! window to the organization's `notification_emails` (the global `fallback_emails` for
//! messages of no known organization, of one without addresses, or of one none of whose
//! addresses the SMTP server accepts). Only once the SMTP server has accepted the e-mail for at
//! least one recipient is each message moved to `<prefix>.<flow>.parked` (confirm, then ack).
//!
//! Visibility: the notifier holds a dead letter only while a round reads it and, when its group
//! is due, while the e-mail is sent and the message parked (seconds). A group that is not due is
//! put back in the DLQ at once (nack, requeue) and remembered by its key and due time only, so
//! `dlq list`, `show` and `replay` see every dead letter whatever the notifier is doing (before,
//! it held them unacked for the whole window, invisible to `dlq list`). Each round's basic.get
//! raises a waiting message's quorum `x-delivery-count`: harmless on RabbitMQ 3.x, whose DLQs
//! have no delivery limit (see `src/dlq/mod.rs` for 4.x).
//!
//! Pacing: rounds come twice per `min(window, 10 s)`; a group's first e-mail goes out between
//! half and all of that after its first dead letter was seen, so a storm is gathered rather than
//! mailed one by one; after that a group gets at most one e-mail per window. Each recipient gets
//! its own SMTP transaction, so a refused one (`550`) keeps the digest from nobody else. While
//! SMTP is down (or answers `4xx` to everyone) the messages stay in the DLQ and the send is
//! retried with back-off; a permanent refusal of every address is not retried: the messages are
//! parked without an e-mail, with an ERROR line. If the notifier dies, the broker returns what
//! it held to the DLQ and the next notifier mails them again: e-mails are at-least-once, dead
//! letters are never lost. Several notifiers are safe (each message is held by one of them),
//! but each sends its own digests: with R replicas a group gets up to R e-mails per window. Run
//! the notifier in one deployment (`run --flows notifier`, one replica) to get exactly one.

pub mod digest;
pub mod smtp;

use std::collections::HashMap;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::AMQPValue;
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
/// Shortest time between two rounds of reading the DLQs.
const MIN_TICK: Duration = Duration::from_millis(100);

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

/// When a group may be mailed next.
struct Schedule {
    /// Earliest time of its next e-mail.
    due: Instant,
    /// Failed sends in a row, for the back-off.
    failures: u32,
}

/// Dead letters read in one round, by group; held (unacked) only until the round ends.
type Round = HashMap<GroupKey, Vec<(Delivery, Line)>>;

async fn session(context: Context, mailer: std::sync::Arc<Mailer>) -> Result<(), SessionFailure> {
    let settings = context.settings.clone();
    let broker::Session {
        connection,
        publisher,
        channel,
    } = broker::open_session(&settings, PART, MAX_HELD)
        .await
        .map_err(SessionFailure::setup)?;
    context.health.set_ready(PART, true);
    tracing::info!("notifier watching the dead-letter queues");

    let notifier = &settings.notifier;
    let gather = notifier.window.min(MAX_GATHER);
    // Rounds come twice per gathering time: a group is mailed between `gather / 2` and
    // `gather` after its first dead letter was seen.
    let tick = (gather / 2).max(MIN_TICK);
    let mut schedules: HashMap<GroupKey, Schedule> = HashMap::new();
    let mut last_sent: HashMap<GroupKey, Instant> = HashMap::new();
    let outcome = loop {
        if let Err(error) = round(
            &context,
            &mailer,
            &publisher,
            &channel,
            &mut schedules,
            &mut last_sent,
            tick,
        )
        .await
        {
            break Err(error);
        }
        tokio::select! {
            _ = context.shutdown.cancelled() => break Ok(()),
            _ = tokio::time::sleep(tick) => {}
        }
    };
    let _ = channel.close(200, "bye".into()).await;
    let _ = connection.close(200, "bye".into()).await;
    outcome.map_err(SessionFailure::running)
}

/// One round: read every DLQ, put back at once what is not due, mail and park what is.
///
/// The notifier never holds a dead letter across its window: between rounds every dead letter
/// is in its DLQ (or already parked), so `dlq list`, `show` and `replay` always see it. A group
/// waiting for its next window is remembered here by its key and due time only.
async fn round(
    context: &Context,
    mailer: &Mailer,
    publisher: &ConfirmedPublisher,
    channel: &lapin::Channel,
    schedules: &mut HashMap<GroupKey, Schedule>,
    last_sent: &mut HashMap<GroupKey, Instant>,
    tick: Duration,
) -> Result<(), BrokerError> {
    let settings = &context.settings;
    let notifier = &settings.notifier;
    let mut read: Round = HashMap::new();
    let mut count = 0usize;
    for &flow in Flow::ALL {
        let queue = settings.topology.dlq(flow);
        while count < usize::from(MAX_HELD) {
            let got = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(BrokerError::amqp("basic.get dead letter"))?;
            let Some(got) = got else { break };
            let delivery = got.delivery;
            let (key, line) = classify(context, flow, &delivery);
            read.entry(key).or_default().push((delivery, line));
            count += 1;
        }
    }
    // Groups no longer in the DLQs (replayed or purged meanwhile) are forgotten.
    schedules.retain(|key, _| read.contains_key(key));
    let now = Instant::now();
    let mut due = Vec::new();
    for (key, held) in read {
        let schedule = schedules.entry(key.clone()).or_insert_with(|| Schedule {
            due: last_sent
                .get(&key)
                .map_or(now + tick, |sent| (*sent + notifier.window).max(now + tick)),
            failures: 0,
        });
        if schedule.due <= now {
            due.push((key, held));
        } else {
            // Back where `dlq list` and `dlq replay` see it, at once.
            put_back(held).await?;
        }
    }
    for (key, held) in due {
        match send(context, mailer, publisher, &key, held).await? {
            Sent::Yes => {
                schedules.remove(&key);
                last_sent.insert(key, Instant::now());
            }
            Sent::Later => {
                if let Some(schedule) = schedules.get_mut(&key) {
                    schedule.failures += 1;
                    schedule.due = Instant::now() + backoff(notifier, schedule.failures);
                }
            }
        }
    }
    Ok(())
}

/// Returns read dead letters to their DLQ.
async fn put_back(held: Vec<(Delivery, Line)>) -> Result<(), BrokerError> {
    for (delivery, _) in held {
        delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .map_err(BrokerError::amqp("return dead letter"))?;
    }
    Ok(())
}

/// Whether a group's digest went out.
enum Sent {
    /// Mailed (or, for good, not mailable) and parked.
    Yes,
    /// Not accepted for a reason that may pass: the messages are back in the DLQ.
    Later,
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

/// Mails one group (to the organization's addresses, else to `fallback_emails`), then parks
/// its messages. Recipients the server refuses are reported; when nobody of the organization
/// can be reached the digest goes to `fallback_emails`; a permanent refusal of everyone is
/// logged and the messages parked anyway (visible to `dlq list`, replayable): retrying a `5xx`
/// like an outage would mail nobody, for ever. Only when nobody got it for a reason that may
/// pass (server down, `4xx`) do the messages go back to the DLQ for a later try.
async fn send(
    context: &Context,
    mailer: &Mailer,
    publisher: &ConfirmedPublisher,
    key: &GroupKey,
    mut held: Vec<(Delivery, Line)>,
) -> Result<Sent, BrokerError> {
    let settings = &context.settings;
    let notifier = &settings.notifier;
    let organization = key.organization.as_deref().unwrap_or("unknown");
    let own = key
        .organization
        .as_deref()
        .and_then(|code| context.organizations.get(code))
        .map(|org| org.interface.notification_emails.clone())
        .unwrap_or_default();
    let parked = settings.topology.parked(key.flow);
    let lines: Vec<Line> = held
        .iter()
        .take(notifier.max_listed)
        .map(|(_, line)| line.clone())
        .collect();
    let mut lists: Vec<(&str, Vec<String>)> = Vec::new();
    if !own.is_empty() {
        lists.push(("notification_emails", own));
    }
    if !notifier.fallback_emails.is_empty() {
        lists.push(("notifier.fallback_emails", notifier.fallback_emails.clone()));
    }
    let mut delivered = false;
    let mut retry = false;
    for (setting, to) in lists {
        let email: Email = match digest::render(key, held.len(), &lines, &parked, to) {
            Ok(email) => email,
            Err(error) => {
                // Our own templates: a failure here is a bug, not bad input. Keep the messages.
                tracing::error!(%error, "cannot render the digest e-mail");
                context.metrics.email("failed");
                put_back(held).await?;
                return Ok(Sent::Later);
            }
        };
        let report = match mailer.send(&email).await {
            Ok(report) => report,
            Err(error) => {
                tracing::error!(organization, setting, error = %crate::telemetry::chain(&error), "cannot build the digest e-mail");
                context.metrics.email("failed");
                continue;
            }
        };
        for refused in &report.refused {
            context
                .metrics
                .email_recipient_refused(organization, refused.permanent);
            // The address is configuration, but it is also a person's: name its place in the
            // configuration above debug level, the address itself only at debug.
            tracing::warn!(
                organization,
                flow = %key.flow,
                recipient = %format!("{setting}[{}]", refused.index),
                code = refused.code.as_deref().unwrap_or("none"),
                permanent = refused.permanent,
                "SMTP server refused a digest recipient"
            );
            tracing::debug!(
                recipient = %email.to.get(refused.index).map(String::as_str).unwrap_or("?"),
                error = %crate::telemetry::chain(&refused.error),
                "refused recipient"
            );
        }
        if report.accepted > 0 {
            delivered = true;
            context.metrics.email("sent");
            tracing::info!(
                organization,
                flow = %key.flow,
                class = %key.class,
                count = held.len(),
                recipients = report.accepted,
                to = setting,
                "digest e-mail sent"
            );
            break;
        }
        context.metrics.email("failed");
        if report.retry_later() {
            // An outage or a 4xx: the fallback is most likely on the same server. Try again later.
            retry = true;
            break;
        }
        tracing::warn!(
            organization,
            flow = %key.flow,
            setting,
            "the SMTP server refused every recipient for good; trying the next address list"
        );
    }
    if !delivered && retry {
        tracing::warn!(
            organization,
            flow = %key.flow,
            "digest e-mail not accepted; the dead letters stay in the DLQ and the send is retried"
        );
        put_back(held).await?;
        return Ok(Sent::Later);
    }
    if !delivered {
        tracing::error!(
            organization,
            flow = %key.flow,
            "nobody could be e-mailed about these dead letters (no address, or every recipient \
             refused for good): they are parked without an e-mail; `dlq list` shows them"
        );
    }
    let now = headers::rfc3339(chrono::Utc::now());
    while let Some((delivery, _)) = held.pop() {
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        if delivered {
            table.insert(NOTIFIED_AT.into(), AMQPValue::LongString(now.as_str().into()));
        }
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
    Ok(Sent::Yes)
}
