//! The refresh policy: when to reload the slot map, whom to ask, how to judge the answers,
//! which `MOVED` updates a finished refresh must apply again, and what a round's effects
//! mean for the map. Both clients hold one [`Refresh`] and do what it says; it reads no
//! clock of its own (time comes in as `now`, or as a clock the driver hands in) and
//! touches no socket.
//!
//! When: a round asked for it (a redirect, a failed or silent node, a cluster that is
//! down), the periodic refresh is due, or a node stopped answering recently: then the map
//! is polled every [`POLL_WHILE_UNRESPONSIVE`] so that a replica's promotion is seen soon
//! after it happens rather than at the next request's timeout. Never more often than
//! `min_refresh_interval`, and one background refresh at a time.
//!
//! Whom: every node of the map in random order (so many clients do not all ask the
//! same one), then the seeds, `refresh_fanout` at a time. While the map is polled, a
//! refresh asks one node at a time and the nodes reported unresponsive last: every
//! client that talks to a failed primary polls at once, and a group per poll is what
//! made their questions the cluster's load (1,000 clients on 300 nodes: 95 `CLUSTER
//! SLOTS` a second on one node, see `src/sim/scale.rs`). One live node answers a poll
//! as fast as the first of a group would, and the node known to be silent is never the
//! one a poll waits for.
//!
//! Memory: the `MOVED` log holds the redirects seen while a refresh is under way and is
//! cleared when none is; the nodes reported unresponsive are each held once, until
//! polling ends or a new episode starts; a refresh under way is bounded by
//! `refresh_timeout`.

use std::time::{Duration, Instant};

use crate::core::config::{Config, RefreshPolicy};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::node::NodeAddr;
use crate::core::round::Effect;
use crate::core::slot::Slot;
use crate::core::stats::Counters;
use crate::core::topology::{choose_view, SlotMap};
use crate::core::value::Value;

/// While a node is unresponsive, the slot map is asked again this often (at most), so a
/// failover is seen within about this long of the promotion.
pub const POLL_WHILE_UNRESPONSIVE: Duration = Duration::from_millis(200);

/// A node whose connection has had requests waiting this long with no reply counts as
/// unresponsive (before any request times out: a stopped primary is noticed at once).
pub const UNRESPONSIVE_AFTER: Duration = Duration::from_millis(200);

/// How long after a node last failed or timed out the map is polled, unless a refresh
/// shows the slots changed owners first.
pub const UNRESPONSIVE_WINDOW: Duration = Duration::from_secs(15);

/// The refresh state of one client.
///
/// ```
/// use std::time::{Duration, Instant};
/// use redis_cluster_uring::core::refresh::Refresh;
/// use redis_cluster_uring::Config;
/// let config = Config::default().periodic_refresh(None);
/// let mut refresh = Refresh::new(7);
/// let now = Instant::now();
/// assert!(!refresh.wants(now, &config), "nothing asked for it");
/// refresh.request();
/// assert!(refresh.wants(now, &config));
/// refresh.finished(now);
/// refresh.request();
/// assert!(!refresh.wants(now, &config), "rate limited by min_refresh_interval");
/// assert!(refresh.wants(now + config.min_refresh_interval, &config));
/// ```
#[derive(Debug)]
pub struct Refresh {
    /// A round asked for a refresh that has not run yet.
    due: bool,
    /// When the last refresh ended (either way).
    last: Option<Instant>,
    /// A background refresh is under way (the async client runs one at a time).
    running: bool,
    /// Refreshes under way: the background one and any a caller runs.
    active: u32,
    /// `MOVED` updates seen while a refresh is under way: its answer may predate them,
    /// so each refresh applies again those logged since it started.
    moves: Vec<(Slot, NodeAddr)>,
    /// Until then a node is unresponsive and the map is polled.
    unresponsive_until: Option<Instant>,
    /// The nodes reported unresponsive since polling started: asked last (at most every
    /// node once; forgotten when polling ends).
    suspects: Vec<NodeAddr>,
    /// Whether an unresponsive node starts polling (see [`Refresh::without_polling`]).
    polls: bool,
    /// Random state for shuffling the nodes asked (xorshift; seeded by the driver).
    rng: u64,
}

impl Refresh {
    /// A refresh state whose random choices come from `seed` (the drivers seed it from
    /// the standard library's random keys; a simulation gives a fixed one).
    pub fn new(seed: u64) -> Refresh {
        Refresh {
            due: false,
            last: None,
            running: false,
            active: 0,
            moves: Vec::new(),
            unresponsive_until: None,
            suspects: Vec::new(),
            polls: true,
            rng: seed | 1,
        }
    }

