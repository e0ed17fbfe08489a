//! Pub/sub subscriptions as data: what the caller wants, where each subscription stands,
//! and what to send so the two agree. No I/O; the driver is
//! `Subscriber`.
//!
//! Subscriptions need connections of their own: a subscribed connection answers with
//! pushes, not replies, so it cannot carry other callers' commands. `SUBSCRIBE` and
//! `PSUBSCRIBE` are cluster-wide (a message published on any node reaches subscribers on
//! every node), so one connection to any node serves them all. `SSUBSCRIBE` is sharded:
//! the channel hashes to a slot like a key, and only that slot's owner delivers it.
//!
//! [`Subscriptions`] keeps the *desired* set and, per entry, the connection it was sent on
//! and whether the server confirmed it. [`Subscriptions::reconcile`] is called after
//! anything changes (a new subscription, a lost connection, a slot that moved, a server
//! that unsubscribed us, a confirmation that did not come) and returns the commands that
//! bring the server back in line. What it cannot fix yet (no owner known for a slot) stays
//! counted in [`Subscriptions::out_of_sync`].
//!
//! Delivery is what Redis gives: at most once. A message published while a subscription
//! is being moved (after a failover, a reconnect, or a slot migration) is lost. A message
//! is handed over only when it arrives on the connection its subscription currently lives
//! on, so a subscription briefly present on two connections never delivers twice.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::core::cmd::{cmd, Cmd};
use crate::core::redirect::{parse_redirect, Redirect};
use crate::core::resp::Value;
use crate::core::slot::{slot_for_key, Slot};
use crate::core::topology::{NodeAddr, SlotMap};

/// The three kinds of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubKind {
    /// `SUBSCRIBE channel`: cluster-wide.
    Channel,
    /// `PSUBSCRIBE pattern`: cluster-wide, glob-style.
    Pattern,
    /// `SSUBSCRIBE channel`: sharded, served by the channel's slot owner.
    Sharded,
}

impl SubKind {
    fn subscribe(self) -> &'static str {
        match self {
            SubKind::Channel => "SUBSCRIBE",
            SubKind::Pattern => "PSUBSCRIBE",
            SubKind::Sharded => "SSUBSCRIBE",
        }
    }

    fn unsubscribe(self) -> &'static str {
        match self {
            SubKind::Channel => "UNSUBSCRIBE",
            SubKind::Pattern => "PUNSUBSCRIBE",
            SubKind::Sharded => "SUNSUBSCRIBE",
        }
    }
}

/// A published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subscription that matched it.
    pub kind: SubKind,
    /// The channel it was published to.
    pub channel: Bytes,
    /// The pattern that matched, for [`SubKind::Pattern`].
    pub pattern: Option<Bytes>,
    /// The payload.
    pub payload: Bytes,
}

/// One frame read on a subscribed connection, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message.
    Message(Message),
    /// The server confirmed a subscription.
    Subscribed(SubKind, Bytes),
    /// The server ended a subscription: asked for, or on its own (a sharded channel whose
    /// slot moved away).
    Unsubscribed(SubKind, Bytes),
    /// A subscribe command was redirected (`SSUBSCRIBE` to a node that does not own the
    /// slot).
    Redirected(Redirect),
    /// Another error reply (an ACL refusal, say).
    Error(Bytes),
    /// Anything else (`PONG`, an invalidation): ignored.
    Other,
}

/// Understands a frame from a subscribed connection: a RESP3 push, a RESP2 array, or an
/// error reply.
///
/// ```
/// use bytes::Bytes;
/// use redis_cluster_uring::core::pubsub::{parse_event, Event, SubKind};
/// use redis_cluster_uring::Value;
/// let b = |s: &'static str| Value::Bulk(Bytes::from_static(s.as_bytes()));
/// let frame = Value::Push(vec![b("smessage"), b("orders"), b("42")]);
/// let Event::Message(m) = parse_event(frame) else { unreachable!() };
/// assert_eq!((m.kind, &m.channel[..], &m.payload[..]), (SubKind::Sharded, &b"orders"[..], &b"42"[..]));
/// ```
pub fn parse_event(frame: Value) -> Event {
    let items = match frame {
        Value::Push(items) | Value::Array(items) => items,
        Value::Error(line) => {
            return match parse_redirect(&line) {
                Some(r) => Event::Redirected(r),
                None => Event::Error(line),
            }
        }
        _ => return Event::Other,
    };
    let mut it = items.into_iter();
    let Some(kind) = it.next().and_then(bytes_of) else {
        return Event::Other;
    };
    let mut next = || it.next().and_then(bytes_of);
    let lower = kind.to_ascii_lowercase();
    match &lower[..] {
        b"message" | b"smessage" => match (next(), next()) {
            (Some(channel), Some(payload)) => Event::Message(Message {
                kind: if &lower[..] == b"message" {
                    SubKind::Channel
                } else {
                    SubKind::Sharded
                },
                channel,
                pattern: None,
                payload,
            }),
            _ => Event::Other,
        },
        b"pmessage" => match (next(), next(), next()) {
            (Some(pattern), Some(channel), Some(payload)) => Event::Message(Message {
                kind: SubKind::Pattern,
                channel,
                pattern: Some(pattern),
                payload,
            }),
            _ => Event::Other,
        },
        b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe"
        | b"sunsubscribe" => {
            let Some(name) = next() else {
                // `UNSUBSCRIBE` with nothing subscribed answers with a nil name.
                return Event::Other;
            };
            let sub_kind = match &lower[..] {
                b"psubscribe" | b"punsubscribe" => SubKind::Pattern,
                b"ssubscribe" | b"sunsubscribe" => SubKind::Sharded,
                _ => SubKind::Channel,
            };
            if lower.ends_with(b"unsubscribe") {
                Event::Unsubscribed(sub_kind, name)
            } else {
                Event::Subscribed(sub_kind, name)
            }
        }
        _ => Event::Other,
    }
}

