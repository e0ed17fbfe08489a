//! The async client: its public methods and the driver loop (rounds, connections,
//! refreshes) that carries out what the core decides.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::core::cache::Read;
use crate::core::cluster::Cluster;
use crate::core::cmd::{cmd, Cmd};
use crate::core::config::Config;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::judgement::Judgement;
pub use crate::core::pipeline::Pipeline;
use crate::core::plan::{BatchEntry, NodeBatch};
use crate::core::refresh::UNRESPONSIVE_AFTER;
use crate::core::reply::server_error;
use crate::core::report::Reporter;
use crate::core::request::{Request, Step};
use crate::core::resp::Value;
use crate::core::round::{classify_reply, Effect, ReplyAction, RoundLimits, RoundReply, Rounds};
use crate::core::route::Route;
use crate::core::stats::Counters;
use crate::core::tls::TlsConfig;
use crate::core::topology::{NodeAddr, SlotMap};
use crate::engine::{self, Engine};
use crate::io::compio::CompioStream;
use crate::io::epoll::EpollStream;
pub(super) use crate::io::random_unit;
use crate::io::ring::RingStream;
use crate::io::rt;
use crate::io::uring::UringStream;
use crate::io::SocketOptions;

use crate::client::connection::{run_connection, ConnOptions, Link};
use crate::core::conn::Conn;
use crate::core::pool::{ConnId, Hook, Pool, QueueLimits};

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) pool: Rc<RefCell<Pool>>,
    /// The slot map, seeds, refresh policy, read router and counters, and the decisions
    /// made from them (the core's, as in the blocking client). Never borrowed across an
    /// `.await`.
    pub(super) cluster: RefCell<Cluster>,
    /// The cluster's configuration and counters, shared (read everywhere).
    pub(super) config: Rc<Config>,
    pub(super) counters: Rc<Counters>,
    /// The engine in use (never `Auto`).
    pub(super) engine: Engine,
    /// Wakes the background refresh loop: a refresh was asked for.
    pub(super) refresh_wake: Rc<tokio::sync::Notify>,
    pub(super) closed: Cell<bool>,
    /// Answers from the client-side cache since the caller last yielded to the loop.
    pub(super) hits: Cell<u32>,
    /// TLS, built once from `Config::tls`.
    pub(super) tls: Option<(std::sync::Arc<crate::core::tls::Rustls>, TlsConfig)>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The refresh loop holds no strong reference: woken, it sees the client gone.
        self.refresh_wake.notify_one();
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
/// use redis_cluster_uring::{engine, AsyncCommands, Client, Config, Pipeline};
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
    pub(super) inner: Rc<Inner>,
}

/// Frees an exec's slab entry however its future ends (finished, timed out, dropped).
pub(super) struct ExecGuard {
    pub(super) pool: Rc<RefCell<Pool>>,
    pub(super) exec: usize,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        self.pool.borrow_mut().abandon(self.exec);
    }
}

impl Client {
    /// Connects to a cluster through any of `seeds` and loads its slot map. A seed is
    /// `host:port` or a URL, `redis://[[user]:password@]host[:port]` (see
    /// [`crate::core::url`]); credentials in the URLs serve when the configuration names none.
    ///
    /// Fails with [`ErrorKind::Config`] for unparsable seeds, [`ErrorKind::Auth`] when the
    /// credentials are refused, and with the last connection error when no seed answers
    /// `CLUSTER SLOTS`.
    pub async fn connect<S: AsRef<str>>(seeds: &[S], mut config: Config) -> Result<Client> {
        let parsed = crate::core::url::parse_seeds(seeds, &mut config)?;
        if !crate::io::rt::available() {
            return Err(Error::new(
                ErrorKind::Config,
                "Client::connect must run inside engine::start or a tokio runtime",
            ));
        }
        let engine = choose_engine(config.engine)?;
        let tls = match &config.tls {
            Some(tls) => Some((tls.build()?, tls.clone())),
            None => None,
        };
        tracing::debug!(%engine, "client engine");
        let cluster = Cluster::new(parsed, config, (random_unit() * u64::MAX as f64) as u64);
        let mut pool = Pool::new(Instant::now);
        pool.use_cache(cluster.cache());
        let client = Client {
            inner: Rc::new(Inner {
                engine,
                pool: Rc::new(RefCell::new(pool)),
                config: cluster.shared_config(),
                counters: cluster.counters().clone(),
                cluster: RefCell::new(cluster),
                refresh_wake: Rc::new(tokio::sync::Notify::new()),
                closed: Cell::new(false),
                hits: Cell::new(0),
                tls,
            }),
        };
        client.refresh_slots().await?;
        client.inner.pool.borrow_mut().on_unreachable({
            let wake = client.inner.refresh_wake.clone();
            Hook(Rc::new(move || wake.notify_one()))
        });
        rt::spawn_local(refresh_loop(
            Rc::downgrade(&client.inner),
            client.inner.refresh_wake.clone(),
        ));
        if let Some(idle) = client.inner.config.idle_timeout {
            rt::spawn_local(close_idle_connections(Rc::downgrade(&client.inner), idle));
        }
        if let Some(cache) = &client.inner.config.cache {
            let every = cache.heartbeat_interval();
            rt::spawn_local(heartbeat_loop(Rc::downgrade(&client.inner), every));
        }
        Ok(client)
    }

