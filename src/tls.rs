//! PEM files and TLS set-up shared by the broker connection, the TIXnGO client and the SMTP
//! notifier (through the configuration check).
//!
//! Every CA file configured in the bridge is *added* to the system roots, never replaces them.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{} is not a valid PEM file: {detail}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        detail: String,
    },
    /// No `CERTIFICATE` block in the file.
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// No private key block in the file.
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", .path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is encrypted; lapin's rustls set-up takes no key password.
    #[error(
        "{} holds an encrypted private key; decrypt it (openssl pkey -in KEY -out KEY.plain) and protect the file instead",
        .path.display()
    )]
    EncryptedKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("unusable certificate or key: {0}")]
    Config(String),
}

/// Reads the file whole.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file (at least one).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    parse_certificates(path, &read_file(path)?)
}

/// Every certificate of PEM text read from `path` (at least one).
pub fn parse_certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsFileError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// The private key of a PEM file, unencrypted.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    parse_private_key(path, &read_file(path)?)
}

/// The private key of PEM text read from `path`, unencrypted.
pub fn parse_private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    if pem
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
        || pem
            .windows(b"Proc-Type: 4,ENCRYPTED".len())
            .any(|w| w == b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsFileError::EncryptedKey {
            path: path.to_owned(),
        });
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsFileError::NoKey {
            path: path.to_owned(),
        },
        other => TlsFileError::Pem {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    })
}

/// The TLS failure somewhere in `error`'s cause chain (certificate not trusted, expired, wrong
/// name, handshake refused, …), if that is what it is.
pub fn tls_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An `io::Error` wrapping another error does not give it as its `source()` (it gives
        // that error's source): look inside, as deep as I/O errors are nested.
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            current = Some(inner);
            continue;
        }
        current = error.source();
    }
    None
}
