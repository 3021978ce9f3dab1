//! Decoding of the replies the proxy reads for itself: handshakes, health probes, Sentinel
//! answers. Frames are first bounded by [`ReplyScanner`](super::ReplyScanner) (which also caps
//! their nesting, since redis-protocol's decoder recurses), then decoded with redis-protocol
//! into a small [`Reply`] tree that the rest of the crate inspects.

use bytes::Bytes;
use redis_protocol::resp2::types::OwnedFrame as Owned2;
use redis_protocol::resp3::types::OwnedFrame as Owned3;

use super::reply::Proto;
use super::scan::ReplyScanner;

/// Nesting accepted before decoding (Redis's own replies stay far below it).
const MAX_DECODE_DEPTH: usize = 16;

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Simple or bulk string.
    Str(Bytes),
    /// Error text (code included).
    Error(String),
    /// Integer.
    Int(i64),
    /// Null.
    Null,
    /// Array, set or push.
    Array(Vec<Reply>),
    /// Map.
    Map(Vec<(Reply, Reply)>),
    /// Boolean, double, big number: kept as text.
    Other(String),
}

/// Why a reply could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not RESP.
    #[error("malformed reply")]
    Malformed,
    /// Nested deeper than the proxy decodes.
    #[error("reply nested too deeply")]
    TooDeep,
}

/// Decodes the first complete reply in `buf`; returns it and its length, or `None` when
/// incomplete.
pub fn decode(proto: Proto, buf: &[u8]) -> Result<Option<(Reply, usize)>, DecodeError> {
    let mut scanner = ReplyScanner::new();
    let Some(info) = scanner.next(buf).map_err(|_| DecodeError::Malformed)? else {
        return Ok(None);
    };
    if info.depth > MAX_DECODE_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let frame = &buf[..info.len];
    let reply = match proto {
        Proto::Resp2 => match redis_protocol::resp2::decode::decode(frame) {
            Ok(Some((f, _))) => from2(f),
            _ => return Err(DecodeError::Malformed),
        },
        Proto::Resp3 => match redis_protocol::resp3::decode::complete::decode(frame) {
            Ok(Some((f, _))) => from3(f),
            _ => return Err(DecodeError::Malformed),
        },
    };
    Ok(Some((reply, info.len)))
}

fn from2(f: Owned2) -> Reply {
    match f {
        Owned2::SimpleString(s) | Owned2::BulkString(s) => Reply::Str(s.into()),
        Owned2::Error(e) => Reply::Error(e),
        Owned2::Integer(i) => Reply::Int(i),
        Owned2::Array(items) => Reply::Array(items.into_iter().map(from2).collect()),
        Owned2::Null => Reply::Null,
    }
}

fn from3(f: Owned3) -> Reply {
    match f {
        Owned3::BlobString { data, .. }
        | Owned3::SimpleString { data, .. }
        | Owned3::VerbatimString { data, .. } => Reply::Str(data.into()),
        Owned3::SimpleError { data, .. } => Reply::Error(data),
        Owned3::BlobError { data, .. } => Reply::Error(String::from_utf8_lossy(&data).into()),
        Owned3::Number { data, .. } => Reply::Int(data),
        Owned3::Null => Reply::Null,
        Owned3::Array { data, .. } | Owned3::Push { data, .. } => {
            Reply::Array(data.into_iter().map(from3).collect())
        }
        Owned3::Set { data, .. } => Reply::Array(data.into_iter().map(from3).collect()),
        Owned3::Map { data, .. } => Reply::Map(
            data.into_iter()
                .map(|(k, v)| (from3(k), from3(v)))
                .collect(),
        ),
        Owned3::Boolean { data, .. } => Reply::Other(data.to_string()),
        Owned3::Double { data, .. } => Reply::Other(data.to_string()),
        Owned3::BigNumber { data, .. } => Reply::Other(String::from_utf8_lossy(&data).into()),
        other => Reply::Other(format!("{other:?}")),
    }
}

impl Reply {
    /// The string value, if this is a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Str(b) => Some(b),
            _ => None,
        }
    }

    /// The string value as UTF-8 text (lossy).
    pub fn as_text(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The integer value (also from a string holding digits).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            Reply::Str(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The error text, if this is an error.
    pub fn as_error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }

    /// Elements of an array.
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Looks up `key` in a map, or in a RESP2 array of alternating keys and values.
    pub fn field(&self, key: &str) -> Option<&Reply> {
        match self {
            Reply::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
                .map(|(_, v)| v),
            Reply::Array(items) => items
                .chunks(2)
                .find(|kv| kv[0].as_bytes() == Some(key.as_bytes()))
                .and_then(|kv| kv.get(1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_protocols() {
        let (r, n) = decode(Proto::Resp2, b"*2\r\n$1\r\na\r\n$-1\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(n, 16);
        assert_eq!(r, Reply::Array(vec![Reply::Str("a".into()), Reply::Null]));
        let (r, _) = decode(Proto::Resp3, b"%1\r\n+proto\r\n:3\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.field("proto").and_then(Reply::as_int), Some(3));
        assert!(decode(Proto::Resp3, b"%1\r\n+pro").unwrap().is_none());
    }

    #[test]
    fn refuses_deep_nesting_before_recursing() {
        let mut deep = b"*1\r\n".repeat(MAX_DECODE_DEPTH + 1);
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(decode(Proto::Resp3, &deep), Err(DecodeError::TooDeep));
    }
}