    /// One regular command on its slot's shared connection without the pipeline's
    /// vectors: encoded straight into the connection's buffer, its reply kept inline in
    /// the exec, nothing allocated in the steady state. Anything but a plain answer (a
    /// redirect, a retry, a lost connection, the deadline, a keyless command) goes on
    /// through the round machine from that point, exactly as a pipeline of one would.
    pub(super) async fn query_one(
        &self,
        command: &Cmd,
        judged: &Judgement,
        read: Option<Read>,
    ) -> Result<Value> {
        self.ensure_open()?;
        self.inner.counters.add_execution();
        let deadline = deadline_after(self.inner.config.request_timeout);
        let cmds = std::slice::from_ref(command);
        let conn = match judged.route(command) {
            Ok(Route::Slot(slot)) => {
                let map = self.inner.cluster.borrow().map().clone();
                map.node_for(slot).map(|node| self.connection_for(node))
            }
            _ => None,
        };
        // Built only off the fast path: it allocates.
        let rounds = || Rounds::new(1, RoundLimits::of(&self.inner.config), deadline);
        let Some(conn) = conn else {
            // Keyless, unroutable or cross-slot: the round machine says what happens.
            let mut request = Request::resume(cmds, rounds(), false);
            self.drive(&mut request, deadline, Lane::Shared, None).await;
            return request
                .results()?
                .pop()
                .unwrap_or_else(|| Err(Error::protocol("no reply")));
        };
        let pool = &self.inner.pool;
        // As every request's exec: a write's keys leave the cache before it is sent.
        let reads = read.map(|r| vec![(0, r)]).unwrap_or_default();
        let exec = pool.borrow_mut().new_exec_reading(1, reads, cmds);
        let guard = ExecGuard {
            pool: pool.clone(),
            exec,
        };
        {
            let queue = QueueLimits::of(&self.inner.config);
            let mut pool = pool.borrow_mut();
            if let Err(e) = pool.enqueue_command(conn, exec, command, queue) {
                let entry = BatchEntry {
                    index: 0,
                    asking: false,
                };
                pool.fail_unsent(exec, std::slice::from_ref(&entry), &e);
            }
        }
        let all_in = self.wait_round(exec, deadline).await;
        let reply = pool.borrow_mut().take_reply(exec, 0);
        if let Some(RoundReply::Value(value)) = &reply {
            if classify_reply(value) == ReplyAction::Accept {
                return match reply {
                    Some(RoundReply::Value(Value::Error(line))) => Err(server_error(&line)),
                    Some(RoundReply::Value(value)) => Ok(value),
                    _ => Err(Error::protocol("no reply")),
                };
            }
        }
        // The uncommon case: judged like round one of a pipeline of one, then driven on.
        let node = pool
            .borrow()
            .addr(conn)
            .cloned()
            .unwrap_or_else(|| NodeAddr::new("?", 0));
        drop(guard);
        let mut rounds = rounds();
        if !all_in {
            rounds.deadline_passed();
        }
        rounds.judge(0, &node, reply);
        self.apply_effects(rounds.take_effects(), Lane::Shared);
        let mut request = Request::resume(cmds, rounds, true);
        self.drive(&mut request, deadline, Lane::Shared, None).await;
        request
            .results()?
            .pop()
            .unwrap_or_else(|| Err(Error::protocol("no reply")))
    }

