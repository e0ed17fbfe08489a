//! Where read-only commands go, per shard: the [`ReadFrom`] policy applied to what the
//! client knows of each node (up or not, measured round trip, availability zone). Pure:
//! the driver passes that knowledge in and gets one [`ReadTarget`] per shard back.

use std::time::Duration;

use crate::core::config::{ReadFrom, ReplicaChoice};
use crate::core::plan::ReadTarget;
use crate::core::topology::{NodeAddr, Shard, SlotMap};

/// What the client knows of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeView<'a> {
    /// Its last connection failed and no connect has succeeded since.
    pub down: bool,
    /// Round trip of its last handshake, if measured.
    pub rtt: Option<Duration>,
    /// Its availability zone, if it reported one.
    pub zone: Option<&'a str>,
}

/// The read policy with its turn counter and random state.
#[derive(Debug, Clone)]
pub struct ReadRouter {
    policy: ReadFrom,
    turn: usize,
    random: u64,
}

impl ReadRouter {
    /// A router for `policy`; `seed` feeds the random choice.
    pub fn new(policy: ReadFrom, seed: u64) -> ReadRouter {
        ReadRouter {
            policy,
            turn: 0,
            random: seed | 1,
        }
    }

    /// False for [`ReadFrom::Primary`]: nothing to decide.
    pub fn routes_reads(&self) -> bool {
        self.policy != ReadFrom::Primary
    }

