//! Transactions: `MULTI ... EXEC` as one contiguous write, judged as a whole, with no I/O.
//!
//! A transaction's commands must all live in one slot (a transaction runs on one node).
//! The client encodes `MULTI`, the commands and `EXEC` back to back into one buffer and
//! queues it on the slot owner's connection like any batch: the connection's writer never
//! interleaves another caller's bytes inside a buffer, and replies come back in order, so
//! the shared connection stays correct (the FIFO gets `+OK`, one `+QUEUED` per command,
//! then the `EXEC` array).
//!
//! [`TxRound`] judges those replies the way the cluster specification requires:
//!
//! - a queued command answered `MOVED` or `ASK` (its slot moved, or is moving and the key
//!   is gone) makes the server flag the transaction and refuse `EXEC` with `EXECABORT`:
//!   nothing ran, so the whole transaction is sent again to the new owner (`MOVED`, and the
//!   slot map learns it) or to the migration target preceded by `ASKING` (`ASK`; the server
//!   keeps the asking flag for the whole `MULTI` block);
//! - `EXEC` itself answered with a redirect (the slot moved between queueing and `EXEC`)
//!   means the same: the transaction was discarded, nothing ran;
//! - `TRYAGAIN`, `CLUSTERDOWN`, `LOADING` and `MASTERDOWN` are retried after a backoff;
//! - any other queue-time error (wrong arity, unknown command) aborts the transaction: the
//!   offending command gets its error, every other one an error of kind
//!   [`ErrorKind::TransactionAborted`];
//! - inside a committed transaction, a command's runtime error (`WRONGTYPE`) is that
//!   command's result, the others' results stand;
//! - `EXEC` answered nil: a `WATCH`ed key changed ([`TxOutcome::Conflict`]).
//!
//! A transaction whose bytes were written to a connection that then failed is never
//! resent: `EXEC` may have run. Redirect and retry budgets are the ones of
//! [`RoundLimits`], counted for the transaction as a whole.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::core::cmd::{cmd, Cmd, ToArg};
use crate::core::command_table::{command_class, CommandClass};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::judgement::Judgement;
use crate::core::reply::server_error;
use crate::core::resp::{encode, Value};
use crate::core::round::{
    backoff, classify_reply, saturating_later, Effect, Redirect, ReplyAction, RoundLimits,
    RoundReply,
};
use crate::core::route::Route;
use crate::core::slot::{slot_for_key, Slot};
use crate::core::stats::Counters;
use crate::core::topology::{NodeAddr, SlotMap};

/// The one slot of a transaction's commands, checked before anything is sent.
///
/// Fails with [`ErrorKind::CrossSlot`] when keys hash to different slots (use a hash tag),
/// [`ErrorKind::Unsupported`] for commands that cannot run inside `MULTI` on a cluster
/// (`MULTI`, `WATCH`, `SUBSCRIBE`, multi-node and node-specific commands),
/// [`ErrorKind::InvalidCommand`] for an empty transaction, an empty command, or one
/// without any key (it would have no node).
///
/// ```
/// use redis_cluster_uring::{cmd, core::transaction::transaction_slot, slot_for_key, ErrorKind};
/// let ok = [cmd("INCR").arg("{u1}a"), cmd("SET").arg("{u1}b").arg(1)];
/// assert_eq!(transaction_slot(&ok).unwrap(), slot_for_key(b"u1"));
/// let cross = [cmd("INCR").arg("a"), cmd("INCR").arg("b")];
/// assert_eq!(transaction_slot(&cross).unwrap_err().kind(), ErrorKind::CrossSlot);
/// ```
pub fn transaction_slot(cmds: &[Cmd]) -> Result<Slot> {
    let mut slot: Option<Slot> = None;
    for c in cmds {
        // One lookup of the command for its class and its slot.
        let judged = Judgement::of(c);
        match judged.class() {
            CommandClass::Regular | CommandClass::Blocking => {}
            CommandClass::Empty => {
                return Err(Error::new(
                    ErrorKind::InvalidCommand,
                    "empty command in a transaction",
                ))
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{} cannot run inside a cluster transaction (it needs another node, or changes the connection)",
                        String::from_utf8_lossy(c.name()).to_ascii_uppercase()
                    ),
                ))
            }
        }
        match judged.route(c)? {
            Route::AnyNode => {}
            Route::Slot(s) => match slot {
                None => slot = Some(s),
                Some(first) if first != s => {
                    return Err(Error::new(
                        ErrorKind::CrossSlot,
                        format!(
                            "a transaction's keys must share one slot ({first} and {s}); use a hash tag"
                        ),
                    ))
                }
                Some(_) => {}
            },
        }
    }
    slot.ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidCommand,
            if cmds.is_empty() {
                "empty transaction"
            } else {
                "a transaction needs at least one key to choose its node"
            },
        )
    })
}

/// The `WATCH` of a session on `keys`, and their one slot (the session's node is its
/// owner). Fails with [`ErrorKind::InvalidCommand`] without keys and
/// [`ErrorKind::CrossSlot`] when they span slots.
///
/// ```
/// use redis_cluster_uring::{slot_for_key, core::transaction::watch_command, ErrorKind};
/// let (watch, slot) = watch_command(&["{acct}a", "{acct}b"]).unwrap();
/// assert_eq!((watch.len(), slot), (3, slot_for_key(b"acct")));
/// assert_eq!(watch_command(&["a", "b"]).unwrap_err().kind(), ErrorKind::CrossSlot);
/// ```
pub fn watch_command<K: ToArg>(keys: &[K]) -> Result<(Cmd, Slot)> {
    let mut watch = cmd("WATCH");
    for k in keys {
        watch.push_arg(k);
    }
    let slot = match watch.arg_at(1) {
        Some(first) => slot_for_key(first),
        None => {
            return Err(Error::new(
                ErrorKind::InvalidCommand,
                "a transaction needs at least one key to watch",
            ))
        }
    };
    if let Some(other) = (2..watch.len())
        .filter_map(|i| watch.arg_at(i))
        .map(slot_for_key)
        .find(|s| *s != slot)
    {
        return Err(Error::new(
            ErrorKind::CrossSlot,
            format!("watched keys must share one slot ({slot} and {other}); use a hash tag"),
        ));
    }
    Ok((watch, slot))
}

/// Checks that the transaction a `WATCH` session's closure returned runs in the watched
/// slot (its node holds the watches): [`transaction_slot`]'s refusals, or
/// [`ErrorKind::CrossSlot`] for another slot.
pub fn check_watched_transaction(cmds: &[Cmd], watched: Slot) -> Result<()> {
    in_watched_slot(transaction_slot(cmds)?, watched)
}

/// [`check_watched_transaction`] for a transaction whose slot is known (a [`TxRound`]
/// found it when it was made).
fn in_watched_slot(slot: Slot, watched: Slot) -> Result<()> {
    if slot == watched {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::CrossSlot,
            format!("the transaction's slot {slot} is not the watched keys' slot {watched}"),
        ))
    }
}

