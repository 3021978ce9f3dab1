//! Deciding, command by command, what a failed dispatch's commands need (no I/O).

use std::time::Duration;

use bytes::Bytes;

use crate::backend::{Fault, FaultKind, Sent};
use crate::resp::command::Kind;
use crate::resp::reply::ClientError;
use crate::resp::scan::parse_int;
use crate::resp::Request;
use crate::session::scripts::Scripts;

/// What one command of a failed dispatch needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Fully answered before the failure.
    Done,
    /// Its replies arrived after a refusal of an earlier command: release these (visible)
    /// frames as they are.
    Release(Vec<Bytes>),
    /// It did not run (or is read-only): send it again.
    Resend,
    /// A blocking command that did not complete: send it again with the time it has left
    /// (`None`: it blocks without timeout).
    Reissue(Option<Duration>),
    /// EVALSHA refused with NOSCRIPT, body known: load the script and run it again.
    ReloadScript(Bytes),
    /// Every visible reply is this error.
    Fail(ClientError),
    /// The visible replies not yet released (the count given) are this error.
    FailRemaining(ClientError, u32),
    /// A null reply (EXEC of a WATCH whose connection was lost; a blocking command whose
    /// timeout ran out meanwhile).
    Null,
}

impl Plan {
    /// Whether carrying out the plan needs a master.
    pub(crate) fn needs_master(&self) -> bool {
        matches!(
            self,
            Plan::Resend | Plan::Reissue(_) | Plan::ReloadScript(_)
        )
    }
}

/// Plans every command of `f`.
pub(crate) fn plan(f: &Fault, scripts: &Scripts) -> Vec<(Sent, Plan)> {
    let mut released = f.received;
    let mut tail = f.tail.iter();
    let mut out = Vec::with_capacity(f.cmds.len());
    for cmd in &f.cmds {
        let done = released.min(cmd.frames);
        released -= done;
        if done == cmd.frames {
            out.push((cmd.clone(), Plan::Done));
            continue;
        }
        let hidden = cmd.frames - cmd.replies;
        let mut frames = Vec::new();
        let mut refused: Option<&Bytes> = None;
        let mut missing = false;
        for k in done..cmd.frames {
            match tail.next() {
                Some(t) => {
                    if t.refused && refused.is_none() {
                        refused = Some(&t.bytes);
                    }
                    if k >= hidden {
                        frames.push(t.bytes.clone());
                    }
                }
                None => {
                    missing = true;
                    break;
                }
            }
        }
        let visible_done = done.saturating_sub(hidden);
        let p = match (f.kind, refused) {
            (FaultKind::NotSent, _) => again(cmd, f, &f.payload[cmd.range.clone()]),
            (FaultKind::Refused, Some(r)) if r.starts_with(b"-NOSCRIPT") => {
                script_body(&f.payload[cmd.range.clone()], scripts)
                    .map_or(Plan::Release(frames), Plan::ReloadScript)
            }
            (FaultKind::Refused, Some(_)) => again(cmd, f, &f.payload[cmd.range.clone()]),
            _ if cmd.kind == Kind::Read && done == 0 => Plan::Resend,
            _ if missing => {
                Plan::FailRemaining(ClientError::OutcomeUnknown, cmd.replies - visible_done)
            }
            _ => Plan::Release(frames),
        };
        out.push((cmd.clone(), p));
    }
    out
}

/// A command that did not run, sent again (with the semantics its kind calls for).
fn again(cmd: &Sent, f: &Fault, frame: &[u8]) -> Plan {
    match cmd.kind {
        // The watched keys were on the connection that failed: for the client, a watched key
        // changed.
        Kind::Exec => Plan::Null,
        // WAIT counts acknowledgements of writes made where it runs; on another connection
        // that count means nothing.
        Kind::Wait => Plan::Fail(ClientError::NotSent),
        Kind::Blocking => match Request::parse(frame).map(|r| remaining(&r, f)) {
            Some(Some(left)) => Plan::Reissue(left),
            Some(None) => Plan::Null,
            None => Plan::Fail(ClientError::NotSent),
        },
        _ => Plan::Resend,
    }
}

/// The time a blocking command has left: `Some(None)` for no timeout, `None` when it ran out.
fn remaining(req: &Request, f: &Fault) -> Option<Option<Duration>> {
    let Some((_, total)) = timeout_arg(req) else {
        return Some(None);
    };
    if total.is_zero() {
        return Some(None);
    }
    let elapsed = f.started.map_or(Duration::ZERO, |s| s.elapsed());
    total
        .checked_sub(elapsed)
        .filter(|d| !d.is_zero())
        .map(Some)
}

/// Where a blocking command keeps its timeout, and its value.
fn timeout_arg(req: &Request) -> Option<(usize, Duration)> {
    let args = req.args();
    let name = args.first()?.to_ascii_uppercase();
    let secs = |i: usize| -> Option<(usize, Duration)> {
        let v: f64 = std::str::from_utf8(args.get(i)?).ok()?.parse().ok()?;
        (v.is_finite() && v >= 0.0).then(|| (i, Duration::from_secs_f64(v)))
    };
    match name.as_slice() {
        b"BLMPOP" | b"BZMPOP" => secs(1),
        b"XREAD" | b"XREADGROUP" => {
            let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"BLOCK"))? + 1;
            let ms = parse_int(args.get(at)?)?;
            Some((at, Duration::from_millis(ms.max(0) as u64)))
        }
        _ => secs(args.len() - 1),
    }
}

