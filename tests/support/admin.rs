//! Shared by the admin endpoint tests (`tests/admin.rs`, `tests/admin_access.rs`): a proxy
//! with the admin endpoint, its bearer token and a named user in front of a replicated pair
//! (nodes authority), waiting on `/metrics` and `/topology` until they show what a test
//! expects, and reading single values out of those answers.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::failover::wait_for;
use super::scrape::{topology, Scrape};
use super::{Proxy, RedisServer};

pub const TOKEN: &str = "admin-token-5d2e";
pub const OPS_PW: &str = "ops-pass-81c4";

/// Probing fast, a named user for AUTH checks, the admin token.
pub const BASE: &str = r#"
[health]
interval = "100ms"
timeout = "300ms"

[admin_auth]
token = "admin-token-5d2e"

[[auth.users]]
name = "ops"
password = "ops-pass-81c4"
"#;

pub fn replicated_pair() -> (RedisServer, RedisServer) {
    let master = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&master).start();
    replica.wait_link_up();
    (master, replica)
}

/// A proxy in front of `nodes` (nodes authority) with [`BASE`] plus `extra`, serving the admin
/// endpoint on `admin`.
pub fn proxy(nodes: &[&RedisServer], admin: &str, extra: &str) -> Proxy {
    Proxy::builder()
        .config(&format!("{BASE}{extra}"))
        .nodes(nodes)
        .args(&["--admin", admin])
        .start()
}

/// Scrapes until `ok` holds for a scrape; returns that scrape.
pub fn wait_scrape(admin: SocketAddr, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
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
pub fn wait_topology(admin: SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(what, Duration::from_secs(20), || {
        last = topology(admin, Some(TOKEN));
        ok(&last)
    });
    last
}

/// The node of a `/topology` answer at `addr`.
pub fn node<'a>(topo: &'a Value, addr: &str) -> &'a Value {
    topo["nodes"]
        .as_array()
        .expect("nodes array")
        .iter()
        .find(|n| n["address"] == addr)
        .unwrap_or_else(|| panic!("no node {addr} in {topo}"))
}

pub fn epoch(topo: &Value) -> u64 {
    topo["epoch"].as_u64().expect("numeric epoch")
}

/// The one `master_info` series at 1, as (node, run_id).
pub fn master_info(s: &Scrape) -> Vec<(String, String)> {
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
