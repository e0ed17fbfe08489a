//! The round state machine: what to do with a pipeline's replies, with no I/O and no clock.
//!
//! A request runs in rounds. The first round sends every command to the node the slot map
//! names; each reply is then judged: kept, redirected (MOVED: the map learns the slot's
//! new owner and the command is resent alone; ASK: resent once with `ASKING`), retried
//! after a backoff (TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, or a connection that died
//! before the command was written), or failed with a typed error. The redirected and
//! retried commands form the next round.
//!
//! [`Rounds`] holds all of that as data, in the shape of quinn-proto: the driver feeds it
//! replies and the current time, and it answers with [`Next`]: "send these batches", "wake
//! me at T", or "done". The driver only moves bytes and time, so every path here (each
//! redirect, each retry, the deadline, both budgets) is unit-tested without a server.
//!
//! Two budgets, never shared: `max_redirects` counts MOVED/ASK hops (a migration may
//! legitimately need several), `max_retries` counts transient failures. Five TRYAGAINs
//! during a migration therefore do not use up the ASK that follows them.
//!
//! A command whose bytes reached a connection that then failed is never resent: the server
//! may have run it. Only commands that were never written are retried after a failure.

use std::time::{Duration, Instant};

use crate::core::cmd::Cmd;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::judgement::Judgement;
use crate::core::plan::{plan_judged, plan_resend, NodeBatch, ReadTarget};
pub use crate::core::redirect::{parse_redirect, Redirect};
use crate::core::reply::server_error;
use crate::core::resp::Value;
use crate::core::route::Route;
use crate::core::slot::Slot;
use crate::core::topology::{NodeAddr, SlotMap};

/// Why a command should be retried later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// `TRYAGAIN`: a multi-key command during a migration, keys split for now.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster is not serving this slot at the moment.
    ClusterDown,
    /// `LOADING`: the node is loading its dataset.
    Loading,
    /// `MASTERDOWN`: a replica lost its primary.
    MasterDown,
}

/// What a reply means for the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyAction {
    /// Keep it (error replies that are not redirects or transient states included).
    Accept,
    /// Follow the redirect.
    Redirect(Redirect),
    /// Try again after a pause.
    Retry(RetryReason),
}

/// Classifies a reply by its error code, if it is an error.
pub fn classify_reply(reply: &Value) -> ReplyAction {
    let Value::Error(line) = reply else {
        return ReplyAction::Accept;
    };
    let code = line.split(|&b| b == b' ').next().unwrap_or(b"");
    match code {
        b"MOVED" | b"ASK" => match parse_redirect(line) {
            Some(r) => ReplyAction::Redirect(r),
            None => ReplyAction::Accept,
        },
        b"TRYAGAIN" => ReplyAction::Retry(RetryReason::TryAgain),
        b"CLUSTERDOWN" => ReplyAction::Retry(RetryReason::ClusterDown),
        b"LOADING" => ReplyAction::Retry(RetryReason::Loading),
        b"MASTERDOWN" => ReplyAction::Retry(RetryReason::MasterDown),
        _ => ReplyAction::Accept,
    }
}

/// The budgets and pauses of one request (from [`Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundLimits {
    /// MOVED/ASK hops per command before [`ErrorKind::RedirectLimit`].
    pub max_redirects: u32,
    /// Retries per command after TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN or an unsent
    /// command's connection failure, before the error is returned.
    pub max_retries: u32,
    /// First retry pause; doubled for each further retry.
    pub retry_base_delay: Duration,
    /// Ceiling of the retry pause.
    pub retry_max_delay: Duration,
}

impl RoundLimits {
    /// The budgets `config` sets for a request's rounds.
    pub(crate) fn of(config: &Config) -> RoundLimits {
        RoundLimits {
            max_redirects: config.max_redirects,
            max_retries: config.max_retries,
            retry_base_delay: config.retry_base_delay,
            retry_max_delay: config.retry_max_delay,
        }
    }
}

/// The verdict on one reply.
#[derive(Debug)]
pub enum Decision {
    /// The reply is the command's result.
    Accept,
    /// Send the command again, alone, to `to`. Counts against `max_redirects`.
    Resend {
        /// The target (an empty host means the host of the node that answered).
        to: NodeAddr,
        /// Precede it with `ASKING` (ASK redirect).
        asking: bool,
        /// For MOVED: the slot whose owner changed.
        moved_slot: Option<Slot>,
    },
    /// Retry after a backoff. Counts against `max_retries`.
    RetryLater(RetryReason),
    /// Give up with this error.
    Fail(Error),
}

/// Decides what to do with `reply`, given the redirects and retries the command has had.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use redis_cluster_uring::core::round::{decide, Decision, RoundLimits};
/// use redis_cluster_uring::{ErrorKind, Value};
/// let limits = RoundLimits {
///     max_redirects: 2,
///     max_retries: 3,
///     retry_base_delay: Duration::from_millis(10),
///     retry_max_delay: Duration::from_millis(100),
/// };
/// let moved = Value::Error(Bytes::from_static(b"MOVED 1 10.0.0.2:7000"));
/// assert!(matches!(decide(&moved, 0, 0, &limits), Decision::Resend { asking: false, .. }));
/// // Retries taken do not use up the redirect budget.
/// assert!(matches!(decide(&moved, 0, 3, &limits), Decision::Resend { .. }));
/// match decide(&moved, 2, 0, &limits) {
///     Decision::Fail(e) => assert_eq!(e.kind(), ErrorKind::RedirectLimit),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn decide(reply: &Value, redirects: u32, retries: u32, limits: &RoundLimits) -> Decision {
    match classify_reply(reply) {
        ReplyAction::Accept => Decision::Accept,
        ReplyAction::Redirect(redirect) => {
            let (slot, addr, ask) = match redirect {
                Redirect::Moved { slot, addr } => (slot, addr, false),
                Redirect::Ask { slot, addr } => (slot, addr, true),
            };
            if redirects >= limits.max_redirects {
                let detail = format!(
                    "gave up after {redirects} redirects; last: {} {slot} {addr}",
                    if ask { "ASK" } else { "MOVED" }
                );
                return Decision::Fail(
                    Error::new(ErrorKind::RedirectLimit, detail)
                        .with_redirect(slot, &addr.to_string()),
                );
            }
            Decision::Resend {
                moved_slot: (!ask).then_some(slot),
                to: addr,
                asking: ask,
            }
        }
        ReplyAction::Retry(reason) => {
            if retries >= limits.max_retries {
                let line = reply.as_error().unwrap_or(b"");
                let kind = match reason {
                    RetryReason::ClusterDown | RetryReason::MasterDown => ErrorKind::ClusterDown,
                    _ => ErrorKind::ServerError,
                };
                return Decision::Fail(Error::new(
                    kind,
                    format!(
                        "{} (after {retries} retries)",
                        String::from_utf8_lossy(line)
                    ),
                ));
            }
            Decision::RetryLater(reason)
        }
    }
}

