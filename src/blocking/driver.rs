//! The blocking client: its public methods and the driver loop (rounds, connections,
//! refresh) that carries out what the core decides.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::cache::Read;
use crate::core::cluster::{Cluster, SlotMapFetch};
use crate::core::cmd::Cmd;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::judgement::Judgement;
use crate::core::plan::{BatchEntry, NodeBatch};
use crate::core::report::Reporter;
use crate::core::request::{Request, Step};
use crate::core::resp::Value;
use crate::core::round::{saturating_later, Effect, RoundLimits};
use crate::engine::Engine;
pub(super) use crate::io::random_unit;
use crate::io::SocketOptions;

use crate::core::tls::TlsConfig;
use crate::core::topology::{NodeAddr, SlotMap};

use super::poll;
use super::ring::{self, RingFeatures};
use super::transport::{Event, Transport};
use crate::core::conn::Conn;
use crate::core::pool::{ConnId, Pool, QueueLimits};

/// Which backend a blocking [`Client`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// One io_uring instance owned by the client.
    Ring,
    /// Nonblocking sockets and `poll(2)`.
    Poll,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Ring => "io_uring",
            Backend::Poll => "poll",
        })
    }
}

/// A Redis Cluster client that blocks the calling thread, on an io_uring instance of its
/// own (or `poll(2)` where io_uring is refused).
///
/// One client per thread (like the async client it is not `Send`: the ring is created
/// with `IORING_SETUP_SINGLE_ISSUER`); one connection per node in use, opened on demand.
///
/// ```no_run
/// use redis_cluster_uring::{blocking, cmd, Config, Pipeline};
/// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
/// client.query::<()>(cmd("SET").arg("greeting").arg("hello"))?;
/// let v: Option<String> = client.query(cmd("GET").arg("greeting"))?;
/// assert_eq!(v.as_deref(), Some("hello"));
/// println!("on {}", client.engine());
/// # Ok::<(), redis_cluster_uring::Error>(())
/// ```
pub struct Client {
    io: Box<dyn Transport>,
    pub(super) backend: Backend,
    pub(super) ring_features: Option<RingFeatures>,
    /// Every connection and the replies it owes (the core's pool, as in the async
    /// client): its slab keys are the backend's tokens.
    pub(super) pool: Pool,
    /// The slot map, seeds, configuration, refresh policy, read router and counters, and
    /// the decisions made from them (the core's, as in the async client).
    pub(super) cluster: Cluster,
    tls: Option<(Arc<crate::core::tls::Rustls>, TlsConfig)>,
    events: Vec<Event>,
    /// Push frames read and not yet handed over (kept to reuse the vector).
    pushes: Vec<Value>,
    /// Scratch lists of connections and tokens, kept so a round allocates none.
    scratch: (Vec<ConnId>, Vec<ConnId>, Vec<usize>),
    /// Frames read on subscriber connections, by connection id (a slab key may be
    /// reused by the time they are taken), for the [`Subscriber`]; at most
    /// `max_buffered_messages`, the oldest dropped first (counted in `link_frames_dropped`).
    pub(super) link_frames: std::collections::VecDeque<(u64, Value)>,
    pub(super) link_frames_dropped: u64,
    /// When the client-side cache's heartbeat is next looked at.
    next_heartbeat: Instant,
    /// The ring accepts submissions from the thread that created it only
    /// (`SINGLE_ISSUER`): the client stays on that thread.
    _not_send: std::marker::PhantomData<std::rc::Rc<()>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Client")
            .field("backend", &self.backend)
            .field("connections", &self.pool.connection_count())
            .finish()
    }
}

