//! Command handling by kind: ordinary commands go to the batch; stateful ones (transactions,
//! WATCH, blocking commands, WAIT, pub/sub, MONITOR, tracking) get the connection their state
//! lives on, with the same semantics Redis gives a direct client.

use bytes::BytesMut;
use smallvec::SmallVec;

use super::route::{Conn, Route, Single};
use super::state::{ReplyMode as ClientReply, TxBuffer};
use super::Session;
use crate::backend::{ReplyMode, Sent};
use crate::resp::command::{classify, Channels, Classified, Kind, Local};
use crate::resp::reply::{ClientError, Proto, OK, QUEUED};
use crate::resp::Request;

/// Channel the proxy publishes to before WAIT, so that WAIT's own connection has a write
/// offset covering this client's earlier writes (made on other connections).
const WAIT_CHANNEL: &str = "__redis-failover-proxy__:wait";

impl Session {
    /// Handles one command.
    pub(super) async fn handle(&mut self, req: Request) {
        let cls = classify(&req);
        self.dispatch(req, cls).await;
        // CLIENT REPLY SKIP drops the reply of exactly one command: the next one handled (a
        // stalled command is handled again later and keeps the skip for then).
        if self.stalled.is_none()
            && self.state.reply == ClientReply::Skip
            && cls.kind != Kind::Local(Local::ClientReply)
        {
            self.state.reply = ClientReply::On;
        }
    }

    /// Whether the reply of the command being handled is dropped (CLIENT REPLY OFF / SKIP).
    pub(super) fn silent(&self) -> bool {
        self.state.reply != ClientReply::On
    }

    async fn dispatch(&mut self, req: Request, cls: Classified) {
        let silent = self.silent();
        if self.conn.pins().is_some_and(|p| p.monitor) {
            return self.in_monitor(req, cls).await;
        }
        if !self.state.authenticated() && !no_auth(cls.kind) {
            return self.reply_error(ClientError::NoAuth, silent).await;
        }
        if self.needs_arity_check(cls.kind) && !cls.arity_ok(req.argc()) {
            let command = cls.acl_name(&req);
            return self
                .reply_error(ClientError::Arity { command }, silent)
                .await;
        }
        if self.tx.is_some() {
            return self.in_tx(req, cls).await;
        }
        if self.conn.pins().is_some_and(|p| p.tx) {
            return self.in_pinned_tx(req, cls, silent).await;
        }
        if self.subscribed_resp2() && !allowed_subscribed(cls.kind) {
            let command = String::from_utf8_lossy(req.name()).to_ascii_lowercase();
            return self
                .reply_error(ClientError::SubscribedContext { command }, silent)
                .await;
        }
        match cls.kind {
            Kind::Read | Kind::Write => self.forward(req, cls.kind, silent).await,
            Kind::Blocking => self.blocking(req, Kind::Blocking, silent).await,
            Kind::Wait => self.wait(req, silent).await,
            Kind::Subscribe(ch) => self.subscribe(req, ch, silent).await,
            Kind::Unsubscribe(ch) => self.unsubscribe(req, ch, silent).await,
            Kind::Multi => self.multi(req, silent).await,
            Kind::Exec => self.exec(req, silent).await,
            Kind::Discard => self.discard(req, silent).await,
            Kind::Watch => self.watch(req, silent).await,
            Kind::Unwatch => self.unwatch(req, silent).await,
            Kind::Monitor => self.monitor(req, silent).await,
            Kind::Tracking => self.tracking(req, silent).await,
            Kind::Local(l) => self.local(l, req, silent).await,
            Kind::Guarded if self.allowed(&req) => self.blocking(req, Kind::Write, silent).await,
            Kind::Guarded => {
                let command = crate::resp::command::guard_names(&req)
                    .1
                    .unwrap_or_else(|| String::from_utf8_lossy(req.name()).to_ascii_uppercase());
                self.reply_error(ClientError::Refused { command }, silent)
                    .await
            }
            Kind::Unsupported => {
                let command = String::from_utf8_lossy(req.name()).to_ascii_uppercase();
                self.reply_error(ClientError::Unsupported { command }, silent)
                    .await
            }
        }
    }

    /// The proxy interprets these commands' arguments, so it checks their arity as Redis
    /// would; everything else is left for Redis to judge.
    fn needs_arity_check(&self, kind: Kind) -> bool {
        !matches!(
            kind,
            Kind::Read | Kind::Write | Kind::Blocking | Kind::Guarded | Kind::Unsupported
        )
    }