/// Refuses what cannot run inside a `WATCH` session's reads: anything but a regular
/// command (the refusal names the right API, as everywhere).
pub(crate) fn check_session_command(command: &Cmd) -> Result<()> {
    let class = command_class(command);
    if class == CommandClass::Regular {
        return Ok(());
    }
    Err(
        crate::core::command_table::refusal(command, class, true).unwrap_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "only regular commands run inside a WATCH session",
            )
        }),
    )
}

/// A `WATCH` session found its slot moved (`moved`: the `MOVED`/`ASK` error, from `node`)
/// and starts again: counts the redirect against `max_redirects` (then
/// [`ErrorKind::RedirectLimit`]), and returns the slot's new owner for a `MOVED` (its
/// empty host filled with `node`'s, as the spec says), `None` for an `ASK` (a migration
/// under way: the caller pauses, then asks the map again).
pub(crate) fn session_redirect(
    redirects: &mut u32,
    max_redirects: u32,
    moved: &Error,
    node: &NodeAddr,
) -> Result<Option<(Slot, NodeAddr)>> {
    *redirects += 1;
    if *redirects > max_redirects {
        return Err(Error::new(
            ErrorKind::RedirectLimit,
            format!(
                "WATCH session gave up after {} redirects: {moved}",
                *redirects - 1
            ),
        ));
    }
    if moved.kind() != ErrorKind::Moved {
        return Ok(None);
    }
    Ok(moved.redirect_target().and_then(|(slot, to)| {
        let mut to = NodeAddr::parse(to)?;
        if to.host.is_empty() {
            to.host = node.host.clone();
        }
        Some((slot, to))
    }))
}

/// How one attempt of a `WATCH` session ended, as its driver saw it.
#[derive(Debug)]
pub(crate) enum AttemptEnd {
    /// `EXEC` answered nil: a watched key changed. `EXEC` ended the watches.
    Conflict,
    /// The transaction was refused for now (`OOM`, `LOADING`, ...) and the watches are
    /// gone with it.
    Refused(Error),
    /// The slot moved or is moving (`MOVED`/`ASK` to `WATCH`, to a read in the session,
    /// or an `EXECABORT` for one): this error says where.
    Moved(Error),
}

/// What the reply to `WATCH` means for a session's attempt: `Ok(None)`, the keys are
/// watched; `Ok(Some(end))`, the slot moved or is moving (start again where the error
/// says); `Err`, the session fails with the server's refusal.
pub(crate) fn watch_answered(reply: Value) -> Result<Option<AttemptEnd>> {
    match reply {
        Value::Error(line) => match server_error(&line) {
            e if matches!(e.kind(), ErrorKind::Moved | ErrorKind::Ask) => {
                Ok(Some(AttemptEnd::Moved(e)))
            }
            e => Err(e),
        },
        _ => Ok(None),
    }
}

/// A session's read (or the body that made the transaction) failed with `e`: a slot that
/// moved starts the attempt again on its new owner, anything else fails the session.
pub(crate) fn session_failed(e: Error) -> Result<AttemptEnd> {
    if matches!(e.kind(), ErrorKind::Moved | ErrorKind::Ask) {
        Ok(AttemptEnd::Moved(e))
    } else {
        Err(e)
    }
}

/// How a session's transaction (`MULTI` ... `EXEC` on the watched connection) ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// Committed: the results, as the pipeline asked for them.
    Done(Vec<Result<Value>>),
    /// Not committed: the attempt's end for [`WatchAttempts::end`], and whether the
    /// connection is clean (`EXEC` or an `EXECABORT` ended its watches; it can serve
    /// again) or must be closed (refused for now, perhaps because it was lost: its
    /// state is unknown).
    Again { end: AttemptEnd, clean: bool },
}

/// What the outcome of a session's transaction means for the session, for both clients
/// and the simulation: a commit's results (the first error raised when the pipeline
/// asks so), a conflict or an `EXECABORT` for a moved slot (start again, the connection
/// clean), a refusal for now (start again on a fresh connection), or the session's error.
pub(crate) fn transaction_ended(
    outcome: Result<TxOutcome>,
    pipe: &crate::core::pipeline::Pipeline,
) -> Result<SessionEnd> {
    match outcome {
        Ok(TxOutcome::Done(results)) => Ok(SessionEnd::Done(pipe.finish(results)?)),
        Ok(TxOutcome::Conflict) => Ok(SessionEnd::Again {
            end: AttemptEnd::Conflict,
            clean: true,
        }),
        Ok(TxOutcome::Unwatched { refusal, .. }) => Ok(SessionEnd::Again {
            end: AttemptEnd::Refused(refusal),
            clean: false,
        }),
        // Discarded by the server (EXECABORT): nothing ran, the watches are gone.
        Err(e) => session_failed(e).map(|end| SessionEnd::Again { end, clean: true }),
    }
}

/// What a `WATCH` session's driver does before its next attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AttemptNext {
    /// Apply this `MOVED` to the map first (a redirect, counted as one).
    pub(crate) moved: Option<(Slot, NodeAddr)>,
    /// Ask for a slot-map refresh.
    pub(crate) refresh: bool,
    /// Wait this long before watching again.
    pub(crate) pause: Duration,
}

/// How the next attempt starts.
#[derive(Debug)]
pub(crate) enum AttemptStart {
    /// Watch the keys on this node (the slot's owner in the map).
    Watch(NodeAddr),
    /// No node serves the slot: this error, and the driver asks for a refresh.
    NoNode(Error),
    /// No attempt is left: this error (the last refusal, or `WatchConflict`).
    GiveUp(Error),
}

/// The attempt loop of a `WATCH` session, shared by both clients: at most
/// `max_watch_attempts` attempts; a conflict starts again at once; a refusal starts
/// again after a growing backoff within `max_retries` (then it is the error); a moved
/// slot counts against `max_redirects` and starts again on the new owner (after
/// `retry_base_delay` and a refresh for an `ASK`, the migration being under way). When the
/// attempts run out, the last refusal is the error if the last judged attempt was refused,
/// otherwise [`ErrorKind::WatchConflict`].
#[derive(Debug)]
pub(crate) struct WatchAttempts {
    slot: Slot,
    limits: RoundLimits,
    max_attempts: u32,
    started: u32,
    redirects: u32,
    refusals: u32,
    last_refusal: Option<Error>,
}

impl WatchAttempts {
    /// The attempts of a session on `slot`.
    pub(crate) fn new(slot: Slot, limits: RoundLimits, max_attempts: u32) -> WatchAttempts {
        WatchAttempts {
            slot,
            limits,
            max_attempts: max_attempts.max(1),
            started: 0,
            redirects: 0,
            refusals: 0,
            last_refusal: None,
        }
    }

    /// Starts the next attempt under `map`.
    pub(crate) fn start(&mut self, map: &SlotMap) -> AttemptStart {
        if self.started >= self.max_attempts {
            return AttemptStart::GiveUp(match self.last_refusal.take() {
                // The last attempt was refused, not in conflict: say so.
                Some(refusal) => refusal,
                None => Error::new(
                    ErrorKind::WatchConflict,
                    format!(
                        "a watched key changed before EXEC in all {} attempts",
                        self.max_attempts
                    ),
                ),
            });
        }
        self.started += 1;
        match map.node_for(self.slot) {
            Some(node) => AttemptStart::Watch(node.clone()),
            None => AttemptStart::NoNode(Error::new(
                ErrorKind::ClusterDown,
                format!("no node serves slot {}", self.slot),
            )),
        }
    }

