//! Tests of the failover test support itself, against real `redis-server` and
//! `redis-sentinel` processes and without the proxy: a Sentinel group really fails over (forced
//! and after the master dies) and reports it the way the failover tests expect; the `/metrics`
//! parser, the MONITOR recorder and the numbered writer's ledger read what they are given as
//! documented. The fault-injecting relay is tested in `tests/support_selftest_relay.rs`.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::sentinel::{next_event, wait_event, Event};
use support::{replication, Client, Frame, Group, GroupOptions, RedisServer};

/// Runs one command on a fresh connection to `server`; `None` when the link fails (Sentinel
/// kills normal clients of the servers it reconfigures).
fn try_cmd(server: &RedisServer, args: &[&str]) -> Option<Frame> {
    let mut c = Client::try_connect(server.addr()).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2)));
    c.send(args);
    c.try_read().ok()
}

/// `INFO replication` of a server, or "" when it does not answer.
fn replication_info(server: &RedisServer) -> String {
    match try_cmd(server, &["INFO", "replication"]) {
        Some(Frame::Bulk(b)) => String::from_utf8_lossy(&b).into_owned(),
        _ => String::new(),
    }
}

/// Polls `f` every 50 ms until it holds or `deadline` passes.
fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forced failover, seen every way a test can see it.
/// 1. A master with one linked replica and a group of three Sentinels; the group names the
///    master.
/// 2. Subscribe to every event on the Sentinel that will lead, and to `+switch-master`.
/// 3. `failover()`; `+switch-master` arrives naming old and new address, a majority names the
///    replica, the replica reports `role:master` and accepts writes.
/// 4. The leader published `+try-failover`, `+selected-slave`,
///    `+failover-state-send-slaveof-noone` and `+switch-master` in that order, with the
///    payload formats the failover tests rely on.
/// 5. Controls: a paused Sentinel answers nothing and answers again once resumed; a killed one
///    refuses connections while the other two still make a majority; a restarted one names
///    the new master from its rewritten configuration; `kill_all` stops every one.
#[test]
fn forced_failover_promotes_the_replica() {
    let (master, replicas) = replication(1);
    let replica = &replicas[0];
    let mut group = Group::start(&master, &[replica], GroupOptions::default());
    assert_eq!(group.addrs().len(), 3);
    assert_eq!(group.master_addr(), Some(master.addr_str()));
    assert!(group.wait_master(&master.addr_str(), Duration::from_secs(5)));

    let leader = group.first_live();
    let mut all = group.subscribe_on(leader, &["*"]);
    let mut switch = group.subscribe();
    let started = Instant::now();
    assert_eq!(group.failover(), leader);

    let ev = wait_event(&mut switch, "+switch-master", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no +switch-master\n{}", group.logs()));
    eprintln!("+switch-master after {:?}", started.elapsed());
    assert_eq!(
        ev.switch_master(),
        Some(("mymaster".into(), master.addr_str(), replica.addr_str()))
    );
    assert!(
        group.wait_master(&replica.addr_str(), Duration::from_secs(15)),
        "no majority names the replica\n{}",
        group.logs()
    );
    assert_eq!(group.master_addr(), Some(replica.addr_str()));
    assert!(eventually(Duration::from_secs(10), || {
        replication_info(replica).contains("role:master")
    }));
    assert_eq!(replica.cmd(&["SET", "after", "failover"]), Frame::ok());

    // Every event the leader published, up to its own +switch-master.
    let mut seen: Vec<Event> = Vec::new();
    while let Some(ev) = next_event(&mut all, Duration::from_secs(5)) {
        eprintln!("{} {}", ev.channel, ev.payload);
        let done = ev.channel == "+switch-master";
        seen.push(ev);
        if done {
            break;
        }
    }
    let (m, r) = (master.port, replica.port);
    let expect = [
        ("+try-failover", format!("master mymaster 127.0.0.1 {m}")),
        (
            "+selected-slave",
            format!("slave 127.0.0.1:{r} 127.0.0.1 {r} @ mymaster 127.0.0.1 {m}"),
        ),
        (
            "+failover-state-send-slaveof-noone",
            format!("slave 127.0.0.1:{r} 127.0.0.1 {r} @ mymaster 127.0.0.1 {m}"),
        ),
        (
            "+switch-master",
            format!("mymaster 127.0.0.1 {m} 127.0.0.1 {r}"),
        ),
    ];
    let mut at = 0;
    for (channel, payload) in &expect {
        let found = seen[at..]
            .iter()
            .position(|e| e.channel == *channel)
            .unwrap_or_else(|| panic!("no {channel} after event {at}: {seen:#?}"));
        at += found;
        assert_eq!(&seen[at].payload, payload, "{channel}");
        at += 1;
    }

    // Controls of single Sentinels.
    group.pause(1);
    assert_eq!(group.master_addr_on(1), None);
    assert!(
        group.query(1, &["PING"]).is_err(),
        "a paused Sentinel answered"
    );
    group.resume(1);
    assert_eq!(
        group.query(1, &["PING"]).ok(),
        Some(Frame::Simple("PONG".into()))
    );
    group.kill(2);
    assert!(TcpStream::connect(group.addr(2)).is_err());
    assert!(group.wait_master(&replica.addr_str(), Duration::from_secs(5)));
    group.restart(2);
    assert!(eventually(Duration::from_secs(10), || {
        group.master_addr_on(2) == Some(replica.addr_str())
    }));
    group.kill_all();
    for i in 0..group.len() {
        assert!(TcpStream::connect(group.addr(i)).is_err(), "sentinel {i}");
    }
    assert_eq!(group.master_addr(), None);
}

/// Automatic failover after the master dies.
/// 1. A master with two linked replicas and a group of three Sentinels.
/// 2. Subscribe to `+switch-master`, then SIGKILL the master.
/// 3. Within 30 s a majority names one of the replicas, and `+switch-master` names the dead
///    master as old and the same replica as new (the elapsed time is printed).
/// 4. The promoted replica accepts writes and Sentinel points the other replica at it, which
///    then receives the write.
#[test]
fn killed_master_is_replaced() {
    let (mut master, replicas) = replication(2);
    let group = Group::start(
        &master,
        &[&replicas[0], &replicas[1]],
        GroupOptions::default(),
    );
    let mut switch = group.subscribe();
    let old = master.addr_str();
    let started = Instant::now();
    master.kill();

    let mut promoted = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            promoted = group
                .master_addr()
                .and_then(|a| replicas.iter().position(|r| r.addr_str() == a));
            promoted.is_some_and(|p| group.wait_master(&replicas[p].addr_str(), Duration::ZERO))
        }),
        "no replica promoted within 30 s\n{}",
        group.logs()
    );
    eprintln!("promoted after {:?}", started.elapsed());
    let p = promoted.expect("promoted");
    let (new, other) = (&replicas[p], &replicas[1 - p]);
    let ev =
        wait_event(&mut switch, "+switch-master", Duration::from_secs(10)).expect("+switch-master");
    assert_eq!(
        ev.switch_master(),
        Some(("mymaster".into(), old, new.addr_str()))
    );

    assert!(eventually(Duration::from_secs(10), || {
        replication_info(new).contains("role:master")
    }));
    assert_eq!(new.cmd(&["SET", "survivor", "yes"]), Frame::ok());
    let link = format!("master_port:{}", new.port);
    assert!(
        eventually(Duration::from_secs(20), || {
            let info = replication_info(other);
            info.contains(&link) && info.contains("master_link_status:up")
        }),
        "the other replica was not pointed at the new master\n{}",
        group.logs()
    );
    assert!(eventually(Duration::from_secs(10), || {
        try_cmd(other, &["GET", "survivor"]) == Some(Frame::bulk("yes"))
    }));
}

