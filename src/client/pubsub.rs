//! The pub/sub driver: a [`Subscriber`] owns its connections and keeps the server's
//! subscriptions in line with the ones asked for. Every decision is
//! [`Subscriptions`]'s; this file opens connections, moves frames and wakes callers.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::driver::{random_unit, Client, Kind, Lane};
use crate::core::cmd::ToArg;
use crate::core::config::PushHandler;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::pool::ConnId;
use crate::core::pubsub::{LinkId, Message, SubKind, SubscriberState, Target};
use crate::core::round::Effect;
use crate::core::topology::NodeAddr;

/// How often the subscriber checks its connections and the slot map even when nothing
/// woke it (a connection that died quietly, a failover seen by a refresh).
const RECONCILE_TICK: Duration = Duration::from_millis(100);

/// A pub/sub subscriber with connections of its own. Messages arrive through
/// [`Subscriber::next_message`]; publish through the [`Client`] (`PUBLISH`, `SPUBLISH`).
///
/// It keeps the *desired* subscriptions and reconciles them with the cluster: after a
/// reconnect, a failover or a slot migration (the server drops sharded subscriptions
/// whose slot moved) it subscribes again where they belong now.
/// [`Subscriber::out_of_sync`] says how many are not (yet) in place.
///
/// Delivery is at most once, as Redis pub/sub itself: messages published while a
/// subscription is being moved are lost. Buffered messages are bounded by
/// `Config::max_buffered_messages`; beyond it the oldest are dropped and counted in
/// [`Subscriber::dropped_messages`].
///
/// ```no_run
/// use redis_cluster_uring::{cmd, engine, Client, Config};
/// engine::start(async {
///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
///     let sub = client.subscriber();
///     sub.subscribe(&["news"]).await?;
///     sub.ssubscribe(&["orders:{eu}"]).await?;
///     client.query::<i64>(cmd("PUBLISH").arg("news").arg("hello")).await?;
///     client.query::<i64>(cmd("SPUBLISH").arg("orders:{eu}").arg("42")).await?;
///     while let Some(message) = sub.next_message().await {
///         println!("{:?} on {:?}", message.payload, message.channel);
///     }
///     Ok::<(), redis_cluster_uring::Error>(())
/// })
/// .unwrap();
/// ```
#[derive(Debug)]
pub struct Subscriber {
    shared: Rc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: Client,
    state: RefCell<SubscriberState<ConnId>>,
    /// Wakes the reconcile task (held apart, so the task does not keep `Shared` alive).
    reconcile: Rc<Notify>,
    /// Wakes callers waiting for a message or a confirmation.
    changed: Notify,
    closed: Cell<bool>,
}

impl Client {
    /// A new [`Subscriber`] on this client's cluster, with connections of its own.
    pub fn subscriber(&self) -> Subscriber {
        let config = &self.inner.config;
        let reconcile = Rc::new(Notify::new());
        let shared = Rc::new(Shared {
            client: self.clone(),
            state: RefCell::new(SubscriberState::new(config)),
            reconcile: reconcile.clone(),
            changed: Notify::new(),
            closed: Cell::new(false),
        });
        crate::io::rt::spawn_local(reconcile_loop(Rc::downgrade(&shared), reconcile));
        Subscriber { shared }
    }
}

impl Subscriber {
    /// Subscribes to channels (cluster-wide). Returns once the server confirmed them, the
    /// server's error when it refused (an ACL: then they are no longer desired), or
    /// [`ErrorKind::Timeout`] after `request_timeout` (they stay desired, and the
    /// subscriber keeps trying).
    pub async fn subscribe<C: ToArg>(&self, channels: &[C]) -> Result<()> {
        self.change(SubKind::Channel, channels, true).await
    }

    /// Subscribes to glob-style patterns (cluster-wide).
    pub async fn psubscribe<C: ToArg>(&self, patterns: &[C]) -> Result<()> {
        self.change(SubKind::Pattern, patterns, true).await
    }

