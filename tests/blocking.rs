//! Blocking commands through the proxy: a blocked client holds a connection of its own and
//! never delays anyone else; blocking list, sorted-set and stream commands time out or are
//! served as with Redis; a command pipelined behind a blocked one is answered after it; a
//! blocked client that leaves takes nothing with it; WAIT counts a real replica.

mod stateful;
mod support;

use std::time::Duration;

use stateful::{assert_same_as_redis, blocked_clients, wait_blocked, Exact, Step};
use support::{Client, Frame, Proxy, RedisServer};

/// A client whose replies must not take long (a failure guard for "is it blocked behind
/// someone else?": a hang fails the test instead of stalling it).
fn guarded(proxy: &Proxy) -> Client {
    let c = proxy.client();
    c.set_read_timeout(Some(Duration::from_secs(10)));
    c
}

/// A sends BLPOP l 0 and is blocked on the server; B runs 100 SET/GET pairs through the proxy,
/// all answered correctly while A is still blocked (the server still counts one blocked
/// client); then C pushes to l and A receives [l, value].
#[test]
fn blpop_does_not_hold_up_other_clients() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = proxy.client();
    a.send(&["BLPOP", "l", "0"]);
    wait_blocked(&redis, 1);

    let mut b = guarded(&proxy);
    for i in 0..100 {
        let v = i.to_string();
        assert_eq!(b.cmd(&["SET", "k", &v]), Frame::ok(), "SET {i}");
        assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk(&v), "GET {i}");
    }
    assert_eq!(blocked_clients(&redis), 1, "BLPOP returned before the push");

    let mut c = guarded(&proxy);
    assert_eq!(c.cmd(&["LPUSH", "l", "wake"]), Frame::Int(1));
    assert_eq!(
        a.read(),
        Frame::Array(vec![Frame::bulk("l"), Frame::bulk("wake")])
    );
    assert_eq!(c.cmd(&["LLEN", "l"]), Frame::Int(0));
    assert_eq!(a.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

/// Short timeouts on empty keys: BRPOP, BLMOVE, BLMPOP, BZPOPMIN, BZPOPMAX each answer null,
/// in RESP2 and, after HELLO 3, in RESP3; then with data present each returns it at once.
/// Byte-identical to redis-server.
#[test]
fn blocking_timeouts_and_immediate_data_like_redis() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let timeouts: &[Step<'_>] = &[
        (&["BRPOP", "l", "0.1"], 1),
        (&["BLMOVE", "l", "dst", "LEFT", "RIGHT", "0.1"], 1),
        (&["BLMPOP", "0.1", "1", "l", "LEFT"], 1),
        (&["BZPOPMIN", "z", "0.1"], 1),
        (&["BZPOPMAX", "z", "0.1"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), timeouts);
    // Redis 7.0 answers a timed-out BLMOVE with the null array too.
    assert!(got.iter().all(|r| r == r"*-1\r\n"), "{got:?}");

    // The HELLO reply carries a connection id, which differs; compare what follows it.
    let mut on_ref = Exact::connect(reference.addr());
    let mut on_proxy = Exact::connect(proxy.addr());
    on_ref.cmd(&["HELLO", "3"]);
    on_proxy.cmd(&["HELLO", "3"]);
    for (args, _) in timeouts {
        let expected = on_ref.cmd(args);
        assert_eq!(on_proxy.cmd(args), expected, "{args:?} in RESP3");
        assert_eq!(expected, r"_\r\n");
    }

    let with_data: &[Step<'_>] = &[
        (&["RPUSH", "l", "a", "b", "c"], 1),
        (&["BRPOP", "l", "0.1"], 1),
        (&["BLMOVE", "l", "dst", "LEFT", "RIGHT", "0.1"], 1),
        (&["BLMPOP", "0.1", "1", "l", "LEFT"], 1),
        (&["ZADD", "z", "1", "one", "2", "two"], 1),
        (&["BZPOPMIN", "z", "0.1"], 1),
        (&["BZPOPMAX", "z", "0.1"], 1),
        (&["LRANGE", "dst", "0", "-1"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), with_data);
    assert_eq!(got[1], r"*2\r\n$1\r\nl\r\n$1\r\nc\r\n");
    assert_eq!(got[5], r"*3\r\n$1\r\nz\r\n$3\r\none\r\n$1\r\n1\r\n");
}

/// A sends XREAD BLOCK 0 STREAMS s $ and is blocked; B adds an entry with XADD through the
/// proxy; A receives exactly that entry.
#[test]
fn xread_block_is_served_by_xadd() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = Exact::connect(proxy.addr());
    a.send(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    wait_blocked(&redis, 1);
    let mut b = guarded(&proxy);
    assert_eq!(b.cmd(&["XADD", "s", "1-1", "f", "v"]), Frame::bulk("1-1"));
    assert_eq!(
        stateful::show(&a.read_bytes()),
        r"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
}

/// A consumer group on stream s; A sends XREADGROUP ... BLOCK 0 ... > and is blocked; B adds
/// an entry; A receives it and it is pending for consumer c1. Then XREADGROUP with BLOCK 100
/// and nothing new answers the null array.
#[test]
fn xreadgroup_block_is_served_by_xadd() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut b = guarded(&proxy);
    assert_eq!(
        b.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]),
        Frame::ok()
    );
    let mut a = Exact::connect(proxy.addr());
    let read = [
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ];
    a.send(&read);
    wait_blocked(&redis, 1);
    assert_eq!(b.cmd(&["XADD", "s", "5-1", "f", "v"]), Frame::bulk("5-1"));
    assert_eq!(
        stateful::show(&a.read_bytes()),
        r"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n5-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    let pending = b.cmd(&["XPENDING", "s", "g"]);
    assert_eq!(pending.items()[0], Frame::Int(1), "XPENDING: {pending:?}");

    let short = [
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "BLOCK",
        "100",
        "STREAMS",
        "s",
        ">",
    ];
    assert_eq!(a.cmd(&short), r"*-1\r\n");
}

/// Redis's own `-UNBLOCKED` is the blocked command's outcome, not a failover signal: a
/// client blocked in `XREADGROUP ... BLOCK 0` whose stream another client deletes gets Redis's
/// `-UNBLOCKED the stream key no longer exists` at once, as with Redis itself, and its
/// connection keeps working.
#[test]
fn xreadgroup_released_by_a_deleted_stream_gets_redis_error() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut b = guarded(&proxy);
    assert_eq!(
        b.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]),
        Frame::ok()
    );
    let mut a = Exact::connect(proxy.addr());
    a.send(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    wait_blocked(&redis, 1);
    assert_eq!(b.cmd(&["DEL", "s"]), Frame::Int(1));
    let reply = stateful::show(&a.read_bytes());
    assert!(
        reply.starts_with("-UNBLOCKED") && reply.contains("no longer exists"),
        "{reply}"
    );
    assert_eq!(a.cmd(&["PING"]), r"+PONG\r\n");
}

