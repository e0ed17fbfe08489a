//! The clients under test, each driven the way its users drive it, one case at a time on
//! a fresh thread (so per-thread CPU and allocation counters see only that client).
//!
//! The multi-thread workloads (`tasks`, `tasks-fanout`) start a tokio multi-thread runtime
//! on that thread and are measured in `tasks.rs`.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::alloc::thread_allocations;
use crate::cpu::{self, CpuTime};
use crate::seeds;
use crate::syscalls::SyscallCounter;

/// A client configuration in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKind {
    /// This library, parallel pipelines, io_uring engine.
    Uring,
    /// This library, parallel pipelines, epoll engine.
    Epoll,
    /// This library, parallel pipelines, on the ring it owns (one `io_uring_enter` per
    /// loop turn, no tokio runtime).
    Ring,
    /// This library, serial per-node execution (the classic client's behaviour).
    Serial,
    /// This library's `blocking::Client`: no runtime, its own io_uring instance (one
    /// `io_uring_enter` per pipeline), or `poll(2)` where io_uring is refused.
    Blocking,
    /// redis-rs async cluster (`cluster-async`), K commands issued with `join_all`.
    RedisRs,
    /// redis-rs blocking cluster connection with `cluster_pipe`.
    RedisRsSync,
    /// fred, cluster client, `pipeline()`.
    Fred,
    /// Not a client: the lowest cost of the pipeline on this cluster, everything but the
    /// I/O precomputed (see `floor/`). The `÷ floor` columns compare with it.
    Floor,
    /// This library, parallel pipelines, on compio's runtime and sockets (what a compio
    /// server embedding a client gets).
    Compio,
    /// `Ring` whose loop wakes at the first completion (`RingWait::First`) instead of
    /// gathering every expected one: less CPU, for cores shared with other work.
    RingFirst,
    /// This library's `SharedClient` (one handle cloned into every task, N worker threads
    /// each with its own client on its own ring), on a tokio multi-thread runtime: the
    /// multi-thread workloads only.
    Shared,
}

