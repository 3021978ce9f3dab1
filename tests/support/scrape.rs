//! Reading the admin endpoint: one `/metrics` scrape parsed into samples (name, labels,
//! value) that tests look up by the short metric name and a subset of labels, and `/topology`
//! as JSON.

use std::net::SocketAddr;

use super::http;

/// Prefix of every metric the proxy exports.
pub const PREFIX: &str = "redis_failover_proxy_";

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Full name (with the prefix and any `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// One scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Every sample.
    pub samples: Vec<Sample>,
    /// The text as served (for failure messages).
    pub text: String,
}

impl Scrape {
    /// Scrapes `admin` (panics unless the answer is 200).
    pub fn take(admin: SocketAddr) -> Self {
        let r = http::get(admin, "/metrics", None);
        assert_eq!(r.status, 200, "GET /metrics: {r:?}");
        Self::parse(&r.body)
    }

    /// Parses Prometheus text exposition.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("unparsable metrics line {l:?}")))
            .collect();
        Self {
            samples,
            text: text.to_string(),
        }
    }

    /// Samples of `short` (the name without the prefix) whose labels include every pair of
    /// `labels`.
    pub fn matching(&self, short: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        let name = format!("{PREFIX}{short}");
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .collect()
    }

    /// The value of the one sample of `short` matching `labels`; `None` when there is none
    /// (counters appear on first use). Panics when several match.
    pub fn value(&self, short: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.matching(short, labels);
        assert!(
            found.len() <= 1,
            "{short} {labels:?} matches several samples: {found:?}"
        );
        found.first().map(|s| s.value)
    }

    /// Like [`value`](Self::value), with 0 for an absent sample.
    pub fn get(&self, short: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(short, labels).unwrap_or(0.0)
    }

    /// Sum of every sample of `short` matching `labels`.
    pub fn sum(&self, short: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(short, labels).iter().map(|s| s.value).sum()
    }
}

/// `name{k="v",...} value` or `name value`.
fn parse_line(line: &str) -> Option<Sample> {
    let Some(open) = line.find('{') else {
        let (name, value) = line.split_once(' ')?;
        return Some(Sample {
            name: name.to_string(),
            labels: Vec::new(),
            value: parse_value(value)?,
        });
    };
    let mut labels = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some(Sample {
                name: line[..open].to_string(),
                labels,
                value: parse_value(after.trim())?,
            });
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = &after[end + 1..];
    }
}

fn parse_value(v: &str) -> Option<f64> {
    match v.split_whitespace().next()? {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// `GET /topology` as JSON (with `token` when the endpoint needs one); panics unless 200.
pub fn topology(admin: SocketAddr, token: Option<&str>) -> serde_json::Value {
    let r = http::get(admin, "/topology", token);
    assert_eq!(r.status, 200, "GET /topology: {r:?}");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("/topology is not JSON ({e}): {r:?}"))
}
