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
