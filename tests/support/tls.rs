//! Certificates made at test time with rcgen, written as PEM files to a temporary folder: a
//! test CA with leaf certificates for servers and clients, expired ones, ones for the wrong
//! host name, and (from a second [`Pki`]) ones no other part of the test trusts. Also rustls
//! client configurations for the test client, and in-place file replacement as Kubernetes
//! does it (write beside, then rename over).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::client::{Client, Frame, TlsStream};
use super::procs::{free_port, Proxy, RedisBuilder, RedisServer};

/// What a leaf certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (and client too: Redis uses its certificate both ways).
    Server,
    /// A TLS client only.
    Client,
}

/// How long a leaf certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 2000 to 2100.
    Current,
    /// During 2020 only.
    Expired,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// The certificate (DER), to compare with what a peer presented.
    pub der: Vec<u8>,
}

/// A certificate authority and the folder its files are written to.
pub struct Pki {
    /// Holds every file; removed on drop.
    dir: tempfile::TempDir,
    /// Signs the leaves.
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM file).
    ca: PathBuf,
    /// Last serial number given out.
    serial: AtomicU64,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("ca", &self.ca).finish()
    }
}

// === impl Pki ===

impl Pki {
    /// A new CA whose subject is `name`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, cert.pem()).expect("write CA");
        Self {
            dir,
            issuer: Issuer::new(params, key),
            ca,
            serial: AtomicU64::new(0x1000),
        }
    }

    /// The CA certificate's file.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The folder the files are written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `sans` (DNS names or IP addresses), files `<stem>.crt/.key`.
    pub fn server(&self, stem: &str, sans: &[&str]) -> CertFiles {
        self.issue(stem, sans, Usage::Server, Validity::Current)
    }

    /// A client certificate with common name `stem`.
    pub fn client(&self, stem: &str) -> CertFiles {
        self.issue(stem, &[], Usage::Client, Validity::Current)
    }

    /// A leaf certificate signed by this CA, with a serial number of its own.
    pub fn issue(&self, stem: &str, sans: &[&str], usage: Usage, validity: Validity) -> CertFiles {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, stem);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usage {
            Usage::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (date_time_ymd(2000, 1, 1), date_time_ymd(2100, 1, 1)),
            Validity::Expired => (date_time_ymd(2020, 1, 1), date_time_ymd(2021, 1, 1)),
        };
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let files = CertFiles {
            cert: self.dir.path().join(format!("{stem}.crt")),
            key: self.dir.path().join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }
}

/// Replaces `dest` with the contents of `src` the way a Secret volume changes: the new
/// content is written beside it and renamed over it, so a reader sees the old file or the new
/// one, never half of one.
pub fn replace_file(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("incoming");
    std::fs::copy(src, &tmp).expect("copy new file");
    std::fs::rename(&tmp, dest).expect("rename over");
}

