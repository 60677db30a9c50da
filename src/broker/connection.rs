//! Opening AMQP connections. Reconnecting is the supervisor's job (see `crate::engine`): lapin's
//! own auto-recovery is not relied upon.

use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;

use crate::config::{AmqpSettings, AmqpTlsSettings, redact_url};
use crate::tls::TlsFileError;

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
    /// A TLS file of `[amqp.tls]` cannot be used (it changed since the configuration check).
    #[error("cannot set up TLS to RabbitMQ: {0}")]
    TlsFile(#[from] TlsFileError),
    /// lapin's runtime could not be set up.
    #[error("cannot set up the AMQP runtime")]
    Runtime(#[source] lapin::Error),
    /// The topology could not be declared; [`crate::broker::topology::DeclareError::inequivalent`]
    /// tells a queue that exists with other arguments (exit 78 at start-up) from a passing failure.
    /// Boxed: it names the queue and both argument sets, and every error type that carries a
    /// `BrokerError` would grow by it.
    #[error(transparent)]
    Declare(Box<crate::broker::topology::DeclareError>),
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

impl From<crate::broker::topology::DeclareError> for BrokerError {
    fn from(error: crate::broker::topology::DeclareError) -> Self {
        Self::Declare(Box::new(error))
    }
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
    let tls = tls_config(&settings.tls)?;
    let runtime = lapin::runtime::default_runtime().map_err(BrokerError::Runtime)?;
    match tokio::time::timeout(
        timeout,
        Connection::connect_with_config(url, properties, tls, runtime),
    )
    .await
    {
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

/// lapin's TLS settings from `[amqp.tls]`, files read at each connection so a renewed certificate
/// is picked up on the next reconnect. lapin (rustls) adds `cert_chain` to the system roots and
/// takes the client identity as PEM certificate chain plus unencrypted PEM key.
fn tls_config(settings: &AmqpTlsSettings) -> Result<OwnedTLSConfig, TlsFileError> {
    let cert_chain = match &settings.ca_file {
        Some(path) => {
            let pem = crate::tls::read_file(path)?;
            crate::tls::parse_certificates(path, &pem)?;
            Some(String::from_utf8(pem).map_err(|_| TlsFileError::Pem {
                path: path.clone(),
                detail: "not UTF-8 text".into(),
            })?)
        }
        None => None,
    };
    let identity = match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(cert), Some(key)) => {
            let pem = crate::tls::read_file(cert)?;
            crate::tls::parse_certificates(cert, &pem)?;
            let key_pem = crate::tls::read_file(key)?;
            crate::tls::parse_private_key(key, &key_pem)?;
            Some(OwnedIdentity::PKCS8 { pem, key: key_pem })
        }
        _ => None,
    };
    Ok(OwnedTLSConfig { identity, cert_chain })
}
