//! Transactions against real nodes: atomic pipelines (`MULTI ... EXEC` in one write on the
//! shared connection), `EXECABORT`, cross-slot refusal, optimistic locking with `WATCH`,
//! and transactions that keep running while their slot migrates.

mod support;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Scope;
use std::time::Duration;

use redis_cluster_uring::engine;
use redis_cluster_uring::AsyncCommands;
use redis_cluster_uring::Commands;
use redis_cluster_uring::{cmd, commands, slot_for_key, Config, ErrorKind, Pipeline, Value};
use support::clients::{on_both_clients, pause, AnyClient};
use support::{client, client_with, cluster, run, Cluster};

on_both_clients! {
    atomic_pipeline_commits_and_reports_each_command(3, 0);
    queue_time_errors_abort_the_whole_transaction(3, 0);
    cross_slot_and_misplaced_commands_are_refused_before_sending(3, 0);
    transactions_keep_committing_during_live_migrations(3, 0);
}

async fn atomic_pipeline_commits_and_reports_each_command<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let mut tx = Pipeline::new();
    tx.atomic()
        .set("{acct:1}name", "ada")
        .add(cmd("INCRBY").arg("{acct:1}balance").arg(30))
        .add(cmd("LPUSH").arg("{acct:1}name").arg("x")) // WRONGTYPE at run time
        .get("{acct:1}name");
    let results = client.execute(&tx).await.unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(
        results[0].as_ref().unwrap(),
        &Value::SimpleString("OK".into())
    );
    assert_eq!(results[1].as_ref().unwrap(), &Value::Int(30));
    let e = results[2].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerError);
    assert_eq!(e.code(), Some("WRONGTYPE"));
    assert_eq!(results[3].as_ref().unwrap(), &Value::Bulk("ada".into()));

    // Typed, through query_pipeline.
    let mut tx = Pipeline::new();
    tx.atomic()
        .add(cmd("INCR").arg("{acct:1}visits"))
        .add(cmd("INCR").arg("{acct:1}visits"));
    let n: Vec<i64> = client.query_pipeline(&tx).await.unwrap();
    assert_eq!(n, vec![1, 2]);
}

async fn queue_time_errors_abort_the_whole_transaction<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    client
        .query::<()>(commands::set("{q}kept", "before"))
        .await
        .unwrap();
    let mut tx = Pipeline::new();
    tx.atomic()
        .set("{q}kept", "after")
        .add(cmd("SET").arg("{q}kept")) // wrong arity: refused when queued
        .add(cmd("INCR").arg("{q}n"));
    let results = client.execute(&tx).await.unwrap();
    assert_eq!(
        results[0].as_ref().unwrap_err().kind(),
        ErrorKind::TransactionAborted
    );
    assert_eq!(
        results[1].as_ref().unwrap_err().kind(),
        ErrorKind::ServerError
    );
    assert_eq!(
        results[2].as_ref().unwrap_err().kind(),
        ErrorKind::TransactionAborted
    );
    // Nothing ran.
    let kept: String = client.query(commands::get("{q}kept")).await.unwrap();
    assert_eq!(kept, "before");
    assert!(!client
        .query::<bool>(commands::exists("{q}n"))
        .await
        .unwrap());
}

