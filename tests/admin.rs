//! The admin endpoint as an operator uses it: `/metrics` and `/topology` scraped before and
//! after a planned switchover, a forced failover and a promotion by hand, with clients
//! running meanwhile; the bearer token on the protected routes; `/readyz` following the
//! failover authority (nodes, Sentinels) while `/livez` stays up.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::failover::{role, wait_for, wait_proxy_writes_to, Cluster};
use support::http;
use support::scrape::{topology, Scrape};
use support::writer::{stored, Finished, Outcome, Writer};
use support::{Client, Frame, Proxy, RedisServer};

const TOKEN: &str = "admin-token-5d2e";
const OPS_PW: &str = "ops-pass-81c4";

/// Probing fast, a named user for AUTH checks, the admin token.
const BASE: &str = r#"
[health]
interval = "100ms"
timeout = "300ms"

[admin_auth]
token = "admin-token-5d2e"

[[auth.users]]
name = "ops"
password = "ops-pass-81c4"
"#;

fn replicated_pair() -> (RedisServer, RedisServer) {
    let master = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&master).start();
    replica.wait_link_up();
    (master, replica)
}

/// A proxy in front of `nodes` (nodes authority) with [`BASE`] plus `extra`, serving the admin
/// endpoint on `admin`.
fn proxy(nodes: &[&RedisServer], admin: &str, extra: &str) -> Proxy {
    Proxy::builder()
        .config(&format!("{BASE}{extra}"))
        .nodes(nodes)
        .args(&["--admin", admin])
        .start()
}

/// Scrapes until `ok` holds for a scrape; returns that scrape.
fn wait_scrape(admin: SocketAddr, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    wait_for(what, Duration::from_secs(20), || {
        let s = Scrape::take(admin);
        let done = ok(&s);
        last = Some(s);
        done
    });
    last.expect("a scrape")
}

/// Polls `/topology` (with the token) until `ok` holds; returns that answer.
fn wait_topology(admin: SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(what, Duration::from_secs(20), || {
        last = topology(admin, Some(TOKEN));
        ok(&last)
    });
    last
}

/// The node of a `/topology` answer at `addr`.
fn node<'a>(topo: &'a Value, addr: &str) -> &'a Value {
    topo["nodes"]
        .as_array()
        .expect("nodes array")
        .iter()
        .find(|n| n["address"] == addr)
        .unwrap_or_else(|| panic!("no node {addr} in {topo}"))
}

fn epoch(topo: &Value) -> u64 {
    topo["epoch"].as_u64().expect("numeric epoch")
}

/// What `errors_total` kind an error reply from the proxy counts as.
fn error_kind(text: &str) -> &'static str {
    if text.contains("may have been applied") {
        "outcome_unknown"
    } else if text.starts_with("MASTERDOWN the connection to the master failed") {
        "not_sent"
    } else if text.starts_with("MASTERDOWN") {
        "no_master"
    } else {
        panic!("unexpected error reply during a failover: {text}")
    }
}

