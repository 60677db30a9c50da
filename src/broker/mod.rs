//! Everything that talks AMQP: connecting, the topology, confirmed publishing, failure headers.

pub mod connection;
pub mod headers;
pub mod publisher;
pub mod topology;

pub use connection::{BrokerError, connect};
pub use publisher::{ConfirmedPublisher, Outgoing, PublishError};
pub use topology::Topology;
