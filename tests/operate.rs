//! Operating the proxy process: SIGTERM drains (unready at once, serving through the drain
//! delay, every command it took answered, exit 0), and `--log-format json` writes one JSON
//! object per line, with a line per topology change and none per command. SIGHUP reloads are
//! in `tests/reload.rs`.

mod support;

use std::io::{Cursor, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use support::client::{encode, read_frame};
use support::failover::{wait_for, wait_proxy_writes_to};
use support::http;
use support::{Frame, Proxy, RedisServer};

/// Waits until the log has `n` lines containing every one of `parts`; returns the last.
fn wait_log_count(proxy: &Proxy, parts: &[&str], n: usize) -> String {
    wait_for(
        &format!("{n} log lines with {parts:?}"),
        Duration::from_secs(15),
        || proxy.log_lines(parts).len() >= n,
    );
    proxy.log_lines(parts).pop().unwrap_or_default()
}

// === SIGTERM ===

/// SIGTERM with clients connected: unready at once, serving through the drain delay, exit 0.
/// 1. One Redis behind the proxy (`[shutdown] drain_delay = "3s"`, grace 5 s), admin on; a
///    client connected and served; `/readyz` 200.
/// 2. SIGTERM: `/readyz` turns 503 ("draining") while `/livez` stays 200; the client
///    connected before keeps working, and a client connecting now is still served (the load
///    balancer may not have noticed yet).
/// 3. Once the drain delay is over the proxy closes both connections and exits with code 0,
///    logging that every client finished.
#[test]
fn sigterm_turns_unready_at_once_and_serves_through_the_drain_delay() {
    let redis = RedisServer::start();
    let (admin_text, admin) = http::free_addr();
    let mut proxy = Proxy::builder()
        .config("[shutdown]\ndrain_delay = \"3s\"\ngrace = \"5s\"\n")
        .nodes(&[&redis])
        .args(&["--admin", &admin_text])
        .start();
    let mut before = proxy.client();
    assert_eq!(before.cmd(&["SET", "drain", "0"]), Frame::ok());
    let ready = http::get(admin, "/readyz", None);
    assert_eq!(ready.status, 200, "{ready:?}");

    proxy.signal("TERM");
    let mut unready = http::get(admin, "/readyz", None);
    wait_for("/readyz 503 after SIGTERM", Duration::from_secs(5), || {
        unready = http::get(admin, "/readyz", None);
        unready.status == 503
    });
    assert!(unready.body.contains("draining"), "{unready:?}");
    assert_eq!(http::get(admin, "/livez", None).status, 200);
    for i in 1..=20 {
        let v = i.to_string();
        assert_eq!(before.cmd(&["SET", "drain", &v]), Frame::ok());
        assert_eq!(before.cmd(&["GET", "drain"]), Frame::bulk(&v));
    }
    let mut during = proxy.client();
    assert_eq!(during.cmd(&["INCR", "late"]), Frame::Int(1));
    assert!(proxy.alive(), "exited before the drain delay ended");

    let code = proxy.wait_exit(Duration::from_secs(3 + 5 + 10));
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    assert!(
        before.closed(Duration::from_secs(5)),
        "client connected before not closed"
    );
    assert!(
        during.closed(Duration::from_secs(5)),
        "client connected during drain not closed"
    );
    assert_eq!(redis.cmd(&["GET", "drain"]), Frame::bulk("20"));
    assert_eq!(
        proxy.log_lines(&["all clients finished"]).len(),
        1,
        "{}",
        proxy.log()
    );
}

/// How a reply stream ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    /// The proxy closed the connection (FIN).
    Eof,
    /// The connection was reset.
    Reset,
    /// Anything else (a read timeout means the proxy neither answered nor closed).
    Failed(String),
}

/// One connection pipelining numbered `RPUSH <key> <n>` in chunks from one thread while
/// another reads the raw reply stream until the proxy closes it.
struct Pipeliner {
    key: String,
    /// Commands fully written so far.
    sent: Arc<AtomicU64>,
    /// Replies read so far (every reply here is one line).
    replies: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<(Vec<u8>, End)>>,
}