    /// After an answer from the client-side cache, which waited for nothing: every
    /// [`HITS_BETWEEN_YIELDS`]th yields to the loop, so callers that only hit hot keys
    /// still let it read the invalidations that end those entries.
    pub(super) async fn after_hit(&self) {
        let n = self.inner.hits.get() + 1;
        if n >= HITS_BETWEEN_YIELDS {
            self.inner.hits.set(0);
            rt::yield_now().await;
        } else {
            self.inner.hits.set(n);
        }
    }

    /// Closes the client: new requests fail with [`ErrorKind::Shutdown`]; requests in
    /// flight get up to `grace` to finish, then fail with the same kind; connections are
    /// closed. Other clones of this client see the same closed state.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.closed.set(true);
        let deadline = crate::core::round::saturating_later(Instant::now(), grace);
        while self.inner.pool.borrow().exec_count() > 0 && Instant::now() < deadline {
            rt::sleep(Duration::from_millis(1)).await;
        }
        self.inner
            .pool
            .borrow_mut()
            .fail_all(&Error::new(ErrorKind::Shutdown, "client shut down"));
        // Let the connection tasks run to their end.
        rt::yield_now().await;
    }

    pub(super) fn ensure_open(&self) -> Result<()> {
        if self.inner.closed.get() {
            return Err(Error::new(ErrorKind::Shutdown, "client shut down"));
        }
        Ok(())
    }

    /// Runs commands on the shared connections: the request expands the pipeline
    /// (refusals, splits, fan-outs) and runs its rounds.
    pub(super) async fn execute_commands(
        &self,
        cmds: &[Cmd],
        reporter: Option<&mut Reporter>,
    ) -> Result<Vec<Result<Value>>> {
        self.execute_judged(cmds, Judgement::all(cmds), reporter, Vec::new())
            .await
    }

    /// [`Client::execute_commands`] for commands judged already (`judged[i]` is
    /// `cmds[i]`'s); reply i of `reads` fills the client-side cache.
    pub(super) async fn execute_judged(
        &self,
        cmds: &[Cmd],
        judged: Vec<Judgement>,
        reporter: Option<&mut Reporter>,
        reads: Vec<(usize, Read)>,
    ) -> Result<Vec<Result<Value>>> {
        self.ensure_open()?;
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = deadline_after(self.inner.config.request_timeout);
        let mut request = {
            let pool = self.inner.pool.borrow();
            self.inner.cluster.borrow_mut().pipeline_judged(
                cmds,
                judged,
                pool.nodes(),
                deadline,
                reporter,
            )
        }
        .caching(reads);
        self.drive(&mut request, deadline, Lane::Shared, None).await;
        request.results()
    }

    /// Runs one blocking command on a dedicated connection: to its key's node, or to
    /// `node` when the caller named one. The deadline is the command's own timeout plus
    /// `request_timeout` (none when it blocks for ever).
    pub(super) async fn run_blocking(
        &self,
        node: Option<&NodeAddr>,
        command: &Cmd,
        timeout: Option<Duration>,
    ) -> Result<Vec<Result<Value>>> {
        self.ensure_open()?;
        self.inner.counters.add_execution();
        self.inner.counters.add_blocking();
        let cmds = std::slice::from_ref(command);
        let deadline = deadline_after(timeout);
        let pins = node.map(|n| vec![Some(n.clone())]).unwrap_or_default();
        let limits = RoundLimits::of(&self.inner.config);
        let mut request = self.request(cmds, pins, deadline, limits, true);
        self.drive(&mut request, deadline, Lane::Dedicated, None)
            .await;
        request.results()
    }

    /// Commands sent as they are, command i to `pins[i]` when given.
    /// `traced`: a caller's request, not a slot-map fetch.
    fn request<'a>(
        &self,
        cmds: &'a [Cmd],
        pins: Vec<Option<NodeAddr>>,
        deadline: Option<Deadline>,
        limits: RoundLimits,
        traced: bool,
    ) -> Request<'a> {
        let pool = self.inner.pool.borrow();
        self.inner
            .cluster
            .borrow_mut()
            .plain(cmds, pins, pool.nodes(), deadline, limits, traced)
    }

    /// Commands sent to the nodes named (`targets[i]` for command i); `traced`: a
    /// caller's request, not a slot-map fetch.
    pub(super) async fn run_pinned(
        &self,
        cmds: &[Cmd],
        targets: Vec<NodeAddr>,
        deadline: Option<Deadline>,
        limits: RoundLimits,
        traced: bool,
    ) -> Result<Vec<Result<Value>>> {
        let pins = targets.into_iter().map(Some).collect();
        let mut request = self.request(cmds, pins, deadline, limits, traced);
        self.drive(&mut request, deadline, Lane::Shared, None).await;
        request.results()
    }

    /// The driver: does what the request says (write, wait, sleep, stop), moves
    /// replies from the pool into it, and applies its effects. No decision is made here.
    /// `session`: a `WATCH` session's dedicated connection, which every batch goes to.
    pub(super) async fn drive(
        &self,
        request: &mut Request<'_>,
        deadline: Option<Deadline>,
        lane: Lane,
        session: Option<ConnId>,
    ) {
        let pool = &self.inner.pool;
        let exec = pool.borrow_mut().new_exec_reading(
            request.reply_slots(),
            request.take_reads(),
            request.commands(),
        );
        let _guard = ExecGuard {
            pool: pool.clone(),
            exec,
        };
        // Dedicated connections in use; closed if this future ends before their replies.
        let mut leases = Leases {
            pool: pool.clone(),
            conns: Vec::new(),
            max_idle: self.inner.config.blocking_pool_size,
        };
        loop {
            let step = {
                let cluster = self.inner.cluster.borrow();
                request.poll(Instant::now(), cluster.map(), cluster.seeds())
            };
            match step {
                Step::Done => return,
                Step::Sleep(at) => rt::sleep_until(at).await,
                Step::Write(NodeBatch { node, entries, buf }) => {
                    let bytes = if self.inner.closed.get() {
                        // Shut down mid-request: no new connection, nothing more sent or
                        // retried.
                        let error = Error::new(ErrorKind::Shutdown, "client shut down");
                        pool.borrow_mut().fail_unsent(exec, &entries, &error);
                        0
                    } else {
                        let conn = match (session, lane) {
                            (Some(conn), _) => conn,
                            (None, Lane::Shared) => self.connection_for(&node),
                            (None, Lane::Dedicated) => {
                                let conn = self.dedicated_connection_for(&node);
                                leases.conns.push(conn);
                                conn
                            }
                        };
                        self.dispatch(exec, conn, &entries, buf)
                    };
                    request.written(node, entries, bytes, Instant::now());
                }
                Step::Wait => {
                    let all_in = self.wait_for(exec, deadline, request).await;
                    if all_in {
                        leases.give_back();
                    }
                    request.waited(all_in, |index| pool.borrow_mut().take_reply(exec, index));
                    self.apply_effects(request.take_effects(), lane);
                }
            }
        }
    }

    pub(super) fn apply_effects(&self, effects: impl Iterator<Item = Effect>, lane: Lane) {
        let timed_out = self
            .inner
            .cluster
            .borrow_mut()
            .apply_effects(effects, Instant::now);
        // A blocking command's dedicated connection says nothing about the shared one (and
        // is closed anyway when its caller gives up).
        if lane == Lane::Shared {
            let max = self.inner.config.max_consecutive_timeouts;
            for node in timed_out {
                if self.inner.pool.borrow_mut().note_timeout(&node, max) {
                    tracing::warn!(%node, "node stopped answering; connection closed");
                }
            }
        }
        if self.inner.cluster.borrow_mut().refresh().is_due() {
            self.inner.refresh_wake.notify_one();
        }
    }

    /// Waits for the replies written; when the request reports, wakes on every reply and
    /// tells the request which are in, so the report has per-node round trips. False
    /// when the deadline came first.
    async fn wait_for(
        &self,
        exec: usize,
        deadline: Option<Deadline>,
        request: &mut Request<'_>,
    ) -> bool {
        if !request.reports() {
            return self.wait_round(exec, deadline).await;
        }
        let pool = &self.inner.pool;
        pool.borrow_mut().wake_on_each_reply(exec);
        loop {
            let all_in = {
                let pool = pool.borrow();
                request.note_replies(Instant::now(), |index| pool.has_reply(exec, index))
            };
            if all_in {
                return true;
            }
            let progress = poll_fn(|cx| pool.borrow_mut().poll_progress(exec, cx));
            if rt::timeout_at(deadline, progress).await.is_none() {
                return false;
            }
        }
    }

    /// Waits for the round's replies; false when the deadline came first.
    pub(super) async fn wait_round(&self, exec: usize, deadline: Option<Deadline>) -> bool {
        let pool = &self.inner.pool;
        let all_in = poll_fn(|cx| pool.borrow_mut().poll_exec(exec, cx));
        rt::timeout_at(deadline, all_in).await.is_some()
    }

    /// Queues one batch on a connection.
    pub(super) fn dispatch(
        &self,
        exec: usize,
        conn: ConnId,
        entries: &[BatchEntry],
        buf: BytesMut,
    ) -> usize {
        let limits = QueueLimits::of(&self.inner.config);
        self.inner
            .pool
            .borrow_mut()
            .queue_batch(Ok(conn), exec, entries, buf, limits)
    }

    /// An idle dedicated connection to `node`, or a new one (leased to the caller).
    pub(super) fn dedicated_connection_for(&self, node: &NodeAddr) -> ConnId {
        if let Some(conn) = self.inner.pool.borrow_mut().checkout_dedicated(node) {
            return conn;
        }
        self.open_connection(node, Kind::Dedicated)
    }

    pub(super) fn connection_for(&self, node: &NodeAddr) -> ConnId {
        if let Some(conn) = self.inner.pool.borrow().find(node) {
            return conn;
        }
        self.open_connection(node, Kind::Shared)
    }

    /// Registers a connection to `node` in the pool and spawns its task. A connection
    /// that cannot even be set up (credentials refused by their provider, a host that is
    /// no TLS name) is registered all the same and fails at once in its task, so whoever
    /// queued on it hears why.
    pub(super) fn open_connection(&self, node: &NodeAddr, kind: Kind) -> ConnId {
        let config = &self.inner.config;
        let buffer = config.read_buffer_size;
        let built = self
            .inner
            .cluster
            .borrow()
            .connection(node, self.inner.tls.as_ref());
        let (conn, setup_error) = match built {
            Ok(conn) => (conn, None),
            Err(e) => (Conn::stillborn(node.clone(), config.decode_limits), Some(e)),
        };
        let conn = {
            let mut pool = self.inner.pool.borrow_mut();
            match kind {
                Kind::Shared => pool.open(conn, buffer),
                Kind::Dedicated => pool.open_dedicated(conn, buffer),
                Kind::Subscriber(_) => pool.open_subscriber(conn, buffer),
            }
        };
        self.inner.counters.add_connect();
        let push_handler = match kind {
            Kind::Subscriber(handler) => Some(handler),
            _ => config.push_handler.clone(),
        };
        let options = ConnOptions {
            connect_timeout: config.connect_timeout,
            delay: self.reconnect_delay(node),
            read_buffer_size: config.read_buffer_size,
            socket: SocketOptions::of(config),
            push_handler,
            setup_error,
        };
        let link = Link {
            pool: Rc::downgrade(&self.inner.pool),
            stats: self.inner.counters.clone(),
            conn,
            addr: node.clone(),
            options,
        };
        match self.inner.engine {
            Engine::Epoll => rt::spawn_local(run_connection::<EpollStream>(link)),
            Engine::Ring => rt::spawn_local(run_connection::<RingStream>(link)),
            Engine::Compio => rt::spawn_local(run_connection::<CompioStream>(link)),
            _ => rt::spawn_local(run_connection::<UringStream>(link)),
        };
        conn
    }

    /// Backoff before reconnecting to a node whose connections failed recently: grows
    /// with the failures in a row (one per failed connection, not per command), with
    /// jitter so many clients do not reconnect in step; nothing after a success.
    pub(super) fn reconnect_delay(&self, node: &NodeAddr) -> Duration {
        self.inner.pool.borrow().nodes().reconnect_delay(
            node,
            Instant::now(),
            &self.inner.config,
            0.5 + 0.5 * random_unit(),
        )
    }

    /// One node's view of the slot map, within `budget`, no retry.
    async fn ask_slot_map(
        &self,
        node: NodeAddr,
        budget: Duration,
        limits: RoundLimits,
    ) -> Result<Value> {
        let deadline = deadline_after(Some(budget));
        self.run_pinned(
            &[cmd("CLUSTER").arg("SLOTS")],
            vec![node],
            deadline,
            limits,
            false,
        )
        .await?
        .pop()
        .unwrap_or_else(|| Err(Error::protocol("no reply")))
    }

    pub(super) async fn fetch_slot_map(&self) -> Result<SlotMap> {
        let mut fetch = self.inner.cluster.borrow_mut().fetch(Instant::now());
        while let Some(group) = fetch.next_group() {
            // The group's questions are in flight together; when one answer settles the
            // vote (FirstComplete) the others are abandoned, their replies read and
            // dropped, so a dead node costs nothing while another answers.
            let (budget, limits) = (fetch.budget(), fetch.limits());
            let mut asks: Vec<Option<SlotMapAsk<'_>>> =
                group
                    .iter()
                    .map(|node| {
                        Some(Box::pin(self.ask_slot_map(node.clone(), budget, limits))
                            as SlotMapAsk<'_>)
                    })
                    .collect();
            let settled = poll_fn(|cx| {
                for (i, slot) in asks.iter_mut().enumerate() {
                    let Some(ask) = slot else { continue };
                    let Poll::Ready(reply) = ask.as_mut().poll(cx) else {
                        continue;
                    };
                    *slot = None;
                    if let Some(map) = fetch.answer(&group[i], reply) {
                        return Poll::Ready(Some(map));
                    }
                }
                if asks.iter().all(Option::is_none) {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            })
            .await;
            if let Some(map) = settled.or_else(|| fetch.end_group()) {
                return Ok(map);
            }
        }
        Err(fetch.into_error())
    }

    /// Asks for a refresh: the background loop runs it as soon as the refresh policy
    /// allows (at once, or `min_refresh_interval` after the last).
    /// Wakes the refresh loop when the cluster machine wants a refresh (a decision made
    /// outside a round, such as a `WATCH` session's).
    pub(super) fn wake_refresh_if_due(&self) {
        if self.inner.cluster.borrow_mut().refresh().is_due() {
            self.inner.refresh_wake.notify_one();
        }
    }

    pub(super) fn schedule_refresh(&self) {
        self.inner.cluster.borrow_mut().refresh().request();
        self.inner.refresh_wake.notify_one();
    }
}

/// Runs the refreshes the policy wants, when it wants them (asked for, periodic, or
/// polling while a node is unresponsive), one at a time, until the client is dropped or
/// shut down. It holds the client only while a refresh runs.
async fn refresh_loop(inner: Weak<Inner>, wake: Rc<tokio::sync::Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed.get() {
                return;
            }
            let now = Instant::now();
            // A node of the map that could not be reached: the map may be stale.
            let unreachable = inner.pool.borrow_mut().take_unreachable();
            let mut cluster = inner.cluster.borrow_mut();
            for node in &unreachable {
                cluster.unreachable(node, now);
            }
            // A primary that stopped answering while requests wait on it.
            let (stalled, waiting) = inner.pool.borrow_mut().stalls(now, UNRESPONSIVE_AFTER);
            for node in &stalled {
                cluster.stalled(node, now);
            }
            cluster.next_look(now, waiting)
        };
        match next {
            Some(at) if at <= Instant::now() => {
                let Some(inner) = inner.upgrade() else { return };
                let client = Client { inner };
                client
                    .inner
                    .cluster
                    .borrow_mut()
                    .refresh()
                    .background_started();
                if let Err(e) = client.refresh_slots().await {
                    tracing::warn!(error = %e, "slot map refresh failed");
                }
                client
                    .inner
                    .cluster
                    .borrow_mut()
                    .refresh()
                    .background_ended();
            }
            Some(at) => {
                rt::timeout_at(Some(at), wake.notified()).await;
            }
            None => wake.notified().await,
        }
    }
}