impl Client {
    /// [`Client::connect`] with seeds already parsed; with `map`, that slot map is
    /// taken as it is instead of asking the seeds.
    pub(super) fn connect_parsed(
        parsed: Vec<NodeAddr>,
        config: Config,
        map: Option<SlotMap>,
    ) -> Result<Client> {
        let (io, backend, ring_features) = choose_backend(config.engine)?;
        let tls = match &config.tls {
            Some(tls) => Some((tls.build()?, tls.clone())),
            None => None,
        };
        tracing::debug!(%backend, ?ring_features, "blocking client backend");
        let mut client = Client {
            io,
            backend,
            ring_features,
            pool: Pool::new(Instant::now),
            cluster: Cluster::new(parsed, config, (random_unit() * u64::MAX as f64) as u64)
                .without_polling(),
            tls,
            events: Vec::new(),
            pushes: Vec::new(),
            scratch: Default::default(),
            link_frames: std::collections::VecDeque::new(),
            link_frames_dropped: 0,
            next_heartbeat: Instant::now(),
            _not_send: std::marker::PhantomData,
        };
        client.pool.use_cache(client.cluster.cache());
        match map {
            Some(map) => client.cluster.adopt_given(map, Instant::now()),
            None => client.refresh_slots()?,
        }
        Ok(client)
    }

    /// Connects to every replica not connected yet and runs the handshakes together
    /// (within `connect_timeout`): each tells its zone and round trip before the first
    /// read is routed, so `AzAffinity` and `Nearest` choose on facts from the start. A
    /// replica that cannot be reached is left to the router's fallback.
    pub(super) fn warm_up_replicas(&mut self) {
        let now = Instant::now();
        let pool = &self.pool;
        let replicas = self
            .cluster
            .warm_ups(pool.nodes(), now, |r| pool.find(r).is_some());
        if replicas.is_empty() {
            return;
        }
        // One deadline for the whole warm-up: connects one after another share it, and the
        // handshakes then run together until it.
        let deadline = saturating_later(now, self.cluster.config().connect_timeout);
        for replica in &replicas {
            if let Err(e) = self.open_connection(replica, false, deadline) {
                tracing::debug!(node = %replica, error = %e, "replica warm-up failed");
            }
        }
        self.pump(None, Some(deadline), None);
    }

    /// The shared path of `execute`, `query_pipeline` and `query`: the request expands
    /// the pipeline (refusals, splits, fan-outs) and runs its rounds.
    pub(super) fn execute_commands(
        &mut self,
        cmds: &[Cmd],
        reporter: Option<&mut Reporter>,
    ) -> Result<Vec<Result<Value>>> {
        self.execute_judged(cmds, Judgement::all(cmds), reporter, Vec::new())
    }

