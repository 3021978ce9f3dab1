//! Transactions through the proxy: MULTI/EXEC/DISCARD (buffered by the proxy and sent as one
//! block), queue-time errors, WATCH/UNWATCH on a dedicated connection, and atomicity against
//! other clients. Where the proxy is meant to be identical to Redis, the same script runs on a
//! plain `redis-server` and through the proxy, and the bytes a client receives must be equal.

mod stateful;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use stateful::{assert_pipeline_same_as_redis, assert_same_as_redis, Exact, Step};
use support::{Frame, Proxy, RedisServer};

/// A reference Redis, a second Redis behind a proxy, and the proxy.
fn setup() -> (RedisServer, RedisServer, Proxy) {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    (reference, redis, proxy)
}

/// MULTI, SET, INCR, GET, EXEC, then a block with a runtime error (INCR on text), then a
/// block with BLPOP on an empty list (does not block inside MULTI), PING, ECHO and WAIT, then
/// MULTI/EXEC with nothing queued: every reply (+OK, +QUEUED..., the EXEC arrays, `*0`) is
/// byte-identical to redis-server's, command by command and as one pipeline.
#[test]
fn multi_exec_replies_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["MULTI"], 1),
        (&["SET", "a", "1"], 1),
        (&["INCR", "a"], 1),
        (&["GET", "a"], 1),
        (&["EXEC"], 1),
        (&["MULTI"], 1),
        (&["SET", "t", "text"], 1),
        (&["INCR", "t"], 1),
        (&["GET", "t"], 1),
        (&["EXEC"], 1),
        (&["MULTI"], 1),
        (&["BLPOP", "empty", "0"], 1),
        (&["PING"], 1),
        (&["ECHO", "hi"], 1),
        (&["WAIT", "0", "0"], 1),
        (&["EXEC"], 1),
        (&["MULTI"], 1),
        (&["EXEC"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[4], r"*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n");
    assert_eq!(
        got[9],
        r"*3\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$4\r\ntext\r\n"
    );
    assert_eq!(got[15], r"*4\r\n*-1\r\n+PONG\r\n$2\r\nhi\r\n:0\r\n");
    assert_eq!(got[17], r"*0\r\n");
    let got = assert_pipeline_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[15], r"*4\r\n*-1\r\n+PONG\r\n$2\r\nhi\r\n:0\r\n");
}

/// MULTI, SET d 1, DISCARD, GET d: DISCARD answers +OK and nothing queued ran; then EXEC and
/// DISCARD outside MULTI give Redis's errors. Identical to redis-server.
#[test]
fn discard_and_exec_without_multi_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["MULTI"], 1),
        (&["SET", "d", "1"], 1),
        (&["DISCARD"], 1),
        (&["GET", "d"], 1),
        (&["EXEC"], 1),
        (&["DISCARD"], 1),
        (&["PING"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(
        got,
        [
            r"+OK\r\n",
            r"+QUEUED\r\n",
            r"+OK\r\n",
            r"$-1\r\n",
            r"-ERR EXEC without MULTI\r\n",
            r"-ERR DISCARD without MULTI\r\n",
            r"+PONG\r\n",
        ]
    );
}

/// MULTI, GET without a key (wrong arity), SET, EXEC: the arity error is answered at queue
/// time and EXEC answers EXECABORT; the SET did not run. Then MULTI, MULTI (nested), WATCH
/// (inside MULTI), SET, EXEC: both get Redis's errors, and, as in Redis 7, they do not abort
/// the transaction. Identical to redis-server.
#[test]
fn queue_time_errors_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["MULTI"], 1),
        (&["GET"], 1),
        (&["SET", "q", "1"], 1),
        (&["EXEC"], 1),
        (&["GET", "q"], 1),
        (&["MULTI"], 1),
        (&["MULTI"], 1),
        (&["WATCH", "w"], 1),
        (&["SET", "q", "2"], 1),
        (&["EXEC"], 1),
        (&["GET", "q"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(
        got[1],
        r"-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        got[3],
        r"-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(got[4], r"$-1\r\n");
    assert_eq!(got[6], r"-ERR MULTI calls can not be nested\r\n");
    assert_eq!(got[7], r"-ERR WATCH inside MULTI is not allowed\r\n");
    assert_eq!(got[9], r"*1\r\n+OK\r\n");
}

/// MULTI, an unknown command, SET, EXEC: Redis rejects the unknown command at queue time
/// (`-ERR unknown command ...`) and EXEC answers EXECABORT. The client must see the same
/// replies through the proxy.
#[test]
fn unknown_command_in_multi_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["MULTI"], 1),
        (&["NOSUCHCOMMAND", "x"], 1),
        (&["SET", "u", "1"], 1),
        (&["EXEC"], 1),
        (&["GET", "u"], 1),
    ];
    assert_same_as_redis(reference.addr(), proxy.addr(), steps);
}

