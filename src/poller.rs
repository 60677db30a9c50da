//! Continuous status retrieval: reads each organization's TIXnGO diff endpoint and publishes
//! every change to S-360 as `status.changed`.
//!
//! **Exactly one poller per organization across all replicas**, built on RabbitMQ alone: each
//! organization has a quorum queue `<prefix>.status-sync.<ORG>` with single active consumer,
//! holding one *token* message that carries the pagination key. Every replica consumes every
//! organization's token queue; the broker delivers to one active consumer per queue only. The
//! holder of a token runs one round (up to `max_pages_per_round` diff pages), publishes each
//! change with a publisher confirm, then republishes the token with the new key (confirm) and
//! only then acks the old one. If the holder dies, its connection closes, the broker returns the
//! unacked token and makes another replica's consumer active: failover takes as long as the
//! broker needs to notice the closed connection (at once for a killed process, the heartbeat
//! timeout for a network cut).
//!
//! Delivery is at-least-once: a holder killed after publishing a round's changes but before
//! acking its token leaves the old token behind, and the next holder publishes that round's
//! changes again (same message ids, derived from the organization, key and position, so S-360
//! can drop repeats). Tokens carry a round number; a holder drops a token older than the last
//! one it published, so a token duplicated that way (or by two replicas bootstrapping at once)
//! dies out within a round or two.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::broker::{self, BrokerError, ConfirmedPublisher, Outgoing, PublishError};
use crate::config::Settings;
use crate::context::Context;
use crate::engine::EngineError;
use crate::engine::supervisor::{SessionFailure, supervise};
use crate::messages::OutcomeEvent;
use crate::orgs::Organization;
use crate::tixngo::{CallError, S360Status};

/// The part name (logs, `/readyz`, metrics).
pub const PART: &str = "poller";

/// The token of one organization: where its diff reading stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// The organization.
    pub organization: String,
    /// TIXnGO's pagination key to continue from; `None`: from the beginning.
    pub pagination_key: Option<String>,
    /// Incremented on every republish; older tokens are stale duplicates.
    pub round: u64,
    /// Do not poll before this time (the poll interval, or an error back-off). Kept in the token
    /// so it survives a failover.
    pub not_before: DateTime<Utc>,
    /// Consecutive failed rounds, for the back-off.
    #[serde(default)]
    pub errors: u32,
}

/// Polls every configured organization until shutdown.
pub async fn run(context: Context) -> Result<(), EngineError> {
    supervise(PART, &context, || session(context.clone())).await
}

/// The token queue of `organization`.
pub fn token_queue(settings: &Settings, organization: &str) -> String {
    format!("{}.status-sync.{organization}", settings.topology.queue_prefix)
}

async fn session(context: Context) -> Result<(), SessionFailure> {
    let settings = context.settings.clone();
    // One token at a time per consumer (per-consumer prefetch).
    let broker::Session {
        connection,
        publisher,
        channel,
    } = broker::open_session(&settings, PART, 1)
        .await
        .map_err(SessionFailure::setup)?;
    let setup = async {
        let mut consumers = Vec::new();
        for organization in context.organizations.iter() {
            let queue = token_queue(&settings, organization.code());
            let declared = declare_token_queue(&channel, &queue).await?;
            if declared.message_count() == 0 && declared.consumer_count() == 0 {
                // Nobody holds or waits for a token: this is the first start (or the token was
                // purged). Two replicas doing this at once make two round-0 tokens; the round
                // check drops the second.
                bootstrap(&publisher, &queue, organization.code()).await?;
            }
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("poller-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
                        .as_str()
                        .into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(BrokerError::amqp("basic.consume"))?;
            consumers.push((organization.clone(), consumer));
        }
        Ok::<_, BrokerError>(consumers)
    };
    let consumers = setup.await.map_err(SessionFailure::setup)?;
    context.health.set_ready(PART, true);
    tracing::info!(
        organizations = consumers.len(),
        "status poller waiting for tokens"
    );

    let mut tasks = JoinSet::new();
    for (organization, consumer) in consumers {
        tasks.spawn(hold_tokens(
            context.clone(),
            organization,
            consumer,
            publisher.clone(),
        ));
    }
    // Every task watches shutdown itself and returns after republishing the token it holds, so
    // a graceful stop keeps the round's progress.
    let mut outcome = Ok(());
    let grace = tokio::time::sleep(settings.worker.shutdown_grace);
    tokio::pin!(grace);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = context.shutdown.cancelled(), if !stopping => {
                stopping = true;
                grace.as_mut().reset(tokio::time::Instant::now() + settings.worker.shutdown_grace);
            }
            _ = &mut grace, if stopping => break,
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(error))) => {
                    outcome = Err(error);
                    break;
                }
                Some(Err(join_error)) => {
                    tracing::error!(error = %join_error, "poller task failed");
                }
            },
        }
    }
    // Tokens held unacked go back to their queues when the channel closes.
    tasks.abort_all();
    let _ = channel.close(200, "bye".into()).await;
    let _ = connection.close(200, "bye".into()).await;
    outcome.map_err(SessionFailure::running)
}

