//! Publishing that waits for the broker's confirm: the only way the bridge publishes, so that an
//! original delivery is acked only once what replaces it is safely stored.

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Target exchange (`""` is the default exchange: routing key = queue name).
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// AMQP properties; persistence is forced on publish.
    pub properties: BasicProperties,
    /// Whether an unroutable message is an error. True for anything the bridge must not lose
    /// (retries, dead letters, replays); outcome events go through
    /// [`ConfirmedPublisher::publish_or_keep`], which sets it and keeps an unroutable event in
    /// the `…events.unrouted` queue.
    pub mandatory: bool,
}

/// Why a publish did not end in a positive confirm.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The channel or connection failed before the confirm arrived.
    #[error("publish to {exchange:?} with key {routing_key:?} failed")]
    Channel {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// The broker refused the message (e.g. a full queue with `reject-publish`).
    #[error("broker nacked the message to {exchange:?} with key {routing_key:?}")]
    Nacked {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
    /// A mandatory message matched no queue: the topology is missing something.
    #[error("no queue is bound for {exchange:?} with key {routing_key:?}; is the topology declared?")]
    Unroutable {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
}

/// Where a published event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// A queue was bound for it.
    Routed,
    /// No queue was bound: it was kept in the `…events.unrouted` queue instead.
    Kept,
}

/// Header of a kept event: the exchange it was published to.
pub const UNROUTED_EXCHANGE: &str = "x-unrouted-exchange";
/// Header of a kept event: the routing key nothing was bound for.
pub const UNROUTED_ROUTING_KEY: &str = "x-unrouted-routing-key";

/// A channel in confirm mode. Cheap to clone; clones share the channel, and concurrent
/// publishes are confirmed independently.
#[derive(Clone)]
pub struct ConfirmedPublisher {
    /// The confirm-mode channel.
    channel: Channel,
}

impl ConfirmedPublisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Self { channel })
    }

    /// The underlying channel (for declarations on the same channel).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes an event (for S-360) mandatory; when no queue is bound for it (S-360's consumer
    /// not deployed, a binding typo), publishes it instead to `keep_in` through the default
    /// exchange, with headers naming where it was going, so that no event is dropped unseen.
    /// Both publishes are confirmed before this returns.
    pub async fn publish_or_keep(&self, message: Outgoing, keep_in: &str) -> Result<Delivered, PublishError> {
        let kept = Outgoing {
            mandatory: true,
            ..message.clone()
        };
        match self.publish(kept).await {
            Ok(()) => Ok(Delivered::Routed),
            Err(PublishError::Unroutable { .. }) => {
                let mut headers = message.properties.headers().clone().unwrap_or_default();
                headers.insert(
                    UNROUTED_EXCHANGE.into(),
                    lapin::types::AMQPValue::LongString(message.exchange.as_str().into()),
                );
                headers.insert(
                    UNROUTED_ROUTING_KEY.into(),
                    lapin::types::AMQPValue::LongString(message.routing_key.as_str().into()),
                );
                self.publish(Outgoing {
                    exchange: String::new(),
                    routing_key: keep_in.to_owned(),
                    body: message.body,
                    properties: message.properties.with_headers(headers),
                    mandatory: true,
                })
                .await?;
                Ok(Delivered::Kept)
            }
            Err(error) => Err(error),
        }
    }

    /// Publishes persistently and waits for the confirm.
    pub async fn publish(&self, message: Outgoing) -> Result<(), PublishError> {
        let Outgoing {
            exchange,
            routing_key,
            body,
            properties,
            mandatory,
        } = message;
        let channel_error = |source| PublishError::Channel {
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
            source,
        };
        let confirm = self
            .channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                &body,
                properties.with_delivery_mode(2),
            )
            .await
            .map_err(channel_error)?
            .await
            .map_err(channel_error)?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable {
                exchange,
                routing_key,
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked {
                exchange,
                routing_key,
            }),
            // Confirm mode is set in `open`; reaching this means the channel was replaced under us.
            Confirmation::NotRequested => Err(PublishError::Nacked {
                exchange,
                routing_key,
            }),
        }
    }
}