/// Client A opens MULTI and queues SET x; client B reads x (not set: nothing runs before
/// EXEC). Meanwhile B pushes to a shared list from its own thread while A queues 200 RPUSHes
/// to it and EXECs: A's EXEC replies are 200 consecutive lengths and A's 200 elements sit
/// together, in order, in the list (nothing of B came between them).
#[test]
fn transaction_is_atomic_among_other_clients() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = proxy.client();
    let mut b = proxy.client();
    assert_eq!(a.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(a.cmd(&["SET", "x", "1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        b.cmd(&["GET", "x"]),
        Frame::Null,
        "queued SET ran before EXEC"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let addr = proxy.addr();
    let pusher = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut b = support::Client::connect(addr);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 50 {
                let v = format!("b{n}");
                assert!(matches!(b.cmd(&["RPUSH", "log", &v]), Frame::Int(_)));
                n += 1;
            }
            n
        })
    };
    for i in 0..200 {
        let v = format!("a{i}");
        assert_eq!(a.cmd(&["RPUSH", "log", &v]), Frame::Simple("QUEUED".into()));
    }
    let exec = a.cmd(&["EXEC"]);
    stop.store(true, Ordering::Relaxed);
    let pushed_by_b = pusher.join().expect("pusher thread");

    let items = exec.items();
    assert_eq!(items.len(), 201, "EXEC reply: {exec:?}");
    assert_eq!(items[0], Frame::ok());
    let Frame::Int(first) = items[1] else {
        panic!("RPUSH reply {:?}", items[1]);
    };
    for (i, item) in items[1..].iter().enumerate() {
        assert_eq!(*item, Frame::Int(first + i as i64), "EXEC reply {i}");
    }
    let list = b.cmd(&["LRANGE", "log", "0", "-1"]);
    let list: Vec<String> = list.items().iter().map(Frame::text).collect();
    assert_eq!(list.len() as u64, 200 + pushed_by_b);
    let start = list.iter().position(|v| v == "a0").expect("a0 in list");
    let expected: Vec<String> = (0..200).map(|i| format!("a{i}")).collect();
    assert_eq!(list[start..start + 200], expected[..]);
    assert_eq!(b.cmd(&["GET", "x"]), Frame::bulk("1"));
}

/// One pipeline: MULTI, 5000 INCRs, EXEC, GET. The client receives +OK, 5000 +QUEUED, an
/// EXEC array of 1..=5000 and "5000".
#[test]
fn large_pipelined_transaction() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = proxy.client();
    let mut raw = support::client::encode(&[b"MULTI"]);
    for _ in 0..5000 {
        raw.extend(support::client::encode(&[b"INCR", b"n"]));
    }
    raw.extend(support::client::encode(&[b"EXEC"]));
    raw.extend(support::client::encode(&[b"GET", b"n"]));
    c.send_raw(&raw);
    assert_eq!(c.read(), Frame::ok());
    for i in 0..5000 {
        assert_eq!(c.read(), Frame::Simple("QUEUED".into()), "reply {i}");
    }
    let expected: Vec<Frame> = (1..=5000).map(Frame::Int).collect();
    assert_eq!(c.read(), Frame::Array(expected));
    assert_eq!(c.read(), Frame::bulk("5000"));
}

