//! Per-connection state kept by the proxy: the selected database, the client's name, library
//! info and id (CLIENT SETNAME/GETNAME/ID/INFO/LIST/SETINFO) and CLIENT REPLY, alone and
//! mixed in pipelines with forwarded commands. Where the proxy answers as Redis would, the same
//! script runs on a plain `redis-server` and through the proxy and the bytes must be equal. A
//! client that leaves with replies pending disturbs nobody.

mod stateful;
mod support;

use std::thread;

use stateful::{assert_pipeline_same_as_redis, assert_same_as_redis, Step};
use support::{Client, Frame, Proxy, RedisServer};

/// A reference Redis, a second Redis behind a proxy, and the proxy.
fn setup() -> (RedisServer, RedisServer, Proxy) {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    (reference, redis, proxy)
}

/// A in db 1 and B in db 0 set the same key to different values: each reads its own, and the
/// server holds each value in its database. A's MULTI/EXEC also runs in db 1; after SELECT 0
/// A sees B's value.
#[test]
fn select_isolates_databases() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = proxy.client();
    let mut b = proxy.client();
    assert_eq!(a.cmd(&["SELECT", "1"]), Frame::ok());
    assert_eq!(a.cmd(&["SET", "k", "in-1"]), Frame::ok());
    assert_eq!(b.cmd(&["SET", "k", "in-0"]), Frame::ok());
    assert_eq!(a.cmd(&["GET", "k"]), Frame::bulk("in-1"));
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("in-0"));
    assert_eq!(a.cmd(&["MULTI"]), Frame::ok());
    assert_eq!(a.cmd(&["SET", "m", "1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(a.cmd(&["EXEC"]), Frame::Array(vec![Frame::ok()]));

    let mut direct = redis.client();
    assert_eq!(direct.cmd(&["GET", "k"]), Frame::bulk("in-0"));
    assert_eq!(direct.cmd(&["EXISTS", "m"]), Frame::Int(0));
    assert_eq!(direct.cmd(&["SELECT", "1"]), Frame::ok());
    assert_eq!(direct.cmd(&["GET", "k"]), Frame::bulk("in-1"));
    assert_eq!(direct.cmd(&["EXISTS", "m"]), Frame::Int(1));

    assert_eq!(a.cmd(&["SELECT", "0"]), Frame::ok());
    assert_eq!(a.cmd(&["GET", "k"]), Frame::bulk("in-0"));
}

/// SELECT 99, -1, abc, without an argument, then 15 (the last of 16 databases), SET and GET
/// there: errors and replies byte-identical to redis-server ("ERR DB index is out of range"
/// for 99).
#[test]
fn select_errors_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["SELECT", "99"], 1),
        (&["SELECT", "-1"], 1),
        (&["SELECT", "abc"], 1),
        (&["SELECT"], 1),
        (&["SELECT", "15"], 1),
        (&["SET", "k", "v"], 1),
        (&["GET", "k"], 1),
        (&["SELECT", "0"], 1),
        (&["GET", "k"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[0], r"-ERR DB index is out of range\r\n");
    assert_eq!(got[6], r"$1\r\nv\r\n");
    assert_eq!(got[8], r"$-1\r\n");
}

/// CLIENT GETNAME (null), SETNAME with a space (Redis's error), SETNAME worker-1, GETNAME,
/// SETNAME "" (clears it), GETNAME (null): byte-identical to redis-server.
#[test]
fn client_names_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["CLIENT", "GETNAME"], 1),
        (&["CLIENT", "SETNAME", "bad name"], 1),
        (&["CLIENT", "SETNAME", "worker-1"], 1),
        (&["CLIENT", "GETNAME"], 1),
        (&["CLIENT", "SETNAME", ""], 1),
        (&["CLIENT", "GETNAME"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[3], r"$8\r\nworker-1\r\n");
    assert_eq!(got[5], r"$-1\r\n");
}

