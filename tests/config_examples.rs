//! The example configurations in `config/` must stay loadable: every `config/*.toml` is read
//! with `Config::from_file` and checked with `validate()`, and the binary's `--check` must
//! accept it (exit code 0). A broken file must make `--check` exit with code 2 and list every
//! problem. Secrets the examples name (`{ env = ... }`, `{ file = ... }`) are provided here:
//! environment variables are set and relative secret files are created in a temporary folder
//! that serves as the working directory. TLS files the examples name (absolute paths on the
//! machine they are written for) are replaced by certificates made here for `--check`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use redis_failover_proxy::config::{Config, Password};

/// What the examples need from their surroundings, made once per test process.
struct Setup {
    /// Working directory holding the relative secret files the examples name.
    dir: tempfile::TempDir,
    /// Every `config/*.toml`, sorted.
    examples: Vec<PathBuf>,
    /// Environment variables the examples name, with the values given to them.
    env: Vec<(String, String)>,
}

/// A secret reference found in an example: `{ env = "..." }` or `{ file = "..." }`.
enum SecretRef {
    Env(String),
    File(String),
}

/// Finds every `{ env = ... }` / `{ file = ... }` table, and every secret given inline, which
/// examples must not do.
fn secret_refs(v: &toml::Value, at: &str, out: &mut Vec<SecretRef>, inline: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            if t.len() == 1 {
                match t.iter().next() {
                    Some((k, toml::Value::String(s))) if k == "env" => {
                        out.push(SecretRef::Env(s.clone()));
                        return;
                    }
                    Some((k, toml::Value::String(s))) if k == "file" => {
                        out.push(SecretRef::File(s.clone()));
                        return;
                    }
                    _ => {}
                }
            }
            for (k, v) in t {
                let path = format!("{at}.{k}");
                if matches!(k.as_str(), "password" | "backend_password")
                    && matches!(v, toml::Value::String(_))
                {
                    inline.push(path.clone());
                }
                secret_refs(v, &path, out, inline);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                secret_refs(v, &format!("{at}[{i}]"), out, inline);
            }
        }
        _ => {}
    }
}

/// Lists the examples, sets the environment variables they name and creates the files they
/// name; then makes the temporary folder the working directory. Runs once, before any test of
/// this file reads anything, so no test sees the environment or the directory change.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut examples: Vec<PathBuf> = std::fs::read_dir(&config_dir)
            .expect("config/ exists")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        examples.sort();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = Vec::new();
        for path in &examples {
            let text = std::fs::read_to_string(path).expect("read example");
            let value: toml::Value = toml::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()));
            let (mut refs, mut inline) = (Vec::new(), Vec::new());
            secret_refs(&value, "", &mut refs, &mut inline);
            assert!(
                inline.is_empty(),
                "{}: secrets must come from {{ env = ... }} or {{ file = ... }}, not inline: {inline:?}",
                path.display()
            );
            for r in refs {
                match r {
                    SecretRef::Env(name) => {
                        let value = format!("example-secret-for-{name}");
                        std::env::set_var(&name, &value);
                        env.push((name, value));
                    }
                    SecretRef::File(file) => {
                        assert!(
                            Path::new(&file).is_relative(),
                            "{}: secret file {file} is absolute; the test cannot provide it \
                             (use {{ env = ... }} or a relative path)",
                            path.display()
                        );
                        let at = dir.path().join(&file);
                        std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
                        std::fs::write(&at, format!("example-secret-file-{file}\n"))
                            .expect("write secret file");
                    }
                }
            }
        }
        std::env::set_current_dir(dir.path()).expect("chdir");
        Setup { dir, examples, env }
    })
}

/// Runs the proxy binary with `args` in the setup's working directory and environment.
fn run_binary(args: &[&str]) -> Output {
    let s = setup();
    Command::new(env!("CARGO_BIN_EXE_redis-failover-proxy"))
        .args(args)
        .current_dir(s.dir.path())
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run the proxy binary")
}

