//! A real client session under hostile input: the bytes are what a client sends over an
//! in-memory connection to a [`Session`] whose context has no backend nodes, so every command
//! is either answered by the proxy itself or refused for want of a master.
//!
//! The first byte chooses the setting:
//! - bits 0-3: piece size of the client's writes (0: all at once), with a pause after each
//!   piece so the session handles it before the next arrives;
//! - bit 4: the topology is holding (a change under way, zero hold timeout) instead of having
//!   no master;
//! - bit 5: the default user has a password (clients start unauthenticated);
//! - bit 6: small limits (frames, query buffer), so their errors are reached;
//! - bit 7: the proxy starts draining after the first piece.
//!
//! Time is paused: the runtime jumps ahead whenever every task waits, so a session that would
//! wait forever is caught at once. Invariants: nothing panics; the session ends once the
//! client has closed; what it wrote is a sequence of whole RESP replies, nothing follows a
//! protocol error; the session leaves the client registry and the hold count as it found
//! them.

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use redis_failover_proxy::session::{Context, Session};
use redis_failover_proxy::shutdown;
use redis_failover_proxy::topology::{Reason, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "common.rs"]
mod common;
use common::{check_session, ends, limits, set_users, PIECES, PIPE};

/// How long (in paused time) the whole exchange may take.
const DEADLINE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct Setting {
    piece: usize,
    holding: bool,
    password: bool,
    small: bool,
    drain: bool,
}

impl Setting {
    fn from_byte(b: u8) -> Self {
        Self {
            piece: PIECES[usize::from(b & 0x0f)],
            holding: b & 0x10 != 0,
            password: b & 0x20 != 0,
            small: b & 0x40 != 0,
            drain: b & 0x80 != 0,
        }
    }

    fn context(&self) -> Arc<Context> {
        let mut ctx = Context::standalone(limits(self.small, 4));
        if self.holding {
            let holding = Topology {
                epoch: ctx.topology.epoch() + 1,
                reason: Reason::FirstProbes,
                ..Topology::initial()
            };
            assert!(ctx.topology.publish(holding));
        }
        if self.password {
            set_users(&mut ctx, true, None);
        }
        Arc::new(ctx)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let setting = Setting::from_byte(ctl);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let ctx = setting.context();
    let out = rt.block_on(exchange(Arc::clone(&ctx), setting, input));
    check_session(&ctx, &out);
});

/// Runs one session: the client writes `input` in pieces and closes; returns what the
/// session wrote back.
async fn exchange(ctx: Arc<Context>, setting: Setting, input: &[u8]) -> Vec<u8> {
    let (addr, laddr) = ends();
    let (client, server) = tokio::io::duplex(PIPE);
    let (server_rd, server_wr) = tokio::io::split(server);
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (trigger, drain) = shutdown::drain();
    let session = Session::new(ctx, addr, laddr, 7);

    let send = async {
        for (i, piece) in input
            .chunks(setting.piece.min(input.len()).max(1))
            .enumerate()
        {
            if client_wr.write_all(piece).await.is_err() {
                // The session ended (QUIT, a protocol error): the rest goes nowhere.
                break;
            }
            // Let the session handle this piece before the next arrives (the clock only
            // moves when every task waits).
            tokio::time::sleep(Duration::from_millis(1)).await;
            if i == 0 && setting.drain {
                trigger.trigger();
            }
        }
        let _ = client_wr.shutdown().await;
    };
    let receive = async {
        let mut out = Vec::new();
        client_rd
            .read_to_end(&mut out)
            .await
            .expect("reading an in-memory connection");
        out
    };
    let all = async { tokio::join!(session.run(server_rd, server_wr, drain), send, receive) };
    let ((), (), out) = tokio::time::timeout(DEADLINE, all)
        .await
        .expect("the session did not finish after the client closed");
    out
}