impl ClientKind {
    /// Every client, in table order (a new one goes last: its place is its colour in
    /// the figures).
    pub const ALL: [ClientKind; 12] = [
        ClientKind::Ring,
        ClientKind::Uring,
        ClientKind::Epoll,
        ClientKind::Serial,
        ClientKind::Blocking,
        ClientKind::RedisRs,
        ClientKind::RedisRsSync,
        ClientKind::Fred,
        ClientKind::Floor,
        ClientKind::Compio,
        ClientKind::RingFirst,
        ClientKind::Shared,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Uring => "uring",
            ClientKind::Epoll => "epoll",
            ClientKind::Ring => "ring",
            ClientKind::Serial => "serial",
            ClientKind::Blocking => "blocking",
            ClientKind::RedisRs => "redis-rs",
            ClientKind::RedisRsSync => "redis-rs-sync",
            ClientKind::Fred => "fred",
            ClientKind::Floor => "floor",
            ClientKind::Compio => "compio",
            ClientKind::RingFirst => "ring-first",
            ClientKind::Shared => "shared",
        }
    }

    /// Parses a name from the command line.
    pub fn parse(s: &str) -> Option<ClientKind> {
        ClientKind::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The name of its row: `uring`, or `uring+tls` over TLS.
    pub fn label(self, tls: bool) -> &'static str {
        if !tls {
            return self.name();
        }
        match self {
            ClientKind::Uring => "uring+tls",
            ClientKind::Epoll => "epoll+tls",
            ClientKind::Ring => "ring+tls",
            ClientKind::Serial => "serial+tls",
            ClientKind::Blocking => "blocking+tls",
            ClientKind::RedisRs => "redis-rs+tls",
            ClientKind::RedisRsSync => "redis-rs-sync+tls",
            ClientKind::Fred => "fred+tls",
            ClientKind::Floor => "floor+tls",
            ClientKind::Compio => "compio+tls",
            ClientKind::RingFirst => "ring-first+tls",
            ClientKind::Shared => "shared+tls",
        }
    }

    /// Why this client does not run a workload (`None`: any workload), or over TLS;
    /// `None` when it does.
    pub fn skipped(self, workload: Option<Workload>, tls: bool) -> Option<&'static str> {
        if tls && self == ClientKind::Fred {
            return Some("cluster-bench builds it without its TLS features");
        }
        if self == ClientKind::Floor {
            return crate::floor::unsupported(workload.unwrap_or(Workload::Fanout), tls);
        }
        // Past TLS, every client runs some workload.
        let workload = workload?;
        if workload == Workload::Zipf {
            return crate::zipf::skipped(self);
        }
        match self {
            ClientKind::Shared if !workload.on_tasks() => Some(
                "it is for tasks on a multi-thread runtime (tasks, tasks-fanout); on one \
                 thread this library is the `ring` row",
            ),
            ClientKind::Shared | ClientKind::RedisRs | ClientKind::Fred => None,
            ClientKind::RedisRsSync if workload.on_tasks() => Some(
                "a blocking connection: each task would block a runtime thread; redis-rs's \
                 row here is its async connection",
            ),
            _ if workload.on_tasks() => {
                Some("a single-threaded client: `shared` is this library on a multi-thread runtime")
            }
            ClientKind::RedisRsSync | ClientKind::Serial | ClientKind::Blocking
                if workload == Workload::Concurrent =>
            {
                Some("a blocking client has no concurrent callers")
            }
            _ => None,
        }
    }

    /// True for the other libraries (the ratios compare against the best of them).
    pub fn is_peer(self) -> bool {
        matches!(
            self,
            ClientKind::RedisRs | ClientKind::RedisRsSync | ClientKind::Fred
        )
    }
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// One pipeline of K commands over keys on every node.
    Fanout,
    /// The same K commands with one hash tag: one node serves them all.
    SingleNode,
    /// C callers on one thread, each issuing single GETs.
    Concurrent,
    /// C tasks on a tokio multi-thread runtime, each issuing single GETs of its own key.
    Tasks,
    /// C tasks on a tokio multi-thread runtime, each running the fan-out pipeline of K
    /// commands (K up to [`TASKS_FANOUT_MAX_K`]).
    TasksFanout,
    /// GETs of a Zipf-distributed key set, 1% SETs through a second client, with the
    /// client-side cache on and off (`zipf.rs`, which runs it).
    Zipf,
}

/// The largest K `tasks-fanout` runs: 64 tasks with 1024 commands each in flight is
/// another benchmark (a bulk load), not a service's tasks.
pub const TASKS_FANOUT_MAX_K: usize = 128;

impl Workload {
    /// Every workload, in the order of `--help`.
    pub const ALL: [Workload; 6] = [
        Workload::Fanout,
        Workload::SingleNode,
        Workload::Concurrent,
        Workload::Tasks,
        Workload::TasksFanout,
        Workload::Zipf,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fanout => "fanout",
            Workload::SingleNode => "single-node",
            Workload::Concurrent => "concurrent",
            Workload::Tasks => "tasks",
            Workload::TasksFanout => "tasks-fanout",
            Workload::Zipf => "zipf",
        }
    }

    /// Parses a name from the command line.
    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Whether it runs as tokio tasks on a multi-thread runtime (see `tasks.rs`).
    pub fn on_tasks(self) -> bool {
        matches!(self, Workload::Tasks | Workload::TasksFanout)
    }
}

/// What a TLS case trusts.
#[derive(Clone)]
pub enum TlsTrust {
    /// This CA (PEM): the nodes' certificates are verified.
    Ca(Vec<u8>),
    /// Any certificate (`--tls-insecure`).
    AnyCertificate,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsTrust::Ca(_) => f.write_str("Ca(..)"),
            TlsTrust::AnyCertificate => f.write_str("AnyCertificate"),
        }
    }
}

