//! The slot map: which node serves each of the 16384 slots. (STUB: being written.)

use std::fmt;

use crate::error::Result;
use crate::resp::Value;
use crate::slot::Slot;

/// A node's address as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Makes an address.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port` (also `[v6]:port` and the bare `v6:port` of MOVED replies).
    pub fn parse(s: &str) -> Option<NodeAddr> {
        let _ = s;
        todo!()
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One primary and its replicas, serving a set of slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The primary, which serves writes (and reads by default).
    pub primary: NodeAddr,
    /// Replicas of the primary, in the order the server listed them.
    pub replicas: Vec<NodeAddr>,
}

/// Slot → shard table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    slots: Box<[u16]>,
    shards: Vec<Shard>,
}

impl SlotMap {
    /// Builds the map from a `CLUSTER SLOTS` reply.
    pub fn from_cluster_slots(reply: &Value) -> Result<SlotMap> {
        let _ = reply;
        todo!()
    }

    /// Builds the map from a `CLUSTER SHARDS` reply (Redis 7+).
    pub fn from_cluster_shards(reply: &Value) -> Result<SlotMap> {
        let _ = reply;
        todo!()
    }

    /// The shard serving `slot`, if any.
    pub fn shard_for(&self, slot: Slot) -> Option<&Shard> {
        let _ = slot;
        todo!()
    }

    /// The primary serving `slot`, if any.
    pub fn node_for(&self, slot: Slot) -> Option<&NodeAddr> {
        self.shard_for(slot).map(|s| &s.primary)
    }

    /// Points one slot at `addr` after a `MOVED`.
    pub fn apply_moved(&mut self, slot: Slot, addr: &NodeAddr) {
        let _ = (slot, addr);
        todo!()
    }

    /// All shards.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Number of slots that have an owner.
    pub fn covered_slots(&self) -> usize {
        todo!()
    }
}
