//! `SharedClient`: the `Send + Sync + Clone` handle, used as a multi-threaded service uses
//! it. Tasks of a tokio multi-thread runtime and plain threads share one handle over
//! several worker threads; each caller gets its own replies, through a killed primary as
//! in quiet times; shutdown and drop end the workers.

mod support;

/// The `#[tokio::main]` example, run here against a cluster this test starts.
#[path = "../examples/tokio_service.rs"]
mod tokio_service;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_cluster_uring::scan::ScanOptions;
use redis_cluster_uring::{
    cmd, slot_for_key, Commands, Config, ErrorKind, Pipeline, SharedClient, Value,
};
use support::Cluster;

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a tokio multi-thread runtime")
}

async fn shared(cluster: &Cluster, workers: usize) -> SharedClient {
    let client =
        SharedClient::connect_with_workers(&cluster.seed_addrs(), workers, Config::default)
            .await
            .expect("the shared client connects to the test cluster");
    assert_eq!(client.workers(), workers);
    client
}

/// Names of this process's live threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// 64 tasks on four runtime threads, each writing and reading back values only it uses,
/// by single commands and by pipelines over every node: every reply is the caller's own.
#[test]
fn sixty_four_tasks_on_a_multi_thread_runtime_each_get_their_own_replies() {
    let cluster = support::cluster(3, 0);
    runtime(4).block_on(async {
        let client = shared(&cluster, 2).await;
        let before = client.stats().await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40u64 {
                    let key = format!("shared:{t}:{i}");
                    let value = t * 1_000_000 + i;
                    client
                        .query::<()>(cmd("SET").arg(&key).arg(value))
                        .await
                        .unwrap();
                    assert_eq!(
                        client
                            .query::<Option<u64>>(cmd("GET").arg(&key))
                            .await
                            .unwrap(),
                        Some(value)
                    );
                }
                // One pipeline over every node, kept in an `Arc` and sent twice.
                let mut pipe = Pipeline::new();
                for i in 0..40u64 {
                    pipe.incr(format!("shared:{t}:{i}"), 1);
                }
                let pipe = Arc::new(pipe);
                for round in 1..=2u64 {
                    let got: Vec<u64> = client.query_pipeline(pipe.clone()).await.unwrap();
                    let want: Vec<u64> = (0..40).map(|i| t * 1_000_000 + i + round).collect();
                    assert_eq!(got, want);
                }
            }));
        }
        for task in tasks {
            task.await.expect("a caller task panicked");
        }
        let stats = client.stats().await.unwrap();
        // 64 × (40 SETs + 40 GETs + 2 pipelines), plus the stats' own nothing.
        assert_eq!(stats.executions - before.executions, 64 * 82);
        assert_eq!(stats.redirects, 0);
        // Both workers connected to all three nodes.
        assert!(stats.connects >= 6, "{stats:?}");
    });
}

/// A server error inside a pipeline is that command's value; the other replies are kept.
/// A single command's error reply is its `Err`. What has no method of its own runs on a
/// worker's `Client` through `run`.
#[test]
fn errors_stay_with_their_command_and_run_reaches_the_whole_client() {
    let cluster = support::cluster(3, 0);
    runtime(2).block_on(async {
        let client = shared(&cluster, 2).await;
        client
            .query::<()>(cmd("SET").arg("shared:text").arg("abc"))
            .await
            .unwrap();
        let mut pipe = Pipeline::new();
        pipe.get("shared:text")
            .incr("shared:text", 1)
            .set("shared:after", 7);
        let replies = client.execute(&pipe).await.unwrap();
        assert_eq!(replies[0].as_ref().unwrap(), &Value::Bulk("abc".into()));
        assert_eq!(
            replies[1].as_ref().unwrap_err().kind(),
            ErrorKind::ServerError
        );
        assert!(replies[2].is_ok());
        let e = client
            .query::<i64>(cmd("INCR").arg("shared:text"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ServerError);
        // Connection-state commands are refused before anything is sent, as on `Client`.
        let e = client.query::<()>(cmd("MULTI")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);

        // A scan through `run`: the worker's own client, the output sent back.
        for i in 0..50 {
            client
                .query::<()>(cmd("SET").arg(format!("shared:scan:{i}")).arg(i))
                .await
                .unwrap();
        }
        let keys = client
            .run(|c| async move {
                let options = ScanOptions {
                    pattern: Some("shared:scan:*".into()),
                    ..ScanOptions::default()
                };
                let mut scan = c.scan(options);
                let mut keys = HashSet::new();
                while let Some(batch) = scan.next_batch().await? {
                    keys.extend(batch);
                }
                Ok::<_, redis_cluster_uring::Error>(keys)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(keys.len(), 50);
        // The worker's slot map agrees with the hash.
        let slot = slot_for_key(b"shared:text");
        let owner = client
            .run(move |c| async move { c.slot_map().node_for(slot).cloned() })
            .await
            .unwrap();
        assert_eq!(
            owner.map(|n| n.port),
            Some(cluster.master_for_slot(slot.get()))
        );
    });
}

/// Plain threads (no runtime) block on their own replies; on a worker's thread the
/// blocking view refuses instead of parking the loop it would wait for.
#[test]
fn plain_threads_block_on_their_replies() {
    let cluster = support::cluster(3, 0);
    let client = runtime(1).block_on(shared(&cluster, 2));
    let blocking = client.blocking();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let blocking = &blocking;
            s.spawn(move || {
                for i in 0..50u64 {
                    let key = format!("shared:plain:{t}:{i}");
                    blocking
                        .query::<()>(cmd("SET").arg(&key).arg(t * 100 + i))
                        .unwrap();
                    let got: Option<u64> = blocking.query(cmd("GET").arg(&key)).unwrap();
                    assert_eq!(got, Some(t * 100 + i));
                }
                let mut pipe = Pipeline::new();
                for i in 0..50u64 {
                    pipe.get(format!("shared:plain:{t}:{i}"));
                }
                let got: Vec<u64> = blocking.query_pipeline(&pipe).unwrap();
                assert_eq!(got, (0..50).map(|i| t * 100 + i).collect::<Vec<_>>());
            });
        }
    });
    // The blocking view is a `Commands` client: the typed helpers without `.await`.
    let mut commands = blocking.clone();
    assert_eq!(commands.incr("shared:plain:counter", 2).unwrap(), 2);
    let got: Option<u64> = commands.get("shared:plain:counter").unwrap();
    assert_eq!(got, Some(2));
    let inner = blocking.clone();
    let on_worker = runtime(1)
        .block_on(client.run(move |_| async move { inner.query::<Value>(cmd("PING")) }))
        .unwrap();
    assert_eq!(on_worker.unwrap_err().kind(), ErrorKind::Config);
}

