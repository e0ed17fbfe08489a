//! The client-side cache (`Config::cache`): replies of a few read commands kept in the
//! process, and every rule that keeps them correct in a cluster, decided here once for
//! every client.
//!
//! Each node connection that may fill the cache turns `CLIENT TRACKING ON` in its
//! handshake (RESP3, default mode: the node remembers the keys *this connection* read and
//! pushes `invalidate` when one changes). The rules:
//!
//! - **A read is filled only from a tracking connection, at the reply's delivery**
//!   (`Cache::fill`, called by the pool as it hands the reply over), so the entry
//!   records the very connection whose invalidations will cover it. Replica connections
//!   (`READONLY`) do not track: replica reads never fill.
//! - **A reply raced by an invalidation is returned but not kept.** A miss takes a
//!   ticket (the invalidation sequence number). Every invalidation of a key (a server's
//!   push, or a write through this client) stamps the key with a new number; a fill whose
//!   ticket is older than its key's stamp is refused. The stamps are a bounded map: when
//!   it is full it is emptied and a floor refuses every ticket taken before.
//! - **An invalidation, or a flush (`invalidate` with a null), removes at once**: the
//!   pool applies a connection's pushes in the same call that delivered its replies.
//! - **An entry never outlives its connection**: a connection that closes or fails, or
//!   whose request timed out, drops every entry it filled (`Cache::connection_lost`):
//!   its invalidations may be lost with it.
//! - **A slot that changes owner drops its entries** (`Cache::slots_moved`): a
//!   failover or migration the client learns from a refresh or a `MOVED`; in-flight
//!   fills are refused too.
//! - **Writes through this client invalidate their keys before they are sent**
//!   (`Cache::written`), so a read in flight cannot fill the old value after the
//!   caller's write was acknowledged.
//!
//! What it does not promise: a write by another client is seen when its invalidation
//! arrives, so a read may be stale for as long as the invalidation takes to travel.
//!
//! Memory: at most `max_entries` keys and `max_bytes` of keys and values (values are
//! copied out of the read buffer, so an entry never pins a connection's buffer), least
//! recently used first out; plus the invalidation stamps (at most [`RECENT_STAMPS`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;

use crate::core::cmd::{cmd as command, Cmd};
use crate::core::command_table::describe;
use crate::core::judgement::Judgement;
use crate::core::resp::Value;
use crate::core::route::command_keys;
use crate::core::slot::slot_for_key;
use crate::core::stats::Counters;

/// Invalidation stamps kept for in-flight reads (see the module docs); when more keys
/// were invalidated than this, every read in flight is refused its fill instead.
pub const RECENT_STAMPS: usize = 16_384;

/// A read command the cache can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CachedCommand {
    /// `GET key` (and each key of `MGET`).
    Get,
    /// `HGET key field`.
    HGet,
    /// `HGETALL key`.
    HGetAll,
    /// `EXISTS key` (one key).
    Exists,
    /// `STRLEN key`.
    StrLen,
    /// `SMEMBERS key`.
    SMembers,
    /// `MGET key...`: each key answered from (and filling) its `GET` entry.
    MGet,
}

impl CachedCommand {
    /// Every command the cache can answer.
    pub const ALL: [CachedCommand; 7] = [
        CachedCommand::Get,
        CachedCommand::HGet,
        CachedCommand::HGetAll,
        CachedCommand::Exists,
        CachedCommand::StrLen,
        CachedCommand::SMembers,
        CachedCommand::MGet,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    fn of(name: &[u8]) -> Option<CachedCommand> {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        Some(match name.len() {
            3 if is(b"GET") => CachedCommand::Get,
            4 if is(b"HGET") => CachedCommand::HGet,
            4 if is(b"MGET") => CachedCommand::MGet,
            6 if is(b"EXISTS") => CachedCommand::Exists,
            6 if is(b"STRLEN") => CachedCommand::StrLen,
            7 if is(b"HGETALL") => CachedCommand::HGetAll,
            8 if is(b"SMEMBERS") => CachedCommand::SMembers,
            _ => return None,
        })
    }
}

/// The client-side cache's settings (`Config::cache`). Off unless given.
///
/// ```
/// use std::time::Duration;
/// use redis_cluster_uring::{CacheConfig, CachedCommand, Config};
/// let config = Config::default().cache(
///     CacheConfig::default()
///         .max_entries(100_000)
///         .max_bytes(64 << 20)
///         .ttl(Some(Duration::from_secs(60)))
///         .prefix("user:")
///         .only(&[CachedCommand::Get, CachedCommand::MGet]),
/// );
/// assert!(config.cache.is_some());
/// ```
#[derive(Debug, Clone)]
pub struct CacheConfig {
    max_entries: usize,
    max_bytes: usize,
    ttl: Option<Duration>,
    prefixes: Vec<Bytes>,
    commands: u8,
    heartbeat: Duration,
}

impl Default for CacheConfig {
    /// 10,000 keys, 64 MiB, no TTL cap, every key, every command of [`CachedCommand`],
    /// a 1 s heartbeat.
    fn default() -> CacheConfig {
        CacheConfig {
            max_entries: 10_000,
            max_bytes: 64 << 20,
            ttl: None,
            prefixes: Vec::new(),
            commands: CachedCommand::ALL.iter().fold(0, |m, c| m | c.bit()),
            heartbeat: Duration::from_secs(1),
        }
    }
}

impl CacheConfig {
    /// At most this many keys (each with the replies of its cached commands).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// At most this many bytes of keys and values.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n.max(1);
        self
    }

    /// An entry is forgotten this long after it was filled, invalidated or not (a cap
    /// on staleness should an invalidation never come, e.g. a key's own expiry, which
    /// the server reports only when it deletes the key).
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Cache only keys that start with one of the prefixes given (all keys when none
    /// is).
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.prefixes.push(Bytes::copy_from_slice(prefix.as_ref()));
        self
    }

