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

    /// Outcome and status events the bridge published while no queue was bound for them on the
    /// events exchange (S-360's consumer missing): kept here instead of dropped by the broker.
    pub fn unrouted_events(&self) -> String {
        format!("{}.events.unrouted", self.queue_prefix)
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
        // Reached through the default exchange only (`publish_or_keep`): no binding.
        let mut queues = vec![QueueSpec {
            name: s.unrouted_events(),
            arguments: quorum().collect(),
        }];
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

    /// Declares everything, reporting a refusal as lapin's error alone (the tools' use).
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        self.declare_checked(channel).await.map_err(|e| e.source)
    }

    /// Declares everything; declaring twice is a no-op. Declaring over an exchange or queue that
    /// exists with other arguments fails with [`DeclareError`], which names it, the broker's
    /// reason (the argument, its current and its received value) and the wanted arguments.
    pub async fn declare_checked(&self, channel: &Channel) -> Result<(), DeclareError> {
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
                .await
                .map_err(|source| {
                    DeclareError::new(ObjectKind::Exchange, &exchange.name, String::new(), source)
                })?;
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
                .await
                .map_err(|source| {
                    DeclareError::new(ObjectKind::Queue, &queue.name, queue.arguments_text(), source)
                })?;
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
                .await
                .map_err(|source| {
                    DeclareError::new(ObjectKind::Binding, &binding.queue, String::new(), source)
                })?;
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

/// What a failed declaration was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An exchange.
    Exchange,
    /// A queue.
    Queue,
    /// A binding (named by its queue).
    Binding,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Exchange => "exchange",
            ObjectKind::Queue => "queue",
            ObjectKind::Binding => "binding of queue",
        })
    }
}

/// A declaration the broker refused.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct DeclareError {
    /// Exchange, queue or binding.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// The arguments the bridge declares it with (`x-queue-type=quorum, …`), to compare with
    /// the current ones the broker names.
    pub wanted: String,
    /// True when the object exists with other arguments (PRECONDITION_FAILED): retrying cannot
    /// help, so a starting bridge stops with exit 78 instead of looping.
    pub inequivalent: bool,
    /// What lapin reported (for PRECONDITION_FAILED: the argument, received and current value).
    #[source]
    pub source: lapin::Error,
}

impl DeclareError {
    fn new(kind: ObjectKind, name: &str, wanted: String, source: lapin::Error) -> Self {
        let inequivalent = matches!(
            source.kind(),
            lapin::ErrorKind::ProtocolError(e)
                if *e.kind() == lapin::protocol::AMQPErrorKind::Soft(lapin::protocol::AMQPSoftError::PRECONDITIONFAILED)
        );
        Self {
            kind,
            name: name.to_owned(),
            wanted,
            inequivalent,
            source,
        }
    }

    fn describe(&self) -> String {
        if !self.inequivalent {
            return format!("declaring {} {} failed", self.kind, self.name);
        }
        let wanted = if self.wanted.is_empty() {
            String::new()
        } else {
            format!("; the bridge declares it with {}", self.wanted)
        };
        format!(
            "{} {} exists with other arguments than this configuration wants (the broker's words \
             follow: which argument, the value received and the current one){wanted}. Arguments \
             of an existing queue or exchange cannot be changed: either set the configuration back \
             (e.g. topology.delivery_limit) to what the queue has, or migrate: stop the bridges, \
             move the queue's messages elsewhere (shovel or `tixngo-bridge dlq replay` for DLQs), \
             `rabbitmqctl delete_queue {}`, then `tixngo-bridge topology declare` and start again \
             (docs/reliability.md, \"Topology drift\")",
            self.kind, self.name, self.name
        )
    }
}

impl QueueSpec {
    /// `key=value, …` as declared.
    fn arguments_text(&self) -> String {
        self.arguments
            .iter()
            .map(|(k, v)| match v {
                Arg::Str(s) => format!("{k}={s}"),
                Arg::Int(i) => format!("{k}={i}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

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