/// `shutdown` closes every clone: later requests fail with `Shutdown`. Dropping the last
/// clone of another client ends its worker threads.
#[test]
fn shutdown_closes_every_clone_and_dropping_ends_the_workers() {
    let cluster = support::cluster(3, 0);
    let rt = runtime(2);
    rt.block_on(async {
        let client = shared(&cluster, 2).await;
        let clone = client.clone();
        client
            .query::<()>(cmd("SET").arg("shared:down").arg(1))
            .await
            .unwrap();
        client.shutdown(Duration::from_secs(1)).await;
        let e = clone
            .query::<Value>(cmd("GET").arg("shared:down"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Shutdown);
        let e = clone.execute(Pipeline::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Shutdown);
    });
    let workers_now = || {
        thread_names()
            .iter()
            .filter(|n| n.starts_with("redis-worker"))
            .count()
    };
    // Other tests of this binary may run workers of their own meanwhile: count ours by
    // what this client adds and removes.
    let client = rt.block_on(shared(&cluster, 3));
    let with = workers_now();
    assert!(with >= 3, "{with} worker threads");
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers_now() > with - 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        workers_now() <= with - 3,
        "the workers outlived their client"
    );
}

/// A failed connect is the workers' typed error, and no worker thread is left behind.
#[test]
fn a_failed_connect_is_typed() {
    let rt = runtime(1);
    // Nothing listens on port 1.
    let e = rt
        .block_on(SharedClient::connect_with_workers(
            &["127.0.0.1:1"],
            2,
            || Config::default().connect_timeout(Duration::from_millis(300)),
        ))
        .unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Shutdown, "{e}");
    let e = rt
        .block_on(SharedClient::connect_with_workers(
            &["127.0.0.1:1"],
            0,
            Config::default,
        ))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

