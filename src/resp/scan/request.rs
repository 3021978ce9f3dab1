//! The client direction: [`RequestParser`] finds each command in what a client sends, and
//! [`Request`] is one command as received, with its first arguments located.

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;

use super::{parse_int, MAX_INLINE, UNAUTHENTICATED_MAX_ARGS, UNAUTHENTICATED_MAX_BULK};
use crate::resp::error::ProtocolError;

/// How many leading arguments a [`Request`] locates (command name and subcommand or key).
const HEAD_ARGS: usize = 2;

/// Size limits applied to client frames.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Largest bulk string accepted (Redis `proto-max-bulk-len`).
    pub max_bulk: usize,
    /// Largest number of arguments accepted in one command.
    pub max_args: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_bulk: 512 * 1024 * 1024,
            max_args: i32::MAX as usize,
        }
    }
}

/// One complete client command, as the bytes that carried it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The frame, ready to forward. Inline commands are rewritten as multibulk frames.
    bytes: Bytes,
    /// Number of arguments, the command name included.
    argc: usize,
    /// Byte ranges of the first arguments inside `bytes`.
    heads: [(u32, u32); HEAD_ARGS],
}

impl Request {
    /// The raw frame.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Number of arguments including the command name.
    pub fn argc(&self) -> usize {
        self.argc
    }

    /// The command name, as sent (any case).
    pub fn name(&self) -> &[u8] {
        self.head(0).unwrap_or_default()
    }

    /// The first argument after the name, if any (a subcommand or the first key).
    pub fn arg1(&self) -> Option<&[u8]> {
        self.head(1)
    }

    fn head(&self, i: usize) -> Option<&[u8]> {
        if i >= self.argc {
            return None;
        }
        let (s, e) = self.heads[i];
        Some(&self.bytes[s as usize..e as usize])
    }

    /// All arguments, decoded by walking the frame again. Used only for the few commands the
    /// proxy inspects beyond their name (HELLO, AUTH, CLIENT, SELECT, XREAD, ...).
    pub fn args(&self) -> Vec<&[u8]> {
        walk_args(&self.bytes)
    }

    /// Parses one complete command frame (one the proxy sent before, for instance).
    pub fn parse(frame: &[u8]) -> Option<Request> {
        let mut buf = BytesMut::from(frame);
        RequestParser::new(FrameLimits::default())
            .next(&mut buf, false)
            .ok()
            .flatten()
    }

    /// Builds a request from argument strings (commands the proxy issues itself, inline
    /// commands rewritten as multibulk, and tests).
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Self {
        let mut buf = BytesMut::new();
        let mut heads = [(0u32, 0u32); HEAD_ARGS];
        put_len(&mut buf, b'*', args.len());
        for (i, a) in args.iter().enumerate() {
            let a = a.as_ref();
            put_len(&mut buf, b'$', a.len());
            if i < HEAD_ARGS {
                heads[i] = (buf.len() as u32, (buf.len() + a.len()) as u32);
            }
            buf.put_slice(a);
            buf.put_slice(b"\r\n");
        }
        Self {
            bytes: buf.freeze(),
            argc: args.len(),
            heads,
        }
    }
}

fn put_len(buf: &mut BytesMut, prefix: u8, n: usize) {
    buf.put_u8(prefix);
    let mut tmp = itoa::Buffer::new();
    buf.put_slice(tmp.format(n).as_bytes());
    buf.put_slice(b"\r\n");
}

/// Walks a multibulk frame the parser already accepted and returns its arguments. Header lines
/// end at their `\r` and two bytes are skipped, exactly as the parser (and Redis) read them.
fn walk_args(frame: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let Some(cr) = memchr(b'\r', frame) else {
        return out;
    };
    let mut at = cr + 2;
    while at < frame.len() && frame[at] == b'$' {
        let Some(cr) = memchr(b'\r', &frame[at..]).map(|i| i + at) else {
            break;
        };
        let len = parse_int(&frame[at + 1..cr]).unwrap_or(0).max(0) as usize;
        let start = cr + 2;
        let end = (start + len).min(frame.len());
        out.push(&frame[start..end]);
        at = end + 2;
    }
    out
}