/// A WATCHes k; B sets k through the proxy; A runs MULTI, SET k, EXEC: EXEC answers the null
/// array (`*-1` in RESP2) and k keeps B's value.
#[test]
fn watched_key_modified_by_another_client_aborts_exec() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = Exact::connect(proxy.addr());
    let mut b = proxy.client();
    assert_eq!(b.cmd(&["SET", "k", "0"]), Frame::ok());
    assert_eq!(a.cmd(&["WATCH", "k"]), r"+OK\r\n");
    assert_eq!(b.cmd(&["SET", "k", "from-b"]), Frame::ok());
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "from-a"]), r"+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), r"*-1\r\n");
    assert_eq!(a.cmd(&["GET", "k"]), r"$6\r\nfrom-b\r\n");
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("from-b"));
}

/// A WATCHes k; nobody touches it; A runs MULTI, SET k, EXEC: the block runs. Then (the
/// WATCH ended with EXEC) B sets k and A's next MULTI/SET/EXEC runs too.
#[test]
fn watched_key_untouched_lets_exec_run() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = Exact::connect(proxy.addr());
    let mut b = proxy.client();
    assert_eq!(a.cmd(&["WATCH", "k"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "a1"]), r"+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), r"*1\r\n+OK\r\n");
    assert_eq!(b.cmd(&["SET", "k", "b1"]), Frame::ok());
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "a2"]), r"+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), r"*1\r\n+OK\r\n");
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("a2"));
}

/// A WATCHes k; B sets k; A sends UNWATCH, then MULTI, SET k, EXEC: the block runs. Then A
/// WATCHes k, runs MULTI and DISCARD (which also unwatches), B sets k, and A's next block runs.
#[test]
fn unwatch_and_discard_forget_the_watch() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = Exact::connect(proxy.addr());
    let mut b = proxy.client();
    assert_eq!(a.cmd(&["WATCH", "k"]), r"+OK\r\n");
    assert_eq!(b.cmd(&["SET", "k", "b1"]), Frame::ok());
    assert_eq!(a.cmd(&["UNWATCH"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "a1"]), r"+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), r"*1\r\n+OK\r\n");
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("a1"));

    assert_eq!(a.cmd(&["WATCH", "k"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["DISCARD"]), r"+OK\r\n");
    assert_eq!(b.cmd(&["SET", "k", "b2"]), Frame::ok());
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "a2"]), r"+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), r"*1\r\n+OK\r\n");
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("a2"));
}

/// One client alone: WATCH w, its own SET w, MULTI, SET w, EXEC (aborted: its own write
/// touched the key), GET w; then WATCH w v, MULTI, GET (arity error), MULTI (nested), SET,
/// EXEC (EXECABORT), GET w, UNWATCH with nothing watched. Identical to redis-server, command by
/// command and as one pipeline.
#[test]
fn watch_scripts_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["WATCH", "w"], 1),
        (&["SET", "w", "1"], 1),
        (&["MULTI"], 1),
        (&["SET", "w", "2"], 1),
        (&["EXEC"], 1),
        (&["GET", "w"], 1),
        (&["WATCH", "w", "v"], 1),
        (&["MULTI"], 1),
        (&["GET"], 1),
        (&["MULTI"], 1),
        (&["SET", "w", "3"], 1),
        (&["EXEC"], 1),
        (&["GET", "w"], 1),
        (&["UNWATCH"], 1),
    ];
    for got in [
        assert_same_as_redis(reference.addr(), proxy.addr(), steps),
        assert_pipeline_same_as_redis(reference.addr(), proxy.addr(), steps),
    ] {
        assert_eq!(got[4], r"*-1\r\n");
        assert_eq!(
            got[11],
            r"-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
    }
}

