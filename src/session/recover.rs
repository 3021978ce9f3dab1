//! What happens to commands whose dispatch failed: the connection died, or Redis refused a
//! command before running it (the master was demoted, is loading, lost its replicas, or
//! forgot a script).
//!
//! Each command of the failed dispatch gets a [`Plan`] ([`plan`], a pure function): a command
//! that provably did not run (never written, or refused) is sent again; a read-only one is
//! sent again in any case (running it twice changes nothing); a write whose outcome is unknown
//! gets an error saying so; a reply that did arrive is released as it is. Sending again waits
//! for a master: after a refusal, for a topology newer than the refusal (the failover task is
//! told at once), so that a demoted master is never asked twice. The wait is the session's
//! hold, bounded by the hold timeout. Nothing is dropped: every command gets its reply or an
//! error, in its place.

use std::time::Duration;

use bytes::Bytes;

use super::compose::Compose;
use super::hold::{no_master, Pause};
use super::route::Conn;
use super::Session;
use crate::backend::{Fault, FaultKind, Outgoing, ReplyMode, Resolution, Sent};
use crate::failover::Signal;
use crate::resp::command::Kind;
use crate::resp::reply::{ClientError, Proto, Value};
use crate::resp::Request;
use crate::topology::Reason;

mod plan;
mod resend;
use plan::{plan, Plan};
use resend::{flush, reload};

/// Times a dispatch may be sent again to the same master.
const MAX_RESEND: u8 = 3;
/// How long a dispatch whose connection failed waits before it goes again to a master that
/// is still named: time for the failover task, told at once, to probe that master.
const RESEND_PAUSE: Duration = Duration::from_millis(100);

impl Session {
    /// Resolves the failed dispatch at the front of the inbox; returns false when it must
    /// wait for a master (it stays at the front meanwhile).
    pub(super) async fn resolve(&mut self, f: Fault) -> bool {
        let plans = plan(&f, &self.ctx.scripts);
        let needs_master = plans.iter().any(|(_, p)| p.needs_master());
        let pinned = self.conn.is_pinned() && self.conn.id() == Some(f.conn);
        if pinned && self.lost_pinned_state() {
            self.answer(&f, &plans);
            return true;
        }
        if needs_master && f.kind != FaultKind::Refused && !pinned && self.master_busy() {
            // No connection can be had until the script ends: answer now, saying why.
            if self.ctx.topology.load().routable_master().is_some() {
                self.end_hold();
            }
            self.apply(&f, plans, Some(ClientError::Busy)).await;
            return true;
        }
        if needs_master && !self.master_ready(&f) {
            return false;
        }
        let paced = needs_master && !pinned && f.kind != FaultKind::Refused;
        if paced {
            match self.pause_state(f.id) {
                Pause::Waiting => return false,
                // Sent again and failed again: give the failover task time first, once for
                // everything that connection failed.
                Pause::Absent
                    if f.attempt > 0
                        && !self.recovery.paused_for(f.conn)
                        && self.start_pause(f.id, &self.pause_reason(), RESEND_PAUSE) =>
                {
                    return false;
                }
                Pause::Over => self.recovery.pause_over(f.conn),
                _ => {}
            }
        }
        self.recovery.resolved();
        let fail = if needs_master {
            self.resend_target(&f, pinned).await
        } else {
            None
        };
        // Not sent: the connection could not be had, or the master was put in doubt since
        // `master_ready` looked. Either way the hold, not the client, waits.
        let unsent = matches!(
            fail,
            Some(ClientError::NotSent | ClientError::NoMaster { .. })
        );
        if paced && unsent && self.start_pause(f.id, &self.pause_reason(), RESEND_PAUSE) {
            return false;
        }
        if fail.is_some() && self.ctx.topology.load().routable_master().is_some() {
            // The commands get their answer; a later outage starts a hold of its own.
            self.end_hold();
        }
        self.apply(&f, plans, fail).await;
        true
    }

