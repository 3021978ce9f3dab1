//! TLS on both sides of the proxy, with certificates made at test time: mutual TLS from
//! `redis-cli` and a Rust client through the proxy to a TLS-only `redis-server` that requires
//! client certificates; every certificate problem refused on the side that owns it, with an
//! error naming it (the client's handshake fails; a node with a bad certificate never becomes
//! healthy and commands get the proxy's no-master error); and the listener's certificate
//! replaced in place while clients keep working.

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use serde_json::Value;
use support::client::{encode, TlsStream};
use support::tls::{
    client_config, client_config_versions, redis_cli, redis_client, replace_file, tls_redis,
    wait_ready_tls, CertFiles, Pki, Usage, Validity,
};
use support::{Client, Frame, Proxy, RedisServer};

const FAILURES: &str = "redis_failover_proxy_tls_handshake_failures_total";

/// `--backend-tls-*` flags: trust `ca`, present `id`.
fn backend_tls_args(ca: &Path, id: &CertFiles) -> Vec<String> {
    [
        "--backend-tls-ca",
        ca.to_str().expect("path"),
        "--backend-tls-cert",
        id.cert.to_str().expect("path"),
        "--backend-tls-key",
        id.key.to_str().expect("path"),
    ]
    .map(str::to_string)
    .to_vec()
}

/// `--tls-*` flags for the listener: `cert`, and `client_ca` when given.
fn listener_tls_args(cert: &CertFiles, client_ca: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "--tls-cert".to_string(),
        cert.cert.to_str().expect("path").to_string(),
        "--tls-key".to_string(),
        cert.key.to_str().expect("path").to_string(),
    ];
    if let Some(ca) = client_ca {
        args.push("--tls-client-ca".into());
        args.push(ca.to_str().expect("path").into());
    }
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Connects with `config` and sends a PING; returns the error that must come instead of
/// PONG (at the handshake, or on the first read when TLS 1.3 lets the client finish first).
fn refused(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Error {
    let mut c = match Client::try_connect_tls(addr, config, "127.0.0.1") {
        Ok(c) => c,
        Err(e) => return e,
    };
    c.set_read_timeout(Some(Duration::from_secs(10)));
    if let Err(e) = c.try_send_raw(&encode(&[b"PING"])) {
        return e;
    }
    match c.try_read() {
        Ok(f) => panic!("the proxy answered {f:?}"),
        Err(e) => {
            assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "no answer and no close: {e}"
            );
            e
        }
    }
}

