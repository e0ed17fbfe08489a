//! Cluster `SCAN`: every key of every primary, with progress counted in slots so that it
//! survives resharding and failover.
//!
//! Each node is scanned to the end of its own cursor, one node at a time. A node's slots
//! count as scanned only if it owned them when its scan began *and* when it ended, and
//! none of them was being migrated then ([`ScanProgress::finish_node`]). A slot that moved
//! meanwhile stays unscanned and is scanned again on its new owner, so a key that existed
//! for the whole scan is always returned; as with `SCAN` itself, a key may be returned
//! more than once.
//!
//! A scan machine (`ScanMachine`, crate-internal) makes every decision of a scan (which
//! node to ask what, when to reload the slot map, how long to pause while slots move)
//! with no I/O and no clock of its own; the async `ClusterScan` and the blocking
//! client's `BlockingScan` only carry out its steps.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::core::cmd::{cmd, Cmd};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::resp::Value;
use crate::core::slot::{Slot, SLOT_COUNT};
use crate::core::topology::{NodeAddr, SlotMap};

/// How long a scan may go without marking a slot before it gives up.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// Which slots are done: the pure part of a cluster scan.
#[derive(Debug, Clone)]
pub struct ScanProgress {
    done: Vec<bool>,
}

impl Default for ScanProgress {
    fn default() -> Self {
        ScanProgress {
            done: vec![false; SLOT_COUNT as usize],
        }
    }
}

impl ScanProgress {
    /// The lowest slot not scanned yet, if any.
    pub fn next_slot(&self) -> Option<Slot> {
        self.done
            .iter()
            .position(|d| !d)
            .and_then(|i| Slot::new(i as u16))
    }

    /// Slots scanned so far.
    pub fn scanned(&self) -> usize {
        self.done.iter().filter(|d| **d).count()
    }

    /// A node's scan ended: of the slots it owned at the start (`before`), those it still
    /// owns (`after`) and that were not migrating in or out (`moving`) are done. Returns
    /// how many slots that marked.
    ///
    /// ```
    /// use redis_cluster_uring::core::scan::ScanProgress;
    /// let mut p = ScanProgress::default();
    /// // Owned 0..=9 at the start, 0..=7 at the end (8, 9 moved away), 3 was migrating.
    /// let marked = p.finish_node(&(0..10).collect::<Vec<_>>(), &(0..8).collect::<Vec<_>>(), &[3]);
    /// assert_eq!(marked, 7);
    /// assert_eq!(p.next_slot().map(|s| s.get()), Some(3));
    /// ```
    pub fn finish_node(&mut self, before: &[u16], after: &[u16], moving: &[u16]) -> usize {
        let set = |slots: &[u16]| {
            let mut set = vec![false; SLOT_COUNT as usize];
            for &s in slots {
                if let Some(x) = set.get_mut(s as usize) {
                    *x = true;
                }
            }
            set
        };
        let (after, moving) = (set(after), set(moving));
        let has = |set: &[bool], slot: u16| set.get(slot as usize).copied().unwrap_or(false);
        let mut marked = 0;
        for &slot in before {
            if has(&after, slot) && !has(&moving, slot) {
                if let Some(done) = self.done.get_mut(slot as usize) {
                    if !*done {
                        *done = true;
                        marked += 1;
                    }
                }
            }
        }
        marked
    }
}

