//! Multi-node commands: one copy per node, replies merged by the command table's
//! response policy. Pure: [`fan_out`] says which nodes, [`merge`] combines what they
//! answered.
//!
//! | policy | commands | merged reply |
//! |---|---|---|
//! | sum | `DBSIZE` | the integers added |
//! | min | `WAIT`-like | the smallest integer |
//! | all succeeded | `FLUSHALL`, `FLUSHDB`, `SCRIPT LOAD/FLUSH`, `FUNCTION LOAD/DELETE/FLUSH`, `CONFIG SET`, `PING` | the one answer every node gave |
//! | one succeeded | `SCRIPT KILL`, `FUNCTION KILL` | the first success |
//! | logical AND | `SCRIPT EXISTS` | per position, 1 only where every node said 1 |
//! | concatenation | `KEYS`, `PUBSUB SHARDCHANNELS` | every node's elements |
//! | special | `RANDOMKEY` | the first node's key that is not nil |
//! | special | `INFO`, `MEMORY STATS`, `LATENCY ...` | a map from node to its reply |
//!
//! A node that fails makes the whole command an error of kind
//! [`ErrorKind::PartialFailure`] carrying every node's outcome
//! ([`Error::node_outcomes`]), never a silently partial answer (except where one
//! success is the policy).

use crate::core::cmd::Cmd;
use crate::core::command_table::{command_class, CommandClass, RequestPolicy, ResponsePolicy};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::resp::Value;
use crate::core::topology::{NodeAddr, SlotMap};

/// Where a multi-node command goes, and how its replies combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fanout {
    /// One copy of the command per node, in this order.
    pub nodes: Vec<NodeAddr>,
    /// How the replies are merged.
    pub response: ResponsePolicy,
    /// The command's upper-cased name (and subcommand), for special merges and errors.
    pub name: String,
}

/// The fan-out of `cmd` over `map`, or `None` when it is not a multi-node command.
/// Multi-node commands with their own API (`SCAN`) or whose meaning is one connection's
/// writes (`WAIT`, `WAITAOF`) are refused here.
///
/// ```
/// use redis_cluster_uring::{cmd, core::fanout::fan_out, NodeAddr, SlotMap};
/// let map = SlotMap::split_evenly(&[NodeAddr::new("a", 1), NodeAddr::new("b", 1)]);
/// let f = fan_out(&cmd("DBSIZE"), &map).unwrap().unwrap();
/// assert_eq!(f.nodes.len(), 2);
/// assert!(fan_out(&cmd("GET").arg("k"), &map).is_none());
/// ```
pub fn fan_out(cmd: &Cmd, map: &SlotMap) -> Option<Result<Fanout>> {
    fan_out_class(cmd, command_class(cmd), map)
}

/// [`fan_out`] for a command whose class is known already (judged when it entered the
/// request).
pub(crate) fn fan_out_class(
    cmd: &Cmd,
    class: CommandClass,
    map: &SlotMap,
) -> Option<Result<Fanout>> {
    let CommandClass::MultiNode { request, response } = class else {
        return None;
    };
    let mut name = String::from_utf8_lossy(cmd.name()).to_ascii_uppercase();
    let refuse = |why: &str| Some(Err(Error::new(ErrorKind::Unsupported, why.to_string())));
    match name.as_str() {
        "SCAN" => return refuse("SCAN over a cluster needs a cursor per node: use Client::scan"),
        "WAIT" | "WAITAOF" => {
            return refuse(
                "WAIT and WAITAOF wait for one connection's writes: send them to a node with Client::query_node",
            )
        }
        _ => {}
    }
    if let Some(sub) = cmd.arg_at(1) {
        if matches!(
            name.as_str(),
            "SCRIPT" | "FUNCTION" | "CONFIG" | "MEMORY" | "LATENCY" | "SLOWLOG" | "PUBSUB"
        ) {
            name.push(' ');
            name.push_str(&String::from_utf8_lossy(sub).to_ascii_uppercase());
        }
    }
    let mut nodes: Vec<NodeAddr> = map.primaries().cloned().collect();
    if request == RequestPolicy::AllNodes {
        for shard in map.shards() {
            nodes.extend(shard.replicas.iter().cloned());
        }
    }
    nodes.dedup();
    if nodes.is_empty() {
        return Some(Err(Error::new(
            ErrorKind::ClusterDown,
            format!("no node known to send {name} to"),
        )));
    }
    Some(Ok(Fanout {
        nodes,
        response,
        name,
    }))
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn shape(name: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("{name}: a node answered {what}, which cannot be merged"),
    )
}

