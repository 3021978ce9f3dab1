use bytes::BytesMut;

use super::*;
use crate::resp::error::ProtocolError;

fn parse_all(input: &[u8], chunk: usize) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
    let mut parser = RequestParser::new(FrameLimits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(req) = parser.next(&mut buf, false)? {
            let args: Vec<Vec<u8>> = req.args().iter().map(|a| a.to_vec()).collect();
            assert_eq!(args.len(), req.argc());
            assert_eq!(req.name(), args[0].as_slice());
            assert_eq!(req.arg1(), args.get(1).map(|a| a.as_slice()));
            out.push(args);
        }
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(out)
}

fn args(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|a| a.as_bytes().to_vec()).collect()
}

#[test]
fn multibulk_pipeline_split_at_every_byte() {
    let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
    let want = vec![
        args(&["GET", "k"]),
        args(&["SET", "k", ""]),
        args(&["PING"]),
    ];
    for chunk in 1..input.len() {
        assert_eq!(parse_all(input, chunk).unwrap(), want, "chunk {chunk}");
    }
}

#[test]
fn empty_multibulk_headers_are_skipped() {
    let got = parse_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", 100).unwrap();
    assert_eq!(got, vec![args(&["PING"])]);
}

#[test]
fn inline_commands_become_multibulk() {
    let got = parse_all(b"SET k \"a b\\x41\\n\" 'it\\'s'\r\n\r\nPING\n", 3).unwrap();
    assert_eq!(
        got,
        vec![
            vec![
                b"SET".to_vec(),
                b"k".to_vec(),
                b"a bA\n".to_vec(),
                b"it's".to_vec()
            ],
            args(&["PING"]),
        ]
    );
}

#[test]
fn bulk_terminator_is_skipped_like_redis() {
    let got = parse_all(b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n", 100).unwrap();
    assert_eq!(got, vec![args(&["PING"]), args(&["PING"])]);
}

fn parse_err(input: &[u8], unauth: bool) -> ProtocolError {
    let mut parser = RequestParser::new(FrameLimits {
        max_bulk: 100_000,
        max_args: 100,
    });
    let mut buf = BytesMut::from(input);
    loop {
        match parser.next(&mut buf, unauth) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error for {input:?}"),
            Err(e) => return e,
        }
    }
}

#[test]
fn malformed_frames_get_redis_error_texts() {
    assert_eq!(
        parse_err(b"*x\r\n", false),
        ProtocolError::InvalidMultibulkLength
    );
    assert_eq!(
        parse_err(b"*101\r\n", false),
        ProtocolError::InvalidMultibulkLength
    );
    assert_eq!(
        parse_err(b"*1\r\n+OK\r\n", false),
        ProtocolError::ExpectedDollar(b'+')
    );
    assert_eq!(
        parse_err(b"*1\r\n$-2\r\n", false),
        ProtocolError::InvalidBulkLength
    );
    assert_eq!(
        parse_err(b"*1\r\n$100001\r\n", false),
        ProtocolError::InvalidBulkLength
    );
    assert_eq!(
        parse_err(b"*1\r\n$01\r\n", false),
        ProtocolError::InvalidBulkLength
    );
    assert_eq!(
        parse_err(b"SET 'a\r\n", false),
        ProtocolError::UnbalancedQuotes
    );
    assert_eq!(
        parse_err(b"SET \"a\"b\r\n", false),
        ProtocolError::UnbalancedQuotes
    );
    assert_eq!(
        parse_err(b"*11\r\n", true),
        ProtocolError::UnauthenticatedMultibulkLength
    );
    assert_eq!(
        parse_err(b"*1\r\n$16385\r\n", true),
        ProtocolError::UnauthenticatedBulkLength
    );
    assert_eq!(
        ProtocolError::ExpectedDollar(b'+').to_string(),
        "expected '$', got '+'"
    );
}

#[test]
fn overlong_lines_are_refused() {
    let mut long = vec![b'A'; MAX_INLINE + 2];
    assert_eq!(parse_err(&long, false), ProtocolError::TooBigInline);
    long[0] = b'*';
    assert_eq!(parse_err(&long, false), ProtocolError::TooBigMultibulkCount);
    let mut bulk = b"*1\r\n$".to_vec();
    bulk.extend(vec![b'1'; MAX_INLINE + 2]);
    assert_eq!(parse_err(&bulk, false), ProtocolError::TooBigBulkCount);
}

