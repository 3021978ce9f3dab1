//! Test support: real `redis-server` processes on free loopback ports in temporary folders, the
//! real proxy binary, and a small RESP client that shows replies exactly as they arrive.
//! Every process is killed when its handle drops, also when a test fails.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod admin;
pub mod client;
pub mod dns;
pub mod failover;
pub mod harness;
pub mod hostile;
pub mod http;
pub mod lab_cut;
pub mod lab_layout;
pub mod netlab;
pub mod procs;
pub mod proxy;
pub mod relay;
pub mod rng;
pub mod scrape;
pub mod sentinel;
pub mod sentinel_events;
pub mod servers;
pub mod tls;
pub mod writer;

pub use client::{Client, Frame};
pub use procs::{free_port, Proxy, ProxyBuilder, RedisBuilder, RedisServer};
pub use relay::Relay;
pub use sentinel::{replication, Group, GroupOptions};

/// Installs a tracing subscriber once (RUST_LOG controls it), so proxy logs from in-process
/// parts show up in failing tests.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Records that test `test` did not run and why (no network namespaces, a server binary not
/// installed): a marker file `target/not-run/<test>` holding `reason`, which `scripts/test`
/// reports after the run, and a line now. A test that cannot run must not pass silently.
pub fn not_run(test: &str, reason: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/not-run");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(test), format!("{reason}\n"));
    eprintln!("NOT RUN ({reason}): {test}");
}
