//! The simulated cluster: nodes that own slots and execute the commands they receive on
//! their own key space, connections that carry bytes late, split and sometimes never,
//! and a clock that only moves when the simulation says so.
//!
//! Everything random comes from one seed ([`Rng`]), so a run replays exactly.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::core::resp::decode::decode;
use crate::core::resp::{DecodeLimits, Value};
use crate::core::slot::{slot_for_key, SLOT_COUNT};
use crate::core::topology::NodeAddr;

thread_local! {
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The simulated time (the pool's clock during a simulation).
pub(crate) fn sim_now() -> Instant {
    NOW.with(|n| match n.get() {
        Some(t) => t,
        None => {
            let t = Instant::now();
            n.set(Some(t));
            t
        }
    })
}

/// Moves the simulated time to `t` (the scale scenario runs its own world).
pub(crate) fn set_now(t: Instant) {
    NOW.with(|n| n.set(Some(t)));
}

/// xorshift64*: small, fast, and the same sequence for the same seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p` percent.
    pub(crate) fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn micros(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(lo + self.below(hi - lo + 1))
    }
}

/// What the faults of a run may do, chosen from its seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Faults {
    /// Percent chance, per delivery, that a connection is cut after it.
    pub(crate) drop: u64,
    /// Percent chance, per command, of a transient error reply (`TRYAGAIN`, `LOADING`,
    /// `CLUSTERDOWN`) instead of running it.
    pub(crate) transient: u64,
    /// Percent chance, per `CLUSTER SLOTS`, of answering with the map before the last
    /// migration.
    pub(crate) stale_map: u64,
    /// Highest one-way latency.
    pub(crate) max_latency: Duration,
    /// How long a write takes to reach the replicas (asynchronous replication): a
    /// failover within it loses the write.
    pub(crate) replication_lag: Duration,
    /// Percent chance, per write, of `OOM` (the node is over `maxmemory`): refused, not
    /// run, and not to be retried (drawn from a stream of its own, so runs without it
    /// are the runs they were).
    pub(crate) oom: u64,
}

impl Faults {
    pub(crate) const NONE: Faults = Faults {
        drop: 0,
        transient: 0,
        stale_map: 0,
        max_latency: Duration::from_micros(200),
        replication_lag: Duration::ZERO,
        oom: 0,
    };
}

/// A migration of one slot under way: keys move from `from` to `to` (a node answers
/// `ASK` for a key it no longer has; the target serves it after `ASKING`).
#[derive(Debug, Clone, Copy)]
struct Migration {
    slot: u16,
    from: usize,
    to: usize,
}

#[derive(Debug)]
struct Node {
    addr: NodeAddr,
    data: BTreeMap<Bytes, Bytes>,
    /// Stopped (SIGSTOP): reads nothing until then.
    paused_until: Option<Instant>,
    /// Down (killed): refuses connections until then.
    down_until: Option<Instant>,
    /// The primary it replicates, for a replica.
    primary: Option<usize>,
    /// Partitioned from everyone: bytes to and from it wait (no reset) until then.
    cut_off_until: Option<Instant>,
    /// A primary the cluster replaced while it could not hear the others: until then it
    /// still serves the slots it owned (now its successor's) as their primary, and the
    /// writes it takes are lost when it rejoins as the successor's replica.
    deposed: Option<(Instant, usize)>,
    /// When each key last changed on this node (a world-wide stamp): what `WATCH`
    /// compares. Every change of `data` goes through [`World::put`] and
    /// [`World::remove`], which stamp it, so no write can slip past a watch.
    touched: BTreeMap<Bytes, u64>,
    /// Stopped and replaced by its replica while it could not answer (a SIGSTOP longer
    /// than the node timeout): until then it hears nothing, not even replication; then
    /// it rejoins as the new primary's replica.
    replaced_until: Option<Instant>,
    /// When the whole data set was last replaced (a promotion, a resync after a failover):
    /// every key counts as touched then, as Redis touches every watched key when it
    /// flushes a database.
    flushed: u64,
}

/// One connection, as both ends see it.
#[derive(Debug)]
struct Link {
    node: usize,
    /// Bytes on their way to the node, each chunk with its arrival time (in order).
    to_node: VecDeque<(Instant, Bytes)>,
    /// Bytes on their way back.
    to_client: VecDeque<(Instant, Bytes)>,
    /// What the node has read and not parsed yet.
    node_in: BytesMut,
    /// The next command follows `ASKING` (inside `MULTI`, every command until `EXEC`).
    asking: bool,
    /// Inside `MULTI`: the commands queued, and whether one was refused (then `EXEC`
    /// discards them all).
    multi: Option<(Vec<Vec<Bytes>>, bool)>,
    /// Keys `WATCH`ed on this connection and their stamp then (`EXEC` answers nil if one
    /// changed). They die with the connection, as the server's client state does.
    watches: Vec<(Bytes, u64)>,
    open: bool,
    /// The client side heard of the close.
    reported: bool,
    /// A subscriber's connection: its bytes' latencies, splits and cuts come from
    /// `sub_rng`, so runs without one are as they were.
    sub: bool,
    /// The sharded channels it is subscribed to (`SSUBSCRIBE`); gone with the connection.
    ssubs: BTreeSet<Bytes>,
    /// `CLIENT TRACKING ON` was sent: the keys it reads are tracked.
    tracking: bool,
    /// Keys read since their last invalidation (the server's tracking table for this
    /// connection): the next change of one pushes `invalidate` and forgets it.
    tracked: BTreeSet<Bytes>,
    /// Invalidations pushed and not delivered yet: arrival, and the key (empty: a flush).
    invalidations: Vec<(Instant, Bytes)>,
}

/// What the client side of a connection sees.
#[derive(Debug)]
pub(crate) enum Seen {
    Bytes(usize, Bytes),
    Closed(usize),
}

