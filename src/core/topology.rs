//! The slot map: which node serves each of the 16384 slots.
//!
//! Built by pure functions from a `CLUSTER SLOTS` or `CLUSTER SHARDS` reply; the client
//! keeps it in an `Rc` and swaps in a new one when a refresh completes, so planning always
//! sees one consistent map. A single `MOVED` updates one slot in place.

use std::fmt;

use crate::core::config::RefreshPolicy;
use crate::core::error::{Error, Result};
use crate::core::resp::Value;
use crate::core::slot::{Slot, SLOT_COUNT};

pub use crate::core::node::NodeAddr;

/// One primary and its replicas, serving a set of slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The primary, which serves writes (and reads by default).
    pub primary: NodeAddr,
    /// Replicas of the primary, in the order the server listed them.
    pub replicas: Vec<NodeAddr>,
}

/// Marks a slot nobody serves.
const UNASSIGNED: u16 = u16::MAX;

/// Slot → shard table.
///
/// ```
/// use redis_cluster_uring::{NodeAddr, Slot, SlotMap};
/// let mut map = SlotMap::empty();
/// let slot = Slot::new(42).unwrap();
/// assert!(map.node_for(slot).is_none());
/// map.apply_moved(slot, &NodeAddr::new("10.0.0.1", 7000));
/// assert_eq!(map.node_for(slot), Some(&NodeAddr::new("10.0.0.1", 7000)));
/// assert_eq!(map.covered_slots(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// Shard index per slot, `UNASSIGNED` when none.
    slots: Box<[u16]>,
    shards: Vec<Shard>,
}

impl Default for SlotMap {
    fn default() -> Self {
        SlotMap::empty()
    }
}

fn malformed(what: impl fmt::Display) -> Error {
    Error::protocol(format!("malformed slot map reply: {what}"))
}

fn text(v: &Value) -> Option<&str> {
    v.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

fn port(v: &Value) -> Result<u16> {
    int(v)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| malformed(format!("bad port {v:?}")))
}

fn slot_of(v: &Value) -> Result<u16> {
    int(v)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|&s| s < SLOT_COUNT)
        .ok_or_else(|| malformed(format!("bad slot {v:?}")))
}

/// Key/value pairs of a RESP3 map or a RESP2 flat array.
fn pairs(v: &Value) -> Result<Vec<(&Value, &Value)>> {
    match v {
        Value::Map(p) => Ok(p.iter().map(|(k, v)| (k, v)).collect()),
        Value::Array(items) if items.len() % 2 == 0 => {
            Ok(items.chunks_exact(2).map(|c| (&c[0], &c[1])).collect())
        }
        other => Err(malformed(format!("expected a map, got {other:?}"))),
    }
}

fn field<'a>(pairs: &[(&'a Value, &'a Value)], name: &str) -> Option<&'a Value> {
    pairs
        .iter()
        .find(|(k, _)| text(k) == Some(name))
        .map(|(_, v)| *v)
}

impl SlotMap {
    /// A map where no slot has an owner.
    pub fn empty() -> SlotMap {
        SlotMap {
            slots: vec![UNASSIGNED; SLOT_COUNT as usize].into_boxed_slice(),
            shards: Vec::new(),
        }
    }

    /// A map that splits the slots evenly over `primaries`, in order, the way
    /// `redis-cli --cluster create` assigns them. For tests, benchmarks and examples.
    ///
    /// ```
    /// use redis_cluster_uring::{NodeAddr, Slot, SlotMap};
    /// let map = SlotMap::split_evenly(&[NodeAddr::new("a", 1), NodeAddr::new("b", 2)]);
    /// assert!(map.is_complete());
    /// assert_eq!(map.node_for(Slot::new(16383).unwrap()), Some(&NodeAddr::new("b", 2)));
    /// ```
    pub fn split_evenly(primaries: &[NodeAddr]) -> SlotMap {
        let mut map = SlotMap::empty();
        if primaries.is_empty() {
            return map;
        }
        for (i, p) in primaries.iter().enumerate() {
            map.shards.push(Shard {
                primary: p.clone(),
                replicas: Vec::new(),
            });
            let per = SLOT_COUNT as usize / primaries.len();
            let start = i * per;
            let end = if i + 1 == primaries.len() {
                SLOT_COUNT as usize
            } else {
                start + per
            };
            map.slots[start..end].fill(i as u16);
        }
        map
    }

