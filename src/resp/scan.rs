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

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;

use super::error::ProtocolError;

/// Longest inline command or length header line Redis accepts (`PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;
/// Redis refuses longer multibulk headers from clients that still have to authenticate.
pub const UNAUTHENTICATED_MAX_ARGS: usize = 10;
/// Redis refuses longer bulk strings from clients that still have to authenticate.
pub const UNAUTHENTICATED_MAX_BULK: usize = 16 * 1024;
/// How many leading arguments a [`Request`] locates (command name and subcommand or key).
const HEAD_ARGS: usize = 2;
/// Nesting deeper than this in a reply is treated as a broken backend stream.
const MAX_REPLY_DEPTH: usize = 1024;

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
    line_seen: usize,
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

// === impl ReplyScanner ===

/// What a finished reply looks like, for the decisions the proxy takes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyInfo {
    /// Bytes of the reply still in the buffer (attributes included).
    pub len: usize,
    /// Bytes of the reply the caller already consumed while it was incomplete.
    pub consumed: usize,
    /// RESP type byte of the reply proper (after any attribute).
    pub kind: u8,
    /// Range, relative to the reply start, of the first element of a top-level aggregate when
    /// it is a string; used to tell pub/sub messages from replies.
    pub first: Option<(usize, usize)>,
    /// Deepest nesting of aggregates inside the reply.
    pub depth: usize,
}

#[derive(Debug, Clone, Copy)]
struct Level {
    /// Items still to read at this level.
    left: u64,
    /// Whether this level is an attribute (which does not count as an item of its parent).
    attr: bool,
}

/// Resumable, non-recursive scanner for the replies of one backend connection.
#[derive(Debug, Default)]
pub struct ReplyScanner {
    /// Offset of the next unscanned byte, relative to the current buffer front.
    pos: usize,
    /// Bytes of the current reply already handed on by the caller (`consumed`).
    gone: usize,
    /// Open aggregates, innermost last.
    stack: Vec<Level>,
    /// Payload bytes (plus CRLF) of a bulk string still to skip.
    bulk_left: usize,
    /// Type byte of the reply proper, once seen.
    kind: Option<u8>,
    /// First element of a top-level aggregate (absolute start and end relative to the reply).
    first: Option<(usize, usize)>,
    /// Whether the first element of the top-level aggregate has been passed.
    first_done: bool,
    /// Deepest nesting seen in the current reply.
    depth: usize,
}

impl ReplyScanner {
    /// A scanner at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes at the front of the buffer that belong to the current, unfinished reply and have
    /// been scanned (they may be forwarded before the reply completes).
    pub fn scanned(&self) -> usize {
        self.pos
    }

    /// Whether a reply has started but not finished.
    pub fn in_reply(&self) -> bool {
        self.pos > 0 || self.gone > 0
    }

    /// Type byte of the unfinished reply, once known.
    pub fn kind(&self) -> Option<u8> {
        self.kind
    }

    /// The caller removed `n` scanned bytes of the unfinished reply from the buffer front.
    pub fn consumed(&mut self, n: usize) {
        debug_assert!(n <= self.pos);
        self.pos -= n;
        self.gone += n;
    }

    /// Scans `buf`, which starts at the first byte of the current reply not yet consumed.
    /// Returns the reply's description when it completes; the caller then removes
    /// `buf[..info.len]` and the next call starts on the following reply.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<ReplyInfo>, ProtocolError> {
        loop {
            if self.bulk_left > 0 {
                let take = self.bulk_left.min(buf.len() - self.pos);
                self.pos += take;
                self.bulk_left -= take;
                if self.bulk_left > 0 {
                    return Ok(None);
                }
                self.item_done()?;
            } else {
                if self.pos >= buf.len() {
                    return Ok(None);
                }
                let Some(cr) = memchr(b'\r', &buf[self.pos..]).map(|i| i + self.pos) else {
                    return Ok(None);
                };
                if cr + 1 >= buf.len() {
                    return Ok(None);
                }
                let start = self.pos;
                if cr == start {
                    // An empty line has no type byte: not RESP (and no body to slice).
                    return Err(ProtocolError::BadReply);
                }
                self.pos = cr + 2;
                self.token(buf[start], &buf[start + 1..cr], start)?;
            }
            if self.stack.is_empty() && self.kind.is_some() && self.bulk_left == 0 {
                return Ok(Some(self.finish()));
            }
        }
    }

    fn finish(&mut self) -> ReplyInfo {
        let info = ReplyInfo {
            len: self.pos,
            consumed: self.gone,
            kind: self.kind.unwrap_or(b'?'),
            first: self.first,
            depth: self.depth,
        };
        self.depth = 0;
        self.pos = 0;
        self.gone = 0;
        self.kind = None;
        self.first = None;
        self.first_done = false;
        info
    }

    /// Handles one header or line token. `at` is the token's offset in the buffer.
    fn token(&mut self, ty: u8, body: &[u8], at: usize) -> Result<(), ProtocolError> {
        let top_item = self.stack.is_empty();
        if top_item && ty != b'|' && self.kind.is_none() {
            self.kind = Some(ty);
        }
        match ty {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
                self.note_first(at + 1, at + 1 + body.len());
                self.item_done()
            }
            b'$' | b'=' | b'!' => {
                let n = parse_int(body).ok_or(ProtocolError::BadReply)?;
                if n < 0 {
                    return self.item_done();
                }
                let start = at + body.len() + 3;
                self.note_first(start, start + n as usize);
                self.bulk_left = n as usize + 2;
                Ok(())
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let n = parse_int(body).ok_or(ProtocolError::BadReply)?;
                if n < 0 {
                    return self.item_done();
                }
                let mult = if matches!(ty, b'%' | b'|') { 2 } else { 1 };
                self.open(n as u64 * mult, ty == b'|')
            }
            _ => Err(ProtocolError::BadReply),
        }
    }

    /// Records the first element of a top-level aggregate (only strings, only depth one).
    fn note_first(&mut self, start: usize, end: usize) {
        if self.stack.len() == 1 && !self.stack[0].attr && !self.first_done {
            let base = self.gone;
            self.first = Some((start + base, end + base));
        }
    }

    fn open(&mut self, items: u64, attr: bool) -> Result<(), ProtocolError> {
        if self.stack.len() >= MAX_REPLY_DEPTH {
            return Err(ProtocolError::BadReply);
        }
        if items == 0 {
            // An empty aggregate is a finished item right away (an empty attribute is
            // nothing at all).
            if attr {
                return Ok(());
            }
            return self.item_done();
        }
        self.stack.push(Level { left: items, attr });
        self.depth = self.depth.max(self.stack.len());
        Ok(())
    }

    /// One item finished; close every aggregate it completes.
    fn item_done(&mut self) -> Result<(), ProtocolError> {
        let mut counts = true;
        loop {
            let Some(level) = self.stack.last_mut() else {
                return Ok(());
            };
            if counts {
                level.left -= 1;
                if self.stack.len() == 1 && !self.stack[0].attr {
                    self.first_done = true;
                }
            }
            let Some(level) = self.stack.last() else {
                return Ok(());
            };
            if level.left > 0 {
                return Ok(());
            }
            let closed = self.stack.pop().map(|l| l.attr).unwrap_or(false);
            // A finished attribute is not an item of its parent.
            counts = !closed;
            if !counts {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