    /// RESP2 clients with subscriptions may only run pub/sub commands, PING, QUIT and RESET.
    fn subscribed_resp2(&self) -> bool {
        self.state.proto == Proto::Resp2 && self.subs.any()
    }

    fn allowed(&self, req: &Request) -> bool {
        let (name, sub) = crate::resp::command::guard_names(req);
        self.ctx.allow.contains(&name) || sub.is_some_and(|s| self.ctx.allow.contains(&s))
    }

    /// Appends a reply the proxy makes, after everything sent before it.
    pub(super) async fn reply(&mut self, bytes: &[u8], silent: bool) {
        if silent {
            return;
        }
        self.flush_batch().await;
        self.inbox.push_local(bytes);
    }

    pub(super) async fn reply_error(&mut self, e: ClientError, silent: bool) {
        self.reply(&e.to_bytes(), silent).await;
    }

    /// Applies a routing decision for `req`; returns whether the command may be sent.
    pub(super) async fn routed(&mut self, route: Route, req: &Request, silent: bool) -> bool {
        match route {
            Route::Go => true,
            Route::Stall => {
                self.stalled = Some(req.clone());
                false
            }
            Route::Refuse(e) => {
                self.reply_error(e, silent).await;
                false
            }
        }
    }

    async fn forward(&mut self, req: Request, kind: Kind, silent: bool) {
        let route = self.route_data().await;
        if self.routed(route, &req, silent).await {
            self.batch_command(&req, kind, silent).await;
        }
    }

    /// A command that holds its connection until it returns: it runs alone on a dedicated
    /// connection (the pinned one, if any), so it never blocks anyone sharing a lane.
    async fn blocking(&mut self, req: Request, kind: Kind, silent: bool) {
        if !self.conn.is_pinned() {
            if self.switch_blocked().await {
                self.stalled = Some(req);
                return;
            }
            match self.take_dedicated().await {
                Ok(conn) => self.conn = Conn::Borrowed { conn },
                Err(e) => return self.reply_error(e, silent).await,
            }
        } else {
            let route = self.route_data().await;
            if !self.routed(route, &req, silent).await {
                return;
            }
        }
        if kind == Kind::Write {
            self.note_write();
        }
        self.send_single(Single::command(&req, kind, 1, false), silent)
            .await;
    }

    /// WAIT counts replicas that acknowledged this client's writes. Those went over shared
    /// connections, so WAIT runs on a dedicated one after a PUBLISH: the PUBLISH gives that
    /// connection a replication offset at least as high as every earlier write of the client
    /// (they were all answered first), and WAIT waits for replicas to reach it.
    async fn wait(&mut self, req: Request, silent: bool) {
        if self.switch_blocked().await {
            self.stalled = Some(req);
            return;
        }
        let key = match self.shared_key() {
            Ok(k) => k,
            Err(e) => return self.reply_error(e, silent).await,
        };
        if self.last_write.as_ref().is_some_and(|n| *n != key.node) {
            return self
                .reply_error(ClientError::WaitMasterChanged, silent)
                .await;
        }
        if !self.conn.is_pinned() {
            match self.take_dedicated().await {
                Ok(conn) => self.conn = Conn::Borrowed { conn },
                Err(e) => return self.reply_error(e, silent).await,
            }
        }
        let publish = Request::from_args(&["PUBLISH", WAIT_CHANNEL, ""]);
        let mut payload = BytesMut::from(&publish.bytes()[..]);
        let split = payload.len();
        payload.extend_from_slice(req.bytes());
        let total = payload.len();
        let cmds = SmallVec::from_vec(vec![
            Sent {
                range: 0..split,
                kind: Kind::Write,
                frames: 1,
                replies: 0,
            },
            Sent {
                range: split..total,
                kind: Kind::Wait,
                frames: 1,
                replies: 1,
            },
        ]);
        let single = Single {
            payload: payload.freeze(),
            cmds,
            expect: 2,
            skip: 1,
            timed: false,
            mode: None,
        };
        self.send_single(single, silent).await;
    }

