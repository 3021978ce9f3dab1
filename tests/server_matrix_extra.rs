//! The server matrix, part two (part one: tests/server_matrix.rs): what differs between the
//! servers. Commands newer than Redis 7.0 (hash-field expiry in Redis 8, `DELIFEQ` and `MSETEX`
//! in Valkey 9) pass through the proxy with the server's own result; a module's commands
//! (FalkorDB's `GRAPH.*` on Redis 8) do too; Valkey's HELLO version; and a killed master
//! replaced by the server's own Sentinel (`valkey-server --sentinel`, `redis-server
//! --sentinel` of Redis 8) while writers go on through the proxy. Tests are named after their
//! server; one whose server is missing records itself as NOT RUN.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::failover::{role, sentinel_proxy, Cluster, Switches};
use support::servers::Server;
use support::writer::{duplicates, is_proxy_failover_error, stored, Finished, Outcome, Writer};
use support::{Frame, Proxy, RedisServer};

/// Commands newer than Redis 7.0, each with a short scenario on its own keys. A scenario's
/// replies are the same whether it runs through the proxy or straight on the server.
const NEWER: &[(&str, &[&[&str]])] = &[
    (
        "HSETEX",
        &[
            &[
                "HSETEX", "h1", "EX", "100", "FIELDS", "2", "a", "1", "b", "2",
            ],
            &["HGETALL", "h1"],
        ],
    ),
    (
        "HGETEX",
        &[
            &["HSET", "h2", "a", "1"],
            &["HGETEX", "h2", "EX", "100", "FIELDS", "1", "a"],
            &["HGETEX", "h2", "PERSIST", "FIELDS", "2", "a", "missing"],
        ],
    ),
    (
        "HEXPIRE",
        &[
            &["HSET", "h3", "a", "1", "b", "2"],
            &["HEXPIRE", "h3", "100", "FIELDS", "2", "a", "missing"],
            &["HPERSIST", "h3", "FIELDS", "1", "a"],
        ],
    ),
    (
        "HGETDEL",
        &[
            &["HSET", "h4", "a", "1", "b", "2"],
            &["HGETDEL", "h4", "FIELDS", "1", "a"],
            &["HGETALL", "h4"],
        ],
    ),
    (
        "MSETEX",
        &[
            &["MSETEX", "2", "m1", "1", "m2", "2", "EX", "100"],
            &["MGET", "m1", "m2"],
        ],
    ),
    (
        "DELIFEQ",
        &[
            &["SET", "d", "v"],
            &["DELIFEQ", "d", "other"],
            &["DELIFEQ", "d", "v"],
            &["EXISTS", "d"],
        ],
    ),
];

/// The newer commands each server must have (the others are run when it has them).
fn required(kind: Server) -> &'static [&'static str] {
    match kind {
        Server::Redis7 => &[],
        Server::Redis8 => &["HSETEX", "HGETEX", "HEXPIRE"],
        Server::Valkey9 => &["DELIFEQ"],
    }
}

/// A server of `kind` and a proxy for it; `None` (recorded as not run) when it is missing.
fn rig(kind: Server, test: &str) -> Option<(RedisServer, Proxy)> {
    let server = kind.builder(test)?.start();
    let proxy = Proxy::start(&[&server]);
    Some((server, proxy))
}

/// Whether the server has `command` (`COMMAND INFO` answers nil for an unknown one).
fn has_command(server: &RedisServer, command: &str) -> bool {
    match server.cmd(&["COMMAND", "INFO", command]) {
        Frame::Array(items) => items.first().is_some_and(|i| *i != Frame::Null),
        other => panic!("COMMAND INFO {command}: {other:?}"),
    }
}

