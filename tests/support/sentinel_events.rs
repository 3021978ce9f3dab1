//! Events Sentinel publishes (`+switch-master`, `+sdown`, ...) as read from a subscribed
//! client ([`super::sentinel::Group::subscribe_on`]): parsed, awaited with a deadline.

use std::time::{Duration, Instant};

use super::client::{Client, Frame};

/// One event published by a Sentinel (`+switch-master`, `+sdown`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The channel, which is the event name.
    pub channel: String,
    /// The payload as published.
    pub payload: String,
}

impl Event {
    /// For `+switch-master` (`<name> <old-ip> <old-port> <new-ip> <new-port>`): the master
    /// name, old and new address as `ip:port`.
    pub fn switch_master(&self) -> Option<(String, String, String)> {
        if self.channel != "+switch-master" {
            return None;
        }
        let p: Vec<&str> = self.payload.split(' ').collect();
        match p.as_slice() {
            [name, oip, oport, nip, nport] => Some((
                name.to_string(),
                format!("{oip}:{oport}"),
                format!("{nip}:{nport}"),
            )),
            _ => None,
        }
    }
}

/// Reads the next event from a client made by [`Group::subscribe`] or
/// [`Group::subscribe_on`]; `None` when none arrives within `within` (or the link fails).
pub fn next_event(c: &mut Client, within: Duration) -> Option<Event> {
    let until = Instant::now() + within;
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        c.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let frame = c.try_read().ok()?;
        let texts: Vec<String> = match &frame {
            Frame::Array(items) | Frame::Push(items) => items
                .iter()
                .map(|f| match f {
                    Frame::Bulk(_) | Frame::Simple(_) => f.text(),
                    _ => String::new(),
                })
                .collect(),
            _ => continue,
        };
        match texts.first().map(String::as_str) {
            Some("message") if texts.len() == 3 => {
                return Some(Event {
                    channel: texts[1].clone(),
                    payload: texts[2].clone(),
                })
            }
            Some("pmessage") if texts.len() == 4 => {
                return Some(Event {
                    channel: texts[2].clone(),
                    payload: texts[3].clone(),
                })
            }
            _ => continue,
        }
    }
}

/// Reads events until one on `channel` arrives within `within` (others are skipped).
pub fn wait_event(c: &mut Client, channel: &str, within: Duration) -> Option<Event> {
    let until = Instant::now() + within;
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        let ev = next_event(c, left)?;
        if ev.channel == channel {
            return Some(ev);
        }
    }
}
