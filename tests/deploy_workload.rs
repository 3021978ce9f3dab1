//! The workload `deploy/` applies, checked offline on the rendered manifests of the base and
//! every Kustomize overlay: the Deployment spread, secured and probed, the Services, the
//! disruption budget and the ServiceMonitor, and the certificate the TLS overlay mounts.
//! Rendering and tools as in `tests/deploy.rs`.

mod kube;
mod support;

use kube::*;
use serde_json::Value;

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
