use crate::resp::command::Kind;
use bytes::Bytes;
use smallvec::SmallVec;

use super::*;

fn dispatch(expect: u32) -> Dispatch {
    Dispatch {
        conn: 1,
        expect,
        skip: 0,
        silent: false,
        payload: Bytes::from_static(b"payload"),
        cmds: SmallVec::new(),
        attempt: 0,
        started: None,
        durability: None,
    }
}

fn frames(buf: &[u8], lens: &[usize]) -> Vec<Range<usize>> {
    let mut at = 0;
    let out = lens
        .iter()
        .map(|l| {
            let r = at..at + l;
            at += l;
            r
        })
        .collect();
    assert_eq!(at, buf.len());
    out
}

fn out(inbox: &Inbox) -> Vec<u8> {
    inbox.take().out.to_vec()
}

#[test]
fn replies_leave_in_request_order() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(dispatch(2));
    inbox.push_local(b"L1");
    let b = inbox.push_dispatch(dispatch(1));
    inbox.push_local(b"L2");
    // b answers first: held back.
    b.deliver(b"B", &frames(b"B", &[1]), None);
    assert_eq!(out(&inbox), b"");
    a.deliver(b"A1", &frames(b"A1", &[2]), None);
    assert_eq!(out(&inbox), b"A1");
    a.deliver(b"A2", &frames(b"A2", &[2]), None);
    a.finish();
    b.finish();
    assert_eq!(out(&inbox), b"A2L1BL2");
    assert_eq!(inbox.in_flight(), 0);
}

#[test]
fn skipped_and_silent_frames_are_dropped() {
    let inbox = Inbox::new(1 << 20);
    let mut d = dispatch(3);
    d.skip = 2;
    let a = inbox.push_dispatch(d);
    let mut d = dispatch(1);
    d.silent = true;
    let b = inbox.push_dispatch(d);
    a.deliver(b"xyz", &frames(b"xyz", &[1, 1, 1]), None);
    b.deliver(b"q", &frames(b"q", &[1]), None);
    inbox.push_local(b"!");
    assert_eq!(out(&inbox), b"z!");
    a.finish();
    b.finish();
}

#[test]
fn dropped_reply_to_faults_the_entry_until_resolved() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(dispatch(2));
    let b = inbox.push_dispatch(dispatch(1));
    inbox.push_local(b"L");
    a.deliver(b"1", &frames(b"1", &[1]), None);
    drop(a);
    // b's reply arrives, but must wait behind the faulted entry.
    b.deliver(b"B", &frames(b"B", &[1]), None);
    b.finish();
    let taken = inbox.take();
    assert_eq!(&taken.out[..], b"1");
    let fault = taken.fault.expect("fault");
    assert_eq!(fault.kind, FaultKind::NotSent);
    assert_eq!(fault.received, 1);
    let tos = inbox.resolve(
        fault.id,
        vec![
            Resolution::Local(Bytes::from_static(b"E")),
            Resolution::Dispatch(dispatch(1)),
        ],
    );
    assert_eq!(tos.len(), 1);
    assert_eq!(out(&inbox), b"E");
    tos.into_iter().for_each(|t| {
        t.deliver(b"R", &frames(b"R", &[1]), None);
        t.finish();
    });
    assert_eq!(out(&inbox), b"RBL");
}

#[test]
fn partial_frames_stream_and_oob_keeps_arrival_order() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(dispatch(1));
    a.deliver(b"abc", &[], Some(0..3));
    a.deliver_oob(b"<push>");
    a.deliver(b"def", &frames(b"def", &[3]), None);
    a.finish();
    deliver_oob_idle(&inbox, b"<idle>");
    assert_eq!(out(&inbox), b"abc<push>def<idle>");
}

#[test]
fn overflow_is_flagged_and_stops_storage() {
    let inbox = Inbox::new(4);
    let a = inbox.push_dispatch(dispatch(2));
    a.deliver(b"12345", &frames(b"12345", &[5]), None);
    let taken = inbox.take();
    assert!(taken.overflow);
    a.deliver(b"6", &frames(b"6", &[1]), None);
    assert_eq!(out(&inbox), b"");
    a.finish();
}

