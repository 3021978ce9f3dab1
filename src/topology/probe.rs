//! One node's state, read on the proxy's own probe connection to it: `PING` and
//! `INFO server replication persistence modules` in one round trip, under the probe deadline.
//! The connection is kept between rounds and reopened after any failure. The first round that
//! meets a process the proxy knows nothing of also reads what it knows of commands
//! ([`super::catalog`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::catalog::{Catalog, Catalogs, Identity};
use crate::backend::conn::BoxIo;
use crate::backend::handshake::{hello_command, info_field, read_reply};
use crate::backend::{BackendAuth, ConnError, Dialer, Endpoint};
use crate::resp::command::learned::Learned;
use crate::resp::decode::Reply;
use crate::resp::reply::Proto;
use crate::resp::Request;

/// A node's replication role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes (unless loading or failing over).
    Master,
    /// Replicates from `master` (`host:port` as the replica was told).
    Replica {
        /// Its master's address as configured on the replica.
        master: String,
        /// `master_link_status:up`.
        link_up: bool,
    },
    /// Anything else the node reports.
    Other(String),
}

/// What one probe round saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Process identity (changes on restart).
    pub run_id: String,
    /// The server's own version: `valkey_version` on Valkey (whose `redis_version` is a fixed
    /// compatibility value), `redis_version` elsewhere.
    pub version: String,
    /// `valkey` or `redis`, as the server names itself in `HELLO`.
    pub server: &'static str,
    /// Role.
    pub role: Role,
    /// `master_replid`: identity of the history it serves.
    pub replid: String,
    /// `master_replid2`: the history it was promoted from, if any.
    pub replid2: String,
    /// `master_repl_offset`.
    pub offset: i64,
    /// `second_repl_offset` (-1 when `replid2` is unset).
    pub second_offset: i64,
    /// Loading its dataset (answers ROLE, refuses commands).
    pub loading: bool,
    /// `master_failover_state` (`no-failover` normally).
    pub failover_state: String,
    /// `connected_slaves`.
    pub replicas: u32,
    /// Loaded modules: name and version (INFO modules).
    pub modules: Vec<(String, i64)>,
    /// Command names the node knows (`COMMAND LIST`, lower case), when it answers that.
    pub commands: Option<Arc<HashSet<String>>>,
    /// The flags of the commands the compiled table lacks, and of every container's
    /// subcommands (`COMMAND INFO`), when it answers that.
    pub learned: Option<Arc<Learned>>,
}

impl Observation {
    /// Whether the node can take writes now.
    pub fn writable_master(&self) -> bool {
        self.role == Role::Master && !self.loading && self.failover_state == "no-failover"
    }

    /// Parses the INFO text of one round.
    pub fn from_info(info: &str) -> Result<Self, String> {
        let field = |name: &str| info_field(info, name).map(str::to_string);
        let num = |name: &str| field(name).and_then(|v| v.parse::<i64>().ok());
        let role = match field("role").as_deref() {
            Some("master") => Role::Master,
            Some("slave") => Role::Replica {
                master: format!(
                    "{}:{}",
                    field("master_host").unwrap_or_default(),
                    field("master_port").unwrap_or_default()
                ),
                link_up: field("master_link_status").as_deref() == Some("up"),
            },
            Some(other) => Role::Other(other.to_string()),
            None => return Err("INFO without role".into()),
        };
        Ok(Self {
            run_id: field("run_id").ok_or("INFO without run_id")?,
            version: field("valkey_version")
                .or_else(|| field("redis_version"))
                .unwrap_or_default(),
            server: if field("valkey_version").is_some() {
                "valkey"
            } else {
                "redis"
            },
            role,
            replid: field("master_replid").unwrap_or_default(),
            replid2: field("master_replid2").unwrap_or_default(),
            offset: num("master_repl_offset").unwrap_or(0),
            second_offset: num("second_repl_offset").unwrap_or(-1),
            loading: num("loading").unwrap_or(0) != 0,
            failover_state: field("master_failover_state").unwrap_or_else(|| "no-failover".into()),
            replicas: num("connected_slaves").unwrap_or(0) as u32,
            modules: info.lines().filter_map(parse_module).collect(),
            commands: None,
            learned: None,
        })
    }
}

/// Whether an error reply is Redis's `-BUSY` (a script or function running past the busy
/// threshold; not `BUSYKEY`, nor `BUSYGROUP`).
pub fn is_busy(error: &str) -> bool {
    error.starts_with("BUSY ")
}