/// Exponential backoff: `base * 2^(attempt-1)`, capped at `max` (attempt 0 waits `base`).
///
/// ```
/// use std::time::Duration;
/// use redis_cluster_uring::core::round::backoff;
/// let ms = Duration::from_millis;
/// assert_eq!(backoff(1, ms(10), ms(100)), ms(10));
/// assert_eq!(backoff(3, ms(10), ms(100)), ms(40));
/// assert_eq!(backoff(30, ms(10), ms(100)), ms(100));
/// ```
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let shift = attempt.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << shift).min(max)
}

/// What one command got in one round.
#[derive(Debug)]
pub enum RoundReply {
    /// The server's reply (error replies included).
    Value(Value),
    /// The connection failed. `sent`: whether the command's bytes had been handed to the
    /// kernel; if so the server may have executed it, and it is not retried.
    Failed {
        /// Why.
        error: Error,
        /// Whether the bytes were written.
        sent: bool,
    },
}

impl RoundReply {
    /// The one reply of a single-command round trip as a result: the value, the failure,
    /// or (`None`) a timeout when the deadline passed, a missing reply otherwise.
    pub(crate) fn single(
        reply: Option<RoundReply>,
        timed_out: bool,
        node: &NodeAddr,
    ) -> Result<Value> {
        match reply {
            Some(RoundReply::Value(v)) => Ok(v),
            Some(RoundReply::Failed { error, .. }) => Err(error),
            None if timed_out => Err(Error::new(
                ErrorKind::Timeout,
                format!("{node} did not answer in time"),
            )),
            None => Err(Error::new(ErrorKind::Io, format!("no reply from {node}"))),
        }
    }
}

/// Something the driver must do besides sending: the machine itself touches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A redirect was followed; for MOVED, the map must point `slot` at `to` and a refresh
    /// should follow (the cluster changed).
    Redirected {
        /// The slot and its new owner, for MOVED; `None` for ASK.
        moved: Option<(Slot, NodeAddr)>,
    },
    /// A command will be retried after a pause.
    Retrying,
    /// A node failed (connection error): refresh the map. Once per node per round.
    NodeFailed(NodeAddr),
    /// The slot map is known to be out of date (a redirect to a node whose endpoint the
    /// cluster does not know): refresh it.
    RefreshMap,
    /// A request to this node hit its deadline: count it against the connection's health
    /// and refresh the map (a node that stopped answering may have been replaced). Once
    /// per node per round.
    TimedOut(NodeAddr),
}

/// What the driver does next.
#[derive(Debug)]
pub enum Next {
    /// Send these batches (all at once in parallel mode), wait for their replies (or the
    /// deadline), judge them, then ask again.
    Send(Vec<NodeBatch>),
    /// Nothing to send before this instant (a retry backoff); ask again then.
    WaitUntil(Instant),
    /// Every command has its result: call [`Rounds::finish`].
    Done,
}

/// The state of one request (a single command or a pipeline) across its rounds.
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use redis_cluster_uring::core::round::{Next, RoundLimits, RoundReply, Rounds};
/// use redis_cluster_uring::{cmd, NodeAddr, SlotMap, Value};
/// let map = SlotMap::split_evenly(&[NodeAddr::new("127.0.0.1", 7000)]);
/// let limits = RoundLimits {
///     max_redirects: 5,
///     max_retries: 5,
///     retry_base_delay: Duration::from_millis(10),
///     retry_max_delay: Duration::from_millis(100),
/// };
/// let cmds = [cmd("GET").arg("k")];
/// let mut rounds = Rounds::new(cmds.len(), limits, None);
/// let Next::Send(batches) = rounds.start(&cmds, &map) else { unreachable!() };
/// // The driver writes the batches and reads the replies:
/// let node = batches[0].node.clone();
/// rounds.judge(0, &node, Some(RoundReply::Value(Value::Bulk(Bytes::from_static(b"v")))));
/// assert!(matches!(rounds.next(Instant::now(), &cmds, &map, &[]), Next::Done));
/// assert_eq!(rounds.finish()[0].as_ref().unwrap(), &Value::Bulk(Bytes::from_static(b"v")));
/// ```
#[derive(Debug)]
pub struct Rounds {
    results: Vec<Option<Result<Value>>>,
    /// Per command: redirects taken, retries taken (one vector: one allocation).
    taken: Vec<(u32, u32)>,
    limits: RoundLimits,
    deadline: Option<Instant>,
    /// Redirected commands for the next round: index, target, `ASKING` first.
    resend: Vec<(usize, NodeAddr, bool)>,
    /// Commands waiting for their backoff to pass.
    retry: Vec<usize>,
    /// When the waiting retries may go.
    retry_at: Option<Instant>,
    /// Retries were added since `retry_at` was last computed.
    fresh_retries: bool,
    /// The last round ended at the deadline.
    timed_out: bool,
    effects: Vec<Effect>,
    /// Commands pinned to a node (a node the caller named, or one copy of a multi-node
    /// command): command i always goes to `pins[i]` when it is `Some`, and its redirects
    /// are returned instead of followed. Empty: nothing pinned.
    pins: Vec<Option<NodeAddr>>,
    /// Where each shard's read-only commands go (empty: to primaries).
    reads: Vec<ReadTarget>,
    /// Each command's judgement (class, slot, read-only), given by the request that
    /// judged them, or found at the first planning; routing a retry reads it too.
    judged: Vec<Judgement>,
}

