//! The pool, its lanes and the connection driver against the scripted fake Redis
//! ([`super::fake`]): identity checks at the handshake, replies in order, a refusal, a
//! connection cut after some bytes (what was written may have run, what was not did not),
//! the reply deadline, the write lease, and a lane that ends being replaced.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::sync::Semaphore;

use super::fake::{FakeRedis, Script};
use super::*;
use crate::resp::command::Kind;
use crate::resp::reply::Proto;
use crate::resp::Request;

/// Deadline of every wait in these tests.
const WAIT: Duration = Duration::from_secs(5);

fn pool(reply_timeout: Duration, leases: Arc<LeaseBoard>) -> Arc<Pool> {
    let cfg = PoolConfig {
        lanes: 1,
        dialer: Dialer {
            connect_timeout: WAIT,
            handshake_timeout: WAIT,
        },
        reply_timeout,
        max_dedicated: 4,
        dedicated_idle: WAIT,
        verify: None,
    };
    Pool::with_boards(cfg, Arc::new(Semaphore::new(4)), (leases, Liveness::new()))
}

fn key(fake: &FakeRedis, run_id: &str) -> PoolKey {
    let addr = fake.addr();
    PoolKey {
        node: Arc::new(NodeId {
            endpoint: Endpoint::plain(addr, addr.to_string().into()),
            run_id: run_id.into(),
        }),
        db: 0,
        proto: Proto::Resp2,
        auth: Arc::new(BackendAuth::default()),
        purpose: LaneUse::Any,
    }
}

/// Sends `cmds` on `lane` as one batch registered in `inbox`.
async fn send(lane: &Lane, inbox: &Arc<Inbox>, cmds: &[&[&str]]) {
    let mut payload = Vec::new();
    let mut sent = SmallVec::new();
    for c in cmds {
        let start = payload.len();
        payload.extend_from_slice(Request::from_args(c).bytes());
        sent.push(Sent {
            range: start..payload.len(),
            kind: Kind::Write,
            frames: 1,
            replies: 1,
            confirm: false,
        });
    }
    let payload = Bytes::from(payload);
    let expect = cmds.len() as u32;
    let to = inbox.push_dispatch(Dispatch {
        conn: lane.id(),
        expect,
        skip: 0,
        silent: false,
        payload: payload.clone(),
        cmds: sent,
        attempt: 0,
        started: None,
        durability: None,
    });
    lane.send(Outgoing {
        payload,
        expect,
        mode: ReplyMode::Counted,
        timed: true,
        to,
    })
    .await;
}

/// Waits until the inbox has released `len` bytes or faulted; returns both.
async fn collect(inbox: &Inbox, len: usize) -> (Vec<u8>, Option<Fault>) {
    let mut out = Vec::new();
    let done = tokio::time::timeout(WAIT, async {
        loop {
            let taken = inbox.take();
            out.extend_from_slice(&taken.out);
            if taken.fault.is_some() {
                return taken.fault;
            }
            if out.len() >= len {
                return None;
            }
            inbox.changed().await;
        }
    })
    .await;
    (out, done.expect("inbox settled within the deadline"))
}

#[tokio::test]
async fn a_lane_to_another_process_fails_its_identity_check() {
    let fake = FakeRedis::start(Script::default()).await;
    let pool = pool(WAIT, LeaseBoard::new(false));
    let lane = pool.lane(&key(&fake, "some-other-run-id")).unwrap();
    let e = lane.ready(WAIT).await.unwrap_err();
    assert!(matches!(*e, ConnError::Identity { .. }), "{e}");
    fake.script(|s| s.role = "slave");
    let lane = pool.lane(&key(&fake, "fake-run-id")).unwrap();
    // The key backs off after the failed connect; once it may try again, a replica fails too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lane = pool.lane(&key(&fake, "fake-run-id")).unwrap_or(lane);
    let e = lane.ready(WAIT).await.unwrap_err();
    assert!(e.to_string().contains("expected master"), "{e}");
    assert!(fake.executed().is_empty(), "nothing ran on a wrong node");
}

#[tokio::test]
async fn replies_of_pipelined_batches_arrive_in_order() {
    let fake = FakeRedis::start(Script::default()).await;
    let pool = pool(WAIT, LeaseBoard::new(false));
    let lane = pool.lane(&key(&fake, "fake-run-id")).unwrap();
    lane.ready(WAIT).await.unwrap();
    let inbox = Inbox::new(1 << 20);
    send(&lane, &inbox, &[&["SET", "k", "1"], &["INCR", "k"]]).await;
    send(&lane, &inbox, &[&["GET", "k"]]).await;
    let (out, fault) = collect(&inbox, 16).await;
    assert!(fault.is_none());
    assert_eq!(out, b"+OK\r\n:2\r\n$1\r\n2\r\n");
    assert_eq!(fake.executed(), vec!["SET k", "INCR k", "GET k"]);
}

