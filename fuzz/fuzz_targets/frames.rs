//! Frame scanning under hostile input: arbitrary bytes go to [`RequestParser`] (what clients
//! send) and to [`ReplyScanner`] (what a backend sends), whole and in pieces.
//!
//! The first byte chooses how the rest is fed:
//! - bits 0-4: piece size (0: all at once, n: n bytes per read);
//! - bit 5: small frame limits (so the argument and bulk limits are reached), else the default;
//! - bit 6: for the request parser, the first line grows past 64 KiB (its second byte
//!   repeated, so the inline and header line limits are reached) and pieces are 997 times
//!   larger; for the reply scanner, the scanned part of an unfinished reply is consumed after
//!   every read (the way a backend connection streams a large reply);
//! - bit 7: the client has not authenticated (Redis's tighter limits apply).
//!
//! Invariants: nothing panics; reading in pieces finds exactly the frames (and the error)
//! that reading everything at once finds; every request re-parses from its own bytes to the
//! same arguments and respects the limits; no more bytes are consumed than were given; an
//! error is terminal (asking again gives it again, never a frame).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use redis_failover_proxy::resp::scan::UNAUTHENTICATED_MAX_BULK;
use redis_failover_proxy::resp::scan::{MAX_INLINE, UNAUTHENTICATED_MAX_ARGS};
use redis_failover_proxy::resp::{FrameLimits, ProtocolError, ReplyInfo, ReplyScanner};
use redis_failover_proxy::resp::{Request, RequestParser};

/// Limits small enough for short inputs to reach them (`max_args` above the unauthenticated
/// limit, so both checks are exercised).
const SMALL: FrameLimits = FrameLimits {
    max_bulk: 100,
    max_args: 12,
};

/// Shortest header that opens a nesting level (`*1\r\n`): a reply cannot be nested deeper
/// than its length allows (the scanner bounds the distinct levels it keeps, not the depth).
const LEVEL_BYTES: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Mode {
    piece: usize,
    limits: FrameLimits,
    inflate: bool,
    unauth: bool,
}

impl Mode {
    fn from_byte(b: u8) -> Self {
        let piece = usize::from(b & 0x1f);
        Self {
            piece: if piece == 0 { usize::MAX } else { piece },
            limits: if b & 0x20 != 0 {
                SMALL
            } else {
                FrameLimits::default()
            },
            inflate: b & 0x40 != 0,
            unauth: b & 0x80 != 0,
        }
    }
}

/// What a whole parse found: each request's arguments, and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    frames: Vec<Vec<Vec<u8>>>,
    end: Result<(), ProtocolError>,
    /// Unconsumed bytes when more input was needed.
    rest: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let mode = Mode::from_byte(ctl);
    let (requests, piece) = if mode.inflate && body.len() > 1 {
        // The first line grows past the longest one accepted: its second byte is repeated.
        let mut long = Vec::with_capacity(body.len() + MAX_INLINE + 1);
        long.push(body[0]);
        long.resize(MAX_INLINE + 2, body[1]);
        long.extend_from_slice(&body[1..]);
        (long, mode.piece.saturating_mul(997))
    } else {
        (body.to_vec(), mode.piece)
    };
    let whole = parse_requests(&requests, usize::MAX, mode);
    if piece != usize::MAX {
        let pieces = parse_requests(&requests, piece, mode);
        assert_eq!(
            whole, pieces,
            "reading in pieces of {piece} changed the frames"
        );
    }

    let whole = scan_replies(body, usize::MAX, false);
    let pieces = scan_replies(body, mode.piece, mode.inflate);
    assert_eq!(
        whole, pieces,
        "reading in pieces of {} changed the replies",
        mode.piece
    );
});