impl Rounds {
    /// A request of `n` commands with these budgets; `deadline` ends it (commands still
    /// without a result then fail with [`ErrorKind::Timeout`]).
    pub fn new(n: usize, limits: RoundLimits, deadline: Option<Instant>) -> Rounds {
        let mut results = Vec::with_capacity(n);
        results.resize_with(n, || None);
        Rounds {
            results,
            taken: vec![(0, 0); n],
            limits,
            deadline,
            resend: Vec::new(),
            retry: Vec::new(),
            retry_at: None,
            fresh_retries: false,
            timed_out: false,
            effects: Vec::new(),
            pins: Vec::new(),
            reads: Vec::new(),
            judged: Vec::new(),
        }
    }

    /// Sends read-only commands of shard i to `reads[i]` in the first round (replica
    /// reads). Redirected and retried commands go to primaries: a replica that answers
    /// MOVED, or fails, falls back to the primary.
    pub fn reading(mut self, reads: Vec<ReadTarget>) -> Rounds {
        self.reads = reads;
        self
    }

    /// Pins command i to `targets[i]` (a node the caller named): no routing, no redirect
    /// followed (a MOVED or ASK comes back as the command's error, of kind
    /// [`ErrorKind::Moved`] or [`ErrorKind::Ask`]), retries to the same node.
    pub fn pinned(mut self, targets: Vec<NodeAddr>) -> Rounds {
        self.pins = targets.into_iter().map(Some).collect();
        self
    }

    /// Pins some commands (`Some`) and routes the others by the map (`None`).
    pub fn pinned_some(mut self, pins: Vec<Option<NodeAddr>>) -> Rounds {
        self.pins = pins;
        self
    }

    /// [`Rounds::pinned_some`] in place.
    pub(crate) fn set_pins(&mut self, pins: Vec<Option<NodeAddr>>) {
        self.pins = pins;
    }

    /// [`Rounds::reading`] in place.
    pub(crate) fn set_reads(&mut self, reads: Vec<ReadTarget>) {
        self.reads = reads;
    }

    /// The commands' judgements, made when they entered the request (`judged[i]` is
    /// command i's): planning and retries route by them instead of judging again.
    pub(crate) fn set_judged(&mut self, judged: Vec<Judgement>) {
        self.judged = judged;
    }

    /// Judges the commands unless the request did.
    fn judge_commands(&mut self, cmds: &[Cmd]) {
        if self.judged.len() != cmds.len() {
            self.judged = Judgement::all(cmds);
        }
    }

    fn pin(&self, index: usize) -> Option<&NodeAddr> {
        self.pins.get(index).and_then(Option::as_ref)
    }

    /// Plans the first round. Commands that cannot be routed (cross-slot keys, a slot
    /// nobody serves) fail alone here.
    pub fn start(&mut self, cmds: &[Cmd], map: &SlotMap) -> Next {
        if !self.pins.is_empty() && self.pins.iter().all(Option::is_some) {
            let items: Vec<(usize, NodeAddr, bool)> = self
                .pins
                .iter()
                .take(cmds.len())
                .enumerate()
                .filter_map(|(i, node)| node.clone().map(|n| (i, n, false)))
                .collect();
            return self.start_with(plan_resend(&items, cmds));
        }
        self.judge_commands(cmds);
        let plan = plan_judged(cmds, &self.judged, map, &self.reads, &self.pins);
        for (index, error) in plan.failed {
            // A slot nobody serves: the map is incomplete or out of date.
            if error.kind() == ErrorKind::ClusterDown {
                self.effect_once(Effect::RefreshMap);
            }
            self.set(index, Err(error));
        }
        if plan.batches.is_empty() {
            Next::Done
        } else {
            Next::Send(plan.batches)
        }
    }

    /// Starts from batches the caller built (a command sent to a named node), with no
    /// planning.
    pub fn start_with(&mut self, batches: Vec<NodeBatch>) -> Next {
        if batches.is_empty() {
            Next::Done
        } else {
            Next::Send(batches)
        }
    }

    /// The last round ended at the deadline: commands without a reply fail with
    /// `Timeout`, and nothing more is sent. Call before judging that round's replies.
    pub fn deadline_passed(&mut self) {
        self.timed_out = true;
    }

