//! A client's connections and the replies each owes, as slab entries, for both clients:
//! no socket, no runtime and no clock here (the driver gives the pool its clock).
//!
//! Each connection is the core's sans-IO [`Conn`] (TLS records, handshake, reply FIFO,
//! push frames). The drivers own the sockets and call into the [`Pool`]: they take a
//! connection's bytes ([`Pool::output`], or [`Pool::poll_output`] for an async writer
//! task), hand it what they read ([`Pool::receive`]) and report a dead connection
//! ([`Pool::fail`]). A request queues its batches with [`Pool::enqueue`] and finds its
//! replies in its [`Exec`]. The async client's tasks wait on the pool: it keeps their
//! wakers (a writer with nothing to write, a caller waiting for replies) and wakes each
//! when its turn comes, never running them; the blocking client asks it which
//! connections still owe replies ([`Pool::awaiting`]) and blocks on its ring meanwhile.
//!
//! It also decides what happens to a connection under load and silence: the caps on a
//! connection's backlog ([`QueueLimits`]), when a node with written requests has stopped
//! answering ([`Pool::stalls`]), when timeouts in a row close a connection
//! ([`Pool::note_timeout`]), which connections are idle or serve departed nodes
//! ([`Pool::close_idle`]), and the lease of dedicated connections.
//!
//! Correlation is the connection's FIFO: Redis answers in request order, so the n-th
//! reply on a connection belongs to the n-th command queued, named by a [`ReplyTo`].
//! Nothing ever removes one except a reply or the connection's failure; a timed-out
//! request leaves its place in line (the exec is only marked abandoned), so later replies
//! never shift. A RESP3 push frame is not a reply and never takes a place.
//!
//! Two kinds of connection live here. The *shared* one per node (found by address) carries
//! every regular command of every caller. *Dedicated* ones carry one blocking command at a
//! time: leased with [`Pool::checkout_dedicated`], given back with
//! [`Pool::checkin_dedicated`] once the reply is in, or closed with [`Pool::close`] when
//! the caller gave up while the command still blocks (its late reply could not be matched
//! to anyone).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use slab::Slab;

use crate::core::cache::{Cache, Read};
use crate::core::cmd::Cmd;
use crate::core::conn::{Conn, Output};
use crate::core::error::{Error, ErrorKind};
use crate::core::handshake::ServerInfo;
#[cfg(test)]
use crate::core::nodes::NodeHealth;
use crate::core::nodes::NodeTable;
use crate::core::plan::BatchEntry;
use crate::core::resp::Value;
use crate::core::round::RoundReply;
use crate::core::topology::NodeAddr;

/// Whose reply it is: command `index` of exec `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyTo {
    exec: usize,
    index: usize,
}

/// Where an exec's replies are kept: a single command's inline (no allocation on the
/// single-command path), a pipeline's in a vector.
#[derive(Debug)]
enum Replies {
    One(Option<RoundReply>),
    Many(Vec<Option<RoundReply>>),
}

impl Default for Replies {
    fn default() -> Replies {
        Replies::One(None)
    }
}

impl Replies {
    fn get(&self, index: usize) -> Option<&Option<RoundReply>> {
        match self {
            Replies::One(r) => (index == 0).then_some(r),
            Replies::Many(v) => v.get(index),
        }
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Option<RoundReply>> {
        match self {
            Replies::One(r) => (index == 0).then_some(r),
            Replies::Many(v) => v.get_mut(index),
        }
    }
}

/// One pipeline (or single command) waiting for replies.
#[derive(Debug, Default)]
pub(crate) struct Exec {
    replies: Replies,
    outstanding: usize,
    waker: Option<Waker>,
    abandoned: bool,
    /// Wake the waiter on every reply, not only the last (per-node reports).
    wake_each: bool,
    /// A reply arrived since the waiter last looked (with `wake_each`).
    progress: bool,
    /// Reads whose replies fill the client-side cache, by reply index (empty, and
    /// allocation-free, when nothing is cached).
    reads: Vec<(usize, Read)>,
}

/// Identifies one incarnation of a connection: slab keys are reused after a connection
/// dies, the id never is, so a stale task cannot touch its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnId {
    pub(crate) key: usize,
    pub(crate) id: u64,
}

#[derive(Debug)]
struct Connection {
    id: u64,
    /// The protocol: handshake, TLS, what to write, whose reply is next.
    conn: Conn<ReplyTo>,
    /// The usual buffer size (`read_buffer_size`): a written buffer far larger is let go.
    usual: usize,
    /// The writer task, waiting for something to write.
    writer: Option<Waker>,
    closed: bool,
    dedicated: bool,
    /// A pub/sub connection: every frame it reads is an event for its subscriber (a
    /// subscribed connection answers with pushes), and nothing on it waits for a reply.
    subscriber: bool,
    /// Requests that timed out in a row waiting on this connection; reset by any reply.
    timeouts: u32,
    /// The connection is up and its handshake done (and the node table heard so).
    ready: bool,
    /// When its socket came up (registered, until then): the handshake's round trip and
    /// deadline count from here.
    opened: Instant,
    /// Last time a request was queued here (idle connections are closed after a while).
    last_used: Instant,
    /// Last time it read anything (the client-side cache's heartbeat).
    last_heard: Instant,
    /// The cache's heartbeat `PING` in flight: answered once `Conn::answered` reaches
    /// the count, sent at the instant.
    ping: Option<(u64, Instant)>,
    /// While written requests wait for replies: when the connection last made progress
    /// (its first write, or its last read), for noticing a node that stopped answering.
    waiting_since: Option<Instant>,
}

impl Connection {
    /// Whether `bytes` more to write and `sinks` more replies to await fit under the
    /// caps. One request is always accepted on an idle connection, however large: the
    /// caps are on backlog, not on request size.
    fn admit(&self, bytes: usize, sinks: usize, limits: QueueLimits) -> Result<(), Error> {
        let max_queued = limits.max_queued_bytes;
        let queued = self.conn.queued_bytes();
        if queued > 0 && queued + bytes > max_queued {
            return Err(Error::new(
                ErrorKind::Overloaded,
                format!(
                    "{} has {queued} bytes queued, over the {max_queued}-byte limit",
                    self.conn.addr()
                ),
            ));
        }
        let awaited = self.conn.callers_awaited();
        if awaited > 0 && awaited + sinks > limits.max_pending_replies {
            return Err(Error::new(
                ErrorKind::Overloaded,
                format!(
                    "{} has {awaited} replies outstanding, over the limit of {}",
                    self.conn.addr(),
                    limits.max_pending_replies
                ),
            ));
        }
        Ok(())
    }
}

/// Caps on one connection's queues, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    /// Unwritten bytes (backlog behind a slow or stalled node).
    pub(crate) max_queued_bytes: usize,
    /// Replies awaited (sinks), written or not.
    pub(crate) max_pending_replies: usize,
}

impl QueueLimits {
    /// The caps `config` sets.
    pub(crate) fn of(config: &crate::core::config::Config) -> QueueLimits {
        QueueLimits {
            max_queued_bytes: config.max_queued_bytes,
            max_pending_replies: config.max_pending_replies,
        }
    }

    /// No cap (tests, and the cache's heartbeat: one `PING` is always let through).
    pub(crate) const UNLIMITED: QueueLimits = QueueLimits {
        max_queued_bytes: usize::MAX,
        max_pending_replies: usize::MAX,
    };
}

/// Called when a connection could not reach its node, or requests start waiting on a
/// shared connection while nobody watches for stalls (the client's refresh loop).
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Rc<dyn Fn()>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// All connections and all in-flight execs of one client.
#[derive(Debug)]
pub(crate) struct Pool {
    /// The driver's clock (a simulation gives its own).
    clock: fn() -> Instant,
    conns: Slab<Connection>,
    by_addr: HashMap<NodeAddr, usize>,
    execs: Slab<Exec>,
    next_id: u64,
    /// Idle dedicated connections per node, most recently used last.
    idle: HashMap<NodeAddr, Vec<ConnId>>,
    /// Each node's health and handshake facts (the core's node table).
    nodes: NodeTable,
    /// Nodes a connection could not reach since the refresh loop last looked (at most one
    /// entry per node).
    unreachable: Vec<NodeAddr>,
    /// Called when a node could not be reached (the client's refresh loop), and when
    /// requests start waiting while the loop is not watching for stalls.
    on_unreachable: Option<Hook>,
    /// The refresh loop checks for stalled connections (requests are waiting).
    watching_stalls: bool,
    /// The client-side cache, shared with the `Cluster` (which answers lookups from it
    /// and drops the slots that move): filled here as replies arrive, invalidated by the
    /// pushes read here, emptied of a connection's entries when it ends here.
    cache: Rc<RefCell<Cache>>,
}