/// A group where the servers and the Sentinels require passwords.
/// 1. A master and a replica requiring "srvpw"; Sentinels given it as `auth_pass` and
///    requiring "sentpw" themselves; the group becomes ready (the Sentinels reached the
///    servers and each other with those passwords).
/// 2. A Sentinel refuses an unauthenticated command; the group's own queries authenticate
///    and name the master.
/// 3. A forced failover is announced on `subscribe()` and a majority names the replica.
#[test]
fn password_protected_group_fails_over() {
    let (master, replicas) = support::sentinel::replication_with(
        RedisServer::builder().password("srvpw"),
        1,
        Some("srvpw"),
    );
    let opts = GroupOptions {
        name: "secured".into(),
        auth_pass: Some("srvpw".into()),
        requirepass: Some("sentpw".into()),
        ..Default::default()
    };
    let group = Group::start(&master, &[&replicas[0]], opts);
    assert_eq!(group.name(), "secured");
    let mut anonymous = Client::connect(group.addr(0));
    let refused = anonymous.cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "secured"]);
    assert!(refused.is_error("NOAUTH"), "{refused:?}");
    assert_eq!(group.master_addr(), Some(master.addr_str()));

    let mut switch = group.subscribe();
    group.failover();
    let ev = wait_event(&mut switch, "+switch-master", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no +switch-master\n{}", group.logs()));
    assert_eq!(
        ev.switch_master(),
        Some(("secured".into(), master.addr_str(), replicas[0].addr_str()))
    );
    assert!(group.wait_master(&replicas[0].addr_str(), Duration::from_secs(15)));
}