fn bytes_of(v: Value) -> Option<Bytes> {
    match v {
        Value::Bulk(b) | Value::SimpleString(b) => Some(b),
        _ => None,
    }
}

/// What a subscriber's driver does about an event besides handing it to
/// [`Subscriptions::on_event`] (see [`follow_up`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FollowUp {
    /// A `MOVED` to apply to the slot map.
    pub(crate) moved: Option<(Slot, NodeAddr)>,
    /// The slot map should be reloaded (an `ASK`, or a sharded channel the server ended
    /// on its own: its slot moved away).
    pub(crate) refresh: bool,
    /// Reconcile now rather than at the next tick.
    pub(crate) reconcile: bool,
}

/// The follow-up of `event`, read on a connection to `from`.
pub(crate) fn follow_up(event: &Event, from: &NodeAddr) -> FollowUp {
    match event {
        Event::Redirected(Redirect::Moved { slot, addr }) => {
            let to = if addr.host.is_empty() {
                NodeAddr::new(from.host.clone(), addr.port)
            } else {
                addr.clone()
            };
            FollowUp {
                moved: Some((*slot, to)),
                refresh: false,
                reconcile: true,
            }
        }
        Event::Redirected(Redirect::Ask { .. }) | Event::Unsubscribed(SubKind::Sharded, _) => {
            FollowUp {
                moved: None,
                refresh: true,
                reconcile: true,
            }
        }
        Event::Unsubscribed(..) => FollowUp {
            reconcile: true,
            ..FollowUp::default()
        },
        _ => FollowUp::default(),
    }
}

/// Where a subscription command goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The one connection for cluster-wide subscriptions (any node).
    AnyNode,
    /// A sharded channel's slot owner.
    Node(NodeAddr),
}

/// Identifies one connection (one incarnation: a reconnect gets a new id).
pub type LinkId = u64;

/// A command to send so that the server matches the desired set.
#[derive(Debug)]
pub struct Action {
    /// Where.
    pub target: Target,
    /// The connection, when the action is for a particular one (an unsubscribe from a
    /// connection that no longer should hold the subscription); `None`: the target's.
    pub link: Option<LinkId>,
    /// `SUBSCRIBE a b`, `SUNSUBSCRIBE c`, ...
    pub command: Cmd,
}

#[derive(Debug, Clone)]
struct Entry {
    desired: bool,
    /// The connection the subscription was last sent on, and its target.
    on: Option<(LinkId, Target)>,
    /// The server confirmed it there.
    confirmed: bool,
    sent_at: Option<Instant>,
}

/// The desired subscriptions and their state; see the module documentation.
///
/// ```
/// use redis_cluster_uring::core::pubsub::{SubKind, Subscriptions, Target};
/// use redis_cluster_uring::{NodeAddr, SlotMap};
/// use std::time::{Duration, Instant};
/// let map = SlotMap::split_evenly(&[NodeAddr::new("127.0.0.1", 7000)]);
/// let mut subs = Subscriptions::new(Duration::from_secs(1));
/// subs.want(SubKind::Channel, [&b"news"[..]]);
/// assert_eq!(subs.out_of_sync(), 1);
/// let actions = subs.reconcile(Instant::now(), &map, |_target| Some(1));
/// assert_eq!(actions[0].target, Target::AnyNode);
/// ```
#[derive(Debug)]
pub struct Subscriptions {
    entries: BTreeMap<(SubKind, Bytes), Entry>,
    resend_after: Duration,
}

impl Subscriptions {
    /// No subscriptions; an unconfirmed subscription is sent again after `resend_after`.
    pub fn new(resend_after: Duration) -> Subscriptions {
        Subscriptions {
            entries: BTreeMap::new(),
            resend_after,
        }
    }

