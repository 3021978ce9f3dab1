//! A DNS server for tests: authoritative for whatever names a test gives it, on 127.0.0.1 (or
//! another local address, [`DnsServer::start_on`]; UDP and TCP on the same free port), served from its own thread and runtime. A test sets A and
//! SRV records, removes names, makes every answer a SERVFAIL to simulate an outage, and counts
//! the queries a name received to check how often it is asked. Names are absolute
//! (`redis.test.`) and compared without case; an unknown name gets NXDOMAIN, a known name asked
//! for a type it has no record of gets an empty answer. Stopped when dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The records of one name.
#[derive(Debug, Default)]
struct Entry {
    /// A records and their TTL.
    a: Option<(Vec<Ipv4Addr>, u32)>,
    /// SRV records and their TTL.
    srv: Option<(Vec<SRV>, u32)>,
}

#[derive(Debug, Default)]
struct State {
    names: HashMap<String, Entry>,
    failing: bool,
    queries: HashMap<String, usize>,
}

/// A running test DNS server, stopped on drop.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

/// `Redis.Test.` → `redis.test.`; a name without the final dot is taken as absolute too.
fn key(name: &str) -> String {
    let mut k = name.to_ascii_lowercase();
    if !k.ends_with('.') {
        k.push('.');
    }
    k
}

impl DnsServer {
    /// Starts a server on 127.0.0.1 and a free port (UDP and TCP).
    pub fn start() -> Self {
        Self::start_on(Ipv4Addr::LOCALHOST)
    }

    /// Starts a server on `ip` (`0.0.0.0`: every local address, for processes in the network
    /// lab's namespaces, which reach it over their control links) and a free port.
    pub fn start_on(ip: Ipv4Addr) -> Self {
        let (udp, tcp) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind((ip, 0)).ok()?;
                let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .expect("no free port for the test DNS server");
        let addr = udp.local_addr().expect("DNS server address");
        udp.set_nonblocking(true).expect("nonblocking UDP");
        tcp.set_nonblocking(true).expect("nonblocking TCP");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (st, token) = (Arc::clone(&state), stop.clone());
        let thread = std::thread::Builder::new()
            .name("test-dns".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("DNS server runtime");
                rt.block_on(async move {
                    let udp = tokio::net::UdpSocket::from_std(udp).expect("tokio UDP");
                    let tcp = tokio::net::TcpListener::from_std(tcp).expect("tokio TCP");
                    tokio::select! {
                        _ = serve_udp(udp, st.clone()) => {}
                        _ = serve_tcp(tcp, st) => {}
                        _ = token.cancelled() => {}
                    }
                });
            })
            .expect("DNS server thread");
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the A records of `name` (replacing its previous ones; an empty list leaves the name
    /// known but without addresses).
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr], ttl_secs: u32) {
        self.state().names.entry(key(name)).or_default().a = Some((ips.to_vec(), ttl_secs));
    }

    /// Sets the SRV records of `name`: `(priority, weight, port, target)` each.
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)], ttl_secs: u32) {
        let srv = records
            .iter()
            .map(|&(prio, weight, port, target)| {
                let target = Name::from_ascii(key(target)).expect("SRV target name");
                SRV::new(prio, weight, port, target)
            })
            .collect();
        self.state().names.entry(key(name)).or_default().srv = Some((srv, ttl_secs));
    }

    /// Forgets `name` (it then gets NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.state().names.remove(&key(name));
    }

    /// While `true`, every query gets SERVFAIL (a DNS outage).
    pub fn fail(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// Queries received for `name` so far, of any type (an address lookup may ask both A and
    /// AAAA), answered or not.
    pub fn queries(&self, name: &str) -> usize {
        self.state().queries.get(&key(name)).copied().unwrap_or(0)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves DNS over UDP.
async fn serve_udp(sock: tokio::net::UdpSocket, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&state, &buf[..n]) {
            let _ = sock.send_to(&reply, peer).await;
        }
    }
}

/// Serves DNS over TCP (two-byte length before each message); connection tasks end with the
/// runtime.
async fn serve_tcp(listener: tokio::net::TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let len = conn.read_u16().await? as usize;
                let mut msg = vec![0u8; len];
                conn.read_exact(&mut msg).await?;
                let Some(reply) = answer(&state, &msg) else {
                    return Ok::<(), std::io::Error>(());
                };
                let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                conn.write_all(&out).await?;
            }
        });
    }
}

/// The encoded reply to one query message (`None` when it cannot be parsed at all).
fn answer(state: &Mutex<State>, request: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(request).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.queries = req.queries.clone();
    if req.edns.is_some() {
        resp.edns = Some(Edns::new());
    }
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    match req.queries.as_slice() {
        [q] => {
            let name = key(&q.name.to_ascii());
            *st.queries.entry(name.clone()).or_default() += 1;
            if st.failing {
                resp.metadata.response_code = ResponseCode::ServFail;
            } else if let Some(entry) = st.names.get(&name) {
                let record = |ttl, data| Record::from_rdata(q.name.clone(), ttl, data);
                match (q.query_type, &entry.a, &entry.srv) {
                    (RecordType::A, Some((ips, ttl)), _) => resp
                        .answers
                        .extend(ips.iter().map(|ip| record(*ttl, RData::A(A(*ip))))),
                    (RecordType::SRV, _, Some((srv, ttl))) => resp
                        .answers
                        .extend(srv.iter().map(|s| record(*ttl, RData::SRV(s.clone())))),
                    _ => {}
                }
            } else {
                resp.metadata.response_code = ResponseCode::NXDomain;
            }
        }
        _ => resp.metadata.response_code = ResponseCode::FormErr,
    }
    drop(st);
    resp.to_vec().ok()
}
