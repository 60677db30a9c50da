//! The four operations on the broker. Each reads a queue with `basic.get` (manual ack) up to the
//! message count it had when the operation began, acks only what it moved or deleted, and
//! closes the channel at the end so the broker puts every other message back.

use std::collections::BTreeMap;

use indicatif::ProgressBar;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::filter::{Filter, Rate};
use super::letter::{DELIVERY_COUNT, DeadLetter, X_DEATH};
use super::source::Source;
use crate::broker::headers;
use crate::broker::{self, BrokerError, ConfirmedPublisher, Outgoing, PublishError};
use crate::config::{Settings, TopologySettings};
use crate::engine::settle::{DEFERRED_COUNT, carried_properties};
use crate::failure_class::FailureClass;
use crate::flow::Flow;

/// How many failure reasons a summary keeps: enough to see the cause, not a flood.
const MAX_FAILURE_REASONS: usize = 5;

/// Why a `dlq` operation could not run or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// RabbitMQ could not be reached.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A dead-letter queue could not be opened (missing topology, permissions).
    #[error("cannot open queue {queue:?} (is the topology declared?)")]
    Queue {
        /// The queue.
        queue: String,
        /// What the broker said.
        #[source]
        source: lapin::Error,
    },
    /// Reading or acknowledging failed: the channel or connection died mid-way. Messages not yet
    /// acked return to their queue; one whose replay was confirmed but not acked is replayed
    /// again by the next run (harmless: the flows are idempotent).
    #[error("{operation} on queue {queue:?} failed")]
    Channel {
        /// `basic.get` or `basic.ack`.
        operation: &'static str,
        /// The queue.
        queue: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// The replay channel died: nothing more can be published.
    #[error("replay publishing failed")]
    Publish(#[source] PublishError),
}

/// One connection to the broker for one operation.
pub struct Session {
    /// The connection every channel of the operation opens on.
    connection: Connection,
    /// Queue names.
    topology: TopologySettings,
}

/// Counts of one group in `list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// In the dlq queues.
    pub dlq: u64,
    /// In the parked queues.
    pub parked: u64,
}

impl Counts {
    /// Both together.
    pub fn total(self) -> u64 {
        self.dlq + self.parked
    }
}

/// What `list` groups by: flow, organization, error class, HTTP status.
pub type GroupKey = (Flow, Option<String>, FailureClass, Option<i64>);

/// `list`'s answer.
#[derive(Debug, Default)]
pub struct Listing {
    /// Matching messages per group, sorted.
    pub groups: BTreeMap<GroupKey, Counts>,
    /// Messages read, matching or not: tells an empty result from an empty queue.
    pub scanned: u64,
    /// The highest `x-delivery-count` seen, so operators notice messages read very often
    /// (see the module documentation on delivery limits).
    pub max_delivery_count: Option<i64>,
}

/// What a replay or purge did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Replayed (confirmed and acked), purged, or for a dry run selected.
    pub done: u64,
    /// Read but not matching the filters; left in place.
    pub skipped: u64,
    /// Matching but not moved (the broker refused the publish); left in place.
    pub failed: u64,
    /// The first reasons of `failed`, for the operator to act on.
    pub failure_reasons: Vec<String>,
    /// `--limit` was reached; later messages were not read.
    pub limit_reached: bool,
    /// SIGINT/SIGTERM stopped it between two messages.
    pub interrupted: bool,
    /// For a dry run: what would have been replayed (bodies dropped).
    pub selected: Vec<DeadLetter>,
}

/// Replay options besides the filter.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Stop after this many matching messages.
    pub limit: Option<u64>,
    /// Select without publishing or acking anything.
    pub dry_run: bool,
    /// Maximum replays per second.
    pub rate: Option<Rate>,
}

/// What to do with a matching message.
enum Act<'a> {
    /// Republish to the work queue, then ack.
    Replay {
        /// The confirm-mode channel replays are published on.
        publisher: &'a ConfirmedPublisher,
        /// Paces replays to `--rate`.
        pacer: Option<tokio::time::Interval>,
    },
    /// Ack (delete).
    Purge,
    /// Record it, touch nothing.
    Select,
}

impl Session {
    /// Connects with the bridge's AMQP settings.
    pub async fn open(settings: &Settings) -> Result<Self, DlqError> {
        let connection = broker::connect(&settings.amqp, "dlq").await?;
        Ok(Self {
            connection,
            topology: settings.topology.clone(),
        })
    }

    /// Closes the connection; any message still unacked goes back to its queue.
    pub async fn close(self) {
        let _ = self.connection.close(200, "dlq done".into()).await;
    }

