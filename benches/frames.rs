//! Frame scanning benchmarks: how fast the proxy finds command and reply boundaries.
//!
//! - `request_parser`: a pipeline of 1,000 `SET key value` commands (16-byte values) taken apart
//!   by [`RequestParser`], whole and arriving in 1,460-byte TCP segments.
//! - `reply_scanner`: the replies Redis sends back for such pipelines (1,000 `+OK`, 1,000
//!   16-byte bulk strings) and an `LRANGE` of 600 elements, scanned by [`ReplyScanner`].
//! - `large_reply_in_64k_chunks`: why the proxy has its own resumable scanner. A 100,000-element
//!   array reply (about 2.3 MB) arrives in 64 KiB chunks. A complete-frame decoder such as
//!   `redis_protocol`'s must start again from the first byte on every arrival, so its work grows
//!   with the square of the reply size; [`ReplyScanner`] resumes where it stopped and lets the
//!   scanned part be forwarded at once, so each byte is looked at once.
//!
//! Every input is built before the measured closure; run with `cargo bench --bench frames`.

use std::hint::black_box;

use bytes::{Buf, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use redis_failover_proxy::resp::{FrameLimits, ReplyScanner, RequestParser};

/// Appends a RESP multibulk command.
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// 1,000 `SET key:NNNNNNNNNNNN <16 bytes>` commands, as redis-benchmark sends them.
fn set_pipeline() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..1_000 {
        let key = format!("key:{i:012}");
        encode(&mut out, &[b"SET", key.as_bytes(), b"xxxxxxxxxxxxxxxx"]);
    }
    out
}

/// Parses every command in `buf` (fed `segment` bytes at a time); returns how many.
fn parse_all(input: &[u8], segment: usize) -> usize {
    let mut parser = RequestParser::new(FrameLimits::default());
    let mut buf = BytesMut::with_capacity(input.len());
    let mut n = 0;
    for piece in input.chunks(segment) {
        buf.extend_from_slice(piece);
        while let Some(req) = parser.next(&mut buf, false).expect("valid command") {
            black_box(req.name());
            n += 1;
        }
    }
    n
}

