//! The backend direction: [`ReplyScanner`] finds each reply in what a Redis node sends,
//! nested RESP3 types included, with an explicit stack instead of recursion. Nested levels in
//! the same state are kept as one entry with a repeat count, so the chains Redis produces
//! (a Lua script returning a table that contains itself is answered with ~8,000 nested
//! one-element arrays ending in an error) cost a few bytes, not one entry per level.

use memchr::memchr;

use super::parse_int;
use crate::resp::error::ProtocolError;

/// More distinct open levels than this in a reply are treated as a broken backend stream
/// (levels in the same state share one entry, so this bounds memory, not depth).
const MAX_REPLY_RUNS: usize = 4096;
/// Stack room kept between replies (a deep reply's stack is given back).
const STACK_KEEP: usize = 16;

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
    /// Nested levels in this same state that this entry stands for (at least 1).
    repeat: usize,
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
    /// Open aggregates in all (the sum of the entries' repeats).
    open: usize,
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
            if self.open == 0 && self.kind.is_some() && self.bulk_left == 0 {
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
        if self.stack.capacity() > STACK_KEEP {
            self.stack.shrink_to(STACK_KEEP);
        }
        info
    }

    /// Handles one header or line token. `at` is the token's offset in the buffer.
    fn token(&mut self, ty: u8, body: &[u8], at: usize) -> Result<(), ProtocolError> {
        let top_item = self.open == 0;
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
        if self.at_top_aggregate() && !self.first_done {
            let base = self.gone;
            self.first = Some((start + base, end + base));
        }
    }

    /// Whether exactly one aggregate is open and it is not an attribute.
    fn at_top_aggregate(&self) -> bool {
        self.open == 1 && !self.stack[0].attr
    }

    fn open(&mut self, items: u64, attr: bool) -> Result<(), ProtocolError> {
        if items == 0 {
            // An empty aggregate is a finished item right away (an empty attribute is
            // nothing at all).
            if attr {
                return Ok(());
            }
            return self.item_done();
        }
        let runs = self.stack.len();
        match self.stack.last_mut() {
            Some(top) if top.left == items && top.attr == attr => top.repeat += 1,
            _ if runs >= MAX_REPLY_RUNS => return Err(ProtocolError::BadReply),
            _ => self.stack.push(Level {
                left: items,
                attr,
                repeat: 1,
            }),
        }
        self.open += 1;
        self.depth = self.depth.max(self.open);
        Ok(())
    }

    /// The innermost level, split from the entry it shares with others in the same state.
    fn innermost(&mut self) -> Option<&mut Level> {
        let top = self.stack.last_mut()?;
        if top.repeat > 1 {
            top.repeat -= 1;
            let one = Level { repeat: 1, ..*top };
            self.stack.push(one);
        }
        self.stack.last_mut()
    }

    /// One item finished; close every aggregate it completes.
    fn item_done(&mut self) -> Result<(), ProtocolError> {
        let mut counts = true;
        loop {
            if counts {
                let top_aggregate = self.at_top_aggregate();
                let Some(level) = self.innermost() else {
                    return Ok(());
                };
                level.left -= 1;
                if top_aggregate {
                    self.first_done = true;
                }
            }
            let Some(level) = self.stack.last() else {
                return Ok(());
            };
            if level.left > 0 {
                return Ok(());
            }
            // `innermost` left this entry standing for one level.
            let closed = self.stack.pop().map(|l| l.attr).unwrap_or(false);
            self.open -= 1;
            // A finished attribute is not an item of its parent.
            counts = !closed;
            if !counts {
                return Ok(());
            }
        }
    }
}