// === impl RequestParser ===

/// Resumable parser for client commands.
#[derive(Debug)]
pub struct RequestParser {
    limits: FrameLimits,
    /// Bytes of the frame at the front of the buffer already validated.
    pos: usize,
    /// Arguments announced by the header; 0 while the header has not been read.
    argc: usize,
    /// Arguments fully scanned so far.
    seen: usize,
    /// Ranges of the first arguments, filled as they are scanned.
    heads: [(u32, u32); HEAD_ARGS],
    /// How far the header line being read is known to hold no `\r`, so that a header line
    /// arriving one byte per read is searched once in total instead of once per read.
    pub(super) line_seen: usize,
}

impl RequestParser {
    /// A parser applying `limits`.
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            pos: 0,
            argc: 0,
            seen: 0,
            heads: [(0, 0); HEAD_ARGS],
            line_seen: 0,
        }
    }

    /// Bytes of an incomplete frame already scanned (for query buffer accounting).
    pub fn pending(&self) -> usize {
        self.pos
    }

    /// Takes the next complete command off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. `unauthenticated` applies the tighter
    /// limits Redis uses before a client has authenticated. After an error the buffer is in an
    /// unknown state and the connection must be closed, as Redis does.
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        unauthenticated: bool,
    ) -> Result<Option<Request>, ProtocolError> {
        loop {
            if buf.is_empty() {
                return Ok(None);
            }
            let done = if buf[0] == b'*' {
                self.multibulk(buf, unauthenticated)?
            } else {
                self.inline(buf)?
            };
            match done {
                Step::Need => return Ok(None),
                Step::Skip(n) => {
                    let _ = buf.split_to(n);
                    self.reset();
                }
                Step::Frame(req) => {
                    self.reset();
                    return Ok(Some(req));
                }
            }
        }
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.argc = 0;
        self.seen = 0;
        self.heads = [(0, 0); HEAD_ARGS];
        self.line_seen = 0;
    }

    fn multibulk(&mut self, buf: &mut BytesMut, unauth: bool) -> Result<Step, ProtocolError> {
        if self.argc == 0 {
            let too_long = ProtocolError::TooBigMultibulkCount;
            let Some((n, next)) = line_int(buf, 0, &mut self.line_seen, too_long)? else {
                return Ok(Step::Need);
            };
            let n = n.ok_or(ProtocolError::InvalidMultibulkLength)?;
            if n <= 0 {
                // `*0` and `*-1` are accepted and ignored, as Redis does.
                return Ok(Step::Skip(next));
            }
            if n > i64::from(i32::MAX) || n as u64 > self.limits.max_args as u64 {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if unauth && n as usize > UNAUTHENTICATED_MAX_ARGS {
                return Err(ProtocolError::UnauthenticatedMultibulkLength);
            }
            self.argc = n as usize;
            self.pos = next;
        }
        while self.seen < self.argc {
            match self.bulk(buf, unauth)? {
                Some((start, end, next)) => {
                    if self.seen < HEAD_ARGS {
                        self.heads[self.seen] = (start as u32, end as u32);
                    }
                    self.seen += 1;
                    self.pos = next;
                }
                None => return Ok(Step::Need),
            }
        }
        let bytes = buf.split_to(self.pos).freeze();
        Ok(Step::Frame(Request {
            bytes,
            argc: self.argc,
            heads: self.heads,
        }))
    }

    /// Scans one `$len\r\n<payload>\r\n` at `self.pos`; returns the payload range and the
    /// offset after it.
    fn bulk(
        &mut self,
        buf: &BytesMut,
        unauth: bool,
    ) -> Result<Option<(usize, usize, usize)>, ProtocolError> {
        let at = self.pos;
        if at >= buf.len() {
            return Ok(None);
        }
        if buf[at] != b'$' {
            return Err(ProtocolError::ExpectedDollar(buf[at]));
        }
        let too_long = ProtocolError::TooBigBulkCount;
        let Some((n, start)) = line_int(buf, at, &mut self.line_seen, too_long)? else {
            return Ok(None);
        };
        let n = n.ok_or(ProtocolError::InvalidBulkLength)?;
        if n < 0 || n as u64 > self.limits.max_bulk as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        if unauth && n as usize > UNAUTHENTICATED_MAX_BULK {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        let end = start + n as usize;
        // Redis skips the two bytes after the payload without checking them; so does the
        // proxy, so that both read the same frame boundaries.
        if buf.len() < end + 2 {
            return Ok(None);
        }
        Ok(Some((start, end, end + 2)))
    }

    fn inline(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let Some(nl) = memchr(b'\n', &buf[self.pos..]).map(|i| i + self.pos) else {
            if buf.len() > MAX_INLINE {
                return Err(ProtocolError::TooBigInline);
            }
            // Nothing before the end of the buffer needs scanning again.
            self.pos = buf.len();
            return Ok(Step::Need);
        };
        if nl > MAX_INLINE {
            return Err(ProtocolError::TooBigInline);
        }
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let args = split_inline(line)?;
        if args.is_empty() {
            return Ok(Step::Skip(nl + 1));
        }
        let _ = buf.split_to(nl + 1);
        Ok(Step::Frame(Request::from_args(&args)))
    }
}

enum Step {
    Need,
    Skip(usize),
    Frame(Request),
}

/// Reads the integer on the header line starting at `at` (after its type byte). Returns the
/// parsed value (None when malformed) and the offset after the line, or `Ok(None)` when the
/// line is not complete yet. `seen` carries, between calls on the same line, how far it holds
/// no `\r`: without it a long header dripping in one byte per read costs a search of the whole
/// line per byte (quadratic, up to 64 KiB squared per line).
fn line_int(
    buf: &[u8],
    at: usize,
    seen: &mut usize,
    too_long: ProtocolError,
) -> Result<Option<(Option<i64>, usize)>, ProtocolError> {
    let from = (*seen).max(at).min(buf.len());
    let Some(cr) = memchr(b'\r', &buf[from..]).map(|i| i + from) else {
        if buf.len() - at > MAX_INLINE {
            return Err(too_long);
        }
        *seen = buf.len();
        return Ok(None);
    };
    if cr - at > MAX_INLINE {
        return Err(too_long);
    }
    if cr + 1 >= buf.len() {
        *seen = cr;
        return Ok(None);
    }
    *seen = 0;
    Ok(Some((parse_int(&buf[at + 1..cr]), cr + 2)))
}

/// Splits an inline command line the way Redis's `sdssplitargs` does: whitespace separates
/// arguments, double quotes allow escapes, single quotes allow only `\'`.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Ok(args);
        }
        let mut cur = Vec::new();
        match line[i] {
            b'"' => i = quoted_double(line, i + 1, &mut cur)?,
            b'\'' => i = quoted_single(line, i + 1, &mut cur)?,
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    cur.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(cur);
    }
}

fn quoted_double(line: &[u8], mut i: usize, cur: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    while i < line.len() {
        match line[i] {
            b'\\'
                if i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit() =>
            {
                cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                i += 4;
            }
            b'\\' if i + 1 < line.len() => {
                cur.push(match line[i + 1] {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    c => c,
                });
                i += 2;
            }
            b'"' => return close_quote(line, i + 1),
            c => {
                cur.push(c);
                i += 1;
            }
        }
    }
    Err(ProtocolError::UnbalancedQuotes)
}

fn quoted_single(line: &[u8], mut i: usize, cur: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    while i < line.len() {
        match line[i] {
            b'\\' if i + 1 < line.len() && line[i + 1] == b'\'' => {
                cur.push(b'\'');
                i += 2;
            }
            b'\'' => return close_quote(line, i + 1),
            c => {
                cur.push(c);
                i += 1;
            }
        }
    }
    Err(ProtocolError::UnbalancedQuotes)
}

/// A closing quote must be followed by a space or the end of the line.
fn close_quote(line: &[u8], i: usize) -> Result<usize, ProtocolError> {
    if i < line.len() && !line[i].is_ascii_whitespace() {
        return Err(ProtocolError::UnbalancedQuotes);
    }
    Ok(i)
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}