/// Merges the per-node replies (`replies[i]` from `fanout.nodes[i]`).
///
/// ```
/// use redis_cluster_uring::{cmd, core::fanout::{fan_out, merge}, NodeAddr, SlotMap, Value};
/// let map = SlotMap::split_evenly(&[NodeAddr::new("a", 1), NodeAddr::new("b", 1)]);
/// let f = fan_out(&cmd("DBSIZE"), &map).unwrap().unwrap();
/// assert_eq!(merge(&f, vec![Ok(Value::Int(3)), Ok(Value::Int(4))]).unwrap(), Value::Int(7));
/// ```
pub fn merge(fanout: &Fanout, replies: Vec<Result<Value>>) -> Result<Value> {
    let name = fanout.name.as_str();
    let outcomes: Vec<(NodeAddr, Result<Value>)> =
        fanout.nodes.iter().cloned().zip(replies).collect();
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    if fanout.response == ResponsePolicy::OneSucceeded {
        if let Some((_, Ok(v))) = outcomes.iter().find(|(_, r)| r.is_ok()) {
            return Ok(v.clone());
        }
    }
    if failed > 0 || outcomes.is_empty() {
        let first = outcomes
            .iter()
            .find_map(|(node, r)| r.as_ref().err().map(|e| format!("{node}: {e}")))
            .unwrap_or_default();
        return Err(Error::new(
            ErrorKind::PartialFailure,
            format!(
                "{name} failed on {failed} of {} nodes (first: {first})",
                outcomes.len()
            ),
        )
        .with_outcomes(outcomes));
    }
    let values: Vec<Value> = outcomes.into_iter().filter_map(|(_, r)| r.ok()).collect();
    match fanout.response {
        ResponsePolicy::Sum | ResponsePolicy::Min => {
            let ints = values
                .iter()
                .map(int)
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| shape(name, "something other than an integer"))?;
            Ok(Value::Int(if fanout.response == ResponsePolicy::Sum {
                ints.iter().fold(0i64, |a, b| a.saturating_add(*b))
            } else {
                ints.iter().copied().min().unwrap_or(0)
            }))
        }
        ResponsePolicy::AllSucceeded | ResponsePolicy::OneSucceeded => {
            let first = values[0].clone();
            if values.iter().all(|v| *v == first) {
                Ok(first)
            } else {
                Err(Error::new(
                    ErrorKind::PartialFailure,
                    format!("{name}: the nodes answered differently"),
                ))
            }
        }
        ResponsePolicy::LogicalAnd => {
            let mut merged: Option<Vec<i64>> = None;
            for v in &values {
                let Value::Array(items) = v else {
                    return Err(shape(name, "something other than an array"));
                };
                let bits = items
                    .iter()
                    .map(int)
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| shape(name, "an array of non-integers"))?;
                merged = Some(match merged {
                    None => bits,
                    Some(m) if m.len() == bits.len() => m
                        .iter()
                        .zip(&bits)
                        .map(|(a, b)| i64::from(*a != 0 && *b != 0))
                        .collect(),
                    Some(_) => return Err(shape(name, "arrays of different lengths")),
                });
            }
            Ok(Value::Array(
                merged
                    .unwrap_or_default()
                    .into_iter()
                    .map(Value::Int)
                    .collect(),
            ))
        }
        ResponsePolicy::Concat => {
            let mut all = Vec::new();
            for v in values {
                match v {
                    Value::Array(items) | Value::Set(items) => all.extend(items),
                    Value::Nil => {}
                    _ => return Err(shape(name, "something other than an array")),
                }
            }
            Ok(Value::Array(all))
        }
        ResponsePolicy::Special if name == "RANDOMKEY" => Ok(values
            .into_iter()
            .find(|v| *v != Value::Nil)
            .unwrap_or(Value::Nil)),
        ResponsePolicy::Special => Ok(Value::Map(
            fanout
                .nodes
                .iter()
                .map(|n| Value::Bulk(n.to_string().into()))
                .zip(values)
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use bytes::Bytes;

    fn map() -> SlotMap {
        let mut map = SlotMap::split_evenly(&[NodeAddr::new("a", 1), NodeAddr::new("b", 1)]);
        map.add_replica(0, NodeAddr::new("ra", 1));
        map
    }

    fn ok(s: &'static str) -> Result<Value> {
        Ok(Value::SimpleString(Bytes::from_static(s.as_bytes())))
    }

    fn fan(c: Cmd) -> Fanout {
        fan_out(&c, &map()).unwrap().unwrap()
    }

    #[test]
    fn which_nodes() {
        assert_eq!(fan(cmd("DBSIZE")).nodes.len(), 2, "primaries");
        assert_eq!(
            fan(cmd("SCRIPT").arg("LOAD").arg("x")).nodes.len(),
            3,
            "all nodes"
        );
        assert_eq!(fan(cmd("script").arg("load").arg("x")).name, "SCRIPT LOAD");
        for refused in [cmd("SCAN").arg(0), cmd("WAIT").arg(1).arg(10)] {
            let e = fan_out(&refused, &map()).unwrap().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
        }
        assert_eq!(
            fan_out(&cmd("DBSIZE"), &SlotMap::empty())
                .unwrap()
                .unwrap_err()
                .kind(),
            ErrorKind::ClusterDown
        );
    }

    #[test]
    fn every_policy_merges() {
        let two = |a, b| vec![Ok(a), Ok(b)];
        assert_eq!(
            merge(&fan(cmd("DBSIZE")), two(Value::Int(2), Value::Int(5))).unwrap(),
            Value::Int(7)
        );
        assert_eq!(
            merge(&fan(cmd("FLUSHALL")), vec![ok("OK"), ok("OK")]).unwrap(),
            ok("OK").unwrap()
        );
        let keys = merge(
            &fan(cmd("KEYS").arg("*")),
            two(
                Value::Array(vec![Value::Int(1)]),
                Value::Array(vec![Value::Int(2), Value::Int(3)]),
            ),
        )
        .unwrap();
        assert_eq!(
            keys,
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)])
        );
        let exists = fan(cmd("SCRIPT").arg("EXISTS").arg("a").arg("b"));
        assert_eq!(exists.nodes.len(), 2);
        let and = merge(
            &exists,
            two(
                Value::Array(vec![Value::Int(1), Value::Int(1)]),
                Value::Array(vec![Value::Int(1), Value::Int(0)]),
            ),
        )
        .unwrap();
        assert_eq!(and, Value::Array(vec![Value::Int(1), Value::Int(0)]));
        let random = merge(
            &fan(cmd("RANDOMKEY")),
            two(Value::Nil, Value::Bulk(Bytes::from_static(b"k"))),
        )
        .unwrap();
        assert_eq!(random, Value::Bulk(Bytes::from_static(b"k")));
        let info = merge(&fan(cmd("INFO")), two(Value::Int(1), Value::Int(2))).unwrap();
        assert!(matches!(info, Value::Map(ref m) if m.len() == 2));
        let kill = fan(cmd("SCRIPT").arg("KILL"));
        let one = merge(
            &kill,
            vec![Err(Error::new(ErrorKind::ServerError, "NOTBUSY")), ok("OK")],
        )
        .unwrap();
        assert_eq!(one, ok("OK").unwrap());
    }

    #[test]
    fn failures_and_odd_shapes_are_typed_with_every_outcome() {
        let f = fan(cmd("FLUSHALL"));
        let e = merge(&f, vec![ok("OK"), Err(Error::new(ErrorKind::Io, "reset"))]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PartialFailure);
        let outcomes = e.node_outcomes().unwrap();
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes[0].1.is_ok() && outcomes[1].1.is_err());
        assert!(e.detail().contains("1 of 2"), "{e}");
        let e = merge(&fan(cmd("DBSIZE")), vec![ok("OK"), Ok(Value::Int(1))]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        let e = merge(&fan(cmd("PING")), vec![ok("PONG"), ok("LOADING")]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PartialFailure);
    }
}
