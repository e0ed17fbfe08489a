//! The cluster as a client sees it, and every decision made from it, once for every
//! driver: the slot map and the seeds, the configuration, the refresh policy, the read
//! router and the counters, with what follows from them (which path a command takes,
//! the request a pipeline becomes, what a round's effects change, whom a refresh asks and
//! what it adopts, which replicas to warm up, how a new connection to a node is set up).
//!
//! No clock is read here: every method that needs the time is given `now` (or a clock it
//! reads only when it must). No socket is touched: the drivers open, write and read, and
//! tell the cluster what happened.
//!
//! ```
//! use redis_cluster_uring::core::cluster::{Cluster, Path};
//! use redis_cluster_uring::core::config::Config;
//! use redis_cluster_uring::{cmd, NodeAddr};
//!
//! let cluster = Cluster::new(vec![NodeAddr::new("127.0.0.1", 7000)], Config::default(), 7);
//! assert_eq!(cluster.path(&cmd("GET").arg("k")).unwrap(), Path::Single);
//! assert!(matches!(cluster.path(&cmd("BLPOP").arg("q").arg(1)).unwrap(), Path::Blocking(_)));
//! assert_eq!(cluster.path(&cmd("DBSIZE")).unwrap(), Path::Request);
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::cache::{Cache, Lookup};
use crate::core::cmd::Cmd;
use crate::core::command_table::{deadline_budget, named_node_path, CommandClass, NamedNode};
use crate::core::config::{Config, Execution};
use crate::core::conn::Conn;
use crate::core::error::Result;
use crate::core::expand::splits;
use crate::core::judgement::Judgement;
use crate::core::nodes::NodeTable;
use crate::core::read_route::ReadRouter;
use crate::core::refresh::{in_cluster, Refresh, SlotMapVote, UNRESPONSIVE_AFTER};
use crate::core::report::Reporter;
use crate::core::request::Request;
use crate::core::round::{Effect, RoundLimits};
use crate::core::slot::Slot;
use crate::core::stats::Counters;
use crate::core::telemetry::Trace;
use crate::core::tls::{Rustls, TlsConfig};
use crate::core::topology::{NodeAddr, SlotMap};

/// The path one command takes through a client (`query`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// One slot, nothing to split, reads not routed to replicas: the node's shared
    /// connection, with no pipeline machinery (a driver may take the request path
    /// instead; the outcome is the same).
    Single,
    /// A blocking command: a connection of its own, with this deadline budget (its own
    /// timeout plus `request_timeout`; `None` when it blocks for ever).
    Blocking(Option<Duration>),
    /// A request like a pipeline of one: refused, split, fanned out or routed by the
    /// request machine.
    Request,
}

/// The cluster's state and the decisions made from it (see the module docs).
#[derive(Debug)]
pub struct Cluster {
    map: Arc<SlotMap>,
    seeds: Vec<NodeAddr>,
    /// Shared with the driver, which reads it everywhere (it never changes).
    config: Rc<Config>,
    refresh: Refresh,
    router: ReadRouter,
    counters: Rc<Counters>,
    /// The client-side cache, shared with the pool (see [`crate::core::cache`]).
    cache: Rc<RefCell<Cache>>,
}

impl Cluster {
    /// A cluster known by its seeds, not loaded yet (an empty slot map). `seed` seeds
    /// the random choices (whom a refresh asks first, which replica a read goes to): the
    /// drivers take it from the standard library's random keys, a simulation fixes it.
    pub fn new(seeds: Vec<NodeAddr>, config: Config, seed: u64) -> Cluster {
        let router = ReadRouter::new(config.read_from.clone(), seed.rotate_left(32) ^ seed);
        let metrics = config.telemetry;
        let counters = Rc::new(Counters::new(metrics));
        let cache = Cache::new(config.cache.clone(), counters.clone());
        Cluster {
            map: Arc::new(SlotMap::empty()),
            seeds,
            config: Rc::new(config),
            refresh: Refresh::new(seed),
            router,
            counters,
            cache: Rc::new(RefCell::new(cache)),
        }
    }

    /// No polling while a node is unresponsive (see [`Refresh::without_polling`]).
    pub fn without_polling(mut self) -> Cluster {
        self.refresh = self.refresh.without_polling();
        self
    }

    /// The current slot map.
    pub fn map(&self) -> &Arc<SlotMap> {
        &self.map
    }