/// A sets its name, library name and version, and selects db 3; B sets another name. CLIENT
/// ID is an integer; A's CLIENT INFO is one line with id=<that id>, name, db=3, lib-name and
/// lib-ver; CLIENT LIST shows both clients' lines with their names and latest commands (B's
/// INCR, which took the fast path, included), and the size of B's query buffer while half a
/// command waits in it; HELLO's id is CLIENT ID.
#[test]
fn client_id_info_list_and_setinfo() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = proxy.client();
    let mut b = proxy.client();
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "alpha"]), Frame::ok());
    assert_eq!(b.cmd(&["CLIENT", "SETNAME", "beta"]), Frame::ok());
    assert_eq!(
        a.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "mylib"]),
        Frame::ok()
    );
    assert_eq!(
        a.cmd(&["CLIENT", "SETINFO", "LIB-VER", "1.2.3"]),
        Frame::ok()
    );
    assert!(a.cmd(&["CLIENT", "SETINFO", "NOPE", "x"]).is_error("ERR"));
    assert!(a
        .cmd(&["CLIENT", "SETINFO", "LIB-NAME", "a b"])
        .is_error("ERR"));
    assert_eq!(a.cmd(&["SELECT", "3"]), Frame::ok());

    let Frame::Int(id) = a.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    let Frame::Int(b_id) = b.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    assert_ne!(id, b_id);
    let info = a.cmd(&["CLIENT", "INFO"]).text();
    assert!(
        info.ends_with('\n') && info.lines().count() == 1,
        "{info:?}"
    );
    let fields: Vec<&str> = info.trim_end().split(' ').collect();
    for want in [
        format!("id={id}"),
        "name=alpha".into(),
        "db=3".into(),
        "lib-name=mylib".into(),
        "lib-ver=1.2.3".into(),
        "resp=2".into(),
    ] {
        assert!(fields.contains(&want.as_str()), "{want} not in {info:?}");
    }

    let list = a.cmd(&["CLIENT", "LIST"]).text();
    let line_of = |id: i64| {
        list.lines()
            .find(|l| l.starts_with(&format!("id={id} ")))
            .unwrap_or_else(|| panic!("no line for {id} in {list:?}"))
            .to_string()
    };
    assert!(line_of(id).contains(" name=alpha "), "{list}");
    assert!(line_of(b_id).contains(" name=beta "), "{list}");
    assert!(line_of(id).contains(" cmd=client|list "), "{list}");

    // B's latest command went by the fast path: A's CLIENT LIST names it all the same.
    assert_eq!(b.cmd(&["INCR", "counter"]), Frame::Int(1));
    let list = a.cmd(&["CLIENT", "LIST"]).text();
    let b_line = list
        .lines()
        .find(|l| l.starts_with(&format!("id={b_id} ")))
        .unwrap_or_else(|| panic!("no line for {b_id} in {list:?}"));
    assert!(b_line.contains(" cmd=incr "), "{list}");

    // Half a command from B waits in its query buffer: A's CLIENT LIST shows its size.
    let partial = b"*2\r\n$3\r\nGET\r\n$7\r\ncoun";
    b.send_raw(partial);
    let want = format!(" qbuf={} ", partial.len());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let list = a.cmd(&["CLIENT", "LIST"]).text();
        let b_line = list
            .lines()
            .find(|l| l.starts_with(&format!("id={b_id} ")))
            .unwrap_or_else(|| panic!("no line for {b_id} in {list:?}"))
            .to_string();
        if b_line.contains(&want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B's half command never shown ({want}): {b_line}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    b.send_raw(b"ter\r\n");
    assert_eq!(b.read(), Frame::bulk("1"));

    let hello = a.cmd(&["HELLO"]);
    let items = hello.items();
    let pos = items
        .iter()
        .position(|f| *f == Frame::bulk("id"))
        .expect("id in HELLO");
    assert_eq!(items[pos + 1], Frame::Int(id));
}

