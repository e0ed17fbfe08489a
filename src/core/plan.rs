//! Pipeline planning, all pure.
//!
//! - [`plan_pipeline`] turns N commands into one [`NodeBatch`] per node: the node, the
//!   original index of each command, and all of them encoded in one contiguous buffer
//!   whose exact size is reserved once.
//! - [`plan_resend`] batches the commands a round sends again (redirected or retried),
//!   each to its own node, `ASKING` right before an ASK-redirected one.
//!
//! What happens to the replies (kept, redirected, retried, failed) is the round state
//! machine's business: [`crate::core::round`].

use bytes::BytesMut;

use crate::core::cmd::Cmd;
use crate::core::error::{Error, ErrorKind};
use crate::core::judgement::Judgement;
use crate::core::resp::encode;
use crate::core::route::Route;
use crate::core::topology::{NodeAddr, SlotMap};

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
/// Keyless commands (`ECHO`, `TIME`, ...) join the batch of the first routed command, so
/// they add no extra node to the pipeline; with no routed command they go to the first
/// primary of the map.
///
/// ```
/// use redis_cluster_uring::{cmd, core::plan::plan_pipeline, NodeAddr, Slot, SlotMap};
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
    plan_pipeline_reading(cmds, map, &[])
}

/// Where a shard's read-only commands go, as the read router chose for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadTarget {
    /// The primary, like writes.
    Primary,
    /// This replica (or, with `Nearest`, whichever node was chosen).
    Node(NodeAddr),
    /// Nowhere: the policy forbids the primary and no replica is up.
    Unavailable,
}

/// The node a command of `shard` goes to: reads as `reads[shard]` says (when the command
/// only reads), everything else to the primary. `Err` when the read has nowhere to go.
/// Returns the node and its batch key (`2 * shard` for the primary, `+ 1` for a read
/// node), so each node gets one batch.
#[inline]
fn target_of<'a>(
    judged: &Judgement,
    shard: usize,
    map: &'a SlotMap,
    reads: &'a [ReadTarget],
) -> Result<(usize, &'a NodeAddr), Error> {
    // Borrowed, not cloned: a node's address is copied once per batch, not per command.
    let primary = &map.shards()[shard].primary;
    let Some(read) = reads.get(shard) else {
        return Ok((2 * shard, primary));
    };
    if !judged.is_read_only() {
        return Ok((2 * shard, primary));
    }
    match read {
        ReadTarget::Primary => Ok((2 * shard, primary)),
        ReadTarget::Node(node) if node == primary => Ok((2 * shard, primary)),
        ReadTarget::Node(node) => Ok((2 * shard + 1, node)),
        ReadTarget::Unavailable => Err(Error::new(
            ErrorKind::ClusterDown,
            format!("no replica of {primary} is up to read from"),
        )),
    }
}

/// [`plan_pipeline`] with replica reads: `reads[shard]` says where that shard's
/// read-only commands go (an empty slice: everything to primaries).
///
/// ```
/// use redis_cluster_uring::core::plan::{plan_pipeline_reading, ReadTarget};
/// use redis_cluster_uring::{cmd, NodeAddr, SlotMap};
/// let map = SlotMap::split_evenly(&[NodeAddr::new("p", 1)]);
/// let reads = [ReadTarget::Node(NodeAddr::new("r", 2))];
/// let plan = plan_pipeline_reading(&[cmd("GET").arg("k"), cmd("SET").arg("k").arg(1)], &map, &reads);
/// let nodes: Vec<_> = plan.batches.iter().map(|b| b.node.host.clone()).collect();
/// assert_eq!(nodes, ["r", "p"]);
/// ```
pub fn plan_pipeline_reading(cmds: &[Cmd], map: &SlotMap, reads: &[ReadTarget]) -> Plan {
    plan_pipeline_with(cmds, map, reads, &[])
}

/// The general planner: replica reads as in [`plan_pipeline_reading`], and commands
/// pinned to a node (`pins[i]`, for a multi-node command's per-node copies) placed in
/// that node's batch at their place in the pipeline, so each node still gets one batch
/// in pipeline order.
///
/// ```
/// use redis_cluster_uring::core::plan::plan_pipeline_with;
/// use redis_cluster_uring::{cmd, NodeAddr, SlotMap};
/// let (a, b) = (NodeAddr::new("a", 1), NodeAddr::new("b", 1));
/// let map = SlotMap::split_evenly(&[a.clone(), b.clone()]);
/// let cmds = [cmd("DBSIZE"), cmd("DBSIZE"), cmd("GET").arg("k")];
/// let plan = plan_pipeline_with(&cmds, &map, &[], &[Some(a), Some(b), None]);
/// assert_eq!(plan.batches.len(), 2);
/// assert_eq!(plan.batches.iter().map(|b| b.entries.len()).sum::<usize>(), 3);
/// ```
pub fn plan_pipeline_with(
    cmds: &[Cmd],
    map: &SlotMap,
    reads: &[ReadTarget],
    pins: &[Option<NodeAddr>],
) -> Plan {
    plan_judged(cmds, &Judgement::all(cmds), map, reads, pins)
}