impl TlsTrust {
    /// Our client's TLS configuration.
    pub fn client_config(&self) -> Result<redis_cluster_uring::tls::TlsConfig, String> {
        let tls = redis_cluster_uring::tls::TlsConfig::new();
        match self {
            TlsTrust::Ca(pem) => tls.add_root_pem(pem).map_err(|e| e.to_string()),
            TlsTrust::AnyCertificate => Ok(tls.danger_accept_invalid_certs()),
        }
    }
}

/// One measurement to take.
#[derive(Debug, Clone)]
pub struct CaseSpec {
    /// Who.
    pub client: ClientKind,
    /// What.
    pub workload: Workload,
    /// Commands per pipeline (fanout, single-node, tasks-fanout) or concurrent callers
    /// (concurrent, tasks).
    pub k: usize,
    /// Tokio tasks of the multi-thread workloads (for `tasks`, equal to `k`).
    pub tasks: usize,
    /// Worker threads of their tokio runtime (`None`: `available_parallelism` at case
    /// time, which `--pin` narrows to one).
    pub runtime_threads: Option<usize>,
    /// `SharedClient`'s worker threads (`None`: its default, one per CPU it may use).
    pub workers: Option<usize>,
    /// Cluster seeds, `host:port` or `redis://` / `rediss://` URLs.
    pub seeds: Vec<String>,
    /// TLS to every node (`None`: plain TCP).
    pub tls: Option<TlsTrust>,
    /// Unmeasured run-in.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// The `raw_syscalls:sys_enter` tracepoint to count system calls with, or why
    /// they cannot be counted (see `syscalls::prepare`).
    pub syscalls: Result<u64, String>,
}

/// What a case measured.
#[derive(Debug)]
pub struct CaseResult {
    /// Latency of each operation (a pipeline, or one command), in nanoseconds.
    pub latency: Histogram<u64>,
    /// Commands completed in the measured window.
    pub commands: u64,
    /// Operations that failed (counted, not timed).
    pub errors: u64,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// The client's CPU in the window: its case thread and any helper threads.
    pub cpu: CpuTime,
    /// Heap allocations by the client thread in the window (the multi-thread workloads:
    /// by every thread of the process but the delay proxy).
    pub allocations: u64,
    /// For this library: socket writes and reads in the window, and operations.
    pub io: Option<(u64, u64, u64)>,
    /// System calls made by the client thread in the window, or why they were not
    /// counted.
    pub syscalls: Result<u64, String>,
    /// Operations completed in the window.
    pub ops: u64,
    /// On the ring engine: its loop turns in the window.
    pub turns: Option<u64>,
    /// The multi-thread workloads: the tasks and threads that ran them.
    pub runtime: Option<TaskRuntime>,
}

/// How a multi-thread case ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRuntime {
    /// Tokio tasks, each in a closed loop.
    pub tasks: usize,
    /// The runtime's worker threads.
    pub threads: usize,
    /// `SharedClient`'s worker threads (other clients: `None`).
    pub workers: Option<usize>,
}

/// Keys of a pipeline (spread over all slots, or all behind one hash tag), or of the
/// concurrent callers and tasks: `bench:0` to `bench:{k-1}`, which `tasks` reads one per
/// task.
pub fn keys(workload: Workload, k: usize) -> Vec<String> {
    (0..k)
        .map(|i| match workload {
            Workload::SingleNode => format!("{{bench}}:{i}"),
            _ => format!("bench:{i}"),
        })
        .collect()
}

/// The value every SET writes (and the pre-set keys hold).
pub const VALUE: &str = "0123456789abcdef";

/// Whether the command at position `i` of a pipeline is a GET of its key; the others SET
/// it to [`VALUE`]. Every client builds its pipeline from this: all send the same
/// commands.
pub fn is_get(i: usize) -> bool {
    i.is_multiple_of(2)
}

