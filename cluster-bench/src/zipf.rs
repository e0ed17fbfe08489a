//! The `zipf` workload: the client-side cache (`Config::cache`) measured on reads of a
//! Zipf-distributed key set, with the cache on and off in the same run.
//!
//! - **Keys**: `--zipf-keys` keys (100,000 by default), `zipf:0` to `zipf:{n-1}`, each a
//!   32-byte value, written once per cluster by pipelined SETs ([`load`]). Key `zipf:r`
//!   has rank r+1: it is drawn with probability `1 / ((r+1)^s · H)`, s = 1.0 ([`Sampler`]:
//!   the CDF precomputed, a uniform draw binary-searched in it; seeded, so every run draws
//!   the same sequence per caller).
//! - **Operations**: every caller loops: draw a key; 1% of the time SET it (a new value)
//!   through a *second* client, uncached, on the same thread, so the servers push the
//!   invalidations to the reader's connections, as when another service writes; else GET
//!   it through the client under test. Only the GETs are timed and counted as reads.
//! - **Rows** ([`Row`]): this library's async client on the ring engine (`--concurrency`
//!   callers on one thread, as in `concurrent`) and its `blocking::Client` (one caller),
//!   each with the cache on (`+cache`) and off; redis-rs's async cluster connection as an
//!   uncached peer (its writer is a second redis-rs connection).
//! - **The cache** holds `--zipf-cache-entries` keys (all of them by default) and is
//!   prefilled before the warm-up: MGETs of the hottest keys it can hold, which the cache
//!   answers by one GET per key, each filling its entry. The measured window then sees the
//!   steady state of a long-running reader, whose misses are the keys the writes
//!   invalidated (about one per write), not the first read of each of 100,000 keys.
//! - **Figures**: hit rate from the reader's `stats()` over the window (hits ÷ (hits +
//!   misses)), p50/p99 of the reads, CPU per read as every other row counts it (the case
//!   thread and its helpers; here that thread also runs the writer client and the
//!   harness: the draw, the clock reads and the histogram, see [`harness_costs`]), reads/s,
//!   and cached ÷ uncached.
//! - **Pure hits** ([`hit_costs`]): every key read once (filling the cache), then GET
//!   in a loop by one caller with no writes: 8 hot keys in turn (everything a hit touches
//!   in the CPU's caches), and the whole key set drawn Zipf (a hit with 100,000 entries
//!   in memory, as the workload meets it): the client CPU a hit costs, against the
//!   issue's target of 1 µs.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::alloc::thread_allocations;
use crate::clients::{self, CaseResult, CaseSpec, ClientKind, Workload};
use crate::cpu::{self, CpuTime};
use crate::report::Record;
use crate::syscalls::SyscallCounter;

/// Keys in the set by default (`--zipf-keys`).
pub const DEFAULT_KEYS: usize = 100_000;

/// The Zipf exponent.
pub const S: f64 = 1.0;

/// The share of operations that are writes (through the second client).
pub const WRITE_FRACTION: f64 = 0.01;

/// The seed of every caller's generator (caller i draws from `SEED + i`, each window
/// from its own sequence).
const SEED: u64 = 0x5eed_2177;

/// Keys of the pure-hit microbenchmark.
pub const HOT_KEYS: usize = 8;

/// Keys per MGET when the cache is prefilled, and SETs per pipeline when the keys are
/// loaded.
const CHUNK: usize = 1_000;

/// The targets of the issue: reads/s with the cache at least this many times the
/// uncached client's, at 0 ms and at 1 ms of injected delay.
const READS_TARGETS: [(u64, f64); 2] = [(0, 5.0), (1, 20.0)];

/// A cache hit's client CPU must stay under this (the pure-hit microbenchmark).
pub const HIT_TARGET_NS: f64 = 1_000.0;

/// Ranks drawn from Zipf(s) over `n` keys: the CDF precomputed, a uniform draw
/// binary-searched in it.
#[derive(Debug, Clone)]
pub struct Sampler {
    cdf: Vec<f64>,
}

impl Sampler {
    /// Over ranks 1..=n (`n` at least 1), weight `1 / k^s`.
    pub fn new(n: usize, s: f64) -> Sampler {
        let n = n.max(1);
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        // Rounding may leave the last just under 1: every draw must land somewhere.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Sampler { cdf }
    }

    /// A key index (rank - 1): 0 is the most drawn.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> usize {
        let u: f64 = rng.gen();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// The generalised harmonic number `H(n, s)`: rank 1 is drawn with probability `1 / H`.
#[cfg(test)]
fn harmonic(n: usize, s: f64) -> f64 {
    (1..=n).map(|k| (k as f64).powf(-s)).sum()
}

/// The key of index `i`.
pub fn key(i: usize) -> String {
    format!("zipf:{i}")
}

/// The key of index `i` in a stack buffer: the GETs are built per read from it, as a
/// service builds its command from the key it was asked for (100,000 commands built
/// ahead would be read from cold memory, a cost of the bench, not of a client).
fn with_key<T>(i: usize, f: impl FnOnce(&[u8]) -> T) -> T {
    use std::io::Write as _;
    let mut buf = [0u8; 32];
    let mut rest = &mut buf[..];
    let _ = write!(rest, "zipf:{i}");
    let n = 32 - rest.len();
    f(&buf[..n])
}

/// `GET zipf:i` for this library.
fn get(i: usize) -> redis_cluster_uring::Cmd {
    with_key(i, |k| redis_cluster_uring::cmd("GET").arg(k))
}

/// A 32-byte value: the write's version and the key's index.
fn value(i: usize, version: u64) -> String {
    format!("{version:016x}{i:016x}")
}

/// A row of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// This library's async client on the ring engine, `--concurrency` callers.
    Ring { cache: bool },
    /// This library's `blocking::Client`, one caller.
    Blocking { cache: bool },
    /// redis-rs's async cluster connection, `--concurrency` callers, uncached.
    RedisRs,
}

impl Row {
    /// Every row, in table order.
    pub const ALL: [Row; 5] = [
        Row::Ring { cache: true },
        Row::Ring { cache: false },
        Row::Blocking { cache: true },
        Row::Blocking { cache: false },
        Row::RedisRs,
    ];

