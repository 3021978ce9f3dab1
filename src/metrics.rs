//! Metric names, in one place, each described once. Labels come from small fixed sets
//! (command class, error kind, node address, site, state), never from keys or client
//! addresses. The hot paths use handles registered once ([`hot`]), so recording a command costs
//! an atomic add, not a registry lookup.
//!
//! Without an installed recorder (unit tests, benches, library use) every handle is a no-op.

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const COMMANDS: &str = "redis_failover_proxy_commands_total";
pub const COMMAND_DURATION: &str = "redis_failover_proxy_command_duration_seconds";
pub const ERRORS: &str = "redis_failover_proxy_errors_total";
pub const CLIENT_CONNECTIONS: &str = "redis_failover_proxy_client_connections";
pub const BACKEND_CONNECTIONS: &str = "redis_failover_proxy_backend_connections";
pub const NODE_UP: &str = "redis_failover_proxy_node_up";
pub const NODE_ROLE: &str = "redis_failover_proxy_node_role";
pub const MASTER_INFO: &str = "redis_failover_proxy_master_info";
pub const TOPOLOGY_EPOCH: &str = "redis_failover_proxy_topology_epoch";
pub const STATE: &str = "redis_failover_proxy_state";
pub const HOLDS: &str = "redis_failover_proxy_holds_total";
pub const HOLD_DURATION: &str = "redis_failover_proxy_hold_duration_seconds";
pub const HELD_CLIENTS: &str = "redis_failover_proxy_held_clients";
pub const RETRIES: &str = "redis_failover_proxy_retries_total";
pub const FAILOVERS: &str = "redis_failover_proxy_failovers_total";
pub const FAILOVER_DURATION: &str = "redis_failover_proxy_failover_duration_seconds";
pub const DNS_RESOLUTIONS: &str = "redis_failover_proxy_dns_resolutions_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "redis_failover_proxy_tls_handshake_failures_total";
pub const TLS_RELOADS: &str = "redis_failover_proxy_tls_reloads_total";
pub const AUTH_FAILURES: &str = "redis_failover_proxy_auth_failures_total";
pub const AUTHORITY_REACHABLE: &str = "redis_failover_proxy_authority_reachable";
pub const SENTINELS_ANSWERING: &str = "redis_failover_proxy_sentinels_answering";
/// Gauge: 1 while the master in use holds its write lease, 0 while it is lapsed (absent
/// where the authority needs none).
pub const WRITE_LEASE_HELD: &str = "redis_failover_proxy_write_lease_held";
/// Counter: reads served by the last verified master while its write lease was lapsed.
pub const STALE_READS: &str = "redis_failover_proxy_stale_reads_total";
/// Counter: times the write lease lapsed (the master could not be confirmed in time).
pub const WRITE_LEASE_LAPSES: &str = "redis_failover_proxy_write_lease_lapses_total";

/// Counter: writes answered only after the replicas acknowledged them (durable writes).
pub const DURABLE_CONFIRMED: &str = "redis_failover_proxy_durable_writes_confirmed_total";
/// Counter: writes applied on the master whose replicas did not acknowledge them in time.
pub const DURABLE_UNCONFIRMED: &str = "redis_failover_proxy_durable_writes_unconfirmed_total";
/// Histogram: time a durable write's reply waited for the replicas after Redis answered it.
pub const DURABLE_WAIT: &str = "redis_failover_proxy_durable_wait_seconds";

/// Command classes (the `class` label).
pub const CLASSES: [&str; 10] = [
    "read",
    "write",
    "blocking",
    "wait",
    "pubsub",
    "transaction",
    "local",
    "admin",
    "monitor",
    "tracking",
];

/// Error kinds the proxy answers with (the `kind` label).
pub const ERROR_KINDS: [&str; 14] = [
    "protocol",
    "noauth",
    "wrongpass",
    "auth_limited",
    "noperm",
    "refused",
    "no_master",
    "not_sent",
    "outcome_unknown",
    "unconfirmed",
    "limit",
    "syntax",
    "state",
    "other",
];