impl Pipeliner {
    /// Sends chunks of `chunk` commands every `pace` until `limit` are sent (`None`: until
    /// writing fails).
    fn start(proxy: &Proxy, key: &str, chunk: u64, pace: Duration, limit: Option<u64>) -> Self {
        let stream = TcpStream::connect(proxy.addr()).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let mut out = stream.try_clone().expect("clone");
        let mut input = stream;
        let sent = Arc::new(AtomicU64::new(0));
        let replies = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, k) = (Arc::clone(&sent), Arc::clone(&stop), key.to_string());
        let writer = std::thread::spawn(move || {
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) && limit.is_none_or(|l| n < l) {
                let mut bytes = Vec::new();
                for i in n + 1..=n + chunk {
                    let v = i.to_string();
                    bytes.extend(encode(&[b"RPUSH", k.as_bytes(), v.as_bytes()]));
                }
                if out.write_all(&bytes).is_err() {
                    return;
                }
                n += chunk;
                s.store(n, Ordering::Relaxed);
                std::thread::sleep(pace);
            }
        });
        let r = Arc::clone(&replies);
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            let end = loop {
                match input.read(&mut buf) {
                    Ok(0) => break End::Eof,
                    Ok(len) => {
                        let lines = buf[..len].iter().filter(|b| **b == b'\n').count();
                        r.fetch_add(lines as u64, Ordering::Relaxed);
                        all.extend_from_slice(&buf[..len]);
                    }
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => break End::Reset,
                    Err(e) => break End::Failed(e.to_string()),
                }
            };
            (all, end)
        });
        Self {
            key: key.to_string(),
            sent,
            replies,
            stop,
            writer: Some(writer),
            reader: Some(reader),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn replies(&self) -> u64 {
        self.replies.load(Ordering::Relaxed)
    }

    /// Waits for the reply stream to end; returns the decoded replies and how it ended.
    /// Panics when the stream stops in the middle of a reply.
    fn finish(mut self) -> (Vec<Frame>, End, u64) {
        let (raw, end) = self.reader.take().expect("reader").join().expect("reader");
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.writer.take().expect("writer").join();
        let mut cursor = Cursor::new(&raw[..]);
        let mut frames = Vec::new();
        while (cursor.position() as usize) < raw.len() {
            let frame = read_frame(&mut cursor).unwrap_or_else(|e| {
                panic!(
                    "{}: the reply stream stops inside a reply after {} replies ({e})",
                    self.key,
                    frames.len()
                )
            });
            frames.push(frame);
        }
        (frames, end, self.sent())
    }
}

impl Drop for Pipeliner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The numbers held in list `key` on `redis`.
fn stored(redis: &RedisServer, key: &str) -> Vec<u64> {
    match redis.cmd(&["LRANGE", key, "0", "-1"]) {
        Frame::Array(items) => items
            .iter()
            .map(|f| f.text().parse().expect("number"))
            .collect(),
        other => panic!("LRANGE {key}: {other:?}"),
    }
}

