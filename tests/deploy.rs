//! What an operator applies (`deploy/`), checked offline. Every Kustomize overlay under
//! `deploy/kubernetes/overlays/`, and the base, is rendered with `kubectl kustomize`; every
//! rendered manifest is validated against the Kubernetes OpenAPI schemas (Kubernetes 1.30, the
//! oldest the manifests support, and 1.37) by the Python package kubernetes-validate, strictly
//! (an unknown field is an error). The custom resources it has no schema for (ServiceMonitor,
//! PrometheusRule, cert-manager Certificate) get checks of their own. Each overlay's proxy
//! configuration is taken out of its rendered ConfigMap and run through
//! `redis-failover-proxy --check` with the environment variables and files the pod provides, and
//! compared with the Deployment (ports, probes, drain timing). The rendered workload (the
//! Deployment, Services, PodDisruptionBudget, ServiceMonitor and the TLS overlay's Certificate)
//! is checked in `tests/deploy_workload.rs`, the Grafana dashboard and the alert rules in
//! `tests/deploy_monitoring.rs`, the Dockerfile in `tests/deploy_image.rs`; the helpers they
//! all share are in `tests/kube/`.
//!
//! Tools: `kubectl` (`RFP_KUBECTL`, or `kubectl` on PATH; `scripts/install-deps kubectl`
//! installs Debian's kubernetes-client) and a Python with kubernetes-validate (`RFP_PYTHON`, as
//! scripts/test sets it, or else `target/pyvenv`, made and filled here when missing). A missing
//! tool fails every test: none passes without checking.
//!
//! The manifests are written in the kustomize syntax kubectl 1.20 (Debian 12's) still reads, so
//! the same files render with it and with a current kubectl.

mod kube;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use kube::promql::*;
use kube::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Tests: rendering and schemas

/// Steps: list deploy/kubernetes/overlays/ and expect exactly the five deployments of
/// the README's list of deployments; render the base and every overlay with `kubectl kustomize`; validate
/// every rendered document and deploy/prometheus/alerts.yaml against the Kubernetes 1.30 and
/// 1.37 schemas (strict); expect no error, the same kinds in every overlay (plus a
/// Certificate in the TLS one), and schema-less documents only of the three custom kinds.
#[test]
fn every_overlay_renders_and_passes_the_kubernetes_schemas() {
    let mut dirs: Vec<String> = std::fs::read_dir(root().join("deploy/kubernetes/overlays"))
        .expect("deploy/kubernetes/overlays")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let expected: Vec<String> = OVERLAYS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        dirs, expected,
        "one overlay per deployment, each listed in OVERLAYS"
    );

    let r = rendered();
    assert!(
        r.schema_errors.is_empty(),
        "Kubernetes schema errors:\n{}",
        r.schema_errors.join("\n")
    );
    let custom: BTreeSet<String> = ["Certificate", "PrometheusRule", "ServiceMonitor"]
        .map(String::from)
        .into();
    assert!(
        r.unchecked_kinds.is_subset(&custom),
        "{:?}",
        r.unchecked_kinds
    );
    for (name, docs) in &r.sets {
        let mut kinds: Vec<&str> = docs.iter().map(|d| text(d, "/kind")).collect();
        kinds.sort();
        let mut want = vec![
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ];
        if name == "three-sites-witness-tls" {
            want.insert(0, "Certificate");
        }
        assert_eq!(kinds, want, "{name}");
    }
    assert_eq!(r.alerts.len(), 1, "alerts.yaml holds one PrometheusRule");
}

/// Steps: write a Deployment with an unknown field and a Service whose port is a string, run
/// the schema validation on them, and expect both rejected; run the PromQL check on queries
/// with an unknown metric, an unknown label, a grouping label no series has and an unknown
/// function, and expect each reported. The checks above are only worth something if they
/// can fail.
#[test]
fn the_checks_reject_broken_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: i}]
      unknownField: true
---
apiVersion: v1
kind: Service
metadata: {name: y}
spec:
  ports: [{port: "six"}]
"#,
    )
    .expect("write");
    let errors = strings(&validate_files(&[bad])["errors"]);
    let joined = errors.join("\n");
    assert!(joined.contains("unknownField"), "{joined}");
    assert!(joined.contains("Service/y"), "{joined}");

    for (expr, needle) in [
        (
            "rate(redis_failover_proxy_comands_total[5m])",
            "not a metric",
        ),
        (
            "redis_failover_proxy_node_up{zone=\"a\"}",
            "has no label zone",
        ),
        (
            "sum by (site) (redis_failover_proxy_commands_total)",
            "label site",
        ),
        (
            "rat(redis_failover_proxy_commands_total[5m])",
            "unknown function",
        ),
        ("up", "not a metric"),
    ] {
        let (_, problems) = check_promql(expr);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{expr}: {problems:?}"
        );
    }
    let (q, problems) = check_promql(
        "histogram_quantile(0.99, sum by (le, class) (rate(redis_failover_proxy_command_duration_seconds_bucket{pod=~\"$pod\"}[$__rate_interval])))",
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        missing_template_labels(&q, "p99 {{class}} {{node}}"),
        ["node"]
    );
}

// ---------------------------------------------------------------------------------------------
// Tests: the proxy configuration of each overlay

