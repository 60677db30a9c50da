//! The one consume engine every flow runs on.
//!
//! Per flow it owns a connection session loop (connect, declare, consume, and on any failure
//! reconnect with capped, jittered back-off), pulls deliveries up to `prefetch`, decodes and
//! validates them ahead, and queues them per organization. A queue is sent to TIXnGO in calls of
//! up to `batch_max` tickets (waiting at most `batch_linger` for a call to fill) whenever that
//! organization has a free call slot: at most `max_concurrent_calls` calls per organization and
//! `max_total_calls` per process (see [`crate::orgs::CallSlot`]). Bounding calls, not messages,
//! lets batches hide TIXnGO's latency, and bounding them per organization keeps one
//! organization's slow, throttled or hanging TIXnGO from taking the others' capacity.
//!
//! Waiting in process is capped by `max_in_process_wait`: a longer `Retry-After` pauses the
//! organization through its breaker and parks the batch in the first retry tier; and when the
//! buffer is full (`prefetch` messages held) an organization that has had no free call for that
//! long has its waiting messages parked the same way, so the broker can deliver the others'.
//!
//! A flow (see `crate::flows`) only supplies how a message becomes a TIXnGO request and which
//! call to make. Settling a message (outcome event, retry tier or dead letter, then ack) is
//! `settle`'s job.

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
use std::sync::atomic::{AtomicUsize, Ordering};
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
use crate::orgs::{CallSlot, Organization, Organizations};
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
    /// Counts the message in the `in_flight` gauge until it is settled (dropped).
    _held: InFlight,
}

/// A message held by this process, for the `in_flight` gauge and the session's own count.
pub struct InFlight {
    /// Where the gauge lives.
    metrics: Arc<Metrics>,
    /// The gauge's flow label.
    flow: Flow,
    /// The session's count of held messages: when it reaches `prefetch` the broker delivers no
    /// more, which is when an organization stuck waiting for calls must give its messages up.
    count: Arc<AtomicUsize>,
}

impl InFlight {
    fn new(metrics: Arc<Metrics>, flow: Flow, count: Arc<AtomicUsize>) -> Self {
        metrics.in_flight(flow.as_str(), 1);
        count.fetch_add(1, Ordering::Relaxed);
        Self { metrics, flow, count }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight(self.flow.as_str(), -1);
        self.count.fetch_sub(1, Ordering::Relaxed);
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

/// One organization's decoded messages waiting for a TIXnGO call.
struct Waiting<P> {
    /// Oldest first, each with when it was queued.
    items: VecDeque<(Instant, Item<P>)>,
    /// A call slot was refused since the last one was given back: no point asking again (nor
    /// waking for a linger deadline) before the next one is.
    refused: bool,
    /// Since when this organization has had messages waiting without getting a call; cleared
    /// when it gets one. Kept while its queue is empty, so an organization that was parked once
    /// is parked again at once if it still gets no call.
    blocked_since: Option<Instant>,
}

impl<P> Default for Waiting<P> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            refused: false,
            blocked_since: None,
        }
    }
}

/// Decoded messages on their way into TIXnGO calls, queued per organization so that one
/// organization without a free call never holds up another's messages.
struct Batcher<P> {
    /// Per organization, its waiting messages.
    waiting: HashMap<String, Waiting<P>>,
    /// Messages in `waiting`, all organizations together.
    queued: usize,
    /// Largest batch of one call.
    batch_max: usize,
    /// How long a partial batch waits for more tickets while a call is free.
    linger: std::time::Duration,
    /// How long an organization may keep messages waiting for a call while the buffer is full.
    max_wait: std::time::Duration,
}

/// Batches to send now, with their organization and the call slot each holds.
type Batches<P> = Vec<(Arc<Organization>, Vec<Item<P>>, CallSlot)>;

impl<P> Batcher<P> {
    fn push(&mut self, org: String, item: Item<P>, now: Instant) {
        self.waiting.entry(org).or_default().items.push_back((now, item));
        self.queued += 1;
    }

    /// A call slot was given back somewhere: every organization may ask again.
    fn slot_freed(&mut self) {
        self.waiting.values_mut().for_each(|w| w.refused = false);
    }

