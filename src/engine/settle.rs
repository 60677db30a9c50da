//! Settling a message: publish what replaces it (outcome event, delayed retry or dead letter),
//! wait for the broker's confirm, and only then ack. If any publish fails, the original is
//! nacked back to its queue: never dropped.

use std::sync::Arc;

use chrono::Utc;
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use tracing::Instrument;

use crate::broker::headers::{self, Failure, FailureContext};
use crate::broker::publisher::Delivered;
use crate::broker::{ConfirmedPublisher, Outgoing, PublishError};
use crate::config::Settings;
use crate::failure_class::FailureClass;
use crate::flow::Flow;
use crate::messages::OutcomeEvent;
use crate::metrics::{Metrics, Outcome};
use crate::tixngo::{ItemOk, S360Status};

pub use crate::broker::headers::{DEFERRED_COUNT, carried_properties};

/// The message cannot be read or validated.
pub const INVALID_MESSAGE: FailureClass = FailureClass::InvalidMessage;
/// TIXnGO refused it for good.
pub const REJECTED: FailureClass = FailureClass::Rejected;
/// Transient failures outlasted every retry tier.
pub const RETRIES_EXHAUSTED: FailureClass = FailureClass::RetriesExhausted;

/// How long a message whose republish failed is held before it is nacked back to its queue.
const REQUEUE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// What is known of a message's identity.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Organization code.
    pub organization: Option<String>,
    /// Ticket id.
    pub ticket_id: Option<String>,
}

/// Settles the messages of one flow on one connection.
pub struct Settler {
    /// The flow.
    flow: Flow,
    /// Names and tiers.
    settings: Arc<Settings>,
    /// Confirm-mode channel.
    publisher: ConfirmedPublisher,
    /// The flow's work queue (for failure headers).
    queue: String,
    /// Counts every settlement by outcome.
    metrics: Arc<Metrics>,
    /// Serializes re-declaring the topology after an unroutable republish, so a burst of
    /// messages hitting one deleted queue declares it once, not once each.
    redeclare: tokio::sync::Mutex<()>,
}

impl Settler {
    /// A settler publishing on `publisher`.
    pub fn new(
        flow: Flow,
        settings: Arc<Settings>,
        publisher: ConfirmedPublisher,
        metrics: Arc<Metrics>,
    ) -> Self {
        let queue = settings.topology.work_queue(flow);
        Self {
            flow,
            settings,
            publisher,
            queue,
            metrics,
            redeclare: tokio::sync::Mutex::new(()),
        }
    }

    /// The span every log line about one message is recorded in.
    fn span(&self, delivery: &Delivery, known: &Known) -> tracing::Span {
        tracing::info_span!(
            "message",
            flow = %self.flow,
            organization = known.organization.as_deref().unwrap_or("?"),
            ticket_id = %known.ticket_id.as_deref().map(|t| headers::truncate(t, 128)).unwrap_or_else(|| "?".into()),
            message_id = %delivery.properties.message_id().as_ref().map(|m| headers::truncate(m.as_str(), 128)).unwrap_or_else(|| "?".into()),
        )
    }

    /// Publishes `events` (confirmed), then acks.
    pub async fn succeed(&self, delivery: &Delivery, known: &Known, events: Vec<Outgoing>) {
        self.succeed_inner(delivery, known, events)
            .instrument(self.span(delivery, known))
            .await
    }

