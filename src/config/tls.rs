//! TLS settings: the client-side listener (`[tls]`), and connections to Redis nodes and
//! Sentinels (`[backend.tls]`, overridden per site by `[sites.tls]` or `tls = false`). Only
//! paths and names live here; the files are read when the proxy starts or reloads
//! ([`crate::tls`]), so that `--check` and a reload report unreadable files too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::reader::{Problems, Reader, TableOr};

/// Client-side TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// A separate TLS address beside the plaintext `listen`; `None`: `listen` itself speaks
    /// TLS.
    pub listen: Option<SocketAddr>,
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to; set, clients must present one.
    pub client_ca: Option<PathBuf>,
    /// Deadline for a client's TLS handshake.
    pub handshake_timeout: Duration,
}

/// TLS towards Redis nodes and Sentinels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeTls {
    /// CA bundle the nodes' certificates must chain to (`/etc/ssl/certs/ca-certificates.crt`
    /// for public CAs).
    pub ca: PathBuf,
    /// Client certificate, for nodes that require one (`tls-auth-clients yes`).
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// Name the certificates must carry, instead of each node's own host name.
    pub server_name: Option<String>,
}

/// A site's TLS towards its nodes and Sentinels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SiteTls {
    /// As `[backend.tls]` says.
    #[default]
    Inherit,
    /// Plaintext (`tls = false`), even when `[backend.tls]` is set.
    Off,
    /// These settings.
    On(NodeTls),
}

/// Default client handshake deadline.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn read_listener_tls(mut r: Reader<'_>, p: &mut Problems) -> Option<ListenerTls> {
    let listen = r.get("listen", p);
    let cert = required(&mut r, "cert", p);
    let key = required(&mut r, "key", p);
    let client_ca = r.get("client_ca", p);
    let handshake_timeout = r.duration("handshake_timeout", HANDSHAKE_TIMEOUT, p);
    r.finish(p);
    Some(ListenerTls {
        listen,
        cert: cert?,
        key: key?,
        client_ca,
        handshake_timeout,
    })
}

pub(super) fn read_node_tls(mut r: Reader<'_>, p: &mut Problems) -> Option<NodeTls> {
    let ca = required(&mut r, "ca", p);
    let cert: Option<PathBuf> = r.get("cert", p);
    let key: Option<PathBuf> = r.get("key", p);
    if cert.is_some() != key.is_some() {
        p.add(
            &r.path_of(if cert.is_some() { "key" } else { "cert" }),
            "a client certificate needs both cert and key",
        );
    }
    let server_name = r.get("server_name", p);
    r.finish(p);
    Some(NodeTls {
        ca: ca?,
        cert,
        key,
        server_name,
    })
}

pub(super) fn read_site_tls(r: &mut Reader<'_>, p: &mut Problems) -> SiteTls {
    match r.table_or_bool("tls", p) {
        None | Some(TableOr::Bool(true)) => SiteTls::Inherit,
        Some(TableOr::Bool(false)) => SiteTls::Off,
        Some(TableOr::Table(t)) => read_node_tls(t, p).map_or(SiteTls::Inherit, SiteTls::On),
    }
}

fn required(r: &mut Reader<'_>, key: &str, p: &mut Problems) -> Option<PathBuf> {
    let v = r.get(key, p);
    if v.is_none() {
        p.add(&r.path_of(key), "required (a PEM file path)");
    }
    v
}
