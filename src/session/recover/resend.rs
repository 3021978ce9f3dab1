//! The dispatches a resolution sends again: the commands of a failed dispatch that go out
//! together, in their order, and a script reloaded (`SCRIPT LOAD`, its reply hidden) ahead of
//! the command that found it missing.

use bytes::Bytes;

use crate::backend::{Dispatch, Fault, Resolution, Sent};
use crate::resp::command::Kind;
use crate::resp::Request;
use crate::session::compose::{Compose, Composed};

/// Sends the commands of fault `f` composed so far (in order) as one dispatch, if any.
pub(super) fn flush(resend: &mut Compose, items: &mut Vec<Resolution>, conn: u64, f: &Fault) {
    if resend.is_empty() {
        return;
    }
    let parts = std::mem::take(resend).finish();
    items.push(Resolution::Dispatch(dispatch(conn, f, parts, None)));
}

/// `SCRIPT LOAD <body>` then the command again (its reply only).
pub(super) fn reload(conn: u64, f: &Fault, cmd: &Sent, body: &Bytes) -> Dispatch {
    let mut parts = Compose::default();
    parts.hidden(
        Request::from_args(&[&b"SCRIPT"[..], b"LOAD", body]).bytes(),
        Kind::Write,
        1,
    );
    parts.push(&f.payload[cmd.range.clone()], cmd);
    dispatch(conn, f, parts.finish(), None)
}

/// The dispatch that sends `parts` again for fault `f` (its next attempt), on `conn`;
/// `started`: when a blocking command was first sent.
pub(super) fn dispatch(
    conn: u64,
    f: &Fault,
    parts: Composed,
    started: Option<std::time::Instant>,
) -> Dispatch {
    parts.into_dispatch(conn, f.silent, f.attempt + 1, started, f.durability)
}