    /// The attempt on `node` ended so: what to do before the next, or the error that
    /// ends the session now. A conflict or a refusal that will be tried again counts as
    /// a retry in `counters`.
    pub(crate) fn end(
        &mut self,
        node: &NodeAddr,
        end: AttemptEnd,
        counters: &Counters,
    ) -> Result<AttemptNext> {
        let mut next = AttemptNext {
            moved: None,
            refresh: false,
            pause: Duration::ZERO,
        };
        match end {
            AttemptEnd::Conflict => {
                counters.retries_add(1);
                self.last_refusal = None;
            }
            AttemptEnd::Refused(refusal) => {
                self.refusals += 1;
                if self.refusals > self.limits.max_retries {
                    return Err(refusal);
                }
                counters.retries_add(1);
                next.pause = backoff(
                    self.refusals,
                    self.limits.retry_base_delay,
                    self.limits.retry_max_delay,
                );
                self.last_refusal = Some(refusal);
            }
            AttemptEnd::Moved(moved) => {
                match session_redirect(
                    &mut self.redirects,
                    self.limits.max_redirects,
                    &moved,
                    node,
                )? {
                    Some(moved) => next.moved = Some(moved),
                    None => {
                        next.refresh = true;
                        next.pause = self.limits.retry_base_delay;
                    }
                }
            }
        }
        Ok(next)
    }
}

/// `[ASKING] MULTI <cmds> EXEC` in one buffer.
pub fn encode_transaction(cmds: &[Cmd], asking: bool) -> BytesMut {
    const ASKING: &[&[u8]] = &[b"ASKING"];
    const MULTI: &[&[u8]] = &[b"MULTI"];
    const EXEC: &[&[u8]] = &[b"EXEC"];
    let frame = |args: &[&[u8]]| encode::encoded_len(args.iter().copied());
    let len = cmds.iter().map(Cmd::encoded_len).sum::<usize>()
        + frame(MULTI)
        + frame(EXEC)
        + if asking { frame(ASKING) } else { 0 };
    let mut buf = BytesMut::with_capacity(len);
    if asking {
        encode::encode_command(&mut buf, ASKING.iter().copied());
    }
    encode::encode_command(&mut buf, MULTI.iter().copied());
    for c in cmds {
        c.write_to(&mut buf);
    }
    encode::encode_command(&mut buf, EXEC.iter().copied());
    buf
}

/// How a transaction ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum TxOutcome {
    /// `EXEC` ran (each command's result, runtime errors included), or the transaction
    /// was aborted at queue time (the refused command's error, and
    /// [`ErrorKind::TransactionAborted`] for the others: none of them ran).
    Done(Vec<Result<Value>>),
    /// `EXEC` answered nil: a watched key changed and nothing ran.
    Conflict,
    /// A [pinned](TxRound::pinned) transaction (a `WATCH` session's) was refused for now
    /// (`TRYAGAIN`, `CLUSTERDOWN`, ...) and nothing ran. Resending it would run it without
    /// the watches (the server drops them at every `EXEC`, aborted or not), so the
    /// session starts its attempt again, `WATCH` first, after `pause`.
    Unwatched {
        /// The backoff the round would have taken before resending.
        pause: Duration,
        /// What the server said (or the unsent failure): the session's error when its
        /// retry budget runs out.
        refusal: Error,
    },
}

/// What the driver does next with a transaction.
#[derive(Debug)]
pub enum TxNext {
    /// Write `buf` to `node` and collect `replies` replies, in order.
    Send {
        /// The node.
        node: NodeAddr,
        /// `[ASKING] MULTI ... EXEC`.
        buf: BytesMut,
        /// Replies the buffer gets: one per command in it.
        replies: usize,
    },
    /// Wait until then (a retry's backoff), then ask again.
    WaitUntil(Instant),
    /// Finished: call [`TxRound::finish`].
    Done,
}

/// One transaction's state across its attempts: where it goes, the budgets taken, and
/// its outcome once known.
///
/// ```
/// use bytes::Bytes;
/// use redis_cluster_uring::core::round::{RoundLimits, RoundReply};
/// use redis_cluster_uring::core::transaction::{TxNext, TxOutcome, TxRound};
/// use redis_cluster_uring::{cmd, NodeAddr, SlotMap, Value};
/// use std::time::{Duration, Instant};
/// let map = SlotMap::split_evenly(&[NodeAddr::new("127.0.0.1", 7000)]);
/// let limits = RoundLimits {
///     max_redirects: 5,
///     max_retries: 5,
///     retry_base_delay: Duration::from_millis(10),
///     retry_max_delay: Duration::from_millis(100),
/// };
/// let cmds = [cmd("INCR").arg("{a}x"), cmd("INCR").arg("{a}y")];
/// let mut tx = TxRound::new(&cmds, limits, None).unwrap();
/// let TxNext::Send { node, replies, .. } = tx.next(Instant::now(), &cmds, &map) else { unreachable!() };
/// assert_eq!(replies, 4); // +OK, +QUEUED, +QUEUED, the EXEC array
/// let status = |s: &'static str| Some(RoundReply::Value(Value::SimpleString(Bytes::from_static(s.as_bytes()))));
/// tx.judge(&node, vec![
///     status("OK"), status("QUEUED"), status("QUEUED"),
///     Some(RoundReply::Value(Value::Array(vec![Value::Int(1), Value::Int(1)]))),
/// ]);
/// assert!(matches!(tx.next(Instant::now(), &cmds, &map), TxNext::Done));
/// let TxOutcome::Done(results) = tx.finish().unwrap() else { unreachable!() };
/// assert_eq!(results[1].as_ref().unwrap(), &Value::Int(1));
/// ```
#[derive(Debug)]
pub struct TxRound {
    slot: Slot,
    limits: RoundLimits,
    deadline: Option<Instant>,
    redirects: u32,
    retries: u32,
    /// Where the next attempt goes: `None` for the slot's owner in the map.
    target: Option<NodeAddr>,
    /// The next attempt starts with `ASKING` (after an ASK).
    asking: bool,
    /// A node fixed by the caller (a `WATCH` session): redirects end the transaction with
    /// an error of kind [`ErrorKind::Moved`] / [`ErrorKind::Ask`] instead of being
    /// followed, since the watch lives on that node's connection.
    pinned: Option<NodeAddr>,
    retry_at: Option<Instant>,
    /// A retry's pause, turned into `retry_at` by the next call to `next`.
    pause: Option<Duration>,
    /// The last attempt started with `ASKING` (its first reply is that `+OK`).
    sent_asking: bool,
    timed_out: bool,
    outcome: Option<Result<TxOutcome>>,
    effects: Vec<Effect>,
}

impl TxRound {
    /// A transaction of `cmds`, checked by [`transaction_slot`] before anything is sent.
    pub fn new(cmds: &[Cmd], limits: RoundLimits, deadline: Option<Instant>) -> Result<TxRound> {
        Ok(TxRound {
            slot: transaction_slot(cmds)?,
            limits,
            deadline,
            redirects: 0,
            retries: 0,
            target: None,
            asking: false,
            pinned: None,
            retry_at: None,
            pause: None,
            sent_asking: false,
            timed_out: false,
            outcome: None,
            effects: Vec::new(),
        })
    }