/// A pipelines `BLPOP l 0` and `GET k` in one write while k is "before". Once A is blocked,
/// B sets k to "after" and pushes to l. A receives BLPOP's reply first, then GET's, and GET
/// ran after BLPOP returned (it sees "after"), as with Redis.
#[test]
fn command_pipelined_behind_blpop_is_answered_after_it() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut b = guarded(&proxy);
    assert_eq!(b.cmd(&["SET", "k", "before"]), Frame::ok());
    let mut a = Exact::connect(proxy.addr());
    let mut raw = support::client::encode(&[b"BLPOP", b"l", b"0"]);
    raw.extend(support::client::encode(&[b"GET", b"k"]));
    a.send_raw(&raw);
    wait_blocked(&redis, 1);
    assert_eq!(b.cmd(&["SET", "k", "after"]), Frame::ok());
    assert_eq!(b.cmd(&["RPUSH", "l", "x"]), Frame::Int(1));
    assert_eq!(
        stateful::show(&a.read_bytes()),
        r"*2\r\n$1\r\nl\r\n$1\r\nx\r\n"
    );
    assert_eq!(stateful::show(&a.read_bytes()), r"$5\r\nafter\r\n");
}

/// A blocks in BLPOP l 0 and disconnects; once the server no longer counts a blocked client,
/// B pushes to l: the value stays in the list (no abandoned BLPOP took it).
#[test]
fn blocked_client_that_leaves_takes_nothing() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = proxy.client();
    a.send(&["BLPOP", "l", "0"]);
    wait_blocked(&redis, 1);
    drop(a);
    wait_blocked(&redis, 0);
    let mut b = guarded(&proxy);
    assert_eq!(b.cmd(&["LPUSH", "l", "kept"]), Frame::Int(1));
    assert_eq!(
        b.cmd(&["LRANGE", "l", "0", "-1"]),
        Frame::Array(vec![Frame::bulk("kept")])
    );
}