    /// [`Client::execute_commands`] for commands judged already (`judged[i]` is
    /// `cmds[i]`'s); reply i of `reads` fills the client-side cache.
    pub(super) fn execute_judged(
        &mut self,
        cmds: &[Cmd],
        judged: Vec<Judgement>,
        reporter: Option<&mut Reporter>,
        reads: Vec<(usize, Read)>,
    ) -> Result<Vec<Result<Value>>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        self.housekeeping();
        let deadline = deadline_after(self.cluster.config().request_timeout);
        let mut request = self
            .cluster
            .pipeline_judged(cmds, judged, self.pool.nodes(), deadline, reporter)
            .caching(reads);
        self.drive(&mut request, deadline);
        self.maybe_refresh();
        request.results()
    }

    /// `cmds` sent as they are (command i pinned to `pins[i]` when given), to the end.
    /// `traced`: a caller's request, not a slot-map fetch.
    pub(super) fn run(
        &mut self,
        cmds: &[Cmd],
        deadline: Option<Instant>,
        pins: Vec<Option<NodeAddr>>,
        limits: RoundLimits,
        traced: bool,
    ) -> Result<Vec<Result<Value>>> {
        let mut request =
            self.cluster
                .plain(cmds, pins, self.pool.nodes(), deadline, limits, traced);
        self.drive(&mut request, deadline);
        request.results()
    }

    /// The driver: does what the request says (write, wait, sleep, stop), moves replies
    /// into it and applies its effects. No decision is made here.
    pub(super) fn drive(&mut self, request: &mut Request<'_>, deadline: Option<Instant>) {
        let exec = self.pool.new_exec_reading(
            request.reply_slots(),
            request.take_reads(),
            request.commands(),
        );
        loop {
            match request.poll(Instant::now(), self.cluster.map(), self.cluster.seeds()) {
                Step::Done => break,
                Step::Sleep(at) => {
                    // A retry's pause: the time to refresh the map it will be routed by.
                    self.maybe_refresh();
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                }
                Step::Write(NodeBatch { node, entries, buf }) => {
                    let bytes = self.write_batch(exec, &node, &entries, buf, deadline);
                    request.written(node, entries, bytes, Instant::now());
                }
                Step::Wait => {
                    let all_in = self.pump(Some(exec), deadline, Some(request));
                    let pool = &mut self.pool;
                    request.waited(all_in, |index| pool.take_reply(exec, index));
                    if !all_in {
                        self.close_late();
                    }
                    self.apply_effects(request.take_effects());
                }
            }
        }
        self.pool.abandon(exec);
    }

    pub(super) fn apply_effects(&mut self, effects: impl Iterator<Item = Effect>) {
        // The connections that timed out are closed already.
        let _timed_out = self.cluster.apply_effects(effects, Instant::now);
    }

    /// Queues one batch of `exec` on its node's connection (opened when there is none);
    /// returns the bytes queued, 0 when they could not be (its entries then fail unsent).
    pub(super) fn write_batch(
        &mut self,
        exec: usize,
        node: &NodeAddr,
        entries: &[BatchEntry],
        buf: bytes::BytesMut,
        deadline: Option<Instant>,
    ) -> usize {
        let conn = self.connection_for(node, deadline);
        let limits = QueueLimits::of(self.cluster.config());
        self.pool.queue_batch(conn, exec, entries, buf, limits)
    }

    /// After a deadline passed (and the replies that came were taken): the connections
    /// still owing replies are closed, since a reply given up on could not be matched
    /// later.
    pub(super) fn close_late(&mut self) {
        let mut late = Vec::new();
        self.pool.awaiting(&mut late);
        for conn in late {
            if let Some(node) = self.pool.addr(conn) {
                tracing::debug!(%node, "request timed out; connection closed");
            }
            self.close(conn);
        }
    }

    /// Moves bytes until no connection owes a reply or a handshake answer (true), or the
    /// deadline passes (false). Replies land in `exec`; a connection that fails gives
    /// each of its commands a `Failed` reply, marked sent or not. When `request`
    /// reports, each wait ends at the first connection's replies, and the request hears
    /// which replies are in after each.
    pub(super) fn pump(
        &mut self,
        exec: Option<usize>,
        deadline: Option<Instant>,
        mut request: Option<&mut Request<'_>>,
    ) -> bool {
        let reports = request.as_ref().is_some_and(|r| r.reports());
        let limit = self.cluster.config().connect_timeout;
        let mut awaiting = std::mem::take(&mut self.scratch.1);
        let mut tokens = std::mem::take(&mut self.scratch.2);
        let all_in = loop {
            if let (Some(r), Some(exec)) = (request.as_deref_mut().filter(|_| reports), exec) {
                let pool = &self.pool;
                r.note_replies(Instant::now(), |i| pool.has_reply(exec, i));
            }
            let mut failed: Vec<(ConnId, Error)> = Vec::new();
            self.flush_writes(&mut failed);
            let now = Instant::now();
            let mut wake = deadline;
            self.pool.awaiting(&mut awaiting);
            tokens.clear();
            for &conn in &awaiting {
                if let Some(error) = self.pool.handshake_overdue(conn, now, limit) {
                    failed.push((conn, error));
                    continue;
                }
                if let Some(due) = self.pool.handshake_due(conn, limit) {
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                }
                tokens.push(conn.key);
            }
            if !failed.is_empty() {
                for (conn, error) in failed {
                    self.fail(conn, &error);
                }
                continue;
            }
            if tokens.is_empty() {
                break true;
            }
            if deadline.is_some_and(|d| now >= d) {
                break false;
            }
            let timeout = wake.map(|w| w.saturating_duration_since(now));
            // Reporting: wake at the first reply, so each batch's round trip is its own.
            let want = if reports { 1 } else { tokens.len() };
            self.wait_and_handle(&tokens, want, timeout);
        };
        self.scratch.1 = awaiting;
        self.scratch.2 = tokens;
        all_in
    }

    /// Hands every connection's pending output to the backend where its previous write
    /// is done; a connection whose output cannot be made (TLS) goes to `failed`.
    pub(super) fn flush_writes(&mut self, failed: &mut Vec<(ConnId, Error)>) {
        let mut ids = std::mem::take(&mut self.scratch.0);
        self.pool.open_ids(&mut ids);
        for &conn in &ids {
            if !self.pool.wants_write(conn) || !self.io.can_write(conn.key) {
                continue;
            }
            match self.pool.output(conn) {
                Some(Some(out)) => {
                    self.cluster.counters().add_write(out.bytes.len());
                    self.io.write(conn.key, out)
                }
                Some(None) => {}
                // Failed making its output (TLS): the pool failed it; the socket goes.
                None => failed.push((conn, Error::new(ErrorKind::Io, "connection failed"))),
            }
        }
        self.scratch.0 = ids;
    }

    /// One wait of the backend for `want` reads on `awaiting` (or `timeout`), then what
    /// it saw is applied: replies land in their execs, and sends the replies prove read
    /// are settled.
    pub(super) fn wait_and_handle(
        &mut self,
        awaiting: &[usize],
        want: usize,
        timeout: Option<Duration>,
    ) {
        let mut events = std::mem::take(&mut self.events);
        if let Err(e) = self.io.wait(awaiting, want, timeout, &mut events) {
            // The backend itself failed: every connection waiting is lost.
            let error = Error::io(format!("{} backend", self.backend), e);
            for &token in awaiting {
                if let Some(conn) = self.pool.id_at(token) {
                    self.fail(conn, &error);
                }
            }
        }
        self.handle(&mut events);
        self.events = events;
        let mut ids = std::mem::take(&mut self.scratch.0);
        self.pool.open_ids(&mut ids);
        for &conn in &ids {
            self.io.settle(conn.key, self.pool.answered(conn));
        }
        self.scratch.0 = ids;
    }

    /// Applies what the backend saw.
    fn handle(&mut self, events: &mut Vec<Event>) {
        for event in events.drain(..) {
            match event {
                Event::Read(token, bytes) => {
                    self.cluster.counters().add_read(bytes);
                    let (Some(conn), Some(input)) = (self.pool.id_at(token), self.io.input(token))
                    else {
                        continue;
                    };
                    let mut pushes = std::mem::take(&mut self.pushes);
                    let received = self.pool.receive(conn, input, &mut pushes, Instant::now);
                    if self.pool.is_subscriber(conn) {
                        let cap = self.cluster.config().max_buffered_messages.max(1);
                        for frame in pushes.drain(..) {
                            if self.link_frames.len() >= cap {
                                self.link_frames.pop_front();
                                self.link_frames_dropped += 1;
                            }
                            self.link_frames.push_back((conn.id, frame));
                        }
                    } else if !pushes.is_empty() {
                        let node = self.pool.addr(conn).cloned();
                        for push in pushes.drain(..) {
                            self.cluster.counters().add_push();
                            if let (Some(handler), Some(node)) =
                                (&self.cluster.config().push_handler, &node)
                            {
                                handler.call(node, push);
                            }
                        }
                    }
                    self.pushes = pushes;
                    if let Err(error) = received {
                        self.fail(conn, &error);
                    }
                }
                Event::Closed(token) => {
                    if let Some(conn) = self.pool.id_at(token) {
                        let node = self.pool.addr(conn).map(ToString::to_string);
                        let error = Error::new(
                            ErrorKind::Io,
                            format!("{} closed the connection", node.unwrap_or_default()),
                        );
                        self.fail(conn, &error);
                    }
                }
                Event::Failed(token, e) => {
                    if let Some(conn) = self.pool.id_at(token) {
                        let node = self.pool.addr(conn).map(ToString::to_string);
                        self.fail(conn, &Error::io(node.unwrap_or_default(), e));
                    }
                }
            }
        }
    }

    /// Ends a connection: its waiting commands get `error` (marked sent or not), the
    /// node's record hears of it, and the refresh policy when the node could not be
    /// reached at all.
    pub(super) fn fail(&mut self, conn: ConnId, error: &Error) {
        if let Some(node) = self.pool.addr(conn) {
            tracing::debug!(%node, %error, "connection failed");
        }
        self.pool.fail(conn, error);
        let now = Instant::now();
        for node in self.pool.take_unreachable() {
            self.cluster.unreachable(&node, now);
        }
        self.close(conn);
    }

    /// Closes a connection: its socket leaves the backend, its slab key is freed.
    pub(super) fn close(&mut self, conn: ConnId) {
        self.pool.close(conn);
        self.remove(&[conn]);
    }

    /// Removes closed connections' sockets and frees their slab keys.
    pub(super) fn remove(&mut self, closed: &[ConnId]) {
        for &conn in closed {
            if self.pool.addr(conn).is_some() {
                self.io.remove(conn.key);
                self.pool.release(conn);
            }
        }
    }

    /// The connection to `node`, opened (connected, registered, handshake queued) when
    /// there is none.
    pub(super) fn connection_for(
        &mut self,
        node: &NodeAddr,
        until: Option<Instant>,
    ) -> Result<ConnId> {
        if let Some(conn) = self.pool.find(node) {
            return Ok(conn);
        }
        // After failures in a row, the same reconnect backoff as the async client, but
        // never past the request's deadline (`until`).
        let now = Instant::now();
        let jitter = 0.5 + 0.5 * random_unit();
        let mut wait = self
            .cluster
            .reconnect_delay(self.pool.nodes(), node, now, jitter);
        if let Some(until) = until {
            wait = wait.min(until.saturating_duration_since(now));
        }
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let deadline = saturating_later(Instant::now(), self.cluster.config().connect_timeout);
        self.open_connection(node, false, deadline)
    }

    /// Opens a connection to `node` (connected, registered, handshake queued): one that
    /// serves routed requests, or with `events_only` a subscriber's (kept out of the
    /// routing table; every frame on it is an event, see [`Client::link_frames`]). A
    /// connection that cannot be made fails in the pool like any other, so the node's
    /// record and the refresh policy hear of it.
    pub(super) fn open_connection(
        &mut self,
        node: &NodeAddr,
        events_only: bool,
        connect_by: Instant,
    ) -> Result<ConnId> {
        let config = self.cluster.config();
        let buffer = config.read_buffer_size;
        let (conn, setup) = match self.cluster.connection(node, self.tls.as_ref()) {
            Ok(conn) => (conn, Ok(())),
            Err(e) => (Conn::stillborn(node.clone(), config.decode_limits), Err(e)),
        };
        let conn = if events_only {
            self.pool.open_subscriber(conn, buffer)
        } else {
            self.pool.open(conn, buffer)
        };
        let connected = setup
            .and_then(|()| {
                super::transport::connect(
                    node,
                    &SocketOptions::of(self.cluster.config()),
                    connect_by,
                )
            })
            .and_then(|stream| {
                self.io
                    .add(conn.key, stream, buffer)
                    .map_err(|e| Error::io(format!("{node}: register the socket"), e))
            });
        match connected {
            Ok(()) => {
                self.pool.socket_up(conn);
                self.cluster.counters().add_connect();
                Ok(conn)
            }
            Err(e) => {
                self.pool.fail(conn, &e);
                let now = Instant::now();
                for node in self.pool.take_unreachable() {
                    self.cluster.unreachable(&node, now);
                }
                self.pool.release(conn);
                Err(e)
            }
        }
    }

    /// Between requests: connections the servers closed while idle are noticed (so
    /// nothing is written to them), idle ones past `idle_timeout` are closed, and the
    /// periodic refresh runs when due.
    pub(super) fn housekeeping(&mut self) {
        self.take_pending_input();
        if let Some(idle) = self.cluster.config().idle_timeout {
            let stale = self.pool.close_idle(Instant::now(), Some(idle), |_| true);
            self.remove(&stale);
        }
        self.maybe_refresh();
    }

    /// Applies what idle connections received since the last request, without waiting:
    /// a close, or the client-side cache's invalidations (so a hit never serves an entry
    /// whose invalidation is already in this process). The ring enters the kernel only
    /// when a completion is pending; `poll(2)` asks once.
    pub(super) fn take_pending_input(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        let caching = self.cluster.config().cache.is_some();
        if self.io.peek(&mut events, caching).is_ok() && !events.is_empty() {
            // Between requests a read is pushes, a heartbeat's reply (or what ends the
            // connection), a close ends it.
            self.handle(&mut events);
        }
        self.events = events;
        self.cache_heartbeat();
    }

    /// The client-side cache's heartbeat (`Pool::heartbeat`), looked at no more than
    /// four times per interval: a `PING` it queues is written at once, its reply read
    /// by a later call.
    fn cache_heartbeat(&mut self) {
        let Some(every) = self
            .cluster
            .config()
            .cache
            .as_ref()
            .map(|c| c.heartbeat_interval())
        else {
            return;
        };
        let now = Instant::now();
        if now < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = now + every / 4;
        if self.pool.heartbeat(now) {
            let mut failed = Vec::new();
            self.flush_writes(&mut failed);
            for (conn, error) in failed {
                self.fail(conn, &error);
            }
            let mut events = std::mem::take(&mut self.events);
            // Submitted, not waited for.
            if self
                .io
                .wait(&[], 0, Some(Duration::ZERO), &mut events)
                .is_ok()
            {
                self.handle(&mut events);
            }
            self.events = events;
        }
    }

    /// Refreshes the slot map if the rounds asked for it and the last refresh is older
    /// than `min_refresh_interval`.
    pub(super) fn maybe_refresh(&mut self) {
        if !self.cluster.wants_refresh(Instant::now()) {
            return;
        }
        if let Err(e) = self.refresh_slots() {
            tracing::warn!(error = %e, "slot map refresh failed");
        }
    }

    pub(super) fn fetch_slot_map(&mut self) -> Result<SlotMap> {
        let mut fetch = self.cluster.fetch(Instant::now());
        while let Some(group) = fetch.next_group() {
            // The group's questions are in flight together, in one submission.
            let (cmds, pins) = SlotMapFetch::questions(&group);
            let deadline = deadline_after(Some(fetch.budget()));
            let replies = self.run(&cmds, deadline, pins, fetch.limits(), false)?;
            if let Some(map) = fetch.group_answered(&group, replies) {
                return Ok(map);
            }
        }
        Err(fetch.into_error())
    }
}