async fn declare_token_queue(channel: &Channel, queue: &str) -> Result<lapin::Queue, BrokerError> {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .map_err(BrokerError::amqp("declare status-sync token queue"))
}

async fn bootstrap(
    publisher: &ConfirmedPublisher,
    queue: &str,
    organization: &str,
) -> Result<(), BrokerError> {
    let token = Token {
        organization: organization.to_owned(),
        pagination_key: None,
        round: 0,
        not_before: Utc::now(),
        errors: 0,
    };
    tracing::info!(
        organization,
        "no status-sync token yet; starting from the beginning of the diff"
    );
    publish_token(publisher, queue, &token)
        .await
        .map_err(publish_failed)
}

fn publish_failed(error: PublishError) -> BrokerError {
    BrokerError::Amqp {
        operation: "publish",
        source: lapin::Error::from(lapin::ErrorKind::IOError(Arc::new(std::io::Error::other(
            error.to_string(),
        )))),
    }
}

async fn publish_token(
    publisher: &ConfirmedPublisher,
    queue: &str,
    token: &Token,
) -> Result<(), PublishError> {
    publisher
        .publish(Outgoing {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            // Serializing our own plain struct cannot fail.
            body: serde_json::to_vec(token).unwrap_or_default(),
            properties: BasicProperties::default().with_content_type("application/json".into()),
            mandatory: true,
        })
        .await
}

/// Takes the organization's token whenever this replica is the active consumer, one round per
/// delivery. Returns on a broker failure (the session restarts) or when the consumer ends.
async fn hold_tokens(
    context: Context,
    organization: Arc<Organization>,
    mut consumer: lapin::Consumer,
    publisher: ConfirmedPublisher,
) -> Result<(), BrokerError> {
    let queue = token_queue(&context.settings, organization.code());
    // Round of the last token this consumer published: the token it expects back. An older one
    // is a stale duplicate.
    let mut seen: Option<u64> = None;
    loop {
        let next = tokio::select! {
            _ = context.shutdown.cancelled() => return Ok(()),
            next = consumer.next() => next,
        };
        let Some(delivery) = next else { break };
        let delivery = delivery.map_err(BrokerError::amqp("consume token"))?;
        let token = match serde_json::from_slice::<Token>(&delivery.data) {
            Ok(token) if token.organization == organization.code() => token,
            Ok(_) | Err(_) => {
                tracing::error!(
                    organization = organization.code(),
                    "unreadable status-sync token replaced by a fresh one (the diff is read again from the beginning)"
                );
                Token {
                    organization: organization.code().to_owned(),
                    pagination_key: None,
                    round: seen.unwrap_or(0),
                    not_before: Utc::now(),
                    errors: 0,
                }
            }
        };
        if seen.is_some_and(|last| token.round < last) {
            tracing::debug!(
                organization = organization.code(),
                round = token.round,
                "stale token dropped"
            );
            ack(&delivery).await?;
            continue;
        }
        let Some(next) = round(&context, &organization, &publisher, token).await else {
            return Ok(()); // Shutdown: the token goes back unacked.
        };
        seen = Some(next.round);
        publish_token(&publisher, &queue, &next)
            .await
            .map_err(publish_failed)?;
        ack(&delivery).await?;
    }
    Err(BrokerError::Amqp {
        operation: "consume token",
        source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
            lapin::ConnectionState::Closed,
        )),
    })
}

async fn ack(delivery: &Delivery) -> Result<(), BrokerError> {
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .map(|_| ())
        .map_err(BrokerError::amqp("ack token"))
}

