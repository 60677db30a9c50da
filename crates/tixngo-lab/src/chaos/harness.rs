//! The harness's own broker side: the confirmed, reconnecting publisher of the plan and the
//! consumer of every outcome event (S-360's view).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lock;
use super::plan::Plan;

/// Confirms outstanding before the publisher waits for the oldest.
const CONFIRM_WINDOW: usize = 512;

/// S-360's view: the outcome events the run's own queue received.
#[derive(Debug, Default)]
pub(super) struct Observed {
    /// Event message ids already counted (a redelivery to the harness is not a duplicate).
    pub(super) event_ids: HashSet<String>,
    /// Events per (routing key, ticket id).
    pub(super) events: HashMap<(String, String), u32>,
    /// S-360 message ids named by `*.dead-lettered` events.
    pub(super) dead_lettered: HashSet<String>,
    /// When the last event arrived.
    pub(super) last_event: Option<Instant>,
    /// Times the event consumer had to reconnect.
    pub(super) reconnects: u64,
}

/// Publisher figures.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Published {
    /// Messages confirmed by the broker.
    pub(super) confirmed: usize,
    /// Messages sent again after a connection loss left them unconfirmed.
    pub(super) republished: usize,
    /// Times the publisher had to reconnect.
    pub(super) reconnects: u64,
}

pub(super) async fn connect(url: &SecretString, name: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(
        url.expose_secret(),
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
}

/// The harness's own durable queue of every outcome event (S-360's view).
pub(super) async fn declare_observer(
    channel: &Channel,
    queue: &str,
    exchange: &str,
) -> Result<(), lapin::Error> {
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            quorum,
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Consumes the run's outcome-event queue until `stop`, reconnecting whenever the connection
/// is lost.
pub(super) async fn observe(
    url: SecretString,
    name: String,
    queue: String,
    observed: Arc<Mutex<Observed>>,
    stop: CancellationToken,
) {
    let mut first = true;
    while !stop.is_cancelled() {
        if !first {
            lock(&observed).reconnects += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        first = false;
        let session = async {
            let connection = connect(&url, &name).await?;
            let channel = connection.create_channel().await?;
            channel.basic_qos(500, Default::default()).await?;
            let mut consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "chaos-observer".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery?;
                record(&observed, &delivery);
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            Ok::<(), lapin::Error>(())
        };
        tokio::select! {
            () = stop.cancelled() => return,
            _ = session => {}
        }
    }
}

fn record(observed: &Mutex<Observed>, delivery: &lapin::message::Delivery) {
    let kind = delivery.routing_key.to_string();
    let Ok(body) = serde_json::from_slice::<Value>(&delivery.data) else {
        return;
    };
    let event_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let mut observed = lock(observed);
    observed.last_event = Some(Instant::now());
    if !event_id.is_empty() && !observed.event_ids.insert(event_id) {
        return;
    }
    if kind.ends_with(".dead-lettered")
        && let Some(id) = body["message_id"].as_str()
    {
        observed.dead_lettered.insert(id.to_owned());
    }
    let ticket = body["ticket_id"].as_str().unwrap_or_default().to_owned();
    *observed.events.entry((kind, ticket)).or_default() += 1;
}

/// Publishes the plan's messages with confirms, paced at `rate` per second, reconnecting and
/// sending again whatever was not confirmed when a connection is lost.
pub(super) async fn publish(
    url: SecretString,
    name: String,
    exchange: String,
    plan: Arc<Plan>,
    rate: f64,
    published: Arc<Mutex<Published>>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut confirmed = 0usize;
    let mut first = true;
    while confirmed < plan.messages.len() && !stop.is_cancelled() {
        if !first {
            lock(&published).reconnects += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        first = false;
        let from = confirmed;
        let mut sent = from;
        let session = publish_session(
            &url,
            &name,
            &exchange,
            &plan,
            rate,
            started,
            &mut confirmed,
            &mut sent,
        );
        tokio::select! {
            () = stop.cancelled() => return,
            _ = session => {}
        }
        let mut p = lock(&published);
        p.confirmed = confirmed;
        if sent > confirmed {
            p.republished += sent - confirmed;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish_session(
    url: &SecretString,
    name: &str,
    exchange: &str,
    plan: &Plan,
    rate: f64,
    started: Instant,
    confirmed: &mut usize,
    sent: &mut usize,
) -> Result<(), String> {
    let text = |e: lapin::Error| e.to_string();
    let connection = connect(url, name).await.map_err(text)?;
    let channel = connection.create_channel().await.map_err(text)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(text)?;
    let mut outstanding: VecDeque<lapin::PublisherConfirm> = VecDeque::new();
    while *sent < plan.messages.len() {
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(*sent as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        let message = &plan.messages[*sent];
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(message.message_id.as_str().into())
            .with_app_id("tixngo-bridge-chaos".into())
            .with_delivery_mode(2);
        let confirm = channel
            .basic_publish(
                exchange.into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &message.body,
                properties,
            )
            .await
            .map_err(text)?;
        *sent += 1;
        outstanding.push_back(confirm);
        while outstanding.len() > CONFIRM_WINDOW {
            await_oldest(&mut outstanding, confirmed).await?;
        }
    }
    while !outstanding.is_empty() {
        await_oldest(&mut outstanding, confirmed).await?;
    }
    let _ = channel.close(200, "bye".into()).await;
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

/// Waits for the oldest outstanding confirm; anything but a plain ack means "send it again".
async fn await_oldest(
    outstanding: &mut VecDeque<lapin::PublisherConfirm>,
    confirmed: &mut usize,
) -> Result<(), String> {
    if let Some(confirm) = outstanding.pop_front() {
        match confirm.await.map_err(|e| e.to_string())? {
            Confirmation::Ack(None) => *confirmed += 1,
            _ => return Err("the broker refused or returned a message".to_owned()),
        }
    }
    Ok(())
}
