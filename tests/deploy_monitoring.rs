//! The Grafana dashboard and the Prometheus alert rules under `deploy/` may use only the
//! proxy's metric names and labels (and the labels Prometheus adds when it scrapes through the
//! ServiceMonitor); every alert the operators need is there. Rendering and tools as in
//! `tests/deploy.rs`.

mod kube;

use std::collections::{BTreeMap, BTreeSet};

use kube::promql::*;
use kube::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Tests: monitoring

/// Steps: parse deploy/grafana/redis-failover-proxy.json; expect a Prometheus datasource
/// variable and `namespace` and `pod` query variables; for every panel (rows included)
/// expect a unique id and a grid position, and for every query the datasource variable, a
/// namespace filter, only proxy metrics with their own labels (PromQL read here), and legend
/// labels the query's outer aggregation keeps; expect the dashboard to cover the metrics the
/// operator needs (traffic, latency, errors, connections, master and epoch, state, holds,
/// failovers, node health and role, DNS, TLS).
#[test]
fn grafana_dashboard_uses_only_proxy_metrics() {
    let path = root().join("deploy/grafana/redis-failover-proxy.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard"))
        .expect("the dashboard is JSON");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["uid"].as_str().is_some_and(|t| !t.is_empty()));

    let vars = list(&dash, "/templating/list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["namespace", "pod"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        let (_, problems) = check_promql(
            q.and_then(|q| q.strip_prefix("label_values("))
                .and_then(|q| q.rsplit_once(',').map(|(sel, _)| sel))
                .unwrap_or_else(|| panic!("${name}: label_values(<selector>, label) expected")),
        );
        assert!(problems.is_empty(), "${name}: {problems:?}");
    }

    let mut panels: Vec<&Value> = Vec::new();
    for p in list(&dash, "/panels") {
        panels.push(p);
        panels.extend(list(p, "/panels"));
    }
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(ids.insert(int(p, "/id")), "panel id of {title} used twice");
        assert!(p["gridPos"]["w"].as_i64().is_some(), "{title}: gridPos");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = list(p, "/targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = text(t, "/expr");
            if !expr.contains("namespace=~\"$namespace\"") {
                problems.push(format!("{title}: {expr}: no namespace filter"));
            }
            let (q, mut p) = check_promql(expr);
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for l in missing_template_labels(&q, legend) {
                p.push(format!("{title}: legend {{{{{l}}}}} is dropped by {expr}"));
            }
            problems.extend(p);
            used.extend(q.series.into_iter().map(|(n, _)| n));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let used_short: BTreeSet<&str> = used
        .iter()
        .filter_map(|n| n.strip_prefix(METRIC_PREFIX))
        .map(|n| {
            n.strip_suffix("_bucket")
                .or_else(|| n.strip_suffix("_sum"))
                .or_else(|| n.strip_suffix("_count"))
                .filter(|base| series_labels(&format!("{METRIC_PREFIX}{base}_bucket")).is_some())
                .unwrap_or(n)
        })
        .collect();
    for needed in [
        "commands_total",
        "command_duration_seconds",
        "errors_total",
        "client_connections",
        "backend_connections",
        "master_info",
        "topology_epoch",
        "state",
        "holds_total",
        "hold_duration_seconds",
        "held_clients",
        "failovers_total",
        "retries_total",
        "node_up",
        "node_role",
        "authority_reachable",
        "dns_resolutions_total",
        "tls_handshake_failures_total",
    ] {
        assert!(used_short.contains(needed), "no panel shows {needed}");
    }
}

/// Steps: read deploy/prometheus/alerts.yaml (parsed by PyYAML in the schema step); expect a
/// monitoring.coreos.com/v1 PrometheusRule whose groups and alert names are unique, every rule
/// an alert with an expression, a `for` duration, a severity of critical/warning/info and a
/// summary; every expression only proxy metrics and labels, every `$labels.x` of the
/// annotations kept by the expression; and the alerts an operator needs: no master
/// (state != verified, 30 s), holding too long, replicas disagreeing on the master (count by
/// run_id of master_info), high error rate, authority unreachable, node down.
#[test]
fn alert_rules_are_complete_and_use_only_proxy_metrics() {
    let rule = &rendered().alerts[0];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(!text(rule, "/metadata/name").is_empty());
    let mut groups = BTreeSet::new();
    let mut alerts: BTreeMap<String, &Value> = BTreeMap::new();
    let mut problems = Vec::new();
    for g in list(rule, "/spec/groups") {
        assert!(groups.insert(text(g, "/name")), "group {} twice", g["name"]);
        for r in list(g, "/rules") {
            let name = text(r, "/alert");
            assert!(alerts.insert(name.to_string(), r).is_none(), "{name} twice");
            let dur = text(r, "/for");
            assert!(
                dur.len() > 1
                    && dur
                        .trim_end_matches(['s', 'm', 'h'])
                        .bytes()
                        .all(|c| c.is_ascii_digit()),
                "{name}: for = {dur:?}"
            );
            assert!(
                ["critical", "warning", "info"].contains(&text(r, "/labels/severity")),
                "{name}: severity"
            );
            assert!(
                !text(r, "/annotations/summary").is_empty(),
                "{name}: summary"
            );
            let expr = text(r, "/expr");
            let (q, p) = check_promql(expr);
            problems.extend(p.into_iter().map(|p| format!("{name}: {p}")));
            if let Some(annotations) = r["annotations"].as_object() {
                for a in annotations.values().filter_map(Value::as_str) {
                    for l in missing_template_labels(&q, a) {
                        problems.push(format!("{name}: $labels.{l} is dropped by its expression"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let find = |needle: &str, uses: &[&str]| {
        let (name, r) = alerts
            .iter()
            .find(|(n, _)| n.contains(needle))
            .unwrap_or_else(|| panic!("no alert named *{needle}*"));
        for u in uses {
            assert!(text(r, "/expr").contains(u), "{name} should use {u}");
        }
        *r
    };
    let no_master = find(
        "NoMaster",
        &["redis_failover_proxy_state{state!=\"verified\"}"],
    );
    assert_eq!(no_master["for"], "30s");
    find(
        "HoldingTooLong",
        &["redis_failover_proxy_state{state=\"holding\"}"],
    );
    find(
        "ReplicasDisagree",
        &[
            "redis_failover_proxy_master_info",
            "by (namespace, run_id)",
            "> 1",
        ],
    );
    find("HighErrorRate", &["redis_failover_proxy_errors_total"]);
    find(
        "AuthorityUnreachable",
        &["redis_failover_proxy_authority_reachable"],
    );
    find("NodeDown", &["redis_failover_proxy_node_up"]);
}