    /// The row's name in the tables and the JSON.
    pub fn label(self) -> &'static str {
        match self {
            Row::Ring { cache: true } => "ring+cache",
            Row::Ring { cache: false } => "ring",
            Row::Blocking { cache: true } => "blocking+cache",
            Row::Blocking { cache: false } => "blocking",
            Row::RedisRs => "redis-rs",
        }
    }

    /// The client it measures.
    pub fn client(self) -> ClientKind {
        match self {
            Row::Ring { .. } => ClientKind::Ring,
            Row::Blocking { .. } => ClientKind::Blocking,
            Row::RedisRs => ClientKind::RedisRs,
        }
    }

    /// Whether its cache is on.
    pub fn cached(self) -> bool {
        matches!(
            self,
            Row::Ring { cache: true } | Row::Blocking { cache: true }
        )
    }

    /// Its callers on the one thread.
    fn callers(self, concurrency: usize) -> usize {
        match self {
            Row::Blocking { .. } => 1,
            _ => concurrency,
        }
    }
}

/// The rows of the clients asked for, in table order.
pub fn rows(clients: &[ClientKind]) -> Vec<Row> {
    Row::ALL
        .into_iter()
        .filter(|r| clients.contains(&r.client()))
        .collect()
}

/// Why a client has no `zipf` row (`None`: it has).
pub fn skipped(client: ClientKind) -> Option<&'static str> {
    match client {
        ClientKind::Ring | ClientKind::Blocking | ClientKind::RedisRs => None,
        _ => Some(
            "zipf measures the client-side cache: ring and blocking with it on and off, \
             redis-rs as the uncached peer",
        ),
    }
}

/// How the workload runs.
#[derive(Debug, Clone)]
pub struct ZipfSpec {
    /// Keys in the set.
    pub keys: usize,
    /// The cache's `max_entries`.
    pub cache_entries: usize,
    /// Callers on the one thread (the blocking client: one).
    pub concurrency: usize,
    /// Cluster seeds (plain TCP).
    pub seeds: Vec<String>,
    /// Unmeasured run-in, after the prefill.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// The `raw_syscalls:sys_enter` tracepoint, or why system calls are not counted.
    pub syscalls: Result<u64, String>,
}

/// What the reader's cache counted in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
    pub refused_fills: u64,
    pub evictions: u64,
    /// Keys cached at the end of the window.
    pub entries: u64,
    /// Keys cached after the prefill.
    pub prefilled: u64,
}

impl CacheCounts {
    fn between(a: &redis_cluster_uring::Stats, b: &redis_cluster_uring::Stats) -> CacheCounts {
        CacheCounts {
            hits: b.cache_hits - a.cache_hits,
            misses: b.cache_misses - a.cache_misses,
            invalidations: b.cache_invalidations - a.cache_invalidations,
            refused_fills: b.cache_refused_fills - a.cache_refused_fills,
            evictions: b.cache_evictions - a.cache_evictions,
            entries: b.cache_entries,
            prefilled: 0,
        }
    }

    /// hits ÷ (hits + misses), when there were any.
    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 / n as f64)
    }
}

/// What a row measured.
#[derive(Debug)]
pub struct RowResult {
    /// The reads: latency, count (`commands` and `ops`), CPU, allocations, syscalls.
    pub case: CaseResult,
    /// SETs through the second client in the window, and those that failed.
    pub writes: u64,
    pub write_errors: u64,
    /// The reader's cache (rows with a cache).
    pub cache: Option<CacheCounts>,
}

/// The zipf figures of a row's record (flattened into its JSON object).
#[derive(Debug, Clone, Serialize)]
pub struct ZipfFigures {
    /// The reader's cache on.
    pub cache: bool,
    pub keys: usize,
    pub zipf_s: f64,
    pub write_fraction: f64,
    /// The cache's `max_entries` (rows with a cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_max_entries: Option<usize>,
    /// Reads (GETs) in the window: `cmds_per_s`, `cpu_ns_per_cmd` and the latencies are
    /// per read.
    pub reads: u64,
    /// SETs through the second client in the window, and the failed ones.
    pub writes: u64,
    pub write_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_counts: Option<CacheCounts>,
    /// Reads/s ÷ the same client's uncached row at the same delay (cached rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads_div_uncached: Option<f64>,
    /// CPU per read ÷ the uncached row's (cached rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_div_uncached: Option<f64>,
    /// The target for `reads_div_uncached` at this delay, and whether it is met
    /// (judged on the ratio as printed, two decimals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads_target: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads_target_met: Option<bool>,
}

/// Writes the key set through this library's client: pipelines of [`CHUNK`] SETs.
pub fn load(seeds: &[String], keys: usize) -> Result<(), String> {
    use redis_cluster_uring::{engine, Client, Config, Engine, Pipeline};
    let config = Config::default()
        .periodic_refresh(None)
        .engine(Engine::Ring);
    let outcome = engine::start_with(Engine::Ring, async {
        let client = Client::connect(seeds, config)
            .await
            .map_err(|e| format!("zipf: cannot connect: {e}"))?;
        let mut start = 0;
        while start < keys {
            let end = (start + CHUNK * 10).min(keys);
            let mut pipe = Pipeline::with_capacity(end - start);
            for i in start..end {
                pipe.set(key(i), value(i, 0));
            }
            pipe.raise_on_error(true);
            client
                .execute(&pipe)
                .await
                .map_err(|e| format!("zipf: loading the keys failed: {e}"))?;
            start = end;
        }
        Ok::<(), String>(())
    });
    outcome.map_err(|e| e.to_string())?
}

/// Measures a row on a new thread (named as the case threads, so it measures itself).
pub fn run_row(row: Row, spec: &ZipfSpec) -> Result<RowResult, String> {
    let spec = spec.clone();
    std::thread::Builder::new()
        .name(format!("{}zipf-{}", cpu::CASE_THREAD_PREFIX, row.label()))
        .spawn(move || match row {
            Row::Ring { cache } => ring(&spec, cache),
            Row::Blocking { cache } => blocking(&spec, cache),
            Row::RedisRs => redis_rs(&spec),
        })
        .map_err(|e| format!("cannot spawn a thread: {e}"))?
        .join()
        .map_err(|_| "the zipf thread panicked".to_string())?
}

/// One window's counts.
struct Tally {
    latency: Histogram<u64>,
    reads: u64,
    read_errors: u64,
    writes: u64,
    write_errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Result<Tally, String> {
        Ok(Tally {
            latency: latency_histogram()?,
            reads: 0,
            read_errors: 0,
            writes: 0,
            write_errors: 0,
            first_error: None,
        })
    }
}

/// Read latencies: 1 ns to 60 s, 3 significant digits (a hit takes well under the 1 µs
/// the other workloads' histograms start at).
fn latency_histogram() -> Result<Histogram<u64>, String> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())
}

