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

/// Until when a node counts as busy, in milliseconds since [`origin`] (0: not busy). Each probe
/// answered `-BUSY` extends it a little past the next probe, so a probe that stops reporting
/// does not keep connections waiting forever.
#[derive(Debug, Clone, Default)]
pub struct BusyFlag(Arc<AtomicU64>);

impl BusyFlag {
    /// Whether the node's latest probes found it busy.
    pub fn is_busy(&self) -> bool {
        now_ms() < self.0.load(Ordering::Relaxed)
    }
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64
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

/// Records one probe of the node at `addr`: busy (for the next `valid_for`) or not.
pub fn mark(addr: SocketAddr, busy: bool, valid_for: Duration) {
    let until = if busy {
        now_ms() + valid_for.as_millis() as u64
    } else {
        0
    };
    flag(addr).0.store(until, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_lasts_until_the_next_probe_is_due() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let f = flag(addr);
        assert!(!f.is_busy());
        mark(addr, true, Duration::from_secs(10));
        assert!(f.is_busy());
        mark(addr, false, Duration::from_secs(10));
        assert!(!f.is_busy());
        mark(addr, true, Duration::ZERO);
        assert!(!f.is_busy(), "a report past its validity no longer counts");
    }
}
