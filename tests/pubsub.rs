//! Pub/sub through the proxy, in RESP2 and RESP3: confirmations and messages reach the
//! subscriber as Redis sends them (arrays in RESP2, push frames in RESP3), in order with the
//! subscriber's own replies; the RESP2 subscribed context allows what Redis allows; leaving it
//! (UNSUBSCRIBE of everything, RESET, disconnecting) ends the subscriptions on the server.

mod stateful;
mod support;

use std::time::Duration;

use stateful::{
    assert_pipeline_same_as_redis, assert_same_as_redis, assert_same_until_marker, eventually,
    show, Exact, Step,
};
use support::{Client, Frame, Proxy, RedisServer};

/// A publisher whose replies must come quickly (the timeout only guards against a hang).
fn publisher(proxy: &Proxy) -> Client {
    let c = proxy.client();
    c.set_read_timeout(Some(Duration::from_secs(10)));
    c
}

/// Subscribers of `channel` on the server itself.
fn numsub(redis: &RedisServer, channel: &str) -> i64 {
    match redis.cmd(&["PUBSUB", "NUMSUB", channel]).items() {
        [_, Frame::Int(n)] => *n,
        other => panic!("PUBSUB NUMSUB: {other:?}"),
    }
}

/// S subscribes to news and sport in one SUBSCRIBE (two confirmations; the server counts one
/// subscriber per channel); P publishes to each through the proxy (each PUBLISH counts one
/// receiver); S receives ["message", channel, payload] for both, in order.
#[test]
fn subscriber_receives_messages_resp2() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut s = Exact::connect(proxy.addr());
    s.send(&["SUBSCRIBE", "news", "sport"]);
    assert_eq!(
        show(&s.read_bytes()),
        r"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        show(&s.read_bytes()),
        r"*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n"
    );
    assert_eq!(numsub(&redis, "news"), 1);
    let mut p = publisher(&proxy);
    assert_eq!(p.cmd(&["PUBLISH", "news", "hello"]), Frame::Int(1));
    assert_eq!(p.cmd(&["PUBLISH", "sport", "goal"]), Frame::Int(1));
    assert_eq!(
        show(&s.read_bytes()),
        r"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    assert_eq!(
        show(&s.read_bytes()),
        r"*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$4\r\ngoal\r\n"
    );
}

/// S pattern-subscribes to n*; P publishes to news; S receives ["pmessage", "n*", "news",
/// payload].
#[test]
fn pattern_subscriber_receives_pmessage() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut s = Exact::connect(proxy.addr());
    assert_eq!(
        s.cmd(&["PSUBSCRIBE", "n*"]),
        r"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n"
    );
    let mut p = publisher(&proxy);
    assert_eq!(p.cmd(&["PUBLISH", "news", "hello"]), Frame::Int(1));
    assert_eq!(
        show(&s.read_bytes()),
        r"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
}

/// S shard-subscribes to sc; P sends SPUBLISH sc through the proxy (one receiver); S receives
/// ["smessage", "sc", payload].
#[test]
fn shard_subscriber_receives_smessage() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut s = Exact::connect(proxy.addr());
    assert_eq!(
        s.cmd(&["SSUBSCRIBE", "sc"]),
        r"*3\r\n$10\r\nssubscribe\r\n$2\r\nsc\r\n:1\r\n"
    );
    let mut p = publisher(&proxy);
    assert_eq!(p.cmd(&["SPUBLISH", "sc", "hi"]), Frame::Int(1));
    assert_eq!(
        show(&s.read_bytes()),
        r"*3\r\n$8\r\nsmessage\r\n$2\r\nsc\r\n$2\r\nhi\r\n"
    );
}