fn request_parser(c: &mut Criterion) {
    let input = set_pipeline();
    assert_eq!(parse_all(&input, input.len()), 1_000);
    assert_eq!(parse_all(&input, 1_460), 1_000);
    let mut g = c.benchmark_group("request_parser");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("1000_SET_16B_whole", |b| {
        b.iter_batched(
            || BytesMut::from(&input[..]),
            |mut buf| {
                let mut parser = RequestParser::new(FrameLimits::default());
                let mut n = 0;
                while let Some(req) = parser.next(&mut buf, false).expect("valid command") {
                    black_box(req.name());
                    n += 1;
                }
                n
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("1000_SET_16B_1460B_segments", |b| {
        b.iter(|| parse_all(black_box(&input), 1_460))
    });
    g.finish();
}

/// Scans every reply in `input`; returns how many.
fn scan_all(input: &[u8]) -> usize {
    let mut scanner = ReplyScanner::new();
    let mut at = 0;
    let mut n = 0;
    while let Some(info) = scanner.next(&input[at..]).expect("valid reply") {
        at += info.len;
        n += 1;
    }
    n
}

fn reply_scanner(c: &mut Criterion) {
    let oks = b"+OK\r\n".repeat(1_000);
    let bulks = b"$16\r\nxxxxxxxxxxxxxxxx\r\n".repeat(1_000);
    let mut lrange = b"*600\r\n".to_vec();
    for i in 0..600 {
        let item = format!("item:{i:011}");
        lrange.extend_from_slice(format!("${}\r\n{item}\r\n", item.len()).as_bytes());
    }
    assert_eq!(scan_all(&oks), 1_000);
    assert_eq!(scan_all(&bulks), 1_000);
    assert_eq!(scan_all(&lrange), 1);

    let mut g = c.benchmark_group("reply_scanner");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("1000_OK", |b| b.iter(|| scan_all(black_box(&oks))));
    g.bench_function("1000_bulk_16B", |b| b.iter(|| scan_all(black_box(&bulks))));
    g.throughput(Throughput::Bytes(lrange.len() as u64));
    g.bench_function("LRANGE_600", |b| b.iter(|| scan_all(black_box(&lrange))));
    g.finish();
}

/// A 100,000-element array of 16-byte bulk strings, cut into 64 KiB chunks.
fn large_reply() -> (usize, Vec<Vec<u8>>) {
    let mut reply = b"*100000\r\n".to_vec();
    for i in 0..100_000 {
        reply.extend_from_slice(format!("$16\r\nvalue:{i:010}\r\n").as_bytes());
    }
    let chunks = reply.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    (reply.len(), chunks)
}

/// Feeds the chunks to `redis_protocol`'s RESP2 decoder the only way a complete-frame decoder
/// allows: append, then decode from the start of the buffer; returns the element count.
fn redis_protocol_decode(chunks: &[Vec<u8>]) -> usize {
    let mut buf = BytesMut::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        match redis_protocol::resp2::decode::decode(&buf).expect("valid reply") {
            Some((redis_protocol::resp2::types::OwnedFrame::Array(items), used)) => {
                assert_eq!(used, buf.len());
                return items.len();
            }
            Some((other, _)) => panic!("not an array: {other:?}"),
            None => {}
        }
    }
    panic!("reply never completed");
}

/// The same with `redis_protocol`'s cheapest decoder, which records ranges instead of copying
/// (it still starts again from the first byte on each arrival).
fn redis_protocol_decode_range(chunks: &[Vec<u8>]) -> usize {
    let mut buf = BytesMut::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        match redis_protocol::resp2::decode::decode_range(&buf).expect("valid reply") {
            Some((redis_protocol::resp2::types::RangeFrame::Array(items), used)) => {
                assert_eq!(used, buf.len());
                return items.len();
            }
            Some((other, _)) => panic!("not an array: {other:?}"),
            None => {}
        }
    }
    panic!("reply never completed");
}

/// Feeds the chunks to [`ReplyScanner`] as the proxy does: scan what arrived, forward the
/// scanned part at once, keep only the unscanned tail; returns the reply's length.
fn reply_scanner_resume(chunks: &[Vec<u8>]) -> usize {
    let mut scanner = ReplyScanner::new();
    let mut buf = BytesMut::new();
    let mut forwarded = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        match scanner.next(&buf).expect("valid reply") {
            Some(info) => return forwarded + info.len,
            None => {
                let n = scanner.scanned();
                scanner.consumed(n);
                buf.advance(n);
                forwarded += n;
            }
        }
    }
    panic!("reply never completed");
}

fn large_reply_in_64k_chunks(c: &mut Criterion) {
    let (total, chunks) = large_reply();
    assert!(chunks.len() > 30, "{} chunks", chunks.len());
    assert_eq!(redis_protocol_decode(&chunks), 100_000);
    assert_eq!(redis_protocol_decode_range(&chunks), 100_000);
    assert_eq!(reply_scanner_resume(&chunks), total);

    let mut g = c.benchmark_group("large_reply_in_64k_chunks");
    g.throughput(Throughput::Bytes(total as u64));
    g.sample_size(10);
    g.bench_function("redis_protocol_decode_from_start", |b| {
        b.iter(|| redis_protocol_decode(black_box(&chunks)))
    });
    g.bench_function("redis_protocol_decode_range_from_start", |b| {
        b.iter(|| redis_protocol_decode_range(black_box(&chunks)))
    });
    g.bench_function("reply_scanner_resumed", |b| {
        b.iter(|| reply_scanner_resume(black_box(&chunks)))
    });
    g.finish();
}

criterion_group!(
    benches,
    request_parser,
    reply_scanner,
    large_reply_in_64k_chunks
);
criterion_main!(benches);
