//! Reloading the configuration file on SIGHUP: a new node list moves the master without
//! dropping clients, a new user password applies to new AUTHs, a broken file is rejected
//! whole, settings that need a restart are kept with a warning, and settings given as flags
//! are kept.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use support::failover::{strip_ansi, wait_for};
use support::http;
use support::scrape::{topology, Scrape};
use support::{free_port, Client, Frame, Proxy, RedisServer};

/// Sends SIGHUP and waits for its outcome (the `n`-th "configuration reloaded" or "reload
/// rejected" line); returns the log lines it added.
fn reload(proxy: &Proxy, n: usize) -> Vec<String> {
    let before = strip_ansi(&proxy.log()).lines().count();
    proxy.signal("HUP");
    wait_for(
        &format!("reload #{n} applied or rejected"),
        Duration::from_secs(15),
        || {
            proxy.log_lines(&["configuration reloaded"]).len()
                + proxy.log_lines(&["reload rejected"]).len()
                >= n
        },
    );
    strip_ansi(&proxy.log())
        .lines()
        .skip(before)
        .map(str::to_string)
        .collect()
}

/// A configuration file naming every address the proxy runs with (so that a reload finds
/// them unchanged): `listen` on `port`, the admin endpoint, `top` (top-level keys), probes
/// every 100 ms, the nodes in one site, then `tables`.
fn config_file(port: u16, admin: &str, top: &str, nodes: &[&str], tables: &str) -> String {
    let list: Vec<String> = nodes.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "listen = \"127.0.0.1:{port}\"\nadmin = \"{admin}\"\n{top}\n\
         [health]\ninterval = \"100ms\"\ntimeout = \"300ms\"\n\n\
         [[sites]]\nname = \"main\"\nnodes = [{}]\n\n{tables}",
        list.join(", ")
    )
}