/// SIGTERM while clients pipeline thousands of commands.
/// 1. One Redis behind the proxy (drain delay 2 s, grace 10 s). Two clients each pipeline
///    3000 numbered `RPUSH` in chunks of 100 every 10 ms and then wait; two more keep
///    pipelining chunks of 100 every 5 ms until the proxy closes the connection. Each
///    connection's replies are read as a raw stream on a thread of their own.
/// 2. Once every client has 1000 replies, SIGTERM.
/// 3. The proxy exits with code 0 within the drain delay plus the grace period, logging that
///    every client finished.
/// 4. Every reply stream ends between two replies (never inside one), with the connection
///    closed; every reply is the list length or one of the proxy's own errors.
/// 5. The bounded clients got all 3000 replies, all acknowledgements, and their connections
///    were closed cleanly (FIN). The endless clients got replies for commands sent after the
///    signal (served during the drain delay).
/// 6. For every client, Redis holds exactly the acknowledged numbers, in order: nothing
///    acknowledged is missing, and nothing ran without its reply reaching the client (the
///    commands the proxy stopped reading were never executed).
#[test]
fn sigterm_mid_pipeline_answers_every_command_it_took() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::builder()
        .config("[shutdown]\ndrain_delay = \"2s\"\ngrace = \"10s\"\n")
        .nodes(&[&redis])
        .start();
    let bounded: Vec<Pipeliner> = (0..2)
        .map(|i| {
            Pipeliner::start(
                &proxy,
                &format!("bounded:{i}"),
                100,
                Duration::from_millis(10),
                Some(3000),
            )
        })
        .collect();
    let endless: Vec<Pipeliner> = (0..2)
        .map(|i| {
            Pipeliner::start(
                &proxy,
                &format!("endless:{i}"),
                100,
                Duration::from_millis(5),
                None,
            )
        })
        .collect();
    wait_for(
        "1000 replies on every client",
        Duration::from_secs(20),
        || bounded.iter().chain(&endless).all(|p| p.replies() >= 1000),
    );
    let sent_at_signal: Vec<u64> = endless.iter().map(Pipeliner::sent).collect();
    proxy.signal("TERM");
    let code = proxy.wait_exit(Duration::from_secs(2 + 10 + 10));
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    assert_eq!(
        proxy.log_lines(&["all clients finished"]).len(),
        1,
        "{}",
        proxy.log()
    );

    let mut report = Vec::new();
    let clients = bounded.into_iter().map(|p| (p, None)).chain(
        endless
            .into_iter()
            .zip(sent_at_signal)
            .map(|(p, s)| (p, Some(s))),
    );
    for (p, sent_at_signal) in clients {
        let key = p.key.clone();
        let (frames, end, sent) = p.finish();
        let mut acked = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            match f {
                Frame::Int(_) => acked.push(i as u64 + 1),
                Frame::Error(e) if e.ends_with("(proxy)") => {}
                other => panic!("{key}: reply #{} is {other:?}", i + 1),
            }
        }
        report.push(format!(
            "{key}: {sent} sent, {} replies ({} acknowledged), ended {end:?}",
            frames.len(),
            acked.len()
        ));
        assert!(
            matches!(end, End::Eof | End::Reset),
            "{key}: the proxy neither answered nor closed: {end:?}"
        );
        let held = stored(&redis, &key);
        assert_eq!(
            held.len(),
            acked.len(),
            "{key}: Redis holds {} numbers, the client got {} acknowledgements ({report:?})",
            held.len(),
            acked.len()
        );
        assert_eq!(
            held, acked,
            "{key}: Redis holds other numbers than acknowledged"
        );
        match sent_at_signal {
            None => {
                assert_eq!(frames.len(), 3000, "{key}: {report:?}");
                assert_eq!(acked.len(), 3000, "{key}: {report:?}");
                assert_eq!(end, End::Eof, "{key}: not closed cleanly");
            }
            Some(at_signal) => assert!(
                frames.len() as u64 > at_signal,
                "{key}: no reply to commands sent after SIGTERM ({report:?})"
            ),
        }
    }
    eprintln!("[SIGTERM mid-pipeline] {report:#?}");
}

// === Logs ===

