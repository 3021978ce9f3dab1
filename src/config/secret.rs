//! Secrets (passwords, tokens) in configuration: given inline, read from a file, or read from an
//! environment variable, and never printed. `Debug` and `Display` show `<redacted>`; the value
//! is reachable only through [`Secret::expose`], at the one place that needs it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

/// How a secret is given in the file.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged, deny_unknown_fields)]
pub enum SecretSource {
    /// `password = "..."` (fine for tests and examples; prefer a file or env in production).
    Inline(String),
    /// `password = { file = "/run/secrets/redis" }`: the file's content, trailing newline
    /// removed.
    File { file: PathBuf },
    /// `password = { env = "REDIS_PASSWORD" }`.
    Env { env: String },
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretSource::File { file } => write!(f, "File({})", file.display()),
            SecretSource::Env { env } => write!(f, "Env({env})"),
        }
    }
}

impl SecretSource {
    /// Reads the secret.
    pub fn load(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Inline(v) => Ok(Secret::new(v.clone())),
            SecretSource::File { file } => std::fs::read_to_string(file)
                .map(|v| Secret::new(v.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| format!("cannot read secret file {}: {e}", file.display())),
            SecretSource::Env { env } => std::env::var(env)
                .map(Secret::new)
                .map_err(|_| format!("environment variable {env} is not set")),
        }
    }
}

/// A loaded secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(v: impl Into<Arc<str>>) -> Self {
        Self(v.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        let src = SecretSource::Inline("hunter2".into());
        assert!(!format!("{src:?}").contains("hunter2"));
    }

    #[test]
    fn loads_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "from-file\n").unwrap();
        let s = SecretSource::File { file: path }.load().unwrap();
        assert_eq!(s.expose(), "from-file");
        let e = SecretSource::Env {
            env: "RFP_TEST_SURELY_UNSET_VAR".into(),
        }
        .load()
        .unwrap_err();
        assert!(e.contains("RFP_TEST_SURELY_UNSET_VAR"));
    }
}