/// Every scenario through the proxy, then (data flushed) straight on the server: the same
/// replies. A command the server lacks gets its own "unknown command" error both ways.
fn newer_commands(kind: Server, test: &str) {
    let Some((server, proxy)) = rig(kind, test) else {
        return;
    };
    let mut present = Vec::new();
    for (name, scenario) in NEWER {
        let has = has_command(&server, name);
        // Without the command, only its first use runs (the set-up steps would just pass).
        let steps: Vec<&[&str]> = match has {
            true => scenario.to_vec(),
            false => scenario
                .iter()
                .copied()
                .filter(|s| s[0] == *name)
                .take(1)
                .collect(),
        };
        let mut via = proxy.client();
        let proxied: Vec<Frame> = steps.iter().map(|s| via.cmd(s)).collect();
        assert_eq!(server.cmd(&["FLUSHALL"]), Frame::ok());
        let mut direct = server.client();
        let straight: Vec<Frame> = steps.iter().map(|s| direct.cmd(s)).collect();
        assert_eq!(proxied, straight, "{name}: through the proxy vs straight");
        if has {
            present.push(*name);
            assert!(
                !proxied.iter().any(|f| matches!(f, Frame::Error(_))),
                "{name}: {proxied:?}"
            );
        } else {
            assert!(proxied[0].is_error("ERR unknown command"), "{proxied:?}");
        }
    }
    eprintln!("{}: newer commands present: {present:?}", kind.label());
    for name in required(kind) {
        assert!(present.contains(name), "{} lacks {name}", kind.label());
    }
}

#[test]
fn redis7_newer_commands_are_unknown_through_the_proxy() {
    newer_commands(
        Server::Redis7,
        "redis7_newer_commands_are_unknown_through_the_proxy",
    );
}

#[test]
fn redis8_newer_commands_pass_through() {
    newer_commands(Server::Redis8, "redis8_newer_commands_pass_through");
}

#[test]
fn valkey9_newer_commands_pass_through() {
    newer_commands(Server::Valkey9, "valkey9_newer_commands_pass_through");
}

/// FalkorDB on Redis 8: a graph created through the proxy is read back through the proxy with
/// the same header and rows as straight on the server (the statistics, timings among them,
/// differ from run to run and are left out).
#[test]
fn redis8_falkordb_module_commands_pass_through() {
    const TEST: &str = "redis8_falkordb_module_commands_pass_through";
    if support::servers::falkordb_module().is_none() {
        support::not_run(TEST, "RFP_FALKORDB_MODULE unset: run scripts/test");
        return;
    }
    let Some((server, proxy)) = rig(Server::Redis8, TEST) else {
        return;
    };
    let mut c = proxy.client();
    let created = c.cmd(&["GRAPH.QUERY", "g", "CREATE (:n {v:1})"]);
    assert!(
        created.items().last().is_some_and(|stats| stats
            .items()
            .iter()
            .any(|s| s.text().starts_with("Nodes created: 1"))),
        "{created:?}"
    );
    let read = &["GRAPH.RO_QUERY", "g", "MATCH (x:n) RETURN x.v"];
    let proxied = c.cmd(read);
    let straight = server.cmd(read);
    assert_eq!(proxied.items()[..2], straight.items()[..2]);
    assert_eq!(
        proxied.items()[1],
        Frame::Array(vec![Frame::Array(vec![Frame::Int(1)])])
    );
}

/// Valkey answers HELLO with `server` "valkey" and its own version (9.1.x), but reports
/// `redis_version:7.2.4` in `INFO server` for compatibility (`valkey_version` holds the real
/// one). The proxy's HELLO answer names the server and version as the server itself does.
#[test]
fn valkey9_hello_reports_the_valkey_version() {
    let Some((server, proxy)) = rig(Server::Valkey9, "valkey9_hello_reports_the_valkey_version")
    else {
        return;
    };
    let field = |reply: &Frame, name: &str| match reply {
        Frame::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.text() == name)
            .map(|(_, v)| v.text()),
        other => panic!("not a map: {other:?}"),
    };
    let straight = server.client().cmd(&["HELLO", "3"]);
    let proxied = proxy.client().cmd(&["HELLO", "3"]);
    for name in ["server", "version"] {
        assert_eq!(field(&proxied, name), field(&straight, name), "{name}");
    }
}

