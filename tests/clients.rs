//! Real Redis clients through the proxy: `redis-benchmark`, `redis-cli` (commands, RESP3,
//! databases, transactions, mass insertion with `--pipe`, SCAN) and redis-py 5 (the handshake
//! it sends on every connection, pipelines with and without MULTI, WATCH, pub/sub, a pool
//! shared by 20 threads). These are the clients applications actually use, so what the proxy
//! must get right is what they send, not what a hand-written frame contains.
//!
//! redis-py runs from a virtual environment: the one named by `RFP_PYTHON` (scripts/test
//! makes it), or else `target/pyvenv`, made here with `python3 -m venv` and
//! `pip install 'redis==5.*'` when missing.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use support::{Frame, Proxy, RedisServer};

/// Runs `redis-cli -h 127.0.0.1 -p <port> <args>` with `stdin` as its input.
fn redis_cli(port: u16, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli must be installed (scripts/install-deps)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write redis-cli input");
    child.wait_with_output().expect("redis-cli output")
}

/// `redis-cli` with no input; returns stdout, failing the test on a non-zero exit.
fn cli(port: u16, args: &[&str]) -> String {
    let out = redis_cli(port, args, b"");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Steps: start Redis and the proxy; run `redis-benchmark -t set,get,incr,lpush,lrange
/// -n 2000 -q` through the proxy; expect exit code 0, no error or warning in its output, and
/// a "requests per second" line for each of its eight tests; then read Redis directly: the
/// INCR counter must be exactly 2000 and the list must hold the 4000 pushed elements.
#[test]
fn redis_benchmark_runs_clean() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string()])
        .args(["-t", "set,get,incr,lpush,lrange", "-n", "2000", "-q"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-benchmark must be installed (scripts/install-deps)");
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    for bad in ["Error", "ERR", "WARN"] {
        assert!(
            !stdout.contains(bad) && !stderr.contains(bad),
            "{bad} in output:\n{stdout}\n{stderr}"
        );
    }
    for test in [
        "SET:",
        "GET:",
        "INCR:",
        "LPUSH:",
        "LRANGE_100 (first 100 elements):",
        "LRANGE_300 (first 300 elements):",
        "LRANGE_500 (first 500 elements):",
        "LRANGE_600 (first 600 elements):",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(test) && l.contains("requests per second")),
            "no result for {test}:\n{stdout}"
        );
    }
    assert_eq!(
        redis.cmd(&["GET", "counter:__rand_int__"]),
        Frame::bulk("2000")
    );
    assert_eq!(redis.cmd(&["LLEN", "mylist"]), Frame::Int(4000));
}

/// Steps: through the proxy with redis-cli: SET/GET a value with a space, INCR three times,
/// EVAL a script, MULTI/EXEC and a command script from stdin, `-n 3` (SELECT) checked against
/// Redis's db 3 directly, `-3` (HELLO 3) HGETALL, `--scan`, INFO, a refused command, and a
/// 5,000-command `--pipe` mass insertion that must report 0 errors and 5,000 replies.
#[test]
fn redis_cli_commands() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let p = proxy.port;

    assert_eq!(cli(p, &["SET", "cli:k", "hello world"]), "OK\n");
    assert_eq!(cli(p, &["GET", "cli:k"]), "hello world\n");
    for n in 1..=3 {
        assert_eq!(cli(p, &["INCR", "cli:n"]), format!("{n}\n"));
    }
    assert_eq!(
        cli(
            p,
            &[
                "EVAL",
                "return redis.call('INCRBY', KEYS[1], ARGV[1])",
                "1",
                "cli:n",
                "10"
            ]
        ),
        "13\n"
    );

    let out = redis_cli(p, &[], b"MULTI\nINCR cli:t\nINCR cli:t\nEXEC\nGET cli:t\n");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "OK\nQUEUED\nQUEUED\n1\n2\n2\n"
    );

    assert_eq!(cli(p, &["-n", "3", "SET", "cli:db", "three"]), "OK\n");
    assert_eq!(cli(p, &["-n", "3", "GET", "cli:db"]), "three\n");
    assert_eq!(
        cli(p, &["GET", "cli:db"]),
        "\n",
        "db 0 must not see db 3's key"
    );
    let mut direct = redis.client();
    assert_eq!(direct.cmd(&["SELECT", "3"]), Frame::ok());
    assert_eq!(direct.cmd(&["GET", "cli:db"]), Frame::bulk("three"));

    assert_eq!(cli(p, &["-3", "HSET", "cli:h", "f", "v", "g", "w"]), "2\n");
    // redis-cli prints a RESP3 map one "field value" pair a line, a RESP2 array one item a
    // line: the output shows which protocol the proxy answered in.
    let hash = cli(p, &["-3", "HGETALL", "cli:h"]);
    let mut pairs: Vec<&str> = hash.lines().collect();
    pairs.sort();
    assert_eq!(pairs, vec!["f v", "g w"], "{hash}");
    let hash = cli(p, &["HGETALL", "cli:h"]);
    let mut items: Vec<&str> = hash.lines().collect();
    items.sort();
    assert_eq!(items, vec!["f", "g", "v", "w"], "{hash}");
    let info = cli(p, &["-3", "CLIENT", "INFO"]);
    assert!(info.contains("resp=3"), "{info}");

    let mut keys: Vec<String> = cli(p, &["--scan", "--pattern", "cli:*"])
        .lines()
        .map(String::from)
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["cli:h", "cli:k", "cli:n", "cli:t"]);

    assert!(cli(p, &["INFO", "server"]).contains("redis_version:"));
    let refused = cli(p, &["CONFIG", "SET", "maxmemory", "1"]);
    assert!(refused.starts_with("ERR"), "{refused}");
    assert_eq!(
        redis.cmd(&["CONFIG", "GET", "maxmemory"]).items()[1],
        Frame::bulk("0")
    );

    let mut mass = Vec::new();
    for i in 0..5_000 {
        mass.extend(support::client::encode(&[
            b"RPUSH",
            b"cli:mass",
            i.to_string().as_bytes(),
        ]));
    }
    let out = redis_cli(p, &["--pipe"], &mass);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("errors: 0, replies: 5000"), "{text}");
    assert_eq!(redis.cmd(&["LLEN", "cli:mass"]), Frame::Int(5000));
    assert_eq!(
        redis.cmd(&["LINDEX", "cli:mass", "-1"]),
        Frame::bulk("4999")
    );
}

