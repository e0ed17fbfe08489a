//! The per-node report of one pipeline: what each node was sent, how long it took to
//! answer, and what went wrong there. Pure data, filled by the driver as the pipeline
//! runs ([`Client::execute_with_report`](crate::Client::execute_with_report)).
//!
//! A service that fans a pipeline out to every shard can see, per call, that one shard
//! is slow or failing while keeping the other shards' replies.

use std::fmt;
use std::time::{Duration, Instant};

use crate::core::error::Error;
use crate::core::plan::BatchEntry;
use crate::core::resp::Value;
use crate::core::round::{classify_reply, ReplyAction, RoundReply, Rounds};
use crate::core::topology::NodeAddr;

/// One node's share of a pipeline.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// The node.
    pub node: NodeAddr,
    /// Commands written to it (redirected and retried ones count again where they went).
    pub commands: usize,
    /// Batches written to it: 1 unless redirects or retries sent it more.
    pub batches: usize,
    /// Bytes written to it (commands, with `ASKING` where there was one).
    pub bytes_sent: usize,
    /// Size of its replies in RESP.
    pub reply_bytes: usize,
    /// The slowest of its batches, from the write to the last reply; `None` when a batch
    /// never got all its replies (timeout, lost connection).
    pub round_trip: Option<Duration>,
    /// Replies that redirected a command elsewhere (MOVED, ASK).
    pub redirects: usize,
    /// Replies that asked for a retry (TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN).
    pub retries: usize,
    /// Error replies that are results (WRONGTYPE, ...).
    pub error_replies: usize,
    /// Commands that got no reply in time.
    pub timeouts: usize,
    /// Commands lost with a failed connection, and the last such error.
    pub failures: usize,
    /// The last connection error, if any.
    pub last_error: Option<Error>,
}

impl NodeReport {
    fn new(node: NodeAddr) -> NodeReport {
        NodeReport {
            node,
            commands: 0,
            batches: 0,
            bytes_sent: 0,
            reply_bytes: 0,
            round_trip: None,
            redirects: 0,
            retries: 0,
            error_replies: 0,
            timeouts: 0,
            failures: 0,
            last_error: None,
        }
    }

    /// True when every command sent here got a reply (error replies included).
    pub fn healthy(&self) -> bool {
        self.timeouts == 0 && self.failures == 0 && self.round_trip.is_some()
    }
}

/// The report of one pipeline: one entry per node written to, in the order first
/// written, and the pipeline's own figures.
///
/// ```
/// use redis_cluster_uring::core::report::PipelineReport;
/// let report = PipelineReport::default();
/// assert!(report.slowest().is_none());
/// assert!(report.to_string().contains("node"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    /// Per node.
    pub nodes: Vec<NodeReport>,
    /// From the call to the last result.
    pub elapsed: Duration,
    /// Rounds the pipeline took (1 without redirects or retries).
    pub rounds: usize,
}

impl PipelineReport {
    /// The node whose batch took longest (or never finished).
    pub fn slowest(&self) -> Option<&NodeReport> {
        self.nodes
            .iter()
            .max_by_key(|n| n.round_trip.unwrap_or(Duration::MAX))
    }

    /// The node's entry, if it was written to.
    pub fn node(&self, node: &NodeAddr) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.node == *node)
    }
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<22} {:>8} {:>7} {:>10} {:>10} {:>11} {:>5} {:>5} {:>6} {:>8} {:>6}",
            "node",
            "commands",
            "batches",
            "sent B",
            "reply B",
            "rtt",
            "redir",
            "retry",
            "errors",
            "timeouts",
            "failed"
        )?;
        for n in &self.nodes {
            let rtt = match n.round_trip {
                Some(d) => format!("{:.1} µs", d.as_secs_f64() * 1e6),
                None => "-".to_string(),
            };
            writeln!(
                f,
                "{:<22} {:>8} {:>7} {:>10} {:>10} {:>11} {:>5} {:>5} {:>6} {:>8} {:>6}",
                n.node.to_string(),
                n.commands,
                n.batches,
                n.bytes_sent,
                n.reply_bytes,
                rtt,
                n.redirects,
                n.retries,
                n.error_replies,
                n.timeouts,
                n.failures
            )?;
        }
        write!(
            f,
            "rounds: {}, elapsed: {:.1} µs",
            self.rounds,
            self.elapsed.as_secs_f64() * 1e6
        )
    }
}

/// Fills a [`PipelineReport`] as the driver goes.
#[derive(Debug)]
pub(crate) struct Reporter {
    report: PipelineReport,
    started: Instant,
    /// This round's batches: node index, when written, done.
    round: Vec<(usize, Instant, bool)>,
}

impl Reporter {
    pub(crate) fn new(now: Instant) -> Reporter {
        Reporter {
            report: PipelineReport::default(),
            started: now,
            round: Vec::new(),
        }
    }

