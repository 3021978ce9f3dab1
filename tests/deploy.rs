//! What an operator applies (`deploy/`), checked offline. Every Kustomize overlay under
//! `deploy/kubernetes/overlays/`, and the base, is rendered with `kubectl kustomize`; every
//! rendered manifest is validated against the Kubernetes OpenAPI schemas (Kubernetes 1.30, the
//! oldest the manifests support, and 1.37) by the Python package kubernetes-validate, strictly
//! (an unknown field is an error). The custom resources it has no schema for (ServiceMonitor,
//! PrometheusRule, cert-manager Certificate) get checks of their own here. Each overlay's proxy
//! configuration is taken out of its rendered ConfigMap and run through
//! `redis-failover-proxy --check` with the environment variables and files the pod provides, and
//! compared with the Deployment (ports, probes, drain timing). The Grafana dashboard and the
//! alert rules may use only the proxy's metric names and labels; the Dockerfile is linted
//! (Docker cannot run here).
//!
//! Tools: `kubectl` (`RFP_KUBECTL`, or `kubectl` on PATH; `scripts/install-deps kubectl`
//! installs Debian's kubernetes-client) and a Python with kubernetes-validate (`RFP_PYTHON`, as
//! scripts/test sets it, or else `target/pyvenv`, made and filled here when missing). A missing
//! tool fails every test: none passes without checking.
//!
//! The manifests are written in the kustomize syntax kubectl 1.20 (Debian 12's) still reads, so
//! the same files render with it and with a current kubectl.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use redis_failover_proxy::config::parse_duration_str;
use serde_json::Value;

/// The overlays, one per deployment of DESIGN.md section 1, each with the example whose
/// `[failover]` and `[[sites]]` its proxy.toml must repeat (None: no example).
const OVERLAYS: &[(&str, Option<&str>)] = &[
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
const KUBERNETES_VERSIONS: &str = "1.30.0,1.37.0";

/// What pip installs when the Python lacks it (1.37 brings the 1.37 schemas).
const KUBERNETES_VALIDATE: &str = "kubernetes-validate>=1.37,<2";

/// Defaults of `[shutdown]` when a configuration does not set them (as `Shutdown::default()`).
const DEFAULT_DRAIN_DELAY: Duration = Duration::ZERO;
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The configuration file in the pod, as the Deployment mounts it and the image's CMD names it.
const CONFIG_PATH: &str = "/etc/redis-failover-proxy/proxy.toml";

/// How a metric is exposed, which decides the series names a query may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Counter,
    Gauge,
    /// `_bucket` (with `le`), `_sum` and `_count`.
    Histogram,
    /// Not known yet whether gauge or histogram: only the bare name may be used.
    Unsettled,
}

use MetricKind::*;

/// The proxy's metrics (without the `redis_failover_proxy_` prefix) and their labels.
const METRICS: &[(&str, MetricKind, &[&str])] = &[
    ("commands_total", Counter, &["class"]),
    ("command_duration_seconds", Histogram, &["class"]),
    ("errors_total", Counter, &["kind"]),
    ("client_connections", Gauge, &[]),
    ("backend_connections", Gauge, &["kind"]),
    ("node_up", Gauge, &["site", "node"]),
    ("node_role", Gauge, &["site", "node", "role"]),
    ("master_info", Gauge, &["node", "run_id"]),
    ("topology_epoch", Gauge, &[]),
    ("state", Gauge, &["state"]),
    ("holds_total", Counter, &[]),
    ("hold_duration_seconds", Histogram, &[]),
    ("held_clients", Gauge, &[]),
    ("retries_total", Counter, &["reason"]),
    ("failovers_total", Counter, &[]),
    ("failover_duration_seconds", Unsettled, &[]),
    ("dns_resolutions_total", Counter, &["result"]),
    ("tls_handshake_failures_total", Counter, &["side"]),
    ("auth_failures_total", Counter, &[]),
    ("authority_reachable", Gauge, &[]),
    ("sentinels_answering", Gauge, &[]),
];