/// Closes connections that had nothing in flight for `idle` (they reopen on demand).
/// The client-side cache's heartbeat (`Pool::heartbeat`), twice per interval, for as
/// long as the client lives.
async fn heartbeat_loop(inner: Weak<Inner>, every: Duration) {
    loop {
        rt::sleep(every / 2).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.closed.get() {
            return;
        }
        inner.pool.borrow_mut().heartbeat(Instant::now());
    }
}

async fn close_idle_connections(inner: Weak<Inner>, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        rt::sleep(tick).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.get() {
            return;
        }
        let closed = inner
            .pool
            .borrow_mut()
            .close_idle(Instant::now(), Some(idle), |_| true)
            .len();
        if closed > 0 {
            tracing::debug!(closed, "idle connections closed");
        }
    }
}

/// The concrete engine for a new client: the runtime's when [`engine::start`] (or the
/// application's own compio runtime) runs this thread, otherwise what the configuration
/// and the kernel allow.
fn choose_engine(requested: Engine) -> Result<Engine> {
    match (requested, engine::current()) {
        (Engine::IoUring, Some(Engine::Epoll)) => Err(Error::new(
            ErrorKind::IoUringUnavailable,
            "Engine::IoUring requested inside a runtime started without io_uring",
        )),
        (Engine::Auto, Some(running)) => Ok(running),
        // The ring's and compio's runtimes each carry only their own engine's sockets,
        // and those engines run only inside their own runtime.
        (requested, Some(running @ (Engine::Ring | Engine::Compio))) => {
            if requested == running {
                Ok(running)
            } else {
                Err(Error::new(
                    ErrorKind::Config,
                    format!("Engine::{requested} requested inside the {running} engine's runtime"),
                ))
            }
        }
        (requested @ (Engine::Ring | Engine::Compio), Some(running)) => Err(Error::new(
            ErrorKind::Config,
            format!("Engine::{requested} requested inside a runtime started for {running}"),
        )),
        (requested, _) => engine::resolve_in_tokio(requested),
    }
}