/// One RESP2 client: SUBSCRIBE c, GET (refused with Redis's "only (P|S)SUBSCRIBE / ..."
/// error), PING (["pong", ""]), PING x (["pong", "x"]), PSUBSCRIBE, SSUBSCRIBE, UNSUBSCRIBE
/// (all), GET (still refused: subscriptions remain), PUNSUBSCRIBE, SUNSUBSCRIBE, then GET, SET
/// and PING work normally on the same connection. Byte-identical to redis-server.
#[test]
fn subscribed_context_like_redis() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let steps: &[Step<'_>] = &[
        (&["SUBSCRIBE", "c"], 1),
        (&["GET", "a"], 1),
        (&["PING"], 1),
        (&["PING", "x"], 1),
        (&["PSUBSCRIBE", "p*", "q*"], 2),
        (&["SSUBSCRIBE", "s"], 1),
        (&["UNSUBSCRIBE"], 1),
        (&["GET", "a"], 1),
        (&["PUNSUBSCRIBE"], 2),
        (&["SUNSUBSCRIBE", "s", "t"], 2),
        (&["SET", "a", "1"], 1),
        (&["GET", "a"], 1),
        (&["PING"], 1),
        (&["UNSUBSCRIBE"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(
        got[1],
        r"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    assert_eq!(got[2], r"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_eq!(got[3], r"*2\r\n$4\r\npong\r\n$1\r\nx\r\n");
    assert_eq!(got[8], got[1]);
    assert_eq!(got[14], r"$1\r\n1\r\n");
    assert_eq!(got[15], r"+PONG\r\n");
}

/// The same kind of script sent as one pipeline (every command in one write, before any
/// reply): SUBSCRIBE c d, PING, GET (refused), UNSUBSCRIBE c d, GET (allowed again), SET,
/// PING, PSUBSCRIBE, GET (refused), PUNSUBSCRIBE, GET. Byte-identical to redis-server.
#[test]
fn pipelined_subscribe_and_unsubscribe_like_redis() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let steps: &[Step<'_>] = &[
        (&["SUBSCRIBE", "c", "d"], 2),
        (&["PING"], 1),
        (&["GET", "a"], 1),
        (&["UNSUBSCRIBE", "c", "d"], 2),
        (&["GET", "a"], 1),
        (&["SET", "a", "1"], 1),
        (&["PING"], 1),
        (&["PSUBSCRIBE", "p*"], 1),
        (&["GET", "a"], 1),
        (&["PUNSUBSCRIBE", "p*"], 1),
        (&["GET", "a"], 1),
    ];
    let got = assert_pipeline_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(got[6], r"$-1\r\n");
    assert_eq!(got[10], got[3]);
    assert_eq!(got[12], r"$1\r\n1\r\n");
}

/// S subscribes; P publishes m1 (answered: the message is on its way); S sends PING and
/// receives m1 before the pong. Then P pipelines 1000 PUBLISHes; S receives all 1000 messages
/// in order, then UNSUBSCRIBE's confirmation, and the server no longer counts a subscriber.
#[test]
fn messages_keep_their_order_with_replies() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut s = Exact::connect(proxy.addr());
    s.cmd(&["SUBSCRIBE", "c"]);
    let mut p = publisher(&proxy);
    assert_eq!(p.cmd(&["PUBLISH", "c", "m1"]), Frame::Int(1));
    s.send(&["PING"]);
    assert_eq!(
        show(&s.read_bytes()),
        r"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nm1\r\n"
    );
    assert_eq!(show(&s.read_bytes()), r"*2\r\n$4\r\npong\r\n$0\r\n\r\n");

    let mut batch = Vec::new();
    for i in 0..1000 {
        let payload = format!("n{i}");
        batch.extend(support::client::encode(&[
            b"PUBLISH",
            b"c",
            payload.as_bytes(),
        ]));
    }
    p.send_raw(&batch);
    for i in 0..1000 {
        assert_eq!(p.read(), Frame::Int(1), "PUBLISH {i}");
    }
    s.send(&["UNSUBSCRIBE"]);
    for i in 0..1000 {
        let expected = Frame::Array(vec![
            Frame::bulk("message"),
            Frame::bulk("c"),
            Frame::bulk(&format!("n{i}")),
        ]);
        assert_eq!(s.read(), expected, "message {i}");
    }
    assert_eq!(
        show(&s.read_bytes()),
        r"*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n"
    );
    assert_eq!(numsub(&redis, "c"), 0);
    assert_eq!(s.cmd(&["PING"]), r"+PONG\r\n");
}

/// RESP3: HELLO 3, SUBSCRIBE c (the confirmation is a push frame); P publishes; S receives a
/// push ["message", "c", payload]; S's GET is answered with a normal bulk string while
/// subscribed, and CLIENT INFO shows the subscription; P publishes m2 and S sends GET at once: the push comes first, then the reply;
/// UNSUBSCRIBE's confirmation is a push too, and a missing key reads as RESP3 null.
#[test]
fn resp3_subscriber_gets_push_frames_and_normal_replies() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut p = publisher(&proxy);
    assert_eq!(p.cmd(&["SET", "k", "v"]), Frame::ok());
    let mut s = Exact::connect(proxy.addr());
    assert!(matches!(s.cmd_frame(&["HELLO", "3"]), Frame::Map(_)));
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "c"]),
        r">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    );
    assert_eq!(p.cmd(&["PUBLISH", "c", "m1"]), Frame::Int(1));
    assert_eq!(
        show(&s.read_bytes()),
        r">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nm1\r\n"
    );
    assert_eq!(s.cmd(&["GET", "k"]), r"$1\r\nv\r\n");
    let info = s.cmd_frame(&["CLIENT", "INFO"]).text();
    for want in [" flags=P ", " sub=1 ", " resp=3"] {
        assert!(info.contains(want), "{want} not in {info:?}");
    }

    assert_eq!(p.cmd(&["PUBLISH", "c", "m2"]), Frame::Int(1));
    s.send(&["GET", "k"]);
    assert_eq!(
        show(&s.read_bytes()),
        r">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nm2\r\n"
    );
    assert_eq!(show(&s.read_bytes()), r"$1\r\nv\r\n");
    assert_eq!(s.cmd(&["PING"]), r"+PONG\r\n");

    assert_eq!(
        s.cmd(&["UNSUBSCRIBE", "c"]),
        r">3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n"
    );
    assert_eq!(s.cmd(&["GET", "missing"]), r"_\r\n");
    assert_eq!(p.cmd(&["PUBLISH", "c", "m3"]), Frame::Int(0));
}