    /// A `WATCH` session's transaction: [`TxRound::new`], refused unless it runs in the
    /// `watched` slot ([`check_watched_transaction`]; the commands are judged once for
    /// both), and pinned to `node`, whose connection holds the watches.
    pub(crate) fn watched(
        cmds: &[Cmd],
        watched: Slot,
        node: NodeAddr,
        limits: RoundLimits,
        deadline: Option<Instant>,
    ) -> Result<TxRound> {
        let tx = TxRound::new(cmds, limits, deadline)?;
        in_watched_slot(tx.slot, watched)?;
        Ok(tx.pinned(node))
    }

    /// Runs on `node` only (its connection holds the `WATCH`); no redirect is followed.
    pub fn pinned(mut self, node: NodeAddr) -> TxRound {
        self.pinned = Some(node);
        self
    }

    /// The transaction's slot.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// The deadline passed while the driver waited for replies; the next
    /// [`judge`](TxRound::judge) sees the missing ones as timed out.
    pub fn deadline_passed(&mut self) {
        self.timed_out = true;
    }

    /// What to do now.
    pub fn next(&mut self, now: Instant, cmds: &[Cmd], map: &SlotMap) -> TxNext {
        if self.outcome.is_some() {
            return TxNext::Done;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.outcome = Some(Err(Error::new(
                ErrorKind::Timeout,
                "deadline passed before the transaction was sent",
            )));
            return TxNext::Done;
        }
        if let Some(pause) = self.pause.take() {
            let at = saturating_later(now, pause);
            if self.deadline.is_some_and(|d| d <= at) {
                // As `Rounds`: a retry that would wake after the deadline fails now,
                // rather than holding its caller past the deadline.
                self.outcome = Some(Err(Error::new(
                    ErrorKind::Timeout,
                    "deadline passed while waiting to retry the transaction",
                )));
                return TxNext::Done;
            }
            self.retry_at = Some(at);
        }
        if let Some(at) = self.retry_at {
            if now < at {
                return TxNext::WaitUntil(at);
            }
            self.retry_at = None;
        }
        let node = match (&self.pinned, &self.target) {
            (Some(node), _) | (None, Some(node)) => node.clone(),
            (None, None) => match map.node_for(self.slot) {
                Some(node) => node.clone(),
                None => {
                    self.effects.push(Effect::RefreshMap);
                    self.outcome = Some(Err(Error::new(
                        ErrorKind::ClusterDown,
                        format!("no node serves slot {}", self.slot),
                    )));
                    return TxNext::Done;
                }
            },
        };
        let asking = std::mem::take(&mut self.asking);
        self.sent_asking = asking;
        self.timed_out = false;
        TxNext::Send {
            node,
            replies: cmds.len() + 2 + usize::from(asking),
            buf: encode_transaction(cmds, asking),
        }
    }

    /// Judges one attempt's replies (`None`: not received), in the order written.
    pub fn judge(&mut self, node: &NodeAddr, replies: Vec<Option<RoundReply>>) {
        // A missing reply or a failed connection decides before any value does.
        let mut values = Vec::with_capacity(replies.len());
        let mut unsent_failure = None;
        for reply in replies {
            match reply {
                Some(RoundReply::Value(v)) => values.push(v),
                Some(RoundReply::Failed { error, sent }) => {
                    let kind = error.kind();
                    if kind != ErrorKind::Overloaded && kind != ErrorKind::Shutdown {
                        self.effect_once(Effect::NodeFailed(node.clone()));
                    }
                    if sent {
                        return self.fail(Error::new(
                            error.kind(),
                            format!(
                                "{error}: the connection failed after the transaction was written; EXEC may have run, so it is not resent"
                            ),
                        ));
                    }
                    if kind == ErrorKind::Shutdown || self.retries >= self.limits.max_retries {
                        return self.fail(error);
                    }
                    unsent_failure = Some(error);
                }
                None if self.timed_out => {
                    self.effect_once(Effect::TimedOut(node.clone()));
                    return self.fail(Error::new(
                        ErrorKind::Timeout,
                        format!("{node} did not answer the transaction in time; EXEC may have run"),
                    ));
                }
                None => {
                    return self.fail(Error::new(
                        ErrorKind::Io,
                        format!("no reply from {node} to the transaction; EXEC may have run"),
                    ))
                }
            }
        }
        if let Some(error) = unsent_failure {
            // Nothing was written: safe to send again after a pause.
            return self.retry(error);
        }
        let mut values = values.into_iter();
        let Some(exec) = values.next_back() else {
            return self.fail(Error::protocol("a transaction got no reply"));
        };
        let mut leading: Vec<Value> = values.collect();
        // The `+OK` of ASKING, then of MULTI.
        let preamble = (1 + usize::from(self.sent_asking)).min(leading.len());
        for v in leading.drain(..preamble) {
            if let Value::Error(line) = v {
                return self.fail(server_error(&line));
            }
        }
        let queued = leading;
        match exec {
            Value::Array(items) if items.len() == queued.len() => {
                let results = items
                    .into_iter()
                    .map(|v| match v {
                        Value::Error(line) => Err(server_error(&line)),
                        v => Ok(v),
                    })
                    .collect();
                self.outcome = Some(Ok(TxOutcome::Done(results)));
            }
            Value::Array(items) => self.fail(Error::protocol(format!(
                "EXEC returned {} results for {} commands",
                items.len(),
                queued.len()
            ))),
            Value::Nil => self.outcome = Some(Ok(TxOutcome::Conflict)),
            Value::Error(line) if line.starts_with(b"EXECABORT") => {
                // The first queue-time error that a redirect or a retry cures decides for
                // the whole transaction; otherwise the commands are answered one by one.
                let cure = queued
                    .iter()
                    .map(|v| (classify_reply(v), v))
                    .find(|(a, _)| !matches!(a, ReplyAction::Accept));
                match cure {
                    Some((ReplyAction::Redirect(r), _)) => self.redirect(node, r),
                    Some((ReplyAction::Retry(_), Value::Error(refused))) => {
                        let refusal = server_error(refused);
                        self.retry(refusal)
                    }
                    _ => {
                        let results = queued
                            .into_iter()
                            .map(|v| match v {
                                Value::Error(line) => Err(server_error(&line)),
                                _ => Err(Error::new(
                                    ErrorKind::TransactionAborted,
                                    format!(
                                        "not run: another command of the transaction was refused ({})",
                                        String::from_utf8_lossy(&line)
                                    ),
                                )),
                            })
                            .collect();
                        self.outcome = Some(Ok(TxOutcome::Done(results)));
                    }
                }
            }
            Value::Error(line) => match classify_reply(&Value::Error(line.clone())) {
                ReplyAction::Redirect(r) => self.redirect(node, r),
                ReplyAction::Retry(_) => self.retry(server_error(&line)),
                ReplyAction::Accept => self.fail(server_error(&line)),
            },
            other => self.fail(Error::protocol(format!(
                "EXEC answered with {} instead of an array",
                crate::core::reply::value_kind(&other)
            ))),
        }
    }