/// What a node's own `CLUSTER NODES` line says: the slots it serves (`0-5460`, `7`) and
/// those being migrated in or out (`[5->-id]`, `[5-<-id]`). The node's own word is what
/// decides where its keys are.
pub(crate) fn own_slots(cluster_nodes: &str) -> (Vec<u16>, Vec<u16>) {
    // The third field holds the flags (`myself,master`); a host name elsewhere on the line
    // could contain the word.
    let is_myself = |l: &&str| {
        l.split_whitespace()
            .nth(2)
            .is_some_and(|flags| flags.split(',').any(|f| f == "myself"))
    };
    let Some(myself) = cluster_nodes.lines().find(is_myself) else {
        return (Vec::new(), Vec::new());
    };
    let mut owned = Vec::new();
    let mut moving = Vec::new();
    for field in myself.split_whitespace().skip(8) {
        if let Some(entry) = field.strip_prefix('[') {
            if let Some(slot) = entry
                .split(['-', '>', '<'])
                .next()
                .and_then(|s| s.parse().ok())
            {
                moving.push(slot);
            }
        } else if let Some((a, b)) = field.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                owned.extend(a..=b.min(SLOT_COUNT - 1));
            }
        } else if let Ok(slot) = field.parse::<u16>() {
            owned.push(slot);
        }
    }
    (owned, moving)
}

/// What to match, like `SCAN`'s options.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// `MATCH pattern`.
    pub pattern: Option<String>,
    /// `COUNT n`: a hint of how many keys each call looks at.
    pub count: Option<usize>,
    /// `TYPE type`.
    pub key_type: Option<String>,
}

/// What a scan's driver does next (see [`ScanMachine::step`]).
#[derive(Debug)]
pub(crate) enum ScanStep {
    /// Send `command` to `node` (no routing) and give the reply to
    /// [`ScanMachine::answer`].
    Ask { node: NodeAddr, command: Cmd },
    /// Reload the slot map, then take the next step.
    RefreshMap,
    /// Wait this long (slots are moving), then take the next step.
    Pause(Duration),
    /// Every slot is scanned.
    Done,
}

/// Where a scan is.
#[derive(Debug)]
enum Phase {
    /// Between nodes: the next unscanned slot's owner is to be found.
    Idle,
    /// Asking `candidates[next]` whether it holds `slot` steadily.
    FindOwner {
        slot: Slot,
        candidates: Vec<NodeAddr>,
        next: usize,
    },
    /// Nobody held `slot` steadily: the map is being reloaded, then a pause.
    Unowned,
    /// `SCAN` on `node` from `cursor`; `before`: the slots it held steadily at the start.
    Scanning {
        node: NodeAddr,
        cursor: Bytes,
        before: Vec<u16>,
    },
    /// The node's cursor came back to 0: its slots at the end are being asked.
    Finishing { node: NodeAddr, before: Vec<u16> },
    /// Nothing was marked this time: a pause comes next.
    Stalled,
}

/// Every decision of a cluster scan, as a state machine: [`step`](ScanMachine::step)
/// says what to do, [`answer`](ScanMachine::answer) takes the reply of an `Ask`.
#[derive(Debug)]
pub(crate) struct ScanMachine {
    options: ScanOptions,
    progress: ScanProgress,
    phase: Phase,
    /// Nodes finished without marking anything, in a row (a slot being migrated).
    stalls: u32,
    /// Since when no node has marked anything.
    stalled_since: Option<Instant>,
}

impl ScanMachine {
    pub(crate) fn new(options: ScanOptions) -> ScanMachine {
        ScanMachine {
            options,
            progress: ScanProgress::default(),
            phase: Phase::Idle,
            stalls: 0,
            stalled_since: None,
        }
    }

    /// Slots scanned so far.
    pub(crate) fn scanned(&self) -> usize {
        self.progress.scanned()
    }