/// S subscribes to c and sends RESET: +RESET, then GET works on the same connection and the
/// server drops the subscription (NUMSUB reaches 0). T subscribes to d and disconnects: the
/// server drops that subscription too, and a PUBLISH reaches nobody.
#[test]
fn reset_and_disconnect_end_subscriptions() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut s = Exact::connect(proxy.addr());
    s.cmd(&["SUBSCRIBE", "c"]);
    assert_eq!(numsub(&redis, "c"), 1);
    assert_eq!(s.cmd(&["RESET"]), r"+RESET\r\n");
    assert_eq!(s.cmd(&["GET", "k"]), r"$-1\r\n");
    eventually("the server drops S's subscription", || {
        numsub(&redis, "c") == 0
    });

    let mut t = Exact::connect(proxy.addr());
    t.cmd(&["SUBSCRIBE", "d"]);
    assert_eq!(numsub(&redis, "d"), 1);
    drop(t);
    eventually("the server drops T's subscription", || {
        numsub(&redis, "d") == 0
    });
    let mut p = publisher(&proxy);
    assert_eq!(p.cmd(&["PUBLISH", "d", "x"]), Frame::Int(0));
}

/// RESP2, subscribed to c: CLIENT GETNAME and CONFIG GET are refused with Redis's error, which
/// names the subcommand ('client|getname', 'config|get'). Byte-identical to redis-server.
#[test]
fn subscribed_context_error_names_subcommands_like_redis() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let steps: &[Step<'_>] = &[
        (&["SUBSCRIBE", "c"], 1),
        (&["CLIENT", "GETNAME"], 1),
        (&["CONFIG", "GET", "maxmemory"], 1),
        (&["PING"], 1),
    ];
    assert_same_as_redis(reference.addr(), proxy.addr(), steps);
}

