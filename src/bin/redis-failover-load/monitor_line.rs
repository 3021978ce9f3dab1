//! One line of MONITOR output, parsed: when the node executed the command, which client sent
//! it, and its arguments, unescaped byte for byte.
//!
//! Redis writes each line as `+<secs>.<micros> [<db> <client>] "<arg>" "<arg>" ...`, every
//! argument quoted by its `sdscatrepr`: `\\` and `\"` for a backslash and a quote, `\n`, `\r`,
//! `\t`, `\a`, `\b` for those control bytes, `\xHH` (two lowercase hex digits) for any other
//! byte outside printable ASCII, everything else as it is. This is the only MONITOR parser of
//! the project: the load harness's watchers ([`crate::monitor`]) and the tests' recorder
//! (`tests/support/failover.rs`, which includes this file) both read lines through it, so a
//! value with a newline or a non-ASCII byte means the same to both.
//!
//! Nothing here depends on the rest of the harness, which is what lets the tests include it.

/// One MONITOR line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// When the node executed the command, µs since the Unix epoch (the node's clock).
    pub(crate) unix_us: i64,
    /// The client's address as the node names it (`ip:port`, `[ipv6]:port`, `lua`,
    /// `unix:/path`).
    pub(crate) client: String,
    /// The command and its arguments.
    pub(crate) args: Vec<Vec<u8>>,
}

/// Parses `+1700000000.123456 [0 127.0.0.1:5000] "SET" "k" "v"`: the frame as it arrives, CRLF
/// included or not. `None` for anything else (the `+OK` that confirms MONITOR, a cut line).
pub(crate) fn parse_line(frame: &[u8]) -> Option<Line> {
    let body = frame.strip_prefix(b"+")?;
    let body = body.strip_suffix(b"\r\n").unwrap_or(body);
    // sdscatrepr leaves no byte outside printable ASCII, so a line that is not UTF-8 is not
    // a MONITOR line.
    let text = std::str::from_utf8(body).ok()?;
    let (stamp, rest) = text.split_once(' ')?;
    let (secs, micros) = stamp.split_once('.')?;
    let unix_us = secs.parse::<i64>().ok()? * 1_000_000 + micros.parse::<i64>().ok()?;
    let rest = rest.strip_prefix('[')?;
    // The first "] " ends the bracket: an IPv6 client (`[::1]:5000`) has "]:" inside it, and
    // the arguments start with a quote.
    let (inside, args) = rest.split_once("] ")?;
    let client = inside.split_once(' ')?.1.to_string();
    Some(Line {
        unix_us,
        client,
        args: parse_args(args.as_bytes())?,
    })
}

/// The quoted arguments of a MONITOR line, unescaped; `None` when a quote or an escape is cut.
fn parse_args(mut s: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    while let Some(rest) = s.strip_prefix(b"\"") {
        let mut arg = Vec::new();
        let mut i = 0;
        loop {
            match *rest.get(i)? {
                b'"' => break,
                b'\\' => {
                    let (byte, used) = unescape(&rest[i + 1..])?;
                    arg.push(byte);
                    i += 1 + used;
                }
                b => {
                    arg.push(b);
                    i += 1;
                }
            }
        }
        args.push(arg);
        s = rest[i + 1..].strip_prefix(b" ").unwrap_or(&rest[i + 1..]);
    }
    Some(args)
}

/// One escape after its backslash: the byte and how many bytes it took.
fn unescape(s: &[u8]) -> Option<(u8, usize)> {
    Some(match *s.first()? {
        b'n' => (b'\n', 1),
        b'r' => (b'\r', 1),
        b't' => (b'\t', 1),
        b'a' => (7, 1),
        b'b' => (8, 1),
        b'x' => {
            let hex = std::str::from_utf8(s.get(1..3)?).ok()?;
            (u8::from_str_radix(hex, 16).ok()?, 3)
        }
        // `\\` and `\"`: the byte itself.
        other => (other, 1),
    })
}