#[tokio::test]
async fn a_refusal_faults_the_batch_with_the_servers_words() {
    let fake = FakeRedis::start(Script::default()).await;
    let pool = pool(WAIT, LeaseBoard::new(false));
    let lane = pool.lane(&key(&fake, "fake-run-id")).unwrap();
    lane.ready(WAIT).await.unwrap();
    fake.script(|s| {
        s.refuse = Some("READONLY You can't write against a read only replica.".into())
    });
    let inbox = Inbox::new(1 << 20);
    send(&lane, &inbox, &[&["SET", "k", "1"]]).await;
    let (out, fault) = collect(&inbox, 1).await;
    let fault = fault.expect("a refusal faults the entry");
    assert!(out.is_empty());
    assert_eq!(fault.kind, FaultKind::Refused);
    assert!(fault.tail[0].bytes.starts_with(b"-READONLY"));
    assert!(fake.executed().is_empty());
}

#[tokio::test]
async fn a_connection_cut_after_the_write_leaves_the_outcome_unknown() {
    let fake = FakeRedis::start(Script::default()).await;
    let pool = pool(WAIT, LeaseBoard::new(false));
    let k = key(&fake, "fake-run-id");
    let lane = pool.lane(&k).unwrap();
    lane.ready(WAIT).await.unwrap();
    // Everything of the handshake was received; the next bytes cut the connection before
    // any reply.
    fake.script(|s| s.cut_after = Some(0));
    let inbox = Inbox::new(1 << 20);
    send(&lane, &inbox, &[&["SET", "k", "1"]]).await;
    let (_, fault) = collect(&inbox, 1).await;
    assert_eq!(fault.expect("lost").kind, FaultKind::Lost);
    // The lane ended; the next one for the key is a new connection that works.
    fake.script(|s| s.cut_after = None);
    let inbox = Inbox::new(1 << 20);
    let lane = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(l) = pool.lane(&k) {
                if !l.is_closed() && l.ready(WAIT).await.is_ok() {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a new lane");
    send(&lane, &inbox, &[&["PING"]]).await;
    assert_eq!(collect(&inbox, 7).await.0, b"+PONG\r\n");
}

#[tokio::test]
async fn a_silent_node_fails_the_batch_at_the_reply_deadline() {
    let fake = FakeRedis::start(Script::default()).await;
    let pool = pool(Duration::from_millis(200), LeaseBoard::new(false));
    let lane = pool.lane(&key(&fake, "fake-run-id")).unwrap();
    lane.ready(WAIT).await.unwrap();
    fake.script(|s| s.delay = Duration::from_secs(3));
    let inbox = Inbox::new(1 << 20);
    send(&lane, &inbox, &[&["SET", "k", "1"]]).await;
    let (out, fault) = collect(&inbox, 1).await;
    assert!(out.is_empty());
    assert_eq!(fault.expect("deadline").kind, FaultKind::Lost);
}

#[tokio::test]
async fn nothing_is_written_without_a_valid_lease() {
    let fake = FakeRedis::start(Script::default()).await;
    let leases = LeaseBoard::new(true);
    let pool = pool(WAIT, Arc::clone(&leases));
    let k = key(&fake, "fake-run-id");
    // No lease was ever granted for this node: the batch fails as not sent.
    let lane = pool.lane(&k).unwrap();
    let _ = lane.ready(WAIT).await;
    let inbox = Inbox::new(1 << 20);
    send(&lane, &inbox, &[&["SET", "k", "1"]]).await;
    let (_, fault) = collect(&inbox, 1).await;
    assert_eq!(fault.expect("not sent").kind, FaultKind::NotSent);
    assert!(
        fake.executed().is_empty(),
        "a write reached the node without a lease"
    );
}

/// A key no session asks for is forgotten by the pool; a session still holding one of its
/// lanes keeps using it, and the next ask for the key opens a new set.
#[tokio::test]
async fn idle_keys_are_forgotten_without_cutting_their_users() {
    let fake = FakeRedis::start(Script::default()).await;
    let pool = pool(WAIT, LeaseBoard::new(false));
    let k = key(&fake, "fake-run-id");
    let held = pool.lane(&k).unwrap();
    held.ready(WAIT).await.unwrap();
    assert_eq!(pool.lane_keys(), 1);
    pool.forget_idle_keys(Duration::from_secs(3600));
    assert_eq!(pool.lane_keys(), 1, "a key asked for just now stays");
    pool.forget_idle_keys(Duration::ZERO);
    assert_eq!(pool.lane_keys(), 0);
    let inbox = Inbox::new(1 << 20);
    send(&held, &inbox, &[&["PING"]]).await;
    assert_eq!(collect(&inbox, 7).await.0, b"+PONG\r\n");
    let fresh = pool.lane(&k).unwrap();
    assert_ne!(fresh.id(), held.id());
    assert_eq!(pool.lane_keys(), 1);
}