/// A pipeline's commands as their arguments: `GET key` or `SET key VALUE`.
pub fn pipeline_args(workload: Workload, k: usize) -> Vec<Vec<Vec<u8>>> {
    keys(workload, k)
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            if is_get(i) {
                vec![b"GET".to_vec(), key.into_bytes()]
            } else {
                vec![b"SET".to_vec(), key.into_bytes(), VALUE.as_bytes().to_vec()]
            }
        })
        .collect()
}

/// The fan-out (or single-node) pipeline as this library's `Pipeline`, failing on the
/// first error.
pub fn our_pipeline(workload: Workload, k: usize) -> redis_cluster_uring::Pipeline {
    let mut pipe = redis_cluster_uring::Pipeline::with_capacity(k);
    for (i, key) in keys(workload, k).iter().enumerate() {
        if is_get(i) {
            pipe.get(key.as_str());
        } else {
            pipe.set(key.as_str(), VALUE);
        }
    }
    pipe.raise_on_error(true);
    pipe
}

/// A latency histogram for one case (or one task): 1 µs to 60 s, 3 significant digits.
pub fn latency_histogram() -> Result<Histogram<u64>, String> {
    Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).map_err(|e| e.to_string())
}

/// Runs a case on a new thread and waits for it.
pub fn run_case(spec: CaseSpec) -> Result<CaseResult, String> {
    std::thread::Builder::new()
        .name(format!("{}{}", cpu::CASE_THREAD_PREFIX, spec.client))
        .spawn(move || run_on_this_thread(&spec))
        .map_err(|e| format!("cannot spawn a thread: {e}"))?
        .join()
        .map_err(|_| "the client thread panicked".to_string())?
}

fn run_on_this_thread(spec: &CaseSpec) -> Result<CaseResult, String> {
    if spec.workload.on_tasks() {
        return crate::tasks::run(spec);
    }
    match spec.client {
        ClientKind::Uring => ours(spec, redis_cluster_uring::Engine::IoUring, false),
        ClientKind::Epoll => ours(spec, redis_cluster_uring::Engine::Epoll, false),
        ClientKind::Ring | ClientKind::RingFirst => {
            ours(spec, redis_cluster_uring::Engine::Ring, false)
        }
        ClientKind::Compio => ours(spec, redis_cluster_uring::Engine::Compio, false),
        ClientKind::Serial => ours(spec, redis_cluster_uring::Engine::IoUring, true),
        ClientKind::Blocking => ours_blocking(spec),
        ClientKind::RedisRs => redis_rs_async(spec),
        ClientKind::RedisRsSync => redis_rs_sync(spec),
        ClientKind::Fred => fred_client(spec),
        ClientKind::Floor => floor(spec),
        ClientKind::Shared => Err("shared runs the multi-thread workloads only".into()),
    }
}

