//! Shared by the `deploy*` test targets: the tools (`kubectl`, a Python with
//! kubernetes-validate), rendering every Kustomize set once per test process and validating it
//! against the Kubernetes schemas, reading values out of the rendered manifests, and the proxy
//! configuration each overlay carries. [`promql`] knows the proxy's metrics and reads PromQL.
#![allow(dead_code, unreachable_pub)]

pub mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use redis_failover_proxy::config::parse_duration_str;
use serde_json::Value;

/// The overlays, one per deployment of the README's list of deployments, each with the example whose
/// `[failover]` and `[[sites]]` its proxy.toml must repeat (None: no example).
pub const OVERLAYS: &[(&str, Option<&str>)] = &[
    ("active-active", Some("config/active-active.toml")),
    ("cross-region", Some("config/cross-region.toml")),
    ("primary-standby", Some("config/primary-standby.toml")),
    (
        "sentinel-across-clusters",
        Some("config/sentinel-across-clusters.toml"),
    ),
    (
        "three-sites-witness-tls",
        Some("config/three-sites-witness-tls.toml"),
    ),
];

/// Kubernetes versions the manifests are validated against: 1.30 is the first where the
/// preStop `sleep` action is on by default (the image has no `sleep` binary), 1.37 the newest
/// the pinned kubernetes-validate knows.
pub const KUBERNETES_VERSIONS: &str = "1.30.0,1.37.0";

/// What pip installs when the Python lacks it (1.37 brings the 1.37 schemas).
pub const KUBERNETES_VALIDATE: &str = "kubernetes-validate>=1.37,<2";

/// Defaults of `[shutdown]` when a configuration does not set them (as `Shutdown::default()`).
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::ZERO;
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The configuration file in the pod, as the Deployment mounts it and the image's CMD names it.
pub const CONFIG_PATH: &str = "/etc/redis-failover-proxy/proxy.toml";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Tools

/// `kubectl`: `RFP_KUBECTL` or the one on PATH.
pub fn kubectl() -> PathBuf {
    std::env::var_os("RFP_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// A Python that can `import kubernetes_validate`: `RFP_PYTHON` (scripts/test's venv, which it
/// fills), or else `target/pyvenv`, made with `python3 -m venv` when missing and given
/// kubernetes-validate with pip when it lacks it. A Python named by `RFP_PYTHON` is never
/// installed into: it may be the system's.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let has_it = |python: &Path| {
            Command::new(python)
                .args(["-c", "import kubernetes_validate, yaml"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let python = match std::env::var_os("RFP_PYTHON") {
            Some(p) => {
                let python = PathBuf::from(p);
                assert!(
                    has_it(&python),
                    "RFP_PYTHON={} cannot import kubernetes_validate: run scripts/test, or \
                     `{} -m pip install '{KUBERNETES_VALIDATE}'`",
                    python.display(),
                    python.display()
                );
                return python;
            }
            None => {
                let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .parent()
                    .expect("target dir")
                    .join("pyvenv");
                let python = venv.join("bin").join("python");
                if !python.exists() {
                    let ok = Command::new("python3")
                        .args(["-m", "venv"])
                        .arg(&venv)
                        .status()
                        .is_ok_and(|s| s.success());
                    assert!(
                        ok,
                        "python3 -m venv {} failed (scripts/install-deps python3 python3-venv)",
                        venv.display()
                    );
                }
                python
            }
        };
        if !has_it(&python) {
            let ok = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    KUBERNETES_VALIDATE,
                ])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok && has_it(&python),
                "cannot install {KUBERNETES_VALIDATE} into {} (PyPI unreachable?)",
                python.display()
            );
        }
        python
    })
}

/// Runs `cmd`, failing the test with its output when it cannot start or exits non-zero.
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Rendering and schema validation, once per test process

/// Every kustomization rendered, validated and read back as JSON.
pub struct Rendered {
    /// "base" and each overlay's name → its documents, in render order.
    pub sets: BTreeMap<String, Vec<Value>>,
    /// The documents of deploy/prometheus/alerts.yaml.
    pub alerts: Vec<Value>,
    /// What the Kubernetes schemas rejected.
    pub schema_errors: Vec<String>,
    /// Kinds of the documents no schema was checked for.
    pub unchecked_kinds: BTreeSet<String>,
}