/// RESP2: CLIENT REPLY SKIP, SUBSCRIBE a b, PING marker. Redis sends pub/sub confirmations
/// past the reply mode (they are pushes), so the client receives both confirmations and the
/// pong, byte-identical to redis-server.
#[test]
fn client_reply_skip_keeps_subscribe_confirmations_like_redis() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let cmds: &[&[&str]] = &[
        &["CLIENT", "REPLY", "SKIP"],
        &["SUBSCRIBE", "a", "b"],
        &["PING", "marker"],
    ];
    let marker = r"*2\r\n$4\r\npong\r\n$6\r\nmarker\r\n";
    let got = assert_same_until_marker(reference.addr(), proxy.addr(), cmds, marker, 0);
    assert_eq!(got.len(), 3);
}

/// RESP3: CLIENT REPLY OFF, SUBSCRIBE c, PUBLISH c m (its reply hidden), CLIENT REPLY ON,
/// PING marker. Redis still sends the subscribe confirmation and the message (pushes), then
/// +OK and the marker; the same frames arrive through the proxy.
#[test]
fn client_reply_off_keeps_pushes_resp3_like_redis() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let cmds: &[&[&str]] = &[
        &["HELLO", "3"],
        &["CLIENT", "REPLY", "OFF"],
        &["SUBSCRIBE", "c"],
        &["PUBLISH", "c", "m"],
        &["CLIENT", "REPLY", "ON"],
        &["PING", "marker"],
    ];
    let marker = r"$6\r\nmarker\r\n";
    let got = assert_same_until_marker(reference.addr(), proxy.addr(), cmds, marker, 1);
    assert_eq!(got.len(), 4);
}

/// RESP3, subscribed to c: LRANGE of a list holding "message", "c", "hi" is an ordinary reply
/// (an array, not a push). Then CLIENT REPLY SKIP, GET k (hidden) and PING marker: the client
/// receives exactly the subscribe push, the array and the marker, as from redis-server.
#[test]
fn resp3_array_reply_that_looks_like_a_message_is_a_reply() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    for server in [&reference, &redis] {
        assert_eq!(
            server.cmd(&["RPUSH", "l", "message", "c", "hi"]),
            Frame::Int(3)
        );
        assert_eq!(server.cmd(&["SET", "k", "v"]), Frame::ok());
    }
    let cmds: &[&[&str]] = &[
        &["HELLO", "3"],
        &["SUBSCRIBE", "c"],
        &["LRANGE", "l", "0", "-1"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "k"],
        &["PING", "marker"],
    ];
    let marker = r"$6\r\nmarker\r\n";
    let got = assert_same_until_marker(reference.addr(), proxy.addr(), cmds, marker, 1);
    assert_eq!(
        got,
        [
            r">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
            r"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n",
            marker,
        ]
    );
}

/// RESP3, subscribed to c, S blocks in BLPOP l 0. P publishes on c: S receives the push while
/// still blocked. P pushes to l: S receives BLPOP's array reply, then its PING is answered.
#[test]
fn resp3_subscriber_blocked_in_blpop_still_gets_messages() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut s = Exact::connect(proxy.addr());
    assert!(matches!(s.cmd_frame(&["HELLO", "3"]), Frame::Map(_)));
    s.cmd(&["SUBSCRIBE", "c"]);
    s.send(&["BLPOP", "l", "0"]);
    stateful::wait_blocked(&redis, 1);
    let mut p = publisher(&proxy);
    assert_eq!(p.cmd(&["PUBLISH", "c", "during"]), Frame::Int(1));
    assert_eq!(
        show(&s.read_bytes()),
        r">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$6\r\nduring\r\n"
    );
    assert_eq!(stateful::blocked_clients(&redis), 1);
    assert_eq!(p.cmd(&["RPUSH", "l", "v"]), Frame::Int(1));
    assert_eq!(show(&s.read_bytes()), r"*2\r\n$1\r\nl\r\n$1\r\nv\r\n");
    assert_eq!(s.cmd(&["PING"]), r"+PONG\r\n");
}
