//! What durable writes cost: `redis-benchmark SET` through the proxy with durability off and
//! on (`--durable-replicas 1`), at `-c 50 -P 1` and `-c 50 -P 16`, in three layouts run one
//! after the other in one run:
//! - `loopback`: a master and its replica on loopback;
//! - `loopback+2ms`: the same, with the replica's link to the master through the test relay,
//!   which delays every chunk by 1 ms each way (a replica in another site; the kernel here
//!   has no netem);
//! - `lab`: the network lab, the master in site a, the replica in site b, the proxy in site
//!   a (replication crosses the lab's bridge); skipped where namespaces cannot be made.
//!
//! Ignored by default; `scripts/bench` runs it (release build) and shows the table printed
//! between `=== durability benchmark ===` markers. `BENCH_QUICK=1` runs fewer requests.

mod support;

use std::process::Command;
use std::time::Duration;

use support::netlab::Lab;
use support::relay::Relay;
use support::{Proxy, RedisServer};

/// One measured line.
struct Line {
    layout: &'static str,
    durable: bool,
    pipeline: u32,
    ops: f64,
    p50: f64,
    p99: f64,
}

/// Requests per run at `-P 1` and at `-P 16`.
fn requests() -> (u32, u32) {
    if std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1") {
        (20_000, 100_000)
    } else {
        (100_000, 500_000)
    }
}

/// `redis-benchmark -t set` against `host:port`; (ops/s, p50 ms, p99 ms).
fn benchmark(host: &str, port: u16, pipeline: u32, n: u32) -> (f64, f64, f64) {
    let out = Command::new("timeout")
        .args(["300", "redis-benchmark", "-h", host, "-p"])
        .arg(port.to_string())
        .args(["-c", "50", "-P"])
        .arg(pipeline.to_string())
        .args(["-n"])
        .arg(n.to_string())
        .args(["-t", "set", "-r", "100000", "-d", "16", "--csv"])
        .output()
        .expect("redis-benchmark must be installed (scripts/install-deps)");
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("\"SET\""))
        .unwrap_or_else(|| panic!("no SET line from redis-benchmark: {text}"));
    let cols: Vec<f64> = row
        .split(',')
        .skip(1)
        .map(|c| c.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    // rps, avg, min, p50, p95, p99, max
    (cols[0], cols[3], cols[5])
}

/// Both pipelines through a proxy with durability off and on; `start` starts the proxy.
fn measure(layout: &'static str, host: &str, start: &dyn Fn(bool) -> Proxy) -> Vec<Line> {
    let (plain, pipelined) = requests();
    let mut lines = Vec::new();
    for durable in [false, true] {
        let proxy = start(durable);
        for (pipeline, n) in [(1, plain), (16, pipelined)] {
            let (ops, p50, p99) = benchmark(host, proxy.port, pipeline, n);
            lines.push(Line {
                layout,
                durable,
                pipeline,
                ops,
                p50,
                p99,
            });
        }
    }
    lines
}

fn loopback(layout: &'static str, delay: Option<Duration>) -> Vec<Line> {
    let master = RedisServer::start();
    let relay = Relay::start(master.addr());
    if let Some(d) = delay {
        relay.delay(d);
    }
    let replica = RedisServer::builder()
        .arg("replicaof", &format!("127.0.0.1 {}", relay.addr().port()))
        .start();
    replica.wait_link_up();
    let nodes = format!("{},{}", master.addr_str(), replica.addr_str());
    measure(layout, "127.0.0.1", &|durable| {
        let mut args = vec!["--nodes", nodes.as_str()];
        if durable {
            args.extend(["--durable-replicas", "1"]);
        }
        Proxy::builder().args(&args).start()
    })
}

fn lab() -> Vec<Line> {
    let Some(lab) = Lab::try_start(&["a", "b"]) else {
        support::netlab::not_run("bench_durable_lab");
        return Vec::new();
    };
    lab.watchdog(Duration::from_secs(600));
    let _master = lab.redis("a", Default::default());
    let replica = lab.replica("b", "a");
    replica.wait_link_up();
    let toml = |durable: bool| {
        format!(
            "[health]\ninterval = \"200ms\"\n\n[durability]\nreplicas = {}\n\n\
             [[sites]]\nname = \"a\"\nnodes = [\"{}\"]\nquorum = 1\n\n\
             [[sites]]\nname = \"b\"\nnodes = [\"{}\"]\nquorum = 1\n",
            u32::from(durable),
            lab.redis_addr("a"),
            lab.redis_addr("b")
        )
    };
    let host = lab.site("a").ctl_ip.to_string();
    measure("lab", &host, &|durable| lab.proxy("a", &toml(durable)))
}

#[test]
#[ignore = "minutes of redis-benchmark; run by scripts/bench"]
fn durable_writes_cost() {
    let mut lines = loopback("loopback", None);
    lines.extend(loopback("loopback+2ms", Some(Duration::from_millis(1))));
    lines.extend(lab());
    println!("=== durability benchmark ===");
    println!(
        "redis-benchmark -t set -c 50 -d 16 -r 100000 through the proxy; durability: \
         --durable-replicas 1 (WAIT after each batch) or off"
    );
    println!(
        "{:<13} {:>10} {:>3} {:>12} {:>9} {:>9} {:>14}",
        "layout", "durability", "-P", "ops/s", "p50 ms", "p99 ms", "ops/s vs off"
    );
    for l in &lines {
        let off = lines
            .iter()
            .find(|o| o.layout == l.layout && o.pipeline == l.pipeline && !o.durable)
            .map_or(f64::NAN, |o| o.ops);
        println!(
            "{:<13} {:>10} {:>3} {:>12.0} {:>9.3} {:>9.3} {:>13.2}x",
            l.layout,
            if l.durable { "on" } else { "off" },
            l.pipeline,
            l.ops,
            l.p50,
            l.p99,
            l.ops / off
        );
    }
    println!("=== end of durability benchmark ===");
    assert!(lines.iter().all(|l| l.ops > 0.0), "a run measured nothing");
}
