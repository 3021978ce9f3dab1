//! TLS on both sides of the proxy, with rustls: the client-side [`Acceptor`] (certificate
//! and key, optional client-certificate verification) and the [`Connector`]s towards Redis
//! nodes and Sentinels (CA bundle, server name, optional client certificate), chosen per site
//! by [`NodeTlsSet`]. Every file is re-read when it changes ([`files::Reloading`]); nothing
//! here ever logs or returns key material, only paths.

pub mod client;
pub mod files;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use client::{Connector, NodeTlsSet};
pub use server::{Acceptor, HandshakeError};

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds none of what it should.
    #[error("{}: {what}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// A file is not valid PEM.
    #[error("{}: not valid PEM ({reason})", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file's contents cannot be used.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl TlsError {
    fn pem(path: &Path, e: rustls_pki_types::pem::Error) -> Self {
        Self::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    fn invalid(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// The crypto provider both sides use.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2, nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Metric label of a failed handshake: over a certificate (the peer's, or ours as the peer
/// saw it), or anything else (a peer not speaking TLS at all).
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    if is_certificate_error(e) {
        "certificate"
    } else {
        "protocol"
    }
}

fn is_certificate_error(e: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => true,
        Some(rustls::Error::AlertReceived(a)) => matches!(
            a,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
        ),
        _ => false,
    }
}
