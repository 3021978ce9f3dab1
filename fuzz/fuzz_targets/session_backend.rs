//! A real client session with a backend under hostile input and a misbehaving master: the
//! client's bytes reach a [`Session`] whose topology names one verified master, the scripted
//! fake Redis of `redis_failover_proxy::backend::fake` on a loopback port. So commands are
//! batched, sent, answered, and, when the fake cuts a connection or refuses, recovered: resent,
//! held, or answered with an error. This is the target that reaches `session::recover`.
//!
//! The first byte chooses the client's side:
//! - bits 0-3: piece size of the client's writes (0: all at once), the session getting a turn
//!   after each piece;
//! - bit 4: the default user has a password (clients start unauthenticated);
//! - bit 5: small limits (frames, query buffer, commands in flight);
//! - bit 6: the proxy starts draining after the first piece;
//! - bit 7: the client waits until no reply came for a while before closing (otherwise it
//!   closes at once after its last piece, cutting what is in flight).
//!
//! The second byte scripts the master:
//! - bits 0-2: close each connection after it received this many bytes, handshake included
//!   (none, or 1 to 4,000: during the handshake, during a batch, after some batches);
//! - bits 3-4: refuse every data command (none, `READONLY`, `LOADING`, `MASTERDOWN`);
//! - bits 5-6: delay before each reply (0 to 20 ms);
//! - bit 7: the node answers as a replica (every connection fails its identity check).
//!
//! Time is real (the fake's sockets are real; paused time would fire deadlines while a reply
//! is on its way), with short hold and reply deadlines. Invariants: nothing panics; the session
//! ends once the client has closed, within a deadline; what it wrote is a sequence of whole
//! RESP replies, nothing follows a protocol error; the session leaves the client registry and
//! the hold count as it found them.

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use redis_failover_proxy::backend::fake::{FakeRedis, Script};
use redis_failover_proxy::backend::{Endpoint, Lease, NodeId};
use redis_failover_proxy::session::{Context, Session};
use redis_failover_proxy::shutdown;
use redis_failover_proxy::topology::fixtures::master;
use redis_failover_proxy::topology::{Reason, RouteState, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "common.rs"]
mod common;
use common::{check_session, ends, limits, set_users, PIECES, PIPE};

/// Bytes after which the fake closes each connection (index: bits 0-2 of the second byte).
const CUTS: [Option<usize>; 8] = [
    None,
    Some(1),
    Some(40),
    Some(120),
    Some(200),
    Some(400),
    Some(1000),
    Some(4000),
];
/// Refusals of data commands (index: bits 3-4 of the second byte).
const REFUSALS: [Option<&str>; 4] = [
    None,
    Some("READONLY You can't write against a read only replica."),
    Some("LOADING Redis is loading the dataset in memory"),
    Some("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
];
/// Delays before each reply, in milliseconds (index: bits 5-6 of the second byte).
const DELAYS_MS: [u64; 4] = [0, 1, 5, 20];
/// How long one exchange may take (real time): far beyond the hold and reply deadlines below,
/// so only a session that does not end trips it.
const DEADLINE: Duration = Duration::from_secs(8);
/// How long without a reply before a patient client closes.
const QUIET: Duration = Duration::from_millis(160);
/// How often the client looks whether the replies stopped coming.
const TICK: Duration = Duration::from_millis(20);
/// The hold deadline: long enough that a resend's pause (100 ms) fits, short enough to keep
/// runs quick.
const HOLD: Duration = Duration::from_millis(120);

#[derive(Debug, Clone, Copy)]
struct Client {
    piece: usize,
    password: bool,
    small: bool,
    drain: bool,
    patient: bool,
}

impl Client {
    fn from_byte(b: u8) -> Self {
        Self {
            piece: PIECES[usize::from(b & 0x0f)],
            password: b & 0x10 != 0,
            small: b & 0x20 != 0,
            drain: b & 0x40 != 0,
            patient: b & 0x80 != 0,
        }
    }
}

fn script(b: u8) -> Script {
    Script {
        run_id: "fuzz-master".into(),
        role: if b & 0x80 != 0 { "slave" } else { "master" },
        delay: Duration::from_millis(DELAYS_MS[usize::from((b >> 5) & 0x03)]),
        refuse: REFUSALS[usize::from((b >> 3) & 0x03)].map(str::to_string),
        cut_after: CUTS[usize::from(b & 0x07)],
    }
}

/// A context whose topology names the fake as the verified master (no lease needed), with
/// the hold deadline above.
fn context(client: Client, fake: std::net::SocketAddr) -> Arc<Context> {
    let mut ctx = Context::standalone(limits(client.small, if client.small { 2 } else { 64 }));
    let node = Arc::new(NodeId {
        endpoint: Endpoint::plain(fake, fake.to_string().into()),
        run_id: "fuzz-master".into(),
    });
    let verified = Topology {
        epoch: ctx.topology.epoch() + 1,
        state: RouteState::Verified,
        master: Some(master(Arc::clone(&node), Lease::unbounded(node))),
        reason: Reason::Verified {
            master: fake.to_string(),
        },
        ..Topology::initial()
    };
    assert!(ctx.topology.publish(verified));
    set_users(&mut ctx, client.password, Some(HOLD));
    Arc::new(ctx)
}

fuzz_target!(|data: &[u8]| {
    let [ctl, server, input @ ..] = data else {
        return;
    };
    let client = Client::from_byte(*ctl);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let fake = FakeRedis::start(script(*server)).await;
        let ctx = context(client, fake.addr());
        let out = exchange(Arc::clone(&ctx), client, input).await;
        check_session(&ctx, &out);
    });
});

