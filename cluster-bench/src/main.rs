//! `cluster-bench`: the project's main job.
//!
//! With no arguments it starts a throwaway 3-master cluster on loopback, measures this
//! library (parallel on io_uring and on epoll, and serial) against redis-rs (async and
//! blocking) and fred in the same run, at 0 and 1 ms of injected per-node reply delay,
//! prints the tables with ratios, and tears the cluster down.
//!
//! It also measures the clients a service on a multi-thread runtime shares between its
//! tasks: 64 tokio tasks issuing GETs, or each running the fan-out pipeline, through this
//! library's `SharedClient` (the `shared` row), redis-rs's async connection and fred, on
//! the same runtime (`tasks.rs`).
//!
//! `--workloads zipf` (not in the default run) measures the client-side cache: GETs of a
//! Zipf-distributed key set with 1% writes from a second client, through this library's
//! clients with the cache on and off, redis-rs beside them, and the CPU of a pure cache
//! hit (`zipf.rs`).
//!
//! `--tls` starts that cluster with TLS (certificates made at start) and measures each
//! client twice on the same nodes, through their plain and their TLS ports; `--nodes`
//! takes seeds as the client does (`host:port`, `redis://[user:password@]host:port`,
//! `rediss://...`).

mod alloc;
mod clients;
mod cpu;
mod figures;
mod floor;
mod install;
mod node_report;
mod pin;
mod pki;
mod proxy;
mod report;
mod seeds;
mod syscalls;
mod tasks;
mod zipf;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use test_cluster::{Cluster, ClusterSpec};

use clients::{run_case, CaseSpec, ClientKind, TlsTrust, Workload};
use pki::Pki;
use report::Record;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Redis Cluster pipeline benchmark: this library against serial mode and peer clients.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Commands per pipeline, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,128,1024")]
    k: Vec<usize>,
    /// Clients to run: ring (the default engine), uring (tokio-uring), epoll, serial, blocking, redis-rs, redis-rs-sync, fred,
    /// floor (the least any client can cost, for the ÷ floor columns), compio, ring-first
    /// (the ring engine waking at the first completion: engine::RingWait::First), and shared
    /// (SharedClient on a tokio multi-thread runtime: the tasks workloads only) (default all).
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<String>>,
    /// Workloads: fanout (one pipeline over every node), single-node (its commands behind
    /// one hash tag), concurrent (C callers on one thread issuing GETs), tasks (C tokio
    /// tasks on a multi-thread runtime issuing GETs: shared, redis-rs and fred only) and
    /// tasks-fanout (C tasks each running the fan-out pipeline, K up to 128; the same
    /// three clients); and, when named, zipf (GETs of a Zipf-distributed key set with 1%
    /// writes from a second client, the client-side cache on and off: ring and blocking,
    /// each with and without the cache, and redis-rs; plus the CPU of a pure cache hit).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fanout,single-node,concurrent,tasks,tasks-fanout"
    )]
    workloads: Vec<String>,
    /// Concurrent callers on one thread for the `concurrent` and `zipf` workloads, and
    /// tokio tasks for `tasks` and `tasks-fanout` (on a runtime with a worker thread per
    /// CPU, one with --pin).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Keys of the zipf workload (`zipf:0`..), drawn Zipf(s = 1.0).
    #[arg(long, default_value_t = zipf::DEFAULT_KEYS)]
    zipf_keys: usize,
    /// The zipf workload's cache size (`CacheConfig::max_entries`) [default: --zipf-keys].
    #[arg(long)]
    zipf_cache_entries: Option<usize>,
    /// Injected reply delay per node in milliseconds, comma-separated (local cluster
    /// only) [default: 0,1].
    #[arg(long, value_delimiter = ',')]
    delay_ms: Option<Vec<u64>>,
    /// Measured seconds per case (after a short warm-up).
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// Benchmark an existing cluster instead of starting one, through these seeds
    /// (comma-separated), as the client takes them: host:port, or
    /// `redis://[user:password@]host:port` and `rediss://...` URLs.
    #[arg(long, value_delimiter = ',')]
    nodes: Option<Vec<String>>,
    /// Start the local cluster with TLS (certificates made at start) and measure every
    /// client both over TLS and over plain TCP, on the same nodes (no injected delay).
    #[arg(long)]
    tls: bool,
    /// For rediss:// seeds in --nodes: the CA (PEM file) that signed the nodes'
    /// certificates.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// For rediss:// seeds in --nodes: accept any certificate, unverified.
    #[arg(long)]
    tls_insecure: bool,
    /// Write one JSON record per case here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG figure of fan-out p50 latency by K here: one panel per injected
    /// delay, one colour per client.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write an SVG figure of fan-out CPU per command here: each client's user and
    /// system time, one panel per injected delay and K.
    #[arg(long)]
    svg_cpu: Option<PathBuf>,
    /// Pin the client (every thread of this process) to the first CPU it may use, and
    /// the redis-servers started here and the delay proxy to the others. Not with
    /// --threads above 1 (its threads would share one CPU).
    #[arg(long)]
    pin: bool,
    /// Correctness load instead of timing: unique values written and read back through
    /// pipelines until --duration ends; exits non-zero on any mismatch.
    #[arg(long)]
    verify: bool,
    /// Thread scaling: run the ring engine's fan-out on 1 and on N threads, one client each;
    /// and the `tasks` workload through SharedClient with 1 and with N workers, on a tokio
    /// runtime of N threads both times.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Primaries of the local cluster the bench starts.
    #[arg(long, default_value_t = 3)]
    masters: usize,
    /// Print the per-node breakdown of a fan-out pipeline (Client::execute_with_report:
    /// per node, commands and bytes sent, batch round trip) at the largest K.
    #[arg(long)]
    node_report: bool,
    /// With the per-node breakdown, a second run where one node's replies are delayed by
    /// this many milliseconds (the delay proxy in front of that node only). Implies
    /// --node-report; local cluster only.
    #[arg(long)]
    slow_node: Option<u64>,
}

