//! The admin endpoint as probes and unauthenticated callers reach it: `/readyz` following the
//! failover authority (nodes, Sentinels) while `/livez` stays up, and the operation routes
//! (`POST /switchover`, `POST /failover`) answering without a token only on a loopback
//! address. The operator's scenarios (metrics and topology across failovers) are in
//! `tests/admin.rs`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::admin::{proxy, replicated_pair, wait_scrape, wait_topology, TOKEN};
use support::failover::{wait_for, Cluster};
use support::http;
use support::scrape::Scrape;
use support::{Proxy, RedisServer};

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
