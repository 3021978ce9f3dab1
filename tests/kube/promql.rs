//! The proxy's metric names and labels, and a reader for the PromQL in the dashboard and the
//! alert rules that says which series and labels a query uses.

use std::collections::BTreeSet;

/// How a metric is exposed, which decides the series names a query may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    /// `_bucket` (with `le`), `_sum` and `_count`.
    Histogram,
    /// Not known yet whether gauge or histogram: only the bare name may be used.
    Unsettled,
}

pub use MetricKind::*;

/// The proxy's metrics (without the `redis_failover_proxy_` prefix) and their labels.
pub const METRICS: &[(&str, MetricKind, &[&str])] = &[
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

pub const METRIC_PREFIX: &str = "redis_failover_proxy_";

/// Labels Prometheus adds to every series scraped through the ServiceMonitor.
pub const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "job",
    "instance",
    "service",
    "endpoint",
    "container",
];

// ---------------------------------------------------------------------------------------------
// PromQL: the metric names and labels a query uses

pub const AGGREGATIONS: &[&str] = &[
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
pub const FUNCTIONS: &[&str] = &[
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
pub const GROUPING_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
pub const OPERATOR_WORDS: &[&str] = &["and", "or", "unless", "bool", "offset"];

/// What a PromQL expression refers to.
#[derive(Debug, Default)]
pub struct Query {
    /// Series selectors: metric name and the label names of its matchers.
    pub series: Vec<(String, Vec<String>)>,
    /// Label lists of `by`, `without`, `on`, ... in the order they appear (the first one is
    /// the outermost aggregation's when the expression starts with it).
    pub groupings: Vec<Vec<String>>,
}

pub fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

pub fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index after the string literal starting at `i`.
pub fn skip_string(b: &[u8], i: usize) -> Result<usize, String> {
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
pub fn ident_at(s: &str, i: usize) -> Result<(&str, usize), String> {
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
pub fn label_list(s: &str, i: usize) -> Result<(Vec<String>, usize), String> {
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
pub fn matchers(s: &str, i: usize) -> Result<(Vec<String>, usize), String> {
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
pub fn parse_promql(expr: &str) -> Result<Query, String> {
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
pub fn series_labels(name: &str) -> Option<BTreeSet<&'static str>> {
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
pub fn check_promql(expr: &str) -> (Query, Vec<String>) {
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
pub fn template_labels(template: &str) -> Vec<String> {
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
pub fn missing_template_labels(q: &Query, template: &str) -> Vec<String> {
    let Some(outer) = q.groupings.first() else {
        return Vec::new();
    };
    template_labels(template)
        .into_iter()
        .filter(|l| !outer.contains(l))
        .collect()
}
