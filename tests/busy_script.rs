//! A script that runs past Redis's `busy-reply-threshold` makes the node answer `-BUSY` to
//! every other connection. The node is alive and still the master: the proxy must keep it
//! verified, pass Redis's `-BUSY` to clients, and let `SCRIPT KILL` / `FUNCTION KILL` through
//! the proxy reach it, so that the script can be stopped without restarting Redis.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::failover::wait_for;
use support::scrape::topology;
use support::{Client, Frame, Proxy, RedisServer};

const TOKEN: &str = "busy-token-3f1a";

/// Probes are fast, so that a probe answered `-BUSY` would mark the node down within the
/// test.
const CONFIG: &str = r#"
[health]
interval = "100ms"
timeout = "300ms"
rise = 1
fall = 2

[admin_auth]
token = "busy-token-3f1a"
"#;

/// Redis with a low `busy-reply-threshold`, a proxy in front of it with the admin endpoint.
fn setup() -> (RedisServer, Proxy, SocketAddr) {
    let redis = RedisServer::start();
    assert_eq!(
        redis.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]),
        Frame::ok()
    );
    let proxy = Proxy::builder()
        .config(CONFIG)
        .nodes(&[&redis])
        .admin()
        .start();
    let admin = SocketAddr::from(([127, 0, 0, 1], proxy.admin_port.expect("admin port")));
    (redis, proxy, admin)
}

fn client(proxy: &Proxy) -> Client {
    let c = proxy.client();
    c.set_read_timeout(Some(Duration::from_secs(20)));
    c
}

/// Waits until Redis answers other connections with `-BUSY`.
fn wait_busy(redis: &RedisServer) {
    let mut direct = redis.client();
    direct.set_read_timeout(Some(Duration::from_secs(5)));
    wait_for("Redis busy", Duration::from_secs(10), || {
        direct.cmd(&["PING"]).is_error("BUSY")
    });
}

/// While busy, for well over `fall` probe rounds: the master stays healthy and verified.
fn assert_master_kept(proxy: &Proxy, admin: SocketAddr, redis: &RedisServer) {
    let busy = "node busy running a script; kept healthy with its last known state";
    assert!(
        proxy.wait_log(busy, Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let topo = topology(admin, Some(TOKEN));
        assert_eq!(topo["state"], "verified", "{topo}\n{}", proxy.log());
        assert_eq!(topo["master"]["address"], redis.addr_str(), "{topo}");
        let node = &topo["nodes"][0];
        assert_eq!(node["healthy"], true, "{topo}");
        assert_eq!(node["role"], "master", "{topo}");

        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `busy` (a script or function call that loops forever) on one client and checks the
/// proxy through it: another client gets `-BUSY`, the master stays verified, `kill` sent
/// through the proxy stops the script, the script's client gets Redis's error for a killed
/// script, and everyone works again.
fn busy_then_kill(
    redis: &RedisServer,
    proxy: &Proxy,
    admin: SocketAddr,
    busy: &[&str],
    kill: &[&str],
) {
    let mut script = client(proxy);
    assert_eq!(script.cmd(&["SET", "a", "1"]), Frame::ok());
    // Another database is another set of shared connections: `other`'s commands cannot queue
    // behind the script's reply on its connection, they reach Redis and get its `-BUSY`.
    let mut other = client(proxy);
    assert_eq!(other.cmd(&["SELECT", "1"]), Frame::ok());
    assert_eq!(other.cmd(&["SET", "b", "2"]), Frame::ok());

    // Database 2 and its connections are opened before the script starts: a busy node
    // refuses SELECT and the handshake of new connections too.
    let mut late = client(proxy);
    assert_eq!(late.cmd(&["SELECT", "2"]), Frame::ok());

    script.send(busy);
    wait_busy(redis);

    let r = other.cmd(&["GET", "b"]);
    assert!(
        r.is_error("BUSY "),
        "GET while busy: {r:?}\n{}",
        proxy.log()
    );
    assert_master_kept(proxy, admin, redis);
    let r = other.cmd(&["SET", "b", "3"]);
    assert!(r.is_error("BUSY "), "SET while busy: {r:?}");
    let r = late.cmd(&["GET", "c"]);
    assert!(r.is_error("BUSY "), "GET on another database: {r:?}");

    let mut killer = client(proxy);
    let started = Instant::now();
    assert_eq!(killer.cmd(kill), Frame::ok(), "{}", proxy.log());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "kill took {:?}",
        started.elapsed()
    );

    let r = script.read();
    // Redis 7.0 names SCRIPT KILL in this error for functions too.
    assert!(
        matches!(&r, Frame::Error(e) if e.contains("Script killed by user")),
        "the script's own reply: {r:?}"
    );

    for (i, c) in [&mut script, &mut other, &mut killer]
        .into_iter()
        .enumerate()
    {
        let k = format!("after-{i}");
        assert_eq!(c.cmd(&["SET", &k, "v"]), Frame::ok(), "client {i}");
        assert_eq!(c.cmd(&["GET", &k]), Frame::bulk("v"), "client {i}");
    }
    assert_eq!(
        other.cmd(&["GET", "b"]),
        Frame::bulk("2"),
        "the refused SET did not run"
    );
    let topo = topology(admin, Some(TOKEN));
    assert_eq!(topo["state"], "verified", "{topo}");
}

/// `EVAL "while true do end" 0` through the proxy, stopped with `SCRIPT KILL` through the
/// proxy.
#[test]
fn busy_script_is_killed_through_the_proxy() {
    let (redis, proxy, admin) = setup();
    busy_then_kill(
        &redis,
        &proxy,
        admin,
        &["EVAL", "while true do end", "0"],
        &["SCRIPT", "KILL"],
    );
    // A second round on the same proxy: nothing was left stuck by the first.
    busy_then_kill(
        &redis,
        &proxy,
        admin,
        &["EVAL", "while true do end", "0"],
        &["SCRIPT", "KILL"],
    );
}

/// A function looping forever, called with FCALL through the proxy, stopped with
/// `FUNCTION KILL` through the proxy.
#[test]
fn busy_function_is_killed_through_the_proxy() {
    let (redis, proxy, admin) = setup();
    let lib =
        "#!lua name=busylib\nredis.register_function('spin', function() while true do end end)";
    let mut c = client(&proxy);
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), Frame::bulk("busylib"));
    busy_then_kill(
        &redis,
        &proxy,
        admin,
        &["FCALL", "spin", "0"],
        &["FUNCTION", "KILL"],
    );
}

