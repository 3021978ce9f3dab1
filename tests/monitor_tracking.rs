//! MONITOR and client-side caching (CLIENT TRACKING) through the proxy: a monitoring client
//! sees other clients' commands and leaves monitor mode with RESET; a tracking client receives
//! invalidations as RESP3 pushes, or, in RESP2, on the connection it redirects them to, named
//! by the id the proxy gave that client.

mod stateful;
mod support;

use std::time::Duration;

use stateful::{assert_same_as_redis, show, Exact, Step};
use support::{Client, Frame, Proxy, RedisServer};

/// A client whose replies must come quickly (the timeout only guards against a hang).
fn writer(proxy: &Proxy) -> Client {
    let c = proxy.client();
    c.set_read_timeout(Some(Duration::from_secs(10)));
    c
}

/// Reads monitor lines until one contains `needle` (compared in lower case); returns it.
fn monitor_line_with(m: &mut Exact, needle: &str) -> String {
    loop {
        match m.read() {
            Frame::Simple(line) if line.to_ascii_lowercase().contains(needle) => return line,
            Frame::Simple(_) => continue,
            other => panic!("monitor received {other:?} before a line with {needle}"),
        }
    }
}

/// M sends MONITOR (+OK); W sets mk through the proxy; M receives a line with "set" "mk" "mv".
/// M's GET is refused with an error (not run). M sends RESET: after any remaining lines,
/// +RESET; W sets mk again and M's PING is answered +PONG with no monitor line before it.
#[test]
fn monitor_sees_commands_and_reset_leaves_it() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut m = Exact::connect(proxy.addr());
    m.set_read_timeout(Duration::from_secs(10));
    assert_eq!(m.cmd(&["MONITOR"]), r"+OK\r\n");
    let mut w = writer(&proxy);
    assert_eq!(w.cmd(&["SET", "mk", "mv"]), Frame::ok());
    let line = monitor_line_with(&mut m, r#""set" "mk" "mv""#);
    assert!(line.contains(" [0 "), "monitor line {line}");

    m.send(&["GET", "mk"]);
    loop {
        match m.read() {
            Frame::Simple(_) => continue,
            Frame::Error(e) => break assert!(e.starts_with("ERR"), "{e}"),
            other => panic!("GET in monitor mode answered {other:?}"),
        }
    }

    m.send(&["RESET"]);
    loop {
        match m.read() {
            Frame::Simple(s) if s == "RESET" => break,
            Frame::Simple(_) => continue,
            other => panic!("RESET answered {other:?}"),
        }
    }
    assert_eq!(w.cmd(&["SET", "mk", "again"]), Frame::ok());
    assert_eq!(m.cmd(&["PING"]), r"+PONG\r\n");
    assert_eq!(m.cmd(&["GET", "mk"]), r"$5\r\nagain\r\n");
}

/// RESP3: T sends HELLO 3 and CLIENT TRACKING ON, reads tk; W sets tk through the proxy; T
/// receives the push ["invalidate", ["tk"]]. T reads tk again and W changes it again: another
/// invalidation. After CLIENT TRACKING OFF and a read, W's next change sends nothing: T's PING
/// is answered +PONG directly.
#[test]
fn resp3_tracking_receives_invalidate_push() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut w = writer(&proxy);
    assert_eq!(w.cmd(&["SET", "tk", "v1"]), Frame::ok());
    let mut t = Exact::connect(proxy.addr());
    t.set_read_timeout(Duration::from_secs(10));
    assert!(matches!(t.cmd_frame(&["HELLO", "3"]), Frame::Map(_)));
    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "ON"]), r"+OK\r\n");
    assert_eq!(t.cmd(&["GET", "tk"]), r"$2\r\nv1\r\n");
    assert_eq!(w.cmd(&["SET", "tk", "v2"]), Frame::ok());
    let invalidate = r">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\ntk\r\n";
    assert_eq!(show(&t.read_bytes()), invalidate);

    assert_eq!(t.cmd(&["GET", "tk"]), r"$2\r\nv2\r\n");
    assert_eq!(w.cmd(&["SET", "tk", "v3"]), Frame::ok());
    assert_eq!(show(&t.read_bytes()), invalidate);

    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "OFF"]), r"+OK\r\n");
    assert_eq!(t.cmd(&["GET", "tk"]), r"$2\r\nv3\r\n");
    assert_eq!(w.cmd(&["SET", "tk", "v4"]), Frame::ok());
    assert_eq!(t.cmd(&["PING"]), r"+PONG\r\n");
}

