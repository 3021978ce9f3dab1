//! Commands refused on the proxy's data port: administration commands that would change or stop
//! the server behind every client's back (CONFIG SET, DEBUG, SHUTDOWN, REPLICAOF, FAILOVER,
//! CLIENT KILL, SENTINEL, MODULE, ACL SETUSER) are answered by the proxy with an error and never
//! reach Redis, unless an operator allows them with `allow_commands` / `--allow-commands`;
//! replication commands (SYNC, PSYNC) cannot run through a proxy at all. Every check of "never
//! reached Redis" is made on the server directly.

mod support;

use std::time::Duration;

use support::{Frame, Proxy, RedisServer};

const DISABLED: &str = "is disabled on the proxy's data port";

fn assert_refused(reply: &Frame, command: &str) {
    match reply {
        Frame::Error(e) => {
            assert!(
                e.starts_with("ERR ") && e.contains(DISABLED),
                "{command}: {e}"
            );
        }
        other => panic!("{command} was not refused: {other:?}"),
    }
}

fn config_get(redis: &RedisServer, name: &str) -> Frame {
    redis.cmd(&["CONFIG", "GET", name])
}

/// Refused by default:
/// 1. CONFIG SET maxmemory, CONFIG REWRITE, DEBUG SLEEP, SHUTDOWN NOSAVE, REPLICAOF, SLAVEOF,
///    FAILOVER, CLIENT KILL, CLIENT PAUSE, SENTINEL, MODULE LIST and ACL SETUSER each get the
///    proxy's "disabled on the proxy's data port" error.
/// 2. Redis is untouched: maxmemory unchanged, still a master, still alive, no ACL user added,
///    not paused, and a client connected to it directly was not killed.
/// 3. The refusing client's connection keeps working; CONFIG GET works through the proxy.
#[test]
fn admin_commands_are_refused_and_never_reach_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut direct = redis.client();
    assert_eq!(direct.cmd(&["PING"]), Frame::Simple("PONG".into()));
    let before = config_get(&redis, "maxmemory");

    let mut c = proxy.client();
    let replicaof = format!("{}", redis.port);
    for args in [
        &["CONFIG", "SET", "maxmemory", "12345"][..],
        &["config", "set", "maxmemory", "12345"],
        &["CONFIG", "REWRITE"],
        &["DEBUG", "SLEEP", "0"],
        &["SHUTDOWN", "NOSAVE"],
        &["REPLICAOF", "127.0.0.1", &replicaof],
        &["SLAVEOF", "127.0.0.1", &replicaof],
        &["FAILOVER"],
        &["CLIENT", "KILL", "TYPE", "normal"],
        &["CLIENT", "PAUSE", "100000"],
        &["SENTINEL", "MASTERS"],
        &["MODULE", "LIST"],
        &["ACL", "SETUSER", "intruder", "on", ">pw", "+@all"],
    ] {
        assert_refused(&c.cmd(args), &args.join(" "));
    }

    assert_eq!(config_get(&redis, "maxmemory"), before);
    let role = redis.cmd(&["ROLE"]);
    assert_eq!(role.items()[0], Frame::bulk("master"));
    assert_eq!(
        redis.cmd(&["ACL", "USERS"]),
        Frame::Array(vec![Frame::bulk("default")])
    );
    direct.set_read_timeout(Some(Duration::from_secs(5)));
    assert_eq!(direct.cmd(&["SET", "direct", "1"]), Frame::ok());

    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(c.cmd(&["CONFIG", "GET", "maxmemory"]), before);
}

/// `--allow-commands CONFIG`:
/// 1. CONFIG SET maxmemory through the proxy answers +OK and the server's maxmemory changes.
/// 2. CONFIG GET shows it through the proxy too.
/// 3. Other guarded commands (DEBUG) stay refused.
#[test]
fn allow_commands_flag_lets_config_through() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .nodes(&[&redis])
        .args(&["--allow-commands", "config"])
        .start();
    let mut c = proxy.client();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory", "12345678"]),
        Frame::ok()
    );
    let expected = Frame::Array(vec![Frame::bulk("maxmemory"), Frame::bulk("12345678")]);
    assert_eq!(config_get(&redis, "maxmemory"), expected);
    assert_eq!(c.cmd(&["CONFIG", "GET", "maxmemory"]), expected);
    assert_refused(&c.cmd(&["DEBUG", "SLEEP", "0"]), "DEBUG");
}

/// `allow_commands = ["CONFIG|SET"]` in the file:
/// 1. CONFIG SET goes through and applies on the server.
/// 2. CONFIG REWRITE and CONFIG RESETSTAT (other subcommands) stay refused.
#[test]
fn allow_commands_subcommand_is_exact() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .config("allow_commands = [\"CONFIG|SET\"]\n")
        .nodes(&[&redis])
        .start();
    let mut c = proxy.client();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]),
        Frame::ok()
    );
    assert_eq!(
        config_get(&redis, "maxmemory-policy"),
        Frame::Array(vec![
            Frame::bulk("maxmemory-policy"),
            Frame::bulk("allkeys-lru")
        ])
    );
    assert_refused(&c.cmd(&["CONFIG", "REWRITE"]), "CONFIG REWRITE");
    assert_refused(&c.cmd(&["CONFIG", "RESETSTAT"]), "CONFIG RESETSTAT");
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

/// Replication commands (SYNC, PSYNC, REPLCONF) and connection modes (CLIENT NO-TOUCH,
/// CLIENT NO-EVICT) get "cannot run through the proxy", even with `CLIENT` allowed; the
/// connection stays usable and Redis lists no replica.
#[test]
fn replication_commands_are_unsupported() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .args(&["--allow-commands", "client"])
        .nodes(&[&redis])
        .start();
    let mut c = proxy.client();
    for args in [
        &["SYNC"][..],
        &["PSYNC", "?", "-1"],
        &["REPLCONF", "listening-port", "1234"],
        &["CLIENT", "NO-TOUCH", "on"],
        &["CLIENT", "NO-EVICT", "on"],
    ] {
        let r = c.cmd(args);
        assert!(
            r.is_error("ERR ")
                && matches!(&r, Frame::Error(e) if e.contains("cannot run through the proxy")),
            "{args:?}: {r:?}"
        );
    }
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    let info = redis.cmd(&["INFO", "replication"]).text();
    assert!(info.contains("connected_slaves:0"), "{info}");
}