/// The addresses of the nodes in a `/topology` answer.
fn node_addrs(topo: &Value) -> Vec<String> {
    topo["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["address"].as_str().expect("address").to_string())
        .collect()
}

fn client_id(c: &mut Client) -> Frame {
    c.cmd(&["CLIENT", "ID"])
}

/// SIGHUP with a new node list moves the master to a node only in the new list, without
/// dropping clients.
/// 1. A master and a replica linked to it; the configuration file lists only the master.
///    Two clients connect; one writes `before` (it reaches the replica).
/// 2. The replica is promoted by hand (`REPLICAOF NO ONE`); the proxy does not know it.
/// 3. The file now lists only the promoted node; SIGHUP: "configuration reloaded", neither
///    rejected nor "needs a restart".
/// 4. `/topology` lists only the new node, as the verified master, with a higher epoch.
/// 5. The same connections (same `CLIENT ID`) go on: `before` is read back, `after` is
///    written to the new master and not to the old one.
/// 6. `/metrics` no longer shows the dropped node as up or as a master.
#[test]
fn reload_moves_the_master_to_a_node_only_in_the_new_list() {
    let old = RedisServer::start();
    let new = RedisServer::builder().replica_of(&old).start();
    new.wait_link_up();
    let (admin_text, admin) = http::free_addr();
    let port = free_port();
    let proxy = Proxy::builder()
        .port(port)
        .config(&config_file(port, &admin_text, "", &[&old.addr_str()], ""))
        .start();
    let mut a = proxy.client();
    let mut b = proxy.client();
    let (id_a, id_b) = (client_id(&mut a), client_id(&mut b));
    assert_eq!(a.cmd(&["SET", "before", "1"]), Frame::ok());
    wait_for("`before` replicated", Duration::from_secs(10), || {
        new.cmd(&["GET", "before"]) == Frame::bulk("1")
    });
    let first = topology(admin, None);
    assert_eq!(node_addrs(&first), vec![old.addr_str()]);

    assert_eq!(new.cmd(&["REPLICAOF", "NO", "ONE"]), Frame::ok());
    proxy.rewrite_config(&config_file(port, &admin_text, "", &[&new.addr_str()], ""));
    let added = reload(&proxy, 1);
    assert!(
        added.iter().any(|l| l.contains("configuration reloaded")),
        "{added:?}"
    );
    assert!(
        !added
            .iter()
            .any(|l| l.contains("needs a restart") || l.contains("reload rejected")),
        "{added:?}"
    );
    let moved = {
        let mut t = Value::Null;
        wait_for(
            "the new node verified as master",
            Duration::from_secs(20),
            || {
                t = topology(admin, None);
                t["master"]["address"] == new.addr_str().as_str() && t["state"] == "verified"
            },
        );
        t
    };
    assert_eq!(node_addrs(&moved), vec![new.addr_str()], "{moved}");
    assert!(moved["epoch"].as_u64() > first["epoch"].as_u64());

    assert_eq!(client_id(&mut a), id_a, "client a reconnected");
    assert_eq!(client_id(&mut b), id_b, "client b reconnected");
    assert_eq!(a.cmd(&["GET", "before"]), Frame::bulk("1"));
    assert_eq!(b.cmd(&["SET", "after", "1"]), Frame::ok());
    assert_eq!(new.cmd(&["GET", "after"]), Frame::bulk("1"));
    assert_eq!(old.cmd(&["EXISTS", "after"]), Frame::Int(0));

    let s = Scrape::take(admin);
    let dropped = old.addr_str();
    assert_eq!(s.get("node_up", &[("node", &new.addr_str())]), 1.0);
    assert_eq!(
        s.get(
            "node_role",
            &[("node", &new.addr_str()), ("role", "master")]
        ),
        1.0
    );
    let stale: Vec<_> = s
        .matching("node_up", &[("node", &dropped)])
        .into_iter()
        .chain(s.matching("node_role", &[("node", &dropped), ("role", "master")]))
        .filter(|m| m.value != 0.0)
        .collect();
    assert!(
        stale.is_empty(),
        "the node dropped from the configuration is still reported: {stale:?}"
    );
}

/// SIGHUP with a broken file keeps everything running with the old configuration.
/// 1. One Redis; the file allows nothing extra (CONFIG SET refused), admin on.
/// 2. Three broken files in turn, each also allowing CONFIG|SET: bad TOML syntax, an unknown
///    key, an invalid value. After each SIGHUP: one more "reload rejected; keeping the running
///    configuration" error naming the problem; the client connected from the start is still
///    served on the same connection, CONFIG SET is still refused, `/readyz` is 200.
/// 3. The same change in a valid file: reloaded, and CONFIG SET is now allowed.
#[test]
fn reload_rejects_a_broken_file_whole() {
    let redis = RedisServer::start();
    let (admin_text, admin) = http::free_addr();
    let port = free_port();
    let nodes = [redis.addr_str()];
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let allow = "allow_commands = [\"CONFIG|SET\"]";
    let proxy = Proxy::builder()
        .port(port)
        .config(&config_file(port, &admin_text, "", &nodes, ""))
        .start();
    let mut c = proxy.client();
    let id = client_id(&mut c);
    let config_set = ["CONFIG", "SET", "maxmemory-policy", "noeviction"];
    assert!(c
        .cmd(&config_set)
        .is_error("ERR command 'CONFIG|SET' is disabled"));

    let broken = [
        (
            "bad TOML",
            format!(
                "{}\n[failover\n",
                config_file(port, &admin_text, allow, &nodes, "")
            ),
            "TOML syntax",
        ),
        (
            "unknown key",
            config_file(
                port,
                &admin_text,
                allow,
                &nodes,
                "[failover]\nhold_timout = \"2s\"\n",
            ),
            "failover.hold_timout: unknown key",
        ),
        (
            "invalid value",
            config_file(
                port,
                &admin_text,
                allow,
                &nodes,
                "[failover]\nhold_timeout = \"soon\"\n",
            ),
            "failover.hold_timeout",
        ),
    ];
    for (n, (what, text, problem)) in broken.iter().enumerate() {
        proxy.rewrite_config(text);
        let added = reload(&proxy, n + 1);
        let rejected: Vec<&String> = added
            .iter()
            .filter(|l| l.contains("reload rejected; keeping the running configuration"))
            .collect();
        assert_eq!(rejected.len(), 1, "{what}: {added:?}");
        assert!(rejected[0].contains("ERROR"), "{what}: {rejected:?}");
        // The problems follow on the next lines of the same event.
        assert!(added.join("\n").contains(problem), "{what}: {added:#?}");
        assert!(
            !added.iter().any(|l| l.contains("configuration reloaded")),
            "{what}: {added:?}"
        );
        assert_eq!(client_id(&mut c), id, "{what}: client reconnected");
        assert_eq!(
            c.cmd(&["INCR", "served"]),
            Frame::Int(n as i64 + 1),
            "{what}"
        );
        assert!(
            c.cmd(&config_set)
                .is_error("ERR command 'CONFIG|SET' is disabled"),
            "{what}: part of the broken file was applied"
        );
        assert_eq!(http::get(admin, "/readyz", None).status, 200, "{what}");
    }

    proxy.rewrite_config(&config_file(port, &admin_text, allow, &nodes, ""));
    let added = reload(&proxy, 4);
    assert!(
        added.iter().any(|l| l.contains("configuration reloaded")),
        "{added:?}"
    );
    assert_eq!(
        c.cmd(&config_set),
        Frame::ok(),
        "the valid file was not applied"
    );
    assert_eq!(client_id(&mut c), id);
}

/// SIGHUP changing settings that need a restart logs a warning for each and keeps them.
/// 1. One Redis; the file names listen, admin, `threads = 2`, probe interval 100 ms.
/// 2. SIGHUP with the file unchanged: reloaded, no "needs a restart" warning.
/// 3. The file with `threads = 3`, a new admin address, a probe interval of 200 ms and a new
///    hold timeout: reloaded, with one "needs a restart" warning naming each of threads,
///    admin and health (none for the hold timeout, which applies); the admin endpoint still
///    answers on the old address and nothing listens on the new one; clients are served.
#[test]
fn reload_warns_about_settings_that_need_a_restart() {
    let redis = RedisServer::start();
    let (admin_text, admin) = http::free_addr();
    let (other_admin_text, other_admin) = http::free_addr();
    let port = free_port();
    let nodes = [redis.addr_str()];
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let proxy = Proxy::builder()
        .port(port)
        .config(&config_file(port, &admin_text, "threads = 2", &nodes, ""))
        .start();

    let added = reload(&proxy, 1);
    assert!(
        added.iter().any(|l| l.contains("configuration reloaded")),
        "{added:?}"
    );
    assert!(
        !added.iter().any(|l| l.contains("needs a restart")),
        "warnings for an unchanged file: {added:?}"
    );

    let changed = config_file(
        port,
        &other_admin_text,
        "threads = 3",
        &nodes,
        "[failover]\nhold_timeout = \"3s\"\n",
    )
    .replace("interval = \"100ms\"", "interval = \"200ms\"");
    proxy.rewrite_config(&changed);
    let added = reload(&proxy, 2);
    assert!(
        added.iter().any(|l| l.contains("configuration reloaded")),
        "{added:?}"
    );
    let warned: Vec<&String> = added
        .iter()
        .filter(|l| l.contains("needs a restart"))
        .collect();
    for setting in ["threads", "admin", "health"] {
        assert_eq!(
            warned
                .iter()
                .filter(|l| l.contains(&format!("setting=\"{setting}\"")))
                .count(),
            1,
            "warning for {setting}: {warned:?}"
        );
    }
    assert_eq!(warned.len(), 3, "{warned:?}");
    assert!(warned.iter().all(|l| l.contains(" WARN ")), "{warned:?}");
    assert_eq!(http::get(admin, "/livez", None).status, 200);
    assert!(
        TcpStream::connect_timeout(&other_admin, Duration::from_secs(1)).is_err(),
        "the new admin address is bound"
    );
    assert_eq!(proxy.client().cmd(&["PING"]), Frame::Simple("PONG".into()));
}

/// SIGHUP with a new user password: new AUTHs use it, authenticated clients stay.
/// 1. One Redis; the file has a user `app` with password `old-pass`.
/// 2. A client authenticates as `app` with `old-pass`.
/// 3. The file gives `app` the password `new-pass`; SIGHUP: reloaded.
/// 4. A new client: `AUTH app old-pass` is refused (WRONGPASS), `AUTH app new-pass` accepted
///    and its commands run.
/// 5. The client authenticated before is still served on the same connection.
#[test]
fn reload_applies_a_new_user_password() {
    let redis = RedisServer::start();
    let (admin_text, _) = http::free_addr();
    let port = free_port();
    let nodes = [redis.addr_str()];
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let user = |pw: &str| format!("[[auth.users]]\nname = \"app\"\npassword = \"{pw}\"\n");
    let proxy = Proxy::builder()
        .port(port)
        .config(&config_file(
            port,
            &admin_text,
            "",
            &nodes,
            &user("old-pass"),
        ))
        .start();
    let mut before = proxy.client();
    assert_eq!(before.cmd(&["AUTH", "app", "old-pass"]), Frame::ok());
    let id = client_id(&mut before);
    assert!(proxy
        .client()
        .cmd(&["AUTH", "app", "new-pass"])
        .is_error("WRONGPASS"));

    proxy.rewrite_config(&config_file(
        port,
        &admin_text,
        "",
        &nodes,
        &user("new-pass"),
    ));
    let added = reload(&proxy, 1);
    assert!(
        added.iter().any(|l| l.contains("configuration reloaded")),
        "{added:?}"
    );

    let mut after = proxy.client();
    assert!(after
        .cmd(&["AUTH", "app", "old-pass"])
        .is_error("WRONGPASS"));
    assert_eq!(after.cmd(&["AUTH", "app", "new-pass"]), Frame::ok());
    assert_eq!(after.cmd(&["SET", "user", "app"]), Frame::ok());
    assert_eq!(client_id(&mut before), id);
    assert_eq!(before.cmd(&["GET", "user"]), Frame::bulk("app"));
}

/// SIGHUP keeps what was given as command-line flags (they override the file at start).
/// 1. One Redis; the proxy started with `--nodes`, `--admin`, `--allow-commands CONFIG|SET`
///    and `--listen`, and a file that only sets the hold timeout.
/// 2. SIGHUP with the file unchanged.
/// 3. The reload is applied (not rejected) with no "needs a restart" warning (nothing
///    changed); CONFIG SET is still allowed; `/topology` still lists the node.
#[test]
fn reload_keeps_settings_given_as_flags() {
    let redis = RedisServer::start();
    let (admin_text, admin) = http::free_addr();
    let proxy = Proxy::builder()
        .config("[failover]\nhold_timeout = \"2s\"\n")
        .nodes(&[&redis])
        .args(&["--admin", &admin_text, "--allow-commands", "CONFIG|SET"])
        .start();
    let mut c = proxy.client();
    let config_set = ["CONFIG", "SET", "maxmemory-policy", "noeviction"];
    assert_eq!(c.cmd(&config_set), Frame::ok());

    let added = reload(&proxy, 1);
    let problems: Vec<&String> = added
        .iter()
        .filter(|l| l.contains("reload rejected") || l.contains("needs a restart"))
        .collect();
    assert!(
        problems.is_empty(),
        "reload of an unchanged file: {problems:#?}"
    );
    assert_eq!(
        c.cmd(&config_set),
        Frame::ok(),
        "--allow-commands forgotten"
    );
    assert_eq!(node_addrs(&topology(admin, None)), vec![redis.addr_str()]);
}
