//! Command classification benchmarks: the cost of [`classify`], which the proxy runs on every
//! command to decide where it goes (shared lane, dedicated connection, answered locally,
//! refused). Measured over a mix of the commands applications send most, in the case they
//! arrive in (upper and lower), with container commands (CLIENT, CONFIG, XREAD) and an unknown
//! command; and over GET alone, the common case.
//!
//! Requests are built before the measured closure; run with `cargo bench --bench classify`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redis_failover_proxy::resp::command::{classify, Kind};
use redis_failover_proxy::resp::Request;

/// The mix: mostly everyday data commands, some connection and container commands.
fn mix() -> Vec<Request> {
    let cmds: &[&[&str]] = &[
        &["GET", "key:000000000001"],
        &["SET", "key:000000000001", "xxxxxxxxxxxxxxxx"],
        &["get", "key:000000000002"],
        &["set", "key:000000000002", "xxxxxxxxxxxxxxxx", "EX", "60"],
        &["INCR", "counter"],
        &["MGET", "a", "b", "c"],
        &["DEL", "a"],
        &["EXPIRE", "a", "100"],
        &["HSET", "h", "f", "v"],
        &["HGETALL", "h"],
        &["hget", "h", "f"],
        &["LPUSH", "l", "v"],
        &["LRANGE", "l", "0", "99"],
        &["ZADD", "z", "1", "m"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["SADD", "s", "m"],
        &[
            "EVALSHA",
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
            "1",
            "k",
        ],
        &["XADD", "st", "*", "f", "v"],
        &["XREAD", "COUNT", "10", "STREAMS", "st", "0"],
        &["PING"],
        &["SELECT", "1"],
        &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"],
        &["client", "info"],
        &["CONFIG", "GET", "maxmemory"],
        &["MULTI"],
        &["EXEC"],
        &["BLPOP", "q", "0"],
        &["SUBSCRIBE", "news"],
        &["NOSUCHCOMMAND", "x"],
        &["PUBLISH", "news", "hello"],
        &["TTL", "a"],
        &["EXISTS", "a"],
    ];
    cmds.iter().map(|args| Request::from_args(args)).collect()
}

fn classify_benches(c: &mut Criterion) {
    let mix = mix();
    // The inputs are what they claim to be.
    let kinds: Vec<Kind> = mix.iter().map(|r| classify(r).kind).collect();
    assert_eq!(kinds[0], Kind::Read);
    assert_eq!(kinds[1], Kind::Write);
    assert_eq!(kinds[2], Kind::Read);
    assert!(kinds.contains(&Kind::Blocking));
    assert!(kinds.contains(&Kind::Multi));
    assert!(kinds.iter().any(|k| matches!(k, Kind::Local(_))));
    let get = Request::from_args(&["GET", "key:000000000001"]);

    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(mix.len() as u64));
    g.bench_function("mix_of_32_commands", |b| {
        b.iter(|| {
            for req in black_box(&mix) {
                black_box(classify(req).kind);
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("GET", |b| b.iter(|| classify(black_box(&get)).kind));
    g.finish();
}

criterion_group!(benches, classify_benches);
criterion_main!(benches);