/// The simulated cluster and network.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) rng: Rng,
    /// The `OOM` fault's own random stream.
    oom_rng: Rng,
    /// Subscriber connections' own random stream (latency, splits, cuts).
    sub_rng: Rng,
    pub(crate) faults: Faults,
    nodes: Vec<Node>,
    owner: Vec<usize>,
    /// The map before the last migration finished (what a lagging node still says).
    stale_owner: Vec<usize>,
    migration: Option<Migration>,
    links: Vec<Link>,
    /// Executions of each written key, cluster-wide (what really ran).
    pub(crate) executions: BTreeMap<Bytes, u32>,
    /// Commands run by a node that started as a replica (promoted by a failover).
    pub(crate) served_by_promoted: u64,
    /// `CLUSTER SLOTS` answers (current, stale) until the map or the roles change.
    slots_replies: [Option<Vec<u8>>; 2],
    /// Each node's `CLUSTER NODES` answer, until the map, the roles or a migration change.
    nodes_replies: Vec<Option<Vec<u8>>>,
    /// Writes on their way to a replica: (due, replica, key, value).
    replicating: VecDeque<(Instant, usize, Bytes, Bytes)>,
    /// Keys whose acknowledged write a failover may have lost (it had not reached the
    /// promoted replica, or a deposed primary took it).
    pub(crate) lost: BTreeSet<Bytes>,
    limits: DecodeLimits,
    /// The last stamp given to a change (see `Node::touched`).
    stamp: u64,
    /// Counter keys: a `SET` of one must write the value it replaces plus one (the
    /// read-modify-write of a `WATCH` session).
    counters: BTreeSet<Bytes>,
    /// Increments of each counter by another client (the world's own writes).
    pub(crate) external_increments: BTreeMap<Bytes, u64>,
    /// The stamp of each counter's last external increment (to tell why a watch failed).
    external_stamps: BTreeMap<Bytes, u64>,
    /// Counter writes that replaced a value other than the one they incremented: a
    /// transaction committed over a change its session had read (must stay empty).
    pub(crate) lost_updates: Vec<String>,
    /// `EXEC`s answered nil because a watched key changed, and of those, how many
    /// because another client incremented it.
    pub(crate) nil_execs: u64,
    pub(crate) nil_execs_external: u64,
    /// Every key ever stored on any node.
    pub(crate) ever: BTreeSet<Bytes>,
    /// While a scan runs: the keys that have existed (see [`World::exists`]) since it
    /// began, without a break.
    scan_stable: Option<BTreeSet<Bytes>>,
    /// Changes that may move or drop keys (a migration, a failover, a deposed primary
    /// rejoining) while a scan ran.
    pub(crate) scan_disturbances: u64,
    /// Stopped primaries whose replica is promoted at the instant (the node timeout).
    promotions: Vec<(Instant, usize)>,
    /// The link whose command is running: its own invalidations follow the reply, as
    /// Redis sends them to the client that made the change.
    executing: Option<usize>,
    /// Those invalidations, pushed once the reply is.
    after_reply: Vec<(usize, Vec<u8>, Bytes)>,
}

impl World {
    /// `n` primaries splitting the slots evenly, on ports 7000.., each with one replica
    /// (ports 7100..) that every write is copied to, at simulated time 0.
    pub(crate) fn new(n: usize, seed: u64, faults: Faults) -> World {
        set_now(Instant::now());
        let nodes = (0..2 * n)
            .map(|i| Node {
                addr: NodeAddr::new("10.0.0.1", 7000 + (i % n) as u16 + 100 * (i / n) as u16),
                data: BTreeMap::new(),
                paused_until: None,
                down_until: None,
                primary: (i >= n).then(|| i - n),
                cut_off_until: None,
                deposed: None,
                touched: BTreeMap::new(),
                flushed: 0,
                replaced_until: None,
            })
            .collect();
        let owner: Vec<usize> = (0..SLOT_COUNT as usize)
            .map(|s| s * n / SLOT_COUNT as usize)
            .collect();
        World {
            rng: Rng::new(seed),
            oom_rng: Rng::new(seed ^ 0x00f0_f3e3),
            sub_rng: Rng::new(seed ^ 0x5b5c_0b5e),
            faults,
            nodes,
            stale_owner: owner.clone(),
            owner,
            migration: None,
            links: Vec::new(),
            executions: BTreeMap::new(),
            served_by_promoted: 0,
            slots_replies: [None, None],
            nodes_replies: vec![None; 2 * n],
            replicating: VecDeque::new(),
            lost: BTreeSet::new(),
            limits: DecodeLimits::default(),
            stamp: 0,
            counters: BTreeSet::new(),
            external_increments: BTreeMap::new(),
            external_stamps: BTreeMap::new(),
            lost_updates: Vec::new(),
            nil_execs: 0,
            nil_execs_external: 0,
            ever: BTreeSet::new(),
            scan_stable: None,
            scan_disturbances: 0,
            promotions: Vec::new(),
            executing: None,
            after_reply: Vec::new(),
        }
    }

    /// The nodes a user names to connect: the first primaries.
    pub(crate) fn seeds(&self) -> Vec<NodeAddr> {
        self.nodes
            .iter()
            .take(self.nodes.len() / 2)
            .map(|n| n.addr.clone())
            .collect()
    }

    fn is_down(&self, i: usize) -> bool {
        self.nodes[i].down_until.is_some_and(|t| t > sim_now())
    }

    /// Stores `key` = `value` on the key's owner and its replicas (a fixture, not a
    /// command).
    pub(crate) fn preload(&mut self, key: &[u8], value: &[u8]) {
        let owner = self.owner[slot_for_key(key).index()];
        self.store_everywhere(
            owner,
            Bytes::copy_from_slice(key),
            Bytes::copy_from_slice(value),
        );
    }

    /// Stores `key` on primary `node` and its replicas at once (a fixture, or a key a
    /// migration moves: the reads of the workload know their values, and what a lagging
    /// replica loses is the workload's writes, not these).
    fn store_everywhere(&mut self, node: usize, key: Bytes, value: Bytes) {
        for i in 0..self.nodes.len() {
            if i == node || self.copies(i, node) {
                self.put(i, key.clone(), value.clone());
            }
        }
    }

    /// Sets `key` on node `i` (every change of a node's data goes through here or
    /// [`World::remove`]): stamped, so a `WATCH` on it sees the change.
    fn put(&mut self, i: usize, key: Bytes, value: Bytes) {
        self.invalidate(i, &key);
        self.stamp += 1;
        self.nodes[i].touched.insert(key.clone(), self.stamp);
        if !self.ever.contains(&key) {
            self.ever.insert(key.clone());
        }
        self.nodes[i].data.insert(key, value);
    }

    /// Deletes `key` from node `i`, stamped as [`World::put`].
    fn remove(&mut self, i: usize, key: &Bytes) -> Option<Bytes> {
        self.invalidate(i, key);
        self.stamp += 1;
        self.nodes[i].touched.insert(key.clone(), self.stamp);
        self.nodes[i].data.remove(key)
    }

    /// Replaces node `i`'s whole data set (a resync): every key counts as touched.
    fn replace_data(&mut self, i: usize, data: BTreeMap<Bytes, Bytes>) {
        // Every key may have changed: tracking connections hear a flush.
        self.invalidate_all(i);
        self.stamp += 1;
        self.nodes[i].flushed = self.stamp;
        self.nodes[i].data = data;
    }

    /// `key` changes on node `i`: each connection tracking it is pushed `invalidate`
    /// (after whatever it was sent before) and stops tracking it, as Redis does.
    fn invalidate(&mut self, i: usize, key: &Bytes) {
        for l in 0..self.links.len() {
            let link = &mut self.links[l];
            if link.node != i || !link.open || !link.tracked.remove(key) {
                continue;
            }
            let mut frame = b">2\r\n".to_vec();
            frame.extend(bulk(b"invalidate"));
            frame.extend(b"*1\r\n");
            frame.extend(bulk(key));
            if self.executing == Some(l) {
                self.after_reply.push((l, frame, key.clone()));
            } else {
                self.push_invalidation(l, frame, key.clone());
            }
        }
    }

    /// Every key of node `i` may have changed: a flush (`invalidate` with a null).
    fn invalidate_all(&mut self, i: usize) {
        for l in 0..self.links.len() {
            let link = &mut self.links[l];
            if link.node != i || !link.open || !link.tracking {
                continue;
            }
            link.tracked.clear();
            let mut frame = b">2\r\n".to_vec();
            frame.extend(bulk(b"invalidate"));
            frame.extend(b"_\r\n");
            self.push_invalidation(l, frame, Bytes::new());
        }
    }