impl Pool {
    /// An empty pool that reads the time from `clock`.
    pub(crate) fn new(clock: fn() -> Instant) -> Pool {
        Pool {
            clock,
            conns: Slab::new(),
            by_addr: HashMap::new(),
            execs: Slab::new(),
            next_id: 0,
            idle: HashMap::new(),
            nodes: NodeTable::default(),
            unreachable: Vec::new(),
            on_unreachable: None,
            watching_stalls: false,
            cache: Rc::new(RefCell::new(Cache::new(None, Rc::default()))),
        }
    }

    /// Shares the cluster's client-side cache (`Cluster::cache`), read with the pool's
    /// clock.
    pub(crate) fn use_cache(&mut self, cache: Rc<RefCell<Cache>>) {
        self.cache = cache;
    }

    /// The live connection to `addr`, if there is one.
    pub(crate) fn find(&self, addr: &NodeAddr) -> Option<ConnId> {
        let key = *self.by_addr.get(addr)?;
        Some(ConnId {
            key,
            id: self.conns[key].id,
        })
    }

    /// Registers a new connection (its engine task is started by the caller) and returns
    /// its id and the notifier its writer waits on.
    pub(crate) fn open(&mut self, conn: Conn<ReplyTo>, buffer: usize) -> ConnId {
        let addr = conn.addr().clone();
        let id = self.insert(conn, buffer, false);
        self.by_addr.insert(addr, id.key);
        id
    }

    /// Registers a dedicated connection, leased to its opener: nobody else finds it until
    /// it is checked in.
    pub(crate) fn open_dedicated(&mut self, conn: Conn<ReplyTo>, buffer: usize) -> ConnId {
        self.insert(conn, buffer, true)
    }

    fn insert(&mut self, conn: Conn<ReplyTo>, buffer: usize, dedicated: bool) -> ConnId {
        self.next_id += 1;
        let now = (self.clock)();
        let key = self.conns.insert(Connection {
            id: self.next_id,
            conn,
            usual: buffer,
            writer: None,
            closed: false,
            dedicated,
            subscriber: false,
            timeouts: 0,
            ready: false,
            opened: now,
            last_used: now,
            last_heard: now,
            ping: None,
            waiting_since: None,
        });
        ConnId {
            key,
            id: self.next_id,
        }
    }

    fn conn_mut_even_closed(&mut self, conn: ConnId) -> Option<&mut Connection> {
        self.conns.get_mut(conn.key).filter(|c| c.id == conn.id)
    }

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Connection> {
        self.conns
            .get_mut(conn.key)
            .filter(|c| c.id == conn.id && !c.closed)
    }

    /// Registers a pub/sub connection for a subscriber: found by nobody else, never
    /// closed for idleness, every frame it reads handed back as an event.
    pub(crate) fn open_subscriber(&mut self, conn: Conn<ReplyTo>, buffer: usize) -> ConnId {
        let conn = self.insert(conn.into_events_only(), buffer, false);
        if let Some(c) = self.conns.get_mut(conn.key) {
            c.subscriber = true;
        }
        conn
    }