/// Polls a metric until it reaches `want`; panics with the proxy log otherwise.
fn wait_metric(proxy: &Proxy, labels: &[(&str, &str)], want: f64) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let got = proxy.metric(FAILURES, labels);
        if got == want {
            return;
        }
        assert!(
            got < want && Instant::now() < until,
            "{FAILURES}{labels:?} is {got}, expected {want}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Mutual TLS on both sides, end to end:
/// 1. One CA issues certificates for a TLS-only `redis-server` (client certificates
///    required), for the proxy's listener, for the proxy as Redis's client, and for an
///    application.
/// 2. The proxy reaches Redis over TLS with its client certificate and serves plaintext on
///    `--listen` and mutual TLS on `--tls-listen` side by side.
/// 3. `redis-cli --tls` with the application's certificate: SET, GET, and 200 SETs sent as
///    one pipeline with `--pipe` (200 replies, no error).
/// 4. The Rust client over TLS 1.3, then limited to TLS 1.2: SET/GET and 100 pipelined INCRs
///    answered in order.
/// 5. The plaintext listener sees the same data, and so does Redis itself over TLS.
#[test]
fn mutual_tls_from_clients_through_the_proxy_to_redis() {
    let pki = Pki::new("test CA");
    let node = pki.server("node", &["127.0.0.1", "localhost"]);
    let listener = pki.server("proxy", &["127.0.0.1", "localhost"]);
    let to_redis = pki.client("proxy-to-redis");
    let app = pki.client("app");
    let redis = tls_redis(&pki, &node);

    let mut args = listener_tls_args(&listener, Some(pki.ca()));
    args.extend(backend_tls_args(pki.ca(), &to_redis));
    let proxy = Proxy::builder()
        .nodes(&[&redis])
        .args(&strs(&args))
        .tls_listen()
        .start();

    let (ok, out, err) = redis_cli(pki.ca(), &app, proxy.tls_addr(), &["SET", "cli", "v1"], b"");
    assert!(ok && out.trim() == "OK", "redis-cli SET: {out} {err}");
    let (ok, out, err) = redis_cli(pki.ca(), &app, proxy.tls_addr(), &["GET", "cli"], b"");
    assert!(ok && out.trim() == "v1", "redis-cli GET: {out} {err}");
    let mut pipe = Vec::new();
    for i in 0..200 {
        pipe.extend(encode(&[b"SET", format!("pipe:{i}").as_bytes(), b"x"]));
    }
    let (ok, out, err) = redis_cli(pki.ca(), &app, proxy.tls_addr(), &["--pipe"], &pipe);
    assert!(
        ok && out.contains("errors: 0, replies: 200"),
        "redis-cli --pipe: {out} {err}"
    );

    for (label, versions) in [
        ("1.3", &[&rustls::version::TLS13][..]),
        ("1.2", &[&rustls::version::TLS12][..]),
    ] {
        let config = client_config_versions(pki.ca(), Some(&app), versions);
        let mut c = Client::connect_tls(proxy.tls_addr(), config, "127.0.0.1");
        let version = c.tls().protocol_version().expect("negotiated");
        assert_eq!(
            format!("{version:?}"),
            format!("TLSv{}", label.replace('.', "_"))
        );
        let key = format!("rust:{label}");
        assert_eq!(c.cmd(&["SET", &key, label]), Frame::ok());
        assert_eq!(c.cmd(&["GET", &key]), Frame::bulk(label));
        let counter = format!("counter:{label}");
        let mut incrs = Vec::new();
        for _ in 0..100 {
            incrs.extend(encode(&[b"INCR", counter.as_bytes()]));
        }
        c.send_raw(&incrs);
        for i in 1..=100 {
            assert_eq!(c.read(), Frame::Int(i), "INCR {i} over TLS {label}");
        }
    }

    let mut plain = proxy.client();
    assert_eq!(plain.cmd(&["GET", "cli"]), Frame::bulk("v1"));
    assert_eq!(plain.cmd(&["GET", "rust:1.2"]), Frame::bulk("1.2"));
    assert_eq!(plain.cmd(&["SET", "plain", "p"]), Frame::ok());
    let mut direct = redis_client(&pki, &redis);
    assert_eq!(direct.cmd(&["GET", "plain"]), Frame::bulk("p"));
    assert_eq!(direct.cmd(&["GET", "pipe:199"]), Frame::bulk("x"));
    assert_eq!(direct.cmd(&["GET", "counter:1.3"]), Frame::bulk("100"));
}

/// Client certificates the proxy must refuse (`--tls-client-ca`), on a proxy serving mutual
/// TLS beside plaintext:
/// 1. A certificate from another CA, then no certificate, then an expired certificate
///    (one second apart: the proxy logs one failed handshake per second).
/// 2. For each: the client gets an error instead of PONG, naming the alert the proxy sent;
///    the proxy logs "client TLS handshake failed" with the reason and counts it under
///    reason="certificate".
/// 3. Afterwards a client with a valid certificate, and a plaintext client, are served.
#[test]
fn client_certificate_problems_fail_the_handshake() {
    let pki = Pki::new("test CA");
    let rogue = Pki::new("rogue CA");
    let listener = pki.server("proxy", &["127.0.0.1"]);
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .nodes(&[&redis])
        .args(&strs(&listener_tls_args(&listener, Some(pki.ca()))))
        .tls_listen()
        .admin()
        .start();
    let labels = [("side", "client"), ("reason", "certificate")];

    let cases = [
        (
            "a certificate from another CA",
            client_config(pki.ca(), Some(&rogue.client("rogue-app"))),
            "UnknownCA",
            "UnknownIssuer",
        ),
        (
            "no certificate",
            client_config(pki.ca(), None),
            "CertificateRequired",
            "peer sent no certificates",
        ),
        (
            "an expired certificate",
            client_config(
                pki.ca(),
                Some(&pki.issue("expired-app", &[], Usage::Client, Validity::Expired)),
            ),
            "CertificateExpired",
            "certificate expired",
        ),
    ];
    for (i, (what, config, alert, logged)) in cases.into_iter().enumerate() {
        // The start-up check's bare connection was a failed handshake too: let each case
        // have its own log line.
        thread::sleep(Duration::from_millis(1100));
        let e = refused(proxy.tls_addr(), config);
        assert!(
            e.to_string().contains(alert),
            "{what}: client error {e:?} does not name {alert}"
        );
        wait_metric(&proxy, &labels, (i + 1) as f64);
        assert!(
            proxy.wait_log(logged, Duration::from_secs(10)),
            "{what}: the proxy did not log {logged:?}"
        );
    }
    let failed_lines = proxy
        .log()
        .lines()
        .filter(|l| l.contains("client TLS handshake failed") && l.contains("certificate"))
        .count();
    assert_eq!(failed_lines, 3, "one log line per refused certificate");

    let good = client_config(pki.ca(), Some(&pki.client("app")));
    let mut c = Client::connect_tls(proxy.tls_addr(), good, "127.0.0.1");
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(proxy.client().cmd(&["GET", "k"]), Frame::bulk("v"));
}

/// A TLS-only node whose certificate the proxy must refuse, and what a client sees:
/// 1. Three nodes, each behind its own proxy: the proxy trusts another CA; the node's
///    certificate names another host; the node's certificate has expired. The proxy
///    presents a valid client certificate each time (the node would accept it).
/// 2. `/topology` shows each node unhealthy, no master, and a probe error naming the
///    certificate problem; the log says the node is unhealthy with the same reason, and the
///    failure is counted under side="backend", reason="certificate".
/// 3. A SET through each proxy gets the proxy's MASTERDOWN error (the command was not
///    executed) within the hold timeout, not a hang.
#[test]
fn node_certificate_problems_keep_the_node_out() {
    let pki = Pki::new("test CA");
    let rogue = Pki::new("rogue CA");
    let to_redis = pki.client("proxy-to-redis");
    let cases = [
        (
            "the proxy trusts another CA",
            pki.server("node-a", &["127.0.0.1"]),
            rogue.ca(),
            vec!["UnknownIssuer"],
        ),
        (
            "the certificate names another host",
            pki.server("node-b", &["redis.wrong.example"]),
            pki.ca(),
            vec!["not valid for name", "127.0.0.1", "redis.wrong.example"],
        ),
        (
            "the certificate has expired",
            pki.issue("node-c", &["127.0.0.1"], Usage::Server, Validity::Expired),
            pki.ca(),
            vec!["certificate expired"],
        ),
    ];
    let running: Vec<(&str, RedisServer, Proxy, Vec<&str>)> = cases
        .into_iter()
        .map(|(what, node, trusted, reason)| {
            let redis = tls_redis(&pki, &node);
            let proxy = Proxy::builder()
                .config("[failover]\nhold_timeout = \"500ms\"\n")
                .nodes(&[&redis])
                .args(&strs(&backend_tls_args(trusted, &to_redis)))
                .admin()
                .spawn();
            (what, redis, proxy, reason)
        })
        .collect();

    for (what, redis, proxy, reason) in &running {
        let until = Instant::now() + Duration::from_secs(15);
        let node = loop {
            let (status, body) = proxy.admin_get("/topology");
            assert_eq!(status, 200, "{what}: /topology: {body}");
            let topo: Value = serde_json::from_str(&body).expect("topology JSON");
            let node = topo["nodes"][0].clone();
            if node["error"].is_string() {
                assert!(topo["master"].is_null(), "{what}: a master: {topo}");
                break node;
            }
            assert!(Instant::now() < until, "{what}: no probe error: {topo}");
            thread::sleep(Duration::from_millis(100));
        };
        let error = node["error"].as_str().expect("error");
        assert_eq!(node["healthy"], Value::Bool(false), "{what}: {node}");
        for part in reason {
            assert!(
                error.contains(part),
                "{what}: node error {error:?} lacks {part:?}"
            );
        }
        let logged = format!("tls with {}: invalid peer certificate", redis.addr_str());
        assert!(
            proxy.wait_log(&logged, Duration::from_secs(10)),
            "{what}: log lacks {logged:?}"
        );
        assert!(
            proxy
                .log()
                .lines()
                .any(|l| l.contains("node health changed") && l.contains(reason[0])),
            "{what}: the node's failure is not logged with its reason"
        );
        let backend = [("side", "backend"), ("reason", "certificate")];
        assert!(
            proxy.metric(FAILURES, &backend) >= 1.0,
            "{what}: not counted"
        );

        let mut c = proxy.client();
        c.set_read_timeout(Some(Duration::from_secs(15)));
        match c.cmd(&["SET", "k", "v"]) {
            Frame::Error(e) => assert!(
                e.starts_with("MASTERDOWN") && e.contains("not executed"),
                "{what}: {e}"
            ),
            other => panic!("{what}: SET answered {other:?}"),
        }
    }
}

/// Writes one certificate and key pair over the listener's files, certificate first (as a
/// rotation in progress leaves them for a moment).
fn install(from: &CertFiles, to: &CertFiles) {
    replace_file(&from.cert, &to.cert);
    replace_file(&from.key, &to.key);
}

/// A client that keeps running SET/GET on one TLS connection until told to stop; counts its
/// rounds, and panics on any wrong reply.
struct Busy {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: thread::JoinHandle<Client<TlsStream>>,
}

impl Busy {
    fn start(mut c: Client<TlsStream>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (s, r) = (Arc::clone(&stop), Arc::clone(&rounds));
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let n = r.load(Ordering::Relaxed).to_string();
                assert_eq!(c.cmd(&["SET", "busy", &n]), Frame::ok());
                assert_eq!(c.cmd(&["GET", "busy"]), Frame::bulk(&n));
                r.fetch_add(1, Ordering::Relaxed);
            }
            c
        });
        Self {
            stop,
            rounds,
            thread,
        }
    }

    /// Waits until it did `n` more rounds.
    fn advance(&self, n: u64) {
        let target = self.rounds.load(Ordering::Relaxed) + n;
        let until = Instant::now() + Duration::from_secs(20);
        while self.rounds.load(Ordering::Relaxed) < target {
            assert!(!self.thread.is_finished(), "the busy client failed");
            assert!(Instant::now() < until, "the busy client stalled");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(self) -> Client<TlsStream> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the busy client failed")
    }
}

