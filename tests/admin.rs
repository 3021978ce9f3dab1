//! The admin endpoint as an operator uses it: `/metrics` and `/topology` scraped before and
//! after a planned switchover, a forced failover and a promotion by hand, with clients
//! running meanwhile; the bearer token on the protected routes. `/readyz` and `/livez`, and
//! the operation routes without a token, are in `tests/admin_access.rs`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::admin::{
    epoch, master_info, node, proxy, replicated_pair, wait_scrape, wait_topology, OPS_PW, TOKEN,
};
use support::failover::{role, wait_for, wait_proxy_writes_to};
use support::http;
use support::scrape::{topology, Scrape};
use support::writer::{stored, Finished, Outcome, Writer};
use support::{Client, Frame, RedisServer};

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