    /// Queues a command on a pub/sub connection. Subscribe commands get no reply (their
    /// confirmations are events), so nothing waits for one. Refused on any other
    /// connection, whose reply stream it would shift.
    pub(crate) fn send_unanswered(&mut self, conn: ConnId, command: &Cmd) -> Result<(), Error> {
        let now = (self.clock)();
        let Some(c) = self.conn_mut(conn) else {
            return Err(Error::new(ErrorKind::Io, "connection closed"));
        };
        if !c.subscriber {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "unanswered bytes are for pub/sub connections only",
            ));
        }
        c.conn.queue_unanswered(command);
        c.last_used = now;
        wake(&mut c.writer);
        Ok(())
    }

    /// Address of a connection.
    pub(crate) fn addr(&self, conn: ConnId) -> Option<&NodeAddr> {
        self.conns
            .get(conn.key)
            .filter(|c| c.id == conn.id)
            .map(|c| c.conn.addr())
    }

    /// Number of live shared connections.
    pub(crate) fn connection_count(&self) -> usize {
        self.by_addr.len()
    }

    /// Number of dedicated connections, leased or idle.
    pub(crate) fn dedicated_count(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.dedicated && !c.closed)
            .count()
    }

    /// Leases an idle dedicated connection to `addr`, if one is open.
    pub(crate) fn checkout_dedicated(&mut self, addr: &NodeAddr) -> Option<ConnId> {
        let idle = self.idle.get_mut(addr)?;
        while let Some(conn) = idle.pop() {
            let live = self
                .conns
                .get(conn.key)
                .is_some_and(|c| c.id == conn.id && !c.closed && c.conn.awaited() == 0);
            if live {
                return Some(conn);
            }
        }
        None
    }

    /// Gives a leased dedicated connection back once its replies are all in. Kept for the
    /// next blocking command unless `max_idle` connections to that node already wait, or
    /// it is not quiet (closed, or replies still owed); then it is closed.
    pub(crate) fn checkin_dedicated(&mut self, conn: ConnId, max_idle: usize) {
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        if !c.dedicated {
            return;
        }
        let quiet = c.conn.awaited() == 0;
        let addr = c.conn.addr().clone();
        let idle = self.idle.entry(addr).or_default();
        idle.retain(|&i| i != conn);
        if quiet && idle.len() < max_idle {
            idle.push(conn);
        } else {
            self.close(conn);
        }
    }

    /// Closes a connection on purpose (a caller gave up on a blocking command): its
    /// pending sinks fail, its tasks exit, its socket is shut down.
    pub(crate) fn close(&mut self, conn: ConnId) {
        self.end(
            conn,
            &Error::new(ErrorKind::Io, "connection closed by the client"),
            false,
        );
    }

    /// The connection is up and its handshake done: the node's failure count starts
    /// again, and what it said of itself is kept.
    fn connected(&mut self, conn: ConnId, info: ServerInfo, rtt: Duration) {
        if let Some(c) = self.conn_mut(conn) {
            c.ready = true;
            let addr = c.conn.addr().clone();
            self.nodes.connected(&addr, info, rtt);
        }
    }

    /// The connection's socket is up: its handshake's round trip (what read routing by
    /// latency compares) and its deadline count from now, not from when it was
    /// registered (a reconnect backoff or a slow connect are not the node's round trip).
    pub(crate) fn socket_up(&mut self, conn: ConnId) {
        let now = (self.clock)();
        if let Some(c) = self.conn_mut(conn) {
            c.opened = now;
        }
    }

    /// True once the connection's handshake is done.
    pub(crate) fn is_ready(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn.key)
            .is_some_and(|c| c.id == conn.id && c.ready)
    }

    /// What a node said of itself in its last handshake.
    pub(crate) fn server_info(&self, addr: &NodeAddr) -> Option<&ServerInfo> {
        self.nodes.server_info(addr)
    }

    /// Calls `hook` whenever a connection cannot reach its node, and when requests start
    /// waiting while nobody watches for stalls.
    pub(crate) fn on_unreachable(&mut self, hook: Hook) {
        self.on_unreachable = Some(hook);
    }

    /// The nodes connections could not reach since the last call.
    pub(crate) fn take_unreachable(&mut self) -> Vec<NodeAddr> {
        std::mem::take(&mut self.unreachable)
    }

    /// Each node's health and handshake facts.
    pub(crate) fn nodes(&self) -> &NodeTable {
        &self.nodes
    }

    /// Each node's health and handshake facts, to prune after a refresh.
    pub(crate) fn nodes_mut(&mut self) -> &mut NodeTable {
        &mut self.nodes
    }

    /// How the node's connections have been doing.
    #[cfg(test)]
    pub(crate) fn health(&self, addr: &NodeAddr) -> NodeHealth {
        self.nodes.health(addr)
    }

    /// A request timed out waiting on the shared connection to `addr`. After
    /// `max_in_a_row` such timeouts with no reply in between, the connection is closed
    /// (its late replies die with it, so nothing can shift) and the next request opens a
    /// fresh one. Returns true when it closed the connection.
    pub(crate) fn note_timeout(&mut self, addr: &NodeAddr, max_in_a_row: u32) -> bool {
        let Some(conn) = self.find(addr) else {
            return false;
        };
        let Some(c) = self.conn_mut(conn) else {
            return false;
        };
        // Only a connection that is up and has written requests still unanswered can be
        // said to have stopped answering; one still connecting (or waiting out its
        // reconnect backoff) is not judged by timeouts.
        if !c.ready || !c.conn.owes_replies() {
            return false;
        }
        c.timeouts = c.timeouts.saturating_add(1);
        // The node may be stopped with invalidations owed: what it filled is not trusted.
        self.cache.borrow_mut().connection_lost(conn.id);
        let Some(c) = self.conn_mut(conn) else {
            return false;
        };
        if max_in_a_row == 0 || c.timeouts < max_in_a_row {
            return false;
        }
        let error = Error::new(
            ErrorKind::Timeout,
            format!(
                "{addr} stopped answering ({max_in_a_row} timeouts in a row); connection closed"
            ),
        );
        // Not counted as a failed connection for reconnect backoff: the node may answer a
        // fresh connection at once (a long command, a brief stall).
        self.end(conn, &error, false);
        true
    }

    /// The client-side cache's heartbeat, at `now` (a driver calls it at least every
    /// half interval while the cache is on): a connection holding cached entries that
    /// has been silent for the interval is sent a `PING` (its reply read and dropped);
    /// one whose `PING` is still unanswered after the interval loses its entries, since
    /// a stopped node sends no invalidations. So does one silent for two intervals
    /// (a client nobody called meanwhile could not have asked). True when a `PING` was
    /// queued (the blocking client then writes it).
    pub(crate) fn heartbeat(&mut self, now: Instant) -> bool {
        let Some(every) = self.cache.borrow().heartbeat() else {
            return false;
        };
        let mut due = Vec::new();
        let mut silent = Vec::new();
        {
            let cache = self.cache.borrow();
            for (key, c) in self.conns.iter_mut() {
                if c.closed || c.subscriber || !c.ready || !cache.holds(c.id) {
                    continue;
                }
                match c.ping {
                    Some((needed, _)) if c.conn.answered() >= needed => c.ping = None,
                    Some((_, sent)) => {
                        if now.saturating_duration_since(sent) >= every {
                            silent.push(c.id);
                        }
                        continue;
                    }
                    None => {}
                }
                let quiet = now.saturating_duration_since(c.last_heard);
                if quiet >= every.saturating_mul(2) {
                    // Nobody looked for that long (a blocking client left alone): what
                    // the node did meanwhile is unknown.
                    silent.push(c.id);
                }
                if quiet >= every {
                    due.push(ConnId { key, id: c.id });
                }
            }
        }
        for id in silent {
            tracing::debug!(
                conn = id,
                "heartbeat unanswered: its cached entries are dropped"
            );
            self.cache.borrow_mut().connection_lost(id);
        }
        let ping = crate::core::cmd::cmd("PING");
        let mut queued = false;
        for conn in due {
            // Nobody waits for the reply: it is read and dropped in its place.
            let exec = self.new_exec(1);
            let limits = QueueLimits::UNLIMITED;
            if self.enqueue_command(conn, exec, &ping, limits).is_ok() {
                if let Some(c) = self.conn_mut(conn) {
                    let needed = c.conn.answered() + c.conn.awaited() as u64;
                    c.ping = Some((needed, now));
                }
                queued = true;
            }
            self.abandon(exec);
        }
        queued
    }

    /// Closes connections nobody needs: idle (no reply awaited) for `idle_for` or longer,
    /// or idle and to a node `keep` no longer names (it left the slot map). Returns how
    /// many it closed.
    pub(crate) fn close_idle(
        &mut self,
        now: Instant,
        idle_for: Option<std::time::Duration>,
        keep: impl Fn(&NodeAddr) -> bool,
    ) -> Vec<ConnId> {
        let idle: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.closed && !c.subscriber && c.conn.awaited() == 0 && c.conn.queued_bytes() == 0
            })
            .filter(|(_, c)| {
                let stale =
                    idle_for.is_some_and(|d| now.saturating_duration_since(c.last_used) >= d);
                stale || !keep(c.conn.addr())
            })
            .map(|(key, c)| ConnId { key, id: c.id })
            .collect();
        for &conn in &idle {
            self.close(conn);
        }
        idle
    }

    /// Starts an exec awaiting up to `n` replies.
    pub(crate) fn new_exec(&mut self, n: usize) -> usize {
        let replies = if n == 1 {
            Replies::One(None)
        } else {
            let mut replies = Vec::with_capacity(n);
            replies.resize_with(n, || None);
            Replies::Many(replies)
        };
        self.execs.insert(Exec {
            replies,
            ..Exec::default()
        })
    }

    /// Starts an exec awaiting up to `n` replies for `cmds`, whose `reads` fill the
    /// cache: the keys `cmds` write are invalidated in the cache first (before a byte
    /// of them is sent).
    pub(crate) fn new_exec_reading(
        &mut self,
        n: usize,
        reads: Vec<(usize, Read)>,
        cmds: &[Cmd],
    ) -> usize {
        let exec = self.new_exec(n);
        let mut cache = self.cache.borrow_mut();
        if cache.is_on() {
            cache.written(cmds);
            self.execs[exec].reads = reads;
        }
        exec
    }

    /// Queues a batch on a connection for `exec`. The bytes go out on the writer's next
    /// turn, together with whatever else was queued in the same loop turn.
    pub(crate) fn enqueue(
        &mut self,
        conn: ConnId,
        exec: usize,
        entries: &[BatchEntry],
        buf: BytesMut,
        limits: QueueLimits,
    ) -> Result<(), Error> {
        let now = (self.clock)();
        let Some(c) = self.conn_mut(conn) else {
            return Err(Error::new(ErrorKind::Io, "connection closed"));
        };
        let sinks_needed = entries.len() + entries.iter().filter(|e| e.asking).count();
        c.admit(buf.len(), sinks_needed, limits)?;
        c.last_used = now;
        c.conn.queue(entries, buf, |index| ReplyTo { exec, index });
        wake(&mut c.writer);
        if let Some(e) = self.execs.get_mut(exec) {
            e.outstanding += entries.len();
        }
        Ok(())
    }

    /// Queues one command for reply 0 of `exec`, encoded straight into the connection's
    /// output buffer: the single-command path allocates nothing here once the buffer has
    /// grown to its working size.
    pub(crate) fn enqueue_command(
        &mut self,
        conn: ConnId,
        exec: usize,
        command: &crate::core::cmd::Cmd,
        limits: QueueLimits,
    ) -> Result<(), Error> {
        let now = (self.clock)();
        let Some(c) = self.conn_mut(conn) else {
            return Err(Error::new(ErrorKind::Io, "connection closed"));
        };
        c.admit(command.encoded_len(), 1, limits)?;
        c.last_used = now;
        c.conn.queue_command(command, ReplyTo { exec, index: 0 });
        wake(&mut c.writer);
        if let Some(e) = self.execs.get_mut(exec) {
            e.outstanding += 1;
        }
        Ok(())
    }

    /// Queues a batch of `exec` on `conn`, or fails it: the bytes queued, or 0 when there
    /// was no connection (`conn` is the error) or the connection refused it (closed, over
    /// its caps). A batch that was not queued fails unsent, so the round judges it like a
    /// connection that failed before sending: retried after a backoff, then reported.
    pub(crate) fn queue_batch(
        &mut self,
        conn: Result<ConnId, Error>,
        exec: usize,
        entries: &[BatchEntry],
        buf: BytesMut,
        limits: QueueLimits,
    ) -> usize {
        let bytes = buf.len();
        match conn.and_then(|conn| self.enqueue(conn, exec, entries, buf, limits)) {
            Ok(()) => bytes,
            Err(error) => {
                self.fail_unsent(exec, entries, &error);
                0
            }
        }
    }

    /// Records a failure for commands that never reached a connection.
    pub(crate) fn fail_unsent(&mut self, exec: usize, entries: &[BatchEntry], error: &Error) {
        if let Some(e) = self.execs.get_mut(exec) {
            for entry in entries {
                if let Some(slot) = e.replies.get_mut(entry.index) {
                    *slot = Some(RoundReply::Failed {
                        error: error.clone(),
                        sent: false,
                    });
                }
            }
        }
    }

    /// For the writer: everything the connection has to send (commands, handshake, TLS
    /// records), now counted as sent; empty when there is nothing. `None` when the
    /// connection is gone (the writer then exits), or just failed making its output (TLS).
    pub(crate) fn take_output(&mut self, conn: ConnId) -> Option<BytesMut> {
        // Nothing to write: no buffer changes hands (BytesMut::new does not allocate).
        self.output(conn)
            .map(|out| out.map(|o| o.bytes).unwrap_or_default())
    }

    /// [`Pool::take_output`] with the proof a send that posts no completion relies on
    /// (see [`Output::proof`]): `Some(None)` when there is nothing to write, `None` when
    /// the connection is gone or just failed making its output.
    pub(crate) fn output(&mut self, conn: ConnId) -> Option<Option<Output>> {
        let c = self.conn_mut(conn)?;
        let out = match c.conn.take_output() {
            Ok(Some(out)) => out,
            Ok(None) => return Some(None),
            Err(error) => {
                self.fail(conn, &error);
                return None;
            }
        };
        if out.proof.is_none() {
            // Bytes nobody awaits a reply for (TLS records, subscriptions).
            return Some(Some(out));
        }
        let watched = !c.subscriber && !c.dedicated;
        if watched && c.waiting_since.is_none() {
            // Queued at `last_used`, a moment ago: no clock read on the write path.
            c.waiting_since = Some(c.last_used);
        }
        if watched && !self.watching_stalls {
            self.watching_stalls = true;
            if let Some(hook) = &self.on_unreachable {
                (hook.0)();
            }
        }
        Some(Some(out))
    }

    /// Whether the connection has bytes to write (commands, handshake, TLS records).
    pub(crate) fn wants_write(&self, conn: ConnId) -> bool {
        self.live(conn).is_some_and(|c| c.conn.wants_write())
    }

    /// Replies (and handshake answers) read on the connection since it opened.
    pub(crate) fn answered(&self, conn: ConnId) -> u64 {
        self.live(conn).map_or(0, |c| c.conn.answered())
    }

    /// When the connection's handshake must be done (`limit` after it opened); `None`
    /// once it is done, or when the limit is too large to be a time (never).
    pub(crate) fn handshake_due(&self, conn: ConnId, limit: Duration) -> Option<Instant> {
        let c = self.live(conn).filter(|c| !c.ready)?;
        c.opened.checked_add(limit)
    }

    /// The error that ends `conn` when its handshake is still running at its due time.
    pub(crate) fn handshake_overdue(
        &self,
        conn: ConnId,
        now: Instant,
        limit: Duration,
    ) -> Option<Error> {
        let due = self.handshake_due(conn, limit)?;
        (due <= now).then(|| {
            let addr = self.addr(conn).map(ToString::to_string).unwrap_or_default();
            Error::new(
                ErrorKind::Io,
                format!("{addr}: the handshake took longer than {limit:?}"),
            )
        })
    }

    /// Whether it is a subscriber's connection (its frames are events).
    pub(crate) fn is_subscriber(&self, conn: ConnId) -> bool {
        self.live(conn).is_some_and(|c| c.subscriber)
    }

    /// The connection registered under slab key `key`, if one is open there.
    pub(crate) fn id_at(&self, key: usize) -> Option<ConnId> {
        self.conns
            .get(key)
            .filter(|c| !c.closed)
            .map(|c| ConnId { key, id: c.id })
    }

    /// Every open connection, into `out` (a vector the driver keeps, so a round
    /// allocates nothing here).
    pub(crate) fn open_ids(&self, out: &mut Vec<ConnId>) {
        out.clear();
        out.extend(
            self.conns
                .iter()
                .filter(|(_, c)| !c.closed)
                .map(|(key, c)| ConnId { key, id: c.id }),
        );
    }

    /// The open connections (subscribers' aside) that await a reply or a handshake
    /// answer, into `out`.
    pub(crate) fn awaiting(&self, out: &mut Vec<ConnId>) {
        out.clear();
        out.extend(
            self.conns
                .iter()
                .filter(|(_, c)| !c.closed && !c.subscriber && c.conn.awaited() > 0)
                .map(|(key, c)| ConnId { key, id: c.id }),
        );
    }

    fn live(&self, conn: ConnId) -> Option<&Connection> {
        self.conns
            .get(conn.key)
            .filter(|c| c.id == conn.id && !c.closed)
    }

    /// For the writer: [`Pool::take_output`], or `Pending` (the writer woken when there
    /// is something) while there is nothing to write.
    pub(crate) fn poll_output(
        &mut self,
        conn: ConnId,
        cx: &mut Context<'_>,
    ) -> Poll<Option<BytesMut>> {
        match self.take_output(conn) {
            Some(out) if out.is_empty() => {
                if let Some(c) = self.conn_mut(conn) {
                    if !c.writer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        c.writer = Some(cx.waker().clone());
                    }
                }
                Poll::Pending
            }
            out => Poll::Ready(out),
        }
    }

    /// For the reader: bytes read on `conn`. Each whole reply goes to its caller; push
    /// frames (out-of-band data: they answer no request) are added to `pushes`. Requests
    /// still waiting count their wait from `clock()`, read only then (a read that answers
    /// everything written, the usual case, costs no clock read). An error (a frame that
    /// cannot be parsed, a reply nobody asked for, a refused handshake) means nothing
    /// more on the stream can be trusted: the caller fails the connection.
    pub(crate) fn receive(
        &mut self,
        conn: ConnId,
        input: &mut BytesMut,
        pushes: &mut Vec<Value>,
        clock: impl Fn() -> Instant,
    ) -> Result<(), Error> {
        let Some(c) = self
            .conns
            .get_mut(conn.key)
            .filter(|c| c.id == conn.id && !c.closed)
        else {
            input.clear();
            return Ok(());
        };
        let mut answered = false;
        let execs = &mut self.execs;
        let tracking = c.conn.server_info().is_some_and(|info| info.tracking);
        let cache = &self.cache;
        let clock = &clock;
        let received = c.conn.receive_with(input, |to, value| {
            answered = true;
            if tracking {
                fill(execs, cache, conn.id, to, &value, clock);
            }
            complete(execs, to, RoundReply::Value(value));
        });
        if c.subscriber {
            pushes.extend(c.conn.take_pushes());
        } else {
            // Invalidations apply now, before any caller sees a later reply; nothing
            // else here is the cache's.
            let mut cache = self.cache.borrow_mut();
            pushes.extend(c.conn.take_pushes().filter(|p| !cache.on_push(p)));
        }
        if answered {
            c.timeouts = 0;
        }
        if tracking {
            c.last_heard = clock();
        }
        c.waiting_since = c.conn.owes_replies().then(&clock);
        if c.conn.wants_write() {
            // The handshake's next commands, callers' commands it held, TLS records.
            wake(&mut c.writer);
        }
        if !c.ready && c.conn.is_ready() {
            let info = c.conn.server_info().cloned().unwrap_or_default();
            let now = clock();
            let rtt = now.saturating_duration_since(c.opened);
            // Commands held through the handshake go out now: their wait for a reply (the
            // stall clock, which starts at `last_used`) starts now too, not when they
            // were queued.
            c.last_used = c.last_used.max(now);
            self.connected(conn, info, rtt);
        }
        received
    }

    /// The nodes whose shared connection is up and has had written requests waiting with
    /// no reply for `after` or longer at `now`, and whether any shared connection has
    /// written requests waiting at all (the refresh loop watches for stalls while so).
    pub(crate) fn stalls(&mut self, now: Instant, after: Duration) -> (Vec<NodeAddr>, bool) {
        let mut stalled = Vec::new();
        let mut waiting = false;
        for (_, c) in self.conns.iter() {
            if c.closed || c.subscriber || c.dedicated || !c.conn.owes_replies() {
                continue;
            }
            let Some(since) = c.waiting_since else {
                continue;
            };
            waiting = true;
            if c.ready && now.saturating_duration_since(since) >= after {
                stalled.push(c.conn.addr().clone());
            }
        }
        self.watching_stalls = waiting;
        (stalled, waiting)
    }

    /// For the writer: the buffer of a finished write, kept (emptied) as the next output
    /// buffer unless it grew far beyond the usual size for one large batch.
    pub(crate) fn give_back_output(&mut self, conn: ConnId, buf: BytesMut) {
        if let Some(c) = self.conn_mut(conn) {
            let usual = c.usual;
            c.conn.give_back(buf, usual);
        }
    }

    /// True when the connection is gone (the engine's tasks exit).
    pub(crate) fn is_closed(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn.key)
            .is_none_or(|c| c.id != conn.id || c.closed)
    }

    /// Marks a connection dead: it leaves the address map (the next request opens a new
    /// one) and every sink it still holds gets `error`. Commands whose bytes were written
    /// are reported `sent`: the server may have run them, so they are never silently
    /// retried.
    pub(crate) fn fail(&mut self, conn: ConnId, error: &Error) {
        self.end(conn, error, true);
    }

    fn end(&mut self, conn: ConnId, error: &Error, is_failure: bool) {
        let Some(addr) = self.conn_mut(conn).map(|c| c.conn.addr().clone()) else {
            return;
        };
        if is_failure && error.kind() != ErrorKind::Shutdown {
            let established = self.conn_mut(conn).is_some_and(|c| c.ready);
            if established {
                self.nodes.lost(&addr, (self.clock)());
            } else {
                // The node could not be reached at all: the cluster may have changed
                // (a failover, a removed node), so the refresh policy hears of it.
                self.nodes.failed(&addr, (self.clock)());
                if !self.unreachable.contains(&addr) {
                    self.unreachable.push(addr.clone());
                }
                if let Some(hook) = &self.on_unreachable {
                    (hook.0)();
                }
            }
        }
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        c.closed = true;
        wake(&mut c.writer);
        if c.conn.server_info().is_some_and(|info| info.tracking) {
            // Its invalidations die with it: so does every entry it filled.
            self.cache.borrow_mut().connection_lost(conn.id);
        }
        let Some(c) = self.conn_mut_even_closed(conn) else {
            return;
        };
        let lost = c.conn.fail(error);
        if self.by_addr.get(&addr) == Some(&conn.key) {
            self.by_addr.remove(&addr);
        }
        for lost in lost {
            let reply = RoundReply::Failed {
                error: lost.error,
                sent: lost.sent,
            };
            complete(&mut self.execs, lost.index, reply);
        }
    }

    /// The engine's tasks have exited: frees the slab entry.
    pub(crate) fn release(&mut self, conn: ConnId) {
        if self.conns.get(conn.key).is_some_and(|c| c.id == conn.id) {
            self.fail(conn, &Error::new(ErrorKind::Io, "connection released"));
            self.conns.remove(conn.key);
        }
    }

    /// Fails every connection (shutdown).
    pub(crate) fn fail_all(&mut self, error: &Error) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .map(|(key, c)| ConnId { key, id: c.id })
            .collect();
        for id in ids {
            self.fail(id, error);
        }
    }

    /// Whether every reply of the exec's current round is in (for a driver that looks
    /// instead of waiting on a waker, such as the simulation's).
    #[cfg(test)]
    pub(crate) fn round_done(&self, exec: usize) -> bool {
        self.execs.get(exec).is_none_or(|e| e.outstanding == 0)
    }

    /// Ready when every reply of the current round is in.
    pub(crate) fn poll_exec(&mut self, exec: usize, cx: &mut Context<'_>) -> Poll<()> {
        match self.execs.get_mut(exec) {
            Some(e) if e.outstanding > 0 => {
                if !e.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    e.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Wakes the exec's waiter on every reply from now on.
    pub(crate) fn wake_on_each_reply(&mut self, exec: usize) {
        if let Some(e) = self.execs.get_mut(exec) {
            e.wake_each = true;
        }
    }

    /// Ready when a reply arrived since the last call, or every reply is in.
    pub(crate) fn poll_progress(&mut self, exec: usize, cx: &mut Context<'_>) -> Poll<()> {
        match self.execs.get_mut(exec) {
            Some(e) if e.outstanding > 0 && !e.progress => {
                if !e.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    e.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Some(e) => {
                e.progress = false;
                Poll::Ready(())
            }
            None => Poll::Ready(()),
        }
    }

    /// Whether command `index` of the exec has its reply (or its failure).
    pub(crate) fn has_reply(&self, exec: usize, index: usize) -> bool {
        self.execs
            .get(exec)
            .and_then(|e| e.replies.get(index))
            .is_some_and(Option::is_some)
    }

    /// Takes the reply of one command from the current round.
    pub(crate) fn take_reply(&mut self, exec: usize, index: usize) -> Option<RoundReply> {
        self.execs.get_mut(exec)?.replies.get_mut(index)?.take()
    }

    /// The caller gave up (timeout or dropped future): replies still on the wire are read
    /// and dropped; the entry is freed when the last one arrives.
    pub(crate) fn abandon(&mut self, exec: usize) {
        if let Some(e) = self.execs.get_mut(exec) {
            // Reads that never filled: dropped, so whoever waits on them looks again.
            e.reads.clear();
            if e.outstanding == 0 {
                self.execs.remove(exec);
            } else {
                e.abandoned = true;
                e.waker = None;
            }
        }
    }

    /// A connection's backlog: bytes queued and not yet written, and callers' replies
    /// awaited (the two quantities [`QueueLimits`] caps); `None` once it is closed.
    #[cfg(test)]
    pub(crate) fn backlog(&self, conn: ConnId) -> Option<(usize, usize)> {
        self.conns
            .get(conn.key)
            .filter(|c| c.id == conn.id && !c.closed)
            .map(|c| (c.conn.queued_bytes(), c.conn.callers_awaited()))
    }

    /// Number of requests still holding slab entries (shutdown waits for them to finish).
    pub(crate) fn exec_count(&self) -> usize {
        self.execs.len()
    }
}

/// Fills the cache from reply `to`, when its exec asked for it: the first reply at that
/// index decides (a redirect or an error fills nothing, and its retry neither).
fn fill(
    execs: &mut Slab<Exec>,
    cache: &RefCell<Cache>,
    conn: u64,
    to: ReplyTo,
    value: &Value,
    clock: &impl Fn() -> Instant,
) {
    let Some(e) = execs.get_mut(to.exec) else {
        return;
    };
    if e.reads.is_empty() {
        return;
    }
    let Some(i) = e.reads.iter().position(|(index, _)| *index == to.index) else {
        return;
    };
    let (_, read) = e.reads.swap_remove(i);
    cache.borrow_mut().fill(read, conn, true, value, clock);
}

/// Hands a reply (or a failure) to its exec and wakes the waiter when it is due.
fn complete(execs: &mut Slab<Exec>, to: ReplyTo, reply: RoundReply) {
    let ReplyTo { exec, index } = to;
    let Some(e) = execs.get_mut(exec) else {
        return;
    };
    // A late reply of a request whose caller gave up is dropped as it arrives.
    if !e.abandoned {
        if let Some(slot) = e.replies.get_mut(index) {
            *slot = Some(reply);
        }
    }
    e.outstanding = e.outstanding.saturating_sub(1);
    if e.wake_each && !e.abandoned && e.outstanding > 0 {
        e.progress = true;
        if let Some(w) = e.waker.take() {
            w.wake();
        }
    }
    if e.outstanding == 0 {
        if e.abandoned {
            execs.remove(exec);
        } else if let Some(w) = e.waker.take() {
            w.wake();
        }
    }
}

/// Wakes a waiting task, if one waits.
fn wake(waiter: &mut Option<Waker>) {
    if let Some(w) = waiter.take() {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::NodeBatch;
    use bytes::Bytes;
    use std::task::Waker;

    fn batch(node: &NodeAddr, entries: &[(usize, bool)]) -> NodeBatch {
        NodeBatch {
            node: node.clone(),
            entries: entries
                .iter()
                .map(|&(index, asking)| BatchEntry { index, asking })
                .collect(),
            buf: BytesMut::from(&b"*1\r\n$4\r\nPING\r\n"[..]),
        }
    }

    fn enqueue(pool: &mut Pool, conn: ConnId, exec: usize, b: NodeBatch) -> bool {
        pool.enqueue(conn, exec, &b.entries, b.buf, QueueLimits::UNLIMITED)
            .is_ok()
    }

    fn test_conn(addr: &NodeAddr) -> Conn<ReplyTo> {
        Conn::ready_for_test(addr.clone())
    }

    /// RESP bytes of the values these tests send.
    fn resp(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Value::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Value::Push(items) => {
                out.extend_from_slice(format!(">{}\r\n", items.len()).as_bytes());
                for item in items {
                    resp(item, out);
                }
            }
            Value::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    resp(item, out);
                }
            }
            other => panic!("no encoding for {other:?} here"),
        }
    }

    /// One frame read on `conn`: the push frames it was, or the error that ends the
    /// connection.
    fn deliver(pool: &mut Pool, conn: ConnId, v: Value) -> Result<Vec<Value>, Error> {
        deliver_at(pool, conn, v, Instant::now())
    }

    /// [`deliver`], read at `at`.
    fn deliver_at(
        pool: &mut Pool,
        conn: ConnId,
        v: Value,
        at: Instant,
    ) -> Result<Vec<Value>, Error> {
        let mut bytes = Vec::new();
        resp(&v, &mut bytes);
        let mut input = BytesMut::from(&bytes[..]);
        let mut pushes = Vec::new();
        pool.receive(conn, &mut input, &mut pushes, || at)?;
        Ok(pushes)
    }

    fn bulk(s: &'static str) -> Value {
        Value::Bulk(Bytes::from_static(s.as_bytes()))
    }

    fn ready(pool: &mut Pool, exec: usize) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        pool.poll_exec(exec, &mut cx).is_ready()
    }

    /// A pool whose cache is on, and a tracking connection of it.
    fn caching_pool() -> (Pool, ConnId, Rc<RefCell<Cache>>) {
        let mut pool = Pool::new(Instant::now);
        let cache = Rc::new(RefCell::new(Cache::new(
            Some(crate::core::cache::CacheConfig::default()),
            Rc::default(),
        )));
        pool.use_cache(cache.clone());
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(Conn::tracking_for_test(a), 1024);
        (pool, conn, cache)
    }

    /// A `GET key` queued on `conn` whose reply fills the cache.
    fn cached_get(pool: &mut Pool, conn: ConnId, cache: &RefCell<Cache>, key: &str) -> usize {
        let get = crate::core::cmd::cmd("GET").arg(key);
        let judged = crate::core::judgement::Judgement::of(&get);
        let crate::core::cache::Lookup::Miss(read) =
            cache.borrow_mut().lookup(&get, &judged, Instant::now)
        else {
            panic!("a miss");
        };
        let exec = pool.new_exec_reading(1, vec![(0, read)], std::slice::from_ref(&get));
        let a = NodeAddr::new("127.0.0.1", 7000);
        assert!(enqueue(pool, conn, exec, batch(&a, &[(0, false)])));
        pool.take_output(conn).unwrap();
        exec
    }

    fn invalidate(key: &'static str) -> Value {
        Value::Push(vec![bulk("invalidate"), Value::Array(vec![bulk(key)])])
    }

    #[test]
    fn a_reply_fills_the_cache_as_it_arrives_unless_an_invalidation_came_first() {
        let (mut pool, conn, cache) = caching_pool();
        let exec = cached_get(&mut pool, conn, &cache, "k");
        assert!(deliver(&mut pool, conn, bulk("v")).unwrap().is_empty());
        assert!(ready(&mut pool, exec));
        assert_eq!(cache.borrow().peek_get(b"k"), Some(&bulk("v")));
        // The server's invalidation ends it, and is not handed on as a push.
        assert!(deliver(&mut pool, conn, invalidate("k"))
            .unwrap()
            .is_empty());
        assert_eq!(cache.borrow().peek_get(b"k"), None);
        // An invalidation before the reply: the reply is returned, not kept.
        let exec = cached_get(&mut pool, conn, &cache, "k");
        deliver(&mut pool, conn, invalidate("k")).unwrap();
        deliver(&mut pool, conn, bulk("old")).unwrap();
        assert!(matches!(pool.take_reply(exec, 0), Some(RoundReply::Value(v)) if v == bulk("old")));
        assert_eq!(cache.borrow().peek_get(b"k"), None);
        // Reply and invalidation in one read: gone once the read is handled.
        let _ = cached_get(&mut pool, conn, &cache, "k");
        let mut bytes = Vec::new();
        resp(&bulk("v2"), &mut bytes);
        resp(&invalidate("k"), &mut bytes);
        let mut input = BytesMut::from(&bytes[..]);
        pool.receive(conn, &mut input, &mut Vec::new(), Instant::now)
            .unwrap();
        assert_eq!(cache.borrow().peek_get(b"k"), None);
    }

    #[test]
    fn a_connection_that_ends_or_times_out_takes_its_entries_with_it() {
        let (mut pool, conn, cache) = caching_pool();
        cached_get(&mut pool, conn, &cache, "k");
        deliver(&mut pool, conn, bulk("v")).unwrap();
        assert_eq!(cache.borrow().len(), 1);
        pool.fail(conn, &Error::new(ErrorKind::Io, "reset"));
        assert_eq!(cache.borrow().len(), 0);
        // A request timing out on a connection: the node may owe invalidations.
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(Conn::tracking_for_test(a.clone()), 1024);
        pool.connected(
            conn,
            ServerInfo {
                tracking: true,
                ..ServerInfo::default()
            },
            Duration::ZERO,
        );
        cached_get(&mut pool, conn, &cache, "k");
        deliver(&mut pool, conn, bulk("v")).unwrap();
        let exec = pool.new_exec(1);
        assert!(enqueue(&mut pool, conn, exec, batch(&a, &[(0, false)])));
        pool.take_output(conn).unwrap();
        assert_eq!(cache.borrow().len(), 1);
        pool.note_timeout(&a, 3);
        assert_eq!(cache.borrow().len(), 0);
        // A connection that does not track fills nothing.
        let b = NodeAddr::new("127.0.0.1", 7001);
        let plain = pool.open(test_conn(&b), 1024);
        cached_get(&mut pool, plain, &cache, "p");
        deliver(&mut pool, plain, bulk("v")).unwrap();
        assert_eq!(cache.borrow().len(), 0);
    }

    #[test]
    fn a_silent_connection_is_pinged_and_loses_its_entries_when_it_does_not_answer() {
        let (mut pool, conn, cache) = caching_pool();
        let info = ServerInfo {
            tracking: true,
            ..ServerInfo::default()
        };
        pool.connected(conn, info, Duration::ZERO);
        let t0 = Instant::now();
        let s = Duration::from_millis;
        cached_get(&mut pool, conn, &cache, "k");
        deliver_at(&mut pool, conn, bulk("v"), t0).unwrap();
        assert!(!pool.heartbeat(t0 + s(500)), "not silent yet");
        assert!(
            pool.heartbeat(t0 + s(1000)),
            "silent for the interval: a PING"
        );
        let out = pool.take_output(conn).unwrap();
        assert!(out.ends_with(b"PING\r\n"));
        assert!(!pool.heartbeat(t0 + s(1500)), "one PING at a time");
        assert_eq!(cache.borrow().len(), 1);
        // Answered: nothing more until the next silence.
        deliver_at(&mut pool, conn, bulk("PONG"), t0 + s(1600)).unwrap();
        assert!(!pool.heartbeat(t0 + s(2000)));
        assert!(pool.heartbeat(t0 + s(2700)));
        pool.take_output(conn).unwrap();
        assert_eq!(cache.borrow().len(), 1);
        // Unanswered for an interval: the entries go (the connection stays).
        pool.heartbeat(t0 + s(3700));
        assert_eq!(cache.borrow().len(), 0);
        assert!(!pool.is_closed(conn));
        // Nobody looked for two intervals: the entries go at the first look.
        let t1 = t0 + s(10_000);
        cached_get(&mut pool, conn, &cache, "k");
        deliver_at(&mut pool, conn, bulk("PONG"), t1).unwrap();
        deliver_at(&mut pool, conn, bulk("v"), t1).unwrap();
        assert_eq!(cache.borrow().len(), 1);
        pool.heartbeat(t1 + s(2000));
        assert_eq!(cache.borrow().len(), 0);
    }

    #[test]
    fn replies_follow_fifo_order_and_asking_ok_is_discarded() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        let exec = pool.new_exec(3);
        assert!(enqueue(
            &mut pool,
            conn,
            exec,
            batch(&a, &[(2, false), (0, true), (1, false)])
        ));
        assert!(!ready(&mut pool, exec));
        // A reply before the writer took the bytes cannot be ours.
        assert!(deliver(&mut pool, conn, bulk("early")).is_err());
        let out = pool.take_output(conn).unwrap();
        assert!(!out.is_empty());
        for v in ["two", "OK", "zero", "one"] {
            deliver(&mut pool, conn, bulk(v)).unwrap();
        }
        assert!(ready(&mut pool, exec));
        let got: Vec<Value> = (0..3)
            .map(|i| match pool.take_reply(exec, i) {
                Some(RoundReply::Value(v)) => v,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec![bulk("zero"), bulk("one"), bulk("two")]);
        // Nothing pending any more: one more reply is a desynchronised stream.
        assert!(deliver(&mut pool, conn, bulk("extra")).is_err());
    }

    #[test]
    fn failure_tells_sent_from_unsent() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        let exec = pool.new_exec(2);
        enqueue(&mut pool, conn, exec, batch(&a, &[(0, false)]));
        pool.take_output(conn).unwrap();
        enqueue(&mut pool, conn, exec, batch(&a, &[(1, false)]));
        pool.fail(conn, &Error::new(ErrorKind::Io, "reset"));
        assert!(ready(&mut pool, exec));
        assert!(matches!(
            pool.take_reply(exec, 0),
            Some(RoundReply::Failed { sent: true, .. })
        ));
        assert!(matches!(
            pool.take_reply(exec, 1),
            Some(RoundReply::Failed { sent: false, .. })
        ));
        assert!(pool.find(&a).is_none());
        assert!(pool.is_closed(conn));
        pool.release(conn);
        // The slot is reused, but the old id no longer matches.
        let conn2 = pool.open(test_conn(&a), 1024);
        assert_eq!(conn2.key, conn.key);
        assert!(pool.is_closed(conn));
        assert!(!pool.is_closed(conn2));
    }

    #[test]
    fn abandoned_exec_swallows_late_replies_and_is_freed() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        let old = pool.new_exec(1);
        enqueue(&mut pool, conn, old, batch(&a, &[(0, false)]));
        pool.take_output(conn).unwrap();
        pool.abandon(old);
        let new = pool.new_exec(1);
        assert_ne!(new, old);
        enqueue(&mut pool, conn, new, batch(&a, &[(0, false)]));
        pool.take_output(conn).unwrap();
        deliver(&mut pool, conn, bulk("stale")).unwrap();
        assert!(!ready(&mut pool, new));
        deliver(&mut pool, conn, bulk("fresh")).unwrap();
        assert!(
            matches!(pool.take_reply(new, 0), Some(RoundReply::Value(v)) if v == bulk("fresh"))
        );
        pool.abandon(new);
        assert_eq!(pool.exec_count(), 0);
    }

    #[test]
    fn backlog_over_the_cap_is_refused_not_buffered() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        let exec = pool.new_exec(3);
        let b = batch(&a, &[(0, false)]);
        let size = b.buf.len();
        // The first batch goes in whatever its size; the backlog behind it is capped.
        assert!(pool
            .enqueue(conn, exec, &b.entries, b.buf, bytes(1))
            .is_ok());
        let b = batch(&a, &[(1, false)]);
        let e = pool
            .enqueue(conn, exec, &b.entries, b.buf, bytes(size * 2 - 1))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        pool.fail_unsent(exec, &b.entries, &e);
        assert!(matches!(
            pool.take_reply(exec, 1),
            Some(RoundReply::Failed { sent: false, .. })
        ));
        let b = batch(&a, &[(2, false)]);
        assert!(pool
            .enqueue(conn, exec, &b.entries, b.buf, bytes(size * 2))
            .is_ok());
    }

    fn bytes(max_queued_bytes: usize) -> QueueLimits {
        QueueLimits {
            max_queued_bytes,
            ..QueueLimits::UNLIMITED
        }
    }

    #[test]
    fn replies_awaited_are_capped_too() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        let exec = pool.new_exec(4);
        let limits = QueueLimits {
            max_pending_replies: 2,
            ..QueueLimits::UNLIMITED
        };
        let b = batch(&a, &[(0, false), (1, false)]);
        assert!(pool.enqueue(conn, exec, &b.entries, b.buf, limits).is_ok());
        pool.take_output(conn).unwrap();
        // Written already, but still awaited: the cap counts them.
        let b = batch(&a, &[(2, false)]);
        let e = pool
            .enqueue(conn, exec, &b.entries, b.buf, limits)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        deliver(&mut pool, conn, bulk("zero")).unwrap();
        let b = batch(&a, &[(2, false)]);
        assert!(pool.enqueue(conn, exec, &b.entries, b.buf, limits).is_ok());
    }

    #[test]
    fn a_connection_with_written_requests_and_no_reply_is_stalled() {
        let after = std::time::Duration::from_millis(200);
        let mut pool = Pool::new(Instant::now);
        let woken = Rc::new(std::cell::Cell::new(0));
        let count = woken.clone();
        pool.on_unreachable(Hook(Rc::new(move || count.set(count.get() + 1))));
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        pool.connected(conn, ServerInfo::default(), std::time::Duration::ZERO);
        let t0 = Instant::now();
        assert_eq!(pool.stalls(t0, after), (vec![], false));
        let exec = pool.new_exec(2);
        enqueue(&mut pool, conn, exec, batch(&a, &[(0, false), (1, false)]));
        // Queued, not written: nothing waits on the server yet.
        let later = Instant::now() + after;
        assert_eq!(pool.stalls(later, after), (vec![], false));
        pool.take_output(conn).unwrap();
        assert!(pool.watching_stalls, "the loop was told requests wait");
        assert_eq!(woken.get(), 1, "and woken");
        let soon = Instant::now();
        assert_eq!(
            pool.stalls(soon, after),
            (vec![], true),
            "waiting, not yet stalled"
        );
        let later = Instant::now() + after;
        assert_eq!(pool.stalls(later, after), (vec![a.clone()], true));
        // A reply is progress: the wait starts again from the read.
        let read_at = Instant::now();
        deliver_at(&mut pool, conn, bulk("one"), read_at).unwrap();
        assert_eq!(pool.stalls(read_at + after / 2, after), (vec![], true));
        assert_eq!(pool.stalls(read_at + after, after), (vec![a.clone()], true));
        // Every reply in: nothing waits.
        deliver(&mut pool, conn, bulk("two")).unwrap();
        assert_eq!(
            pool.stalls(Instant::now() + after * 10, after),
            (vec![], false)
        );
        assert!(!pool.watching_stalls);
        // Dedicated connections (blocking commands wait on purpose) are never stalled.
        let d = pool.open_dedicated(test_conn(&a), 1024);
        pool.connected(d, ServerInfo::default(), std::time::Duration::ZERO);
        let exec = pool.new_exec(1);
        enqueue(&mut pool, d, exec, batch(&a, &[(0, false)]));
        pool.take_output(d).unwrap();
        assert_eq!(
            pool.stalls(Instant::now() + after * 10, after),
            (vec![], false)
        );
    }

    #[test]
    fn timeouts_in_a_row_close_the_connection_and_a_reply_resets_them() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        let exec = pool.new_exec(2);
        enqueue(&mut pool, conn, exec, batch(&a, &[(0, false), (1, false)]));
        // Still connecting, nothing written: timeouts do not judge it.
        for _ in 0..5 {
            assert!(!pool.note_timeout(&a, 3));
        }
        pool.connected(conn, ServerInfo::default(), std::time::Duration::ZERO);
        assert!(!pool.note_timeout(&a, 3), "written nothing yet");
        pool.take_output(conn).unwrap();
        assert!(!pool.note_timeout(&a, 3));
        assert!(!pool.note_timeout(&a, 3));
        deliver(&mut pool, conn, bulk("late")).unwrap();
        assert!(!pool.note_timeout(&a, 3));
        assert!(!pool.note_timeout(&a, 3));
        assert!(pool.note_timeout(&a, 3));
        assert!(pool.is_closed(conn));
        assert!(pool.find(&a).is_none());
        assert!(matches!(
            pool.take_reply(exec, 1),
            Some(RoundReply::Failed { sent: true, .. })
        ));
        assert_eq!(
            pool.health(&a).failures,
            0,
            "no reconnect backoff for a stall"
        );
        // 0 means never.
        let conn = pool.open(test_conn(&a), 1024);
        pool.connected(conn, ServerInfo::default(), std::time::Duration::ZERO);
        let exec = pool.new_exec(1);
        enqueue(&mut pool, conn, exec, batch(&a, &[(0, false)]));
        pool.take_output(conn).unwrap();
        for _ in 0..10 {
            assert!(!pool.note_timeout(&a, 0));
        }
        assert!(!pool.is_closed(conn));
    }

    #[test]
    fn failures_count_once_per_connection_and_reset_on_connect() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        let exec = pool.new_exec(128);
        let entries: Vec<(usize, bool)> = (0..128).map(|i| (i, false)).collect();
        enqueue(&mut pool, conn, exec, batch(&a, &entries));
        pool.fail(conn, &Error::new(ErrorKind::Io, "reset"));
        pool.fail(conn, &Error::new(ErrorKind::Io, "again"));
        pool.release(conn);
        assert_eq!(pool.health(&a).failures, 1, "128 commands, one failure");
        let conn = pool.open(test_conn(&a), 1024);
        pool.fail(conn, &Error::new(ErrorKind::Io, "refused"));
        assert_eq!(pool.health(&a).failures, 2);
        let conn = pool.open(test_conn(&a), 1024);
        pool.connected(conn, ServerInfo::default(), std::time::Duration::ZERO);
        assert_eq!(pool.health(&a), NodeHealth::default());
        // Closing on purpose is not a failure.
        pool.close(conn);
        assert_eq!(pool.health(&a).failures, 0);
    }

    #[test]
    fn idle_connections_and_departed_nodes_are_closed_when_quiet() {
        let mut pool = Pool::new(Instant::now);
        let (a, b, c) = (
            NodeAddr::new("127.0.0.1", 7000),
            NodeAddr::new("127.0.0.1", 7001),
            NodeAddr::new("127.0.0.1", 7002),
        );
        let ca = pool.open(test_conn(&a), 1024);
        let cb = pool.open(test_conn(&b), 1024);
        let cc = pool.open(test_conn(&c), 1024);
        let exec = pool.new_exec(1);
        enqueue(&mut pool, cc, exec, batch(&c, &[(0, false)]));
        let now = Instant::now();
        // b left the map; c is busy, whatever its node.
        let closed = pool.close_idle(now, None, |n| *n != b && *n != c);
        assert_eq!(closed, vec![cb]);
        assert!(pool.is_closed(cb) && !pool.is_closed(ca) && !pool.is_closed(cc));
        let later = now + std::time::Duration::from_secs(10);
        assert_eq!(
            pool.close_idle(later, Some(std::time::Duration::from_secs(5)), |_| true),
            vec![ca]
        );
        assert!(pool.is_closed(ca) && !pool.is_closed(cc));
    }

    #[test]
    fn late_replies_of_abandoned_requests_are_not_stored() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        let exec = pool.new_exec(2);
        enqueue(&mut pool, conn, exec, batch(&a, &[(0, false), (1, false)]));
        pool.take_output(conn).unwrap();
        pool.abandon(exec);
        deliver(&mut pool, conn, bulk("late")).unwrap();
        assert!(pool.take_reply(exec, 0).is_none());
        deliver(&mut pool, conn, bulk("later")).unwrap();
        assert_eq!(pool.exec_count(), 0);
    }

    fn push(n: i64) -> Value {
        Value::Push(vec![bulk("invalidate"), Value::Int(n)])
    }

    #[test]
    fn push_frames_never_take_a_reply_slot() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let conn = pool.open(test_conn(&a), 1024);
        // A push with nothing pending is not a stray reply: the stream is fine.
        assert!(matches!(deliver(&mut pool, conn, push(0)), Ok(p) if p.len() == 1));
        let exec = pool.new_exec(2);
        enqueue(&mut pool, conn, exec, batch(&a, &[(0, false), (1, false)]));
        pool.take_output(conn).unwrap();
        for v in [push(1), bulk("zero"), push(2), push(3), bulk("one")] {
            deliver(&mut pool, conn, v).unwrap();
        }
        assert!(ready(&mut pool, exec));
        assert!(
            matches!(pool.take_reply(exec, 0), Some(RoundReply::Value(v)) if v == bulk("zero"))
        );
        assert!(matches!(pool.take_reply(exec, 1), Some(RoundReply::Value(v)) if v == bulk("one")));
    }

    #[test]
    fn dedicated_connections_are_leased_returned_and_closed() {
        let mut pool = Pool::new(Instant::now);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let shared = pool.open(test_conn(&a), 1024);
        let d1 = pool.open_dedicated(test_conn(&a), 1024);
        // Nobody routes to a dedicated connection by address.
        assert_eq!(pool.find(&a), Some(shared));
        assert_eq!(pool.checkout_dedicated(&a), None);
        let exec = pool.new_exec(1);
        enqueue(&mut pool, d1, exec, batch(&a, &[(0, false)]));
        pool.take_output(d1).unwrap();
        // Replies still owed: checking it in closes it instead of handing it out again.
        let d2 = pool.open_dedicated(test_conn(&a), 1024);
        pool.checkin_dedicated(d1, 4);
        assert!(pool.is_closed(d1));
        assert!(matches!(
            pool.take_reply(exec, 0),
            Some(RoundReply::Failed { sent: true, .. })
        ));
        // A quiet one is kept and leased again; beyond max_idle it is closed.
        pool.checkin_dedicated(d2, 1);
        assert_eq!(pool.checkout_dedicated(&a), Some(d2));
        pool.checkin_dedicated(d2, 0);
        assert!(pool.is_closed(d2));
        assert_eq!(pool.checkout_dedicated(&a), None);
        assert!(!pool.is_closed(shared));
        assert_eq!(pool.connection_count(), 1);
        assert_eq!(pool.dedicated_count(), 0);
    }

    thread_local! {
        static CLOCK: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }

    /// A clock these tests move by hand.
    fn test_clock() -> Instant {
        CLOCK.with(|c| *c.get().get_or_insert_with(Instant::now))
    }

    fn tick(d: Duration) {
        let now = test_clock();
        CLOCK.with(|c| c.set(Some(now + d)));
    }

    #[test]
    fn the_handshake_is_timed_from_the_socket_not_from_the_registration() {
        let mut pool = Pool::new(test_clock);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let mut conn = Conn::new(
            a.clone(),
            crate::core::handshake::HandshakeOptions {
                lib: None,
                ..Default::default()
            },
            None,
            crate::core::resp::DecodeLimits::default(),
        )
        .unwrap();
        conn.take_output().unwrap();
        let conn = pool.open(conn, 1024);
        let limit = Duration::from_millis(500);
        // A reconnect backoff and a slow connect: not the node's round trip.
        tick(Duration::from_millis(400));
        pool.socket_up(conn);
        assert_eq!(pool.handshake_due(conn, limit), Some(test_clock() + limit));
        tick(Duration::from_millis(3));
        let mut hello = BytesMut::from(&b"%1\r\n+proto\r\n:3\r\n"[..]);
        let mut pushes = Vec::new();
        pool.receive(conn, &mut hello, &mut pushes, test_clock)
            .unwrap();
        assert!(pool.is_ready(conn));
        assert_eq!(pool.handshake_due(conn, limit), None);
        assert_eq!(
            pool.nodes().handshake_rtt(&a),
            Some(Duration::from_millis(3))
        );
        // An overdue handshake is an error naming the node.
        let b = NodeAddr::new("127.0.0.1", 7001);
        let slow = pool.open(
            Conn::new(b, Default::default(), None, Default::default()).unwrap(),
            1024,
        );
        pool.socket_up(slow);
        assert!(pool.handshake_overdue(slow, test_clock(), limit).is_none());
        tick(limit);
        let e = pool.handshake_overdue(slow, test_clock(), limit).unwrap();
        assert!(e.detail().starts_with("127.0.0.1:7001"), "{e}");
    }

    #[test]
    fn a_connection_still_shaking_hands_takes_a_first_request_over_the_caps() {
        let mut pool = Pool::new(test_clock);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let shaking = Conn::new(
            a.clone(),
            crate::core::handshake::HandshakeOptions {
                lib: None,
                ..Default::default()
            },
            None,
            crate::core::resp::DecodeLimits::default(),
        )
        .unwrap();
        let conn = pool.open(shaking, 1024);
        let exec = pool.new_exec(2);
        let tight = QueueLimits {
            max_queued_bytes: 1,
            max_pending_replies: 1,
        };
        // The handshake's own bytes and replies are not a caller's backlog.
        let b = batch(&a, &[(0, false), (1, false)]);
        assert!(pool.enqueue(conn, exec, &b.entries, b.buf, tight).is_ok());
        // The caps still hold the backlog behind it.
        let b = batch(&a, &[(0, false)]);
        let e = pool
            .enqueue(conn, exec, &b.entries, b.buf, tight)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Overloaded);
    }

    #[test]
    fn commands_held_through_a_slow_handshake_are_not_a_stall() {
        let after = Duration::from_millis(200);
        let mut pool = Pool::new(test_clock);
        let a = NodeAddr::new("127.0.0.1", 7000);
        let mut shaking = Conn::new(
            a.clone(),
            crate::core::handshake::HandshakeOptions {
                lib: None,
                ..Default::default()
            },
            None,
            crate::core::resp::DecodeLimits::default(),
        )
        .unwrap();
        shaking.take_output().unwrap();
        let conn = pool.open(shaking, 1024);
        pool.socket_up(conn);
        let exec = pool.new_exec(1);
        enqueue(&mut pool, conn, exec, batch(&a, &[(0, false)]));
        // The handshake takes a second; the request waits, held, meanwhile.
        tick(Duration::from_secs(1));
        let mut hello = BytesMut::from(&b"%1\r\n+proto\r\n:3\r\n"[..]);
        pool.receive(conn, &mut hello, &mut Vec::new(), test_clock)
            .unwrap();
        pool.take_output(conn).unwrap();
        assert_eq!(pool.stalls(test_clock(), after), (vec![], true));
        tick(after);
        assert_eq!(pool.stalls(test_clock(), after), (vec![a], true));
    }

    use proptest::prelude::*;

    proptest! {
        /// Any interleaving of push frames and replies on any number of connections
        /// delivers each reply to its own sink, in order, and no push to any sink.
        #[test]
        fn pushes_anywhere_never_shift_replies(
            plan in proptest::collection::vec((0usize..3, 0u8..4), 1..300),
        ) {
            let mut pool = Pool::new(Instant::now);
            let conns: Vec<ConnId> = (0..3)
                .map(|p| pool.open(test_conn(&NodeAddr::new("127.0.0.1", 7000 + p)), 1024))
                .collect();
            let exec = pool.new_exec(plan.len());
            // Command i goes to connection plan[i].0; its reply carries i.
            let mut queues: Vec<std::collections::VecDeque<usize>> = vec![Default::default(); 3];
            for (i, &(c, _)) in plan.iter().enumerate() {
                let b = batch(&NodeAddr::new("127.0.0.1", 7000 + c as u16), &[(i, false)]);
                prop_assert!(pool.enqueue(conns[c], exec, &b.entries, b.buf, QueueLimits::UNLIMITED).is_ok());
                queues[c].push_back(i);
            }
            for &c in &conns {
                pool.take_output(c).unwrap();
            }
            // Walk the plan again as the order in which frames arrive: before each reply,
            // 0..3 pushes on some connection.
            for (step, &(c, pushes)) in plan.iter().enumerate() {
                let target = (c + step) % 3;
                for p in 0..pushes {
                    let d = deliver(&mut pool, conns[target], push(p as i64));
                    prop_assert!(matches!(d, Ok(p) if p.len() == 1));
                }
                if let Some(i) = queues[c].pop_front() {
                    prop_assert!(deliver(&mut pool, conns[c], Value::Int(i as i64)).is_ok());
                }
            }
            for (i, _) in plan.iter().enumerate() {
                let got = pool.take_reply(exec, i);
                prop_assert!(matches!(got, Some(RoundReply::Value(Value::Int(n))) if n == i as i64));
            }
        }
    }
}