/// Measures a closed loop of `op` (or `callers` concurrent loops) for `duration` after
/// `warmup`, on the current thread.
async fn measure<F, Fut>(
    spec: &CaseSpec,
    callers: usize,
    commands_per_op: u64,
    op: F,
) -> Result<CaseResult, String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let latency = RefCell::new(latency_histogram()?);
    let errors = RefCell::new(0u64);
    let ops = RefCell::new(0u64);
    let first_error = RefCell::new(None::<String>);
    let run = |until: Instant, record: bool| {
        let (latency, errors, ops, first_error, op) = (&latency, &errors, &ops, &first_error, &op);
        async move {
            let one = |_| async move {
                while Instant::now() < until {
                    let start = Instant::now();
                    let outcome = op().await;
                    if !record {
                        continue;
                    }
                    match outcome {
                        Ok(()) => {
                            let ns = start.elapsed().as_nanos() as u64;
                            let _ = latency.borrow_mut().record(ns.max(1_000));
                            *ops.borrow_mut() += 1;
                        }
                        Err(e) => {
                            *errors.borrow_mut() += 1;
                            first_error.borrow_mut().get_or_insert(e);
                        }
                    }
                }
            };
            futures::future::join_all((0..callers).map(one)).await;
        }
    };
    run(Instant::now() + spec.warmup, false).await;
    let mut count = SyscallCounter::reader_for_this_thread(&spec.syscalls);
    let sys0 = count();
    let helpers0 = cpu::Helpers::snapshot();
    let turns0 = redis_cluster_uring::engine::ring_turns();
    let (cpu0, alloc0, t0) = (cpu::this_thread(), thread_allocations(), Instant::now());
    run(t0 + spec.duration, true).await;
    let turns = turns0
        .zip(redis_cluster_uring::engine::ring_turns())
        .map(|(a, b)| b.turns - a.turns);
    let elapsed = t0.elapsed();
    let (thread_cpu, allocations) = (cpu::this_thread() - cpu0, thread_allocations() - alloc0);
    let helpers = cpu::Helpers::snapshot().since(&helpers0);
    let sys1 = count();
    let syscalls = sys0.and_then(|a| sys1.map(|b| b.saturating_sub(a)));
    let ops = ops.into_inner();
    if ops == 0 {
        return Err(first_error
            .into_inner()
            .unwrap_or_else(|| "no operation completed".into()));
    }
    Ok(CaseResult {
        latency: latency.into_inner(),
        commands: ops * commands_per_op,
        errors: errors.into_inner(),
        elapsed,
        cpu: CpuTime {
            user_ns: thread_cpu.user_ns + helpers.user_ns,
            sys_ns: thread_cpu.sys_ns + helpers.sys_ns,
        },
        allocations,
        io: None,
        syscalls,
        ops,
        turns,
        runtime: None,
    })
}

