//! Everything that talks AMQP: connecting, the topology, confirmed publishing, failure headers.

pub mod connection;
pub mod death;
pub mod headers;
pub mod publisher;
pub mod topology;

pub use connection::{BrokerError, connect};
pub use publisher::{ConfirmedPublisher, Outgoing, PublishError};
pub use topology::Topology;

/// What every consuming part opens at the start of a broker session.
pub struct Session {
    /// The connection; closing it returns every unacked delivery to its queue.
    pub connection: lapin::Connection,
    /// Confirm-mode channel for every republish.
    pub publisher: ConfirmedPublisher,
    /// Consumer channel with `prefetch` set.
    pub channel: lapin::Channel,
}

/// Connects as `role`, declares the topology and opens a consumer channel with `prefetch`
/// (per consumer).
pub async fn open_session(
    settings: &crate::config::Settings,
    role: &str,
    prefetch: u16,
) -> Result<Session, BrokerError> {
    let (connection, publisher) = open_publisher(settings, role).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(BrokerError::amqp("open consumer channel"))?;
    channel
        .basic_qos(prefetch, lapin::options::BasicQosOptions::default())
        .await
        .map_err(BrokerError::amqp("basic.qos"))?;
    Ok(Session {
        connection,
        publisher,
        channel,
    })
}

/// Connects as `role`, opens a confirm-mode channel and declares the topology on it: all a
/// publishing-only command needs.
pub async fn open_publisher(
    settings: &crate::config::Settings,
    role: &str,
) -> Result<(lapin::Connection, ConfirmedPublisher), BrokerError> {
    let connection = connect(&settings.amqp, role).await?;
    let publisher = ConfirmedPublisher::open(&connection)
        .await
        .map_err(BrokerError::amqp("open publisher channel"))?;
    Topology::new(&settings.topology)
        .declare_checked(publisher.channel())
        .await?;
    Ok((connection, publisher))
}