/// Installs the Prometheus recorder and describes every metric; returns the handle that
/// renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0,
        ])
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(COMMANDS, "Commands received from clients, by class.");
    describe_histogram!(
        COMMAND_DURATION,
        Unit::Seconds,
        "Time from sending commands to Redis to their replies, by class."
    );
    describe_counter!(ERRORS, "Errors the proxy answered with itself, by kind.");
    describe_gauge!(CLIENT_CONNECTIONS, "Connected clients.");
    describe_gauge!(
        BACKEND_CONNECTIONS,
        "Open connections to Redis nodes, by kind (lane, dedicated)."
    );
    describe_gauge!(NODE_UP, "1 when a node passes its health probes.");
    describe_gauge!(
        NODE_ROLE,
        "1 for the role a node reports (master, replica)."
    );
    describe_gauge!(
        MASTER_INFO,
        "1 for the master in use, labelled with its address and run_id."
    );
    describe_gauge!(TOPOLOGY_EPOCH, "Epoch of the current topology snapshot.");
    describe_gauge!(
        STATE,
        "1 for the current routing state (verified, holding, no_master)."
    );
    describe_counter!(HOLDS, "Hold episodes: a client waited for a master.");
    describe_histogram!(
        HOLD_DURATION,
        Unit::Seconds,
        "How long clients waited for a master."
    );
    describe_gauge!(HELD_CLIENTS, "Clients waiting for a master now.");
    describe_counter!(RETRIES, "Commands sent again after a failure, by reason.");
    describe_counter!(FAILOVERS, "Changes of the master in use.");
    describe_histogram!(
        FAILOVER_DURATION,
        Unit::Seconds,
        "Time from losing the master in use to verifying the next."
    );
    describe_counter!(
        DNS_RESOLUTIONS,
        "DNS lookups of node and Sentinel names, by result."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "Failed TLS handshakes, by side (client, backend) and reason."
    );
    describe_counter!(
        TLS_RELOADS,
        "Certificate files re-read after they changed, by result."
    );
    describe_counter!(AUTH_FAILURES, "Failed client authentications.");
    describe_gauge!(
        AUTHORITY_REACHABLE,
        "1 when the failover authority can be consulted from here."
    );
    describe_gauge!(SENTINELS_ANSWERING, "Sentinels answering their queries.");
    describe_gauge!(
        WRITE_LEASE_HELD,
        "1 while the master in use holds its write lease, 0 while it is lapsed."
    );
    describe_counter!(
        STALE_READS,
        "Reads served by the last verified master while its write lease was lapsed (stale_reads = \"serve\")."
    );
    describe_counter!(
        DURABLE_CONFIRMED,
        "Durable writes answered after the replicas acknowledged them."
    );
    describe_counter!(
        DURABLE_UNCONFIRMED,
        "Durable writes applied on the master but not acknowledged by enough replicas in time."
    );
    describe_histogram!(
        DURABLE_WAIT,
        Unit::Seconds,
        "Time durable writes waited for the replicas after the master answered them."
    );
    describe_counter!(
        WRITE_LEASE_LAPSES,
        "Times the write lease lapsed: the master could not be confirmed by a majority in time."
    );
}

/// Handles used on every command.
#[derive(Debug)]
pub struct Hot {
    /// `commands_total` by class index.
    pub commands: Vec<Counter>,
    /// `command_duration_seconds` by class index.
    pub durations: Vec<Histogram>,
    /// `errors_total` by kind index.
    pub errors: Vec<Counter>,
    /// `client_connections`.
    pub clients: Gauge,
    /// `held_clients`.
    pub held: Gauge,
    /// `holds_total`.
    pub holds: Counter,
    /// `hold_duration_seconds`.
    pub hold_duration: Histogram,
    /// `auth_failures_total`.
    pub auth_failures: Counter,
}

/// The hot-path handles (registered on first use; install the recorder before).
pub fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| Hot {
        commands: CLASSES
            .iter()
            .map(|c| counter!(COMMANDS, "class" => *c))
            .collect(),
        durations: CLASSES
            .iter()
            .map(|c| histogram!(COMMAND_DURATION, "class" => *c))
            .collect(),
        errors: ERROR_KINDS
            .iter()
            .map(|k| counter!(ERRORS, "kind" => *k))
            .collect(),
        clients: gauge!(CLIENT_CONNECTIONS),
        held: gauge!(HELD_CLIENTS),
        holds: counter!(HOLDS),
        hold_duration: histogram!(HOLD_DURATION),
        auth_failures: counter!(AUTH_FAILURES),
    })
}

/// Index of `kind` in [`ERROR_KINDS`] (the last one for unknown kinds).
pub fn error_index(kind: &str) -> usize {
    ERROR_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(ERROR_KINDS.len() - 1)
}

/// Counts a retry.
pub fn retry(reason: &'static str) {
    counter!(RETRIES, "reason" => reason).increment(1);
}

/// Counts a backend connection opening (+1) or closing (-1).
pub fn backend_connection(kind: &'static str, delta: f64) {
    gauge!(BACKEND_CONNECTIONS, "kind" => kind).increment(delta);
}

/// Counts a DNS lookup.
pub fn dns(ok: bool) {
    counter!(DNS_RESOLUTIONS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Counts a failed TLS handshake.
pub fn tls_failure(side: &'static str, reason: &'static str) {
    counter!(TLS_HANDSHAKE_FAILURES, "side" => side, "reason" => reason).increment(1);
}

/// Counts a failed client-side TLS handshake.
pub fn tls_handshake_failure(reason: &'static str) {
    tls_failure("client", reason);
}

/// Counts a re-read of changed certificate files.
pub fn tls_reload(ok: bool) {
    counter!(TLS_RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Counts one read served while the write lease was lapsed.
pub fn stale_read() {
    metrics::counter!(STALE_READS).increment(1);
}

/// Records the outcome of `writes` durable writes that waited `waited` for their replicas.
pub fn durable_writes(writes: usize, confirmed: bool, waited: std::time::Duration) {
    let name = if confirmed {
        DURABLE_CONFIRMED
    } else {
        DURABLE_UNCONFIRMED
    };
    counter!(name).increment(writes as u64);
    histogram!(DURABLE_WAIT).record(waited.as_secs_f64());
}
