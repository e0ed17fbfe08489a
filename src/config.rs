//! Client options, with defaults that suit a latency-critical service.

use std::time::Duration;

use crate::engine::Engine;
use crate::resp::DecodeLimits;

/// How a pipeline's per-node batches are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// Every node's batch is written in the same io_uring submission and all replies are
    /// awaited together: a pipeline costs the slowest node's round trip.
    #[default]
    Parallel,
    /// Batches are sent one node after another, each awaited before the next (the classic
    /// client's behaviour): a pipeline costs the sum of the nodes' round trips. Kept for
    /// comparison in benchmarks.
    Serial,
}

/// Which node serves reads. Only primaries for now; the option exists so the API does not
/// change when replica reads arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Every command goes to the slot's primary.
    #[default]
    Primary,
}

/// Options of a [`Client`](crate::Client).
///
/// ```
/// use std::time::Duration;
/// use redis_cluster_uring::{Config, Execution};
/// let config = Config::default()
///     .request_timeout(Some(Duration::from_millis(250)))
///     .execution(Execution::Serial);
/// assert_eq!(config.max_redirects, 5);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Deadline for one command or one whole pipeline, redirects included. `None`: wait
    /// for as long as the connection lives.
    pub request_timeout: Option<Duration>,
    /// Deadline for establishing one TCP connection.
    pub connect_timeout: Duration,
    /// How many MOVED/ASK hops one command may take before it fails with
    /// [`ErrorKind::RedirectLimit`](crate::ErrorKind::RedirectLimit).
    pub max_redirects: u32,
    /// How many times a command is retried after TRYAGAIN, CLUSTERDOWN, LOADING or a
    /// connection that failed before the command was written.
    pub max_retries: u32,
    /// First retry delay; doubled on each further attempt.
    pub retry_base_delay: Duration,
    /// Ceiling of the retry delay.
    pub retry_max_delay: Duration,
    /// Smallest interval between two slot-map refreshes triggered by MOVED or failures.
    pub min_refresh_interval: Duration,
    /// Interval of the background slot-map refresh; `None` disables it.
    pub periodic_refresh: Option<Duration>,
    /// Caps applied to every reply a server sends.
    pub decode_limits: DecodeLimits,
    /// Initial size of each connection's read buffer.
    pub read_buffer_size: usize,
    /// Most bytes queued on one connection and not yet written. Beyond it, new requests
    /// to that node fail with [`ErrorKind::Overloaded`](crate::ErrorKind::Overloaded)
    /// (after the usual retries) instead of growing memory without bound while the node
    /// is stalled.
    pub max_queued_bytes: usize,
    /// Idle dedicated connections kept per node for blocking commands (`BLPOP`, ...),
    /// so a consumer loop does not reconnect for every command. A blocking command never
    /// waits for one: when none is idle it opens another.
    pub blocking_pool_size: usize,
    /// Parallel (default) or serial per-node execution of pipelines.
    pub execution: Execution,
    /// Which nodes serve reads.
    pub read_from: ReadFrom,
    /// The I/O engine. `Auto` follows the runtime [`engine::start`](crate::engine::start)
    /// chose; inside a runtime of your own it means io_uring when the kernel allows it
    /// (use `Engine::Epoll` inside a plain tokio runtime).
    pub engine: Engine,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request_timeout: Some(Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(2),
            max_redirects: 5,
            max_retries: 8,
            retry_base_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(500),
            min_refresh_interval: Duration::from_millis(100),
            periodic_refresh: Some(Duration::from_secs(60)),
            decode_limits: DecodeLimits::default(),
            read_buffer_size: 64 * 1024,
            max_queued_bytes: 64 * 1024 * 1024,
            blocking_pool_size: 4,
            execution: Execution::Parallel,
            read_from: ReadFrom::Primary,
            engine: Engine::Auto,
        }
    }
}

impl Config {
    /// Sets [`Config::request_timeout`].
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`Config::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`Config::max_redirects`].
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    /// Sets [`Config::max_retries`].
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets the retry backoff: first delay and ceiling.
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry_base_delay = base;
        self.retry_max_delay = max;
        self
    }

    /// Sets [`Config::periodic_refresh`].
    pub fn periodic_refresh(mut self, every: Option<Duration>) -> Self {
        self.periodic_refresh = every;
        self
    }

    /// Sets [`Config::blocking_pool_size`].
    pub fn blocking_pool_size(mut self, n: usize) -> Self {
        self.blocking_pool_size = n;
        self
    }

    /// Sets [`Config::execution`].
    pub fn execution(mut self, execution: Execution) -> Self {
        self.execution = execution;
        self
    }

    /// Sets [`Config::engine`].
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Sets [`Config::decode_limits`].
    pub fn decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.decode_limits = limits;
        self
    }
}