    fn push_invalidation(&mut self, link: usize, frame: Vec<u8>, key: Bytes) {
        self.push_to(link, frame);
        if let Some((at, _)) = self.links[link].to_client.back() {
            let at = *at;
            self.links[link].invalidations.push((at, key));
        }
    }

    /// Whether a cached `value` of `key` filled from link `link`, other than the key's
    /// value now, may still be served: the invalidation is on its way (pushed and not
    /// delivered), the connection was cut and the client has not heard yet (the push
    /// died with it), or the node is a deposed primary that still serves the slot
    /// (cut off from its cluster, it never hears of the new primary's writes: the
    /// client's entries go when its map names the new owner).
    pub(crate) fn stale_allowed(
        &self,
        link: usize,
        key: &[u8],
        client_owner: Option<&NodeAddr>,
    ) -> bool {
        let l = &self.links[link];
        let pending = l
            .invalidations
            .iter()
            .any(|(_, k)| k.is_empty() || k.as_ref() == key);
        let deposed = self.deposed(l.node).is_some();
        // Once the client's map names another owner, the slot's entries must be gone.
        let still_mapped = client_owner == Some(&self.nodes[l.node].addr);
        (l.open && pending) || (!l.open && !l.reported) || (deposed && still_mapped)
    }

    /// Whether link `link`'s node is a deposed primary still serving (split brain): what
    /// it answers may predate writes its successor took, cache or no cache.
    pub(crate) fn link_deposed(&self, link: usize) -> bool {
        self.deposed(self.links[link].node).is_some()
    }

    /// Link `link` and its node, for a failure's message.
    pub(crate) fn describe_link(&self, link: usize, key: &[u8]) -> String {
        let l = &self.links[link];
        let n = &self.nodes[l.node];
        let slot = slot_for_key(key).get() as usize;
        format!(
            "link {link} to node {} ({}; open {}, reported {}, tracking {}, tracks the key {}, \
             invalidations in flight {:?}); the node: primary of {:?}, paused until {:?}, \
             replaced until {:?}, deposed {:?}, holds {:?}; the slot's owner is node {} \
             (migration {:?}); now {:?}",
            l.node,
            n.addr,
            l.open,
            l.reported,
            l.tracking,
            l.tracked.contains(key),
            l.invalidations,
            n.primary,
            n.paused_until,
            n.replaced_until,
            n.deposed,
            n.data.get(key),
            self.owner[slot],
            self.migration,
            sim_now(),
        )
    }

    /// Another client writes `key` where it lives now (the owner, or during its slot's
    /// migration whichever side has it), if it can reach that node: not down, stopped,
    /// cut off or deposed. Returns whether it wrote.
    pub(crate) fn write_externally(&mut self, key: &[u8], value: &[u8]) -> bool {
        let now = sim_now();
        let slot = slot_for_key(key).get();
        let owner = self.owner[slot as usize];
        let node = match self.migration.filter(|m| m.slot == slot) {
            Some(m) if !self.nodes[owner].data.contains_key(key) => m.to,
            _ => owner,
        };
        let n = &self.nodes[node];
        if self.is_down(node)
            || n.paused_until.is_some_and(|p| p > now)
            || self.cut_off(node, now)
            || self.deposed(node).is_some()
        {
            return false;
        }
        self.store(
            node,
            Bytes::copy_from_slice(key),
            Bytes::copy_from_slice(value),
        );
        true
    }

    /// What a `WATCH` of `key` on node `i` remembers, and `EXEC` compares.
    fn stamp_of(&self, i: usize, key: &[u8]) -> u64 {
        let n = &self.nodes[i];
        n.touched.get(key).copied().unwrap_or(0).max(n.flushed)
    }

    /// Writes on primary `node`; its replicas get the write `replication_lag` later.
    fn store(&mut self, node: usize, key: Bytes, value: Bytes) {
        self.put(node, key.clone(), value.clone());
        let due = sim_now() + self.faults.replication_lag;
        for i in 0..self.nodes.len() {
            if self.copies(i, node) {
                self.replicating
                    .push_back((due, i, key.clone(), value.clone()));
            }
        }
        self.settle();
    }