/// One node's `CLUSTER SLOTS` in flight during a refresh.
type SlotMapAsk<'a> = Pin<Box<dyn Future<Output = Result<Value>> + 'a>>;

/// Which kind of connection to open.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// The node's multiplexed connection, found by address.
    Shared,
    /// Leased to one caller at a time (blocking commands, `WATCH` sessions).
    Dedicated,
    /// A subscriber's: every frame it reads goes to this handler.
    Subscriber(crate::core::config::PushHandler),
}

/// Which connections a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// The node's multiplexed connection, shared by every caller.
    Shared,
    /// A connection of its own, for a blocking command.
    Dedicated,
}

/// The dedicated connections a request holds. Given back once their replies are in;
/// closed if the request ends first (timeout, dropped future), because the command may
/// still be blocked on the server and its late reply could not be matched to anyone.
pub(super) struct Leases {
    pub(super) pool: Rc<RefCell<Pool>>,
    pub(super) conns: Vec<ConnId>,
    pub(super) max_idle: usize,
}

impl Leases {
    pub(super) fn give_back(&mut self) {
        let mut pool = self.pool.borrow_mut();
        for conn in self.conns.drain(..) {
            pool.checkin_dedicated(conn, self.max_idle);
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        if self.conns.is_empty() {
            return;
        }
        let mut pool = self.pool.borrow_mut();
        for conn in self.conns.drain(..) {
            pool.close(conn);
        }
    }
}

/// A point in time the async client waits until.
pub(super) type Deadline = Instant;

/// Waits `d` on the runtime's timer (a retry's or a scan's pause).
/// Cache hits in a row before a caller yields to the loop (see [`Client::after_hit`]):
/// a hit costs well under a microsecond, so invalidations wait at most tens of
/// microseconds behind a caller that does nothing else.
pub(super) const HITS_BETWEEN_YIELDS: u32 = 64;

pub(super) async fn pause(d: Duration) {
    rt::sleep(d).await
}

/// `now + timeout`; `None` (no deadline) when there is no timeout or it is too large to
/// represent, which means the same thing in practice.
pub(super) fn deadline_after(timeout: Option<Duration>) -> Option<Deadline> {
    timeout.and_then(|t| Instant::now().checked_add(t))
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