    /// No polling while a node is unresponsive, only the refreshes asked for and the
    /// periodic one: for a driver whose refresh blocks its caller (the blocking client
    /// waits for a whole group of answers, so a stopped node in the group costs
    /// `refresh_timeout` per poll).
    pub fn without_polling(mut self) -> Refresh {
        self.polls = false;
        self
    }

    /// A round asked for a refresh.
    pub fn request(&mut self) {
        self.due = true;
    }

    /// Whether a refresh was asked for and has not run yet.
    pub fn is_due(&self) -> bool {
        self.due
    }

    /// `node` stopped answering (timed out) or its connection failed at `now`: poll the
    /// map for a while, so that a promotion is seen soon.
    pub fn note_unresponsive(&mut self, node: &NodeAddr, now: Instant) {
        self.due = true;
        self.start_polling(node, now);
    }

    fn start_polling(&mut self, node: &NodeAddr, now: Instant) {
        if !self.polls {
            return;
        }
        if !self.polling(now) {
            // A new episode: whoever was silent in an earlier one may answer again.
            self.suspects.clear();
        }
        self.unresponsive_until = Some(now.checked_add(UNRESPONSIVE_WINDOW).unwrap_or(now));
        if !self.suspects.contains(node) {
            self.suspects.push(node.clone());
        }
    }

    /// A connection could not reach `node` at all (refused, no route, handshake never
    /// done) at `now`. A primary of the map may have failed: poll until a promotion
    /// shows. A replica or a seed may have left the cluster: one refresh (rate limited)
    /// tells. Any other node says nothing about the map.
    pub fn unreachable(
        &mut self,
        map: &SlotMap,
        seeds: &[NodeAddr],
        node: &NodeAddr,
        now: Instant,
    ) {
        if map.primaries().any(|p| p == node) {
            self.note_unresponsive(node, now);
        } else if in_cluster(map, seeds, node) {
            self.request();
        }
    }

    /// `node`'s connection has had requests waiting with no reply for
    /// [`UNRESPONSIVE_AFTER`] at `now`. A primary of the map may have stopped: poll the
    /// map (no refresh at once: a failover takes the cluster's node timeout). Any other
    /// node says nothing about the map.
    pub fn stalled(&mut self, map: &SlotMap, node: &NodeAddr, now: Instant) {
        if map.primaries().any(|p| p == node) {
            self.start_polling(node, now);
        }
    }

    /// Whether the map is being polled because a node stopped answering.
    pub fn polling(&self, now: Instant) -> bool {
        self.unresponsive_until.is_some_and(|until| now < until)
    }

    /// How many nodes a refresh starting at `now` asks at once: `refresh_fanout`, or one
    /// while the map is polled (see the module docs: the next node is asked only if it
    /// does not answer).
    pub fn fanout(&self, now: Instant, config: &Config) -> usize {
        if self.polling(now) {
            1
        } else {
            config.refresh_fanout.max(1)
        }
    }

    /// Whether a refresh should start now: asked for, periodic, or polling, and not
    /// within `min_refresh_interval` of the last, and no background refresh running.
    pub fn wants(&self, now: Instant, config: &Config) -> bool {
        self.next_at(now, config).is_some_and(|at| at <= now)
    }

    /// When the next refresh should start, if any is wanted (for a driver's timer); may
    /// be `now` or earlier.
    pub fn next_at(&self, now: Instant, config: &Config) -> Option<Instant> {
        if self.running {
            return None;
        }
        let after = |d: Duration| match self.last {
            Some(last) => last.checked_add(d).unwrap_or(last),
            None => now,
        };
        let earliest = after(config.min_refresh_interval);
        let mut wanted: Option<Instant> = None;
        let mut want = |at: Instant| wanted = Some(wanted.map_or(at, |w| w.min(at)));
        if self.due {
            want(earliest);
        }
        if let Some(every) = config.periodic_refresh {
            want(after(every).max(earliest));
        }
        if let Some(until) = self.unresponsive_until {
            let at = after(POLL_WHILE_UNRESPONSIVE).max(earliest);
            if now < until && at < until {
                want(at);
            }
        }
        wanted
    }

    /// A background refresh starts (the async client runs one at a time).
    pub fn background_started(&mut self) {
        self.running = true;
    }

    /// The background refresh ended.
    pub fn background_ended(&mut self) {
        self.running = false;
    }

    /// A refresh (any) starts fetching: returns its mark in the `MOVED` log.
    pub fn fetch_started(&mut self) -> usize {
        self.active += 1;
        self.moves.len()
    }

    /// A refresh that started at `mark` stopped fetching (its answer came, or it was
    /// dropped): the `MOVED` updates logged since, to apply to its answer. The log is
    /// cleared once no refresh is fetching.
    pub fn fetch_ended(&mut self, mark: usize) -> Vec<(Slot, NodeAddr)> {
        let since = self.moves.get(mark..).unwrap_or_default().to_vec();
        self.active = self.active.saturating_sub(1);
        if self.active == 0 {
            self.moves.clear();
        }
        since
    }