    /// Where each shard's reads go now.
    ///
    /// ```
    /// use redis_cluster_uring::config::{ReadFrom, ReplicaChoice};
    /// use redis_cluster_uring::core::plan::ReadTarget;
    /// use redis_cluster_uring::core::read_route::{NodeView, ReadRouter};
    /// use redis_cluster_uring::{NodeAddr, SlotMap};
    /// let mut map = SlotMap::split_evenly(&[NodeAddr::new("p", 1)]);
    /// map.add_replica(0, NodeAddr::new("r", 2));
    /// let mut router = ReadRouter::new(ReadFrom::PreferReplica(ReplicaChoice::RoundRobin), 7);
    /// let targets = router.choose(&map, |_| NodeView::default());
    /// assert_eq!(targets, vec![ReadTarget::Node(NodeAddr::new("r", 2))]);
    /// ```
    pub fn choose<'a>(
        &mut self,
        map: &SlotMap,
        view: impl Fn(&NodeAddr) -> NodeView<'a>,
    ) -> Vec<ReadTarget> {
        if !self.routes_reads() {
            return Vec::new();
        }
        self.turn = self.turn.wrapping_add(1);
        map.shards()
            .iter()
            .map(|shard| self.choose_one(shard, &view))
            .collect()
    }

    fn choose_one<'a>(
        &mut self,
        shard: &Shard,
        view: &impl Fn(&NodeAddr) -> NodeView<'a>,
    ) -> ReadTarget {
        let up: Vec<&NodeAddr> = shard.replicas.iter().filter(|r| !view(r).down).collect();
        match self.policy.clone() {
            ReadFrom::Primary => ReadTarget::Primary,
            ReadFrom::PreferReplica(choice) => match self.pick(&up, choice) {
                Some(node) => ReadTarget::Node(node.clone()),
                None => ReadTarget::Primary,
            },
            ReadFrom::Replica(choice) => match self.pick(&up, choice) {
                Some(node) => ReadTarget::Node(node.clone()),
                None if shard.replicas.is_empty() => ReadTarget::Primary,
                None => ReadTarget::Unavailable,
            },
            ReadFrom::Nearest => {
                // Unmeasured nodes first (so each gets measured), then the fastest.
                let nodes = std::iter::once(&shard.primary)
                    .chain(up.iter().copied())
                    .filter(|n| *n == &shard.primary || !view(n).down);
                match nodes.min_by_key(|n| view(n).rtt.unwrap_or(Duration::ZERO)) {
                    Some(node) if *node != shard.primary => ReadTarget::Node(node.clone()),
                    _ => ReadTarget::Primary,
                }
            }
            ReadFrom::AzAffinity(zone) => {
                let local: Vec<&NodeAddr> = up
                    .iter()
                    .copied()
                    .filter(|r| view(r).zone == Some(zone.as_str()))
                    .collect();
                let pick = self
                    .pick(&local, ReplicaChoice::RoundRobin)
                    .or_else(|| self.pick(&up, ReplicaChoice::RoundRobin));
                match pick {
                    Some(node) => ReadTarget::Node(node.clone()),
                    None => ReadTarget::Primary,
                }
            }
        }
    }

    fn pick<'n>(&mut self, nodes: &[&'n NodeAddr], choice: ReplicaChoice) -> Option<&'n NodeAddr> {
        if nodes.is_empty() {
            return None;
        }
        let i = match choice {
            ReplicaChoice::RoundRobin => self.turn,
            ReplicaChoice::Random => {
                // xorshift64: enough to spread reads, no dependency.
                self.random ^= self.random << 13;
                self.random ^= self.random >> 7;
                self.random ^= self.random << 17;
                self.random as usize
            }
        };
        Some(nodes[i % nodes.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> SlotMap {
        let mut map = SlotMap::split_evenly(&[NodeAddr::new("p0", 1), NodeAddr::new("p1", 1)]);
        map.add_replica(0, NodeAddr::new("r0a", 1));
        map.add_replica(0, NodeAddr::new("r0b", 1));
        map
    }

    fn node(t: &ReadTarget) -> &str {
        match t {
            ReadTarget::Node(n) => &n.host,
            ReadTarget::Primary => "primary",
            ReadTarget::Unavailable => "none",
        }
    }

    #[test]
    fn primary_policy_decides_nothing() {
        let mut r = ReadRouter::new(ReadFrom::Primary, 1);
        assert!(!r.routes_reads());
        assert!(r.choose(&map(), |_| NodeView::default()).is_empty());
    }

    #[test]
    fn round_robin_spreads_and_skips_down_replicas() {
        let mut r = ReadRouter::new(ReadFrom::PreferReplica(ReplicaChoice::RoundRobin), 1);
        let picks: Vec<String> = (0..4)
            .map(|_| node(&r.choose(&map(), |_| NodeView::default())[0]).to_string())
            .collect();
        assert!(picks.contains(&"r0a".to_string()) && picks.contains(&"r0b".to_string()));
        // The shard without replicas reads from its primary.
        assert_eq!(
            r.choose(&map(), |_| NodeView::default())[1],
            ReadTarget::Primary
        );
        let down_a = |n: &NodeAddr| NodeView {
            down: n.host == "r0a",
            ..NodeView::default()
        };
        for _ in 0..4 {
            assert_eq!(node(&r.choose(&map(), down_a)[0]), "r0b");
        }
        let all_down = |n: &NodeAddr| NodeView {
            down: n.host.starts_with('r'),
            ..NodeView::default()
        };
        assert_eq!(r.choose(&map(), all_down)[0], ReadTarget::Primary);
    }

    #[test]
    fn strict_replica_never_falls_back_to_a_primary_that_has_replicas() {
        let mut r = ReadRouter::new(ReadFrom::Replica(ReplicaChoice::Random), 42);
        let all_down = |n: &NodeAddr| NodeView {
            down: n.host.starts_with('r'),
            ..NodeView::default()
        };
        let t = r.choose(&map(), all_down);
        assert_eq!(t[0], ReadTarget::Unavailable);
        assert_eq!(t[1], ReadTarget::Primary, "no replica at all: the primary");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.insert(node(&r.choose(&map(), |_| NodeView::default())[0]).to_string());
        }
        assert_eq!(seen.len(), 2, "random reaches both replicas: {seen:?}");
    }

    #[test]
    fn nearest_measures_first_then_takes_the_fastest() {
        let mut r = ReadRouter::new(ReadFrom::Nearest, 1);
        let ms = Duration::from_millis;
        let rtt = |p0: Option<u64>, a: Option<u64>, b: Option<u64>| {
            move |n: &NodeAddr| NodeView {
                rtt: match n.host.as_str() {
                    "p0" => p0,
                    "r0a" => a,
                    "r0b" => b,
                    _ => Some(9),
                }
                .map(ms),
                ..NodeView::default()
            }
        };
        assert_eq!(
            node(&r.choose(&map(), rtt(Some(5), Some(1), Some(3)))[0]),
            "r0a"
        );
        assert_eq!(
            node(&r.choose(&map(), rtt(Some(1), Some(4), Some(3)))[0]),
            "primary"
        );
        assert_eq!(
            node(&r.choose(&map(), rtt(Some(1), Some(4), None))[0]),
            "r0b"
        );
    }

    #[test]
    fn az_affinity_prefers_the_zone_then_any_replica_then_the_primary() {
        let mut r = ReadRouter::new(ReadFrom::AzAffinity("az2".into()), 1);
        let zones = |n: &NodeAddr| NodeView {
            zone: match n.host.as_str() {
                "r0a" => Some("az1"),
                "r0b" => Some("az2"),
                _ => None,
            },
            ..NodeView::default()
        };
        for _ in 0..4 {
            assert_eq!(node(&r.choose(&map(), zones)[0]), "r0b");
        }
        let local_down = |n: &NodeAddr| NodeView {
            down: n.host == "r0b",
            ..zones(n)
        };
        assert_eq!(node(&r.choose(&map(), local_down)[0]), "r0a");
        let all_down = |n: &NodeAddr| NodeView {
            down: n.host.starts_with('r'),
            ..zones(n)
        };
        assert_eq!(r.choose(&map(), all_down)[0], ReadTarget::Primary);
    }
}