    fn index_of(&mut self, node: &NodeAddr) -> usize {
        match self.report.nodes.iter().position(|n| n.node == *node) {
            Some(i) => i,
            None => {
                self.report.nodes.push(NodeReport::new(node.clone()));
                self.report.nodes.len() - 1
            }
        }
    }

    /// A new round starts.
    pub(crate) fn round_started(&mut self) {
        self.report.rounds += 1;
        self.round.clear();
    }

    /// A batch of `commands` commands, `bytes` long, was written to `node`.
    pub(crate) fn batch_sent(
        &mut self,
        node: &NodeAddr,
        commands: usize,
        bytes: usize,
        now: Instant,
    ) {
        let i = self.index_of(node);
        let n = &mut self.report.nodes[i];
        n.commands += commands;
        n.batches += 1;
        n.bytes_sent += bytes;
        self.round.push((i, now, false));
    }

    /// The `k`-th batch of this round has all its replies.
    pub(crate) fn batch_done(&mut self, k: usize, now: Instant) {
        let Some((i, sent, done)) = self.round.get_mut(k) else {
            return;
        };
        if *done {
            return;
        }
        *done = true;
        let took = now.saturating_duration_since(*sent);
        let n = &mut self.report.nodes[*i];
        n.round_trip = Some(n.round_trip.map_or(took, |d| d.max(took)));
    }

    /// Whether the `k`-th batch of this round is complete.
    pub(crate) fn is_done(&self, k: usize) -> bool {
        self.round.get(k).is_some_and(|b| b.2)
    }

    /// A command's reply from `node` (before the round machine judges it).
    pub(crate) fn reply(&mut self, node: &NodeAddr, reply: Option<&RoundReply>) {
        let i = self.index_of(node);
        let n = &mut self.report.nodes[i];
        match reply {
            Some(RoundReply::Value(v)) => {
                n.reply_bytes += resp_len(v);
                match classify_reply(v) {
                    ReplyAction::Redirect(_) => n.redirects += 1,
                    ReplyAction::Retry(_) => n.retries += 1,
                    ReplyAction::Accept if matches!(v, Value::Error(_)) => n.error_replies += 1,
                    ReplyAction::Accept => {}
                }
            }
            Some(RoundReply::Failed { error, .. }) => {
                n.failures += 1;
                n.last_error = Some(error.clone());
            }
            None => n.timeouts += 1,
        }
    }

    /// A batch that never finished loses any round trip it may have had: it is the
    /// slow or dead node the report is for.
    pub(crate) fn round_ended(&mut self) {
        for &(i, _, done) in &self.round {
            if !done {
                self.report.nodes[i].round_trip = None;
            }
        }
    }

    pub(crate) fn finish(mut self, now: Instant) -> PipelineReport {
        self.report.elapsed = now.saturating_duration_since(self.started);
        self.report
    }
}

/// The end of one round, as both clients' drivers run it: the deadline passed if
/// `timed_out`; each command of `sent` (per node, in the order written) is judged with the
/// reply `take` gives for its index (`None`: none came), and the reporter, if any, hears
/// each reply and the end of the round.
pub(crate) fn judge_round(
    rounds: &mut Rounds,
    sent: &[(NodeAddr, Vec<BatchEntry>)],
    timed_out: bool,
    mut take: impl FnMut(usize) -> Option<RoundReply>,
    mut reporter: Option<&mut Reporter>,
) {
    if timed_out {
        rounds.deadline_passed();
    }
    for (node, entries) in sent {
        for entry in entries {
            let reply = take(entry.index);
            if let Some(r) = reporter.as_deref_mut() {
                r.reply(node, reply.as_ref());
            }
            rounds.judge(entry.index, node, reply);
        }
    }
    if let Some(r) = reporter {
        r.round_ended();
    }
}

