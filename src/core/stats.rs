//! Counters a benchmark or a test can read: how many writes and reads the engine issued,
//! how many redirects and retries the client took.

use std::cell::Cell;

/// A snapshot of a client's counters since it was created.
///
/// `writes` and `reads` count socket operations (io_uring submissions of a write or a
/// read), so `writes / pipelines` shows how batching behaves: a pipeline over three nodes
/// costs three writes, all in one submission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Write operations issued.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Read operations that returned data.
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Pipelines (and single commands) executed.
    pub executions: u64,
    /// MOVED and ASK redirects followed.
    pub redirects: u64,
    /// Commands retried (TRYAGAIN, CLUSTERDOWN, LOADING, unsent after a failure).
    pub retries: u64,
    /// Slot-map refreshes completed.
    pub refreshes: u64,
    /// Connections opened.
    pub connects: u64,
    /// RESP3 push frames handed on (out-of-band data, never taken for a reply). The
    /// client-side cache's invalidations are its own: counted in `cache_invalidations`
    /// and `cache_flushes`, not here.
    pub pushes: u64,
    /// Commands refused before sending (empty, connection-state, multi-node without a
    /// node, blocking in a pipeline).
    pub refused: u64,
    /// Blocking commands run on a dedicated connection.
    pub blocking: u64,
    /// Reads answered by the client-side cache (`Config::cache`; each key of an `MGET`
    /// counts).
    pub cache_hits: u64,
    /// Cacheable reads the cache did not have.
    pub cache_misses: u64,
    /// Keys the servers invalidated (`invalidate` pushes).
    pub cache_invalidations: u64,
    /// Whole-cache drops: a server's flush (`invalidate` with a null) or
    /// `cache_clear()`.
    pub cache_flushes: u64,
    /// Entries evicted to stay within `max_entries` / `max_bytes`.
    pub cache_evictions: u64,
    /// Replies returned but not cached because an invalidation raced them.
    pub cache_refused_fills: u64,
    /// Keys cached now (a gauge: clients' entries add up).
    pub cache_entries: u64,
}

/// The counters of several clients (a [`SharedClient`](crate::SharedClient)'s workers)
/// add up.
///
/// ```
/// use redis_cluster_uring::Stats;
/// let mut total = Stats { writes: 2, ..Stats::default() };
/// total += Stats { writes: 3, reads: 1, ..Stats::default() };
/// assert_eq!((total.writes, total.reads), (5, 1));
/// ```
impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        // Destructured, so a new counter cannot be forgotten here.
        let Stats {
            writes,
            bytes_written,
            reads,
            bytes_read,
            executions,
            redirects,
            retries,
            refreshes,
            connects,
            pushes,
            refused,
            blocking,
            cache_hits,
            cache_misses,
            cache_invalidations,
            cache_flushes,
            cache_evictions,
            cache_refused_fills,
            cache_entries,
        } = other;
        self.writes = self.writes.wrapping_add(writes);
        self.bytes_written = self.bytes_written.wrapping_add(bytes_written);
        self.reads = self.reads.wrapping_add(reads);
        self.bytes_read = self.bytes_read.wrapping_add(bytes_read);
        self.executions = self.executions.wrapping_add(executions);
        self.redirects = self.redirects.wrapping_add(redirects);
        self.retries = self.retries.wrapping_add(retries);
        self.refreshes = self.refreshes.wrapping_add(refreshes);
        self.connects = self.connects.wrapping_add(connects);
        self.pushes = self.pushes.wrapping_add(pushes);
        self.refused = self.refused.wrapping_add(refused);
        self.blocking = self.blocking.wrapping_add(blocking);
        self.cache_hits = self.cache_hits.wrapping_add(cache_hits);
        self.cache_misses = self.cache_misses.wrapping_add(cache_misses);
        self.cache_invalidations = self.cache_invalidations.wrapping_add(cache_invalidations);
        self.cache_flushes = self.cache_flushes.wrapping_add(cache_flushes);
        self.cache_evictions = self.cache_evictions.wrapping_add(cache_evictions);
        self.cache_refused_fills = self.cache_refused_fills.wrapping_add(cache_refused_fills);
        self.cache_entries = self.cache_entries.wrapping_add(cache_entries);
    }
}

/// The live counters (single-threaded, so plain cells).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    writes: Cell<u64>,
    bytes_written: Cell<u64>,
    reads: Cell<u64>,
    bytes_read: Cell<u64>,
    executions: Cell<u64>,
    redirects: Cell<u64>,
    retries: Cell<u64>,
    refreshes: Cell<u64>,
    connects: Cell<u64>,
    pushes: Cell<u64>,
    refused: Cell<u64>,
    blocking: Cell<u64>,
    cache_hits: Cell<u64>,
    cache_misses: Cell<u64>,
    cache_invalidations: Cell<u64>,
    cache_flushes: Cell<u64>,
    cache_evictions: Cell<u64>,
    cache_refused_fills: Cell<u64>,
    cache_entries: Cell<u64>,
    /// Also count into the `metrics` facade (`Config::telemetry`).
    metrics: bool,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get().wrapping_add(by));
}

