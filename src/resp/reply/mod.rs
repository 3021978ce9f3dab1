//! Every reply the proxy writes itself, and (in [`client_error`]) every error text a client can
//! receive from the proxy. Replies are described as a protocol-neutral [`Value`] and encoded for the
//! client's protocol (RESP2 or RESP3) with redis-protocol, so a map becomes a RESP3 map or a
//! flat RESP2 array exactly as Redis would send it. Errors that the proxy raises on its own
//! account end with `(proxy)` so that an operator reading a client log knows who said it.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::{BytesFrame as Frame3, FrameMap, VerbatimStringFormat};

mod client_error;

pub use client_error::ClientError;

/// The protocol a client speaks, chosen with HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Proto {
    /// RESP2, the default for a new connection.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

impl Proto {
    /// The HELLO protocol number.
    pub fn number(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// A reply built by the proxy.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+text`
    Simple(String),
    /// `-text` (the text includes the error code)
    Error(String),
    /// `:n`
    Int(i64),
    /// `$len` bytes
    Bulk(Bytes),
    /// Null (`$-1` in RESP2, `_` in RESP3).
    Null,
    /// Null array (`*-1` in RESP2, `_` in RESP3): EXEC aborted by WATCH, a timed-out BLPOP.
    NullArray,
    /// Set (an array in RESP2).
    Set(Vec<Value>),
    /// Array.
    Array(Vec<Value>),
    /// Map (a flat array in RESP2).
    Map(Vec<(Value, Value)>),
    /// Verbatim text (a bulk string in RESP2).
    Verbatim(String),
}

impl Value {
    /// `+OK`
    pub fn ok() -> Self {
        Value::Simple("OK".into())
    }

    /// A bulk string from text.
    pub fn bulk(s: impl Into<Bytes>) -> Self {
        Value::Bulk(s.into())
    }

    /// Encodes the value for `proto` at the end of `buf`.
    pub fn encode(&self, proto: Proto, buf: &mut BytesMut) {
        if *self == Value::NullArray && proto == Proto::Resp2 {
            buf.extend_from_slice(b"*-1\r\n");
            return;
        }
        // Encoding a well-formed frame into a growable buffer cannot fail; the results are
        // checked by the unit tests below.
        let _ = match proto {
            Proto::Resp2 => {
                redis_protocol::resp2::encode::extend_encode(buf, &self.to_resp2(), false)
            }
            Proto::Resp3 => {
                redis_protocol::resp3::encode::complete::extend_encode(buf, &self.to_resp3(), false)
            }
        };
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self, proto: Proto) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(proto, &mut buf);
        buf.freeze()
    }

    fn to_resp2(&self) -> Frame2 {
        match self {
            Value::Simple(s) => Frame2::SimpleString(Bytes::from(s.clone())),
            Value::Error(e) => Frame2::Error(e.clone().into()),
            Value::Int(i) => Frame2::Integer(*i),
            Value::Bulk(b) => Frame2::BulkString(b.clone()),
            Value::Null => Frame2::Null,
            // redis-protocol encodes a RESP2 null as `$-1`; a null array is written directly.
            Value::NullArray => Frame2::Null,
            Value::Array(items) | Value::Set(items) => {
                Frame2::Array(items.iter().map(Value::to_resp2).collect())
            }
            Value::Map(pairs) => Frame2::Array(
                pairs
                    .iter()
                    .flat_map(|(k, v)| [k.to_resp2(), v.to_resp2()])
                    .collect(),
            ),
            Value::Verbatim(s) => Frame2::BulkString(Bytes::from(s.clone())),
        }
    }

    fn to_resp3(&self) -> Frame3 {
        match self {
            Value::Simple(s) => Frame3::SimpleString {
                data: Bytes::from(s.clone()),
                attributes: None,
            },
            Value::Error(e) => Frame3::SimpleError {
                data: e.clone().into(),
                attributes: None,
            },
            Value::Int(i) => Frame3::Number {
                data: *i,
                attributes: None,
            },
            Value::Bulk(b) => Frame3::BlobString {
                data: b.clone(),
                attributes: None,
            },
            Value::Null | Value::NullArray => Frame3::Null,
            Value::Array(items) => Frame3::Array {
                data: items.iter().map(Value::to_resp3).collect(),
                attributes: None,
            },
            Value::Set(items) => {
                let mut set = redis_protocol::resp3::types::FrameSet::with_capacity(items.len());
                for i in items {
                    set.insert(i.to_resp3());
                }
                Frame3::Set {
                    data: set,
                    attributes: None,
                }
            }
            Value::Map(pairs) => {
                let mut map = FrameMap::with_capacity(pairs.len());
                for (k, v) in pairs {
                    map.insert(k.to_resp3(), v.to_resp3());
                }
                Frame3::Map {
                    data: map,
                    attributes: None,
                }
            }
            Value::Verbatim(s) => Frame3::VerbatimString {
                data: Bytes::from(s.clone()),
                format: VerbatimStringFormat::Text,
                attributes: None,
            },
        }
    }
}

/// `+OK\r\n`, identical in both protocols.
pub const OK: &[u8] = b"+OK\r\n";
/// `+QUEUED\r\n`
pub const QUEUED: &[u8] = b"+QUEUED\r\n";
/// `+PONG\r\n`
pub const PONG: &[u8] = b"+PONG\r\n";
/// `+RESET\r\n`
pub const RESET: &[u8] = b"+RESET\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_arrays_follow_the_protocol() {
        assert_eq!(&Value::NullArray.to_bytes(Proto::Resp2)[..], b"*-1\r\n");
        assert_eq!(&Value::NullArray.to_bytes(Proto::Resp3)[..], b"_\r\n");
    }

    #[test]
    fn maps_and_nulls_follow_the_protocol() {
        let v = Value::Map(vec![
            (Value::bulk("proto"), Value::Int(3)),
            (Value::bulk("modules"), Value::Array(vec![])),
        ]);
        assert_eq!(
            &v.to_bytes(Proto::Resp3)[..],
            b"%2\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
        );
        assert_eq!(
            &v.to_bytes(Proto::Resp2)[..],
            b"*4\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
        );
        assert_eq!(&Value::Null.to_bytes(Proto::Resp2)[..], b"$-1\r\n");
        assert_eq!(&Value::Null.to_bytes(Proto::Resp3)[..], b"_\r\n");
        assert_eq!(
            &Value::Verbatim("id=1".into()).to_bytes(Proto::Resp3)[..],
            b"=8\r\ntxt:id=1\r\n"
        );
    }
}