/// A primary killed with SIGKILL while 32 tasks write and read their own keys: each
/// caller gets its own value or a typed error, never another's; after the failover every
/// caller is served again.
#[test]
fn a_killed_primary_fails_only_typed_and_the_callers_go_on() {
    let cluster = support::cluster(3, 1);
    runtime(2).block_on(async {
        let client = shared(&cluster, 2).await;
        let errors = Arc::new(AtomicU64::new(0));
        let victim = cluster.master_for_slot(slot_for_key(b"shared:kill:0:0").get());
        let stop_at = Instant::now() + Duration::from_secs(60);
        let served_after = Arc::new(AtomicU64::new(0));
        let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let (client, errors, served_after, killed) = (
                client.clone(),
                errors.clone(),
                served_after.clone(),
                killed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                let mut served_since_kill = 0;
                while served_since_kill < 20 && Instant::now() < stop_at {
                    let key = format!("shared:kill:{t}:{}", i % 16);
                    let value = t * 1_000_000 + i;
                    let was_killed = killed.load(Ordering::SeqCst);
                    let outcome = async {
                        client.query::<()>(cmd("SET").arg(&key).arg(value)).await?;
                        client.query::<Option<u64>>(cmd("GET").arg(&key)).await
                    }
                    .await;
                    match outcome {
                        // Only this caller writes this key: any other value is a mix-up.
                        Ok(got) => {
                            assert_eq!(got, Some(value), "task {t} read another's reply");
                            if was_killed {
                                served_since_kill += 1;
                            }
                        }
                        Err(e) => {
                            assert!(
                                matches!(
                                    e.kind(),
                                    ErrorKind::Io
                                        | ErrorKind::Timeout
                                        | ErrorKind::ClusterDown
                                        | ErrorKind::Overloaded
                                        | ErrorKind::RedirectLimit
                                        | ErrorKind::ServerError
                                ),
                                "untyped failure: {e:?}"
                            );
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    i += 1;
                }
                if served_since_kill >= 20 {
                    served_after.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.kill_node(victim).unwrap();
        killed.store(true, Ordering::SeqCst);
        for task in tasks {
            task.await.expect("a caller task panicked");
        }
        assert_eq!(
            served_after.load(Ordering::Relaxed),
            32,
            "every caller is served again after the failover ({} errors)",
            errors.load(Ordering::Relaxed)
        );
    });
}

/// The README's service example: 64 tasks on `#[tokio::main]`'s runtime.
#[test]
fn the_tokio_service_example_runs_its_sixty_four_tasks() {
    let cluster = support::cluster(3, 0);
    let served = runtime(2)
        .block_on(tokio_service::serve(&cluster.seed_addrs(), 64, 50))
        .unwrap();
    assert_eq!(served.tasks, 64);
    assert_eq!(served.commands, 64 * (2 * 50 + 32));
}

/// The worker's blocking connections, asked on the worker.
async fn blocking_connections(client: &SharedClient) -> usize {
    client
        .run(|c| async move { c.blocking_connection_count() })
        .await
        .unwrap()
}

/// Waits (up to 10 s) until the worker has `n` blocking connections.
async fn until_blocking_connections(client: &SharedClient, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocking_connections(client).await != n {
        assert!(Instant::now() < deadline, "never {n} blocking connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A caller that stops waiting for a `BLPOP` (a timeout, a dropped task) stops it on the
/// worker too: its dedicated connection is closed, and an element pushed afterwards stays
/// in the list instead of going to a pop nobody receives.
#[test]
fn a_caller_that_gives_up_on_a_blocking_command_loses_no_element() {
    let cluster = support::cluster(3, 0);
    runtime(2).block_on(async {
        let client = shared(&cluster, 1).await;
        let popper = client.clone();
        let blocked = tokio::spawn(async move {
            popper
                .query::<Value>(cmd("BLPOP").arg("shared:queue").arg(0))
                .await
        });
        // The BLPOP waits on its dedicated connection...
        until_blocking_connections(&client, 1).await;
        // ...until its caller gives up.
        blocked.abort();
        assert!(blocked.await.unwrap_err().is_cancelled());
        until_blocking_connections(&client, 0).await;
        let pushed: i64 = client
            .query(cmd("LPUSH").arg("shared:queue").arg("job"))
            .await
            .unwrap();
        assert_eq!(pushed, 1);
        let left: i64 = client.query(cmd("LLEN").arg("shared:queue")).await.unwrap();
        assert_eq!(left, 1, "a forgotten BLPOP took the element");
    });
}

/// The client-side cache on a `SharedClient`: each worker has its own, filled and
/// invalidated by its own connections; hits, another client's write seen through the
/// invalidation, the counters added up, and `cache_clear` on every worker.
#[test]
fn each_worker_caches_and_another_clients_write_is_seen() {
    let cluster = support::cluster(3, 0);
    runtime(2).block_on(async {
        let config = || Config::default().cache(redis_cluster_uring::CacheConfig::default());
        let client = SharedClient::connect_with_workers(&cluster.seed_addrs(), 2, config)
            .await
            .unwrap();
        let key = "shared:cache:k";
        let port = cluster.master_for_slot(slot_for_key(key.as_bytes()).get());
        cluster.run(port, &["SET", key, "old"]).unwrap();
        // Reads from tasks on both runtime threads reach both workers.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let v: String = client.query(cmd("GET").arg(key)).await.unwrap();
                    assert_eq!(v, "old");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stats = client.stats().await.unwrap();
        assert!(stats.cache_hits >= 100, "{stats:?}");
        assert!(stats.cache_entries >= 1);
        cluster.run(port, &["SET", key, "new"]).unwrap();
        let start = Instant::now();
        loop {
            let v: String = client.query(cmd("GET").arg(key)).await.unwrap();
            if v == "new" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the write was never seen"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(client.stats().await.unwrap().cache_invalidations >= 1);
        client.cache_clear().await.unwrap();
        assert_eq!(client.stats().await.unwrap().cache_entries, 0);
    });
}
