//! One request, from its commands to its results, as every driver runs it.
//!
//! A request is a pipeline (or one command) driven by [`Rounds`], or an atomic pipeline
//! driven by [`TxRound`]. Around either machine this decides what both clients used to
//! decide each in its own driver loop: how a pipeline is expanded (refusals, cross-slot
//! splits, multi-node fan-outs, folded back at the end), in which order a round's
//! batches go out (all at once, or one node after another under
//! [`Execution::Serial`](crate::core::config::Execution::Serial)), when a round is over
//! and what it is judged with, and what the per-node report hears.
//!
//! The driver's whole loop is:
//!
//! ```text
//! loop match request.poll(now, map, seeds) {
//!     Step::Write(batch) => { write it (or fail its entries unsent); request.written(..) }
//!     Step::Wait => { wait for the replies written, or the deadline; request.waited(all_in, take) }
//!     Step::Sleep(at) => sleep until `at`,
//!     Step::Done => break,
//! }
//! apply request.take_effects() after every wait; request.finish()
//! ```
//!
//! Nothing here reads a clock or touches a connection: the driver passes the time in and
//! keeps the replies (by command index) until [`Request::waited`] takes them.

use std::collections::VecDeque;
use std::time::Instant;

use crate::core::cache::Read;
use crate::core::cmd::Cmd;
use crate::core::error::{Error, Result};
use crate::core::expand::{expand, is_plain, Expansion};
use crate::core::judgement::Judgement;
use crate::core::node::NodeAddr;
use crate::core::plan::{BatchEntry, NodeBatch, ReadTarget};
use crate::core::report::{judge_round, Reporter};
use crate::core::round::{Effect, Next, RoundLimits, RoundReply, Rounds};
use crate::core::telemetry::Trace;
use crate::core::topology::SlotMap;
use crate::core::transaction::{TxNext, TxOutcome, TxRound};
use crate::core::value::Value;

/// What the driver does next for a request.
#[derive(Debug)]
pub(crate) enum Step {
    /// Write this batch to its node's connection (or, when there is none, fail its
    /// entries as unsent), then call [`Request::written`].
    Write(NodeBatch),
    /// Wait until every reply of the batches written this round is in, or the deadline
    /// passes; then call [`Request::waited`].
    Wait,
    /// Nothing to do before this instant (a retry's backoff).
    Sleep(Instant),
    /// Every command has its result: call [`Request::finish`].
    Done,
}

enum Machine {
    /// A pipeline or a single command. `started`: the first round was planned.
    Rounds { rounds: Rounds, started: bool },
    /// `MULTI ... EXEC`, judged as a whole.
    Atomic(TxRound),
}

/// One request's state across its rounds (see the [module](self) for the loop).
pub(crate) struct Request<'a> {
    given: &'a [Cmd],
    /// When the pipeline was expanded: what goes out instead of `given`, and how the
    /// results fold back.
    expansion: Option<Expansion>,
    machine: Machine,
    serial: bool,
    /// This round's batches not written yet.
    queue: VecDeque<NodeBatch>,
    /// This round's batches written: node and entries, in the order written.
    written: Vec<(NodeAddr, Vec<BatchEntry>)>,
    /// A batch was written since the last wait.
    unwaited: bool,
    reporter: Option<&'a mut Reporter>,
    /// Spans and metrics, when `Config::telemetry` asks (see [`Trace`]). Boxed: off, it
    /// adds one pointer to every request, not a trace's size.
    trace: Option<Box<Trace>>,
    /// Replies that fill the client-side cache, by index, for the driver to hand the
    /// pool with the request's exec.
    reads: Vec<(usize, Read)>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("commands", &self.commands().len())
            .field("queued", &self.queue.len())
            .field("written", &self.written.len())
            .finish()
    }
}