/// Feeds `input` to a request parser `piece` bytes at a time, checking every frame.
fn parse_requests(input: &[u8], piece: usize, mode: Mode) -> Parsed {
    let mut parser = RequestParser::new(mode.limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    for chunk in input.chunks(piece.min(input.len()).max(1)) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let start = fed - buf.len();
            match parser.next(&mut buf, mode.unauth) {
                Ok(Some(req)) => {
                    let end = fed - buf.len();
                    let len = req.bytes().len();
                    // A multibulk frame travels as the bytes that carried it: they must be the
                    // last ones this call consumed. An inline command is rewritten (earlier
                    // inline lines may happen to spell out its rewriting, hence `start`); its
                    // line ended at a newline.
                    let raw = end - start >= len && input[end - len..end] == req.bytes()[..];
                    assert!(
                        raw || input[end - 1] == b'\n',
                        "frame from bytes not consumed"
                    );
                    frames.push(check_request(&req, raw, mode));
                }
                Ok(None) => {
                    assert!(parser.pending() <= buf.len(), "pending past the buffer");
                    break;
                }
                Err(e) => {
                    // After an error the connection closes; asking again must not produce a
                    // frame out of the broken stream.
                    match parser.next(&mut buf, mode.unauth) {
                        Err(again) => assert_eq!(again, e, "a different error on retry"),
                        Ok(r) => panic!("error {e:?} was not terminal: then {r:?}"),
                    }
                    return Parsed {
                        frames,
                        end: Err(e),
                        rest: Vec::new(),
                    };
                }
            }
        }
    }
    assert!(buf.len() <= fed);
    Parsed {
        frames,
        end: Ok(()),
        rest: buf.to_vec(),
    }
}

/// Checks one request against its own bytes and, when it arrived as a multibulk frame (`raw`),
/// the limits; returns its arguments.
fn check_request(req: &Request, raw: bool, mode: Mode) -> Vec<Vec<u8>> {
    let args = req.args();
    assert!(!args.is_empty(), "a request without a name");
    assert_eq!(
        args.len(),
        req.argc(),
        "argc differs from the arguments walked"
    );
    assert_eq!(req.name(), args[0]);
    assert_eq!(req.arg1(), args.get(1).copied());

    let again = Request::parse(req.bytes()).expect("a request's own bytes must parse");
    assert_eq!(
        again.bytes(),
        req.bytes(),
        "re-parse took a different frame"
    );
    assert_eq!(again.args(), args, "re-parse found different arguments");
    assert_eq!(again.argc(), req.argc());

    if raw {
        assert!(req.argc() <= mode.limits.max_args, "argument limit passed");
        assert!(
            args.iter().all(|a| a.len() <= mode.limits.max_bulk),
            "bulk limit passed"
        );
        if mode.unauth {
            assert!(req.argc() <= UNAUTHENTICATED_MAX_ARGS);
            assert!(args.iter().all(|a| a.len() <= UNAUTHENTICATED_MAX_BULK));
        }
    }
    args.iter().map(|a| a.to_vec()).collect()
}

/// What a scan of backend replies found: each reply (its full length in place of the part
/// left in the buffer), and whether it ended on an error.
#[derive(Debug, PartialEq, Eq)]
struct Scanned {
    replies: Vec<ReplyInfo>,
    failed: bool,
}

/// Feeds `input` to a reply scanner `piece` bytes at a time; with `stream`, the scanned part
/// of an unfinished reply is taken off the buffer after every read.
fn scan_replies(input: &[u8], piece: usize, stream: bool) -> Scanned {
    let mut scanner = ReplyScanner::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut replies = Vec::new();
    for chunk in input.chunks(piece.min(input.len()).max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match scanner.next(&buf) {
                Ok(Some(info)) => {
                    assert!(info.len <= buf.len(), "reply longer than the buffer");
                    assert!(!scanner.in_reply(), "a finished reply left state behind");
                    let full = info.consumed + info.len;
                    if let Some((s, e)) = info.first {
                        assert!(s <= e && e <= full, "first element outside the reply");
                    }
                    assert!(
                        info.depth * LEVEL_BYTES <= full,
                        "deeper than its bytes allow"
                    );
                    buf.drain(..info.len);
                    replies.push(ReplyInfo {
                        len: full,
                        consumed: 0,
                        ..info
                    });
                }
                Ok(None) => {
                    let scanned = scanner.scanned();
                    assert!(scanned <= buf.len(), "scanned past the buffer");
                    if stream && scanned > 0 {
                        scanner.consumed(scanned);
                        buf.drain(..scanned);
                    }
                    break;
                }
                Err(_) => {
                    return Scanned {
                        replies,
                        failed: true,
                    }
                }
            }
        }
    }
    Scanned {
        replies,
        failed: false,
    }
}
