//! What happens to commands whose backend connection failed under them.
//!
//! A dispatch that never reached the socket did not run: it is sent again, once, on a fresh
//! connection. A dispatch that was written and then lost may or may not have run: its
//! read-only commands are sent again (running them twice changes nothing), every other command
//! gets an error saying its outcome is unknown. Nothing is ever dropped: each command gets its
//! reply or an error, in its place. State that lived on a lost dedicated connection
//! (subscriptions, WATCH, MONITOR, tracking) cannot be rebuilt behind the client's back, so
//! the client is told and disconnected, as Redis's own clients expect after such a loss.

use bytes::BytesMut;
use smallvec::SmallVec;

use super::route::Conn;
use super::Session;
use crate::backend::{Dispatch, Fault, FaultKind, Outgoing, ReplyMode, Resolution, Sent};
use crate::resp::command::Kind;
use crate::resp::reply::ClientError;

/// Times a dispatch that did not reach the socket is sent again.
const MAX_RESEND: u8 = 1;

/// Commands of a fault that go out again, in order.
#[derive(Debug, Default)]
struct Resend {
    payload: BytesMut,
    cmds: SmallVec<[Sent; 1]>,
    expect: u32,
    skip: u32,
}

impl Resend {
    fn push(&mut self, payload: &[u8], cmd: &Sent) {
        if self.expect == self.skip {
            // Nothing visible yet: hidden frames of this command are skipped too.
            self.skip += cmd.frames - cmd.replies;
        }
        let start = self.payload.len();
        self.payload.extend_from_slice(&payload[cmd.range.clone()]);
        self.cmds.push(Sent {
            range: start..self.payload.len(),
            ..cmd.clone()
        });
        self.expect += cmd.frames;
    }

    fn take(&mut self, conn: u64, attempt: u8, silent: bool) -> Option<Dispatch> {
        if self.cmds.is_empty() {
            return None;
        }
        let r = std::mem::take(self);
        Some(Dispatch {
            conn,
            expect: r.expect,
            skip: r.skip,
            silent,
            payload: r.payload.freeze(),
            cmds: r.cmds,
            attempt,
        })
    }
}

impl Session {
    /// Resolves the failed dispatch at the front of the inbox.
    pub(super) async fn resolve(&mut self, f: Fault) {
        let shared = matches!(self.conn, Conn::Shared { .. }) || self.conn.id() != Some(f.conn);
        if !shared {
            // A dedicated connection died: its state is gone.
            let closing = self.conn.is_pinned();
            self.discard_conn();
            self.answer_all(&f, ClientError::OutcomeUnknown);
            if closing {
                tracing::info!(
                    client.id = self.id(),
                    "dedicated backend connection lost; closing client"
                );
                self.closing = true;
            }
            return;
        }
        let target = self.resend_target(&f);
        let mut items = Vec::new();
        let mut resend = Resend::default();
        let mut answered = f.received;
        for cmd in &f.cmds {
            let got = answered.min(cmd.frames);
            answered -= got;
            if got == cmd.frames {
                continue;
            }
            let again = target.is_some()
                && got == 0
                && f.attempt < MAX_RESEND
                && (f.kind == FaultKind::NotSent || cmd.kind == Kind::Read);
            if again {
                resend.push(&f.payload, cmd);
                continue;
            }
            if let Some(d) = resend.take(target.unwrap_or(0), f.attempt + 1, f.silent) {
                items.push(Resolution::Dispatch(d));
            }
            let error = match f.kind {
                FaultKind::NotSent => ClientError::NotSent,
                FaultKind::Lost => ClientError::OutcomeUnknown,
            };
            let hidden = cmd.frames - cmd.replies;
            let visible_left = cmd.replies - got.saturating_sub(hidden).min(cmd.replies);
            if !f.silent {
                let bytes = error.to_bytes();
                for _ in 0..visible_left {
                    items.push(Resolution::Local(bytes.clone()));
                }
            }
        }
        if let Some(d) = resend.take(target.unwrap_or(0), f.attempt + 1, f.silent) {
            items.push(Resolution::Dispatch(d));
        }
        let payloads: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Resolution::Dispatch(d) => Some((d.payload.clone(), d.expect)),
                Resolution::Local(_) => None,
            })
            .collect();
        let tos = self.inbox.resolve(f.id, items);
        for (to, (payload, expect)) in tos.into_iter().zip(payloads) {
            let out = Outgoing {
                payload,
                expect,
                mode: ReplyMode::Counted,
                timed: true,
                to,
            };
            self.conn.send_out(out).await;
        }
    }

    /// A fresh shared lane to send again on (the failed one is gone), if one can be had.
    fn resend_target(&mut self, f: &Fault) -> Option<u64> {
        if f.attempt >= MAX_RESEND {
            return None;
        }
        let key = self.shared_key().ok()?;
        let lane = self.ctx.pool.lane(&key).ok()?;
        let id = lane.id();
        self.conn = Conn::Shared { lane, key };
        Some(id)
    }

    /// Answers every command of a failed dispatch with `error` (in place, in order).
    fn answer_all(&mut self, f: &Fault, error: ClientError) {
        let error = match f.kind {
            FaultKind::NotSent => ClientError::NotSent,
            FaultKind::Lost => error,
        };
        let mut answered = f.received;
        let mut items = Vec::new();
        for cmd in &f.cmds {
            let got = answered.min(cmd.frames);
            answered -= got;
            let hidden = cmd.frames - cmd.replies;
            let visible_left = cmd.replies - got.saturating_sub(hidden).min(cmd.replies);
            if !f.silent {
                for _ in 0..visible_left {
                    items.push(Resolution::Local(error.to_bytes()));
                }
            }
        }
        self.inbox.resolve(f.id, items);
    }
}
