//! The client-side TLS handshake. The server configuration is rebuilt when the certificate,
//! key or client CA files change, so a rotated certificate is used from the next handshake on
//! while established connections keep theirs. Each handshake runs under its own deadline and
//! holds a client slot while it runs, so clients that never finish one cost a bounded amount.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::files::{self, Reloading};
use super::{provider, TlsError, VERSIONS};
use crate::config::ListenerTls;

/// Why a client's handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// It did not finish in time.
    #[error("TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    /// The client is not speaking TLS, or its certificate was refused.
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

impl HandshakeError {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            HandshakeError::Timeout(_) => "timeout",
            HandshakeError::Failed(e) => super::failure_reason(e),
        }
    }
}

/// Accepts TLS clients.
#[derive(Debug)]
pub struct Acceptor {
    current: ArcSwap<Settings>,
}

#[derive(Debug)]
struct Settings {
    config: Reloading<ServerConfig>,
    handshake_timeout: Duration,
}

impl Acceptor {
    /// Reads the certificate, key and client CA; fails with the file and the reason.
    pub fn new(settings: &ListenerTls) -> Result<Self, TlsError> {
        Ok(Self {
            current: ArcSwap::from_pointee(Settings::load(settings)?),
        })
    }

    /// Uses other files or settings from the next handshake on (a reload); on error the
    /// current ones stay.
    pub fn replace(&self, settings: &ListenerTls) -> Result<(), TlsError> {
        self.current.store(Arc::new(Settings::load(settings)?));
        Ok(())
    }

    /// Runs the handshake under its deadline.
    pub async fn accept(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, HandshakeError> {
        let (config, deadline) = {
            let s = self.current.load();
            (s.config.get(), s.handshake_timeout)
        };
        let acceptor = TlsAcceptor::from(config);
        let r = match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
            Err(_) => Err(HandshakeError::Timeout(deadline)),
            Ok(r) => r.map_err(HandshakeError::Failed),
        };
        if let Err(e) = &r {
            crate::metrics::tls_handshake_failure(e.kind());
        }
        r
    }
}

impl Settings {
    fn load(settings: &ListenerTls) -> Result<Self, TlsError> {
        let mut paths = vec![settings.cert.clone(), settings.key.clone()];
        paths.extend(settings.client_ca.clone());
        let s = settings.clone();
        let config = Reloading::new(
            "client-side certificate",
            paths,
            Box::new(move || server_config(&s)),
        )?;
        Ok(Self {
            config,
            handshake_timeout: settings.handshake_timeout,
        })
    }
}

fn server_config(s: &ListenerTls) -> Result<ServerConfig, TlsError> {
    let certs = files::certificates(&s.cert)?;
    let key = files::private_key(&s.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::invalid(&s.cert, e))?;
    let builder = match &s.client_ca {
        Some(ca) => {
            let roots = Arc::new(files::roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::invalid(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| key_error(s, e))
}

fn key_error(s: &ListenerTls, e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::invalid(
            &s.key,
            format!("does not match the certificate in {}", s.cert.display()),
        ),
        e => TlsError::invalid(&s.key, e),
    }
}