    async fn subscribe(&mut self, req: Request, ch: Channels, silent: bool) {
        if !self.pin_for(&req, silent).await {
            return;
        }
        let args = req.args();
        let frames = self.subs.subscribe(ch, &args[1..]);
        if let Some(p) = self.conn.pins_mut() {
            p.pubsub = true;
        }
        self.inbox.set_limit(self.ctx.limits.pubsub_output_buffer);
        let kind = Kind::Subscribe(ch);
        self.send_single(Single::command(&req, kind, frames, true), silent)
            .await;
        self.publish_view();
    }

    async fn unsubscribe(&mut self, req: Request, ch: Channels, silent: bool) {
        let args = req.args();
        let kind = Kind::Unsubscribe(ch);
        if !self.conn.is_pinned() {
            // Not subscribed: Redis still answers one confirmation per channel (or one).
            let route = self.route_data().await;
            if self.routed(route, &req, silent).await {
                let frames = (args.len() as u32 - 1).max(1);
                self.send_single(Single::command(&req, kind, frames, true), silent)
                    .await;
            }
            return;
        }
        let route = self.route_data().await;
        if !self.routed(route, &req, silent).await {
            return;
        }
        // Messages may still arrive before the last confirmation: keep the pub/sub mode for
        // this dispatch even when it ends every subscription.
        let mode = ReplyMode::PubSub;
        let frames = self.subs.unsubscribe(ch, &args[1..]);
        if !self.subs.any() {
            if let Some(p) = self.conn.pins_mut() {
                p.pubsub = false;
            }
        }
        let mut single = Single::command(&req, kind, frames, true);
        single.mode = Some(mode);
        self.send_single(single, silent).await;
        self.publish_view();
    }

    /// Makes sure a dedicated connection is pinned and may be sent on; stalls or answers an
    /// error otherwise (returns false then).
    async fn pin_for(&mut self, req: &Request, silent: bool) -> bool {
        if self.conn.is_pinned() {
            let route = self.route_data().await;
            return self.routed(route, req, silent).await;
        }
        if self.switch_blocked().await {
            self.stalled = Some(req.clone());
            return false;
        }
        match self.pin().await {
            Ok(()) => true,
            Err(e) => {
                self.reply_error(e, silent).await;
                false
            }
        }
    }

    async fn monitor(&mut self, req: Request, silent: bool) {
        if !self.pin_for(&req, silent).await {
            return;
        }
        if let Some(p) = self.conn.pins_mut() {
            p.monitor = true;
        }
        self.send_single(Single::command(&req, Kind::Monitor, 1, true), silent)
            .await;
    }

    /// In MONITOR mode the connection only streams; the proxy accepts QUIT and RESET.
    async fn in_monitor(&mut self, req: Request, cls: Classified) {
        match cls.kind {
            Kind::Local(Local::Quit) => self.quit().await,
            Kind::Local(Local::Reset) => self.reset(req).await,
            _ => self.reply_error(ClientError::MonitorMode, false).await,
        }
    }

    async fn tracking(&mut self, req: Request, silent: bool) {
        let args = req.args();
        let sub = args
            .get(1)
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        let mode = args
            .get(2)
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        if sub != b"TRACKING" {
            // CACHING, GETREDIR, TRACKINGINFO: answered by the connection the state is on.
            return self.forward(req, Kind::Read, silent).await;
        }
        if mode == b"OFF" {
            if let Conn::Pinned { pins, dirty, .. } = &mut self.conn {
                pins.tracking = false;
                *dirty = true;
            } else {
                return self.forward(req, Kind::Read, silent).await;
            }
            let route = self.route_data().await;
            if self.routed(route, &req, silent).await {
                self.send_single(Single::command(&req, Kind::Tracking, 1, true), silent)
                    .await;
            }
            return;
        }
        if !self.pin_for(&req, silent).await {
            return;
        }
        let out = match self.redirect(&req) {
            Ok(r) => r,
            Err(e) => return self.reply_error(e, silent).await,
        };
        if let Some(p) = self.conn.pins_mut() {
            p.tracking = true;
        }
        self.send_single(Single::command(&out, Kind::Tracking, 1, true), silent)
            .await;
    }