    /// Adds to the desired set.
    pub fn want<'a>(&mut self, kind: SubKind, names: impl IntoIterator<Item = &'a [u8]>) {
        for name in names {
            self.entries
                .entry((kind, Bytes::copy_from_slice(name)))
                .and_modify(|e| e.desired = true)
                .or_insert(Entry {
                    desired: true,
                    on: None,
                    confirmed: false,
                    sent_at: None,
                });
        }
    }

    /// Removes from the desired set (the unsubscribe goes out on the next reconcile).
    pub fn unwant<'a>(&mut self, kind: SubKind, names: impl IntoIterator<Item = &'a [u8]>) {
        for name in names {
            if let Some(e) = self.entries.get_mut(&(kind, Bytes::copy_from_slice(name))) {
                e.desired = false;
            }
        }
    }

    /// Whether every one of `names` is desired and confirmed.
    pub fn all_confirmed<'a>(
        &self,
        kind: SubKind,
        mut names: impl Iterator<Item = &'a [u8]>,
    ) -> bool {
        names.all(|n| {
            self.entries
                .get(&(kind, Bytes::copy_from_slice(n)))
                .is_some_and(|e| e.desired && e.confirmed)
        })
    }

    /// Whether none of `names` is held on any connection any more.
    pub fn all_gone<'a>(&self, kind: SubKind, mut names: impl Iterator<Item = &'a [u8]>) -> bool {
        names.all(|n| {
            !self
                .entries
                .contains_key(&(kind, Bytes::copy_from_slice(n)))
        })
    }

    /// Desired subscriptions not confirmed where they belong, plus undesired ones still
    /// held: how far the server is from what the caller asked for.
    pub fn out_of_sync(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.desired != e.confirmed)
            .count()
    }

    /// The desired subscriptions.
    pub fn desired(&self) -> impl Iterator<Item = (SubKind, &Bytes)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.desired)
            .map(|((k, n), _)| (*k, n))
    }

    /// Applies a frame read on `link`. Returns the message to hand to the caller, if
    /// it is one and belongs to a subscription that lives on that connection.
    pub fn on_event(&mut self, link: LinkId, event: Event) -> Option<Message> {
        match event {
            Event::Message(m) => {
                let name = m.pattern.as_ref().unwrap_or(&m.channel);
                let e = self.entries.get(&(m.kind, name.clone()))?;
                (e.desired && e.on.as_ref().is_some_and(|(l, _)| *l == link)).then_some(m)
            }
            Event::Subscribed(kind, name) => {
                if let Some(e) = self.entries.get_mut(&(kind, name)) {
                    if e.on.as_ref().is_some_and(|(l, _)| *l == link) {
                        e.confirmed = true;
                    }
                }
                None
            }
            Event::Unsubscribed(kind, name) => {
                let key = (kind, name);
                if let Some(e) = self.entries.get_mut(&key) {
                    if e.on.as_ref().is_some_and(|(l, _)| *l == link) {
                        e.on = None;
                        e.confirmed = false;
                        e.sent_at = None;
                        if !e.desired {
                            self.entries.remove(&key);
                        }
                    }
                }
                None
            }
            Event::Redirected(_) => {
                // A sharded subscription went to a node that does not own its slot: send
                // the unconfirmed ones of this connection again once the map has the owner
                // (the driver applies the redirect to the map).
                for e in self.entries.values_mut() {
                    if !e.confirmed && e.on.as_ref().is_some_and(|(l, _)| *l == link) {
                        e.on = None;
                        e.sent_at = None;
                    }
                }
                None
            }
            Event::Error(_) | Event::Other => None,
        }
    }

    /// A connection is gone: everything it held must be sent again elsewhere.
    pub fn link_lost(&mut self, link: LinkId) {
        self.entries.retain(|_, e| {
            if e.on.as_ref().is_some_and(|(l, _)| *l == link) {
                e.on = None;
                e.confirmed = false;
                e.sent_at = None;
            }
            e.desired || e.on.is_some()
        });
    }

    /// Where each desired subscription belongs now: the cluster-wide connection, or the
    /// slot owner for sharded channels (`None` when the map has no owner).
    fn target_of(kind: SubKind, name: &[u8], map: &SlotMap) -> Option<Target> {
        match kind {
            SubKind::Channel | SubKind::Pattern => Some(Target::AnyNode),
            SubKind::Sharded => map
                .node_for(slot_for_key(name))
                .map(|n| Target::Node(n.clone())),
        }
    }

    /// The targets the desired subscriptions need connections to (the driver opens them
    /// before calling [`Subscriptions::reconcile`]).
    pub fn targets(&self, map: &SlotMap) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .entries
            .iter()
            .filter(|(_, e)| e.desired)
            .filter_map(|((k, n), _)| Self::target_of(*k, n, map))
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }

    /// The commands that bring the server in line with the desired set. `link_of` names
    /// the live connection to a target (`None`: not connected yet; those entries wait).
    ///
    /// A subscription moves when its target changed (a sharded slot with a new owner, or
    /// a new cluster-wide connection), is sent where it never was, and is sent again when
    /// its confirmation is `resend_after` late. Unwanted ones are unsubscribed where they
    /// live. Sharded channels are grouped by slot (a multi-slot `SSUBSCRIBE` is refused).
    pub fn reconcile(
        &mut self,
        now: Instant,
        map: &SlotMap,
        link_of: impl Fn(&Target) -> Option<LinkId>,
    ) -> Vec<Action> {
        // (target, link for unsubscribes, kind, slot for sharded, subscribe?) -> names
        type Group = (Target, Option<LinkId>, SubKind, Option<Slot>, bool);
        let mut groups: BTreeMap<Group, Vec<Bytes>> = BTreeMap::new();
        let resend_after = self.resend_after;
        let mut drop_keys = Vec::new();
        for ((kind, name), e) in self.entries.iter_mut() {
            let slot = (*kind == SubKind::Sharded).then(|| slot_for_key(name));
            if !e.desired {
                if let Some((link, target)) = e.on.take() {
                    groups
                        .entry((target, Some(link), *kind, slot, false))
                        .or_default()
                        .push(name.clone());
                }
                // Forgotten now: a message that still comes for it is not delivered.
                drop_keys.push((*kind, name.clone()));
                continue;
            }
            let Some(target) = Self::target_of(*kind, name, map) else {
                continue;
            };
            let Some(link) = link_of(&target) else {
                continue;
            };
            let in_place = e.on.as_ref().is_some_and(|(l, _)| *l == link);
            let late = !e.confirmed
                && e.sent_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= resend_after);
            if in_place && !late {
                continue;
            }
            if let Some((old, old_target)) = e.on.take().filter(|(l, _)| *l != link) {
                // Leave the old place (it may still be alive: a slot that moved while its
                // old owner keeps running).
                groups
                    .entry((old_target, Some(old), *kind, slot, false))
                    .or_default()
                    .push(name.clone());
            }
            groups
                .entry((target.clone(), None, *kind, slot, true))
                .or_default()
                .push(name.clone());
            e.on = Some((link, target));
            e.confirmed = false;
            e.sent_at = Some(now);
        }
        for key in drop_keys {
            self.entries.remove(&key);
        }
        groups
            .into_iter()
            .map(|((target, link, kind, _slot, subscribe), names)| {
                let mut command = cmd(if subscribe {
                    kind.subscribe()
                } else {
                    kind.unsubscribe()
                });
                for n in &names {
                    command.push_arg(&n[..]);
                }
                Action {
                    target,
                    link,
                    command,
                }
            })
            .collect()
    }
}