/// A selects db 2 and blocks in BLPOP l 0. B, in db 0, pushes to l: A stays blocked (the
/// server still counts it) and B's value stays in db 0. B selects db 2 and pushes: A receives
/// that value.
#[test]
fn blpop_waits_in_the_selected_database() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = proxy.client();
    assert_eq!(a.cmd(&["SELECT", "2"]), Frame::ok());
    a.send(&["BLPOP", "l", "0"]);
    wait_blocked(&redis, 1);
    let mut b = guarded(&proxy);
    assert_eq!(b.cmd(&["LPUSH", "l", "in-0"]), Frame::Int(1));
    assert_eq!(blocked_clients(&redis), 1, "BLPOP in db 2 served from db 0");
    assert_eq!(b.cmd(&["SELECT", "2"]), Frame::ok());
    assert_eq!(b.cmd(&["LPUSH", "l", "in-2"]), Frame::Int(1));
    assert_eq!(
        a.read(),
        Frame::Array(vec![Frame::bulk("l"), Frame::bulk("in-2")])
    );
    assert_eq!(b.cmd(&["SELECT", "0"]), Frame::ok());
    assert_eq!(b.cmd(&["LPOP", "l"]), Frame::bulk("in-0"));
}

/// Without replicas: SET, WAIT 0 0, WAIT 1 100 (times out counting none): byte-identical to
/// redis-server (`:0` twice).
#[test]
fn wait_without_replicas_like_redis() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let steps: &[Step<'_>] = &[
        (&["SET", "k", "v"], 1),
        (&["WAIT", "0", "0"], 1),
        (&["WAIT", "1", "100"], 1),
        (&["GET", "k"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[1..3], [r":0\r\n", r":0\r\n"]);
}

/// S pattern-subscribes to * through the proxy; W sets a key and runs WAIT 0 0; P then
/// publishes "real" on news. S's first message is the one on news: WAIT publishes nothing a
/// subscriber can see (as with Redis, where WAIT sends no message).
#[test]
fn wait_publishes_nothing_subscribers_can_see() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut s = Exact::connect(proxy.addr());
    assert_eq!(
        s.cmd(&["PSUBSCRIBE", "*"]),
        r"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
    );
    let mut w = guarded(&proxy);
    assert_eq!(w.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(w.cmd(&["WAIT", "0", "0"]), Frame::Int(0));
    assert_eq!(w.cmd(&["PUBLISH", "news", "real"]), Frame::Int(1));
    assert_eq!(
        stateful::show(&s.read_bytes()),
        r"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$4\r\nnews\r\n$4\r\nreal\r\n"
    );
}

/// A pipelines `BLPOP l 0` and QUIT. Once A is blocked, B pushes to l: A receives BLPOP's
/// reply, then +OK, then the connection closes (QUIT waited for the blocked command, as in
/// Redis).
#[test]
fn quit_behind_blpop_waits_for_it() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = Exact::connect(proxy.addr());
    let mut raw = support::client::encode(&[b"BLPOP", b"l", b"0"]);
    raw.extend(support::client::encode(&[b"QUIT"]));
    a.send_raw(&raw);
    wait_blocked(&redis, 1);
    let mut b = guarded(&proxy);
    assert_eq!(b.cmd(&["RPUSH", "l", "v"]), Frame::Int(1));
    assert_eq!(
        stateful::show(&a.read_bytes()),
        r"*2\r\n$1\r\nl\r\n$1\r\nv\r\n"
    );
    assert_eq!(stateful::show(&a.read_bytes()), r"+OK\r\n");
    assert!(a.closed(Duration::from_secs(10)), "not closed after QUIT");
}

