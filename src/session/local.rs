//! Commands the proxy answers from the client's own state: PING, ECHO, SELECT, HELLO, AUTH,
//! CLIENT ID/INFO/LIST/SETNAME/GETNAME/SETINFO/REPLY, ACL WHOAMI. They behave as Redis does
//! (same replies, same errors) because the state they touch is the client's, and the proxy
//! keeps it. While the client is pinned to a dedicated connection, PING and ECHO go there
//! instead, so that their replies keep their place among the connection's other replies.

use bytes::Bytes;

use super::batch::Single;
use super::compose::Compose;
use super::state::ReplyMode as ClientReply;
use super::Session;
use crate::resp::command::{Kind, Local};
use crate::resp::reply::{ClientError, Proto, Value, OK, PONG};
use crate::resp::scan::parse_int;
use crate::resp::Request;

/// Version reported by HELLO before any node was seen: the oldest Redis the proxy supports.
const MIN_SUPPORTED_VERSION: &str = "6.2.0";

impl Session {
    pub(super) async fn local(&mut self, l: Local, req: Request, silent: bool) {
        match l {
            Local::Ping | Local::Echo if self.conn.is_pinned() => {
                let route = self.route_data().await;
                if self.routed(route, &req, silent).await {
                    self.batch_command(&req, Kind::Read, silent).await;
                }
            }
            Local::Ping => self.ping(&req, silent).await,
            Local::Echo => {
                let arg = req.args()[1].to_vec();
                self.reply_value(Value::bulk(arg), silent).await;
            }
            Local::Quit => self.quit().await,
            Local::Reset => self.reset(req).await,
            Local::Select => self.select(req, silent).await,
            Local::Hello => self.hello(&req, silent).await,
            Local::Auth => self.auth(&req, silent).await,
            Local::ClientId => self.reply_value(Value::Int(self.id() as i64), silent).await,
            Local::ClientInfo => {
                self.show();
                let line = self.info.line() + "\n";
                self.reply_value(Value::Verbatim(line), silent).await;
            }
            Local::ClientList => {
                self.show();
                self.client_list(&req, silent).await
            }
            Local::ClientSetName => self.client_setname(&req, silent).await,
            Local::ClientGetName => {
                let v = self.state.name.clone().map_or(Value::Null, Value::Bulk);
                self.reply_value(v, silent).await;
            }
            Local::ClientSetInfo => self.client_setinfo(&req, silent).await,
            Local::ClientReply => self.client_reply(&req).await,
            // Capabilities concern redirections (Valkey's `redirect`), which the proxy never
            // sends: accepting them changes nothing, as with a server that has none to use.
            Local::ClientCapa => self.reply(OK, silent).await,
            Local::AclWhoami => {
                let name = self.state.user_name().to_string();
                self.reply_value(Value::bulk(name), silent).await;
            }
        }
    }

    pub(super) async fn reply_value(&mut self, v: Value, silent: bool) {
        let bytes = v.to_bytes(self.state.proto);
        self.reply(&bytes, silent).await;
    }

    async fn ping(&mut self, req: &Request, silent: bool) {
        // PING takes at most one argument (Redis checks this in the command itself).
        if req.argc() > 2 {
            let command = "ping".to_string();
            return self
                .reply_error(ClientError::Arity { command }, silent)
                .await;
        }
        match req.args().get(1) {
            Some(arg) => self.reply_value(Value::bulk(arg.to_vec()), silent).await,
            None => self.reply(PONG, silent).await,
        }
    }

