//! The simulator over HTTPS: a tokio-rustls accept loop in front of the axum router, so tests
//! and staging set-ups exercise the bridge's TLS client against a real handshake.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long a client may take over its handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The simulator's server certificate and key.
#[derive(Clone)]
pub struct SimTls {
    /// rustls server configuration built from them.
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for SimTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimTls { .. }")
    }
}

impl SimTls {
    /// From PEM text: the certificate chain (server certificate first) and its private key.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, SimTlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SimTlsError::Pem(format!("certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(SimTlsError::Pem("no PEM certificate in the chain".to_owned()));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| SimTlsError::Pem(format!("private key: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| SimTlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| SimTlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// From PEM files (`tixngo-sim --tls-cert FILE --tls-key FILE`).
    pub fn from_files(cert_chain: &Path, key: &Path) -> Result<Self, SimTlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| SimTlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(&read(cert_chain)?, &read(key)?)
    }
}

/// Why the simulator's certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SimTlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not PEM, or no certificate or key in it.
    #[error("not a usable PEM file: {0}")]
    Pem(String),
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("unusable certificate or key: {0}")]
    Config(String),
}

/// A listener handing axum connections whose TLS handshake is done. Handshakes run in their own
/// tasks, so a slow or silent client cannot hold up the others.
pub(crate) struct TlsListener {
    /// The bound address.
    addr: SocketAddr,
    /// Handshaken connections from the accept loop.
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    /// The accept loop, stopped when the listener is dropped.
    task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`.
    pub(crate) fn new(listener: TcpListener, tls: &SimTls) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(tls.config.clone());
        let (sender, incoming) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::debug!(%error, "simulator: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "simulator: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "simulator: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { addr, incoming, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when aborted by our own drop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