    /// When a partial batch of an organization that may get a call is due.
    fn next_linger_deadline(&self) -> Option<Instant> {
        self.waiting
            .values()
            .filter(|w| !w.refused && !w.items.is_empty() && w.items.len() < self.batch_max)
            .filter_map(|w| w.items.front().map(|(at, _)| *at + self.linger))
            .min()
    }

    /// When the organization waiting longest for a call will have waited `max_wait`.
    fn stall_deadline(&self) -> Option<Instant> {
        self.waiting
            .values()
            .filter(|w| !w.items.is_empty())
            .filter_map(|w| w.blocked_since.map(|since| since + self.max_wait))
            .min()
    }

    /// The batches that can go now: full ones, and partial ones whose linger ended, for every
    /// organization that gets a call slot, oldest waiting message first.
    fn dispatch(&mut self, now: Instant, organizations: &Organizations) -> Batches<P> {
        let mut order: Vec<(Instant, String)> = self
            .waiting
            .iter()
            .filter(|(_, w)| !w.refused)
            .filter_map(|(org, w)| w.items.front().map(|(at, _)| (*at, org.clone())))
            .collect();
        order.sort_unstable();
        let mut send = Vec::new();
        for (_, code) in order {
            let (Some(waiting), Some(organization)) = (self.waiting.get_mut(&code), organizations.get(&code))
            else {
                continue;
            };
            while let Some((first, _)) = waiting.items.front() {
                let full = waiting.items.len() >= self.batch_max;
                if !full && *first + self.linger > now {
                    break;
                }
                let Some(slot) = organization.try_call_slot() else {
                    waiting.refused = true;
                    waiting.blocked_since.get_or_insert(now);
                    break;
                };
                waiting.blocked_since = None;
                let n = waiting.items.len().min(self.batch_max);
                let items: Vec<Item<P>> = waiting.items.drain(..n).map(|(_, item)| item).collect();
                self.queued -= n;
                send.push((organization.clone(), items, slot));
            }
        }
        send
    }

    /// Takes the waiting messages of every organization that has had no call for `max_wait`.
    fn stalled(&mut self, now: Instant) -> Vec<(String, Vec<Item<P>>)> {
        let mut parked = Vec::new();
        for (org, waiting) in &mut self.waiting {
            let stalled = waiting
                .blocked_since
                .is_some_and(|since| since + self.max_wait <= now);
            if stalled && !waiting.items.is_empty() {
                let items: Vec<Item<P>> = waiting.items.drain(..).map(|(_, item)| item).collect();
                self.queued -= items.len();
                parked.push((org.clone(), items));
            }
        }
        parked
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
        let tracker = TaskTracker::new();
        let mut batcher = Batcher {
            waiting: HashMap::new(),
            queued: 0,
            batch_max: self.handler.batch_max(settings.worker.batch_max).max(1),
            linger: settings.worker.batch_linger,
            max_wait: settings.worker.max_in_process_wait,
        };
        // The broker sends at most `prefetch` unacked deliveries; at that count nothing more
        // arrives until something is settled.
        let prefetch = usize::from(settings.worker.prefetch);
        let held = Arc::new(AtomicUsize::new(0));
        let mut freed = self.organizations.call_freed();
        let mut freed_open = true;

        let outcome = loop {
            let linger_at = batcher.next_linger_deadline();
            let full = held.load(Ordering::Relaxed) >= prefetch;
            let stall_at = if full { batcher.stall_deadline() } else { None };
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break Ok(()),
                changed = freed.changed(), if freed_open => {
                    // The organizations (which own the sender) live as long as the session.
                    freed_open = changed.is_ok();
                    batcher.slot_freed();
                }
                _ = sleep_until(stall_at), if stall_at.is_some() => {
                    for (org, items) in batcher.stalled(Instant::now()) {
                        self.park(&tracker, &settler, &org, items);
                    }
                }
                _ = sleep_until(linger_at), if linger_at.is_some() => {}
                delivery = consumer.next(), if batcher.queued < prefetch => {
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
                    if let Some((org, item)) = self.accept(&settler, &tracker, delivery, &held) {
                        batcher.push(org, item, Instant::now());
                    }
                }
            }
            for (organization, items, slot) in batcher.dispatch(Instant::now(), &self.organizations) {
                self.spawn_batch(&tracker, &settler, organization, items, slot);
            }
        };