    /// Judges the reply of command `index`, sent to `node` in the last round. `None`: no
    /// reply came (the deadline passed, or the reply was lost with its connection).
    pub fn judge(&mut self, index: usize, node: &NodeAddr, reply: Option<RoundReply>) {
        if index >= self.results.len() {
            return;
        }
        match reply {
            // Anything but an error reply is the command's result: no redirect, no
            // retry, no budget to look at (the usual case, decided without `decide`).
            Some(RoundReply::Value(value)) if !matches!(value, Value::Error(_)) => {
                self.set(index, Ok(value))
            }
            Some(RoundReply::Value(value)) => {
                let (redirects, retries) = self.taken[index];
                // A named node's redirect goes back to the caller, whatever the budget.
                let pinned_redirect = self.pin(index).is_some()
                    && matches!(classify_reply(&value), ReplyAction::Redirect(_));
                let decision = if pinned_redirect {
                    Decision::Accept
                } else {
                    decide(&value, redirects, retries, &self.limits)
                };
                match decision {
                    Decision::Accept => self.set(index, accept(value)),
                    Decision::Resend { to, .. } if to.host == "?" => {
                        // `cluster-preferred-endpoint-type hostname` and the target has
                        // none: there is no address to follow, and guessing one would
                        // send the command to the wrong node.
                        self.effect_once(Effect::RefreshMap);
                        self.set(
                            index,
                            Err(Error::new(
                                ErrorKind::ClusterDown,
                                format!(
                                    "redirected to a node whose endpoint the cluster does not know ({to})"
                                ),
                            )),
                        );
                    }
                    Decision::Resend {
                        to,
                        asking,
                        moved_slot,
                    } => {
                        self.taken[index].0 += 1;
                        // "MOVED 3999 :6381": the node does not know its own host name;
                        // the one we asked is meant.
                        let to = if to.host.is_empty() {
                            NodeAddr::new(node.host.clone(), to.port)
                        } else {
                            to
                        };
                        self.effects.push(Effect::Redirected {
                            moved: moved_slot.map(|slot| (slot, to.clone())),
                        });
                        self.resend.push((index, to, asking));
                    }
                    Decision::RetryLater(_) => self.schedule_retry(index),
                    Decision::Fail(error) => self.set(index, Err(error)),
                }
            }
            Some(RoundReply::Failed { error, sent }) => {
                // A full queue says the node is slow, not that it failed; a shutdown is
                // the client's own doing, and nothing is retried after it.
                let kind = error.kind();
                if kind != ErrorKind::Overloaded && kind != ErrorKind::Shutdown {
                    self.effect_once(Effect::NodeFailed(node.clone()));
                }
                if !sent
                    && kind != ErrorKind::Shutdown
                    && self.taken[index].1 < self.limits.max_retries
                {
                    self.schedule_retry(index);
                } else {
                    self.set(index, Err(error));
                }
            }
            None if self.timed_out => {
                self.effect_once(Effect::TimedOut(node.clone()));
                self.set(
                    index,
                    Err(Error::new(
                        ErrorKind::Timeout,
                        format!("{node} did not answer in time"),
                    )),
                )
            }
            None => self.set(
                index,
                Err(Error::new(ErrorKind::Io, format!("no reply from {node}"))),
            ),
        }
    }

    fn effect_once(&mut self, effect: Effect) {
        if !self.effects.contains(&effect) {
            self.effects.push(effect);
        }
    }

    fn schedule_retry(&mut self, index: usize) {
        self.fresh_retries = true;
        self.taken[index].1 += 1;
        self.retry.push(index);
        self.effects.push(Effect::Retrying);
    }

    fn set(&mut self, index: usize, result: Result<Value>) {
        if let Some(slot) = self.results.get_mut(index) {
            *slot = Some(result);
        }
    }

    /// Effects of the replies judged so far, for the driver to apply.
    pub fn take_effects(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    /// What to do now, after the last round was judged (or a wait ended). Redirects go at
    /// once; retries wait for their backoff, routed by the map as it is when they go.
    pub fn next(&mut self, now: Instant, cmds: &[Cmd], map: &SlotMap, seeds: &[NodeAddr]) -> Next {
        if self.timed_out || self.deadline.is_some_and(|d| now >= d) {
            let late: Vec<usize> = self
                .resend
                .drain(..)
                .map(|r| r.0)
                .chain(self.retry.drain(..))
                .collect();
            for index in late {
                self.set(
                    index,
                    Err(Error::new(
                        ErrorKind::Timeout,
                        "deadline passed before the command could be redirected or retried",
                    )),
                );
            }
            return Next::Done;
        }
        // A retry's backoff starts when it is first seen here, not after the redirects
        // of the same round have been answered.
        if self.fresh_retries {
            self.fresh_retries = false;
            let worst = self
                .retry
                .iter()
                .map(|&i| self.taken[i].1)
                .max()
                .unwrap_or(1);
            let pause = backoff(
                worst,
                self.limits.retry_base_delay,
                self.limits.retry_max_delay,
            );
            let at = saturating_later(now, pause);
            let at = self.retry_at.map_or(at, |earlier| earlier.max(at));
            if self.deadline.is_some_and(|d| d <= at) {
                for index in std::mem::take(&mut self.retry) {
                    self.set(
                        index,
                        Err(Error::new(
                            ErrorKind::Timeout,
                            "deadline passed while waiting to retry",
                        )),
                    );
                }
                self.retry_at = None;
            } else {
                self.retry_at = Some(at);
            }
        }
        let mut items = std::mem::take(&mut self.resend);
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            for index in std::mem::take(&mut self.retry) {
                let pinned = self.pin(index).cloned();
                let target = match pinned {
                    Some(node) => Some(Ok(node)),
                    None => cmds.get(index).map(|c| {
                        let judged = match self.judged.get(index) {
                            Some(j) => *j,
                            None => Judgement::of(c),
                        };
                        route_judged(c, &judged, map, seeds)
                    }),
                };
                match target {
                    Some(Ok(node)) => items.push((index, node, false)),
                    Some(Err(e)) => {
                        if e.kind() == ErrorKind::ClusterDown {
                            self.effect_once(Effect::RefreshMap);
                        }
                        self.set(index, Err(e))
                    }
                    None => {}
                }
            }
        }
        if !items.is_empty() {
            return Next::Send(plan_resend(&items, cmds));
        }
        match self.retry_at {
            Some(at) => Next::WaitUntil(at),
            None => Next::Done,
        }
    }

    /// The results in the original order. A command left without one (the driver stopped
    /// early, as serial mode does at the deadline) gets `Timeout`.
    pub fn finish(self) -> Vec<Result<Value>> {
        self.results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        "deadline passed before sending",
                    ))
                })
            })
            .collect()
    }
}

