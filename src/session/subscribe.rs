//! Pub/sub and MONITOR: the connection their state lives on. A subscriber is pinned to a
//! dedicated connection that carries its subscriptions (moved to a new master by
//! `session::pin`); its output buffer limit becomes the pub/sub one. MONITOR pins a connection
//! that then only streams; the client may only leave it (QUIT, RESET).

use super::batch::Single;
use super::Session;
use crate::backend::ReplyMode;
use crate::resp::command::{Channels, Classified, Kind, Local};
use crate::resp::reply::{ClientError, Proto};
use crate::resp::Request;

impl Session {
    /// Subscription confirmations are sent even under CLIENT REPLY OFF/SKIP (as Redis does).
    pub(super) async fn subscribe(&mut self, req: Request, ch: Channels) {
        if !self.pin_for(&req, false).await {
            return;
        }
        let args = req.args();
        let frames = self.subs.subscribe(ch, &args[1..]);
        self.inbox.set_limit(self.ctx.limits.pubsub_output_buffer);
        let kind = Kind::Subscribe(ch);
        self.send_single(Single::command(&req, kind, frames, true), false)
            .await;
    }

    pub(super) async fn unsubscribe(&mut self, req: Request, ch: Channels) {
        let args = req.args();
        let kind = Kind::Unsubscribe(ch);
        let route = self.route_data().await;
        if !self.routed(route, &req, false).await {
            return;
        }
        if !self.conn.is_pinned() {
            // Not subscribed: Redis still answers one confirmation per channel (or one).
            let frames = (args.len() as u32 - 1).max(1);
            return self
                .send_single(Single::command(&req, kind, frames, true), false)
                .await;
        }
        // Messages may still arrive before the last confirmation: keep the pub/sub mode for
        // this dispatch even when it ends every subscription.
        let mode = if self.state.proto == Proto::Resp2 {
            ReplyMode::PubSub
        } else {
            ReplyMode::Counted
        };
        let frames = self.subs.unsubscribe(ch, &args[1..]);
        let mut single = Single::command(&req, kind, frames, true);
        single.mode = Some(mode);
        self.send_single(single, false).await;
    }

    pub(super) async fn monitor(&mut self, req: Request, silent: bool) {
        if !self.pin_for(&req, silent).await {
            return;
        }
        if let Some(p) = self.conn.held_mut() {
            p.monitor = true;
        }
        self.send_single(Single::command(&req, Kind::Monitor, 1, true), silent)
            .await;
    }

    /// In MONITOR mode the connection only streams; the proxy accepts QUIT and RESET.
    pub(super) async fn in_monitor(&mut self, req: Request, cls: Classified) {
        match cls.kind {
            Kind::Local(Local::Quit) => self.quit().await,
            Kind::Local(Local::Reset) => self.reset(req).await,
            _ => self.reply_error(ClientError::MonitorMode, false).await,
        }
    }
}