/// The `/metrics` parser reads plain samples, labelled ones, histogram buckets and escaped
/// label values, and looks them up by a subset of labels.
#[test]
fn metrics_parser_reads_the_exposition_format() {
    use support::scrape::Scrape;
    let s = Scrape::parse(
        "# HELP redis_failover_proxy_epoch Epoch.\n\
         redis_failover_proxy_epoch 4\n\
         redis_failover_proxy_role{site=\"a\",node=\"127.0.0.1:1\",role=\"master\"} 1\n\
         redis_failover_proxy_role{site=\"a\",node=\"127.0.0.1:1\",role=\"replica\"} 0\n\
         redis_failover_proxy_d_bucket{class=\"write\",le=\"+Inf\"} 3\n\
         redis_failover_proxy_q{v=\"a\\\"b,c}\"} 2.5\n",
    );
    assert_eq!(s.value("epoch", &[]), Some(4.0));
    assert_eq!(s.value("role", &[("role", "master")]), Some(1.0));
    assert_eq!(s.value("role", &[("role", "other")]), None);
    assert_eq!(s.sum("role", &[("node", "127.0.0.1:1")]), 1.0);
    assert_eq!(s.value("d_bucket", &[("le", "+Inf")]), Some(3.0));
    assert_eq!(s.value("q", &[("v", "a\"b,c}")]), Some(2.5));
    assert_eq!(s.get("absent_total", &[]), 0.0);
}

/// The MONITOR recorder reads what Redis really writes, escapes included: a key and a value
/// holding quotes, backslashes, control bytes, DEL and UTF-8 (which Redis shows as `\"`, `\\`,
/// `\n`, `\xHH`...) come back byte for byte, through the load harness's parser.
#[test]
fn monitor_unescapes_what_redis_writes() {
    use support::failover::Monitor;
    let server = RedisServer::start();
    let monitor = Monitor::start(&server);
    let key = "k \"q\" \\ \n\t\r\x07\x08 é";
    let value = "\x01\x7f€\\x41";
    let mut c = server.client();
    c.send_bin(&[b"SET", key.as_bytes(), value.as_bytes()]);
    assert_eq!(c.read(), Frame::ok());
    let set = || {
        monitor
            .seen()
            .into_iter()
            .find(|s| s.args.first().is_some_and(|a| a == "SET"))
    };
    assert!(eventually(Duration::from_secs(5), || set().is_some()));
    let seen = set().unwrap();
    assert_eq!(seen.args, ["SET", key, value]);
    assert_eq!(
        seen.client,
        c.socket().local_addr().expect("local address").to_string()
    );
}

/// The numbered writer's account as the load harness's ledger judges it: acknowledged numbers
/// missing from the list are lost, numbers held though the proxy said "not executed" were
/// applied though refused, and an unknown outcome ("may have been applied") is neither.
#[test]
fn writer_ledger_judges_list_elements() {
    use support::writer::{duplicates, is_proxy_failover_error, Finished, Outcome, Record};
    let t = Instant::now();
    let record = |n, outcome| Record {
        n,
        sent: t,
        replied: t + Duration::from_millis(n),
        outcome,
    };
    let refused = "MASTERDOWN no master is known; the command was not executed (proxy)";
    let unknown = "ERR the master went away; it may have been applied (proxy)";
    let f = Finished {
        key: "list".into(),
        client_id: 1,
        started: t,
        records: vec![
            record(1, Outcome::Acked),
            record(2, Outcome::Error(refused.into())),
            record(3, Outcome::Error(unknown.into())),
            record(4, Outcome::Broken("reset".into())),
            record(5, Outcome::Acked),
            record(6, Outcome::Error("READONLY replica".into())),
        ],
        client: None,
    };
    assert!(f.lost(&[1, 3, 5]).is_empty());
    assert!(f.lost(&[1, 5]).is_empty());
    assert_eq!(f.lost(&[5, 3, 4]), [1]);
    assert_eq!(f.lost(&[]), [1, 5]);
    assert_eq!(f.refused_applied(&[1, 2, 3, 5, 6]), [2, 6]);
    assert_eq!(duplicates(&[1, 2, 1, 3, 2, 1]), [1, 2]);
    assert!(is_proxy_failover_error(refused) && is_proxy_failover_error(unknown));
    assert!(!is_proxy_failover_error("ERR too many connections (proxy)"));
}

/// A numbered writer straight against a server (no proxy): every number is acknowledged,
/// held once, and none is lost.
#[test]
fn writer_against_a_server_loses_nothing() {
    use support::writer::{duplicates, stored, Writer};
    let server = RedisServer::start();
    let w = Writer::start_reconnecting(server.addr(), "numbers", Duration::from_millis(1));
    w.advance(100, Duration::from_secs(20));
    let f = w.finish();
    let held = stored(&server, "numbers");
    assert!(f.acked().len() >= 100);
    assert!(f.failures().is_empty(), "{:?}", f.failure_texts());
    assert!(f.lost(&held).is_empty());
    assert!(duplicates(&held).is_empty());
    assert_eq!(f.lost(&held[1..]), [held[0]]);
}
