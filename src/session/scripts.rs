//! Script bodies the proxy has seen (EVAL, SCRIPT LOAD), by SHA1, so that an EVALSHA answered
//! with `-NOSCRIPT` after a failover (the new master's script cache may be empty) can be
//! loaded and run again: NOSCRIPT means nothing ran. Bounded: past the limit new bodies are
//! not remembered, and such an EVALSHA gets Redis's NOSCRIPT as it is.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use sha1::{Digest, Sha1};

/// Most script bodies remembered.
const MAX_SCRIPTS: usize = 10_000;
/// Largest body remembered.
const MAX_BODY: usize = 1024 * 1024;

/// The script cache.
#[derive(Debug, Default)]
pub struct Scripts {
    bodies: Mutex<HashMap<String, Bytes>>,
}

impl Scripts {
    /// Remembers `body`.
    pub fn remember(&self, body: &[u8]) {
        if body.len() > MAX_BODY {
            return;
        }
        let sha = sha1_hex(body);
        let mut map = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() < MAX_SCRIPTS || map.contains_key(&sha) {
            map.insert(sha, Bytes::copy_from_slice(body));
        }
    }

    /// Forgets every body (the client flushed the master's script cache).
    pub fn forget_all(&self) {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The body for `sha` (any case), if seen.
    pub fn body(&self, sha: &[u8]) -> Option<Bytes> {
        let key = String::from_utf8_lossy(sha).to_ascii_lowercase();
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }
}

/// SHA1 of a script body as Redis prints it.
pub fn sha1_hex(body: &[u8]) -> String {
    Sha1::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_sha() {
        let s = Scripts::default();
        s.remember(b"return 1");
        // redis-cli SCRIPT LOAD "return 1" prints this SHA.
        let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
        assert_eq!(sha1_hex(b"return 1"), sha);
        assert_eq!(
            s.body(sha.to_uppercase().as_bytes()).as_deref(),
            Some(&b"return 1"[..])
        );
        assert!(s.body(b"0000").is_none());
    }
}