#[test]
fn busy_elsewhere_guards_execution_order() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(dispatch(1));
    assert!(!inbox.busy_elsewhere(1));
    assert!(inbox.busy_elsewhere(2));
    a.deliver(b"x", &frames(b"x", &[1]), None);
    a.finish();
    assert!(!inbox.busy_elsewhere(2));
    let b = inbox.push_dispatch(dispatch(1));
    drop(b);
    assert!(
        inbox.busy_elsewhere(1),
        "a fault blocks every connection until resolved"
    );
    assert!(inbox.has_fault());
}

#[test]
fn closed_inbox_drops_everything() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(dispatch(1));
    inbox.close();
    assert!(a.abandoned());
    a.deliver(b"x", &frames(b"x", &[1]), None);
    drop(a);
    assert!(inbox.take().out.is_empty());
}

/// A durable dispatch of `kinds` commands, one frame each (`true`: a durable write).
fn durable(writes: &[bool]) -> Dispatch {
    let cmds = writes
        .iter()
        .map(|w| Sent {
            range: 0..0,
            kind: if *w { Kind::Write } else { Kind::Read },
            frames: 1,
            replies: 1,
            confirm: *w,
        })
        .collect();
    Dispatch {
        expect: writes.len() as u32,
        cmds,
        durability: Some(crate::config::Durability {
            replicas: 1,
            timeout: std::time::Duration::from_millis(200),
        }),
        ..dispatch(0)
    }
}

#[test]
fn durable_replies_wait_for_the_replicas() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(durable(&[true, false]));
    let b = inbox.push_dispatch(dispatch(1));
    assert!(a.durability().is_some() && b.durability().is_none());
    let buf = b"+OK\r\n$1\r\nv\r\n";
    a.deliver(buf, &frames(buf, &[5, 7]), None);
    b.deliver(b":1\r\n", &frames(b":1\r\n", &[4]), None);
    b.finish();
    assert!(out(&inbox).is_empty(), "nothing leaves before WAIT answers");
    a.confirm(Some(1));
    assert_eq!(out(&inbox), b"+OK\r\n$1\r\nv\r\n:1\r\n");
}

#[test]
fn unconfirmed_writes_get_the_error_and_the_rest_is_unchanged() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(durable(&[true, false, true]));
    let buf = b"+OK\r\n$1\r\nv\r\n-ERR wrong\r\n";
    a.deliver(buf, &frames(buf, &[5, 7, 12]), None);
    a.confirm(Some(0));
    let text = String::from_utf8(out(&inbox)).unwrap();
    assert!(text.starts_with("-UNCONFIRMED the write was applied on the master but not confirmed by 1 replica(s) within 200 ms (0 acknowledged)"), "{text}");
    assert!(text.ends_with("$1\r\nv\r\n-ERR wrong\r\n"), "{text}");
}

#[test]
fn a_lost_connection_leaves_durable_writes_unconfirmed() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(durable(&[true]));
    a.deliver(b"+OK\r\n", &frames(b"+OK\r\n", &[5]), None);
    drop(a);
    let text = String::from_utf8(out(&inbox)).unwrap();
    assert!(text.contains("connection to the master was lost"), "{text}");
    assert_eq!(inbox.in_flight(), 0);
}

#[test]
fn a_refused_durable_entry_is_settled_only_after_the_replicas_answer() {
    let inbox = Inbox::new(1 << 20);
    let a = inbox.push_dispatch(durable(&[true, true]));
    a.deliver(b"+OK\r\n", &frames(b"+OK\r\n", &[5]), None);
    a.refuse(b"-READONLY no\r\n");
    let taken = inbox.take();
    assert!(taken.out.is_empty() && taken.fault.is_none());
    a.confirm(Some(1));
    let taken = inbox.take();
    assert_eq!(&taken.out[..], b"+OK\r\n");
    assert_eq!(taken.fault.map(|f| f.kind), Some(FaultKind::Refused));
}
