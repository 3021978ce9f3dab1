//! What the harness sends: GET on a random key, or `SET <key> <value>` where the value names
//! the write that produced it (run, connection, sequence number), padded to the requested
//! size. The run id keeps values left by an earlier run from passing for this run's writes.
//! Everything here is pure, so the ledger and the MONITOR watchers share one definition of a
//! value; the write a value names is the ledger's [`WriteId`].

use bytes::Bytes;
use redis_failover_proxy::resp::Request;

use crate::ledger::WriteId;

/// Byte that pads values to their size.
const PAD: u8 = b'x';

/// The parts of a run's workload every worker shares.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Identity of this run, first field of every value.
    pub(crate) run: u32,
    /// Key prefix.
    pub(crate) prefix: String,
    /// Distinct keys.
    pub(crate) keyspace: u32,
    /// Requested value size.
    pub(crate) value_size: usize,
    /// Share of reads.
    pub(crate) read_share: f64,
}

/// One command of a pipeline, as the worker must remember it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// GET of a key.
    Read { key: u32 },
    /// SET of a key with a ledger value.
    Write { key: u32, id: WriteId },
}

impl Workload {
    /// The name of key `k`.
    pub(crate) fn key_name(&self, k: u32) -> String {
        format!("{}{k}", self.prefix)
    }

    /// The key number of a key name of this run's keyspace.
    pub(crate) fn key_number(&self, name: &[u8]) -> Option<u32> {
        let rest = name.strip_prefix(self.prefix.as_bytes())?;
        let k: u32 = std::str::from_utf8(rest).ok()?.parse().ok()?;
        (k < self.keyspace).then_some(k)
    }

    /// The value written by `id`: `<run hex>:<conn>:<seq>:` then padding.
    pub(crate) fn value(&self, id: WriteId) -> Vec<u8> {
        let mut v = format!("{:08x}:{}:{}:", self.run, id.conn, id.seq).into_bytes();
        if v.len() < self.value_size {
            v.resize(self.value_size, PAD);
        }
        v
    }

    /// The write that produced `value`, if it was one of this run's.
    pub(crate) fn parse_value(&self, value: &[u8]) -> Option<WriteId> {
        let mut parts = value.splitn(4, |&b| b == b':');
        let run = u32::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
        if run != self.run {
            return None;
        }
        let num = |p: &[u8]| std::str::from_utf8(p).ok()?.parse().ok();
        let conn = num(parts.next()?)?;
        let seq = num(parts.next()?)?;
        parts.next()?;
        Some(WriteId {
            conn: u32::try_from(conn).ok()?,
            seq,
        })
    }

    /// Picks the next command: a read with probability `read_share`, else the write `next`.
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng, conn: u32, next_seq: u64) -> Op {
        let key = rng.u32(..self.keyspace);
        if rng.f64() < self.read_share {
            Op::Read { key }
        } else {
            Op::Write {
                key,
                id: WriteId {
                    conn,
                    seq: next_seq,
                },
            }
        }
    }

    /// The command frame of `op`.
    pub(crate) fn frame(&self, op: Op) -> Bytes {
        match op {
            Op::Read { key } => {
                Request::from_args(&[b"GET".as_slice(), self.key_name(key).as_bytes()])
            }
            Op::Write { key, id } => Request::from_args(&[
                b"SET".as_slice(),
                self.key_name(key).as_bytes(),
                &self.value(id),
            ]),
        }
        .bytes()
        .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Workload {
        Workload {
            run: 0xab12,
            prefix: "load:".into(),
            keyspace: 100,
            value_size: 32,
            read_share: 0.5,
        }
    }

    #[test]
    fn values_round_trip_and_pad() {
        let w = w();
        let id = WriteId { conn: 3, seq: 1234 };
        let v = w.value(id);
        assert_eq!(v.len(), 32);
        assert!(v.starts_with(b"0000ab12:3:1234:x"));
        assert_eq!(w.parse_value(&v), Some(id));
        let long = Workload {
            value_size: 4,
            ..w.clone()
        };
        assert_eq!(long.parse_value(&long.value(id)), Some(id));
        let other_run = Workload {
            run: 7,
            ..w.clone()
        };
        assert_eq!(w.parse_value(&other_run.value(id)), None);
        assert_eq!(w.parse_value(b"hello"), None);
        assert_eq!(w.parse_value(b"0000ab12:3:x:"), None);
    }

    #[test]
    fn keys_and_frames() {
        let w = w();
        assert_eq!(w.key_number(b"load:42"), Some(42));
        assert_eq!(w.key_number(b"load:100"), None);
        assert_eq!(w.key_number(b"other:1"), None);
        assert_eq!(
            &w.frame(Op::Read { key: 7 })[..],
            b"*2\r\n$3\r\nGET\r\n$6\r\nload:7\r\n"
        );
        let mut rng = fastrand::Rng::with_seed(1);
        let reads = (0..1000)
            .filter(|i| matches!(w.pick(&mut rng, 0, *i), Op::Read { .. }))
            .count();
        assert!((400..600).contains(&reads), "{reads}");
    }
}
