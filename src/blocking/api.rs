//! The blocking client's public methods: what a user calls, each a thin call into the
//! driver (`driver.rs`) and the core. Nothing here touches a socket, a ring or a clock
//! of its own.

use std::time::Instant;

use crate::core::cache::Lookup;
use crate::core::cluster::Path;
use crate::core::cmd::Cmd;
use crate::core::command_table::NamedNode;
use crate::core::config::{Config, Engine};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::handshake::ServerInfo;
use crate::core::judgement::Judgement;
use crate::core::pipeline::Pipeline;
use crate::core::reply::FromReply;
use crate::core::report::{PipelineReport, Reporter};
use crate::core::resp::Value;
use crate::core::stats::Stats;
use crate::core::topology::{NodeAddr, SlotMap};

use super::driver::{deadline_after, Backend, Client};
use super::ring::RingFeatures;

impl Client {
    /// Connects to a cluster through any of `seeds` (`host:port` or `redis://` URLs, as
    /// for the async client) and loads its slot map.
    ///
    /// Fails with [`ErrorKind::Config`] for unparsable seeds, [`ErrorKind::IoUringUnavailable`]
    /// when `Engine::IoUring` is asked for and refused, and with the last connection error
    /// when no seed answers `CLUSTER SLOTS`.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, Config, Engine};
    /// // Forces the poll backend (the environment variable does the same).
    /// let client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default().engine(Engine::Epoll))?;
    /// assert_eq!(client.engine(), Engine::Epoll);
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn connect<S: AsRef<str>>(seeds: &[S], mut config: Config) -> Result<Client> {
        let parsed = crate::core::url::parse_seeds(seeds, &mut config)?;
        Client::connect_parsed(parsed, config, None)
    }

    /// The engine in use, as the async client names its engines: [`Engine::Ring`], the
    /// client's own io_uring instance, or [`Engine::Epoll`], the readiness fallback
    /// (here nonblocking sockets and `poll(2)`).
    pub fn engine(&self) -> Engine {
        match self.backend {
            Backend::Ring => Engine::Ring,
            Backend::Poll => Engine::Epoll,
        }
    }

    /// The io_uring features in use (`None` on the poll backend).
    pub fn ring_features(&self) -> Option<RingFeatures> {
        self.ring_features
    }

