//! The multi-thread workloads: C tokio tasks on a multi-thread runtime, each in a closed
//! loop of single GETs of its own key (`tasks`) or of the fan-out pipeline (`tasks-fanout`),
//! as a service on `#[tokio::main]` issues them. Three clients are built for that: this
//! library's `SharedClient` (cloned into every task), redis-rs's async cluster connection
//! (cloned into every task) and fred (one client, shared by the tasks).
//!
//! The runtime has `available_parallelism` worker threads at case time (one under
//! `--pin`), the same for the three clients; the case thread only waits in `block_on`.
//!
//! [`measure_tasks`] measures as `clients::measure` does, but across threads:
//! - each task keeps its own latency histogram, merged at the end; warm-up first, then
//!   the window, every task in a closed loop until its deadline;
//! - CPU: the case thread plus every helper thread (`cpu::Helpers`): tokio's workers,
//!   `SharedClient`'s `redis-worker-*` threads, io_uring's kernel workers;
//! - allocations: the process's count (`alloc::process_allocations`), every thread but
//!   the delay proxy;
//! - system calls are not counted: the perf counter counts one thread.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::alloc::process_allocations;
use crate::clients::{self, CaseResult, CaseSpec, ClientKind, TaskRuntime, Workload};
use crate::cpu::{self, CpuTime};

/// Why the syscalls/op column is empty on these workloads.
const NO_SYSCALLS: &str = "not counted on multi-thread workloads (counted per thread)";

