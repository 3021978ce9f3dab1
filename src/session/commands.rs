//! Command handling by kind: ordinary commands go to the batch; stateful ones (blocking
//! commands, WAIT, pub/sub, MONITOR, tracking) get the connection their state lives on, with
//! the same semantics Redis gives a direct client. Transactions are in [`tx`](super::tx),
//! subscriptions and MONITOR in [`subscribe`](super::subscribe).

use super::batch::Single;
use super::compose::Compose;
use super::intake::{Gate, Looked};
use super::route::{Conn, Route};
use super::state::ReplyMode as ClientReply;
use super::Session;
use crate::resp::command::{Classified, Kind, Local};
use crate::resp::reply::ClientError;
use crate::resp::Request;

/// Channel the proxy publishes to before WAIT, so that WAIT's own connection has a write
/// offset covering this client's earlier writes (made on other connections). A shard channel
/// where Redis has them (7.0+): pattern subscribers never see it.
const WAIT_CHANNEL: &str = "__redis-failover-proxy__:wait";

impl Session {
    /// Handles one command taken off the input (see [`intake`](super::intake)).
    pub(super) async fn handle(&mut self, looked: Looked) {
        let kind = looked.cls.kind;
        self.dispatch(looked).await;
        // CLIENT REPLY SKIP drops the reply of exactly one command: the next one handled (a
        // stalled command is handled again later and keeps the skip for then).
        if self.stalled.is_none()
            && self.state.reply == ClientReply::Skip
            && kind != Kind::Local(Local::ClientReply)
        {
            self.state.reply = ClientReply::On;
        }
    }

    /// Whether the reply of the command being handled is dropped (CLIENT REPLY OFF / SKIP).
    pub(super) fn silent(&self) -> bool {
        self.state.reply != ClientReply::On
    }

    async fn dispatch(&mut self, looked: Looked) {
        let Looked { req, cls, gate } = looked;
        let silent = self.silent();
        match gate {
            Gate::Monitor => return Box::pin(self.in_monitor(req, cls)).await,
            Gate::Refuse(e) => {
                if let (ClientError::NoPerm { .. }, Some(tx)) = (&e, self.tx.as_mut()) {
                    // As in Redis, a refused command inside MULTI makes EXEC abort.
                    tx.dirty = true;
                }
                return self.reply_error(e, silent).await;
            }
            Gate::Tx => return Box::pin(self.in_tx(req, cls)).await,
            Gate::Pass => {}
        }
        self.note_script(&req, cls.kind);
        // Boxed: an idle client's task is as large as the largest future it might await, and
        // some kinds' handling is deep. Ordinary commands mostly end in `intake` instead.
        Box::pin(self.dispatch_kind(req, cls, silent)).await
    }

    async fn dispatch_kind(&mut self, req: Request, cls: Classified, silent: bool) {
        match cls.kind {
            Kind::Read | Kind::Write => self.forward(req, cls.kind, silent).await,
            Kind::Blocking => self.blocking(req, Kind::Blocking, silent).await,
            Kind::Wait => self.wait(req, silent).await,
            Kind::Kill => self.kill(req, silent).await,
            Kind::Subscribe(ch) => self.subscribe(req, ch).await,
            Kind::Unsubscribe(ch) => self.unsubscribe(req, ch).await,
            Kind::Multi => self.multi(silent).await,
            Kind::Exec => {
                self.reply_error(ClientError::ExecWithoutMulti, silent)
                    .await
            }
            Kind::Discard => {
                self.reply_error(ClientError::DiscardWithoutMulti, silent)
                    .await
            }
            Kind::Watch => self.watch(req, silent).await,
            Kind::Unwatch => self.unwatch(req, silent).await,
            Kind::Monitor => self.monitor(req, silent).await,
            Kind::Tracking => self.tracking(req, silent).await,
            Kind::Local(l) => self.local(l, req, silent).await,
            Kind::Guarded if self.allowed(&req) && is_client_sub(&req, b"KILL") => {
                self.client_kill(&req, silent).await
            }
            Kind::Guarded if self.allowed(&req) && is_client_sub(&req, b"UNBLOCK") => {
                self.client_unblock(&req, silent).await
            }
            Kind::Guarded if self.allowed(&req) => self.blocking(req, Kind::Write, silent).await,
            Kind::Guarded => {
                let command = self.guard_name(&req);
                self.reply_error(ClientError::Refused { command }, silent)
                    .await
            }
            Kind::Unsupported => {
                let name = String::from_utf8_lossy(req.name()).to_ascii_uppercase();
                // A container's subcommand the proxy does not run is named with it.
                let container = crate::resp::command::is_container(req.name());
                let command = match (container, req.arg1()) {
                    (true, Some(sub)) => {
                        format!(
                            "{name}|{}",
                            String::from_utf8_lossy(sub).to_ascii_uppercase()
                        )
                    }
                    _ => name,
                };
                self.reply_error(ClientError::Unsupported { command }, silent)
                    .await
            }
        }
    }

    pub(super) fn allowed(&self, req: &Request) -> bool {
        let (name, sub) = crate::resp::command::guard_names(req);
        let dynamic = self.ctx.dynamic.load();
        dynamic.allow.contains(&name) || sub.is_some_and(|s| dynamic.allow.contains(&s))
    }

    pub(super) fn guard_name(&self, req: &Request) -> String {
        crate::resp::command::guard_names(req)
            .1
            .unwrap_or_else(|| String::from_utf8_lossy(req.name()).to_ascii_uppercase())
    }

