//! What `CLIENT INFO` and `CLIENT LIST` show of this client: the session publishes its state
//! to the registry when it changes (and right before answering CLIENT INFO).

use super::registry::Memory;
use super::Session;

impl Session {
    /// Updates the registry view from the session's state.
    pub(super) fn publish_view(&self) {
        let (sub, psub, ssub) = self.subs.counts();
        let st = &self.state;
        let text = |b: &Option<bytes::Bytes>| {
            b.as_deref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default()
        };
        let multi = self.tx.as_ref().map_or(-1, |t| i64::from(t.queued));
        let pinned = self.conn.pinned_identity();
        let dedicated = self.conn.server_identity();
        let redir = match &self.tracking {
            Some(t) => t.redirect.map_or(0, |r| r as i64),
            None => -1,
        };
        let mem = Memory {
            qbuf: self.rbuf.len(),
            qbuf_free: self.rbuf.capacity() - self.rbuf.len(),
            multi_mem: self.tx.as_ref().map_or(0, |t| t.payload.len()),
            rbs: self.rbuf.capacity(),
            obl: self.wbuf.len(),
            omem: 0,
            oll: self.inbox.in_flight(),
        };
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
            v.mem = mem;
        });
    }
}
