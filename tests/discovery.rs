//! Finding nodes by DNS, against a real DNS server on loopback whose records the tests change
//! (`support::dns`). First the resolver alone (`topology::discovery`): several addresses
//! behind one name, SRV targets, a changed record seen on the next refresh, the last good
//! answer kept through SERVFAIL, TTLs clamped to the configured bounds. Then the proxy binary
//! in front of real `redis-server`s named only by DNS: a record that moves to another server
//! moves the traffic without a restart, a name with several addresses (a headless Service)
//! yields every node, and a DNS outage does not interrupt service.
//!
//! Two servers behind one `host:port` need the same port on different addresses: the first
//! listens on 127.0.0.1, the second on 127.0.0.2 (all of 127/8 is loopback on Linux).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use redis_failover_proxy::backend::Endpoint;
use redis_failover_proxy::topology::discovery::{DnsSettings, Resolver, Target, Update};
use support::dns::DnsServer;
use support::{Client, Frame, Proxy, RedisServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const IP1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const IP2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const IP3: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Longest wait for anything the tests expect to happen (a failure guard, not a speed bound).
const DEADLINE: Duration = Duration::from_secs(20);

fn resolver(dns: &DnsServer, min_ttl: Duration, max_ttl: Duration) -> Resolver {
    Resolver::new(DnsSettings {
        nameservers: vec![dns.addr()],
        min_ttl,
        max_ttl,
        retry: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
    })
    .expect("resolver")
}

fn host(name: &str, port: u16) -> Target {
    Target::Host {
        host: name.into(),
        port,
    }
}

fn addrs(endpoints: &[Endpoint]) -> Vec<SocketAddr> {
    endpoints.iter().map(|e| e.addr).collect()
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A running `Resolver::watch`, stopped on drop.
struct Watch {
    rx: mpsc::Receiver<Update>,
    stop: CancellationToken,
}

impl Watch {
    fn start(resolver: Resolver, target: Target) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        tokio::spawn(resolver.watch(target, tx, stop.clone()));
        Self { rx, stop }
    }

    /// The next update for which `pred` holds (earlier ones are skipped).
    async fn until(&mut self, what: &str, pred: impl Fn(&Update) -> bool) -> Update {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(u)) if pred(&u) => return u,
                Ok(Some(_)) => {}
                Ok(None) => panic!("watch ended while waiting for {what}"),
                Err(_) => panic!("no update with {what} within {DEADLINE:?}"),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A name with three A records resolves into three endpoints on the configured port, each
/// named by the configured `host:port`.
#[tokio::test]
async fn a_record_with_several_addresses_gives_several_endpoints() {
    let dns = DnsServer::start();
    dns.set_a("multi.test.", &[IP3, IP1, IP2], 30);
    let r = resolver(&dns, Duration::from_millis(100), Duration::from_secs(1));

    let answer = r
        .resolve(&host("multi.test.", 7000))
        .await
        .expect("resolve");

    assert_eq!(
        addrs(&answer.endpoints),
        vec![sa(IP1, 7000), sa(IP2, 7000), sa(IP3, 7000)]
    );
    for e in &answer.endpoints {
        assert_eq!(&*e.name, "multi.test.:7000");
    }
    assert!(dns.queries("multi.test.") >= 1);
}

/// An SRV name with two records resolves into its two targets, each on its own port; an
/// unknown name is an error.
#[tokio::test]
async fn srv_record_gives_its_targets() {
    let dns = DnsServer::start();
    dns.set_srv(
        "_redis._tcp.svc.test.",
        &[(0, 10, 7001, "a.svc.test."), (0, 10, 7002, "b.svc.test.")],
        30,
    );
    dns.set_a("a.svc.test.", &[IP1], 30);
    dns.set_a("b.svc.test.", &[IP2], 30);
    let r = resolver(&dns, Duration::from_millis(100), Duration::from_secs(1));

    let answer = r
        .resolve(&Target::Srv("_redis._tcp.svc.test.".into()))
        .await
        .expect("resolve SRV");

    assert_eq!(addrs(&answer.endpoints), vec![sa(IP1, 7001), sa(IP2, 7002)]);
    let names: Vec<&str> = answer.endpoints.iter().map(|e| &*e.name).collect();
    assert!(
        names[0].starts_with("a.svc.test") && names[0].ends_with(":7001"),
        "{names:?}"
    );
    assert!(
        names[1].starts_with("b.svc.test") && names[1].ends_with(":7002"),
        "{names:?}"
    );
    assert!(r
        .resolve(&Target::Srv("_nothing._tcp.svc.test.".into()))
        .await
        .is_err());
}

/// 1. watch a name with a 1 s TTL (min_ttl 100 ms): the first update has its address;
/// 2. change the record to another address: a later update has the new address, no error.
#[tokio::test]
async fn record_change_is_seen_on_the_next_refresh() {
    let dns = DnsServer::start();
    dns.set_a("moving.test.", &[IP1], 1);
    let r = resolver(&dns, Duration::from_millis(100), Duration::from_secs(1));
    let mut w = Watch::start(r, host("moving.test.", 7000));

    let first = w.until("a first answer", |_| true).await;
    assert_eq!(addrs(&first.endpoints), vec![sa(IP1, 7000)]);
    assert_eq!(first.error, None);

    dns.set_a("moving.test.", &[IP2], 1);
    let moved = w
        .until("the new address", |u| u.endpoints != first.endpoints)
        .await;
    assert_eq!(addrs(&moved.endpoints), vec![sa(IP2, 7000)]);
    assert_eq!(moved.error, None);
}

/// A record's long TTL is cut to max_ttl: with a one-hour TTL and max_ttl 300 ms, a changed
/// record is still seen.
#[tokio::test]
async fn long_ttl_is_cut_to_max_ttl() {
    let dns = DnsServer::start();
    dns.set_a("long.test.", &[IP1], 3600);
    let r = resolver(&dns, Duration::from_millis(100), Duration::from_millis(300));
    let mut w = Watch::start(r, host("long.test.", 7000));

    let first = w.until("a first answer", |_| true).await;
    assert_eq!(addrs(&first.endpoints), vec![sa(IP1, 7000)]);

    dns.set_a("long.test.", &[IP1, IP2], 3600);
    let grown = w
        .until("the second address", |u| u.endpoints.len() == 2)
        .await;
    assert_eq!(addrs(&grown.endpoints), vec![sa(IP1, 7000), sa(IP2, 7000)]);
}

/// 1. watch a name (TTL 0, min_ttl 100 ms): first update has two addresses;
/// 2. the DNS server answers SERVFAIL: an update reports the error with the same two addresses;
/// 3. the DNS server recovers: an update without error, still the same addresses.
#[tokio::test]
async fn servfail_keeps_the_last_good_answer() {
    let dns = DnsServer::start();
    dns.set_a("flaky.test.", &[IP1, IP2], 0);
    let r = resolver(&dns, Duration::from_millis(100), Duration::from_secs(1));
    let mut w = Watch::start(r, host("flaky.test.", 7000));

    let first = w.until("a first answer", |_| true).await;
    assert_eq!(addrs(&first.endpoints), vec![sa(IP1, 7000), sa(IP2, 7000)]);
    assert_eq!(first.error, None);

    dns.fail(true);
    let failed = w.until("an error", |u| u.error.is_some()).await;
    assert_eq!(failed.endpoints, first.endpoints, "last good answer kept");

    dns.fail(false);
    let back = w.until("a good answer again", |u| u.error.is_none()).await;
    assert_eq!(back.endpoints, first.endpoints);
}

/// With min_ttl 1 s, a TTL-0 record is not asked in a loop: after the first answer, over 2 s
/// the name gets at most a few queries per second (generous bound: 3 lookups a second, each
/// A and AAAA); it is still refreshed afterwards.
#[tokio::test]
async fn ttl_zero_is_clamped_to_min_ttl() {
    let dns = DnsServer::start();
    dns.set_a("zero.test.", &[IP1], 0);
    let r = resolver(&dns, Duration::from_secs(1), Duration::from_secs(30));
    let mut w = Watch::start(r, host("zero.test.", 7000));

    let first = w.until("a first answer", |_| true).await;
    assert_eq!(addrs(&first.endpoints), vec![sa(IP1, 7000)]);

    let before = dns.queries("zero.test.");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = dns.queries("zero.test.") - before;
    assert!(
        during <= 12,
        "{during} queries in 2 s despite min_ttl = 1 s"
    );

    let until = Instant::now() + DEADLINE;
    while dns.queries("zero.test.") == before + during {
        assert!(Instant::now() < until, "the name is no longer refreshed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the proxy binary ----

/// A `redis-server` on 127.0.0.2 and the port of one already listening on 127.0.0.1 (which
/// `RedisBuilder::start` waits for, so the start is confirmed here on 127.0.0.2).
fn start_on_ip2(builder: support::RedisBuilder, port: u16) -> RedisServer {
    let server = builder.port(port).arg("bind", "127.0.0.2").start();
    let addr = sa(IP2, port);
    let until = Instant::now() + DEADLINE;
    loop {
        if let Ok(mut c) = Client::try_connect(addr) {
            if c.cmd(&["PING"]) == Frame::Simple("PONG".into()) {
                return server;
            }
        }
        assert!(
            Instant::now() < until,
            "redis-server on {addr} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns true.
fn eventually(what: &str, mut check: impl FnMut() -> bool, proxy: &Proxy) {
    let until = Instant::now() + DEADLINE;
    while !check() {
        assert!(
            Instant::now() < until,
            "{what}: not within {DEADLINE:?}\n--- proxy log ---\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the server at `addr` has a client connection from the proxy (its probe and pooled
/// connections name themselves `redis-failover-proxy`).
fn has_proxy_client(addr: SocketAddr) -> bool {
    Client::connect(addr)
        .cmd(&["CLIENT", "LIST"])
        .text()
        .contains("name=redis-failover-proxy")
}

/// A proxy whose only site is `nodes = ["redis.test.:<port>"]`, resolved by `dns`.
fn proxy_by_name(dns: &DnsServer, port: u16) -> Proxy {
    Proxy::builder()
        .config(&format!(
            r#"
[dns]
nameservers = ["{}"]
min_ttl = "100ms"
max_ttl = "1s"
retry = "100ms"
timeout = "1s"

[[sites]]
name = "main"
nodes = ["redis.test.:{port}"]
"#,
            dns.addr()
        ))
        .start()
}

/// 1. redis A on 127.0.0.1:P holds where=a, redis B on 127.0.0.2:P holds where=b (both
///    masters); redis.test. → 127.0.0.1; the proxy's node is redis.test.:P;
/// 2. a client GETs where through the proxy: "a";
/// 3. redis.test. → 127.0.0.2;
/// 4. the same client connection, polled, GETs "b" (only "a", "b" or errors on the way);
/// 5. the proxy process is the same one; a write through it lands on B, not on A;
/// 6. the proxy closes its connections to A.
#[test]
fn record_change_moves_traffic_without_restart() {
    let dns = DnsServer::start();
    let a = RedisServer::start();
    let b = start_on_ip2(RedisServer::builder(), a.port);
    let b_addr = sa(IP2, a.port);
    assert_eq!(a.cmd(&["SET", "where", "a"]), Frame::ok());
    assert_eq!(
        Client::connect(b_addr).cmd(&["SET", "where", "b"]),
        Frame::ok()
    );
    dns.set_a("redis.test.", &[IP1], 1);
    let mut proxy = proxy_by_name(&dns, a.port);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["GET", "where"]), Frame::bulk("a"));

    dns.set_a("redis.test.", &[IP2], 1);
    eventually(
        "GET where through the proxy returns b",
        || match c.cmd(&["GET", "where"]) {
            f if f == Frame::bulk("b") => true,
            f if f == Frame::bulk("a") => false,
            Frame::Error(_) => false,
            other => panic!("unexpected reply during the move: {other:?}"),
        },
        &proxy,
    );

    assert!(proxy.alive(), "the proxy process must not restart");
    assert_eq!(c.cmd(&["SET", "moved", "yes"]), Frame::ok());
    assert_eq!(
        Client::connect(b_addr).cmd(&["GET", "moved"]),
        Frame::bulk("yes")
    );
    assert_eq!(a.cmd(&["GET", "moved"]), Frame::Null);
    eventually(
        "the proxy leaves the node no longer in DNS",
        || !has_proxy_client(a.addr()),
        &proxy,
    );
    drop(b);
}

/// 1. redis A (where=a) and redis B (where=b), both masters on 127.0.0.1;
///    _redis._tcp.test. → redis.test.:<A's port>, redis.test. → 127.0.0.1; the proxy's site is
///    `srv = ["_redis._tcp.test."]`;
/// 2. a client GETs where through the proxy: "a";
/// 3. the SRV record now names B's port;
/// 4. the same client connection, polled, GETs "b"; the proxy process is the same one.
#[test]
fn srv_record_change_moves_traffic() {
    let dns = DnsServer::start();
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_eq!(a.cmd(&["SET", "where", "a"]), Frame::ok());
    assert_eq!(b.cmd(&["SET", "where", "b"]), Frame::ok());
    dns.set_a("redis.test.", &[IP1], 1);
    dns.set_srv("_redis._tcp.test.", &[(0, 0, a.port, "redis.test.")], 1);
    let mut proxy = Proxy::builder()
        .config(&format!(
            r#"
[dns]
nameservers = ["{}"]
min_ttl = "100ms"
max_ttl = "1s"

[[sites]]
name = "main"
srv = ["_redis._tcp.test."]
"#,
            dns.addr()
        ))
        .start();
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["GET", "where"]), Frame::bulk("a"));

    dns.set_srv("_redis._tcp.test.", &[(0, 0, b.port, "redis.test.")], 1);
    eventually(
        "GET where through the proxy returns b",
        || match c.cmd(&["GET", "where"]) {
            f if f == Frame::bulk("b") => true,
            f if f == Frame::bulk("a") => false,
            Frame::Error(_) => false,
            other => panic!("unexpected reply during the move: {other:?}"),
        },
        &proxy,
    );
    assert!(proxy.alive(), "the proxy process must not restart");
    assert_eq!(c.cmd(&["SET", "moved", "yes"]), Frame::ok());
    assert_eq!(b.cmd(&["GET", "moved"]), Frame::bulk("yes"));
}

/// 1. a master on 127.0.0.1:P and its replica on 127.0.0.2:P, both behind redis.test.;
/// 2. the proxy (node redis.test.:P) serves: a write through it lands on the master and
///    replicates;
/// 3. the proxy found the replica too: it holds a connection to it.
#[test]
fn name_with_several_addresses_finds_master_and_replica() {
    let dns = DnsServer::start();
    let master = RedisServer::start();
    let replica = start_on_ip2(RedisServer::builder().replica_of(&master), master.port);
    let replica_addr = sa(IP2, master.port);
    dns.set_a("redis.test.", &[IP1, IP2], 1);
    let proxy = proxy_by_name(&dns, master.port);

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(master.cmd(&["GET", "k"]), Frame::bulk("v"));
    eventually(
        "the write replicates",
        || Client::connect(replica_addr).cmd(&["GET", "k"]) == Frame::bulk("v"),
        &proxy,
    );
    eventually(
        "the proxy probes the replica",
        || has_proxy_client(replica_addr),
        &proxy,
    );
    assert!(has_proxy_client(master.addr()));
    drop(replica);
}

/// 1. the proxy starts with redis.test. → a redis-server and serves;
/// 2. the DNS server answers SERVFAIL to everything;
/// 3. while the proxy keeps asking (dozens of failed queries), every INCR through an open
///    connection succeeds, and so does a new connection afterwards.
#[test]
fn dns_outage_keeps_serving_the_last_good_answer() {
    let dns = DnsServer::start();
    let redis = RedisServer::start();
    dns.set_a("redis.test.", &[IP1], 1);
    let proxy = proxy_by_name(&dns, redis.port);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "n", "0"]), Frame::ok());

    dns.fail(true);
    let before = dns.queries("redis.test.");
    let mut n = 0;
    eventually(
        "the proxy keeps asking the failing DNS server",
        || {
            n += 1;
            assert_eq!(
                c.cmd(&["INCR", "n"]),
                Frame::Int(n),
                "INCR during the outage"
            );
            dns.queries("redis.test.") >= before + 20
        },
        &proxy,
    );

    assert_eq!(c.cmd(&["INCR", "n"]), Frame::Int(n + 1));
    assert_eq!(
        proxy.client().cmd(&["GET", "n"]),
        Frame::bulk(&(n + 1).to_string())
    );
    assert_eq!(redis.cmd(&["GET", "n"]), Frame::bulk(&(n + 1).to_string()));
}