/// The per-node breakdowns: on the cluster measured, then with one node slowed down.
fn node_breakdowns(args: &Args) -> Result<String, String> {
    let k = args.k.iter().copied().max().unwrap_or(128);
    let pipelines = 400;
    let mut out = String::new();
    {
        let target = target_for(args, 0, &ProgressBar::hidden())?;
        let variant = target.variants.first().ok_or("no seeds")?;
        out.push_str(&node_report::breakdown(
            &variant.seeds,
            k,
            pipelines,
            "per-node report of a fan-out pipeline (Client::execute_with_report)",
        )?);
    }
    if let Some(slow) = args.slow_node {
        let masters = args.masters;
        let proxies = proxy::Pending::bind(masters).map_err(|e| format!("bind proxies: {e}"))?;
        let ports = proxies.ports();
        let cluster = install::start_cluster(
            ClusterSpec {
                masters,
                announce_ports: Some(ports.clone()),
                ..ClusterSpec::default()
            },
            &ProgressBar::hidden(),
        )?;
        let real: Vec<u16> = cluster.nodes().iter().map(|n| n.port).collect();
        let mut delays = vec![Duration::ZERO; real.len()];
        delays[0] = Duration::from_millis(slow);
        proxies
            .start_each(real, delays)
            .map_err(|e| format!("start proxies: {e}"))?;
        let seeds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        out.push_str(&node_report::breakdown(
            &seeds,
            k,
            pipelines.min(200),
            &format!(
                "per-node report with one slow node (--slow-node {slow}: 127.0.0.1:{} answers {slow} ms late)",
                ports[0]
            ),
        )?);
        drop(cluster);
    }
    Ok(out)
}

/// A cluster to measure: started here (and dropped at the end) or given.
struct Target {
    /// One per transport measured, in the order of [`transports`].
    variants: Vec<Variant>,
    _cluster: Option<Cluster>,
    /// The delay proxy's thread, when there is one.
    proxy_thread: Option<libc::pid_t>,
    /// The `--tls` cluster's certificates (their directory goes with them).
    _pki: Option<Pki>,
}

impl Target {
    /// The process ids of the servers started here (none for --nodes).
    fn server_pids(&self) -> Vec<u32> {
        self._cluster
            .iter()
            .flat_map(|c| c.nodes().iter().map(|n| n.pid))
            .collect()
    }
}

/// Seeds of one transport to the cluster, and its TLS trust (`None`: plain TCP).
#[derive(Debug, Clone)]
struct Variant {
    seeds: Vec<String>,
    tls: Option<TlsTrust>,
}