    /// Rewrites `REDIRECT <proxy client id>` to the server's id of that client's dedicated
    /// connection, which must be on the same node.
    fn redirect(&self, req: &Request) -> Result<Request, ClientError> {
        let args = req.args();
        let Some(pos) = args
            .iter()
            .position(|a| a.eq_ignore_ascii_case(b"REDIRECT"))
        else {
            return Ok(req.clone());
        };
        let id = args
            .get(pos + 1)
            .and_then(|a| crate::resp::scan::parse_int(a))
            .ok_or(ClientError::NotInteger)?;
        let target = self
            .ctx
            .registry
            .get(id as u64)
            .and_then(|e| e.view().pinned)
            .ok_or(ClientError::NoSuchRedirect)?;
        let ours = self.conn.pinned_identity().map(|(n, _)| n);
        if ours.as_ref() != Some(&target.0) {
            return Err(ClientError::NoSuchRedirect);
        }
        let server_id = target.1.to_string();
        let rewritten: Vec<&[u8]> = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i == pos + 1 {
                    server_id.as_bytes()
                } else {
                    *a
                }
            })
            .collect();
        Ok(Request::from_args(&rewritten))
    }

    async fn watch(&mut self, req: Request, silent: bool) {
        if !self.pin_for(&req, silent).await {
            return;
        }
        if let Some(p) = self.conn.pins_mut() {
            p.watch = true;
        }
        self.send_single(Single::command(&req, Kind::Watch, 1, true), silent)
            .await;
    }

    async fn unwatch(&mut self, req: Request, silent: bool) {
        if !self.conn.is_pinned() {
            return self.reply(OK, silent).await;
        }
        let route = self.route_data().await;
        if self.routed(route, &req, silent).await {
            if let Some(p) = self.conn.pins_mut() {
                p.watch = false;
            }
            self.send_single(Single::command(&req, Kind::Unwatch, 1, true), silent)
                .await;
        }
    }

    async fn multi(&mut self, req: Request, silent: bool) {
        if !self.conn.is_pinned() {
            self.tx = Some(TxBuffer::new());
            self.publish_view();
            return self.reply(OK, silent).await;
        }
        let route = self.route_data().await;
        if self.routed(route, &req, silent).await {
            if let Some(p) = self.conn.pins_mut() {
                p.tx = true;
                p.tx_dirty = false;
            }
            self.send_single(Single::command(&req, Kind::Multi, 1, true), silent)
                .await;
        }
    }

    async fn exec(&mut self, _req: Request, silent: bool) {
        self.reply_error(ClientError::ExecWithoutMulti, silent)
            .await;
    }

    async fn discard(&mut self, _req: Request, silent: bool) {
        self.reply_error(ClientError::DiscardWithoutMulti, silent)
            .await;
    }

    /// Inside a MULTI forwarded on the pinned connection (after WATCH): Redis queues the
    /// commands; the proxy refuses those it cannot run there and makes EXEC abort then.
    async fn in_pinned_tx(&mut self, req: Request, cls: Classified, silent: bool) {
        let end = matches!(cls.kind, Kind::Exec | Kind::Discard);
        let queueable = matches!(
            cls.kind,
            Kind::Read
                | Kind::Write
                | Kind::Blocking
                | Kind::Wait
                | Kind::Unwatch
                | Kind::Local(Local::Ping | Local::Echo)
        ) || (cls.kind == Kind::Guarded && self.allowed(&req));
        match cls.kind {
            Kind::Local(Local::Quit) => return self.quit().await,
            Kind::Local(Local::Reset) => return self.reset(req).await,
            Kind::Multi => return self.reply_error(ClientError::NestedMulti, silent).await,
            Kind::Watch => return self.reply_error(ClientError::WatchInMulti, silent).await,
            _ if !end && !queueable => {
                if let Some(p) = self.conn.pins_mut() {
                    p.tx_dirty = true;
                }
                let command = cls.acl_name(&req);
                return self
                    .reply_error(ClientError::NotInMulti { command }, silent)
                    .await;
            }
            _ => {}
        }
        let route = self.route_data().await;
        if !self.routed(route, &req, silent).await {
            return;
        }
        if !end {
            return self.batch_command(&req, Kind::Write, silent).await;
        }
        let dirty = self.conn.pins().is_some_and(|p| p.tx_dirty) && cls.kind == Kind::Exec;
        if let Some(p) = self.conn.pins_mut() {
            p.tx = false;
            p.tx_dirty = false;
            p.watch = false;
        }
        if dirty {
            let discard = Request::from_args(&["DISCARD"]);
            self.send_single(Single::command(&discard, Kind::Discard, 1, true), true)
                .await;
            return self.reply_error(ClientError::ExecAbort, silent).await;
        }
        self.send_single(Single::command(&req, cls.kind, 1, true), silent)
            .await;
    }

    /// Inside a MULTI the proxy buffers: commands are checked and queued; EXEC sends the whole
    /// block in one write.
    async fn in_tx(&mut self, req: Request, cls: Classified) {
        let silent = self.silent();
        match cls.kind {
            Kind::Exec => return self.exec_buffered(req, silent).await,
            Kind::Discard => {
                self.tx = None;
                self.publish_view();
                return self.reply(OK, silent).await;
            }
            Kind::Multi => return self.reply_error(ClientError::NestedMulti, silent).await,
            Kind::Watch => return self.reply_error(ClientError::WatchInMulti, silent).await,
            Kind::Local(Local::Quit) => return self.quit().await,
            Kind::Local(Local::Reset) => return self.reset(req).await,
            _ => {}
        }
        let refusal = self.queue_refusal(&req, &cls);
        if let Some(e) = refusal {
            if let Some(tx) = self.tx.as_mut() {
                tx.dirty = true;
            }
            return self.reply_error(e, silent).await;
        }
        let too_big = self
            .tx
            .as_ref()
            .is_some_and(|t| t.payload.len() + req.bytes().len() > self.ctx.limits.query_buffer);
        if too_big {
            self.tx = None;
            return self
                .protocol_error(crate::resp::ProtocolError::QueryBufferLimit)
                .await;
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.queue(req.bytes());
        }
        self.reply(QUEUED, silent).await;
    }

    /// Why a command cannot be queued in a buffered MULTI (a queue-time error).
    fn queue_refusal(&self, req: &Request, cls: &Classified) -> Option<ClientError> {
        let queueable = matches!(
            cls.kind,
            Kind::Read
                | Kind::Write
                | Kind::Blocking
                | Kind::Wait
                | Kind::Unwatch
                | Kind::Local(Local::Ping | Local::Echo)
        );
        if queueable {
            return (!cls.arity_ok(req.argc())).then(|| ClientError::Arity {
                command: cls.acl_name(req),
            });
        }
        let upper = || String::from_utf8_lossy(req.name()).to_ascii_uppercase();
        match cls.kind {
            Kind::Guarded if self.allowed(req) => None,
            Kind::Guarded => Some(ClientError::Refused { command: upper() }),
            Kind::Unsupported => Some(ClientError::Unsupported { command: upper() }),
            _ => Some(ClientError::NotInMulti {
                command: cls.acl_name(req),
            }),
        }
    }

    async fn exec_buffered(&mut self, req: Request, silent: bool) {
        if self.tx.as_ref().is_some_and(|t| t.dirty) {
            self.tx = None;
            self.publish_view();
            return self.reply_error(ClientError::ExecAbort, silent).await;
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
        let frames = tx.queued + 2;
        let len = payload.len();
        let cmds = SmallVec::from_elem(
            Sent {
                range: 0..len,
                kind: Kind::Write,
                frames,
                replies: 1,
            },
            1,
        );
        self.note_write();
        let single = Single {
            payload: payload.freeze(),
            cmds,
            expect: frames,
            skip: frames - 1,
            timed: true,
            mode: None,
        };
        self.send_single(single, silent).await;
        self.publish_view();
    }

    pub(super) async fn quit(&mut self) {
        self.reply(OK, false).await;
        self.closing = true;
    }

    /// RESET: everything back to a new connection's state, server-side state included.
    pub(super) async fn reset(&mut self, req: Request) {
        if self.switch_blocked().await {
            self.stalled = Some(req);
            return;
        }
        self.discard_conn();
        self.tx = None;
        self.subs.clear();
        self.state = super::state::ClientState::new(self.ctx.users.load().initial());
        self.inbox.set_limit(self.ctx.limits.output_buffer);
        self.publish_view();
        self.reply(crate::resp::reply::RESET, false).await;
    }
}

/// Commands allowed before authentication (as in Redis).
fn no_auth(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Local(Local::Auth | Local::Hello | Local::Quit | Local::Reset)
    )
}

/// Commands a RESP2 client may run while subscribed.
fn allowed_subscribed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Subscribe(_)
            | Kind::Unsubscribe(_)
            | Kind::Local(Local::Ping | Local::Quit | Local::Reset)
    )
}