impl<'a> Request<'a> {
    fn with(
        given: &'a [Cmd],
        expansion: Option<Expansion>,
        machine: Machine,
        serial: bool,
        reporter: Option<&'a mut Reporter>,
    ) -> Request<'a> {
        Request {
            given,
            expansion,
            machine,
            serial,
            queue: VecDeque::new(),
            written: Vec::new(),
            unwaited: false,
            reporter,
            trace: None,
            reads: Vec::new(),
        }
    }

    /// Reply i of `reads` fills the client-side cache (its index is the command's: a
    /// request that was expanded or is atomic fills nothing).
    pub(crate) fn caching(mut self, reads: Vec<(usize, Read)>) -> Request<'a> {
        if self.expansion.is_none() && matches!(self.machine, Machine::Rounds { .. }) {
            self.reads = reads;
        }
        self
    }

    /// The cache fills, for the driver to give the pool with the exec
    /// (`Pool::new_exec_reading`).
    pub(crate) fn take_reads(&mut self) -> Vec<(usize, Read)> {
        std::mem::take(&mut self.reads)
    }

    /// Traces the request: its span opens now, its batches' spans as they are written.
    pub(crate) fn traced(mut self, trace: Option<Trace>) -> Request<'a> {
        self.trace = trace.map(Box::new);
        self
    }

    /// `cmds` sent as they are (the caller knows none is refused, split or fanned out):
    /// a single regular command, a command for a named node, `CLUSTER SLOTS`.
    pub(crate) fn plain(
        cmds: &'a [Cmd],
        limits: RoundLimits,
        deadline: Option<Instant>,
        serial: bool,
    ) -> Request<'a> {
        Request::rounds(cmds, None, limits, deadline, serial, None)
    }

    /// A pipeline: each command judged once (see [`Judgement`]) and expanded by its
    /// class (see [`crate::core::expand`]) against `map`; the results fold back to one
    /// per command of `cmds`.
    #[cfg(test)]
    pub(crate) fn pipeline(
        cmds: &'a [Cmd],
        map: &SlotMap,
        limits: RoundLimits,
        deadline: Option<Instant>,
        serial: bool,
        reporter: Option<&'a mut Reporter>,
    ) -> Request<'a> {
        let judged = Judgement::all(cmds);
        Request::pipeline_judged(cmds, judged, map, limits, deadline, serial, reporter)
    }

    /// [`Request::pipeline`] for commands judged already (`judged[i]` is `cmds[i]`'s):
    /// every later step reads the judgements instead of asking the table again.
    pub(crate) fn pipeline_judged(
        cmds: &'a [Cmd],
        judged: Vec<Judgement>,
        map: &SlotMap,
        limits: RoundLimits,
        deadline: Option<Instant>,
        serial: bool,
        reporter: Option<&'a mut Reporter>,
    ) -> Request<'a> {
        let (expansion, judged) = if is_plain(cmds, &judged) {
            (None, judged)
        } else {
            let mut expansion = expand(cmds, &judged, map);
            let judged = std::mem::take(&mut expansion.judged);
            (Some(expansion), judged)
        };
        let mut request = Request::rounds(cmds, expansion, limits, deadline, serial, reporter);
        if let Machine::Rounds { rounds, .. } = &mut request.machine {
            rounds.set_judged(judged);
        }
        request
    }

    /// Rounds for `cmds`, or for what `expansion` sends instead (its multi-node copies
    /// pinned to their nodes).
    fn rounds(
        cmds: &'a [Cmd],
        mut expansion: Option<Expansion>,
        limits: RoundLimits,
        deadline: Option<Instant>,
        serial: bool,
        reporter: Option<&'a mut Reporter>,
    ) -> Request<'a> {
        let n = expansion.as_ref().map_or(cmds.len(), |e| e.sent.len());
        let mut rounds = Rounds::new(n, limits, deadline);
        if let Some(e) = expansion.as_mut().filter(|e| !e.pins.is_empty()) {
            rounds.set_pins(std::mem::take(&mut e.pins));
        }
        let machine = Machine::Rounds {
            rounds,
            started: false,
        };
        Request::with(cmds, expansion, machine, serial, reporter)
    }

    /// `cmds` as one `MULTI ... EXEC` on their slot's node (a refusal is the error).
    pub(crate) fn atomic(
        cmds: &'a [Cmd],
        limits: RoundLimits,
        deadline: Option<Instant>,
        reporter: Option<&'a mut Reporter>,
    ) -> Result<Request<'a>> {
        let tx = TxRound::new(cmds, limits, deadline)?;
        Ok(Request::from_transaction(cmds, tx, reporter))
    }

    /// A `WATCH` session's transaction: `cmds` as one `MULTI` ... `EXEC` pinned to `node`,
    /// the connection holding the watches on `slot`. Refused (and counted) when a command
    /// leaves the slot or cannot run in a transaction.
    pub(crate) fn watched(
        cmds: &'a [Cmd],
        slot: crate::core::slot::Slot,
        node: &NodeAddr,
        limits: RoundLimits,
        deadline: Option<Instant>,
        counters: &crate::core::stats::Counters,
    ) -> Result<Request<'a>> {
        let tx = match TxRound::watched(cmds, slot, node.clone(), limits, deadline) {
            Ok(tx) => tx,
            Err(e) => {
                counters.add_refused();
                return Err(e);
            }
        };
        Ok(Request::from_transaction(cmds, tx, None))
    }

    /// A transaction already built (a `WATCH` session's, pinned to its node).
    pub(crate) fn from_transaction(
        cmds: &'a [Cmd],
        tx: TxRound,
        reporter: Option<&'a mut Reporter>,
    ) -> Request<'a> {
        Request::with(cmds, None, Machine::Atomic(tx), false, reporter)
    }

    /// A single command's rounds built by the driver (the async client's fast path):
    /// `started` when it ran the first round itself and took its effects.
    pub(crate) fn resume(cmds: &'a [Cmd], rounds: Rounds, started: bool) -> Request<'a> {
        let machine = Machine::Rounds { rounds, started };
        Request::with(cmds, None, machine, false, None)
    }

    /// Command i goes to `pins[i]` (when `Some`) whatever the map says, and its
    /// redirects are returned instead of followed.
    pub(crate) fn pinned(mut self, pins: Vec<Option<NodeAddr>>) -> Request<'a> {
        if let Machine::Rounds { rounds, .. } = &mut self.machine {
            if !pins.is_empty() {
                rounds.set_pins(pins);
            }
        }
        self
    }

    /// Read-only commands go where `reads` says for their shard (nothing changes when it
    /// is empty: `ReadFrom::Primary`).
    pub(crate) fn reading(mut self, reads: Vec<ReadTarget>) -> Request<'a> {
        if let Machine::Rounds { rounds, .. } = &mut self.machine {
            if !reads.is_empty() {
                rounds.set_reads(reads);
            }
        }
        self
    }

    /// How many commands the expansion refused before sending (each is an error result).
    pub(crate) fn refused(&self) -> usize {
        self.expansion.as_ref().map_or(0, |e| e.refused)
    }

    /// The commands that go out (the expansion's when there is one). Replies are kept by
    /// their index in this slice.
    pub(crate) fn commands(&self) -> &[Cmd] {
        match &self.expansion {
            Some(e) => &e.sent,
            None => self.given,
        }
    }

    /// How many replies the driver must be able to keep, by index: one per command
    /// sent, or for a transaction one per command of `[ASKING] MULTI ... EXEC`.
    pub(crate) fn reply_slots(&self) -> usize {
        match &self.machine {
            Machine::Rounds { .. } => self.commands().len(),
            Machine::Atomic(_) => self.given.len() + 3,
        }
    }

    /// Whether a report is being filled: the driver then waits for each reply rather
    /// than for the whole round, and calls [`Request::note_replies`] as they come.
    pub(crate) fn reports(&self) -> bool {
        self.reporter.is_some()
    }

    /// What to do next.
    pub(crate) fn poll(&mut self, now: Instant, map: &SlotMap, seeds: &[NodeAddr]) -> Step {
        if let Some(t) = &mut self.trace {
            t.close_round(now);
        }
        if self.unwaited && (self.serial || self.queue.is_empty()) {
            return Step::Wait;
        }
        if let Some(batch) = self.queue.pop_front() {
            return Step::Write(batch);
        }
        let cmds = match &self.expansion {
            Some(e) => &e.sent[..],
            None => self.given,
        };
        let batches = match &mut self.machine {
            Machine::Rounds { rounds, started } => {
                let next = if *started {
                    rounds.next(now, cmds, map, seeds)
                } else {
                    *started = true;
                    rounds.start(cmds, map)
                };
                match next {
                    Next::Done => return Step::Done,
                    Next::WaitUntil(at) => return Step::Sleep(at),
                    Next::Send(batches) => batches,
                }
            }
            Machine::Atomic(tx) => match tx.next(now, cmds, map) {
                TxNext::Done => return Step::Done,
                TxNext::WaitUntil(at) => return Step::Sleep(at),
                TxNext::Send { node, buf, replies } => {
                    let entries = (0..replies)
                        .map(|index| BatchEntry {
                            index,
                            asking: false,
                        })
                        .collect();
                    vec![NodeBatch { node, entries, buf }]
                }
            },
        };
        if let Some(r) = self.reporter.as_deref_mut() {
            r.round_started();
        }
        // The round's vector becomes the queue: no allocation of its own.
        self.queue = VecDeque::from(batches);
        match self.queue.pop_front() {
            Some(batch) => Step::Write(batch),
            // A round with nothing to send: judged at once.
            None => {
                self.unwaited = true;
                Step::Wait
            }
        }
    }

    /// The batch of a [`Step::Write`] was handed to its connection: `bytes` long (0 when
    /// it could not be, its entries failed unsent).
    pub(crate) fn written(
        &mut self,
        node: NodeAddr,
        entries: Vec<BatchEntry>,
        bytes: usize,
        now: Instant,
    ) {
        if let Some(r) = self.reporter.as_deref_mut() {
            r.batch_sent(&node, entries.len(), bytes, now);
        }
        if let Some(t) = &mut self.trace {
            t.written(&node, entries.len(), now);
        }
        self.written.push((node, entries));
        self.unwaited = true;
    }

    /// While reporting: notes each batch written whose replies are all in (`has_reply`
    /// by command index) as done at `now`. True when every reply written is in.
    pub(crate) fn note_replies(&mut self, now: Instant, has_reply: impl Fn(usize) -> bool) -> bool {
        let mut all_in = true;
        for (k, (_, entries)) in self.written.iter().enumerate() {
            let reporter = self.reporter.as_deref_mut();
            if reporter.as_ref().is_some_and(|r| r.is_done(k)) {
                continue;
            }
            if entries.iter().all(|e| has_reply(e.index)) {
                if let Some(r) = reporter {
                    r.batch_done(k, now);
                }
            } else {
                all_in = false;
            }
        }
        all_in
    }

    /// The wait of a [`Step::Wait`] ended: with every reply in (`all_in`), or at the
    /// deadline. When the round is over (the last batch waited for, or the deadline),
    /// each command written is judged with the reply `take` gives for its index (`None`:
    /// none came); the batches not written by then are never written.
    pub(crate) fn waited(
        &mut self,
        all_in: bool,
        mut take: impl FnMut(usize) -> Option<RoundReply>,
    ) {
        self.unwaited = false;
        // The batches waited for are done (serial: the one node's, before the next goes).
        if let Some(t) = &mut self.trace {
            t.round_ended();
        }
        if all_in && !self.queue.is_empty() {
            // Serial: the next node's batch goes now.
            return;
        }
        self.queue.clear();
        let written = std::mem::take(&mut self.written);
        match &mut self.machine {
            Machine::Rounds { rounds, .. } => {
                judge_round(
                    rounds,
                    &written,
                    !all_in,
                    take,
                    self.reporter.as_deref_mut(),
                );
            }
            Machine::Atomic(tx) => {
                if !all_in {
                    tx.deadline_passed();
                }
                for (node, entries) in &written {
                    let replies: Vec<Option<RoundReply>> =
                        entries.iter().map(|e| take(e.index)).collect();
                    if let Some(r) = self.reporter.as_deref_mut() {
                        for reply in &replies {
                            r.reply(node, reply.as_ref());
                        }
                    }
                    tx.judge(node, replies);
                }
                if let Some(r) = self.reporter.as_deref_mut() {
                    r.round_ended();
                }
            }
        }
        self.written = written;
        self.written.clear();
    }

    /// What the driver must do besides sending (map updates, refreshes, node health),
    /// after each wait.
    pub(crate) fn take_effects(&mut self) -> std::vec::Drain<'_, Effect> {
        match &mut self.machine {
            Machine::Rounds { rounds, .. } => rounds.take_effects(),
            Machine::Atomic(tx) => tx.take_effects(),
        }
    }

    /// The outcome: one result per command given (a pipeline's are folded back from
    /// the expansion), or the transaction's.
    pub(crate) fn finish(mut self) -> Result<TxOutcome> {
        let trace = self.trace.take();
        let outcome = match self.machine {
            Machine::Rounds { rounds, .. } => {
                let results = rounds.finish();
                Ok(TxOutcome::Done(match self.expansion {
                    Some(expansion) => expansion.fold(results),
                    None => results,
                }))
            }
            Machine::Atomic(tx) => tx.finish(),
        };
        if let Some(trace) = trace.map(|t| *t) {
            match &outcome {
                Ok(TxOutcome::Done(results)) => trace.finish(Ok(results)),
                Ok(_) => trace.finish(Ok(&[])),
                Err(e) => trace.finish(Err(e)),
            }
        }
        outcome
    }

    /// [`Request::finish`] for a request outside a `WATCH` session, where only results
    /// can come out.
    pub(crate) fn results(self) -> Result<Vec<Result<Value>>> {
        match self.finish()? {
            TxOutcome::Done(results) => Ok(results),
            // No WATCH (and no pin) outside a session: only a server bug gets here.
            TxOutcome::Conflict | TxOutcome::Unwatched { .. } => {
                Err(Error::protocol("EXEC answered nil without WATCH"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use crate::core::report::Reporter;
    use bytes::Bytes;
    use std::time::Duration;

    fn limits() -> RoundLimits {
        RoundLimits {
            max_redirects: 3,
            max_retries: 3,
            retry_base_delay: Duration::from_millis(1),
            retry_max_delay: Duration::from_millis(4),
        }
    }

    fn nodes() -> Vec<NodeAddr> {
        (0..3)
            .map(|i| NodeAddr::new("127.0.0.1", 7000 + i))
            .collect()
    }

    fn bulk(s: &str) -> RoundReply {
        RoundReply::Value(Value::Bulk(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// Runs `request` against a world where every command's reply is `answer(cmd)`,
    /// recording each step; the replies of a batch arrive when it is waited for.
    fn run(
        request: &mut Request<'_>,
        map: &SlotMap,
        mut answer: impl FnMut(&Cmd) -> Option<RoundReply>,
    ) -> Vec<&'static str> {
        let mut steps = Vec::new();
        let mut inbox: Vec<Option<RoundReply>> = Vec::new();
        // Simulated time: a sleep moves the clock to its end.
        let mut now = Instant::now();
        for _ in 0..100 {
            match request.poll(now, map, &[]) {
                Step::Done => {
                    steps.push("done");
                    return steps;
                }
                Step::Sleep(at) => {
                    steps.push("sleep");
                    now = now.max(at);
                }
                Step::Write(batch) => {
                    steps.push("write");
                    inbox.resize_with(request.reply_slots(), || None);
                    for e in &batch.entries {
                        inbox[e.index] = answer(&request.commands()[e.index]);
                    }
                    request.written(batch.node, batch.entries, batch.buf.len(), now);
                }
                Step::Wait => {
                    steps.push("wait");
                    let all_in = request.note_replies(now, |i| inbox[i].is_some());
                    request.waited(all_in, |i| inbox[i].take());
                    request.take_effects().for_each(drop);
                }
            }
        }
        panic!("the request did not finish: {steps:?}");
    }

    fn keys_on_every_node(map: &SlotMap) -> Vec<Cmd> {
        // One key per node (by trying names until each node has one).
        let mut cmds = Vec::new();
        for node in nodes() {
            let key = (0..)
                .map(|i| format!("k{i}"))
                .find(|k| {
                    map.node_for(crate::core::slot::slot_for_key(k.as_bytes())) == Some(&node)
                })
                .unwrap();
            cmds.push(cmd("GET").arg(key));
        }
        cmds
    }

    #[test]
    fn parallel_writes_every_batch_before_one_wait_and_serial_waits_after_each() {
        let map = SlotMap::split_evenly(&nodes());
        let cmds = keys_on_every_node(&map);
        let mut parallel = Request::pipeline(&cmds, &map, limits(), None, false, None);
        assert_eq!(parallel.refused(), 0);
        assert!(!parallel.reports(), "no report: one wake-up per round");
        assert!(format!("{parallel:?}").contains("commands: 3"));
        let steps = run(&mut parallel, &map, |_| Some(bulk("v")));
        assert_eq!(steps, ["write", "write", "write", "wait", "done"]);
        let mut serial = Request::pipeline(&cmds, &map, limits(), None, true, None);
        let steps = run(&mut serial, &map, |_| Some(bulk("v")));
        assert_eq!(
            steps,
            ["write", "wait", "write", "wait", "write", "wait", "done"]
        );
        let results = serial.results().unwrap();
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(|r| r.is_ok()));
    }

    #[test]
    fn a_traced_serial_pipeline_closes_each_nodes_batch_before_the_next_goes() {
        let map = SlotMap::split_evenly(&nodes());
        let cmds = keys_on_every_node(&map);
        let trace = crate::core::telemetry::Trace::start(&cmds, "redis", 0, false);
        let mut serial =
            Request::pipeline(&cmds, &map, limits(), None, true, None).traced(Some(trace));
        let now = Instant::now();
        let mut writes = 0;
        loop {
            match serial.poll(now, &map, &[]) {
                Step::Done => break,
                Step::Write(batch) => {
                    writes += 1;
                    serial.written(batch.node, batch.entries, batch.buf.len(), now);
                    // Only this node's batch is open: the one before it was closed
                    // when its wait ended, so its time is its own.
                    assert_eq!(serial.trace.as_ref().map(|t| t.open_batches()), Some(1));
                }
                Step::Wait => serial.waited(true, |_| Some(bulk("v"))),
                Step::Sleep(_) => unreachable!("no retry here"),
            }
        }
        assert_eq!(writes, 3);
        assert_eq!(serial.trace.as_ref().map(|t| t.open_batches()), Some(0));
    }

    #[test]
    fn a_serial_round_that_times_out_writes_no_further_batch() {
        let map = SlotMap::split_evenly(&nodes());
        let cmds = keys_on_every_node(&map);
        let deadline = Some(Instant::now());
        let mut serial = Request::pipeline(&cmds, &map, limits(), deadline, true, None);
        // The first node never answers: the deadline ends the round.
        let steps = run(&mut serial, &map, |_| None);
        assert_eq!(steps, ["write", "wait", "done"]);
        let results = serial.results().unwrap();
        assert!(results.iter().all(|r| r
            .as_ref()
            .is_err_and(|e| e.kind() == crate::core::error::ErrorKind::Timeout)));
    }

    #[test]
    fn refused_and_fanned_out_commands_fold_back_to_one_result_each() {
        let map = SlotMap::split_evenly(&nodes());
        let cmds = [cmd("MULTI"), cmd("DBSIZE"), cmd("GET").arg("a")];
        let mut request = Request::pipeline(&cmds, &map, limits(), None, false, None);
        assert_eq!(request.refused(), 1);
        assert_eq!(
            request.commands().len(),
            4,
            "DBSIZE once per primary, GET once"
        );
        run(&mut request, &map, |c| {
            Some(if c.name() == b"DBSIZE" {
                RoundReply::Value(Value::Int(2))
            } else {
                bulk("v")
            })
        });
        let results = request.results().unwrap();
        assert_eq!(results.len(), 3);
        assert!(results[0].is_err());
        assert_eq!(results[1].as_ref().unwrap(), &Value::Int(6));
        assert!(results[2].is_ok());
    }

    #[test]
    fn a_redirect_is_written_in_the_next_round_and_a_retry_after_a_sleep() {
        let map = SlotMap::split_evenly(&nodes());
        let cmds = [cmd("GET").arg("a")];
        let slot = crate::core::slot::slot_for_key(b"a");
        let mut answers = vec![
            RoundReply::Value(Value::Error(format!("MOVED {slot} 127.0.0.1:7009").into())),
            RoundReply::Value(Value::Error("TRYAGAIN later".into())),
            bulk("v"),
        ]
        .into_iter();
        let mut request = Request::pipeline(&cmds, &map, limits(), None, false, None);
        let steps = run(&mut request, &map, |_| answers.next());
        assert_eq!(
            steps,
            ["write", "wait", "write", "wait", "sleep", "write", "wait", "done"]
        );
        assert_eq!(
            request.results().unwrap()[0].as_ref().unwrap(),
            &Value::Bulk(Bytes::from_static(b"v"))
        );
    }

    #[test]
    fn the_report_hears_every_batch_and_reply() {
        let map = SlotMap::split_evenly(&nodes());
        let cmds = keys_on_every_node(&map);
        let mut reporter = Reporter::new(Instant::now());
        let mut request =
            Request::pipeline(&cmds, &map, limits(), None, false, Some(&mut reporter));
        assert!(request.reports());
        run(&mut request, &map, |_| Some(bulk("v")));
        drop(request);
        let report = reporter.finish(Instant::now());
        assert_eq!(report.rounds, 1);
        assert_eq!(report.nodes.len(), 3);
        assert!(report
            .nodes
            .iter()
            .all(|n| n.commands == 1 && n.round_trip.is_some()));
    }

    #[test]
    fn an_atomic_pipeline_at_its_deadline_is_a_timeout_not_a_lost_reply() {
        let map = SlotMap::split_evenly(&nodes());
        let cmds = [cmd("INCR").arg("{t}a")];
        let mut request = Request::atomic(&cmds, limits(), None, None).unwrap();
        let Step::Write(batch) = request.poll(Instant::now(), &map, &[]) else {
            panic!("an atomic pipeline starts with its write");
        };
        request.written(batch.node, batch.entries, batch.buf.len(), Instant::now());
        assert!(matches!(
            request.poll(Instant::now(), &map, &[]),
            Step::Wait
        ));
        // The deadline passed with no reply in: EXEC may have run, so it is a timeout.
        request.waited(false, |_| None);
        assert!(matches!(
            request.poll(Instant::now(), &map, &[]),
            Step::Done
        ));
        let error = request.results().unwrap_err();
        assert_eq!(error.kind(), crate::core::error::ErrorKind::Timeout);
    }

    #[test]
    fn an_atomic_pipeline_is_one_batch_judged_whole() {
        let map = SlotMap::split_evenly(&nodes());
        let cmds = [cmd("SET").arg("{t}a").arg(1), cmd("INCR").arg("{t}b")];
        let mut request = Request::atomic(&cmds, limits(), None, None).unwrap();
        // Room for ASKING, MULTI, the commands and EXEC.
        assert_eq!(request.reply_slots(), cmds.len() + 3);
        // MULTI, two QUEUED, EXEC's array.
        let mut replies = vec![
            Some(RoundReply::Value(Value::SimpleString(Bytes::from_static(
                b"OK",
            )))),
            Some(RoundReply::Value(Value::SimpleString(Bytes::from_static(
                b"QUEUED",
            )))),
            Some(RoundReply::Value(Value::SimpleString(Bytes::from_static(
                b"QUEUED",
            )))),
            Some(RoundReply::Value(Value::Array(vec![
                Value::SimpleString(Bytes::from_static(b"OK")),
                Value::Int(1),
            ]))),
        ]
        .into_iter();
        let now = Instant::now();
        let mut steps = Vec::new();
        let mut inbox: Vec<Option<RoundReply>> = Vec::new();
        inbox.resize_with(request.reply_slots(), || None);
        loop {
            match request.poll(now, &map, &[]) {
                Step::Write(batch) => {
                    steps.push("write");
                    for e in &batch.entries {
                        inbox[e.index] = replies.next().flatten();
                    }
                    request.written(batch.node, batch.entries, batch.buf.len(), now);
                }
                Step::Wait => {
                    steps.push("wait");
                    request.waited(true, |i| inbox[i].take());
                }
                Step::Sleep(_) => steps.push("sleep"),
                Step::Done => break,
            }
        }
        assert_eq!(steps, ["write", "wait"]);
        let results = request.results().unwrap();
        assert_eq!(results[1].as_ref().unwrap(), &Value::Int(1));
    }

    #[test]
    fn a_watched_transaction_is_pinned_and_refused_off_its_slot() {
        use crate::core::slot::slot_for_key;
        use crate::core::stats::Counters;
        let counters = Counters::default();
        let node = NodeAddr::new("10.0.0.9", 7000);
        let slot = slot_for_key(b"{a}1");
        let cmds = [cmd("SET").arg("{a}1").arg(1), cmd("SET").arg("b").arg(1)];
        let refused = Request::watched(&cmds, slot, &node, limits(), None, &counters);
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(crate::core::error::ErrorKind::CrossSlot)
        );
        assert_eq!(counters.snapshot().refused, 1);
        let cmds = [cmd("SET").arg("{a}1").arg(1)];
        let mut request = Request::watched(&cmds, slot, &node, limits(), None, &counters).unwrap();
        // Pinned: it goes to the session's node whatever the map says.
        let map = SlotMap::split_evenly(&[NodeAddr::new("10.0.0.1", 7000)]);
        match request.poll(Instant::now(), &map, &[]) {
            Step::Write(batch) => assert_eq!(batch.node, node),
            other => panic!("{other:?}"),
        }
        assert_eq!(counters.snapshot().refused, 1);
    }
}