fn start_target(
    masters: usize,
    delay_ms: u64,
    tls: bool,
    bar: &ProgressBar,
) -> Result<Target, String> {
    if tls {
        // Both transports on the same nodes: their plain ports and their TLS ports.
        let pki = Pki::generate()?;
        let cluster = install::start_cluster(
            ClusterSpec {
                masters,
                tls: Some(pki.files.clone()),
                ..ClusterSpec::default()
            },
            bar,
        )?;
        return Ok(Target {
            variants: vec![
                Variant {
                    seeds: cluster.seed_addrs(),
                    tls: None,
                },
                Variant {
                    seeds: cluster.tls_seed_addrs(),
                    tls: Some(TlsTrust::Ca(pki.ca_pem.clone())),
                },
            ],
            _cluster: Some(cluster),
            proxy_thread: None,
            _pki: Some(pki),
        });
    }
    if delay_ms == 0 {
        let cluster = install::start_cluster(
            ClusterSpec {
                masters,
                ..ClusterSpec::default()
            },
            bar,
        )?;
        return Ok(Target {
            variants: vec![Variant {
                seeds: cluster.seed_addrs(),
                tls: None,
            }],
            _cluster: Some(cluster),
            proxy_thread: None,
            _pki: None,
        });
    }
    // Proxies listen first, so their ports can be announced by the nodes; the nodes'
    // real ports are known only after they start, so the proxies are told then.
    let proxies = proxy::Pending::bind(masters).map_err(|e| format!("bind proxies: {e}"))?;
    let ports = proxies.ports();
    let cluster = install::start_cluster(
        ClusterSpec {
            masters,
            announce_ports: Some(ports.clone()),
            ..ClusterSpec::default()
        },
        bar,
    )?;
    let real: Vec<u16> = cluster.nodes().iter().map(|n| n.port).collect();
    let proxy_thread = proxies
        .start(real, Duration::from_millis(delay_ms))
        .map_err(|e| format!("start proxies: {e}"))?;
    Ok(Target {
        variants: vec![Variant {
            seeds: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            tls: None,
        }],
        _cluster: Some(cluster),
        proxy_thread: Some(proxy_thread),
        _pki: None,
    })
}

/// Our client's configuration for a transport.
fn client_config(variant: &Variant) -> Result<redis_cluster_uring::Config, String> {
    let config = redis_cluster_uring::Config::default();
    match &variant.tls {
        Some(trust) => Ok(config.tls(trust.client_config()?)),
        None => Ok(config),
    }
}

/// A failed connect, as the bench reports it: the client's error names the node (and,
/// for refused credentials, the user, never the password).
fn connect_error(e: redis_cluster_uring::Error) -> String {
    match e.kind() {
        redis_cluster_uring::ErrorKind::Auth => format!(
            "cannot connect to the cluster: {e} (check the user and password in the --nodes URLs)"
        ),
        _ => format!("cannot connect to the cluster: {e}"),
    }
}