/// `--log-format json`: one JSON object per line, a line per topology change saying what
/// changed and why, none per command.
/// 1. A master and a linked replica behind the proxy started with `--log-format json`
///    (level info).
/// 2. A client runs 2000 commands of many kinds (writes, reads, PING, MULTI/EXEC, a short
///    BLPOP, a refused command, wrong arity, SUBSCRIBE/UNSUBSCRIBE): the log gains no line.
/// 3. Redis's own `FAILOVER` on the master: the log gains an INFO "topology changed" line
///    with the new epoch, state verified, the replica as master and a reason naming it.
/// 4. Every line of the log is a JSON object with timestamp, level, target and
///    `fields.message`; the epochs of the "topology changed" lines grow.
#[test]
fn json_logs_say_what_changed_and_nothing_per_command() {
    let master = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&master).start();
    replica.wait_link_up();
    let proxy = Proxy::builder()
        .config("[health]\ninterval = \"100ms\"\n")
        .nodes(&[&master, &replica])
        .args(&["--log-format", "json"])
        .start();
    wait_log_count(&proxy, &["node health changed", &replica.addr_str()], 1);
    std::thread::sleep(Duration::from_millis(500));
    let quiet_from = proxy.log().lines().count();

    let mut c = proxy.client();
    for i in 0..200 {
        let k = format!("k{i}");
        assert_eq!(c.cmd(&["SET", &k, "v"]), Frame::ok());
        assert_eq!(c.cmd(&["GET", &k]), Frame::bulk("v"));
        assert_eq!(c.cmd(&["INCR", "n"]), Frame::Int(i + 1));
        assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
        assert_eq!(c.cmd(&["MULTI"]), Frame::ok());
        assert_eq!(c.cmd(&["INCR", "tx"]), Frame::Simple("QUEUED".into()));
        assert_eq!(c.cmd(&["EXEC"]), Frame::Array(vec![Frame::Int(i + 1)]));
        assert_eq!(c.cmd(&["BLPOP", "empty", "0.01"]), Frame::Null);
        assert!(c.cmd(&["CONFIG", "SET", "maxmemory", "0"]).is_error("ERR"));
        assert!(c.cmd(&["GET"]).is_error("ERR"));
    }
    let mut sub = proxy.client();
    for i in 0..20 {
        let ch = format!("ch{i}");
        sub.send(&["SUBSCRIBE", &ch]);
        assert_eq!(sub.read().items()[0], Frame::bulk("subscribe"));
        sub.send(&["UNSUBSCRIBE", &ch]);
        assert_eq!(sub.read().items()[0], Frame::bulk("unsubscribe"));
    }
    drop((c, sub));
    std::thread::sleep(Duration::from_millis(300));
    let log = proxy.log();
    let added: Vec<&str> = log.lines().skip(quiet_from).collect();
    assert!(
        added.is_empty(),
        "lines logged while serving commands: {added:#?}"
    );

    assert_eq!(master.cmd(&["FAILOVER", "TIMEOUT", "5000"]), Frame::ok());
    wait_proxy_writes_to(&proxy, &replica, "moved", Duration::from_secs(20));
    let new_master = replica.addr_str();
    let changed = wait_log_count(
        &proxy,
        &[
            "topology changed",
            "\"state\":\"verified\"",
            &format!("\"master\":\"{new_master}\""),
        ],
        1,
    );
    let line: Value = serde_json::from_str(&changed).expect("topology line is JSON");
    assert_eq!(line["level"], "INFO", "{line}");
    let fields = &line["fields"];
    assert!(fields["topology.epoch"].as_u64().is_some(), "{line}");
    assert!(
        fields["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&new_master)),
        "reason does not say why: {line}"
    );

    let mut epochs = Vec::new();
    for (i, raw) in proxy.log().lines().enumerate() {
        let v: Value = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {raw}", i + 1));
        for key in ["timestamp", "level", "target"] {
            assert!(v[key].is_string(), "line {} has no {key}: {raw}", i + 1);
        }
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&v["level"].as_str().unwrap_or("")),
            "line {}: {raw}",
            i + 1
        );
        assert!(
            v["fields"]["message"].is_string(),
            "line {} has no message: {raw}",
            i + 1
        );
        if v["fields"]["message"] == "topology changed" {
            for key in ["state", "master", "reason"] {
                assert!(
                    v["fields"][key].is_string(),
                    "line {}: no {key}: {raw}",
                    i + 1
                );
            }
            epochs.push(v["fields"]["topology.epoch"].as_u64().expect("epoch"));
        }
    }
    assert!(epochs.len() >= 2, "{epochs:?}");
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "epochs do not grow: {epochs:?}"
    );
}
