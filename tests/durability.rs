//! Durable writes against real servers: a master in site a, its replica in site b, and the
//! proxy with `[durability] replicas = 1`. A write is answered once the replica holds it; with
//! the replica stopped (SIGSTOP: its link stays open, it acknowledges nothing) a write is
//! answered with the "not confirmed" error after the timeout and is on the master; reads,
//! failing writes, the client's own WAIT and users without durability are not touched;
//! pipelines keep their order; transactions and scripts are covered.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::client::{encode_strs, read_frame};
use support::failover::wait_for;
use support::{Client, Frame, Proxy, RedisServer};

const UNCONFIRMED: &str =
    "UNCONFIRMED the write was applied on the master but not confirmed by 1 replica(s)";

/// A master and its linked replica.
fn pair() -> (RedisServer, RedisServer) {
    let master = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&master).start();
    replica.wait_link_up();
    (master, replica)
}

/// The master alone in site a, the replica in site b; durable writes with `timeout`, a user
/// `fast` without them, and `extra` configuration. One worker thread, so that clients share
/// its backend connections.
fn proxy(master: &RedisServer, replica: &RedisServer, timeout: &str, extra: &str) -> Proxy {
    Proxy::builder()
        .config(&format!(
            r#"
threads = 1

[health]
interval = "100ms"

[durability]
replicas = 1
timeout = "{timeout}"

[auth]
[[auth.users]]
name = "fast"
password = "fast-pw"
durability = {{ replicas = 0 }}

[[sites]]
name = "a"
nodes = ["{m}"]
quorum = 1

[[sites]]
name = "b"
nodes = ["{r}"]
quorum = 1
{extra}
"#,
            m = master.addr_str(),
            r = replica.addr_str(),
        ))
        .admin()
        .start()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn unconfirmed(f: &Frame) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with(UNCONFIRMED))
}

/// 1. The replica is stopped; a client sends SET through the proxy (timeout 30 s).
/// 2. No reply within 500 ms: the master ran it, the replica has not acknowledged it.
/// 3. The replica resumes: the reply is OK, and the replica holds the key.
/// 4. Confirmed writes are counted in the metrics.
#[test]
fn a_write_is_answered_only_once_a_replica_holds_it() {
    let (master, replica) = pair();
    let proxy = proxy(&master, &replica, "10s", "");
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "d:warm", "1"]), Frame::ok());
    replica.pause();
    c.send(&["SET", "d:k", "v"]);
    c.set_read_timeout(Some(Duration::from_millis(500)));
    assert!(c.try_read().is_err(), "answered before the replica had it");
    assert_eq!(master.cmd(&["GET", "d:k"]), Frame::bulk("v"));
    replica.resume();
    c.set_read_timeout(Some(Duration::from_secs(15)));
    assert_eq!(c.read(), Frame::ok());
    assert_eq!(replica.cmd(&["GET", "d:k"]), Frame::bulk("v"));
    assert!(
        proxy.metric("redis_failover_proxy_durable_writes_confirmed_total", &[]) >= 2.0,
        "confirmed writes not counted"
    );
}

