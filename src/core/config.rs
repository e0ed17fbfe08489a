//! Client options, with defaults that suit a latency-critical service.

use std::fmt;
use std::time::Duration;

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::handshake::{CredentialSource, Credentials, Protocol};
use crate::core::resp::DecodeLimits;

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

/// Which node serves read-only commands (the command table's `readonly` flag). Writes
/// always go to primaries.
///
/// A read sent to a replica sees the primary's writes after replication (asynchronous,
/// usually well under a millisecond on a LAN): a caller that must read its own write
/// should read it from the primary. A replica that is down (its connection failed
/// recently) is skipped; one that answers MOVED is followed to the primary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Every command goes to the slot's primary.
    #[default]
    Primary,
    /// A replica of the slot's shard, chosen as given; the primary when none is up.
    PreferReplica(ReplicaChoice),
    /// A replica only: when none of the shard's replicas is up, the read fails with
    /// [`ErrorKind::ClusterDown`] instead of loading the
    /// primary. A shard without any replica is read from its primary.
    Replica(ReplicaChoice),
    /// The node of the shard (primary or replica) with the lowest measured round trip
    /// (each connection's handshake is timed; nodes not measured yet are tried first).
    Nearest,
    /// Replicas in this availability zone (Valkey's `availability-zone`, reported by
    /// `HELLO`), then other replicas, then the primary.
    AzAffinity(String),
}

/// How a replica is picked among several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaChoice {
    /// At random, per request.
    Random,
    /// In turn.
    #[default]
    RoundRobin,
}

/// A callback for RESP3 push frames (invalidations, and later pub/sub messages): the
/// node it came from and the frame. Called on the client's thread between replies; it
/// may use the client. Push frames never take a reply's place, handler or not.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use redis_cluster_uring::{Config, config::PushHandler};
/// let seen = Rc::new(Cell::new(0));
/// let counter = seen.clone();
/// let config = Config::default().push_handler(PushHandler::new(move |_node, _push| {
///     counter.set(counter.get() + 1)
/// }));
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct PushHandler(std::rc::Rc<PushFn>);

/// The callback inside a [`PushHandler`].
type PushFn = dyn Fn(&crate::core::node::NodeAddr, crate::core::value::Value);

impl PushHandler {
    /// Wraps a callback.
    pub fn new(
        f: impl Fn(&crate::core::node::NodeAddr, crate::core::value::Value) + 'static,
    ) -> PushHandler {
        PushHandler(std::rc::Rc::new(f))
    }

    pub(crate) fn call(&self, node: &crate::core::node::NodeAddr, push: crate::core::value::Value) {
        (self.0)(node, push)
    }
}

impl std::fmt::Debug for PushHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushHandler(..)")
    }
}

