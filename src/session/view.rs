//! What `CLIENT INFO` and `CLIENT LIST` show of this client, derived from the session's own
//! state in one place, once per turn of its loop ([`Session::show`]).
//!
//! Buffer sizes change every turn and are stored as plain numbers. The rest (name, database,
//! user, protocol, subscriptions, MULTI, pinned connection, tracking redirect) changes
//! rarely: each turn takes its [`Shape`], a few plain values, and rebuilds the registry's
//! view only when the shape differs from the one last shown. No handler has to remember to
//! publish what it changed; the latest command and last input are written as they happen
//! (`registry::Entry::note_cmd`, `touch`).

use super::registry::Memory;
use super::route::Conn;
use super::Session;

/// What the visible state looks like, cheap enough to take every turn: plain values, and
/// the address and length of each name (a name set again is a new buffer, so a change is
/// never missed; at worst an unchanged one is shown again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Shape {
    db: u32,
    resp: i64,
    subs: (usize, usize, usize),
    multi: i64,
    pinned: Option<i64>,
    dedicated: Option<i64>,
    redir: i64,
    names: [(usize, usize); 4],
}

/// The address and length of an optional name.
fn at(b: Option<&[u8]>) -> (usize, usize) {
    b.map_or((0, 0), |b| (b.as_ptr() as usize, b.len()))
}

impl Session {
    /// Shows this turn's state in the registry: buffer sizes always, the rest when it changed.
    pub(super) fn show(&mut self) {
        self.info.show_memory(self.memory());
        let shape = self.shape();
        if shape != self.shown {
            self.shown = shape;
            self.publish_view();
        }
    }

    fn shape(&self) -> Shape {
        let st = &self.state;
        // The server's ids of the dedicated connection (no node identity cloned each turn).
        let (pinned, dedicated) = match &self.conn {
            Conn::Pinned { conn, .. } => (Some(conn.client_id), Some(conn.client_id)),
            Conn::Borrowed { conn } => (None, Some(conn.client_id)),
            _ => (None, None),
        };
        Shape {
            db: st.db,
            resp: st.proto.number(),
            subs: self.subs.counts(),
            multi: self.multi_count(),
            pinned,
            dedicated,
            redir: self.redir(),
            names: [
                at(st.name.as_deref()),
                at(st.lib_name.as_deref()),
                at(st.lib_ver.as_deref()),
                at(Some(st.user_name().as_bytes())),
            ],
        }
    }

    fn memory(&self) -> Memory {
        Memory {
            qbuf: self.rbuf.len(),
            qbuf_free: self.rbuf.capacity() - self.rbuf.len(),
            multi_mem: self.tx.as_ref().map_or(0, |t| t.payload.len()),
            rbs: self.rbuf.capacity(),
            obl: self.wbuf.len(),
            omem: 0,
            oll: self.inbox.in_flight(),
        }
    }

    /// Commands queued in MULTI (-1 outside MULTI).
    fn multi_count(&self) -> i64 {
        self.tx.as_ref().map_or(-1, |t| i64::from(t.queued))
    }

    /// The tracking redirect as `CLIENT GETREDIR` reports it.
    fn redir(&self) -> i64 {
        match &self.tracking {
            Some(t) => t.redirect.map_or(0, |r| r as i64),
            None => -1,
        }
    }

    /// Rebuilds the registry's view from the session's state.
    fn publish_view(&self) {
        let (sub, psub, ssub) = self.subs.counts();
        let st = &self.state;
        let text = |b: &Option<bytes::Bytes>| {
            b.as_deref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default()
        };
        let (multi, redir) = (self.multi_count(), self.redir());
        let pinned = self.conn.pinned_identity();
        let dedicated = self.conn.server_identity();
        self.info.update(|v| {
            v.name = text(&st.name);
            v.db = st.db;
            v.user = st.user_name().to_string();
            v.resp = st.proto.number();
            v.lib_name = text(&st.lib_name);
            v.lib_ver = text(&st.lib_ver);
            v.sub = sub;
            v.psub = psub;
            v.ssub = ssub;
            v.multi = multi;
            v.pinned = pinned;
            v.dedicated = dedicated;
            v.redir = redir;
        });
    }
}