    /// The client's counters since it was created: writes and bytes written, reads and
    /// bytes read, executions, redirects, retries, refreshes, connections opened, pushes,
    /// refusals and blocking commands, as the async client counts them.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, Config, Pipeline};
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
    /// let before = client.stats();
    /// let mut pipe = Pipeline::new();
    /// for i in 0..128 {
    ///     pipe.get(format!("user:{i}"));
    /// }
    /// client.execute(&pipe)?;
    /// let after = client.stats();
    /// println!("{} writes for one pipeline", after.writes - before.writes); // one per node
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.cluster.counters().snapshot()
    }

    /// Empties the client-side cache ([`Config::cache`](crate::Config::cache)); reads
    /// in flight fill nothing. Counted in `Stats::cache_flushes`.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, cmd, CacheConfig, Config};
    /// let config = Config::default().cache(CacheConfig::default());
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], config)?;
    /// let _: Option<String> = client.query(cmd("GET").arg("k"))?;
    /// client.cache_clear();
    /// assert_eq!(client.stats().cache_entries, 0);
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn cache_clear(&mut self) {
        self.cluster.cache_clear();
    }

    /// The current slot map: shared, not copied (a refresh swaps in a new one).
    pub fn slot_map(&self) -> std::sync::Arc<SlotMap> {
        self.cluster.map().clone()
    }

    /// Number of open connections (one per node in use).
    pub fn connection_count(&self) -> usize {
        self.pool.connection_count()
    }

    /// What `node` said of itself in its connection's handshake, while connected.
    pub fn server_info(&self, node: &NodeAddr) -> Option<ServerInfo> {
        self.pool.find(node)?;
        self.pool.server_info(node).cloned()
    }

    /// Runs a pipeline: every node's batch in one submission, all replies awaited
    /// together. Each command's result is at its index; a server error reply is an `Err`
    /// for that command only (with [`Pipeline::raise_on_error`], the first error is
    /// returned instead). Commands the shared path refuses (`MULTI`, `SUBSCRIBE`, an
    /// empty command, a blocking command in a pipeline, node-specific commands) fail
    /// alone, before anything is sent; multi-node commands (`DBSIZE`, `KEYS`, ...) go to
    /// every node and are merged; cross-slot `MGET`/`MSET`/`DEL`/... are split by slot.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, cmd, Config, Pipeline};
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
    /// let mut pipe = Pipeline::new();
    /// pipe.set("a", 1).get("a").add(cmd("DBSIZE"));
    /// let replies = client.execute(&pipe)?;
    /// assert_eq!(replies.len(), 3);
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn execute(&mut self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>> {
        let results = self.execute_every(pipeline)?;
        pipeline.finish(results)
    }

    /// Every command's result, ignored or not, before [`Pipeline::raise_on_error`].
    fn execute_every(&mut self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>> {
        if pipeline.is_atomic() {
            self.execute_atomic(pipeline.commands(), None)
        } else {
            self.execute_commands(pipeline.commands(), None)
        }
    }

    /// Runs a pipeline like [`execute`](Client::execute) and reports, per node, the
    /// commands and bytes sent, the reply bytes, the round trip of its batches,
    /// redirects, retries, error replies, timeouts and failures (see
    /// [`PipelineReport`]). While reporting, the wait ends at each node's reply rather
    /// than at the last one, so that each node's round trip is its own: a system call
    /// per node instead of one per pipeline.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, Config, Pipeline};
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
    /// let mut pipe = Pipeline::new();
    /// for i in 0..128 {
    ///     pipe.get(format!("user:{i}"));
    /// }
    /// let (replies, report) = client.execute_with_report(&pipe)?;
    /// println!("{report}"); // one line per node; the slowest sets the pipeline's latency
    /// # let _ = replies;
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn execute_with_report(
        &mut self,
        pipeline: &Pipeline,
    ) -> Result<(Vec<Result<Value>>, PipelineReport)> {
        let mut reporter = Reporter::new(Instant::now());
        let results = if pipeline.is_atomic() {
            self.execute_atomic(pipeline.commands(), Some(&mut reporter))?
        } else {
            self.execute_commands(pipeline.commands(), Some(&mut reporter))?
        };
        let report = reporter.finish(Instant::now());
        Ok((pipeline.finish(results)?, report))
    }

    /// Runs a pipeline and converts its replies (those not [ignored](Pipeline::ignore))
    /// into `T`, as one array: a `Vec` of one type, a tuple of different types, `()` to
    /// drop them. Fails on the first error reply, of any command.
    pub fn query_pipeline<T: FromReply>(&mut self, pipeline: &Pipeline) -> Result<T> {
        let results = self.execute_every(pipeline)?;
        pipeline.convert(results)
    }

    /// Runs one command on the node that owns its key and converts the reply. A
    /// blocking command (`BLPOP`, `XREAD ... BLOCK`) runs on the node's connection with
    /// a deadline of its own timeout plus `request_timeout` (this client has one caller,
    /// so nobody waits behind it).
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, cmd, Config, ErrorKind};
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
    /// let n: i64 = client.query(cmd("INCR").arg("visits"))?;
    /// let e = client.query::<()>(cmd("MULTI")).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Unsupported);
    /// # let _ = n;
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn query<T: FromReply>(&mut self, command: impl std::borrow::Borrow<Cmd>) -> Result<T> {
        let command: &Cmd = command.borrow();
        // Judged once: the path, and the request if it takes one, read the judgement.
        let judged = Judgement::of(command);
        let mut reads = Vec::new();
        if self.cluster.config().cache.is_some() {
            // Invalidations already read by the kernel are applied before a hit.
            self.take_pending_input();
            match self.cluster.cache_lookup(command, &judged, Instant::now) {
                // One caller: nothing of its own is in flight to wait for.
                Lookup::Pass | Lookup::Wait(_) => {}
                Lookup::Hit(value) => return T::from_reply(value),
                Lookup::Miss(read) => reads.push((0, read)),
                Lookup::Mget(mut m) => {
                    let reads = std::mem::take(&mut m.reads);
                    let judged = Judgement::all(&m.gets);
                    let results = self.execute_judged(&m.gets, judged, None, reads)?;
                    return T::from_reply(m.answer(results)?);
                }
            }
        }
        let results = match self.cluster.path_judged(command, &judged)? {
            Path::Blocking(budget) => {
                self.cluster.counters().add_execution();
                self.cluster.counters().add_blocking();
                self.housekeeping();
                let limits = self.cluster.limits();
                let results = self.run(
                    std::slice::from_ref(command),
                    deadline_after(budget),
                    Vec::new(),
                    limits,
                    true,
                );
                self.maybe_refresh();
                results?
            }
            // One caller at a time: the single path would save nothing here.
            Path::Single | Path::Request => {
                self.execute_judged(std::slice::from_ref(command), vec![judged], None, reads)?
            }
        };
        match results.into_iter().next() {
            Some(r) => T::from_reply(r?),
            None => Err(Error::new(ErrorKind::Protocol, "no reply")),
        }
    }

    /// Runs one command on a given node, bypassing routing (`INFO`, `CLUSTER ...`, or a
    /// multi-node command such as `DBSIZE` for that node alone). No redirect is followed:
    /// `MOVED`/`ASK` come back as errors of kind [`ErrorKind::Moved`]/[`ErrorKind::Ask`].
    /// Commands that would change the connection's state are refused.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, cmd, Config};
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
    /// let primaries: Vec<_> = client.slot_map().primaries().cloned().collect();
    /// let mut keys = 0;
    /// for node in &primaries {
    ///     keys += client.query_node::<i64>(node, cmd("DBSIZE"))?;
    /// }
    /// # let _ = keys;
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn query_node<T: FromReply>(&mut self, node: &NodeAddr, command: Cmd) -> Result<T> {
        let deadline = match self.cluster.named_node(&command)? {
            NamedNode::Dedicated(timeout) => {
                self.cluster.counters().add_blocking();
                deadline_after(timeout)
            }
            NamedNode::Refused(e) => return Err(e),
            NamedNode::Shared(timeout) => deadline_after(timeout),
        };
        self.cluster.counters().add_execution();
        self.housekeeping();
        let results = self.run(
            std::slice::from_ref(&command),
            deadline,
            vec![Some(node.clone())],
            self.cluster.limits(),
            true,
        );
        self.maybe_refresh();
        let results = results?;
        match results.into_iter().next() {
            Some(r) => T::from_reply(r?),
            None => Err(Error::new(ErrorKind::Protocol, "no reply")),
        }
    }

    /// Reloads the slot map now: `refresh_fanout` nodes at a time (known nodes in random
    /// order, then the seeds) are asked `CLUSTER SLOTS` together, each within
    /// `refresh_timeout`, and `refresh_policy` picks among the answers. Connections to
    /// nodes that left the map are closed.
    pub fn refresh_slots(&mut self) -> Result<()> {
        let fetched = self.fetch_slot_map();
        self.cluster
            .adopt(fetched, Vec::new(), self.pool.nodes_mut(), Instant::now())?;
        let cluster = &self.cluster;
        let leaving = self
            .pool
            .close_idle(Instant::now(), None, |addr| cluster.keeps(addr));
        self.remove(&leaving);
        self.warm_up_replicas();
        Ok(())
    }
}
