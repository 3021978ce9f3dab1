//! The dispatches a resolution sends again: the commands of a failed dispatch that go out
//! together, in their order, and a script reloaded (`SCRIPT LOAD`, its reply hidden) ahead of
//! the command that found it missing.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::backend::{Dispatch, Fault, Resolution, Sent};
use crate::resp::command::Kind;
use crate::resp::Request;

/// Commands of a fault that go out again together, in order.
#[derive(Debug, Default)]
pub(super) struct Batch {
    payload: BytesMut,
    cmds: SmallVec<[Sent; 1]>,
    expect: u32,
    skip: u32,
}

impl Batch {
    pub(super) fn push(&mut self, payload: &[u8], cmd: &Sent) {
        if self.expect == self.skip {
            // Nothing visible yet: hidden frames of this command are skipped too.
            self.skip += cmd.frames - cmd.replies;
        }
        let start = self.payload.len();
        self.payload.extend_from_slice(payload);
        self.cmds.push(Sent {
            range: start..self.payload.len(),
            ..cmd.clone()
        });
        self.expect += cmd.frames;
    }

    pub(super) fn flush(&mut self, items: &mut Vec<Resolution>, conn: u64, f: &Fault) {
        if self.cmds.is_empty() {
            return;
        }
        let b = std::mem::take(self);
        items.push(Resolution::Dispatch(Dispatch {
            conn,
            expect: b.expect,
            skip: b.skip,
            silent: f.silent,
            payload: b.payload.freeze(),
            cmds: b.cmds,
            attempt: f.attempt + 1,
            started: None,
            durability: f.durability,
        }));
    }
}

/// `SCRIPT LOAD <body>` then the command again (its reply only).
pub(super) fn reload(conn: u64, f: &Fault, cmd: &Sent, body: &Bytes) -> Dispatch {
    let mut payload = BytesMut::new();
    payload.extend_from_slice(Request::from_args(&[&b"SCRIPT"[..], b"LOAD", body]).bytes());
    let split = payload.len();
    payload.extend_from_slice(&f.payload[cmd.range.clone()]);
    let total = payload.len();
    Dispatch {
        conn,
        expect: 2,
        skip: 1,
        silent: f.silent,
        payload: payload.freeze(),
        cmds: SmallVec::from_vec(vec![
            Sent::hidden(0..split, Kind::Write, 1),
            Sent {
                range: split..total,
                ..cmd.clone()
            },
        ]),
        attempt: f.attempt + 1,
        started: None,
        durability: f.durability,
    }
}
