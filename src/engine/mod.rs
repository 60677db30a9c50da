//! The one consume engine every flow runs on.
//!
//! Per flow it owns a connection session loop (connect, declare, consume, and on any failure
//! reconnect with capped, jittered back-off), pulls deliveries up to `prefetch`, decodes and
//! validates them ahead, groups them per organization into micro-batches (`batch_max`,
//! `batch_linger`), and keeps at most `max_in_flight` messages in batches or inside TIXnGO calls
//! at once. A flow (see
//! `crate::flows`) only supplies how a message becomes a TIXnGO request and which call to make.
//! Settling a message (outcome event, retry tier or dead letter, then ack) is `settle`'s job.

pub use crate::orgs::breaker;
pub mod decode;
pub mod settle;
pub mod supervisor;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::broker::{self, BrokerError, ConfirmedPublisher, Outgoing};
use crate::config::Settings;
use crate::context::Context;
use crate::flow::Flow;
use crate::health::Health;
use crate::messages::TicketMessage;
use crate::metrics::Metrics;
use crate::orgs::breaker::BreakerState;
use crate::orgs::{Organization, Organizations};
use crate::tixngo::error::PauseReason;
use crate::tixngo::{CallError, ErrorClass, ItemOk, ItemResult};
use settle::{Known, Settler};
use supervisor::SessionFailure;

/// What a flow supplies to the engine: its message, how a message becomes a TIXnGO request,
/// and the call.
pub trait FlowHandler: Send + Sync + 'static {
    /// Which flow this is.
    const FLOW: Flow;
    /// The S-360 message, as JSON.
    type Message: DeserializeOwned + TicketMessage + Send + 'static;
    /// What the TIXnGO call needs from one message, prepared once.
    type Prepared: Send + Sync + 'static;

    /// Turns a validated message into its request part, or says why it cannot be sent.
    fn prepare(&self, message: Self::Message, organization: &Organization) -> Result<Self::Prepared, String>;

    /// One TIXnGO call for a batch of one organization's messages; one result per item, in order.
    fn call(
        &self,
        organization: &Organization,
        batch: &[&Self::Prepared],
    ) -> impl Future<Output = Result<Vec<ItemResult>, CallError>> + Send;

    /// Largest batch this flow's TIXnGO call takes (the configured `batch_max` by default).
    fn batch_max(&self, configured: usize) -> usize {
        configured
    }

    /// What to publish when an item succeeded: by default the `<flow>.succeeded` event.
    fn on_success(
        &self,
        settler: &Settler,
        delivery: &Delivery,
        known: &Known,
        ok: &ItemOk,
    ) -> Vec<Outgoing> {
        vec![settler.succeeded_event(delivery, known, ok)]
    }
}

/// A message that passed decoding, waiting for or inside a TIXnGO call.
pub struct Item<P> {
    /// The delivery, kept to ack or republish.
    pub delivery: Delivery,
    /// Organization and ticket id.
    pub known: Known,
    /// The request part.
    pub prepared: P,
    /// One unit of the flow's `max_in_flight` bound, taken when the message joins a batch and
    /// given back as soon as TIXnGO has answered for it: decoding before and settling after
    /// (outcome event, confirm, ack) are bounded by `prefetch`, and holding the unit through
    /// them would cap throughput below `max_in_flight / latency` (Little's law).
    call_slot: Option<OwnedSemaphorePermit>,
    /// Counts the message in the `in_flight` gauge until it is settled (dropped).
    _held: InFlight,
}

impl<P> Item<P> {
    /// Gives the in-flight unit back: this message will not call TIXnGO again.
    fn release_call_slot(&mut self) {
        self.call_slot = None;
    }
}

/// A message held by this process, for the `in_flight` gauge.
pub struct InFlight {
    /// Where the gauge lives.
    metrics: Arc<Metrics>,
    /// The gauge's flow label.
    flow: Flow,
}

impl InFlight {
    fn new(metrics: Arc<Metrics>, flow: Flow) -> Self {
        metrics.in_flight(flow.as_str(), 1);
        Self { metrics, flow }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight(self.flow.as_str(), -1);
    }
}