/// What a subscriber holds, whichever driver runs it: the subscriptions, its
/// connections (`Links<C>`), the messages not taken yet (at most `max_buffered`: the
/// oldest go first, counted), the refusal a caller waits to hear, and how many
/// connections were lost. Both subscribers keep theirs in one of these, so what a frame
/// means and when a caller's change is done are decided once.
#[derive(Debug)]
pub(crate) struct SubscriberState<C> {
    pub(crate) subs: Subscriptions,
    pub(crate) links: Links<C>,
    inbox: std::collections::VecDeque<Message>,
    max_buffered: usize,
    dropped: u64,
    lost: u64,
    refusal: Option<crate::core::error::Error>,
}

/// A caller's change of subscriptions (`SUBSCRIBE a b`, `UNSUBSCRIBE c`), waited on until
/// the servers confirm it or refuse it.
#[derive(Debug)]
pub(crate) struct Change {
    kind: SubKind,
    names: Vec<Bytes>,
    add: bool,
}

impl<C: Copy> SubscriberState<C> {
    /// No subscriptions yet. An unconfirmed one is sent again after the request timeout
    /// (within 200 ms to 5 s); `max_buffered_messages` bound the messages kept.
    pub(crate) fn new(config: &crate::core::config::Config) -> SubscriberState<C> {
        let resend_after = config
            .request_timeout
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(200), Duration::from_secs(5));
        let max_buffered = config.max_buffered_messages;
        SubscriberState {
            subs: Subscriptions::new(resend_after),
            links: Links::default(),
            inbox: std::collections::VecDeque::new(),
            max_buffered: max_buffered.max(1),
            dropped: 0,
            lost: 0,
            refusal: None,
        }
    }

    /// Starts a change: `names` of `kind` wanted (`add`) or not; the next reconcile
    /// sends it.
    pub(crate) fn change<N: crate::core::cmd::ToArg>(
        &mut self,
        kind: SubKind,
        names: &[N],
        add: bool,
    ) -> Change {
        let mut list = cmd("_");
        for n in names {
            list.push_arg(n);
        }
        let names: Vec<Bytes> = list.args().skip(1).map(Bytes::copy_from_slice).collect();
        self.refusal = None;
        let names_ref = names.iter().map(|n| &n[..]);
        if add {
            self.subs.want(kind, names_ref);
        } else {
            self.subs.unwant(kind, names_ref);
        }
        Change { kind, names, add }
    }

    /// Where `change` stands: `Some(Ok)` when the servers confirmed it, `Some(Err)` when
    /// one refused (an ACL, say: the names are then not wanted any more, and the caller
    /// is told), `None` while it is under way.
    pub(crate) fn change_done(
        &mut self,
        change: &Change,
    ) -> Option<crate::core::error::Result<()>> {
        let names = || change.names.iter().map(|n| &n[..]);
        if let Some(e) = self.refusal.take() {
            self.subs.unwant(change.kind, names());
            return Some(Err(e));
        }
        let done = if change.add {
            self.subs.all_confirmed(change.kind, names())
        } else {
            self.subs.all_gone(change.kind, names())
        };
        done.then_some(Ok(()))
    }

    /// A frame read on `link`, a connection to `from`: a message is kept for the caller
    /// (when its subscription lives on that connection), a refusal for the caller
    /// waiting on a change; what the driver must do about it is returned.
    pub(crate) fn on_frame(&mut self, link: LinkId, from: &NodeAddr, frame: Value) -> FollowUp {
        let event = parse_event(frame);
        let then = follow_up(&event, from);
        if let Event::Error(line) = &event {
            tracing::warn!(node = %from, error = %String::from_utf8_lossy(line), "subscription refused");
            self.refusal = Some(crate::core::reply::server_error(line));
        }
        if let Some(message) = self.subs.on_event(link, event) {
            self.keep(message);
        }
        then
    }

    fn keep(&mut self, message: Message) {
        if self.inbox.len() >= self.max_buffered {
            self.inbox.pop_front();
            self.dropped += 1;
        }
        self.inbox.push_back(message);
    }

    /// The oldest message not taken yet.
    pub(crate) fn next_message(&mut self) -> Option<Message> {
        self.inbox.pop_front()
    }

    /// Whether a message waits.
    pub(crate) fn has_message(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Messages dropped: by the bound here, and those the driver dropped before them.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// `n` messages dropped before they got here (the driver's own bounded buffer).
    pub(crate) fn add_dropped(&mut self, n: u64) {
        self.dropped += n;
    }

    /// Forgets the connections `alive` says are gone (their subscriptions go elsewhere
    /// at the next reconcile); the count is kept. When any was lost, the driver asks for
    /// a refresh: the node may have failed over.
    pub(crate) fn forget_dead(&mut self, alive: impl Fn(LinkId, C) -> bool) -> usize {
        let lost = self.links.forget_dead(&mut self.subs, alive);
        self.lost += lost as u64;
        lost
    }

    /// Connections lost (and their subscriptions sent again elsewhere) so far.
    pub(crate) fn reconnects(&self) -> u64 {
        self.lost
    }
}