    /// A refresh ended at `now`, adopted or not: the next waits `min_refresh_interval`.
    pub fn finished(&mut self, now: Instant) {
        self.last = Some(now);
        self.due = false;
    }

    /// A refresh adopted `new` in place of `old`: when the slots changed owners, the
    /// change an unresponsive node was waiting for (a promotion) has been seen and
    /// polling stops.
    pub fn adopted(&mut self, old: &SlotMap, new: &SlotMap) {
        if !old.same_owners(new) {
            self.unresponsive_until = None;
            self.suspects.clear();
        }
    }

    /// Nodes to ask for the slot map, in order: every node of `map` (primaries and
    /// replicas) in random order, so many clients do not all ask the same one, the nodes
    /// reported unresponsive since polling started last among them, then the seeds not
    /// already listed.
    pub fn candidates(&mut self, map: &SlotMap, seeds: &[NodeAddr]) -> Vec<NodeAddr> {
        let mut nodes: Vec<NodeAddr> = Vec::new();
        for shard in map.shards() {
            for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
                if !nodes.contains(node) {
                    nodes.push(node.clone());
                }
            }
        }
        for i in (1..nodes.len()).rev() {
            let j = (self.next_random() % (i as u64 + 1)) as usize;
            nodes.swap(i, j);
        }
        if !self.suspects.is_empty() {
            // Stable: the others keep their random order.
            nodes.sort_by_key(|n| self.suspects.contains(n));
        }
        for seed in seeds {
            if !nodes.contains(seed) {
                nodes.push(seed.clone());
            }
        }
        nodes
    }

    /// Applies a round's effects: counts redirects and retries, has `apply_moved` apply a
    /// `MOVED` to the map (and logs it for refreshes under way), and asks for a refresh where the map
    /// may be stale. Returns the nodes whose shared connection timed out, for the
    /// driver's consecutive-timeout rule. `clock` is read only for a failed or silent
    /// node (most rounds have no such effect, and cost no clock read here).
    pub(crate) fn apply_effects(
        &mut self,
        effects: impl Iterator<Item = Effect>,
        map: &mut impl MapEdit,
        counters: &Counters,
        clock: impl Fn() -> Instant,
    ) -> Vec<NodeAddr> {
        let mut timed_out = Vec::new();
        for effect in effects {
            match effect {
                Effect::Redirected { moved } => {
                    counters.add_redirect();
                    if let Some((slot, to)) = moved {
                        if self.active > 0 {
                            self.moves.push((slot, to.clone()));
                        }
                        map.apply_moved(slot, &to);
                        self.request();
                    }
                }
                Effect::Retrying => counters.retries_add(1),
                Effect::RefreshMap => self.request(),
                Effect::NodeFailed(node) => self.failed(map, &node, &clock),
                Effect::TimedOut(node) => {
                    self.failed(map, &node, &clock);
                    timed_out.push(node);
                }
            }
        }
        timed_out
    }

    /// A request to `node` failed or timed out. A primary of the map may have failed:
    /// poll until a promotion shows. Any other node (a replica serving reads, or a
    /// primary the map already replaced, whose late failures keep coming in after the
    /// promotion was seen) asks for one refresh, and does not start polling again.
    fn failed(&mut self, map: &impl MapEdit, node: &NodeAddr, clock: &impl Fn() -> Instant) {
        if map.is_primary(node) {
            self.note_unresponsive(node, clock());
        } else {
            self.request();
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: enough to spread questions over nodes.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// The slot map as [`Refresh::apply_effects`] touches it: a `MOVED` moves a slot, and a
/// failed node's role decides whether the map is polled.
pub(crate) trait MapEdit {
    /// Points `slot` at `to`.
    fn apply_moved(&mut self, slot: Slot, to: &NodeAddr);
    /// Whether `node` is a primary of the map.
    fn is_primary(&self, node: &NodeAddr) -> bool;
}

impl MapEdit for SlotMap {
    fn apply_moved(&mut self, slot: Slot, to: &NodeAddr) {
        SlotMap::apply_moved(self, slot, to);
    }

    fn is_primary(&self, node: &NodeAddr) -> bool {
        self.primaries().any(|p| p == node)
    }
}

/// The cluster machine's shared map: copied on write, only when a `MOVED` changes it.
impl MapEdit for std::sync::Arc<SlotMap> {
    fn apply_moved(&mut self, slot: Slot, to: &NodeAddr) {
        std::sync::Arc::make_mut(self).apply_moved(slot, to);
    }

    fn is_primary(&self, node: &NodeAddr) -> bool {
        self.primaries().any(|p| p == node)
    }
}

/// Whether a connection to `node` still serves the cluster: it is in the map or a seed.
/// Connections to other nodes are closed once idle after a refresh.
pub fn in_cluster(map: &SlotMap, seeds: &[NodeAddr], node: &NodeAddr) -> bool {
    map.contains_node(node) || seeds.contains(node)
}

/// The answers of one refresh, group by group (`refresh_fanout` nodes asked at once), and
/// the map they settle on under the refresh policy.
///
/// ```
/// use redis_cluster_uring::core::refresh::SlotMapVote;
/// use redis_cluster_uring::{Error, ErrorKind, NodeAddr, RefreshPolicy};
/// let mut vote = SlotMapVote::new(RefreshPolicy::Majority);
/// let node = NodeAddr::new("10.0.0.1", 7000);
/// assert!(vote.answer(&node, Err(Error::new(ErrorKind::Io, "refused"))).is_none());
/// assert!(vote.end_group().is_none());
/// assert_eq!(vote.into_error().kind(), ErrorKind::Io);
/// ```
#[derive(Debug)]
pub struct SlotMapVote {
    policy: RefreshPolicy,
    answers: Vec<SlotMap>,
    last_error: Error,
}

impl SlotMapVote {
    /// A vote under `policy`.
    pub fn new(policy: RefreshPolicy) -> SlotMapVote {
        SlotMapVote {
            policy,
            answers: Vec::new(),
            last_error: Error::new(ErrorKind::ClusterDown, "no node to ask for the slot map"),
        }
    }

    /// `node`'s reply to `CLUSTER SLOTS` (or why there is none). Returns the map when
    /// this answer settles the vote at once (`FirstComplete` and every slot covered): the
    /// driver may abandon the other questions of the group.
    pub fn answer(&mut self, node: &NodeAddr, reply: Result<Value>) -> Option<SlotMap> {
        match reply.and_then(|r| SlotMap::from_cluster_slots_with_host(&r, &node.host)) {
            Ok(map) if self.policy == RefreshPolicy::FirstComplete && map.is_complete() => {
                Some(map)
            }
            Ok(map) => {
                self.answers.push(map);
                None
            }
            Err(e) => {
                tracing::debug!(%node, error = %e, "slot map fetch failed");
                self.last_error = e;
                None
            }
        }
    }

    /// Every question of a group was answered (or given up): the map the group's answers
    /// settle on, or `None` to ask the next group.
    pub fn end_group(&mut self) -> Option<SlotMap> {
        if let Some(i) = choose_view(&self.answers, self.policy) {
            return Some(self.answers.swap_remove(i));
        }
        if !self.answers.is_empty() {
            self.last_error =
                Error::new(ErrorKind::ClusterDown, "no node reports any slot assigned");
        }
        self.answers.clear();
        None
    }

    /// No group settled it: why.
    pub fn into_error(self) -> Error {
        self.last_error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn nodes(n: u16) -> Vec<NodeAddr> {
        (0..n)
            .map(|i| NodeAddr::new("10.0.0.1", 7000 + i))
            .collect()
    }

    /// `CLUSTER SLOTS` for primaries splitting the slots evenly.
    fn slots_reply(primaries: &[NodeAddr]) -> Value {
        let map = SlotMap::split_evenly(primaries);
        let mut ranges = Vec::new();
        let mut start = 0u16;
        for (i, node) in primaries.iter().enumerate() {
            let end = if i + 1 == primaries.len() {
                16383
            } else {
                (((i + 1) * 16384) / primaries.len() - 1) as u16
            };
            assert_eq!(map.node_for(Slot::new(start).unwrap()), Some(node));
            ranges.push(Value::Array(vec![
                Value::Int(start.into()),
                Value::Int(end.into()),
                Value::Array(vec![
                    Value::Bulk(node.host.clone().into_bytes().into()),
                    Value::Int(node.port.into()),
                ]),
            ]));
            start = end + 1;
        }
        Value::Array(ranges)
    }

    #[test]
    fn a_request_waits_out_the_minimum_interval_and_one_background_refresh_runs() {
        let config = Config::default().periodic_refresh(None);
        let mut r = Refresh::new(1);
        let t0 = Instant::now();
        assert_eq!(r.next_at(t0, &config), None);
        r.request();
        assert!(r.is_due());
        assert!(r.wants(t0, &config), "never refreshed: at once");
        r.background_started();
        assert!(!r.wants(t0, &config), "one background refresh at a time");
        r.background_ended();
        r.finished(t0);
        assert!(!r.is_due());
        assert!(!r.wants(t0 + ms(50), &config), "nothing asked since");
        r.request();
        assert!(!r.wants(t0 + ms(50), &config));
        assert_eq!(
            r.next_at(t0, &config),
            Some(t0 + config.min_refresh_interval)
        );
        assert!(r.wants(t0 + config.min_refresh_interval, &config));
    }

    #[test]
    fn the_periodic_refresh_comes_due() {
        let config = Config::default().periodic_refresh(Some(Duration::from_secs(60)));
        let mut r = Refresh::new(1);
        let t0 = Instant::now();
        r.finished(t0);
        assert!(!r.wants(t0 + Duration::from_secs(59), &config));
        assert!(r.wants(t0 + Duration::from_secs(60), &config));
        let off = Config::default().periodic_refresh(None);
        assert!(!r.wants(t0 + Duration::from_secs(3600), &off));
    }

    #[test]
    fn an_unresponsive_node_polls_the_map_until_the_owners_change_or_the_window_ends() {
        let config = Config::default().periodic_refresh(None);
        let mut r = Refresh::new(1);
        let t0 = Instant::now();
        let node = NodeAddr::new("10.0.0.1", 7000);
        r.finished(t0);
        r.note_unresponsive(&node, t0);
        assert!(r.polling(t0));
        r.finished(t0 + ms(100));
        // Polling: again every POLL_WHILE_UNRESPONSIVE, not only when asked.
        assert!(!r.wants(t0 + ms(250), &config));
        assert_eq!(
            r.next_at(t0 + ms(250), &config),
            Some(t0 + ms(100) + POLL_WHILE_UNRESPONSIVE)
        );
        let poll = t0 + ms(100) + POLL_WHILE_UNRESPONSIVE;
        assert!(r.wants(poll, &config));
        // The same owners: polling goes on.
        let before = SlotMap::split_evenly(&nodes(3));
        r.finished(poll);
        r.adopted(&before, &before.clone());
        assert!(r.polling(poll));
        // A promotion: the owners changed, polling stops.
        let mut after = before.clone();
        after.apply_moved(Slot::new(0).unwrap(), &NodeAddr::new("10.0.0.9", 7000));
        r.adopted(&before, &after);
        assert!(!r.polling(poll));
        assert!(!r.wants(poll + Duration::from_secs(1), &config));
        // Without polling, only the request.
        let mut r = Refresh::new(1).without_polling();
        r.note_unresponsive(&node, t0);
        assert!(r.is_due() && !r.polling(t0));
        // The window ends by itself too.
        let mut r = Refresh::new(1);
        r.note_unresponsive(&node, t0);
        r.finished(t0);
        assert!(r.wants(t0 + POLL_WHILE_UNRESPONSIVE, &config));
        assert!(!r.polling(t0 + UNRESPONSIVE_WINDOW));
        assert!(!r.wants(t0 + UNRESPONSIVE_WINDOW, &config));
        // No poll is scheduled at or after the window's end.
        let mut r = Refresh::new(1);
        r.note_unresponsive(&node, t0);
        let last = t0 + UNRESPONSIVE_WINDOW - POLL_WHILE_UNRESPONSIVE;
        r.finished(last);
        assert_eq!(r.next_at(last, &config), None);
        r.finished(last - ms(1));
        assert_eq!(
            r.next_at(last, &config),
            Some(last - ms(1) + POLL_WHILE_UNRESPONSIVE)
        );
    }

    #[test]
    fn an_unreachable_primary_polls_a_replica_asks_once_a_stranger_says_nothing() {
        let mut map = SlotMap::split_evenly(&nodes(2));
        let replica = NodeAddr::new("10.0.0.2", 7000);
        map.add_replica(0, replica.clone());
        let seeds = [NodeAddr::new("seed", 1)];
        let now = Instant::now();
        let mut r = Refresh::new(1);
        r.unreachable(&map, &seeds, &NodeAddr::new("stranger", 1), now);
        assert!(!r.is_due() && !r.polling(now));
        r.unreachable(&map, &seeds, &replica, now);
        assert!(r.is_due() && !r.polling(now));
        let mut r = Refresh::new(1);
        r.unreachable(&map, &seeds, &seeds[0], now);
        assert!(r.is_due() && !r.polling(now));
        let mut r = Refresh::new(1);
        r.unreachable(&map, &seeds, &nodes(1)[0], now);
        assert!(r.is_due() && r.polling(now));
    }

    #[test]
    fn a_stalled_primary_starts_the_poll_without_a_refresh_at_once() {
        let config = Config::default().periodic_refresh(None);
        let mut map = SlotMap::split_evenly(&nodes(2));
        let replica = NodeAddr::new("10.0.0.2", 7000);
        map.add_replica(0, replica.clone());
        let t0 = Instant::now();
        let mut r = Refresh::new(1);
        r.finished(t0);
        r.stalled(&map, &replica, t0);
        assert!(!r.polling(t0), "a replica says nothing of the owners");
        r.stalled(&map, &nodes(1)[0], t0);
        assert!(r.polling(t0) && !r.is_due());
        assert_eq!(r.next_at(t0, &config), Some(t0 + POLL_WHILE_UNRESPONSIVE));
        let mut r = Refresh::new(1).without_polling();
        r.stalled(&map, &nodes(1)[0], t0);
        assert!(!r.polling(t0) && !r.is_due());
    }

    #[test]
    fn the_moved_log_serves_refreshes_under_way_and_empties_after() {
        let counters = Counters::default();
        let mut r = Refresh::new(1);
        let mut map = SlotMap::split_evenly(&nodes(2));
        let slot = Slot::new(5).unwrap();
        let to = NodeAddr::new("10.0.0.9", 1);
        let now = Instant::now();
        let moved = || {
            std::iter::once(Effect::Redirected {
                moved: Some((slot, to.clone())),
            })
        };
        // No refresh under way: applied, not logged.
        r.apply_effects(moved(), &mut map, &counters, || now);
        assert_eq!(map.node_for(slot), Some(&to));
        let a = r.fetch_started();
        assert_eq!(a, 0, "nothing was logged with no refresh under way");
        let b = r.fetch_started();
        r.apply_effects(moved(), &mut map, &counters, || now);
        assert_eq!(r.fetch_ended(b), vec![(slot, to.clone())]);
        r.apply_effects(moved(), &mut map, &counters, || now);
        assert_eq!(r.fetch_ended(a).len(), 2, "both since a started");
        let c = r.fetch_started();
        assert_eq!(c, 0, "cleared once no refresh was fetching");
        assert!(r.fetch_ended(c).is_empty());
        assert_eq!(counters.snapshot().redirects, 3);
        assert!(r.is_due());
    }

    #[test]
    fn effects_count_and_ask_for_refreshes_and_name_timed_out_nodes() {
        let counters = Counters::default();
        let mut r = Refresh::new(1);
        let mut map = SlotMap::split_evenly(&nodes(2));
        let node = NodeAddr::new("10.0.0.1", 7000);
        let now = Instant::now();
        let out = r.apply_effects(
            [Effect::Retrying, Effect::Redirected { moved: None }].into_iter(),
            &mut map,
            &counters,
            || now,
        );
        assert!(out.is_empty());
        assert!(!r.is_due(), "an ASK or a retry says nothing of the map");
        assert_eq!(counters.snapshot().retries, 1);
        assert_eq!(counters.snapshot().redirects, 1);
        r.apply_effects(
            std::iter::once(Effect::RefreshMap),
            &mut map,
            &counters,
            || now,
        );
        assert!(r.is_due() && !r.polling(now));
        let mut r = Refresh::new(1);
        r.apply_effects(
            std::iter::once(Effect::NodeFailed(node.clone())),
            &mut map,
            &counters,
            || now,
        );
        assert!(r.is_due() && r.polling(now));
        let mut r = Refresh::new(1);
        let out = r.apply_effects(
            std::iter::once(Effect::TimedOut(node.clone())),
            &mut map,
            &counters,
            || now,
        );
        assert_eq!(out, vec![node]);
        assert!(r.is_due() && r.polling(now));
        // A node the map no longer names as a primary (replaced after a failover: its
        // late failures keep coming) asks for a refresh, and polls nothing.
        let replaced = NodeAddr::new("10.9.9.9", 7000);
        for effect in [
            Effect::NodeFailed(replaced.clone()),
            Effect::TimedOut(replaced.clone()),
        ] {
            let mut r = Refresh::new(1);
            r.apply_effects(std::iter::once(effect), &mut map, &counters, || now);
            assert!(r.is_due() && !r.polling(now));
        }
    }

    #[test]
    fn a_poll_asks_one_node_at_a_time_and_the_silent_one_last() {
        let config = Config::default();
        let mut map = SlotMap::split_evenly(&nodes(3));
        for i in 0..3 {
            map.add_replica(i, NodeAddr::new("10.0.0.2", 7000 + i as u16));
        }
        let seeds = [NodeAddr::new("seed", 1)];
        let silent = nodes(3)[1].clone();
        let t0 = Instant::now();
        let mut r = Refresh::new(11);
        assert_eq!(r.fanout(t0, &config), config.refresh_fanout);
        // 1,000 clients polling with a group each were the cluster's load: one question
        // per poll, the next only if it goes unanswered.
        r.note_unresponsive(&silent, t0);
        assert_eq!(r.fanout(t0, &config), 1);
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let c = r.candidates(&map, &seeds);
            assert_eq!(c.len(), 7);
            assert_eq!(c[5], silent, "the silent node last among the map's");
            assert_eq!(c[6], seeds[0]);
            firsts.insert(c[0].clone());
        }
        assert_eq!(firsts.len(), 5, "the others still in random order");
        // The same holds for a primary that stalled, and for every node reported.
        let stalled = nodes(3)[2].clone();
        r.stalled(&map, &stalled, t0);
        let c = r.candidates(&map, &seeds);
        assert!(c[4] == silent || c[4] == stalled);
        assert!(c[5] == silent || c[5] == stalled);
        // When the window ends, groups again; a new episode forgets the old suspects.
        let later = t0 + UNRESPONSIVE_WINDOW;
        assert_eq!(r.fanout(later, &config), config.refresh_fanout);
        r.note_unresponsive(&stalled, later);
        let firsts: std::collections::BTreeSet<NodeAddr> = (0..64)
            .map(|_| r.candidates(&map, &seeds)[4].clone())
            .collect();
        assert!(
            firsts.len() > 1,
            "only the newly reported node is held back"
        );
        // A promotion seen: polling stops, and so does holding anyone back.
        let mut promoted = map.clone();
        promoted.apply_moved(Slot::new(9000).unwrap(), &NodeAddr::new("10.0.0.9", 7000));
        r.adopted(&map, &promoted);
        assert_eq!(r.fanout(later, &config), config.refresh_fanout);
        assert!((0..64).any(|_| r.candidates(&map, &seeds)[0] == stalled));
        // A driver that does not poll keeps its groups.
        let mut r = Refresh::new(11).without_polling();
        r.note_unresponsive(&silent, t0);
        assert_eq!(r.fanout(t0, &config), config.refresh_fanout);
    }

    #[test]
    fn candidates_are_every_node_shuffled_then_the_seeds() {
        let mut map = SlotMap::split_evenly(&nodes(3));
        map.add_replica(0, NodeAddr::new("10.0.0.2", 7000));
        let seeds = vec![NodeAddr::new("10.0.0.1", 7000), NodeAddr::new("seed", 1)];
        let mut r = Refresh::new(42);
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let c = r.candidates(&map, &seeds);
            assert_eq!(c.len(), 5, "4 nodes, then the one seed not among them");
            assert_eq!(c[4], NodeAddr::new("seed", 1));
            let mut sorted = c[..4].to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 4);
            firsts.insert(c[0].clone());
        }
        assert_eq!(firsts.len(), 4, "every node comes first sometimes");
        // And still after many draws (a generator that settles would pick one for ever).
        for _ in 0..1000 {
            r.candidates(&map, &seeds);
        }
        let firsts: std::collections::BTreeSet<NodeAddr> = (0..64)
            .map(|_| r.candidates(&map, &seeds)[0].clone())
            .collect();
        assert_eq!(firsts.len(), 4, "every node still comes first sometimes");
        assert_eq!(Refresh::new(3).candidates(&SlotMap::empty(), &seeds), seeds);
    }

    #[test]
    fn the_vote_follows_the_policy() {
        let good = nodes(2);
        let stale = vec![good[0].clone(), NodeAddr::new("10.0.0.1", 9999)];
        let asked = NodeAddr::new("10.0.0.1", 1);
        // FirstComplete: the first complete answer settles it at once.
        let mut vote = SlotMapVote::new(RefreshPolicy::FirstComplete);
        let map = vote.answer(&asked, Ok(slots_reply(&stale)));
        assert_eq!(
            map.and_then(|m| m.node_for(Slot::new(16383).unwrap()).cloned()),
            Some(stale[1].clone())
        );
        // Majority: the view most answers share, at the end of the group.
        let mut vote = SlotMapVote::new(RefreshPolicy::Majority);
        assert!(vote.answer(&asked, Ok(slots_reply(&stale))).is_none());
        assert!(vote.answer(&asked, Ok(slots_reply(&good))).is_none());
        assert!(vote.answer(&asked, Ok(slots_reply(&good))).is_none());
        assert!(vote
            .answer(&asked, Err(Error::new(ErrorKind::Timeout, "slow")))
            .is_none());
        let map = vote.end_group().expect("a majority");
        assert_eq!(map.node_for(Slot::new(16383).unwrap()), Some(&good[1]));
        // Nothing usable: the next group, then the last error.
        let mut vote = SlotMapVote::new(RefreshPolicy::Majority);
        assert!(vote.answer(&asked, Ok(Value::Array(vec![]))).is_none());
        assert!(vote.end_group().is_none());
        assert_eq!(vote.into_error().kind(), ErrorKind::ClusterDown);
        let mut vote = SlotMapVote::new(RefreshPolicy::Majority);
        assert!(vote.answer(&asked, Ok(Value::Int(3))).is_none());
        assert!(vote.end_group().is_none());
        assert_eq!(vote.into_error().kind(), ErrorKind::Protocol);
    }

    #[test]
    fn in_cluster_means_in_the_map_or_a_seed() {
        let map = SlotMap::split_evenly(&nodes(2));
        let seeds = [NodeAddr::new("seed", 1)];
        assert!(in_cluster(&map, &seeds, &nodes(1)[0]));
        assert!(in_cluster(&map, &seeds, &seeds[0]));
        assert!(!in_cluster(&map, &seeds, &NodeAddr::new("gone", 1)));
    }

    /// One step of a simulated driver around a [`Refresh`], as the async refresh loop
    /// uses it: events arrive, time passes, a refresh starts whenever the policy wants
    /// one and takes some time.
    #[derive(Debug, Clone)]
    enum Step {
        Request,
        TimedOut,
        Unreachable,
        Wait(u16),
        /// The running refresh (if any) ends; with true, it saw the owners change.
        Finish(bool),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Step::Request),
            Just(Step::TimedOut),
            Just(Step::Unreachable),
            (0u16..700).prop_map(Step::Wait),
            any::<bool>().prop_map(Step::Finish),
        ]
    }

    proptest::proptest! {
        /// Whatever happens: refreshes never overlap and never start within
        /// `min_refresh_interval` of the last one's end; `next_at` and `wants` agree, and
        /// nothing is wanted before `next_at`; a refresh asked for is wanted by the end of
        /// the minimum interval; polling ends with its window; the MOVED log is empty
        /// whenever no refresh fetches.
        #[test]
        fn the_policy_keeps_its_promises_under_any_schedule(
            steps in proptest::collection::vec(step(), 1..200),
            min_ms in 1u64..300,
        ) {
            let config = Config {
                min_refresh_interval: ms(min_ms),
                periodic_refresh: Some(Duration::from_secs(60)),
                ..Config::default()
            };
            let counters = Counters::default();
            let primary = NodeAddr::new("10.0.0.1", 7000);
            let mut map = SlotMap::split_evenly(std::slice::from_ref(&primary));
            let seeds: Vec<NodeAddr> = Vec::new();
            let t0 = Instant::now();
            let mut now = t0;
            let mut r = Refresh::new(9);
            let mut running: Option<usize> = None;
            let mut last_end: Option<Instant> = None;
            let mut last_signal: Option<Instant> = None;
            for step in steps {
                match step {
                    Step::Request => r.request(),
                    Step::TimedOut => {
                        let out = r.apply_effects(
                            std::iter::once(Effect::TimedOut(primary.clone())),
                            &mut map,
                            &counters,
                            || now,
                        );
                        proptest::prop_assert_eq!(out.len(), 1);
                        last_signal = Some(now);
                    }
                    Step::Unreachable => {
                        r.unreachable(&map, &seeds, &primary, now);
                        last_signal = Some(now);
                    }
                    Step::Wait(d) => {
                        let to = now + ms(u64::from(d));
                        // Nothing is wanted before next_at.
                        if running.is_none() {
                            if let Some(at) = r.next_at(now, &config) {
                                if at > now && at < to {
                                    let before = now + (at - now) / 2;
                                    proptest::prop_assert!(!r.wants(before, &config));
                                }
                            }
                        }
                        now = to;
                    }
                    Step::Finish(changed) => {
                        if let Some(mark) = running.take() {
                            proptest::prop_assert!(r.fetch_ended(mark).is_empty());
                            r.finished(now);
                            let old = map.clone();
                            if changed {
                                map.apply_moved(Slot::new(0).unwrap(), &NodeAddr::new("10.0.0.2", 7000));
                            }
                            r.adopted(&old, &map);
                            r.background_ended();
                            last_end = Some(now);
                        }
                    }
                }
                // wants and next_at agree.
                let wants = r.wants(now, &config);
                proptest::prop_assert_eq!(wants, r.next_at(now, &config).is_some_and(|at| at <= now));
                if running.is_some() {
                    proptest::prop_assert!(!wants, "overlap");
                    continue;
                }
                // Polling ends with its window.
                if r.polling(now) {
                    let signal = last_signal.expect("polling without a signal");
                    proptest::prop_assert!(now < signal + UNRESPONSIVE_WINDOW);
                }
                // A refresh asked for is wanted once the minimum interval has passed.
                let rested = last_end.is_none_or(|end| now >= end + config.min_refresh_interval);
                if r.is_due() && rested {
                    proptest::prop_assert!(wants);
                }
                if wants {
                    if let Some(end) = last_end {
                        proptest::prop_assert!(now >= end + config.min_refresh_interval, "too soon");
                    }
                    r.background_started();
                    running = Some(r.fetch_started());
                }
            }
        }
    }
}