const METRIC_PREFIX: &str = "redis_failover_proxy_";

/// Labels Prometheus adds to every series scraped through the ServiceMonitor.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "job",
    "instance",
    "service",
    "endpoint",
    "container",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Tools

/// `kubectl`: `RFP_KUBECTL` or the one on PATH.
fn kubectl() -> PathBuf {
    std::env::var_os("RFP_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// A Python that can `import kubernetes_validate`: `RFP_PYTHON` (scripts/test's venv, which it
/// fills), or else `target/pyvenv`, made with `python3 -m venv` when missing and given
/// kubernetes-validate with pip when it lacks it. A Python named by `RFP_PYTHON` is never
/// installed into: it may be the system's.
fn python() -> &'static Path {
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
fn run_ok(cmd: &mut Command, what: &str) -> Output {
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
struct Rendered {
    /// "base" and each overlay's name → its documents, in render order.
    sets: BTreeMap<String, Vec<Value>>,
    /// The documents of deploy/prometheus/alerts.yaml.
    alerts: Vec<Value>,
    /// What the Kubernetes schemas rejected.
    schema_errors: Vec<String>,
    /// Kinds of the documents no schema was checked for.
    unchecked_kinds: BTreeSet<String>,
}

/// Validates YAML files with tests/python/k8s_manifests.py; returns its JSON answer.
fn validate_files(files: &[PathBuf]) -> Value {
    let out = run_ok(
        Command::new(python())
            .arg(root().join("tests/python/k8s_manifests.py"))
            .arg(KUBERNETES_VERSIONS)
            .args(files),
        "k8s_manifests.py",
    );
    serde_json::from_slice(&out.stdout).expect("k8s_manifests.py prints JSON")
}

fn rendered() -> &'static Rendered {
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
fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {ptr} in {}", brief(v)))
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer at {ptr} in {}", brief(v)))
}

fn list<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// "Kind/name", for messages.
fn brief(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or("?"),
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind` (and `name`, when given).
fn one<'a>(docs: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    let found: Vec<&Value> = of_kind(docs, kind)
        .into_iter()
        .filter(|d| name.is_none_or(|n| d.pointer("/metadata/name") == Some(&Value::from(n))))
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name:?}");
    found[0]
}

/// Whether every label of `selector` (non-empty) is in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The proxy's container of the Deployment.
fn proxy_container(deployment: &Value) -> &Value {
    list(deployment, "/spec/template/spec/containers")
        .iter()
        .find(|c| c["name"] == "proxy")
        .unwrap_or_else(|| panic!("no container named proxy in {}", brief(deployment)))
}

/// The port number a probe or Service names (by name or number) on the container.
fn container_port(container: &Value, port: &Value) -> i64 {
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
enum FileSource {
    ConfigMap { name: String, key: String },
    Secret { name: String, key: String },
}

/// The source of file `path` in the proxy container, through its volume mounts; None when no
/// mounted volume provides it.
fn file_source(deployment: &Value, path: &str) -> Option<FileSource> {
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
fn mounted_secrets(deployment: &Value) -> BTreeSet<String> {
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
enum SecretRef {
    Env(String),
    File(String),
}

/// Every `{ env = ... }` / `{ file = ... }` table of the configuration.
fn secret_refs(v: &toml::Value, out: &mut Vec<SecretRef>) {
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
fn proxy_config(docs: &[Value]) -> String {
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
fn shutdown_duration(cfg: &toml::Value, key: &str, default: Duration) -> Duration {
    cfg.get("shutdown")
        .and_then(|s| s.get(key))
        .and_then(toml::Value::as_str)
        .map(|s| parse_duration_str(s).unwrap_or_else(|| panic!("shutdown.{key} = {s:?}")))
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// PromQL: the metric names and labels a query uses

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];
const FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "histogram_quantile",
    "abs",
    "clamp_min",
    "clamp_max",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "changes",
    "absent",
    "vector",
];
const GROUPING_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const OPERATOR_WORDS: &[&str] = &["and", "or", "unless", "bool", "offset"];

/// What a PromQL expression refers to.
#[derive(Debug, Default)]
struct Query {
    /// Series selectors: metric name and the label names of its matchers.
    series: Vec<(String, Vec<String>)>,
    /// Label lists of `by`, `without`, `on`, ... in the order they appear (the first one is
    /// the outermost aggregation's when the expression starts with it).
    groupings: Vec<Vec<String>>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index after the string literal starting at `i`.
fn skip_string(b: &[u8], i: usize) -> Result<usize, String> {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if quote != b'`' => j += 2,
            c if c == quote => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err("unclosed string".into())
}

/// An identifier at `i` (after spaces): it and the index after it.
fn ident_at(s: &str, i: usize) -> Result<(&str, usize), String> {
    let b = s.as_bytes();
    let i = skip_ws(b, i);
    if i >= b.len() || !is_ident_start(b[i]) {
        return Err(format!(
            "expected a label name at {:?}",
            &s[i.min(s.len())..]
        ));
    }
    let mut j = i;
    while j < b.len() && is_ident(b[j]) {
        j += 1;
    }
    Ok((&s[i..j], j))
}

/// `(a, b)` at `i`: the names and the index after `)`.
fn label_list(s: &str, i: usize) -> Result<(Vec<String>, usize), String> {
    let b = s.as_bytes();
    let mut i = skip_ws(b, i) + 1; // past '('
    let mut labels = Vec::new();
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b')') => return Ok((labels, i + 1)),
            Some(b',') => i += 1,
            Some(_) => {
                let (name, j) = ident_at(s, i)?;
                labels.push(name.to_string());
                i = j;
            }
            None => return Err("unclosed label list".into()),
        }
    }
}