    /// The next thing to do, given the client's slot map now. Fails with
    /// [`ErrorKind::ClusterDown`] after a minute without progress (slots that keep
    /// moving).
    pub(crate) fn step(&mut self, map: &SlotMap, now: Instant) -> Result<ScanStep> {
        loop {
            match &mut self.phase {
                Phase::Idle => {
                    let Some(slot) = self.progress.next_slot() else {
                        return Ok(ScanStep::Done);
                    };
                    // The map names the node to ask first; when that node disagrees (a
                    // map a moment old), every other primary is asked.
                    let mut candidates: Vec<NodeAddr> =
                        map.node_for(slot).into_iter().cloned().collect();
                    for p in map.primaries() {
                        if !candidates.contains(p) {
                            candidates.push(p.clone());
                        }
                    }
                    self.phase = Phase::FindOwner {
                        slot,
                        candidates,
                        next: 0,
                    };
                }
                Phase::FindOwner {
                    candidates, next, ..
                } => match candidates.get(*next) {
                    Some(node) => {
                        return Ok(ScanStep::Ask {
                            node: node.clone(),
                            command: cmd("CLUSTER").arg("NODES"),
                        })
                    }
                    None => {
                        self.phase = Phase::Unowned;
                        return Ok(ScanStep::RefreshMap);
                    }
                },
                Phase::Unowned | Phase::Stalled => {
                    self.stalls = self.stalls.saturating_add(1);
                    let since = *self.stalled_since.get_or_insert(now);
                    if now.saturating_duration_since(since) > STALL_LIMIT {
                        return Err(Error::new(
                            ErrorKind::ClusterDown,
                            "the scan made no progress for a minute: its slots keep moving",
                        ));
                    }
                    self.phase = Phase::Idle;
                    return Ok(ScanStep::Pause(crate::core::round::backoff(
                        self.stalls,
                        Duration::from_millis(10),
                        Duration::from_millis(500),
                    )));
                }
                Phase::Scanning { node, cursor, .. } => {
                    return Ok(ScanStep::Ask {
                        node: node.clone(),
                        command: self.options.command(cursor),
                    })
                }
                Phase::Finishing { node, .. } => {
                    return Ok(ScanStep::Ask {
                        node: node.clone(),
                        command: cmd("CLUSTER").arg("NODES"),
                    })
                }
            }
        }
    }

    /// The reply to the last `Ask`. Returns the keys it brought, if any. After an error
    /// (the reply's, or one it shows) the scan can go on: the node it failed on is
    /// scanned again from its start.
    pub(crate) fn answer(&mut self, reply: Result<Value>) -> Result<Option<Vec<Bytes>>> {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        let reply = reply?;
        match phase {
            Phase::FindOwner {
                slot,
                candidates,
                next,
            } => {
                let view = cluster_nodes_text(reply)?;
                let (owned, moving) = own_slots(&view);
                if owned.contains(&slot.get()) && !moving.contains(&slot.get()) {
                    let before = owned.into_iter().filter(|s| !moving.contains(s)).collect();
                    let node = candidates.get(next).cloned().ok_or_else(|| {
                        Error::protocol("a scan answer came for no node it asked")
                    })?;
                    self.phase = Phase::Scanning {
                        node,
                        cursor: Bytes::from_static(b"0"),
                        before,
                    };
                } else {
                    self.phase = Phase::FindOwner {
                        slot,
                        candidates,
                        next: next + 1,
                    };
                }
                Ok(None)
            }
            Phase::Scanning { node, before, .. } => {
                let (next, keys) = parse_scan(reply)?;
                self.phase = if &next[..] == b"0" {
                    Phase::Finishing { node, before }
                } else {
                    Phase::Scanning {
                        node,
                        cursor: next,
                        before,
                    }
                };
                Ok((!keys.is_empty()).then_some(keys))
            }
            Phase::Finishing { before, .. } => {
                let view = cluster_nodes_text(reply)?;
                let (after, moving) = own_slots(&view);
                if self.progress.finish_node(&before, &after, &moving) == 0 {
                    self.phase = Phase::Stalled;
                } else {
                    self.stalls = 0;
                    self.stalled_since = None;
                }
                Ok(None)
            }
            other => {
                self.phase = other;
                Ok(None)
            }
        }
    }
}

