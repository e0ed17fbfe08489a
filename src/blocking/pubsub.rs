//! Pub/sub on the blocking client: a [`Subscriber`] with connections of its own, kept in
//! line with the subscriptions asked for by the pure [`Subscriptions`] (`src/pubsub.rs`),
//! exactly as the async client's: after lost connections, failovers and slot migrations,
//! and with the same at-most-once delivery (a message is taken only from the connection
//! its subscription lives on).
//!
//! There is no task to reconcile in the background: the subscriber does it whenever it
//! is called (at most every `RECONCILE_TICK` while it waits for a message), so a
//! subscriber that is not called neither reads nor resubscribes; the kernel buffers what
//! arrives meanwhile, up to the socket's buffer.

use std::time::{Duration, Instant};

use super::driver::{deadline_after, random_unit, Client};
use crate::core::cmd::ToArg;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::pool::ConnId;
use crate::core::pubsub::{LinkId, Message, SubKind, SubscriberState, Target};
use crate::core::round::Effect;
use crate::core::topology::NodeAddr;

/// How often the subscriptions are checked against the connections while waiting.
const RECONCILE_TICK: Duration = Duration::from_millis(100);

/// Subscriptions on a blocking client's cluster, with connections of their own; see
/// [`Client::subscriber`].
///
/// ```no_run
/// use std::time::Duration;
/// use redis_cluster_uring::{blocking, Commands, Config};
/// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
/// let mut sub = client.subscriber()?;
/// sub.subscribe(&["news"])?;              // cluster-wide
/// sub.ssubscribe(&["orders:{eu}"])?;      // sharded: on the channel's slot owner
/// client.publish("news", "hello")?;
/// while let Some(m) = sub.next_message(Some(Duration::from_secs(1)))? {
///     println!("{:?}: {:?}", m.channel, m.payload);
/// }
/// # Ok::<(), redis_cluster_uring::Error>(())
/// ```
#[derive(Debug)]
pub struct Subscriber {
    /// A client of its own: the slot map, refreshes, the backend and the connections.
    client: Client,
    /// Subscriptions, connections (the link id is the connection's id), messages not
    /// taken yet, the refusal a caller waits on.
    state: SubscriberState<ConnId>,
    last_reconcile: Option<Instant>,
}

impl Client {
    /// A new [`Subscriber`] on this client's cluster, with a ring (or `poll`) and
    /// connections of its own, starting from this client's slot map.
    pub fn subscriber(&self) -> Result<Subscriber> {
        // Its own client routes nothing to replicas (subscriptions go to primaries), so it
        // has no replica connections to warm up.
        let mut config = self.cluster.config().clone();
        config.read_from = crate::core::config::ReadFrom::Primary;
        let client = Client::connect_parsed(
            self.cluster.seeds().to_vec(),
            config,
            Some(crate::core::topology::SlotMap::clone(self.cluster.map())),
        )?;
        Ok(Subscriber {
            state: SubscriberState::new(self.cluster.config()),
            client,
            last_reconcile: None,
        })
    }
}

impl Subscriber {
    /// Subscribes to channels (cluster-wide). Returns once the server confirmed them, the
    /// server's error when it refused (an ACL: then they are no longer desired), or
    /// [`ErrorKind::Timeout`] after `request_timeout` (they stay desired, and the
    /// subscriber keeps trying).
    pub fn subscribe<C: ToArg>(&mut self, channels: &[C]) -> Result<()> {
        self.change(SubKind::Channel, channels, true)
    }

    /// Subscribes to glob-style patterns (cluster-wide).
    pub fn psubscribe<C: ToArg>(&mut self, patterns: &[C]) -> Result<()> {
        self.change(SubKind::Pattern, patterns, true)
    }

    /// Subscribes to sharded channels, each on its slot's owner.
    pub fn ssubscribe<C: ToArg>(&mut self, channels: &[C]) -> Result<()> {
        self.change(SubKind::Sharded, channels, true)
    }