/// A command queued behind the script on the same shared connection (one lane) waits for
/// it, even past the reply deadline (1 s here): the node answers its probes `-BUSY`, so it is
/// alive, and ending the connection would only turn both replies into errors.
/// 1. A script runs on the only lane; a GET from another client waits behind it for 3 s.
/// 2. SCRIPT KILL through the proxy: the script's client gets Redis's error, the GET its
///    value.
#[test]
fn command_behind_a_busy_script_waits_for_it() {
    let redis = RedisServer::start();
    assert_eq!(
        redis.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]),
        Frame::ok()
    );
    let proxy = Proxy::builder()
        .config(&format!(
            "threads = 1\n[backend]\npool_size = 1\nreply_timeout = \"1s\"\n{CONFIG}"
        ))
        .nodes(&[&redis])
        .start();
    let mut script = client(&proxy);
    assert_eq!(script.cmd(&["SET", "a", "1"]), Frame::ok());
    let mut behind = client(&proxy);
    assert_eq!(behind.cmd(&["SET", "b", "2"]), Frame::ok());
    script.send(&["EVAL", "while true do end", "0"]);
    wait_busy(&redis);
    behind.send(&["GET", "b"]);
    std::thread::sleep(Duration::from_secs(3));
    let mut killer = client(&proxy);
    assert_eq!(killer.cmd(&["SCRIPT", "KILL"]), Frame::ok());
    let r = script.read();
    assert!(r.is_error("ERR Script killed by user"), "script: {r:?}");
    assert_eq!(behind.read(), Frame::bulk("2"));
    assert_eq!(behind.cmd(&["SET", "b", "3"]), Frame::ok());
    assert!(
        proxy.log_lines(&["backend connection lost"]).is_empty(),
        "{}",
        proxy.log()
    );
}

/// The shared connection is lost while the node is busy, before a probe saw it busy (the
/// deadline, 1 s, is shorter than the probe interval): the GET queued behind the script is
/// re-sent, and every new connection's handshake is refused `-BUSY`. The GET gets an error
/// saying the master is busy and the command was not executed, not a wait for ever.
#[test]
fn command_on_a_connection_lost_while_busy_gets_an_error() {
    let redis = RedisServer::start();
    assert_eq!(
        redis.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]),
        Frame::ok()
    );
    let proxy = Proxy::builder()
        .config(
            "threads = 1\n[backend]\npool_size = 1\nreply_timeout = \"1s\"\n\
             [health]\ninterval = \"3s\"\n",
        )
        .nodes(&[&redis])
        .start();
    let mut script = client(&proxy);
    assert_eq!(script.cmd(&["SET", "a", "1"]), Frame::ok());
    let mut behind = client(&proxy);
    assert_eq!(behind.cmd(&["SET", "b", "2"]), Frame::ok());
    script.send(&["EVAL", "while true do end", "0"]);
    wait_busy(&redis);
    let sent = Instant::now();
    behind.send(&["GET", "b"]);
    let r = behind.read();
    assert!(r.is_error("BUSY the master is busy"), "GET: {r:?}");
    assert!(matches!(&r, Frame::Error(e) if e.ends_with("not executed (proxy)")));
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "{:?}",
        sent.elapsed()
    );
    let r = script.read();
    assert!(
        r.is_error("ERR the connection to the master was lost"),
        "{r:?}"
    );
    assert_eq!(redis.cmd(&["SCRIPT", "KILL"]), Frame::ok());
    wait_for("served again", Duration::from_secs(10), || {
        behind.cmd(&["GET", "b"]) == Frame::bulk("2")
    });
}