/// Parses `module:name=search,ver=20608,...`.
fn parse_module(line: &str) -> Option<(String, i64)> {
    let rest = line.strip_prefix("module:")?;
    let mut name = None;
    let mut ver = 0;
    for kv in rest.trim_end().split(',') {
        match kv.split_once('=') {
            Some(("name", v)) => name = Some(v.to_string()),
            Some(("ver", v)) => ver = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    name.map(|n| (n, ver))
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting or talking failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// No answer within the probe deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The node answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The node answered `-BUSY`: a script or function runs past the busy threshold. The node
    /// is alive and keeps its role, but answers nothing else until the script ends.
    #[error("{0}")]
    Busy(String),
    /// The answer made no sense.
    #[error("unexpected answer: {0}")]
    Malformed(String),
}

/// A node's probe connection.
pub struct Prober {
    endpoint: Endpoint,
    dialer: Dialer,
    auth: BackendAuth,
    deadline: Duration,
    conn: Option<(BoxIo, BytesMut)>,
    /// What the node's process knows of commands, and for which process.
    catalog: Option<(Identity, Catalog)>,
    /// Catalogs shared by every prober.
    catalogs: Arc<Catalogs>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Prober {
    /// A prober for `endpoint`; `deadline` bounds each round (connecting included). What a
    /// process knows of commands is read once per process, into `catalogs`.
    pub fn new(
        endpoint: Endpoint,
        (dialer, auth): (Dialer, BackendAuth),
        deadline: Duration,
        catalogs: Arc<Catalogs>,
    ) -> Self {
        Self {
            endpoint,
            dialer,
            auth,
            deadline,
            conn: None,
            catalog: None,
            catalogs,
        }
    }

    /// The node probed.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// One round. Any failure but a busy node drops the connection so the next round starts
    /// afresh (a busy node's connection is in sync: both replies were read).
    pub async fn probe(&mut self) -> Result<Observation, ProbeError> {
        let result = match timeout(self.deadline, self.round()).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout(self.deadline)),
        };
        if matches!(result, Err(ref e) if !matches!(e, ProbeError::Busy(_))) {
            self.conn = None;
        }
        result
    }

    async fn round(&mut self) -> Result<Observation, ProbeError> {
        if self.conn.is_none() {
            let conn = self.connect().await?;
            self.conn = Some(conn);
        }
        let Some((io, rbuf)) = self.conn.as_mut() else {
            return Err(ProbeError::Malformed("no connection".into()));
        };
        let mut out = BytesMut::new();
        out.extend_from_slice(Request::from_args(&["PING"]).bytes());
        out.extend_from_slice(
            Request::from_args(&["INFO", "server", "replication", "persistence", "modules"])
                .bytes(),
        );
        io.write_all(&out).await.map_err(ConnError::from)?;
        let pong = read_reply(io, rbuf, Proto::Resp3).await?;
        let info = read_reply(io, rbuf, Proto::Resp3).await?;
        // A script may end between the two commands: INFO then tells the node's state.
        if let Some(e) = pong.as_error().filter(|e| !is_busy(e)) {
            return Err(ProbeError::Refused(e.to_string()));
        }
        let text = match (&info, info.as_text()) {
            (_, Some(t)) => t,
            (Reply::Error(e), _) if is_busy(e) => return Err(ProbeError::Busy(e.clone())),
            (Reply::Error(e), _) => return Err(ProbeError::Refused(e.clone())),
            _ => return Err(ProbeError::Malformed(format!("{info:?}"))),
        };
        let mut obs = Observation::from_info(&text).map_err(ProbeError::Malformed)?;
        let catalog = self.catalog_of(&obs).await?;
        obs.commands = catalog.commands;
        obs.learned = catalog.learned;
        Ok(obs)
    }

    async fn connect(&mut self) -> Result<(BoxIo, BytesMut), ProbeError> {
        let mut io = self.dialer.connect(&self.endpoint).await?;
        io.write_all(hello_command(Proto::Resp3, &self.auth).bytes())
            .await
            .map_err(ConnError::from)?;
        let mut rbuf = BytesMut::with_capacity(8192);
        let hello = read_reply(&mut io, &mut rbuf, Proto::Resp3).await?;
        if let Some(e) = hello.as_error() {
            return Err(ProbeError::Refused(e.to_string()));
        }
        Ok((io, rbuf))
    }

    /// What the process `obs` was read from knows of commands: remembered, or asked now on
    /// the probe connection and remembered.
    async fn catalog_of(&mut self, obs: &Observation) -> Result<Catalog, ProbeError> {
        if let Some((known, catalog)) = &self.catalog {
            if known.is(&obs.run_id, &obs.version, &obs.modules) {
                return Ok(catalog.clone());
            }
        }
        let id = Identity::new(&obs.run_id, &obs.version, &obs.modules);
        let catalog = match self.catalogs.get(&id) {
            Some(c) => c,
            None => match self.read_catalog().await? {
                Some(c) => {
                    self.catalogs.put(id.clone(), c.clone());
                    c
                }
                // Busy: keep what this node said before (COMMAND is refused while busy).
                None => return Ok(self.catalog.clone().map(|(_, c)| c).unwrap_or_default()),
            },
        };
        self.catalog = Some((id, catalog.clone()));
        Ok(catalog)
    }

    /// Asks the node for its command list and for the flags of what the table lacks.
    /// `None` when the node is busy.
    async fn read_catalog(&mut self) -> Result<Option<Catalog>, ProbeError> {
        let Some((io, rbuf)) = self.conn.as_mut() else {
            return Err(ProbeError::Malformed("no connection".into()));
        };
        io.write_all(Request::from_args(&["COMMAND", "LIST"]).bytes())
            .await
            .map_err(ConnError::from)?;
        // Older servers (and ACL users without +command) answer an error: the proxy then
        // simply does not know which commands the node lacks.
        let list = read_reply(io, rbuf, Proto::Resp3).await?;
        if list.as_error().is_some_and(is_busy) {
            return Ok(None);
        }
        let commands: Option<Arc<HashSet<String>>> = list.as_array().map(|names| {
            Arc::new(
                names
                    .iter()
                    .filter_map(|n| n.as_text().map(|t| t.to_ascii_lowercase()))
                    .collect(),
            )
        });
        // In RESP2: RESP3 answers COMMAND INFO with sets of maps, which the decoder refuses.
        let mut out = BytesMut::new();
        out.extend_from_slice(hello_command(Proto::Resp2, &self.auth).bytes());
        out.extend_from_slice(learn_request(commands.as_deref()).bytes());
        out.extend_from_slice(hello_command(Proto::Resp3, &self.auth).bytes());
        io.write_all(&out).await.map_err(ConnError::from)?;
        read_reply(io, rbuf, Proto::Resp2).await?;
        let entries = read_reply(io, rbuf, Proto::Resp2).await?;
        read_reply(io, rbuf, Proto::Resp3).await?;
        let learned = entries.as_array().map(|e| Arc::new(Learned::from_info(e)));
        Ok(Some(Catalog { commands, learned }))
    }
}

/// `COMMAND INFO` for every name the node knows and the compiled table lacks, and for every
/// container of the table (for the subcommands the table lacks).
fn learn_request(known: Option<&HashSet<String>>) -> Request {
    let mut args: Vec<String> = vec!["COMMAND".into(), "INFO".into()];
    args.extend(
        crate::resp::command::containers()
            .into_iter()
            .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase()),
    );
    if let Some(names) = known {
        let mut unknown: Vec<&String> = names
            .iter()
            .filter(|n| !crate::resp::command::in_table(n.as_bytes()))
            .collect();
        unknown.sort();
        args.extend(unknown.into_iter().cloned());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Request::from_args(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_master_and_replica_info() {
        let master = "run_id:aaa\r\nredis_version:7.0.15\r\nloading:0\r\nrole:master\r\nconnected_slaves:2\r\nmaster_failover_state:no-failover\r\nmaster_replid:r1\r\nmaster_replid2:0000\r\nmaster_repl_offset:42\r\nsecond_repl_offset:-1\r\n";
        let o = Observation::from_info(master).unwrap();
        assert_eq!(o.role, Role::Master);
        assert!(o.writable_master());
        assert_eq!((o.offset, o.replicas, o.replid.as_str()), (42, 2, "r1"));
        let replica = "run_id:bbb\r\nloading:0\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_replid:r1\r\n";
        let o = Observation::from_info(replica).unwrap();
        assert_eq!(
            o.role,
            Role::Replica {
                master: "10.0.0.1:6379".into(),
                link_up: true
            }
        );
        assert!(!o.writable_master());
        assert!(Observation::from_info("run_id:x\r\n").is_err());
        let with_module = format!("{master}module:name=search,ver=20608,api=1\r\n");
        let o = Observation::from_info(&with_module).unwrap();
        assert_eq!(o.modules, vec![("search".to_string(), 20608)]);
    }
}
