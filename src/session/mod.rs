//! One client connection, from its first byte to its close.
//!
//! The session reads frames, classifies each command, answers the ones the proxy owns
//! ([`local`]), runs the stateful ones with Redis's own semantics ([`commands`]), and sends the
//! rest, batched, to a backend connection ([`route`]). Replies come back through the session's
//! [`Inbox`] and are written in request order. When a backend connection fails under it, the
//! session decides per command what can be sent again and what gets an error ([`recover`]).
//!
//! The session owns every piece of per-client state; nothing else writes it. Bounds: input is
//! read only while few enough commands are in flight and the unprocessed input is small; a
//! single frame larger than the query buffer limit, or replies beyond the output buffer limit,
//! close the client, and no other client notices.

mod auth;
mod batch;
mod commands;
mod compose;
mod context;
mod deadline;
mod hold;
mod input;
mod intake;
mod kill;
mod kill_clients;
mod local;
mod pin;
mod recover;
pub mod registry;
mod route;
pub mod scripts;
mod standalone;
pub mod state;
mod subscribe;
mod tracking;
mod tx;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::backend::{Inbox, NodeId};
use crate::resp::{Request, RequestParser};
use crate::shutdown::Drain;
use batch::Batch;
use intake::Step;
use route::Conn;
use state::{ClientState, Subscriptions, TxBuffer};

pub use context::{Context, Dynamic, Limits};

/// Stop reading while this much unprocessed input is buffered (and a frame is complete).
const READ_PAUSE: usize = 4 * 1024 * 1024;
/// Stop taking commands while this many bytes of them are in flight: a client pipelining a
/// large amount gets its share of a shared connection, not all of it.
const MAX_IN_FLIGHT_BYTES: usize = 4 * 1024 * 1024;

/// Sleeps until `at` (callers only poll this when it is `Some`).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes some of `buf`, or flushes when it is empty; returns whether the transport is
/// flushed (TLS keeps written bytes until flushed).
async fn write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &mut BytesMut,
) -> std::io::Result<bool> {
    if buf.is_empty() {
        writer.flush().await?;
        return Ok(true);
    }
    if writer.write_buf(buf).await? == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    Ok(false)
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading and handling commands.
    Serving,
    /// The proxy drains: every command already received is handled, nothing more is read,
    /// then the session closes.
    Draining,
    /// Reading nothing more; the session closes once everything is answered (QUIT, a
    /// protocol error, the end of a drain, a kill).
    Closing,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client closed, or QUIT / a protocol error finished.
    Closed,
    /// The client did not read its replies.
    OutputLimit,
    /// The transport failed.
    Io,
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    ctx: Arc<Context>,
    info: Arc<registry::Entry>,
    inbox: Arc<Inbox>,
    state: ClientState,
    subs: Subscriptions,
    /// A MULTI block being buffered (no WATCH).
    tx: Option<TxBuffer>,
    /// The backend connection in use.
    conn: Conn,
    /// Commands accumulated for one backend write.
    batch: Batch,
    parser: RequestParser,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// A command waiting until earlier ones are answered (see `route`).
    stalled: Option<Request>,
    /// Serving, draining or closing.
    phase: Phase,
    /// The master this client last wrote to (WAIT counts acknowledgements there).
    last_write: Option<Arc<NodeId>>,
    /// The transport needs a flush (TLS buffers).
    needs_flush: bool,
    /// The hold episode and the failed dispatch being resolved (see [`hold`]).
    recovery: hold::Recovery,
    /// Topology publications.
    topology: tokio::sync::watch::Receiver<()>,
    /// The WATCH connection was lost with its master: the next EXEC answers null.
    watch_broken: bool,
    /// CLIENT TRACKING mode, while on.
    tracking: Option<tracking::Tracking>,
    /// When the command being received started arriving (see [`deadline`]).
    frame_since: Option<tokio::time::Instant>,
    /// The visible state last shown in the registry (see [`view`]).
    shown: view::Shape,
    /// How much room the next read gets (see [`input`]).
    read_hint: usize,
}

impl Session {
    /// A session for a client that connected from `addr` to `laddr`.
    pub fn new(ctx: Arc<Context>, addr: SocketAddr, laddr: SocketAddr, fd: i64) -> Self {
        let info = ctx.registry.join(addr, laddr, fd);
        let initial = ctx.dynamic.load().users.initial();
        let inbox = Inbox::new(ctx.limits.output_buffer);
        let parser = RequestParser::new(ctx.limits.frames);
        crate::metrics::hot().clients.increment(1.0);
        let topology = ctx.topology.subscribe();
        Self {
            ctx,
            info,
            inbox,
            state: ClientState::new(initial),
            subs: Subscriptions::default(),
            tx: None,
            conn: Conn::None,
            batch: Batch::default(),
            parser,
            rbuf: BytesMut::new(),
            read_hint: input::READ_MIN,
            wbuf: BytesMut::new(),
            stalled: None,
            phase: Phase::Serving,
            last_write: None,
            needs_flush: false,
            recovery: hold::Recovery::default(),
            topology,
            watch_broken: false,
            tracking: None,
            frame_since: None,
            shown: view::Shape::default(),
        }
    }

    /// How long this session's commands may be held now.
    fn hold_timeout(&self, dynamic: &Dynamic) -> Duration {
        match dynamic.hold_timeout {
            Some(t) => t,
            // Only looked up while holding: the snapshot load is off the common path.
            None if self.recovery.hold.active() => self
                .ctx
                .topology
                .load()
                .authority
                .hold
                .unwrap_or(crate::config::DEFAULT_HOLD_TIMEOUT),
            None => crate::config::DEFAULT_HOLD_TIMEOUT,
        }
    }