    /// Ends channel subscriptions; returns once the server confirmed.
    pub fn unsubscribe<C: ToArg>(&mut self, channels: &[C]) -> Result<()> {
        self.change(SubKind::Channel, channels, false)
    }

    /// Ends pattern subscriptions.
    pub fn punsubscribe<C: ToArg>(&mut self, patterns: &[C]) -> Result<()> {
        self.change(SubKind::Pattern, patterns, false)
    }

    /// Ends sharded subscriptions.
    pub fn sunsubscribe<C: ToArg>(&mut self, channels: &[C]) -> Result<()> {
        self.change(SubKind::Sharded, channels, false)
    }

    /// The next message, waiting up to `timeout` (`None`: as long as it takes);
    /// `Ok(None)` when none came in time. While it waits, lost subscriptions are sent
    /// again wherever they belong now.
    pub fn next_message(&mut self, timeout: Option<Duration>) -> Result<Option<Message>> {
        let deadline = deadline_after(timeout);
        loop {
            if let Some(m) = self.state.next_message() {
                return Ok(Some(m));
            }
            self.tick(deadline);
            if !self.state.has_message() && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// A message already read, without waiting or reading.
    pub fn try_next_message(&mut self) -> Option<Message> {
        self.state.next_message()
    }

    /// Subscriptions asked for that the servers have not confirmed where they belong now
    /// (0 when everything is in place).
    pub fn out_of_sync(&self) -> usize {
        self.state.subs.out_of_sync()
    }

    /// The subscriptions asked for.
    pub fn subscriptions(&self) -> Vec<(SubKind, bytes::Bytes)> {
        self.state
            .subs
            .desired()
            .map(|(k, n)| (k, n.clone()))
            .collect()
    }

    /// Messages dropped because the caller did not take them and
    /// `Config::max_buffered_messages` were waiting (the oldest go first).
    pub fn dropped_messages(&self) -> u64 {
        self.state.dropped()
    }

    /// Connections lost so far whose subscriptions were sent again elsewhere.
    pub fn reconnects(&self) -> u64 {
        self.state.reconnects()
    }

    fn change<C: ToArg>(&mut self, kind: SubKind, names: &[C], add: bool) -> Result<()> {
        let change = self.state.change(kind, names, add);
        self.last_reconcile = None;
        let deadline = deadline_after(self.client.cluster.config().request_timeout);
        loop {
            if let Some(done) = self.state.change_done(&change) {
                if done.is_err() {
                    // The refused names are not wanted any more: reconcile at once.
                    self.last_reconcile = None;
                }
                return done;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the server did not confirm in time; the subscriber keeps trying (see out_of_sync)",
                ));
            }
            self.tick(deadline);
        }
    }

    /// Reconciles when due, then reads what the connections bring until a message or a
    /// confirmation arrives, the next reconcile is due, or `deadline`.
    fn tick(&mut self, deadline: Option<Instant>) {
        let now = Instant::now();
        if self
            .last_reconcile
            .is_none_or(|at| now.saturating_duration_since(at) >= RECONCILE_TICK)
        {
            self.reconcile(now);
            self.last_reconcile = Some(now);
        }
        // Frames read meanwhile (during a refresh's pump) are taken without waiting.
        let next_tick = now + RECONCILE_TICK;
        let until = if self.client.link_frames.is_empty() {
            deadline.map_or(next_tick, |d| d.min(next_tick))
        } else {
            now
        };
        let conns: Vec<ConnId> = self.live_conns().collect();
        self.client.wait_links(&conns, until);
        self.state
            .add_dropped(std::mem::take(&mut self.client.link_frames_dropped));
        let frames = std::mem::take(&mut self.client.link_frames);
        for (link, frame) in frames {
            let Some(from) = self
                .conn_of(link)
                .and_then(|conn| self.client.pool.addr(conn).cloned())
            else {
                // Its connection is gone: what it said no longer counts.
                continue;
            };
            let then = self.state.on_frame(link, &from, frame);
            if let Some(moved) = then.moved {
                self.client
                    .apply_effects(std::iter::once(Effect::Redirected { moved: Some(moved) }));
            }
            if then.refresh {
                self.client.cluster.refresh().request();
            }
            if then.reconcile {
                self.last_reconcile = None;
            }
        }
        self.client.maybe_refresh();
    }