/// The backend for `requested` (after the environment override): the ring when the
/// kernel takes it, `poll` otherwise (or an error when io_uring was demanded).
fn choose_backend(
    requested: Engine,
) -> Result<(Box<dyn Transport>, Backend, Option<RingFeatures>)> {
    let requested = match (requested, Engine::from_env()?) {
        (Engine::Auto, Some(forced)) => forced,
        (r, _) => r,
    };
    let ring = || match ring::Ring::new() {
        Ok(ring) => {
            let features = ring.features();
            Ok((
                Box::new(ring) as Box<dyn Transport>,
                Backend::Ring,
                Some(features),
            ))
        }
        Err(e) => Err(Error::new(
            ErrorKind::IoUringUnavailable,
            format!("io_uring refused: {e}"),
        )),
    };
    let poll = || {
        (
            Box::new(poll::Poll::new()) as Box<dyn Transport>,
            Backend::Poll,
            None,
        )
    };
    match requested {
        Engine::Epoll => Ok(poll()),
        Engine::IoUring | Engine::Ring | Engine::Compio => ring(),
        Engine::Auto => match ring() {
            Ok(r) => Ok(r),
            Err(e) => {
                tracing::warn!(reason = %e, "io_uring unavailable, the blocking client uses poll");
                Ok(poll())
            }
        },
    }
}

/// `now + timeout`; `None` (no deadline) when there is no timeout.
pub(super) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| saturating_later(Instant::now(), t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_seeds_are_config_errors_before_any_io() {
        let cases: [&[&str]; 2] = [&[], &["no-port"]];
        for seeds in cases {
            let e = Client::connect(seeds, Config::default()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{seeds:?}");
        }
        let e = Client::connect(&["rediss://127.0.0.1:1"], Config::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "rediss:// without Config::tls");
    }

    #[test]
    fn a_refused_seed_is_an_io_error_on_both_backends() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        for engine in [Engine::IoUring, Engine::Epoll] {
            let config = Config::default().engine(engine);
            match Client::connect(&["127.0.0.1:1"], config) {
                Err(e) if e.kind() == ErrorKind::IoUringUnavailable => {}
                Err(e) => assert_eq!(e.kind(), ErrorKind::Io, "{engine}: {e}"),
                Ok(_) => panic!("connected to nothing"),
            }
        }
    }
}
