//! One pipelined backend connection: the task that owns its socket.
//!
//! Commands arrive as [`Outgoing`] batches on a bounded channel; everything ready is written in
//! one go (so the commands of many clients share one `write`), and replies are matched to the
//! batches in the order they were written. Frames nobody asked for, pub/sub messages, tracking
//! invalidations and MONITOR lines, are recognised by the [`ReplyMode`] in force and delivered
//! in arrival order. A large reply is forwarded piece by piece as it arrives instead of being
//! buffered whole.
//!
//! Failure: when the socket fails, each unanswered batch is failed as not sent (its bytes never
//! left the proxy) or lost (written, outcome unknown), and the session that owns it decides.
//! A reply deadline bounds how long written commands may wait, so a silently dead peer cannot
//! hold clients forever.

mod durable;
mod read;
mod sender;
mod write;

pub use sender::Sender;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::error::ConnError;
use super::inbox::{deliver_oob_idle, FaultKind, Inbox, ReplyTo};
use crate::resp::{ReplyInfo, ReplyScanner};

/// A byte stream to a Redis node (TCP or TLS).
pub trait BackendIo: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> BackendIo for T {}

/// Boxed stream, so that plain and TLS connections share one driver.
pub type BoxIo = Box<dyn BackendIo>;

/// Replies at least this large are forwarded before they are complete.
const STREAM_THRESHOLD: usize = 64 * 1024;
/// Stop taking new batches while this many bytes wait to be written.
const WRITE_HIGH_WATER: usize = 1024 * 1024;
/// Payloads at least this large are queued as they are instead of being copied.
const BIG_PAYLOAD: usize = 16 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Rounds of work per poll before yielding to other tasks.
const POLL_BUDGET: usize = 32;
/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 64;

/// How frames nobody asked for are recognised while a batch (or the idle connection) is in
/// this mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// Ordinary request/reply traffic (RESP3 pushes are still recognised).
    Counted,
    /// The client is subscribed: RESP2 `message`/`pmessage`/`smessage` arrays are messages.
    PubSub,
    /// MONITOR: once the MONITOR reply has arrived, every frame is a monitor line.
    Monitor,
}

/// A batch of commands for one connection.
#[derive(Debug)]
pub struct Outgoing {
    /// The bytes to write.
    pub payload: Bytes,
    /// Reply frames owed.
    pub expect: u32,
    /// Recognition of unsolicited frames while these replies are awaited.
    pub mode: ReplyMode,
    /// Whether the reply deadline applies (not for blocking commands).
    pub timed: bool,
    /// Where the replies go.
    pub to: ReplyTo,
}

#[derive(Debug)]
struct Pending {
    /// Where the replies go; `None` for the proxy's own `WAIT` (see [`durable`]).
    to: Option<ReplyTo>,
    expect: u32,
    got: u32,
    mode: ReplyMode,
    timed: bool,
    /// Bytes enqueued on this connection before this batch.
    start_at: u64,
    /// Bytes enqueued once this batch is: it is fully written when `written >= end_at`.
    end_at: u64,
}

/// What a round of driver work asks of its caller.
enum Step {
    /// Yield to the scheduler once, then continue (write coalescing).
    Coalesce,
    /// The connection is no longer wanted.
    Ended,
}

/// Drives one socket until it fails or its channel closes.
pub(crate) struct Driver<'a> {
    io: BoxIo,
    rx: &'a mut mpsc::Receiver<Outgoing>,
    /// Whether the channel can still deliver batches.
    accepting: bool,
    /// Whether the channel closing ends the connection at once (dedicated connections: the
    /// owner is gone, nothing in flight is wanted) or after in-flight replies (shared ones).
    abandon_on_close: bool,
    small: BytesMut,
    wq: VecDeque<Bytes>,
    queued: usize,
    enqueued: u64,
    written: u64,
    needs_flush: bool,
    pending: VecDeque<Pending>,
    rbuf: BytesMut,
    scanner: ReplyScanner,
    /// Mode for frames arriving while nothing is pending.
    idle_mode: ReplyMode,
    /// Where unsolicited frames go while nothing is pending: the inbox of the latest batch,
    /// on a dedicated connection (one client); nowhere on a shared one.
    idle_owner: Option<Arc<Inbox>>,
    /// Retirement signal (shared connections): stop writing, finish what was written.
    retire: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Supersession signal: the node is no longer the master and its replies are no longer
    /// awaited; everything pending fails at once.
    abort: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    retiring: bool,
    /// The write lease of the master this connection writes to (`None`: none needed). Checked
    /// right before bytes reach the socket; a lapsed lease retires the connection.
    lease: Option<Arc<super::Lease>>,
    /// The node's liveness as its probes see it: past the reply deadline, replies are still
    /// awaited while the probes get answers; once the node is declared down, not at all.
    alive: Option<Arc<super::NodeLiveness>>,
    down: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Set when the node was superseded (dedicated connections): see [`read::is_refusal`].
    superseded: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Whether the driver already yielded once to gather more batches before this write.
    coalesced: bool,
    /// `written` when the write queue last became empty.
    flushed_at: u64,
    frames: Vec<std::ops::Range<usize>>,
    reply_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    timer_armed: bool,
    /// Durable writes queued since the last `WAIT` (see [`durable`]).
    owed: Option<crate::config::Durability>,
    /// Batches with durable writes whose replies arrived, waiting for `WAIT`'s answer.
    awaiting: VecDeque<ReplyTo>,
    /// The proxy's own `WAIT`s written or queued and not yet answered.
    waits_out: usize,
}