/// The listener's certificate replaced in place during traffic (`--listen` speaks TLS):
/// 1. A client opens a TLS connection and keeps running SET/GET on it throughout.
/// 2. The certificate and key files are replaced by a new pair (each written beside and
///    renamed over, as a Secret volume changes); a new client sees the new certificate
///    (same DER), the proxy logs that it uses the new files, the busy client keeps working.
/// 3. A broken pair replaces them (a new certificate with the first pair's key): the proxy
///    logs that it keeps the previous files; new clients still get the second certificate.
/// 4. A valid third pair replaces the broken one; new clients get it.
/// 5. The busy client's connection still presents the first certificate and never failed.
#[test]
fn listener_certificate_rotates_in_place_during_traffic() {
    let pki = Pki::new("test CA");
    let live = pki.server("live", &["127.0.0.1"]);
    let v1 = pki.server("v1", &["127.0.0.1"]);
    let v2 = pki.server("v2", &["127.0.0.1"]);
    let v3 = pki.server("v3", &["127.0.0.1"]);
    install(&v1, &live);
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .nodes(&[&redis])
        .args(&strs(&listener_tls_args(&live, None)))
        .spawn();
    let config = client_config(pki.ca(), None);
    wait_ready_tls(&proxy, proxy.addr(), &config);
    let leaf = || Client::connect_tls(proxy.addr(), Arc::clone(&config), "127.0.0.1").peer_leaf();
    assert!(leaf() == v1.der, "the first certificate is served");

    let busy = Busy::start(Client::connect_tls(
        proxy.addr(),
        Arc::clone(&config),
        "127.0.0.1",
    ));
    busy.advance(20);
    install(&v2, &live);
    assert!(
        leaf() == v2.der,
        "a new handshake gets the second certificate"
    );
    assert!(proxy.wait_log(
        "TLS files changed; new handshakes use them",
        Duration::from_secs(5)
    ));
    busy.advance(20);

    let broken = CertFiles {
        cert: v3.cert.clone(),
        key: v1.key.clone(),
        der: Vec::new(),
    };
    install(&broken, &live);
    assert!(leaf() == v2.der, "a broken pair replaced the working one");
    assert!(
        proxy.wait_log(
            "cannot be used; keeping the previous ones",
            Duration::from_secs(5)
        ),
        "no warning about the broken pair"
    );
    busy.advance(20);

    install(&v3, &live);
    assert!(leaf() == v3.der, "the repaired pair is not used");
    busy.advance(20);
    let mut c = busy.finish();
    assert!(
        c.peer_leaf() == v1.der,
        "the open connection changed certificate"
    );
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
}