/// CLIENT REPLY OFF, SET, GET (both silent), CLIENT REPLY ON (+OK), GET, CLIENT REPLY SKIP,
/// SET (silent), GET, PING: the client receives exactly +OK, the value, the value and +PONG,
/// command by command and as one pipeline. Byte-identical to redis-server.
#[test]
fn client_reply_off_on_skip_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["CLIENT", "REPLY", "OFF"], 0),
        (&["SET", "a", "1"], 0),
        (&["GET", "a"], 0),
        (&["CLIENT", "REPLY", "ON"], 1),
        (&["GET", "a"], 1),
        (&["CLIENT", "REPLY", "SKIP"], 0),
        (&["SET", "b", "2"], 0),
        (&["GET", "b"], 1),
        (&["PING"], 1),
    ];
    let expected = [r"+OK\r\n", r"$1\r\n1\r\n", r"$1\r\n2\r\n", r"+PONG\r\n"];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got, expected);
    let got = assert_pipeline_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got, expected);
}

/// One pipeline mixing forwarded commands and commands the proxy answers itself (SET,
/// CLIENT SETNAME, GET, CLIENT GETNAME, ECHO, INCR, PING, SELECT 1, GET, SELECT 0, GET, CLIENT
/// REPLY SKIP, GET, PING): the replies come back in request order, and the SELECTs switch
/// databases exactly between their neighbours. Byte-identical to redis-server.
#[test]
fn local_and_forwarded_replies_keep_pipeline_order_like_redis() {
    let (reference, _redis, proxy) = setup();
    let steps: &[Step<'_>] = &[
        (&["SET", "a", "1"], 1),
        (&["CLIENT", "SETNAME", "n"], 1),
        (&["GET", "a"], 1),
        (&["CLIENT", "GETNAME"], 1),
        (&["ECHO", "e"], 1),
        (&["INCR", "c"], 1),
        (&["PING"], 1),
        (&["SELECT", "1"], 1),
        (&["GET", "a"], 1),
        (&["SET", "a", "in-1"], 1),
        (&["SELECT", "0"], 1),
        (&["GET", "a"], 1),
        (&["CLIENT", "REPLY", "SKIP"], 0),
        (&["GET", "a"], 0),
        (&["PING", "last"], 1),
    ];
    let got = assert_pipeline_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[8], r"$-1\r\n");
    assert_eq!(got[11], r"$1\r\n1\r\n");
    assert_eq!(got[12], r"$4\r\nlast\r\n");
}

/// While client O runs 2000 checked INCR/GET pairs, 30 other clients one after another each
/// send a pipeline of 1000 commands (SET and GET of 1 KiB values) and close at once without
/// reading. O receives every reply correctly and in order; afterwards a new client works and
/// the proxy is still running.
#[test]
fn client_leaving_with_replies_pending_disturbs_nobody() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&[&redis]);
    let addr = proxy.addr();
    let leavers = thread::spawn(move || {
        let value = vec![b'x'; 1024];
        for round in 0..30 {
            let mut c = Client::connect(addr);
            let mut raw = Vec::new();
            for i in 0..500 {
                let key = format!("gone:{round}:{i}");
                raw.extend(support::client::encode(&[b"SET", key.as_bytes(), &value]));
                raw.extend(support::client::encode(&[b"GET", key.as_bytes()]));
            }
            c.send_raw(&raw);
            drop(c);
        }
    });
    let mut o = proxy.client();
    for i in 1..=2000 {
        for (args, expect) in [
            (&["INCR", "counter"][..], Frame::Int(i)),
            (&["GET", "counter"][..], Frame::bulk(&i.to_string())),
        ] {
            o.send(args);
            let got = o.try_read().unwrap_or_else(|e| {
                let clients = redis.cmd(&["CLIENT", "LIST"]).text();
                panic!("{args:?} (round {i}): {e}; clients on the server:\n{clients}")
            });
            assert_eq!(got, expect, "{args:?} (round {i})");
        }
    }
    leavers.join().expect("leaving clients");
    let mut fresh = proxy.client();
    assert_eq!(fresh.cmd(&["GET", "counter"]), Frame::bulk("2000"));
    assert!(proxy.alive(), "proxy exited: {}", proxy.log());
}