impl Counters {
    /// Counters that also feed the `metrics` facade when `metrics` is set.
    pub(crate) fn new(metrics: bool) -> Counters {
        if metrics {
            crate::core::telemetry::describe();
        }
        Counters {
            metrics,
            ..Counters::default()
        }
    }

    pub(crate) fn add_write(&self, bytes: usize) {
        bump(&self.writes, 1);
        bump(&self.bytes_written, bytes as u64);
    }
    pub(crate) fn add_read(&self, bytes: usize) {
        bump(&self.reads, 1);
        bump(&self.bytes_read, bytes as u64);
    }
    pub(crate) fn add_execution(&self) {
        bump(&self.executions, 1);
    }
    pub(crate) fn add_redirect(&self) {
        bump(&self.redirects, 1);
        if self.metrics {
            crate::core::telemetry::counter(crate::core::telemetry::names::REDIRECTS, 1);
        }
    }
    pub(crate) fn retries_add(&self, n: usize) {
        bump(&self.retries, n as u64);
        if self.metrics && n > 0 {
            crate::core::telemetry::counter(crate::core::telemetry::names::RETRIES, n as u64);
        }
    }
    pub(crate) fn add_refresh(&self) {
        bump(&self.refreshes, 1);
        if self.metrics {
            crate::core::telemetry::counter(crate::core::telemetry::names::REFRESHES, 1);
        }
    }
    pub(crate) fn add_connect(&self) {
        bump(&self.connects, 1);
        if self.metrics {
            crate::core::telemetry::counter(crate::core::telemetry::names::CONNECTIONS_OPENED, 1);
        }
    }
    pub(crate) fn add_push(&self) {
        bump(&self.pushes, 1);
    }
    pub(crate) fn add_refused(&self) {
        bump(&self.refused, 1);
    }
    pub(crate) fn add_blocking(&self) {
        bump(&self.blocking, 1);
    }
    pub(crate) fn add_cache_hit(&self) {
        bump(&self.cache_hits, 1);
        if self.metrics {
            crate::core::telemetry::counter(crate::core::telemetry::names::CACHE_HITS, 1);
        }
    }
    pub(crate) fn add_cache_miss(&self) {
        bump(&self.cache_misses, 1);
        if self.metrics {
            crate::core::telemetry::counter(crate::core::telemetry::names::CACHE_MISSES, 1);
        }
    }
    pub(crate) fn add_cache_invalidation(&self) {
        bump(&self.cache_invalidations, 1);
        if self.metrics {
            crate::core::telemetry::counter(crate::core::telemetry::names::CACHE_INVALIDATIONS, 1);
        }
    }
    pub(crate) fn add_cache_flush(&self) {
        bump(&self.cache_flushes, 1);
        if self.metrics {
            crate::core::telemetry::counter(crate::core::telemetry::names::CACHE_FLUSHES, 1);
        }
    }
    pub(crate) fn add_cache_eviction(&self) {
        bump(&self.cache_evictions, 1);
    }
    pub(crate) fn add_cache_refused_fill(&self) {
        bump(&self.cache_refused_fills, 1);
    }
    pub(crate) fn set_cache_entries(&self, n: usize) {
        let was = self.cache_entries.replace(n as u64);
        if self.metrics && was != n as u64 {
            // A change, not a value: every client of the process adds to one gauge.
            let delta = n as f64 - was as f64;
            crate::core::telemetry::gauge(crate::core::telemetry::names::CACHE_ENTRIES, delta);
        }
    }
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            writes: self.writes.get(),
            bytes_written: self.bytes_written.get(),
            reads: self.reads.get(),
            bytes_read: self.bytes_read.get(),
            executions: self.executions.get(),
            redirects: self.redirects.get(),
            retries: self.retries.get(),
            refreshes: self.refreshes.get(),
            connects: self.connects.get(),
            pushes: self.pushes.get(),
            refused: self.refused.get(),
            blocking: self.blocking.get(),
            cache_hits: self.cache_hits.get(),
            cache_misses: self.cache_misses.get(),
            cache_invalidations: self.cache_invalidations.get(),
            cache_flushes: self.cache_flushes.get(),
            cache_evictions: self.cache_evictions.get(),
            cache_refused_fills: self.cache_refused_fills.get(),
            cache_entries: self.cache_entries.get(),
        }
    }
}
