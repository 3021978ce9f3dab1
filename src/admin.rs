//! The admin HTTP endpoint, on its own address (never the clients' port):
//!
//! - `GET /livez`: the process and its control runtime answer. Nothing external is checked,
//!   so a Redis outage never gets the proxy restarted.
//! - `GET /readyz`: not draining, a first topology decision made, and the failover authority
//!   reachable from this pod. Deliberately not "a master is known": during a failover every
//!   replica of the proxy would go unready at once and the Service would empty, turning a
//!   held write into a refused connection.
//! - `GET /topology`: the current snapshot as JSON.
//! - `GET /metrics`: Prometheus text.
//! - `POST /switchover[?to=HOST:PORT]`: planned, zero-loss switchover.
//! - `POST /failover?force=true&to=HOST:PORT`: operator-forced promotion when the master is
//!   gone.
//!
//! With a bearer token configured, `/topology` and the POST routes require it; the probes and
//! `/metrics` stay open for the kubelet and Prometheus (keep the port on a private network).
//! Without a token, the POST routes fail closed: they answer only on a loopback address, where
//! no one but the host's own processes can reach them; elsewhere they answer 403.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::failover::operate::{OpError, Operator};
use crate::shutdown::Drain;
use crate::topology::TopologyHandle;

/// What the admin endpoint serves from.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Topology.
    pub topology: Arc<TopologyHandle>,
    /// Settings a reload may change (the users' durable-writes settings, for `/topology`).
    pub dynamic: Arc<arc_swap::ArcSwap<crate::session::Dynamic>>,
    /// Metrics renderer (none: metrics disabled).
    pub metrics: Option<PrometheusHandle>,
    /// Drain signal (ready turns false at once).
    pub drain: Drain,
    /// Operator requests.
    pub operator: Operator,
    /// Bearer token for the protected routes.
    pub token: Option<Secret>,
    /// Whether the endpoint listens on a loopback address (operations need no token there).
    pub loopback: bool,
}

/// Why the POST routes are refused without a token on a non-loopback address, and how to
/// enable them (also logged at start-up).
pub const OPERATIONS_NEED_TOKEN: &str = "operations are disabled: the admin endpoint listens on a non-loopback address and no token is configured; set one with [admin_auth] token = \"...\" (or token = { file = \"/path\" } or token = { env = \"VAR\" }) and send it as Authorization: Bearer <token>";

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, admin: Admin, stop: CancellationToken) {
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/topology", get(topology))
        .route("/metrics", get(metrics))
        .route("/switchover", post(switchover))
        .route("/failover", post(failover))
        .with_state(Arc::new(admin));
    let shutdown = async move { stop.cancelled().await };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "admin endpoint failed");
    }
}

type Shared = State<Arc<Admin>>;

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(a): Shared) -> Response {
    let topo = a.topology.load();
    let not_ready = if a.drain.is_draining() {
        Some("draining".to_string())
    } else if topo.epoch == 0 {
        Some("starting: no topology decision yet".to_string())
    } else if !topo.authority.reachable && topo.authority.voters.1 > 0 {
        Some(format!(
            "{} authority unreachable ({} of {} Sentinels answering)",
            topo.authority.kind, topo.authority.voters.0, topo.authority.voters.1
        ))
    } else if !topo.authority.reachable {
        Some(format!(
            "{} authority unreachable (a majority of the voting members did not answer in time)",
            topo.authority.kind
        ))
    } else {
        None
    };
    match not_ready {
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
        None => (StatusCode::OK, format!("ready ({})\n", topo.state.label())).into_response(),
    }
}

/// Whether the request carries the configured token (or none is configured).
fn authorized(a: &Admin, headers: &HeaderMap) -> bool {
    let Some(token) = &a.token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(token.expose().as_bytes()))
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n").into_response()
}

/// The answer refusing an operation, if it must be refused: a wrong or missing token, or no
/// token configured on an address others can reach (an open switchover or forced failover
/// would be anyone's to trigger).
fn refuse_operation(a: &Admin, headers: &HeaderMap) -> Option<Response> {
    if a.token.is_none() && !a.loopback {
        let body = format!("{OPERATIONS_NEED_TOKEN}\n");
        return Some((StatusCode::FORBIDDEN, body).into_response());
    }
    (!authorized(a, headers)).then(unauthorized)
}

async fn topology(State(a): Shared, headers: HeaderMap) -> Response {
    if !authorized(&a, &headers) {
        return unauthorized();
    }
    let topo = a.topology.load();
    Json(TopologyView {
        report: topo.report(),
        durability: crate::topology::durability::reports(
            &topo,
            &a.dynamic.load().users.durabilities(),
        ),
    })
    .into_response()
}

/// `/topology`: the snapshot, and the durable-writes settings judged against it.
#[derive(serde::Serialize)]
struct TopologyView {
    #[serde(flatten)]
    report: crate::topology::Report,
    durability: Vec<crate::topology::durability::DurabilityReport>,
}

async fn metrics(State(a): Shared) -> Response {
    match &a.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are disabled\n").into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct SwitchParams {
    to: Option<String>,
}

async fn switchover(
    State(a): Shared,
    headers: HeaderMap,
    Query(p): Query<SwitchParams>,
) -> Response {
    if let Some(refused) = refuse_operation(&a, &headers) {
        return refused;
    }
    tracing::info!(
        to = p.to.as_deref().unwrap_or("any replica"),
        "planned switchover requested"
    );
    outcome(a.operator.switchover(p.to.as_deref()).await)
}

#[derive(Debug, Deserialize)]
struct FailoverParams {
    to: Option<String>,
    #[serde(default)]
    force: bool,
}

async fn failover(
    State(a): Shared,
    headers: HeaderMap,
    Query(p): Query<FailoverParams>,
) -> Response {
    if let Some(refused) = refuse_operation(&a, &headers) {
        return refused;
    }
    let Some(to) = p.to else {
        return (StatusCode::BAD_REQUEST, "to=HOST:PORT is required\n").into_response();
    };
    tracing::warn!(to = %to, force = p.force, "forced failover requested");
    outcome(a.operator.failover(&to, p.force).await)
}

fn outcome<T: serde::Serialize>(r: Result<T, OpError>) -> Response {
    match r {
        Ok(o) => Json(o).into_response(),
        Err(OpError::Refused(why)) => (StatusCode::CONFLICT, format!("{why}\n")).into_response(),
        Err(OpError::Failed(why)) => (StatusCode::BAD_GATEWAY, format!("{why}\n")).into_response(),
    }
}
