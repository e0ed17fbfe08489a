//! Pipeline planning, reply reassembly and redirect decisions, all pure.
//!
//! - [`plan_pipeline`] turns N commands into one [`NodeBatch`] per node: the node, the
//!   original index of each command, and all of them encoded in one contiguous buffer
//!   whose exact size is reserved once.
//! - [`Reassembly`] puts replies back at their original index, whatever order the nodes
//!   answer in.
//! - [`decide`] judges one reply: keep it, follow a MOVED or ASK (alone, not the whole
//!   pipeline), retry later (TRYAGAIN, CLUSTERDOWN, LOADING), or give up with a typed
//!   error once the limits are reached. [`plan_resend`] batches the commands to resend.

use std::time::Duration;

use bytes::BytesMut;

use crate::cmd::Cmd;
use crate::error::{Error, ErrorKind, Result};
use crate::resp::encode;
use crate::resp::Value;
use crate::route::{route_command, Route};
use crate::slot::Slot;
use crate::topology::{NodeAddr, SlotMap};

/// One command's place in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntry {
    /// Index of the command in the pipeline.
    pub index: usize,
    /// Whether `ASKING` is sent just before it (after an ASK redirect).
    pub asking: bool,
}

/// The commands of a pipeline that go to one node, encoded back to back.
#[derive(Debug)]
pub struct NodeBatch {
    /// Where the batch goes.
    pub node: NodeAddr,
    /// The commands, in the order they are encoded (and answered).
    pub entries: Vec<BatchEntry>,
    /// The whole batch, one contiguous buffer: one write.
    pub buf: BytesMut,
}

impl NodeBatch {
    /// Replies the node will send: one per command plus one `+OK` per `ASKING`.
    pub fn expected_replies(&self) -> usize {
        self.entries.len() + self.entries.iter().filter(|e| e.asking).count()
    }
}

/// The result of planning: the batches, and the commands that could not be routed.
#[derive(Debug)]
pub struct Plan {
    /// One batch per node, in order of first appearance.
    pub batches: Vec<NodeBatch>,
    /// Commands that cannot be sent (cross-slot keys, slot without owner), with why.
    /// They fail alone; the rest of the pipeline goes ahead.
    pub failed: Vec<(usize, Error)>,
}

/// Encoded size of `ASKING`.
const ASKING: &[&[u8]] = &[b"ASKING"];

