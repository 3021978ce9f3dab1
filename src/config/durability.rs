//! Durable writes (`[durability]`, and per user `durability = { ... }`): how many replicas
//! must acknowledge a write before its reply reaches the client, and how long to wait for
//! them. Read here; enforced by the backend connections (`backend::durable`).

use std::time::Duration;

use super::reader::{Problems, Reader};

/// The default wait for the replicas' acknowledgement.
pub const DEFAULT_DURABLE_TIMEOUT: Duration = Duration::from_millis(200);

/// Most replicas a setting may ask for (more than any Redis deployment has).
const MAX_REPLICAS: u32 = 64;

/// Longest wait a setting may ask for: longer would hold every client sharing a connection.
const MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// A durability setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Durability {
    /// Replicas that must acknowledge a write (0: off, writes are answered as Redis answers).
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            replicas: 0,
            timeout: DEFAULT_DURABLE_TIMEOUT,
        }
    }
}

impl Durability {
    /// The setting when it is on.
    pub fn enabled(self) -> Option<Durability> {
        (self.replicas > 0).then_some(self)
    }

    /// The timeout in whole milliseconds, as `WAIT` takes it (at least 1: `WAIT n 0` would
    /// wait forever).
    pub fn timeout_ms(self) -> u64 {
        (self.timeout.as_millis() as u64).max(1)
    }
}

/// Reads a durability table; missing keys take their values from `base` (the global setting
/// for a user's table, the defaults for the global one).
pub(super) fn read_durability(mut r: Reader<'_>, base: Durability, p: &mut Problems) -> Durability {
    let d = Durability {
        replicas: r.get_or("replicas", base.replicas, p),
        timeout: r.duration("timeout", base.timeout, p),
    };
    r.finish(p);
    d
}

/// Records what is wrong with setting `d` found at `path` (checked after the flags applied).
pub(super) fn check(d: Durability, path: &str, p: &mut Problems) {
    if d.replicas > MAX_REPLICAS {
        p.add(
            &format!("{path}.replicas"),
            format!("at most {MAX_REPLICAS}"),
        );
    }
    if d.timeout.is_zero() || d.timeout > MAX_TIMEOUT {
        p.add(
            &format!("{path}.timeout"),
            "must be more than 0 and at most 10s (every client sharing the connection waits)",
        );
    }
}