    /// Remembers script bodies (EVAL, EVAL_RO, SCRIPT LOAD) for reloading after a failover.
    pub(super) fn note_script(&self, req: &Request, kind: Kind) {
        if !matches!(kind, Kind::Read | Kind::Write) {
            return;
        }
        let name = req.name();
        if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVAL_RO") {
            if let Some(body) = req.arg1() {
                self.ctx.scripts.remember(body);
            }
        } else if name.eq_ignore_ascii_case(b"SCRIPT") {
            match req.arg1() {
                Some(a) if a.eq_ignore_ascii_case(b"LOAD") => {
                    if let Some(body) = req.args().get(2) {
                        self.ctx.scripts.remember(body);
                    }
                }
                // The master forgets every script: so does the proxy, so that an EVALSHA of a
                // flushed script gets NOSCRIPT as with Redis instead of being reloaded (that
                // is for a new master after a failover).
                Some(a) if a.eq_ignore_ascii_case(b"FLUSH") => self.ctx.scripts.forget_all(),
                _ => {}
            }
        }
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
        count_error(&e);
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

    pub(super) async fn forward(&mut self, req: Request, kind: Kind, silent: bool) {
        let route = if kind == Kind::Read {
            self.route_read().await
        } else {
            self.route_data().await
        };
        if self.routed(route, &req, silent).await {
            self.batch_command(&req, kind, silent).await;
        }
    }

    /// Borrows a dedicated connection (unless pinned) for a command that holds its connection;
    /// returns whether the command may be sent.
    async fn borrow_conn(&mut self, req: &Request, silent: bool) -> bool {
        if self.conn.is_pinned() {
            let route = self.route_data().await;
            return self.routed(route, req, silent).await;
        }
        if self.switch_blocked().await {
            self.stalled = Some(req.clone());
            return false;
        }
        match self.take_dedicated().await {
            Ok(conn) => {
                self.conn = Conn::Borrowed { conn };
                // CLIENT UNBLOCK from another client finds the server connection it blocks on.
                true
            }
            Err(route) => self.routed(route, req, silent).await,
        }
    }

    /// A command that holds its connection until it returns: it runs alone on a dedicated
    /// connection (the pinned one, if any), so it never blocks anyone sharing a lane.
    async fn blocking(&mut self, req: Request, kind: Kind, silent: bool) {
        if !self.borrow_conn(&req, silent).await {
            return;
        }
        if kind == Kind::Write {
            self.note_write();
        }
        let mut single = Single::command(&req, kind, 1, false);
        single.started = Some(std::time::Instant::now());
        self.send_single(single, silent).await;
    }

    /// WAIT counts replicas that acknowledged this client's writes. Those went over shared
    /// connections, so WAIT runs on a dedicated one after a publish: it gives that connection
    /// a replication offset at least as high as every earlier write of the client (they were
    /// all answered first), and WAIT waits for replicas to reach it.
    async fn wait(&mut self, req: Request, silent: bool) {
        if !self.conn.is_pinned() && self.switch_blocked().await {
            self.stalled = Some(req);
            return;
        }
        let Some(key) = self.shared_key_or_answer(&req, silent).await else {
            return;
        };
        if self.last_write.as_ref().is_some_and(|n| *n != key.node) {
            return self
                .reply_error(ClientError::WaitMasterChanged, silent)
                .await;
        }
        if !self.borrow_conn(&req, silent).await {
            return;
        }
        let shard = self
            .ctx
            .topology
            .load()
            .master
            .as_ref()
            .is_some_and(|m| major(&m.version) >= 7);
        let verb = if shard { "SPUBLISH" } else { "PUBLISH" };
        let publish = Request::from_args(&[verb, WAIT_CHANNEL, ""]);
        let mut parts = Compose::default();
        parts.hidden(publish.bytes(), Kind::Write, 1);
        parts.client(req.bytes(), Kind::Wait, (1, 1), false);
        self.send_single(Single::of(parts.finish(), false), silent)
            .await;
    }

    /// Makes sure a dedicated connection is pinned and may be sent on; stalls or answers an
    /// error otherwise (returns false then).
    pub(super) async fn pin_for(&mut self, req: &Request, silent: bool) -> bool {
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
            Err(route) => self.routed(route, req, silent).await,
        }
    }

    /// QUIT: +OK after everything before it, then close.
    pub(super) async fn quit(&mut self) {
        self.reply(crate::resp::reply::OK, false).await;
        self.close();
    }

    /// RESET: everything back to a new connection's state, server-side state included.
    pub(super) async fn reset(&mut self, req: Request) {
        if self.switch_blocked().await {
            self.stalled = Some(req);
            return;
        }
        self.discard_conn();
        self.tx = None;
        self.watch_broken = false;
        self.tracking = None;
        self.subs.clear();
        self.state = super::state::ClientState::new(self.ctx.dynamic.load().users.initial());
        self.inbox.set_limit(self.ctx.limits.output_buffer);
        self.reply(crate::resp::reply::RESET, false).await;
    }
}

/// Counts an error the proxy answers with.
pub(super) fn count_error(e: &ClientError) {
    crate::metrics::hot().errors[crate::metrics::error_index(e.kind())].increment(1);
}

/// Major version number of `x.y.z`.
fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `CLIENT KILL` and `CLIENT UNBLOCK`: acting on the proxy's own clients (see
/// `kill_clients`).
fn is_client_sub(req: &Request, sub: &[u8]) -> bool {
    req.name().eq_ignore_ascii_case(b"CLIENT")
        && req.arg1().is_some_and(|a| a.eq_ignore_ascii_case(sub))
}