/// Groups commands into per-node batches by the slot map.
///
/// Keyless commands (`PING`, `ECHO`, ...) join the batch of the first routed command, so
/// they add no extra node to the pipeline; with no routed command they go to the first
/// primary of the map.
///
/// ```
/// use redis_cluster_uring::{cmd, plan::plan_pipeline, NodeAddr, Slot, SlotMap};
/// let mut map = SlotMap::empty();
/// for s in 0..16384 {
///     let port = if s < 8192 { 7000 } else { 7001 };
///     map.apply_moved(Slot::new(s).unwrap(), &NodeAddr::new("127.0.0.1", port));
/// }
/// let cmds = [cmd("GET").arg("a"), cmd("GET").arg("b"), cmd("GET").arg("c")];
/// let plan = plan_pipeline(&cmds, &map);
/// let total: usize = plan.batches.iter().map(|b| b.entries.len()).sum();
/// assert_eq!(total, 3);
/// assert!(plan.failed.is_empty());
/// ```
pub fn plan_pipeline(cmds: &[Cmd], map: &SlotMap) -> Plan {
    if let [only] = cmds {
        return plan_single(only, map);
    }
    // Pass 1: the target of each command as a batch number, and each batch's size, so
    // every buffer is allocated once at its exact size.
    let mut batch_of_shard: Vec<Option<usize>> = vec![None; map.shards().len()];
    let mut targets: Vec<(usize, usize)> = Vec::new(); // (batch, bytes)
    let mut assigned: Vec<Option<usize>> = Vec::with_capacity(cmds.len());
    let mut keyless: Vec<usize> = Vec::new();
    let mut failed = Vec::new();
    for (index, cmd) in cmds.iter().enumerate() {
        let shard = match route_command(cmd) {
            Ok(Route::Slot(slot)) => match map.shard_index_for(slot) {
                Some(shard) => shard,
                None => {
                    failed.push((
                        index,
                        Error::new(
                            ErrorKind::ClusterDown,
                            format!("no node serves slot {slot}"),
                        ),
                    ));
                    assigned.push(None);
                    continue;
                }
            },
            Ok(Route::AnyNode) => {
                keyless.push(index);
                assigned.push(None);
                continue;
            }
            Err(e) => {
                failed.push((index, e));
                assigned.push(None);
                continue;
            }
        };
        let batch = *batch_of_shard[shard].get_or_insert_with(|| {
            targets.push((shard, 0));
            targets.len() - 1
        });
        targets[batch].1 += cmd.encoded_len();
        assigned.push(Some(batch));
    }
    if !keyless.is_empty() {
        let batch = match targets.first() {
            Some(_) => Some(0),
            None if !map.shards().is_empty() => {
                targets.push((0, 0));
                Some(0)
            }
            None => None,
        };
        for index in keyless {
            match batch {
                Some(b) => {
                    targets[b].1 += cmds[index].encoded_len();
                    assigned[index] = Some(b);
                }
                None => failed.push((
                    index,
                    Error::new(ErrorKind::ClusterDown, "no node known to send it to"),
                )),
            }
        }
    }
    // Pass 2: encode.
    let mut batches: Vec<NodeBatch> = targets
        .iter()
        .map(|&(shard, bytes)| NodeBatch {
            node: map.shards()[shard].primary.clone(),
            entries: Vec::new(),
            buf: BytesMut::with_capacity(bytes),
        })
        .collect();
    for (index, batch) in assigned.into_iter().enumerate() {
        if let Some(b) = batch {
            let batch = &mut batches[b];
            cmds[index].write_to(&mut batch.buf);
            batch.entries.push(BatchEntry {
                index,
                asking: false,
            });
        }
    }
    failed.sort_by_key(|(i, _)| *i);
    Plan { batches, failed }
}

/// The one-command case (every plain `client.get(..)`), without the bookkeeping vectors
/// a pipeline needs.
fn plan_single(cmd: &Cmd, map: &SlotMap) -> Plan {
    let shard = match route_command(cmd) {
        Ok(Route::Slot(slot)) => map.shard_index_for(slot).ok_or_else(|| {
            Error::new(
                ErrorKind::ClusterDown,
                format!("no node serves slot {slot}"),
            )
        }),
        Ok(Route::AnyNode) if !map.shards().is_empty() => Ok(0),
        Ok(Route::AnyNode) => Err(Error::new(
            ErrorKind::ClusterDown,
            "no node known to send it to",
        )),
        Err(e) => Err(e),
    };
    match shard {
        Ok(shard) => {
            let mut buf = BytesMut::with_capacity(cmd.encoded_len());
            cmd.write_to(&mut buf);
            Plan {
                batches: vec![NodeBatch {
                    node: map.shards()[shard].primary.clone(),
                    entries: vec![BatchEntry {
                        index: 0,
                        asking: false,
                    }],
                    buf,
                }],
                failed: Vec::new(),
            }
        }
        Err(e) => Plan {
            batches: Vec::new(),
            failed: vec![(0, e)],
        },
    }
}