    /// Reads nothing more, and closes once everything is answered.
    fn close(&mut self) {
        self.phase = Phase::Closing;
    }

    /// Whether the session closes once everything is answered.
    fn closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// The proxy's id for this client.
    pub fn id(&self) -> u64 {
        self.info.id
    }

    /// Serves the client until it leaves, misbehaves, or the proxy drains.
    pub async fn run<R, W>(mut self, mut reader: R, mut writer: W, mut drain: Drain)
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let end = self.serve(&mut reader, &mut writer, &mut drain).await;
        match end {
            End::OutputLimit => {
                crate::metrics::hot().errors[crate::metrics::error_index("limit")].increment(1);
                tracing::info!(client.id = self.id(), client.addr = %self.info.addr, "closing client: output buffer limit reached");
            }
            End::Closed | End::Io => {}
        }
        let _ = writer.shutdown().await;
        self.end_hold();
        self.inbox.close();
        self.ctx.registry.leave(self.id());
        crate::metrics::hot().clients.decrement(1.0);
    }

    async fn serve<R, W>(&mut self, reader: &mut R, writer: &mut W, drain: &mut Drain) -> End
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        loop {
            if self.has_input() {
                if let Step::Slow(next) = self.process_now() {
                    // Boxed: an idle client's task is as large as the largest future it may
                    // await, and this one is large; see `input`.
                    Box::pin(self.process(next)).await;
                }
            }
            if let Err(end) = self.collect().await {
                return end;
            }
            if self.finished() {
                return self.flush_all(writer).await;
            }
            // Before replies are written: whoever saw them sees this turn in `CLIENT LIST`.
            self.show();
            let want_read = self.want_read();
            let want_write = !self.wbuf.is_empty() || self.needs_flush;
            let watch_topology = self.waits_for_topology();
            let dynamic = self.ctx.dynamic.load();
            let hold_timeout = self.hold_timeout(&dynamic);
            let hold_deadline = self.recovery.hold.deadline(hold_timeout);
            self.track_frame();
            let input_deadline = self.input_deadline(&dynamic);
            drop(dynamic);
            let room = if want_read { self.make_read_room() } else { 0 };
            tokio::select! {
                _ = drain.signaled(), if self.phase == Phase::Serving => self.phase = Phase::Draining,
                r = reader.read_buf(&mut self.rbuf), if want_read => match r {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(n) => {
                        self.after_read(n, room);
                        self.info.touch();
                    }
                },
                r = write_or_flush(writer, &mut self.wbuf), if want_write => match r {
                    Ok(flushed) => self.needs_flush = !flushed,
                    Err(_) => return End::Io,
                },
                _ = self.inbox.changed() => {}
                _ = self.info.killed() => return End::Closed,
                r = self.topology.changed(), if watch_topology => {
                    if r.is_err() {
                        return End::Closed;
                    }
                    Box::pin(self.on_topology()).await;
                }
                _ = sleep_until(hold_deadline), if hold_deadline.is_some() => {
                    self.recovery.hold.on_deadline(hold_timeout, tokio::time::Instant::now());
                }
                _ = sleep_until(input_deadline.map(|d| d.0)), if input_deadline.is_some() => {
                    if let Some((_, which)) = input_deadline {
                        Box::pin(self.on_input_deadline(which)).await;
                    }
                }
            }
        }
    }

    /// Whether to read more input now.
    fn want_read(&self) -> bool {
        if self.phase != Phase::Serving {
            return false;
        }
        let buffered = self.rbuf.len();
        // Keep reading while the frame at the front is incomplete (up to the query buffer
        // limit, checked in `process`); pause while complete input waits to be processed.
        let waiting = self.stalled.is_some() || self.saturated();
        if waiting {
            return buffered < READ_PAUSE;
        }
        true
    }

    /// Queues replies for the client (taking the buffer over when nothing is queued yet).
    fn append_out(&mut self, out: BytesMut) {
        if self.wbuf.is_empty() {
            self.wbuf = out;
        } else {
            self.wbuf.extend_from_slice(&out);
        }
    }

    /// Whether enough of this client's commands are in flight for now.
    fn saturated(&self) -> bool {
        self.inbox.in_flight() >= self.ctx.limits.max_in_flight
            || self.inbox.in_flight_bytes() + self.batch.bytes() >= MAX_IN_FLIGHT_BYTES
    }

    /// Whether the session is done: closing, and everything answered and written.
    fn finished(&self) -> bool {
        self.closing()
            && self.stalled.is_none()
            && self.batch.is_empty()
            && self.inbox.in_flight() == 0
    }

    async fn flush_all<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> End {
        let taken = self.inbox.take();
        self.wbuf.extend_from_slice(&taken.out);
        if writer.write_all(&self.wbuf).await.is_err() || writer.flush().await.is_err() {
            return End::Io;
        }
        End::Closed
    }

    /// Moves replies to the write buffer, resolves a failed dispatch, releases a dedicated
    /// connection no longer needed.
    async fn collect(&mut self) -> Result<(), End> {
        loop {
            let taken = self.inbox.take();
            if taken.overflow {
                return Err(End::OutputLimit);
            }
            self.append_out(taken.out);
            let Some(fault) = taken.fault else {
                break;
            };
            // Boxed, like every rare path: see `dispatch`.
            if !Box::pin(self.resolve(fault)).await {
                break;
            }
        }
        self.release_idle_conn().await;
        Ok(())
    }
}