    /// Subscribes to sharded channels, each on its slot's owner.
    pub async fn ssubscribe<C: ToArg>(&self, channels: &[C]) -> Result<()> {
        self.change(SubKind::Sharded, channels, true).await
    }

    /// Ends channel subscriptions.
    pub async fn unsubscribe<C: ToArg>(&self, channels: &[C]) -> Result<()> {
        self.change(SubKind::Channel, channels, false).await
    }

    /// Ends pattern subscriptions.
    pub async fn punsubscribe<C: ToArg>(&self, patterns: &[C]) -> Result<()> {
        self.change(SubKind::Pattern, patterns, false).await
    }

    /// Ends sharded subscriptions.
    pub async fn sunsubscribe<C: ToArg>(&self, channels: &[C]) -> Result<()> {
        self.change(SubKind::Sharded, channels, false).await
    }

    /// The next message, waiting for one; `None` once the subscriber or its client is
    /// closed and the buffered messages are drained.
    pub async fn next_message(&self) -> Option<Message> {
        loop {
            let changed = self.shared.changed.notified();
            if let Some(m) = self.try_next_message() {
                return Some(m);
            }
            if self.shared.is_closed() {
                return None;
            }
            changed.await;
        }
    }

    /// The next buffered message, without waiting.
    pub fn try_next_message(&self) -> Option<Message> {
        self.shared.state.borrow_mut().next_message()
    }

    /// Subscriptions not in place: desired but not confirmed where they belong, or
    /// undesired but still held. 0 when the server matches what was asked.
    pub fn out_of_sync(&self) -> usize {
        self.shared.state.borrow().subs.out_of_sync()
    }

    /// The desired subscriptions.
    pub fn subscriptions(&self) -> Vec<(SubKind, bytes::Bytes)> {
        let state = self.shared.state.borrow();
        state.subs.desired().map(|(k, n)| (k, n.clone())).collect()
    }

    /// Messages dropped because the buffer was full (the caller did not keep up).
    pub fn dropped_messages(&self) -> u64 {
        self.shared.state.borrow().dropped()
    }

    /// Connections the subscriber lost and replaced, subscriptions and all.
    pub fn reconnects(&self) -> u64 {
        self.shared.state.borrow().reconnects()
    }

    /// Closes the subscriber's connections; [`Subscriber::next_message`] then returns
    /// the buffered messages and `None`.
    pub fn close(&self) {
        self.shared.close();
    }