/// Why a flow stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The broker could not be reached at start-up.
    #[error("{part}: RabbitMQ unavailable at start-up")]
    Unavailable {
        /// The part that could not start (a flow, `poller`, `notifier`).
        part: &'static str,
        /// Cause.
        #[source]
        source: BrokerError,
    },
    /// A queue or exchange exists with other arguments than the configuration wants: retrying
    /// cannot fix it (exit 78).
    #[error("{part}: the broker's topology conflicts with the configuration")]
    Topology {
        /// The part that could not start.
        part: &'static str,
        /// The declaration refused, naming the queue, the arguments and the migration (boxed:
        /// keeps `EngineError` as small as its other variant).
        #[source]
        source: Box<BrokerError>,
    },
}

/// Runs `handler`'s flow until shutdown, reconnecting whenever the connection or channel dies.
/// The flow is ready (for `/readyz`) while it is consuming.
pub async fn run_flow<H: FlowHandler>(handler: Arc<H>, context: Context) -> Result<(), EngineError> {
    supervisor::supervise(H::FLOW.as_str(), &context, || {
        let session = Session::<H> {
            handler: handler.clone(),
            settings: context.settings.clone(),
            organizations: context.organizations.clone(),
            shutdown: context.shutdown.clone(),
            metrics: context.metrics.clone(),
        };
        session.run(&context.health)
    })
    .await
}

/// One connection's worth of consuming.
struct Session<H> {
    handler: Arc<H>,
    settings: Arc<Settings>,
    organizations: Arc<Organizations>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
}

/// Messages of one organization waiting to fill a batch.
/// A batch being filled for one organization.
struct Pending<P> {
    /// Its messages, each holding an in-flight unit.
    items: Vec<Item<P>>,
    /// When it is sent even if not full (`batch_linger` after its first message).
    deadline: Instant,
}

/// Decoded messages on their way into TIXnGO calls. Decoding does not wait for an in-flight
/// unit, so a freed unit finds its next message ready and the next call starts at once.
struct Batcher<P> {
    /// Decoded messages (with their organization) waiting for a unit, oldest first; bounded by
    /// `prefetch`.
    ready: VecDeque<(String, Item<P>)>,
    /// Per organization, the batch being filled.
    filling: HashMap<String, Pending<P>>,
    /// The flow's `max_in_flight` units.
    units: Arc<Semaphore>,
    /// Largest batch of one call.
    batch_max: usize,
    /// How long a batch waits to fill.
    linger: std::time::Duration,
}

/// Batches to send now, with their organization.
type Batches<P> = Vec<(String, Vec<Item<P>>)>;

impl<P> Batcher<P> {
    fn next_deadline(&self) -> Option<Instant> {
        self.filling.values().map(|p| p.deadline).min()
    }

    /// Gives waiting messages free units (`first` and whatever is free) and returns the batches
    /// that are full, or all of them once every unit is taken: no message can join a waiting batch
    /// before a call ends, so lingering would only add latency.
    fn dispatch(&mut self, mut first: Option<OwnedSemaphorePermit>) -> Batches<P> {
        let mut send = Vec::new();
        while !self.ready.is_empty() {
            let Some(unit) = first
                .take()
                .or_else(|| self.units.clone().try_acquire_owned().ok())
            else {
                break;
            };
            let Some((org, mut item)) = self.ready.pop_front() else {
                break;
            };
            item.call_slot = Some(unit);
            let linger = self.linger;
            let entry = self.filling.entry(org.clone()).or_insert_with(|| Pending {
                items: Vec::with_capacity(self.batch_max),
                deadline: Instant::now() + linger,
            });
            entry.items.push(item);
            if (entry.items.len() >= self.batch_max || linger.is_zero())
                && let Some(batch) = self.filling.remove(&org)
            {
                send.push((org, batch.items));
            }
        }
        if self.units.available_permits() == 0 {
            send.extend(self.filling_batches());
        }
        send
    }

    /// The batches whose linger ended.
    fn due(&mut self, now: Instant) -> Batches<P> {
        let due: Vec<String> = self
            .filling
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(org, _)| org.clone())
            .collect();
        due.into_iter()
            .filter_map(|org| self.filling.remove(&org).map(|batch| (org, batch.items)))
            .collect()
    }

    /// Every batch being filled, full or not.
    fn filling_batches(&mut self) -> Batches<P> {
        self.filling
            .drain()
            .map(|(org, batch)| (org, batch.items))
            .collect()
    }
}

