//! Nodes busy running a script, as their probes last saw them. A busy node holds the reply of
//! the connection running the script and answers everyone else `-BUSY`; the reply deadline of
//! a connection is for peers that went silent, so it does not end a connection waiting on a
//! node whose probes keep answering `-BUSY` (the reply comes when the script ends or is
//! killed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// When a node was last seen busy, in milliseconds since [`origin`] (0: not busy).
#[derive(Debug, Clone, Default)]
pub struct BusyFlag(Arc<AtomicU64>);

impl BusyFlag {
    /// Whether the node was seen busy within `within` (a probe that stopped reporting does
    /// not keep connections waiting forever).
    pub fn seen_within(&self, within: Duration) -> bool {
        let at = self.0.load(Ordering::Relaxed);
        at != 0 && now_ms().saturating_sub(at) <= within.as_millis() as u64
    }
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    // +1: an instant right at the origin must not read as "not busy".
    origin().elapsed().as_millis() as u64 + 1
}

fn flags() -> &'static Mutex<HashMap<SocketAddr, BusyFlag>> {
    static FLAGS: OnceLock<Mutex<HashMap<SocketAddr, BusyFlag>>> = OnceLock::new();
    FLAGS.get_or_init(Default::default)
}

/// The flag of the node at `addr` (connections keep it for their lifetime).
pub fn flag(addr: SocketAddr) -> BusyFlag {
    let mut all = flags().lock().unwrap_or_else(|e| e.into_inner());
    all.entry(addr).or_default().clone()
}

/// Records one probe of the node at `addr`: busy or not.
pub fn mark(addr: SocketAddr, busy: bool) {
    let at = if busy { now_ms() } else { 0 };
    flag(addr).0.store(at, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_seen_only_recently() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let f = flag(addr);
        assert!(!f.seen_within(Duration::from_secs(10)));
        mark(addr, true);
        assert!(f.seen_within(Duration::from_secs(10)));
        mark(addr, false);
        assert!(!f.seen_within(Duration::from_secs(10)));
    }
}
