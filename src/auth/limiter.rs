//! Failed authentications, counted and rate-limited per client address: each address may fail
//! a burst of times, then once per refill interval. While an address is limited, `AUTH` from
//! it is answered at once with an error and the password is not even checked, so guessing
//! costs the guesser time and the proxy nothing. IPv6 addresses count per /64 (one host
//! usually owns the whole prefix). The table is bounded: when full, entries that have drained
//! are dropped; if it is still full, a new address is not tracked (legitimate clients are
//! never locked out by someone else's flood, and memory stays bounded).

use crate::config::LimitSettings;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Level {
    /// Failures not yet drained.
    level: f64,
    at: Instant,
}

/// The per-address failure counts.
#[derive(Debug)]
pub struct AuthLimiter {
    settings: LimitSettings,
    levels: Mutex<HashMap<IpAddr, Level>>,
}

impl AuthLimiter {
    /// An empty limiter.
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            settings,
            levels: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `addr` may not try now.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        let key = key(addr);
        let now = Instant::now();
        let levels = self.lock();
        let Some(l) = levels.get(&key) else {
            return Ok(());
        };
        let level = self.drained(*l, now);
        if level + 1.0 > f64::from(self.settings.burst) {
            let over = level + 1.0 - f64::from(self.settings.burst);
            return Err(self.settings.refill.mul_f64(over));
        }
        Ok(())
    }

    /// Records a failure from `addr`.
    pub fn failed(&self, addr: IpAddr) {
        let key = key(addr);
        let now = Instant::now();
        let mut levels = self.lock();
        if levels.len() >= MAX_TRACKED && !levels.contains_key(&key) {
            levels.retain(|_, l| self.drained(*l, now) >= 1.0);
        }
        if levels.len() >= MAX_TRACKED && !levels.contains_key(&key) {
            return;
        }
        let l = levels.entry(key).or_insert(Level {
            level: 0.0,
            at: now,
        });
        *l = Level {
            level: self.drained(*l, now) + 1.0,
            at: now,
        };
    }

    fn drained(&self, l: Level, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(l.at).as_secs_f64();
        let per = self.settings.refill.as_secs_f64().max(f64::MIN_POSITIVE);
        (l.level - elapsed / per).max(0.0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Level>> {
        self.levels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// IPv4 addresses count alone, IPv6 ones per /64.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::V6(seg.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_per_address() {
        let l = AuthLimiter::new(LimitSettings {
            burst: 3,
            refill: Duration::from_secs(60),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
            l.failed(a);
        }
        let wait = l.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert!(l.check(b).is_ok(), "another address is not affected");
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        for _ in 0..3 {
            l.failed(v6a);
        }
        assert!(l.check(v6b).is_err(), "one /64 counts as one address");
    }

    #[test]
    fn failures_drain_over_time() {
        let l = AuthLimiter::new(LimitSettings {
            burst: 1,
            refill: Duration::from_millis(1),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        l.failed(a);
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.check(a).is_ok());
    }
}