/// A header line dripping in one byte per read is searched once in total (found while
/// fuzzing: each read searched the whole line again, quadratic in its length).
#[test]
fn dripping_header_line_is_scanned_once() {
    for (prefix, want) in [
        (&b"*"[..], ProtocolError::TooBigMultibulkCount),
        (b"*1\r\n$", ProtocolError::TooBigBulkCount),
    ] {
        let mut parser = RequestParser::new(FrameLimits::default());
        let mut buf = BytesMut::from(prefix);
        let mut got = None;
        for _ in 0..MAX_INLINE + 2 {
            buf.extend_from_slice(b"1");
            match parser.next(&mut buf, false) {
                Ok(None) => assert!(parser.line_seen == buf.len()),
                Ok(Some(r)) => panic!("a frame out of a header line: {r:?}"),
                Err(e) => {
                    got = Some(e);
                    break;
                }
            }
        }
        assert_eq!(got, Some(want));
    }
}

#[test]
fn announced_lengths_allocate_nothing() {
    let mut parser = RequestParser::new(FrameLimits::default());
    let mut buf = BytesMut::from(&b"*2147483647\r\n$536870912\r\nabc"[..]);
    let cap = buf.capacity();
    assert!(parser.next(&mut buf, false).unwrap().is_none());
    assert_eq!(buf.capacity(), cap);
    assert!(parser.pending() > 0);
}

#[test]
fn parse_int_matches_string2ll() {
    assert_eq!(parse_int(b"0"), Some(0));
    assert_eq!(parse_int(b"-12"), Some(-12));
    assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"01",
        b"-0",
        b"+1",
        b" 1",
        b"1a",
        b"9223372036854775808",
    ] {
        assert_eq!(parse_int(bad), None, "{bad:?}");
    }
}

#[test]
fn from_args_round_trips() {
    let req = Request::from_args(&["HSET", "h", "f", "v"]);
    assert_eq!(
        &req.bytes()[..],
        b"*4\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(req.name(), b"HSET");
    assert_eq!(req.arg1(), Some(&b"h"[..]));
    assert_eq!(req.args().len(), 4);
}

/// Feeds `input` to a reply scanner in chunks of `chunk` bytes and returns each reply's bytes.
fn replies(input: &[u8], chunk: usize) -> Vec<(Vec<u8>, ReplyInfo)> {
    let mut sc = ReplyScanner::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(info) = sc.next(&buf).unwrap() {
            out.push((buf.split_to(info.len).to_vec(), info));
        }
    }
    assert!(buf.is_empty());
    out
}

const RESP3_MIX: &[u8] =
    b"+OK\r\n-ERR bad\r\n:12\r\n$3\r\nfoo\r\n$-1\r\n*-1\r\n*0\r\n_\r\n#t\r\n,1.5\r\n(123\r\n\
=7\r\ntxt:abc\r\n!5\r\nERR x\r\n%1\r\n+k\r\n*2\r\n:1\r\n%0\r\n~1\r\n$1\r\na\r\n\
|1\r\n+meta\r\n+v\r\n+after-attr\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nmsg\r\n\
*2\r\n|1\r\n+a\r\n+b\r\n$1\r\nx\r\n:2\r\n";

#[test]
fn every_resp3_type_at_every_split() {
    let whole = replies(RESP3_MIX, RESP3_MIX.len());
    let kinds: Vec<u8> = whole.iter().map(|(_, i)| i.kind).collect();
    assert_eq!(kinds, b"+-:$$**_#,(=!%~+>*".to_vec());
    for chunk in 1..RESP3_MIX.len() {
        let got = replies(RESP3_MIX, chunk);
        assert_eq!(got.len(), whole.len(), "chunk {chunk}");
        for (a, b) in got.iter().zip(&whole) {
            assert_eq!(a.0, b.0, "chunk {chunk}");
        }
    }
}

#[test]
fn attribute_belongs_to_the_reply_it_precedes() {
    let got = replies(b"|1\r\n+meta\r\n+v\r\n+after-attr\r\n", 4);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.kind, b'+');
}