        // Stop taking deliveries, finish what we hold, then close.
        health.set_ready(flow.as_str(), false);
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        // Messages still waiting for a call were never started: the broker redelivers them
        // when the channel closes.
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
        count: &Arc<AtomicUsize>,
    ) -> Option<(String, Item<H::Prepared>)> {
        let held = InFlight::new(self.metrics.clone(), H::FLOW, count.clone());
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
        organization: Arc<Organization>,
        items: Vec<Item<H::Prepared>>,
        slot: CallSlot,
    ) {
        let handler = self.handler.clone();
        let settler = settler.clone();
        let worker = self.settings.worker.clone();
        let metrics = self.metrics.clone();
        let span = tracing::debug_span!("batch", flow = %H::FLOW, organization = organization.code(), size = items.len());
        tracker.spawn(
            async move {
                process_batch(
                    handler.as_ref(),
                    &organization,
                    &settler,
                    &worker,
                    &metrics,
                    items,
                    slot,
                )
                .await;
            }
            .instrument(span),
        );
    }

    /// Parks the messages of an organization that has had no free call for
    /// `max_in_process_wait` while the buffer is full, in the first retry tier without counting
    /// a retry, so the broker can deliver the other organizations' messages.
    fn park(&self, tracker: &TaskTracker, settler: &Arc<Settler>, org: &str, items: Vec<Item<H::Prepared>>) {
        tracing::warn!(
            flow = %H::FLOW,
            organization = org,
            messages = items.len(),
            max_in_process_wait = ?self.settings.worker.max_in_process_wait,
            "TIXnGO calls of this organization are all busy and the buffer is full; parking its waiting messages in the first retry tier"
        );
        let settler = settler.clone();
        tracker.spawn(async move { defer_all(&settler, &items).await });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Calls TIXnGO for one batch with quick in-process retries of what failed transiently, then
/// settles every item: success, dead letter, or the next delayed-retry tier. `slot` is held
/// while a call is in progress or about to be retried and given back before settling.
async fn process_batch<H: FlowHandler>(
    handler: &H,
    organization: &Organization,
    settler: &Settler,
    worker: &crate::config::WorkerSettings,
    metrics: &Metrics,
    items: Vec<Item<H::Prepared>>,
    slot: CallSlot,
) {
    let mut slot = Some(slot);
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
            slot.take();
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
        let (retry, wait_at_least) = match result {
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
                slot.take();
                defer_all(settler, &pending).await;
                return;
            }
            Err(error) if error.class() == ErrorClass::Permanent => {
                breaker_success(organization, metrics);
                slot.take();
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
                let retry_after = error.retry_after();
                if let Some(pause) = retry_after.filter(|p| *p > worker.max_in_process_wait)
                    && organization.breaker.hold_open(pause)
                {
                    // Longer than the process waits in place: pause the organization for as
                    // long as TIXnGO asked and give back what the batch holds.
                    metrics.breaker_transition(code, "open");
                    tracing::warn!(
                        organization = code,
                        ?pause,
                        max_in_process_wait = ?worker.max_in_process_wait,
                        "TIXnGO asked to wait longer than worker.max_in_process_wait (Retry-After); pausing this organization"
                    );
                }
                if organization.breaker.state() != BreakerState::Closed {
                    // This failure opened the breaker (or a probe failed, or TIXnGO asked for a
                    // long pause): the outage is known, so park the batch without counting a
                    // retry.
                    slot.take();
                    defer_all(settler, &pending).await;
                    return;
                }
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
                for (item, result) in pending.into_iter().zip(results) {
                    match result {
                        Ok(ok) => settled.push((item, Ok(ok))),
                        Err(error) if error.class == ErrorClass::Permanent => {
                            settled.push((item, Err(error)))
                        }
                        Err(error) => retry.push((item, Failure::from_item(&error))),
                    }
                }
                if retry.is_empty() {
                    // Nothing will call again: settling needs no call slot.
                    slot.take();
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
                // `wait_at_least` is within `max_in_process_wait` here (a longer one paused the
                // organization above); the cap also bounds a misconfigured back-off.
                let wait = delay
                    .max(wait_at_least.unwrap_or_default())
                    .min(worker.max_in_process_wait);
                tokio::time::sleep(wait).await;
                pending = retry.into_iter().map(|(item, _)| item).collect();
            }
            None => {
                slot.take();
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