/// `callers` loops on this thread until `until`, each drawing a key and writing it (1%)
/// or reading it; counted into `tally` when given (not in the warm-up). The draw is made
/// before the clock is read: a read's latency is its call alone.
async fn drive<RF, WF>(
    sampler: &Sampler,
    callers: usize,
    seed: u64,
    until: Instant,
    tally: Option<&RefCell<Tally>>,
    read: &impl Fn(usize) -> RF,
    write: &impl Fn(usize) -> WF,
) where
    RF: Future<Output = Result<(), String>>,
    WF: Future<Output = Result<(), String>>,
{
    let one = |caller: usize| async move {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(caller as u64));
        loop {
            let i = sampler.sample(&mut rng);
            let writes = rng.gen::<f64>() < WRITE_FRACTION;
            let start = Instant::now();
            if start >= until {
                break;
            }
            if writes {
                let outcome = write(i).await;
                if let Some(tally) = tally {
                    let mut t = tally.borrow_mut();
                    t.writes += 1;
                    if let Err(e) = outcome {
                        t.write_errors += 1;
                        t.first_error.get_or_insert(e);
                    }
                }
                continue;
            }
            let outcome = read(i).await;
            let Some(tally) = tally else {
                continue;
            };
            let mut t = tally.borrow_mut();
            match outcome {
                Ok(()) => {
                    let ns = start.elapsed().as_nanos() as u64;
                    let _ = t.latency.record(ns.max(1));
                    t.reads += 1;
                }
                Err(e) => {
                    t.read_errors += 1;
                    t.first_error.get_or_insert(e);
                }
            }
        }
    };
    futures::future::join_all((0..callers).map(one)).await;
}

/// The warm-up, then the measured window, on this thread; `stats` reads the reader's
/// counters (none for a peer) at the window's edges.
async fn measure<RF, WF>(
    spec: &ZipfSpec,
    callers: usize,
    read: impl Fn(usize) -> RF,
    write: impl Fn(usize) -> WF,
    stats: impl Fn() -> Option<redis_cluster_uring::Stats>,
) -> Result<RowResult, String>
where
    RF: Future<Output = Result<(), String>>,
    WF: Future<Output = Result<(), String>>,
{
    let sampler = Sampler::new(spec.keys, S);
    let warm_until = Instant::now() + spec.warmup;
    drive(&sampler, callers, SEED, warm_until, None, &read, &write).await;
    let tally = RefCell::new(Tally::new()?);
    let mut count = SyscallCounter::reader_for_this_thread(&spec.syscalls);
    let sys0 = count();
    let helpers0 = cpu::Helpers::snapshot();
    let turns0 = redis_cluster_uring::engine::ring_turns();
    let stats0 = stats();
    let (cpu0, alloc0, t0) = (cpu::this_thread(), thread_allocations(), Instant::now());
    // Another sequence than the warm-up's.
    let seed = SEED ^ 0x9e37_79b9_7f4a_7c15;
    drive(
        &sampler,
        callers,
        seed,
        t0 + spec.duration,
        Some(&tally),
        &read,
        &write,
    )
    .await;
    let elapsed = t0.elapsed();
    let (thread_cpu, allocations) = (cpu::this_thread() - cpu0, thread_allocations() - alloc0);
    let stats1 = stats();
    let turns = turns0
        .zip(redis_cluster_uring::engine::ring_turns())
        .map(|(a, b)| b.turns - a.turns);
    let helpers = cpu::Helpers::snapshot().since(&helpers0);
    let sys1 = count();
    let syscalls = sys0.and_then(|a| sys1.map(|b| b.saturating_sub(a)));
    let t = tally.into_inner();
    if t.reads == 0 {
        return Err(t.first_error.unwrap_or_else(|| "no read completed".into()));
    }
    let io = stats0
        .zip(stats1)
        .map(|(a, b)| (b.writes - a.writes, b.reads - a.reads, t.reads));
    let cache = stats0
        .zip(stats1)
        .map(|(a, b)| CacheCounts::between(&a, &b));
    Ok(RowResult {
        case: CaseResult {
            latency: t.latency,
            commands: t.reads,
            errors: t.read_errors,
            elapsed,
            cpu: CpuTime {
                user_ns: thread_cpu.user_ns + helpers.user_ns,
                sys_ns: thread_cpu.sys_ns + helpers.sys_ns,
            },
            allocations,
            io,
            syscalls,
            ops: t.reads,
            turns,
            runtime: None,
        },
        writes: t.writes,
        write_errors: t.write_errors,
        cache,
    })
}

/// The cache's settings for a cached row.
fn cache_config(spec: &ZipfSpec) -> redis_cluster_uring::CacheConfig {
    redis_cluster_uring::CacheConfig::default().max_entries(spec.cache_entries)
}

/// The keys the prefill reads: the hottest the cache can hold, as MGETs of [`CHUNK`].
fn prefill_mgets(spec: &ZipfSpec) -> Vec<redis_cluster_uring::Cmd> {
    let n = spec.keys.min(spec.cache_entries);
    (0..n)
        .step_by(CHUNK)
        .map(|start| {
            (start..(start + CHUNK).min(n))
                .fold(redis_cluster_uring::cmd("MGET"), |c, i| c.arg(key(i)))
        })
        .collect()
}