/// Batches commands to resend: `(index, node, asking)` each, grouped per node in the
/// given order. An `asking` command is preceded by `ASKING` on the same connection, which
/// is what makes the target accept it for this one command.
pub fn plan_resend(items: &[(usize, NodeAddr, bool)], cmds: &[Cmd]) -> Vec<NodeBatch> {
    let mut batches: Vec<NodeBatch> = Vec::new();
    for (index, node, asking) in items {
        let Some(cmd) = cmds.get(*index) else {
            continue;
        };
        let pos = match batches.iter().position(|b| &b.node == node) {
            Some(p) => p,
            None => {
                batches.push(NodeBatch {
                    node: node.clone(),
                    entries: Vec::new(),
                    buf: BytesMut::new(),
                });
                batches.len() - 1
            }
        };
        let batch = &mut batches[pos];
        if *asking {
            encode::encode_command(&mut batch.buf, ASKING.iter().copied());
        }
        cmd.write_to(&mut batch.buf);
        batch.entries.push(BatchEntry {
            index: *index,
            asking: *asking,
        });
    }
    batches
}

/// Replies placed back at their original index.
///
/// ```
/// use redis_cluster_uring::{plan::Reassembly, Value};
/// let mut r = Reassembly::new(2);
/// assert!(r.place(1, Ok(Value::Int(1))));
/// assert!(r.place(0, Ok(Value::Int(0))));
/// assert!(!r.place(0, Ok(Value::Int(9))), "an index is filled once");
/// assert!(r.is_complete());
/// let out: Vec<_> = r.finish().into_iter().map(|v| v.unwrap()).collect();
/// assert_eq!(out, vec![Value::Int(0), Value::Int(1)]);
/// ```
#[derive(Debug)]
pub struct Reassembly {
    slots: Vec<Option<Result<Value>>>,
    remaining: usize,
}

impl Reassembly {
    /// Room for `n` replies.
    pub fn new(n: usize) -> Reassembly {
        let mut slots = Vec::with_capacity(n);
        slots.resize_with(n, || None);
        Reassembly {
            slots,
            remaining: n,
        }
    }

    /// Places the result of command `index`. False (and nothing changes) when the index is
    /// out of range or already filled: a logic error upstream, never a reason to panic.
    pub fn place(&mut self, index: usize, result: Result<Value>) -> bool {
        match self.slots.get_mut(index) {
            Some(slot @ None) => {
                *slot = Some(result);
                self.remaining -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether command `index` has its result.
    pub fn is_placed(&self, index: usize) -> bool {
        matches!(self.slots.get(index), Some(Some(_)))
    }

    /// Commands still without a result.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// True when every command has its result.
    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// The results in the original order; a missing one becomes `missing()`'s error.
    pub fn finish_with(self, missing: impl Fn() -> Error) -> Vec<Result<Value>> {
        self.slots
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(missing())))
            .collect()
    }

    /// The results in the original order (a missing one is an I/O error).
    pub fn finish(self) -> Vec<Result<Value>> {
        self.finish_with(|| Error::new(ErrorKind::Io, "no reply"))
    }
}

/// A redirect parsed from an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The slot lives elsewhere now: update the map, resend there.
    Moved {
        /// The slot.
        slot: Slot,
        /// Its new owner (empty host: the host of the node that answered).
        addr: NodeAddr,
    },
    /// The slot is being migrated and this key is already on the target: resend there
    /// once, preceded by `ASKING`, without touching the map.
    Ask {
        /// The slot.
        slot: Slot,
        /// The migration target (empty host: the host of the node that answered).
        addr: NodeAddr,
    },
}

/// Parses `MOVED <slot> <host:port>` or `ASK <slot> <host:port>`; anything else is `None`.
///
/// ```
/// use redis_cluster_uring::{plan::{parse_redirect, Redirect}, NodeAddr, Slot};
/// assert_eq!(
///     parse_redirect(b"MOVED 3999 127.0.0.1:6381"),
///     Some(Redirect::Moved { slot: Slot::new(3999).unwrap(), addr: NodeAddr::new("127.0.0.1", 6381) })
/// );
/// assert_eq!(parse_redirect(b"MOVED 99999 127.0.0.1:6381"), None);
/// ```
pub fn parse_redirect(error_line: &[u8]) -> Option<Redirect> {
    let text = std::str::from_utf8(error_line).ok()?;
    let mut words = text.split(' ');
    let kind = words.next()?;
    let slot = Slot::new(words.next()?.parse().ok()?)?;
    let addr = NodeAddr::parse(words.next()?)?;
    if words.next().is_some() {
        return None;
    }
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, addr }),
        "ASK" => Some(Redirect::Ask { slot, addr }),
        _ => None,
    }
}

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