/// `now + d`, or a year from now when `d` is too large to add (a caller's
/// `Duration::MAX` is "a very long time", not a panic).
pub(crate) fn saturating_later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// An error reply becomes that command's `Err`; anything else its `Ok`.
fn accept(value: Value) -> Result<Value> {
    match value {
        Value::Error(line) => Err(server_error(&line)),
        v => Ok(v),
    }
}

/// The node a command goes to now: its slot's primary, or any known node when keyless.
pub fn route_target(command: &Cmd, map: &SlotMap, seeds: &[NodeAddr]) -> Result<NodeAddr> {
    route_judged(command, &Judgement::of(command), map, seeds)
}

/// [`route_target`] for a command judged already.
fn route_judged(
    command: &Cmd,
    judged: &Judgement,
    map: &SlotMap,
    seeds: &[NodeAddr],
) -> Result<NodeAddr> {
    match judged.route(command)? {
        Route::Slot(slot) => map.node_for(slot).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::ClusterDown,
                format!("no node serves slot {slot}"),
            )
        }),
        Route::AnyNode => map
            .shards()
            .first()
            .map(|s| s.primary.clone())
            .or_else(|| seeds.first().cloned())
            .ok_or_else(|| Error::new(ErrorKind::ClusterDown, "no node known")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use crate::core::slot::slot_for_key;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn limits() -> RoundLimits {
        RoundLimits {
            max_redirects: 3,
            max_retries: 2,
            retry_base_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(100),
        }
    }

    fn nodes() -> Vec<NodeAddr> {
        (7000..7003)
            .map(|p| NodeAddr::new("127.0.0.1", p))
            .collect()
    }

    fn map() -> SlotMap {
        SlotMap::split_evenly(&nodes())
    }

    fn err(s: &str) -> Option<RoundReply> {
        Some(RoundReply::Value(Value::Error(Bytes::copy_from_slice(
            s.as_bytes(),
        ))))
    }

    fn ok(s: &str) -> Option<RoundReply> {
        Some(RoundReply::Value(Value::Bulk(Bytes::copy_from_slice(
            s.as_bytes(),
        ))))
    }

    fn failed(kind: ErrorKind, sent: bool) -> Option<RoundReply> {
        Some(RoundReply::Failed {
            error: Error::new(kind, "connection reset"),
            sent,
        })
    }

    /// A one-command request on `key`, started: the machine, the command, its first node.
    fn one(key: &str) -> (Rounds, Vec<Cmd>, NodeAddr) {
        let cmds = vec![cmd("GET").arg(key)];
        let mut r = Rounds::new(1, limits(), None);
        let Next::Send(b) = r.start(&cmds, &map()) else {
            panic!("nothing to send")
        };
        assert_eq!(b.len(), 1);
        let node = b[0].node.clone();
        (r, cmds, node)
    }

    fn sends(next: Next) -> Vec<NodeBatch> {
        match next {
            Next::Send(b) => b,
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn accept_keeps_values_and_error_replies() {
        let cmds = vec![cmd("GET").arg("a"), cmd("LPUSH").arg("b").arg(1)];
        let mut r = Rounds::new(2, limits(), None);
        let batches = sends(r.start(&cmds, &map()));
        for b in &batches {
            for e in &b.entries {
                let reply = if e.index == 0 {
                    ok("v")
                } else {
                    err("WRONGTYPE x")
                };
                r.judge(e.index, &b.node, reply);
            }
        }
        assert!(matches!(
            r.next(Instant::now(), &cmds, &map(), &[]),
            Next::Done
        ));
        assert_eq!(r.take_effects().count(), 0);
        let out = r.finish();
        assert_eq!(
            out[0].as_ref().unwrap(),
            &Value::Bulk(Bytes::from_static(b"v"))
        );
        let e = out[1].as_ref().unwrap_err();
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::ServerError, Some("WRONGTYPE"))
        );
    }

    #[test]
    fn moved_updates_the_map_and_resends_alone() {
        let (mut r, cmds, node) = one("k");
        let slot = slot_for_key(b"k");
        r.judge(0, &node, err(&format!("MOVED {slot} :7009")));
        let effects: Vec<Effect> = r.take_effects().collect();
        let target = NodeAddr::new("127.0.0.1", 7009); // empty host: the host we asked
        assert_eq!(
            effects,
            vec![Effect::Redirected {
                moved: Some((slot, target.clone()))
            }]
        );
        let b = sends(r.next(Instant::now(), &cmds, &map(), &[]));
        assert_eq!((b.len(), &b[0].node), (1, &target));
        assert!(!b[0].entries[0].asking);
        r.judge(0, &target, ok("v"));
        assert!(matches!(
            r.next(Instant::now(), &cmds, &map(), &[]),
            Next::Done
        ));
        assert!(r.finish()[0].is_ok());
    }

    #[test]
    fn a_redirect_to_an_unknown_endpoint_fails_typed_and_refreshes() {
        let (mut r, cmds, node) = one("k");
        r.judge(0, &node, err("MOVED 5 ?:7001"));
        assert_eq!(
            r.take_effects().collect::<Vec<_>>(),
            vec![Effect::RefreshMap]
        );
        assert!(matches!(
            r.next(Instant::now(), &cmds, &map(), &[]),
            Next::Done
        ));
        assert_eq!(
            r.finish()[0].as_ref().unwrap_err().kind(),
            ErrorKind::ClusterDown
        );
    }

    #[test]
    fn ask_resends_with_asking_and_leaves_the_map() {
        let (mut r, cmds, node) = one("k");
        r.judge(0, &node, err("ASK 5 10.0.0.9:7001"));
        assert_eq!(
            r.take_effects().collect::<Vec<_>>(),
            vec![Effect::Redirected { moved: None }]
        );
        let b = sends(r.next(Instant::now(), &cmds, &map(), &[]));
        assert_eq!(b[0].node, NodeAddr::new("10.0.0.9", 7001));
        assert!(b[0].entries[0].asking);
        assert_eq!(b[0].expected_replies(), 2);
    }

    #[test]
    fn redirect_limit_fails_the_command_with_the_last_hop() {
        let (mut r, cmds, mut node) = one("k");
        for hop in 0..3 {
            r.judge(0, &node, err(&format!("MOVED 1 h:{hop}")));
            let b = sends(r.next(Instant::now(), &cmds, &map(), &[]));
            node = b[0].node.clone();
        }
        r.judge(0, &node, err("MOVED 1 h:9"));
        assert!(matches!(
            r.next(Instant::now(), &cmds, &map(), &[]),
            Next::Done
        ));
        let e = r.finish().remove(0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RedirectLimit);
        assert_eq!(e.redirect_target(), Some((Slot::new(1).unwrap(), "h:9")));
    }

    #[test]
    fn each_transient_error_is_retried_after_a_backoff_then_reported() {
        for (code, kind) in [
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                ErrorKind::ServerError,
            ),
            ("CLUSTERDOWN The cluster is down", ErrorKind::ClusterDown),
            (
                "LOADING Redis is loading the dataset in memory",
                ErrorKind::ServerError,
            ),
            (
                "MASTERDOWN Link with MASTER is down",
                ErrorKind::ClusterDown,
            ),
        ] {
            let (mut r, cmds, node) = one("k");
            let t0 = Instant::now();
            let mut now = t0;
            for attempt in 1..=2u32 {
                r.judge(0, &node, err(code));
                assert_eq!(r.take_effects().collect::<Vec<_>>(), vec![Effect::Retrying]);
                let Next::WaitUntil(at) = r.next(now, &cmds, &map(), &[]) else {
                    panic!("{code}: no backoff")
                };
                assert_eq!(
                    at - now,
                    backoff(attempt, limits().retry_base_delay, limits().retry_max_delay)
                );
                // Asking early changes nothing; at the time, the command goes again,
                // routed by the map as it is now.
                assert!(matches!(
                    r.next(now, &cmds, &map(), &[]),
                    Next::WaitUntil(_)
                ));
                now = at;
                let b = sends(r.next(now, &cmds, &map(), &[]));
                assert_eq!(b[0].node, node);
            }
            r.judge(0, &node, err(code));
            assert!(
                matches!(r.next(now, &cmds, &map(), &[]), Next::Done),
                "{code}"
            );
            let e = r.finish().remove(0).unwrap_err();
            assert_eq!(e.kind(), kind, "{code}");
            assert!(e.detail().contains("after 2 retries"), "{}", e.detail());
        }
    }

    #[test]
    fn budgets_are_separate_tryagains_do_not_use_up_the_ask() {
        let mut limits = limits();
        limits.max_redirects = 1;
        limits.max_retries = 5;
        let cmds = vec![cmd("MGET").arg("{t}a").arg("{t}b")];
        let mut r = Rounds::new(1, limits, None);
        let b = sends(r.start(&cmds, &map()));
        let node = b[0].node.clone();
        let mut now = Instant::now();
        for _ in 0..5 {
            r.judge(0, &node, err("TRYAGAIN x"));
            if let Next::WaitUntil(at) = r.next(now, &cmds, &map(), &[]) {
                now = at;
            }
            sends(r.next(now, &cmds, &map(), &[]));
        }
        r.judge(0, &node, err("ASK 1 10.0.0.2:7000"));
        let b = sends(r.next(now, &cmds, &map(), &[]));
        assert!(b[0].entries[0].asking);
        r.judge(0, &b[0].node, ok("v"));
        assert!(r.finish()[0].is_ok());
    }

    #[test]
    fn unsent_commands_are_retried_and_sent_ones_never() {
        let cmds = vec![cmd("SET").arg("a").arg(1), cmd("SET").arg("a").arg(2)];
        let mut r = Rounds::new(2, limits(), None);
        let b = sends(r.start(&cmds, &map()));
        let node = b[0].node.clone();
        r.judge(0, &node, failed(ErrorKind::Io, true));
        r.judge(1, &node, failed(ErrorKind::Io, false));
        let effects: Vec<Effect> = r.take_effects().collect();
        assert!(effects.contains(&Effect::NodeFailed(node.clone())));
        assert!(effects.contains(&Effect::Retrying));
        let Next::WaitUntil(at) = r.next(Instant::now(), &cmds, &map(), &[]) else {
            panic!()
        };
        let b = sends(r.next(at, &cmds, &map(), &[]));
        let resent: Vec<usize> = b
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.index))
            .collect();
        assert_eq!(resent, vec![1]);
        r.judge(
            1,
            &node,
            Some(RoundReply::Value(Value::SimpleString("OK".into()))),
        );
        let out = r.finish();
        assert_eq!(out[0].as_ref().unwrap_err().kind(), ErrorKind::Io);
        assert!(out[1].is_ok());
    }

    #[test]
    fn an_unsent_command_is_retried_exactly_max_retries_times() {
        for max_retries in [0, 1, 2] {
            let l = RoundLimits {
                max_retries,
                ..limits()
            };
            let cmds = vec![cmd("GET").arg("a")];
            let mut r = Rounds::new(1, l, None);
            let mut b = sends(r.start(&cmds, &map()));
            let mut sent = 1;
            loop {
                r.judge(0, &b[0].node, failed(ErrorKind::Io, false));
                match r.next(Instant::now(), &cmds, &map(), &[]) {
                    Next::WaitUntil(at) => {
                        b = sends(r.next(at, &cmds, &map(), &[]));
                        sent += 1;
                    }
                    Next::Done => break,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(sent, 1 + max_retries, "budget {max_retries}");
            assert_eq!(r.finish()[0].as_ref().unwrap_err().kind(), ErrorKind::Io);
        }
    }

    #[test]
    fn a_retry_waits_from_when_it_is_seen_not_behind_the_redirects() {
        let cmds = vec![cmd("GET").arg("a"), cmd("GET").arg("b")];
        let mut r = Rounds::new(2, limits(), None);
        let b = sends(r.start(&cmds, &map()));
        let t0 = Instant::now();
        for batch in &b {
            for e in &batch.entries {
                let reply = if e.index == 0 {
                    err("LOADING x")
                } else {
                    err("MOVED 1 h:1")
                };
                r.judge(e.index, &batch.node, reply);
            }
        }
        // The redirect goes now, alone; the retry's pause is already running.
        let b = sends(r.next(t0, &cmds, &map(), &[]));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].entries[0].index, 1);
        r.judge(1, &b[0].node, ok("v"));
        // The redirect's round took longer than the pause: the retry goes at once.
        let later = t0 + limits().retry_max_delay;
        let b = sends(r.next(later, &cmds, &map(), &[]));
        assert_eq!(b[0].entries[0].index, 0);
    }

    #[test]
    fn nothing_is_retried_after_a_shutdown() {
        let (mut r, _, node) = one("k");
        r.judge(0, &node, failed(ErrorKind::Shutdown, false));
        assert_eq!(r.take_effects().count(), 0);
        assert_eq!(
            r.finish()[0].as_ref().unwrap_err().kind(),
            ErrorKind::Shutdown
        );
    }

    #[test]
    fn a_full_queue_is_retried_but_is_not_a_node_failure() {
        let (mut r, _, node) = one("k");
        r.judge(0, &node, failed(ErrorKind::Overloaded, false));
        assert_eq!(r.take_effects().collect::<Vec<_>>(), vec![Effect::Retrying]);
    }

    #[test]
    fn deadline_fails_what_is_missing_and_keeps_what_came() {
        let cmds = vec![
            cmd("GET").arg("a"),
            cmd("GET").arg("b"),
            cmd("GET").arg("c"),
        ];
        let t0 = Instant::now();
        let mut r = Rounds::new(3, limits(), Some(t0 + Duration::from_millis(5)));
        let b = sends(r.start(&cmds, &map()));
        let node = b[0].node.clone();
        r.deadline_passed();
        r.judge(0, &node, ok("kept"));
        r.judge(1, &node, None);
        r.judge(2, &node, err("MOVED 1 h:1"));
        let effects: Vec<Effect> = r.take_effects().collect();
        assert_eq!(
            effects
                .iter()
                .filter(|e| **e == Effect::TimedOut(node.clone()))
                .count(),
            1
        );
        assert!(matches!(r.next(t0, &cmds, &map(), &[]), Next::Done));
        let out = r.finish();
        assert!(out[0].is_ok());
        assert_eq!(out[1].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(out[2].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
    }

    #[test]
    fn a_retry_that_would_wake_after_the_deadline_fails_now() {
        let cmds = vec![cmd("GET").arg("a")];
        let t0 = Instant::now();
        let mut r = Rounds::new(1, limits(), Some(t0 + Duration::from_millis(5)));
        let b = sends(r.start(&cmds, &map()));
        r.judge(0, &b[0].node, err("LOADING x"));
        assert!(matches!(r.next(t0, &cmds, &map(), &[]), Next::Done));
        let e = r.finish().remove(0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }

    #[test]
    fn missing_reply_without_deadline_is_an_io_error() {
        let (mut r, _, node) = one("k");
        r.judge(0, &node, None);
        assert_eq!(r.finish()[0].as_ref().unwrap_err().kind(), ErrorKind::Io);
    }

    #[test]
    fn unroutable_commands_fail_alone_at_the_start() {
        let cmds = vec![cmd("GET").arg("a"), cmd("SINTER").arg("a").arg("b")];
        let mut r = Rounds::new(2, limits(), None);
        let b = sends(r.start(&cmds, &map()));
        assert_eq!(b.iter().map(|b| b.entries.len()).sum::<usize>(), 1);
        let mut r = Rounds::new(1, limits(), None);
        assert!(matches!(r.start(&cmds[..1], &SlotMap::empty()), Next::Done));
        assert_eq!(
            r.finish()[0].as_ref().unwrap_err().kind(),
            ErrorKind::ClusterDown
        );
    }

    #[test]
    fn pinned_commands_go_to_their_node_and_redirects_come_back() {
        let cmds = vec![cmd("PING"), cmd("PING"), cmd("GET").arg("k")];
        let targets: Vec<NodeAddr> = nodes();
        let mut r = Rounds::new(3, limits(), None).pinned(targets.clone());
        let b = sends(r.start(&cmds, &SlotMap::empty()));
        assert_eq!(b.len(), 3);
        for (i, batch) in b.iter().enumerate() {
            assert_eq!(batch.node, targets[batch.entries[0].index], "{i}");
        }
        r.judge(0, &targets[0], ok("PONG"));
        r.judge(1, &targets[1], err("LOADING x"));
        r.judge(2, &targets[2], err("MOVED 1 10.0.0.9:7000"));
        // Even with no redirect budget at all, a named node's redirect is the caller's.
        let mut zero = Rounds::new(
            1,
            RoundLimits {
                max_redirects: 0,
                ..limits()
            },
            None,
        )
        .pinned(targets.clone());
        sends(zero.start(&cmds[2..], &SlotMap::empty()));
        zero.judge(0, &targets[0], err("ASK 1 10.0.0.9:7000"));
        assert_eq!(
            zero.finish()[0].as_ref().unwrap_err().kind(),
            ErrorKind::Ask
        );
        let Next::WaitUntil(at) = r.next(Instant::now(), &cmds, &SlotMap::empty(), &[]) else {
            panic!()
        };
        // The retry goes back to the node the caller named, whatever the map says.
        let b = sends(r.next(at, &cmds, &SlotMap::empty(), &[]));
        assert_eq!(b[0].node, targets[1]);
        r.judge(1, &targets[1], ok("PONG"));
        let out = r.finish();
        assert!(out[0].is_ok() && out[1].is_ok());
        let e = out[2].as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Moved);
        assert_eq!(
            e.redirect_target(),
            Some((Slot::new(1).unwrap(), "10.0.0.9:7000"))
        );
    }

    #[test]
    fn huge_pauses_do_not_overflow() {
        let mut l = limits();
        l.retry_base_delay = Duration::MAX;
        l.retry_max_delay = Duration::MAX;
        let cmds = vec![cmd("GET").arg("a")];
        let mut r = Rounds::new(1, l, None);
        let b = sends(r.start(&cmds, &map()));
        r.judge(0, &b[0].node, err("TRYAGAIN x"));
        assert!(matches!(
            r.next(Instant::now(), &cmds, &map(), &[]),
            Next::WaitUntil(_)
        ));
    }

    #[test]
    fn a_later_instant_never_overflows() {
        let now = Instant::now();
        assert_eq!(
            saturating_later(now, Duration::from_millis(5)),
            now + Duration::from_millis(5)
        );
        // "A very long time" is about a year, not a panic and not now.
        let far = saturating_later(now, Duration::MAX);
        assert!(far >= now + Duration::from_secs(364 * 24 * 3600));
    }

    #[test]
    fn a_single_reply_missing_is_a_timeout_only_when_the_time_ran_out() {
        let node = NodeAddr::new("h", 1);
        let missing = RoundReply::single(None, true, &node).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Timeout);
        let lost = RoundReply::single(None, false, &node).unwrap_err();
        assert_eq!(lost.kind(), ErrorKind::Io);
        // A reply that came is the answer, even at the deadline.
        let v = RoundReply::single(Some(RoundReply::Value(Value::Int(1))), true, &node);
        assert_eq!(v.unwrap(), Value::Int(1));
    }

    #[test]
    fn redirect_parsing() {
        let s = Slot::new(3999).unwrap();
        assert_eq!(
            parse_redirect(b"ASK 3999 10.0.0.1:7002"),
            Some(Redirect::Ask {
                slot: s,
                addr: NodeAddr::new("10.0.0.1", 7002)
            })
        );
        assert_eq!(
            parse_redirect(b"MOVED 3999 :7002"),
            Some(Redirect::Moved {
                slot: s,
                addr: NodeAddr::new("", 7002)
            })
        );
        assert_eq!(
            parse_redirect(b"MOVED 3999 ::1:7002"),
            Some(Redirect::Moved {
                slot: s,
                addr: NodeAddr::new("::1", 7002)
            })
        );
        for bad in [
            &b"MOVED"[..],
            b"MOVED x h:1",
            b"MOVED 1",
            b"MOVED 1 h",
            b"ERR 1 h:1",
            b"MOVED -1 h:1",
            b"MOVED 1 h:1 extra",
            b"\xff",
        ] {
            assert_eq!(
                parse_redirect(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A malformed MOVED is an ordinary error reply, kept as the command's result.
        assert!(matches!(
            decide(
                &Value::Error(Bytes::from_static(b"MOVED bogus")),
                0,
                0,
                &limits()
            ),
            Decision::Accept
        ));
    }

    proptest! {
        /// Whatever order the nodes answer in (each in its own FIFO order), every reply
        /// lands at its command's index, and every command is sent exactly once or
        /// fails alone.
        #[test]
        fn any_interleaving_lands_at_the_right_index(
            keys in proptest::collection::vec("[a-z{}]{0,8}", 1..200),
            picks in proptest::collection::vec(any::<u16>(), 0..400),
        ) {
            let map = map();
            let mut cmds: Vec<Cmd> = keys.iter().map(|k| cmd("GET").arg(k.as_str())).collect();
            cmds.push(cmd("ECHO").arg("x"));
            cmds.push(cmd("SINTER").arg("x").arg("y"));
            let mut r = Rounds::new(cmds.len(), limits(), None);
            let batches = match r.start(&cmds, &map) { Next::Send(b) => b, _ => Vec::new() };
            let mut seen = vec![0; cmds.len()];
            for b in &batches { for e in &b.entries { seen[e.index] += 1; } }
            seen[cmds.len() - 1] += 1; // SINTER failed at the start
            prop_assert!(seen.iter().all(|&n| n == 1));
            let mut cursors = vec![0usize; batches.len()];
            let mut pick = picks.into_iter();
            loop {
                let open: Vec<usize> = (0..batches.len()).filter(|&b| cursors[b] < batches[b].entries.len()).collect();
                if open.is_empty() { break; }
                let b = open[pick.next().unwrap_or(0) as usize % open.len()];
                let entry = batches[b].entries[cursors[b]];
                cursors[b] += 1;
                // The simulated server answers with the command's own index.
                r.judge(entry.index, &batches[b].node, Some(RoundReply::Value(Value::Int(entry.index as i64))));
            }
            prop_assert!(matches!(r.next(Instant::now(), &cmds, &map, &[]), Next::Done));
            for (i, result) in r.finish().into_iter().enumerate() {
                match result {
                    Ok(v) => prop_assert_eq!(v, Value::Int(i as i64)),
                    Err(e) => prop_assert_eq!(e.kind(), ErrorKind::CrossSlot),
                }
            }
        }

        #[test]
        fn parse_redirect_never_panics(line in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_redirect(&line);
            let _ = classify_reply(&Value::Error(Bytes::from(line)));
        }

        #[test]
        fn backoff_is_monotonic_and_capped(a in 0u32..100, b in 0u32..100) {
            let (base, max) = (Duration::from_millis(3), Duration::from_millis(700));
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(backoff(lo, base, max) <= backoff(hi, base, max));
            prop_assert!(backoff(hi, base, max) <= max);
        }
    }
}