impl<H: FlowHandler> Session<H> {
    async fn run(self, health: &Health) -> Result<(), SessionFailure> {
        let flow = H::FLOW;
        let settings = &self.settings;
        let (connection, publisher, channel, mut consumer, tag) =
            self.open().await.map_err(SessionFailure::setup)?;
        health.set_ready(flow.as_str(), true);
        tracing::info!(%flow, queue = %settings.topology.work_queue(flow), "consuming");
        self.consume(connection, publisher, channel, &mut consumer, tag, health)
            .await
            .map_err(SessionFailure::running)
    }

    async fn open(
        &self,
    ) -> Result<
        (
            lapin::Connection,
            ConfirmedPublisher,
            lapin::Channel,
            lapin::Consumer,
            String,
        ),
        BrokerError,
    > {
        let flow = H::FLOW;
        let settings = &self.settings;
        let broker::Session {
            connection,
            publisher,
            channel,
        } = broker::open_session(settings, flow.as_str(), settings.worker.prefetch).await?;
        let queue = settings.topology.work_queue(flow);
        let tag = format!(
            "{}-{}-{}",
            flow,
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BrokerError::amqp("basic.consume"))?;
        Ok((connection, publisher, channel, consumer, tag))
    }

    async fn consume(
        &self,
        connection: lapin::Connection,
        publisher: ConfirmedPublisher,
        channel: lapin::Channel,
        consumer: &mut lapin::Consumer,
        tag: String,
        health: &Health,
    ) -> Result<(), BrokerError> {
        let flow = H::FLOW;
        let settings = &self.settings;
        let settler = Arc::new(Settler::new(
            flow,
            settings.clone(),
            publisher,
            self.metrics.clone(),
        ));
        let units = Arc::new(Semaphore::new(settings.worker.max_in_flight));
        let tracker = TaskTracker::new();
        let mut batcher = Batcher {
            ready: VecDeque::new(),
            filling: HashMap::new(),
            units: units.clone(),
            batch_max: self.handler.batch_max(settings.worker.batch_max).max(1),
            linger: settings.worker.batch_linger,
        };
        // The broker sends at most `prefetch` unacked deliveries; this only guards the buffer.
        let ready_cap = usize::from(settings.worker.prefetch);

        let outcome = loop {
            let next_deadline = batcher.next_deadline();
            let send = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break Ok(()),
                _ = sleep_until(next_deadline), if next_deadline.is_some() => batcher.due(Instant::now()),
                acquired = units.clone().acquire_owned(), if !batcher.ready.is_empty() => {
                    // The semaphore is never closed.
                    batcher.dispatch(acquired.ok())
                }
                delivery = consumer.next(), if batcher.ready.len() < ready_cap => {
                    let delivery = match delivery {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(error)) => break Err(BrokerError::Amqp { operation: "consume", source: error }),
                        None => break Err(BrokerError::Amqp {
                            operation: "consume",
                            source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                                lapin::ConnectionState::Closed,
                            )),
                        }),
                    };
                    match self.accept(&settler, &tracker, delivery) {
                        Some(decoded) => {
                            batcher.ready.push_back(decoded);
                            batcher.dispatch(None)
                        }
                        None => Vec::new(),
                    }
                }
            };
            for (org, items) in send {
                self.spawn_batch(&tracker, &settler, &org, items);
            }
        };

        // Stop taking deliveries, finish what we hold, then close.
        health.set_ready(flow.as_str(), false);
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        // Batches being filled hold their units: send them. Messages still waiting for a unit
        // were never started; the broker redelivers them when the channel closes.
        for (org, items) in batcher.filling_batches() {
            self.spawn_batch(&tracker, &settler, &org, items);
        }
        drop(batcher);
        tracker.close();
        let grace = settings.worker.shutdown_grace;
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(%flow, ?grace, "in-flight work did not finish in the grace period; the broker redelivers it");
        }
        let _ = channel.close(200, "bye".into()).await;
        let _ = connection.close(200, "bye".into()).await;
        if outcome.is_ok() {
            tracing::info!(%flow, "stopped consuming");
        }
        outcome
    }

    /// Decodes a delivery. Returns it ready for batching, or settles it at once as invalid.
    fn accept(
        &self,
        settler: &Arc<Settler>,
        tracker: &TaskTracker,
        delivery: Delivery,
    ) -> Option<(String, Item<H::Prepared>)> {
        let held = InFlight::new(self.metrics.clone(), H::FLOW);
        let max_bytes = self.settings.worker.max_message_bytes;
        let decoded = decode::decode::<H::Message>(&delivery, max_bytes).and_then(|message| {
            let known = Known {
                organization: Some(message.organization().to_owned()),
                ticket_id: Some(message.ticket_id().to_owned()),
            };
            let Some(organization) = self.organizations.get(message.organization()) else {
                return Err(decode::Invalid {
                    reason: format!(
                        "unknown organization {:?}: no TIXnGO interface is configured for it",
                        crate::text::truncate(message.organization(), 64)
                    ),
                    known,
                });
            };
            match self.handler.prepare(message, organization) {
                Ok(prepared) => Ok((organization.code().to_owned(), known, prepared)),
                Err(reason) => Err(decode::Invalid { reason, known }),
            }
        });
        match decoded {
            Ok((org, known, prepared)) => Some((
                org,
                Item {
                    delivery,
                    known,
                    prepared,
                    call_slot: None,
                    _held: held,
                },
            )),
            Err(invalid) => {
                let settler = settler.clone();
                tracker.spawn(async move {
                    settler
                        .dead_letter(
                            &delivery,
                            &invalid.known,
                            settle::INVALID_MESSAGE,
                            &invalid.reason,
                            None,
                        )
                        .await;
                    drop(held);
                });
                None
            }
        }
    }

    fn spawn_batch(
        &self,
        tracker: &TaskTracker,
        settler: &Arc<Settler>,
        org: &str,
        items: Vec<Item<H::Prepared>>,
    ) {
        let Some(organization) = self.organizations.get(org).cloned() else {
            return; // `accept` only batches configured organizations.
        };
        let handler = self.handler.clone();
        let settler = settler.clone();
        let worker = self.settings.worker.clone();
        let metrics = self.metrics.clone();
        let span = tracing::debug_span!("batch", flow = %H::FLOW, organization = org, size = items.len());
        tracker.spawn(
            async move {
                process_batch(
                    handler.as_ref(),
                    &organization,
                    &settler,
                    &worker,
                    &metrics,
                    items,
                )
                .await;
            }
            .instrument(span),
        );
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Calls TIXnGO for one batch with quick in-process retries of what failed transiently, then
/// settles every item: success, dead letter, or the next delayed-retry tier.
async fn process_batch<H: FlowHandler>(
    handler: &H,
    organization: &Organization,
    settler: &Settler,
    worker: &crate::config::WorkerSettings,
    metrics: &Metrics,
    items: Vec<Item<H::Prepared>>,
) {
    let code = organization.code();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(worker.in_process_min_delay)
        .with_max_delay(worker.in_process_max_delay)
        .with_jitter()
        .with_max_times(worker.in_process_retries)
        .build();
    let mut pending = items;
    loop {
        if !organization.breaker.allow() {
            pending.iter_mut().for_each(Item::release_call_slot);
            defer_all(settler, &pending).await;
            return;
        }
        let batch: Vec<&H::Prepared> = pending.iter().map(|item| &item.prepared).collect();
        organization.call_permit().await;
        let started = std::time::Instant::now();
        let result = handler.call(organization, &batch).await;
        drop(batch);
        let status = match &result {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.metric_label(),
        };
        metrics.tixngo_call(code, H::FLOW.as_str(), started.elapsed(), &status);
        let (mut retry, wait_at_least) = match result {
            Err(error) if error.class() == ErrorClass::Pause => {
                // No ticket caused this and no retry of one can fix it: pause the organization
                // (breaker open at once), park the batch without counting a retry, say so once.
                let reason = error.pause_reason().unwrap_or(PauseReason::AuthRefused);
                if organization.breaker.trip(reason) {
                    metrics.breaker_transition(code, "open");
                    tracing::error!(
                        organization = code,
                        reason = reason.as_str(),
                        error = %error,
                        "TIXnGO refuses every call of this organization: {}; paused (its messages \
                         wait in the first retry tier without using retries) until a probe succeeds",
                        reason.remedy()
                    );
                }
                pending.iter_mut().for_each(Item::release_call_slot);
                defer_all(settler, &pending).await;
                return;
            }
            Err(error) if error.class() == ErrorClass::Permanent => {
                breaker_success(organization, metrics);
                pending.iter_mut().for_each(Item::release_call_slot);
                let message = error.to_string();
                let status = error.http_status();
                settle_all(pending.iter().map(|item| {
                    settler.dead_letter(&item.delivery, &item.known, settle::REJECTED, &message, status)
                }))
                .await;
                return;
            }
            Err(error) => {
                if organization.breaker.record_failure() {
                    metrics.breaker_transition(code, "open");
                    tracing::warn!(organization = code, "TIXnGO failing; circuit breaker opened");
                }
                if organization.breaker.state() != BreakerState::Closed {
                    // This failure opened the breaker (or a probe failed): the outage is known,
                    // so park the batch without counting a retry.
                    pending.iter_mut().for_each(Item::release_call_slot);
                    defer_all(settler, &pending).await;
                    return;
                }
                let retry_after = error.retry_after();
                let failed: Vec<_> = pending
                    .into_iter()
                    .map(|item| (item, Failure::from_call(&error)))
                    .collect();
                (failed, retry_after)
            }
            Ok(results) => {
                breaker_success(organization, metrics);
                let mut retry = Vec::new();
                let mut settled = Vec::new();
                for (mut item, result) in pending.into_iter().zip(results) {
                    match result {
                        Ok(ok) => {
                            item.release_call_slot();
                            settled.push((item, Ok(ok)))
                        }
                        Err(error) if error.class == ErrorClass::Permanent => {
                            item.release_call_slot();
                            settled.push((item, Err(error)))
                        }
                        Err(error) => retry.push((item, Failure::from_item(&error))),
                    }
                }
                settle_all(settled.iter().map(|(item, result)| async move {
                    match result {
                        Ok(ok) => {
                            let events = handler.on_success(settler, &item.delivery, &item.known, ok);
                            settler.succeed(&item.delivery, &item.known, events).await;
                        }
                        Err(error) => {
                            settler
                                .dead_letter(
                                    &item.delivery,
                                    &item.known,
                                    settle::REJECTED,
                                    &error.message,
                                    Some(error.code),
                                )
                                .await;
                        }
                    }
                }))
                .await;
                (retry, None)
            }
        };
        if retry.is_empty() {
            return;
        }
        match delays.next() {
            Some(delay) => {
                tokio::time::sleep(delay.max(wait_at_least.unwrap_or_default())).await;
                pending = retry.into_iter().map(|(item, _)| item).collect();
            }
            None => {
                retry.iter_mut().for_each(|(item, _)| item.release_call_slot());
                settle_all(retry.iter().map(|(item, failure)| {
                    settler.retry_later(&item.delivery, &item.known, &failure.message, failure.status)
                }))
                .await;
                return;
            }
        }
    }
}

/// TIXnGO answered: close the breaker, and say so if it was open.
fn breaker_success(organization: &Organization, metrics: &Metrics) {
    if organization.breaker.record_success() {
        metrics.breaker_transition(organization.code(), "closed");
        tracing::info!(
            organization = organization.code(),
            "TIXnGO answers again; circuit breaker closed"
        );
    }
}

/// Parks every item in the first retry tier without counting a retry (breaker open).
async fn defer_all<P>(settler: &Settler, items: &[Item<P>]) {
    settle_all(
        items
            .iter()
            .map(|item| settler.defer(&item.delivery, &item.known)),
    )
    .await;
}

async fn settle_all<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    futures::future::join_all(futures).await;
}

/// A transient failure, remembered for the retry headers.
struct Failure {
    message: String,
    status: Option<u16>,
}

impl Failure {
    fn from_call(error: &CallError) -> Self {
        Self {
            message: error.to_string(),
            status: error.http_status(),
        }
    }

    fn from_item(error: &crate::tixngo::ItemError) -> Self {
        Self {
            message: error.message.clone(),
            status: Some(error.code),
        }
    }
}
