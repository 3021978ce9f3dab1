//! What an operator applies (`deploy/`), checked offline. Every Kustomize overlay under
//! `deploy/kubernetes/overlays/`, and the base, is rendered with `kubectl kustomize`; every
//! rendered manifest is validated against the Kubernetes OpenAPI schemas (Kubernetes 1.30, the
//! oldest the manifests support, and 1.37) by the Python package kubernetes-validate, strictly
//! (an unknown field is an error). The custom resources it has no schema for (ServiceMonitor,
//! PrometheusRule, cert-manager Certificate) get checks of their own here. Each overlay's proxy
//! configuration is taken out of its rendered ConfigMap and run through
//! `redis-failover-proxy --check` with the environment variables and files the pod provides, and
//! compared with the Deployment (ports, probes, drain timing). The Grafana dashboard and the
//! alert rules are checked in `tests/deploy_monitoring.rs`, the Dockerfile in
//! `tests/deploy_image.rs`; the helpers all three share are in `tests/kube/`.
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
// Tests: the workload

/// Steps: for the base and every overlay, read the rendered Deployment, Services,
/// PodDisruptionBudget, ServiceAccount and ServiceMonitor and check: at least 3 replicas and a
/// rolling update that never drops capacity; anti-affinity across nodes and a spread over
/// zones; non-root, read-only root file system, no privilege escalation, all capabilities
/// dropped, no service-account token; CPU and memory requests and limits; an image with a tag
/// other than latest; readiness on /readyz, liveness and startup on /livez, all on the admin
/// port; a preStop sleep; the client Service on 6379 to the proxy's port without unready
/// pods, the admin Service publishing unready pods; the PDB at maxUnavailable 1; the
/// ServiceMonitor scraping /metrics on the admin Service's port; selectors matching the pods.
#[test]
fn workload_is_spread_secured_probed_and_disruption_safe() {
    let mut problems = Vec::new();
    for (name, docs) in &rendered().sets {
        let mut expect = |ok: bool, what: &str| {
            if !ok {
                problems.push(format!("{name}: {what}"));
            }
        };
        let d = one(docs, "Deployment", Some("redis-failover-proxy"));
        let pod = &d["spec"]["template"];
        let spec = &pod["spec"];
        let labels = &pod["metadata"]["labels"];
        let c = proxy_container(d);

        expect(int(d, "/spec/replicas") >= 3, "at least 3 replicas");
        expect(
            selects(&d["spec"]["selector"]["matchLabels"], labels),
            "the Deployment selects its pods",
        );
        expect(
            d.pointer("/spec/strategy/rollingUpdate/maxUnavailable") == Some(&Value::from(0)),
            "a rollout must not drop capacity (maxUnavailable 0)",
        );
        let anti = list(
            spec,
            "/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution",
        );
        expect(
            anti.iter().any(|t| {
                t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                    && selects(
                        &t["podAffinityTerm"]["labelSelector"]["matchLabels"],
                        labels,
                    )
            }),
            "pod anti-affinity across nodes",
        );
        expect(
            list(spec, "/topologySpreadConstraints").iter().any(|t| {
                t["topologyKey"] == "topology.kubernetes.io/zone"
                    && selects(&t["labelSelector"]["matchLabels"], labels)
            }),
            "a topology spread across zones",
        );

        // Security.
        let psc = &spec["securityContext"];
        expect(psc["runAsNonRoot"] == true, "runAsNonRoot");
        expect(int(psc, "/runAsUser") > 0, "a numeric non-root runAsUser");
        expect(
            spec["automountServiceAccountToken"] == false,
            "no service-account token in the pod",
        );
        let sa = one(
            docs,
            "ServiceAccount",
            Some(text(spec, "/serviceAccountName")),
        );
        expect(
            sa["automountServiceAccountToken"] == false,
            "no token for the ServiceAccount",
        );
        let sc = &c["securityContext"];
        expect(
            sc["readOnlyRootFilesystem"] == true,
            "read-only root file system",
        );
        expect(
            sc["allowPrivilegeEscalation"] == false,
            "no privilege escalation",
        );
        expect(
            strings(&sc["capabilities"]["drop"]) == ["ALL"],
            "all capabilities dropped",
        );
        for ptr in [
            "/resources/requests/cpu",
            "/resources/requests/memory",
            "/resources/limits/cpu",
            "/resources/limits/memory",
        ] {
            expect(c.pointer(ptr).is_some(), ptr);
        }
        let image = text(c, "/image");
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        expect(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "an image with a version tag",
        );

        // Probes: all on the admin port, the right paths.
        let admin_port = container_port(c, &Value::from("admin"));
        for (probe, path) in [
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/livez"),
            ("startupProbe", "/livez"),
        ] {
            let get = &c[probe]["httpGet"];
            expect(
                get["path"] == path && container_port(c, &get["port"]) == admin_port,
                &format!("{probe}: GET {path} on the admin port"),
            );
        }
        expect(
            int(c, "/lifecycle/preStop/sleep/seconds") > 0,
            "a preStop sleep",
        );

        // The client Service: Redis only, ready pods only.
        let svc = one(docs, "Service", Some("redis-failover-proxy"));
        let ports = list(svc, "/spec/ports");
        expect(
            selects(&svc["spec"]["selector"], labels),
            "the Service selects the pods",
        );
        expect(
            svc["spec"]["publishNotReadyAddresses"] == false,
            "the client Service publishes only ready pods",
        );
        expect(
            ports.len() == 1
                && ports[0]["port"] == 6379
                && container_port(c, &ports[0]["targetPort"])
                    == container_port(c, &Value::from("redis")),
            "the client Service carries only 6379, to the proxy's port",
        );
        // The admin Service: every pod, for Prometheus.
        let admin = one(docs, "Service", Some("redis-failover-proxy-admin"));
        let admin_ports = list(admin, "/spec/ports");
        expect(
            selects(&admin["spec"]["selector"], labels),
            "the admin Service selects the pods",
        );
        expect(
            admin["spec"]["publishNotReadyAddresses"] == true,
            "the admin Service publishes unready pods (their metrics matter most)",
        );
        expect(
            admin_ports
                .iter()
                .any(|p| container_port(c, &p["targetPort"]) == admin_port),
            "the admin Service reaches the admin port",
        );

        // Disruption budget.
        let pdb = one(docs, "PodDisruptionBudget", None);
        expect(pdb["spec"]["maxUnavailable"] == 1, "PDB maxUnavailable 1");
        expect(
            selects(&pdb["spec"]["selector"]["matchLabels"], labels),
            "the PDB selects the pods",
        );

        // ServiceMonitor (no schema: checked here).
        let sm = one(docs, "ServiceMonitor", None);
        let sm_selector = &sm["spec"]["selector"]["matchLabels"];
        expect(
            sm["apiVersion"] == "monitoring.coreos.com/v1",
            "ServiceMonitor apiVersion",
        );
        expect(
            selects(sm_selector, &admin["metadata"]["labels"])
                && !selects(sm_selector, &svc["metadata"]["labels"]),
            "the ServiceMonitor selects the admin Service and not the client one",
        );
        let endpoints = list(sm, "/spec/endpoints");
        expect(!endpoints.is_empty(), "ServiceMonitor endpoints");
        for e in endpoints {
            expect(
                admin_ports.iter().any(|p| p["name"] == e["port"]) && e["path"] == "/metrics",
                "ServiceMonitor endpoints scrape /metrics on an admin Service port",
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Steps: in the TLS overlay, read the cert-manager Certificate (no schema: checked here):
/// secretName, issuerRef.name and a subject, a client-auth usage; expect the Deployment to
/// mount that Secret's ca.crt, tls.crt and tls.key next to proxy.toml, and proxy.toml to
/// use them for the nodes (`[backend.tls]`); expect the overlay's nodes on the TLS port 6380.
#[test]
fn tls_overlay_mounts_the_certificate_cert_manager_issues() {
    let docs = &rendered().sets["three-sites-witness-tls"];
    let cert = one(docs, "Certificate", None);
    assert_eq!(cert["apiVersion"], "cert-manager.io/v1");
    let secret = text(cert, "/spec/secretName");
    assert!(!text(cert, "/spec/issuerRef/name").is_empty());
    assert!(
        cert["spec"].get("commonName").is_some() || cert["spec"].get("dnsNames").is_some(),
        "a Certificate needs a subject"
    );
    assert!(strings(&cert["spec"]["usages"]).contains(&"client auth".to_string()));

    let d = one(docs, "Deployment", Some("redis-failover-proxy"));
    assert!(
        mounted_secrets(d).contains(secret),
        "{secret} is not mounted"
    );
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        assert_eq!(
            file_source(d, &format!("/etc/redis-failover-proxy/tls/{key}")),
            Some(FileSource::Secret {
                name: secret.to_string(),
                key: key.to_string()
            }),
            "{key}"
        );
    }
    let cfg: toml::Value = toml::from_str(&proxy_config(docs)).expect("TOML");
    let tls = support::tls::tls_paths(&cfg);
    for (key, file) in [("ca", "ca.crt"), ("cert", "tls.crt"), ("key", "tls.key")] {
        let want = (
            format!("backend.tls.{key}"),
            format!("/etc/redis-failover-proxy/tls/{file}"),
        );
        assert!(tls.contains(&want), "proxy.toml lacks {want:?}: {tls:?}");
    }
    for site in cfg["sites"].as_array().expect("sites") {
        // A witness site has Sentinels only.
        let nodes = site.get("nodes").and_then(toml::Value::as_array);
        for node in nodes.into_iter().flatten() {
            assert!(
                node.as_str().is_some_and(|n| n.ends_with(":6380")),
                "{node}: TLS nodes listen on 6380"
            );
        }
    }
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