/// `{a="x", b=~"y"}` at `i`: the label names and the index after `}`.
fn matchers(s: &str, i: usize) -> Result<(Vec<String>, usize), String> {
    let b = s.as_bytes();
    let mut i = skip_ws(b, i) + 1; // past '{'
    let mut labels = Vec::new();
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'}') => return Ok((labels, i + 1)),
            Some(b',') => i += 1,
            Some(_) => {
                let (name, j) = ident_at(s, i)?;
                labels.push(name.to_string());
                let j = skip_ws(b, j);
                let op = ["=~", "!~", "!=", "="]
                    .iter()
                    .find(|op| s[j..].starts_with(**op))
                    .ok_or_else(|| format!("no matcher operator after {name}"))?;
                let k = skip_ws(b, j + op.len());
                if !matches!(b.get(k), Some(b'"' | b'\'' | b'`')) {
                    return Err(format!("label {name} is not matched against a string"));
                }
                i = skip_string(b, k)?;
            }
            None => return Err("unclosed selector".into()),
        }
    }
}

/// Reads the metric names, matcher labels and grouping labels of a PromQL expression. Strict:
/// unknown functions, selectors without a name and Grafana variables outside strings and
/// ranges are errors.
fn parse_promql(expr: &str) -> Result<Query, String> {
    let b = expr.as_bytes();
    let mut q = Query::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() || b"()+-*/%^=!<>,".contains(&c) {
            i += 1;
        } else if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i)?;
        } else if c == b'[' {
            // A range or subquery: durations or $__rate_interval.
            i += b[i..].iter().position(|&x| x == b']').ok_or("unclosed [")? + 1;
        } else if c.is_ascii_digit() || c == b'.' {
            // A number, or the duration after `offset`.
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let (word, end) = ident_at(expr, i)?;
            let next = skip_ws(b, end);
            let paren = b.get(next) == Some(&b'(');
            i = end;
            if GROUPING_WORDS.contains(&word) {
                if paren {
                    let (labels, after) = label_list(expr, next)?;
                    q.groupings.push(labels);
                    i = after;
                } else if !word.starts_with("group_") {
                    return Err(format!("`{word}` without a label list"));
                }
            } else if AGGREGATIONS.contains(&word) || OPERATOR_WORDS.contains(&word) {
            } else if paren {
                if !FUNCTIONS.contains(&word) {
                    return Err(format!("unknown function {word}"));
                }
            } else {
                let mut labels = Vec::new();
                if b.get(next) == Some(&b'{') {
                    let (ls, after) = matchers(expr, next)?;
                    labels = ls;
                    i = after;
                }
                q.series.push((word.to_string(), labels));
            }
        } else if c == b'{' {
            return Err("a selector without a metric name".into());
        } else {
            return Err(format!("unexpected {:?}", c as char));
        }
    }
    Ok(q)
}

