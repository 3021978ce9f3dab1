//! Connection commands the proxy answers itself: HELLO (RESP2 array, RESP3 map, errors),
//! RESET (a new connection's state, server-side state included), QUIT, PING and ECHO. Where
//! the proxy is meant to be identical to Redis, the same script runs on a plain
//! `redis-server` and through the proxy and the bytes a client receives must be equal.

mod stateful;
mod support;

use std::time::Duration;

use stateful::{assert_same_as_redis, show, Exact, Step};
use support::{Frame, Proxy, RedisServer};

/// A reference Redis, a second Redis behind a proxy, and the proxy.
fn setup() -> (RedisServer, RedisServer, Proxy) {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    (reference, redis, proxy)
}

/// SELECT 2, SETNAME, SET k there, WATCH w, then its own SET w, MULTI, SET, RESET (+RESET);
/// then GETNAME (null), GET k (null: back in db 0), EXEC (no MULTI any more), MULTI/SET w/EXEC
/// (runs: the WATCH is gone), SELECT 2 and GET k. Byte-identical to redis-server.
#[test]
fn reset_restores_a_new_connection_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["SELECT", "2"], 1),
        (&["CLIENT", "SETNAME", "before-reset"], 1),
        (&["SET", "k", "v"], 1),
        (&["WATCH", "w"], 1),
        (&["SET", "w", "1"], 1),
        (&["MULTI"], 1),
        (&["SET", "w", "2"], 1),
        (&["RESET"], 1),
        (&["CLIENT", "GETNAME"], 1),
        (&["GET", "k"], 1),
        (&["EXEC"], 1),
        (&["MULTI"], 1),
        (&["SET", "w", "3"], 1),
        (&["EXEC"], 1),
        (&["SELECT", "2"], 1),
        (&["GET", "k"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[7], r"+RESET\r\n");
    assert_eq!(got[9], r"$-1\r\n");
    assert_eq!(got[13], r"*1\r\n+OK\r\n");
}

/// HELLO 3 with SETNAME, SELECT 4, then RESET: the client is back in RESP2 (a missing key
/// reads `$-1`), keeps its CLIENT ID (as in Redis), and CLIENT INFO shows db=0, an empty name
/// and resp=2.
#[test]
fn reset_returns_to_resp2() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = Exact::connect(proxy.addr());
    assert!(matches!(
        c.cmd_frame(&["HELLO", "3", "SETNAME", "n"]),
        Frame::Map(_)
    ));
    assert_eq!(c.cmd(&["SELECT", "4"]), r"+OK\r\n");
    assert_eq!(c.cmd(&["GET", "missing"]), r"_\r\n");
    let Frame::Int(id) = c.cmd_frame(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    assert_eq!(c.cmd(&["RESET"]), r"+RESET\r\n");
    assert_eq!(c.cmd(&["GET", "missing"]), r"$-1\r\n");
    assert_eq!(c.cmd_frame(&["CLIENT", "ID"]), Frame::Int(id));
    let info = c.cmd_frame(&["CLIENT", "INFO"]).text();
    for want in [" name= ", " db=0 ", " resp=2"] {
        assert!(info.contains(want), "{want} not in {info:?}");
    }
}

/// QUIT answers +OK and the connection closes; a SET pipelined after QUIT in the same write
/// is not run. Same as redis-server.
#[test]
fn quit_answers_ok_then_closes() {
    let (reference, redis, proxy) = setup();
    for (addr, server) in [(reference.addr(), &reference), (proxy.addr(), &redis)] {
        let mut c = Exact::connect(addr);
        let mut raw = support::client::encode(&[b"QUIT"]);
        raw.extend(support::client::encode(&[b"SET", b"after-quit", b"1"]));
        c.send_raw(&raw);
        assert_eq!(show(&c.read_bytes()), r"+OK\r\n", "QUIT on {addr}");
        assert!(c.closed(Duration::from_secs(10)), "{addr} did not close");
        assert_eq!(server.cmd(&["EXISTS", "after-quit"]), Frame::Int(0));
    }
}