    /// Brings the world up to now: writes due reach their replicas, and deposed
    /// primaries whose time is up rejoin as their successor's replica (what they took
    /// meanwhile is gone).
    fn settle(&mut self) {
        let now = sim_now();
        while self
            .replicating
            .front()
            .is_some_and(|(due, ..)| *due <= now)
        {
            if let Some((_, replica, key, value)) = self.replicating.pop_front() {
                self.put(replica, key, value);
            }
        }
        let due: Vec<usize> = self
            .promotions
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, old)| *old)
            .collect();
        self.promotions.retain(|(at, _)| *at > now);
        for old in due {
            self.promote_stopped(old);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].replaced_until.is_some_and(|t| t <= now) {
                // Awake again, and told it was replaced: a replica of its successor,
                // its data the successor's (its tracking connections hear a flush).
                self.nodes[i].replaced_until = None;
                if let Some(successor) = self.nodes[i].primary {
                    let data = self.nodes[successor].data.clone();
                    self.replace_data(i, data);
                }
                self.topology_changed();
                self.recheck_scan();
            }
        }
        for i in 0..self.nodes.len() {
            if let Some((until, successor)) = self.nodes[i].deposed {
                if until <= now {
                    self.nodes[i].deposed = None;
                    let data = self.nodes[successor].data.clone();
                    self.replace_data(i, data);
                    self.topology_changed();
                    self.recheck_scan();
                    self.unsubscribe_lost();
                }
            }
        }
    }

    /// The map, the roles or a migration changed: the cached answers describing them go.
    fn topology_changed(&mut self) {
        self.slots_replies = [None, None];
        self.nodes_replies.iter_mut().for_each(|r| *r = None);
    }

    /// Whether node `i` holds a copy of primary `node`'s writes: a replica of it, and not
    /// a deposed primary that has not rejoined yet (it still serves its own data).
    fn copies(&self, i: usize, node: usize) -> bool {
        self.nodes[i].primary == Some(node)
            && self.deposed(i).is_none()
            && self.nodes[i].replaced_until.is_none()
    }

    /// Whether node `i` is a deposed primary still serving as one, and its successor.
    fn deposed(&self, i: usize) -> Option<usize> {
        self.nodes[i]
            .deposed
            .filter(|(until, _)| *until > sim_now())
            .map(|(_, successor)| successor)
    }

    /// The value stored for `key` on the primary that owns it (or, while its slot
    /// migrates, on whichever side has it).
    pub(crate) fn value_of(&self, key: &[u8]) -> Option<Bytes> {
        let slot = slot_for_key(key).get();
        let owner = self.owner[slot as usize];
        let mut sides = vec![owner];
        if let Some(m) = self.migration.filter(|m| m.slot == slot) {
            sides.push(m.to);
        }
        sides
            .into_iter()
            .find_map(|n| self.nodes[n].data.get(key).cloned())
    }

    /// Opens a connection to `addr`; `None` when no such node is up (refused).
    pub(crate) fn connect(&mut self, addr: &NodeAddr) -> Option<usize> {
        let node = self.nodes.iter().position(|n| &n.addr == addr)?;
        if self.is_down(node) {
            return None;
        }
        self.links.push(Link {
            node,
            to_node: VecDeque::new(),
            to_client: VecDeque::new(),
            node_in: BytesMut::new(),
            asking: false,
            multi: None,
            watches: Vec::new(),
            open: true,
            reported: false,
            sub: false,
            ssubs: BTreeSet::new(),
            tracking: false,
            tracked: BTreeSet::new(),
            invalidations: Vec::new(),
        });
        Some(self.links.len() - 1)
    }

    /// Opens a subscriber's connection to `addr` (see `Link::sub`).
    pub(crate) fn connect_subscriber(&mut self, addr: &NodeAddr) -> Option<usize> {
        let link = self.connect(addr)?;
        self.links[link].sub = true;
        Some(link)
    }

    /// The random stream of link `i`'s bytes.
    fn rng_for(&mut self, i: usize) -> &mut Rng {
        if self.links[i].sub {
            &mut self.sub_rng
        } else {
            &mut self.rng
        }
    }

    /// Whether `node` serves sharded channels of `slot`: it owns it, or is a deposed
    /// primary that still believes it does (not redirected while the slot migrates, as
    /// Redis serves sharded pub/sub on the owner until the migration ends).
    fn serves(&self, node: usize, slot: u16) -> bool {
        let owner = self.owner[slot as usize];
        node == owner || self.deposed(node) == Some(owner)
    }

    /// Bytes the node of link `i` pushes on its own (a message, an unsubscribe, an
    /// invalidation); a stopped node sends them once it runs again.
    fn push_to(&mut self, i: usize, bytes: Vec<u8>) {
        if !self.links[i].open {
            return;
        }
        let awake = self.nodes[self.links[i].node]
            .paused_until
            .map_or(sim_now(), |p| p.max(sim_now()));
        let at = self.links[i]
            .to_client
            .back()
            .map_or(sim_now(), |(t, _)| *t)
            .max(awake)
            + self.latency_for(i);
        self.links[i].to_client.push_back((at, Bytes::from(bytes)));
    }

    /// Another client's `SPUBLISH channel payload` on the slot's owner: each of its
    /// connections subscribed to the channel gets the message. Returns how many.
    pub(crate) fn spublish(&mut self, channel: &[u8], payload: &[u8]) -> usize {
        let node = self.owner[slot_for_key(channel).get() as usize];
        let mut frame = b">3\r\n".to_vec();
        frame.extend(bulk(b"smessage"));
        frame.extend(bulk(channel));
        frame.extend(bulk(payload));
        let mut n = 0;
        for i in 0..self.links.len() {
            let l = &self.links[i];
            if l.open && l.node == node && l.ssubs.contains(channel) {
                self.push_to(i, frame.clone());
                n += 1;
            }
        }
        n
    }

    /// Nodes that no longer serve a slot (a migration finished, a failover) end their
    /// connections' subscriptions to its channels, as Redis 7 does: `sunsubscribe`.
    fn unsubscribe_lost(&mut self) {
        for i in 0..self.links.len() {
            if self.links[i].ssubs.is_empty() {
                continue;
            }
            let node = self.links[i].node;
            let lost: Vec<Bytes> = self.links[i]
                .ssubs
                .iter()
                .filter(|c| !self.serves(node, slot_for_key(c).get()))
                .cloned()
                .collect();
            for channel in lost {
                self.links[i].ssubs.remove(&channel);
                self.push_to(i, sub_push(b"sunsubscribe", &channel, 0));
            }
        }
    }

    /// The client closed its side.
    pub(crate) fn close(&mut self, link: usize) {
        if let Some(l) = self.links.get_mut(link) {
            l.open = false;
            l.reported = true;
            l.to_client.clear();
        }
    }

    /// Bytes the client wrote: they arrive later, maybe in pieces.
    pub(crate) fn send(&mut self, link: usize, bytes: Bytes) {
        let mut at = self.links[link]
            .to_node
            .back()
            .map_or(sim_now(), |(t, _)| *t)
            .max(sim_now());
        let mut rest = bytes;
        while !rest.is_empty() {
            let cut = if self.rng_for(link).chance(30) {
                1 + self.rng_for(link).below(rest.len() as u64) as usize
            } else {
                rest.len()
            };
            let piece = rest.split_to(cut.min(rest.len()));
            at += self.latency_for(link);
            self.links[link].to_node.push_back((at, piece));
        }
    }

    fn latency_for(&mut self, link: usize) -> Duration {
        let hi = self.faults.max_latency.as_micros().max(20) as u64;
        self.rng_for(link).micros(10, hi)
    }

    /// Pauses node `i` for `d` (it reads nothing meanwhile; its sockets stay open).
    pub(crate) fn pause(&mut self, i: usize, d: Duration) {
        self.nodes[i].paused_until = Some(sim_now() + d);
    }

    /// Fails over the shard of primary-slot owner `shard`: its primary goes down for `d`
    /// (connections cut, new ones refused), its replica is promoted and takes every slot,
    /// and the old primary comes back as the new one's replica.
    pub(crate) fn failover(&mut self, shard: usize, d: Duration, split_brain: bool) {
        let Some(old) = self
            .primaries()
            .get(shard % self.primaries().len())
            .copied()
        else {
            return;
        };
        let Some(new) = self.replica_to_promote(old) else {
            return;
        };
        self.finish_migration();
        self.settle();
        self.promote(old, new);
        if split_brain {
            // Cut off from the other nodes, not from the clients: it goes on serving.
            self.nodes[old].deposed = Some((sim_now() + d, new));
        } else {
            let data = self.nodes[new].data.clone();
            self.replace_data(old, data);
            self.nodes[old].down_until = Some(sim_now() + d);
            self.kill_links(old);
        }
        self.recheck_scan();
        self.unsubscribe_lost();
    }

    /// Stops shard `shard`'s primary (SIGSTOP) for `d`; once it has been silent for
    /// `node_timeout` its replica is promoted, its connections still open (they hear
    /// nothing, and no invalidation of what the new primary is written). When it wakes
    /// it rejoins as the new primary's replica.
    pub(crate) fn stop_and_fail_over(&mut self, shard: usize, node_timeout: Duration, d: Duration) {
        let primaries = self.primaries();
        let Some(&old) = primaries.get(shard % primaries.len()) else {
            return;
        };
        if self.replica_to_promote(old).is_none()
            || self.nodes[old].paused_until.is_some_and(|p| p > sim_now())
        {
            return;
        }
        self.pause(old, d.max(node_timeout + Duration::from_millis(1)));
        self.promotions.push((sim_now() + node_timeout, old));
    }

    /// Promotes the replica of the stopped `old`, if it still can be.
    fn promote_stopped(&mut self, old: usize) {
        let Some(new) = self.replica_to_promote(old) else {
            return;
        };
        if self.nodes[old].primary.is_some() {
            return;
        }
        self.finish_migration();
        self.promote(old, new);
        self.nodes[old].replaced_until = self.nodes[old].paused_until;
        self.recheck_scan();
        self.unsubscribe_lost();
    }

    /// The replica of primary `old` a failover would promote (none when it is a deposed
    /// primary or a replaced one that has not rejoined yet).
    fn replica_to_promote(&self, old: usize) -> Option<usize> {
        let new = (0..self.nodes.len()).find(|&i| self.nodes[i].primary == Some(old))?;
        (self.nodes[new].deposed.is_none() && self.nodes[new].replaced_until.is_none())
            .then_some(new)
    }

    /// `new` takes over `old`'s slots.
    fn promote(&mut self, old: usize, new: usize) {
        // Writes still on their way to the promoted replica are lost.
        let promoted = new;
        self.replicating.retain(|(_, replica, key, _)| {
            let keep = *replica != promoted;
            if !keep {
                self.lost.insert(key.clone());
            }
            keep
        });
        self.stale_owner = self.owner.clone();
        for o in self.owner.iter_mut().filter(|o| **o == old) {
            *o = new;
        }
        self.nodes[new].primary = None;
        self.nodes[old].primary = Some(new);
        self.topology_changed();
        // A promoted replica's watches (if it had any) do not survive its new role.
        self.stamp += 1;
        self.nodes[new].flushed = self.stamp;
    }

    /// Partitions node `i` from everyone for `d`: bytes to and from it wait, and no
    /// connection is reset (a new one is opened but hears nothing).
    pub(crate) fn partition(&mut self, i: usize, d: Duration) {
        self.nodes[i].cut_off_until = Some(sim_now() + d);
    }

    fn cut_off(&self, i: usize, at: Instant) -> bool {
        self.nodes[i].cut_off_until.is_some_and(|t| t > at)
    }

    /// The primaries, in node order.
    fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].primary.is_none())
            .collect()
    }

    /// Cuts every connection to node `i` (a `CLIENT KILL` storm).
    pub(crate) fn kill_links(&mut self, i: usize) {
        for l in self.links.iter_mut().filter(|l| l.node == i) {
            l.open = false;
        }
    }

    /// Starts moving the slot of `key` to another node: about half its keys go now.
    pub(crate) fn start_migration(&mut self, key: &[u8]) {
        if self.migration.is_some() {
            return;
        }
        let slot = slot_for_key(key).get();
        let from = self.owner[slot as usize];
        let others: Vec<usize> = self
            .primaries()
            .into_iter()
            .filter(|&p| p != from)
            .collect();
        if others.is_empty() {
            return;
        }
        let to = others[self.rng.below(others.len() as u64) as usize];
        self.migration = Some(Migration { slot, from, to });
        self.topology_changed();
        let keys: Vec<Bytes> = self.nodes[from]
            .data
            .keys()
            .filter(|k| slot_for_key(k).get() == slot)
            .cloned()
            .collect();
        for k in keys {
            if self.rng.chance(50) {
                self.move_key(&k, from, to);
            }
        }
        self.recheck_scan();
    }

    /// Ends the migration under way: every key moves, the target owns the slot.
    pub(crate) fn finish_migration(&mut self) {
        let Some(m) = self.migration.take() else {
            return;
        };
        let keys: Vec<Bytes> = self.nodes[m.from]
            .data
            .keys()
            .filter(|k| slot_for_key(k).get() == m.slot)
            .cloned()
            .collect();
        for k in keys {
            self.move_key(&k, m.from, m.to);
        }
        self.stale_owner = self.owner.clone();
        self.owner[m.slot as usize] = m.to;
        self.topology_changed();
        self.recheck_scan();
        self.unsubscribe_lost();
    }

    /// Moves `key` as `MIGRATE` does: deleted from the source (a change its watchers
    /// see) and its replicas, stored on the target and its replicas.
    fn move_key(&mut self, key: &Bytes, from: usize, to: usize) {
        for i in 0..self.nodes.len() {
            if i == from || self.copies(i, from) {
                if let Some(v) = self.remove(i, key) {
                    if i == from {
                        self.store_everywhere(to, key.clone(), v);
                    }
                }
            }
        }
    }

    /// Every fault healed: nodes answer, no more cuts or transient errors, no migration.
    pub(crate) fn heal(&mut self) {
        self.faults = Faults::NONE;
        self.finish_migration();
        self.stale_owner = self.owner.clone();
        self.topology_changed();
        for n in &mut self.nodes {
            n.paused_until = None;
            n.down_until = None;
            n.cut_off_until = None;
            if let Some((until, _)) = n.deposed.as_mut() {
                *until = sim_now();
            }
        }
        for (due, ..) in &mut self.replicating {
            *due = sim_now();
        }
        self.settle();
    }

    /// When something happens next: a delivery either way, or a paused node waking.
    pub(crate) fn next_event(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for l in &self.links {
            if !l.open {
                if !l.reported {
                    consider(sim_now());
                }
                continue;
            }
            let cut_off = self.nodes[l.node].cut_off_until;
            let after_cut = |t: Instant| cut_off.map_or(t, |c| c.max(t));
            if let Some((t, _)) = l.to_node.front() {
                let paused = self.nodes[l.node].paused_until;
                consider(after_cut(paused.map_or(*t, |p| p.max(*t))));
            }
            if let Some((t, _)) = l.to_client.front() {
                consider(after_cut(*t));
            }
        }
        next
    }

    /// Moves time to `until` (or the next event before it) and delivers what is due;
    /// what reaches the client side is added to `seen`.
    pub(crate) fn advance(&mut self, until: Instant, seen: &mut Vec<Seen>) {
        let at = self
            .next_event()
            .map_or(until, |t| t.min(until))
            .max(sim_now());
        set_now(at);
        self.settle();
        for i in 0..self.links.len() {
            if !self.links[i].open {
                if !self.links[i].reported {
                    self.links[i].reported = true;
                    seen.push(Seen::Closed(i));
                }
                continue;
            }
            let node = self.links[i].node;
            if self.cut_off(node, at) {
                continue;
            }
            let paused = self.nodes[node].paused_until.is_some_and(|p| p > at);
            while !paused && self.links[i].to_node.front().is_some_and(|(t, _)| *t <= at) {
                if let Some((_, piece)) = self.links[i].to_node.pop_front() {
                    self.links[i].node_in.extend_from_slice(&piece);
                }
                self.serve(i);
                let drop = self.faults.drop;
                if self.rng_for(i).chance(drop) {
                    // Cut: what the node read ran, its replies are lost.
                    self.links[i].open = false;
                    break;
                }
            }
            if !self.links[i].open {
                continue;
            }
            while self.links[i]
                .to_client
                .front()
                .is_some_and(|(t, _)| *t <= at)
            {
                if let Some((_, piece)) = self.links[i].to_client.pop_front() {
                    seen.push(Seen::Bytes(i, piece));
                }
            }
            // Delivered: the client has them (it handles `seen` before anyone reads).
            self.links[i].invalidations.retain(|(t, _)| *t > at);
        }
    }

    /// The node of link `i` runs every whole command it has read.
    fn serve(&mut self, i: usize) {
        loop {
            let mut input = std::mem::take(&mut self.links[i].node_in);
            let decoded = decode(&mut input, &self.limits);
            self.links[i].node_in = input;
            let args: Vec<Bytes> = match decoded {
                Ok(Some(Value::Array(items))) => items
                    .into_iter()
                    .filter_map(|v| match v {
                        Value::Bulk(b) => Some(b),
                        _ => None,
                    })
                    .collect(),
                Ok(None) => return,
                // A client that sends garbage is a bug the invariants catch.
                other => panic!("the client sent something that is not a command: {other:?}"),
            };
            self.executing = Some(i);
            let reply = self.execute(i, &args);
            self.executing = None;
            let at = self.links[i]
                .to_client
                .back()
                .map_or(sim_now(), |(t, _)| *t)
                .max(sim_now())
                + self.latency_for(i);
            let mut rest = Bytes::from(reply);
            while !rest.is_empty() {
                let cut = if self.rng_for(i).chance(20) {
                    1 + self.rng_for(i).below(rest.len() as u64) as usize
                } else {
                    rest.len()
                };
                let piece = rest.split_to(cut.min(rest.len()));
                self.links[i].to_client.push_back((at, piece));
            }
            for (link, frame, key) in std::mem::take(&mut self.after_reply) {
                self.push_invalidation(link, frame, key);
            }
        }
    }

    fn execute(&mut self, i: usize, args: &[Bytes]) -> Vec<u8> {
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        let node = self.links[i].node;
        let in_multi = self.links[i].multi.is_some();
        // As Redis does: ASKING lasts one command, or until EXEC inside a transaction.
        let asking = if in_multi {
            self.links[i].asking
        } else {
            std::mem::take(&mut self.links[i].asking)
        };
        match name.as_slice() {
            b"MULTI" if !in_multi => {
                self.links[i].multi = Some((Vec::new(), false));
                b"+OK\r\n".to_vec()
            }
            b"EXEC" => {
                self.links[i].asking = false;
                let Some(multi) = self.links[i].multi.take() else {
                    // As Redis: no transaction, and the watches stay.
                    return b"-ERR EXEC without MULTI\r\n".to_vec();
                };
                // Whatever the answer, EXEC ends the connection's watches.
                let watches = std::mem::take(&mut self.links[i].watches);
                match multi {
                    (_, true) => {
                        b"-EXECABORT Transaction discarded because of previous errors.\r\n".to_vec()
                    }
                    _ if self.watch_broken(node, &watches) => {
                        // RESP3's null (the handshake's HELLO chose RESP3): nothing runs.
                        b"_\r\n".to_vec()
                    }
                    (queued, false) => {
                        let mut out = format!("*{}\r\n", queued.len()).into_bytes();
                        for cmd in queued {
                            out.extend(self.run(node, &cmd));
                        }
                        out
                    }
                }
            }
            // Not queued, and the transaction goes on (as Redis answers it).
            b"WATCH" if in_multi => b"-ERR WATCH inside MULTI is not allowed\r\n".to_vec(),
            _ if in_multi => {
                // Checked as it is queued: a redirect, or a refusal for now, aborts the
                // whole transaction (Redis flags it and answers EXECABORT).
                let refusal = match args.get(1) {
                    Some(key) if matches!(name.as_slice(), b"GET" | b"SET") => self
                        .redirect(node, slot_for_key(key).get(), key, asking)
                        .or_else(|| self.transient_error()),
                    _ => Some(b"-ERR only GET and SET in this simulation\r\n".to_vec()),
                };
                let Some((queued, aborted)) = self.links[i].multi.as_mut() else {
                    return b"-ERR not in MULTI\r\n".to_vec();
                };
                match refusal {
                    Some(line) => {
                        *aborted = true;
                        line
                    }
                    None => {
                        queued.push(args.to_vec());
                        b"+QUEUED\r\n".to_vec()
                    }
                }
            }
            b"HELLO" => b"%1\r\n+proto\r\n:3\r\n".to_vec(),
            b"CLIENT" | b"READONLY" => {
                let on = |k: usize, word: &[u8]| {
                    args.get(k).is_some_and(|a| a.eq_ignore_ascii_case(word))
                };
                if on(1, b"TRACKING") && on(2, b"ON") {
                    self.links[i].tracking = true;
                }
                b"+OK\r\n".to_vec()
            }
            b"ASKING" => {
                self.links[i].asking = true;
                b"+OK\r\n".to_vec()
            }
            b"PING" => b"+PONG\r\n".to_vec(),
            b"SSUBSCRIBE" if args.len() >= 2 => {
                // The client sends one slot's channels together.
                let slot = slot_for_key(&args[1]).get();
                if !self.serves(node, slot) {
                    let owner = self.owner[slot as usize];
                    return format!("-MOVED {slot} {}\r\n", self.nodes[owner].addr).into_bytes();
                }
                let mut out = Vec::new();
                for channel in &args[1..] {
                    self.links[i].ssubs.insert(channel.clone());
                    let count = self.links[i].ssubs.len();
                    out.extend(sub_push(b"ssubscribe", channel, count));
                }
                out
            }
            b"SUNSUBSCRIBE" => {
                let mut out = Vec::new();
                for channel in &args[1..] {
                    self.links[i].ssubs.remove(channel);
                    let count = self.links[i].ssubs.len();
                    out.extend(sub_push(b"sunsubscribe", channel, count));
                }
                out
            }
            b"WATCH" if args.len() >= 2 => {
                // The client watches keys of one slot: its first key decides the node.
                let key = &args[1];
                if let Some(redirect) = self.redirect(node, slot_for_key(key).get(), key, asking) {
                    return redirect;
                }
                for key in &args[1..] {
                    let stamp = self.stamp_of(node, key);
                    self.links[i].watches.push((key.clone(), stamp));
                }
                b"+OK\r\n".to_vec()
            }
            b"UNWATCH" => {
                self.links[i].watches.clear();
                b"+OK\r\n".to_vec()
            }
            b"SCAN" => self.scan(node, &args[1..]),
            b"CLUSTER"
                if args
                    .get(1)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"NODES")) =>
            {
                if self.nodes_replies[node].is_none() {
                    self.nodes_replies[node] = Some(self.cluster_nodes(node));
                }
                self.nodes_replies[node].clone().unwrap_or_default()
            }
            b"CLUSTER" => {
                // A deposed primary has not heard of its replacement.
                let stale = self.deposed(node).is_some() || self.rng.chance(self.faults.stale_map);
                let cached = &mut self.slots_replies[usize::from(stale)];
                if cached.is_none() {
                    let reply = self.cluster_slots(stale);
                    self.slots_replies[usize::from(stale)] = Some(reply);
                }
                self.slots_replies[usize::from(stale)]
                    .clone()
                    .unwrap_or_default()
            }
            b"GET" | b"SET" if args.len() >= 2 => {
                let key = &args[1];
                let slot = slot_for_key(key).get();
                if let Some(redirect) = self.redirect(node, slot, key, asking) {
                    return redirect;
                }
                if let Some(refusal) = self.transient_error() {
                    return refusal;
                }
                if name.as_slice() == b"GET" && self.links[i].tracking {
                    // Redis tracks a key read whether or not it exists.
                    self.links[i].tracked.insert(key.clone());
                }
                if self.faults.oom > 0
                    && name.as_slice() == b"SET"
                    && self.oom_rng.chance(self.faults.oom)
                {
                    return b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
                        .to_vec();
                }
                self.run(node, args)
            }
            _ => b"-ERR unknown command\r\n".to_vec(),
        }
    }

    /// Runs a `GET` or `SET` on `node`'s key space (routing already checked).
    fn run(&mut self, node: usize, args: &[Bytes]) -> Vec<u8> {
        if node >= self.nodes.len() / 2 {
            self.served_by_promoted += 1;
        }
        let (Some(name), Some(key)) = (args.first(), args.get(1)) else {
            return b"-ERR wrong number of arguments\r\n".to_vec();
        };
        if self.deposed(node).is_some() && !name.eq_ignore_ascii_case(b"GET") {
            self.lost.insert(key.clone());
        }
        if name.eq_ignore_ascii_case(b"GET") {
            match self.nodes[node].data.get(key) {
                Some(v) => bulk(v),
                None => b"_\r\n".to_vec(),
            }
        } else {
            let value = args.get(2).cloned().unwrap_or_default();
            if self.counters.contains(key) {
                // A counter is only written as a WATCH session's read-modify-write: the
                // value it replaces must be the one the session read, one less.
                let before = self.nodes[node].data.get(key).and_then(|v| number(v));
                let after = number(&value);
                if after.is_none() || before.map(|b| b + 1) != after {
                    self.lost_updates.push(format!(
                        "{key:?} set to {value:?} over {:?} on node {node}",
                        self.nodes[node].data.get(key)
                    ));
                }
            }
            self.store(node, key.clone(), value);
            *self.executions.entry(key.clone()).or_insert(0) += 1;
            b"+OK\r\n".to_vec()
        }
    }

    /// A transient refusal (`TRYAGAIN`, `LOADING`, `CLUSTERDOWN`), at the fault rate.
    fn transient_error(&mut self) -> Option<Vec<u8>> {
        if !self.rng.chance(self.faults.transient) {
            return None;
        }
        let line: &[u8] = match self.rng.below(3) {
            0 => b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            1 => b"-LOADING Redis is loading the dataset in memory\r\n",
            _ => b"-CLUSTERDOWN The cluster is down\r\n",
        };
        Some(line.to_vec())
    }

    /// Whether a key of `watches` changed on `node` since it was watched (counted, with
    /// whether another client's increment did it).
    fn watch_broken(&mut self, node: usize, watches: &[(Bytes, u64)]) -> bool {
        let changed: Vec<&(Bytes, u64)> = watches
            .iter()
            .filter(|(key, stamp)| self.stamp_of(node, key) != *stamp)
            .collect();
        if changed.is_empty() {
            return false;
        }
        self.nil_execs += 1;
        if changed
            .iter()
            .any(|(key, stamp)| self.external_stamps.get(key).is_some_and(|e| e > stamp))
        {
            self.nil_execs_external += 1;
        }
        true
    }

    /// A counter `key` = 0 on its owner and replicas (a fixture, not a command).
    pub(crate) fn preload_counter(&mut self, key: &[u8]) {
        self.counters.insert(Bytes::copy_from_slice(key));
        self.preload(key, b"0");
    }

    /// Another client increments counter `key` where it lives now (its owner, or the
    /// migration's target once the key moved there), replicated like any write.
    pub(crate) fn increment_externally(&mut self, key: &[u8]) {
        let key = Bytes::copy_from_slice(key);
        let slot = slot_for_key(&key).get();
        let owner = self.owner[slot as usize];
        let node = match self.migration.filter(|m| m.slot == slot) {
            Some(m) if !self.nodes[owner].data.contains_key(&key) => m.to,
            _ => owner,
        };
        let value = self.nodes[node]
            .data
            .get(&key)
            .and_then(|v| number(v))
            .unwrap_or(0);
        self.store(node, key.clone(), Bytes::from((value + 1).to_string()));
        *self.external_increments.entry(key.clone()).or_insert(0) += 1;
        let stamp = self.stamp_of(node, &key);
        self.external_stamps.insert(key, stamp);
    }

    /// Whether `key` is on every node that answers for its slot now: its owner (or,
    /// while the slot migrates, either side of the migration), and a deposed primary
    /// that still believes the slot is its own. A scan may ask either of those, so only
    /// a key on both is one it must return.
    fn exists(&self, key: &[u8]) -> bool {
        let slot = slot_for_key(key).get();
        let owner = self.owner[slot as usize];
        let target = self.migration.filter(|m| m.slot == slot).map(|m| m.to);
        let on_owner = std::iter::once(owner)
            .chain(target)
            .any(|n| self.nodes[n].data.contains_key(key));
        on_owner
            && (0..self.nodes.len())
                .filter(|&d| self.deposed(d) == Some(owner))
                .all(|d| self.nodes[d].data.contains_key(key))
    }

    /// A client's scan begins: from now on the world keeps the keys that exist without a
    /// break (every change that can remove one rechecks them).
    pub(crate) fn begin_scan(&mut self) {
        let mut stable = BTreeSet::new();
        for n in self.nodes.iter().filter(|n| n.primary.is_none()) {
            stable.extend(n.data.keys().filter(|k| self.exists(k)).cloned());
        }
        self.scan_stable = Some(stable);
    }

    /// The scan ended: the keys that existed from its beginning to now.
    pub(crate) fn end_scan(&mut self) -> BTreeSet<Bytes> {
        let mut stable = self.scan_stable.take().unwrap_or_default();
        stable.retain(|k| self.exists(k));
        stable
    }

    /// Drops from a running scan's stable keys those that do not exist now. Called after
    /// every change that can remove a key from where the client would find it: a
    /// migration starting or finishing, a failover, a deposed primary rejoining. (Writes
    /// only add keys.)
    fn recheck_scan(&mut self) {
        if let Some(mut stable) = self.scan_stable.take() {
            self.scan_disturbances += 1;
            stable.retain(|k| self.exists(k));
            self.scan_stable = Some(stable);
        }
    }

    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]` over node `node`'s own keys (all its
    /// keys, whatever their slot, as Redis does), slot by slot as Redis 7 does (one
    /// dictionary per slot), each slot's keys in key order. The cursor is the last key
    /// looked at (hex-encoded; `0` to start and at the end), and the next call looks at
    /// the keys after it in that order. Redis needs its reverse-binary cursor within a
    /// slot because the slot's hash table may be resized under a scan; here the order is
    /// fixed by the keys alone, so no insertion or removal can shift it: a key present for
    /// the whole scan lies after the cursor until it is returned, never skipped, which is
    /// what Redis guarantees. (Nothing repeats on one node here; Redis may repeat keys,
    /// and the client must cope either way, as it does across nodes.) Going slot by slot
    /// also spreads each name's keys over the scan, so a slot that migrates meanwhile is
    /// as likely ahead of the cursor as behind it.
    fn scan(&self, node: usize, args: &[Bytes]) -> Vec<u8> {
        let Some(cursor) = args.first() else {
            return b"-ERR wrong number of arguments for 'scan' command\r\n".to_vec();
        };
        let after = if cursor.as_ref() == b"0" {
            None
        } else {
            match unhex(cursor) {
                Some(key) => Some((slot_for_key(&key).get(), key)),
                None => return b"-ERR invalid cursor\r\n".to_vec(),
            }
        };
        let (mut pattern, mut count, mut only_strings) = (None, 10, true);
        for option in args[1..].chunks(2) {
            match option {
                [name, value] if name.eq_ignore_ascii_case(b"MATCH") => pattern = Some(value),
                [name, value] if name.eq_ignore_ascii_case(b"COUNT") => match number(value) {
                    Some(n) if n > 0 => count = n as usize,
                    _ => return b"-ERR value is out of range\r\n".to_vec(),
                },
                [name, value] if name.eq_ignore_ascii_case(b"TYPE") => {
                    only_strings = value.eq_ignore_ascii_case(b"string")
                }
                _ => return b"-ERR syntax error\r\n".to_vec(),
            }
        }
        let mut order: Vec<(u16, &Bytes)> = self.nodes[node]
            .data
            .keys()
            .map(|k| (slot_for_key(k).get(), k))
            .collect();
        order.sort_unstable();
        let looked: Vec<&Bytes> = order
            .into_iter()
            .filter(|&(slot, key)| {
                after
                    .as_ref()
                    .is_none_or(|(s, k)| (slot, key.as_ref()) > (*s, k.as_slice()))
            })
            .map(|(_, key)| key)
            .take(count)
            .collect();
        let next = match looked.last() {
            Some(last) if looked.len() == count => hex(last),
            _ => "0".to_string(),
        };
        let keys: Vec<&Bytes> = looked
            .into_iter()
            .filter(|k| only_strings && pattern.is_none_or(|p| glob_match(p, k)))
            .collect();
        let mut out =
            format!("*2\r\n${}\r\n{next}\r\n*{}\r\n", next.len(), keys.len()).into_bytes();
        for k in keys {
            out.extend(bulk(k));
        }
        out
    }

    /// `CLUSTER NODES` as node `me` sees the cluster: every node's line, and on its own
    /// (`myself`) the slots it believes are its own (a deposed primary: its old ones)
    /// and the slot it migrates out (`[slot->-id]`) or in (`[slot-<-id]`).
    fn cluster_nodes(&self, me: usize) -> Vec<u8> {
        let ranges = slot_ranges(&self.owner);
        let mut text = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let mine = |o: usize| o == i || (i == me && self.deposed(me) == Some(o));
            let primary = n.primary.is_none() || (i == me && self.deposed(me).is_some());
            let flags = match (i == me, primary) {
                (true, true) => "myself,master",
                (true, false) => "myself,slave",
                (false, true) => "master",
                (false, false) => "slave",
            };
            let of = match n.primary {
                Some(p) if !primary => format!("node-{p}"),
                _ => "-".to_string(),
            };
            text.push_str(&format!(
                "node-{i} {}:{}@{} {flags} {of} 0 0 1 connected",
                n.addr.host,
                n.addr.port,
                n.addr.port + 10000
            ));
            if primary {
                for &(start, end, _) in ranges.iter().filter(|r| mine(r.2)) {
                    if start == end {
                        text.push_str(&format!(" {start}"));
                    } else {
                        text.push_str(&format!(" {start}-{end}"));
                    }
                }
            }
            if let Some(m) = self.migration.filter(|_| i == me) {
                if m.from == me {
                    text.push_str(&format!(" [{}->-node-{}]", m.slot, m.to));
                } else if m.to == me {
                    text.push_str(&format!(" [{}-<-node-{}]", m.slot, m.from));
                }
            }
            text.push('\n');
        }
        bulk(text.as_bytes())
    }

    /// The redirect a real node would answer instead of running a command on `key`.
    fn redirect(&self, node: usize, slot: u16, key: &Bytes, asking: bool) -> Option<Vec<u8>> {
        let mut owner = self.owner[slot as usize];
        if self.deposed(node) == Some(owner) {
            // It still believes the slot is its own.
            owner = node;
        }
        if let Some(m) = self.migration.filter(|m| m.slot == slot) {
            if node == m.from && !self.nodes[node].data.contains_key(key) {
                return Some(format!("-ASK {slot} {}\r\n", self.nodes[m.to].addr).into_bytes());
            }
            if node == m.to && asking {
                return None;
            }
        }
        (node != owner)
            .then(|| format!("-MOVED {slot} {}\r\n", self.nodes[owner].addr).into_bytes())
    }

    fn cluster_slots(&self, stale: bool) -> Vec<u8> {
        let owner = if stale {
            &self.stale_owner
        } else {
            &self.owner
        };
        cluster_slots_reply(
            owner,
            |node| {
                // The primary, then its replicas (from this view's roles: a lagging view
                // names the old ones).
                let mut members = vec![node];
                members.extend(
                    (0..self.nodes.len()).filter(|&i| i != node && self.replicates(i, node, stale)),
                );
                members
            },
            |m| &self.nodes[m].addr,
        )
    }

    /// Whether node `i` replicates `primary` (in a stale view: its pair before the last
    /// failover, which is the pair with roles swapped).
    fn replicates(&self, i: usize, primary: usize, stale: bool) -> bool {
        if stale {
            self.nodes[primary].primary == Some(i) || self.nodes[i].primary == Some(primary)
        } else {
            self.nodes[i].primary == Some(primary)
        }
    }
}

/// The slot ranges of a slot-to-node table: (first, last, node).
/// A `CLUSTER SLOTS` reply for the map `owner` (each slot's primary), naming each
/// range's members (`members_of` its primary: the primary first) at `addr_of`, with node
/// ids `node-<index>`. Shared by this world and the scale scenario's.
pub(crate) fn cluster_slots_reply<'a>(
    owner: &[usize],
    members_of: impl Fn(usize) -> Vec<usize>,
    addr_of: impl Fn(usize) -> &'a NodeAddr,
) -> Vec<u8> {
    let ranges = slot_ranges(owner);
    let mut out = format!("*{}\r\n", ranges.len()).into_bytes();
    for (start, end, node) in ranges {
        let members = members_of(node);
        out.extend_from_slice(
            format!("*{}\r\n:{start}\r\n:{end}\r\n", 2 + members.len()).as_bytes(),
        );
        for m in members {
            let addr = addr_of(m);
            let id = format!("node-{m}");
            out.extend_from_slice(
                format!(
                    "*3\r\n${}\r\n{}\r\n:{}\r\n${}\r\n{id}\r\n",
                    addr.host.len(),
                    addr.host,
                    addr.port,
                    id.len()
                )
                .as_bytes(),
            );
        }
    }
    out
}

fn slot_ranges(owner: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
    for (slot, &o) in owner.iter().enumerate() {
        match ranges.last_mut() {
            Some((_, end, node)) if *node == o && *end + 1 == slot => *end = slot,
            _ => ranges.push((slot, slot, o)),
        }
    }
    ranges
}

/// A decimal number (a counter's value, a `COUNT`); `None` for anything else.
fn number(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a cursor names (`None` for anything [`hex`] does not write).
fn unhex(cursor: &[u8]) -> Option<Vec<u8>> {
    if cursor.len() % 2 != 0 {
        return None;
    }
    cursor
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// `MATCH`'s glob, as far as the workload uses it: `*` (any run) and `?` (any one
/// byte); every other byte stands for itself.
pub(crate) fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    // Where the last `*` was, and the key position it has taken up to.
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, k));
                p += 1;
            }
            Some(&c) if c == b'?' || c == key[k] => {
                p += 1;
                k += 1;
            }
            _ => match star {
                // Let the last `*` take one more byte and try again.
                Some((sp, sk)) => {
                    star = Some((sp, sk + 1));
                    p = sp + 1;
                    k = sk + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A subscription push: `>3 <kind> <channel> :<count>`.
fn sub_push(kind: &[u8], channel: &[u8], count: usize) -> Vec<u8> {
    let mut out = b">3\r\n".to_vec();
    out.extend(bulk(kind));
    out.extend(bulk(channel));
    out.extend(format!(":{count}\r\n").into_bytes());
    out
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}