/// [`plan_pipeline_with`] for commands judged already (`judged[i]` is `cmds[i]`'s, as a
/// request carries them): routing reads each command's slot and read-only flag from its
/// judgement instead of asking the command table again.
///
/// ```
/// use redis_cluster_uring::core::judgement::Judgement;
/// use redis_cluster_uring::core::plan::plan_judged;
/// use redis_cluster_uring::{cmd, NodeAddr, SlotMap};
/// let map = SlotMap::split_evenly(&[NodeAddr::new("a", 1), NodeAddr::new("b", 1)]);
/// let cmds = [cmd("GET").arg("x"), cmd("GET").arg("y"), cmd("ECHO").arg("hi")];
/// let plan = plan_judged(&cmds, &Judgement::all(&cmds), &map, &[], &[]);
/// assert_eq!(plan.batches.iter().map(|b| b.entries.len()).sum::<usize>(), 3);
/// ```
pub fn plan_judged(
    cmds: &[Cmd],
    judged: &[Judgement],
    map: &SlotMap,
    reads: &[ReadTarget],
    pins: &[Option<NodeAddr>],
) -> Plan {
    if let ([only], [j], [] | [None]) = (cmds, judged, pins) {
        return plan_single(only, j, map, reads);
    }
    // Pass 1: the target of each command as a batch number, and each batch's size and
    // number of commands, so every buffer and entry list is allocated once, exactly.
    let mut batch_of_key: Vec<Option<usize>> = vec![None; 2 * map.shards().len()];
    let mut targets: Vec<Target> = Vec::new();
    let mut assigned: Vec<usize> = Vec::with_capacity(cmds.len());
    let mut keyless: Vec<usize> = Vec::new();
    let mut failed = Vec::new();
    // Batches of pinned nodes that are not a shard's primary or chosen read node.
    let mut other_nodes: Vec<(NodeAddr, usize)> = Vec::new();
    for (index, cmd) in cmds.iter().enumerate() {
        if let Some(Some(node)) = pins.get(index) {
            let known = map.shards().iter().enumerate().find_map(|(shard, s)| {
                if s.primary == *node {
                    Some(2 * shard)
                } else if reads.get(shard) == Some(&ReadTarget::Node(node.clone())) {
                    Some(2 * shard + 1)
                } else {
                    None
                }
            });
            let batch = match known {
                Some(key) => {
                    *batch_of_key[key].get_or_insert_with(|| Target::add(&mut targets, node))
                }
                None => match other_nodes.iter().find(|(n, _)| n == node) {
                    Some((_, b)) => *b,
                    None => {
                        let b = Target::add(&mut targets, node);
                        other_nodes.push((node.clone(), b));
                        b
                    }
                },
            };
            targets[batch].take(cmd);
            assigned.push(batch);
            continue;
        }
        // A caller that judged fewer commands than it gave has the rest judged here.
        let judgement = &judged
            .get(index)
            .copied()
            .unwrap_or_else(|| Judgement::of(cmd));
        let Some(slot) = judgement.slot() else {
            match judgement.route(cmd) {
                Err(e) => failed.push((index, e)),
                Ok(_) => keyless.push(index),
            }
            assigned.push(UNASSIGNED);
            continue;
        };
        let Some(shard) = map.shard_index_for(slot) else {
            failed.push((
                index,
                Error::new(
                    ErrorKind::ClusterDown,
                    format!("no node serves slot {slot}"),
                ),
            ));
            assigned.push(UNASSIGNED);
            continue;
        };
        let (key, node) = match target_of(judgement, shard, map, reads) {
            Ok(target) => target,
            Err(e) => {
                failed.push((index, e));
                assigned.push(UNASSIGNED);
                continue;
            }
        };
        let batch = *batch_of_key[key].get_or_insert_with(|| Target::add(&mut targets, node));
        targets[batch].take(cmd);
        assigned.push(batch);
    }
    if !keyless.is_empty() {
        let batch = match targets.first() {
            Some(_) => Some(0),
            None if !map.shards().is_empty() => {
                Some(Target::add(&mut targets, &map.shards()[0].primary))
            }
            None => None,
        };
        for index in keyless {
            match batch {
                Some(b) => {
                    targets[b].take(&cmds[index]);
                    assigned[index] = b;
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
        .into_iter()
        .map(|t| NodeBatch {
            node: t.node,
            entries: Vec::with_capacity(t.commands),
            buf: BytesMut::with_capacity(t.bytes),
        })
        .collect();
    for (index, batch) in assigned.into_iter().enumerate() {
        if let Some(batch) = batches.get_mut(batch) {
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

/// A command with no batch (failed, or keyless until the batches are known).
const UNASSIGNED: usize = usize::MAX;

/// One batch being planned: its node, and the bytes and commands it will hold.
struct Target {
    node: NodeAddr,
    bytes: usize,
    commands: usize,
}

impl Target {
    /// A new batch for `node`; its number.
    fn add(targets: &mut Vec<Target>, node: &NodeAddr) -> usize {
        targets.push(Target {
            node: node.clone(),
            bytes: 0,
            commands: 0,
        });
        targets.len() - 1
    }

    /// `cmd` goes in this batch.
    fn take(&mut self, cmd: &Cmd) {
        self.bytes += cmd.encoded_len();
        self.commands += 1;
    }
}

/// The one-command case (every plain `client.get(..)`), without the bookkeeping vectors
/// a pipeline needs.
fn plan_single(cmd: &Cmd, judged: &Judgement, map: &SlotMap, reads: &[ReadTarget]) -> Plan {
    let node = match judged.route(cmd) {
        Ok(Route::Slot(slot)) => map
            .shard_index_for(slot)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ClusterDown,
                    format!("no node serves slot {slot}"),
                )
            })
            .and_then(|shard| target_of(judged, shard, map, reads).map(|(_, node)| node.clone())),
        Ok(Route::AnyNode) if !map.shards().is_empty() => Ok(map.shards()[0].primary.clone()),
        Ok(Route::AnyNode) => Err(Error::new(
            ErrorKind::ClusterDown,
            "no node known to send it to",
        )),
        Err(e) => Err(e),
    };
    match node {
        Ok(node) => {
            let mut buf = BytesMut::with_capacity(cmd.encoded_len());
            cmd.write_to(&mut buf);
            Plan {
                batches: vec![NodeBatch {
                    node,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use crate::core::resp::decode::{decode_slice, Decoded};
    use crate::core::resp::Value;
    use crate::core::slot::slot_for_key;

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
            assert_eq!(batch.entries.len(), batch.entries.capacity());
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
    fn reads_go_where_the_router_said_and_writes_to_primaries() {
        let map = three_nodes();
        let replica = |p| NodeAddr::new("127.0.0.2", p);
        let reads = [
            ReadTarget::Node(replica(8000)),
            ReadTarget::Primary,
            ReadTarget::Unavailable,
        ];
        let key_on = |shard: usize| {
            (0..)
                .map(|i| format!("k{i}"))
                .find(|k| map.shard_index_for(slot_for_key(k.as_bytes())) == Some(shard))
                .unwrap()
        };
        let (k0, k1, k2) = (key_on(0), key_on(1), key_on(2));
        let cmds = vec![
            cmd("GET").arg(&k0),
            cmd("SET").arg(&k0).arg(1),
            cmd("HGETALL").arg(&k0),
            cmd("GET").arg(&k1),
            cmd("GET").arg(&k2),
            cmd("SET").arg(&k2).arg(1),
        ];
        let plan = plan_pipeline_reading(&cmds, &map, &reads);
        let by_node: Vec<(String, Vec<usize>)> = plan
            .batches
            .iter()
            .map(|b| {
                (
                    b.node.to_string(),
                    b.entries.iter().map(|e| e.index).collect(),
                )
            })
            .collect();
        assert_eq!(
            by_node,
            vec![
                ("127.0.0.2:8000".to_string(), vec![0, 2]),
                (map.shards()[0].primary.to_string(), vec![1]),
                (map.shards()[1].primary.to_string(), vec![3]),
                (map.shards()[2].primary.to_string(), vec![5]),
            ]
        );
        assert_eq!(plan.failed.len(), 1);
        assert_eq!(plan.failed[0].0, 4);
        assert_eq!(plan.failed[0].1.kind(), ErrorKind::ClusterDown);
        // The one-command path agrees.
        let single = plan_pipeline_reading(&cmds[..1], &map, &reads);
        assert_eq!(single.batches[0].node, replica(8000));
        let single = plan_pipeline_reading(&cmds[1..2], &map, &reads);
        assert_eq!(single.batches[0].node, map.shards()[0].primary);
    }
}