/// Rustls client settings trusting `ca`, presenting `identity` when given.
pub fn client_config(ca: &Path, identity: Option<&CertFiles>) -> Arc<ClientConfig> {
    client_config_versions(ca, identity, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] limited to some protocol versions.
pub fn client_config_versions(
    ca: &Path,
    identity: Option<&CertFiles>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => {
            let chain = CertificateDer::pem_file_iter(&id.cert)
                .expect("read certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate PEM");
            let key = PrivateKeyDer::from_pem_file(&id.key).expect("read key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A `redis-server` that speaks only TLS (`--port 0`) on its port, with `cert` as its
/// certificate, requiring client certificates signed by `pki`'s CA.
pub fn tls_redis(pki: &Pki, cert: &CertFiles) -> RedisServer {
    let port = free_port();
    RedisBuilder::default()
        .port(port)
        .arg("port", "0")
        .arg("tls-port", &port.to_string())
        .arg("tls-cert-file", path_arg(&cert.cert))
        .arg("tls-key-file", path_arg(&cert.key))
        .arg("tls-ca-cert-file", path_arg(pki.ca()))
        .arg("tls-auth-clients", "yes")
        .start()
}

fn path_arg(p: &Path) -> &str {
    let s = p.to_str().expect("UTF-8 path");
    assert!(!s.contains(' '), "redis arguments are split on spaces: {s}");
    s
}

/// A TLS client straight to `redis` (made by [`tls_redis`]), with a client certificate.
pub fn redis_client(pki: &Pki, redis: &RedisServer) -> Client<TlsStream> {
    let id = pki.client("direct-client");
    Client::connect_tls(
        redis.addr(),
        client_config(pki.ca(), Some(&id)),
        "127.0.0.1",
    )
}

/// Waits until a SET through a TLS connection to `addr` succeeds.
pub fn wait_ready_tls(proxy: &Proxy, addr: SocketAddr, config: &Arc<ClientConfig>) {
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        if let Ok(mut c) = Client::try_connect_tls(addr, Arc::clone(config), "127.0.0.1") {
            c.send(&["SET", "__ready__", "1"]);
            if matches!(c.try_read(), Ok(f) if f == Frame::ok()) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("proxy never served over TLS: {}", proxy.log());
}

/// Runs `redis-cli --tls` against `addr` with a client certificate; returns its exit status,
/// stdout and stderr. `stdin` is fed to it (for `--pipe`).
pub fn redis_cli(
    ca: &Path,
    id: &CertFiles,
    addr: SocketAddr,
    args: &[&str],
    stdin: &[u8],
) -> (bool, String, String) {
    use std::io::Write;
    // `timeout`: a proxy that never answers fails the test instead of hanging it.
    let mut child = Command::new("timeout")
        .arg("30")
        .arg("redis-cli")
        .arg("--tls")
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(&id.cert)
        .arg("--key")
        .arg(&id.key)
        .arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli must be installed (scripts/install-deps)");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("feed redis-cli");
    drop(input);
    let out = child.wait_with_output().expect("redis-cli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every TLS file a configuration names, with its key path: `tls.cert`, `backend.tls.ca`,
/// `sites[1].tls.key`, ...
pub fn tls_paths(cfg: &toml::Value) -> Vec<(String, String)> {
    let table = |v: Option<&toml::Value>| v.and_then(toml::Value::as_table).cloned();
    let mut tables = Vec::new();
    tables.extend(table(cfg.get("tls")).map(|t| ("tls".to_string(), t)));
    let backend = cfg.get("backend").and_then(|b| b.get("tls"));
    tables.extend(table(backend).map(|t| ("backend.tls".to_string(), t)));
    let sites = cfg.get("sites").and_then(toml::Value::as_array);
    for (i, site) in sites.into_iter().flatten().enumerate() {
        tables.extend(table(site.get("tls")).map(|t| (format!("sites[{i}].tls"), t)));
    }
    let mut out = Vec::new();
    for (at, t) in tables {
        for key in ["cert", "key", "ca", "client_ca"] {
            if let Some(path) = t.get(key).and_then(toml::Value::as_str) {
                out.push((format!("{at}.{key}"), path.to_string()));
            }
        }
    }
    out
}

/// `text` (a configuration) with every TLS file it names replaced by a usable stand-in from
/// `pki`: its CA for `ca` and `client_ca`, one certificate and the matching key for `cert` and
/// `key`. For running `--check` on a configuration written for another machine.
pub fn with_stand_in_tls_files(text: &str, pki: &Pki) -> String {
    let cfg: toml::Value = toml::from_str(text).expect("TOML");
    let paths = tls_paths(&cfg);
    if paths.is_empty() {
        return text.to_string();
    }
    let leaf = pki.server("stand-in", &["localhost"]);
    let mut out = text.to_string();
    for (at, path) in paths {
        let local = match at.rsplit('.').next() {
            Some("cert") => &leaf.cert,
            Some("key") => &leaf.key,
            _ => &pki.ca,
        };
        let local = local.to_str().expect("UTF-8 path");
        out = out.replace(&format!("\"{path}\""), &format!("\"{local}\""));
    }
    out
}