/// The size of a value in RESP (as the server sent it, up to the RESP2/RESP3 spelling
/// of nulls).
pub(crate) fn resp_len(v: &Value) -> usize {
    fn digits(n: usize) -> usize {
        let mut n = n;
        let mut d = 1;
        while n >= 10 {
            n /= 10;
            d += 1;
        }
        d
    }
    fn header(n: usize) -> usize {
        1 + digits(n) + 2
    }
    match v {
        Value::Nil => 3,
        Value::SimpleString(s) | Value::Error(s) | Value::BigNumber(s) => 1 + s.len() + 2,
        Value::Int(i) => 1 + i.to_string().len() + 2,
        Value::Bulk(b) => header(b.len()) + b.len() + 2,
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            header(items.len()) + items.iter().map(resp_len).sum::<usize>()
        }
        Value::Map(pairs) => {
            header(pairs.len())
                + pairs
                    .iter()
                    .map(|(k, v)| resp_len(k) + resp_len(v))
                    .sum::<usize>()
        }
        Value::Double(d) => 1 + d.to_string().len() + 2,
        Value::Boolean(_) => 4,
        Value::Verbatim { text, .. } => header(text.len() + 4) + text.len() + 4 + 2,
        Value::Attribute { attrs, value } => {
            header(attrs.len())
                + attrs
                    .iter()
                    .map(|(k, v)| resp_len(k) + resp_len(v))
                    .sum::<usize>()
                + resp_len(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;
    use crate::core::resp::decode::{decode, DecodeLimits};
    use bytes::{Bytes, BytesMut};

    #[test]
    fn resp_len_matches_the_wire() {
        for wire in [
            &b"+OK\r\n"[..],
            b"-ERR x\r\n",
            b":12345\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"%1\r\n+k\r\n$10\r\n0123456789\r\n",
            b"~1\r\n:7\r\n",
            b">2\r\n+a\r\n+b\r\n",
            b"#t\r\n",
            b"_\r\n",
        ] {
            let mut buf = BytesMut::from(wire);
            let v = decode(&mut buf, &DecodeLimits::default()).unwrap().unwrap();
            assert_eq!(
                resp_len(&v),
                wire.len(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn a_report_counts_each_node_and_blames_the_unfinished() {
        let t0 = Instant::now();
        let a = NodeAddr::new("127.0.0.1", 7000);
        let b = NodeAddr::new("127.0.0.1", 7001);
        let mut r = Reporter::new(t0);
        r.round_started();
        r.batch_sent(&a, 3, 90, t0);
        r.batch_sent(&b, 2, 60, t0);
        r.batch_done(0, t0 + Duration::from_micros(150));
        assert!(r.is_done(0) && !r.is_done(1));
        let ok = RoundReply::Value(Value::Bulk(Bytes::from_static(b"v")));
        let moved = RoundReply::Value(Value::Error(Bytes::from_static(b"MOVED 1 127.0.0.1:7002")));
        let wrong = RoundReply::Value(Value::Error(Bytes::from_static(b"WRONGTYPE x")));
        let lost = RoundReply::Failed {
            error: Error::new(ErrorKind::Io, "reset"),
            sent: true,
        };
        r.reply(&a, Some(&ok));
        r.reply(&a, Some(&moved));
        r.reply(&a, Some(&wrong));
        r.reply(&b, Some(&lost));
        r.reply(&b, None);
        r.round_ended();
        let report = r.finish(t0 + Duration::from_millis(1));
        let (ra, rb) = (report.node(&a).unwrap(), report.node(&b).unwrap());
        assert_eq!((ra.commands, ra.bytes_sent, ra.batches), (3, 90, 1));
        assert_eq!(ra.round_trip, Some(Duration::from_micros(150)));
        assert_eq!((ra.redirects, ra.error_replies), (1, 1));
        assert!(ra.healthy());
        assert_eq!((rb.failures, rb.timeouts, rb.round_trip), (1, 1, None));
        assert!(!rb.healthy());
        assert_eq!(report.slowest().unwrap().node, b);
        assert_eq!(report.rounds, 1);
        let table = report.to_string();
        assert!(table.contains("127.0.0.1:7001") && table.contains("150.0 µs"));
    }

    #[test]
    fn judge_round_judges_every_entry_and_tells_the_reporter() {
        use crate::core::cmd::cmd;
        use crate::core::round::{Next, RoundLimits};
        use crate::core::topology::SlotMap;
        let a = NodeAddr::new("127.0.0.1", 7000);
        let map = SlotMap::split_evenly(std::slice::from_ref(&a));
        let cmds = [cmd("GET").arg("x"), cmd("GET").arg("y")];
        let limits = RoundLimits {
            max_redirects: 1,
            max_retries: 0,
            retry_base_delay: Duration::from_millis(1),
            retry_max_delay: Duration::from_millis(1),
        };
        let t0 = Instant::now();
        let mut rounds = Rounds::new(2, limits, None);
        let Next::Send(batches) = rounds.start(&cmds, &map) else {
            panic!("a round to send");
        };
        let sent: Vec<(NodeAddr, Vec<BatchEntry>)> =
            batches.into_iter().map(|b| (b.node, b.entries)).collect();
        let mut reporter = Reporter::new(t0);
        reporter.round_started();
        let mut taken = Vec::new();
        judge_round(
            &mut rounds,
            &sent,
            true,
            |index| {
                taken.push(index);
                (index == 0).then(|| RoundReply::Value(Value::Int(7)))
            },
            Some(&mut reporter),
        );
        taken.sort_unstable();
        assert_eq!(taken, vec![0, 1], "every entry's reply taken once");
        let next = rounds.next(t0, &cmds, &map, &[]);
        assert!(
            matches!(next, Next::Done),
            "the deadline passed: nothing more to send"
        );
        let results = rounds.finish();
        assert_eq!(results[0].as_ref().ok(), Some(&Value::Int(7)));
        assert_eq!(
            results[1].as_ref().err().map(Error::kind),
            Some(crate::core::error::ErrorKind::Timeout)
        );
        let report = reporter.finish(t0);
        assert_eq!(report.rounds, 1);
        assert_eq!(report.node(&a).map(|n| n.timeouts), Some(1));
    }
}