/// A tracking client may change protocol, as with Redis: T tracks in RESP2 (redirected to
/// itself), switches to RESP3 with HELLO 3 (a map, not an error), reads tk, and W's change of
/// tk reaches T as a RESP3 invalidation push on the same connection.
#[test]
fn hello_while_tracking_switches_protocol() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut w = writer(&proxy);
    assert_eq!(w.cmd(&["SET", "tk", "v1"]), Frame::ok());
    let mut t = Exact::connect(proxy.addr());
    t.set_read_timeout(Duration::from_secs(10));
    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "ON"]), r"+OK\r\n");
    assert!(matches!(t.cmd_frame(&["HELLO", "3"]), Frame::Map(_)));
    assert_eq!(t.cmd(&["GET", "tk"]), r"$2\r\nv1\r\n");
    assert_eq!(w.cmd(&["SET", "tk", "v2"]), Frame::ok());
    let invalidate = r">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\ntk\r\n";
    assert_eq!(show(&t.read_bytes()), invalidate);
}

/// RESP2 with REDIRECT: A asks CLIENT ID, then subscribes to __redis__:invalidate; B sends
/// CLIENT TRACKING ON REDIRECT <A's id> (+OK) and reads rk; W sets rk; A receives
/// ["message", "__redis__:invalidate", ["rk"]]. B's own connection receives nothing: its PING
/// is answered +PONG.
#[test]
fn resp2_tracking_redirects_to_the_subscriber() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut w = writer(&proxy);
    assert_eq!(w.cmd(&["SET", "rk", "v1"]), Frame::ok());
    let mut a = Exact::connect(proxy.addr());
    a.set_read_timeout(Duration::from_secs(10));
    let Frame::Int(a_id) = a.cmd_frame(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    assert_eq!(
        a.cmd(&["SUBSCRIBE", "__redis__:invalidate"]),
        r"*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n"
    );
    let mut b = writer(&proxy);
    let id = a_id.to_string();
    assert_eq!(
        b.cmd(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id]),
        Frame::ok()
    );
    assert_eq!(b.cmd(&["GET", "rk"]), Frame::bulk("v1"));
    assert_eq!(w.cmd(&["SET", "rk", "v2"]), Frame::ok());
    assert_eq!(
        show(&a.read_bytes()),
        r"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$2\r\nrk\r\n"
    );
    assert_eq!(b.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

/// CLIENT TRACKING ON REDIRECT to an id no client has: Redis's error, byte-identical to
/// redis-server; the client is not tracking afterwards (a PING after another client's write
/// is answered +PONG directly).
#[test]
fn tracking_redirect_to_unknown_id_fails_like_redis() {
    let reference = RedisServer::start();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let steps: &[Step<'_>] = &[
        (&["CLIENT", "TRACKING", "ON", "REDIRECT", "987654"], 1),
        (&["GET", "x"], 1),
        (&["SET", "x", "1"], 1),
        (&["PING"], 1),
    ];
    let got = assert_same_as_redis(reference.addr(), proxy.addr(), steps);
    assert_eq!(
        got[0],
        r"-ERR The client ID you want redirect to does not exist\r\n"
    );
}

/// After CLIENT TRACKING ON REDIRECT <A's id>, CLIENT GETREDIR and the redirect field of
/// CLIENT TRACKINGINFO answer that same id, as Redis answers the id the client gave (the
/// client knows only the proxy's ids); CLIENT TRACKING OFF REDIRECT <A's id> turns it off.
#[test]
fn getredir_answers_the_id_the_client_gave() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut a = Exact::connect(proxy.addr());
    let Frame::Int(a_id) = a.cmd_frame(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    a.cmd(&["SUBSCRIBE", "__redis__:invalidate"]);
    let mut b = writer(&proxy);
    let id = a_id.to_string();
    assert_eq!(
        b.cmd(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id]),
        Frame::ok()
    );
    let getredir = b.cmd(&["CLIENT", "GETREDIR"]);
    let info = b.cmd(&["CLIENT", "TRACKINGINFO"]);
    let items = info.items();
    let at = items
        .iter()
        .position(|f| *f == Frame::bulk("redirect"))
        .expect("redirect in TRACKINGINFO");
    assert_eq!(
        (getredir, items[at + 1].clone()),
        (Frame::Int(a_id), Frame::Int(a_id)),
        "(CLIENT GETREDIR, TRACKINGINFO redirect) after REDIRECT {a_id}"
    );
    // Turning tracking off with the same REDIRECT (as redis-py does) is accepted; an id no
    // client has gets Redis's error.
    assert_eq!(
        b.cmd(&["CLIENT", "TRACKING", "OFF", "REDIRECT", &id]),
        Frame::ok()
    );
    assert_eq!(b.cmd(&["CLIENT", "GETREDIR"]), Frame::Int(-1));
    let r = b.cmd(&["CLIENT", "TRACKING", "OFF", "REDIRECT", "987654"]);
    assert!(
        r.is_error("ERR The client ID you want redirect to does not exist"),
        "{r:?}"
    );
}