    /// Dead-letters `delivery` with its failure headers, tells S-360, then acks.
    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        known: &Known,
        class: FailureClass,
        message: &str,
        http_status: Option<u16>,
    ) {
        self.dead_letter_inner(delivery, known, class, message, http_status)
            .instrument(self.span(delivery, known))
            .await
    }

    /// Moves `delivery` to its next delayed-retry tier, or dead-letters it when none is left.
    pub async fn retry_later(
        &self,
        delivery: &Delivery,
        known: &Known,
        message: &str,
        http_status: Option<u16>,
    ) {
        self.retry_later_inner(delivery, known, message, http_status)
            .instrument(self.span(delivery, known))
            .await
    }

    /// Parks `delivery` in the first delay tier without counting a retry (its organization's
    /// breaker is open).
    pub async fn defer(&self, delivery: &Delivery, known: &Known) {
        self.defer_inner(delivery, known)
            .instrument(self.span(delivery, known))
            .await
    }

    /// Publishes one message (confirmed). An event for S-360 that no queue is bound for is kept
    /// in the `…events.unrouted` queue (counted, logged without its body) instead of dropped.
    async fn publish(&self, outgoing: Outgoing) -> Result<(), PublishError> {
        let topology = &self.settings.topology;
        if outgoing.exchange != topology.events_exchange {
            return self.publish_routed(outgoing).await;
        }
        let routing_key = outgoing.routing_key.clone();
        if self
            .publisher
            .publish_or_keep(outgoing, &topology.unrouted_events())
            .await?
            == Delivered::Kept
        {
            self.metrics.event_unrouted(&routing_key);
            tracing::warn!(
                flow = %self.flow,
                exchange = %topology.events_exchange,
                routing_key = %routing_key,
                kept_in = %topology.unrouted_events(),
                "no queue is bound for this event on the events exchange (is S-360's consumer \
                 deployed?); kept in the unrouted-events queue"
            );
        }
        Ok(())
    }

    /// Publishes a mandatory message (dead letter, retry copy). When the broker returns it
    /// unroutable, the topology drifted (a DLQ or retry queue deleted while the bridge runs):
    /// declare it again, once per drift, and publish once more, so the message is settled
    /// rather than nacked into a tight redelivery loop.
    async fn publish_routed(&self, outgoing: Outgoing) -> Result<(), PublishError> {
        match self.publisher.publish(outgoing.clone()).await {
            Err(PublishError::Unroutable {
                exchange,
                routing_key,
            }) => {
                let _one_at_a_time = self.redeclare.lock().await;
                tracing::warn!(
                    flow = %self.flow,
                    exchange = %exchange,
                    routing_key = %routing_key,
                    "a republish was unroutable (a queue was deleted?); declaring the topology again"
                );
                let topology = crate::broker::Topology::new(&self.settings.topology);
                if let Err(error) = topology.declare_checked(self.publisher.channel()).await {
                    tracing::error!(flow = %self.flow, error = %crate::telemetry::chain(&error), "declaring the topology again failed");
                }
                self.publisher.publish(outgoing).await
            }
            other => other,
        }
    }

    fn count(&self, known: &Known, outcome: Outcome) {
        self.metrics
            .message(self.flow.as_str(), known.organization.as_deref(), outcome);
    }

    /// The flow.
    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// Publishes `events` (confirmed), then acks.
    async fn succeed_inner(&self, delivery: &Delivery, known: &Known, events: Vec<Outgoing>) {
        for event in events {
            if let Err(error) = self.publish(event).await {
                self.requeue(delivery, known, &error).await;
                return;
            }
        }
        self.count(known, Outcome::Succeeded);
        self.ack(delivery).await;
        tracing::debug!(flow = %self.flow, "message settled: succeeded");
    }

    /// Dead-letters `delivery` with its failure headers, tells S-360, then acks.
    async fn dead_letter_inner(
        &self,
        delivery: &Delivery,
        known: &Known,
        class: FailureClass,
        message: &str,
        http_status: Option<u16>,
    ) {
        let topology = &self.settings.topology;
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        self.record(&mut table, known, class, message, http_status);
        let dead_letter = Outgoing {
            exchange: topology.dead_letter_exchange.clone(),
            routing_key: topology.dlq(self.flow),
            body: delivery.data.clone(),
            properties: carried_properties(&delivery.properties).with_headers(table),
            mandatory: true,
        };
        let event = self.event(
            delivery,
            known,
            OutcomeEvent {
                kind: format!("{}.dead-lettered", self.flow),
                error_class: Some(class.as_str().to_owned()),
                error_message: Some(headers::truncate(message, headers::MAX_ERROR_MESSAGE_BYTES)),
                ..blank_event()
            },
        );
        tracing::warn!(
            flow = %self.flow,
            // Read from a message that failed validation, so either may be megabytes long.
            organization = known.organization.as_deref().map(|o| headers::truncate(o, 128)).as_deref().unwrap_or("?"),
            ticket_id = known.ticket_id.as_deref().map(|t| headers::truncate(t, 128)).as_deref().unwrap_or("?"),
            error_class = class.as_str(),
            reason = %headers::truncate(message, 512),
            "dead-lettered"
        );
        for outgoing in [dead_letter, event] {
            if let Err(error) = self.publish(outgoing).await {
                self.requeue(delivery, known, &error).await;
                return;
            }
        }
        self.count(known, Outcome::DeadLettered);
        self.metrics.dead_letter(self.flow.as_str(), class.as_str());
        self.ack(delivery).await;
    }

    /// Moves `delivery` to its next delayed-retry tier, or dead-letters it when none is left.
    async fn retry_later_inner(
        &self,
        delivery: &Delivery,
        known: &Known,
        message: &str,
        http_status: Option<u16>,
    ) {
        let tiers = self.settings.topology.tiers();
        let count =
            headers::get_int(delivery.properties.headers().as_ref(), headers::RETRY_COUNT).unwrap_or(0);
        let Some(tier) = usize::try_from(count).ok().and_then(|c| tiers.get(c)).copied() else {
            let message = format!(
                "gave up after {} delayed retries; last error: {message}",
                tiers.len()
            );
            self.dead_letter_inner(delivery, known, RETRIES_EXHAUSTED, &message, http_status)
                .await;
            return;
        };
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        self.record(&mut table, known, FailureClass::Transient, message, http_status);
        headers::set_int(&mut table, headers::RETRY_COUNT, count + 1);
        if self.delay(delivery, tier, table, known).await {
            self.count(known, Outcome::Retried);
            self.metrics.retry(self.flow.as_str(), tier);
        }
    }

    /// Parks `delivery` in the first delay tier without counting a retry: its organization's
    /// breaker is open, so the attempt would only burn a retry on a known outage.
    async fn defer_inner(&self, delivery: &Delivery, known: &Known) {
        let tiers = self.settings.topology.tiers();
        let Some(tier) = tiers.first().copied() else {
            return self.requeue(delivery, known, &"no retry tier configured").await;
        };
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        let deferred = headers::get_int(Some(&table), DEFERRED_COUNT).unwrap_or(0);
        headers::set_int(&mut table, DEFERRED_COUNT, deferred + 1);
        if self.delay(delivery, tier, table, known).await {
            self.count(known, Outcome::Deferred);
        }
    }

    /// Republishes to a retry tier, then acks; false when it went back to the queue instead.
    async fn delay(
        &self,
        delivery: &Delivery,
        tier: std::time::Duration,
        table: FieldTable,
        known: &Known,
    ) -> bool {
        let outgoing = Outgoing {
            exchange: String::new(),
            routing_key: self.settings.topology.retry_queue(self.flow, tier),
            body: delivery.data.clone(),
            properties: carried_properties(&delivery.properties).with_headers(table),
            mandatory: true,
        };
        match self.publish_routed(outgoing).await {
            Ok(()) => {
                tracing::debug!(
                    flow = %self.flow,
                    organization = known.organization.as_deref().unwrap_or("?"),
                    ?tier,
                    "retry scheduled"
                );
                self.ack(delivery).await;
                true
            }
            Err(error) => {
                self.requeue(delivery, known, &error).await;
                false
            }
        }
    }

    /// The `<flow>.succeeded` event.
    pub fn succeeded_event(&self, delivery: &Delivery, known: &Known, ok: &ItemOk) -> Outgoing {
        self.event(
            delivery,
            known,
            OutcomeEvent {
                kind: format!("{}.succeeded", self.flow),
                tixngo_status: ok.status.clone(),
                s360_status: ok
                    .status
                    .as_deref()
                    .map(|s| S360Status::from_tixngo(s).as_str().to_owned()),
                ..blank_event()
            },
        )
    }

    /// An outcome event on the events exchange, routing key = its type.
    pub fn event(&self, delivery: &Delivery, known: &Known, mut event: OutcomeEvent) -> Outgoing {
        event.organization = known.organization.clone();
        event.ticket_id = known.ticket_id.clone();
        event.message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned());
        self.publishable(
            &self.settings.topology.events_exchange,
            &event.kind.clone(),
            &event,
        )
    }

    /// A JSON message for S-360 (events, replies).
    pub fn publishable(&self, exchange: &str, routing_key: &str, body: &impl serde::Serialize) -> Outgoing {
        Outgoing {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            // Serializing our own plain structs cannot fail.
            body: serde_json::to_vec(body).unwrap_or_default(),
            properties: BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(uuid::Uuid::new_v4().to_string().into())
                .with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap_or_default()),
            mandatory: false,
        }
    }

    fn record(
        &self,
        table: &mut FieldTable,
        known: &Known,
        class: FailureClass,
        message: &str,
        http_status: Option<u16>,
    ) {
        let routing_key = self.flow.routing_key();
        headers::record_failure(
            table,
            &Failure {
                class,
                message,
                http_status,
            },
            Utc::now(),
            &FailureContext {
                flow: self.flow.as_str(),
                queue: &self.queue,
                routing_key: &routing_key,
                organization: known.organization.as_deref(),
                ticket_id: known.ticket_id.as_deref(),
            },
        );
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
            // The channel died: the broker redelivers the message; its replacement was already
            // confirmed, so the flows' idempotency absorbs the repeat.
            tracing::warn!(flow = %self.flow, error = %error, "ack failed; the message will be redelivered");
        }
    }

    async fn requeue(&self, delivery: &Delivery, known: &Known, error: &(dyn std::fmt::Display + Sync)) {
        self.count(known, Outcome::Requeued);
        tracing::warn!(flow = %self.flow, %error, "republish failed; returning the message to its queue");
        // Not at once: a broker that refuses or cannot route the republish now will most likely
        // do so again in a millisecond, and an immediate nack turns that into a tight
        // redelivery loop. (A dead channel makes the nack below fail at once anyway.)
        tokio::time::sleep(REQUEUE_PAUSE).await;
        let options = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        if let Err(error) = delivery.acker.nack(options).await {
            tracing::warn!(flow = %self.flow, %error, "nack failed; the message will be redelivered");
        }
    }
}

fn blank_event() -> OutcomeEvent {
    OutcomeEvent {
        kind: String::new(),
        organization: None,
        ticket_id: None,
        tixngo_status: None,
        previous_tixngo_status: None,
        s360_status: None,
        error_class: None,
        error_message: None,
        message_id: None,
        at: headers::rfc3339(Utc::now()),
    }
}
