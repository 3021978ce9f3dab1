//! The load harness binary (`redis-failover-load`) against a real `redis-server`: a clean run
//! reports throughput, latency and an intact ledger; a restart of a server without persistence
//! in the middle of a run must show up as acknowledged writes lost, with exit code 1, so the
//! ledger check is known to be able to fail. TLS (through the proxy's TLS listener) and AUTH
//! are exercised with a fixed number of requests.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{Frame, Proxy, RedisServer};

fn harness(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redis-failover-load"));
    c.args(args).stdin(Stdio::null());
    c
}

fn report(path: &Path, out: &Output) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(&text).expect("valid JSON report")
}

#[test]
fn a_clean_run_reports_throughput_latency_and_no_loss() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let addr = redis.addr_str();
    let out = harness(&[
        "--addr",
        &addr,
        "-c",
        "4",
        "-P",
        "4",
        "--keyspace",
        "200",
        "--duration",
        "2",
        "--quiet",
        "--nodes",
        &addr,
        "--json",
        json.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let r = report(&json, &out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert!(r["ops"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["writes_ok"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["reads_ok"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(r["errors_total"], 0, "{r:#}");
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latency_us"][p].as_u64().unwrap() > 0, "{p}: {r:#}");
    }
    let check = &r["ledger"]["check"];
    assert_eq!(check["lost"], 0, "{r:#}");
    assert!(check["keys_checked"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(r["superseded"]["findings"]["writes"], 0, "{r:#}");
    assert!(
        r["superseded"]["monitors"][0]["writes_seen"]
            .as_u64()
            .unwrap()
            > 0,
        "{r:#}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("acknowledged writes lost: 0"), "{text}");
}

#[test]
fn a_restart_without_persistence_loses_acknowledged_writes() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let addr = redis.addr_str();
    // Writes only, over a keyspace large enough that most keys written before the restart
    // are not written again after it.
    let child = harness(&[
        "--addr",
        &addr,
        "-c",
        "2",
        "--ratio",
        "0:1",
        "--keyspace",
        "1000000",
        "--duration",
        "3",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Restart once the harness has written for a while (under load, the harness may take a
    // moment to start).
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !matches!(redis.cmd(&["DBSIZE"]), Frame::Int(n) if n > 1000) {
        assert!(std::time::Instant::now() < until, "the harness never wrote");
        std::thread::sleep(Duration::from_millis(20));
    }
    redis.restart();
    let out = child.wait_with_output().unwrap();
    let r = report(&json, &out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    let check = &r["ledger"]["check"];
    assert!(check["lost"].as_u64().unwrap() > 0, "{r:#}");
    assert!(
        !check["lost_examples"].as_array().unwrap().is_empty(),
        "{r:#}"
    );
    assert_eq!(check["lost_examples"][0]["found"], "nothing", "{r:#}");
    assert!(r["reconnects"].as_u64().unwrap() > 0, "{r:#}");
    // Writes after the restart were acknowledged and survived: they are not counted.
    assert!(check["lost"].as_u64() < r["writes_ok"].as_u64(), "{r:#}");
}

#[test]
fn usage_errors_exit_with_2() {
    let out = harness(&["-c", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = harness(&["--ratio", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = harness(&["--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A CA and a certificate for `localhost` signed by it, as PEM files in `dir`: (ca, cert, key).
fn certificates(dir: &Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_string()
    };
    (
        write("ca.pem", ca.pem()),
        write("cert.pem", leaf.pem()),
        write("key.pem", leaf_key.serialize_pem()),
    )
}

#[test]
fn tls_through_the_proxy_with_a_fixed_number_of_requests() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let proxy = Proxy::builder()
        .nodes(&[&redis])
        .args(&["--tls-cert", &cert, "--tls-key", &key])
        .spawn();
    let json = dir.path().join("report.json");
    let addr = proxy.addr().to_string();
    let mut ok = None;
    // The proxy accepts before its master is verified: retry until a run completes cleanly.
    for _ in 0..20 {
        let out = harness(&[
            "--addr",
            &addr,
            "--tls",
            "--tls-ca",
            &ca,
            "--tls-server-name",
            "localhost",
            "-c",
            "2",
            "-P",
            "8",
            "--requests",
            "1000",
            "--keyspace",
            "50",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        let r = report(&json, &out);
        if out.status.code() == Some(0) && r["errors_total"] == 0 {
            ok = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = ok.unwrap_or_else(|| panic!("no clean run through TLS: {}", proxy.log()));
    assert_eq!(r["ops"], 1000, "{r:#}");
    assert_eq!(r["ledger"]["check"]["lost"], 0, "{r:#}");
    assert_eq!(r["ledger"]["verified_at"], addr.as_str(), "{r:#}");
}

#[test]
fn auth_with_a_password_from_the_environment() {
    let redis = RedisServer::builder().password("s3cret").start();
    let addr = redis.addr_str();
    let run = |password: &str, stop: &[&str]| {
        let mut args = vec!["--addr", &addr, "-c", "1", "--quiet", "--json", "-"];
        args.extend_from_slice(&["--password-env", "LOAD_TEST_PASSWORD"]);
        args.extend_from_slice(stop);
        harness(&args)
            .env("LOAD_TEST_PASSWORD", password)
            .output()
            .unwrap()
    };
    let out = run("s3cret", &["--requests", "100"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ops"], 100, "{r:#}");
    // A wrong password: no connection ever succeeds, so nothing can be checked.
    let out = run("wrong", &["--duration", "0.5"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["connect_failures"].as_u64().unwrap() > 0, "{r:#}");
    assert!(
        r["ledger"]["error"].as_str().unwrap().contains("AUTH"),
        "{r:#}"
    );
}