/// Validates YAML files with tests/python/k8s_manifests.py; returns its JSON answer.
pub fn validate_files(files: &[PathBuf]) -> Value {
    let out = run_ok(
        Command::new(python())
            .arg(root().join("tests/python/k8s_manifests.py"))
            .arg(KUBERNETES_VERSIONS)
            .args(files),
        "k8s_manifests.py",
    );
    serde_json::from_slice(&out.stdout).expect("k8s_manifests.py prints JSON")
}

pub fn rendered() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = Vec::new();
        let mut names = BTreeMap::new();
        let sets = std::iter::once(("base".to_string(), root().join("deploy/kubernetes/base")))
            .chain(OVERLAYS.iter().map(|(name, _)| {
                (
                    name.to_string(),
                    root().join("deploy/kubernetes/overlays").join(name),
                )
            }));
        for (name, path) in sets {
            let out = Command::new(kubectl())
                .arg("kustomize")
                .arg(&path)
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {}: {e}; install kubectl with `scripts/install-deps kubectl` \
                         (Debian's kubernetes-client) or name one with RFP_KUBECTL",
                        kubectl().display()
                    )
                });
            assert!(
                out.status.success(),
                "kubectl kustomize {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let file = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&file, &out.stdout).expect("write rendered manifests");
            names.insert(file.to_string_lossy().into_owned(), name);
            files.push(file);
        }
        let alerts_file = root().join("deploy/prometheus/alerts.yaml");
        files.push(alerts_file.clone());
        let answer = validate_files(&files);

        let mut r = Rendered {
            sets: BTreeMap::new(),
            alerts: Vec::new(),
            schema_errors: strings(&answer["errors"]),
            unchecked_kinds: BTreeSet::new(),
        };
        for d in answer["documents"].as_array().expect("documents") {
            let file = d["file"].as_str().expect("file");
            let doc = d["doc"].clone();
            if d["schema_checked"] != Value::Bool(true) {
                r.unchecked_kinds.insert(text(&doc, "/kind").to_string());
            }
            match names.get(file) {
                Some(name) => r.sets.entry(name.clone()).or_default().push(doc),
                None if Path::new(file) == alerts_file => r.alerts.push(doc),
                None => panic!("unexpected file {file}"),
            }
        }
        r
    })
}

// ---------------------------------------------------------------------------------------------
// Reading manifests

/// The string at a JSON pointer, failing the test with the pointer when absent.
pub fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {ptr} in {}", brief(v)))
}

pub fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer at {ptr} in {}", brief(v)))
}

pub fn list<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// "Kind/name", for messages.
pub fn brief(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or("?"),
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind` (and `name`, when given).
pub fn one<'a>(docs: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    let found: Vec<&Value> = of_kind(docs, kind)
        .into_iter()
        .filter(|d| name.is_none_or(|n| d.pointer("/metadata/name") == Some(&Value::from(n))))
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name:?}");
    found[0]
}

/// Whether every label of `selector` (non-empty) is in `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The proxy's container of the Deployment.
pub fn proxy_container(deployment: &Value) -> &Value {
    list(deployment, "/spec/template/spec/containers")
        .iter()
        .find(|c| c["name"] == "proxy")
        .unwrap_or_else(|| panic!("no container named proxy in {}", brief(deployment)))
}

/// The port number a probe or Service names (by name or number) on the container.
pub fn container_port(container: &Value, port: &Value) -> i64 {
    match port {
        Value::Number(n) => n.as_i64().expect("port number"),
        Value::String(name) => list(container, "/ports")
            .iter()
            .find(|p| p["name"] == name.as_str())
            .map(|p| int(p, "/containerPort"))
            .unwrap_or_else(|| panic!("container has no port named {name}")),
        other => panic!("port {other} is neither a name nor a number"),
    }
}

/// Where a file of the pod comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum FileSource {
    ConfigMap { name: String, key: String },
    Secret { name: String, key: String },
}