impl std::fmt::Debug for Driver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("pending", &self.pending.len())
            .field("queued", &self.queued)
            .finish()
    }
}

impl<'a> Driver<'a> {
    /// A driver for `io`, fed by `rx`. `dedicated` connections serve one client: they end as
    /// soon as the client lets go of them, and deliver unsolicited frames to it.
    pub(crate) fn new(
        io: BoxIo,
        rx: &'a mut mpsc::Receiver<Outgoing>,
        reply_timeout: Duration,
        dedicated: bool,
    ) -> Self {
        Self {
            io,
            rx,
            accepting: true,
            abandon_on_close: dedicated,
            small: BytesMut::new(),
            wq: VecDeque::new(),
            queued: 0,
            enqueued: 0,
            written: 0,
            needs_flush: false,
            pending: VecDeque::new(),
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            scanner: ReplyScanner::new(),
            idle_mode: ReplyMode::Counted,
            idle_owner: None,
            retire: None,
            abort: None,
            retiring: false,
            lease: None,
            alive: None,
            down: None,
            superseded: None,
            coalesced: false,
            flushed_at: 0,
            frames: Vec::new(),
            reply_timeout,
            timer: Box::pin(tokio::time::sleep(reply_timeout)),
            timer_armed: false,
            owed: None,
            awaiting: VecDeque::new(),
            waits_out: 0,
        }
    }

    /// Ends the connection when `token` is cancelled: batches not yet written are failed as
    /// not sent, written ones get their replies (or the reply deadline) first.
    pub(crate) fn retire_on(mut self, token: CancellationToken) -> Self {
        self.retire = Some(Box::pin(token.cancelled_owned()));
        self
    }

    /// Writes only while `lease` is valid: once it lapses, nothing more is written and the
    /// connection retires (batches not yet written fail as not sent).
    pub(crate) fn lease_on(mut self, lease: Option<Arc<super::Lease>>) -> Self {
        self.lease = lease;
        self
    }

    /// Takes `-UNBLOCKED ... via CLIENT UNBLOCK` for the proxy's own release once `flag` says
    /// the node was superseded (a dedicated connection).
    pub(crate) fn superseded_on(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.superseded = Some(flag);
        self
    }

    /// Follows the node's liveness (see [`super::liveness`]).
    pub(crate) fn liveness_on(mut self, alive: Arc<super::NodeLiveness>) -> Self {
        self.down = Some(Box::pin(alive.down_token().cancelled_owned()));
        self.alive = Some(alive);
        self
    }

    /// Ends the connection at once when `token` is cancelled: written batches fail as lost
    /// (they may have been applied), the others as not sent.
    pub(crate) fn abort_on(mut self, token: CancellationToken) -> Self {
        self.abort = Some(Box::pin(token.cancelled_owned()));
        self
    }

