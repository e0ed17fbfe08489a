//! The async client's public methods: what a user calls, each a thin call into the
//! driver (`driver.rs`) and the core. Nothing here touches a socket, a runtime or a
//! clock.

use std::cell::RefCell;
use std::time::Instant;

use crate::core::cache::{Lookup, Read};
use crate::core::cluster::{Cluster, Path};
use crate::core::cmd::{cmd, Cmd};
use crate::core::command_table::NamedNode;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::judgement::Judgement;
use crate::core::pipeline::Pipeline;
use crate::core::reply::FromReply;
use crate::core::report::{PipelineReport, Reporter};
use crate::core::resp::Value;
use crate::core::round::RoundLimits;
use crate::core::slot::Slot;
use crate::core::stats::Stats;
use crate::core::topology::{NodeAddr, SlotMap};
use crate::engine::Engine;

use super::driver::{deadline_after, Client};

impl Client {
    /// Runs one command on the node that owns its key and converts the reply.
    ///
    /// The command is taken by value or by reference: a hot loop can build its command
    /// once and pass `&command`, which costs no copy. A regular one-slot command takes a
    /// path without the pipeline's vectors that allocates nothing in the steady state.
    ///
    /// An error reply is returned as `Err` of kind [`ErrorKind::ServerError`]. The
    /// command's class ([`command_table`](crate::core::command_table)) decides its path:
    /// blocking commands (`BLPOP`, `XREAD ... BLOCK`, ...) run on a dedicated connection
    /// to the key's node, so they never hold up other callers, with a deadline of their
    /// own timeout plus `request_timeout`; commands that would break the shared
    /// connection (`MULTI`, `SUBSCRIBE`, `CLIENT REPLY`, ...) and empty commands are
    /// refused before anything is sent, with [`ErrorKind::Unsupported`] or
    /// [`ErrorKind::InvalidCommand`]. Multi-node commands (`DBSIZE`, `FLUSHALL`, `KEYS`,
    /// ...) go to every primary and their replies are merged by the command's response
    /// policy (a sum, a concatenation, all `OK`).
    ///
    /// ```no_run
    /// use redis_cluster_uring::{cmd, engine, Client, Config, ErrorKind};
    /// engine::start(async {
    ///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
    ///     // Blocks up to 1 s on a connection of its own; other callers go on meanwhile.
    ///     let popped: Option<Vec<String>> = client.query(cmd("BLPOP").arg("jobs").arg(1)).await?;
    ///     // Every primary's DBSIZE, summed.
    ///     let keys: i64 = client.query(cmd("DBSIZE")).await?;
    ///     let e = client.query::<()>(cmd("MULTI")).await.unwrap_err();
    ///     assert_eq!(e.kind(), ErrorKind::Unsupported);
    ///     Ok::<(), redis_cluster_uring::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn query<T: FromReply>(&self, command: impl std::borrow::Borrow<Cmd>) -> Result<T> {
        let command: &Cmd = std::borrow::Borrow::borrow(&command);
        // Judged once: the path, the single path's route and a request's plan read it.
        let judged = Judgement::of(command);
        let mut read = None;
        let mut coalesce = true;
        while self.inner.config.cache.is_some() {
            let lookup = {
                let cluster = self.inner.cluster.borrow();
                if coalesce {
                    cluster.cache_lookup_shared(command, &judged, Instant::now)
                } else {
                    cluster.cache_lookup(command, &judged, Instant::now)
                }
            };
            match lookup {
                Lookup::Pass => {}
                Lookup::Hit(value) => {
                    self.after_hit().await;
                    return T::from_reply(value);
                }
                Lookup::Miss(r) => read = Some(r),
                Lookup::Wait(flight) => {
                    // Another caller's read of it is in flight: wait for its reply, then
                    // look again. Not longer than a request of one's own: then send it.
                    let cache = self.inner.cluster.borrow().cache();
                    let landed =
                        std::future::poll_fn(|cx| cache.borrow_mut().poll_landed(&flight, cx));
                    let deadline = deadline_after(self.inner.config.request_timeout);
                    if crate::io::rt::timeout_at(deadline, landed).await.is_none() {
                        coalesce = false;
                    }
                    continue;
                }
                Lookup::Mget(mut m) => {
                    let reads = std::mem::take(&mut m.reads);
                    let judged = Judgement::all(&m.gets);
                    let results = self.execute_judged(&m.gets, judged, None, reads).await?;
                    return T::from_reply(m.answer(results)?);
                }
            }
            break;
        }
        let path = self.inner.cluster.borrow().path_judged(command, &judged)?;
        let reads = |read: Option<Read>| read.map(|r| vec![(0, r)]).unwrap_or_default();
        let results = match path {
            // Traced, it takes the request path, whose rounds carry the spans.
            Path::Single if !self.inner.config.telemetry => {
                return T::from_reply(self.query_one(command, &judged, read).await?)
            }
            Path::Single | Path::Request => {
                let cmds = std::slice::from_ref(command);
                self.execute_judged(cmds, vec![judged], None, reads(read))
                    .await?
            }
            Path::Blocking(timeout) => self.run_blocking(None, command, timeout).await?,
        };
        match results.into_iter().next() {
            Some(r) => T::from_reply(r?),
            None => Err(Error::new(ErrorKind::Protocol, "no reply")),
        }
    }

    /// Runs a pipeline. Each command's result is at its index (ignored commands,
    /// [`Pipeline::ignore`], left out); a server error reply is an `Err` for that command
    /// only. With [`Pipeline::raise_on_error`] the first error is returned instead.
    ///
    /// The outer `Err` is for the pipeline as a whole: [`ErrorKind::Timeout`] when
    /// `request_timeout` passes, [`ErrorKind::Shutdown`] after [`Client::shutdown`].
    pub async fn execute(&self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>> {
        pipeline.finish(self.execute_every(pipeline).await?)
    }

    /// Every command's result, ignored or not, before [`Pipeline::raise_on_error`].
    pub(crate) async fn execute_every(&self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>> {
        if pipeline.atomic {
            self.execute_atomic(&pipeline.cmds).await
        } else {
            self.execute_commands(&pipeline.cmds, None).await
        }
    }

    /// Runs a pipeline like [`Client::execute`] and also reports, per node written to,
    /// the commands and bytes sent, the round trip of its batches, and its redirects,
    /// retries, error replies, timeouts and failures: a slow or dead shard is named while
    /// the other shards' replies are kept.
    ///
    /// The report costs a wake-up per reply instead of one per round; use it where the
    /// breakdown is wanted, not on every call.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{engine, Client, Config, Pipeline};
    /// engine::start(async {
    ///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
    ///     let mut pipe = Pipeline::new();
    ///     for i in 0..128 {
    ///         pipe.get(format!("key:{i}"));
    ///     }
    ///     let (replies, report) = client.execute_with_report(&pipe).await?;
    ///     println!("{report}");
    ///     if let Some(slow) = report.slowest() {
    ///         println!("slowest: {} ({:?})", slow.node, slow.round_trip);
    ///     }
    ///     Ok::<(), redis_cluster_uring::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn execute_with_report(
        &self,
        pipeline: &Pipeline,
    ) -> Result<(Vec<Result<Value>>, PipelineReport)> {
        let mut reporter = Reporter::new(Instant::now());
        let results = if pipeline.atomic {
            self.execute_atomic_reported(&pipeline.cmds, Some(&mut reporter))
                .await?
        } else {
            self.execute_commands(&pipeline.cmds, Some(&mut reporter))
                .await?
        };
        let report = reporter.finish(Instant::now());
        Ok((pipeline.finish(results)?, report))
    }

    /// Runs a pipeline and converts its replies (those not [ignored](Pipeline::ignore))
    /// into `T`, as one array: a `Vec` of one type, a tuple of different types, `()` to
    /// drop them. Fails on the first error reply, of any command.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{engine, Client, Config, Pipeline};
    /// engine::start(async {
    ///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
    ///     let mut pipe = Pipeline::new();
    ///     pipe.set("name", "Ada").ignore().incr("visits", 1).get("name");
    ///     let (visits, name): (u64, String) = client.query_pipeline(&pipe).await?;
    ///     let all: Vec<Option<String>> = client.query_pipeline(&pipe).await?;
    ///     Ok::<(), redis_cluster_uring::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn query_pipeline<T: FromReply>(&self, pipeline: &Pipeline) -> Result<T> {
        pipeline.convert(self.execute_every(pipeline).await?)
    }

    /// `PING` on every primary, all at once; `Ok` when every one answered, otherwise an
    /// error of kind [`ErrorKind::PartialFailure`] with each node's outcome.
    pub async fn ping(&self) -> Result<()> {
        // PING is a multi-node command: the fan-out sends it to every primary and
        // merges (all must answer); a failure lists each node's outcome.
        self.query::<()>(cmd("PING")).await
    }

    /// Runs one command on a given node, bypassing routing: `INFO`, `DEBUG`, `CLUSTER ...`,
    /// or a multi-node command such as `DBSIZE` for that node alone. No redirect is
    /// followed: a `MOVED` or `ASK` reply is an error of kind [`ErrorKind::Moved`] or
    /// [`ErrorKind::Ask`] that carries the slot and target. Blocking commands get a
    /// dedicated connection to the node, as in [`Client::query`]; commands that would
    /// break the shared connection are refused.
    ///
    /// `WAIT` and `WAITAOF` run on the shared connection, whose writes are the ones they
    /// wait for (on a fresh dedicated connection they would count none); they stall that
    /// node's other requests for up to the timeout the caller gives, so a timeout of 0
    /// (for ever) is refused with [`ErrorKind::Unsupported`].
    ///
    /// ```no_run
    /// use redis_cluster_uring::{cmd, engine, Client, Config};
    /// engine::start(async {
    ///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
    ///     let mut keys = 0;
    ///     for shard in client.slot_map().shards() {
    ///         keys += client.query_node::<i64>(&shard.primary, cmd("DBSIZE")).await?;
    ///     }
    ///     println!("{keys} keys");
    ///     Ok::<(), redis_cluster_uring::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn query_node<T: FromReply>(&self, node: &NodeAddr, command: Cmd) -> Result<T> {
        let path = self.inner.cluster.borrow().named_node(&command)?;
        let results = match path {
            NamedNode::Dedicated(timeout) => {
                self.run_blocking(Some(node), &command, timeout).await?
            }
            NamedNode::Refused(e) => return Err(e),
            NamedNode::Shared(timeout) => {
                self.ensure_open()?;
                self.inner.counters.add_execution();
                self.run_pinned(
                    std::slice::from_ref(&command),
                    vec![node.clone()],
                    deadline_after(timeout),
                    RoundLimits::of(&self.inner.config),
                    true,
                )
                .await?
            }
        };
        match results.into_iter().next() {
            Some(r) => T::from_reply(r?),
            None => Err(Error::new(ErrorKind::Protocol, "no reply")),
        }
    }

    /// The current slot map.
    pub fn slot_map(&self) -> std::sync::Arc<SlotMap> {
        self.inner.cluster.borrow().map().clone()
    }

    /// The I/O engine this client uses (`IoUring` or `Epoll`).
    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// Counters since the client was created.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Empties the client-side cache ([`Config::cache`](crate::Config::cache)); reads
    /// in flight fill nothing. Counted in `Stats::cache_flushes`.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{engine, CacheConfig, Client, Config};
    /// engine::start(async {
    ///     let config = Config::default().cache(CacheConfig::default());
    ///     let client = Client::connect(&["127.0.0.1:7000"], config).await?;
    ///     let _: Option<String> = client.query(redis_cluster_uring::cmd("GET").arg("k")).await?;
    ///     client.cache_clear();
    ///     assert_eq!(client.stats().cache_entries, 0);
    ///     Ok::<(), redis_cluster_uring::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn cache_clear(&self) {
        self.inner.cluster.borrow().cache_clear();
    }

    /// Number of open shared connections (one per node in use).
    pub fn connection_count(&self) -> usize {
        self.inner.pool.borrow().connection_count()
    }

    /// What `node` said of itself in its last connection handshake (server, version,
    /// protocol, role, availability zone), once a connection to it has been opened.
    pub fn server_info(&self, node: &NodeAddr) -> Option<crate::core::handshake::ServerInfo> {
        self.inner.pool.borrow().server_info(node).cloned()
    }

    /// Number of open dedicated connections for blocking commands, leased or idle.
    pub fn blocking_connection_count(&self) -> usize {
        self.inner.pool.borrow().dedicated_count()
    }

    /// Reloads the slot map now. Several nodes are asked at once (primaries and replicas
    /// in random order, then the seeds), each within `refresh_timeout`, and
    /// `refresh_policy` picks among the answers; MOVED updates that arrive meanwhile are
    /// kept. Connections to nodes that left the map are closed once idle.
    pub async fn refresh_slots(&self) -> Result<()> {
        /// Ends this refresh's claim on the MOVED log however the future ends, so the
        /// log is cleared once no refresh runs (it cannot grow without bound).
        struct Fetching<'a> {
            cluster: &'a RefCell<Cluster>,
            mark: usize,
            ended: bool,
        }
        impl Fetching<'_> {
            fn end(mut self) -> Vec<(Slot, NodeAddr)> {
                self.ended = true;
                self.cluster.borrow_mut().refresh().fetch_ended(self.mark)
            }
        }
        impl Drop for Fetching<'_> {
            fn drop(&mut self) {
                if !self.ended {
                    self.cluster.borrow_mut().refresh().fetch_ended(self.mark);
                }
            }
        }
        let mark = self.inner.cluster.borrow_mut().refresh().fetch_started();
        let fetching = Fetching {
            cluster: &self.inner.cluster,
            mark,
            ended: false,
        };
        let fetched = self.fetch_slot_map().await;
        let moves = fetching.end();
        let replicas = {
            let mut pool = self.inner.pool.borrow_mut();
            let mut cluster = self.inner.cluster.borrow_mut();
            cluster.adopt(fetched, moves, pool.nodes_mut(), Instant::now())?;
            pool.close_idle(Instant::now(), None, |addr| cluster.keeps(addr));
            cluster.warm_ups(pool.nodes(), Instant::now(), |r| pool.find(r).is_some())
        };
        if !self.inner.closed.get() {
            for replica in replicas {
                self.connection_for(&replica);
            }
        }
        Ok(())
    }
}