/// The source of file `path` in the proxy container, through its volume mounts; None when no
/// mounted volume provides it.
pub fn file_source(deployment: &Value, path: &str) -> Option<FileSource> {
    let container = proxy_container(deployment);
    for mount in list(container, "/volumeMounts") {
        let dir = text(mount, "/mountPath").trim_end_matches('/');
        let Some(rel) = path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let volume = list(deployment, "/spec/template/spec/volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])?;
        let sources: Vec<(&str, &Value)> = if let Some(p) = volume.get("projected") {
            list(p, "/sources")
                .iter()
                .filter_map(|s| {
                    s.as_object()
                        .and_then(|o| o.iter().next())
                        .map(|(k, v)| (k.as_str(), v))
                })
                .collect()
        } else {
            ["configMap", "secret"]
                .iter()
                .filter_map(|k| volume.get(*k).map(|v| (*k, v)))
                .collect()
        };
        for (kind, src) in sources {
            let name = src
                .get("name")
                .or_else(|| src.get("secretName"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let items = list(src, "/items");
            let key = if items.is_empty() {
                Some(rel.to_string())
            } else {
                items
                    .iter()
                    .find(|i| i["path"] == rel)
                    .map(|i| text(i, "/key").to_string())
            };
            match (kind, key) {
                ("configMap", Some(key)) => return Some(FileSource::ConfigMap { name, key }),
                ("secret", Some(key)) if !items.is_empty() => {
                    return Some(FileSource::Secret { name, key })
                }
                _ => {}
            }
        }
    }
    None
}

/// Names of the Secrets the Deployment mounts (volumes and projected sources).
pub fn mounted_secrets(deployment: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in list(deployment, "/spec/template/spec/volumes") {
        if let Some(name) = v.pointer("/secret/secretName").and_then(Value::as_str) {
            out.insert(name.to_string());
        }
        for s in list(v, "/projected/sources") {
            if let Some(name) = s.pointer("/secret/name").and_then(Value::as_str) {
                out.insert(name.to_string());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The proxy configuration inside a rendered kustomization

/// A secret reference of the configuration.
#[derive(Debug)]
pub enum SecretRef {
    Env(String),
    File(String),
}

/// Every `{ env = ... }` / `{ file = ... }` table of the configuration.
pub fn secret_refs(v: &toml::Value, out: &mut Vec<SecretRef>) {
    match v {
        toml::Value::Table(t) => {
            if t.len() == 1 {
                match t.iter().next() {
                    Some((k, toml::Value::String(s))) if k == "env" => {
                        return out.push(SecretRef::Env(s.clone()))
                    }
                    Some((k, toml::Value::String(s))) if k == "file" => {
                        return out.push(SecretRef::File(s.clone()))
                    }
                    _ => {}
                }
            }
            t.values().for_each(|v| secret_refs(v, out));
        }
        toml::Value::Array(items) => items.iter().for_each(|v| secret_refs(v, out)),
        _ => {}
    }
}

/// The configuration file the proxy container is started with, from the rendered ConfigMap
/// its volume mounts.
pub fn proxy_config(docs: &[Value]) -> String {
    let deployment = one(docs, "Deployment", Some("redis-failover-proxy"));
    let args = strings(&proxy_container(deployment)["args"]);
    let at = args
        .iter()
        .position(|a| a == "--config")
        .expect("the proxy container is started with --config");
    let path = args.get(at + 1).expect("a path after --config");
    match file_source(deployment, path) {
        Some(FileSource::ConfigMap { name, key }) => {
            text(one(docs, "ConfigMap", Some(&name)), &format!("/data/{key}")).to_string()
        }
        other => panic!("{path} does not come from a ConfigMap: {other:?}"),
    }
}

/// `[shutdown] key` of the configuration, or `default`.
pub fn shutdown_duration(cfg: &toml::Value, key: &str, default: Duration) -> Duration {
    cfg.get("shutdown")
        .and_then(|s| s.get(key))
        .and_then(toml::Value::as_str)
        .map(|s| parse_duration_str(s).unwrap_or_else(|| panic!("shutdown.{key} = {s:?}")))
        .unwrap_or(default)
}