    fn redirect(&mut self, answered: &NodeAddr, redirect: Redirect) {
        let (slot, to, ask) = match redirect {
            Redirect::Moved { slot, addr } => (slot, addr, false),
            Redirect::Ask { slot, addr } => (slot, addr, true),
        };
        let to = if to.host.is_empty() {
            NodeAddr::new(answered.host.clone(), to.port)
        } else {
            to
        };
        if self.pinned.is_some() {
            let kind = if ask {
                ErrorKind::Ask
            } else {
                ErrorKind::Moved
            };
            if !ask {
                self.effects.push(Effect::Redirected {
                    moved: Some((slot, to.clone())),
                });
            }
            return self.fail(Error::redirect(kind, slot, to.to_string()));
        }
        if to.host == "?" {
            self.effect_once(Effect::RefreshMap);
            return self.fail(Error::new(
                ErrorKind::ClusterDown,
                format!("redirected to a node whose endpoint the cluster does not know ({to})"),
            ));
        }
        if self.redirects >= self.limits.max_redirects {
            return self.fail(
                Error::new(
                    ErrorKind::RedirectLimit,
                    format!(
                        "transaction gave up after {} redirects; last: {} {slot} {to}",
                        self.redirects,
                        if ask { "ASK" } else { "MOVED" }
                    ),
                )
                .with_redirect(slot, &to.to_string()),
            );
        }
        self.redirects += 1;
        self.effects.push(Effect::Redirected {
            moved: (!ask).then(|| (slot, to.clone())),
        });
        self.asking = ask;
        // After MOVED the map points at the new owner; an ASK target is for this attempt.
        self.target = Some(to);
    }

    /// Sends the transaction again after a backoff (unpinned), or ends a pinned one with
    /// [`TxOutcome::Unwatched`]; `refusal` is why.
    fn retry(&mut self, refusal: Error) {
        if self.retries >= self.limits.max_retries {
            return self.fail(Error::new(
                ErrorKind::ClusterDown,
                format!(
                    "transaction on slot {} still refused after {} retries",
                    self.slot, self.retries
                ),
            ));
        }
        self.retries += 1;
        self.effects.push(Effect::Retrying);
        let pause = backoff(
            self.retries,
            self.limits.retry_base_delay,
            self.limits.retry_max_delay,
        );
        if self.pinned.is_some() {
            // The attempt's EXEC (or the lost connection) took the watches with it.
            self.outcome = Some(Ok(TxOutcome::Unwatched { pause, refusal }));
            return;
        }
        // The map may have changed meanwhile: go where it says.
        self.target = None;
        self.pause = Some(pause);
    }

    fn fail(&mut self, error: Error) {
        self.outcome = Some(Err(error));
    }

    fn effect_once(&mut self, effect: Effect) {
        if !self.effects.contains(&effect) {
            self.effects.push(effect);
        }
    }

    /// Effects for the driver (map updates, refreshes, counters), as for [`crate::core::round::Rounds`].
    pub fn take_effects(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    /// The outcome; an `Err` when the transaction as a whole failed (timeout, lost
    /// connection, budgets exhausted).
    pub fn finish(self) -> Result<TxOutcome> {
        self.outcome.unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Timeout,
                "the transaction ended before its outcome was known",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use bytes::Bytes;
    use std::time::Duration;

    fn limits() -> RoundLimits {
        RoundLimits {
            max_redirects: 3,
            max_retries: 2,
            retry_base_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(100),
        }
    }

    fn a() -> NodeAddr {
        NodeAddr::new("127.0.0.1", 7000)
    }

    fn b() -> NodeAddr {
        NodeAddr::new("127.0.0.1", 7001)
    }

    fn map() -> SlotMap {
        SlotMap::split_evenly(&[a()])
    }

    fn cmds() -> Vec<Cmd> {
        vec![cmd("INCR").arg("{t}x"), cmd("SET").arg("{t}y").arg(1)]
    }

    fn status(s: &str) -> Option<RoundReply> {
        Some(RoundReply::Value(Value::SimpleString(
            Bytes::copy_from_slice(s.as_bytes()),
        )))
    }

    fn error(s: &str) -> Option<RoundReply> {
        Some(RoundReply::Value(Value::Error(Bytes::copy_from_slice(
            s.as_bytes(),
        ))))
    }

    fn exec(items: Vec<Value>) -> Option<RoundReply> {
        Some(RoundReply::Value(Value::Array(items)))
    }

    fn send(tx: &mut TxRound) -> (NodeAddr, BytesMut, usize) {
        match tx.next(Instant::now(), &cmds(), &map()) {
            TxNext::Send { node, buf, replies } => (node, buf, replies),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn done(tx: TxRound) -> Vec<Result<Value>> {
        match tx.finish() {
            Ok(TxOutcome::Done(results)) => results,
            other => panic!("expected results, got {other:?}"),
        }
    }

    fn committed() -> Vec<Option<RoundReply>> {
        vec![
            status("OK"),
            status("QUEUED"),
            status("QUEUED"),
            exec(vec![
                Value::Int(1),
                Value::SimpleString(Bytes::from_static(b"OK")),
            ]),
        ]
    }

    #[test]
    fn a_watch_session_runs_regular_commands_only() {
        assert!(check_session_command(&cmd("GET").arg("k")).is_ok());
        for refused in [
            cmd("MULTI"),
            cmd("SUBSCRIBE").arg("c"),
            cmd("BLPOP").arg("q").arg(0),
            cmd("WATCH").arg("k"),
        ] {
            assert!(
                check_session_command(&refused).is_err(),
                "{refused:?} must be refused inside a session"
            );
        }
    }

    #[test]
    fn encodes_multi_commands_exec_in_one_buffer() {
        let buf = encode_transaction(&cmds()[..1], false);
        assert_eq!(
            &buf[..],
            b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$4\r\n{t}x\r\n*1\r\n$4\r\nEXEC\r\n"
        );
        let asking = encode_transaction(&cmds()[..1], true);
        assert!(asking.starts_with(b"*1\r\n$6\r\nASKING\r\n*1\r\n$5\r\nMULTI"));
        assert_eq!(asking.capacity(), asking.len(), "reserved exactly once");
    }

    #[test]
    fn slot_checks_come_before_anything_is_sent() {
        let kind = |c: &[Cmd]| transaction_slot(c).unwrap_err().kind();
        assert_eq!(kind(&[]), ErrorKind::InvalidCommand);
        assert_eq!(kind(&[cmd("ECHO").arg("x")]), ErrorKind::InvalidCommand);
        assert_eq!(kind(&[Cmd::new()]), ErrorKind::InvalidCommand);
        assert_eq!(
            kind(&[cmd("SET").arg("a").arg(1), cmd("SET").arg("b").arg(1)]),
            ErrorKind::CrossSlot
        );
        assert_eq!(kind(&[cmd("MGET").arg("a").arg("b")]), ErrorKind::CrossSlot);
        for refused in [
            cmd("MULTI"),
            cmd("WATCH").arg("{t}x"),
            cmd("SUBSCRIBE").arg("c"),
        ] {
            assert_eq!(kind(&[cmds()[0].clone(), refused]), ErrorKind::Unsupported);
        }
        assert_eq!(
            kind(&[cmds()[0].clone(), cmd("DBSIZE")]),
            ErrorKind::Unsupported
        );
        // Keyless commands ride along with keyed ones.
        assert!(transaction_slot(&[cmd("ECHO").arg("x"), cmds()[0].clone()]).is_ok());
        assert!(TxRound::new(&[], limits(), None).is_err());
    }

    #[test]
    fn commit_returns_each_result_runtime_errors_included() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, n) = send(&mut tx);
        assert_eq!((node.clone(), n), (a(), 4));
        tx.judge(
            &node,
            vec![
                status("OK"),
                status("QUEUED"),
                status("QUEUED"),
                exec(vec![
                    Value::Error(Bytes::from_static(b"WRONGTYPE Operation against a key")),
                    Value::Int(2),
                ]),
            ],
        );
        assert!(matches!(
            tx.next(Instant::now(), &cmds(), &map()),
            TxNext::Done
        ));
        let results = done(tx);
        assert_eq!(
            results[0].as_ref().unwrap_err().kind(),
            ErrorKind::ServerError
        );
        assert_eq!(results[1].as_ref().unwrap(), &Value::Int(2));
    }

    #[test]
    fn queue_time_error_aborts_with_the_culprit_named() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        tx.judge(
            &node,
            vec![
                status("OK"),
                status("QUEUED"),
                error("ERR wrong number of arguments for 'set' command"),
                error("EXECABORT Transaction discarded because of previous errors."),
            ],
        );
        let results = done(tx);
        assert_eq!(
            results[0].as_ref().unwrap_err().kind(),
            ErrorKind::TransactionAborted
        );
        let culprit = results[1].as_ref().unwrap_err();
        assert_eq!(culprit.kind(), ErrorKind::ServerError);
        assert!(culprit.to_string().contains("wrong number"));
    }

    #[test]
    fn queued_moved_resends_the_whole_transaction_to_the_new_owner() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        let slot = tx.slot().get();
        tx.judge(
            &node,
            vec![
                status("OK"),
                error(&format!("MOVED {slot} 127.0.0.1:7001")),
                error(&format!("MOVED {slot} 127.0.0.1:7001")),
                error("EXECABORT Transaction discarded because of previous errors."),
            ],
        );
        let effects: Vec<Effect> = tx.take_effects().collect();
        assert_eq!(
            effects,
            vec![Effect::Redirected {
                moved: Some((tx.slot(), b()))
            }]
        );
        let (node, buf, n) = send(&mut tx);
        assert_eq!((node.clone(), n), (b(), 4));
        assert!(buf.starts_with(b"*1\r\n$5\r\nMULTI"));
        tx.judge(&node, committed());
        assert_eq!(done(tx)[0].as_ref().unwrap(), &Value::Int(1));
    }