/// Master and one linked replica behind the proxy (--nodes master,replica): SET through the
/// proxy, then WAIT 1 1000 answers 1 (the replica acknowledged the write); the value is on
/// the replica.
#[test]
fn wait_counts_the_replica() {
    let master = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&master).start();
    replica.wait_link_up();
    let proxy = Proxy::builder().nodes(&[&master, &replica]).start();
    let mut c = guarded(&proxy);
    assert_eq!(c.cmd(&["SET", "w", "1"]), Frame::ok());
    assert_eq!(c.cmd(&["WAIT", "1", "1000"]), Frame::Int(1));
    assert_eq!(replica.cmd(&["GET", "w"]), Frame::bulk("1"));
    assert_eq!(c.cmd(&["INCR", "w"]), Frame::Int(2));
    assert_eq!(c.cmd(&["WAIT", "1", "1000"]), Frame::Int(1));
    assert_eq!(replica.cmd(&["GET", "w"]), Frame::bulk("2"));
}

/// A and then B block in BLPOP on the same list (each confirmed blocked on the server before
/// the next); C pushes two values in one RPUSH: A, blocked first, gets the first value and B
/// the second, as Redis serves blocked clients in order.
#[test]
fn blocked_clients_are_served_in_order() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = proxy.client();
    a.send(&["BLPOP", "l", "0"]);
    wait_blocked(&redis, 1);
    let mut b = proxy.client();
    b.send(&["BLPOP", "l", "0"]);
    wait_blocked(&redis, 2);
    let mut c = guarded(&proxy);
    assert_eq!(c.cmd(&["RPUSH", "l", "first", "second"]), Frame::Int(2));
    let pair = |v: &str| Frame::Array(vec![Frame::bulk("l"), Frame::bulk(v)]);
    assert_eq!(a.read(), pair("first"));
    assert_eq!(b.read(), pair("second"));
}

/// A WATCHes k (its commands now use a dedicated connection), then blocks in BLPOP l 0; B
/// pushes to l and A gets the value; B sets k; A's MULTI/SET/EXEC answers the null array:
/// the blocking command ran where the WATCH lives and the WATCH still holds.
#[test]
fn blocking_command_of_a_watching_client_keeps_the_watch() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = Exact::connect(proxy.addr());
    assert_eq!(a.cmd(&["WATCH", "k"]), r"+OK\r\n");
    a.send(&["BLPOP", "l", "0"]);
    wait_blocked(&redis, 1);
    let mut b = guarded(&proxy);
    assert_eq!(b.cmd(&["LPUSH", "l", "v"]), Frame::Int(1));
    assert_eq!(
        stateful::show(&a.read_bytes()),
        r"*2\r\n$1\r\nl\r\n$1\r\nv\r\n"
    );
    assert_eq!(b.cmd(&["SET", "k", "changed"]), Frame::ok());
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "mine"]), r"+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), r"*-1\r\n");
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("changed"));
}