/// CLIENT TRACKING ON REDIRECT <the client's own id> is accepted, as Redis accepts it (the id
/// the proxy reported for this very client), and GETREDIR answers that id.
#[test]
fn tracking_redirect_to_own_id_is_accepted() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = writer(&proxy);
    let Frame::Int(id) = c.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    let own = id.to_string();
    assert_eq!(
        c.cmd(&["CLIENT", "TRACKING", "ON", "REDIRECT", &own]),
        Frame::ok()
    );
    assert_eq!(c.cmd(&["CLIENT", "GETREDIR"]), Frame::Int(id));
    assert_eq!(c.cmd(&["GET", "k"]), Frame::Null);
}

/// RESP3 broadcasting and opt-in modes: T1 tracks with BCAST PREFIX user: and, without
/// reading anything, receives an invalidation when W sets user:1 (and none for other:1: T1's
/// PING is answered directly). T2 tracks with OPTIN: a GET after CLIENT CACHING yes is tracked
/// (W's change sends an invalidation), a plain GET is not.
#[test]
fn resp3_tracking_bcast_and_optin() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut w = writer(&proxy);
    let invalidate = |key: &str| {
        format!(
            r">2\r\n$10\r\ninvalidate\r\n*1\r\n${}\r\n{key}\r\n",
            key.len()
        )
    };

    let mut t1 = Exact::connect(proxy.addr());
    t1.set_read_timeout(Duration::from_secs(10));
    assert!(matches!(t1.cmd_frame(&["HELLO", "3"]), Frame::Map(_)));
    let on = ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:"];
    assert_eq!(t1.cmd(&on), r"+OK\r\n");
    assert_eq!(w.cmd(&["SET", "other:1", "x"]), Frame::ok());
    assert_eq!(w.cmd(&["SET", "user:1", "x"]), Frame::ok());
    assert_eq!(show(&t1.read_bytes()), invalidate("user:1"));
    assert_eq!(t1.cmd(&["PING"]), r"+PONG\r\n");

    let mut t2 = Exact::connect(proxy.addr());
    t2.set_read_timeout(Duration::from_secs(10));
    assert!(matches!(t2.cmd_frame(&["HELLO", "3"]), Frame::Map(_)));
    assert_eq!(t2.cmd(&["CLIENT", "TRACKING", "ON", "OPTIN"]), r"+OK\r\n");
    assert_eq!(t2.cmd(&["GET", "plain"]), r"_\r\n");
    assert_eq!(t2.cmd(&["CLIENT", "CACHING", "yes"]), r"+OK\r\n");
    assert_eq!(t2.cmd(&["GET", "cached"]), r"_\r\n");
    assert_eq!(w.cmd(&["SET", "plain", "1"]), Frame::ok());
    assert_eq!(w.cmd(&["SET", "cached", "1"]), Frame::ok());
    assert_eq!(show(&t2.read_bytes()), invalidate("cached"));
    assert_eq!(t2.cmd(&["PING"]), r"+PONG\r\n");
}
