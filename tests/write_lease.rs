//! The write lease as an operator sees it: what `/topology`, `/readyz` and the log say, and the
//! `nodes` authority's lease (a majority of the voting members reachable, under the
//! orchestrator's promotion delay). The partition scenarios with real sites are in
//! `tests/lab_partition.rs` and `tests/lab_proxy_cut.rs`; the loopback ones in
//! `tests/failover_partition.rs`.

mod support;

use std::time::{Duration, Instant};

use support::failover::{sentinel_proxy_builder, toml_list, wait_for, Cluster};
use support::writer::{is_proxy_failover_error, Outcome, Writer};
use support::{replication, Frame, Proxy};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A Sentinel proxy (probing every 200 ms) with the admin endpoint, no configured hold
/// timeout, and `extra` lines in `[failover]`.
fn sentinel_admin_proxy(cluster: &Cluster, extra: &str) -> Proxy {
    let nodes: Vec<String> = cluster.servers().iter().map(|s| s.addr_str()).collect();
    sentinel_proxy_builder(&cluster.group, &nodes, extra)
        .admin()
        .start()
}

/// 1. Three Sentinels with `down-after-milliseconds` 1000 and `failover-timeout` 5000; the
///    proxy has no `hold_timeout`.
/// 2. `/topology` shows the lease (900 ms: down-after less its margin), held, under Sentinel's
///    epoch, and the hold timeout derived from the Sentinels (1 s + 3 s); the start-up log
///    says so.
/// 3. Two Sentinels are killed: `/readyz` answers 503 and `/topology` shows the lease lapsed;
///    a write is refused with the proxy's error after the derived hold.
/// 4. They come back: ready again, writes go.
#[test]
fn sentinel_lease_shows_in_topology_and_readiness() {
    let mut cluster = Cluster::start();
    let proxy = sentinel_admin_proxy(&cluster, "");
    let (status, body) = proxy.admin_get("/topology");
    assert_eq!(status, 200, "{body}");
    let topo = json(&body);
    assert_eq!(topo["authority"]["lease_ms"], 900, "{body}");
    assert_eq!(topo["authority"]["derived_hold_timeout_ms"], 4000, "{body}");
    assert_eq!(topo["master"]["lease"], "held", "{body}");
    assert!(
        topo["master"]["lease_remaining_ms"].as_u64().is_some(),
        "{body}"
    );
    assert!(
        !proxy
            .log_lines(&["hold_timeout derived from down-after-milliseconds"])
            .is_empty(),
        "{}",
        proxy.log()
    );

    cluster.group.kill(0);
    cluster.group.kill(1);
    wait_for("/readyz unready", Duration::from_secs(5), || {
        proxy.admin_get("/readyz").0 == 503
    });
    wait_for("lease lapsed in /topology", Duration::from_secs(5), || {
        json(&proxy.admin_get("/topology").1)["master"]["lease"] == "lapsed"
    });
    let sent = Instant::now();
    match proxy.client().cmd(&["SET", "lease:k", "1"]) {
        Frame::Error(e) => {
            assert!(is_proxy_failover_error(&e), "{e}");
            assert!(e.contains("could not be confirmed by a majority"), "{e}");
        }
        other => panic!("written without a lease: {other:?}"),
    }
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_secs(4), "held only {waited:?}");
    assert_eq!(cluster.master.cmd(&["GET", "lease:k"]), Frame::Null);

    cluster.group.restart(0);
    cluster.group.restart(1);
    wait_for("/readyz ready", Duration::from_secs(10), || {
        proxy.admin_get("/readyz").0 == 200
    });
    assert_eq!(proxy.client().cmd(&["SET", "lease:k", "2"]), Frame::ok());
    eprintln!("[lease] a write without a lease was refused after {waited:?}");
}