/// How far one command may be redirected or retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimits {
    /// MOVED/ASK hops before [`ErrorKind::RedirectLimit`].
    pub max_redirects: u32,
    /// Retries after TRYAGAIN/CLUSTERDOWN/LOADING before the error is returned.
    pub max_retries: u32,
}

/// The verdict on one reply.
#[derive(Debug)]
pub enum Decision {
    /// The reply is the command's result.
    Accept,
    /// Send the command again, alone, to `to`.
    Resend {
        /// The target.
        to: NodeAddr,
        /// Precede it with `ASKING` (ASK redirect).
        asking: bool,
        /// For MOVED: point this slot at the target in the map.
        update_slot: Option<(Slot, NodeAddr)>,
    },
    /// Retry after a backoff ([`backoff`] of the attempt number).
    RetryLater {
        /// Attempts made so far (the next one is this plus one).
        after_attempt: u32,
    },
    /// Give up with this error.
    Fail(Error),
}

/// Decides what to do with `reply`, given how many redirects/retries the command has
/// already had.
///
/// ```
/// use bytes::Bytes;
/// use redis_cluster_uring::{plan::{decide, Decision, RetryLimits}, ErrorKind, Value};
/// let limits = RetryLimits { max_redirects: 2, max_retries: 3 };
/// let moved = Value::Error(Bytes::from_static(b"MOVED 1 10.0.0.2:7000"));
/// assert!(matches!(decide(&moved, 0, &limits), Decision::Resend { asking: false, update_slot: Some(_), .. }));
/// match decide(&moved, 2, &limits) {
///     Decision::Fail(e) => assert_eq!(e.kind(), ErrorKind::RedirectLimit),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn decide(reply: &Value, attempts: u32, limits: &RetryLimits) -> Decision {
    match classify_reply(reply) {
        ReplyAction::Accept => Decision::Accept,
        ReplyAction::Redirect(redirect) => {
            let (slot, addr, ask) = match redirect {
                Redirect::Moved { slot, addr } => (slot, addr, false),
                Redirect::Ask { slot, addr } => (slot, addr, true),
            };
            if attempts >= limits.max_redirects {
                let detail = format!(
                    "gave up after {attempts} redirects; last: {} {slot} {addr}",
                    if ask { "ASK" } else { "MOVED" }
                );
                return Decision::Fail(
                    Error::new(ErrorKind::RedirectLimit, detail)
                        .with_redirect(slot, &addr.to_string()),
                );
            }
            Decision::Resend {
                update_slot: (!ask).then(|| (slot, addr.clone())),
                to: addr,
                asking: ask,
            }
        }
        ReplyAction::Retry(reason) => {
            if attempts >= limits.max_retries {
                let line = reply.as_error().unwrap_or(b"");
                let kind = match reason {
                    RetryReason::ClusterDown | RetryReason::MasterDown => ErrorKind::ClusterDown,
                    _ => ErrorKind::ServerError,
                };
                return Decision::Fail(Error::new(
                    kind,
                    format!(
                        "{} (after {attempts} retries)",
                        String::from_utf8_lossy(line)
                    ),
                ));
            }
            Decision::RetryLater {
                after_attempt: attempts,
            }
        }
    }
}