/// The labels series of `name` may carry, or None when it is not one of the proxy's.
fn series_labels(name: &str) -> Option<BTreeSet<&'static str>> {
    let short = name.strip_prefix(METRIC_PREFIX)?;
    METRICS.iter().find_map(|(metric, kind, labels)| {
        let extra: &[&str] = match (short.strip_prefix(metric), kind) {
            (Some(""), Counter | Gauge | Unsettled) => &[],
            (Some("_bucket"), Histogram) => &["le"],
            (Some("_sum" | "_count"), Histogram) => &[],
            _ => return None,
        };
        Some(
            labels
                .iter()
                .chain(extra)
                .chain(TARGET_LABELS)
                .copied()
                .collect(),
        )
    })
}

/// Checks a query against the metric list: every series is a proxy metric, every matcher
/// and grouping label is one its series carry. Returns the query and the problems.
fn check_promql(expr: &str) -> (Query, Vec<String>) {
    let q = match parse_promql(expr) {
        Ok(q) => q,
        Err(e) => return (Query::default(), vec![format!("{expr}: {e}")]),
    };
    let mut problems = Vec::new();
    let mut known = BTreeSet::new();
    if q.series.is_empty() {
        problems.push(format!("{expr}: uses no metric of the proxy"));
    }
    for (name, labels) in &q.series {
        match series_labels(name) {
            None => problems.push(format!("{expr}: {name} is not a metric of the proxy")),
            Some(allowed) => {
                for l in labels {
                    if !allowed.contains(l.as_str()) {
                        problems.push(format!("{expr}: {name} has no label {l}"));
                    }
                }
                known.extend(allowed);
            }
        }
    }
    for l in q.groupings.iter().flatten() {
        if !known.contains(l.as_str()) {
            problems.push(format!("{expr}: no series of it has the label {l}"));
        }
    }
    (q, problems)
}

/// Label names used in a template: `{{ $labels.x }}` (alerts) or `{{x}}` (Grafana legends).
fn template_labels(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        let name = inner.strip_prefix("$labels.").unwrap_or(inner);
        if !name.is_empty() && name.bytes().all(is_ident) {
            out.push(name.to_string());
        }
        rest = &rest[start + len + 2..];
    }
    out
}

/// Template labels the query's result cannot have: those outside its outermost grouping
/// (aggregation drops every other label).
fn missing_template_labels(q: &Query, template: &str) -> Vec<String> {
    let Some(outer) = q.groupings.first() else {
        return Vec::new();
    };
    template_labels(template)
        .into_iter()
        .filter(|l| !outer.contains(l))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests: rendering and schemas

/// Steps: list deploy/kubernetes/overlays/ and expect exactly the five deployments of
/// DESIGN.md section 1; render the base and every overlay with `kubectl kustomize`; validate
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

// ---------------------------------------------------------------------------------------------
// Tests: the container image

/// One Dockerfile instruction, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile_instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (current.is_empty() && t.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
        current.clear();
    }
    out
}

