//! A blocking RESP client for tests. It decodes replies itself (RESP2 and RESP3), without
//! using the proxy's code, so that what the tests assert is what a client receives.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Push(Vec<Frame>),
    Double(String),
    Bool(bool),
    Verbatim(String),
    BigNumber(String),
}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Self {
        Frame::Simple("OK".into())
    }

    /// A bulk string from text.
    pub fn bulk(s: &str) -> Self {
        Frame::Bulk(s.as_bytes().to_vec())
    }

    /// The text of a simple or bulk string.
    pub fn text(&self) -> String {
        match self {
            Frame::Simple(s) | Frame::Verbatim(s) => s.clone(),
            Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("not a string: {other:?}"),
        }
    }

    /// Whether this is an error whose text starts with `prefix`.
    pub fn is_error(&self, prefix: &str) -> bool {
        matches!(self, Frame::Error(e) if e.starts_with(prefix))
    }

    /// Elements of an array or push.
    pub fn items(&self) -> &[Frame] {
        match self {
            Frame::Array(a) | Frame::Push(a) | Frame::Set(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }
}

/// A blocking client.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// Encodes a command.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Client {
    /// Connects (panics on failure).
    pub fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr).expect("connect")
    }

    /// Connects.
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Changes the read deadline.
    pub fn set_read_timeout(&self, d: Option<Duration>) {
        let _ = self.writer.set_read_timeout(d);
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// Sends one command without reading.
    pub fn send(&mut self, args: &[&str]) {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send_raw(&encode(&args));
    }

    /// Sends one command with binary arguments without reading.
    pub fn send_bin(&mut self, args: &[&[u8]]) {
        self.send_raw(&encode(args));
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        self.send(args);
        self.read()
    }

    /// Reads one reply (panics on a closed connection or timeout).
    pub fn read(&mut self) -> Frame {
        self.try_read().expect("read reply")
    }

    /// Reads one reply.
    pub fn try_read(&mut self) -> std::io::Result<Frame> {
        read_frame(&mut self.reader)
    }

    /// Whether the server closed the connection (reads until EOF or the deadline).
    pub fn closed(&mut self, within: Duration) -> bool {
        self.set_read_timeout(Some(within));
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

fn read_line<R: BufRead>(r: &mut R) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(std::io::Error::other(format!("bad line {line:?}")));
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_n<R: BufRead>(r: &mut R, n: usize) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0u8; n + 2];
    r.read_exact(&mut data)?;
    data.truncate(n);
    Ok(data)
}

/// Reads one frame.
pub fn read_frame<R: BufRead>(r: &mut R) -> std::io::Result<Frame> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(1);
    let num = || {
        rest.parse::<i64>()
            .map_err(|_| std::io::Error::other(format!("bad length {line:?}")))
    };
    Ok(match kind {
        "+" => Frame::Simple(rest.into()),
        "-" => Frame::Error(rest.into()),
        ":" => Frame::Int(num()?),
        "$" => match num()? {
            -1 => Frame::Null,
            n => Frame::Bulk(read_n(r, n as usize)?),
        },
        "*" | "~" | ">" => match num()? {
            -1 => Frame::Null,
            n => {
                let items = (0..n)
                    .map(|_| read_frame(r))
                    .collect::<Result<Vec<_>, _>>()?;
                match kind {
                    "*" => Frame::Array(items),
                    "~" => Frame::Set(items),
                    _ => Frame::Push(items),
                }
            }
        },
        "%" => {
            let n = num()?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                pairs.push((read_frame(r)?, read_frame(r)?));
            }
            Frame::Map(pairs)
        }
        "_" => Frame::Null,
        "," => Frame::Double(rest.into()),
        "#" => Frame::Bool(rest == "t"),
        "(" => Frame::BigNumber(rest.into()),
        "=" => {
            let data = read_n(r, num()? as usize)?;
            Frame::Verbatim(String::from_utf8_lossy(&data[4..]).into_owned())
        }
        "!" => Frame::Error(String::from_utf8_lossy(&read_n(r, num()? as usize)?).into_owned()),
        _ => return Err(std::io::Error::other(format!("unknown type {line:?}"))),
    })
}