impl ScanOptions {
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`.
    fn command(&self, cursor: &Bytes) -> Cmd {
        let mut c = cmd("SCAN").arg(cursor.clone());
        if let Some(p) = &self.pattern {
            c = c.arg("MATCH").arg(p);
        }
        if let Some(n) = self.count {
            c = c.arg("COUNT").arg(n);
        }
        if let Some(t) = &self.key_type {
            c = c.arg("TYPE").arg(t);
        }
        c
    }
}

/// `CLUSTER NODES` answers one string (bulk on RESP2, verbatim on RESP3).
fn cluster_nodes_text(reply: Value) -> Result<String> {
    use crate::core::reply::FromReply;
    String::from_reply(reply)
}

/// `[cursor, [key, ...]]`.
pub(crate) fn parse_scan(reply: Value) -> Result<(Bytes, Vec<Bytes>)> {
    let bad = || Error::protocol("SCAN answered something other than [cursor, keys]");
    let Value::Array(mut parts) = reply else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let keys = parts.pop().ok_or_else(bad)?;
    let cursor = parts.pop().ok_or_else(bad)?;
    let cursor = match cursor {
        Value::Bulk(b) | Value::SimpleString(b) => b,
        _ => return Err(bad()),
    };
    let keys = match keys {
        Value::Array(items) | Value::Set(items) => items
            .into_iter()
            .map(|k| match k {
                Value::Bulk(b) | Value::SimpleString(b) => Ok(b),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<Bytes>>>()?,
        _ => return Err(bad()),
    };
    Ok((cursor, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;

    #[test]
    fn progress_marks_only_slots_held_throughout_and_still() {
        let mut p = ScanProgress::default();
        assert_eq!(p.next_slot().map(|s| s.get()), Some(0));
        assert_eq!(p.finish_node(&[0, 1, 2], &[0, 1, 2], &[]), 3);
        assert_eq!(p.next_slot().map(|s| s.get()), Some(3));
        // Slot 4 moved in during the scan: not held at the start, not marked.
        assert_eq!(p.finish_node(&[3], &[3, 4], &[]), 1);
        assert_eq!(p.next_slot().map(|s| s.get()), Some(4));
        // Marking twice counts once.
        assert_eq!(p.finish_node(&[3], &[3], &[]), 0);
        let all: Vec<u16> = (0..SLOT_COUNT).collect();
        p.finish_node(&all, &all, &[]);
        assert_eq!(p.next_slot(), None);
        assert_eq!(p.scanned(), SLOT_COUNT as usize);
    }

    #[test]
    fn own_slots_are_read_from_cluster_nodes() {
        let nodes = "abc 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-3 9 [93->-def] [77-<-ghi]\n\
                     def 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n";
        let (owned, moving) = own_slots(nodes);
        assert_eq!(owned, vec![0, 1, 2, 3, 9]);
        assert_eq!(moving, vec![93, 77]);
        assert_eq!(own_slots(""), (Vec::new(), Vec::new()));
        // A host name with the word in it is not the node's own line.
        let named = "a myself.example:7000@1 master - 0 0 1 connected 0-9\n\
                     b 127.0.0.1:7001@1 myself,master - 0 0 2 connected 10-19\n";
        assert_eq!(own_slots(named).0, (10..20).collect::<Vec<u16>>());
        // Hostile ranges are clamped, not trusted.
        let (owned, _) = own_slots("x h:1@2 myself,master - 0 0 1 connected 16380-65535\n");
        assert_eq!(owned.len(), 4);
    }

    /// A simulated cluster for the machine: who owns which slots, who holds what keys.
    struct Sim {
        /// Per node: owned range and slots marked migrating.
        nodes: Vec<(NodeAddr, std::ops::Range<u16>, Vec<u16>)>,
        /// Keys per node, given out 2 per SCAN call.
        keys: Vec<Vec<&'static str>>,
        asked: Vec<(NodeAddr, String)>,
    }

    impl Sim {
        fn reply(&mut self, node: &NodeAddr, command: &Cmd) -> Result<Value> {
            let i = self.nodes.iter().position(|n| n.0 == *node).unwrap();
            let name = String::from_utf8_lossy(command.name()).into_owned();
            self.asked.push((node.clone(), name.clone()));
            if name == "CLUSTER" {
                let (_, range, moving) = &self.nodes[i];
                let mut line = format!(
                    "id{i} {node}@1 myself,master - 0 0 1 connected {}-{}",
                    range.start,
                    range.end - 1
                );
                for m in moving {
                    line.push_str(&format!(" [{m}->-x]"));
                }
                return Ok(Value::Bulk(Bytes::from(line + "\n")));
            }
            let cursor: usize = String::from_utf8_lossy(command.arg_at(1).unwrap())
                .parse()
                .unwrap();
            let keys = &self.keys[i];
            let end = (cursor + 2).min(keys.len());
            let next = if end == keys.len() { 0 } else { end };
            Ok(Value::Array(vec![
                Value::Bulk(Bytes::from(next.to_string())),
                Value::Array(
                    keys[cursor..end]
                        .iter()
                        .map(|k| Value::Bulk(Bytes::from_static(k.as_bytes())))
                        .collect(),
                ),
            ]))
        }
    }

    /// A change to the simulated cluster, made right after the `n`-th ask is answered.
    type Change<'a> = (usize, &'a dyn Fn(&mut Sim));

    /// Runs the machine to the end against `sim`, with `change` made on the way.
    fn drive(
        sim: &mut Sim,
        map: &SlotMap,
        change: Option<Change<'_>>,
    ) -> (Vec<&'static str>, Vec<Duration>) {
        let mut machine = ScanMachine::new(ScanOptions::default());
        let (mut keys, mut pauses) = (Vec::new(), Vec::new());
        let now = Instant::now();
        for asks in 0.. {
            assert!(asks < 1000, "the scan does not end");
            match machine.step(map, now).unwrap() {
                ScanStep::Ask { node, command } => {
                    let reply = sim.reply(&node, &command);
                    if let Some((at, f)) = change {
                        if asks == at {
                            f(sim);
                        }
                    }
                    for k in machine.answer(reply).unwrap().unwrap_or_default() {
                        keys.push(
                            *sim.keys
                                .iter()
                                .flatten()
                                .find(|s| s.as_bytes() == &k[..])
                                .unwrap(),
                        );
                    }
                }
                ScanStep::RefreshMap => {}
                ScanStep::Pause(d) => pauses.push(d),
                ScanStep::Done => break,
            }
        }
        assert_eq!(machine.scanned(), SLOT_COUNT as usize);
        (keys, pauses)
    }

    fn two_nodes() -> (Sim, SlotMap) {
        let (a, b) = (NodeAddr::new("a", 1), NodeAddr::new("b", 2));
        let map = SlotMap::split_evenly(&[a.clone(), b.clone()]);
        let sim = Sim {
            nodes: vec![(a, 0..8192, vec![]), (b, 8192..16384, vec![])],
            keys: vec![vec!["a1", "a2", "a3"], vec!["b1", "b2"]],
            asked: Vec::new(),
        };
        (sim, map)
    }

    #[test]
    fn a_steady_cluster_is_scanned_node_by_node_with_no_pause() {
        let (mut sim, map) = two_nodes();
        let (keys, pauses) = drive(&mut sim, &map, None);
        assert_eq!(keys, ["a1", "a2", "a3", "b1", "b2"]);
        assert!(pauses.is_empty());
        // Per node: CLUSTER NODES (owner), SCANs to cursor 0, CLUSTER NODES (finish).
        let asked: Vec<&str> = sim.asked.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(
            asked,
            ["CLUSTER", "SCAN", "SCAN", "CLUSTER", "CLUSTER", "SCAN", "CLUSTER"]
        );
    }

    #[test]
    fn slots_that_migrate_during_a_nodes_scan_are_scanned_again_where_they_went() {
        let (mut sim, map) = two_nodes();
        // While node a is scanned, slots 0..100 move to b (and b reports them).
        let moved = |sim: &mut Sim| {
            sim.nodes[0].1 = 100..8192;
            sim.nodes[1].1 = 0..16384; // b's line: 0-16383 (a test simplification)
            sim.keys[1].push("a-moved");
        };
        let (keys, _) = drive(&mut sim, &map, Some((1, &moved)));
        // a's other slots are done once; slots 0..100, still on a in the map, are found
        // on b by asking every primary when a disowns them, and b is scanned whole (its
        // own slots marked there too): nothing is scanned a third time.
        assert_eq!(keys, ["a1", "a2", "a3", "b1", "b2", "a-moved"]);
        let owner_questions: Vec<u16> = sim
            .asked
            .iter()
            .filter(|(_, c)| c == "CLUSTER")
            .map(|(n, _)| n.port)
            .collect();
        // a (owner), a (finish), a (disowns slot 0), b (owns it), b (finish).
        assert_eq!(owner_questions, [1, 1, 1, 2, 2]);
    }

    #[test]
    fn a_slot_nobody_holds_steadily_pauses_growing_then_gives_up_after_a_minute() {
        let (mut sim, map) = two_nodes();
        sim.nodes[0].2 = vec![0]; // slot 0 migrating out of a, for ever
        let mut machine = ScanMachine::new(ScanOptions::default());
        let start = Instant::now();
        let mut pauses = Vec::new();
        let mut now = start;
        let error = loop {
            match machine.step(&map, now) {
                Ok(ScanStep::Ask { node, command }) => {
                    let reply = sim.reply(&node, &command);
                    machine.answer(reply).unwrap();
                }
                Ok(ScanStep::RefreshMap) => {}
                Ok(ScanStep::Pause(d)) => {
                    pauses.push(d);
                    now += d;
                }
                Ok(ScanStep::Done) => panic!("slot 0 was never steady"),
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), ErrorKind::ClusterDown);
        assert!(now.duration_since(start) > STALL_LIMIT);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert!(pauses.iter().all(|p| *p <= Duration::from_millis(500)));
    }

    #[test]
    fn an_error_rescans_the_node_from_its_start() {
        let (mut sim, map) = two_nodes();
        let mut machine = ScanMachine::new(ScanOptions::default());
        let now = Instant::now();
        let mut keys = Vec::new();
        let mut failed = false;
        loop {
            match machine.step(&map, now).unwrap() {
                ScanStep::Ask { node, command } => {
                    let scan = command.name() == b"SCAN";
                    let reply = if scan && !failed && keys.len() == 2 {
                        failed = true;
                        Err(Error::new(ErrorKind::Io, "connection reset"))
                    } else {
                        sim.reply(&node, &command)
                    };
                    match machine.answer(reply) {
                        Ok(got) => keys.extend(got.unwrap_or_default()),
                        Err(e) => assert_eq!(e.kind(), ErrorKind::Io),
                    }
                }
                ScanStep::Done => break,
                _ => {}
            }
        }
        assert!(failed);
        let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        // a1, a2 before the failure; a1..a3 again from the start; then b.
        assert_eq!(keys, [&b"a1"[..], b"a2", b"a1", b"a2", b"a3", b"b1", b"b2"]);
    }

    #[test]
    fn options_become_scan_arguments() {
        let options = ScanOptions {
            pattern: Some("user:*".into()),
            count: Some(100),
            key_type: Some("hash".into()),
        };
        let c = options.command(&Bytes::from_static(b"17"));
        let args: Vec<&[u8]> = c.args().collect();
        assert_eq!(
            args,
            [
                &b"SCAN"[..],
                b"17",
                b"MATCH",
                b"user:*",
                b"COUNT",
                b"100",
                b"TYPE",
                b"hash"
            ]
        );
    }

    #[test]
    fn scan_replies_parse_or_fail_typed() {
        let ok = Value::Array(vec![
            Value::Bulk(Bytes::from_static(b"17")),
            Value::Array(vec![Value::Bulk(Bytes::from_static(b"k"))]),
        ]);
        let (cursor, keys) = parse_scan(ok).unwrap();
        assert_eq!((&cursor[..], keys.len()), (&b"17"[..], 1));
        for bad in [
            Value::Int(1),
            Value::Array(vec![Value::Int(0)]),
            Value::Array(vec![Value::Int(0), Value::Int(1)]),
        ] {
            assert_eq!(parse_scan(bad).unwrap_err().kind(), ErrorKind::Protocol);
        }
    }
}
