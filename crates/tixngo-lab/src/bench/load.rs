//! The bench's tickets: realistic S-360 messages (about 1 KiB each), the bare TIXnGO bodies the
//! baseline posts for the same tickets, and a confirmed, pipelined publisher.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use serde_json::{Value, json};

use super::BenchError;
use tixngo_bridge::flows::Flow;
use tixngo_bridge::messages::InjectMessage;
use tixngo_bridge::orgs::Organization;

/// The injection every bench ticket is made from (the richest example: a seated match ticket).
const INJECT: &str = include_str!("../../../../schemas/examples/inject-match.json");
const CANCEL: &str = include_str!("../../../../schemas/examples/cancel.json");
const CONTROL: &str = include_str!("../../../../schemas/examples/control.json");

/// Confirms awaited in order once this many publishes are outstanding: enough to keep the broker
/// busy, small enough that a refused publish is noticed soon.
const CONFIRM_WINDOW: usize = 1024;

/// The id of the `n`-th ticket of a run.
pub fn ticket_id(run: &str, n: usize) -> String {
    format!("B-{run}-{n:08}")
}

/// The `n`-th ticket's index, from its id.
pub fn ticket_index(id: &str) -> Option<usize> {
    id.rsplit('-').next()?.parse().ok()
}

/// The S-360 injection for ticket `n`: the match example with its own ids, seat and spectator.
pub fn injection(organization: &str, run: &str, n: usize) -> Result<Value, BenchError> {
    let mut message: Value = serde_json::from_str(INJECT)?;
    message["organization"] = json!(organization);
    message["ticket_id"] = json!(ticket_id(run, n));
    message["barcode"] = json!(format!("BN{run}{n:010}"));
    message["seat"]["row"] = json!(((n / 40) % 30 + 1).to_string());
    message["seat"]["number"] = json!((n % 40 + 1).to_string());
    message["purchase"]["order_id"] = json!(format!("O-{run}-{:07}", n / 4));
    message["spectator"]["first_name"] = json!(format!("Fan{n}"));
    message["spectator"]["email"] = json!(format!("fan{n}@example.ch"));
    message["activation"]["group_id"] = json!(format!("O-{run}-{:07}", n / 4));
    Ok(message)
}

/// The S-360 message of `flow` for ticket `n`.
pub fn message(flow: Flow, organization: &str, run: &str, n: usize) -> Result<Value, BenchError> {
    let template = match flow {
        Flow::Inject => return injection(organization, run, n),
        Flow::Cancel => CANCEL,
        Flow::Control => CONTROL,
        Flow::Status => return Err(BenchError::Usage("--flow status is not benchmarked".into())),
    };
    let mut message: Value = serde_json::from_str(template)?;
    message["organization"] = json!(organization);
    message["ticket_id"] = json!(ticket_id(run, n));
    Ok(message)
}

/// The TIXnGO document the bridge's mapping makes of ticket `n` (for the baseline's bodies and
/// for creating the tickets a cancel or control bench acts on).
pub fn document(organization: &Organization, run: &str, n: usize) -> Result<String, BenchError> {
    let message: InjectMessage = serde_json::from_value(injection(organization.code(), run, n)?)?;
    let document = organization.render(&message).map_err(BenchError::Setup)?;
    Ok(document.json.get().to_owned())
}

/// The exact body the baseline POSTs for ticket `n`, prepared before timing starts so the
/// baseline does no mapping at all: it is the lower bound of per-message work.
pub fn baseline_body(
    flow: Flow,
    organization: &Organization,
    run: &str,
    n: usize,
) -> Result<String, BenchError> {
    Ok(match flow {
        Flow::Cancel => json!({"cancellations": [{
            "ticketId": ticket_id(run, n),
            "reason": "Bestellung auf Wunsch der Kundin storniert",
            "showDeletedTicket": true,
        }]})
        .to_string(),
        Flow::Control => json!({"controls": [{
            "ticketId": ticket_id(run, n),
            "controlledAt": "2025-08-09T15:21:48Z",
            "gate": "Eingang C",
            "controlPoint": "Drehkreuz C-07",
        }]})
        .to_string(),
        _ => format!("{{\"tickets\":[{}]}}", document(organization, run, n)?),
    })
}

/// Publishes bodies with publisher confirms, many outstanding at once.
pub struct Publisher {
    /// Confirm-mode channel.
    channel: Channel,
    /// Confirms not yet awaited, oldest first.
    outstanding: VecDeque<lapin::PublisherConfirm>,
}

impl Publisher {
    /// Opens a confirm-mode channel.
    pub async fn open(connection: &Connection) -> Result<Self, BenchError> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Publisher {
            channel,
            outstanding: VecDeque::new(),
        })
    }

    /// Publishes one persistent JSON message; returns when the broker took it (not confirmed).
    pub async fn send(&mut self, exchange: &str, routing_key: &str, body: &[u8]) -> Result<(), BenchError> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_app_id("tixngo-bridge-bench".into())
            .with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap_or_default())
            .with_delivery_mode(2);
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await?;
        self.outstanding.push_back(confirm);
        while self.outstanding.len() > CONFIRM_WINDOW {
            self.await_oldest().await?;
        }
        Ok(())
    }

    /// Waits for every outstanding confirm.
    pub async fn flush(&mut self) -> Result<(), BenchError> {
        while !self.outstanding.is_empty() {
            self.await_oldest().await?;
        }
        Ok(())
    }

    async fn await_oldest(&mut self) -> Result<(), BenchError> {
        if let Some(confirm) = self.outstanding.pop_front() {
            match confirm.await? {
                Confirmation::Ack(None) => {}
                _ => {
                    return Err(BenchError::Setup(
                        "the broker refused or could not route a bench message".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Closes the channel.
    pub async fn close(self) {
        let _ = self.channel.close(200, "bye".into()).await;
    }
}

/// Publishes `bodies` to `exchange`/`routing_key`: all at once (`rate` none) or paced at `rate`
/// per second. Returns each ticket's publish time (index = ticket number) and the publish rate
/// achieved, confirms included.
pub async fn publish_all(
    publisher: &mut Publisher,
    exchange: &str,
    routing_key: &str,
    bodies: &[Vec<u8>],
    rate: Option<f64>,
) -> Result<(Vec<DateTime<Utc>>, f64), BenchError> {
    let started = tokio::time::Instant::now();
    let mut times = Vec::with_capacity(bodies.len());
    for (n, body) in bodies.iter().enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        times.push(Utc::now());
        publisher.send(exchange, routing_key, body).await?;
    }
    publisher.flush().await?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok((times, bodies.len() as f64 / elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(ticket_index(&ticket_id("ab12", 42)), Some(42));
    }

    #[test]
    fn injections_are_about_one_kib_and_valid() {
        let message = injection("ACME", "ab12cd34", 123_456).expect("the example parses");
        let size = serde_json::to_vec(&message).expect("serializes").len();
        assert!((700..1400).contains(&size), "{size} bytes");
        let typed: InjectMessage = serde_json::from_value(message).expect("matches the schema");
        tixngo_bridge::messages::TicketMessage::validate(&typed).expect("valid");
    }
}