async fn cross_slot_and_misplaced_commands_are_refused_before_sending<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let written = client.stats().bytes_written;
    let mut tx = Pipeline::new();
    tx.atomic().set("a", 1).set("b", 2);
    assert_eq!(
        client.execute(&tx).await.unwrap_err().kind(),
        ErrorKind::CrossSlot
    );
    let mut tx = Pipeline::new();
    tx.atomic().set("{t}a", 1).add(cmd("DBSIZE"));
    assert_eq!(
        client.execute(&tx).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    let mut tx = Pipeline::new();
    tx.atomic().set("{t}a", 1).add(cmd("SUBSCRIBE").arg("c"));
    assert_eq!(
        client.execute(&tx).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(client.stats().bytes_written, written, "nothing was sent");
    // MULTI alone on the shared connection stays refused.
    let e = client.query::<Value>(cmd("MULTI")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[test]
fn concurrent_transactions_and_plain_commands_share_connections_safely() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let client = client.clone();
                engine::spawn_local(async move {
                    for i in 0..100 {
                        // Each transaction writes two keys of its own slot and reads
                        // them back inside; a plain SET/GET pair runs beside it.
                        let tag = format!("{{c{t}}}");
                        let mut tx = Pipeline::new();
                        tx.atomic()
                            .set(format!("{tag}a"), i)
                            .set(format!("{tag}b"), i)
                            .get(format!("{tag}a"))
                            .get(format!("{tag}b"));
                        let (r, plain) = tokio::join!(client.execute(&tx), async {
                            client.set(format!("plain:{t}:{i}"), i).await.unwrap();
                            client
                                .get::<_, i64>(format!("plain:{t}:{i}"))
                                .await
                                .unwrap()
                        });
                        let r = r.unwrap();
                        assert_eq!(r[2].as_ref().unwrap(), &Value::Bulk(i.to_string().into()));
                        assert_eq!(r[3].as_ref().unwrap(), &Value::Bulk(i.to_string().into()));
                        assert_eq!(plain, i);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn watch_retries_on_conflict_and_commits_once() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;
        client.set("{w}balance", 100).await.unwrap();
        let attempts = Rc::new(Cell::new(0));
        let results = client
            .transaction(&["{w}balance"], |conn| {
                let client = client.clone();
                let attempts = attempts.clone();
                async move {
                    attempts.set(attempts.get() + 1);
                    let balance: i64 = conn.query(cmd("GET").arg("{w}balance")).await?;
                    if attempts.get() == 1 {
                        // Another writer changes the key between our read and EXEC.
                        client.incr("{w}balance", 1).await?;
                    }
                    let mut tx = Pipeline::new();
                    tx.add(cmd("SET").arg("{w}balance").arg(balance - 10));
                    tx.add(cmd("INCRBY").arg("{w}spent").arg(10));
                    Ok(tx)
                }
            })
            .await
            .unwrap();
        assert_eq!(attempts.get(), 2, "one conflict, then a commit");
        assert_eq!(results[1].as_ref().unwrap(), &Value::Int(10));
        let balance: i64 = client.get("{w}balance").await.unwrap();
        assert_eq!(
            balance, 91,
            "the second attempt read the other writer's value"
        );

        // An empty transaction ends the session: nothing runs, the connection is reused.
        let before = client.blocking_connection_count();
        let none = client
            .transaction(&["{w}balance"], |_conn| async { Ok(Pipeline::new()) })
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(client.blocking_connection_count(), before);

        // Conflicts every time: a typed error after the configured attempts.
        let config = Config {
            max_watch_attempts: 3,
            ..Config::default()
        };
        let client = client_with(&cluster, config).await;
        let attempts = Rc::new(Cell::new(0));
        let e = client
            .transaction(&["{w}balance"], |conn| {
                let client = client.clone();
                let attempts = attempts.clone();
                async move {
                    attempts.set(attempts.get() + 1);
                    let _: i64 = conn.query(cmd("GET").arg("{w}balance")).await?;
                    client.incr("{w}balance", 1).await?;
                    let mut tx = Pipeline::new();
                    tx.add(cmd("INCR").arg("{w}balance"));
                    Ok(tx)
                }
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WatchConflict);
        assert_eq!(attempts.get(), 3);

        // Watched keys of two slots, or a transaction outside the watched slot.
        let e = client
            .transaction(&["a", "b"], |_conn| async { Ok(Pipeline::new()) })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CrossSlot);
        let e = client
            .transaction(&["{w}balance"], |_conn| async {
                let mut tx = Pipeline::new();
                tx.set("elsewhere", 1);
                Ok(tx)
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CrossSlot);
    });
}

/// Transactions run without a pause while their slot migrates back and forth (keys moved
/// by `MIGRATE`, the slot handed over with `SETSLOT`): queue-time `ASK`, `EXEC`-time
/// `TRYAGAIN` and `MOVED` are all absorbed, and every committed transaction ran exactly
/// once and atomically (both counters equal the commits).
async fn transactions_keep_committing_during_live_migrations<'s, C: AnyClient>(
    cluster: &'s Cluster,
    helpers: &'s Scope<'s, '_>,
) {
    let slot = slot_for_key(b"txm").get();
    let migrating = Arc::new(AtomicBool::new(true));
    let still = migrating.clone();
    helpers.spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..6 {
            cluster
                .migrate_slot_in_steps(slot, Duration::from_millis(40))
                .unwrap();
            std::thread::sleep(Duration::from_millis(40));
        }
        still.store(false, Ordering::SeqCst);
    });
    let config = Config {
        max_redirects: 16,
        max_retries: 16,
        ..Config::default()
    };
    let client = C::connect(cluster, config).await;
    let mut committed = 0i64;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let start = client.stats();
    while migrating.load(Ordering::SeqCst) {
        let mut tx = Pipeline::new();
        tx.atomic()
            .add(cmd("INCR").arg("{txm}a"))
            .add(cmd("INCR").arg("{txm}b"));
        match client.execute(&tx).await {
            Ok(r) => {
                assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
                assert_eq!(r[0].as_ref().unwrap(), r[1].as_ref().unwrap());
                committed += 1;
            }
            Err(e) => *errors.entry(format!("{:?}", e.kind())).or_default() += 1,
        }
        pause(Duration::from_millis(1)).await;
    }
    let stats = client.stats();
    let a: i64 = client.query(commands::get("{txm}a")).await.unwrap();
    let b: i64 = client.query(commands::get("{txm}b")).await.unwrap();
    eprintln!(
        "transactions under migration ({}): {committed} committed, errors {errors:?}, {} redirects, {} retries",
        C::kind(),
        stats.redirects - start.redirects,
        stats.retries - start.retries
    );
    assert!(errors.is_empty(), "transactions failed: {errors:?}");
    assert!(
        stats.redirects > start.redirects,
        "the migrations were seen"
    );
    assert_eq!((a, b), (committed, committed));
}

/// `WATCH` on the blocking client (its closure is synchronous, so this is its own test;
/// the async client's twin is above): a conflict runs the attempt again, an empty
/// transaction ends the session, a conflict every time is typed, keys in two slots are
/// refused, and no watch outlives its session (an atomic pipeline on the same connection
/// afterwards commits).
#[test]
fn watch_on_the_blocking_client_retries_on_conflict_and_leaves_no_watch_behind() {
    let cluster = cluster(3, 0);
    let mut client = support::clients::connect_blocking(&cluster, Config::default());
    let mut other = support::clients::connect_blocking(&cluster, Config::default());
    client.set("{w}balance", 100).unwrap();
    let mut attempts = 0;
    let results = client
        .transaction(&["{w}balance"], |conn| {
            attempts += 1;
            let balance: i64 = conn.query(cmd("GET").arg("{w}balance"))?;
            if attempts == 1 {
                // Another writer changes the key between our read and EXEC.
                other.incr("{w}balance", 1)?;
            }
            let mut tx = Pipeline::new();
            tx.add(cmd("SET").arg("{w}balance").arg(balance - 10));
            tx.add(cmd("INCRBY").arg("{w}spent").arg(10));
            Ok(tx)
        })
        .unwrap();
    assert_eq!(attempts, 2, "one conflict, then a commit");
    assert_eq!(results[1].as_ref().unwrap(), &Value::Int(10));
    let balance: i64 = client.get("{w}balance").unwrap();
    assert_eq!(
        balance, 91,
        "the second attempt read the other writer's value"
    );

    // An empty transaction ends the session (UNWATCH): a later change by another client
    // does not abort the next plain transaction on the same connection.
    let none = client
        .transaction(&["{w}balance"], |_| Ok(Pipeline::new()))
        .unwrap();
    assert!(none.is_empty());
    other.incr("{w}balance", 1).unwrap();
    let mut tx = Pipeline::new();
    tx.atomic().add(cmd("INCR").arg("{w}balance"));
    let r = client.execute(&tx).unwrap();
    assert_eq!(r[0].as_ref().unwrap(), &Value::Int(93));

    // A closure error ends the session too, and its watches with it.
    let e = client
        .transaction(&["{w}balance"], |_| {
            Err(redis_cluster_uring::Error::new(
                ErrorKind::Config,
                "changed my mind",
            ))
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    other.incr("{w}balance", 1).unwrap();
    let r = client.execute(&tx).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap(),
        &Value::Int(95),
        "no stale watch aborted it"
    );

    // Conflicts every time: a typed error after the configured attempts.
    let config = Config {
        max_watch_attempts: 3,
        ..Config::default()
    };
    let mut client = support::clients::connect_blocking(&cluster, config);
    let mut attempts = 0;
    let e = client
        .transaction(&["{w}balance"], |conn| {
            attempts += 1;
            let _: i64 = conn.query(cmd("GET").arg("{w}balance"))?;
            other.incr("{w}balance", 1)?;
            let mut tx = Pipeline::new();
            tx.add(cmd("INCR").arg("{w}balance"));
            Ok(tx)
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WatchConflict);
    assert_eq!(attempts, 3);

    // Watched keys of two slots, or a transaction outside the watched slot.
    let e = client
        .transaction(&["a", "b"], |_| Ok(Pipeline::new()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CrossSlot);
    let e = client
        .transaction(&["{w}balance"], |_| {
            let mut tx = Pipeline::new();
            tx.set("elsewhere", 1);
            Ok(tx)
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CrossSlot);
    // Inside the session, only regular commands.
    let e = client
        .transaction(&["{w}balance"], |conn| {
            conn.query::<()>(cmd("MULTI"))?;
            Ok(Pipeline::new())
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

/// The connection holding a blocking client's watches is killed during the session: the
/// transaction is not sent on a fresh connection (it would run unguarded), the error is
/// typed and nothing ran; the client serves again afterwards.
#[test]
fn a_blocking_watch_session_whose_connection_is_lost_runs_nothing() {
    let cluster = cluster(3, 0);
    let mut client = support::clients::connect_blocking(&cluster, Config::default());
    client.set("{lost}n", 1).unwrap();
    let port = cluster.master_for_slot(slot_for_key(b"lost").get());
    let e = client
        .transaction(&["{lost}n"], |conn| {
            let _: i64 = conn.query(cmd("GET").arg("{lost}n"))?;
            cluster
                .run(port, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
                .unwrap();
            // This read finds the connection closed; a careless closure ignores that and
            // returns its transaction anyway.
            assert!(conn.query::<i64>(cmd("GET").arg("{lost}n")).is_err());
            let mut tx = Pipeline::new();
            tx.add(cmd("INCR").arg("{lost}n"));
            Ok(tx)
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.detail().contains("watches"), "{e}");
    let n: i64 = client.get("{lost}n").unwrap();
    assert_eq!(n, 1, "the transaction did not run");
}

/// The watched slot moves to another node between `WATCH` and `EXEC`: the attempt starts
/// again on the new owner and commits once.
#[test]
fn a_blocking_watch_session_follows_its_slot_to_the_new_owner() {
    let cluster = cluster(3, 0);
    let mut client = support::clients::connect_blocking(&cluster, Config::default());
    client.set("{mv}n", 1).unwrap();
    let slot = slot_for_key(b"mv").get();
    let from = cluster.master_for_slot(slot);
    let to = cluster.other_master(from);
    let mut attempts = 0;
    let r = client
        .transaction(&["{mv}n"], |conn| {
            attempts += 1;
            let n: i64 = conn.query(cmd("GET").arg("{mv}n"))?;
            if attempts == 1 {
                cluster.migrate_slot(slot, from, to).unwrap();
            }
            let mut tx = Pipeline::new();
            tx.add(cmd("SET").arg("{mv}n").arg(n + 1));
            Ok(tx)
        })
        .unwrap();
    assert!(r[0].is_ok());
    assert_eq!(attempts, 2, "once on the old owner, once on the new");
    assert_eq!(
        client
            .slot_map()
            .node_for(slot_for_key(b"mv"))
            .map(|n| n.port),
        Some(to)
    );
    let n: i64 = client.get("{mv}n").unwrap();
    assert_eq!(n, 2);
}

/// A closure that panics inside a blocking WATCH session: the panic reaches the caller,
/// and the connection holding the watches is closed on the way, so a later transaction
/// on the same client is not aborted by a stale watch.
#[test]
fn a_panic_in_a_blocking_watch_session_leaves_no_watch_behind() {
    let cluster = cluster(3, 0);
    let mut client = support::clients::connect_blocking(&cluster, Config::default());
    let mut other = support::clients::connect_blocking(&cluster, Config::default());
    client.set("{p}n", 1).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = client.transaction(&["{p}n"], |conn| -> redis_cluster_uring::Result<Pipeline> {
            let _: i64 = conn.query(cmd("GET").arg("{p}n"))?;
            panic!("the caller's bug");
        });
    }));
    assert!(panicked.is_err());
    other.incr("{p}n", 1).unwrap();
    let mut tx = Pipeline::new();
    tx.atomic().add(cmd("INCR").arg("{p}n"));
    let r = client.execute(&tx).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap(),
        &Value::Int(3),
        "no stale watch aborted it"
    );
}