/// Exponential backoff: `base * 2^(attempt-1)`, capped at `max` (attempt 0 waits `base`).
///
/// ```
/// use std::time::Duration;
/// use redis_cluster_uring::plan::backoff;
/// let ms = Duration::from_millis;
/// assert_eq!(backoff(1, ms(10), ms(100)), ms(10));
/// assert_eq!(backoff(3, ms(10), ms(100)), ms(40));
/// assert_eq!(backoff(30, ms(10), ms(100)), ms(100));
/// ```
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let shift = attempt.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << shift).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::cmd;
    use crate::resp::decode::{decode_slice, Decoded};
    use crate::slot::slot_for_key;
    use bytes::Bytes;
    use proptest::prelude::*;

    /// Three primaries splitting the slots evenly, as `redis-cli --cluster create` does.
    fn three_nodes() -> SlotMap {
        let nodes: Vec<NodeAddr> = (7000..7003)
            .map(|p| NodeAddr::new("127.0.0.1", p))
            .collect();
        SlotMap::split_evenly(&nodes)
    }

    /// Decodes a batch buffer back into its commands.
    fn commands_in(buf: &[u8]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let Decoded::Complete(Value::Array(args), n) =
                decode_slice(&buf[pos..], &Default::default()).unwrap()
            else {
                panic!("not a command")
            };
            out.push(
                args.iter()
                    .map(|a| String::from_utf8_lossy(a.as_bytes().unwrap()).into_owned())
                    .collect(),
            );
            pos += n;
        }
        out
    }

    #[test]
    fn batches_group_by_node_in_original_order() {
        let map = three_nodes();
        let cmds: Vec<Cmd> = (0..30).map(|i| cmd("GET").arg(format!("k{i}"))).collect();
        let plan = plan_pipeline(&cmds, &map);
        assert!(plan.failed.is_empty());
        assert_eq!(plan.batches.len(), 3);
        for batch in &plan.batches {
            let indexes: Vec<usize> = batch.entries.iter().map(|e| e.index).collect();
            assert!(indexes.windows(2).all(|w| w[0] < w[1]));
            for &i in &indexes {
                assert_eq!(
                    map.node_for(slot_for_key(format!("k{i}").as_bytes())),
                    Some(&batch.node)
                );
            }
            // The buffer holds exactly these commands, in this order, at its exact size.
            let decoded = commands_in(&batch.buf);
            let want: Vec<Vec<String>> = indexes
                .iter()
                .map(|i| vec!["GET".into(), format!("k{i}")])
                .collect();
            assert_eq!(decoded, want);
            assert_eq!(batch.buf.len(), batch.buf.capacity());
            assert_eq!(batch.expected_replies(), indexes.len());
        }
    }

    #[test]
    fn keyless_commands_join_the_first_batch_and_failures_stay_alone() {
        let map = three_nodes();
        let cmds = vec![
            cmd("PING"),
            cmd("GET").arg("a"),
            cmd("MGET").arg("a").arg("b"),
            cmd("ECHO").arg("x"),
        ];
        let plan = plan_pipeline(&cmds, &map);
        assert_eq!(plan.failed.len(), 1);
        assert_eq!(plan.failed[0].0, 2);
        assert_eq!(plan.failed[0].1.kind(), ErrorKind::CrossSlot);
        let first = &plan.batches[0];
        assert_eq!(first.node, *map.node_for(slot_for_key(b"a")).unwrap());
        let idx: Vec<usize> = first.entries.iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![0, 1, 3]);
        // With nothing routed, keyless commands still find a node.
        let only = plan_pipeline(&[cmd("PING")], &map);
        assert_eq!(only.batches.len(), 1);
        // And with no map at all, they fail as ClusterDown instead of vanishing.
        let none = plan_pipeline(&[cmd("PING"), cmd("GET").arg("a")], &SlotMap::empty());
        assert!(none.batches.is_empty());
        assert_eq!(none.failed.len(), 2);
        assert!(none
            .failed
            .iter()
            .all(|(_, e)| e.kind() == ErrorKind::ClusterDown));
    }

    #[test]
    fn ask_resend_puts_asking_right_before_the_command() {
        let cmds = vec![
            cmd("GET").arg("a"),
            cmd("SET").arg("b").arg(1),
            cmd("GET").arg("c"),
        ];
        let n1 = NodeAddr::new("h", 1);
        let n2 = NodeAddr::new("h", 2);
        let batches = plan_resend(
            &[
                (2, n1.clone(), true),
                (0, n2.clone(), false),
                (1, n1.clone(), false),
            ],
            &cmds,
        );
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].node, n1);
        assert_eq!(
            commands_in(&batches[0].buf),
            vec![
                vec!["ASKING".to_string()],
                vec!["GET".into(), "c".into()],
                vec!["SET".into(), "b".into(), "1".into()]
            ]
        );
        assert_eq!(batches[0].expected_replies(), 3);
        assert_eq!(batches[1].expected_replies(), 1);
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
    }

    #[test]
    fn decisions() {
        let limits = RetryLimits {
            max_redirects: 3,
            max_retries: 2,
        };
        let err = |s: &'static str| Value::Error(Bytes::from_static(s.as_bytes()));
        assert!(matches!(
            decide(&Value::Int(1), 0, &limits),
            Decision::Accept
        ));
        assert!(matches!(
            decide(&err("WRONGTYPE x"), 0, &limits),
            Decision::Accept
        ));
        assert!(matches!(
            decide(&err("MOVED bogus"), 0, &limits),
            Decision::Accept
        ));
        match decide(&err("ASK 5 h:1"), 1, &limits) {
            Decision::Resend {
                to,
                asking: true,
                update_slot: None,
            } => assert_eq!(to, NodeAddr::new("h", 1)),
            other => panic!("{other:?}"),
        }
        match decide(&err("ASK 5 h:1"), 3, &limits) {
            Decision::Fail(e) => {
                assert_eq!(e.kind(), ErrorKind::RedirectLimit);
                assert_eq!(e.redirect_target(), Some((Slot::new(5).unwrap(), "h:1")));
            }
            other => panic!("{other:?}"),
        }
        for code in ["TRYAGAIN x", "CLUSTERDOWN x", "LOADING x", "MASTERDOWN x"] {
            assert!(matches!(
                decide(&err(code), 1, &limits),
                Decision::RetryLater { after_attempt: 1 }
            ));
        }
        match decide(&err("CLUSTERDOWN The cluster is down"), 2, &limits) {
            Decision::Fail(e) => assert_eq!(e.kind(), ErrorKind::ClusterDown),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        /// Whatever order nodes answer in (each node's replies in its own FIFO order), the
        /// replies land at their original indexes, and every command is in exactly one
        /// batch or in `failed`.
        #[test]
        fn any_interleaving_reassembles_in_order(
            keys in proptest::collection::vec("[a-z{}]{0,8}", 1..200),
            picks in proptest::collection::vec(any::<u16>(), 0..400),
        ) {
            let map = three_nodes();
            let mut cmds: Vec<Cmd> = keys.iter().map(|k| cmd("GET").arg(k.as_str())).collect();
            cmds.push(cmd("PING"));
            cmds.push(cmd("MGET").arg("x").arg("y"));
            let plan = plan_pipeline(&cmds, &map);
            let mut seen = vec![0; cmds.len()];
            for b in &plan.batches { for e in &b.entries { seen[e.index] += 1; } }
            for (i, _) in &plan.failed { seen[*i] += 1; }
            prop_assert!(seen.iter().all(|&n| n == 1));

            let mut r = Reassembly::new(cmds.len());
            for (i, e) in plan.failed { prop_assert!(r.place(i, Err(e))); }
            let mut cursors = vec![0usize; plan.batches.len()];
            let mut pick = picks.into_iter();
            while !r.is_complete() {
                let open: Vec<usize> = (0..plan.batches.len()).filter(|&b| cursors[b] < plan.batches[b].entries.len()).collect();
                let b = open[pick.next().unwrap_or(0) as usize % open.len()];
                let entry = plan.batches[b].entries[cursors[b]];
                cursors[b] += 1;
                // The simulated server answers with the command's own index.
                prop_assert!(r.place(entry.index, Ok(Value::Int(entry.index as i64))));
            }
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
