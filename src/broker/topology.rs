//! The broker topology, described once as data. `declare` applies it over AMQP and `export`
//! writes it as a RabbitMQ definitions file, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use serde_json::{Value, json};

use crate::config::TopologySettings;
use crate::flow::Flow;

/// Queue names of one flow, derived from `topology.queue_prefix`.
impl TopologySettings {
    /// Work queue S-360's messages for `flow` land in.
    pub fn work_queue(&self, flow: Flow) -> String {
        format!("{}.{}", self.queue_prefix, flow)
    }

    /// Dead letters of `flow`, waiting for the notifier.
    pub fn dlq(&self, flow: Flow) -> String {
        format!("{}.{}.dlq", self.queue_prefix, flow)
    }

    /// Dead letters already notified, kept for `dlq replay`.
    pub fn parked(&self, flow: Flow) -> String {
        format!("{}.{}.parked", self.queue_prefix, flow)
    }

    /// Delay queue of `flow` for one retry tier; its messages return to the work queue when
    /// their TTL expires.
    pub fn retry_queue(&self, flow: Flow, tier: Duration) -> String {
        format!("{}.{}.retry.{}", self.queue_prefix, flow, tier_label(tier))
    }
}

/// `10s`, `1m`, `1h30m`: short, stable and readable in `rabbitmqctl list_queues`.
pub fn tier_label(tier: Duration) -> String {
    humantime::format_duration(tier).to_string().replace(' ', "")
}

/// An exchange to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// Exchange name.
    pub name: String,
    /// `topic` or `direct`.
    pub kind: &'static str,
}

/// A queue to declare, always durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Queue name.
    pub name: String,
    /// `x-` arguments: queue type, dead-lettering, TTL.
    pub arguments: BTreeMap<&'static str, Arg>,
}

/// A queue argument value (only strings and integers are needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A string argument.
    Str(String),
    /// An integer argument.
    Int(i64),
}

/// A binding of a queue to an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    /// Source exchange.
    pub exchange: String,
    /// Destination queue.
    pub queue: String,
    /// Binding key.
    pub routing_key: String,
}

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Exchanges, declared first.
    pub exchanges: Vec<ExchangeSpec>,
    /// Queues, declared second.
    pub queues: Vec<QueueSpec>,
    /// Bindings, declared last.
    pub bindings: Vec<BindingSpec>,
}

impl Topology {
    /// The topology for these settings.
    pub fn new(settings: &TopologySettings) -> Self {
        let s = settings;
        let exchanges = vec![
            ExchangeSpec {
                name: s.tickets_exchange.clone(),
                kind: "topic",
            },
            ExchangeSpec {
                name: s.events_exchange.clone(),
                kind: "topic",
            },
            ExchangeSpec {
                name: s.dead_letter_exchange.clone(),
                kind: "direct",
            },
        ];
        let mut queues = Vec::new();
        let mut bindings = Vec::new();
        for &flow in Flow::ALL {
            let work = s.work_queue(flow);
            queues.push(QueueSpec {
                name: work.clone(),
                arguments: quorum()
                    .chain(safe_dead_lettering(&s.dead_letter_exchange, &s.dlq(flow)))
                    .chain([("x-delivery-limit", Arg::Int(i64::from(s.delivery_limit)))])
                    .collect(),
            });
            bindings.push(BindingSpec {
                exchange: s.tickets_exchange.clone(),
                queue: work.clone(),
                routing_key: flow.routing_key(),
            });
            for queue in [s.dlq(flow), s.parked(flow)] {
                // Not single-active-consumer: operators' `dlq` commands read these queues with
                // basic.get, which quorum queues refuse under single active consumer.
                queues.push(QueueSpec {
                    name: queue.clone(),
                    arguments: quorum().collect(),
                });
                bindings.push(BindingSpec {
                    exchange: s.dead_letter_exchange.clone(),
                    queue: queue.clone(),
                    routing_key: queue,
                });
            }
            for tier in s.tiers() {
                // Expired messages go back through the default exchange, whose routing key is
                // the queue name: no binding to keep in sync.
                queues.push(QueueSpec {
                    name: s.retry_queue(flow, tier),
                    arguments: quorum()
                        .chain(safe_dead_lettering("", &work))
                        .chain([(
                            "x-message-ttl",
                            Arg::Int(i64::try_from(tier.as_millis()).unwrap_or(i64::MAX)),
                        )])
                        .collect(),
                });
            }
        }
        Self {
            exchanges,
            queues,
            bindings,
        }
    }

    /// Declares everything; declaring twice is a no-op, declaring over a queue with other
    /// arguments fails with the broker's PRECONDITION_FAILED, which names the argument.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        for exchange in &self.exchanges {
            let kind = match exchange.kind {
                "topic" => ExchangeKind::Topic,
                _ => ExchangeKind::Direct,
            };
            channel
                .exchange_declare(
                    exchange.name.as_str().into(),
                    kind,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        for queue in &self.queues {
            channel
                .queue_declare(
                    queue.name.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    queue.field_table(),
                )
                .await?;
        }
        for binding in &self.bindings {
            channel
                .queue_bind(
                    binding.queue.as_str().into(),
                    binding.exchange.as_str().into(),
                    binding.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// The topology as a RabbitMQ definitions file (vhost `/`), for
    /// `management.load_definitions` or `rabbitmqctl import_definitions`.
    pub fn export(&self) -> Value {
        let vhost = "/";
        json!({
            "exchanges": self.exchanges.iter().map(|e| json!({
                "name": e.name, "vhost": vhost, "type": e.kind, "durable": true,
                "auto_delete": false, "internal": false, "arguments": {},
            })).collect::<Vec<_>>(),
            "queues": self.queues.iter().map(|q| json!({
                "name": q.name, "vhost": vhost, "durable": true, "auto_delete": false,
                "arguments": q.arguments.iter().map(|(k, v)| (k.to_string(), match v {
                    Arg::Str(s) => json!(s),
                    Arg::Int(i) => json!(i),
                })).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "bindings": self.bindings.iter().map(|b| json!({
                "source": b.exchange, "vhost": vhost, "destination": b.queue,
                "destination_type": "queue", "routing_key": b.routing_key, "arguments": {},
            })).collect::<Vec<_>>(),
        })
    }
}

impl QueueSpec {
    fn field_table(&self) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in &self.arguments {
            let value = match value {
                Arg::Str(s) => AMQPValue::LongString(s.as_str().into()),
                Arg::Int(i) => AMQPValue::LongLongInt(*i),
            };
            table.insert((*key).into(), value);
        }
        table
    }
}

fn quorum() -> impl Iterator<Item = (&'static str, Arg)> {
    [("x-queue-type", Arg::Str("quorum".into()))].into_iter()
}

/// Quorum-queue dead-lettering that cannot lose a message in transit: `at-least-once` keeps the
/// message in the source queue until the target confirms it, and requires `reject-publish`.
fn safe_dead_lettering(exchange: &str, routing_key: &str) -> impl Iterator<Item = (&'static str, Arg)> {
    [
        ("x-dead-letter-exchange", Arg::Str(exchange.into())),
        ("x-dead-letter-routing-key", Arg::Str(routing_key.into())),
        ("x-dead-letter-strategy", Arg::Str("at-least-once".into())),
        ("x-overflow", Arg::Str("reject-publish".into())),
    ]
    .into_iter()
}
