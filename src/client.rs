//! The public client: single commands, pipelines, redirects, refreshes.
//!
//! A [`Client`] is `!Send` and lives on one thread: cloning it is cheap (an `Rc`), and every
//! clone shares the connections, so many tasks on the thread calling it at once share one
//! write per node per loop turn (auto-pipelining).
//!
//! # A request's life
//! 1. The commands are planned ([`plan_pipeline`]) into one encoded batch per node.
//! 2. Each batch is queued on its node's connection (opened lazily) and the connection's
//!    writer is woken. Nothing is awaited until every batch is queued, so all writes go
//!    into the same io_uring submission.
//! 3. Readers decode replies and place them by index; the exec wakes when the round is
//!    complete.
//! 4. Each reply is judged ([`decide`]): kept, redirected (MOVED: slot map updated, resent
//!    alone; ASK: resent with `ASKING`), retried after a backoff (TRYAGAIN, CLUSTERDOWN,
//!    LOADING, or a connection that died before the command was written), or failed. The
//!    redirected and retried commands form the next round.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::cmd::{cmd, Cmd, ToArg};
use crate::config::{Config, Execution};
use crate::connection::{run_connection, ConnOptions};
use crate::engine::{self, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::io::epoll::EpollStream;
use crate::io::uring::UringStream;
use crate::plan::{
    backoff, decide, plan_pipeline, plan_resend, BatchEntry, Decision, NodeBatch, RetryLimits,
};
use crate::pool::{ConnId, Pool, RoundReply};
use crate::reply::{server_error, FromReply};
use crate::resp::Value;
use crate::route::{is_multi_key, route_command, Route};
use crate::split::{merge_replies, split_by_slot, Split};
use crate::stats::{Counters, Stats};
use crate::topology::{NodeAddr, SlotMap};

/// A pipeline: commands sent together, answered in order.
///
/// Commands may touch any keys: the client splits them per node and reassembles the
/// replies in the order the commands were added.
///
/// ```
/// use redis_cluster_uring::{cmd, Pipeline};
/// let mut pipe = Pipeline::new();
/// pipe.set("a", 1).get("a").add(cmd("INCR").arg("counter"));
/// assert_eq!(pipe.len(), 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    cmds: Vec<Cmd>,
    raise_on_error: bool,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// An empty pipeline with room for `n` commands.
    pub fn with_capacity(n: usize) -> Pipeline {
        Pipeline {
            cmds: Vec::with_capacity(n),
            raise_on_error: false,
        }
    }

    /// Adds a command.
    pub fn add(&mut self, cmd: Cmd) -> &mut Pipeline {
        self.cmds.push(cmd);
        self
    }

    /// Adds `GET key`.
    pub fn get<K: ToArg>(&mut self, key: K) -> &mut Pipeline {
        self.add(cmd("GET").arg(key))
    }

    /// Adds `SET key value`.
    pub fn set<K: ToArg, V: ToArg>(&mut self, key: K, value: V) -> &mut Pipeline {
        self.add(cmd("SET").arg(key).arg(value))
    }

    /// When set, [`Client::execute`] returns the first failed command's error instead of
    /// the per-command results. Off by default: one command's error is that command's
    /// result, and the others still count.
    pub fn raise_on_error(&mut self, raise: bool) -> &mut Pipeline {
        self.raise_on_error = raise;
        self
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// True when there are no commands.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Removes every command, keeping the allocation.
    pub fn clear(&mut self) {
        self.cmds.clear();
    }

    /// The commands.
    pub fn commands(&self) -> &[Cmd] {
        &self.cmds
    }
}

#[derive(Debug, Default)]
struct RefreshState {
    last: Option<Instant>,
    running: bool,
}

#[derive(Debug)]
struct Inner {
    pool: Rc<RefCell<Pool>>,
    map: RefCell<Rc<SlotMap>>,
    seeds: Vec<NodeAddr>,
    config: Config,
    /// The engine in use (never `Auto`).
    engine: Engine,
    counters: Rc<Counters>,
    refresh: RefCell<RefreshState>,
    /// Last failure time and count per node, for reconnect backoff.
    failures: RefCell<Vec<(NodeAddr, Instant, u32)>>,
    closed: Cell<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Wakes every writer so its task exits and closes the socket.
        self.pool
            .borrow_mut()
            .fail_all(&Error::new(ErrorKind::Shutdown, "client dropped"));
    }
}

