//! Certificates, keys and CA bundles read from PEM files, and [`Reloading`]: a value built
//! from files that is rebuilt when any of them changes. cert-manager and Kubernetes rotate
//! secrets in place (a symlink swap), so a change is noticed by comparing each file's
//! modification time, size and inode, checked whenever the value is used: new handshakes see
//! the new files, connections already open keep what they negotiated.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Reads a whole PEM file.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file (a chain: leaf first).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::pem(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_path_buf(),
            what: "no certificate (expected -----BEGIN CERTIFICATE-----)",
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            path: path.to_path_buf(),
            what: "no private key (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key)",
        },
        e => TlsError::pem(path, e),
    })
}

/// A CA bundle as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|e| TlsError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: inode(&meta),
        })
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Builds a value from its files.
pub type Loader<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// A value built from files, rebuilt when they change.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    /// The stamps the current value (or the last failed attempt) was built from.
    state: Mutex<(Vec<Option<Stamp>>, Arc<T>)>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish()
    }
}

impl<T> Reloading<T> {
    /// Builds the first value; failing here fails the start (or the reload) that asked.
    pub fn new(what: &'static str, paths: Vec<PathBuf>, load: Loader<T>) -> Result<Self, TlsError> {
        let stamps = stamps(&paths);
        let value = Arc::new(load()?);
        Ok(Self {
            what,
            paths,
            load,
            state: Mutex::new((stamps, value)),
        })
    }

    /// The current value, rebuilt first if a file changed. A file that cannot be used (a
    /// rotation caught half-way, a bad key) keeps the previous value in use; the failure is
    /// logged once per change of the files.
    pub fn get(&self) -> Arc<T> {
        let now = stamps(&self.paths);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 != now {
            state.0 = now;
            match (self.load)() {
                Ok(v) => {
                    tracing::info!(what = self.what, files = ?self.paths, "TLS files changed; new handshakes use them");
                    crate::metrics::tls_reload(true);
                    state.1 = Arc::new(v);
                }
                Err(e) => {
                    tracing::warn!(what = self.what, error = %e, "TLS files changed but cannot be used; keeping the previous ones");
                    crate::metrics::tls_reload(false);
                }
            }
        }
        Arc::clone(&state.1)
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    paths.iter().map(|p| Stamp::of(p)).collect()
}