/// One round: wait for `not_before`, read up to `max_pages_per_round` pages, publish every
/// change (confirmed). Returns the token to republish, or `None` on shutdown.
async fn round(
    context: &Context,
    organization: &Organization,
    publisher: &ConfirmedPublisher,
    token: Token,
) -> Option<Token> {
    let sync = &context.settings.status_sync;
    let wait = (token.not_before - Utc::now()).to_std().unwrap_or_default();
    tokio::select! {
        _ = context.shutdown.cancelled() => return None,
        _ = tokio::time::sleep(wait) => {}
    }
    let code = organization.code();
    let mut key = token.pagination_key.clone();
    let mut published = 0u64;
    let mut caught_up = false;
    let mut failure = None;
    for _ in 0..sync.max_pages_per_round {
        if context.shutdown.is_cancelled() {
            // Keep what this round published: the token goes back with the key reached.
            break;
        }
        let started = std::time::Instant::now();
        let page = tokio::select! {
            _ = context.shutdown.cancelled() => break,
            page = organization.client.diff(key.as_deref(), sync.page_size) => page,
        };
        let status = page
            .as_ref()
            .map_or_else(CallError::metric_label, |_| "ok".to_owned());
        context
            .metrics
            .tixngo_call(code, "diff", started.elapsed(), &status);
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        for (index, change) in page.changes.iter().enumerate() {
            let event = event_outgoing(context, &status_changed(code, change), key.as_deref(), index);
            let unrouted = context.settings.topology.unrouted_events();
            let delivered = publisher.publish_or_keep(event, &unrouted).await;
            if let Ok(crate::broker::publisher::Delivered::Kept) = delivered {
                context.metrics.event_unrouted("status.changed");
                tracing::warn!(
                    organization = code,
                    kept_in = %unrouted,
                    "no queue is bound for status.changed on the events exchange (is S-360's \
                     consumer deployed?); kept in the unrouted-events queue"
                );
            }
            if let Err(error) = delivered {
                // The token is not advanced: the next holder publishes this page again.
                tracing::warn!(organization = code, %error, "status change not confirmed; the round stops here");
                return Some(Token {
                    pagination_key: key,
                    round: token.round + 1,
                    not_before: Utc::now() + backoff(sync, token.errors + 1),
                    errors: token.errors + 1,
                    ..token
                });
            }
            published += 1;
        }
        key = Some(page.next_page_key);
        if !page.has_more {
            caught_up = true;
            break;
        }
    }
    if published > 0 {
        context.metrics.status_changes(code, published);
        tracing::info!(organization = code, published, "status changes published");
    }
    let (not_before, errors) = match failure {
        Some(error) => {
            let errors = token.errors.saturating_add(1);
            let delay = backoff(sync, errors);
            tracing::warn!(
                organization = code,
                error = %crate::telemetry::chain(&error),
                retry_in = %crate::telemetry::human(delay.to_std().unwrap_or_default()),
                "TIXnGO diff failed"
            );
            (Utc::now() + delay, errors)
        }
        None if caught_up => (Utc::now() + to_chrono(sync.interval), 0),
        // More pages wait: go on at once (after the token round trip).
        None => (Utc::now(), 0),
    };
    Some(Token {
        organization: token.organization,
        pagination_key: key,
        round: token.round + 1,
        not_before,
        errors,
    })
}

fn backoff(sync: &crate::config::StatusSyncSettings, errors: u32) -> chrono::TimeDelta {
    let factor = 2u32.saturating_pow(errors.saturating_sub(1).min(16));
    let delay = sync
        .error_min_delay
        .saturating_mul(factor)
        .min(sync.error_max_delay);
    to_chrono(delay)
}

fn to_chrono(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

fn status_changed(organization: &str, change: &crate::tixngo::client::DiffChange) -> OutcomeEvent {
    OutcomeEvent {
        kind: "status.changed".to_owned(),
        organization: Some(organization.to_owned()),
        ticket_id: Some(change.ticket_id.clone()),
        tixngo_status: Some(change.status.clone()),
        previous_tixngo_status: change.previous_status.clone(),
        s360_status: Some(S360Status::from_tixngo(&change.status).as_str().to_owned()),
        error_class: None,
        error_message: None,
        message_id: None,
        at: change
            .changed_at
            .clone()
            .unwrap_or_else(|| crate::text::rfc3339(Utc::now())),
    }
}

/// The event as a message. Its id is derived from where the change sits in the diff, so a
/// round published twice (after a crash) repeats the same ids.
fn event_outgoing(context: &Context, event: &OutcomeEvent, key: Option<&str>, index: usize) -> Outgoing {
    let organization = event.organization.as_deref().unwrap_or_default();
    let name = format!("{organization}\n{}\n{index}", key.unwrap_or(""));
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes());
    Outgoing {
        exchange: context.settings.topology.events_exchange.clone(),
        routing_key: event.kind.clone(),
        // Serializing our own plain struct cannot fail.
        body: serde_json::to_vec(event).unwrap_or_default(),
        properties: BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(id.to_string().into())
            .with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap_or_default()),
        mandatory: false,
    }
}