    /// Builds the map from a `CLUSTER SLOTS` reply, with endpoints read as the spec says
    /// and no answering host to substitute (see [`SlotMap::from_cluster_slots_with_host`]).
    /// Ranges that overlap an earlier one override it (the server never sends that; last
    /// one wins, documented rather than refused, so a transient odd view does not stop the
    /// client).
    pub fn from_cluster_slots(reply: &Value) -> Result<SlotMap> {
        SlotMap::from_cluster_slots_with_host(reply, "")
    }

    /// Builds the map from a `CLUSTER SLOTS` reply that `asked_host` sent.
    ///
    /// Node entries are `[endpoint, port, id, metadata]`. The endpoint is read as the
    /// cluster spec says:
    /// - NULL (`cluster-preferred-endpoint-type unknown-endpoint`): the node is reached
    ///   at the address the reply came from, `asked_host`, with the given port;
    /// - empty: the node does not know its own address (only the answering node reports
    ///   itself so), so `asked_host` again;
    /// - `?`: the preferred endpoint is a host name the node does not have. It is never
    ///   taken for `asked_host`: the `ip` of the metadata map is used when the node gives
    ///   one, and otherwise the node is unknown. An unknown primary leaves its slots
    ///   without an owner (those commands fail with `ClusterDown`, and the rest of the map
    ///   works); an unknown replica is left out;
    /// - anything else is a host name or an IP literal (IPv6 without brackets).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use redis_cluster_uring::{NodeAddr, Slot, SlotMap, Value};
    /// let bulk = |s: &'static str| Value::Bulk(Bytes::from_static(s.as_bytes()));
    /// let reply = Value::Array(vec![Value::Array(vec![
    ///     Value::Int(0),
    ///     Value::Int(16383),
    ///     Value::Array(vec![Value::Nil, Value::Int(7000), bulk("id")]),
    /// ])]);
    /// let map = SlotMap::from_cluster_slots_with_host(&reply, "10.0.0.5").unwrap();
    /// assert_eq!(map.node_for(Slot::new(9).unwrap()), Some(&NodeAddr::new("10.0.0.5", 7000)));
    /// ```
    pub fn from_cluster_slots_with_host(reply: &Value, asked_host: &str) -> Result<SlotMap> {
        let Value::Array(ranges) = reply else {
            return Err(malformed("CLUSTER SLOTS reply is not an array"));
        };
        let mut map = SlotMap::empty();
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err(malformed("slot range is not an array"));
            };
            if fields.len() < 3 {
                return Err(malformed("slot range without a primary"));
            }
            let start = slot_of(&fields[0])?;
            let end = slot_of(&fields[1])?;
            if start > end {
                return Err(malformed(format!("slot range {start}-{end} is reversed")));
            }
            let mut nodes = Vec::with_capacity(fields.len() - 2);
            for node in &fields[2..] {
                let Value::Array(parts) = node else {
                    return Err(malformed("node entry is not an array"));
                };
                if parts.len() < 2 {
                    return Err(malformed("node entry without ip and port"));
                }
                let port = port(&parts[1])?;
                let metadata_ip = parts
                    .get(3)
                    .and_then(|m| pairs(m).ok())
                    .and_then(|m| field(&m, "ip").and_then(text).map(str::to_owned));
                let host = match &parts[0] {
                    Value::Nil => Some(asked_host.to_owned()),
                    endpoint => match text(endpoint) {
                        Some("") => Some(asked_host.to_owned()),
                        Some("?") => metadata_ip.filter(|ip| !ip.is_empty() && ip != "?"),
                        Some(host) => Some(host.to_owned()),
                        None => return Err(malformed("node endpoint is not text")),
                    },
                };
                nodes.push(host.map(|h| NodeAddr::new(h, port)));
            }
            let mut nodes = nodes.into_iter();
            let Some(Some(primary)) = nodes.next() else {
                // A primary nobody can reach: its slots stay without an owner.
                continue;
            };
            let index = map.shard_index_or_insert(primary, nodes.flatten().collect())?;
            map.slots[start as usize..=end as usize].fill(index);
        }
        Ok(map)
    }

    /// Builds the map from a `CLUSTER SHARDS` reply (Redis 7+), RESP2 or RESP3.
    ///
    /// The primary is the node whose role is `master`; nodes reported `fail` are left
    /// out. The address is the node's `endpoint` read as in
    /// [`SlotMap::from_cluster_slots_with_host`]: NULL or empty means `asked_host`, `?`
    /// falls back to the node's `ip`, and a node with neither is unknown (a shard whose
    /// primary is unknown keeps its slots without an owner). The port is the plain
    /// `port` (the `tls-port` only when no plain one is given); the client itself asks
    /// `CLUSTER SLOTS`, which answers a TLS connection with TLS ports.
    pub fn from_cluster_shards(reply: &Value, asked_host: &str) -> Result<SlotMap> {
        let (Value::Array(shards) | Value::Set(shards)) = reply else {
            return Err(malformed("CLUSTER SHARDS reply is not an array"));
        };
        let mut map = SlotMap::empty();
        for shard in shards {
            let shard = pairs(shard)?;
            let Some(Value::Array(slots)) = field(&shard, "slots") else {
                return Err(malformed("shard without slots"));
            };
            if slots.len() % 2 != 0 {
                return Err(malformed("odd number of slot bounds"));
            }
            let Some(Value::Array(nodes)) = field(&shard, "nodes") else {
                return Err(malformed("shard without nodes"));
            };
            let mut primary = None;
            let mut replicas = Vec::new();
            for node in nodes {
                let node = pairs(node)?;
                if field(&node, "health").and_then(text) == Some("fail") {
                    continue;
                }
                let ip = field(&node, "ip")
                    .and_then(text)
                    .filter(|h| !h.is_empty() && *h != "?");
                let host = match field(&node, "endpoint") {
                    None | Some(Value::Nil) => Some(asked_host),
                    Some(endpoint) => match text(endpoint) {
                        Some("") => Some(asked_host),
                        Some("?") => ip,
                        Some(host) => Some(host),
                        None => return Err(malformed("node endpoint is not text")),
                    },
                };
                let port_field = field(&node, "port")
                    .or_else(|| field(&node, "tls-port"))
                    .ok_or_else(|| malformed("node without port"))?;
                let port = port(port_field)?;
                let is_primary = field(&node, "role").and_then(text) == Some("master");
                match (host, is_primary) {
                    (Some(host), true) => primary = Some(Some(NodeAddr::new(host, port))),
                    (None, true) => primary = Some(None),
                    (Some(host), false) => replicas.push(NodeAddr::new(host, port)),
                    (None, false) => {}
                }
            }
            if slots.is_empty() {
                continue;
            }
            let primary = match primary {
                Some(Some(primary)) => primary,
                // Its endpoint is unknown: its slots stay without an owner.
                Some(None) => continue,
                None => return Err(malformed("shard with slots but no healthy primary")),
            };
            let index = map.shard_index_or_insert(primary, replicas)?;
            for bounds in slots.chunks_exact(2) {
                let (start, end) = (slot_of(&bounds[0])?, slot_of(&bounds[1])?);
                if start > end {
                    return Err(malformed(format!("slot range {start}-{end} is reversed")));
                }
                map.slots[start as usize..=end as usize].fill(index);
            }
        }
        Ok(map)
    }

    fn shard_index_or_insert(&mut self, primary: NodeAddr, replicas: Vec<NodeAddr>) -> Result<u16> {
        if let Some(i) = self.shards.iter().position(|s| s.primary == primary) {
            let shard = &mut self.shards[i];
            for r in replicas {
                if !shard.replicas.contains(&r) {
                    shard.replicas.push(r);
                }
            }
            return Ok(i as u16);
        }
        if self.shards.len() >= UNASSIGNED as usize {
            return Err(malformed("more shards than slots"));
        }
        self.shards.push(Shard { primary, replicas });
        Ok((self.shards.len() - 1) as u16)
    }

    /// Index (into [`SlotMap::shards`]) of the shard serving `slot`.
    pub fn shard_index_for(&self, slot: Slot) -> Option<usize> {
        match self.slots[slot.index()] {
            UNASSIGNED => None,
            i => Some(i as usize),
        }
    }

    /// The shard serving `slot`, if any.
    pub fn shard_for(&self, slot: Slot) -> Option<&Shard> {
        self.shard_index_for(slot).map(|i| &self.shards[i])
    }

    /// The primary serving `slot`, if any.
    pub fn node_for(&self, slot: Slot) -> Option<&NodeAddr> {
        self.shard_for(slot).map(|s| &s.primary)
    }

    /// Points one slot at `addr` after a `MOVED`: the shard whose primary it is, or a new
    /// shard without replicas. Other slots are untouched until a full refresh.
    pub fn apply_moved(&mut self, slot: Slot, addr: &NodeAddr) {
        if let Ok(index) = self.shard_index_or_insert(addr.clone(), Vec::new()) {
            self.slots[slot.index()] = index;
        }
    }

    /// All shards (some may own no slot after MOVED updates).
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The primaries, in shard order.
    pub fn primaries(&self) -> impl Iterator<Item = &NodeAddr> {
        self.shards.iter().map(|s| &s.primary)
    }

    /// Number of slots that have an owner.
    pub fn covered_slots(&self) -> usize {
        self.slots.iter().filter(|&&s| s != UNASSIGNED).count()
    }

    /// True when every slot has an owner.
    pub fn is_complete(&self) -> bool {
        self.covered_slots() == SLOT_COUNT as usize
    }

    /// True when both maps give every slot the same primary (replica lists and shard
    /// order may differ).
    pub fn same_owners(&self, other: &SlotMap) -> bool {
        fn owner(map: &SlotMap, i: u16) -> Option<&NodeAddr> {
            (i != UNASSIGNED).then(|| &map.shards[i as usize].primary)
        }
        self.slots
            .iter()
            .zip(other.slots.iter())
            .all(|(&a, &b)| owner(self, a) == owner(other, b))
    }

    /// Adds a replica to shard `shard` (tests and examples build maps with it).
    pub fn add_replica(&mut self, shard: usize, replica: NodeAddr) {
        if let Some(s) = self.shards.get_mut(shard) {
            if !s.replicas.contains(&replica) {
                s.replicas.push(replica);
            }
        }
    }

    /// True when `addr` is a replica (and not a primary) in this map.
    pub fn is_replica(&self, addr: &NodeAddr) -> bool {
        !self.shards.iter().any(|s| s.primary == *addr)
            && self.shards.iter().any(|s| s.replicas.contains(addr))
    }

    /// True when `addr` is a primary or a replica in this map.
    pub fn contains_node(&self, addr: &NodeAddr) -> bool {
        self.shards
            .iter()
            .any(|s| s.primary == *addr || s.replicas.contains(addr))
    }
}