    /// Counts matching messages by group; leaves every message in place.
    pub async fn list(&self, filter: &Filter, progress: &ProgressBar) -> Result<Listing, DlqError> {
        let mut listing = Listing::default();
        for (flow, source, queue) in filter.queues(&self.topology) {
            let mut reader = Reader::open(&self.connection, &queue).await?;
            progress.inc_length(u64::from(reader.remaining));
            while let Some(delivery) = reader.next().await? {
                progress.inc(1);
                let letter = DeadLetter::read(&queue, source, flow, &delivery.properties, &delivery.data);
                listing.scanned += 1;
                listing.max_delivery_count = listing.max_delivery_count.max(letter.delivery_count);
                if filter.matches(&letter) {
                    let counts = listing
                        .groups
                        .entry((
                            letter.flow,
                            letter.organization,
                            letter.error_class,
                            letter.http_status,
                        ))
                        .or_default();
                    match source {
                        Source::Dlq => counts.dlq += 1,
                        Source::Parked => counts.parked += 1,
                    }
                }
            }
            reader.close().await;
        }
        Ok(listing)
    }

    /// The matching messages, at most `limit`; leaves every message in place.
    pub async fn show(&self, filter: &Filter, limit: Option<u64>) -> Result<Vec<DeadLetter>, DlqError> {
        let mut shown = Vec::new();
        'queues: for (flow, source, queue) in filter.queues(&self.topology) {
            let mut reader = Reader::open(&self.connection, &queue).await?;
            while let Some(delivery) = reader.next().await? {
                let letter = DeadLetter::read(&queue, source, flow, &delivery.properties, &delivery.data);
                if filter.matches(&letter) {
                    shown.push(letter);
                    if limit.is_some_and(|l| shown.len() as u64 >= l) {
                        reader.close().await;
                        break 'queues;
                    }
                }
            }
            reader.close().await;
        }
        Ok(shown)
    }

    /// Moves matching messages back to their flow's work queue, confirm-then-ack, one at a time.
    pub async fn replay(
        &self,
        filter: &Filter,
        options: &ReplayOptions,
        progress: &ProgressBar,
        shutdown: &CancellationToken,
    ) -> (Summary, Result<(), DlqError>) {
        if options.dry_run {
            return self
                .apply(filter, options.limit, Act::Select, progress, shutdown)
                .await;
        }
        let publisher = match ConfirmedPublisher::open(&self.connection).await {
            Ok(publisher) => publisher,
            Err(source) => {
                let error = BrokerError::Amqp {
                    operation: "channel.open (confirm mode)",
                    source,
                };
                return (Summary::default(), Err(error.into()));
            }
        };
        let pacer = options.rate.map(|rate| {
            let mut interval = tokio::time::interval(rate.interval());
            // After a slow publish, do not burst to catch up: the rate is a ceiling.
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        let act = Act::Replay {
            publisher: &publisher,
            pacer,
        };
        let outcome = self.apply(filter, options.limit, act, progress, shutdown).await;
        // Closed here rather than dropped: a channel dropped while the connection closes makes
        // lapin abandon the connection.close handshake (and log an error).
        let _ = publisher.channel().close(200, "replay done".into()).await;
        outcome
    }

    /// Deletes matching messages (acks them), at most `limit`.
    pub async fn purge(
        &self,
        filter: &Filter,
        limit: Option<u64>,
        progress: &ProgressBar,
        shutdown: &CancellationToken,
    ) -> (Summary, Result<(), DlqError>) {
        self.apply(filter, limit, Act::Purge, progress, shutdown).await
    }

    async fn apply(
        &self,
        filter: &Filter,
        limit: Option<u64>,
        mut act: Act<'_>,
        progress: &ProgressBar,
        shutdown: &CancellationToken,
    ) -> (Summary, Result<(), DlqError>) {
        let mut summary = Summary::default();
        let result = async {
            for (flow, source, queue) in filter.queues(&self.topology) {
                if shutdown.is_cancelled() {
                    summary.interrupted = true;
                    return Ok(());
                }
                let mut reader = Reader::open(&self.connection, &queue).await?;
                progress.inc_length(u64::from(reader.remaining));
                let outcome = self
                    .apply_queue(
                        &mut reader,
                        flow,
                        source,
                        filter,
                        limit,
                        &mut act,
                        &mut summary,
                        progress,
                        shutdown,
                    )
                    .await;
                reader.close().await;
                outcome?;
                if summary.limit_reached || summary.interrupted {
                    return Ok(());
                }
            }
            Ok(())
        }
        .await;
        (summary, result)
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_queue(
        &self,
        reader: &mut Reader,
        queue_flow: Flow,
        source: Source,
        filter: &Filter,
        limit: Option<u64>,
        act: &mut Act<'_>,
        summary: &mut Summary,
        progress: &ProgressBar,
        shutdown: &CancellationToken,
    ) -> Result<(), DlqError> {
        loop {
            if limit.is_some_and(|l| summary.done >= l) {
                summary.limit_reached = true;
                return Ok(());
            }
            if shutdown.is_cancelled() {
                summary.interrupted = true;
                return Ok(());
            }
            let Some(delivery) = reader.next().await? else {
                return Ok(());
            };
            progress.inc(1);
            let letter = DeadLetter::read(
                &reader.queue,
                source,
                queue_flow,
                &delivery.properties,
                &delivery.data,
            );
            if !filter.matches(&letter) {
                summary.skipped += 1;
            } else {
                match act {
                    Act::Select => {
                        summary.done += 1;
                        summary.selected.push(DeadLetter {
                            body: Vec::new(),
                            ..letter
                        });
                    }
                    Act::Purge => {
                        reader.ack(&delivery).await?;
                        summary.done += 1;
                    }
                    Act::Replay { publisher, pacer } => {
                        if let Some(pacer) = pacer {
                            tokio::select! {
                                _ = pacer.tick() => {}
                                () = shutdown.cancelled() => {
                                    summary.interrupted = true;
                                    return Ok(());
                                }
                            }
                        }
                        match publisher.publish(self.replayed(&letter)).await {
                            Ok(()) => {
                                reader.ack(&delivery).await?;
                                summary.done += 1;
                            }
                            Err(error @ PublishError::Channel { .. }) => {
                                return Err(DlqError::Publish(error));
                            }
                            Err(error) => {
                                // Left unacked: it returns to its queue when the channel closes.
                                summary.failed += 1;
                                if summary.failure_reasons.len() < MAX_FAILURE_REASONS {
                                    summary.failure_reasons.push(crate::telemetry::chain(&error));
                                }
                            }
                        }
                    }
                }
            }
            progress.set_message(format!(
                "{} done, {} skipped, {} failed",
                summary.done, summary.skipped, summary.failed
            ));
        }
    }

    /// The message a replay publishes: same body and properties, back to the flow's work queue
    /// through the default exchange, with a fresh retry budget and the replay counted.
    fn replayed(&self, letter: &DeadLetter) -> Outgoing {
        let original = letter.properties.headers().clone().unwrap_or_default();
        let mut table: BTreeMap<ShortString, AMQPValue> = original
            .inner()
            .iter()
            .filter(|(key, _)| !cleared_on_replay(key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let replays = letter.replay_count.unwrap_or(0).saturating_add(1);
        table.insert(headers::REPLAY_COUNT.into(), AMQPValue::LongLongInt(replays));
        Outgoing {
            exchange: String::new(),
            routing_key: self.topology.work_queue(letter.flow),
            body: letter.body.clone(),
            properties: carried_properties(&letter.properties).with_headers(FieldTable::from(table)),
            mandatory: true,
        }
    }
}

/// Headers a replayed message loses: its retry budget starts afresh, and what described the
/// last failure goes, so that if it fails again it is described by that failure alone (a stale
/// `x-error-class` would otherwise mislabel a later broker dead-lettering, which writes none).
/// Kept: identity (`x-organization`, `x-ticket-id`, `x-flow`, `x-original-*`),
/// `x-first-failure-at` (when the trouble began) and `x-replay-count`.
pub fn cleared_on_replay(key: &str) -> bool {
    matches!(
        key,
        headers::RETRY_COUNT
            | DEFERRED_COUNT
            | headers::ERROR_CLASS
            | headers::ERROR_MESSAGE
            | headers::HTTP_STATUS
            | headers::LAST_FAILURE_AT
            | DELIVERY_COUNT
            | X_DEATH
    ) || key.starts_with("x-first-death-")
        || key.starts_with("x-last-death-")
}

/// Reads one queue with `basic.get` on a channel of its own.
struct Reader {
    /// The queue.
    queue: String,
    /// The channel whose unacked messages return to the queue when it closes.
    channel: Channel,
    /// Messages left to read of those present at the start: bounds the scan, so that messages
    /// arriving meanwhile (or coming back from elsewhere) are not read twice.
    remaining: u32,
}

impl Reader {
    async fn open(connection: &Connection, queue: &str) -> Result<Self, DlqError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(BrokerError::amqp("channel.open"))?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|source| DlqError::Queue {
                queue: queue.to_owned(),
                source,
            })?;
        Ok(Self {
            queue: queue.to_owned(),
            channel,
            remaining: declared.message_count(),
        })
    }

    /// The next message, unacked; `None` when the initial count is read or the queue is empty.
    async fn next(&mut self) -> Result<Option<Delivery>, DlqError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let got = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|source| DlqError::Channel {
                operation: "basic.get",
                queue: self.queue.clone(),
                source,
            })?;
        Ok(got.map(|g| g.delivery))
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), DlqError> {
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|source| DlqError::Channel {
                operation: "basic.ack",
                queue: self.queue.clone(),
                source,
            })
    }

    /// Closes the channel: the broker requeues every message read but not acked.
    async fn close(self) {
        let _ = self.channel.close(200, "dlq scan done".into()).await;
    }
}
