//! What both session targets share: how the client's input is cut and its limits, the users
//! of a context, the client's addresses, and the check of what a session wrote back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis_failover_proxy::auth::{User, Users};
use redis_failover_proxy::backend::BackendAuth;
use redis_failover_proxy::resp::{FrameLimits, ReplyScanner};
use redis_failover_proxy::session::{Context, Dynamic, Limits};

/// Pieces the client's writes are cut into (index: bits 0-3 of the first byte).
pub const PIECES: [usize; 16] = [
    usize::MAX,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    11,
    16,
    23,
    32,
    64,
    128,
    512,
    4096,
];
/// Room in each direction of the in-memory connection: more than any input or output here,
/// so no write is ever cut short (a cut would look like a truncated reply).
pub const PIPE: usize = 64 * 1024 * 1024;

/// The client's limits: the defaults, or small ones so that their errors are reached.
pub fn limits(small: bool, max_in_flight: usize) -> Limits {
    let (frames, query_buffer) = if small {
        let frames = FrameLimits {
            max_bulk: 64,
            max_args: 16,
        };
        (frames, 256)
    } else {
        (FrameLimits::default(), 1024 * 1024 * 1024)
    };
    Limits {
        frames,
        query_buffer,
        output_buffer: PIPE / 2,
        pubsub_output_buffer: PIPE / 2,
        max_in_flight,
    }
}

/// Gives `ctx` its users (the default user with a password, and `app`, when `password`;
/// an open default user otherwise) and, when given, a hold deadline.
pub fn set_users(ctx: &mut Context, password: bool, hold: Option<Duration>) {
    let backend = Arc::new(BackendAuth::default());
    let users = if password {
        Users::new(
            User::with_password("default", "secret", Arc::clone(&backend)),
            vec![User::with_password("app", "pw", backend)],
        )
    } else {
        Users::new(User::open("default", backend), Vec::new())
    };
    let old = ctx.dynamic.load();
    ctx.dynamic = Arc::new(ArcSwap::from_pointee(Dynamic {
        users,
        allow: old.allow.clone(),
        hold_timeout: hold.or(old.hold_timeout),
        max_held_clients: old.max_held_clients,
        stale_reads: old.stale_reads,
        frame_timeout: old.frame_timeout,
        idle_timeout: old.idle_timeout,
    }));
}

/// The client's address and the address it connected to.
pub fn ends() -> (SocketAddr, SocketAddr) {
    (
        ([127, 0, 0, 1], 50000).into(),
        ([127, 0, 0, 1], 6379).into(),
    )
}

/// The invariants after a session ended: whole replies, and the session left the registry
/// and the hold count as it found them.
pub fn check_session(ctx: &Context, out: &[u8]) {
    check_replies(out);
    assert_eq!(
        ctx.registry.len(),
        0,
        "the session did not leave the registry"
    );
    assert_eq!(
        ctx.held.load(std::sync::atomic::Ordering::Acquire),
        0,
        "the session is still counted as held"
    );
}

/// What the session wrote must be whole RESP replies, and a protocol error the last of them.
fn check_replies(out: &[u8]) {
    let mut scanner = ReplyScanner::new();
    let mut at = 0;
    while at < out.len() {
        let info = match scanner.next(&out[at..]) {
            Ok(Some(info)) => info,
            Ok(None) => panic!("a truncated reply at byte {at}: {:?}", show(&out[at..])),
            Err(e) => panic!("not RESP at byte {at} ({e}): {:?}", show(&out[at..])),
        };
        let reply = &out[at..at + info.len];
        at += info.len;
        if reply.starts_with(b"-ERR Protocol error") {
            assert_eq!(
                at,
                out.len(),
                "replies after a protocol error: {:?}",
                show(&out[at..])
            );
        }
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}