    #[test]
    fn exec_redirect_means_discarded_and_is_followed() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        let slot = tx.slot().get();
        tx.judge(
            &node,
            vec![
                status("OK"),
                status("QUEUED"),
                status("QUEUED"),
                error(&format!("MOVED {slot} :7001")),
            ],
        );
        // "MOVED <slot> :port": the host of the node that answered.
        let (node, _, _) = send(&mut tx);
        assert_eq!(node, b());
    }

    #[test]
    fn ask_resends_once_with_asking_before_multi() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        let slot = tx.slot().get();
        tx.judge(
            &node,
            vec![
                status("OK"),
                error(&format!("ASK {slot} 127.0.0.1:7001")),
                status("QUEUED"),
                error("EXECABORT Transaction discarded because of previous errors."),
            ],
        );
        assert_eq!(
            tx.take_effects().collect::<Vec<_>>(),
            vec![Effect::Redirected { moved: None }]
        );
        let (node, buf, n) = send(&mut tx);
        assert_eq!((node.clone(), n), (b(), 5));
        assert!(buf.starts_with(b"*1\r\n$6\r\nASKING\r\n*1\r\n$5\r\nMULTI"));
        let mut replies = vec![status("OK")];
        replies.extend(committed());
        tx.judge(&node, replies);
        assert_eq!(
            done(tx)[1].as_ref().unwrap(),
            &Value::SimpleString(Bytes::from_static(b"OK"))
        );
    }

    #[test]
    fn redirect_budget_is_the_transactions() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let slot = tx.slot().get();
        for _ in 0..=limits().max_redirects {
            let (node, _, _) = send(&mut tx);
            tx.judge(
                &node,
                vec![
                    status("OK"),
                    status("QUEUED"),
                    status("QUEUED"),
                    error(&format!("ASK {slot} 127.0.0.1:7001")),
                ],
            );
        }
        assert_eq!(tx.finish().unwrap_err().kind(), ErrorKind::RedirectLimit);
    }

    #[test]
    fn tryagain_waits_then_goes_where_the_map_says() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        tx.judge(
            &node,
            vec![
                status("OK"),
                error("TRYAGAIN Multiple keys request during rehashing of slot"),
                status("QUEUED"),
                error("EXECABORT Transaction discarded because of previous errors."),
            ],
        );
        let now = Instant::now();
        let TxNext::WaitUntil(at) = tx.next(now, &cmds(), &map()) else {
            panic!("expected a pause")
        };
        assert!(at > now);
        let TxNext::Send { node, .. } = tx.next(at, &cmds(), &map()) else {
            panic!("expected a send after the pause")
        };
        assert_eq!(node, a());
        // Retries have their own budget, used up here.
        for _ in 0..limits().max_retries {
            tx.judge(
                &node,
                vec![
                    status("OK"),
                    status("QUEUED"),
                    status("QUEUED"),
                    error("CLUSTERDOWN The cluster is down"),
                ],
            );
            let _ = tx.next(Instant::now() + Duration::from_secs(1), &cmds(), &map());
        }
        assert_eq!(tx.finish().unwrap_err().kind(), ErrorKind::ClusterDown);
    }

    #[test]
    fn a_retry_that_would_wake_after_the_deadline_fails_now() {
        // limits(): the first retry pauses 10 ms.
        let now = Instant::now();
        let mut tx = TxRound::new(&cmds(), limits(), Some(now + Duration::from_millis(5))).unwrap();
        let (node, _, _) = send(&mut tx);
        tx.judge(
            &node,
            vec![
                status("OK"),
                error("TRYAGAIN Multiple keys request during rehashing of slot"),
                status("QUEUED"),
                error("EXECABORT Transaction discarded because of previous errors."),
            ],
        );
        assert!(matches!(tx.next(now, &cmds(), &map()), TxNext::Done));
        assert_eq!(tx.finish().unwrap_err().kind(), ErrorKind::Timeout);
    }

    #[test]
    fn written_then_failed_is_never_resent() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        let lost = || {
            Some(RoundReply::Failed {
                error: Error::new(ErrorKind::Io, "connection reset"),
                sent: true,
            })
        };
        tx.judge(&node, vec![status("OK"), lost(), lost(), lost()]);
        assert!(matches!(
            tx.next(Instant::now(), &cmds(), &map()),
            TxNext::Done
        ));
        let e = tx.finish().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("not resent"));
    }

    #[test]
    fn unsent_failure_is_retried() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        let unsent = || {
            Some(RoundReply::Failed {
                error: Error::new(ErrorKind::Io, "connect refused"),
                sent: false,
            })
        };
        tx.judge(&node, vec![unsent(), unsent(), unsent(), unsent()]);
        assert!(tx.take_effects().any(|e| e == Effect::NodeFailed(a())));
        let TxNext::WaitUntil(at) = tx.next(Instant::now(), &cmds(), &map()) else {
            panic!("expected a pause before the retry")
        };
        assert!(matches!(tx.next(at, &cmds(), &map()), TxNext::Send { .. }));
    }

    #[test]
    fn deadline_fails_the_transaction_as_outcome_unknown() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        tx.deadline_passed();
        tx.judge(&node, vec![status("OK"), status("QUEUED"), None, None]);
        assert!(tx.take_effects().any(|e| e == Effect::TimedOut(a())));
        let e = tx.finish().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.to_string().contains("may have run"));
    }

    #[test]
    fn what_each_end_of_a_session_means_for_its_connection() {
        use crate::core::pipeline::Pipeline;
        // WATCH's reply: watching, the slot elsewhere (start again), or a refusal.
        assert!(
            watch_answered(Value::SimpleString(Bytes::from_static(b"OK")))
                .unwrap()
                .is_none()
        );
        let moved = Value::Error(Bytes::from_static(b"MOVED 5 10.0.0.2:7000"));
        assert!(matches!(
            watch_answered(moved),
            Ok(Some(AttemptEnd::Moved(_)))
        ));
        let denied = Value::Error(Bytes::from_static(b"NOPERM no"));
        assert!(watch_answered(denied).is_err());
        // A read that found the slot gone starts again; any other error ends it.
        let ask = Error::new(ErrorKind::Ask, "ASK 5 10.0.0.2:7000");
        assert!(matches!(session_failed(ask), Ok(AttemptEnd::Moved(_))));
        assert!(session_failed(Error::new(ErrorKind::Io, "reset")).is_err());
        // The transaction: a commit's results, the first error raised when asked.
        let mut pipe = Pipeline::new();
        pipe.add(cmd("INCR").arg("k"));
        let results = vec![Err(Error::new(ErrorKind::ServerError, "WRONGTYPE"))];
        let done = transaction_ended(Ok(TxOutcome::Done(results.clone())), &pipe).unwrap();
        assert!(matches!(done, SessionEnd::Done(r) if r.len() == 1));
        pipe.raise_on_error(true);
        assert!(transaction_ended(Ok(TxOutcome::Done(results)), &pipe).is_err());
        // A conflict and an EXECABORT for a moved slot leave the connection clean; a
        // refusal for now does not (it may be the connection's loss).
        assert!(matches!(
            transaction_ended(Ok(TxOutcome::Conflict), &pipe),
            Ok(SessionEnd::Again {
                end: AttemptEnd::Conflict,
                clean: true
            })
        ));
        let moved = Error::new(ErrorKind::Moved, "MOVED 5 10.0.0.2:7000");
        assert!(matches!(
            transaction_ended(Err(moved), &pipe),
            Ok(SessionEnd::Again {
                end: AttemptEnd::Moved(_),
                clean: true
            })
        ));
        let refusal = Error::new(ErrorKind::ServerError, "LOADING");
        assert!(matches!(
            transaction_ended(
                Ok(TxOutcome::Unwatched {
                    refusal,
                    pause: Duration::ZERO
                }),
                &pipe
            ),
            Ok(SessionEnd::Again {
                end: AttemptEnd::Refused(_),
                clean: false
            })
        ));
        assert!(transaction_ended(Err(Error::new(ErrorKind::Timeout, "late")), &pipe).is_err());
    }

    #[test]
    fn nil_exec_is_a_conflict_and_pinned_redirects_end_the_session() {
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap().pinned(a());
        let (node, _, _) = send(&mut tx);
        tx.judge(
            &node,
            vec![
                status("OK"),
                status("QUEUED"),
                status("QUEUED"),
                Some(RoundReply::Value(Value::Nil)),
            ],
        );
        assert!(matches!(tx.finish(), Ok(TxOutcome::Conflict)));

        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap().pinned(a());
        let slot = tx.slot().get();
        let (node, _, _) = send(&mut tx);
        tx.judge(
            &node,
            vec![
                status("OK"),
                error(&format!("MOVED {slot} 127.0.0.1:7001")),
                status("QUEUED"),
                error("EXECABORT Transaction discarded because of previous errors."),
            ],
        );
        let e = tx.finish().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Moved);
        assert_eq!(
            e.redirect_target().map(|(_, to)| to),
            Some("127.0.0.1:7001")
        );
    }

    /// Every `EXEC` drops the connection's watches, aborted or not: a `WATCH` session's
    /// transaction refused for now must come back to the session (which watches again),
    /// never be resent by the round itself, where it would run unguarded.
    #[test]
    fn a_pinned_transaction_refused_for_now_is_never_resent_without_its_watches() {
        let refusals = [
            // Queue time: TRYAGAIN on a command, EXECABORT at EXEC.
            vec![
                status("OK"),
                error("TRYAGAIN Multiple keys request during rehashing of slot"),
                status("QUEUED"),
                error("EXECABORT Transaction discarded because of previous errors."),
            ],
            // EXEC itself refused.
            vec![
                status("OK"),
                status("QUEUED"),
                status("QUEUED"),
                error("CLUSTERDOWN The cluster is down"),
            ],
        ];
        for replies in refusals {
            let mut tx = TxRound::new(&cmds(), limits(), None).unwrap().pinned(a());
            let (node, _, _) = send(&mut tx);
            tx.judge(&node, replies);
            assert!(matches!(
                tx.next(Instant::now(), &cmds(), &map()),
                TxNext::Done
            ));
            match tx.finish() {
                Ok(TxOutcome::Unwatched { pause, refusal }) => {
                    assert!(pause >= Duration::from_millis(10));
                    assert!(
                        refusal.is_transient() || refusal.kind() == ErrorKind::ServerError,
                        "{refusal}"
                    );
                }
                other => panic!("expected the session to start again, got {other:?}"),
            }
        }
        // Unpinned, the same refusal is retried by the round itself (no watch to lose).
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        tx.judge(
            &node,
            vec![
                status("OK"),
                status("QUEUED"),
                status("QUEUED"),
                error("CLUSTERDOWN The cluster is down"),
            ],
        );
        assert!(matches!(
            tx.next(Instant::now(), &cmds(), &map()),
            TxNext::WaitUntil(_)
        ));
    }

    #[test]
    fn watch_sessions_check_their_slot_and_count_their_redirects() {
        let (watch, slot) = watch_command(&["{t}x", "{t}y"]).unwrap();
        assert_eq!(watch.name(), b"WATCH");
        assert_eq!(watch.len(), 3);
        assert!(check_watched_transaction(&cmds(), slot).is_ok());
        let other = [cmd("INCR").arg("elsewhere")];
        assert_eq!(
            check_watched_transaction(&other, slot).unwrap_err().kind(),
            ErrorKind::CrossSlot
        );
        let no_keys: [&str; 0] = [];
        assert_eq!(
            watch_command(&no_keys).unwrap_err().kind(),
            ErrorKind::InvalidCommand
        );

        let node = a();
        let mut redirects = 0;
        let moved = Error::redirect(ErrorKind::Moved, Slot::new(5).unwrap(), ":7001");
        assert_eq!(
            session_redirect(&mut redirects, 2, &moved, &node).unwrap(),
            Some((Slot::new(5).unwrap(), NodeAddr::new("127.0.0.1", 7001))),
            "an empty host is the answering node's"
        );
        let ask = Error::redirect(ErrorKind::Ask, Slot::new(5).unwrap(), "127.0.0.1:7001");
        assert_eq!(
            session_redirect(&mut redirects, 2, &ask, &node).unwrap(),
            None
        );
        let e = session_redirect(&mut redirects, 2, &moved, &node).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RedirectLimit);
    }

    #[test]
    fn malformed_exec_replies_are_typed_errors() {
        for bad in [
            exec(vec![Value::Int(1)]),
            Some(RoundReply::Value(Value::Int(3))),
        ] {
            let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
            let (node, _, _) = send(&mut tx);
            tx.judge(
                &node,
                vec![status("OK"), status("QUEUED"), status("QUEUED"), bad],
            );
            assert_eq!(tx.finish().unwrap_err().kind(), ErrorKind::Protocol);
        }
        let mut tx = TxRound::new(&cmds(), limits(), None).unwrap();
        let (node, _, _) = send(&mut tx);
        tx.judge(&node, vec![]);
        assert_eq!(tx.finish().unwrap_err().kind(), ErrorKind::Protocol);
    }

    fn watch_node(start: AttemptStart) -> NodeAddr {
        match start {
            AttemptStart::Watch(node) => node,
            other => panic!("expected an attempt, got {other:?}"),
        }
    }

    #[test]
    fn watch_attempts_run_out_with_conflict_or_the_last_refusal() {
        let node = NodeAddr::new("10.0.0.1", 7000);
        let map = SlotMap::split_evenly(std::slice::from_ref(&node));
        let slot = Slot::new(7).unwrap();
        let counters = Counters::default();
        let refusal = || Error::new(ErrorKind::ServerError, "OOM command not allowed");
        // Three conflicts in three attempts: WatchConflict, two retries counted... and the
        // third too (each conflict counts, as the drivers always did).
        let mut a = WatchAttempts::new(slot, limits(), 3);
        for _ in 0..3 {
            let n = watch_node(a.start(&map));
            let next = a.end(&n, AttemptEnd::Conflict, &counters).unwrap();
            assert_eq!(
                next,
                AttemptNext {
                    moved: None,
                    refresh: false,
                    pause: Duration::ZERO
                }
            );
        }
        match a.start(&map) {
            AttemptStart::GiveUp(e) => assert_eq!(e.kind(), ErrorKind::WatchConflict),
            other => panic!("{other:?}"),
        }
        assert_eq!(counters.snapshot().retries, 3);
        // A refusal last: the refusal is the error; a conflict after it clears it.
        let mut a = WatchAttempts::new(slot, limits(), 2);
        let n = watch_node(a.start(&map));
        let next = a
            .end(&n, AttemptEnd::Refused(refusal()), &counters)
            .unwrap();
        assert_eq!(next.pause, Duration::from_millis(10));
        let n = watch_node(a.start(&map));
        let next = a
            .end(&n, AttemptEnd::Refused(refusal()), &counters)
            .unwrap();
        assert_eq!(next.pause, Duration::from_millis(20), "the backoff grows");
        match a.start(&map) {
            AttemptStart::GiveUp(e) => assert_eq!(e.kind(), ErrorKind::ServerError),
            other => panic!("{other:?}"),
        }
        let mut a = WatchAttempts::new(slot, limits(), 2);
        let n = watch_node(a.start(&map));
        a.end(&n, AttemptEnd::Refused(refusal()), &counters)
            .unwrap();
        let n = watch_node(a.start(&map));
        a.end(&n, AttemptEnd::Conflict, &counters).unwrap();
        match a.start(&map) {
            AttemptStart::GiveUp(e) => assert_eq!(e.kind(), ErrorKind::WatchConflict),
            other => panic!("{other:?}"),
        }
        // Zero attempts asked: one all the same.
        let mut a = WatchAttempts::new(slot, limits(), 0);
        watch_node(a.start(&map));
        assert!(matches!(a.start(&map), AttemptStart::GiveUp(_)));
    }

    #[test]
    fn refusals_beyond_the_retry_budget_are_the_error_at_once() {
        let node = NodeAddr::new("10.0.0.1", 7000);
        let map = SlotMap::split_evenly(std::slice::from_ref(&node));
        let counters = Counters::default();
        let mut a = WatchAttempts::new(Slot::new(1).unwrap(), limits(), 10);
        for _ in 0..2 {
            let n = watch_node(a.start(&map));
            assert!(a
                .end(
                    &n,
                    AttemptEnd::Refused(Error::new(ErrorKind::ServerError, "LOADING")),
                    &counters
                )
                .is_ok());
        }
        let n = watch_node(a.start(&map));
        let e = a
            .end(
                &n,
                AttemptEnd::Refused(Error::new(ErrorKind::ServerError, "LOADING x")),
                &counters,
            )
            .unwrap_err();
        assert_eq!(e.detail(), "LOADING x");
        assert_eq!(
            counters.snapshot().retries,
            2,
            "the refusal that ends it is no retry"
        );
    }

    #[test]
    fn a_moved_slot_follows_the_owner_and_an_ask_pauses_and_refreshes() {
        let node = NodeAddr::new("10.0.0.1", 7000);
        let map = SlotMap::split_evenly(std::slice::from_ref(&node));
        let slot = Slot::new(42).unwrap();
        let counters = Counters::default();
        let mut a = WatchAttempts::new(slot, limits(), 10);
        let n = watch_node(a.start(&map));
        let moved = Error::redirect(ErrorKind::Moved, slot, ":7001");
        let next = a
            .end(&n, AttemptEnd::Moved(moved.clone()), &counters)
            .unwrap();
        assert_eq!(
            next,
            AttemptNext {
                moved: Some((slot, NodeAddr::new("10.0.0.1", 7001))),
                refresh: false,
                pause: Duration::ZERO
            },
            "an empty host is the answering node's"
        );
        let ask = Error::redirect(ErrorKind::Ask, slot, "10.0.0.2:7000");
        let next = a.end(&n, AttemptEnd::Moved(ask), &counters).unwrap();
        assert_eq!(
            next,
            AttemptNext {
                moved: None,
                refresh: true,
                pause: Duration::from_millis(10)
            }
        );
        assert!(a
            .end(&n, AttemptEnd::Moved(moved.clone()), &counters)
            .is_ok());
        let e = a.end(&n, AttemptEnd::Moved(moved), &counters).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RedirectLimit);
        assert_eq!(counters.snapshot().retries, 0, "redirects are not retries");
        // No owner for the slot.
        let mut a = WatchAttempts::new(slot, limits(), 10);
        match a.start(&SlotMap::empty()) {
            AttemptStart::NoNode(e) => assert_eq!(e.kind(), ErrorKind::ClusterDown),
            other => panic!("{other:?}"),
        }
    }
}
