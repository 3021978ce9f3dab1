//! Finding frame boundaries without re-parsing and without recursion.
//!
//! Two scanners live here, one per direction:
//! - [`RequestParser`] reads what clients send: a multibulk array of bulk strings, or an inline
//!   command line, exactly the two forms `redis-server` accepts, with the same limits and the
//!   same `Protocol error: ...` texts. It remembers how far it got inside an incomplete frame,
//!   so a frame arriving in many reads is scanned once in total, and it records where the first
//!   arguments sit so a command can be classified without copying it.
//! - [`ReplyScanner`] reads what Redis sends back (every RESP2 and RESP3 type, nested). It keeps
//!   an explicit stack instead of recursing, resumes where it stopped, and lets its caller
//!   forward the finished part of a large reply before the rest arrives.
//!
//! Neither allocates in proportion to a length a peer announces: a `*2147483647` header or a
//! `$536870912` header costs a few bytes of state until the bytes themselves arrive.

mod reply;
mod request;

pub use reply::{ReplyInfo, ReplyScanner};
pub use request::{FrameLimits, Request, RequestParser};

/// Longest inline command or length header line Redis accepts (`PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;
/// Redis refuses longer multibulk headers from clients that still have to authenticate.
pub const UNAUTHENTICATED_MAX_ARGS: usize = 10;
/// Redis refuses longer bulk strings from clients that still have to authenticate.
pub const UNAUTHENTICATED_MAX_BULK: usize = 16 * 1024;

/// Parses an integer the way Redis's `string2ll` does: optional minus, digits, no leading
/// zeros, no spaces, no overflow.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(i64::from(d - b'0'))?
        } else {
            v.checked_add(i64::from(d - b'0'))?
        };
    }
    if neg && v == 0 {
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests;