/// Which of the answers a slot-map refresh got to adopt, by index; `None` when no answer
/// assigns any slot.
///
/// - [`RefreshPolicy::FirstComplete`]: the first answer that covers every slot, else the
///   one covering the most.
/// - [`RefreshPolicy::Majority`]: the view (same primary for every slot) most answers
///   share; ties go to the view covering more slots, then to the earliest.
///
/// ```
/// use redis_cluster_uring::{topology::choose_view, NodeAddr, RefreshPolicy, SlotMap};
/// let a = SlotMap::split_evenly(&[NodeAddr::new("a", 1), NodeAddr::new("b", 2)]);
/// let stale = SlotMap::split_evenly(&[NodeAddr::new("a", 1), NodeAddr::new("old", 2)]);
/// let answers = [stale.clone(), a.clone(), a.clone()];
/// assert_eq!(choose_view(&answers, RefreshPolicy::FirstComplete), Some(0));
/// assert_eq!(choose_view(&answers, RefreshPolicy::Majority), Some(1));
/// ```
pub fn choose_view(answers: &[SlotMap], policy: RefreshPolicy) -> Option<usize> {
    let usable = |i: &usize| answers[*i].covered_slots() > 0;
    match policy {
        RefreshPolicy::FirstComplete => (0..answers.len())
            .find(|&i| answers[i].is_complete())
            .or_else(|| {
                (0..answers.len())
                    .filter(usable)
                    .max_by_key(|&i| (answers[i].covered_slots(), std::cmp::Reverse(i)))
            }),
        RefreshPolicy::Majority => (0..answers.len()).filter(usable).max_by_key(|&i| {
            let votes = answers
                .iter()
                .filter(|m| m.same_owners(&answers[i]))
                .count();
            (votes, answers[i].covered_slots(), std::cmp::Reverse(i))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn node(ip: &str, port: i64, id: &str) -> Value {
        Value::Array(vec![
            bulk(ip),
            Value::Int(port),
            bulk(id),
            Value::Array(vec![]),
        ])
    }

    fn slots_reply() -> Value {
        Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000, "a"),
                node("127.0.0.1", 7003, "d"),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("127.0.0.1", 7001, "b"),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("", 7002, "c"),
            ]),
        ])
    }

    #[test]
    fn cluster_slots_builds_a_complete_map() {
        let map = SlotMap::from_cluster_slots_with_host(&slots_reply(), "10.1.1.1").unwrap();
        assert!(map.is_complete());
        assert_eq!(map.shards().len(), 3);
        let s = |n| Slot::new(n).unwrap();
        assert_eq!(map.node_for(s(0)).unwrap().port, 7000);
        assert_eq!(map.node_for(s(5460)).unwrap().port, 7000);
        assert_eq!(map.node_for(s(5461)).unwrap().port, 7001);
        assert_eq!(
            map.shard_for(s(1)).unwrap().replicas,
            vec![NodeAddr::new("127.0.0.1", 7003)]
        );
        // An empty ip means "the node you asked".
        assert_eq!(
            map.node_for(s(16383)),
            Some(&NodeAddr::new("10.1.1.1", 7002))
        );
    }

    #[test]
    fn split_ranges_of_one_primary_share_a_shard() {
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(10), node("h", 1, "a")]),
            Value::Array(vec![Value::Int(11), Value::Int(20), node("h", 2, "b")]),
            Value::Array(vec![Value::Int(21), Value::Int(30), node("h", 1, "a")]),
        ]);
        let map = SlotMap::from_cluster_slots(&reply).unwrap();
        assert_eq!(map.shards().len(), 2);
        assert_eq!(map.covered_slots(), 31);
        assert!(!map.is_complete());
    }

    #[test]
    fn malformed_slots_replies_are_protocol_errors() {
        let bad = [
            Value::Int(1),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1)])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(5),
                Value::Int(1),
                node("h", 1, "a"),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(16384),
                node("h", 1, "a"),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(-1),
                Value::Int(3),
                node("h", 1, "a"),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(3),
                node("h", 70000, "a"),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(3),
                Value::Array(vec![bulk("h")]),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(3),
                Value::Int(9),
            ])]),
        ];
        for reply in bad {
            let e = SlotMap::from_cluster_slots(&reply).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Protocol, "{reply:?}");
        }
    }

    fn shard_node(port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("x"),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    #[test]
    fn cluster_shards_resp2_and_failed_nodes() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![Value::Int(0), Value::Int(8191)]),
                bulk("nodes"),
                Value::Array(vec![
                    shard_node(7000, "master", "online"),
                    shard_node(7003, "replica", "online"),
                    shard_node(7004, "replica", "fail"),
                ]),
            ]),
            Value::Map(vec![
                (
                    bulk("slots"),
                    Value::Array(vec![
                        Value::Int(8192),
                        Value::Int(16000),
                        Value::Int(16001),
                        Value::Int(16383),
                    ]),
                ),
                (
                    bulk("nodes"),
                    Value::Array(vec![shard_node(7001, "master", "online")]),
                ),
            ]),
        ]);
        let map = SlotMap::from_cluster_shards(&reply, "").unwrap();
        assert!(map.is_complete());
        assert_eq!(
            map.shards()[0].replicas,
            vec![NodeAddr::new("127.0.0.1", 7003)]
        );
        assert_eq!(map.node_for(Slot::new(16383).unwrap()).unwrap().port, 7001);
        // A shard with slots and only failed nodes cannot be served.
        let dead = Value::Array(vec![Value::Array(vec![
            bulk("slots"),
            Value::Array(vec![Value::Int(0), Value::Int(1)]),
            bulk("nodes"),
            Value::Array(vec![shard_node(7000, "master", "fail")]),
        ])]);
        assert!(SlotMap::from_cluster_shards(&dead, "").is_err());
    }

    #[test]
    fn moved_updates_one_slot() {
        let mut map = SlotMap::from_cluster_slots(&slots_reply()).unwrap();
        let s = Slot::new(100).unwrap();
        map.apply_moved(s, &NodeAddr::new("127.0.0.1", 7001));
        assert_eq!(map.node_for(s).unwrap().port, 7001);
        assert_eq!(map.node_for(Slot::new(101).unwrap()).unwrap().port, 7000);
        assert_eq!(map.shards().len(), 3);
        map.apply_moved(s, &NodeAddr::new("127.0.0.1", 7010));
        assert_eq!(map.shards().len(), 4);
        assert_eq!(map.node_for(s).unwrap().port, 7010);
    }

    #[test]
    fn addresses_parse_and_print() {
        for s in ["127.0.0.1:7000", "[::1]:7000", "redis-0.svc:6379"] {
            assert_eq!(NodeAddr::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(NodeAddr::parse(":6380"), Some(NodeAddr::new("", 6380)));
        for bad in [
            "",
            "host",
            "host:",
            "host:99999",
            "host:-1",
            "[::1:7000",
            "a b:1",
        ] {
            assert_eq!(NodeAddr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn refresh_chooses_among_disagreeing_answers() {
        let n = |p| NodeAddr::new("10.0.0.1", p);
        let current = SlotMap::split_evenly(&[n(1), n(2), n(3)]);
        let stale = SlotMap::split_evenly(&[n(1), n(2), n(9)]);
        let mut partial = SlotMap::empty();
        partial.apply_moved(Slot::new(0).unwrap(), &n(1));
        let empty = SlotMap::empty();
        // The same view with replicas listed differently is the same view.
        let mut with_replica = current.clone();
        with_replica.shards[0].replicas.push(n(4));
        assert!(with_replica.same_owners(&current));
        assert!(!stale.same_owners(&current));

        use RefreshPolicy::*;
        assert_eq!(choose_view(&[], FirstComplete), None);
        assert_eq!(
            choose_view(std::slice::from_ref(&empty), FirstComplete),
            None
        );
        assert_eq!(choose_view(std::slice::from_ref(&empty), Majority), None);
        assert_eq!(
            choose_view(&[partial.clone(), stale.clone()], FirstComplete),
            Some(1)
        );
        assert_eq!(
            choose_view(&[partial.clone(), empty.clone()], FirstComplete),
            Some(0)
        );
        let answers = [stale.clone(), with_replica.clone(), current.clone()];
        assert_eq!(choose_view(&answers, FirstComplete), Some(0));
        assert_eq!(choose_view(&answers, Majority), Some(1));
        // A tie goes to the view covering more slots.
        assert_eq!(
            choose_view(&[partial.clone(), stale.clone()], Majority),
            Some(1)
        );
        assert!(current.contains_node(&n(3)) && !current.contains_node(&n(9)));
        assert!(with_replica.contains_node(&n(4)));
    }

    /// `[endpoint, port, id, metadata]` with a given endpoint value and metadata pairs.
    fn entry(endpoint: Value, port: i64, metadata: &[(&str, &str)]) -> Value {
        let meta = metadata
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        Value::Array(vec![
            endpoint,
            Value::Int(port),
            bulk("id"),
            Value::Array(meta),
        ])
    }

    fn range(start: i64, end: i64, nodes: Vec<Value>) -> Value {
        let mut fields = vec![Value::Int(start), Value::Int(end)];
        fields.extend(nodes);
        Value::Array(fields)
    }

    #[test]
    fn endpoints_as_the_spec_says() {
        let s = |n| Slot::new(n).unwrap();
        let reply = Value::Array(vec![
            // NULL: the host the reply came from.
            range(0, 999, vec![entry(Value::Nil, 7000, &[("ip", "10.9.9.9")])]),
            // Empty: the node does not know its address; the answering host again.
            range(1000, 1999, vec![entry(bulk(""), 7001, &[])]),
            // `?` with the ip in the metadata: the ip, never the answering host.
            range(
                2000,
                2999,
                vec![entry(bulk("?"), 7002, &[("ip", "10.0.0.2")])],
            ),
            // `?` and nothing else: unknown; only these slots lose their owner.
            range(
                3000,
                3999,
                vec![
                    entry(bulk("?"), 7003, &[]),
                    entry(bulk("replica.example"), 7013, &[]),
                ],
            ),
            // A host name, with an unknown replica left out.
            range(
                4000,
                4999,
                vec![
                    entry(bulk("node4.example"), 7004, &[("ip", "10.0.0.4")]),
                    entry(bulk("?"), 7014, &[]),
                ],
            ),
            // IPv6 literals.
            range(5000, 16383, vec![entry(bulk("::1"), 7005, &[])]),
        ]);
        let map = SlotMap::from_cluster_slots_with_host(&reply, "10.0.0.1").unwrap();
        let at = |n| map.node_for(s(n)).cloned();
        assert_eq!(at(0), Some(NodeAddr::new("10.0.0.1", 7000)));
        assert_eq!(at(1000), Some(NodeAddr::new("10.0.0.1", 7001)));
        assert_eq!(at(2000), Some(NodeAddr::new("10.0.0.2", 7002)));
        assert_eq!(at(3000), None);
        assert_eq!(at(4999), Some(NodeAddr::new("node4.example", 7004)));
        assert!(map.shard_for(s(4000)).unwrap().replicas.is_empty());
        assert_eq!(at(16383), Some(NodeAddr::new("::1", 7005)));
        assert_eq!(at(16383).unwrap().to_string(), "[::1]:7005");
        assert_eq!(map.covered_slots(), 16384 - 1000);
        // A non-text endpoint is a malformed reply, not a guess.
        let bad = Value::Array(vec![range(0, 1, vec![entry(Value::Int(5), 7000, &[])])]);
        assert!(SlotMap::from_cluster_slots(&bad).is_err());
    }

    #[test]
    fn shard_endpoints_as_the_spec_says() {
        let node = |endpoint: Value, ip: &str, port: i64, role: &str| {
            Value::Array(vec![
                bulk("port"),
                Value::Int(port),
                bulk("ip"),
                bulk(ip),
                bulk("endpoint"),
                endpoint,
                bulk("role"),
                bulk(role),
                bulk("health"),
                bulk("online"),
            ])
        };
        let shard = |lo: i64, hi: i64, nodes: Vec<Value>| {
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![Value::Int(lo), Value::Int(hi)]),
                bulk("nodes"),
                Value::Array(nodes),
            ])
        };
        let reply = Value::Array(vec![
            shard(0, 99, vec![node(Value::Nil, "10.9.9.9", 7000, "master")]),
            shard(100, 199, vec![node(bulk("?"), "10.0.0.2", 7001, "master")]),
            shard(
                200,
                299,
                vec![
                    node(bulk("?"), "", 7002, "master"),
                    node(bulk("r.example"), "10.0.0.3", 7012, "replica"),
                ],
            ),
            shard(
                300,
                16383,
                vec![node(bulk("h.example"), "10.0.0.4", 7003, "master")],
            ),
        ]);
        let map = SlotMap::from_cluster_shards(&reply, "10.0.0.1").unwrap();
        let at = |n| map.node_for(Slot::new(n).unwrap()).cloned();
        assert_eq!(at(0), Some(NodeAddr::new("10.0.0.1", 7000)));
        assert_eq!(at(100), Some(NodeAddr::new("10.0.0.2", 7001)));
        assert_eq!(at(200), None);
        assert_eq!(at(300), Some(NodeAddr::new("h.example", 7003)));
    }
}