/// How a slot-map refresh chooses among the answers of the nodes it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshPolicy {
    /// The first well-formed answer that covers every slot (or, if none does, the one
    /// that covers the most once every asked node has answered): the fastest recovery.
    #[default]
    FirstComplete,
    /// Wait for every asked node (each within its own timeout) and take the view most of
    /// them agree on; ties go to the view covering more slots. Slower, but one node with a
    /// stale or odd view cannot steer the client.
    Majority,
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
    /// RESP3 (default; RESP2 where the server does not know `HELLO`) or RESP2.
    pub protocol: Protocol,
    /// Credentials sent in every connection's handshake: none, fixed, or a provider
    /// asked on every connect (rotating tokens). Never printed.
    pub credentials: CredentialSource,
    /// `CLIENT SETNAME` for every connection.
    pub client_name: Option<String>,
    /// The numbered database every connection selects in its handshake (and again after
    /// each reconnect); 0, the default, sends no `SELECT`. Valkey 9 clusters started with
    /// `cluster-databases N` have databases 0 to N - 1; Redis Cluster has only 0.
    pub database: u32,
    /// Spans and metrics after OpenTelemetry's database conventions (see
    /// [`crate::core::telemetry`]); off by default, and free when off. Metrics need the
    /// `metrics` feature too.
    pub telemetry: bool,
    /// The client-side cache (`None`, the default: off). With it, every connection to a
    /// primary turns `CLIENT TRACKING ON` (RESP3) and `GET`, `HGET`, `HGETALL`, `MGET`,
    /// `EXISTS`, `STRLEN` and `SMEMBERS` are answered from the process when they can
    /// be; see [`crate::core::cache`] for what keeps it correct.
    pub cache: Option<crate::core::cache::CacheConfig>,
    /// TLS for every connection (`None`: plain TCP).
    pub tls: Option<crate::core::tls::TlsConfig>,
    /// Where RESP3 push frames go (`None`: counted in `Stats::pushes` and dropped).
    pub push_handler: Option<PushHandler>,
    /// Deadline for one command or one whole pipeline, redirects included. `None`: wait
    /// for as long as the connection lives.
    pub request_timeout: Option<Duration>,
    /// Deadline for establishing one TCP connection.
    pub connect_timeout: Duration,
    /// How many MOVED/ASK hops one command may take before it fails with
    /// [`ErrorKind::RedirectLimit`].
    pub max_redirects: u32,
    /// How many times a command is retried after TRYAGAIN, CLUSTERDOWN, LOADING or a
    /// connection that failed before the command was written.
    pub max_retries: u32,
    /// First retry delay; doubled on each further attempt.
    pub retry_base_delay: Duration,
    /// Ceiling of the retry delay.
    pub retry_max_delay: Duration,
    /// Smallest interval between two slot-map refreshes triggered by MOVED, failures or
    /// timeouts: bounds refresh storms.
    pub min_refresh_interval: Duration,
    /// How long a refresh waits for one node's `CLUSTER SLOTS` before counting on the
    /// others. Short: a refresh is never held hostage by a dead node. The first load of
    /// the map, at connect, adds `connect_timeout` (every connection is opened, and its
    /// handshake run, before the question).
    pub refresh_timeout: Duration,
    /// How many nodes a refresh asks at once (primaries and replicas, in random order).
    pub refresh_fanout: usize,
    /// Which answer a refresh takes.
    pub refresh_policy: RefreshPolicy,
    /// Request timeouts in a row on one node's connection, with no reply in between,
    /// after which that connection is closed and reopened (0: never). Each timeout also
    /// schedules a slot-map refresh: a node that stopped answering may have been replaced.
    pub max_consecutive_timeouts: u32,
    /// TCP keepalive idle time on every connection (`None`: off), so a node that vanished
    /// without a reset is noticed even while nothing is sent to it.
    pub tcp_keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT` on every connection (`None`: the kernel's default, many
    /// minutes): how long written data may go unacknowledged before the connection fails.
    pub tcp_user_timeout: Option<Duration>,
    /// Connections with nothing in flight for this long are closed (`None`: kept). They
    /// reopen on the next request.
    pub idle_timeout: Option<Duration>,
    /// Interval of the background slot-map refresh; `None` disables it.
    pub periodic_refresh: Option<Duration>,
    /// Caps applied to every reply a server sends.
    pub decode_limits: DecodeLimits,
    /// Initial size of each connection's read buffer.
    pub read_buffer_size: usize,
    /// Most bytes queued on one connection and not yet written. Beyond it, new requests
    /// to that node fail with [`ErrorKind::Overloaded`]
    /// (after the usual retries) instead of growing memory without bound while the node
    /// is stalled.
    pub max_queued_bytes: usize,
    /// Most replies awaited on one connection (requests written or queued, not yet
    /// answered). Beyond it, new requests to that node fail with
    /// [`ErrorKind::Overloaded`]: a stalled node cannot make
    /// the client hold an unbounded number of requests for it.
    pub max_pending_replies: usize,
    /// Idle dedicated connections kept per node for blocking commands (`BLPOP`, ...),
    /// so a consumer loop does not reconnect for every command. A blocking command never
    /// waits for one: when none is idle it opens another.
    pub blocking_pool_size: usize,
    /// Attempts of [`Client::transaction`](crate::Client::transaction) before it gives up
    /// with [`ErrorKind::WatchConflict`]: each attempt
    /// whose `EXEC` finds a watched key changed runs the closure again.
    pub max_watch_attempts: u32,
    /// Messages a `Subscriber` buffers for its caller; when
    /// the caller falls this far behind, the oldest are dropped (and counted).
    pub max_buffered_messages: usize,
    /// Parallel (default) or serial per-node execution of pipelines.
    pub execution: Execution,
    /// Which nodes serve reads.
    pub read_from: ReadFrom,
    /// The I/O engine. `Auto` follows the runtime `engine::start`
    /// chose; inside a compio runtime of your own it means compio, inside a tokio runtime
    /// of your own io_uring when the kernel allows it (use `Engine::Epoll` inside a plain
    /// tokio runtime).
    pub engine: Engine,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: Protocol::Resp3,
            credentials: CredentialSource::None,
            client_name: None,
            database: 0,
            telemetry: false,
            cache: None,
            tls: None,
            push_handler: None,
            request_timeout: Some(Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(2),
            max_redirects: 5,
            max_retries: 8,
            retry_base_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(500),
            min_refresh_interval: Duration::from_millis(100),
            refresh_timeout: Duration::from_millis(500),
            refresh_fanout: 3,
            refresh_policy: RefreshPolicy::FirstComplete,
            max_consecutive_timeouts: 3,
            tcp_keepalive: Some(Duration::from_secs(10)),
            tcp_user_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(300)),
            periodic_refresh: Some(Duration::from_secs(60)),
            decode_limits: DecodeLimits::default(),
            read_buffer_size: 64 * 1024,
            max_queued_bytes: 64 * 1024 * 1024,
            max_pending_replies: 1 << 20,
            blocking_pool_size: 4,
            max_watch_attempts: 16,
            max_buffered_messages: 65_536,
            execution: Execution::Parallel,
            read_from: ReadFrom::Primary,
            engine: Engine::Auto,
        }
    }
}

impl Config {
    /// How long a node has to answer `CLUSTER SLOTS`: `refresh_timeout`, plus
    /// `connect_timeout` for the first load of the map, when every connection still has
    /// to be opened and its handshake run.
    pub(crate) fn refresh_budget(&self, first_load: bool) -> Duration {
        if first_load {
            self.refresh_timeout.saturating_add(self.connect_timeout)
        } else {
            self.refresh_timeout
        }
    }

    /// Sets [`Config::protocol`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Authenticates every connection with fixed credentials.
    ///
    /// ```
    /// use redis_cluster_uring::{core::handshake::Credentials, Config};
    /// let config = Config::default().credentials(Credentials::user("app", "s3cret"));
    /// assert!(!format!("{config:?}").contains("s3cret"));
    /// ```
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = CredentialSource::Fixed(credentials);
        self
    }

    /// Authenticates every new connection with what `provider` returns then (rotating
    /// tokens). An `Err` fails that connection with the provider's error.
    pub fn credentials_provider(
        mut self,
        provider: impl Fn() -> crate::core::error::Result<Credentials> + 'static,
    ) -> Self {
        self.credentials = CredentialSource::Provider(std::rc::Rc::new(provider));
        self
    }

    /// Sets [`Config::push_handler`].
    pub fn push_handler(mut self, handler: PushHandler) -> Self {
        self.push_handler = Some(handler);
        self
    }

    /// Speaks TLS to every node.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{tls::TlsConfig, Config};
    /// let ca = std::fs::read("ca.pem")?;
    /// let config = Config::default().tls(TlsConfig::new().add_root_pem(&ca)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(mut self, tls: crate::core::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`Config::client_name`].
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Sets [`Config::database`]: every connection selects database `n` (a URL seed's
    /// path, `redis://host:port/3`, sets it too). A server that refuses it (Redis
    /// Cluster, a Valkey cluster with fewer databases) fails the connection with
    /// [`ErrorKind::Config`] naming its answer.
    ///
    /// ```
    /// use redis_cluster_uring::Config;
    /// let config = Config::default().database(3);
    /// assert_eq!(config.database, 3);
    /// ```
    pub fn database(mut self, n: u32) -> Self {
        self.database = n;
        self
    }

    /// Sets [`Config::telemetry`]: a `tracing` span per request (`redis.request`) with a
    /// child per node batch (`redis.batch`), and with the `metrics` feature the client's
    /// histogram and counters, named after OpenTelemetry's database conventions.
    ///
    /// ```
    /// use redis_cluster_uring::Config;
    /// assert!(Config::default().telemetry(true).telemetry);
    /// ```
    pub fn telemetry(mut self, on: bool) -> Self {
        self.telemetry = on;
        self
    }

    /// Turns the client-side cache on ([`Config::cache`]).
    ///
    /// ```
    /// use redis_cluster_uring::{CacheConfig, Config};
    /// let config = Config::default().cache(CacheConfig::default().max_entries(50_000));
    /// assert!(config.cache.is_some());
    /// ```
    pub fn cache(mut self, cache: crate::core::cache::CacheConfig) -> Self {
        self.cache = Some(cache);
        self
    }

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

    /// Sets [`Config::refresh_policy`].
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.refresh_policy = policy;
        self
    }

    /// Sets [`Config::max_consecutive_timeouts`].
    pub fn max_consecutive_timeouts(mut self, n: u32) -> Self {
        self.max_consecutive_timeouts = n;
        self
    }

    /// Sets [`Config::idle_timeout`].
    pub fn idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Sets [`Config::read_from`].
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
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