/// The `nodes` authority with `promotion_delay = "1s"`: the proxy writes while it reaches a
/// majority of the three nodes.
/// 1. A master and two replicas; a writer pushes through the proxy.
/// 2. Both replicas stop answering (SIGSTOP): the proxy reaches one node of three; writes stop
///    within the lease (900 ms) plus one probe timeout, and fail with the proxy's error;
///    `/readyz` answers 503.
/// 3. The replicas resume: writes go again; nothing acknowledged is missing on the master.
#[test]
fn nodes_authority_lease_needs_a_majority_of_members() {
    let (master, replicas) = replication(2);
    let nodes = [
        master.addr_str(),
        replicas[0].addr_str(),
        replicas[1].addr_str(),
    ];
    let proxy = Proxy::builder()
        .config(&format!(
            r#"
[failover]
authority = "nodes"
promotion_delay = "1s"
hold_timeout = "300ms"

[health]
interval = "100ms"
timeout = "300ms"
fall = 1

# The site keeps quorum with its master alone: only the lease stops writes here.
[[sites]]
name = "main"
nodes = [{nodes}]
quorum = 1
"#,
            nodes = toml_list(&nodes),
        ))
        .admin()
        .start();
    let writer = Writer::start(&proxy, "nodeslease", Duration::from_millis(2));
    writer.advance(50, Duration::from_secs(10));
    replicas[0].pause();
    replicas[1].pause();
    let cut = Instant::now();
    wait_for("/readyz unready", Duration::from_secs(5), || {
        proxy.admin_get("/readyz").0 == 503
    });
    std::thread::sleep(Duration::from_secs(1));
    replicas[0].resume();
    replicas[1].resume();
    let back = Instant::now();
    writer.advance(50, Duration::from_secs(10));
    let w = writer.finish();
    // The lease (900 ms) counts from the last probe that reached a replica, which was sent
    // before the pause; a probe needs up to its timeout (300 ms) to be known failed.
    let bound = Duration::from_millis(900);
    let late = w.ok_where(|r| r.sent > cut + bound && r.replied < back);
    assert!(late.is_empty(), "acknowledged without a majority: {late:?}");
    let errors: Vec<&String> = w
        .records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Error(e) => Some(e),
            _ => None,
        })
        .collect();
    assert!(!errors.is_empty(), "no write was refused while cut off");
    for e in &errors {
        assert!(is_proxy_failover_error(e), "{e}");
        assert!(e.contains("voting members"), "{e}");
    }
    let held = support::writer::stored(&master, "nodeslease");
    assert!(w.lost(&held).is_empty(), "lost acknowledged writes");
    eprintln!(
        "[nodes lease] {} refused while the replicas were stopped; {}",
        errors.len(),
        w.failure_summary(cut)
    );
}

/// Witnesses count towards the `nodes` authority's majority: a master and one replica (two
/// data sites) and a witness (a third site, only checked for reachability).
/// 1. The replica stops answering: two of three members are reached, writes go on.
/// 2. The witness goes too: one of three, writes stop (the proxy's error) and `/readyz` is 503.
/// 3. The witness comes back: writes go again.
#[test]
fn witness_keeps_the_majority_for_the_nodes_authority() {
    let (master, replicas) = replication(1);
    let witness = std::net::TcpListener::bind("127.0.0.1:0").expect("bind witness");
    let witness_addr = witness.local_addr().expect("witness address").to_string();
    let nodes = [master.addr_str(), replicas[0].addr_str()];
    let proxy = Proxy::builder()
        .config(&format!(
            r#"
[failover]
authority = "nodes"
promotion_delay = "1s"
witnesses = ["{witness_addr}"]
hold_timeout = "300ms"

[health]
interval = "100ms"
timeout = "300ms"
fall = 1

[[sites]]
name = "main"
nodes = [{nodes}]
quorum = 1
"#,
            nodes = toml_list(&nodes),
        ))
        .admin()
        .start();
    replicas[0].pause();
    // Longer than the lease: only the master and the witness keep it.
    std::thread::sleep(Duration::from_millis(1500));
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "witness:k", "1"]), Frame::ok());
    assert_eq!(proxy.admin_get("/readyz").0, 200);

    drop(witness);
    wait_for("/readyz unready", Duration::from_secs(5), || {
        proxy.admin_get("/readyz").0 == 503
    });
    // The last confirmations stay good until the lease they gave runs out.
    std::thread::sleep(Duration::from_secs(1));
    match c.cmd(&["SET", "witness:k", "2"]) {
        Frame::Error(e) => assert!(e.contains("voting members"), "{e}"),
        other => panic!("written with one member of three: {other:?}"),
    }
    assert_eq!(master.cmd(&["GET", "witness:k"]), Frame::bulk("1"));

    let _back = std::net::TcpListener::bind(&witness_addr).expect("rebind witness");
    wait_for("writes again", Duration::from_secs(5), || {
        c.cmd(&["SET", "witness:k", "3"]) == Frame::ok()
    });
    replicas[0].resume();
}

/// `stale_reads = "serve"`: while the lease is lapsed, reads are served by the last verified
/// master (and counted), writes are still held and refused.
#[test]
fn stale_reads_are_served_when_chosen() {
    let mut cluster = Cluster::start();
    let proxy = sentinel_admin_proxy(
        &cluster,
        "stale_reads = \"serve\"\nhold_timeout = \"300ms\"",
    );
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "stale:k", "v1"]), Frame::ok());
    cluster.group.kill(0);
    cluster.group.kill(1);
    wait_for("lease lapsed in /topology", Duration::from_secs(5), || {
        json(&proxy.admin_get("/topology").1)["master"]["lease"] == "lapsed"
    });
    assert_eq!(c.cmd(&["GET", "stale:k"]), Frame::bulk("v1"));
    match c.cmd(&["SET", "stale:k", "v2"]) {
        Frame::Error(e) => assert!(e.contains("could not be confirmed"), "{e}"),
        other => panic!("written without a lease: {other:?}"),
    }
    assert_eq!(c.cmd(&["GET", "stale:k"]), Frame::bulk("v1"));
    assert_eq!(cluster.master.cmd(&["GET", "stale:k"]), Frame::bulk("v1"));
    assert!(proxy.metric("redis_failover_proxy_stale_reads_total", &[]) >= 2.0);
}