/// The command with its timeout set to `left` (unchanged when `None`: no timeout).
pub(crate) fn with_timeout(req: &Request, left: Option<Duration>) -> Option<Request> {
    let Some(left) = left else {
        return Some(req.clone());
    };
    let (at, _) = timeout_arg(req)?;
    let args = req.args();
    let block = args
        .get(at.wrapping_sub(1))
        .is_some_and(|a| a.eq_ignore_ascii_case(b"BLOCK"));
    let value = if block {
        left.as_millis().max(1).to_string()
    } else {
        format!("{:.3}", left.as_secs_f64().max(0.001))
    };
    let rebuilt: Vec<&[u8]> = args
        .iter()
        .enumerate()
        .map(|(i, a)| if i == at { value.as_bytes() } else { *a })
        .collect();
    Some(Request::from_args(&rebuilt))
}

/// The body of the script an EVALSHA names, when the proxy saw it.
fn script_body(frame: &[u8], scripts: &Scripts) -> Option<Bytes> {
    let req = Request::parse(frame)?;
    let name = req.name();
    if !(name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVALSHA_RO")) {
        return None;
    }
    scripts.body(req.arg1()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Tail;
    use smallvec::SmallVec;

    fn fault(
        kind: FaultKind,
        payload: &[&[&str]],
        kinds: &[Kind],
        received: u32,
        tail: Vec<Tail>,
    ) -> Fault {
        let mut bytes = Vec::new();
        let mut cmds = SmallVec::new();
        for (args, k) in payload.iter().zip(kinds) {
            let start = bytes.len();
            bytes.extend_from_slice(Request::from_args(args).bytes());
            cmds.push(Sent {
                range: start..bytes.len(),
                kind: *k,
                frames: 1,
                replies: 1,
                confirm: false,
            });
        }
        Fault {
            id: 1,
            kind,
            received,
            complete: true,
            tail,
            payload: Bytes::from(bytes),
            cmds,
            skip: 0,
            conn: 1,
            attempt: 0,
            silent: false,
            started: None,
            durability: None,
        }
    }

    fn t(bytes: &str, refused: bool) -> Tail {
        Tail {
            bytes: Bytes::from(bytes.to_string()),
            refused,
        }
    }

    #[test]
    fn refused_writes_go_again_and_reads_after_them_too() {
        let f = fault(
            FaultKind::Refused,
            &[
                &["SET", "a", "1"],
                &["SET", "b", "1"],
                &["GET", "a"],
                &["PUBLISH", "c", "m"],
            ],
            &[Kind::Write, Kind::Write, Kind::Read, Kind::Write],
            1,
            vec![
                t("-READONLY no\r\n", true),
                t("$1\r\n0\r\n", false),
                t(":0\r\n", false),
            ],
        );
        let plans: Vec<Plan> = plan(&f, &Scripts::default())
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(
            plans,
            vec![
                Plan::Done,
                Plan::Resend,
                Plan::Resend,
                Plan::Release(vec![Bytes::from_static(b":0\r\n")])
            ]
        );
    }

    #[test]
    fn lost_writes_fail_and_lost_reads_go_again() {
        let f = fault(
            FaultKind::Lost,
            &[&["INCR", "a"], &["GET", "a"]],
            &[Kind::Write, Kind::Read],
            0,
            vec![],
        );
        let plans: Vec<Plan> = plan(&f, &Scripts::default())
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(
            plans,
            vec![
                Plan::FailRemaining(ClientError::OutcomeUnknown, 1),
                Plan::Resend
            ]
        );
    }

    #[test]
    fn blocking_commands_keep_their_remaining_time() {
        let req = Request::from_args(&["BLPOP", "l", "5"]);
        let shorter = with_timeout(&req, Some(Duration::from_millis(1500))).unwrap();
        assert_eq!(shorter.args()[2], b"1.500");
        let x = Request::from_args(&["XREAD", "BLOCK", "1000", "STREAMS", "s", "$"]);
        let x2 = with_timeout(&x, Some(Duration::from_millis(250))).unwrap();
        assert_eq!(x2.args()[2], b"250");
        let m = Request::from_args(&["BLMPOP", "2", "1", "l", "LEFT"]);
        assert_eq!(timeout_arg(&m).unwrap().0, 1);
        let f = fault(
            FaultKind::Refused,
            &[&["BLPOP", "l", "0"]],
            &[Kind::Blocking],
            0,
            vec![t(
                "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
                true,
            )],
        );
        assert_eq!(plan(&f, &Scripts::default())[0].1, Plan::Reissue(None));
    }

    #[test]
    fn noscript_reloads_known_bodies() {
        let scripts = Scripts::default();
        scripts.remember(b"return 1");
        let sha = crate::session::scripts::sha1_hex(b"return 1");
        let f = fault(
            FaultKind::Refused,
            &[&["EVALSHA", &sha, "0"]],
            &[Kind::Write],
            0,
            vec![t("-NOSCRIPT x\r\n", true)],
        );
        assert_eq!(
            plan(&f, &scripts)[0].1,
            Plan::ReloadScript(Bytes::from_static(b"return 1"))
        );
        let unknown = fault(
            FaultKind::Refused,
            &[&["EVALSHA", "ffff", "0"]],
            &[Kind::Write],
            0,
            vec![t("-NOSCRIPT x\r\n", true)],
        );
        assert!(matches!(plan(&unknown, &scripts)[0].1, Plan::Release(_)));
    }
}