/// A master and two replicas of `kind` with three of its own Sentinels; the proxy follows
/// them (authority "sentinel", nodes listed, hold 6 s). Two writers push through the proxy;
/// the master is killed. Once the first `+switch-master` names a replica, the writers go on:
/// every error is one of the proxy's failover errors, none after the first acknowledgement
/// past the promotion; everything acknowledged after it is on the new master, nothing twice.
fn killed_master_replaced_by_own_sentinel(kind: Server, test: &str) {
    let (Some(builder), Some(opts)) = (kind.builder(test), kind.sentinel_options(test)) else {
        return;
    };
    // One failover at a time: on a busy two-core machine two of them side by side (six
    // Sentinels, six servers, four writers) can stall a Sentinel's timer past 2 s, which puts
    // it in TILT mode for 30 s.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start_with(builder, opts);
    let nodes: Vec<String> = cluster.servers().iter().map(|s| s.addr_str()).collect();
    let proxy = sentinel_proxy(&cluster.group, &nodes, "hold_timeout = \"6s\"");
    let switches = Switches::watch(&cluster.group);
    let writers: Vec<Writer> = (0..2)
        .map(|i| Writer::start(&proxy, &format!("w:{i}"), Duration::from_millis(1)))
        .collect();
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }
    let killed = Instant::now();
    cluster.master.kill();
    // Within TILT's 30 s and a failover after it: a Sentinel stalled by the machine's load
    // waits out TILT and then fails over, which is late but not wrong.
    let (switched, new_addr) = switches
        .first(Duration::from_secs(45))
        .unwrap_or_else(|| panic!("no +switch-master\n{}", cluster.group.logs()));
    for w in &writers {
        w.advance(50, Duration::from_secs(15));
    }
    let finished: Vec<Finished> = writers.into_iter().map(Writer::finish).collect();
    let new_master = cluster.server(&new_addr);
    assert_eq!(role(new_master).as_deref(), Some("master"));
    for w in &finished {
        let is_failover_error = |r: &&support::writer::Record| matches!(&r.outcome, Outcome::Error(e) if is_proxy_failover_error(e));
        let failures = w.failures();
        assert!(
            failures.iter().all(is_failover_error),
            "{} writer {}: errors other than the proxy's failover errors: {:?}",
            kind.label(),
            w.key,
            w.failure_texts()
        );
        let first = w.first_ack_after(switched).expect("an ack after promotion");
        let late: Vec<u64> = w
            .records
            .iter()
            .filter(|r| r.sent >= first && r.outcome != Outcome::Acked)
            .map(|r| r.n)
            .collect();
        assert!(late.is_empty(), "writer {}: failed after: {late:?}", w.key);
        let held = stored(new_master, &w.key);
        let lost: Vec<u64> = w
            .ok_where(|r| r.replied >= switched)
            .into_iter()
            .filter(|n| !held.contains(n))
            .collect();
        assert!(
            lost.is_empty(),
            "writer {}: acked, missing: {lost:?}",
            w.key
        );
        assert!(duplicates(&held).is_empty(), "writer {}: twice", w.key);
        eprintln!(
            "[{}] writer {}: +switch-master {:?} after the kill, first ack {:?} after it; \
             {} acknowledged, {} failover errors",
            kind.label(),
            w.key,
            switched - killed,
            first.saturating_duration_since(switched),
            w.acked().len(),
            failures.len()
        );
    }
}

#[test]
fn valkey9_killed_master_replaced_by_valkey_sentinel() {
    killed_master_replaced_by_own_sentinel(
        Server::Valkey9,
        "valkey9_killed_master_replaced_by_valkey_sentinel",
    );
}

#[test]
fn redis8_killed_master_replaced_by_redis8_sentinel() {
    killed_master_replaced_by_own_sentinel(
        Server::Redis8,
        "redis8_killed_master_replaced_by_redis8_sentinel",
    );
}