    /// Runs until the connection fails or is no longer wanted. Unanswered batches are failed
    /// before returning.
    pub(crate) async fn run(mut self) -> Result<(), ConnError> {
        let result = loop {
            match poll_fn(|cx| self.poll_work(cx)).await {
                Ok(Step::Coalesce) => tokio::task::yield_now().await,
                Ok(Step::Ended) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.fail_pending();
        result
    }

    /// Fails every batch still pending: written ones as lost, the others as not sent.
    fn fail_pending(&mut self) {
        self.fail_awaiting();
        for p in self.pending.drain(..) {
            // Any byte of the batch on the wire makes its outcome unknown.
            let kind = if self.written > p.start_at {
                FaultKind::Lost
            } else {
                FaultKind::NotSent
            };
            if let Some(to) = p.to {
                to.fail(kind);
            }
        }
    }

    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<Result<Step, ConnError>> {
        if let Some(abort) = self.abort.as_mut() {
            if abort.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(ConnError::Superseded));
            }
        }
        if let Some(down) = self.down.as_mut() {
            if down.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(ConnError::NodeDown));
            }
        }
        self.poll_retire(cx);
        for _ in 0..POLL_BUDGET {
            let mut progress = false;
            progress |= self.intake(cx);
            if !self.accepting && (self.abandon_on_close || self.idle()) {
                return Poll::Ready(Ok(Step::Ended));
            }
            // A shared connection that just received a batch lets every other ready task run
            // once before writing, so that batches of many clients leave in one write: Redis
            // then reads (and the kernel carries) one packet for all of them.
            if !self.abandon_on_close
                && !self.coalesced
                && self.queued > 0
                && self.written == self.flushed_at
            {
                self.coalesced = true;
                return Poll::Ready(Ok(Step::Coalesce));
            }
            if self.queued > 0 && self.lease.as_ref().is_some_and(|l| !l.valid()) {
                tracing::debug!("write lease lapsed; backend connection stops writing");
                self.stop_writing();
                continue;
            }
            self.settle_owed();
            progress |= self.write(cx)?;
            if self.queued == 0 {
                self.coalesced = false;
                self.flushed_at = self.written;
            }
            progress |= self.read(cx)?;
            if !progress {
                return self.poll_deadline(cx);
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_retire(&mut self, cx: &mut Context<'_>) {
        let fired = match self.retire.as_mut() {
            Some(f) => f.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if fired {
            self.retire = None;
            self.stop_writing();
        }
    }

    /// Retires the connection: nothing more is taken or written; what was written gets its
    /// replies.
    fn stop_writing(&mut self) {
        if self.retiring {
            return;
        }
        self.retiring = true;
        self.accepting = false;
        // Nothing more reaches the socket: what is not fully written is failed as not sent
        // (or lost, if part of it went out).
        self.owed = None;
        self.flush_small();
        self.wq.clear();
        self.queued = 0;
        let written = self.written;
        let (done, unsent): (VecDeque<Pending>, VecDeque<Pending>) =
            self.pending.drain(..).partition(|p| written >= p.end_at);
        self.pending = done;
        for p in unsent {
            let kind = if written > p.start_at {
                FaultKind::Lost
            } else {
                FaultKind::NotSent
            };
            // An unsent `WAIT`: the batches before it learn nothing more, and are answered as
            // not confirmed when the connection ends.
            if let Some(to) = p.to {
                to.fail(kind);
            }
        }
    }

    fn idle(&self) -> bool {
        self.pending.is_empty() && self.queued == 0
    }

    fn intake(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while self.accepting && self.queued < WRITE_HIGH_WATER {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(out)) => {
                    progress = true;
                    if out.to.abandoned() {
                        // The client left before this reached the socket: never send it.
                        out.to.fail(FaultKind::NotSent);
                        continue;
                    }
                    if self.abandon_on_close {
                        self.idle_owner = Some(Arc::clone(out.to.inbox()));
                    }
                    self.enqueue(out);
                }
                Poll::Ready(None) => self.accepting = false,
                Poll::Pending => break,
            }
        }
        progress
    }

    fn enqueue(&mut self, out: Outgoing) {
        let len = out.payload.len();
        if len >= BIG_PAYLOAD {
            self.flush_small();
            self.wq.push_back(out.payload);
        } else {
            self.small.extend_from_slice(&out.payload);
        }
        self.queued += len;
        self.enqueued += len as u64;
        if out.expect == 0 {
            out.to.finish();
            return;
        }
        self.owe_wait(out.to.durability());
        if self.pending.is_empty() && out.timed {
            self.arm_timer();
        }
        self.pending.push_back(Pending {
            to: Some(out.to),
            expect: out.expect,
            got: 0,
            mode: out.mode,
            timed: out.timed,
            start_at: self.enqueued - len as u64,
            end_at: self.enqueued,
        });
    }

    /// Whether the node's probes got an answer within the reply deadline.
    fn probes_answer(&self) -> bool {
        self.alive
            .as_ref()
            .is_some_and(|a| a.answered_within(self.reply_timeout))
    }

    fn arm_timer(&mut self) {
        self.timer
            .as_mut()
            .reset(Instant::now() + self.reply_timeout);
        self.timer_armed = true;
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Result<Step, ConnError>> {
        let waiting = self
            .pending
            .front()
            .is_some_and(|p| p.timed && self.written >= p.end_at);
        if !self.timer_armed || !waiting {
            return Poll::Pending;
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) if self.probes_answer() => {
                // Slow, not dead: wait another round, as long as the probes keep answering
                // (`-BUSY` from a node running a long script included).
                self.arm_timer();
                // Registers the waker for the new deadline.
                let _ = self.timer.as_mut().poll(cx);
                Poll::Pending
            }
            Poll::Ready(()) => Poll::Ready(Err(ConnError::ReplyTimeout(self.reply_timeout))),
            Poll::Pending => Poll::Pending,
        }
    }
}