/// Steps: list `config/*.toml` (at least `minimal.toml` and `single-master.toml` must be
/// there); load each with `Config::from_file`; run `validate()` on each; print every problem
/// of every file that fails.
#[test]
fn every_example_loads_and_validates() {
    let s = setup();
    let names: Vec<String> = s
        .examples
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for needed in ["minimal.toml", "single-master.toml"] {
        assert!(names.iter().any(|n| n == needed), "config/{needed} missing");
    }
    let mut failures = Vec::new();
    for path in &s.examples {
        match Config::from_file(path).and_then(|c| c.validate()) {
            Ok(()) => {}
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Steps: load `config/single-master.toml`; check that the sections it documents were read
/// as written: one site with three nodes, the backend password from its environment variable,
/// the default password from its file, a named user with a password and one with a SHA-256
/// digest and its own backend credentials, the allowed command, and the admin address.
#[test]
fn single_master_example_is_read_as_written() {
    let s = setup();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/single-master.toml");
    let cfg = Config::from_file(&path).expect("loads");
    assert_eq!(cfg.sites.len(), 1);
    assert_eq!(cfg.sites[0].nodes.len(), 3);
    let backend_pw = s
        .env
        .iter()
        .find(|(k, _)| k == "RFP_BACKEND_PASSWORD")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        cfg.backend.password.as_ref().map(|p| p.expose()),
        backend_pw
    );
    match &cfg.auth.password {
        Password::Plain(p) => assert!(p.expose().starts_with("example-secret-file-")),
        other => panic!("default password should come from a file: {other:?}"),
    }
    assert_eq!(cfg.auth.users.len(), 2);
    assert!(matches!(cfg.auth.users[0].password, Password::Plain(_)));
    assert!(matches!(cfg.auth.users[1].password, Password::Sha256(_)));
    assert_eq!(cfg.auth.users[1].backend_user.as_deref(), Some("reporting"));
    assert!(cfg.auth.users[1].backend_password.is_some());
    assert_eq!(cfg.allow_commands, vec!["CONFIG|SET"]);
    assert!(cfg.admin.is_some());
}

/// Steps: for each `config/*.toml`, run `redis-failover-proxy --config <file> --check` with
/// the examples' environment variables and secret files (an example naming TLS files is
/// checked as a copy naming certificates made at test time instead); expect exit code 0 and
/// "configuration is valid" on stdout.
#[test]
fn check_flag_accepts_every_example() {
    let s = setup();
    assert!(!s.examples.is_empty());
    let pki = support::tls::Pki::new("example CA");
    for path in &s.examples {
        let text = std::fs::read_to_string(path).expect("read example");
        let local = support::tls::with_stand_in_tls_files(&text, &pki);
        let checked = if local == text {
            path.clone()
        } else {
            let copy = pki.dir().join(path.file_name().expect("file name"));
            std::fs::write(&copy, local).expect("write copy");
            copy
        };
        let out = run_binary(&["--config", &checked.to_string_lossy(), "--check"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
    }
}

/// Steps: write a file with seven problems (bad address, bad log format, bad size, bad
/// duration, a secret from an unset environment variable, an unknown key in a section, a
/// malformed SHA-256 digest) and run `--check` on it; expect exit code 2, the count of problems, each problem's
/// key path on stderr, and not the inline secret the file holds.
#[test]
fn check_flag_lists_every_problem_of_a_broken_file() {
    let s = setup();
    let broken = s.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        r#"
listen = "nowhere"
log_format = "xml"
[limits]
output_buffer = "lots"
[backend]
reply_timeout = "soon"
password = { env = "RFP_CONFIG_EXAMPLES_SURELY_UNSET" }
[health]
intervall = "1s"
[[sites]]
nodes = ["127.0.0.1:7001"]
[auth]
password_sha256 = "not-a-digest"
[[auth.users]]
name = "app"
password = "inline-secret-never-printed"
"#,
    )
    .expect("write broken file");
    let out = run_binary(&["--config", &broken.to_string_lossy(), "--check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("7 problem(s)"), "stderr: {stderr}");
    for path in [
        "listen",
        "log_format",
        "limits.output_buffer",
        "backend.reply_timeout",
        "backend.password",
        "health.intervall",
        "auth.password_sha256",
    ] {
        assert!(
            stderr.lines().any(|l| l.trim_start().starts_with(path)),
            "no problem reported for {path}: {stderr}"
        );
    }
    assert!(stderr.contains("RFP_CONFIG_EXAMPLES_SURELY_UNSET"));
    assert!(!stderr.contains("inline-secret-never-printed"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("valid"));
}

/// Steps: run `--check` with a file that parses but names no Redis node, and with no file and
/// no flags; both must exit with code 2 and say that no node is configured.
#[test]
fn check_flag_refuses_a_configuration_without_nodes() {
    let s = setup();
    let empty = s.dir.path().join("no-nodes.toml");
    std::fs::write(&empty, "listen = \"127.0.0.1:6380\"\n").expect("write");
    let empty = empty.to_string_lossy();
    for args in [vec!["--config", &*empty, "--check"], vec!["--check"]] {
        let out = run_binary(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("sites: no Redis node configured"),
            "{stderr}"
        );
    }
}