/// Error replies a writer got, counted by kind.
fn errors_by_kind(w: &Finished) -> Vec<(&'static str, u64)> {
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    for r in w.failures() {
        let kind = match &r.outcome {
            Outcome::Error(e) => error_kind(e),
            other => panic!("writer {}: #{} {other:?}", w.key, r.n),
        };
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts
}

/// Every acknowledged number of `w` is on `server`.
fn assert_nothing_lost(w: &Finished, server: &RedisServer) {
    let lost = w.lost(&stored(server, &w.key));
    assert!(lost.is_empty(), "writer {} lost {lost:?}", w.key);
}

/// The one `master_info` series at 1, as (node, run_id).
fn master_info(s: &Scrape) -> Vec<(String, String)> {
    s.matching("master_info", &[])
        .into_iter()
        .filter(|m| m.value == 1.0)
        .map(|m| {
            let label = |k: &str| {
                m.labels
                    .iter()
                    .find(|(lk, _)| lk == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (label("node"), label("run_id"))
        })
        .collect()
}

fn run_id(server: &RedisServer) -> String {
    match server.cmd(&["INFO", "server"]) {
        Frame::Bulk(b) => String::from_utf8_lossy(&b)
            .lines()
            .find_map(|l| l.strip_prefix("run_id:").map(str::to_string))
            .expect("run_id in INFO server"),
        other => panic!("INFO server: {other:?}"),
    }
}

/// Planned switchover, seen through the admin endpoint.
/// 1. A master and a linked replica behind the proxy (nodes authority, probes every 100 ms),
///    the admin endpoint with a bearer token, a named user `ops`.
/// 2. `/topology` without the token and with a wrong one: 401. With it: the master, state
///    verified, both nodes healthy with their roles, the one site with quorum, the nodes
///    authority reachable. `/metrics` agrees: `master_info` names the master (one series at 1),
///    `node_up` 1 for both, `node_role` master and replica, `state` verified, the epoch of
///    `/topology`, no failover counted.
/// 3. Three idle clients and one more: `client_connections` counts 4.
/// 4. Ten reads, a GET without its key (Redis itself refuses it: not the proxy's error), a
///    client name with a space, a refused CONFIG SET, a wrong and a right AUTH: the
///    `commands_total` classes move by exactly that (read 11, admin 1, local 3, write 0), the
///    `errors_total` kinds syntax, refused and wrongpass by one each and no other kind,
///    `auth_failures_total` by one.
/// 5. A writer pushes numbers through the proxy (`client_connections` 5); `POST /switchover`
///    without the token: 401; with it: 200 naming the old and the new master.
/// 6. After: `failovers_total` +1 and one failover duration recorded; the epoch grew;
///    `master_info` names the new master (the old one's series at 0); `node_role` swapped;
///    `holds_total` grew and one hold duration was recorded per hold; `held_clients` 0; reply
///    times were recorded for the writes; no error counted; the writer saw no error, lost
///    nothing and kept its connection. `/topology` names the new master with a higher epoch.
/// 7. Two idle clients leave: `client_connections` counts 3.
/// 8. `commands_total{class="write"}` grew by exactly the writer's commands (a held command
///    is one command).
#[test]
fn planned_switchover_moves_metrics_and_topology() {
    let (master, replica) = replicated_pair();
    let (admin_text, admin) = http::free_addr();
    let proxy = proxy(
        &[&master, &replica],
        &admin_text,
        "[failover]\nhold_timeout = \"5s\"\n",
    );
    let (m, r) = (master.addr_str(), replica.addr_str());

    for token in [None, Some("not-the-token")] {
        let refused = http::get(admin, "/topology", token);
        assert_eq!(refused.status, 401, "/topology with {token:?}: {refused:?}");
        assert!(!refused.body.contains(&m), "{refused:?}");
    }
    let before_topo = wait_topology(admin, "both nodes probed with their roles", |t| {
        ["master", "replica"]
            .iter()
            .zip([&m, &r])
            .all(|(role, addr)| {
                t["nodes"].as_array().is_some_and(|ns| {
                    ns.iter().any(|n| {
                        n["address"] == **addr && n["role"] == *role && n["healthy"] == true
                    })
                })
            })
    });
    assert_eq!(before_topo["state"], "verified", "{before_topo}");
    assert_eq!(before_topo["master"]["address"], m.as_str());
    assert_eq!(before_topo["master"]["run_id"], run_id(&master).as_str());
    assert_eq!(before_topo["authority"]["kind"], "nodes");
    assert_eq!(before_topo["authority"]["reachable"], true);
    let sites = before_topo["sites"].as_array().expect("sites");
    assert_eq!(sites.len(), 1, "{before_topo}");
    assert_eq!(sites[0]["known"], 2);
    assert_eq!(sites[0]["healthy"], 2);
    assert_eq!(sites[0]["quorum"], true);
    assert_eq!(before_topo["nodes"].as_array().map(Vec::len), Some(2));

    let s = wait_scrape(admin, "node gauges for both nodes", |s| {
        s.get("node_role", &[("node", &r), ("role", "replica")]) == 1.0
    });
    assert_eq!(master_info(&s), vec![(m.clone(), run_id(&master))]);
    for addr in [&m, &r] {
        assert_eq!(s.value("node_up", &[("node", addr)]), Some(1.0), "{addr}");
    }
    assert_eq!(s.get("node_role", &[("node", &m), ("role", "master")]), 1.0);
    assert_eq!(
        s.get("node_role", &[("node", &m), ("role", "replica")]),
        0.0
    );
    assert_eq!(s.get("node_role", &[("node", &r), ("role", "master")]), 0.0);
    assert_eq!(s.get("state", &[("state", "verified")]), 1.0);
    assert_eq!(s.get("state", &[("state", "holding")]), 0.0);
    assert_eq!(s.get("authority_reachable", &[]), 1.0);
    assert_eq!(s.get("failovers_total", &[]), 0.0);
    let now = topology(admin, Some(TOKEN));
    assert_eq!(s.value("topology_epoch", &[]), Some(epoch(&now) as f64));

    let mut idle: Vec<Client> = (0..3).map(|_| proxy.client()).collect();
    for c in &mut idle {
        assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
    }
    let mut c = proxy.client();
    wait_scrape(admin, "client_connections 4", |s| {
        s.get("client_connections", &[]) == 4.0
    });

    let before = Scrape::take(admin);
    for i in 0..10 {
        assert_eq!(c.cmd(&["GET", &format!("absent:{i}")]), Frame::Null);
    }
    let arity = c.cmd(&["GET"]);
    assert!(arity.is_error("ERR wrong number of arguments"), "{arity:?}");
    let bad_name = c.cmd(&["CLIENT", "SETNAME", "two words"]);
    assert!(
        bad_name.is_error("ERR Client names cannot contain spaces"),
        "{bad_name:?}"
    );
    let refused = c.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    assert!(
        refused.is_error("ERR command 'CONFIG|SET' is disabled"),
        "{refused:?}"
    );
    let wrong = c.cmd(&["AUTH", "ops", "not-the-password"]);
    assert!(wrong.is_error("WRONGPASS"), "{wrong:?}");
    assert_eq!(c.cmd(&["AUTH", "ops", OPS_PW]), Frame::ok());
    let after = Scrape::take(admin);
    let delta =
        |short: &str, labels: &[(&str, &str)]| after.get(short, labels) - before.get(short, labels);
    for (class, n) in [
        ("read", 11.0),
        ("admin", 1.0),
        ("local", 3.0),
        ("write", 0.0),
    ] {
        assert_eq!(
            delta("commands_total", &[("class", class)]),
            n,
            "commands_total{{class={class}}}"
        );
    }
    for kind in ["syntax", "refused", "wrongpass"] {
        assert_eq!(
            delta("errors_total", &[("kind", kind)]),
            1.0,
            "errors_total{{kind={kind}}}"
        );
    }
    assert_eq!(
        after.sum("errors_total", &[]) - before.sum("errors_total", &[]),
        3.0,
        "errors of other kinds counted:\n{}",
        after.text
    );
    assert_eq!(delta("auth_failures_total", &[]), 1.0);

    let before = Scrape::take(admin);
    let writer = Writer::start(&proxy, "switch", Duration::from_millis(1));
    writer.advance(100, Duration::from_secs(10));
    wait_scrape(admin, "client_connections 5", |s| {
        s.get("client_connections", &[]) == 5.0
    });
    let refused = http::request(admin, "POST", "/switchover", None);
    assert_eq!(refused.status, 401, "{refused:?}");
    let done = http::request(admin, "POST", "/switchover", Some(TOKEN));
    assert_eq!(done.status, 200, "POST /switchover: {done:?}");
    let outcome: Value = serde_json::from_str(&done.body).expect("switchover answer is JSON");
    assert_eq!(outcome["from"], m.as_str(), "{outcome}");
    assert_eq!(outcome["to"], r.as_str(), "{outcome}");
    writer.advance(100, Duration::from_secs(10));
    let mut w = writer.finish();
    let after = wait_scrape(
        admin,
        "the old master shown as a replica, nobody held",
        |s| {
            s.get("node_role", &[("node", &m), ("role", "replica")]) == 1.0
                && s.get("held_clients", &[]) == 0.0
        },
    );
    let delta =
        |short: &str, labels: &[(&str, &str)]| after.get(short, labels) - before.get(short, labels);

    assert_eq!(delta("failovers_total", &[]), 1.0, "{}", after.text);
    assert_eq!(delta("failover_duration_seconds_count", &[]), 1.0);
    assert!(
        after.get("topology_epoch", &[]) > before.get("topology_epoch", &[]),
        "epoch did not grow"
    );
    assert_eq!(master_info(&after), vec![(r.clone(), run_id(&replica))]);
    assert_eq!(
        after.value("master_info", &[("node", &m)]),
        Some(0.0),
        "the old master's series is not cleared"
    );
    assert_eq!(
        after.get("node_role", &[("node", &r), ("role", "master")]),
        1.0
    );
    assert_eq!(
        after.get("node_role", &[("node", &r), ("role", "replica")]),
        0.0
    );
    assert_eq!(
        after.get("node_role", &[("node", &m), ("role", "master")]),
        0.0
    );
    for addr in [&m, &r] {
        assert_eq!(after.get("node_up", &[("node", addr)]), 1.0, "{addr}");
    }
    assert_eq!(after.get("state", &[("state", "verified")]), 1.0);
    let holds = delta("holds_total", &[]);
    assert!(
        holds >= 1.0,
        "the writer was never held: {}",
        w.failure_summary(w.records[0].sent)
    );
    assert_eq!(
        delta("hold_duration_seconds_count", &[]),
        holds,
        "one duration per hold"
    );
    assert!(
        delta("command_duration_seconds_count", &[("class", "write")]) >= w.acked().len() as f64,
        "reply times not recorded for every write"
    );
    assert_eq!(
        after.sum("errors_total", &[]),
        before.sum("errors_total", &[])
    );
    assert!(w.failures().is_empty(), "{:?}", w.failure_texts());
    assert_nothing_lost(&w, &replica);
    w.assert_same_connection();

    let after_topo = topology(admin, Some(TOKEN));
    assert_eq!(after_topo["master"]["address"], r.as_str(), "{after_topo}");
    assert_eq!(after_topo["state"], "verified");
    assert!(epoch(&after_topo) > epoch(&before_topo));
    assert_eq!(node(&after_topo, &m)["role"], "replica");
    assert_eq!(node(&after_topo, &r)["role"], "master");

    idle.truncate(1);
    wait_scrape(admin, "client_connections 3", |s| {
        s.get("client_connections", &[]) == 3.0
    });

    // Last, so that a miscount does not hide the rest: each write counted once, held or not.
    let sent = w.records.len() as f64;
    assert_eq!(
        delta("commands_total", &[("class", "write")]),
        sent,
        "commands_total{{class=\"write\"}} does not match the {sent} RPUSH the writer sent \
         (it was held {holds} times)"
    );
}

/// Forced failover after the master died, then a promotion by hand, seen through the admin
/// endpoint.
/// 1. A master and a linked replica behind the proxy (nodes authority, probes every 100 ms,
///    hold timeout 500 ms), admin endpoint with a token; a writer pushes numbers.
/// 2. The master is paused, a client sends `SET inflight 1` (unanswered while the master is
///    paused), the master is killed: that client gets the proxy's error; the writer is held,
///    then gets "not executed" errors.
/// 3. No master: `held_clients` counts the writer; yet `/readyz` is 200 (the replica answers
///    for the nodes authority) and `/livez` 200; `/topology` shows the state not verified and
///    the old master unhealthy.
/// 4. `POST /failover` without the token: 401; without `force`: 409; without `to`: 400; to an
///    unknown node: 409; with `force=true&to=<replica>`: 200 naming the replica, which now
///    reports itself master (the proxy promoted it).
/// 5. After: `failovers_total` +1 with its duration; epoch grew; `master_info` names the
///    replica; `node_up` 0 for the dead node and 1 for the replica, `node_role` master for
///    it; `holds_total` grew with one duration per hold; `/topology` names the new master.
/// 6. A new server on the dead master's port replicates from the new master; the new master
///    is killed and the replica promoted by hand (`REPLICAOF NO ONE`): writes land on it,
///    `failovers_total` +1 again, `master_info` names the same address with the new run_id
///    (the previous series at 0), `/topology` agrees.
/// 7. Every error the clients got in step 2 is counted in `errors_total` under its kind.
#[test]
fn forced_failover_and_promotion_by_hand_move_metrics_and_topology() {
    let (mut master, mut replica) = replicated_pair();
    let (admin_text, admin) = http::free_addr();
    let proxy = proxy(
        &[&master, &replica],
        &admin_text,
        "[failover]\nhold_timeout = \"500ms\"\n",
    );
    let (m, r) = (master.addr_str(), replica.addr_str());
    let old_run_id = run_id(&master);
    let writer = Writer::start(&proxy, "forced", Duration::from_millis(1));
    writer.advance(50, Duration::from_secs(10));
    let mut inflight = proxy.client();
    assert_eq!(inflight.cmd(&["SET", "warm-up", "1"]), Frame::ok());
    let before = Scrape::take(admin);
    let before_topo = topology(admin, Some(TOKEN));

    master.pause();
    inflight.send(&["SET", "inflight", "1"]);
    std::thread::sleep(Duration::from_millis(200));
    master.kill();
    let inflight_reply = match inflight.read() {
        Frame::Error(e) => e,
        other => panic!("SET in flight on a killed master answered {other:?}"),
    };
    let inflight_kind = error_kind(&inflight_reply);
    wait_for("the writer gets errors", Duration::from_secs(20), || {
        writer
            .records()
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Error(_)))
    });

    wait_scrape(admin, "the writer counted as held", |s| {
        s.get("held_clients", &[]) >= 1.0 && s.get("state", &[("state", "verified")]) == 0.0
    });
    let ready = http::get(admin, "/readyz", None);
    assert_eq!(
        ready.status, 200,
        "no master, but the authority answers: {ready:?}"
    );
    assert_eq!(http::get(admin, "/livez", None).status, 200);
    let down = wait_topology(admin, "the old master unhealthy", |t| {
        node(t, &m)["healthy"] == false
    });
    assert_ne!(down["state"], "verified", "{down}");
    assert!(!node(&down, &m)["error"].is_null(), "{down}");

    let path = format!("/failover?force=true&to={r}");
    let unforced = format!("/failover?to={r}");
    let cases = [
        (path.as_str(), None, 401),
        (unforced.as_str(), Some(TOKEN), 409),
        ("/failover?force=true", Some(TOKEN), 400),
        ("/failover?force=true&to=127.0.0.1:1", Some(TOKEN), 409),
    ];
    for (p, token, status) in cases {
        let refused = http::request(admin, "POST", p, token);
        assert_eq!(refused.status, status, "POST {p}: {refused:?}");
    }
    assert_eq!(
        role(&replica).as_deref(),
        Some("slave"),
        "promoted by a refused request"
    );
    let done = http::request(admin, "POST", &path, Some(TOKEN));
    assert_eq!(done.status, 200, "POST {path}: {done:?}");
    let outcome: Value = serde_json::from_str(&done.body).expect("failover answer is JSON");
    assert_eq!(outcome["to"], r.as_str(), "{outcome}");
    assert_eq!(role(&replica).as_deref(), Some("master"));
    writer.advance(50, Duration::from_secs(20));
    let w = writer.finish();
    let after = wait_scrape(admin, "nobody held", |s| s.get("held_clients", &[]) == 0.0);
    let delta =
        |short: &str, labels: &[(&str, &str)]| after.get(short, labels) - before.get(short, labels);

    assert_eq!(delta("failovers_total", &[]), 1.0, "{}", after.text);
    assert_eq!(delta("failover_duration_seconds_count", &[]), 1.0);
    assert!(after.get("topology_epoch", &[]) > before.get("topology_epoch", &[]));
    assert_eq!(master_info(&after), vec![(r.clone(), run_id(&replica))]);
    assert_eq!(after.value("master_info", &[("node", &m)]), Some(0.0));
    assert_eq!(after.get("node_up", &[("node", &m)]), 0.0);
    assert_eq!(after.get("node_up", &[("node", &r)]), 1.0);
    assert_eq!(
        after.get("node_role", &[("node", &r), ("role", "master")]),
        1.0
    );
    assert_eq!(after.get("state", &[("state", "verified")]), 1.0);
    let holds = delta("holds_total", &[]);
    assert!(holds >= 1.0, "the writer was never held");
    assert_eq!(delta("hold_duration_seconds_count", &[]), holds);
    let mut seen = errors_by_kind(&w);
    match seen.iter_mut().find(|(k, _)| *k == inflight_kind) {
        Some((_, n)) => *n += 1,
        None => seen.push((inflight_kind, 1)),
    }
    let counted: Vec<(&str, f64)> = seen
        .iter()
        .map(|(k, _)| (*k, delta("errors_total", &[("kind", k)])))
        .collect();
    assert_nothing_lost(&w, &replica);
    let after_topo = topology(admin, Some(TOKEN));
    assert_eq!(after_topo["master"]["address"], r.as_str(), "{after_topo}");
    assert_eq!(after_topo["state"], "verified");
    assert!(epoch(&after_topo) > epoch(&before_topo));

    let again = RedisServer::builder()
        .replica_of(&replica)
        .port(master.port)
        .start();
    again.wait_link_up();
    wait_topology(
        admin,
        "the new server on the old address probed as a replica",
        |t| node(t, &m)["healthy"] == true && node(t, &m)["role"] == "replica",
    );
    let before = Scrape::take(admin);
    replica.kill();
    assert_eq!(again.cmd(&["REPLICAOF", "NO", "ONE"]), Frame::ok());
    wait_proxy_writes_to(&proxy, &again, "by-hand", Duration::from_secs(20));
    let after = Scrape::take(admin);
    assert_eq!(
        after.get("failovers_total", &[]) - before.get("failovers_total", &[]),
        1.0
    );
    let new_run_id = run_id(&again);
    assert_ne!(new_run_id, old_run_id);
    assert_eq!(master_info(&after), vec![(m.clone(), new_run_id.clone())]);
    assert_eq!(
        after.value("master_info", &[("node", &m), ("run_id", &old_run_id)]),
        Some(0.0)
    );
    assert_eq!(after.value("master_info", &[("node", &r)]), Some(0.0));
    let t = topology(admin, Some(TOKEN));
    assert_eq!(t["master"]["address"], m.as_str(), "{t}");
    assert_eq!(t["master"]["run_id"], new_run_id.as_str(), "{t}");

    // Last, so that a miscount does not hide the rest: the errors of step 2 were counted.
    for ((kind, n), (_, c)) in seen.iter().zip(&counted) {
        assert!(
            *c >= *n as f64,
            "errors_total{{kind={kind}}} grew by {c}, but clients got {n} such errors \
             (clients saw {seen:?}, counted {counted:?}; the in-flight SET got {inflight_reply:?})"
        );
    }
}

/// Polls `/readyz` until it answers `status`, checking `/livez` answers 200 at every poll;
/// returns the last `/readyz` body.
fn wait_ready_status(admin: SocketAddr, status: u16) -> String {
    let mut body = String::new();
    wait_for(
        &format!("/readyz {status}"),
        Duration::from_secs(30),
        || {
            let live = http::get(admin, "/livez", None);
            assert_eq!(live.status, 200, "/livez: {live:?}");
            let ready = http::get(admin, "/readyz", None);
            body = ready.body;
            ready.status == status
        },
    );
    body
}

/// `/readyz` follows the nodes authority.
/// 1. A master and a linked replica behind the proxy (nodes authority, probes every 100 ms);
///    `/readyz` 200, `authority_reachable` 1.
/// 2. The master paused and the replica killed: `/readyz` turns 503 saying the nodes
///    authority is unreachable, `authority_reachable` 0, both nodes down; `/livez` 200 at every
///    poll.
/// 3. The master resumed and the replica restarted: `/readyz` 200 again, `authority_reachable`
///    1, writes served; `/livez` stayed 200.
#[test]
fn readiness_follows_the_nodes_authority() {
    let (master, mut replica) = replicated_pair();
    let (admin_text, admin) = http::free_addr();
    let proxy = proxy(&[&master, &replica], &admin_text, "");
    let body = wait_ready_status(admin, 200);
    assert!(body.starts_with("ready"), "{body}");
    assert_eq!(Scrape::take(admin).get("authority_reachable", &[]), 1.0);

    master.pause();
    replica.kill();
    let body = wait_ready_status(admin, 503);
    assert!(body.contains("nodes authority unreachable"), "{body}");
    let s = wait_scrape(admin, "both nodes down", |s| {
        s.get("node_up", &[("node", &master.addr_str())]) == 0.0
            && s.get("node_up", &[("node", &replica.addr_str())]) == 0.0
    });
    assert_eq!(s.get("authority_reachable", &[]), 0.0);

    master.resume();
    replica.restart();
    wait_ready_status(admin, 200);
    assert_eq!(Scrape::take(admin).get("authority_reachable", &[]), 1.0);
    proxy.wait_ready();
    assert_eq!(http::get(admin, "/livez", None).status, 200);
}

/// `/readyz` follows the Sentinel authority: ready while a majority of the Sentinels answer.
/// 1. A master, two replicas and three Sentinels; the proxy follows them (probes every
///    200 ms); `/readyz` 200 and `sentinels_answering` 3.
/// 2. Sentinel 0 killed: still 200 (two of three answer), `sentinels_answering` 2.
/// 3. Sentinel 1 paused too: 503 saying one of three Sentinels answers, `authority_reachable`
///    0; `/livez` 200 at every poll.
/// 4. Sentinel 0 restarted: 200 again; Sentinel 1 resumed: `sentinels_answering` 3.
#[test]
fn readiness_follows_the_sentinel_authority() {
    let mut cluster = Cluster::start();
    let (admin_text, admin) = http::free_addr();
    let nodes: Vec<String> = cluster.servers().iter().map(|s| s.addr_str()).collect();
    let list = |items: &[String]| {
        items
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _proxy = Proxy::builder()
        .config(&format!(
            "admin = \"{admin_text}\"\n\
             [failover]\nauthority = \"sentinel\"\nmaster_name = \"{name}\"\n\
             [health]\ninterval = \"200ms\"\ntimeout = \"500ms\"\n\
             [[sites]]\nname = \"main\"\nnodes = [{nodes}]\nsentinels = [{sentinels}]\n",
            name = cluster.group.name(),
            nodes = list(&nodes),
            sentinels = list(&cluster.group.addrs()),
        ))
        .start();
    wait_ready_status(admin, 200);
    wait_scrape(admin, "three Sentinels answering", |s| {
        s.get("sentinels_answering", &[]) == 3.0
    });

    cluster.group.kill(0);
    wait_scrape(admin, "two Sentinels answering", |s| {
        s.get("sentinels_answering", &[]) == 2.0
    });
    let ready = http::get(admin, "/readyz", None);
    assert_eq!(
        ready.status, 200,
        "two of three Sentinels answer: {ready:?}"
    );

    cluster.group.pause(1);
    let body = wait_ready_status(admin, 503);
    assert!(
        body.contains("sentinel authority unreachable (1 of 3 Sentinels answering)"),
        "{body}"
    );
    assert_eq!(Scrape::take(admin).get("authority_reachable", &[]), 0.0);

    cluster.group.restart(0);
    wait_ready_status(admin, 200);
    cluster.group.resume(1);
    wait_scrape(admin, "three Sentinels answering again", |s| {
        s.get("sentinels_answering", &[]) == 3.0 && s.get("authority_reachable", &[]) == 1.0
    });
    assert_eq!(http::get(admin, "/livez", None).status, 200);
}

/// Without a token, the POST routes answer only on a loopback address.
/// 1. Admin on `0.0.0.0:<port>` (not loopback; reached through 127.0.0.1), no token: one
///    start-up warning; `POST /switchover` and `POST /failover?force=true` answer 403 naming
///    `[admin_auth] token`; the GET routes answer as before (`/topology` open, no token).
/// 2. Same address with the token: POST without it 401, with it the request is handled
///    (`/failover` without `to` is a 400 from the route itself).
/// 3. Admin on 127.0.0.1 without a token: the POST is handled (400).
#[test]
fn operations_without_token_answer_only_on_loopback() {
    let redis = RedisServer::start();
    let port = support::free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    let all = format!("0.0.0.0:{port}");
    let open = Proxy::builder()
        .nodes(&[&redis])
        .args(&["--admin", &all])
        .start();
    wait_for("admin endpoint", Duration::from_secs(10), || {
        std::net::TcpStream::connect(admin).is_ok()
    });
    let warnings = open.log_lines(&["WARN", "[admin_auth] token", "non-loopback"]);
    assert_eq!(warnings.len(), 1, "{}", open.log());
    for path in ["/switchover", "/failover?force=true&to=127.0.0.1:1"] {
        let r = http::request(admin, "POST", path, None);
        assert_eq!(r.status, 403, "POST {path}: {r:?}");
        assert!(r.body.contains("[admin_auth] token = "), "{r:?}");
    }
    for path in ["/livez", "/readyz", "/topology", "/metrics"] {
        assert_eq!(http::get(admin, path, None).status, 200, "GET {path}");
    }
    drop(open);

    let port = support::free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    let guarded = proxy(&[&redis], &format!("0.0.0.0:{port}"), "");
    wait_topology(admin, "admin endpoint", |t| t["state"] == "verified");
    assert!(guarded.log_lines(&["non-loopback"]).is_empty());
    let r = http::request(admin, "POST", "/failover?force=true", None);
    assert_eq!(r.status, 401, "{r:?}");
    let r = http::request(admin, "POST", "/failover?force=true", Some(TOKEN));
    assert_eq!(r.status, 400, "{r:?}");
    drop(guarded);

    let (loopback_text, loopback) = http::free_addr();
    let _local = Proxy::builder()
        .nodes(&[&redis])
        .args(&["--admin", &loopback_text])
        .start();
    wait_for("admin endpoint", Duration::from_secs(10), || {
        std::net::TcpStream::connect(loopback).is_ok()
    });
    let r = http::request(loopback, "POST", "/failover?force=true", None);
    assert_eq!(r.status, 400, "{r:?}");
}