/// A subscriber's connections as its driver holds them: the connection serving each
/// target, and every open one by link id (one that lost its target still gets its
/// unsubscribes before it is closed). `C` is the driver's handle to a connection (a pool
/// id, a slab token). Both subscribers keep their connections in one of these, so the
/// bookkeeping of a reconcile pass (forget the dead, open the missing, close the
/// unneeded) is written once.
#[derive(Debug)]
pub(crate) struct Links<C> {
    by_target: HashMap<Target, LinkId>,
    open: HashMap<LinkId, C>,
}

impl<C: Copy> Default for Links<C> {
    fn default() -> Self {
        Links {
            by_target: HashMap::new(),
            open: HashMap::new(),
        }
    }
}

impl<C: Copy> Links<C> {
    /// Forgets the connections `alive` says are gone and tells `subs` that their
    /// subscriptions are lost (the next reconcile sends them elsewhere). Returns how many
    /// were lost: when any, the driver asks for a refresh (the node may have failed over).
    pub(crate) fn forget_dead(
        &mut self,
        subs: &mut Subscriptions,
        alive: impl Fn(LinkId, C) -> bool,
    ) -> usize {
        let dead: Vec<LinkId> = self
            .open
            .iter()
            .filter(|(link, conn)| !alive(**link, **conn))
            .map(|(link, _)| *link)
            .collect();
        for link in &dead {
            self.open.remove(link);
            self.by_target.retain(|_, l| l != link);
            subs.link_lost(*link);
        }
        dead.len()
    }

    /// Of `targets`, those no connection serves yet: the driver opens one for each.
    pub(crate) fn missing(&self, targets: &[Target]) -> Vec<Target> {
        targets
            .iter()
            .filter(|t| !self.by_target.contains_key(*t))
            .cloned()
            .collect()
    }

    /// A new connection `conn`, link id `link`, serves `target`.
    pub(crate) fn insert(&mut self, target: Target, link: LinkId, conn: C) {
        self.by_target.insert(target, link);
        self.open.insert(link, conn);
    }

    /// The link serving `target`, for [`Subscriptions::reconcile`].
    pub(crate) fn link_for(&self, target: &Target) -> Option<LinkId> {
        self.by_target.get(target).copied()
    }

    /// The connection an action goes to: its own link's, or its target's.
    pub(crate) fn conn_for(&self, action: &Action) -> Option<(LinkId, C)> {
        let link = action.link.or_else(|| self.link_for(&action.target))?;
        Some((link, *self.open.get(&link)?))
    }

    /// The connection of `link`, while open.
    pub(crate) fn conn_of(&self, link: LinkId) -> Option<C> {
        self.open.get(&link).copied()
    }