    /// Cache only these commands (all of [`CachedCommand`] by default).
    pub fn only(mut self, commands: &[CachedCommand]) -> Self {
        self.commands = commands.iter().fold(0, |m, c| m | c.bit());
        self
    }

    /// A connection whose entries are cached and that has been silent this long is sent
    /// a `PING`; unanswered after as long again, its entries are dropped (a stopped node
    /// sends no invalidations, and its replica may be promoted and written). Keep it
    /// well under the cluster's `cluster-node-timeout`, after which a failover can
    /// start: the entries are then gone before the new primary takes a write.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(1));
        self
    }

    /// The heartbeat's interval ([`CacheConfig::heartbeat`]).
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat
    }

    fn caches(&self, command: CachedCommand) -> bool {
        self.commands & command.bit() != 0
    }

    fn keeps_key(&self, key: &[u8]) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p))
    }
}

/// Which reply of a key an entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Variant {
    Get,
    HGet(Bytes),
    HGetAll,
    Exists,
    StrLen,
    SMembers,
}

/// A miss on its way to the server: what its reply fills, and the ticket that says
/// whether an invalidation raced it.
#[derive(Debug)]
pub(crate) struct Read {
    key: Bytes,
    variant: Variant,
    slot: u16,
    ticket: u64,
    /// The flight other callers wait on (see [`Lookup::Wait`]), when it leads one: it
    /// lands when the read is dropped, however it ends (filled, refused, failed,
    /// abandoned, never sent).
    flight: Option<FlightGuard>,
}

/// A read in flight that callers of the same key and command wait for.
#[derive(Debug)]
struct Flight {
    variant: Variant,
    id: u64,
    waiters: Vec<Waker>,
}

/// The reads in flight that others wait for, by key: at most one per command of a key,
/// and no more than the reads in flight.
#[derive(Debug, Default)]
struct Flights {
    by_key: HashMap<Bytes, Vec<Flight>>,
    next: u64,
}

/// Ends its flight when dropped: the callers waiting on it look again.
#[derive(Debug)]
struct FlightGuard {
    flights: Weak<RefCell<Flights>>,
    key: Bytes,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let Some(flights) = self.flights.upgrade() else {
            return;
        };
        let Ok(mut flights) = flights.try_borrow_mut() else {
            return;
        };
        let Some(list) = flights.by_key.get_mut(&self.key) else {
            return;
        };
        if let Some(i) = list.iter().position(|f| f.id == self.id) {
            let flight = list.swap_remove(i);
            flight.waiters.into_iter().for_each(Waker::wake);
        }
        if list.is_empty() {
            flights.by_key.remove(&self.key);
        }
    }
}

/// What a caller waits on: the flight of `key`'s read.
#[derive(Debug)]
pub(crate) struct Awaited {
    key: Bytes,
    id: u64,
}

/// What the cache says about a command, before it is sent.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Not a cached read (or the cache is off): run it as usual.
    Pass,
    /// The answer, from the cache.
    Hit(Value),
    /// Run it as usual; its reply (reply 0) fills the cache.
    Miss(Read),
    /// The same read is in flight for another caller: wait until it ends
    /// ([`Cache::poll_landed`]), then look again (a hit, or a miss of one's own when its
    /// reply could not be kept). Concurrent misses of a hot key cost one round trip.
    Wait(Awaited),
    /// An `MGET` with keys missing: run [`MgetMiss::gets`] (a `GET` per key missing,
    /// reply i filling read i), then [`MgetMiss::answer`].
    Mget(MgetMiss),
}

/// The keys of an `MGET` the cache had, and the `GET`s for those it did not.
#[derive(Debug)]
pub(crate) struct MgetMiss {
    found: Vec<Option<Value>>,
    /// One `GET` per key missing, in order.
    pub(crate) gets: Vec<Cmd>,
    /// The fills of `gets`, by index.
    pub(crate) reads: Vec<(usize, Read)>,
}

impl MgetMiss {
    /// The `MGET` reply: the cached values and the `GET`s' replies in key order. A
    /// `GET` of a key holding another type answers `WRONGTYPE`, where `MGET` answers
    /// nil; a lost or failed `GET` fails the `MGET`.
    pub(crate) fn answer(self, results: Vec<crate::Result<Value>>) -> crate::Result<Value> {
        let mut fetched = results.into_iter();
        let mut out = Vec::with_capacity(self.found.len());
        for found in self.found {
            out.push(match found {
                Some(v) => v,
                None => match fetched.next() {
                    Some(Ok(v)) => v,
                    Some(Err(e)) if e.code() == Some("WRONGTYPE") => Value::Nil,
                    Some(Err(e)) => return Err(e),
                    None => return Err(crate::Error::protocol("MGET: a GET went unanswered")),
                },
            });
        }
        Ok(Value::Array(out))
    }
}

#[derive(Debug)]
struct Entry {
    /// The connection (its `ConnId::id`, never reused) whose tracking covers it.
    conn: u64,
    slot: u16,
    /// When it is forgotten (the TTL cap).
    expires: Option<Instant>,
    variants: Vec<(Variant, Value)>,
    bytes: usize,
}

/// The cache of one client (see the module docs).
#[derive(Debug)]
pub(crate) struct Cache {
    config: Option<CacheConfig>,
    entries: LruCache<Bytes, Entry>,
    bytes: usize,
    /// The invalidation sequence: bumped by every invalidation; a ticket is its value
    /// when the read was sent.
    seq: u64,
    /// Tickets below it are refused (the stamps were emptied, a flush, a slot moved).
    floor: u64,
    /// Each key invalidated since the floor, with its stamp.
    recent: HashMap<Bytes, u64>,
    /// Entries per connection (a connection with none costs nothing when it ends, and
    /// needs no heartbeat).
    per_conn: HashMap<u64, usize>,
    /// Reads in flight that other callers wait for.
    flights: Rc<RefCell<Flights>>,
    counters: Rc<Counters>,
}

