//! Transactions. MULTI blocks are buffered by the proxy, checked command by command as Redis
//! checks them at queue time, and sent whole with EXEC in one write: on a shared connection
//! nothing of another client can come between them, and a block that never reached a master
//! can be sent again after a failover (nothing of it ran). WATCH pins a dedicated connection,
//! where the watched keys live; if that connection or its master is lost before EXEC, EXEC
//! answers null, exactly what a client sees when a watched key changed, so its usual retry
//! path takes over.

use super::batch::Single;
use super::compose::Compose;
use super::route::Conn;
use super::state::TxBuffer;
use super::Session;
use crate::resp::command::{writes_data, Classified, Kind, Local};
use crate::resp::reply::{ClientError, Value, OK, QUEUED};
use crate::resp::Request;

impl Session {
    pub(super) async fn multi(&mut self, silent: bool) {
        self.tx = Some(TxBuffer::new());
        self.reply(OK, silent).await;
    }

    pub(super) async fn watch(&mut self, req: Request, silent: bool) {
        if !self.pin_for(&req, silent).await {
            return;
        }
        if let Some(p) = self.conn.held_mut() {
            p.watch = true;
        }
        self.watch_broken = false;
        self.send_single(Single::command(&req, Kind::Watch, 1, true), silent)
            .await;
    }

    pub(super) async fn unwatch(&mut self, req: Request, silent: bool) {
        self.watch_broken = false;
        if !self.pins().is_some_and(|p| p.watch) {
            return self.reply(OK, silent).await;
        }
        let route = self.route_data().await;
        if self.routed(route, &req, silent).await {
            if let Some(p) = self.conn.held_mut() {
                p.watch = false;
            }
            self.send_single(Single::command(&req, Kind::Unwatch, 1, true), silent)
                .await;
        }
    }

    /// Inside a MULTI: commands are checked and queued; EXEC sends the whole block.
    pub(super) async fn in_tx(&mut self, req: Request, cls: Classified) {
        let silent = self.silent();
        match cls.kind {
            Kind::Exec => return self.exec(req, silent).await,
            Kind::Discard => return self.discard(req, silent).await,
            Kind::Multi => return self.reply_error(ClientError::NestedMulti, silent).await,
            Kind::Watch => return self.reply_error(ClientError::WatchInMulti, silent).await,
            Kind::Local(Local::Quit) => return self.quit().await,
            Kind::Local(Local::Reset) => return self.reset(req).await,
            _ => {}
        }
        if let Some(e) = self.queue_refusal(&req, &cls) {
            if let Some(tx) = self.tx.as_mut() {
                tx.dirty = true;
            }
            return self.reply_error(e, silent).await;
        }
        let size = self.tx.as_ref().map_or(0, |t| t.payload.len()) + req.bytes().len();
        if size > self.ctx.limits.query_buffer {
            self.tx = None;
            return self
                .protocol_error(crate::resp::ProtocolError::QueryBufferLimit)
                .await;
        }
        let writes = matches!(cls.kind, Kind::Write | Kind::Blocking) && writes_data(&req);
        if let Some(tx) = self.tx.as_mut() {
            tx.queue(req.bytes());
            tx.writes |= writes;
        }
        self.reply(QUEUED, silent).await;
    }

    /// DISCARD drops the block and, as in Redis, forgets the watched keys.
    async fn discard(&mut self, req: Request, silent: bool) {
        if self.pins().is_some_and(|p| p.watch) {
            let route = self.route_data().await;
            if !self.routed(route, &req, silent).await {
                return;
            }
            if let Some(p) = self.conn.held_mut() {
                p.watch = false;
            }
            let unwatch = Request::from_args(&["UNWATCH"]);
            self.send_single(Single::command(&unwatch, Kind::Unwatch, 1, true), true)
                .await;
        }
        self.tx = None;
        self.watch_broken = false;
        self.reply(OK, silent).await;
    }

    /// Why a command cannot be queued (a queue-time error: EXEC will abort).
    fn queue_refusal(&self, req: &Request, cls: &Classified) -> Option<ClientError> {
        let queueable = matches!(
            cls.kind,
            Kind::Read
                | Kind::Write
                | Kind::Blocking
                | Kind::Kill
                | Kind::Wait
                | Kind::Unwatch
                | Kind::Local(Local::Ping | Local::Echo)
        );
        if queueable {
            if !cls.arity_ok(req.argc()) {
                return Some(ClientError::Arity {
                    command: cls.acl_name(req),
                });
            }
            return self.unknown_command(req, cls);
        }
        match cls.kind {
            Kind::Guarded if self.allowed(req) => None,
            Kind::Guarded => Some(ClientError::Refused {
                command: self.guard_name(req),
            }),
            Kind::Unsupported => Some(ClientError::Unsupported {
                command: String::from_utf8_lossy(req.name()).to_ascii_uppercase(),
            }),
            _ => Some(ClientError::NotInMulti {
                command: cls.acl_name(req),
            }),
        }
    }

    /// A command Redis itself does not know (the master's command list says so): Redis
    /// refuses it at queue time.
    fn unknown_command(&self, req: &Request, cls: &Classified) -> Option<ClientError> {
        if cls.spec.is_some() {
            return None;
        }
        let topo = self.ctx.topology.load();
        let known = topo.master.as_ref()?.knows(req.name())?;
        (!known).then(|| ClientError::UnknownCommand {
            name: String::from_utf8_lossy(req.name()).into_owned(),
            args: req.args()[1..]
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        })
    }

    /// EXEC of a buffered block.
    async fn exec(&mut self, req: Request, silent: bool) {
        if self.tx.as_ref().is_some_and(|t| t.dirty) {
            self.tx = None;
            return self.reply_error(ClientError::ExecAbort, silent).await;
        }
        let watching = self.pins().is_some_and(|p| p.watch);
        if self.watch_broken || (watching && !self.pinned_on_master()) {
            // The watched keys lived on a master that is gone: for the client this is a
            // watched key that changed.
            self.tx = None;
            self.watch_broken = false;
            if let Some(p) = self.conn.held_mut() {
                p.watch = false;
            }
            let null = Value::NullArray.to_bytes(self.state.proto);
            return self.reply(&null, silent).await;
        }
        let route = self.route_data().await;
        if !self.routed(route, &req, silent).await {
            if self.stalled.is_none() {
                self.tx = None;
            }
            return;
        }
        let Some(tx) = self.tx.take() else {
            return;
        };
        let mut payload = tx.payload;
        payload.extend_from_slice(req.bytes());
        // MULTI's reply, one QUEUED per command, then EXEC's: the client sees the last.
        let frames = tx.queued + 2;
        // On a WATCH connection the block is an EXEC whose watched keys cannot move: a
        // failure answers null instead of sending it again.
        let kind = if watching { Kind::Exec } else { Kind::Write };
        let confirm = tx.writes && self.durability().is_some();
        let mut parts = Compose::default();
        parts.client_buf(payload, kind, (frames, 1), confirm);
        if let Some(p) = self.conn.held_mut() {
            p.watch = false;
        }
        self.note_write();
        self.send_single(Single::of(parts.finish(), true), silent)
            .await;
    }

    /// Whether the pinned connection is on the master in use.
    fn pinned_on_master(&self) -> bool {
        let topo = self.ctx.topology.load();
        match (&self.conn, topo.routable_master()) {
            (Conn::Pinned { conn, .. }, Some(m)) => conn.key().node == m.node && !conn.is_closed(),
            _ => false,
        }
    }
}