/// Steps: read deploy/docker/Dockerfile; expect at least two stages, the first named, a
/// `cargo build --release --locked` in a build stage, every COPY from the context naming a
/// file of the repository that .dockerignore keeps; in the final stage a base image with a
/// tag other than latest, the binary copied from the build stage to the ENTRYPOINT path, a
/// numeric non-root USER, EXPOSE of the Deployment's container ports (6379 and 9121), and a
/// CMD equal to the Deployment's arguments; expect .dockerignore to exclude target/.
#[test]
fn dockerfile_is_multi_stage_locked_and_non_root() {
    let text_df =
        std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).expect("Dockerfile");
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/'))
        .collect();
    assert!(
        ignored.contains(&"target"),
        ".dockerignore must exclude target/"
    );

    // Stages: (image, alias, instructions).
    let mut stages: Vec<(String, Option<String>, Vec<Instruction>)> = Vec::new();
    for i in dockerfile_instructions(&text_df) {
        if i.keyword == "FROM" {
            let words: Vec<&str> = i
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let alias = match words.as_slice() {
                [_, as_, alias] if as_.eq_ignore_ascii_case("as") => Some(alias.to_string()),
                [_] => None,
                other => panic!("FROM {other:?}"),
            };
            stages.push((words[0].to_string(), alias, Vec::new()));
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("{} before FROM", i.keyword))
                .2
                .push(i);
        }
    }
    assert!(stages.len() >= 2, "multi-stage: build and runtime");
    let (builder_image, builder, build) = &stages[0];
    let builder = builder
        .as_deref()
        .expect("the build stage is named (FROM ... AS name)");
    assert!(builder_image.starts_with("rust:"), "{builder_image}");
    assert!(
        build.iter().any(|i| i.keyword == "RUN"
            && i.args.contains("cargo build")
            && i.args.contains("--release")
            && i.args.contains("--locked")),
        "the build stage runs cargo build --release --locked"
    );
    for i in stages.iter().flat_map(|s| &s.2) {
        if i.keyword == "COPY" && !i.args.contains("--from") {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            for src in &words[..words.len() - 1] {
                let src = src.trim_end_matches('/');
                assert!(
                    root().join(src).exists(),
                    "COPY {src}: not in the repository"
                );
                assert!(
                    !ignored
                        .iter()
                        .any(|ig| src == *ig || src.starts_with(&format!("{ig}/"))),
                    "COPY {src}: excluded by .dockerignore"
                );
            }
        }
    }

    let (final_image, _, runtime) = stages.last().expect("final stage");
    let (_, tag) = final_image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or_else(|| panic!("final image {final_image} has no tag"));
    assert!(
        tag != "latest" && !tag.is_empty(),
        "final image {final_image}"
    );
    let json_list = |keyword: &str| -> Vec<String> {
        let i = runtime
            .iter()
            .rfind(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("no {keyword} in the final stage"));
        serde_json::from_str(&i.args)
            .unwrap_or_else(|e| panic!("{keyword} must be in JSON form: {e}"))
    };
    let entrypoint = json_list("ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/redis-failover-proxy"]);
    assert!(
        runtime.iter().any(|i| i.keyword == "COPY"
            && i.args.contains(&format!("--from={builder}"))
            && i.args.ends_with(&entrypoint[0])),
        "the binary is copied from the build stage to {}",
        entrypoint[0]
    );
    let user = runtime
        .iter()
        .rfind(|i| i.keyword == "USER")
        .expect("the final stage sets USER");
    let uid: u32 = user
        .args
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("USER is numeric (so runAsNonRoot can verify it)");
    assert!(uid != 0, "USER must not be root");

    let d = one(
        &rendered().sets["base"],
        "Deployment",
        Some("redis-failover-proxy"),
    );
    let c = proxy_container(d);
    let cmd = json_list("CMD");
    assert_eq!(cmd, ["--config", CONFIG_PATH]);
    assert_eq!(
        strings(&c["args"]),
        cmd,
        "the Deployment starts the image's CMD"
    );
    let exposed: BTreeSet<i64> = runtime
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().expect("EXPOSE port"))
        .collect();
    let container_ports: BTreeSet<i64> = list(c, "/ports")
        .iter()
        .map(|p| int(p, "/containerPort"))
        .collect();
    assert_eq!(exposed, container_ports, "EXPOSE and the container ports");
    assert_eq!(exposed, BTreeSet::from([6379, 9121]));
}