    /// Whether the master commands go to is busy running a script.
    fn master_busy(&self) -> bool {
        match &self.conn {
            Conn::Shared { key, .. } => self.node_busy(key),
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } => self.node_busy(conn.key()),
            Conn::None => false,
        }
    }

    /// Why a paused dispatch waits (the error text if the hold runs out).
    fn pause_reason(&self) -> Reason {
        Reason::Rechecking(Box::new(self.ctx.topology.load().reason.clone()))
    }

    /// Whether a master is ready for what must be sent again; signals the failover task and
    /// holds otherwise.
    fn master_ready(&mut self, f: &Fault) -> bool {
        let topo = self.ctx.topology.load();
        let seen_at = self.recovery.resolving(f.id, topo.epoch);
        let demoted = f.kind == FaultKind::Refused && !only_noscript(f);
        if seen_at == topo.epoch || f.kind != FaultKind::Refused {
            self.signal(f, demoted);
        }
        let newer = !demoted || topo.epoch > seen_at;
        if newer && topo.routable_master().is_some() {
            return true;
        }
        match self.hold_for(&topo.reason) {
            super::hold::Wait::Hold => false,
            // The hold ran out: answer now (the resends become errors).
            super::hold::Wait::Fail(_) => true,
        }
    }

    /// Tells the failover task the master in use failed this dispatch.
    fn signal(&self, f: &Fault, demoted: bool) {
        let master = match &self.conn {
            Conn::Shared { key, .. } if f.conn == self.conn.id().unwrap_or(0) => Some(&key.node),
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } if conn.id() == f.conn => {
                Some(&conn.key().node)
            }
            _ => None,
        };
        let Some(master) = master else { return };
        let reason = match f.kind {
            FaultKind::Refused if demoted => refusal_code(f),
            FaultKind::Refused => return,
            FaultKind::Lost | FaultKind::NotSent => "a lost connection".into(),
        };
        self.ctx.signals.send(Signal::Trouble {
            master: std::sync::Arc::clone(master),
            reason,
            demotion: demoted,
        });
    }

    /// Whether a failed pinned connection held state that cannot be rebuilt (MONITOR,
    /// tracking): the dispatch is then answered with errors and the client closed, so that it
    /// reconnects (and a tracking client flushes its cache).
    fn lost_pinned_state(&mut self) -> bool {
        let Some(pins) = self.pins() else {
            return false;
        };
        if pins.monitor || pins.tracking {
            tracing::info!(
                client.id = self.id(),
                "dedicated connection lost under MONITOR or tracking; closing client"
            );
            self.discard_conn();
            self.close();
            return true;
        }
        false
    }

    /// Makes the connection resends go to current; returns an error for them instead when
    /// there is none (the hold ran out, or no connection could be had).
    async fn resend_target(&mut self, f: &Fault, pinned: bool) -> Option<ClientError> {
        let topo = self.ctx.topology.load();
        if topo.routable_master().is_none() {
            return Some(no_master(&topo.reason));
        }
        if f.attempt >= MAX_RESEND && !self.master_moved(&topo) {
            // Refused again and again by a master that stays in place (`LOADING`, `READONLY`
            // injected, a master that keeps refusing): the client hears the master's words.
            let refusal = f
                .tail
                .iter()
                .find(|t| t.refused)
                .map(|t| String::from_utf8_lossy(&t.bytes).trim_end().to_string());
            return Some(match refusal {
                Some(reply) => ClientError::RefusedAgain {
                    reply,
                    times: f.attempt + 1,
                },
                None => ClientError::NotSent,
            });
        }
        if pinned {
            self.end_hold();
            let pins = self.pins().unwrap_or_default();
            if pins.pubsub {
                self.resubscribe().await;
                return self
                    .conn
                    .is_pinned()
                    .then_some(())
                    .map_or(Some(ClientError::NotSent), |_| None);
            }
            if pins.watch {
                self.watch_broken = true;
            }
            self.discard_conn();
        }
        let blocking = f
            .cmds
            .iter()
            .any(|c| matches!(c.kind, Kind::Blocking | Kind::Wait));
        // The hold ends once the commands have somewhere to go; until then a pause may
        // continue it (see `resolve`).
        if blocking {
            if let Conn::Borrowed { .. } = self.conn {
                self.discard_conn();
            }
            return match self.take_dedicated().await {
                Ok(conn) => {
                    self.end_hold();
                    self.conn = Conn::Borrowed { conn };
                    None
                }
                Err(_) => Some(ClientError::NotSent),
            };
        }
        let key = match self.shared_key() {
            Ok(k) => k,
            Err(_) => return Some(no_master(&topo.reason)),
        };
        let stale = !matches!(&self.conn, Conn::Shared { lane, key: k, .. } if *k == key && !lane.is_closed());
        if stale {
            match self.ctx.pool.lane(&key) {
                Ok(lane) => {
                    if let Conn::Borrowed { .. } = self.conn {
                        self.discard_conn();
                    }
                    // Epoch 0: the next command checks the route against the topology
                    // again (this lane was not chosen by reading one snapshot).
                    self.conn = Conn::Shared {
                        lane,
                        key,
                        epoch: 0,
                    };
                }
                Err(e) => return Some(self.refusal(&e.0).unwrap_or(ClientError::NotSent)),
            }
        }
        self.end_hold();
        None
    }

    /// Whether the master routable now is another than the one the session's shared lane
    /// goes to (the one its last dispatch failed on).
    fn master_moved(&self, topo: &crate::topology::Topology) -> bool {
        match (&self.conn, topo.routable_master()) {
            (Conn::Shared { key, .. }, Some(m)) => key.node != m.node,
            _ => false,
        }
    }

    /// Replaces the failed dispatch with what the plans say, and sends what goes again.
    async fn apply(&mut self, f: &Fault, plans: Vec<(Sent, Plan)>, fail: Option<ClientError>) {
        let conn = self.conn.id().unwrap_or(0);
        let mut items = Vec::new();
        let mut resend = Compose::default();
        for (cmd, p) in plans {
            let p = match (&fail, p) {
                (Some(e), p) if p.needs_master() => Plan::Fail(e.clone()),
                (_, p) => p,
            };
            if p.needs_master() {
                crate::metrics::retry(retry_reason(f));
            }
            match p {
                Plan::Resend => resend.push(&f.payload[cmd.range.clone()], &cmd),
                Plan::Reissue(remaining) => {
                    flush(&mut resend, &mut items, conn, f);
                    items.push(self.reissue(f, &cmd, remaining));
                }
                Plan::ReloadScript(body) => {
                    flush(&mut resend, &mut items, conn, f);
                    items.push(Resolution::Dispatch(reload(conn, f, &cmd, &body)));
                }
                other => {
                    flush(&mut resend, &mut items, conn, f);
                    for bytes in self.answer_bytes(&cmd, other, f.silent) {
                        items.push(Resolution::Local(bytes));
                    }
                }
            }
        }
        flush(&mut resend, &mut items, conn, f);
        let sends: Vec<(Bytes, u32, bool)> = items
            .iter()
            .filter_map(|i| match i {
                Resolution::Dispatch(d) => Some((d.payload.clone(), d.expect, d.started.is_none())),
                Resolution::Local(_) => None,
            })
            .collect();
        let mode = if self.subs.any() && self.state.proto == Proto::Resp2 {
            ReplyMode::PubSub
        } else {
            ReplyMode::Counted
        };
        let tos = self.inbox.resolve(f.id, items);
        for (to, (payload, expect, timed)) in tos.into_iter().zip(sends) {
            self.conn
                .send(Outgoing {
                    payload,
                    expect,
                    mode,
                    timed,
                    to,
                })
                .await;
        }
    }

    /// A blocking command sent again with the time it had left, or its timeout reply.
    fn reissue(&self, f: &Fault, cmd: &Sent, remaining: Option<Duration>) -> Resolution {
        let rebuilt = Request::parse(&f.payload[cmd.range.clone()])
            .and_then(|r| plan::with_timeout(&r, remaining));
        match rebuilt {
            Some(req) => {
                let mut parts = Compose::default();
                parts.push(req.bytes(), cmd);
                let conn = self.conn.id().unwrap_or(0);
                Resolution::Dispatch(resend::dispatch(conn, f, parts.finish(), f.started))
            }
            None => Resolution::Local(Value::NullArray.to_bytes(self.state.proto)),
        }
    }

    /// The bytes a plan that sends nothing answers with.
    fn answer_bytes(&self, cmd: &Sent, p: Plan, silent: bool) -> Vec<Bytes> {
        let visible = |b: Bytes| if silent { None } else { Some(b) };
        match p {
            Plan::Release(frames) => frames.into_iter().filter_map(visible).collect(),
            Plan::Fail(e) => (0..cmd.replies)
                .inspect(|_| super::commands::count_error(&e))
                .filter_map(|_| visible(e.to_bytes()))
                .collect(),
            Plan::FailRemaining(e, n) => (0..n)
                .inspect(|_| super::commands::count_error(&e))
                .filter_map(|_| visible(e.to_bytes()))
                .collect(),
            Plan::Null => visible(Value::NullArray.to_bytes(self.state.proto))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Answers every command of a dispatch without sending anything (lost pinned state).
    fn answer(&mut self, f: &Fault, plans: &[(Sent, Plan)]) {
        let mut items = Vec::new();
        for (cmd, p) in plans {
            let p = match p {
                Plan::Done => continue,
                Plan::Release(frames) => Plan::Release(frames.clone()),
                _ if f.kind == FaultKind::NotSent => Plan::Fail(ClientError::NotSent),
                _ => Plan::Fail(ClientError::OutcomeUnknown),
            };
            for bytes in self.answer_bytes(cmd, p, f.silent) {
                items.push(Resolution::Local(bytes));
            }
        }
        self.inbox.resolve(f.id, items);
    }
}

/// The `reason` label of a retry.
fn retry_reason(f: &Fault) -> &'static str {
    match f.kind {
        FaultKind::NotSent => "not_sent",
        FaultKind::Lost => "lost_read",
        FaultKind::Refused if only_noscript(f) => "noscript",
        FaultKind::Refused => "refused",
    }
}

/// Whether every refusal in the fault is NOSCRIPT (not a sign of demotion).
fn only_noscript(f: &Fault) -> bool {
    f.tail
        .iter()
        .filter(|t| t.refused)
        .all(|t| t.bytes.starts_with(b"-NOSCRIPT"))
}

/// The error code of the first refusal (`READONLY`, ...).
fn refusal_code(f: &Fault) -> String {
    f.tail
        .iter()
        .find(|t| t.refused)
        .and_then(|t| {
            t.bytes[1..]
                .split(|&c| c == b' ')
                .next()
                .map(|c| String::from_utf8_lossy(c).into_owned())
        })
        .unwrap_or_else(|| "a refusal".into())
}
