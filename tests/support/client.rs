//! A blocking RESP client for tests. It decodes replies itself (RESP2 and RESP3), without
//! using the proxy's code, so that what the tests assert is what a client receives. The same
//! client runs over plain TCP or over TLS ([`TlsStream`], rustls in blocking mode). It
//! authenticates ([`Client::auth`]) with the load harness's handshake,
//! [`super::harness::handshake`], so that both send AUTH alike.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

pub(crate) use super::harness::handshake::Credentials;

/// A client's TLS connection.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

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

/// A blocking client over `S`: a [`TcpStream`] or a [`TlsStream`].
#[derive(Debug)]
pub struct Client<S = TcpStream> {
    /// Replies are read through it; commands are written to the stream inside it.
    reader: BufReader<S>,
    /// The TCP socket under `S`, for read deadlines.
    sock: TcpStream,
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

/// Encodes a command given as text.
pub fn encode_strs<S: AsRef<str>>(args: &[S]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_ref().as_bytes()).collect();
    encode(&args)
}

/// Credentials of the default user (`requirepass`).
pub fn password(password: &str) -> Credentials {
    Credentials {
        user: None,
        password: password.to_string(),
    }
}

/// The verdict on AUTH's reply: `+OK`, or an error showing what came instead.
pub fn auth_reply(reply: Frame) -> std::io::Result<()> {
    if reply == Frame::ok() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("AUTH: {reply:?}")))
    }
}

/// A TCP connection with the client's socket options.
fn tcp(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

impl Client {
    /// Connects (panics on failure).
    pub fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr).expect("connect")
    }

    /// Connects.
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = tcp(addr)?;
        let sock = stream.try_clone()?;
        Ok(Self {
            reader: BufReader::new(stream),
            sock,
        })
    }
}

impl Client<TlsStream> {
    /// Connects over TLS and completes the handshake, checking the server's certificate
    /// against `name` (panics on failure).
    pub fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> Self {
        Self::try_connect_tls(addr, config, name).expect("TLS connect")
    }

    /// Connects over TLS and completes the handshake. With TLS 1.3 the server judges the
    /// client's certificate after the client finished: a refused certificate shows as an
    /// error on the first read instead.
    pub fn try_connect_tls(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        name: &str,
    ) -> std::io::Result<Self> {
        let mut stream = tcp(addr)?;
        let sock = stream.try_clone()?;
        let name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
        let mut conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut stream)?;
        }
        Ok(Self {
            reader: BufReader::new(StreamOwned::new(conn, stream)),
            sock,
        })
    }

    /// The TLS session.
    pub fn tls(&self) -> &ClientConnection {
        &self.reader.get_ref().conn
    }

    /// The server's leaf certificate (DER), as presented in this connection's handshake.
    pub fn peer_leaf(&self) -> Vec<u8> {
        self.tls()
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("the server presented a certificate")
            .to_vec()
    }
}

impl<S: Read + Write> Client<S> {
    /// Changes the read deadline.
    pub fn set_read_timeout(&self, d: Option<Duration>) {
        let _ = self.sock.set_read_timeout(d);
    }

    /// The TCP socket under the connection.
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).expect("write");
    }

    /// Sends raw bytes; the peer may have closed.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let w = self.reader.get_mut();
        w.write_all(bytes)?;
        w.flush()
    }

    /// Sends one command without reading.
    pub fn send(&mut self, args: &[&str]) {
        self.send_raw(&encode_strs(args));
    }

    /// Sends one command with binary arguments without reading.
    pub fn send_bin(&mut self, args: &[&[u8]]) {
        self.send_raw(&encode(args));
    }

    /// Authenticates with `credentials` ([`Credentials::command`]); anything but `+OK` is an
    /// error.
    pub fn auth(&mut self, credentials: &Credentials) -> std::io::Result<()> {
        self.try_send_raw(&encode_strs(&credentials.command()))?;
        auth_reply(self.try_read()?)
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

    /// Whether the server closed the connection (reads until EOF or the deadline). A TLS
    /// connection closed without close_notify ends in `UnexpectedEof`, which counts too.
    pub fn closed(&mut self, within: Duration) -> bool {
        self.read_to_close(within).is_some()
    }

    /// Reads until the server closes; returns the bytes read, or `None` if the connection
    /// stayed open for `within` (the deadline of each read).
    pub fn read_to_close(&mut self, within: Duration) -> Option<usize> {
        use std::io::ErrorKind::{ConnectionReset, UnexpectedEof};
        self.set_read_timeout(Some(within));
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return Some(total),
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), ConnectionReset | UnexpectedEof) => {
                    return Some(total)
                }
                Err(_) => return None,
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