/// PING, PING with an argument, ECHO, ECHO of an empty string, ECHO and PING with wrong
/// arity, in RESP2: byte-identical to redis-server. After HELLO 3 on both: the same commands
/// again, byte-identical.
#[test]
fn ping_and_echo_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["PING"], 1),
        (&["PING", "hello world"], 1),
        (&["ECHO", "hi"], 1),
        (&["ECHO", ""], 1),
        (&["ECHO"], 1),
        (&["PING", "a", "b"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[0], r"+PONG\r\n");
    assert_eq!(got[1], r"$11\r\nhello world\r\n");
    assert_eq!(got[2], r"$2\r\nhi\r\n");

    let mut on_ref = Exact::connect(reference.addr());
    let mut on_proxy = Exact::connect(proxy.addr());
    on_ref.cmd(&["HELLO", "3"]);
    on_proxy.cmd(&["HELLO", "3"]);
    for (args, _) in steps {
        assert_eq!(on_proxy.cmd(args), on_ref.cmd(args), "{args:?} in RESP3");
    }
}

/// The fields of a HELLO reply (a RESP2 array of pairs or a RESP3 map), with the connection
/// id replaced by 0 (it differs between servers) and returned apart.
fn hello_fields(reply: &Frame) -> (Vec<(Frame, Frame)>, i64) {
    let pairs: Vec<(Frame, Frame)> = match reply {
        Frame::Map(pairs) => pairs.clone(),
        Frame::Array(items) => items
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
        other => panic!("HELLO answered {other:?}"),
    };
    let mut id = -1;
    let pairs = pairs
        .into_iter()
        .map(|(k, v)| match (&k, &v) {
            (Frame::Bulk(name), Frame::Int(n)) if name == b"id" => {
                id = *n;
                (k, Frame::Int(0))
            }
            _ => (k, v),
        })
        .collect();
    (pairs, id)
}

/// HELLO 2 (a flat array) and HELLO 3 (a map) list server, version, proto, id, mode, role and
/// modules as redis-server does, except the id, which is the proxy's CLIENT ID; HELLO 4 gives
/// NOPROTO and HELLO abc Redis's error, byte-identical to redis-server.
#[test]
fn hello_like_redis() {
    let (reference, _redis, proxy) = setup();
    let mut on_ref = Exact::connect(reference.addr());
    let mut on_proxy = Exact::connect(proxy.addr());
    let Frame::Int(id) = on_proxy.cmd_frame(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    for proto in ["2", "3"] {
        let expected = on_ref.cmd_frame(&["HELLO", proto]);
        let got = on_proxy.cmd_frame(&["HELLO", proto]);
        match proto {
            "2" => assert!(matches!(got, Frame::Array(_)), "HELLO 2: {got:?}"),
            _ => assert!(matches!(got, Frame::Map(_)), "HELLO 3: {got:?}"),
        }
        let (got_fields, got_id) = hello_fields(&got);
        let (expected_fields, _) = hello_fields(&expected);
        assert_eq!(got_fields, expected_fields, "HELLO {proto}");
        assert_eq!(got_id, id, "HELLO {proto} id");
        let keys: Vec<String> = got_fields.iter().map(|(k, _)| k.text()).collect();
        assert_eq!(
            keys,
            ["server", "version", "proto", "id", "mode", "role", "modules"]
        );
    }
    for args in [
        &["HELLO", "4"][..],
        &["HELLO", "abc"],
        &["HELLO", "3", "NOPE"],
    ] {
        assert_eq!(on_proxy.cmd(args), on_ref.cmd(args), "{args:?}");
    }
    assert_eq!(
        on_proxy.cmd(&["HELLO", "4"]),
        r"-NOPROTO unsupported protocol version\r\n"
    );
    // The failed HELLOs changed nothing: still RESP3.
    assert_eq!(on_proxy.cmd(&["GET", "missing"]), r"_\r\n");
}