/// 1. The replica is stopped; the timeout is 300 ms.
/// 2. SET, INCR on a string (an error of its own), a MULTI/SET/EXEC block and an EVAL that
///    writes: the writes get the "not confirmed" error, the failing INCR its own error, and
///    every key is on the master.
/// 3. Reads (GET, EVAL_RO) and the client's own WAIT are answered as Redis answers them.
/// 4. User `fast`, without durability, writes as usual.
#[test]
fn unconfirmed_writes_get_the_error_and_are_on_the_master() {
    let (master, replica) = pair();
    let proxy = proxy(&master, &replica, "300ms", "");
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "d:s", "x"]), Frame::ok());
    replica.pause();

    let set = c.cmd(&["SET", "d:a", "1"]);
    assert!(unconfirmed(&set), "{set:?}");
    assert!(
        matches!(&set, Frame::Error(e) if e.contains("(0 acknowledged)")),
        "{set:?}"
    );
    let incr = c.cmd(&["INCR", "d:s"]);
    assert!(
        matches!(&incr, Frame::Error(e) if e.starts_with("ERR value is not an integer")),
        "{incr:?}"
    );
    assert_eq!(c.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(c.cmd(&["SET", "d:tx", "1"]), Frame::Simple("QUEUED".into()));
    let exec = c.cmd(&["EXEC"]);
    assert!(unconfirmed(&exec), "{exec:?}");
    let eval = c.cmd(&[
        "EVAL",
        "return redis.call('SET', KEYS[1], 'e')",
        "1",
        "d:ev",
    ]);
    assert!(unconfirmed(&eval), "{eval:?}");
    for key in ["d:a", "d:tx", "d:ev"] {
        assert_ne!(
            master.cmd(&["GET", key]),
            Frame::Null,
            "{key} not on the master"
        );
    }

    assert_eq!(c.cmd(&["GET", "d:a"]), Frame::bulk("1"));
    assert_eq!(
        c.cmd(&["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "d:a"]),
        Frame::bulk("1")
    );
    assert_eq!(c.cmd(&["WAIT", "1", "100"]), Frame::Int(0));

    let mut fast = proxy.client();
    assert_eq!(fast.cmd(&["AUTH", "fast", "fast-pw"]), Frame::ok());
    assert_eq!(fast.cmd(&["SET", "d:fast", "1"]), Frame::ok());

    replica.resume();
    wait_for("the replica to catch up", Duration::from_secs(10), || {
        replica.cmd(&["GET", "d:fast"]) == Frame::bulk("1")
    });
    assert_eq!(c.cmd(&["SET", "d:after", "1"]), Frame::ok());
    assert!(proxy.metric("redis_failover_proxy_durable_writes_unconfirmed_total", &[]) >= 3.0);
}

/// 1. One shared connection per key; the replica is stopped; the timeout is 10 s.
/// 2. Client a's SET waits for the replica; client b's GET (another key) is answered
///    meanwhile: reads go on connections that carry no durable write, so they never queue
///    behind a WAIT.
/// 3. The replica resumes: a gets OK.
#[test]
fn reads_do_not_queue_behind_durable_writes() {
    let (master, replica) = pair();
    let proxy = proxy(&master, &replica, "10s", "[backend]\npool_size = 1\n");
    let mut a = proxy.client();
    let mut b = proxy.client();
    assert_eq!(a.cmd(&["SET", "d:r", "1"]), Frame::ok());
    assert_eq!(b.cmd(&["GET", "d:r"]), Frame::bulk("1"));
    replica.pause();
    a.send(&["SET", "d:w", "2"]);
    a.set_read_timeout(Some(Duration::from_millis(300)));
    assert!(a.try_read().is_err(), "answered before the replica had it");
    b.set_read_timeout(Some(Duration::from_secs(2)));
    assert_eq!(b.cmd(&["GET", "d:r"]), Frame::bulk("1"), "the read waited");
    replica.resume();
    a.set_read_timeout(Some(Duration::from_secs(15)));
    assert_eq!(a.read(), Frame::ok());
}

/// A pipeline of 10,000 INCRs with a GET every 100 answers 1..=10,000 in order, and the
/// replica holds the final count when the last reply arrives.
#[test]
fn pipelines_of_ten_thousand_writes_keep_their_order() {
    let (master, replica) = pair();
    let proxy = proxy(&master, &replica, "2s", "");
    let s = TcpStream::connect(proxy.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut payload = Vec::new();
    for i in 0..10_000 {
        payload.extend(encode_strs(&["INCR", "d:n"]));
        if i % 100 == 99 {
            payload.extend(encode_strs(&["GET", "d:n"]));
        }
    }
    let writer = std::thread::spawn(move || w.write_all(&payload));
    let mut r = BufReader::new(s);
    for i in 1..=10_000i64 {
        assert_eq!(read_frame(&mut r).expect("reply"), Frame::Int(i));
        if i % 100 == 0 {
            assert_eq!(
                read_frame(&mut r).expect("reply"),
                Frame::bulk(&i.to_string())
            );
        }
    }
    writer.join().expect("writer").expect("sent");
    assert_eq!(replica.cmd(&["GET", "d:n"]), Frame::bulk("10000"));
}

/// `/topology` judges the setting: the master alone in site a and one replica in site b
/// survives the loss of site a; asking for 2 replicas cannot be met, which is logged.
#[test]
fn topology_says_whether_the_setting_survives_the_master_site() {
    let (master, replica) = pair();
    let proxy = proxy(&master, &replica, "200ms", "");
    let body = proxy.admin_get("/topology").1;
    let d = &json(&body)["durability"][0];
    assert_eq!(d["user"], "default", "{body}");
    assert_eq!(d["replicas"], 1, "{body}");
    assert_eq!(d["master_site"], "a", "{body}");
    assert_eq!(d["replicas_elsewhere"], 1, "{body}");
    assert_eq!(d["survives_site_loss"], true, "{body}");

    let greedy = Proxy::builder()
        .args(&[
            "--nodes",
            &format!("{},{}", master.addr_str(), replica.addr_str()),
            "--durable-replicas",
            "2",
        ])
        .admin()
        .spawn();
    wait_for("a verified master", Duration::from_secs(10), || {
        json(&greedy.admin_get("/topology").1)["state"] == "verified"
    });
    let body = greedy.admin_get("/topology").1;
    let d = &json(&body)["durability"][0];
    assert_eq!(d["survives_site_loss"], false, "{body}");
    assert!(
        greedy.wait_log(
            "asks for 2 replica(s) but 1 are known",
            Duration::from_secs(5)
        ),
        "{}",
        greedy.log()
    );
    let set = Client::connect(greedy.addr()).cmd(&["SET", "d:g", "1"]);
    assert!(
        matches!(&set, Frame::Error(e) if e.starts_with("UNCONFIRMED") && e.contains("(1 acknowledged)")),
        "{set:?}"
    );
}