/// The same client alone in RESP3: HELLO 3 (its reply differs only by id and is not
/// compared), WATCH w, its own SET w, MULTI, SET w, EXEC (RESP3 null `_`), then UNWATCH, MULTI,
/// INCR, EXEC (an array). Byte-identical to redis-server.
#[test]
fn watch_abort_is_resp3_null() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["WATCH", "w"], 1),
        (&["SET", "w", "1"], 1),
        (&["MULTI"], 1),
        (&["SET", "w", "2"], 1),
        (&["EXEC"], 1),
        (&["UNWATCH"], 1),
        (&["MULTI"], 1),
        (&["INCR", "w"], 1),
        (&["EXEC"], 1),
    ];
    let mut on_ref = Exact::connect(reference.addr());
    let mut on_proxy = Exact::connect(proxy.addr());
    assert!(matches!(on_ref.cmd_frame(&["HELLO", "3"]), Frame::Map(_)));
    assert!(matches!(on_proxy.cmd_frame(&["HELLO", "3"]), Frame::Map(_)));
    let mut got = Vec::new();
    for (args, _) in steps {
        let reply = on_proxy.cmd(args);
        assert_eq!(reply, on_ref.cmd(args), "{args:?}");
        got.push(reply);
    }
    assert_eq!(got[4], r"_\r\n");
    assert_eq!(got[8], r"*1\r\n:2\r\n");
}

/// A selects db 1 and WATCHes k there. B, in db 0, sets k: A's MULTI/SET/EXEC runs (a
/// different key). A WATCHes k again; C, in db 1, sets k: A's next EXEC answers null.
#[test]
fn watch_applies_to_the_selected_database() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = Exact::connect(proxy.addr());
    let mut b = proxy.client();
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SELECT", "1"]), Frame::ok());
    assert_eq!(a.cmd(&["SELECT", "1"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["WATCH", "k"]), r"+OK\r\n");
    assert_eq!(b.cmd(&["SET", "k", "db0"]), Frame::ok());
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "a1"]), r"+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), r"*1\r\n+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("a1"));

    assert_eq!(a.cmd(&["WATCH", "k"]), r"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "k", "c1"]), Frame::ok());
    assert_eq!(a.cmd(&["MULTI"]), r"+OK\r\n");
    assert_eq!(a.cmd(&["SET", "k", "a2"]), r"+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), r"*-1\r\n");
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("c1"));
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("db0"));
}

/// SELECT inside a buffered MULTI is refused with an error and makes EXEC abort: MULTI,
/// SET s 1, SELECT 1, EXEC (EXECABORT); s was not set, and the client is still in db 0.
#[test]
fn select_inside_multi_aborts_exec() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "where", "db0"]), Frame::ok());
    assert_eq!(c.cmd(&["MULTI"]), Frame::ok());
    assert_eq!(c.cmd(&["SET", "s", "1"]), Frame::Simple("QUEUED".into()));
    let select = c.cmd(&["SELECT", "1"]);
    assert!(select.is_error("ERR"), "SELECT in MULTI: {select:?}");
    let exec = c.cmd(&["EXEC"]);
    assert!(exec.is_error("EXECABORT"), "EXEC: {exec:?}");
    assert_eq!(c.cmd(&["GET", "s"]), Frame::Null);
    assert_eq!(c.cmd(&["GET", "where"]), Frame::bulk("db0"));
    assert_eq!(redis.cmd(&["EXISTS", "s"]), Frame::Int(0));
}

/// A client's `SCRIPT FLUSH` empties the master's script cache: an `EVALSHA` of a flushed
/// script then gets `NOSCRIPT`, as with Redis (the proxy reloads scripts only for a new
/// master after a failover), and `SCRIPT LOAD` makes it runnable again.
#[test]
fn evalsha_after_script_flush_gets_noscript() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = proxy.client();
    let sha = match c.cmd(&["SCRIPT", "LOAD", "return 7"]) {
        Frame::Bulk(b) => String::from_utf8(b).expect("sha"),
        other => panic!("SCRIPT LOAD answered {other:?}"),
    };
    assert_eq!(c.cmd(&["EVALSHA", &sha, "0"]), Frame::Int(7));
    assert_eq!(c.cmd(&["SCRIPT", "FLUSH"]), Frame::ok());
    match c.cmd(&["EVALSHA", &sha, "0"]) {
        Frame::Error(e) => assert!(e.starts_with("NOSCRIPT"), "{e}"),
        other => panic!("a flushed script ran: {other:?}"),
    }
    assert_eq!(c.cmd(&["EVAL", "return 7", "0"]), Frame::Int(7));
    assert_eq!(c.cmd(&["EVALSHA", &sha, "0"]), Frame::Int(7));
}