    /// The seeds the client was given.
    pub fn seeds(&self) -> &[NodeAddr] {
        &self.seeds
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration, to share with the driver.
    pub(crate) fn shared_config(&self) -> Rc<Config> {
        self.config.clone()
    }

    /// The counters (shared with the connections that count reads and writes).
    pub(crate) fn counters(&self) -> &Rc<Counters> {
        &self.counters
    }

    /// The client-side cache, for the pool to share ([`Pool::use_cache`]).
    ///
    /// [`Pool::use_cache`]: crate::core::pool::Pool::use_cache
    pub(crate) fn cache(&self) -> Rc<RefCell<Cache>> {
        self.cache.clone()
    }

    /// What the client-side cache says of `cmd` before it is sent (see
    /// [`crate::core::cache`]): its answer, or the read its reply fills. `clock` is read
    /// only when entries expire.
    pub(crate) fn cache_lookup(
        &self,
        cmd: &Cmd,
        judged: &Judgement,
        clock: impl FnOnce() -> Instant,
    ) -> Lookup {
        self.cache.borrow_mut().lookup(cmd, judged, clock)
    }

    /// [`Cluster::cache_lookup`] for a client whose callers run concurrently: a miss
    /// already in flight for another caller is waited for ([`Lookup::Wait`]).
    pub(crate) fn cache_lookup_shared(
        &self,
        cmd: &Cmd,
        judged: &Judgement,
        clock: impl FnOnce() -> Instant,
    ) -> Lookup {
        self.cache.borrow_mut().lookup_as(cmd, judged, clock, true)
    }

    /// Empties the client-side cache (`cache_clear`).
    pub(crate) fn cache_clear(&self) {
        self.cache.borrow_mut().clear();
    }

    /// The refresh policy's state.
    pub fn refresh(&mut self) -> &mut Refresh {
        &mut self.refresh
    }

    /// Whether reads go anywhere but the primaries.
    pub fn routes_reads(&self) -> bool {
        self.router.routes_reads()
    }

    /// The round budgets every request gets.
    pub fn limits(&self) -> RoundLimits {
        RoundLimits::of(&self.config)
    }

    /// The path `command` takes (see [`Path`]); an error for a blocking command whose
    /// timeout cannot be read.
    pub fn path(&self, command: &Cmd) -> Result<Path> {
        self.path_judged(command, &Judgement::of(command))
    }

    /// [`Cluster::path`] for a command judged already.
    pub(crate) fn path_judged(&self, command: &Cmd, judged: &Judgement) -> Result<Path> {
        Ok(match judged.class() {
            CommandClass::Blocking => {
                Path::Blocking(deadline_budget(command, self.config.request_timeout)?)
            }
            CommandClass::Regular => {
                let split = splits(command, judged).is_some();
                if split || self.router.routes_reads() {
                    Path::Request
                } else {
                    Path::Single
                }
            }
            _ => Path::Request,
        })
    }

    /// The path of a command sent to a node the caller named; a refusal is counted.
    pub(crate) fn named_node(&self, command: &Cmd) -> Result<NamedNode> {
        let path = named_node_path(command, self.config.request_timeout)?;
        if matches!(path, NamedNode::Refused(_)) {
            self.counters.add_refused();
        }
        Ok(path)
    }

    /// A pipeline (or one command) as a request: expanded (refusals counted, splits,
    /// fan-outs), with the round budgets, `Config::execution`, and where each shard's
    /// reads go under `Config::read_from` (the zone and round trip from `nodes`). The
    /// clients judge their commands first ([`Cluster::pipeline_judged`]); the simulation
    /// and the tests start here.
    #[cfg(test)]
    pub(crate) fn pipeline<'a>(
        &mut self,
        cmds: &'a [Cmd],
        nodes: &NodeTable,
        deadline: Option<Instant>,
        reporter: Option<&'a mut Reporter>,
    ) -> Request<'a> {
        self.pipeline_judged(cmds, Judgement::all(cmds), nodes, deadline, reporter)
    }

    /// [`Cluster::pipeline`] for commands judged already (`judged[i]` is `cmds[i]`'s).
    pub(crate) fn pipeline_judged<'a>(
        &mut self,
        cmds: &'a [Cmd],
        judged: Vec<Judgement>,
        nodes: &NodeTable,
        deadline: Option<Instant>,
        reporter: Option<&'a mut Reporter>,
    ) -> Request<'a> {
        self.counters.add_execution();
        let reads = nodes.read_targets(&mut self.router, &self.map);
        let request = Request::pipeline_judged(
            cmds,
            judged,
            &self.map,
            self.limits(),
            deadline,
            self.serial(),
            reporter,
        )
        .reading(reads)
        .traced(self.trace(cmds, nodes));
        for _ in 0..request.refused() {
            self.counters.add_refused();
        }
        request
    }

    /// Commands sent as they are, command i to `pins[i]` when given (a named node, a
    /// blocking command's key's node otherwise), with `limits`.
    /// `traced`: a caller's request (traced when `Config::telemetry` asks), not the
    /// client's own (a slot-map fetch).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plain<'a>(
        &mut self,
        cmds: &'a [Cmd],
        pins: Vec<Option<NodeAddr>>,
        nodes: &NodeTable,
        deadline: Option<Instant>,
        limits: RoundLimits,
        traced: bool,
    ) -> Request<'a> {
        let reads = nodes.read_targets(&mut self.router, &self.map);
        let trace = if traced {
            self.trace(cmds, nodes)
        } else {
            None
        };
        Request::plain(cmds, limits, deadline, self.serial())
            .pinned(pins)
            .reading(reads)
            .traced(trace)
    }

    /// A caller's request's spans and metrics, when `Config::telemetry` asks for them (a
    /// slot-map fetch is the client's own business and is not traced).
    pub(crate) fn trace(&self, cmds: &[Cmd], nodes: &NodeTable) -> Option<Trace> {
        self.config.telemetry.then(|| {
            Trace::start(
                cmds,
                crate::core::telemetry::system_name(nodes.server_name()),
                self.config.database,
                true,
            )
        })
    }

    fn serial(&self) -> bool {
        self.config.execution == Execution::Serial
    }

    /// Applies a round's effects: counts redirects and retries, applies a `MOVED` to the
    /// map, asks for a refresh where the map may be stale. Returns the nodes whose
    /// shared connection timed out (for the consecutive-timeout rule). `clock` is read
    /// only for a failed or silent node.
    pub fn apply_effects(
        &mut self,
        effects: impl Iterator<Item = Effect>,
        clock: impl Fn() -> Instant,
    ) -> Vec<NodeAddr> {
        // A `MOVED` slot's entries were filled from its old owner.
        let mut moved = Vec::new();
        let effects = effects.inspect(|effect| {
            if let Effect::Redirected {
                moved: Some((slot, _)),
            } = effect
            {
                moved.push(slot.get());
            }
        });
        let timed_out = self
            .refresh
            .apply_effects(effects, &mut self.map, &self.counters, clock);
        if !moved.is_empty() {
            self.cache
                .borrow_mut()
                .slots_moved(|slot| moved.contains(&slot));
        }
        timed_out
    }

    /// Takes `map` as the map: the client-side cache drops the slots whose owner
    /// changed (a failover, a migration).
    fn replace_map(&mut self, map: SlotMap) {
        let old = std::mem::replace(&mut self.map, Arc::new(map));
        let new = &self.map;
        self.cache.borrow_mut().slots_moved(|slot| {
            let slot = Slot::new(slot);
            slot.map(|s| old.node_for(s)) != slot.map(|s| new.node_for(s))
        });
    }

    /// Where a `WATCH` session's next attempt watches: the slot's owner, or the
    /// session's error (with no owner known, a refresh is asked for first). The driver
    /// whose refresh runs in the background wakes it when `refresh().is_due()`.
    pub(crate) fn watch_node(
        &mut self,
        attempts: &mut crate::core::transaction::WatchAttempts,
    ) -> Result<NodeAddr> {
        use crate::core::transaction::AttemptStart;
        match attempts.start(&self.map) {
            AttemptStart::Watch(node) => Ok(node),
            AttemptStart::NoNode(e) => {
                self.refresh.request();
                Err(e)
            }
            AttemptStart::GiveUp(e) => Err(e),
        }
    }

    /// A `WATCH` session's attempt on `node` ended as `end` at `now`: the `MOVED` it
    /// carried is applied to the map (a redirect, counted), a refresh asked for when the
    /// slot moved, and the pause before the next attempt returned; or the session's
    /// error when its budgets ran out.
    pub(crate) fn attempt_ended(
        &mut self,
        attempts: &mut crate::core::transaction::WatchAttempts,
        node: &NodeAddr,
        end: crate::core::transaction::AttemptEnd,
        now: Instant,
    ) -> Result<Duration> {
        let next = attempts.end(node, end, &self.counters)?;
        if let Some(moved) = next.moved {
            let moved =
                std::iter::once(crate::core::round::Effect::Redirected { moved: Some(moved) });
            self.apply_effects(moved, || now);
        }
        if next.refresh {
            self.refresh.request();
        }
        Ok(next.pause)
    }

    /// A connection to `node` could not be made (refused, timed out, its handshake
    /// failed): the cluster may have changed (a failover, a removed node), so the refresh
    /// policy hears of it. (The node's own record, in the driver's `NodeTable`, hears it
    /// from whoever failed the connection.)
    pub fn unreachable(&mut self, node: &NodeAddr, now: Instant) {
        self.refresh.unreachable(&self.map, &self.seeds, node, now);
    }

    /// Whether a refresh should run at `now` (asked for, periodic, or polling while a node
    /// is unresponsive, within the rate limit).
    pub fn wants_refresh(&self, now: Instant) -> bool {
        self.refresh.wants(now, &self.config)
    }

    /// When the next refresh is due, if one will be.
    pub fn next_refresh(&self, now: Instant) -> Option<Instant> {
        self.refresh.next_at(now, &self.config)
    }

    /// When a background loop should look again: the next refresh due, or, while
    /// requests wait on a shared connection (`waiting`), soon enough to see a node stop
    /// answering (`UNRESPONSIVE_AFTER`), whichever comes first.
    pub fn next_look(&self, now: Instant, waiting: bool) -> Option<Instant> {
        let check = waiting.then(|| now + UNRESPONSIVE_AFTER);
        match (self.next_refresh(now), check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A primary stopped answering while requests wait on it.
    pub fn stalled(&mut self, node: &NodeAddr, now: Instant) {
        self.refresh.stalled(&self.map, node, now);
    }

    /// The questions of a refresh starting at `now`: whom to ask, how many at once (one
    /// while the map is polled), and the vote that judges their answers.
    pub fn fetch(&mut self, now: Instant) -> SlotMapFetch {
        let candidates = self.refresh.candidates(&self.map, &self.seeds);
        let fanout = self.refresh.fanout(now, &self.config);
        let first = self.map.shards().is_empty();
        SlotMapFetch {
            groups: candidates
                .chunks(fanout)
                .map(<[NodeAddr]>::to_vec)
                .collect(),
            next: 0,
            vote: SlotMapVote::new(self.config.refresh_policy),
            budget: self.config.refresh_budget(first),
            limits: RoundLimits {
                max_retries: 0,
                ..self.limits()
            },
        }
    }

    /// Ends a refresh at `now`: on success the fetched map (with the `MOVED`s seen
    /// while it was fetched applied again) becomes the map, nodes that left the cluster
    /// are forgotten, and the refresh is counted. The driver then closes connections to
    /// nodes [`Cluster::keeps`] no longer keeps and warms up [`Cluster::warm_ups`].
    pub fn adopt(
        &mut self,
        fetched: Result<SlotMap>,
        moves: Vec<(Slot, NodeAddr)>,
        nodes: &mut NodeTable,
        now: Instant,
    ) -> Result<()> {
        self.refresh.finished(now);
        let mut map = fetched?;
        for (slot, addr) in moves {
            map.apply_moved(slot, &addr);
        }
        let seeds = &self.seeds;
        nodes.retain(|addr| in_cluster(&map, seeds, addr));
        self.refresh.adopted(&self.map, &map);
        self.replace_map(map);
        self.counters.add_refresh();
        Ok(())
    }

    /// Takes `map` as it is, as if a refresh had just fetched it.
    pub fn adopt_given(&mut self, map: SlotMap, now: Instant) {
        self.replace_map(map);
        self.refresh.finished(now);
    }

    /// Whether a connection to `node` still serves the cluster (it is in the map or a
    /// seed).
    pub fn keeps(&self, node: &NodeAddr) -> bool {
        in_cluster(&self.map, &self.seeds, node)
    }

    /// With replica reads, the replicas to connect to now (not `connected` yet, not
    /// failing): each handshake tells its zone and round trip before the first read has
    /// to choose. Empty when reads go to primaries.
    pub fn warm_ups(
        &self,
        nodes: &NodeTable,
        now: Instant,
        connected: impl Fn(&NodeAddr) -> bool,
    ) -> Vec<NodeAddr> {
        if !self.router.routes_reads() {
            return Vec::new();
        }
        nodes.replicas_to_warm_up(&self.map, now, connected)
    }

    /// A new connection to `node`, set up as the configuration wants (credentials,
    /// `READONLY` for a replica serving reads, TLS with the node's name).
    pub(crate) fn connection<T: Copy>(
        &self,
        node: &NodeAddr,
        tls: Option<&(Arc<Rustls>, TlsConfig)>,
    ) -> Result<Conn<T>> {
        Conn::to_node(node, &self.config, &self.map, tls)
    }

    /// How long to wait before connecting to `node` again (backoff after failures in a
    /// row, `jitter` in [0.5, 1]).
    pub fn reconnect_delay(
        &self,
        nodes: &NodeTable,
        node: &NodeAddr,
        now: Instant,
        jitter: f64,
    ) -> Duration {
        nodes.reconnect_delay(node, now, &self.config, jitter)
    }
}

/// One refresh's questions, group by group, and the vote on their answers.
#[derive(Debug)]
pub struct SlotMapFetch {
    groups: Vec<Vec<NodeAddr>>,
    next: usize,
    vote: SlotMapVote,
    budget: Duration,
    limits: RoundLimits,
}

impl SlotMapFetch {
    /// The next nodes to ask together, or `None` when every group was asked.
    pub fn next_group(&mut self) -> Option<Vec<NodeAddr>> {
        let group = self.groups.get(self.next)?.clone();
        self.next += 1;
        Some(group)
    }

    /// How long each question may take (`refresh_timeout`, plus `connect_timeout`
    /// before any map is known).
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The budgets of each question: no retry (another node is asked instead).
    pub fn limits(&self) -> RoundLimits {
        self.limits
    }

    /// One node's answer: the map, when it settles the vote.
    pub fn answer(
        &mut self,
        node: &NodeAddr,
        reply: Result<crate::core::value::Value>,
    ) -> Option<SlotMap> {
        self.vote.answer(node, reply)
    }

    /// What to send a group: `CLUSTER SLOTS` to each node, pinned to it.
    pub fn questions(group: &[NodeAddr]) -> (Vec<Cmd>, Vec<Option<NodeAddr>>) {
        let cmds = group
            .iter()
            .map(|_| crate::core::cmd::cmd("CLUSTER").arg("SLOTS"))
            .collect();
        (cmds, group.iter().cloned().map(Some).collect())
    }

    /// A whole group's answers at once (in the group's order): the map, when they
    /// settle the vote.
    pub fn group_answered(
        &mut self,
        group: &[NodeAddr],
        replies: Vec<Result<crate::core::value::Value>>,
    ) -> Option<SlotMap> {
        for (node, reply) in group.iter().zip(replies) {
            if let Some(map) = self.answer(node, reply) {
                return Some(map);
            }
        }
        self.end_group()
    }

    /// The group's answers are all in: the map, when they settle the vote.
    pub fn end_group(&mut self) -> Option<SlotMap> {
        self.vote.end_group()
    }

    /// Every group was asked and none settled the vote: why.
    pub fn into_error(self) -> crate::core::error::Error {
        self.vote.into_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use crate::core::config::ReadFrom;

    fn slot(n: u16) -> Slot {
        Slot::new(n).expect("a slot")
    }

    fn cluster(config: Config) -> Cluster {
        Cluster::new(vec![NodeAddr::new("127.0.0.1", 7000)], config, 42)
    }

    #[test]
    fn each_command_class_takes_its_path() {
        let c = cluster(Config::default());
        assert_eq!(c.path(&cmd("GET").arg("k")).unwrap(), Path::Single);
        assert_eq!(
            c.path(&cmd("MGET").arg("{a}1").arg("{a}2")).unwrap(),
            Path::Single,
            "one slot: nothing to split"
        );
        assert_eq!(
            c.path(&cmd("MGET").arg("a").arg("b")).unwrap(),
            Path::Request,
            "cross-slot: split"
        );
        assert_eq!(
            c.path(&cmd("BLPOP").arg("q").arg(2)).unwrap(),
            Path::Blocking(Some(
                Duration::from_secs(2) + Config::default().request_timeout.unwrap()
            ))
        );
        assert_eq!(
            c.path(&cmd("BLPOP").arg("q").arg(0)).unwrap(),
            Path::Blocking(None)
        );
        assert!(c.path(&cmd("BLPOP").arg("q").arg("soon")).is_err());
        assert_eq!(c.path(&cmd("DBSIZE")).unwrap(), Path::Request);
        assert_eq!(
            c.path(&cmd("MULTI")).unwrap(),
            Path::Request,
            "refused there"
        );
        let replicas = cluster(Config::default().read_from(ReadFrom::Nearest));
        assert_eq!(
            replicas.path(&cmd("GET").arg("k")).unwrap(),
            Path::Request,
            "reads are routed"
        );
    }

    #[test]
    fn refusals_and_executions_are_counted_once() {
        let mut c = cluster(Config::default());
        let cmds = [cmd("MULTI"), cmd("GET").arg("k"), cmd("SUBSCRIBE").arg("c")];
        let request = c.pipeline(&cmds, &NodeTable::default(), None, None);
        assert_eq!(request.refused(), 2);
        let stats = c.counters().snapshot();
        assert_eq!((stats.executions, stats.refused), (1, 2));
        assert!(matches!(
            c.named_node(&cmd("SUBSCRIBE").arg("c")).unwrap(),
            NamedNode::Refused(_)
        ));
        assert_eq!(c.counters().snapshot().refused, 3);
    }

    #[test]
    fn a_refresh_adopts_its_map_with_the_moves_seen_meanwhile() {
        let mut c = cluster(Config::default());
        let a = NodeAddr::new("10.0.0.1", 7000);
        let b = NodeAddr::new("10.0.0.2", 7000);
        let gone = NodeAddr::new("10.0.0.9", 7000);
        let mut nodes = NodeTable::default();
        let now = Instant::now();
        nodes.failed(&gone, now);
        let map = SlotMap::split_evenly(std::slice::from_ref(&a));
        c.adopt(Ok(map), vec![(slot(5), b.clone())], &mut nodes, now)
            .unwrap();
        assert_eq!(c.map().node_for(slot(5)), Some(&b));
        assert_eq!(c.map().node_for(slot(6)), Some(&a));
        assert!(c.keeps(&a) && c.keeps(&NodeAddr::new("127.0.0.1", 7000)));
        assert!(!c.keeps(&gone));
        assert_eq!(nodes.health(&gone).failures, 0, "forgotten");
        assert_eq!(c.counters().snapshot().refreshes, 1);
        // A failed fetch keeps the map and counts nothing.
        let e = crate::core::error::Error::protocol("no");
        assert!(c.adopt(Err(e), Vec::new(), &mut nodes, now).is_err());
        assert_eq!(c.map().node_for(slot(5)), Some(&b));
        assert_eq!(c.counters().snapshot().refreshes, 1);
    }

    #[test]
    fn a_fetch_asks_fanout_nodes_at_a_time_without_retries() {
        let config = Config::default();
        let fanout = config.refresh_fanout.max(1);
        let seeds: Vec<NodeAddr> = (0..fanout as u16 * 2 + 1)
            .map(|i| NodeAddr::new("127.0.0.1", 7000 + i))
            .collect();
        let mut c = Cluster::new(seeds.clone(), config.clone(), 1);
        let mut fetch = c.fetch(Instant::now());
        assert_eq!(fetch.limits().max_retries, 0);
        assert_eq!(fetch.budget(), config.refresh_budget(true));
        let mut asked = Vec::new();
        while let Some(group) = fetch.next_group() {
            assert!(!group.is_empty() && group.len() <= fanout);
            asked.extend(group);
        }
        asked.sort_by_key(|n| n.port);
        assert_eq!(asked, seeds);
    }

    #[test]
    fn while_polling_a_fetch_asks_one_node_per_group_the_unreachable_primary_last() {
        use crate::core::refresh::UNRESPONSIVE_WINDOW;
        let primaries: Vec<NodeAddr> = (0..3)
            .map(|i| NodeAddr::new("10.0.0.1", 7000 + i))
            .collect();
        let mut c = cluster(Config::default());
        let t0 = Instant::now();
        c.adopt_given(SlotMap::split_evenly(&primaries), t0);
        let groups = |c: &mut Cluster, now: Instant| {
            let mut fetch = c.fetch(now);
            std::iter::from_fn(|| fetch.next_group()).collect::<Vec<_>>()
        };
        assert_eq!(groups(&mut c, t0)[0].len(), 3, "refresh_fanout at once");
        c.unreachable(&primaries[0], t0);
        let polled = groups(&mut c, t0);
        assert!(polled.iter().all(|g| g.len() == 1), "{polled:?}");
        assert_eq!(
            polled[2],
            vec![primaries[0].clone()],
            "the failed primary last"
        );
        assert_eq!(
            polled[3],
            vec![NodeAddr::new("127.0.0.1", 7000)],
            "then the seed"
        );
        assert_eq!(groups(&mut c, t0 + UNRESPONSIVE_WINDOW)[0].len(), 3);
    }

    #[test]
    fn a_watch_session_starts_at_the_owner_and_follows_a_moved_slot() {
        use crate::core::reply::server_error;
        use crate::core::transaction::{AttemptEnd, WatchAttempts};
        let now = Instant::now();
        let mut c = cluster(Config::default());
        let slot = crate::core::slot::slot_for_key(b"k");
        let mut attempts = WatchAttempts::new(slot, c.limits(), 3);
        // No map yet: no owner, and a refresh is asked for.
        assert!(c.watch_node(&mut attempts).is_err());
        assert!(c.refresh().is_due());
        let a = NodeAddr::new("10.0.0.1", 7000);
        c.adopt_given(SlotMap::split_evenly(std::slice::from_ref(&a)), now);
        let mut attempts = WatchAttempts::new(slot, c.limits(), 3);
        assert_eq!(c.watch_node(&mut attempts).unwrap(), a);
        // WATCH answered MOVED: the map follows, a refresh is asked, no pause.
        let b = NodeAddr::new("10.0.0.2", 7000);
        let moved = server_error(format!("MOVED {} {b}", slot.get()).as_bytes());
        let pause = c
            .attempt_ended(&mut attempts, &a, AttemptEnd::Moved(moved), now)
            .unwrap();
        assert!(pause.is_zero());
        assert_eq!(c.map().node_for(slot), Some(&b));
        assert!(c.refresh().is_due());
        assert_eq!(c.counters().snapshot().redirects, 1);
        assert_eq!(c.watch_node(&mut attempts).unwrap(), b);
        // Conflicts use up the attempts (three, the moved one counted): then the
        // session's error says so.
        let _ = c.attempt_ended(&mut attempts, &b, AttemptEnd::Conflict, now);
        assert_eq!(c.watch_node(&mut attempts).unwrap(), b);
        let _ = c.attempt_ended(&mut attempts, &b, AttemptEnd::Conflict, now);
        let e = c.watch_node(&mut attempts).unwrap_err();
        assert_eq!(e.kind(), crate::core::error::ErrorKind::WatchConflict);
    }

    #[test]
    fn the_loop_looks_again_soon_only_while_requests_wait() {
        let mut c = cluster(Config::default());
        let now = Instant::now();
        c.adopt_given(SlotMap::split_evenly(&[NodeAddr::new("a", 1)]), now);
        let periodic = c.next_refresh(now);
        assert_eq!(c.next_look(now, false), periodic);
        let soon = c.next_look(now, true).unwrap();
        assert_eq!(soon, now + UNRESPONSIVE_AFTER);
        assert!(periodic.is_none_or(|p| soon <= p));
    }

    #[test]
    fn what_it_was_given_is_what_it_holds() {
        let seeds = vec![
            NodeAddr::new("10.0.0.1", 7000),
            NodeAddr::new("10.0.0.2", 7000),
        ];
        let config = Config::default().request_timeout(Some(Duration::from_millis(123)));
        let c = Cluster::new(seeds.clone(), config, 1);
        assert_eq!(c.seeds(), &seeds[..]);
        assert_eq!(
            c.shared_config().request_timeout,
            Some(Duration::from_millis(123))
        );
        assert!(!c.routes_reads());
        let nearest = cluster(Config::default().read_from(ReadFrom::Nearest));
        assert!(nearest.routes_reads());
    }

    #[test]
    fn serial_execution_writes_one_node_at_a_time() {
        use crate::core::config::Execution;
        use crate::core::request::Step;
        let nodes = [
            NodeAddr::new("10.0.0.1", 7000),
            NodeAddr::new("10.0.0.2", 7000),
        ];
        let cmds: Vec<Cmd> = (0..32).map(|i| cmd("GET").arg(format!("k{i}"))).collect();
        let writes_before_waiting = |execution: Execution| {
            let mut c = cluster(Config::default().execution(execution));
            let now = Instant::now();
            c.adopt_given(SlotMap::split_evenly(&nodes), now);
            let mut request = c.pipeline(&cmds, &NodeTable::default(), None, None);
            let mut writes = 0;
            while let Step::Write(batch) = request.poll(now, c.map(), c.seeds()) {
                request.written(batch.node, batch.entries, 0, now);
                writes += 1;
            }
            writes
        };
        assert_eq!(writes_before_waiting(Execution::Parallel), 2);
        assert_eq!(writes_before_waiting(Execution::Serial), 1);
    }

    #[test]
    fn refreshes_come_when_asked_periodically_or_while_polling_never_faster() {
        use crate::core::refresh::POLL_WHILE_UNRESPONSIVE;
        let config = Config::default();
        let min = config.min_refresh_interval;
        let every = config
            .periodic_refresh
            .expect("a periodic refresh by default");
        let a = NodeAddr::new("10.0.0.1", 7000);
        let t0 = Instant::now();
        let mut c = cluster(config);
        c.adopt_given(SlotMap::split_evenly(std::slice::from_ref(&a)), t0);
        // Nothing asked: only the periodic one.
        assert_eq!(c.next_refresh(t0), Some(t0 + every));
        assert!(!c.wants_refresh(t0 + min));
        assert!(c.wants_refresh(t0 + every));
        // A primary that stopped answering: polled, but not within the rate limit.
        c.stalled(&a, t0);
        assert_eq!(
            c.next_refresh(t0),
            Some(t0 + POLL_WHILE_UNRESPONSIVE.max(min))
        );
        // A node that cannot be reached: a refresh as soon as the rate limit allows.
        let mut c = cluster(Config::default());
        c.adopt_given(SlotMap::split_evenly(std::slice::from_ref(&a)), t0);
        c.unreachable(&a, t0);
        assert!(!c.wants_refresh(t0));
        assert!(c.wants_refresh(t0 + min));
        // A node outside the cluster says nothing about it.
        let mut c = cluster(Config::default());
        c.adopt_given(SlotMap::split_evenly(std::slice::from_ref(&a)), t0);
        c.unreachable(&NodeAddr::new("10.9.9.9", 1), t0);
        c.stalled(&NodeAddr::new("10.9.9.9", 1), t0);
        assert_eq!(c.next_refresh(t0), Some(t0 + every));
    }

    #[test]
    fn replicas_are_warmed_up_only_where_reads_go_to_them() {
        use crate::core::value::Value;
        let bulk = |s: &str| Value::Bulk(bytes::Bytes::from(s.to_string()));
        let node = |port: i64| Value::Array(vec![bulk("10.0.0.1"), Value::Int(port), bulk("id")]);
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(16383),
            node(7000),
            node(7100),
        ])]);
        let map = SlotMap::from_cluster_slots(&reply).unwrap();
        let replica = NodeAddr::new("10.0.0.1", 7100);
        let now = Instant::now();
        let mut primary_only = cluster(Config::default());
        primary_only.adopt_given(map.clone(), now);
        assert!(primary_only
            .warm_ups(&NodeTable::default(), now, |_| false)
            .is_empty());
        let mut nearest = cluster(Config::default().read_from(ReadFrom::Nearest));
        nearest.adopt_given(map, now);
        assert_eq!(
            nearest.warm_ups(&NodeTable::default(), now, |_| false),
            vec![replica.clone()]
        );
        assert!(nearest
            .warm_ups(&NodeTable::default(), now, |n| *n == replica)
            .is_empty());
    }

    #[test]
    fn a_node_failing_in_a_row_is_reconnected_after_a_backoff() {
        let c = cluster(Config::default());
        let a = NodeAddr::new("10.0.0.1", 7000);
        let mut nodes = NodeTable::default();
        let now = Instant::now();
        assert_eq!(c.reconnect_delay(&nodes, &a, now, 1.0), Duration::ZERO);
        nodes.failed(&a, now);
        nodes.failed(&a, now);
        assert!(c.reconnect_delay(&nodes, &a, now, 1.0) > Duration::ZERO);
    }

    #[test]
    fn a_group_whose_answers_cover_part_of_the_slots_ends_with_the_best_one() {
        use crate::core::value::Value;
        let seeds = vec![NodeAddr::new("10.0.0.1", 7000)];
        let mut c = Cluster::new(seeds.clone(), Config::default(), 3);
        let mut fetch = c.fetch(Instant::now());
        let group = fetch.next_group().expect("one group");
        assert_eq!(group, seeds);
        let (cmds, pins) = SlotMapFetch::questions(&group);
        assert_eq!(cmds.len(), 1);
        assert_eq!(pins, vec![Some(seeds[0].clone())]);
        // Slots 0-100 only: no answer settles the vote by itself; the group's end does.
        let bulk = |s: &str| Value::Bulk(bytes::Bytes::from(s.to_string()));
        let partial = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(100),
            Value::Array(vec![bulk("10.0.0.1"), Value::Int(7000), bulk("id")]),
        ])]);
        let map = fetch
            .group_answered(&group, vec![Ok(partial)])
            .expect("the best answer once the group is done");
        assert_eq!(map.node_for(slot(5)), Some(&seeds[0]));
        assert_eq!(map.node_for(slot(500)), None);
        assert!(fetch.next_group().is_none());
    }

    #[test]
    fn effects_move_slots_and_ask_for_a_refresh() {
        let mut c = cluster(Config::default());
        let a = NodeAddr::new("10.0.0.1", 7000);
        let b = NodeAddr::new("10.0.0.2", 7000);
        c.adopt_given(
            SlotMap::split_evenly(std::slice::from_ref(&a)),
            Instant::now(),
        );
        let timed_out = c.apply_effects(
            [
                Effect::Redirected {
                    moved: Some((slot(9), b.clone())),
                },
                Effect::TimedOut(a.clone()),
            ]
            .into_iter(),
            Instant::now,
        );
        assert_eq!(timed_out, vec![a.clone()]);
        assert_eq!(c.map().node_for(slot(9)), Some(&b));
        assert!(c.refresh().is_due());
        assert_eq!(c.counters().snapshot().redirects, 1);
    }
}