    async fn change<C: ToArg>(&self, kind: SubKind, names: &[C], add: bool) -> Result<()> {
        if self.shared.is_closed() {
            return Err(Error::new(ErrorKind::Shutdown, "subscriber closed"));
        }
        let change = self.shared.state.borrow_mut().change(kind, names, add);
        self.shared.reconcile_now();
        let timeout = self.shared.client.inner.config.request_timeout;
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            let changed = self.shared.changed.notified();
            let done = self.shared.state.borrow_mut().change_done(&change);
            if let Some(done) = done {
                if done.is_err() {
                    // The refused names are not wanted any more: unsubscribe wherever
                    // they were taken.
                    self.shared.reconcile_now();
                }
                return done;
            }
            if self.shared.is_closed() {
                return Err(Error::new(ErrorKind::Shutdown, "subscriber closed"));
            }
            if crate::io::rt::timeout_at(deadline, changed).await.is_none() {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the server did not confirm in time; the subscriber keeps trying (see out_of_sync)",
                ));
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.get() || self.client.inner.closed.get()
    }

    fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let open: Vec<ConnId> = self.state.borrow_mut().links.drain();
        let mut pool = self.client.inner.pool.borrow_mut();
        for conn in open {
            pool.close(conn);
        }
        drop(pool);
        self.changed.notify_waiters();
        self.reconcile.notify_one();
    }

    fn reconcile_now(&self) {
        self.reconcile.notify_one();
    }

    /// One pass: forget dead connections, open the ones the subscriptions need, send
    /// what [`Subscriptions::reconcile`] says, close connections nothing needs.
    fn reconcile(self: &Rc<Self>) {
        if self.is_closed() {
            return;
        }
        let client = &self.client;
        let map = client.slot_map();
        let lost = {
            let pool = client.inner.pool.borrow();
            self.state
                .borrow_mut()
                .forget_dead(|_, conn| !pool.is_closed(conn))
        };
        if lost > 0 {
            // The node may have failed over: learn the new owners.
            client.schedule_refresh();
        }
        let targets = self.state.borrow().subs.targets(&map);
        let missing = self.state.borrow().links.missing(&targets);
        for target in missing {
            let node = match &target {
                Target::Node(node) => Some(node.clone()),
                Target::AnyNode => self.any_node(),
            };
            if let Some(node) = node {
                let conn = self.open_link(&node);
                self.state.borrow_mut().links.insert(target, conn.id, conn);
            }
        }
        let now = Instant::now();
        let actions = {
            let mut state = self.state.borrow_mut();
            let SubscriberState { subs, links, .. } = &mut *state;
            subs.reconcile(now, &map, |t| links.link_for(t))
        };
        let mut pool = client.inner.pool.borrow_mut();
        for action in actions {
            let conn = self.state.borrow().links.conn_for(&action);
            if let Some((_, conn)) = conn {
                // A closed connection is found on the next pass and its subscriptions
                // are sent again elsewhere.
                let _ = pool.send_unanswered(conn, &action.command);
            }
        }
        // Connections to targets no subscription needs any more (a slot's old owner).
        let unneeded = self.state.borrow_mut().links.take_unneeded(&targets);
        for (_, conn) in unneeded {
            pool.close(conn);
        }
        drop(pool);
        self.changed.notify_waiters();
    }

    /// A node for the cluster-wide subscriptions: a primary whose connections are not
    /// failing, at random (so many subscribers spread out).
    fn any_node(&self) -> Option<NodeAddr> {
        let cluster = self.client.inner.cluster.borrow();
        let pool = self.client.inner.pool.borrow();
        pool.nodes()
            .any_primary(cluster.map(), cluster.seeds(), random_unit())
    }

    /// Opens a subscriber connection to `node`; its frames come back as events.
    fn open_link(self: &Rc<Self>, node: &NodeAddr) -> ConnId {
        let weak = Rc::downgrade(self);
        // The link's id is the connection's, known once it is registered.
        let link = Rc::new(Cell::new(None));
        let handler = {
            let link = link.clone();
            PushHandler::new(move |from, frame| {
                if let (Some(shared), Some(link)) = (weak.upgrade(), link.get()) {
                    shared.on_frame(link, from, frame);
                }
            })
        };
        let conn = self.client.open_connection(node, Kind::Subscriber(handler));
        link.set(Some(conn.id));
        conn
    }

    fn on_frame(&self, link: LinkId, from: &NodeAddr, frame: crate::core::resp::Value) {
        let then = self.state.borrow_mut().on_frame(link, from, frame);
        if let Some(moved) = then.moved {
            self.client.apply_effects(
                std::iter::once(Effect::Redirected { moved: Some(moved) }),
                Lane::Shared,
            );
        }
        if then.refresh {
            self.client.schedule_refresh();
        }
        self.changed.notify_waiters();
        if then.reconcile {
            self.reconcile.notify_one();
        }
    }
}

/// Reconciles on every wake-up and every tick until the subscriber is dropped or closed.
async fn reconcile_loop(shared: Weak<Shared>, wake: Rc<Notify>) {
    loop {
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if shared.is_closed() {
                shared.close();
                return;
            }
            shared.reconcile();
        }
        let tick = std::time::Instant::now().checked_add(RECONCILE_TICK);
        crate::io::rt::timeout_at(tick, wake.notified()).await;
    }
}
