//! The node table: what the client knows of each node besides the slot map, and the
//! decisions made from it (reconnect backoff, whether a node counts as down for read
//! routing, which node a subscriber goes to, which replicas to warm up). Both clients keep one and feed it what their connections see; time comes in as
//! an argument.
//!
//! Memory: one entry per node the client connected to or failed to reach; entries of
//! nodes that are neither in the slot map nor seeds are dropped at every refresh
//! ([`NodeTable::retain`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::core::config::Config;
use crate::core::handshake::ServerInfo;
use crate::core::node::NodeAddr;
use crate::core::plan::ReadTarget;
use crate::core::read_route::{NodeView, ReadRouter};
use crate::core::round::backoff;
use crate::core::topology::SlotMap;

/// A replica that could not be reached at a warm-up is not tried again by the next
/// warm-ups for this long (a request routed to it still tries).
pub const WARM_UP_RETRY: Duration = Duration::from_secs(10);

/// How a node's connections have been doing, for reconnect backoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// Connections to the node that failed in a row (a failed connect or a connection
    /// that died), counted once per connection, not per command; reset by a connect.
    pub failures: u32,
    /// When the last one failed.
    pub last_failure: Option<Instant>,
    /// Whether the last failure was an established connection that ended (a
    /// `CLIENT KILL`, a server's idle timeout, a restart) rather than a connect or a
    /// handshake that failed.
    pub last_was_established: bool,
}

#[derive(Debug, Default)]
struct NodeState {
    health: NodeHealth,
    /// What it said of itself in its last handshake, and that handshake's round trip
    /// (connect to handshake done). Kept after the connection closes.
    info: Option<(ServerInfo, Duration)>,
}

/// Per node: health, handshake facts, warm-up failures.
///
/// ```
/// use std::time::{Duration, Instant};
/// use redis_cluster_uring::core::nodes::NodeTable;
/// use redis_cluster_uring::{Config, NodeAddr};
/// let mut nodes = NodeTable::default();
/// let a = NodeAddr::new("10.0.0.1", 7000);
/// let now = Instant::now();
/// assert_eq!(nodes.reconnect_delay(&a, now, &Config::default(), 1.0), Duration::ZERO);
/// nodes.failed(&a, now);
/// assert!(nodes.view(&a).down);
/// // The first failure waits the base delay (10 ms by default), jittered by the factor.
/// assert_eq!(nodes.reconnect_delay(&a, now, &Config::default(), 1.0), Duration::from_millis(10));
/// ```
#[derive(Debug, Default)]
pub struct NodeTable {
    nodes: HashMap<NodeAddr, NodeState>,
    /// What the last handshake said the server is (`redis`, `valkey`), for telemetry.
    server_name: Option<Box<str>>,
}

impl NodeTable {
    /// A connection to `node` is up and its handshake done: its failure count starts
    /// again, and what it said of itself is kept.
    pub fn connected(&mut self, node: &NodeAddr, info: ServerInfo, rtt: Duration) {
        if let Some(name) = &info.server {
            if self.server_name.as_deref() != Some(name.as_str()) {
                self.server_name = Some(name.as_str().into());
            }
        }
        let state = self.nodes.entry(node.clone()).or_default();
        state.health = NodeHealth::default();
        state.info = Some((info, rtt));
    }

    /// A connection to `node` could not be made: its connect or its handshake failed.
    pub fn failed(&mut self, node: &NodeAddr, now: Instant) {
        self.note_failure(node, now, false);
    }

    /// An established connection to `node` ended (the server closed it, or it broke).
    /// The first such loss reconnects at once, since the node itself may be fine (a
    /// `CLIENT KILL`); failures after it back off as usual.
    pub fn lost(&mut self, node: &NodeAddr, now: Instant) {
        self.note_failure(node, now, true);
    }