fn ours(
    spec: &CaseSpec,
    engine: redis_cluster_uring::Engine,
    serial: bool,
) -> Result<CaseResult, String> {
    use redis_cluster_uring::{cmd, Client, Config, Execution};
    let outcome = redis_cluster_uring::engine::start_with(engine, async {
        if spec.client == ClientKind::RingFirst {
            redis_cluster_uring::engine::set_ring_wait(
                redis_cluster_uring::engine::RingWait::First,
            )
            .map_err(|e| e.to_string())?;
        }
        let mut config = Config::default().periodic_refresh(None).engine(engine);
        if let Some(trust) = &spec.tls {
            config = config.tls(trust.client_config()?);
        }
        if serial {
            config = config.execution(Execution::Serial);
        }
        let client = Client::connect(&spec.seeds, config)
            .await
            .map_err(|e| e.to_string())?;
        let before = client.stats();
        let mut result = match spec.workload {
            Workload::Concurrent => {
                let get = cmd("GET").arg("bench:0");
                measure(spec, spec.k, 1, || async {
                    client
                        .query::<redis_cluster_uring::Value>(get.clone())
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .await?
            }
            _ => {
                let pipe = our_pipeline(spec.workload, spec.k);
                measure(spec, 1, spec.k as u64, || async {
                    client
                        .execute(&pipe)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .await?
            }
        };
        let after = client.stats();
        result.io = Some((
            after.writes - before.writes,
            after.reads - before.reads,
            after.executions - before.executions,
        ));
        Ok(result)
    });
    outcome.map_err(|e| e.to_string())?
}

/// `blocking::Client`: the same pipeline as `ours`, each `execute` one submission and
/// one wait on the client's own ring.
fn ours_blocking(spec: &CaseSpec) -> Result<CaseResult, String> {
    use redis_cluster_uring::{blocking, Config};
    if spec.workload == Workload::Concurrent {
        return Err("a blocking client has no concurrent callers".into());
    }
    let mut config = Config::default().periodic_refresh(None);
    if let Some(trust) = &spec.tls {
        config = config.tls(trust.client_config()?);
    }
    let client =
        RefCell::new(blocking::Client::connect(&spec.seeds, config).map_err(|e| e.to_string())?);
    let pipe = our_pipeline(spec.workload, spec.k);
    // As for redis-rs's blocking client: each op blocks this thread.
    futures::executor::block_on(measure(spec, 1, spec.k as u64, || {
        let outcome = client
            .borrow_mut()
            .execute(&pipe)
            .map(drop)
            .map_err(|e| e.to_string());
        std::future::ready(outcome)
    }))
}

/// The floor: the case's pipeline precomputed, one send and one read per node on a raw
/// ring, replies counted (see `floor/`). Set up and checked before the warm-up.
fn floor(spec: &CaseSpec) -> Result<CaseResult, String> {
    use crate::floor::Floor;
    if let Some(why) = crate::floor::unsupported(spec.workload, spec.tls.is_some()) {
        return Err(format!("no floor here: {why}"));
    }
    let floor = RefCell::new(Floor::connect(&spec.seeds, spec.workload, spec.k)?);
    let before = floor.borrow().io();
    // As for the blocking clients: each op blocks this thread.
    let mut result = futures::executor::block_on(measure(spec, 1, spec.k as u64, || {
        std::future::ready(floor.borrow_mut().execute())
    }))?;
    let after = floor.borrow().io();
    // Over the warm-up and the window, as the library's rows count theirs.
    result.io = Some((
        after.sends - before.sends,
        after.reads - before.reads,
        after.pipelines - before.pipelines,
    ));
    Ok(result)
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn redis_nodes(spec: &CaseSpec) -> Vec<String> {
    spec.seeds
        .iter()
        .map(|s| seeds::redis_rs_url(s, spec.tls.is_some()))
        .collect()
}

/// redis-rs's cluster client for the case: URLs (with their credentials), TLS trust.
pub fn redis_cluster_client(spec: &CaseSpec) -> Result<redis::cluster::ClusterClient, String> {
    use redis::cluster::ClusterClient;
    use redis::io::tcp::TcpSettings;
    let mut builder = ClusterClient::builder(redis_nodes(spec))
        .tcp_settings(TcpSettings::default().set_nodelay(true));
    match &spec.tls {
        None => {}
        Some(TlsTrust::Ca(pem)) => {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            })
        }
        Some(TlsTrust::AnyCertificate) => builder = builder.tls(redis::TlsMode::Insecure),
    }
    builder.build().map_err(|e| e.to_string())
}

fn redis_rs_async(spec: &CaseSpec) -> Result<CaseResult, String> {
    current_thread_runtime()?.block_on(async {
        let client = redis_cluster_client(spec)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        match spec.workload {
            Workload::Concurrent => {
                measure(spec, spec.k, 1, || {
                    let mut conn = conn.clone();
                    async move {
                        redis::cmd("GET")
                            .arg("bench:0")
                            .query_async::<redis::Value>(&mut conn)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                })
                .await
            }
            _ => {
                // Its cluster pipeline refuses keys in several slots, so the usual
                // workaround: K single commands in flight at once.
                let cmds = redis_commands(spec.workload, spec.k);
                measure(spec, 1, spec.k as u64, || redis_join_all(&conn, &cmds)).await
            }
        }
    })
}

/// The fan-out (or single-node) pipeline's commands for redis-rs, as single commands:
/// its async cluster pipeline refuses keys in several slots, so its users send K single
/// commands at once ([`redis_join_all`]).
pub fn redis_commands(workload: Workload, k: usize) -> Vec<redis::Cmd> {
    keys(workload, k)
        .iter()
        .enumerate()
        .map(|(i, key)| {
            if is_get(i) {
                redis::cmd("GET").arg(key).clone()
            } else {
                redis::cmd("SET").arg(key).arg(VALUE).clone()
            }
        })
        .collect()
}

/// `cmds` in flight at once on clones of `conn`, joined: redis-rs's fan-out.
pub async fn redis_join_all(
    conn: &redis::cluster_async::ClusterConnection,
    cmds: &[redis::Cmd],
) -> Result<(), String> {
    let all = cmds.iter().map(|c| {
        let mut conn = conn.clone();
        async move { c.query_async::<redis::Value>(&mut conn).await }
    });
    for r in futures::future::join_all(all).await {
        r.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn redis_rs_sync(spec: &CaseSpec) -> Result<CaseResult, String> {
    use redis::cluster::cluster_pipe;
    if spec.workload == Workload::Concurrent {
        return Err("a blocking connection has no concurrent callers".into());
    }
    let client = redis_cluster_client(spec)?;
    let conn = RefCell::new(client.get_connection().map_err(|e| e.to_string())?);
    let mut pipe = cluster_pipe();
    for (i, key) in keys(spec.workload, spec.k).iter().enumerate() {
        if is_get(i) {
            pipe.get(key);
        } else {
            pipe.set(key, VALUE);
        }
    }
    // The measuring loop is async only in form: each op blocks this thread, as a
    // blocking client does.
    futures::executor::block_on(measure(spec, 1, spec.k as u64, || {
        let outcome = pipe
            .query::<Vec<redis::Value>>(&mut conn.borrow_mut())
            .map(drop)
            .map_err(|e| e.to_string());
        std::future::ready(outcome)
    }))
}

fn fred_client(spec: &CaseSpec) -> Result<CaseResult, String> {
    use fred::prelude::*;
    current_thread_runtime()?.block_on(async {
        let client = fred_connect(spec).await?;
        let result = match spec.workload {
            Workload::Concurrent => {
                measure(spec, spec.k, 1, || async {
                    client
                        .get::<Value, _>("bench:0")
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .await
            }
            _ => {
                let keys = keys(spec.workload, spec.k);
                measure(spec, 1, spec.k as u64, || fred_pipeline(&client, &keys)).await
            }
        };
        let _ = client.quit().await;
        result
    })
}

/// A connected fred cluster client for the case, on the current tokio runtime.
pub async fn fred_connect(spec: &CaseSpec) -> Result<fred::clients::Client, String> {
    use fred::prelude::*;
    if spec.tls.is_some() {
        return Err("fred is built without TLS here".into());
    }
    let parsed = spec
        .seeds
        .iter()
        .map(|s| seeds::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let hosts: Vec<(String, u16)> = parsed.iter().map(|s| (s.host.clone(), s.port)).collect();
    // Credentials from the first URL that has some (the client refuses differing ones).
    let auth = parsed.iter().find(|s| s.password.is_some());
    let config = Config {
        server: ServerConfig::new_clustered(hosts),
        username: auth.and_then(|s| s.username.clone()),
        password: auth.and_then(|s| s.password.clone()),
        ..Config::default()
    };
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.tcp = TcpConfig {
                nodelay: Some(true),
                ..TcpConfig::default()
            };
        })
        .build()
        .map_err(|e| e.to_string())?;
    client.init().await.map_err(|e| e.to_string())?;
    Ok(client)
}

/// The fan-out pipeline (GETs and SETs of `keys`, see [`is_get`]) through fred's
/// `pipeline()`, one per operation.
pub async fn fred_pipeline(client: &fred::clients::Client, keys: &[String]) -> Result<(), String> {
    use fred::prelude::*;
    let pipe = client.pipeline();
    for (i, key) in keys.iter().enumerate() {
        let queued: Result<(), Error> = if is_get(i) {
            pipe.get(key.as_str()).await
        } else {
            pipe.set(key.as_str(), VALUE, None, None, false).await
        };
        queued.map_err(|e| e.to_string())?;
    }
    pipe.all::<Vec<Value>>()
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