    /// SELECT: the database must exist on the master. The proxy learns that by opening (or
    /// finding) the shared connections for it, whose handshake selects it.
    async fn select(&mut self, req: Request, silent: bool) {
        let args = req.args();
        let Some(db) = parse_int(args[1]) else {
            return self.reply_error(ClientError::NotInteger, silent).await;
        };
        let Ok(db) = u32::try_from(db) else {
            return self
                .reply_error(ClientError::DbIndexOutOfRange, silent)
                .await;
        };
        if let Ok(mut key) = self.shared_key() {
            key.db = db;
            if let Ok(lane) = self.ctx.pool.lane(&key) {
                if let Err(e) = lane.ready(self.ctx.select_timeout).await {
                    if let crate::backend::ConnError::Rejected { reply, .. } = e.as_ref() {
                        self.ctx.pool.discard(&key);
                        let bytes = Value::Error(reply.clone()).to_bytes(self.state.proto);
                        return self.reply(&bytes, silent).await;
                    }
                }
            }
        }
        if self.conn.is_pinned() {
            let route = self.route_data().await;
            if !self.routed(route, &req, silent).await {
                return;
            }
            if let super::route::Conn::Pinned { dirty, .. } = &mut self.conn {
                *dirty = true;
            }
            self.state.db = db;
            return self
                .send_single(Single::command(&req, Kind::Write, 1, true), silent)
                .await;
        }
        self.state.db = db;
        self.reply(OK, silent).await;
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]].
    async fn hello(&mut self, req: &Request, silent: bool) {
        let args = req.args();
        let mut proto = self.state.proto;
        if let Some(v) = args.get(1) {
            proto = match parse_int(v) {
                Some(2) => Proto::Resp2,
                Some(3) => Proto::Resp3,
                Some(_) => return self.reply_error(ClientError::NoProto, silent).await,
                None => {
                    return self
                        .reply_error(ClientError::HelloProtoNotInteger, silent)
                        .await
                }
            };
        }
        let mut auth = None;
        let mut name = None;
        let mut i = 2;
        while i < args.len() {
            let opt = args[i];
            if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < args.len() {
                auth = Some((args[i + 1], args[i + 2]));
                i += 3;
            } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < args.len() {
                name = Some(args[i + 1]);
                i += 2;
            } else {
                let option = String::from_utf8_lossy(opt).into_owned();
                return self
                    .reply_error(ClientError::HelloSyntax { option }, silent)
                    .await;
            }
        }
        let user = match auth {
            Some((u, p)) => match self.authenticate(req, Some(u), p, silent).await {
                Some(user) => Some(user),
                None => return,
            },
            None if !self.state.authenticated() => {
                return self.reply_error(ClientError::HelloNoAuth, silent).await
            }
            None => None,
        };
        if let Some(n) = name {
            if !valid_name(n) {
                return self.reply_error(ClientError::BadClientName, silent).await;
            }
        }
        let switch_pinned = proto != self.state.proto && self.conn.is_pinned();
        if switch_pinned && !self.pins().is_some_and(|p| only_tracking(&p)) {
            return self
                .reply_error(ClientError::ProtoChangePinned, silent)
                .await;
        }
        if switch_pinned && !self.switch_pinned_proto(proto).await {
            return;
        }
        if let Some(user) = user {
            self.state.user = Some(user);
        }
        if let Some(n) = name {
            self.state.name = (!n.is_empty()).then(|| Bytes::copy_from_slice(n));
        }
        self.state.proto = proto;
        let reply = self.hello_reply();
        self.reply_value(reply, silent).await;
    }

    /// A tracking client changes protocol, as Redis allows: the dedicated connection its
    /// tracking lives on changes with it (`HELLO` sent there, its reply hidden), and is not
    /// reused afterwards. Returns false when the connection cannot be had (the route's answer
    /// was given).
    async fn switch_pinned_proto(&mut self, proto: Proto) -> bool {
        let route = self.route_data().await;
        let req = Request::from_args(&["HELLO", &proto.number().to_string()]);
        if !self.routed(route, &req, false).await {
            return false;
        }
        if let super::route::Conn::Pinned { dirty, .. } = &mut self.conn {
            *dirty = true;
        }
        let mut parts = Compose::default();
        parts.hidden(req.bytes(), Kind::Tracking, 1);
        self.send_single(Single::of(parts.finish(), true), false)
            .await;
        true
    }

    /// The HELLO map: the proxy presents itself as the master it fronts.
    fn hello_reply(&self) -> Value {
        let topo = self.ctx.topology.load();
        let master = topo.master.as_ref();
        let version = master
            .map(|m| m.version.clone())
            .or_else(|| {
                topo.nodes
                    .iter()
                    .find_map(|n| n.seen.as_ref().map(|o| o.version.clone()))
            })
            .unwrap_or_else(|| MIN_SUPPORTED_VERSION.to_string());
        let modules = master
            .map(|m| {
                m.modules
                    .iter()
                    .map(|(name, ver)| {
                        Value::Map(vec![
                            (Value::bulk("name"), Value::bulk(name.clone())),
                            (Value::bulk("ver"), Value::Int(*ver)),
                        ])
                    })
                    .collect()
            })
            .unwrap_or_default();
        let server = master
            .and_then(|m| {
                topo.nodes
                    .iter()
                    .find(|n| n.endpoint.addr == m.node.endpoint.addr)
                    .and_then(|n| n.seen.as_ref())
            })
            .map_or("redis", |o| o.server);
        Value::Map(vec![
            (Value::bulk("server"), Value::bulk(server)),
            (Value::bulk("version"), Value::bulk(version)),
            (Value::bulk("proto"), Value::Int(self.state.proto.number())),
            (Value::bulk("id"), Value::Int(self.id() as i64)),
            (Value::bulk("mode"), Value::bulk("standalone")),
            (Value::bulk("role"), Value::bulk("master")),
            (Value::bulk("modules"), Value::Array(modules)),
        ])
    }

    /// CLIENT LIST [TYPE normal|pubsub|master|replica|slave] [ID id ...] (the proxy has no
    /// master or replica clients: those types list nobody).
    async fn client_list(&mut self, req: &Request, silent: bool) {
        let args = req.args();
        let mut ids: Option<Vec<u64>> = None;
        let mut pubsub: Option<bool> = None;
        let mut nobody = false;
        let mut i = 2;
        while i < args.len() {
            if args[i].eq_ignore_ascii_case(b"ID") {
                let parsed: Option<Vec<u64>> = args[i + 1..]
                    .iter()
                    .map(|a| parse_int(a).and_then(|v| u64::try_from(v).ok()))
                    .collect();
                match parsed {
                    Some(v) if !v.is_empty() => ids = Some(v),
                    _ => return self.reply_error(ClientError::Syntax, silent).await,
                }
                break;
            }
            if args[i].eq_ignore_ascii_case(b"TYPE") && i + 1 < args.len() {
                pubsub = match args[i + 1].to_ascii_lowercase().as_slice() {
                    b"normal" => Some(false),
                    b"pubsub" => Some(true),
                    b"master" | b"replica" | b"slave" => {
                        nobody = true;
                        None
                    }
                    other => {
                        let kind = String::from_utf8_lossy(other).into_owned();
                        return self
                            .reply_error(ClientError::UnknownClientType { kind }, silent)
                            .await;
                    }
                };
                i += 2;
                continue;
            }
            return self.reply_error(ClientError::Syntax, silent).await;
        }
        let text: String = self
            .ctx
            .registry
            .list()
            .lines()
            .filter(|l| {
                let id = l
                    .strip_prefix("id=")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<u64>().ok());
                let is_pubsub = l.contains(" flags=P ");
                !nobody
                    && ids
                        .as_ref()
                        .is_none_or(|set| id.is_some_and(|id| set.contains(&id)))
                    && pubsub.is_none_or(|p| p == is_pubsub)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        self.reply_value(Value::Verbatim(text), silent).await;
    }

    async fn client_setname(&mut self, req: &Request, silent: bool) {
        let name = req.args()[2];
        if !valid_name(name) {
            return self.reply_error(ClientError::BadClientName, silent).await;
        }
        self.state.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
        self.reply(OK, silent).await;
    }

    /// CLIENT SETINFO LIB-NAME|LIB-VER value (sent by redis-py 5 and other clients on every
    /// connect).
    async fn client_setinfo(&mut self, req: &Request, silent: bool) {
        let args = req.args();
        if args.len() != 4 {
            let command = "client|setinfo".to_string();
            return self
                .reply_error(ClientError::Arity { command }, silent)
                .await;
        }
        let (attr, value) = (args[2].to_ascii_lowercase(), args[3]);
        let attr_name = String::from_utf8_lossy(&attr).into_owned();
        if attr != b"lib-name" && attr != b"lib-ver" {
            return self
                .reply_error(ClientError::BadClientInfo { attr: attr_name }, silent)
                .await;
        }
        if !valid_name(value) {
            return self
                .reply_error(ClientError::BadLibInfo { attr: attr_name }, silent)
                .await;
        }
        let value = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
        if attr == b"lib-name" {
            self.state.lib_name = value;
        } else {
            self.state.lib_ver = value;
        }
        self.reply(OK, silent).await;
    }

    /// CLIENT REPLY ON|OFF|SKIP: the proxy drops the replies itself.
    async fn client_reply(&mut self, req: &Request) {
        let arg = req.args()[2].to_ascii_uppercase();
        match arg.as_slice() {
            b"ON" => {
                self.state.reply = ClientReply::On;
                self.reply(OK, false).await;
            }
            b"OFF" => self.state.reply = ClientReply::Off,
            b"SKIP" => self.state.reply = ClientReply::Skip,
            _ => self.reply_error(ClientError::Syntax, false).await,
        }
    }
}

/// Client names: printable ASCII without spaces (as Redis requires).
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

/// Whether tracking is the only server-side state pinned (a protocol change can follow it).
fn only_tracking(p: &super::route::Pins) -> bool {
    p.tracking && !p.watch && !p.pubsub && !p.monitor
}