/// A Redis Cluster client for one thread.
///
/// Create it inside [`engine::start`] (or your own `tokio-uring` runtime). It loads the
/// slot map from the seeds, then opens one connection per node on first use.
///
/// ```no_run
/// use redis_cluster_uring::{engine, Client, Config, Pipeline};
/// engine::start(async {
///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
///     client.set("greeting", "hello").await?;
///     let v: Option<String> = client.get("greeting").await?;
///     assert_eq!(v.as_deref(), Some("hello"));
///
///     let mut pipe = Pipeline::new();
///     for i in 0..100 {
///         pipe.set(format!("key:{i}"), i);
///     }
///     let replies = client.execute(&pipe).await?;
///     assert!(replies.iter().all(|r| r.is_ok()));
///     Ok::<(), redis_cluster_uring::Error>(())
/// })
/// .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

/// Frees an exec's slab entry however its future ends (finished, timed out, dropped).
struct ExecGuard {
    pool: Rc<RefCell<Pool>>,
    exec: usize,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        self.pool.borrow_mut().abandon(self.exec);
    }
}

/// A command being resent: its index, target and whether it needs `ASKING`.
type Resend = (usize, NodeAddr, bool);

impl Client {
    /// Connects to a cluster through any of `seeds` (`host:port`) and loads its slot map.
    ///
    /// Fails with [`ErrorKind::Config`] for unparsable seeds and with the last connection
    /// error when no seed answers `CLUSTER SLOTS`.
    pub async fn connect<S: AsRef<str>>(seeds: &[S], config: Config) -> Result<Client> {
        let mut parsed = Vec::with_capacity(seeds.len());
        for s in seeds {
            let s = s.as_ref();
            parsed.push(NodeAddr::parse(s).ok_or_else(|| {
                Error::new(ErrorKind::Config, format!("seed {s:?} is not host:port"))
            })?);
        }
        if parsed.is_empty() {
            return Err(Error::new(ErrorKind::Config, "no seed address given"));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::Config,
                "Client::connect must run inside engine::start or a tokio-uring runtime",
            ));
        }
        let engine = choose_engine(config.engine)?;
        tracing::debug!(%engine, "client engine");
        let client = Client {
            inner: Rc::new(Inner {
                engine,
                pool: Rc::new(RefCell::new(Pool::default())),
                map: RefCell::new(Rc::new(SlotMap::empty())),
                seeds: parsed,
                config,
                counters: Rc::new(Counters::default()),
                refresh: RefCell::new(RefreshState::default()),
                failures: RefCell::new(Vec::new()),
                closed: Cell::new(false),
            }),
        };
        client.refresh_slots().await?;
        if let Some(every) = client.inner.config.periodic_refresh {
            tokio::task::spawn_local(periodic_refresh(Rc::downgrade(&client.inner), every));
        }
        Ok(client)
    }

    /// Runs one command on the node that owns its key and converts the reply.
    ///
    /// An error reply is returned as `Err` of kind [`ErrorKind::ServerError`].
    pub async fn query<T: FromReply>(&self, command: Cmd) -> Result<T> {
        let mut results = self
            .execute_commands(std::slice::from_ref(&command))
            .await?;
        match results.pop() {
            Some(r) => T::from_reply(r?),
            None => Err(Error::new(ErrorKind::Protocol, "no reply")),
        }
    }

    /// Runs a pipeline. Each command's result is at its index; a server error reply is an
    /// `Err` for that command only. With [`Pipeline::raise_on_error`] the first error is
    /// returned instead.
    ///
    /// The outer `Err` is for the pipeline as a whole: [`ErrorKind::Timeout`] when
    /// `request_timeout` passes, [`ErrorKind::Shutdown`] after [`Client::shutdown`].
    pub async fn execute(&self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>> {
        let results = self.execute_commands(&pipeline.cmds).await?;
        if pipeline.raise_on_error {
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                return Err(e.clone());
            }
        }
        Ok(results)
    }

    /// Runs a pipeline and converts every reply; fails on the first error.
    pub async fn query_pipeline<T: FromReply>(&self, pipeline: &Pipeline) -> Result<Vec<T>> {
        self.execute_commands(&pipeline.cmds)
            .await?
            .into_iter()
            .map(|r| T::from_reply(r?))
            .collect()
    }

    /// `GET key`.
    pub async fn get<K: ToArg, T: FromReply>(&self, key: K) -> Result<T> {
        self.query(cmd("GET").arg(key)).await
    }

    /// `SET key value`.
    pub async fn set<K: ToArg, V: ToArg>(&self, key: K, value: V) -> Result<()> {
        self.query(cmd("SET").arg(key).arg(value)).await
    }

    /// `DEL key`: how many keys were removed (0 or 1).
    pub async fn del<K: ToArg>(&self, key: K) -> Result<u64> {
        self.query(cmd("DEL").arg(key)).await
    }

    /// `INCRBY key by`: the new value.
    pub async fn incr<K: ToArg>(&self, key: K, by: i64) -> Result<i64> {
        self.query(cmd("INCRBY").arg(key).arg(by)).await
    }

    /// `EXISTS key`.
    pub async fn exists<K: ToArg>(&self, key: K) -> Result<bool> {
        self.query(cmd("EXISTS").arg(key)).await
    }

    /// `EXPIRE key seconds`: whether a timeout was set.
    pub async fn expire<K: ToArg>(&self, key: K, seconds: u64) -> Result<bool> {
        self.query(cmd("EXPIRE").arg(key).arg(seconds)).await
    }

    /// `HSET key field value`: number of fields added.
    pub async fn hset<K: ToArg, F: ToArg, V: ToArg>(
        &self,
        key: K,
        field: F,
        value: V,
    ) -> Result<u64> {
        self.query(cmd("HSET").arg(key).arg(field).arg(value)).await
    }

    /// `HGET key field`.
    pub async fn hget<K: ToArg, F: ToArg, T: FromReply>(&self, key: K, field: F) -> Result<T> {
        self.query(cmd("HGET").arg(key).arg(field)).await
    }

    /// `PING` on some node.
    pub async fn ping(&self) -> Result<()> {
        self.query(cmd("PING")).await
    }

    /// Runs one command on a given node, bypassing routing (for `INFO`, `DEBUG`,
    /// `CLUSTER ...` on a chosen node). No redirect is followed.
    pub async fn query_node<T: FromReply>(&self, node: &NodeAddr, command: Cmd) -> Result<T> {
        let value = self.send_to(node, command).await?;
        T::from_reply(value)
    }

    /// The current slot map.
    pub fn slot_map(&self) -> Rc<SlotMap> {
        self.inner.map.borrow().clone()
    }

    /// The I/O engine this client uses (`IoUring` or `Epoll`).
    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// Counters since the client was created.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.inner.pool.borrow().connection_count()
    }

    /// Reloads the slot map now, asking the known primaries and then the seeds.
    pub async fn refresh_slots(&self) -> Result<()> {
        let map = self.fetch_slot_map().await?;
        *self.inner.map.borrow_mut() = Rc::new(map);
        self.inner.refresh.borrow_mut().last = Some(Instant::now());
        self.inner.counters.add_refresh();
        Ok(())
    }

    /// Closes the client: new requests fail with [`ErrorKind::Shutdown`]; requests in
    /// flight get up to `grace` to finish, then fail with the same kind; connections are
    /// closed. Other clones of this client see the same closed state.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.closed.set(true);
        let deadline = Instant::now() + grace;
        while self.inner.pool.borrow().exec_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.inner
            .pool
            .borrow_mut()
            .fail_all(&Error::new(ErrorKind::Shutdown, "client shut down"));
        // Let the connection tasks run to their end.
        tokio::task::yield_now().await;
    }

    async fn execute_commands(&self, cmds: &[Cmd]) -> Result<Vec<Result<Value>>> {
        if self.inner.closed.get() {
            return Err(Error::new(ErrorKind::Shutdown, "client shut down"));
        }
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.counters.add_execution();
        let deadline = self
            .inner
            .config
            .request_timeout
            .map(|t| tokio::time::Instant::now() + t);
        // The common case: no multi-key command spans slots, nothing to expand.
        let needs_split = cmds
            .iter()
            .any(|c| is_multi_key(c) && split_by_slot(c).is_some());
        if !needs_split {
            return self.run_rounds(cmds, deadline).await;
        }
        // Each splittable cross-slot command is replaced, in place, by its per-slot
        // parts, so per-node order (and so what each part observes) is the pipeline's.
        let mut expanded: Vec<Cmd> = Vec::with_capacity(cmds.len());
        let mut spans: Vec<(std::ops::Range<usize>, Option<Split>)> =
            Vec::with_capacity(cmds.len());
        for c in cmds {
            let start = expanded.len();
            match is_multi_key(c).then(|| split_by_slot(c)).flatten() {
                Some(split) => {
                    expanded.extend(split.parts.iter().map(|p| p.cmd.clone()));
                    spans.push((start..expanded.len(), Some(split)));
                }
                None => {
                    expanded.push(c.clone());
                    spans.push((start..start + 1, None));
                }
            }
        }
        let mut results = self.run_rounds(&expanded, deadline).await?.into_iter();
        Ok(spans
            .into_iter()
            .map(|(range, split)| {
                let parts: Vec<Result<Value>> = results.by_ref().take(range.len()).collect();
                match split {
                    Some(split) => merge_replies(&split, parts),
                    None => parts.into_iter().next().unwrap_or_else(|| {
                        Err(Error::new(ErrorKind::Protocol, "a command lost its reply"))
                    }),
                }
            })
            .collect())
    }

    /// Plans, sends and judges rounds until every command has its final result.
    ///
    /// At the deadline, commands still waiting get a [`ErrorKind::Timeout`] error each
    /// while the replies already in are kept: a stalled node never costs the others their
    /// results. The abandoned replies are still read and dropped in order.
    async fn run_rounds(
        &self,
        cmds: &[Cmd],
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<Result<Value>>> {
        let exec = self.inner.pool.borrow_mut().new_exec(cmds.len());
        let _guard = ExecGuard {
            pool: self.inner.pool.clone(),
            exec,
        };
        let mut results: Vec<Option<Result<Value>>> = Vec::with_capacity(cmds.len());
        results.resize_with(cmds.len(), || None);
        let mut attempts = vec![0u32; cmds.len()];

        let plan = {
            let map = self.inner.map.borrow().clone();
            plan_pipeline(cmds, &map)
        };
        for (index, error) in plan.failed {
            results[index] = Some(Err(error));
        }
        let mut batches = plan.batches;
        let limits = self.retry_limits();
        while !batches.is_empty() {
            let (sent, timed_out) = self.send_round(exec, batches, deadline).await;
            let mut resend: Vec<Resend> = Vec::new();
            let mut retry: Vec<usize> = Vec::new();
            for (node, entries) in &sent {
                for entry in entries {
                    let i = entry.index;
                    let reply = self.inner.pool.borrow_mut().take_reply(exec, i);
                    match reply {
                        Some(RoundReply::Value(value)) => {
                            match decide(&value, attempts[i], &limits) {
                                Decision::Accept => results[i] = Some(into_result(value)),
                                Decision::Resend {
                                    to,
                                    asking,
                                    update_slot,
                                } => {
                                    attempts[i] += 1;
                                    self.inner.counters.add_redirect();
                                    let to = fill_host(to, node);
                                    if let Some((slot, _)) = update_slot {
                                        Rc::make_mut(&mut self.inner.map.borrow_mut())
                                            .apply_moved(slot, &to);
                                        self.schedule_refresh();
                                    }
                                    resend.push((i, to, asking));
                                }
                                Decision::RetryLater { .. } => {
                                    attempts[i] += 1;
                                    retry.push(i);
                                }
                                Decision::Fail(error) => results[i] = Some(Err(error)),
                            }
                        }
                        Some(RoundReply::Failed { error, sent }) => {
                            if error.kind() != ErrorKind::Overloaded {
                                self.note_failure(node);
                                self.schedule_refresh();
                            }
                            if !sent && attempts[i] < self.inner.config.max_retries {
                                attempts[i] += 1;
                                retry.push(i);
                            } else {
                                results[i] = Some(Err(error));
                            }
                        }
                        None if timed_out => {
                            results[i] = Some(Err(Error::new(
                                ErrorKind::Timeout,
                                format!("{node} did not answer in time"),
                            )))
                        }
                        None => {
                            results[i] = Some(Err(Error::new(
                                ErrorKind::Io,
                                format!("no reply from {node}"),
                            )))
                        }
                    }
                }
            }
            if timed_out {
                let late = resend.iter().map(|r| r.0).chain(retry.iter().copied());
                for i in late {
                    results[i] = Some(Err(Error::new(
                        ErrorKind::Timeout,
                        "deadline passed before the command could be redirected or retried",
                    )));
                }
                break;
            }
            if !retry.is_empty() {
                self.inner.counters.retries_add(retry.len());
                let worst = retry.iter().map(|&i| attempts[i]).max().unwrap_or(1);
                let pause = backoff(
                    worst,
                    self.inner.config.retry_base_delay,
                    self.inner.config.retry_max_delay,
                );
                let wake = tokio::time::Instant::now() + pause;
                if deadline.is_some_and(|d| d <= wake) {
                    for i in retry {
                        results[i] = Some(Err(Error::new(
                            ErrorKind::Timeout,
                            "deadline passed while waiting to retry",
                        )));
                    }
                    retry = Vec::new();
                } else {
                    tokio::time::sleep_until(wake).await;
                }
                let map = self.inner.map.borrow().clone();
                for i in retry {
                    match route_target(&cmds[i], &map, &self.inner.seeds) {
                        Ok(node) => resend.push((i, node, false)),
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
            }
            batches = plan_resend(&resend, cmds);
        }
        // Only a deadline leaves commands without a result (serial mode stops sending).
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        "deadline passed before sending",
                    ))
                })
            })
            .collect())
    }

    /// Queues batches and waits for their replies: all at once (parallel) or one node at a
    /// time (serial). Returns, per batch, the node and the entries sent to it.
    /// The second value is true when the deadline passed before every reply came in.
    async fn send_round(
        &self,
        exec: usize,
        batches: Vec<NodeBatch>,
        deadline: Option<tokio::time::Instant>,
    ) -> (Vec<(NodeAddr, Vec<BatchEntry>)>, bool) {
        let mut sent = Vec::with_capacity(batches.len());
        let serial = self.inner.config.execution == Execution::Serial;
        for NodeBatch { node, entries, buf } in batches {
            self.dispatch(exec, &node, &entries, buf);
            sent.push((node, entries));
            if serial && !self.wait_round(exec, deadline).await {
                return (sent, true);
            }
        }
        let timed_out = !serial && !self.wait_round(exec, deadline).await;
        (sent, timed_out)
    }

    /// Waits for the round's replies; false when the deadline came first.
    async fn wait_round(&self, exec: usize, deadline: Option<tokio::time::Instant>) -> bool {
        let pool = &self.inner.pool;
        let all_in = poll_fn(|cx| pool.borrow_mut().poll_exec(exec, cx));
        match deadline {
            Some(d) => tokio::time::timeout_at(d, all_in).await.is_ok(),
            None => {
                all_in.await;
                true
            }
        }
    }

    /// Queues one batch on its node's connection, opening the connection if needed.
    fn dispatch(&self, exec: usize, node: &NodeAddr, entries: &[BatchEntry], buf: BytesMut) {
        let conn = self.connection_for(node);
        let max = self.inner.config.max_queued_bytes;
        let mut pool = self.inner.pool.borrow_mut();
        if let Err(e) = pool.enqueue(conn, exec, entries, buf, max) {
            // Judged with the round like a connection that failed before sending: retried
            // after a backoff, then reported.
            pool.fail_unsent(exec, entries, &e);
        }
    }

    fn connection_for(&self, node: &NodeAddr) -> ConnId {
        if let Some(conn) = self.inner.pool.borrow().find(node) {
            return conn;
        }
        let config = &self.inner.config;
        let (conn, wake_writer) = self
            .inner
            .pool
            .borrow_mut()
            .open(node.clone(), config.read_buffer_size);
        self.inner.counters.add_connect();
        let options = ConnOptions {
            connect_timeout: config.connect_timeout,
            delay: self.reconnect_delay(node),
            limits: config.decode_limits,
            read_buffer_size: config.read_buffer_size,
        };
        let task = (
            Rc::downgrade(&self.inner.pool),
            self.inner.counters.clone(),
            conn,
            node.clone(),
            wake_writer,
            options,
        );
        match self.inner.engine {
            Engine::Epoll => spawn_connection::<EpollStream>(task),
            _ => spawn_connection::<UringStream>(task),
        }
        conn
    }

    fn note_failure(&self, node: &NodeAddr) {
        let mut failures = self.inner.failures.borrow_mut();
        let now = Instant::now();
        match failures.iter_mut().find(|(a, _, _)| a == node) {
            Some(entry) => {
                entry.1 = now;
                entry.2 = entry.2.saturating_add(1);
            }
            None => failures.push((node.clone(), now, 1)),
        }
    }

    /// Backoff before reconnecting to a node that failed recently; nothing otherwise.
    fn reconnect_delay(&self, node: &NodeAddr) -> Duration {
        let failures = self.inner.failures.borrow();
        let Some((_, when, count)) = failures.iter().find(|(a, _, _)| a == node) else {
            return Duration::ZERO;
        };
        let config = &self.inner.config;
        let delay = backoff(*count, config.retry_base_delay, config.retry_max_delay);
        delay.saturating_sub(when.elapsed())
    }

    fn retry_limits(&self) -> RetryLimits {
        RetryLimits {
            max_redirects: self.inner.config.max_redirects,
            max_retries: self.inner.config.max_retries,
        }
    }

    /// Runs one command on one node, without routing or redirects.
    async fn send_to(&self, node: &NodeAddr, command: Cmd) -> Result<Value> {
        if self.inner.closed.get() {
            return Err(Error::new(ErrorKind::Shutdown, "client shut down"));
        }
        let cmds = std::slice::from_ref(&command);
        let exec = self.inner.pool.borrow_mut().new_exec(1);
        let _guard = ExecGuard {
            pool: self.inner.pool.clone(),
            exec,
        };
        let round = async {
            for batch in plan_resend(&[(0, node.clone(), false)], cmds) {
                self.dispatch(exec, &batch.node, &batch.entries, batch.buf);
            }
            let deadline = self
                .inner
                .config
                .request_timeout
                .map(|t| tokio::time::Instant::now() + t);
            let in_time = self.wait_round(exec, deadline).await;
            (in_time, self.inner.pool.borrow_mut().take_reply(exec, 0))
        };
        let reply = match round.await {
            (false, _) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{node} did not answer in time"),
                ))
            }
            (true, reply) => reply,
        };
        match reply {
            Some(RoundReply::Value(v)) => Ok(v),
            Some(RoundReply::Failed { error, .. }) => {
                self.note_failure(node);
                Err(error)
            }
            None => Err(Error::new(ErrorKind::Io, format!("no reply from {node}"))),
        }
    }

    async fn fetch_slot_map(&self) -> Result<SlotMap> {
        let mut candidates: Vec<NodeAddr> = self
            .inner
            .map
            .borrow()
            .shards()
            .iter()
            .map(|s| s.primary.clone())
            .collect();
        for seed in &self.inner.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut last_error = Error::new(ErrorKind::ClusterDown, "no node to ask for the slot map");
        for node in candidates {
            match self.send_to(&node, cmd("CLUSTER").arg("SLOTS")).await {
                Ok(Value::Error(line)) => last_error = server_error(&line),
                Ok(reply) => match SlotMap::from_cluster_slots_with_host(&reply, &node.host) {
                    Ok(map) if map.covered_slots() > 0 => return Ok(map),
                    Ok(_) => {
                        last_error = Error::new(
                            ErrorKind::ClusterDown,
                            format!("{node} reports no slot assigned"),
                        )
                    }
                    Err(e) => last_error = e,
                },
                Err(e) => {
                    tracing::debug!(%node, error = %e, "slot map fetch failed");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// Starts a background refresh unless one ran recently or is running.
    fn schedule_refresh(&self) {
        let mut state = self.inner.refresh.borrow_mut();
        let recent = state
            .last
            .is_some_and(|t| t.elapsed() < self.inner.config.min_refresh_interval);
        if state.running || recent || self.inner.closed.get() {
            return;
        }
        state.running = true;
        let weak = Rc::downgrade(&self.inner);
        tokio::task::spawn_local(async move {
            let Some(inner) = weak.upgrade() else { return };
            let client = Client { inner };
            if let Err(e) = client.refresh_slots().await {
                tracing::warn!(error = %e, "slot map refresh failed");
                client.inner.refresh.borrow_mut().last = Some(Instant::now());
            }
            client.inner.refresh.borrow_mut().running = false;
        });
    }
}

/// What a connection task starts from.
type ConnTask = (
    Weak<RefCell<Pool>>,
    Rc<Counters>,
    ConnId,
    NodeAddr,
    Rc<tokio::sync::Notify>,
    ConnOptions,
);

/// Starts a connection's task on this thread, over the engine `T`.
fn spawn_connection<T: crate::io::Transport>(task: ConnTask) {
    let (pool, counters, conn, node, wake_writer, options) = task;
    tokio::task::spawn_local(run_connection::<T>(
        pool,
        counters,
        conn,
        node,
        wake_writer,
        options,
    ));
}

async fn periodic_refresh(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.get() {
            return;
        }
        Client { inner }.schedule_refresh();
    }
}

/// The concrete engine for a new client: the runtime's when [`engine::start`] runs this
/// thread, otherwise what the configuration and the kernel allow.
fn choose_engine(requested: Engine) -> Result<Engine> {
    match (requested, engine::current()) {
        (Engine::IoUring, Some(Engine::Epoll)) => Err(Error::new(
            ErrorKind::IoUringUnavailable,
            "Engine::IoUring requested inside a runtime started without io_uring",
        )),
        (Engine::Auto, Some(running)) => Ok(running),
        (requested, _) => engine::resolve(requested),
    }
}

/// The node a command goes to now: its slot's primary, or any known node when keyless.
fn route_target(command: &Cmd, map: &SlotMap, seeds: &[NodeAddr]) -> Result<NodeAddr> {
    match route_command(command)? {
        Route::Slot(slot) => map.node_for(slot).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::ClusterDown,
                format!("no node serves slot {slot}"),
            )
        }),
        Route::AnyNode => map
            .shards()
            .first()
            .map(|s| s.primary.clone())
            .or_else(|| seeds.first().cloned())
            .ok_or_else(|| Error::new(ErrorKind::ClusterDown, "no node known")),
    }
}

/// A MOVED/ASK with an empty host means "the host you asked".
fn fill_host(mut to: NodeAddr, asked: &NodeAddr) -> NodeAddr {
    if to.host.is_empty() {
        to.host = asked.host.clone();
    }
    to
}

fn into_result(value: Value) -> Result<Value> {
    match value {
        Value::Error(line) => Err(server_error(&line)),
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Polls once, without any runtime.
    fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
        pin!(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn bad_seeds_and_no_runtime_are_config_errors() {
        let cases: [&[&str]; 3] = [&[], &["no-port"], &["127.0.0.1:7000"]];
        for seeds in cases {
            match poll_once(Client::connect(seeds, Config::default())) {
                Poll::Ready(Err(e)) => assert_eq!(e.kind(), ErrorKind::Config, "{seeds:?}"),
                other => panic!("{seeds:?}: {other:?}"),
            }
        }
    }
}