impl Cache {
    /// A cache with these settings (`None`: off, every lookup passes).
    pub(crate) fn new(config: Option<CacheConfig>, counters: Rc<Counters>) -> Cache {
        Cache {
            config,
            entries: LruCache::unbounded(),
            bytes: 0,
            seq: 0,
            floor: 0,
            recent: HashMap::new(),
            per_conn: HashMap::new(),
            flights: Rc::default(),
            counters,
        }
    }

    /// The heartbeat of connections holding entries (`None`: the cache is off).
    pub(crate) fn heartbeat(&self) -> Option<Duration> {
        self.config.as_ref().map(|c| c.heartbeat)
    }

    /// Whether entries filled by connection `conn` are cached.
    pub(crate) fn holds(&self, conn: u64) -> bool {
        self.per_conn.contains_key(&conn)
    }

    fn counted(&mut self, conn: u64, added: bool) {
        if added {
            *self.per_conn.entry(conn).or_insert(0) += 1;
        } else if let Some(n) = self.per_conn.get_mut(&conn) {
            *n -= 1;
            if *n == 0 {
                self.per_conn.remove(&conn);
            }
        }
    }

    /// Whether the cache is on (connections then turn tracking on).
    pub(crate) fn is_on(&self) -> bool {
        self.config.is_some()
    }

    /// Keys cached now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// What to do with `cmd` (judged as `judged`): answer it, or send it and fill the
    /// cache from its reply. A write passes ([`Cache::written`] invalidates it as its
    /// request starts).
    /// `now` is read only when entries expire (`CacheConfig::ttl`).
    pub(crate) fn lookup(
        &mut self,
        cmd: &Cmd,
        judged: &Judgement,
        now: impl FnOnce() -> Instant,
    ) -> Lookup {
        self.lookup_as(cmd, judged, now, false)
    }

    /// [`Cache::lookup`] for a client with concurrent callers (`coalesce`): a miss whose
    /// read is already in flight waits for it ([`Lookup::Wait`]) instead of sending its
    /// own.
    pub(crate) fn lookup_as(
        &mut self,
        cmd: &Cmd,
        judged: &Judgement,
        now: impl FnOnce() -> Instant,
        coalesce: bool,
    ) -> Lookup {
        let Some(config) = &self.config else {
            return Lookup::Pass;
        };
        // A write passes: its keys are invalidated as its request starts, where every
        // request of every driver goes (`Pool::new_exec_reading`).
        let Some(command) = CachedCommand::of(cmd.name()).filter(|c| config.caches(*c)) else {
            return Lookup::Pass;
        };
        let now = config.ttl.map(|_| now());
        if command == CachedCommand::MGet {
            return self.mget(cmd, now);
        }
        let Some(slot) = judged.slot() else {
            return Lookup::Pass;
        };
        let (key, variant) = match (command, cmd.len()) {
            (CachedCommand::Get, 2) => (cmd.arg_at(1), Variant::Get),
            (CachedCommand::Exists, 2) => (cmd.arg_at(1), Variant::Exists),
            (CachedCommand::StrLen, 2) => (cmd.arg_at(1), Variant::StrLen),
            (CachedCommand::SMembers, 2) => (cmd.arg_at(1), Variant::SMembers),
            (CachedCommand::HGetAll, 2) => (cmd.arg_at(1), Variant::HGetAll),
            (CachedCommand::HGet, 3) => match cmd.arg_at(2) {
                Some(field) => (cmd.arg_at(1), Variant::HGet(Bytes::copy_from_slice(field))),
                None => return Lookup::Pass,
            },
            // Another arity: the server's error, not ours to cache.
            _ => return Lookup::Pass,
        };
        let Some(key) = key.filter(|k| config.keeps_key(k)) else {
            return Lookup::Pass;
        };
        match self.find(key, &variant, now) {
            Some(value) => {
                self.counters.add_cache_hit();
                Lookup::Hit(value)
            }
            None if coalesce => {
                let mut flights = self.flights.borrow_mut();
                if let Some(f) = flights
                    .by_key
                    .get(key)
                    .and_then(|fs| fs.iter().find(|f| f.variant == variant))
                {
                    return Lookup::Wait(Awaited {
                        key: Bytes::copy_from_slice(key),
                        id: f.id,
                    });
                }
                flights.next += 1;
                let id = flights.next;
                let key = Bytes::copy_from_slice(key);
                flights.by_key.entry(key.clone()).or_default().push(Flight {
                    variant: variant.clone(),
                    id,
                    waiters: Vec::new(),
                });
                drop(flights);
                self.counters.add_cache_miss();
                let mut read = self.read(&key, variant, slot.get());
                read.flight = Some(FlightGuard {
                    flights: Rc::downgrade(&self.flights),
                    key,
                    id,
                });
                Lookup::Miss(read)
            }
            None => {
                self.counters.add_cache_miss();
                Lookup::Miss(self.read(key, variant, slot.get()))
            }
        }
    }

