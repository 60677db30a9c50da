//! The mix `demo` publishes, as S-360 would: one injection of every product kind per
//! organization (from `schemas/examples/`), a control and a cancellation, and a few broken
//! messages that must end as `invalid-message` dead letters (and so as notifier e-mails). Ticket
//! ids carry a fresh run id, so every run is new work. `demo --publish-only` sends it alone (the
//! docker-compose demo's publisher); the full `demo` sends it to its own embedded bridge.

use std::collections::BTreeMap;

use chrono::Utc;
use lapin::BasicProperties;
use serde_json::{Value, json};

use tixngo_bridge::broker::{self, BrokerError, ConfirmedPublisher, Outgoing, PublishError};
use tixngo_bridge::config::Settings;
use tixngo_bridge::flows::Flow;

/// The injection examples, one per product kind, embedded so the binary needs no files.
const INJECTIONS: [&str; 6] = [
    include_str!("../../../../schemas/examples/inject-match.json"),
    include_str!("../../../../schemas/examples/inject-event.json"),
    include_str!("../../../../schemas/examples/inject-open-pass.json"),
    include_str!("../../../../schemas/examples/inject-service.json"),
    include_str!("../../../../schemas/examples/inject-membership-card.json"),
    include_str!("../../../../schemas/examples/inject-season-ticket.json"),
];
const CONTROL: &str = include_str!("../../../../schemas/examples/control.json");
const CANCEL: &str = include_str!("../../../../schemas/examples/cancel.json");

/// Why the demo could not publish.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The broker could not be used.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A message was not confirmed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// An embedded example does not parse (a build defect; tests read the same files).
    #[error("embedded example is not valid JSON: {0}")]
    Example(#[from] serde_json::Error),
}

/// What was published, by routing key, and the run id in the ticket ids.
#[derive(Debug, Default)]
pub struct Published {
    /// Ticket ids look like `DEMO-<run>-<ORG>-<n>`.
    pub run: String,
    /// Messages per routing key.
    pub by_routing_key: BTreeMap<String, usize>,
    /// Of which deliberately broken.
    pub broken: usize,
}

/// The id of the `n`th injection (0-based, in `schemas/examples/` order: match, event, open
/// pass, service, membership card, season ticket) of `organization` in run `run`.
pub fn ticket_id(run: &str, organization: &str, n: usize) -> String {
    format!("DEMO-{run}-{organization}-{n}")
}

/// Publishes the mix with publisher confirms and returns what was sent.
pub async fn publish_mix(settings: &Settings) -> Result<Published, DemoError> {
    let (connection, publisher) = broker::open_publisher(settings, "demo").await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut published = Published {
        run: run.clone(),
        ..Published::default()
    };
    let exchange = &settings.topology.tickets_exchange;
    for organization in settings.interfaces.keys() {
        let mut ids = Vec::new();
        for (n, example) in INJECTIONS.iter().enumerate() {
            let id = ticket_id(&run, organization, n);
            let mut message: Value = serde_json::from_str(example)?;
            message["organization"] = json!(organization);
            message["ticket_id"] = json!(id);
            if message.get("linked_ticket_ids").is_some() {
                message["linked_ticket_ids"] = json!(ids.first().cloned().into_iter().collect::<Vec<_>>());
            }
            send(&publisher, exchange, Flow::Inject, &message, &mut published).await?;
            ids.push(id);
        }
        for (template, flow, id) in [(CONTROL, Flow::Control, &ids[0]), (CANCEL, Flow::Cancel, &ids[1])] {
            let mut message: Value = serde_json::from_str(template)?;
            message["organization"] = json!(organization);
            message["ticket_id"] = json!(id);
            send(&publisher, exchange, flow, &message, &mut published).await?;
        }
        // Broken on purpose: a required field missing.
        let mut missing: Value = serde_json::from_str(INJECTIONS[0])?;
        missing["organization"] = json!(organization);
        missing["ticket_id"] = json!(format!("DEMO-{run}-{organization}-broken"));
        if let Some(fields) = missing.as_object_mut() {
            fields.remove("product");
        }
        send(&publisher, exchange, Flow::Inject, &missing, &mut published).await?;
        published.broken += 1;
    }
    // Not JSON at all, and an organization nobody configured.
    let raw = Outgoing {
        exchange: exchange.clone(),
        routing_key: Flow::Inject.routing_key(),
        body: b"this is not JSON".to_vec(),
        properties: properties(),
        mandatory: true,
    };
    publisher.publish(raw).await?;
    *published
        .by_routing_key
        .entry(Flow::Inject.routing_key())
        .or_default() += 1;
    let mut stranger: Value = serde_json::from_str(INJECTIONS[0])?;
    stranger["organization"] = json!("NOT-CONFIGURED");
    stranger["ticket_id"] = json!(format!("DEMO-{run}-stranger"));
    send(&publisher, exchange, Flow::Inject, &stranger, &mut published).await?;
    published.broken += 2;
    let _ = connection.close(200, "bye".into()).await;
    Ok(published)
}

async fn send(
    publisher: &ConfirmedPublisher,
    exchange: &str,
    flow: Flow,
    message: &Value,
    published: &mut Published,
) -> Result<(), DemoError> {
    publisher
        .publish(Outgoing {
            exchange: exchange.to_owned(),
            routing_key: flow.routing_key(),
            body: serde_json::to_vec(message)?,
            properties: properties(),
            mandatory: true,
        })
        .await?;
    *published.by_routing_key.entry(flow.routing_key()).or_default() += 1;
    Ok(())
}

fn properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(uuid::Uuid::new_v4().to_string().into())
        .with_app_id("tixngo-bridge-demo".into())
        .with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap_or_default())
}
