//! Reading a TOML table key by key, so that every problem in a file is reported at once with
//! its key path (`backend.reply_timeout: expected a duration like "500ms" or "2s"`), and every
//! key nobody asked for is reported as unknown. serde stops at the first error; an operator
//! fixing a file one error per run deserves better.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`sites[0].nodes`), or empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Collected problems.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem at `path`.
    pub fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

/// A table, or a boolean in its place.
#[derive(Debug)]
pub enum TableOr<'a> {
    /// The table.
    Table(Reader<'a>),
    /// The boolean.
    Bool(bool),
}

/// A view of one table at a key path.
#[derive(Debug)]
pub struct Reader<'a> {
    table: &'a Table,
    path: String,
    used: BTreeSet<&'a str>,
}

impl<'a> Reader<'a> {
    /// A reader for the root table.
    pub fn root(table: &'a Table) -> Self {
        Self::at(table, String::new())
    }

    fn at(table: &'a Table, path: String) -> Self {
        Self {
            table,
            path,
            used: BTreeSet::new(),
        }
    }

    /// The path of `key` in this table.
    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn raw(&mut self, key: &str) -> Option<&'a Value> {
        let (k, v) = self.table.get_key_value(key)?;
        self.used.insert(k.as_str());
        Some(v)
    }

    /// A value deserialized with serde; type errors are recorded.
    pub fn get<T: DeserializeOwned>(&mut self, key: &str, p: &mut Problems) -> Option<T> {
        let v = self.raw(key)?;
        match v.clone().try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                p.add(&self.path_of(key), first_line(&e.to_string()));
                None
            }
        }
    }

    /// A value or its default.
    pub fn get_or<T: DeserializeOwned>(&mut self, key: &str, default: T, p: &mut Problems) -> T {
        self.get(key, p).unwrap_or(default)
    }

    /// An optional duration (see [`duration`](Self::duration)).
    pub fn opt_duration(&mut self, key: &str, p: &mut Problems) -> Option<Duration> {
        if !self.table.contains_key(key) {
            return None;
        }
        Some(self.duration(key, Duration::ZERO, p))
    }

    /// A duration written as `"500ms"`, `"2s"`, `"1m"` (or a bare number of milliseconds).
    pub fn duration(&mut self, key: &str, default: Duration, p: &mut Problems) -> Duration {
        let Some(v) = self.raw(key) else {
            return default;
        };
        match parse_duration(v) {
            Some(d) => d,
            None => {
                p.add(
                    &self.path_of(key),
                    "expected a duration like \"500ms\", \"2s\" or \"1m\"",
                );
                default
            }
        }
    }

    /// A size written as `"64mb"`, `"512kb"` or a number of bytes.
    pub fn size(&mut self, key: &str, default: usize, p: &mut Problems) -> usize {
        let Some(v) = self.raw(key) else {
            return default;
        };
        match parse_size(v) {
            Some(n) => n,
            None => {
                p.add(
                    &self.path_of(key),
                    "expected a size like \"64mb\", \"512kb\" or a number of bytes",
                );
                default
            }
        }
    }

    /// A sub-table; `None` when absent (or not a table, which is recorded).
    pub fn table(&mut self, key: &str, p: &mut Problems) -> Option<Reader<'a>> {
        let path = self.path_of(key);
        match self.raw(key)? {
            Value::Table(t) => Some(Reader::at(t, path)),
            _ => {
                p.add(&path, "expected a table");
                None
            }
        }
    }

    /// A sub-table or a boolean (`tls = false`); `None` when absent.
    pub fn table_or_bool(&mut self, key: &str, p: &mut Problems) -> Option<TableOr<'a>> {
        let path = self.path_of(key);
        match self.raw(key)? {
            Value::Table(t) => Some(TableOr::Table(Reader::at(t, path))),
            Value::Boolean(b) => Some(TableOr::Bool(*b)),
            _ => {
                p.add(&path, "expected a table or a boolean");
                None
            }
        }
    }

    /// An array of tables (`[[key]]`).
    pub fn tables(&mut self, key: &str, p: &mut Problems) -> Vec<Reader<'a>> {
        let path = self.path_of(key);
        match self.raw(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::Table(t) => Some(Reader::at(t, format!("{path}[{i}]"))),
                    _ => {
                        p.add(&format!("{path}[{i}]"), "expected a table");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                p.add(&path, "expected an array of tables");
                Vec::new()
            }
        }
    }

    /// Reports every key of this table that was not read.
    pub fn finish(self, p: &mut Problems) {
        for key in self.table.keys() {
            if !self.used.contains(key.as_str()) {
                p.add(&self.path_of(key), "unknown key");
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// Parses `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"1h"` or an integer of milliseconds.
pub(super) fn parse_duration(v: &Value) -> Option<Duration> {
    match v {
        Value::Integer(ms) if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
        Value::String(s) => parse_duration_str(s),
        _ => None,
    }
}

/// Parses a duration string.
pub fn parse_duration_str(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Parses `"64mb"`, `"512kb"`, `"1gb"`, `"100b"` or an integer of bytes.
pub(super) fn parse_size(v: &Value) -> Option<usize> {
    match v {
        Value::Integer(n) if *n >= 0 => Some(*n as usize),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: usize = num.parse().ok()?;
            let mult = match unit.trim() {
                "" | "b" => 1,
                "kb" | "k" => 1024,
                "mb" | "m" => 1024 * 1024,
                "gb" | "g" => 1024 * 1024 * 1024,
                _ => return None,
            };
            n.checked_mul(mult)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let table: Table = toml::from_str(
            "a = 1\ntypo = 2\n[inner]\nt = \"soon\"\nsize = \"12parsecs\"\nextra = true\n",
        )
        .unwrap();
        let mut p = Problems::default();
        let mut root = Reader::root(&table);
        let a: u32 = root.get_or("a", 0, &mut p);
        assert_eq!(a, 1);
        let mut inner = root.table("inner", &mut p).unwrap();
        inner.duration("t", Duration::ZERO, &mut p);
        inner.size("size", 0, &mut p);
        inner.finish(&mut p);
        root.finish(&mut p);
        let paths: Vec<&str> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, vec!["inner.t", "inner.size", "inner.extra", "typo"]);
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            parse_duration_str("500ms"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration_str("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_duration_str("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration_str("2 parsecs"), None);
        assert_eq!(parse_size(&Value::String("64mb".into())), Some(64 << 20));
        assert_eq!(parse_size(&Value::Integer(10)), Some(10));
        assert_eq!(parse_size(&Value::String("1tb".into())), None);
    }
}