    fn note_failure(&mut self, node: &NodeAddr, now: Instant, established: bool) {
        let health = &mut self.nodes.entry(node.clone()).or_default().health;
        health.failures = health.failures.saturating_add(1);
        health.last_failure = Some(now);
        health.last_was_established = established;
    }

    /// How `node`'s connections have been doing.
    pub fn health(&self, node: &NodeAddr) -> NodeHealth {
        self.nodes.get(node).map(|s| s.health).unwrap_or_default()
    }

    /// What the servers say they are (`redis`, `valkey`), from the last handshake that
    /// said.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// What `node` said of itself in its last handshake.
    pub fn server_info(&self, node: &NodeAddr) -> Option<&ServerInfo> {
        self.nodes.get(node)?.info.as_ref().map(|(info, _)| info)
    }

    /// The round trip of `node`'s last handshake.
    pub fn handshake_rtt(&self, node: &NodeAddr) -> Option<Duration> {
        self.nodes.get(node)?.info.as_ref().map(|(_, rtt)| *rtt)
    }

    /// What read routing knows of `node`: down since its last failure, its round trip
    /// and zone from its last handshake.
    pub fn view(&self, node: &NodeAddr) -> NodeView<'_> {
        let state = self.nodes.get(node);
        NodeView {
            down: state.is_some_and(|s| s.health.failures > 0),
            rtt: state.and_then(|s| s.info.as_ref().map(|(_, rtt)| *rtt)),
            zone: state
                .and_then(|s| s.info.as_ref())
                .and_then(|(info, _)| info.availability_zone.as_deref()),
        }
    }

    /// Where each shard's reads go for one request under `router`'s policy, judged on
    /// this table's view of each node; empty for `ReadFrom::Primary` (no work at all on
    /// the default path).
    pub fn read_targets(&self, router: &mut ReadRouter, map: &SlotMap) -> Vec<ReadTarget> {
        if !router.routes_reads() {
            return Vec::new();
        }
        router.choose(map, |node| self.view(node))
    }

    /// How long to wait before connecting to `node` again: nothing after a success or
    /// after one lost established connection; after failures in a row, the retry
    /// backoff for that many attempts, scaled by
    /// `jitter` (a factor the driver draws in `[0.5, 1]`, so many clients do not
    /// reconnect in step), less the time since the last failure.
    pub fn reconnect_delay(
        &self,
        node: &NodeAddr,
        now: Instant,
        config: &Config,
        jitter: f64,
    ) -> Duration {
        let health = self.health(node);
        let Some(when) = health.last_failure else {
            return Duration::ZERO;
        };
        if health.failures == 1 && health.last_was_established {
            return Duration::ZERO;
        }
        backoff(
            health.failures,
            config.retry_base_delay,
            config.retry_max_delay,
        )
        .mul_f64(jitter.clamp(0.0, 1.0))
        .saturating_sub(now.saturating_duration_since(when))
    }

    /// The replicas of `map` a warm-up should connect to now: those `connected` says are
    /// not connected and whose connections have not failed within [`WARM_UP_RETRY`] (a
    /// replica that cannot be reached is not asked again at every refresh).
    pub fn replicas_to_warm_up(
        &self,
        map: &SlotMap,
        now: Instant,
        connected: impl Fn(&NodeAddr) -> bool,
    ) -> Vec<NodeAddr> {
        let mut out: Vec<NodeAddr> = Vec::new();
        for replica in map.shards().iter().flat_map(|s| s.replicas.iter()) {
            // A connect resets the health, so a failure on record is one since then.
            let failed_recently = self
                .health(replica)
                .last_failure
                .is_some_and(|at| now.saturating_duration_since(at) < WARM_UP_RETRY);
            if !failed_recently && !connected(replica) && !out.contains(replica) {
                out.push(replica.clone());
            }
        }
        out
    }

    /// A primary for a connection that may go anywhere (a subscriber's): one whose connections are not failing, picked by `pick` in `[0, 1)`;
    /// any primary when all are failing; the first seed before any map is known.
    pub fn any_primary(&self, map: &SlotMap, seeds: &[NodeAddr], pick: f64) -> Option<NodeAddr> {
        let mut nodes: Vec<&NodeAddr> = map
            .primaries()
            .filter(|n| self.health(n).failures == 0)
            .collect();
        if nodes.is_empty() {
            nodes = map.primaries().collect();
        }
        if nodes.is_empty() {
            return seeds.first().cloned();
        }
        let i = ((pick * nodes.len() as f64) as usize).min(nodes.len() - 1);
        Some(nodes[i].clone())
    }

    /// Keeps only the nodes `keep` says are still part of the cluster (in the map, or a
    /// seed): the table's size follows the cluster's.
    pub fn retain(&mut self, keep: impl Fn(&NodeAddr) -> bool) {
        self.nodes.retain(|node, _| keep(node));
    }

    /// Number of nodes known.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn info(zone: Option<&str>) -> ServerInfo {
        ServerInfo {
            availability_zone: zone.map(str::to_string),
            ..ServerInfo::default()
        }
    }

    #[test]
    fn failures_grow_the_reconnect_delay_and_a_connect_resets_it() {
        let config = Config::default().retry_backoff(ms(10), ms(100));
        let mut nodes = NodeTable::default();
        let a = NodeAddr::new("a", 1);
        let t0 = Instant::now();
        assert_eq!(nodes.reconnect_delay(&a, t0, &config, 1.0), Duration::ZERO);
        nodes.failed(&a, t0);
        assert_eq!(nodes.reconnect_delay(&a, t0, &config, 1.0), ms(10));
        nodes.failed(&a, t0);
        nodes.failed(&a, t0);
        assert_eq!(nodes.reconnect_delay(&a, t0, &config, 1.0), ms(40));
        assert_eq!(nodes.reconnect_delay(&a, t0, &config, 0.5), ms(20));
        // Time since the failure counts against the wait.
        assert_eq!(nodes.reconnect_delay(&a, t0 + ms(15), &config, 1.0), ms(25));
        assert_eq!(
            nodes.reconnect_delay(&a, t0 + ms(50), &config, 1.0),
            Duration::ZERO
        );
        for _ in 0..30 {
            nodes.failed(&a, t0);
        }
        assert_eq!(
            nodes.reconnect_delay(&a, t0, &config, 1.0),
            ms(100),
            "capped"
        );
        nodes.connected(&a, info(None), ms(1));
        assert_eq!(nodes.health(&a), NodeHealth::default());
        assert_eq!(nodes.reconnect_delay(&a, t0, &config, 1.0), Duration::ZERO);
    }

    #[test]
    fn a_lost_established_connection_reconnects_at_once_then_backs_off() {
        let config = Config::default().retry_backoff(ms(10), ms(100));
        let mut nodes = NodeTable::default();
        let a = NodeAddr::new("a", 1);
        let t0 = Instant::now();
        nodes.connected(&a, info(None), ms(1));
        nodes.lost(&a, t0);
        assert!(nodes.view(&a).down, "down until a connect succeeds");
        assert_eq!(nodes.reconnect_delay(&a, t0, &config, 1.0), Duration::ZERO);
        // The reconnect failed too: now it backs off, counting both.
        nodes.failed(&a, t0);
        assert_eq!(nodes.reconnect_delay(&a, t0, &config, 1.0), ms(20));
        // Lost again right after: no free reconnect while failing in a row.
        nodes.lost(&a, t0);
        assert_eq!(nodes.reconnect_delay(&a, t0, &config, 1.0), ms(40));
    }

    #[test]
    fn the_view_says_down_zone_and_round_trip() {
        let mut nodes = NodeTable::default();
        let a = NodeAddr::new("a", 1);
        let t0 = Instant::now();
        let view = nodes.view(&a);
        assert!(!view.down && view.rtt.is_none() && view.zone.is_none());
        nodes.connected(&a, info(Some("az-1")), ms(3));
        let view = nodes.view(&a);
        assert!(!view.down);
        assert_eq!((view.rtt, view.zone), (Some(ms(3)), Some("az-1")));
        // A failure marks it down; what it said of itself is kept.
        nodes.failed(&a, t0);
        let view = nodes.view(&a);
        assert!(view.down);
        assert_eq!((view.rtt, view.zone), (Some(ms(3)), Some("az-1")));
        assert_eq!(
            nodes
                .server_info(&a)
                .and_then(|i| i.availability_zone.as_deref()),
            Some("az-1")
        );
        assert_eq!(nodes.handshake_rtt(&a), Some(ms(3)));
    }

    #[test]
    fn warm_ups_skip_connected_and_recently_failed_replicas() {
        let mut map = SlotMap::split_evenly(&[NodeAddr::new("p1", 1), NodeAddr::new("p2", 2)]);
        map.add_replica(0, NodeAddr::new("r1", 1));
        map.add_replica(0, NodeAddr::new("r2", 2));
        map.add_replica(1, NodeAddr::new("r3", 3));
        let mut nodes = NodeTable::default();
        let t0 = Instant::now();
        let r1 = NodeAddr::new("r1", 1);
        let r2 = NodeAddr::new("r2", 2);
        let all = nodes.replicas_to_warm_up(&map, t0, |_| false);
        assert_eq!(all.len(), 3);
        nodes.failed(&r2, t0);
        assert!(nodes.view(&r2).down);
        let now = t0 + ms(1);
        let some = nodes.replicas_to_warm_up(&map, now, |n| n == &r1);
        assert_eq!(some, vec![NodeAddr::new("r3", 3)]);
        let later = t0 + WARM_UP_RETRY;
        assert!(nodes
            .replicas_to_warm_up(&map, later, |_| false)
            .contains(&r2));
        nodes.failed(&r2, later);
        nodes.connected(&r2, info(None), ms(1));
        assert!(nodes
            .replicas_to_warm_up(&map, later, |_| false)
            .contains(&r2));
    }

    #[test]
    fn any_primary_avoids_failing_nodes_and_falls_back() {
        let p1 = NodeAddr::new("p1", 1);
        let p2 = NodeAddr::new("p2", 2);
        let map = SlotMap::split_evenly(&[p1.clone(), p2.clone()]);
        let seeds = [NodeAddr::new("seed", 9)];
        let mut nodes = NodeTable::default();
        assert_eq!(nodes.any_primary(&map, &seeds, 0.0), Some(p1.clone()));
        assert_eq!(nodes.any_primary(&map, &seeds, 0.99), Some(p2.clone()));
        // A pick at the top of the range (rounding) still names a node.
        assert_eq!(nodes.any_primary(&map, &seeds, 1.0), Some(p2.clone()));
        nodes.failed(&p1, Instant::now());
        for pick in [0.0, 0.5, 0.99] {
            assert_eq!(nodes.any_primary(&map, &seeds, pick), Some(p2.clone()));
        }
        nodes.failed(&p2, Instant::now());
        assert!(
            nodes.any_primary(&map, &seeds, 0.0).is_some(),
            "all failing: any"
        );
        let empty = SlotMap::empty();
        assert_eq!(
            nodes.any_primary(&empty, &seeds, 0.5),
            Some(seeds[0].clone())
        );
        assert_eq!(nodes.any_primary(&empty, &[], 0.5), None);
    }

    #[test]
    fn retain_bounds_the_table_by_the_cluster() {
        let mut nodes = NodeTable::default();
        assert!(nodes.is_empty());
        let t0 = Instant::now();
        for port in 0..100 {
            nodes.failed(&NodeAddr::new("gone", port), t0);
        }
        nodes.connected(&NodeAddr::new("kept", 1), info(None), ms(1));
        assert_eq!(nodes.len(), 101);
        nodes.retain(|n| n.host == "kept");
        assert_eq!(nodes.len(), 1);
        assert!(!nodes.is_empty());
    }
}