    /// Every open connection.
    pub(crate) fn open(&self) -> impl Iterator<Item = (LinkId, C)> + '_ {
        self.open.iter().map(|(l, c)| (*l, *c))
    }

    /// Removes the connections of targets that are not in `targets` any more (a slot's
    /// old owner): the driver closes them.
    pub(crate) fn take_unneeded(&mut self, targets: &[Target]) -> Vec<(LinkId, C)> {
        let unneeded: Vec<Target> = self
            .by_target
            .keys()
            .filter(|t| !targets.contains(t))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for target in unneeded {
            if let Some(link) = self.by_target.remove(&target) {
                if let Some(conn) = self.open.remove(&link) {
                    out.push((link, conn));
                }
            }
        }
        out
    }

    /// Removes every connection (the subscriber closes): the driver closes them.
    pub(crate) fn drain(&mut self) -> Vec<C> {
        self.by_target.clear();
        self.open.drain().map(|(_, c)| c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn a() -> NodeAddr {
        NodeAddr::new("127.0.0.1", 7000)
    }

    fn c() -> NodeAddr {
        NodeAddr::new("127.0.0.1", 7001)
    }

    fn names(action: &Action) -> Vec<String> {
        action
            .command
            .args()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    fn state(max_buffered: usize) -> SubscriberState<u32> {
        let config = crate::core::config::Config {
            max_buffered_messages: max_buffered,
            ..Default::default()
        };
        SubscriberState::new(&config)
    }

    #[test]
    fn a_refused_change_is_reported_once_and_no_longer_wanted() {
        let mut st = state(8);
        let change = st.change(SubKind::Channel, &["news"], true);
        assert!(st.change_done(&change).is_none(), "not confirmed yet");
        let then = st.on_frame(1, &a(), Value::Error(Bytes::from_static(b"NOPERM no")));
        assert!(then.moved.is_none());
        let done = st.change_done(&change).expect("the refusal ends the wait");
        assert!(done.is_err());
        assert_eq!(st.subs.desired().count(), 0, "refused names are not wanted");
        assert!(
            st.change_done(&change).is_none(),
            "the refusal is heard once"
        );
        // A new change starts with no refusal left over.
        let again = st.change(SubKind::Channel, &["other"], true);
        assert!(st.change_done(&again).is_none());
    }

    #[test]
    fn lost_connections_are_forgotten_and_counted() {
        let mut st = state(8);
        st.links.insert(Target::AnyNode, 1, 10);
        st.links.insert(Target::Node(a()), 2, 20);
        assert_eq!(st.forget_dead(|_, conn| conn != 10), 1);
        assert_eq!(st.reconnects(), 1);
        assert_eq!(st.forget_dead(|_, _| true), 0);
        assert_eq!(st.forget_dead(|_, _| false), 1);
        assert_eq!(st.reconnects(), 2);
    }

    #[test]
    fn an_unsubscribe_is_done_once_nothing_holds_it() {
        let mut st = state(8);
        let change = st.change(SubKind::Channel, &["never-held"], false);
        assert!(matches!(st.change_done(&change), Some(Ok(()))));
    }

    #[test]
    fn messages_past_the_bound_drop_the_oldest_and_are_counted() {
        let mut st = state(2);
        for i in 0..5u8 {
            st.keep(Message {
                kind: SubKind::Channel,
                channel: Bytes::from_static(b"c"),
                pattern: None,
                payload: Bytes::copy_from_slice(&[i]),
            });
        }
        st.add_dropped(4);
        assert_eq!(st.dropped(), 3 + 4);
        assert!(st.has_message());
        assert_eq!(&st.next_message().unwrap().payload[..], &[3]);
        assert_eq!(&st.next_message().unwrap().payload[..], &[4]);
        assert!(st.next_message().is_none());
        assert!(!st.has_message());
    }

    #[test]
    fn frames_of_both_protocols_are_understood() {
        let push = |items: Vec<Value>| Value::Push(items);
        assert_eq!(
            parse_event(push(vec![b("subscribe"), b("news"), Value::Int(1)])),
            Event::Subscribed(SubKind::Channel, Bytes::from_static(b"news"))
        );
        assert_eq!(
            parse_event(Value::Array(vec![b("psubscribe"), b("n*"), Value::Int(2)])),
            Event::Subscribed(SubKind::Pattern, Bytes::from_static(b"n*"))
        );
        assert_eq!(
            parse_event(push(vec![b("ssubscribe"), b("o"), Value::Int(1)])),
            Event::Subscribed(SubKind::Sharded, Bytes::from_static(b"o"))
        );
        assert_eq!(
            parse_event(push(vec![b("sunsubscribe"), b("o"), Value::Int(0)])),
            Event::Unsubscribed(SubKind::Sharded, Bytes::from_static(b"o"))
        );
        assert_eq!(
            parse_event(push(vec![b("unsubscribe"), b("news"), Value::Int(0)])),
            Event::Unsubscribed(SubKind::Channel, Bytes::from_static(b"news"))
        );
        assert_eq!(
            parse_event(push(vec![b("punsubscribe"), b("n*"), Value::Int(0)])),
            Event::Unsubscribed(SubKind::Pattern, Bytes::from_static(b"n*"))
        );
        let Event::Message(m) = parse_event(push(vec![b("pmessage"), b("n*"), b("news"), b("hi")]))
        else {
            panic!()
        };
        assert_eq!(m.pattern.as_deref(), Some(&b"n*"[..]));
        assert_eq!(&m.channel[..], b"news");
        assert!(matches!(
            parse_event(Value::Error(Bytes::from_static(b"MOVED 5 127.0.0.1:7001"))),
            Event::Redirected(Redirect::Moved { .. })
        ));
        // Malformed or foreign frames are ignored, never a panic.
        for junk in [
            Value::Int(3),
            push(vec![]),
            push(vec![Value::Int(1)]),
            push(vec![b("message"), b("only-channel")]),
            push(vec![b("unsubscribe"), Value::Nil, Value::Int(0)]),
            push(vec![b("invalidate"), Value::Nil]),
            Value::SimpleString(Bytes::from_static(b"PONG")),
        ] {
            assert_eq!(parse_event(junk), Event::Other);
        }
    }

    #[test]
    fn desired_subscriptions_are_sent_once_confirmed_and_counted() {
        let map = SlotMap::split_evenly(&[a()]);
        let mut subs = Subscriptions::new(Duration::from_secs(1));
        subs.want(SubKind::Channel, [&b"x"[..], b"y"]);
        subs.want(SubKind::Pattern, [&b"p*"[..]]);
        subs.want(SubKind::Sharded, [&b"{s}1"[..], b"{s}2", b"other"]);
        assert_eq!(subs.out_of_sync(), 6);
        let now = Instant::now();
        // Not connected yet: nothing to send, nothing marked.
        assert!(subs.reconcile(now, &map, |_| None).is_empty());
        let actions = subs.reconcile(now, &map, |t| match t {
            Target::AnyNode => Some(1),
            Target::Node(_) => Some(2),
        });
        let sent: Vec<Vec<String>> = actions.iter().map(names).collect();
        assert!(sent.contains(&vec!["SUBSCRIBE".into(), "x".into(), "y".into()]));
        assert!(sent.contains(&vec!["PSUBSCRIBE".into(), "p*".into()]));
        // One SSUBSCRIBE per slot.
        assert!(sent.contains(&vec!["SSUBSCRIBE".into(), "{s}1".into(), "{s}2".into()]));
        assert!(sent.contains(&vec!["SSUBSCRIBE".into(), "other".into()]));
        assert_eq!(actions.len(), 4);
        // Not sent again while the confirmation is not late.
        let link = |t: &Target| match t {
            Target::AnyNode => Some(1),
            Target::Node(_) => Some(2),
        };
        assert!(subs.reconcile(now, &map, link).is_empty());
        for (kind, name, link) in [
            (SubKind::Channel, "x", 1),
            (SubKind::Channel, "y", 1),
            (SubKind::Pattern, "p*", 1),
            (SubKind::Sharded, "{s}1", 2),
            (SubKind::Sharded, "{s}2", 2),
            (SubKind::Sharded, "other", 2),
        ] {
            subs.on_event(
                link,
                Event::Subscribed(kind, Bytes::copy_from_slice(name.as_bytes())),
            );
        }
        assert_eq!(subs.out_of_sync(), 0);
        let later = now + Duration::from_secs(5);
        assert!(subs.reconcile(later, &map, link).is_empty());
    }

    #[test]
    fn a_confirmation_that_does_not_come_is_sent_again() {
        let map = SlotMap::split_evenly(&[a()]);
        let mut subs = Subscriptions::new(Duration::from_secs(1));
        subs.want(SubKind::Channel, [&b"x"[..]]);
        let now = Instant::now();
        assert_eq!(subs.reconcile(now, &map, |_| Some(1)).len(), 1);
        assert!(subs
            .reconcile(now + Duration::from_millis(500), &map, |_| Some(1))
            .is_empty());
        assert_eq!(
            subs.reconcile(now + Duration::from_secs(2), &map, |_| Some(1))
                .len(),
            1
        );
    }

    #[test]
    fn lost_link_and_server_unsubscribe_resubscribe_where_the_map_says() {
        let mut map = SlotMap::split_evenly(&[a()]);
        let mut subs = Subscriptions::new(Duration::from_secs(1));
        subs.want(SubKind::Sharded, [&b"orders"[..]]);
        subs.want(SubKind::Channel, [&b"news"[..]]);
        let now = Instant::now();
        subs.reconcile(now, &map, |t| {
            Some(if *t == Target::AnyNode { 1 } else { 2 })
        });
        subs.on_event(1, Event::Subscribed(SubKind::Channel, "news".into()));
        subs.on_event(2, Event::Subscribed(SubKind::Sharded, "orders".into()));
        assert_eq!(subs.out_of_sync(), 0);

        // The cluster-wide connection dies: news goes on the next one.
        subs.link_lost(1);
        assert_eq!(subs.out_of_sync(), 1);
        let actions = subs.reconcile(now, &map, |t| {
            Some(if *t == Target::AnyNode { 3 } else { 2 })
        });
        assert_eq!(actions.len(), 1);
        assert_eq!(names(&actions[0]), ["SUBSCRIBE", "news"]);
        subs.on_event(3, Event::Subscribed(SubKind::Channel, "news".into()));

        // The slot migrates: the old owner unsubscribes us, the map learns the new owner.
        let slot = slot_for_key(b"orders");
        subs.on_event(2, Event::Unsubscribed(SubKind::Sharded, "orders".into()));
        assert_eq!(subs.out_of_sync(), 1);
        map.apply_moved(slot, &c());
        let actions = subs.reconcile(now, &map, |t| match t {
            Target::AnyNode => Some(3),
            Target::Node(n) if *n == c() => Some(4),
            Target::Node(_) => Some(2),
        });
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].target, Target::Node(c()));
        assert_eq!(names(&actions[0]), ["SSUBSCRIBE", "orders"]);
        // A message from the old place is not delivered twice.
        let msg = |link| {
            subs.clone_for_test().on_event(
                link,
                Event::Message(Message {
                    kind: SubKind::Sharded,
                    channel: "orders".into(),
                    pattern: None,
                    payload: "1".into(),
                }),
            )
        };
        assert!(msg(2).is_none());
        assert!(msg(4).is_some());
    }

    #[test]
    fn a_failover_moves_a_confirmed_sharded_subscription_without_any_event() {
        let mut map = SlotMap::split_evenly(&[a()]);
        let mut subs = Subscriptions::new(Duration::from_secs(1));
        subs.want(SubKind::Sharded, [&b"orders"[..]]);
        let now = Instant::now();
        subs.reconcile(now, &map, |_| Some(2));
        subs.on_event(2, Event::Subscribed(SubKind::Sharded, "orders".into()));
        // The owner changes (failover seen in a refresh); the old link is still open.
        map.apply_moved(slot_for_key(b"orders"), &c());
        let actions = subs.reconcile(now, &map, |t| match t {
            Target::Node(n) if *n == c() => Some(5),
            _ => Some(2),
        });
        let sent: Vec<(Option<LinkId>, Vec<String>)> =
            actions.iter().map(|a| (a.link, names(a))).collect();
        assert!(sent.contains(&(Some(2), vec!["SUNSUBSCRIBE".into(), "orders".into()])));
        assert!(sent.contains(&(None, vec!["SSUBSCRIBE".into(), "orders".into()])));
    }

    #[test]
    fn unwanted_subscriptions_are_unsubscribed_and_forgotten() {
        let map = SlotMap::split_evenly(&[a()]);
        let mut subs = Subscriptions::new(Duration::from_secs(1));
        subs.want(SubKind::Channel, [&b"x"[..], b"y"]);
        let now = Instant::now();
        subs.reconcile(now, &map, |_| Some(1));
        subs.on_event(1, Event::Subscribed(SubKind::Channel, "x".into()));
        subs.on_event(1, Event::Subscribed(SubKind::Channel, "y".into()));
        subs.unwant(SubKind::Channel, [&b"x"[..]]);
        assert_eq!(subs.out_of_sync(), 1);
        let actions = subs.reconcile(now, &map, |_| Some(1));
        assert_eq!(names(&actions[0]), ["UNSUBSCRIBE", "x"]);
        assert_eq!(actions[0].link, Some(1));
        // Messages for it are no longer delivered, and the entry is gone.
        assert!(subs.all_gone(SubKind::Channel, [&b"x"[..]].into_iter()));
        assert_eq!(subs.out_of_sync(), 0);
        // Never sent: simply forgotten.
        subs.want(SubKind::Channel, [&b"z"[..]]);
        subs.unwant(SubKind::Channel, [&b"z"[..]]);
        assert!(subs.reconcile(now, &map, |_| Some(1)).is_empty());
        assert!(subs.all_gone(SubKind::Channel, [&b"z"[..]].into_iter()));
    }

    impl Subscriptions {
        fn clone_for_test(&self) -> Subscriptions {
            Subscriptions {
                entries: self.entries.clone(),
                resend_after: self.resend_after,
            }
        }
    }

    #[test]
    fn links_forget_the_dead_open_the_missing_and_close_the_unneeded() {
        let a = Target::Node(NodeAddr::new("a", 1));
        let b = Target::Node(NodeAddr::new("b", 2));
        let mut subs = Subscriptions::new(Duration::from_secs(1));
        let mut links: Links<usize> = Links::default();
        assert_eq!(
            links.missing(&[a.clone(), b.clone()]),
            vec![a.clone(), b.clone()]
        );
        links.insert(a.clone(), 10, 100);
        links.insert(b.clone(), 11, 101);
        assert!(links.missing(&[a.clone(), b.clone()]).is_empty());
        assert_eq!(links.link_for(&a), Some(10));
        let action = Action {
            target: b.clone(),
            link: None,
            command: cmd("SUBSCRIBE").arg("c"),
        };
        assert_eq!(links.conn_for(&action), Some((11, 101)));
        let own = Action {
            target: b.clone(),
            link: Some(10),
            command: cmd("SUBSCRIBE").arg("c"),
        };
        assert_eq!(links.conn_for(&own), Some((10, 100)), "its own link first");
        // b's connection died: forgotten, b is missing again.
        assert_eq!(links.forget_dead(&mut subs, |link, _| link != 11), 1);
        assert_eq!(links.missing(&[a.clone(), b.clone()]), vec![b.clone()]);
        assert_eq!(links.conn_for(&action), None);
        assert_eq!(links.conn_of(11), None);
        assert_eq!(links.forget_dead(&mut subs, |_, _| true), 0);
        assert_eq!(links.conn_of(10), Some(100));
        assert_eq!(links.open().collect::<Vec<_>>(), vec![(10, 100)]);
        // a is not needed any more.
        assert_eq!(
            links.take_unneeded(std::slice::from_ref(&b)),
            vec![(10, 100)]
        );
        assert_eq!(links.open().count(), 0);
        links.insert(a.clone(), 12, 102);
        assert_eq!(links.drain(), vec![102]);
        assert_eq!(links.link_for(&a), None);
    }

    #[test]
    fn follow_ups_of_each_event() {
        let from = NodeAddr::new("10.0.0.1", 7000);
        let moved = follow_up(
            &Event::Redirected(Redirect::Moved {
                slot: Slot::new(3).unwrap(),
                addr: NodeAddr::new("", 7001),
            }),
            &from,
        );
        assert_eq!(
            moved.moved,
            Some((Slot::new(3).unwrap(), NodeAddr::new("10.0.0.1", 7001)))
        );
        assert!(moved.reconcile && !moved.refresh);
        let sharded = follow_up(
            &Event::Unsubscribed(SubKind::Sharded, Bytes::from_static(b"c")),
            &from,
        );
        assert!(sharded.refresh && sharded.reconcile && sharded.moved.is_none());
        // A server-side unsubscribe of a cluster-wide channel: subscribe again, no refresh.
        let plain = follow_up(
            &Event::Unsubscribed(SubKind::Channel, Bytes::from_static(b"c")),
            &from,
        );
        assert!(plain.reconcile && !plain.refresh && plain.moved.is_none());
    }
}