#[test]
fn push_first_element_is_located() {
    let got = replies(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nmsg\r\n", 5);
    let (bytes, info) = &got[0];
    let (s, e) = info.first.unwrap();
    assert_eq!(&bytes[s..e], b"message");
    // The first element of a nested aggregate is not a string: nothing is located.
    let got = replies(b"*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n", 100);
    assert_eq!(got[0].1.first, None);
}

#[test]
fn large_reply_can_be_forwarded_before_it_completes() {
    let mut sc = ReplyScanner::new();
    let mut buf = BytesMut::from(&b"*2\r\n$10\r\n01234"[..]);
    assert!(sc.next(&buf).unwrap().is_none());
    let n = sc.scanned();
    assert_eq!(n, buf.len());
    let _ = buf.split_to(n);
    sc.consumed(n);
    buf.extend_from_slice(b"56789\r\n:7\r\n+next\r\n");
    let info = sc.next(&buf).unwrap().unwrap();
    assert_eq!(info.consumed, n);
    assert_eq!(&buf[..info.len], b"56789\r\n:7\r\n");
    let _ = buf.split_to(info.len);
    assert_eq!(sc.next(&buf).unwrap().unwrap().kind, b'+');
}

/// What Redis answers for a Lua table that contains itself: thousands of nested one-element
/// arrays ending in an error. It passes as one reply, without recursion, with a stack of a
/// few entries.
#[test]
fn deep_chains_pass_in_bounded_memory() {
    let mut input = Vec::new();
    for _ in 0..100_000 {
        input.extend_from_slice(b"*1\r\n");
    }
    let mut sc = ReplyScanner::new();
    assert_eq!(sc.next(&input), Ok(None));
    input.extend_from_slice(b"-ERR reached lua stack limit\r\n+next\r\n");
    let info = sc.next(&input).unwrap().unwrap();
    assert_eq!((info.kind, info.depth), (b'*', 100_000));
    assert_eq!(info.len, input.len() - b"+next\r\n".len());
    let rest = &input[info.len..];
    assert_eq!(sc.next(rest).unwrap().unwrap().kind, b'+');
}

/// Nesting whose levels all differ is bounded by the number of distinct open levels.
#[test]
fn distinct_deep_nesting_is_refused_without_recursion() {
    let mut input = Vec::new();
    for i in 0..10_000 {
        input.extend_from_slice(if i % 2 == 0 { b"*2\r\n" } else { b"*1\r\n" });
    }
    let mut sc = ReplyScanner::new();
    assert_eq!(sc.next(&input), Err(ProtocolError::BadReply));
}

/// Runs split and merge correctly: nested aggregates of several sizes, partly consumed.
#[test]
fn mixed_nesting_ends_where_it_should() {
    let reply = b"*2\r\n*2\r\n*1\r\n:1\r\n*1\r\n*1\r\n:2\r\n*2\r\n:3\r\n*2\r\n:4\r\n:5\r\n";
    let mut buf = reply.to_vec();
    buf.extend_from_slice(b":9\r\n");
    let mut sc = ReplyScanner::new();
    let info = sc.next(&buf).unwrap().unwrap();
    assert_eq!(info.len, reply.len());
    assert_eq!(info.depth, 4);
    for cut in 1..reply.len() {
        let mut sc = ReplyScanner::new();
        assert_eq!(sc.next(&reply[..cut]), Ok(None), "cut at {cut}");
    }
}

#[test]
fn garbage_reply_is_an_error() {
    let mut sc = ReplyScanner::new();
    assert_eq!(sc.next(b"?what\r\n"), Err(ProtocolError::BadReply));
    let mut sc = ReplyScanner::new();
    assert_eq!(sc.next(b"*x\r\n"), Err(ProtocolError::BadReply));
}

/// Found by the `frames` fuzz target: a line with no type byte made the scanner slice the
/// token body backwards and panic.
#[test]
fn empty_reply_line_is_an_error() {
    for input in [&b"\r\n"[..], b"\r\r\xed", b"*2\r\n:1\r\n\r\n"] {
        let mut sc = ReplyScanner::new();
        assert_eq!(sc.next(input), Err(ProtocolError::BadReply), "{input:?}");
    }
}