/// The Python interpreter of a venv with redis-py 5: `RFP_PYTHON`, or `target/pyvenv`
/// (made when missing).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("RFP_PYTHON") {
            return PathBuf::from(p);
        }
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .to_path_buf();
        let venv = target.join("pyvenv");
        let python = venv.join("bin").join("python");
        let has_redis5 = || {
            Command::new(&python)
                .args([
                    "-c",
                    "import redis, sys; sys.exit(not redis.__version__.startswith('5.'))",
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has_redis5() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "python3 -m venv {} failed", venv.display());
            let ok = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("redis==5.*")
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "pip install redis==5.* failed");
            assert!(
                has_redis5(),
                "redis-py 5 not importable from {}",
                python.display()
            );
        }
        python
    })
}

/// Runs tests/python/redis_py_client.py against `port` and checks that every section passed.
fn run_redis_py(port: u16, password: Option<&str>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/redis_py_client.py");
    let mut cmd = Command::new(python());
    cmd.arg(&script).arg(port.to_string());
    if let Some(pw) = password {
        cmd.arg(pw);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-py script failed:\n{stdout}\n{stderr}"
    );
    for section in [
        "ok connect",
        "ok commands",
        "ok pipeline",
        "ok watch",
        "ok pubsub resp2",
        "ok pubsub resp3",
        "ok pool",
        "all ok",
    ] {
        assert!(
            stdout.lines().any(|l| l == section),
            "missing {section:?}:\n{stdout}\n{stderr}"
        );
    }
}

/// Steps: start Redis and the proxy; run the redis-py 5 script (connect with its CLIENT SETINFO
/// handshake, RESP3 with HELLO 3, ordinary commands and errors, databases, a 500-command
/// pipeline, MULTI/EXEC pipelines, WATCH with and without a conflicting write, pub/sub with
/// channels and patterns in RESP2 and RESP3, 20 threads on a 20-connection pool); every
/// section must report ok; then check on Redis directly that the pool's 4,000 INCRs landed.
#[test]
fn redis_py_through_the_proxy() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    run_redis_py(proxy.port, None);
    assert_eq!(redis.cmd(&["GET", "py:pool:total"]), Frame::bulk("4000"));
}

/// Steps: start Redis and a proxy whose default user needs a password; run the same redis-py
/// script with that password, so every connection (pool, pub/sub, RESP3 with HELLO AUTH)
/// authenticates first; every section must report ok. Then check that a client without the
/// password is refused with NOAUTH.
#[test]
fn redis_py_with_a_password() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .config(
            r#"
[auth]
password = "py-client-secret"
"#,
        )
        .nodes(&[&redis])
        .spawn();
    assert!(
        wait_ready(&proxy),
        "proxy never became ready: {}",
        proxy.log()
    );
    run_redis_py(proxy.port, Some("py-client-secret"));
    let mut anonymous = proxy.client();
    assert!(
        anonymous.cmd(&["GET", "py:str"]).is_error("NOAUTH"),
        "a client without the password must be refused"
    );
}

/// Waits until an authenticated write through `proxy` succeeds (a master is verified).
fn wait_ready(proxy: &Proxy) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < until {
        let mut c = proxy.client();
        if c.cmd(&["AUTH", "py-client-secret"]) == Frame::ok()
            && c.cmd(&["SET", "__ready__", "1"]) == Frame::ok()
        {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
