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
    /// (retries, dead letters, replays); false for outcome events, whose consumers bind their
    /// own queues.
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
