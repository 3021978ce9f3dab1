//! The client's read buffer: how much room each read gets.
//!
//! A proxy holds thousands of clients that are idle most of the time, and each waits for input
//! with its read buffer reserved. So the room a read gets follows the client: it starts small
//! ([`READ_MIN`]), doubles each time a read fills it (a client sending large values or deep
//! pipelines), up to [`READ_MAX`], and shrinks back when reads become small again. An idle
//! client costs [`READ_MIN`] bytes of buffer, a busy one reads as much as is there in one
//! system call.

use bytes::BytesMut;

use super::Session;

/// The least room a read gets (and all an idle client holds).
pub(super) const READ_MIN: usize = 512;
/// The most room a read gets.
const READ_MAX: usize = 16 * 1024;

impl Session {
    /// Whether `process` has anything to do: input, a command waiting to be handled again,
    /// commands to send, or a drain to act on.
    pub(super) fn has_input(&self) -> bool {
        !self.rbuf.is_empty()
            || self.stalled.is_some()
            || !self.batch.is_empty()
            || self.phase == super::Phase::Draining
    }

    /// Makes room for the next read; returns how much there is.
    pub(super) fn make_read_room(&mut self) -> usize {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 2 * self.read_hint {
            // A burst is over: give the large buffer back rather than hold it while idle.
            self.rbuf = BytesMut::new();
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.read_hint / 2 {
            self.rbuf.reserve(self.read_hint);
        }
        self.rbuf.capacity() - self.rbuf.len()
    }

    /// Adapts the room of later reads to a read of `n` bytes into `room`.
    pub(super) fn after_read(&mut self, n: usize, room: usize) {
        self.read_hint = next_hint(self.read_hint, n, room);
    }
}

/// The room for the next read, after a read of `n` bytes into `room` with `hint` asked.
fn next_hint(hint: usize, n: usize, room: usize) -> usize {
    if n >= room {
        (hint * 2).min(READ_MAX)
    } else if n < hint / 4 {
        (hint / 2).max(READ_MIN)
    } else {
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_read_doubles_the_room_up_to_the_maximum() {
        assert_eq!(next_hint(READ_MIN, READ_MIN, READ_MIN), 2 * READ_MIN);
        assert_eq!(next_hint(READ_MAX, READ_MAX, READ_MAX), READ_MAX);
    }

    #[test]
    fn small_reads_shrink_the_room_down_to_the_minimum() {
        assert_eq!(next_hint(READ_MAX, 14, 9000), READ_MAX / 2);
        assert_eq!(next_hint(READ_MIN, 14, 400), READ_MIN);
    }

    #[test]
    fn reads_of_a_fair_size_keep_the_room() {
        assert_eq!(next_hint(4096, 2000, 4096), 4096);
    }
}