/// Writes the keys the GETs read, through our client: the pipelines' keys up to the
/// largest K and the tasks' keys, one per task.
fn preset_keys(variant: &Variant, max_k: usize, tasks: usize) -> Result<(), String> {
    use redis_cluster_uring::{engine, Client, Pipeline};
    let config = client_config(variant)?.periodic_refresh(None);
    engine::start(async {
        let client = Client::connect(&variant.seeds, config)
            .await
            .map_err(connect_error)?;
        let mut pipe = Pipeline::new();
        for (w, n) in [
            (Workload::Fanout, max_k),
            (Workload::SingleNode, max_k),
            (Workload::Tasks, tasks),
        ] {
            for key in clients::keys(w, n.max(1)) {
                pipe.set(key, clients::VALUE);
            }
        }
        pipe.raise_on_error(true);
        client
            .execute(&pipe)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

fn parse_clients(args: &Args) -> Result<Vec<ClientKind>, String> {
    match &args.clients {
        None => Ok(ClientKind::ALL.to_vec()),
        Some(names) => names
            .iter()
            .map(|n| {
                ClientKind::parse(n).ok_or_else(|| {
                    let known: Vec<&str> = ClientKind::ALL.iter().map(|c| c.name()).collect();
                    format!("unknown client {n:?} ({})", known.join(", "))
                })
            })
            .collect(),
    }
}

fn parse_workloads(args: &Args) -> Result<Vec<Workload>, String> {
    args.workloads
        .iter()
        .map(|w| {
            Workload::parse(w).ok_or_else(|| {
                let known: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                format!("unknown workload {w:?} ({})", known.join(", "))
            })
        })
        .collect()
}

fn validate(args: &Args) -> Result<(), String> {
    if args.k.is_empty() || args.k.contains(&0) {
        return Err("--k needs positive pipeline sizes".into());
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 3600.0) {
        return Err("--duration must be between 0 and 3600 seconds".into());
    }
    if !(1..=16).contains(&args.masters) {
        return Err("--masters takes 1 to 16".into());
    }
    if args.concurrency == 0 || args.threads == 0 {
        return Err("--concurrency and --threads must be at least 1".into());
    }
    if !(zipf::HOT_KEYS..=10_000_000).contains(&args.zipf_keys) {
        return Err(format!(
            "--zipf-keys takes {} to 10000000 keys",
            zipf::HOT_KEYS
        ));
    }
    if args.zipf_cache_entries == Some(0) {
        return Err("--zipf-cache-entries must be at least 1".into());
    }
    if args.pin && args.threads > 1 {
        return Err(
            "--pin puts the whole client on one CPU, so --threads scaling would measure \
             its threads sharing it; give one or the other"
                .into(),
        );
    }
    let delayed = args
        .delay_ms
        .as_ref()
        .is_some_and(|d| d.iter().any(|&d| d > 0));
    if args.nodes.is_some() && delayed {
        return Err(
            "--delay-ms needs the local cluster (its nodes announce the proxy ports); drop --nodes"
                .into(),
        );
    }
    if args.slow_node.is_some() && (args.nodes.is_some() || args.tls) {
        return Err(
            "--slow-node delays one node of the local cluster through the delay proxy; \
             drop --nodes and --tls"
                .into(),
        );
    }
    if args.slow_node.is_some_and(|d| d > 10_000) {
        return Err("--slow-node takes a delay from 0 to 10000 ms".into());
    }
    if args.tls && args.nodes.is_some() {
        return Err(
            "--tls starts a local TLS cluster; for an existing one give rediss:// \
             seeds in --nodes (with --tls-ca or --tls-insecure)"
                .into(),
        );
    }
    if args.tls && delayed {
        return Err(
            "--tls runs without the delay proxy (TLS clients are sent to the nodes' \
             own TLS ports); drop --delay-ms or give 0"
                .into(),
        );
    }
    if args.tls_ca.is_some() && args.tls_insecure {
        return Err("give --tls-ca or --tls-insecure, not both".into());
    }
    let rediss = match &args.nodes {
        Some(nodes) => seeds::all_tls(nodes)?,
        None => false,
    };
    if rediss && args.tls_ca.is_none() && !args.tls_insecure {
        return Err(
            "rediss:// seeds need --tls-ca FILE (the CA that signed the nodes' \
             certificates) or --tls-insecure"
                .into(),
        );
    }
    if !rediss && (args.tls_ca.is_some() || args.tls_insecure) {
        return Err("--tls-ca and --tls-insecure are for rediss:// seeds in --nodes".into());
    }
    if args
        .delay_ms
        .as_ref()
        .is_some_and(|d| d.is_empty() || d.iter().any(|&d| d > 10_000))
    {
        return Err("--delay-ms takes delays from 0 to 10000".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    validate(args)?;
    let clients = parse_clients(args)?;
    let workloads = parse_workloads(args)?;
    let duration = Duration::from_secs_f64(args.duration);
    let delays: Vec<u64> = match (&args.delay_ms, &args.nodes) {
        (Some(d), _) => d.clone(),
        (None, Some(_)) => vec![0],
        (None, None) if args.tls => vec![0],
        (None, None) => vec![0, 1],
    };

    if args.verify {
        let target = target_for(args, 0, &ProgressBar::hidden())?;
        // Through TLS when the run has it.
        let variant = target.variants.last().ok_or("no seeds")?;
        return verify(variant, duration);
    }

    // Which transports every client is measured over: indexes into `Target::variants`.
    let transports = transports(args)?;
    let mut notes = Vec::new();
    for &c in &clients {
        if transports.contains(&true) {
            if let Some(why) = c.skipped(None, true) {
                notes.push(format!("{c} skipped over TLS: {why}"));
            }
        }
        // One note per reason, naming the workloads it skips.
        let mut skips: Vec<(&str, Vec<&str>)> = Vec::new();
        for &w in &workloads {
            if let Some(why) = c.skipped(Some(w), false) {
                match skips.iter_mut().find(|(reason, _)| *reason == why) {
                    Some((_, names)) => names.push(w.name()),
                    None => skips.push((why, vec![w.name()])),
                }
            }
        }
        for (why, names) in skips {
            notes.push(format!("{c} skipped for {}: {why}", names.join(", ")));
        }
    }
    let tasks_fanout_ks: Vec<usize> = args
        .k
        .iter()
        .copied()
        .filter(|&k| k <= clients::TASKS_FANOUT_MAX_K)
        .collect();
    let left_out: Vec<String> = args
        .k
        .iter()
        .filter(|k| !tasks_fanout_ks.contains(k))
        .map(usize::to_string)
        .collect();
    if workloads.contains(&Workload::TasksFanout) && !left_out.is_empty() {
        notes.push(format!(
            "tasks-fanout runs K up to {} (K = {} left out{}): {} tasks with more commands \
             each in flight is a bulk load, another benchmark",
            clients::TASKS_FANOUT_MAX_K,
            left_out.join(", "),
            if tasks_fanout_ks.is_empty() {
                ", so it did not run"
            } else {
                ""
            },
            args.concurrency,
        ));
    }
    // Counted before --pin narrows this process to one CPU.
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let syscalls = match syscalls::prepare() {
        Ok(tracepoint) => {
            if let Some(done) = &tracepoint.mounted {
                eprintln!("cluster-bench: {done}");
                notes.push(done.clone());
            }
            Ok(tracepoint.id)
        }
        Err(why) => {
            eprintln!("cluster-bench: the syscalls/op column will be empty: {why}");
            notes.push(format!("syscalls/op is empty: {why}"));
            Err(why)
        }
    };
    let pin = if args.pin {
        match pin::Plan::for_this_machine() {
            Ok(plan) => {
                pin::pin_process(std::process::id(), &[plan.client])?;
                Some(plan)
            }
            Err(why) => {
                eprintln!("cluster-bench: --pin: {why}");
                notes.push(format!("--pin: {why}"));
                None
            }
        }
    } else {
        None
    };
    let mut cases = Vec::new();
    // The zipf workload runs its own rows (`zipf.rs`), after the other cases.
    let zipf_rows = if workloads.contains(&Workload::Zipf) {
        zipf::rows(&clients)
    } else {
        Vec::new()
    };
    for &w in workloads.iter().filter(|&&w| w != Workload::Zipf) {
        for &c in &clients {
            // Each skip is a note printed with the tables (above).
            if c.skipped(Some(w), false).is_some() {
                continue;
            }
            let sizes = match w {
                Workload::Concurrent | Workload::Tasks => vec![args.concurrency],
                Workload::TasksFanout => tasks_fanout_ks.clone(),
                Workload::Fanout | Workload::SingleNode => args.k.clone(),
                Workload::Zipf => Vec::new(),
            };
            for k in sizes {
                for (v, &tls) in transports.iter().enumerate() {
                    if !tls || c.skipped(Some(w), true).is_none() {
                        cases.push((w, c, k, v));
                    }
                }
            }
        }
    }
    let total = ((cases.len() + zipf_rows.len()) * delays.len()) as u64
        + if args.threads > 1 {
            SCALING_STEPS as u64
        } else {
            0
        };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").map_err(|e| e.to_string())?,
    );
    let mut records = Vec::new();
    let mut scaling = None;
    let mut zipf_hits = Vec::new();
    let started = Instant::now();
    for &delay in &delays {
        bar.set_message(format!("starting cluster (delay {delay} ms)"));
        let target = target_for(args, delay, &bar)?;
        if let Some(plan) = &pin {
            pin_servers(&target, plan)?;
        }
        preset_keys(
            &target.variants[0],
            args.k.iter().copied().max().unwrap_or(1),
            args.concurrency,
        )?;
        for &(workload, client, k, v) in &cases {
            let variant = &target.variants[v];
            let tls = variant.tls.is_some();
            let label = client.label(tls);
            bar.set_message(format!("{} {label} K={k} delay={delay}ms", workload.name()));
            let spec = CaseSpec {
                client,
                workload,
                k,
                tasks: args.concurrency,
                runtime_threads: None,
                workers: None,
                seeds: variant.seeds.clone(),
                tls: variant.tls.clone(),
                warmup: Duration::from_millis(200).min(duration),
                duration,
                syscalls: syscalls.clone(),
            };
            match run_case(spec) {
                Ok(result) => {
                    let mut record = Record::new(workload, client, tls, k, delay, &result);
                    record.pin = pin.as_ref().map(pin::Plan::summary);
                    records.push(record);
                }
                // Not `bar.println`: a hidden bar (output not a terminal) drops it.
                Err(e) => bar.suspend(|| {
                    eprintln!(
                        "{} {label} K={k} delay={delay}ms failed: {e}",
                        workload.name()
                    )
                }),
            }
            bar.inc(1);
        }
        if !zipf_rows.is_empty() {
            let (mut measured, hits) = run_zipf(
                args,
                &target.variants[0],
                delay,
                delay == delays[0],
                &zipf_rows,
                &syscalls,
                &bar,
            )?;
            for r in &mut measured {
                r.pin = pin.as_ref().map(pin::Plan::summary);
            }
            records.extend(measured);
            zipf_hits.extend(hits);
        }
        if args.threads > 1 && delay == delays[0] {
            scaling = Some(thread_scaling(
                &target.variants[0],
                args.threads,
                args.concurrency,
                duration,
                &bar,
            )?);
        }
    }
    bar.finish_and_clear();
    report::add_floor_ratios(&mut records);
    zipf::add_ratios(&mut records);
    // The zipf loop's own cost, once, after the cases (CPU only, no cluster).
    let zipf_harness = if zipf_rows.is_empty() {
        None
    } else {
        Some(zipf::harness_costs(
            args.zipf_keys,
            Duration::from_millis(500),
        )?)
    };
    let cluster = match &args.nodes {
        Some(nodes) => format!("the cluster of --nodes ({} seeds)", nodes.len()),
        None => format!(
            "{} masters on loopback, redis-server {}",
            args.masters,
            redis_version()
        ),
    };
    // The answer first, in plain words; the tables after it.
    if let Some(verdict) = report::verdict(&records) {
        println!("{verdict}");
    }
    if let Some(verdict) = zipf::verdict(&records, &zipf_hits) {
        println!("{verdict}");
    }
    println!(
        "cluster-bench: {cluster}, {} CPUs, {:.0}s in all{}",
        cpus,
        started.elapsed().as_secs_f64(),
        if args.tls {
            "; TLS on the same nodes (certificates made at start, +tls rows through the TLS ports)"
        } else {
            ""
        }
    );
    match &pin {
        Some(plan) => println!(
            "pinned (--pin): the client on CPU {}; {} and the delay proxy on CPU {}",
            plan.client,
            if args.nodes.is_some() {
                "the servers of --nodes are not ours to pin"
            } else {
                "the redis-servers"
            },
            pin::cpu_list(&plan.servers)
        ),
        None if args.nodes.is_none() => {
            println!("not pinned: client, servers and delay proxy share every CPU (see --pin)")
        }
        None => {}
    }
    for note in &notes {
        println!("note: {note}");
    }
    print!("{}", report::print_tables(&records));
    print!(
        "{}",
        zipf::tables(&records, &zipf_hits, zipf_harness.as_ref())
    );
    if let Some(table) = report::tls_table(&records) {
        print!("{table}");
        println!(
            "\nTLS rows: the client's CPU includes its rustls encryption; the servers' TLS \
             work shows in latency only."
        );
    }
    if let Some(table) = scaling {
        print!("{table}");
    }
    if args.node_report || args.slow_node.is_some() {
        print!("{}", node_breakdowns(args)?);
    }
    print!("{}", report::cpu_explained(&records));
    if let Some(path) = &args.json {
        // One object per case; the zipf workload adds its pure-hit microbenchmark
        // (`zipf-hit`) and its harness's cost (`zipf-harness`).
        let mut all = serde_json::to_value(&records).map_err(|e| e.to_string())?;
        if let Some(list) = all.as_array_mut() {
            for h in &zipf_hits {
                list.push(serde_json::to_value(h).map_err(|e| e.to_string())?);
            }
            if let Some(h) = &zipf_harness {
                list.push(serde_json::to_value(h).map_err(|e| e.to_string())?);
            }
        }
        let json = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, figures::latency_svg(&records))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg_cpu {
        std::fs::write(path, figures::cpu_svg(&records))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if records.is_empty() {
        return Err("no case completed".into());
    }
    Ok(ExitCode::SUCCESS)
}

/// The zipf workload on one cluster: its keys loaded, each row measured, and (`first`: at
/// the run's first delay) the pure-hit microbenchmark. Plain TCP only: over TLS it is
/// left out with a message.
fn run_zipf(
    args: &Args,
    variant: &Variant,
    delay: u64,
    first: bool,
    rows: &[zipf::Row],
    syscalls: &Result<u64, String>,
    bar: &ProgressBar,
) -> Result<(Vec<Record>, Vec<zipf::HitCost>), String> {
    if variant.tls.is_some() {
        bar.suspend(|| eprintln!("zipf: left out, it runs over plain TCP only"));
        bar.inc(rows.len() as u64);
        return Ok((Vec::new(), Vec::new()));
    }
    bar.set_message(format!(
        "zipf: loading {} keys (delay={delay}ms)",
        args.zipf_keys
    ));
    zipf::load(&variant.seeds, args.zipf_keys)?;
    let duration = Duration::from_secs_f64(args.duration);
    let spec = zipf::ZipfSpec {
        keys: args.zipf_keys,
        cache_entries: args.zipf_cache_entries.unwrap_or(args.zipf_keys),
        concurrency: args.concurrency,
        seeds: variant.seeds.clone(),
        warmup: Duration::from_millis(500).min(duration),
        duration,
        syscalls: syscalls.clone(),
    };
    let mut records = Vec::new();
    for &row in rows {
        bar.set_message(format!("zipf {} delay={delay}ms", row.label()));
        match zipf::run_row(row, &spec) {
            Ok(result) => records.push(zipf::record(row, &spec, delay, &result)),
            Err(e) => bar.suspend(|| eprintln!("zipf {} delay={delay}ms failed: {e}", row.label())),
        }
        bar.inc(1);
    }
    let mut hits = Vec::new();
    if first {
        bar.set_message("zipf: pure cache hits");
        match zipf::hit_costs(&spec, duration.min(Duration::from_secs(1)), rows) {
            Ok(h) => hits = h,
            Err(e) => bar.suspend(|| eprintln!("zipf pure hits failed: {e}")),
        }
    }
    Ok((records, hits))
}

/// Pins a freshly started cluster's servers, and the delay proxy, to the servers' CPUs.
fn pin_servers(target: &Target, plan: &pin::Plan) -> Result<(), String> {
    for pid in target.server_pids() {
        pin::pin_process(pid, &plan.servers)?;
    }
    if let Some(tid) = target.proxy_thread {
        pin::pin_thread(tid, &plan.servers).map_err(|e| format!("pin the delay proxy: {e}"))?;
    }
    Ok(())
}

/// Whether each transport measured is TLS, in the order of `Target::variants`.
fn transports(args: &Args) -> Result<Vec<bool>, String> {
    Ok(match &args.nodes {
        Some(nodes) => vec![seeds::all_tls(nodes)?],
        None if args.tls => vec![false, true],
        None => vec![false],
    })
}

/// What `rediss://` seeds in --nodes trust.
fn given_trust(args: &Args) -> Result<TlsTrust, String> {
    match &args.tls_ca {
        _ if args.tls_insecure => Ok(TlsTrust::AnyCertificate),
        Some(path) => std::fs::read(path)
            .map(TlsTrust::Ca)
            .map_err(|e| format!("read --tls-ca {}: {e}", path.display())),
        None => Err("rediss:// seeds need --tls-ca FILE or --tls-insecure".into()),
    }
}

/// The cluster to measure; a local one is started (installing redis-server if missing).
fn target_for(args: &Args, delay: u64, bar: &ProgressBar) -> Result<Target, String> {
    match &args.nodes {
        Some(nodes) => Ok(Target {
            variants: vec![Variant {
                seeds: nodes.clone(),
                tls: if seeds::all_tls(nodes)? {
                    Some(given_trust(args)?)
                } else {
                    None
                },
            }],
            _cluster: None,
            proxy_thread: None,
            _pki: None,
        }),
        None => start_target(args.masters, delay, args.tls, bar),
    }
}

fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

/// The cases [`thread_scaling`] runs: ring and ring-first on 1 and N threads, shared with
/// 1 and N workers.
const SCALING_STEPS: usize = 6;

/// Fan-out K=128 on 1 thread, then on `threads` threads with one client each, for the
/// ring engine with each of its waits; then the `tasks` workload (`tasks` tokio tasks
/// issuing GETs) through `SharedClient` with 1 worker and with `threads` workers, on a
/// runtime of `threads` threads both times.
fn thread_scaling(
    variant: &Variant,
    threads: usize,
    tasks: usize,
    duration: Duration,
    bar: &ProgressBar,
) -> Result<String, String> {
    let spec = |client, workload, k| CaseSpec {
        client,
        workload,
        k,
        tasks,
        runtime_threads: Some(threads),
        workers: None,
        seeds: variant.seeds.clone(),
        tls: variant.tls.clone(),
        warmup: Duration::from_millis(200),
        duration,
        syscalls: Err("not counted in the scaling table".into()),
    };
    let mut line = String::from(
        "\n## thread-per-core scaling (the ring engine, gathering and waking at the first completion; fanout K=128)\n| client | threads | cmds/s | ÷ 1 thread |\n|---|---:|---:|---:|\n",
    );
    for client in [ClientKind::Ring, ClientKind::RingFirst] {
        let mut single = 0.0;
        for n in [1, threads] {
            bar.set_message(format!("thread scaling: {client} on {n} threads"));
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let spec = spec(client, Workload::Fanout, 128);
                    std::thread::spawn(move || run_case(spec))
                })
                .collect();
            let mut total = 0.0;
            for h in handles {
                let r = h
                    .join()
                    .map_err(|_| "a scaling thread panicked".to_string())??;
                total += r.commands as f64 / r.elapsed.as_secs_f64();
            }
            if n == 1 {
                single = total;
            }
            line.push_str(&format!(
                "| {client} | {n} | {total:.0} | {:.2} |\n",
                total / single.max(1.0)
            ));
            bar.inc(1);
        }
    }
    line.push_str(&format!(
        "\n## SharedClient worker scaling (tasks: {tasks} tokio tasks issuing GETs, on a runtime of {threads} threads both times)\n| client | workers | cmds/s | ÷ 1 worker | failed ops |\n|---|---:|---:|---:|---:|\n",
    ));
    let mut single = 0.0;
    for workers in [1, threads] {
        bar.set_message(format!("thread scaling: shared with {workers} workers"));
        let spec = CaseSpec {
            workers: Some(workers),
            ..spec(ClientKind::Shared, Workload::Tasks, tasks)
        };
        let r = run_case(spec)?;
        let rate = r.commands as f64 / r.elapsed.as_secs_f64();
        if workers == 1 {
            single = rate;
        }
        line.push_str(&format!(
            "| shared | {workers} | {rate:.0} | {:.2} | {} |\n",
            rate / single.max(1.0),
            r.errors
        ));
        bar.inc(1);
    }
    Ok(line)
}

/// Writes unique values through pipelines and reads them back until `duration` ends.
fn verify(variant: &Variant, duration: Duration) -> Result<ExitCode, String> {
    use redis_cluster_uring::{engine, Client, Pipeline, Value};
    let config = client_config(variant)?;
    let (mismatches, errors, rounds) = engine::start(async {
        let client = Client::connect(&variant.seeds, config)
            .await
            .map_err(connect_error)?;
        let (mut mismatches, mut errors, mut round) = (0u64, 0u64, 0u64);
        let deadline = Instant::now() + duration;
        let run_id = std::process::id();
        while Instant::now() < deadline {
            round += 1;
            let values: Vec<String> = (0..256).map(|i| format!("{run_id}:{round}:{i}")).collect();
            let mut writes = Pipeline::with_capacity(256);
            for (i, v) in values.iter().enumerate() {
                writes.set(format!("verify:{i}"), v.as_str());
            }
            let written = match client.execute(&writes).await {
                Ok(replies) => replies.iter().map(|r| r.is_ok()).collect::<Vec<_>>(),
                Err(_) => {
                    errors += 256;
                    continue;
                }
            };
            errors += written.iter().filter(|ok| !**ok).count() as u64;
            let mut reads = Pipeline::with_capacity(256);
            for i in 0..256 {
                reads.get(format!("verify:{i}"));
            }
            match client.execute(&reads).await {
                Ok(replies) => {
                    for ((reply, want), ok) in replies.iter().zip(&values).zip(&written) {
                        match reply {
                            Ok(Value::Bulk(got)) if *ok => {
                                if got.as_ref() != want.as_bytes() {
                                    mismatches += 1;
                                }
                            }
                            Ok(_) if *ok => mismatches += 1,
                            Ok(_) => {}
                            Err(_) => errors += 1,
                        }
                    }
                }
                Err(_) => errors += 256,
            }
        }
        Ok::<_, String>((mismatches, errors, round))
    })?;
    println!("rounds={rounds} mismatches={mismatches} errors={errors}");
    Ok(if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