    /// Ready once the flight a caller waits on has ended (its reply kept or not).
    pub(crate) fn poll_landed(&mut self, awaited: &Awaited, cx: &mut Context<'_>) -> Poll<()> {
        let mut flights = self.flights.borrow_mut();
        let flight = flights
            .by_key
            .get_mut(&awaited.key)
            .and_then(|fs| fs.iter_mut().find(|f| f.id == awaited.id));
        match flight {
            Some(f) => {
                if !f.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    f.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }

    fn mget(&mut self, cmd: &Cmd, now: Option<Instant>) -> Lookup {
        let keys = cmd.len().saturating_sub(1);
        if keys == 0 {
            return Lookup::Pass;
        }
        let mut found = Vec::with_capacity(keys);
        let mut gets = Vec::new();
        let mut reads = Vec::new();
        for i in 1..=keys {
            let Some(key) = cmd.arg_at(i) else {
                return Lookup::Pass;
            };
            let keeps = self.config.as_ref().is_some_and(|c| c.keeps_key(key));
            let hit = if keeps {
                self.find(key, &Variant::Get, now)
            } else {
                None
            };
            match hit {
                Some(value) => {
                    self.counters.add_cache_hit();
                    found.push(Some(value));
                }
                None => {
                    found.push(None);
                    if keeps {
                        self.counters.add_cache_miss();
                        reads.push((
                            gets.len(),
                            self.read(key, Variant::Get, slot_for_key(key).get()),
                        ));
                    }
                    gets.push(command("GET").arg(key));
                }
            }
        }
        if gets.is_empty() {
            let values = found.into_iter().map(|v| v.unwrap_or(Value::Nil)).collect();
            return Lookup::Hit(Value::Array(values));
        }
        Lookup::Mget(MgetMiss { found, gets, reads })
    }

    fn read(&self, key: &[u8], variant: Variant, slot: u16) -> Read {
        Read {
            key: Bytes::copy_from_slice(key),
            variant,
            slot,
            ticket: self.seq,
            flight: None,
        }
    }

    fn find(&mut self, key: &[u8], variant: &Variant, now: Option<Instant>) -> Option<Value> {
        let entry = self.entries.get(key)?;
        if let (Some(now), Some(expires)) = (now, entry.expires) {
            if now >= expires {
                self.remove(key);
                return None;
            }
        }
        entry
            .variants
            .iter()
            .find(|(v, _)| v == variant)
            .map(|(_, value)| value.clone())
    }

    /// The reply of `read` arrived on connection `conn` (tracking when `tracking`):
    /// kept unless an invalidation raced it, the connection does not track, or it is an
    /// error. `now` is read only for the TTL cap.
    pub(crate) fn fill(
        &mut self,
        read: Read,
        conn: u64,
        tracking: bool,
        value: &Value,
        now: impl FnOnce() -> Instant,
    ) {
        let Some(config) = &self.config else {
            return;
        };
        if !tracking || matches!(value, Value::Error(_) | Value::Push(_)) {
            return;
        }
        let raced = read.ticket < self.floor
            || self
                .recent
                .get(&read.key)
                .is_some_and(|&stamp| stamp > read.ticket);
        if raced {
            self.counters.add_cache_refused_fill();
            return;
        }
        let value = owned(value);
        let size = value_size(&value) + variant_size(&read.variant);
        let expires = config.ttl.map(|ttl| now() + ttl);
        let (max_entries, max_bytes) = (config.max_entries, config.max_bytes);
        if size + read.key.len() > max_bytes {
            return;
        }
        // A key's entries share one connection: one filled elsewhere replaces them.
        if self
            .entries
            .peek(&read.key)
            .is_some_and(|e| e.conn != conn || e.slot != read.slot)
        {
            self.remove(&read.key);
        }
        if let Some(entry) = self.entries.get_mut(&read.key) {
            if let Some(i) = entry.variants.iter().position(|(v, _)| *v == read.variant) {
                let (v, old) = entry.variants.swap_remove(i);
                let freed = value_size(&old) + variant_size(&v);
                entry.bytes -= freed;
                self.bytes -= freed;
            }
            entry.variants.push((read.variant, value));
            entry.bytes += size;
            self.bytes += size;
        } else {
            let bytes = size + read.key.len();
            self.entries.push(
                read.key,
                Entry {
                    conn,
                    slot: read.slot,
                    expires,
                    variants: vec![(read.variant, value)],
                    bytes,
                },
            );
            self.bytes += bytes;
            self.counted(conn, true);
        }
        while self.entries.len() > max_entries || self.bytes > max_bytes {
            let Some((_, old)) = self.entries.pop_lru() else {
                break;
            };
            self.bytes -= old.bytes;
            self.counted(old.conn, false);
            self.counters.add_cache_eviction();
        }
        self.counters.set_cache_entries(self.entries.len());
    }

    /// A push arrived: an `invalidate` is applied and consumed (true); anything else is
    /// not the cache's.
    pub(crate) fn on_push(&mut self, push: &Value) -> bool {
        let (Some(_), Value::Push(items)) = (&self.config, push) else {
            return false;
        };
        let is_invalidate = items
            .first()
            .and_then(Value::as_bytes)
            .is_some_and(|kind| kind.eq_ignore_ascii_case(b"invalidate"));
        if !is_invalidate {
            return false;
        }
        match items.get(1) {
            Some(Value::Array(keys) | Value::Set(keys)) => {
                for key in keys {
                    if let Some(key) = key.as_bytes() {
                        self.counters.add_cache_invalidation();
                        self.invalidate(key);
                    }
                }
            }
            // `invalidate` with a null: the node was flushed (or its tracking table
            // overflowed and forgot everything).
            _ => {
                self.counters.add_cache_flush();
                self.drop_all();
            }
        }
        true
    }

    /// Removes `key` and refuses the fills of reads of it in flight.
    pub(crate) fn invalidate(&mut self, key: &[u8]) {
        if self.config.is_none() {
            return;
        }
        self.seq += 1;
        if self.recent.len() >= RECENT_STAMPS {
            self.recent.clear();
            self.floor = self.seq;
        }
        self.recent.insert(Bytes::copy_from_slice(key), self.seq);
        self.remove(key);
    }

    /// Commands about to be sent: the keys of those that write are invalidated (and a
    /// flush of every key drops everything).
    pub(crate) fn written(&mut self, cmds: &[Cmd]) {
        if self.config.is_none() {
            return;
        }
        for cmd in cmds {
            let described = describe(cmd);
            if described.read_only {
                continue;
            }
            let name = cmd.name();
            if name.eq_ignore_ascii_case(b"FLUSHALL") || name.eq_ignore_ascii_case(b"FLUSHDB") {
                self.drop_all();
                continue;
            }
            for key in command_keys(cmd) {
                self.invalidate(key);
            }
        }
    }

    /// A connection ended (closed, failed, or a request on it timed out): every entry
    /// it filled goes, since its invalidations may be lost.
    pub(crate) fn connection_lost(&mut self, conn: u64) {
        if self.holds(conn) {
            self.retain(|e| e.conn != conn);
        }
    }

    /// Slots changed owner in the client's map: their entries go, and every fill in
    /// flight is refused (it may come from the old owner).
    pub(crate) fn slots_moved(&mut self, moved: impl Fn(u16) -> bool) {
        if self.config.is_none() {
            return;
        }
        self.bump_floor();
        self.retain(|e| !moved(e.slot));
    }

    /// Everything goes (`Client::cache_clear`, a flush).
    pub(crate) fn clear(&mut self) {
        if self.config.is_none() {
            return;
        }
        self.counters.add_cache_flush();
        self.drop_all();
    }

    fn drop_all(&mut self) {
        self.bump_floor();
        self.entries.clear();
        self.per_conn.clear();
        self.bytes = 0;
        self.counters.set_cache_entries(0);
    }

    fn bump_floor(&mut self) {
        self.seq += 1;
        self.floor = self.seq;
        self.recent.clear();
    }

    fn retain(&mut self, keep: impl Fn(&Entry) -> bool) {
        if self.entries.is_empty() {
            return;
        }
        let mut freed = 0;
        let per_conn = &mut self.per_conn;
        self.entries.retain(|_, e| {
            let kept = keep(e);
            if !kept {
                freed += e.bytes;
                if let Some(n) = per_conn.get_mut(&e.conn) {
                    *n -= 1;
                    if *n == 0 {
                        per_conn.remove(&e.conn);
                    }
                }
            }
            kept
        });
        self.bytes -= freed;
        self.counters.set_cache_entries(self.entries.len());
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.entries.pop(key) {
            self.bytes -= e.bytes;
            self.counted(e.conn, false);
            self.counters.set_cache_entries(self.entries.len());
        }
    }

    /// The cached `GET` value of `key`, without touching the LRU order (tests).
    #[cfg(test)]
    pub(crate) fn peek_get(&self, key: &[u8]) -> Option<&Value> {
        self.entries.peek(key).and_then(|e| {
            e.variants
                .iter()
                .find(|(v, _)| *v == Variant::Get)
                .map(|(_, v)| v)
        })
    }
}

/// The connection id an entry was filled from (tests).
#[cfg(test)]
pub(crate) fn entry_conn(cache: &Cache, key: &[u8]) -> Option<u64> {
    cache.entries.peek(key).map(|e| e.conn)
}

impl Read {
    /// The key this read fills.
    #[cfg(test)]
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
}

/// A deep copy: a reply's bytes are slices of a connection's read buffer, which a cached
/// value must not keep alive.
fn owned(value: &Value) -> Value {
    let copy = |b: &Bytes| Bytes::copy_from_slice(b);
    match value {
        Value::SimpleString(b) => Value::SimpleString(copy(b)),
        Value::Error(b) => Value::Error(copy(b)),
        Value::Bulk(b) => Value::Bulk(copy(b)),
        Value::BigNumber(b) => Value::BigNumber(copy(b)),
        Value::Verbatim { format, text } => Value::Verbatim {
            format: *format,
            text: copy(text),
        },
        Value::Array(items) => Value::Array(items.iter().map(owned).collect()),
        Value::Set(items) => Value::Set(items.iter().map(owned).collect()),
        Value::Push(items) => Value::Push(items.iter().map(owned).collect()),
        Value::Map(pairs) => Value::Map(pairs.iter().map(|(k, v)| (owned(k), owned(v))).collect()),
        other => other.clone(),
    }
}

/// Bytes a value holds, counting a fixed overhead per element.
fn value_size(value: &Value) -> usize {
    const OVERHEAD: usize = std::mem::size_of::<Value>();
    OVERHEAD
        + match value {
            Value::SimpleString(b) | Value::Error(b) | Value::Bulk(b) | Value::BigNumber(b) => {
                b.len()
            }
            Value::Verbatim { text, .. } => text.len(),
            Value::Array(items) | Value::Set(items) | Value::Push(items) => {
                items.iter().map(value_size).sum()
            }
            Value::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| value_size(k) + value_size(v))
                .sum(),
            _ => 0,
        }
}

fn variant_size(variant: &Variant) -> usize {
    match variant {
        Variant::HGet(field) => field.len() + 16,
        _ => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use std::cell::Cell;

    fn cache(config: CacheConfig) -> Cache {
        Cache::new(Some(config), Rc::default())
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn lookup(c: &mut Cache, command: &Cmd) -> Lookup {
        c.lookup(command, &Judgement::of(command), Instant::now)
    }

    fn get(key: &str) -> Cmd {
        cmd("GET").arg(key)
    }

    /// A miss whose reply arrives on `conn`: filled (or not) as the pool would.
    fn miss(c: &mut Cache, command: &Cmd) -> Read {
        match lookup(c, command) {
            Lookup::Miss(read) => read,
            other => panic!("{command:?}: expected a miss, got {other:?}"),
        }
    }

    fn hit(c: &mut Cache, command: &Cmd) -> Option<Value> {
        match lookup(c, command) {
            Lookup::Hit(v) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn a_miss_fills_and_the_next_read_hits() {
        let mut c = cache(CacheConfig::default());
        let read = miss(&mut c, &get("k"));
        assert_eq!(read.key(), b"k");
        c.fill(read, 1, true, &bulk("v"), Instant::now);
        assert_eq!(hit(&mut c, &get("k")), Some(bulk("v")));
        assert_eq!(
            hit(&mut c, &get("K")),
            None,
            "keys are bytes, not case-folded"
        );
        // Each command of a key is its own entry.
        assert!(hit(&mut c, &cmd("STRLEN").arg("k")).is_none());
        let read = miss(&mut c, &cmd("HGET").arg("k").arg("f"));
        c.fill(read, 1, true, &bulk("hv"), Instant::now);
        assert_eq!(
            hit(&mut c, &cmd("hget").arg("k").arg("f")),
            Some(bulk("hv"))
        );
        assert!(hit(&mut c, &cmd("HGET").arg("k").arg("g")).is_none());
        assert_eq!(c.len(), 1);
        let s = c.counters.snapshot();
        assert_eq!((s.cache_hits, s.cache_entries), (2, 1));
    }

    #[test]
    fn concurrent_misses_of_a_key_wait_for_one_read() {
        let mut c = cache(CacheConfig::default());
        let shared = |c: &mut Cache, command: &Cmd| {
            c.lookup_as(command, &Judgement::of(command), Instant::now, true)
        };
        let mut cx = Context::from_waker(Waker::noop());
        let Lookup::Miss(read) = shared(&mut c, &get("k")) else {
            panic!("the first caller reads");
        };
        let Lookup::Wait(flight) = shared(&mut c, &get("k")) else {
            panic!("the second waits");
        };
        // Another command of the key, or another key, is not the same read.
        assert!(matches!(
            shared(&mut c, &cmd("STRLEN").arg("k")),
            Lookup::Miss(_)
        ));
        assert!(matches!(shared(&mut c, &get("j")), Lookup::Miss(_)));
        assert!(c.poll_landed(&flight, &mut cx).is_pending());
        c.fill(read, 1, true, &bulk("v"), Instant::now);
        assert!(c.poll_landed(&flight, &mut cx).is_ready());
        assert_eq!(hit(&mut c, &get("k")), Some(bulk("v")));
        // A read that ends without filling (a failure, an abandoned request, a caller
        // gone before sending) lets the waiters go too: they read for themselves.
        c.invalidate(b"k");
        let Lookup::Miss(read) = shared(&mut c, &get("k")) else {
            panic!("a miss");
        };
        let Lookup::Wait(flight) = shared(&mut c, &get("k")) else {
            panic!("waits");
        };
        drop(read);
        assert!(c.poll_landed(&flight, &mut cx).is_ready());
        assert!(matches!(shared(&mut c, &get("k")), Lookup::Miss(_)));
        assert!(c.flights.borrow().by_key.len() <= 3);
    }

    #[test]
    fn what_is_not_a_cached_read_passes() {
        let mut c = cache(CacheConfig::default());
        for command in [
            cmd("SET").arg("k").arg(1),
            cmd("GET"),
            cmd("GET").arg("a").arg("b"),
            cmd("EXISTS").arg("a").arg("b"),
            cmd("HGET").arg("h"),
            cmd("LRANGE").arg("l").arg(0).arg(-1),
        ] {
            assert!(
                matches!(lookup(&mut c, &command), Lookup::Pass),
                "{command:?}"
            );
        }
        let mut off = Cache::new(None, Rc::default());
        assert!(matches!(lookup(&mut off, &get("k")), Lookup::Pass));
        assert!(!off.on_push(&Value::Push(vec![bulk("invalidate"), Value::Nil])));
    }

    #[test]
    fn a_reply_raced_by_an_invalidation_is_not_kept() {
        let mut c = cache(CacheConfig::default());
        // The server's push for the key arrives while the read is in flight.
        let read = miss(&mut c, &get("k"));
        let push = Value::Push(vec![bulk("invalidate"), Value::Array(vec![bulk("k")])]);
        assert!(c.on_push(&push));
        c.fill(read, 1, true, &bulk("old"), Instant::now);
        assert!(hit(&mut c, &get("k")).is_none());
        assert_eq!(c.counters.snapshot().cache_refused_fills, 1);
        // A write through the client does the same to a read in flight.
        let read = miss(&mut c, &get("k"));
        let set = cmd("SET").arg("k").arg("new");
        assert!(matches!(lookup(&mut c, &set), Lookup::Pass));
        // As its request starts (`Pool::new_exec_reading`).
        c.written(std::slice::from_ref(&set));
        c.fill(read, 1, true, &bulk("old"), Instant::now);
        assert!(hit(&mut c, &get("k")).is_none());
        // An invalidation of another key does not.
        let read = miss(&mut c, &get("k"));
        c.invalidate(b"other");
        c.fill(read, 1, true, &bulk("v"), Instant::now);
        assert_eq!(hit(&mut c, &get("k")), Some(bulk("v")));
        // A read sent after the invalidation fills.
        c.invalidate(b"k");
        assert!(hit(&mut c, &get("k")).is_none());
        let read = miss(&mut c, &get("k"));
        c.fill(read, 1, true, &bulk("w"), Instant::now);
        assert_eq!(hit(&mut c, &get("k")), Some(bulk("w")));
    }

    #[test]
    fn an_invalidation_or_a_flush_removes_at_once() {
        let mut c = cache(CacheConfig::default());
        for k in ["a", "b", "c"] {
            let read = miss(&mut c, &get(k));
            c.fill(read, 1, true, &bulk(k), Instant::now);
        }
        let push = Value::Push(vec![
            bulk("invalidate"),
            Value::Array(vec![bulk("a"), bulk("b")]),
        ]);
        assert!(c.on_push(&push));
        assert!(hit(&mut c, &get("a")).is_none());
        assert!(hit(&mut c, &get("b")).is_none());
        assert!(hit(&mut c, &get("c")).is_some());
        // Not an invalidation: not the cache's.
        assert!(!c.on_push(&Value::Push(vec![bulk("message"), bulk("ch"), bulk("x")])));
        assert!(!c.on_push(&bulk("invalidate")));
        // A flush: a null instead of keys; reads in flight fill nothing either.
        let read = miss(&mut c, &get("d"));
        assert!(c.on_push(&Value::Push(vec![bulk("invalidate"), Value::Nil])));
        c.fill(read, 1, true, &bulk("d"), Instant::now);
        assert_eq!(c.len(), 0);
        let s = c.counters.snapshot();
        assert_eq!((s.cache_invalidations, s.cache_flushes), (2, 1));
        // A flush through the client too.
        let read = miss(&mut c, &get("e"));
        c.fill(read, 1, true, &bulk("e"), Instant::now);
        c.written(&[cmd("FLUSHALL")]);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn an_entry_never_outlives_its_connection_or_its_slot() {
        let mut c = cache(CacheConfig::default());
        let read = miss(&mut c, &get("on1"));
        c.fill(read, 1, true, &bulk("x"), Instant::now);
        let read = miss(&mut c, &get("on2"));
        c.fill(read, 2, true, &bulk("y"), Instant::now);
        c.connection_lost(1);
        assert!(hit(&mut c, &get("on1")).is_none());
        assert!(hit(&mut c, &get("on2")).is_some());
        // A slot that moved drops its entries and refuses the fills in flight.
        let moved = slot_for_key(b"on2").get();
        let read = miss(&mut c, &get("other"));
        c.slots_moved(|s| s == moved);
        assert!(hit(&mut c, &get("on2")).is_none());
        c.fill(read, 2, true, &bulk("z"), Instant::now);
        assert!(hit(&mut c, &get("other")).is_none());
        // A connection that does not track, and errors, fill nothing.
        let read = miss(&mut c, &get("k"));
        c.fill(read, 3, false, &bulk("v"), Instant::now);
        let read = miss(&mut c, &get("k"));
        c.fill(
            read,
            3,
            true,
            &Value::Error("WRONGTYPE x".into()),
            Instant::now,
        );
        assert_eq!(c.len(), 0);
        // Filled from a second connection, a key's older entries go with the first.
        let read = miss(&mut c, &cmd("STRLEN").arg("k"));
        c.fill(read, 4, true, &Value::Int(1), Instant::now);
        let read = miss(&mut c, &get("k"));
        c.fill(read, 5, true, &bulk("v"), Instant::now);
        c.connection_lost(5);
        assert!(hit(&mut c, &cmd("STRLEN").arg("k")).is_none());
    }

    #[test]
    fn entries_and_bytes_are_bounded_least_recently_used_first() {
        let mut c = cache(CacheConfig::default().max_entries(3));
        for k in ["a", "b", "c"] {
            let read = miss(&mut c, &get(k));
            c.fill(read, 1, true, &bulk(k), Instant::now);
        }
        assert!(hit(&mut c, &get("a")).is_some());
        let read = miss(&mut c, &get("d"));
        c.fill(read, 1, true, &bulk("d"), Instant::now);
        assert_eq!(c.len(), 3);
        assert!(
            hit(&mut c, &get("b")).is_none(),
            "the least recently used goes"
        );
        assert!(hit(&mut c, &get("a")).is_some());
        let mut c = cache(CacheConfig::default().max_bytes(1_000));
        for i in 0..100 {
            let key = format!("k{i}");
            let read = miss(&mut c, &get(&key));
            c.fill(read, 1, true, &bulk(&"x".repeat(100)), Instant::now);
            assert!(c.bytes <= 1_000);
        }
        assert!(c.len() >= 2 && c.len() < 10, "{}", c.len());
        // A value larger than the whole cache is not kept.
        let read = miss(&mut c, &get("huge"));
        c.fill(read, 1, true, &bulk(&"x".repeat(2_000)), Instant::now);
        assert!(hit(&mut c, &get("huge")).is_none());
        assert!(c.counters.snapshot().cache_evictions > 0);
    }

    #[test]
    fn a_ttl_caps_an_entrys_life() {
        let now = Cell::new(Instant::now());
        let mut c = cache(CacheConfig::default().ttl(Some(Duration::from_secs(1))));
        let command = get("k");
        let Lookup::Miss(read) = c.lookup(&command, &Judgement::of(&command), || now.get()) else {
            panic!("a miss");
        };
        c.fill(read, 1, true, &bulk("v"), || now.get());
        let at = |c: &mut Cache, t: Instant| c.lookup(&command, &Judgement::of(&command), || t);
        assert!(matches!(at(&mut c, now.get()), Lookup::Hit(_)));
        now.set(now.get() + Duration::from_millis(999));
        assert!(matches!(at(&mut c, now.get()), Lookup::Hit(_)));
        now.set(now.get() + Duration::from_millis(1));
        assert!(matches!(at(&mut c, now.get()), Lookup::Miss(_)));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn prefixes_and_commands_choose_what_is_cached() {
        let config = CacheConfig::default()
            .prefix("user:")
            .only(&[CachedCommand::Get]);
        let mut c = cache(config);
        assert!(matches!(lookup(&mut c, &get("user:1")), Lookup::Miss(_)));
        assert!(matches!(lookup(&mut c, &get("order:1")), Lookup::Pass));
        assert!(matches!(
            lookup(&mut c, &cmd("STRLEN").arg("user:1")),
            Lookup::Pass
        ));
    }

    #[test]
    fn mget_is_answered_key_by_key() {
        let mut c = cache(CacheConfig::default());
        let read = miss(&mut c, &get("a"));
        c.fill(read, 1, true, &bulk("A"), Instant::now);
        let mget = cmd("MGET").arg("a").arg("b").arg("c");
        let Lookup::Mget(m) = lookup(&mut c, &mget) else {
            panic!("a partial hit");
        };
        assert_eq!(m.gets.len(), 2);
        assert_eq!(m.reads.len(), 2);
        let wrongtype = crate::core::reply::server_error(b"WRONGTYPE Operation");
        let answer = m.answer(vec![Ok(bulk("B")), Err(wrongtype)]).unwrap();
        assert_eq!(answer, Value::Array(vec![bulk("A"), bulk("B"), Value::Nil]));
        for k in ["b", "c"] {
            let read = miss(&mut c, &get(k));
            c.fill(read, 1, true, &bulk(k), Instant::now);
        }
        assert_eq!(
            hit(&mut c, &mget),
            Some(Value::Array(vec![bulk("A"), bulk("b"), bulk("c")]))
        );
        // A failed GET fails the MGET.
        c.invalidate(b"b");
        let Lookup::Mget(m) = lookup(&mut c, &mget) else {
            panic!("a partial hit");
        };
        let lost = crate::Error::new(crate::ErrorKind::Io, "lost");
        assert!(m.answer(vec![Err(lost)]).is_err());
    }

    #[test]
    fn a_cached_value_is_a_copy_not_a_slice_of_the_read_buffer() {
        let mut c = cache(CacheConfig::default());
        let buffer = Bytes::from(b"vvvv".to_vec());
        let read = miss(&mut c, &get("k"));
        c.fill(
            read,
            1,
            true,
            &Value::Bulk(buffer.slice(0..4)),
            Instant::now,
        );
        let Some(Value::Bulk(cached)) = c.peek_get(b"k") else {
            panic!("filled");
        };
        assert_ne!(cached.as_ptr(), buffer.as_ptr());
        assert_eq!(entry_conn(&c, b"k"), Some(1));
    }

    #[test]
    fn too_many_invalidations_in_flight_refuse_every_older_fill() {
        let mut c = cache(CacheConfig::default());
        let read = miss(&mut c, &get("k"));
        for i in 0..RECENT_STAMPS + 1 {
            c.invalidate(format!("x{i}").as_bytes());
        }
        assert!(c.recent.len() <= RECENT_STAMPS);
        c.fill(read, 1, true, &bulk("v"), Instant::now);
        assert!(hit(&mut c, &get("k")).is_none());
        let read = miss(&mut c, &get("k"));
        c.fill(read, 1, true, &bulk("v"), Instant::now);
        assert!(hit(&mut c, &get("k")).is_some());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Read(u8),
            Fill(usize, u8),
            Push(u8),
            Write(u8),
            Lost(u8),
            Moved(u8),
            Look(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..4).prop_map(Op::Read),
                (0usize..8, 0u8..2).prop_map(|(i, c)| Op::Fill(i, c)),
                (0u8..4).prop_map(Op::Push),
                (0u8..4).prop_map(Op::Write),
                (0u8..2).prop_map(Op::Lost),
                (0u8..4).prop_map(Op::Moved),
                (0u8..4).prop_map(Op::Look),
            ]
        }

        proptest! {
            /// Any interleaving of reads sent, replies filling, invalidations, writes,
            /// lost connections and moved slots: a hit always returns a value filled by a
            /// read sent after the key's last invalidation, on a connection that has not
            /// been lost since, in a slot that has not moved since.
            #[test]
            fn no_entry_outlives_an_invalidation_or_its_connection(ops in proptest::collection::vec(op(), 1..80)) {
                let mut c = cache(CacheConfig::default().max_entries(3));
                let key = |k: u8| format!("key{k}");
                let slot = |k: u8| slot_for_key(key(k).as_bytes()).get();
                // Events by step: the last invalidation of each key, each conn's loss,
                // each slot's move.
                let mut invalidated = [0usize; 4];
                // Connection ids are never reused: a lost one is replaced by a new one.
                let mut ids = [1u64, 2];
                let mut next_id = 3;
                let mut lost: Vec<u64> = Vec::new();
                let mut moved: HashMap<u16, usize> = HashMap::new();
                let mut in_flight: Vec<(usize, u8, Read)> = Vec::new();
                for (step, op) in ops.into_iter().enumerate() {
                    let step = step + 1;
                    match op {
                        Op::Read(k) => {
                            if let Lookup::Miss(read) = lookup(&mut c, &get(&key(k))) {
                                in_flight.push((step, k, read));
                            }
                        }
                        Op::Fill(i, conn) => {
                            if !in_flight.is_empty() {
                                let (sent, _, read) = in_flight.remove(i % in_flight.len());
                                // The value says when its read was sent.
                                c.fill(read, ids[conn as usize], true, &Value::Int(sent as i64), Instant::now);
                            }
                        }
                        Op::Push(k) => {
                            c.on_push(&Value::Push(vec![bulk("invalidate"), Value::Array(vec![bulk(&key(k))])]));
                            invalidated[k as usize] = step;
                        }
                        Op::Write(k) => {
                            c.written(&[cmd("SET").arg(key(k)).arg(1)]);
                            invalidated[k as usize] = step;
                        }
                        Op::Lost(conn) => {
                            c.connection_lost(ids[conn as usize]);
                            lost.push(ids[conn as usize]);
                            ids[conn as usize] = next_id;
                            next_id += 1;
                        }
                        Op::Moved(k) => {
                            let s = slot(k);
                            c.slots_moved(|x| x == s);
                            moved.insert(s, step);
                        }
                        Op::Look(k) => {
                            if let Some(Value::Int(sent)) = hit(&mut c, &get(&key(k))) {
                                let sent = sent as usize;
                                let conn = entry_conn(&c, key(k).as_bytes()).unwrap();
                                prop_assert!(invalidated[k as usize] < sent, "outlived an invalidation");
                                prop_assert!(moved.get(&slot(k)).is_none_or(|&m| m < sent), "outlived a move");
                                prop_assert!(!lost.contains(&conn), "outlived its connection");
                            }
                        }
                    }
                }
            }
        }
    }
}