    /// One pass: forget dead connections, open the ones the subscriptions need, queue
    /// what [`Subscriptions::reconcile`] says, close connections nothing needs.
    fn reconcile(&mut self, now: Instant) {
        let pool = &self.client.pool;
        let lost = self.state.forget_dead(|_, conn| !pool.is_closed(conn));
        if lost > 0 {
            // The node may have failed over: learn the new owners.
            self.client.cluster.refresh().request();
            self.client.maybe_refresh();
        }
        let targets = self.state.subs.targets(self.client.cluster.map());
        for target in self.state.links.missing(&targets) {
            let node = match &target {
                Target::Node(node) => Some(node.clone()),
                Target::AnyNode => self.any_node(),
            };
            let Some(node) = node else { continue };
            let connect_by = crate::core::round::saturating_later(
                now,
                self.client.cluster.config().connect_timeout,
            );
            match self.client.open_connection(&node, true, connect_by) {
                Ok(conn) => self.state.links.insert(target, conn.id, conn),
                Err(e) => tracing::debug!(%node, error = %e, "subscriber connection failed"),
            }
        }
        let SubscriberState { subs, links, .. } = &mut self.state;
        let actions = subs.reconcile(now, self.client.cluster.map(), |t| links.link_for(t));
        for action in actions {
            if let Some((_, conn)) = self.state.links.conn_for(&action) {
                // A closed connection is found on the next pass and its subscriptions
                // are sent again elsewhere.
                let _ = self.client.pool.send_unanswered(conn, &action.command);
            }
        }
        // Connections to targets no subscription needs any more (a slot's old owner).
        for (_, conn) in self.state.links.take_unneeded(&targets) {
            if !self.client.pool.is_closed(conn) {
                self.client.close(conn);
            }
        }
    }

    /// Subscriber connection `link`, if it is still open.
    fn conn_of(&self, link: LinkId) -> Option<ConnId> {
        let conn = self.state.links.conn_of(link)?;
        (!self.client.pool.is_closed(conn)).then_some(conn)
    }

    /// The subscriber connections still open.
    fn live_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.state.links.open().filter_map(|(l, _)| self.conn_of(l))
    }

    /// A node for the cluster-wide subscriptions: a primary at random (so that many
    /// subscribers spread out), or a seed before the map has any.
    fn any_node(&self) -> Option<NodeAddr> {
        let client = &self.client;
        client
            .pool
            .nodes()
            .any_primary(client.cluster.map(), client.cluster.seeds(), random_unit())
    }
}

impl Client {
    /// Moves bytes on the subscriber connections `links` until something is read or
    /// `until`: queued subscription commands are written, handshakes run, and frames land
    /// in `link_frames`. A connection that fails is closed (the subscriber notices).
    fn wait_links(&mut self, links: &[ConnId], until: Instant) {
        let mut failed: Vec<(ConnId, Error)> = Vec::new();
        self.flush_writes(&mut failed);
        let now = Instant::now();
        let limit = self.cluster.config().connect_timeout;
        for &conn in links {
            if let Some(error) = self.pool.handshake_overdue(conn, now, limit) {
                failed.push((conn, error));
            }
        }
        for (conn, error) in failed {
            self.fail(conn, &error);
        }
        let awaiting: Vec<usize> = links
            .iter()
            .filter(|c| !self.pool.is_closed(**c))
            .map(|c| c.key)
            .collect();
        let timeout = until.saturating_duration_since(Instant::now());
        if awaiting.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        self.wait_and_handle(&awaiting, 1, Some(timeout));
    }
}
