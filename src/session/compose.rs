//! The one builder of what a dispatch carries: its payload, the commands in it, and the reply
//! frames expected and skipped.
//!
//! Every dispatch other than the ordinary batch ([`batch`](super::batch), kept apart because
//! it is the hot path and only ever holds visible replies) is composed here: a client's
//! special command, a transaction, `WAIT` behind its `PUBLISH`, re-subscriptions, a resend,
//! a script reloaded ahead of its command. Each command is appended with its frames and how
//! many of them the client sees; `expect` and `skip` follow from those alone, so no caller
//! counts them. The proxy's own replies always come first within a command or a dispatch
//! (`MULTI` and `QUEUED` before `EXEC`'s, `PUBLISH` before `WAIT`), which is what `skip`
//! (leading frames dropped) relies on.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::backend::{Dispatch, Sent};
use crate::config::Durability;
use crate::resp::command::Kind;

/// A dispatch being composed.
#[derive(Debug, Default)]
pub(super) struct Compose {
    payload: BytesMut,
    cmds: SmallVec<[Sent; 1]>,
    expect: u32,
    skip: u32,
}

/// What a composed dispatch carries.
#[derive(Debug, Clone)]
pub(super) struct Composed {
    pub(super) payload: Bytes,
    pub(super) cmds: SmallVec<[Sent; 1]>,
    /// Reply frames expected.
    pub(super) expect: u32,
    /// Leading frames the client does not see.
    pub(super) skip: u32,
}

impl Compose {
    /// Appends `bytes`, a command described by `cmd` (its range is set here). Its hidden
    /// frames (`frames - replies`) are skipped as long as nothing visible came before.
    pub(super) fn push(&mut self, bytes: &[u8], cmd: &Sent) {
        let start = self.payload.len();
        self.payload.extend_from_slice(bytes);
        self.note(start, cmd);
    }

    /// Like [`client`](Self::client), taking over `bytes` when nothing was pushed yet (a
    /// buffered transaction is not copied).
    pub(super) fn client_buf(
        &mut self,
        bytes: BytesMut,
        kind: Kind,
        frames: (u32, u32),
        confirm: bool,
    ) {
        if !self.payload.is_empty() {
            return self.client(&bytes, kind, frames, confirm);
        }
        self.payload = bytes;
        self.note(0, &client_cmd(kind, frames, confirm));
    }

    /// Records the command whose bytes start at `start` and end the payload.
    fn note(&mut self, start: usize, cmd: &Sent) {
        if self.expect == self.skip {
            self.skip += cmd.frames - cmd.replies;
        }
        self.cmds.push(Sent {
            range: start..self.payload.len(),
            ..cmd.clone()
        });
        self.expect += cmd.frames;
    }

    /// Appends a command the proxy added: `frames` replies, none for the client.
    pub(super) fn hidden(&mut self, bytes: &[u8], kind: Kind, frames: u32) {
        self.push(bytes, &Sent::hidden(0..0, kind, frames));
    }

    /// Appends a client's command: `frames` replies, `replies` of them (the last ones) for
    /// the client; `confirm`: a durable write.
    pub(super) fn client(&mut self, bytes: &[u8], kind: Kind, frames: (u32, u32), confirm: bool) {
        self.push(bytes, &client_cmd(kind, frames, confirm));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    pub(super) fn finish(self) -> Composed {
        Composed {
            payload: self.payload.freeze(),
            cmds: self.cmds,
            expect: self.expect,
            skip: self.skip,
        }
    }
}

/// A client's command: `frames` replies, `replies` of them for the client.
fn client_cmd(kind: Kind, (frames, replies): (u32, u32), confirm: bool) -> Sent {
    Sent {
        range: 0..0,
        kind,
        frames,
        replies,
        confirm,
    }
}

impl Composed {
    /// These commands as the inbox registers them: sent on `conn`, attempt `attempt` (0
    /// first), `started` when a blocking command was first sent, under `durability`.
    pub(super) fn into_dispatch(
        self,
        conn: u64,
        silent: bool,
        attempt: u8,
        started: Option<std::time::Instant>,
        durability: Option<Durability>,
    ) -> Dispatch {
        Dispatch {
            conn,
            expect: self.expect,
            skip: self.skip,
            silent,
            payload: self.payload,
            cmds: self.cmds,
            attempt,
            started,
            durability,
        }
    }

    /// One client command whose `frames` replies the client all sees.
    pub(super) fn command(bytes: &[u8], kind: Kind, frames: u32) -> Self {
        let mut c = Compose::default();
        c.client(bytes, kind, (frames, frames), false);
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each kind of composed dispatch expects and skips: counted from the commands.
    #[test]
    fn expect_and_skip_follow_from_the_commands() {
        let plain = Composed::command(b"GET k", Kind::Read, 1);
        assert_eq!((plain.expect, plain.skip), (1, 0));

        // WAIT behind the proxy's PUBLISH.
        let mut wait = Compose::default();
        wait.hidden(b"PUBLISH", Kind::Write, 1);
        wait.client(b"WAIT", Kind::Wait, (1, 1), false);
        let wait = wait.finish();
        assert_eq!((wait.expect, wait.skip), (2, 1));
        assert_eq!(wait.payload, Bytes::from_static(b"PUBLISHWAIT"));
        assert_eq!(wait.cmds[1].range, 7..11);

        // A transaction of three commands: MULTI, three QUEUED, then EXEC's reply.
        let mut tx = Compose::default();
        tx.client_buf(
            BytesMut::from(&b"MULTI...EXEC"[..]),
            Kind::Write,
            (5, 1),
            true,
        );
        let tx = tx.finish();
        assert_eq!((tx.expect, tx.skip), (5, 4));
        assert!(tx.cmds[0].confirm);
        assert_eq!(tx.cmds[0].range, 0..12);

        // Hidden frames after a visible one are not leading: nothing more is skipped.
        let mut mixed = Compose::default();
        mixed.client(b"A", Kind::Read, (1, 1), false);
        mixed.hidden(b"B", Kind::Write, 2);
        let mixed = mixed.finish();
        assert_eq!((mixed.expect, mixed.skip), (3, 0));
    }
}
