//! What a client session remembers about its client: the state Redis keeps per connection
//! (user, database, protocol, name, reply mode), the subscriptions it holds, and a MULTI block
//! being buffered. Plain data, owned by the session task.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::auth::User;
use crate::resp::command::Channels;
use crate::resp::reply::Proto;

/// CLIENT REPLY mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// Replies are sent.
    On,
    /// No replies until ON.
    Off,
    /// The next command's reply is dropped.
    Skip,
}

/// Per-connection state, as Redis keeps it.
#[derive(Debug)]
pub struct ClientState {
    /// Authenticated user; `None` until authentication when a password is required.
    pub user: Option<Arc<User>>,
    /// Selected database.
    pub db: u32,
    /// Protocol chosen with HELLO.
    pub proto: Proto,
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: Option<Bytes>,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: Option<Bytes>,
    /// CLIENT REPLY.
    pub reply: ReplyMode,
}

impl ClientState {
    /// State of a new connection; `default_user` is set when no password is required.
    pub fn new(default_user: Option<Arc<User>>) -> Self {
        Self {
            user: default_user,
            db: 0,
            proto: Proto::Resp2,
            name: None,
            lib_name: None,
            lib_ver: None,
            reply: ReplyMode::On,
        }
    }

    /// Whether commands other than AUTH/HELLO/QUIT/RESET may run.
    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// Name of the authenticated user (`default` before authentication).
    pub fn user_name(&self) -> &str {
        self.user.as_ref().map_or("default", |u| u.name.as_str())
    }
}

/// Channels, patterns and shard channels a client is subscribed to.
#[derive(Debug, Default)]
pub struct Subscriptions {
    plain: HashSet<Bytes>,
    pattern: HashSet<Bytes>,
    shard: HashSet<Bytes>,
}

impl Subscriptions {
    fn set(&mut self, kind: Channels) -> &mut HashSet<Bytes> {
        match kind {
            Channels::Plain => &mut self.plain,
            Channels::Pattern => &mut self.pattern,
            Channels::Shard => &mut self.shard,
        }
    }

    /// Records a subscription command; returns the reply frames Redis sends for it (one
    /// confirmation per argument, repeated arguments included).
    pub fn subscribe(&mut self, kind: Channels, names: &[&[u8]]) -> u32 {
        let set = self.set(kind);
        for n in names {
            set.insert(Bytes::copy_from_slice(n));
        }
        names.len() as u32
    }

    /// Records an unsubscription command; returns the reply frames Redis sends for it (one per
    /// argument, or one per current subscription when none is named, at least one).
    pub fn unsubscribe(&mut self, kind: Channels, names: &[&[u8]]) -> u32 {
        let set = self.set(kind);
        if names.is_empty() {
            let n = set.len().max(1) as u32;
            set.clear();
            return n;
        }
        for n in names {
            set.remove(*n);
        }
        names.len() as u32
    }

    /// Whether any subscription is held (RESP2 subscribed mode).
    pub fn any(&self) -> bool {
        !(self.plain.is_empty() && self.pattern.is_empty() && self.shard.is_empty())
    }

    /// Every subscription, by namespace.
    pub fn lists(&self) -> [(Channels, Vec<Bytes>); 3] {
        let list = |s: &HashSet<Bytes>| {
            let mut v: Vec<Bytes> = s.iter().cloned().collect();
            v.sort();
            v
        };
        [
            (Channels::Plain, list(&self.plain)),
            (Channels::Pattern, list(&self.pattern)),
            (Channels::Shard, list(&self.shard)),
        ]
    }

    /// Counts for CLIENT INFO (`sub`, `psub`, `ssub`).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.plain.len(), self.pattern.len(), self.shard.len())
    }

    /// Forgets everything (RESET, lost connection).
    pub fn clear(&mut self) {
        self.plain.clear();
        self.pattern.clear();
        self.shard.clear();
    }
}

/// A MULTI block the proxy buffers (no WATCH): sent whole, with EXEC, as one write on a
/// shared connection, so that nothing of another client can come between its commands.
#[derive(Debug)]
pub struct TxBuffer {
    /// `MULTI` followed by the queued commands.
    pub payload: BytesMut,
    /// Commands queued.
    pub queued: u32,
    /// A queue-time error happened: EXEC answers EXECABORT without sending anything.
    pub dirty: bool,
    /// A queued command changes data (a durable write waits for the replicas after EXEC).
    pub writes: bool,
}

impl TxBuffer {
    /// An empty block starting with MULTI.
    pub fn new() -> Self {
        let mut payload = BytesMut::new();
        payload.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        Self {
            payload,
            queued: 0,
            dirty: false,
            writes: false,
        }
    }

    /// Appends a command.
    pub fn queue(&mut self, frame: &[u8]) {
        self.payload.extend_from_slice(frame);
        self.queued += 1;
    }
}

impl Default for TxBuffer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_counts_match_redis() {
        let mut s = Subscriptions::default();
        assert_eq!(s.subscribe(Channels::Plain, &[b"a", b"a"]), 2);
        assert_eq!(s.subscribe(Channels::Shard, &[b"b"]), 1);
        assert!(s.any());
        assert_eq!(s.unsubscribe(Channels::Plain, &[]), 1);
        assert!(s.any(), "shard subscription keeps subscribed mode");
        assert_eq!(s.unsubscribe(Channels::Shard, &[b"b", b"zz"]), 2);
        assert!(!s.any());
        assert_eq!(s.unsubscribe(Channels::Pattern, &[]), 1);
    }
}