/// Steps: for the base and every overlay, take proxy.toml out of the rendered ConfigMap the
/// container's `--config` path is mounted from; expect every `{ env = ... }` it names to be a
/// container variable from a Secret, and every `{ file = ... }` and every TLS file (certificate,
/// key, CA) to be a mounted Secret key; write the file (with those files created under a
/// temporary folder: certificates made here for the TLS ones) and run
/// `redis-failover-proxy --config <it> --check` with those variables set; expect exit code 0.
/// Then compare it with the Deployment: `listen` on the container's redis port, `admin` on
/// all interfaces at the admin port, and preStop sleep + drain_delay + grace below
/// terminationGracePeriodSeconds.
#[test]
fn each_overlay_config_passes_check_with_what_the_pod_provides() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, docs) in &rendered().sets {
        let d = one(docs, "Deployment", Some("redis-failover-proxy"));
        let c = proxy_container(d);
        let mut text_cfg = proxy_config(docs);
        let cfg: toml::Value =
            toml::from_str(&text_cfg).unwrap_or_else(|e| panic!("{name}: not TOML: {e}"));

        let mut refs = Vec::new();
        secret_refs(&cfg, &mut refs);
        let mut env = Vec::new();
        let files_root = dir.path().join(name);
        for r in refs {
            match r {
                SecretRef::Env(var) => {
                    let def = list(c, "/env")
                        .iter()
                        .find(|e| e["name"] == var.as_str())
                        .unwrap_or_else(|| panic!("{name}: the container does not set {var}"));
                    assert!(
                        def.pointer("/valueFrom/secretKeyRef/name").is_some(),
                        "{name}: {var} must come from a Secret, not a literal"
                    );
                    env.push((var.clone(), format!("deploy-test-{var}")));
                }
                SecretRef::File(path) => {
                    assert!(
                        matches!(file_source(d, &path), Some(FileSource::Secret { .. })),
                        "{name}: {path} is not a mounted Secret key"
                    );
                    let local = files_root.join(path.trim_start_matches('/'));
                    std::fs::create_dir_all(local.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&local, "deploy-test-secret\n").expect("write secret");
                    text_cfg = text_cfg.replace(
                        &format!("\"{path}\""),
                        &format!("\"{}\"", local.to_string_lossy()),
                    );
                }
            }
        }
        for (key, path) in support::tls::tls_paths(&cfg) {
            assert!(
                matches!(file_source(d, &path), Some(FileSource::Secret { .. })),
                "{name}: {key} = {path} is not a mounted Secret key"
            );
        }
        let pki = support::tls::Pki::new("deploy test CA");
        text_cfg = support::tls::with_stand_in_tls_files(&text_cfg, &pki);
        std::fs::create_dir_all(&files_root).expect("mkdir");
        let file = files_root.join("proxy.toml");
        std::fs::write(&file, &text_cfg).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_redis-failover-proxy"))
            .arg("--config")
            .arg(&file)
            .arg("--check")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run the proxy binary");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: --check refused the overlay's proxy.toml:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));

        // The configuration against the Deployment.
        let addr = |key: &str| -> SocketAddr {
            cfg.get(key)
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("{name}: no {key}"))
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {key}: {e}"))
        };
        let listen = addr("listen");
        assert!(
            listen.ip().is_unspecified(),
            "{name}: listen on all interfaces"
        );
        assert_eq!(
            i64::from(listen.port()),
            container_port(c, &Value::from("redis")),
            "{name}: listen port"
        );
        let admin = addr("admin");
        assert!(
            admin.ip().is_unspecified(),
            "{name}: admin must be reachable by the kubelet and Prometheus"
        );
        assert_eq!(
            i64::from(admin.port()),
            container_port(c, &Value::from("admin")),
            "{name}: admin port"
        );
        let pre_stop = Duration::from_secs(int(c, "/lifecycle/preStop/sleep/seconds") as u64);
        let drain = shutdown_duration(&cfg, "drain_delay", DEFAULT_DRAIN_DELAY);
        let grace = shutdown_duration(&cfg, "grace", DEFAULT_GRACE);
        let allowed =
            Duration::from_secs(int(d, "/spec/template/spec/terminationGracePeriodSeconds") as u64);
        assert!(
            pre_stop + drain + grace < allowed,
            "{name}: preStop {pre_stop:?} + drain_delay {drain:?} + grace {grace:?} must stay \
             below terminationGracePeriodSeconds {allowed:?}"
        );
    }
}

/// Steps: for each overlay that copies an example of config/, parse both files and expect
/// the same `[failover]` and `[[sites]]`: the Kubernetes copy may change how the proxy runs
/// (addresses, logs, shutdown) but not which nodes it follows or how.
#[test]
fn overlay_configs_keep_the_examples_sites_and_failover() {
    let r = rendered();
    for (name, example) in OVERLAYS {
        let Some(example) = example else { continue };
        let ours: toml::Value = toml::from_str(&proxy_config(&r.sets[*name])).expect("TOML");
        let theirs: toml::Value =
            toml::from_str(&std::fs::read_to_string(root().join(example)).expect("example"))
                .expect("example TOML");
        for key in ["failover", "sites"] {
            assert_eq!(
                ours.get(key),
                theirs.get(key),
                "{name}: {key} differs from {example}"
            );
        }
    }
}