/// Environment variable that forces an engine: `ring`, `io_uring` (or `uring`), `epoll`,
/// `compio`, `auto`.
pub const ENGINE_ENV: &str = "REDIS_CLUSTER_URING_ENGINE";

/// Which I/O engine a client (or `engine::start`) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Engine {
    /// io_uring when the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    /// io_uring only: an error of kind [`ErrorKind::IoUringUnavailable`] when refused.
    IoUring,
    /// The readiness-based fallback where io_uring is refused: tokio sockets on epoll
    /// for the async client, nonblocking sockets and `poll(2)` for the blocking one.
    Epoll,
    /// The client's own io_uring instance: for the async client with a small executor
    /// parked in it, one `io_uring_enter` per loop turn (see `engine::start`); for the
    /// blocking client, one per pipeline.
    Ring,
    /// compio's runtime and sockets (io_uring), for applications already on compio: a
    /// client created inside a compio runtime picks it. `Auto` never does.
    Compio,
}

impl Engine {
    /// Parses the value of [`ENGINE_ENV`].
    pub fn parse(s: &str) -> Option<Engine> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(Engine::Auto),
            "io_uring" | "io-uring" | "uring" => Some(Engine::IoUring),
            "epoll" => Some(Engine::Epoll),
            "ring" => Some(Engine::Ring),
            "compio" => Some(Engine::Compio),
            _ => None,
        }
    }

    /// The engine forced by [`ENGINE_ENV`], if set; an unknown value is a config error.
    pub fn from_env() -> Result<Option<Engine>> {
        match std::env::var(ENGINE_ENV) {
            Ok(v) => Engine::parse(&v).map(Some).ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("{ENGINE_ENV}={v:?}: expected ring, io_uring, epoll, compio or auto"),
                )
            }),
            Err(_) => Ok(None),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Auto => "auto",
            Engine::IoUring => "io_uring",
            Engine::Epoll => "epoll",
            Engine::Ring => "ring",
            Engine::Compio => "compio",
        })
    }
}
