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
    /// RESP3 push frames received (out-of-band data, never taken for a reply).
    pub pushes: u64,
    /// Commands refused before sending (empty, connection-state, multi-node without a
    /// node, blocking in a pipeline).
    pub refused: u64,
    /// Blocking commands run on a dedicated connection.
    pub blocking: u64,
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
    /// Also count into the `metrics` facade (`Config::telemetry`).
    metrics: bool,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get().wrapping_add(by));
}

impl Counters {
    /// Counters that also feed the `metrics` facade when `metrics` is set.
    pub(crate) fn new(metrics: bool) -> Counters {
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
        }
    }
}
