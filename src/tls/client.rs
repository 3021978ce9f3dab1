//! TLS towards Redis nodes and Sentinels. A [`Connector`] checks the node's certificate
//! against the configured CA bundle and against the name the node was configured or announced
//! under (never the IP it resolved to, unless that is the name), and presents a client
//! certificate when configured. [`NodeTlsSet`] picks the connector of each site; sites with
//! the same settings share one, and a reload keeps the connectors whose settings did not
//! change, so unchanged nodes keep their connections.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::files::{self, Reloading};
use super::{provider, TlsError, VERSIONS};
use crate::config::{NodeTls, Site, SiteTls};

/// Opens TLS connections to nodes of one or more sites.
#[derive(Debug)]
pub struct Connector {
    settings: NodeTls,
    config: Reloading<ClientConfig>,
}

impl Connector {
    /// Reads the CA bundle and client certificate; fails with the file and the reason.
    pub fn new(settings: &NodeTls) -> Result<Self, TlsError> {
        let mut paths = vec![settings.ca.clone()];
        paths.extend(settings.cert.clone());
        paths.extend(settings.key.clone());
        let s = settings.clone();
        let config = Reloading::new(
            "node certificate",
            paths,
            Box::new(move || client_config(&s)),
        )?;
        Ok(Self {
            settings: settings.clone(),
            config,
        })
    }

    /// The TLS handshake over `tcp` with a node known as `host` (a DNS name or an IP).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = self.settings.server_name.as_deref().unwrap_or(host);
        // An absolute name (an SRV target) is the same name without its root dot.
        let name = name.strip_suffix('.').unwrap_or(name);
        let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name:?} is not a valid TLS server name"),
            )
        })?;
        TlsConnector::from(self.config.get())
            .connect(server_name, tcp)
            .await
    }
}

fn client_config(s: &NodeTls) -> Result<ClientConfig, TlsError> {
    let roots = files::roots(&s.ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::invalid(&s.ca, e))?
        .with_root_certificates(roots);
    match (&s.cert, &s.key) {
        (Some(cert), Some(key)) => {
            let chain = files::certificates(cert)?;
            let key_der = files::private_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::invalid(
                        key,
                        format!("does not match the certificate in {}", cert.display()),
                    ),
                    e => TlsError::invalid(key, e),
                })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The connector of every site (`None`: plaintext).
#[derive(Debug, Default)]
pub struct NodeTlsSet {
    default: Option<Arc<Connector>>,
    sites: HashMap<String, Option<Arc<Connector>>>,
}

impl NodeTlsSet {
    /// Builds the connectors for `[backend.tls]` and each site, reusing those of `prev` whose
    /// settings are unchanged. An error names the setting (`backend.tls`, `sites[1].tls`).
    pub fn build(
        default: Option<&NodeTls>,
        sites: &[Site],
        prev: Option<&NodeTlsSet>,
    ) -> Result<Self, (String, TlsError)> {
        let mut made: HashMap<NodeTls, Arc<Connector>> = HashMap::new();
        if let Some(prev) = prev {
            for c in prev.default.iter().chain(prev.sites.values().flatten()) {
                made.insert(c.settings.clone(), Arc::clone(c));
            }
        }
        let mut get = |s: &NodeTls, at: String| -> Result<Arc<Connector>, (String, TlsError)> {
            if let Some(c) = made.get(s) {
                return Ok(Arc::clone(c));
            }
            let c = Arc::new(Connector::new(s).map_err(|e| (at, e))?);
            made.insert(s.clone(), Arc::clone(&c));
            Ok(c)
        };
        let default = match default {
            Some(s) => Some(get(s, "backend.tls".into())?),
            None => None,
        };
        let mut by_site = HashMap::new();
        for (i, site) in sites.iter().enumerate() {
            let c = match &site.tls {
                SiteTls::Inherit => default.clone(),
                SiteTls::Off => None,
                SiteTls::On(s) => Some(get(s, format!("sites[{i}].tls"))?),
            };
            by_site.insert(site.name.clone(), c);
        }
        Ok(Self {
            default,
            sites: by_site,
        })
    }

    /// The connector for a site's nodes and Sentinels (`[backend.tls]` for a site not
    /// configured, such as the nodes learned from Sentinel).
    pub fn for_site(&self, name: &str) -> Option<Arc<Connector>> {
        match self.sites.get(name) {
            Some(c) => c.clone(),
            None => self.default.clone(),
        }
    }
}