/// Runs one session: the client writes `input` in pieces and closes (once the replies stop
/// coming, when patient); returns what the session wrote back.
async fn exchange(ctx: Arc<Context>, client: Client, input: &[u8]) -> Vec<u8> {
    let (addr, laddr) = ends();
    let (near, far) = tokio::io::duplex(PIPE);
    let (server_rd, server_wr) = tokio::io::split(far);
    let (mut client_rd, mut client_wr) = tokio::io::split(near);
    let (trigger, drain) = shutdown::drain();
    let session = Session::new(ctx, addr, laddr, 7);
    let (sent, sent_rx) = tokio::sync::watch::channel(false);
    let (quiet, quiet_rx) = tokio::sync::oneshot::channel::<()>();

    let send = async {
        for (i, piece) in input
            .chunks(client.piece.min(input.len()).max(1))
            .enumerate()
        {
            if client_wr.write_all(piece).await.is_err() {
                // The session ended (QUIT, a protocol error): the rest goes nowhere.
                break;
            }
            // Let the session take this piece before the next arrives.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            if i == 0 && client.drain {
                trigger.trigger();
            }
        }
        let _ = sent.send(true);
        if client.patient {
            // Told by `receive` once the replies stopped coming (or it ended).
            let _ = quiet_rx.await;
        }
        let _ = client_wr.shutdown().await;
    };
    let receive = async {
        let mut quiet = Some(quiet);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut silent_for = Duration::ZERO;
        loop {
            match tokio::time::timeout(TICK, client_rd.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return out,
                Ok(Ok(n)) => {
                    out.extend_from_slice(&buf[..n]);
                    silent_for = Duration::ZERO;
                }
                Err(_) => {
                    silent_for += TICK;
                    // Longer than a hold: the session is done with what it could answer (or
                    // waits for the reply deadline, which closing cuts short).
                    if *sent_rx.borrow() && silent_for >= QUIET {
                        if let Some(q) = quiet.take() {
                            let _ = q.send(());
                        }
                    }
                }
            }
        }
    };
    let all = async { tokio::join!(session.run(server_rd, server_wr, drain), send, receive) };
    let ((), (), out) = tokio::time::timeout(DEADLINE, all)
        .await
        .expect("the session did not finish after the client closed");
    out
}