/// This library's async client on the ring engine, `--concurrency` callers, the writer
/// a second client (no cache) on the same engine.
fn ring(spec: &ZipfSpec, cache: bool) -> Result<RowResult, String> {
    use redis_cluster_uring::{cmd, engine, Client, Config, Engine, Value};
    let outcome = engine::start_with(Engine::Ring, async {
        let base = || {
            Config::default()
                .periodic_refresh(None)
                .engine(Engine::Ring)
        };
        let config = if cache {
            base().cache(cache_config(spec))
        } else {
            base()
        };
        let reader = Client::connect(&spec.seeds, config)
            .await
            .map_err(|e| e.to_string())?;
        let writer = Client::connect(&spec.seeds, base())
            .await
            .map_err(|e| e.to_string())?;
        let mut prefilled = 0;
        if cache {
            for mget in prefill_mgets(spec) {
                reader
                    .query::<Value>(&mget)
                    .await
                    .map_err(|e| format!("prefill: {e}"))?;
            }
            prefilled = reader.stats().cache_entries;
        }
        let version = Cell::new(0u64);
        let read = |i: usize| {
            let reader = &reader;
            async move {
                reader
                    .query::<Value>(get(i))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        let write = |i: usize| {
            version.set(version.get() + 1);
            let set = cmd("SET").arg(key(i)).arg(value(i, version.get()));
            let writer = &writer;
            async move {
                writer
                    .query::<Value>(&set)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        let mut result = measure(
            spec,
            Row::Ring { cache }.callers(spec.concurrency),
            read,
            write,
            || Some(reader.stats()),
        )
        .await?;
        if let Some(c) = &mut result.cache {
            c.prefilled = prefilled;
        }
        Ok::<_, String>(result)
    });
    outcome.map_err(|e| e.to_string())?
}

/// This library's `blocking::Client`, one caller; the writer a second blocking client on
/// the same thread. The measuring loop is async in form only: each call blocks.
fn blocking(spec: &ZipfSpec, cache: bool) -> Result<RowResult, String> {
    use redis_cluster_uring::{blocking, cmd, Config, Value};
    let base = || Config::default().periodic_refresh(None);
    let config = if cache {
        base().cache(cache_config(spec))
    } else {
        base()
    };
    let reader =
        RefCell::new(blocking::Client::connect(&spec.seeds, config).map_err(|e| e.to_string())?);
    let writer =
        RefCell::new(blocking::Client::connect(&spec.seeds, base()).map_err(|e| e.to_string())?);
    let mut prefilled = 0;
    if cache {
        for mget in prefill_mgets(spec) {
            reader
                .borrow_mut()
                .query::<Value>(&mget)
                .map_err(|e| format!("prefill: {e}"))?;
        }
        prefilled = reader.borrow().stats().cache_entries;
    }
    let version = Cell::new(0u64);
    let read = |i: usize| {
        std::future::ready(
            reader
                .borrow_mut()
                .query::<Value>(get(i))
                .map(drop)
                .map_err(|e| e.to_string()),
        )
    };
    let write = |i: usize| {
        version.set(version.get() + 1);
        let set = cmd("SET").arg(key(i)).arg(value(i, version.get()));
        std::future::ready(
            writer
                .borrow_mut()
                .query::<Value>(&set)
                .map(drop)
                .map_err(|e| e.to_string()),
        )
    };
    let mut result = futures::executor::block_on(measure(
        spec,
        Row::Blocking { cache }.callers(spec.concurrency),
        read,
        write,
        || Some(reader.borrow().stats()),
    ))?;
    if let Some(c) = &mut result.cache {
        c.prefilled = prefilled;
    }
    Ok(result)
}

/// redis-rs's async cluster connection on a current-thread runtime, `--concurrency`
/// callers; the writer a second connection of the same client.
fn redis_rs(spec: &ZipfSpec) -> Result<RowResult, String> {
    let case = CaseSpec {
        client: ClientKind::RedisRs,
        workload: Workload::Zipf,
        k: spec.concurrency,
        tasks: spec.concurrency,
        runtime_threads: None,
        workers: None,
        seeds: spec.seeds.clone(),
        tls: None,
        warmup: spec.warmup,
        duration: spec.duration,
        syscalls: spec.syscalls.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = clients::redis_cluster_client(&case)?;
        let reader = client
            .get_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let writer = client
            .get_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let version = Cell::new(0u64);
        let read = |i: usize| {
            let mut get = redis::cmd("GET");
            with_key(i, |k| get.arg(k));
            let mut conn = reader.clone();
            async move {
                get.query_async::<redis::Value>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        let write = |i: usize| {
            version.set(version.get() + 1);
            let set = redis::cmd("SET")
                .arg(key(i))
                .arg(value(i, version.get()))
                .clone();
            let mut conn = writer.clone();
            async move {
                set.query_async::<redis::Value>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        measure(
            spec,
            Row::RedisRs.callers(spec.concurrency),
            read,
            write,
            || None,
        )
        .await
    })
}

/// A row's record: the reads as any row's figures (`cmds_per_s` is reads/s,
/// `cpu_ns_per_cmd` CPU per read), and the zipf figures.
pub fn record(row: Row, spec: &ZipfSpec, delay_ms: u64, r: &RowResult) -> Record {
    let mut record = Record::new(
        Workload::Zipf,
        row.client(),
        false,
        row.callers(spec.concurrency),
        delay_ms,
        &r.case,
    );
    record.client = row.label();
    record.zipf = Some(ZipfFigures {
        cache: row.cached(),
        keys: spec.keys,
        zipf_s: S,
        write_fraction: WRITE_FRACTION,
        cache_max_entries: row.cached().then_some(spec.cache_entries),
        reads: r.case.commands,
        writes: r.writes,
        write_errors: r.write_errors,
        hit_rate: r.cache.filter(|_| row.cached()).and_then(|c| c.hit_rate()),
        cache_counts: r.cache.filter(|_| row.cached()),
        reads_div_uncached: None,
        cpu_div_uncached: None,
        reads_target: None,
        reads_target_met: None,
    });
    record
}

/// The reads/s target at this delay (none at other delays).
fn reads_target(delay_ms: u64) -> Option<f64> {
    READS_TARGETS
        .iter()
        .find(|(d, _)| *d == delay_ms)
        .map(|&(_, t)| t)
}

/// Whether a ratio meets an at-least target, judged as printed (two decimals).
fn at_least(ratio: f64, target: f64) -> bool {
    (ratio * 100.0).round() / 100.0 >= target
}

/// Fills each cached row's ratios to the same client's uncached row at the same delay,
/// and its target.
pub fn add_ratios(records: &mut [Record]) {
    let uncached: Vec<(&'static str, u64, f64, f64)> = records
        .iter()
        .filter(|r| r.zipf.as_ref().is_some_and(|z| !z.cache))
        .map(|r| (r.client, r.delay_ms, r.cmds_per_s, r.cpu_ns_per_cmd))
        .collect();
    for r in records.iter_mut() {
        let (client, delay, rate, cpu) = (r.client, r.delay_ms, r.cmds_per_s, r.cpu_ns_per_cmd);
        let Some(z) = r.zipf.as_mut().filter(|z| z.cache) else {
            continue;
        };
        let base = client.strip_suffix("+cache").unwrap_or(client);
        let Some(&(_, _, base_rate, base_cpu)) = uncached
            .iter()
            .find(|(c, d, _, _)| *c == base && *d == delay)
        else {
            continue;
        };
        let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        z.reads_div_uncached = div(rate, base_rate);
        z.cpu_div_uncached = div(cpu, base_cpu);
        z.reads_target = reads_target(delay);
        z.reads_target_met = z
            .reads_target
            .zip(z.reads_div_uncached)
            .map(|(t, x)| at_least(x, t));
    }
}

/// How the pure-hit microbenchmark picks its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HitKeys {
    /// [`HOT_KEYS`] keys in turn: everything the hit touches stays in the CPU's caches.
    Hot,
    /// The whole key set drawn Zipf(s) as in the workload, every key cached, no writes:
    /// a hit as the workload's reads meet it, with the cache's 100,000 entries in memory.
    Zipf,
}

impl HitKeys {
    fn describe(self, keys: usize) -> String {
        match self {
            HitKeys::Hot => format!("{HOT_KEYS} hot keys in turn"),
            HitKeys::Zipf => format!("{keys} keys drawn Zipf(s = {S:.1}), all cached"),
        }
    }
}

/// The pure-hit microbenchmark of one client.
#[derive(Debug, Clone, Serialize)]
pub struct HitCost {
    /// `zipf-hit`.
    pub workload: &'static str,
    /// `ring` or `blocking`.
    pub client: &'static str,
    /// Which keys are read: `hot` or `zipf` (not named `keys`, which the zipf rows use
    /// for the size of the key set).
    pub key_set: HitKeys,
    pub key_count: usize,
    /// GETs in the window, and how many the cache answered.
    pub gets: u64,
    pub hits: u64,
    pub gets_per_s: f64,
    /// The client's CPU per GET (with the Zipf keys, the draw's too: see
    /// `zipf-harness`).
    pub cpu_ns_per_get: f64,
    pub user_ns_per_get: f64,
    pub sys_ns_per_get: f64,
    /// Socket writes by the client in the window (a hit makes none).
    pub socket_writes: u64,
    /// The ring engine's loop turns in the window (each runs the woken tasks, then sends
    /// and reaps in one system call at most): how long a hitting caller keeps the loop
    /// from its sockets. `None` for the blocking client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_turns: Option<u64>,
    pub target_ns: f64,
    /// `cpu_ns_per_get` under `target_ns`, judged as printed (whole ns).
    pub met: bool,
}

/// For each of the ring and blocking clients among `rows`: GETs in a loop for
/// `duration`, one caller, no writes, every key read before (the first read fills the
/// cache) — of [`HOT_KEYS`] hot keys, then of the whole key set drawn Zipf: the client
/// CPU per hit.
pub fn hit_costs(
    spec: &ZipfSpec,
    duration: Duration,
    rows: &[Row],
) -> Result<Vec<HitCost>, String> {
    let mut out = Vec::new();
    let clients = [
        (ClientKind::Ring, "ring"),
        (ClientKind::Blocking, "blocking"),
    ];
    for keys in [HitKeys::Hot, HitKeys::Zipf] {
        for (_, client) in clients
            .into_iter()
            .filter(|(kind, _)| rows.iter().any(|r| r.client() == *kind))
        {
            let spec = spec.clone();
            let cost = std::thread::Builder::new()
                .name(format!("{}zipf-hit-{client}", cpu::CASE_THREAD_PREFIX))
                .spawn(move || match client {
                    "ring" => ring_hits(&spec, keys, duration),
                    _ => blocking_hits(&spec, keys, duration),
                })
                .map_err(|e| format!("cannot spawn a thread: {e}"))?
                .join()
                .map_err(|_| "the zipf hit thread panicked".to_string())??;
            out.push(cost);
        }
    }
    Ok(out)
}

/// GETs per check of the clock in the pure-hit loops.
const HIT_BATCH: usize = 4_096;

/// The keys a pure-hit loop reads, in order: `HIT_BATCH` at a time, drawn ahead of the
/// window so the loop costs the GETs (and an index read) only.
struct HitPlan {
    keys: HitKeys,
    key_count: usize,
    order: Vec<usize>,
}

impl HitPlan {
    fn new(keys: HitKeys, spec: &ZipfSpec) -> HitPlan {
        let key_count = match keys {
            HitKeys::Hot => HOT_KEYS,
            HitKeys::Zipf => spec.keys.min(spec.cache_entries),
        };
        let order = match keys {
            HitKeys::Hot => (0..1 << 16).map(|i| i % HOT_KEYS).collect(),
            HitKeys::Zipf => {
                // Only keys the cache holds (all of them by default).
                let sampler = Sampler::new(key_count, S);
                let mut rng = StdRng::seed_from_u64(SEED);
                (0..1 << 20).map(|_| sampler.sample(&mut rng)).collect()
            }
        };
        HitPlan {
            keys,
            key_count,
            order,
        }
    }

    /// Every key read, in chunks: the MGETs that fill the cache.
    fn fill(&self) -> Vec<redis_cluster_uring::Cmd> {
        (0..self.key_count)
            .step_by(CHUNK)
            .map(|start| {
                (start..(start + CHUNK).min(self.key_count))
                    .fold(redis_cluster_uring::cmd("MGET"), |c, i| c.arg(key(i)))
            })
            .collect()
    }

    fn config(&self) -> redis_cluster_uring::Config {
        redis_cluster_uring::Config::default()
            .periodic_refresh(None)
            .cache(redis_cluster_uring::CacheConfig::default().max_entries(self.key_count))
    }

    fn cost(
        &self,
        client: &'static str,
        gets: u64,
        elapsed: Duration,
        cpu: CpuTime,
        stats: (redis_cluster_uring::Stats, redis_cluster_uring::Stats),
        loop_turns: Option<u64>,
    ) -> HitCost {
        let per = |ns: u64| ns as f64 / gets.max(1) as f64;
        let cpu_ns_per_get = per(cpu.total_ns());
        HitCost {
            workload: "zipf-hit",
            client,
            key_set: self.keys,
            key_count: self.key_count,
            gets,
            hits: stats.1.cache_hits - stats.0.cache_hits,
            gets_per_s: gets as f64 / elapsed.as_secs_f64(),
            cpu_ns_per_get,
            user_ns_per_get: per(cpu.user_ns),
            sys_ns_per_get: per(cpu.sys_ns),
            socket_writes: stats.1.writes - stats.0.writes,
            loop_turns,
            target_ns: HIT_TARGET_NS,
            met: cpu_ns_per_get.round() < HIT_TARGET_NS,
        }
    }
}

/// The CPU of this thread and its helpers since `(cpu0, helpers0)`.
fn cpu_since(cpu0: CpuTime, helpers0: &cpu::Helpers) -> CpuTime {
    let thread = cpu::this_thread() - cpu0;
    let helpers = cpu::Helpers::snapshot().since(helpers0);
    CpuTime {
        user_ns: thread.user_ns + helpers.user_ns,
        sys_ns: thread.sys_ns + helpers.sys_ns,
    }
}

fn ring_hits(spec: &ZipfSpec, keys: HitKeys, duration: Duration) -> Result<HitCost, String> {
    use redis_cluster_uring::{engine, Client, Engine, Value};
    let plan = HitPlan::new(keys, spec);
    let outcome = engine::start_with(Engine::Ring, async {
        let config = plan.config().engine(Engine::Ring);
        let client = Client::connect(&spec.seeds, config)
            .await
            .map_err(|e| e.to_string())?;
        for mget in plan.fill() {
            client
                .query::<Value>(&mget)
                .await
                .map_err(|e| e.to_string())?;
        }
        let before = client.stats();
        let turns0 = engine::ring_turns();
        let helpers0 = cpu::Helpers::snapshot();
        let (cpu0, t0) = (cpu::this_thread(), Instant::now());
        let (mut n, mut at) = (0u64, 0usize);
        while t0.elapsed() < duration {
            for _ in 0..HIT_BATCH {
                let i = plan.order[at];
                at = (at + 1) % plan.order.len();
                let v = client
                    .query::<Value>(get(i))
                    .await
                    .map_err(|e| e.to_string())?;
                std::hint::black_box(v);
            }
            n += HIT_BATCH as u64;
        }
        let (elapsed, cpu) = (t0.elapsed(), cpu_since(cpu0, &helpers0));
        let after = client.stats();
        let turns = turns0
            .zip(engine::ring_turns())
            .map(|(a, b)| b.turns - a.turns);
        Ok::<_, String>(plan.cost("ring", n, elapsed, cpu, (before, after), turns))
    });
    outcome.map_err(|e| e.to_string())?
}

fn blocking_hits(spec: &ZipfSpec, keys: HitKeys, duration: Duration) -> Result<HitCost, String> {
    use redis_cluster_uring::{blocking, Value};
    let plan = HitPlan::new(keys, spec);
    let mut client =
        blocking::Client::connect(&spec.seeds, plan.config()).map_err(|e| e.to_string())?;
    for mget in plan.fill() {
        client.query::<Value>(&mget).map_err(|e| e.to_string())?;
    }
    let before = client.stats();
    let helpers0 = cpu::Helpers::snapshot();
    let (cpu0, t0) = (cpu::this_thread(), Instant::now());
    let (mut n, mut at) = (0u64, 0usize);
    while t0.elapsed() < duration {
        for _ in 0..HIT_BATCH {
            let i = plan.order[at];
            at = (at + 1) % plan.order.len();
            let v = client.query::<Value>(get(i)).map_err(|e| e.to_string())?;
            std::hint::black_box(v);
        }
        n += HIT_BATCH as u64;
    }
    let (elapsed, cpu) = (t0.elapsed(), cpu_since(cpu0, &helpers0));
    let after = client.stats();
    Ok(plan.cost("blocking", n, elapsed, cpu, (before, after), None))
}

/// What the zipf loop itself costs per operation, in every row's CPU per read.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HarnessCost {
    /// `zipf-harness`.
    pub workload: &'static str,
    /// One draw from the sampler over the key set.
    pub sampler_ns_per_draw: f64,
    /// The whole loop with reads that only build their GET and writes that do nothing:
    /// the draws, the clock reads, the GET built, the histogram.
    pub loop_ns_per_read: f64,
}

/// What the harness costs: a million draws, then the zipf loop of one caller with a read
/// and a write that do nothing, for `duration`, on this thread.
pub fn harness_costs(keys: usize, duration: Duration) -> Result<HarnessCost, String> {
    let sampler = Sampler::new(keys, S);
    let mut rng = StdRng::seed_from_u64(SEED);
    let draws = 1_000_000u64;
    let cpu0 = cpu::this_thread();
    for _ in 0..draws {
        std::hint::black_box(sampler.sample(&mut rng));
    }
    let sampler_ns_per_draw = (cpu::this_thread() - cpu0).total_ns() as f64 / draws as f64;
    let tally = RefCell::new(Tally::new()?);
    let build = |i: usize| {
        std::hint::black_box(get(i));
        std::future::ready(Ok::<(), String>(()))
    };
    let nothing = |i: usize| {
        std::hint::black_box(i);
        std::future::ready(Ok::<(), String>(()))
    };
    let cpu0 = cpu::this_thread();
    futures::executor::block_on(drive(
        &sampler,
        1,
        SEED,
        Instant::now() + duration,
        Some(&tally),
        &build,
        &nothing,
    ));
    let reads = tally.borrow().reads.max(1);
    Ok(HarnessCost {
        workload: "zipf-harness",
        sampler_ns_per_draw,
        loop_ns_per_read: (cpu::this_thread() - cpu0).total_ns() as f64 / reads as f64,
    })
}

/// The zipf verdict in plain words, for the top of the output: each target, met or
/// missed. `None` without zipf rows.
pub fn verdict(records: &[Record], hits: &[HitCost]) -> Option<String> {
    let lines = target_lines(records, hits);
    if lines.is_empty() {
        return None;
    }
    let met = lines.iter().filter(|l| l.met).count();
    Some(format!(
        "Verdict (zipf, the client-side cache): {met} of {} targets met: {}\n",
        lines.len(),
        lines
            .iter()
            .map(|l| format!(
                "{} {}: {} (target {}: {})",
                l.client,
                l.what,
                l.figure,
                l.target,
                if l.met { "met" } else { "missed" }
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// One target of the issue, judged.
struct TargetLine {
    what: String,
    client: &'static str,
    figure: String,
    target: String,
    met: bool,
}

fn target_lines(records: &[Record], hits: &[HitCost]) -> Vec<TargetLine> {
    let mut lines = Vec::new();
    let mut cached: Vec<&Record> = records
        .iter()
        .filter(|r| r.zipf.as_ref().is_some_and(|z| z.reads_target.is_some()))
        .collect();
    cached.sort_by_key(|r| (r.client, r.delay_ms));
    for r in cached {
        let Some(z) = &r.zipf else { continue };
        let (Some(ratio), Some(target), Some(met)) =
            (z.reads_div_uncached, z.reads_target, z.reads_target_met)
        else {
            continue;
        };
        lines.push(TargetLine {
            what: format!("reads/s cached ÷ uncached at {} ms", r.delay_ms),
            client: r.client.strip_suffix("+cache").unwrap_or(r.client),
            figure: format!("{ratio:.2}x"),
            target: format!("≥ {target:.0}x"),
            met,
        });
    }
    for h in hits {
        lines.push(TargetLine {
            what: format!(
                "client CPU per cache hit (pure hits: {})",
                h.key_set.describe(h.key_count)
            ),
            client: h.client,
            figure: format!("{:.0} ns", h.cpu_ns_per_get),
            target: format!("< {:.0} ns", h.target_ns),
            met: h.met,
        });
    }
    lines
}

/// The zipf tables: one per delay, the pure-hit microbenchmark, the targets. Empty
/// without zipf rows or hit costs.
pub fn tables(records: &[Record], hits: &[HitCost], harness: Option<&HarnessCost>) -> String {
    let mut out = String::new();
    let rows: Vec<&Record> = records.iter().filter(|r| r.zipf.is_some()).collect();
    let mut delays: Vec<u64> = rows.iter().map(|r| r.delay_ms).collect();
    delays.sort_unstable();
    delays.dedup();
    for delay in delays {
        let at: Vec<&Record> = rows
            .iter()
            .copied()
            .filter(|r| r.delay_ms == delay)
            .collect();
        let Some(first) = at.first().and_then(|r| r.zipf.as_ref()) else {
            continue;
        };
        let entries = at
            .iter()
            .find_map(|r| r.zipf.as_ref().and_then(|z| z.cache_max_entries));
        let callers = at
            .iter()
            .filter(|r| !r.client.starts_with("blocking"))
            .map(|r| r.k)
            .max();
        let _ = writeln!(
            out,
            "\n## zipf, injected delay {delay} ms: GETs of {} keys drawn Zipf(s = {:.1}) by {} on one thread (blocking: 1); {:.0}% of operations are SETs of a drawn key through a second, uncached client on the same thread{}",
            first.keys,
            first.zipf_s,
            callers.map_or("the callers".into(), |c| format!("{c} callers")),
            first.write_fraction * 100.0,
            entries.map_or(String::new(), |e| format!(
                "; cache max_entries {e}, prefilled (MGETs of the hottest keys) before the warm-up"
            )),
        );
        let _ = writeln!(
            out,
            "| client | callers | reads/s | hit rate | p50 µs | p99 µs | p99.9 µs | CPU ns/read | user ns/read | sys ns/read | allocs/read | syscalls/read | reads per loop turn | SETs | invalidations | reads/s ÷ uncached | CPU/read ÷ uncached | reads/s ÷ redis-rs |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let peer = at
            .iter()
            .find(|r| r.client == Row::RedisRs.label())
            .map(|r| r.cmds_per_s);
        for r in &at {
            let Some(z) = &r.zipf else { continue };
            let ratio = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.2}"));
            // As the other tables mark a user/system split resting on few timer ticks.
            let rough = if r.rough_split() { "~" } else { "" };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {}{:.0} | {}{:.0} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                r.client,
                r.k,
                r.cmds_per_s,
                z.hit_rate.map_or("-".into(), |h| format!("{:.2}%", h * 100.0)),
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.cpu_ns_per_cmd,
                rough,
                r.user_ns_per_cmd,
                rough,
                r.sys_ns_per_cmd,
                r.allocs_per_cmd,
                r.syscalls_per_op.map_or("-".into(), |s| format!("{s:.2}")),
                r.turns_per_op
                    .filter(|&t| t > 0.0)
                    .map_or("-".into(), |t| format!("{:.1}", 1.0 / t)),
                z.writes,
                z.cache_counts.map_or("-".into(), |c| c.invalidations.to_string()),
                ratio(z.reads_div_uncached),
                ratio(z.cpu_div_uncached),
                ratio(peer.filter(|_| r.client != Row::RedisRs.label()).map(|p| r.cmds_per_s / p)),
            );
            if r.errors > 0 || z.write_errors > 0 {
                let _ = writeln!(
                    out,
                    "|  ↳ {} failed reads, {} failed SETs | | | | | | | | | | | | | | | | | |",
                    r.errors, z.write_errors
                );
            }
        }
        let counts: Vec<String> = at
            .iter()
            .filter_map(|r| {
                let c = r.zipf.as_ref()?.cache_counts?;
                Some(format!(
                    "{}: {} hits, {} misses, {} invalidations, {} refused fills, {} evictions, {} entries at the end ({} after the prefill)",
                    r.client, c.hits, c.misses, c.invalidations, c.refused_fills, c.evictions, c.entries, c.prefilled
                ))
            })
            .collect();
        if !counts.is_empty() {
            let _ = writeln!(out, "\ncache counters in the window: {}", counts.join("; "));
        }
    }
    if !hits.is_empty() {
        let _ = writeln!(
            out,
            "\n## zipf: pure cache hits (every key read once to fill the cache, then GET in a loop by one caller, each GET built per call; no writes)"
        );
        let _ = writeln!(
            out,
            "| client | keys | GETs | hits | GETs/s | CPU ns/GET | user ns/GET | sys ns/GET | socket writes | GETs per loop turn | target | verdict |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for h in hits {
            let _ =
                writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | < {:.0} ns | {} |",
                h.client,
                h.key_set.describe(h.key_count),
                h.gets,
                h.hits,
                h.gets_per_s,
                h.cpu_ns_per_get,
                h.user_ns_per_get,
                h.sys_ns_per_get,
                h.socket_writes,
                h.loop_turns
                    .map_or("-".into(), |t| format!("{:.0}", h.gets as f64 / t.max(1) as f64)),
                h.target_ns,
                if h.met { "met" } else { "missed" }
            );
        }
    }
    if let Some(h) = harness {
        let _ = writeln!(
            out,
            "\nharness, in every zipf row's CPU per read: {:.0} ns per draw from the sampler; the zipf loop with reads that only build their GET and writes that do nothing: {:.0} ns per read (two draws, two clock reads, the GET built, the histogram)",
            h.sampler_ns_per_draw, h.loop_ns_per_read
        );
    }
    let lines = target_lines(records, hits);
    if !lines.is_empty() {
        let _ = writeln!(out, "\n## zipf targets (the issue's)");
        let _ = writeln!(out, "| client | figure | measured | target | verdict |");
        let _ = writeln!(out, "|---|---|---:|---:|---|");
        for l in &lines {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                l.client,
                l.what,
                l.figure,
                l.target,
                if l.met { "met" } else { "missed" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_draws_rank_one_about_one_in_h_n() {
        let n = DEFAULT_KEYS;
        let sampler = Sampler::new(n, S);
        let mut rng = StdRng::seed_from_u64(7);
        let draws = 1_000_000;
        let mut counts = [0u64; 3];
        for _ in 0..draws {
            let i = sampler.sample(&mut rng);
            assert!(i < n);
            if i < counts.len() {
                counts[i] += 1;
            }
        }
        let h = harmonic(n, S);
        // Rank k is drawn with probability 1 / (k H): one standard deviation here is
        // under 0.4% of rank 1's count, so 3% is far outside chance.
        for (k, &count) in counts.iter().enumerate() {
            let want = draws as f64 / ((k + 1) as f64 * h);
            let got = count as f64;
            assert!(
                (got - want).abs() / want < 0.03,
                "rank {}: {got} draws, {want:.0} expected",
                k + 1
            );
        }
    }

    #[test]
    fn the_sampler_is_deterministic_for_a_seed() {
        let sampler = Sampler::new(1_000, S);
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..1_000)
                .map(|_| sampler.sample(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn the_sampler_covers_every_rank_and_only_those() {
        let sampler = Sampler::new(4, S);
        assert_eq!(sampler.cdf.len(), 4);
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = [false; 4];
        for _ in 0..10_000 {
            seen[sampler.sample(&mut rng)] = true;
        }
        assert_eq!(seen, [true; 4]);
        // One key: always it.
        let one = Sampler::new(1, S);
        assert!((0..100).all(|_| one.sample(&mut rng) == 0));
    }

    #[test]
    fn harmonic_numbers() {
        assert!((harmonic(1, 1.0) - 1.0).abs() < 1e-12);
        assert!((harmonic(4, 1.0) - 25.0 / 12.0).abs() < 1e-12);
        // H(100000) = ln(100000) + γ + 1/(2n) - ...
        let h = harmonic(100_000, 1.0);
        assert!(
            (h - (100_000f64.ln() + 0.577_215_664_9)).abs() < 1e-4,
            "{h}"
        );
    }

    #[test]
    fn values_are_32_bytes() {
        assert_eq!(value(99_999, u64::MAX).len(), 32);
        assert_eq!(value(0, 0).len(), 32);
    }

    #[test]
    fn prefill_reads_the_hottest_keys_the_cache_holds() {
        let spec = |keys, cache_entries| ZipfSpec {
            keys,
            cache_entries,
            concurrency: 1,
            seeds: Vec::new(),
            warmup: Duration::ZERO,
            duration: Duration::ZERO,
            syscalls: Err(String::new()),
        };
        let mgets = prefill_mgets(&spec(2_500, 10_000));
        assert_eq!(mgets.len(), 3);
        let keys: usize = mgets.iter().map(|c| c.len() - 1).sum();
        assert_eq!(keys, 2_500);
        let fewer = prefill_mgets(&spec(100_000, 1_500));
        let keys: usize = fewer.iter().map(|c| c.len() - 1).sum();
        assert_eq!(keys, 1_500);
    }

    fn row(client: &'static str, delay_ms: u64, cache: bool, rate: f64, cpu: f64) -> Record {
        let mut r = Record::sample("zipf", client, 64, delay_ms, 10.0, cpu, 0.0);
        r.cmds_per_s = rate;
        r.zipf = Some(ZipfFigures {
            cache,
            keys: 100_000,
            zipf_s: S,
            write_fraction: WRITE_FRACTION,
            cache_max_entries: cache.then_some(100_000),
            reads: 1_000,
            writes: 10,
            write_errors: 0,
            hit_rate: cache.then_some(0.99),
            cache_counts: cache.then_some(CacheCounts::default()),
            reads_div_uncached: None,
            cpu_div_uncached: None,
            reads_target: None,
            reads_target_met: None,
        });
        r
    }

    #[test]
    fn cached_rows_are_held_to_their_uncached_row_and_the_delay_target() {
        let mut records = vec![
            row("ring+cache", 0, true, 499_600.0, 900.0),
            row("ring", 0, false, 100_000.0, 9_000.0),
            row("ring+cache", 1, true, 1_000_000.0, 500.0),
            row("ring", 1, false, 60_000.0, 10_000.0),
            row("blocking+cache", 2, true, 10.0, 1.0),
            row("blocking", 2, false, 1.0, 1.0),
            row("redis-rs", 0, false, 50_000.0, 20_000.0),
        ];
        add_ratios(&mut records);
        let z = |i: usize| records[i].zipf.clone().unwrap();
        // 4.996 prints as 5.00: met, as printed.
        assert_eq!(z(0).reads_target, Some(5.0));
        assert_eq!(z(0).reads_target_met, Some(true));
        assert!((z(0).cpu_div_uncached.unwrap() - 0.1).abs() < 1e-9);
        // 16.7x at 1 ms misses 20x.
        assert_eq!(z(2).reads_target, Some(20.0));
        assert_eq!(z(2).reads_target_met, Some(false));
        // No target at 2 ms; a ratio still.
        assert_eq!(z(4).reads_target, None);
        assert_eq!(z(4).reads_div_uncached, Some(10.0));
        // Uncached rows and the peer get none.
        assert!(z(1).reads_div_uncached.is_none() && z(6).reads_div_uncached.is_none());

        let hits = [HitCost {
            workload: "zipf-hit",
            client: "ring",
            key_set: HitKeys::Hot,
            key_count: HOT_KEYS,
            gets: 1,
            hits: 1,
            gets_per_s: 1.0,
            cpu_ns_per_get: 1_200.0,
            user_ns_per_get: 1_200.0,
            sys_ns_per_get: 0.0,
            socket_writes: 0,
            loop_turns: None,
            target_ns: HIT_TARGET_NS,
            met: false,
        }];
        let verdict = verdict(&records, &hits).unwrap();
        assert!(verdict.contains("1 of 3 targets met"), "{verdict}");
        assert!(
            verdict
                .contains("ring reads/s cached ÷ uncached at 1 ms: 16.67x (target ≥ 20x: missed)"),
            "{verdict}"
        );
        assert!(
            verdict.contains(
                "ring client CPU per cache hit (pure hits: 8 hot keys in turn): 1200 ns (target < 1000 ns: missed)"
            ),
            "{verdict}"
        );
        let out = tables(&records, &hits, None);
        // Every table row has its header's columns.
        for table in out.split("\n## ").skip(1) {
            let header = table.lines().find(|l| l.starts_with('|')).unwrap();
            let columns = header.matches('|').count();
            for line in table.lines().filter(|l| l.starts_with('|')) {
                assert_eq!(line.matches('|').count(), columns, "{line}");
            }
        }
        assert!(
            out.contains("| ring+cache | 64 | 499600 | 99.00% |"),
            "{out}"
        );
        assert!(!out.contains("NaN"), "{out}");
    }
}
