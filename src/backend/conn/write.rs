//! The write side of a backend connection: batches queue as shared byte chunks (small ones
//! copied together, big ones kept as they are), and go out in vectored writes of up to
//! `MAX_IOV` chunks, flushed once per turn. Counting what was written lets the read side tell
//! a reply's batch from one not yet sent when the connection fails.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use tokio::io::AsyncWrite;

use super::{ConnError, Driver, MAX_IOV};

impl Driver<'_> {
    pub(super) fn flush_small(&mut self) {
        if !self.small.is_empty() {
            self.wq.push_back(self.small.split().freeze());
        }
    }

    pub(super) fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnError> {
        self.flush_small();
        let mut progress = false;
        while !self.wq.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = self.wq.len().min(MAX_IOV);
            for (slot, b) in iov.iter_mut().zip(self.wq.iter()) {
                *slot = IoSlice::new(b);
            }
            match Pin::new(&mut self.io).poll_write_vectored(cx, &iov[..n]) {
                Poll::Ready(Ok(0)) => return Err(ConnError::Closed),
                Poll::Ready(Ok(written)) => {
                    progress = true;
                    self.advance_written(written);
                    self.needs_flush = true;
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Ok(progress),
            }
        }
        if self.needs_flush {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    fn advance_written(&mut self, mut n: usize) {
        self.written += n as u64;
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.wq.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.wq.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}
