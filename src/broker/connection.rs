//! Opening AMQP connections. Reconnecting is the supervisor's job (see `crate::engine`): lapin's
//! own auto-recovery is not relied upon.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;

use crate::config::{AmqpSettings, redact_url};

/// Why the broker could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The connection could not be opened.
    #[error("cannot connect to RabbitMQ at {url}")]
    Connect {
        /// The URL with its password redacted.
        url: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// The connection did not open in time.
    #[error("timed out connecting to RabbitMQ at {url} after {after:?}")]
    Timeout {
        /// The URL with its password redacted.
        url: String,
        /// How long we waited.
        after: Duration,
    },
    /// An AMQP operation failed on an open connection.
    #[error("RabbitMQ {operation} failed")]
    Amqp {
        /// What we were doing.
        operation: &'static str,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
}

impl BrokerError {
    /// Wraps a lapin error with the operation it interrupted.
    pub fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> Self {
        move |source| Self::Amqp { operation, source }
    }
}

/// Opens one connection, naming it so `rabbitmqctl list_connections` tells replicas apart.
pub async fn connect(settings: &AmqpSettings, role: &str) -> Result<Connection, BrokerError> {
    let url = settings.url.expose_secret();
    let name = format!("{} {role} pid={}", settings.connection_name, std::process::id());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let timeout = Duration::from_secs(15);
    match tokio::time::timeout(timeout, Connection::connect(url, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => Err(BrokerError::Connect {
            url: redact_url(url),
            source,
        }),
        Err(_) => Err(BrokerError::Timeout {
            url: redact_url(url),
            after: timeout,
        }),
    }
}