/// Runs a multi-thread case on a new tokio multi-thread runtime, on the calling (case)
/// thread, and shuts the runtime down, so none of its threads lingers into the next
/// case's CPU figures.
pub fn run(spec: &CaseSpec) -> Result<CaseResult, String> {
    let threads = spec.runtime_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let result = runtime.block_on(async {
        match spec.client {
            ClientKind::Shared => shared(spec).await,
            ClientKind::RedisRs => redis_rs(spec).await,
            ClientKind::Fred => fred(spec).await,
            other => Err(format!("{other} does not run the multi-thread workloads")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// One task's counts in the window.
struct Tally {
    latency: Histogram<u64>,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Result<Tally, String> {
        Ok(Tally {
            latency: clients::latency_histogram()?,
            ops: 0,
            errors: 0,
            first_error: None,
        })
    }

    fn record(&mut self, start: Instant, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                let ns = start.elapsed().as_nanos() as u64;
                let _ = self.latency.record(ns.max(1_000));
                self.ops += 1;
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Measures one task per state in `states`, each running `op` in a closed loop for
/// `spec.duration` after `spec.warmup`, on the current tokio multi-thread runtime.
///
/// A task owns its state (a client handle, its command) and lends it to each `op`, which
/// hands it back with the outcome: no clone or shared counter per operation.
async fn measure_tasks<S, F, Fut>(
    spec: &CaseSpec,
    states: Vec<S>,
    commands_per_op: u64,
    op: F,
) -> Result<CaseResult, String>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (S, Result<(), String>)> + Send + 'static,
{
    let tasks = states.len();
    let op = Arc::new(op);
    let (states, _) = run_tasks(states, &op, Instant::now() + spec.warmup, None).await?;
    let tallies = (0..tasks)
        .map(|_| Tally::new())
        .collect::<Result<Vec<_>, _>>()?;
    // As in `clients::measure`: the helpers' snapshot (which allocates) outside the
    // allocation count.
    let helpers0 = cpu::Helpers::snapshot();
    let (cpu0, alloc0, t0) = (cpu::this_thread(), process_allocations(), Instant::now());
    let (states, tallies) = run_tasks(states, &op, t0 + spec.duration, Some(tallies)).await?;
    let elapsed = t0.elapsed();
    let (thread_cpu, allocations) = (cpu::this_thread() - cpu0, process_allocations() - alloc0);
    let helpers = cpu::Helpers::snapshot().since(&helpers0);
    drop(states);

    let mut latency = clients::latency_histogram()?;
    let (mut ops, mut errors, mut first_error) = (0, 0, None);
    for t in tallies {
        latency.add(&t.latency).map_err(|e| e.to_string())?;
        ops += t.ops;
        errors += t.errors;
        first_error = first_error.or(t.first_error);
    }
    if ops == 0 {
        return Err(first_error.unwrap_or_else(|| "no operation completed".into()));
    }
    Ok(CaseResult {
        latency,
        commands: ops * commands_per_op,
        errors,
        elapsed,
        cpu: CpuTime {
            user_ns: thread_cpu.user_ns + helpers.user_ns,
            sys_ns: thread_cpu.sys_ns + helpers.sys_ns,
        },
        allocations,
        io: None,
        syscalls: Err(NO_SYSCALLS.into()),
        ops,
        turns: None,
        runtime: Some(TaskRuntime {
            tasks,
            threads: tokio::runtime::Handle::current().metrics().num_workers(),
            workers: None,
        }),
    })
}

/// Spawns one task per state, each looping on `op` until `until`, recording into its
/// tally when there is one (none in the warm-up); waits for them all and returns the
/// states and the tallies.
async fn run_tasks<S, F, Fut>(
    states: Vec<S>,
    op: &Arc<F>,
    until: Instant,
    tallies: Option<Vec<Tally>>,
) -> Result<(Vec<S>, Vec<Tally>), String>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (S, Result<(), String>)> + Send + 'static,
{
    let tallies: Vec<Option<Tally>> = match tallies {
        Some(t) => t.into_iter().map(Some).collect(),
        None => states.iter().map(|_| None).collect(),
    };
    let handles: Vec<_> = states
        .into_iter()
        .zip(tallies)
        .map(|(mut state, mut tally)| {
            let op = Arc::clone(op);
            tokio::spawn(async move {
                while Instant::now() < until {
                    let start = Instant::now();
                    let (back, outcome) = op(state).await;
                    state = back;
                    if let Some(tally) = &mut tally {
                        tally.record(start, outcome);
                    }
                }
                (state, tally)
            })
        })
        .collect();
    let (mut states, mut tallies) = (Vec::new(), Vec::new());
    for handle in handles {
        let (state, tally) = handle
            .await
            .map_err(|e| format!("a measuring task failed: {e}"))?;
        states.push(state);
        tallies.extend(tally);
    }
    Ok((states, tallies))
}

/// The key task `i` GETs in `tasks`: its own, so the tasks spread over the nodes; one of
/// the keys `clients::keys(Workload::Tasks, C)` names, which `main::preset_keys` writes.
fn task_key(i: usize) -> String {
    format!("bench:{i}")
}

/// `SharedClient` on its default engine, `spec.workers` worker threads (default: one
/// per CPU), each building its `Config` (with the case's TLS) on its own thread.
async fn shared(spec: &CaseSpec) -> Result<CaseResult, String> {
    use redis_cluster_uring::{cmd, Config, SharedClient, Value};
    let tls = spec
        .tls
        .as_ref()
        .map(clients::TlsTrust::client_config)
        .transpose()?;
    let config = move || {
        let config = Config::default().periodic_refresh(None);
        match &tls {
            Some(tls) => config.tls(tls.clone()),
            None => config,
        }
    };
    let workers = spec
        .workers
        .unwrap_or_else(redis_cluster_uring::shared::default_workers);
    let client = SharedClient::connect_with_workers(&spec.seeds, workers, config)
        .await
        .map_err(|e| e.to_string())?;
    let before = client.stats().await.map_err(|e| e.to_string())?;
    let result = match spec.workload {
        Workload::Tasks => {
            let states = (0..spec.tasks)
                .map(|i| (client.clone(), cmd("GET").arg(task_key(i))))
                .collect();
            measure_tasks(spec, states, 1, |(client, get)| async move {
                // `&Cmd` is cloned: the command moves to the worker.
                let outcome = client.query::<Value>(&get).await;
                ((client, get), outcome.map(drop).map_err(|e| e.to_string()))
            })
            .await
        }
        _ => {
            // Each task its own `Arc`: the reference count each call moves is shared
            // with the worker running it, not with 63 other tasks.
            let pipe = clients::our_pipeline(Workload::Fanout, spec.k);
            let states = (0..spec.tasks)
                .map(|_| (client.clone(), Arc::new(pipe.clone())))
                .collect();
            let k = spec.k as u64;
            measure_tasks(spec, states, k, |(client, pipe)| async move {
                let outcome = client.execute(Arc::clone(&pipe)).await;
                ((client, pipe), outcome.map(drop).map_err(|e| e.to_string()))
            })
            .await
        }
    };
    let after = client.stats().await;
    client.shutdown(Duration::from_secs(1)).await;
    let (mut result, after) = (result?, after.map_err(|e| e.to_string())?);
    // Over the warm-up and the window, as `ours` counts them.
    result.io = Some((
        after.writes - before.writes,
        after.reads - before.reads,
        after.executions - before.executions,
    ));
    if let Some(runtime) = &mut result.runtime {
        runtime.workers = Some(client.workers());
    }
    Ok(result)
}

/// redis-rs's async cluster connection, one clone per task; the fan-out as K single
/// commands joined, the workaround its users have (see `clients::redis_commands`).
async fn redis_rs(spec: &CaseSpec) -> Result<CaseResult, String> {
    let client = clients::redis_cluster_client(spec)?;
    let conn = client
        .get_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    match spec.workload {
        Workload::Tasks => {
            let states = (0..spec.tasks)
                .map(|i| (conn.clone(), redis::cmd("GET").arg(task_key(i)).clone()))
                .collect();
            measure_tasks(spec, states, 1, |(mut conn, get)| async move {
                let outcome = get.query_async::<redis::Value>(&mut conn).await;
                ((conn, get), outcome.map(drop).map_err(|e| e.to_string()))
            })
            .await
        }
        _ => {
            let cmds: Arc<[redis::Cmd]> = clients::redis_commands(Workload::Fanout, spec.k).into();
            let states = (0..spec.tasks)
                .map(|_| (conn.clone(), Arc::clone(&cmds)))
                .collect();
            measure_tasks(spec, states, spec.k as u64, |(conn, cmds)| async move {
                let outcome = clients::redis_join_all(&conn, &cmds).await;
                ((conn, cmds), outcome)
            })
            .await
        }
    }
}

/// fred: one client shared by the tasks (each holds a handle to it); the fan-out through
/// its `pipeline()`, one per operation (see `clients::fred_pipeline`).
async fn fred(spec: &CaseSpec) -> Result<CaseResult, String> {
    use fred::prelude::*;
    let client = clients::fred_connect(spec).await?;
    let result = match spec.workload {
        Workload::Tasks => {
            let states = (0..spec.tasks)
                .map(|i| (client.clone(), task_key(i)))
                .collect();
            measure_tasks(spec, states, 1, |(client, key)| async move {
                let outcome = client.get::<Value, _>(key.as_str()).await;
                ((client, key), outcome.map(drop).map_err(|e| e.to_string()))
            })
            .await
        }
        _ => {
            let keys: Arc<[String]> = clients::keys(Workload::Fanout, spec.k).into();
            let states = (0..spec.tasks)
                .map(|_| (client.clone(), Arc::clone(&keys)))
                .collect();
            measure_tasks(spec, states, spec.k as u64, |(client, keys)| async move {
                let outcome = clients::fred_pipeline(&client, &keys).await;
                ((client, keys), outcome)
            })
            .await
        }
    };
    let _ = client.quit().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_reads_its_own_pre_set_key() {
        let keys = clients::keys(Workload::Tasks, 64);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(&task_key(i), key);
        }
    }
}
