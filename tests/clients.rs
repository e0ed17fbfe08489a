//! One integration suite for both clients: every scenario here is written once, generic
//! over [`AnyClient`], and runs as two tests, `<scenario>::on_async` on the async
//! [`Client`](redis_cluster_uring::Client) and `<scenario>::on_blocking` on
//! [`blocking::Client`](redis_cluster_uring::blocking::Client), each on a cluster of its
//! own (`on_both_clients!`, in `tests/support/clients.rs`). Fan-out pipelines, single queries, refusals, a live slot migration, a failover, a
//! stopped node, a slow reply, serial execution and atomic pipelines.
//!
//! Both run inside the test runtime (`support::run`, on the engine the environment asks
//! for); the blocking client simply blocks the thread for each call. Cluster faults that
//! must happen while the client works run on a helper thread of a `std::thread::scope`
//! the scenario is given.
//!
//! Both clients answer every scenario alike, so no assertion depends on the client. Where
//! they work differently underneath (the blocking client closes a connection that gave
//! up on a reply, the async one reads and discards the late reply), the comment says so;
//! an assertion that must differ would branch on `C::kind()` and say why.

mod support;

use std::collections::HashSet;
use std::thread::Scope;
use std::time::Duration;

use redis_cluster_uring::{
    cmd, slot_for_key, Cmd, Config, ErrorKind, Execution, NodeAddr, Pipeline, Value,
};
use support::clients::{on_both_clients, pause, AnyClient};
use support::Cluster;

on_both_clients! {
    a_fan_out_pipeline_of_1000_commands_answers_in_order(3, 0);
    single_queries_multi_node_commands_and_splits(3, 0);
    refused_commands_fail_alone_with_the_same_kinds(3, 0);
    a_live_slot_migration_goes_through_ask_then_moved(3, 0);
    a_killed_primary_gives_typed_errors_then_its_replica_serves(3, 1);
    a_stopped_node_times_out_alone_then_serves_again(3, 0);
    a_reply_slower_than_the_deadline_never_shifts_later_ones(3, 0);
    serial_execution_gives_the_same_replies(3, 0);
    atomic_pipelines_commit_abort_and_follow_a_migration(3, 0);
    typed_helpers_ignored_replies_and_tuples_come_from_the_library_traits(3, 0);
}

fn bulk(s: impl ToString) -> Value {
    Value::Bulk(s.to_string().into())
}

async fn a_fan_out_pipeline_of_1000_commands_answers_in_order<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let mut set = Pipeline::with_capacity(1000);
    for i in 0..1000 {
        set.set(format!("fan:{i}"), i);
    }
    let replies = client.execute(&set).await.unwrap();
    assert_eq!(replies.len(), 1000);
    assert!(replies.iter().all(|r| r.is_ok()));
    // Every node took part.
    let map = client.slot_map();
    let nodes: HashSet<_> = (0..1000)
        .map(|i| map.node_for(slot_for_key(format!("fan:{i}").as_bytes())))
        .collect();
    assert_eq!(nodes.len(), 3);
    assert_eq!(client.connection_count(), 3);
    // Mixed commands, replies in pipeline order, errors as values, many rounds; each
    // pipeline is one write per node, and its replies come in at least one read each.
    for round in 0..20 {
        let before = client.stats();
        let mut pipe = Pipeline::with_capacity(1000);
        for i in 0..1000 {
            match i % 4 {
                0 | 1 => pipe.get(format!("fan:{i}")),
                2 => pipe.add(cmd("ECHO").arg(format!("e{round}:{i}"))),
                _ => pipe.add(cmd("INCRBY").arg(format!("fan:{}", i - 1)).arg(0)),
            };
        }
        let replies = client.execute(&pipe).await.unwrap();
        let after = client.stats();
        assert_eq!(after.writes - before.writes, 3, "one write per node");
        assert_eq!(after.executions - before.executions, 1);
        assert!(after.reads - before.reads >= 3);
        assert!(after.bytes_written - before.bytes_written > 1000 * 14);
        for (i, r) in replies.iter().enumerate() {
            let v = r.as_ref().unwrap();
            match i % 4 {
                0 | 1 => assert_eq!(v, &bulk(i)),
                2 => assert_eq!(v, &bulk(format!("e{round}:{i}"))),
                // INCRBY on "fan:{i-1}" (a number): the number.
                _ => assert_eq!(v, &Value::Int(i as i64 - 1)),
            }
        }
    }
    // A server error is that command's result only.
    let mut pipe = Pipeline::new();
    pipe.set("fan:str", "x")
        .add(cmd("INCR").arg("fan:str"))
        .get("fan:str");
    let replies = client.execute(&pipe).await.unwrap();
    assert_eq!(
        replies[1].as_ref().unwrap_err().kind(),
        ErrorKind::ServerError
    );
    assert_eq!(replies[2].as_ref().unwrap(), &bulk("x"));
    // Large values, read in pieces.
    let big = "v".repeat(3 * 1024 * 1024);
    let mut pipe = Pipeline::new();
    pipe.set("fan:big", big.as_str())
        .get("fan:big")
        .get("fan:1");
    let replies = client.execute(&pipe).await.unwrap();
    assert_eq!(replies[1].as_ref().unwrap(), &bulk(&big));
    assert_eq!(replies[2].as_ref().unwrap(), &bulk(1));
}

async fn single_queries_multi_node_commands_and_splits<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    client
        .query::<()>(cmd("SET").arg("q:a").arg("hello"))
        .await
        .unwrap();
    let v: Option<String> = client.query(cmd("GET").arg("q:a")).await.unwrap();
    assert_eq!(v.as_deref(), Some("hello"));
    let missing: Option<String> = client.query(cmd("GET").arg("q:none")).await.unwrap();
    assert_eq!(missing, None);
    assert_eq!(
        client.query::<i64>(cmd("INCR").arg("q:n")).await.unwrap(),
        1
    );
    // A cross-slot MSET/MGET is split by slot and merged, in key order.
    client
        .query::<()>(
            cmd("MSET")
                .arg("q:x")
                .arg(1)
                .arg("q:y")
                .arg(2)
                .arg("q:z")
                .arg(3),
        )
        .await
        .unwrap();
    let got: Vec<Option<String>> = client
        .query(cmd("MGET").arg("q:z").arg("q:none").arg("q:x").arg("q:y"))
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Some("3".into()), None, Some("1".into()), Some("2".into())]
    );
    // DBSIZE goes to every primary and is summed; KEYS is concatenated.
    let total: i64 = client.query(cmd("DBSIZE")).await.unwrap();
    assert_eq!(total, 5);
    let mut keys: Vec<String> = client.query(cmd("KEYS").arg("q:*")).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["q:a", "q:n", "q:x", "q:y", "q:z"]);
    let mut per_node = 0;
    let primaries: Vec<NodeAddr> = client.slot_map().primaries().cloned().collect();
    for node in &primaries {
        per_node += client.query_node::<i64>(node, cmd("DBSIZE")).await.unwrap();
    }
    assert_eq!(per_node, 5);
    // A blocking command runs alone, with its own timeout added to the deadline.
    client
        .query::<i64>(cmd("RPUSH").arg("q:list").arg("job"))
        .await
        .unwrap();
    let popped: Option<Vec<String>> = client
        .query(cmd("BLPOP").arg("q:list").arg(1))
        .await
        .unwrap();
    assert_eq!(popped, Some(vec!["q:list".to_string(), "job".to_string()]));
    let none: Option<Vec<String>> = client
        .query(cmd("BLPOP").arg("q:list").arg("0.1"))
        .await
        .unwrap();
    assert_eq!(none, None);
    // Typed conversions of whole pipelines.
    let mut pipe = Pipeline::new();
    pipe.get("q:x").get("q:y");
    let xs: Vec<i64> = client.query_pipeline(&pipe).await.unwrap();
    assert_eq!(xs, [1, 2]);
    let mut pipe = Pipeline::new();
    pipe.get("q:x")
        .add(cmd("INCR").arg("q:a"))
        .raise_on_error(true);
    assert_eq!(
        client.execute(&pipe).await.unwrap_err().kind(),
        ErrorKind::ServerError
    );
    assert!(client.server_info(&primaries[0]).is_some());
}

async fn refused_commands_fail_alone_with_the_same_kinds<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let cases: Vec<(Cmd, ErrorKind)> = vec![
        (Cmd::new(), ErrorKind::InvalidCommand),
        (cmd("MULTI"), ErrorKind::Unsupported),
        (cmd("SUBSCRIBE").arg("ch"), ErrorKind::Unsupported),
        (
            cmd("CLIENT").arg("REPLY").arg("OFF"),
            ErrorKind::Unsupported,
        ),
        (cmd("SELECT").arg(1), ErrorKind::Unsupported),
        (cmd("HELLO").arg(2), ErrorKind::Unsupported),
        (cmd("CLUSTER").arg("FAILOVER"), ErrorKind::Unsupported),
        (cmd("SCAN").arg(0), ErrorKind::Unsupported),
        (cmd("WAIT").arg(1).arg(0), ErrorKind::Unsupported),
        (cmd("SINTER").arg("a").arg("b"), ErrorKind::CrossSlot),
    ];
    for (c, kind) in &cases {
        let e = client.query::<Value>(c.clone()).await.unwrap_err();
        assert_eq!(e.kind(), *kind, "{c:?}: {e}");
    }
    // In a pipeline each fails alone; the rest runs. A blocking command is refused there.
    let mut pipe = Pipeline::new();
    pipe.set("r:a", 1);
    for (c, _) in &cases {
        pipe.add(c.clone());
    }
    pipe.add(cmd("BLPOP").arg("r:l").arg(0)).get("r:a");
    let replies = client.execute(&pipe).await.unwrap();
    assert!(replies[0].is_ok());
    for (i, (c, kind)) in cases.iter().enumerate() {
        assert_eq!(replies[i + 1].as_ref().unwrap_err().kind(), *kind, "{c:?}");
    }
    let n = replies.len();
    assert_eq!(
        replies[n - 2].as_ref().unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(replies[n - 1].as_ref().unwrap(), &bulk(1));
    // The connections are intact afterwards.
    let v: String = client.query(cmd("GET").arg("r:a")).await.unwrap();
    assert_eq!(v, "1");
}

async fn a_live_slot_migration_goes_through_ask_then_moved<'s, C: AnyClient>(
    cluster: &'s Cluster,
    helpers: &'s Scope<'s, '_>,
) {
    let slot = slot_for_key(b"mig");
    let from = cluster.master_for_slot(slot.get());
    let to = cluster.other_master(from);
    let client = C::connect(cluster, Config::default()).await;
    let mut setup = Pipeline::new();
    for i in 0..50 {
        setup.set(format!("{{mig}}:{i}"), i);
        setup.set(format!("other:{i}"), i);
    }
    let replies = client.execute(&setup).await.unwrap();
    assert!(replies.iter().all(|r| r.is_ok()));
    // The slot migrates in three steps, with traffic during each and after the last.
    let migration = helpers.spawn(move || {
        cluster.begin_migration(slot.get(), from, to).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        cluster.move_keys(slot.get(), from, to).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        cluster.finish_migration(slot.get(), from, to).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    });
    let mut rounds = 0;
    while !migration.is_finished() {
        let mut pipe = Pipeline::new();
        for i in 0..50 {
            pipe.get(format!("{{mig}}:{i}"));
            pipe.get(format!("other:{i}"));
        }
        // A fresh key written during the migration must be readable right after.
        pipe.set(format!("{{mig}}:new:{rounds}"), rounds);
        pipe.get(format!("{{mig}}:new:{rounds}"));
        let replies = client.execute(&pipe).await.unwrap();
        for i in 0..50 {
            assert_eq!(replies[2 * i].as_ref().unwrap(), &bulk(i), "round {rounds}");
            assert_eq!(replies[2 * i + 1].as_ref().unwrap(), &bulk(i));
        }
        assert_eq!(replies[101].as_ref().unwrap(), &bulk(rounds));
        rounds += 1;
        pause(Duration::from_millis(2)).await;
    }
    migration.join().expect("the migration succeeded");
    assert!(rounds > 10, "only {rounds} rounds ran during the migration");
    // After the migration the map names the new owner (MOVED updated it).
    let v: String = client.query(cmd("GET").arg("{mig}:7")).await.unwrap();
    assert_eq!(v, "7");
    assert_eq!(client.slot_map().node_for(slot).map(|n| n.port), Some(to));
    // A MOVED after the fact (the client's map made stale behind its back) is followed too.
    let back = cluster.other_master(to);
    cluster.migrate_slot(slot.get(), to, back).unwrap();
    let v: String = client.query(cmd("GET").arg("{mig}:8")).await.unwrap();
    assert_eq!(v, "8");
    assert_eq!(client.slot_map().node_for(slot).map(|n| n.port), Some(back));
}

async fn a_killed_primary_gives_typed_errors_then_its_replica_serves<'s, C: AnyClient>(
    cluster: &'s Cluster,
    helpers: &'s Scope<'s, '_>,
) {
    let slot = slot_for_key(b"fo");
    let victim = cluster.master_for_slot(slot.get());
    let config = Config::default().request_timeout(Some(Duration::from_millis(500)));
    let client = C::connect(cluster, config).await;
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        pipe.set(format!("{{fo}}:{i}"), i);
        pipe.set(format!("k:{i}"), i);
    }
    let replies = client.execute(&pipe).await.unwrap();
    assert!(replies.iter().all(|r| r.is_ok()));
    // Replication is asynchronous: the replica must have the keys before the kill. WAIT
    // runs on the connection that did the writes.
    let owner = NodeAddr::new("127.0.0.1", victim);
    let acked: i64 = client
        .query_node(&owner, cmd("WAIT").arg(1).arg(2000))
        .await
        .unwrap();
    assert_eq!(acked, 1);
    let kill = helpers.spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        cluster.kill_node(victim).unwrap();
    });
    let mut recovered = 0;
    let mut errors = 0;
    // A liveness bound for failover detection, not a performance assertion.
    for _ in 0..600 {
        let killed = kill.is_finished();
        let mut pipe = Pipeline::new();
        for i in 0..30 {
            pipe.get(format!("{{fo}}:{i}"));
            pipe.get(format!("k:{i}"));
        }
        let replies = client.execute(&pipe).await.unwrap();
        let mut all_ok = true;
        for (n, r) in replies.iter().enumerate() {
            match r {
                // Never a wrong value: either the right reply or a typed error.
                Ok(v) => assert_eq!(v, &bulk(n / 2)),
                Err(e) => {
                    all_ok = false;
                    errors += 1;
                    assert!(
                        matches!(
                            e.kind(),
                            ErrorKind::Io | ErrorKind::Timeout | ErrorKind::ClusterDown
                        ),
                        "unexpected error kind: {e}"
                    );
                }
            }
        }
        if killed && all_ok {
            recovered += 1;
            if recovered > 5 {
                break;
            }
        }
        pause(Duration::from_millis(50)).await;
    }
    kill.join().expect("the primary was killed");
    assert!(
        recovered > 5,
        "the client did not recover after the failover"
    );
    eprintln!(
        "failover ({} client): {errors} commands failed with typed errors meanwhile",
        C::kind()
    );
    let owner = client.slot_map().node_for(slot).cloned().unwrap();
    assert_ne!(
        owner.port, victim,
        "the slot map still names the dead primary"
    );
}

async fn a_stopped_node_times_out_alone_then_serves_again<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let config = Config::default().request_timeout(Some(Duration::from_millis(300)));
    let client = C::connect(cluster, config).await;
    let slot = slot_for_key(b"slow");
    let port = cluster.master_for_slot(slot.get());
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        pipe.set(format!("{{slow}}:{i}"), i);
        pipe.set(format!("fast:{i}"), i);
    }
    let replies = client.execute(&pipe).await.unwrap();
    assert!(replies.iter().all(|r| r.is_ok()));
    // SIGSTOP: the node's socket stays open and its kernel takes the requests, but no
    // reply comes until SIGCONT.
    cluster.pause_node(port).unwrap();
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        pipe.get(format!("{{slow}}:{i}"));
        pipe.get(format!("fast:{i}"));
    }
    let replies = client.execute(&pipe).await;
    cluster.resume_node(port).unwrap();
    let replies = replies.unwrap();
    for i in 0..30 {
        // The stopped node's commands time out; the others' replies are kept.
        assert_eq!(
            replies[2 * i].as_ref().unwrap_err().kind(),
            ErrorKind::Timeout
        );
        let fast = format!("fast:{i}");
        let fast_port = cluster.master_for_slot(slot_for_key(fast.as_bytes()).get());
        if fast_port != port {
            assert_eq!(replies[2 * i + 1].as_ref().unwrap(), &bulk(i));
        }
    }
    // The late replies never answer a later request: the blocking client closed the
    // connection that gave up, the async client reads and discards them in order.
    let mut ok = false;
    for _ in 0..20 {
        let replies = client.execute(&pipe).await.unwrap();
        if replies.iter().all(|r| r.is_ok()) {
            for (n, r) in replies.iter().enumerate() {
                assert_eq!(r.as_ref().unwrap(), &bulk(n / 2));
            }
            ok = true;
            break;
        }
        pause(Duration::from_millis(50)).await;
    }
    assert!(ok, "the node did not serve again after SIGCONT");
}

async fn a_reply_slower_than_the_deadline_never_shifts_later_ones<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let config = Config::default().request_timeout(Some(Duration::from_millis(200)));
    let client = C::connect(cluster, config).await;
    client
        .query::<()>(cmd("SET").arg("{slow}a").arg("first"))
        .await
        .unwrap();
    client
        .query::<()>(cmd("SET").arg("{slow}b").arg("second"))
        .await
        .unwrap();
    let node = client
        .slot_map()
        .node_for(slot_for_key(b"slow"))
        .cloned()
        .unwrap();
    let e = client
        .query_node::<Value>(&node, cmd("DEBUG").arg("SLEEP").arg("0.5"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // While the node still sleeps, requests may time out too; once it answers, each gets
    // its own reply, never the late "OK" of DEBUG SLEEP.
    let mut got = None;
    for _ in 0..20 {
        match client.query::<String>(cmd("GET").arg("{slow}b")).await {
            Ok(v) => {
                got = Some(v);
                break;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout),
        }
    }
    assert_eq!(got.as_deref(), Some("second"));
    let a: String = client.query(cmd("GET").arg("{slow}a")).await.unwrap();
    assert_eq!(a, "first");
}

async fn serial_execution_gives_the_same_replies<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let config = Config::default().execution(Execution::Serial);
    let client = C::connect(cluster, config).await;
    let mut pipe = Pipeline::new();
    for i in 0..300 {
        pipe.set(format!("ser:{i}"), i).get(format!("ser:{i}"));
    }
    let replies = client.execute(&pipe).await.unwrap();
    for i in 0..300 {
        assert!(replies[2 * i].is_ok());
        assert_eq!(replies[2 * i + 1].as_ref().unwrap(), &bulk(i));
    }
}

/// Atomic pipelines: committed with each result, aborted per command, refused across
/// slots, and carried through a live migration of their slot.
async fn atomic_pipelines_commit_abort_and_follow_a_migration<'s, C: AnyClient>(
    cluster: &'s Cluster,
    helpers: &'s Scope<'s, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let mut tx = Pipeline::new();
    tx.atomic()
        .set("{bt}a", 1)
        .add(cmd("INCR").arg("{bt}a"))
        .add(cmd("LPUSH").arg("{bt}a").arg(1));
    let r = client.execute(&tx).await.unwrap();
    assert_eq!(r[1].as_ref().unwrap(), &Value::Int(2));
    assert_eq!(r[2].as_ref().unwrap_err().code(), Some("WRONGTYPE"));

    let mut tx = Pipeline::new();
    tx.atomic().set("{bt}b", 1).add(cmd("SET").arg("{bt}b"));
    let r = client.execute(&tx).await.unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().kind(),
        ErrorKind::TransactionAborted
    );
    assert_eq!(r[1].as_ref().unwrap_err().kind(), ErrorKind::ServerError);

    let mut tx = Pipeline::new();
    tx.atomic().set("x", 1).set("y", 1);
    assert_eq!(
        client.execute(&tx).await.unwrap_err().kind(),
        ErrorKind::CrossSlot
    );

    // The slot moves in steps while transactions run; every commit counts exactly once.
    let slot = slot_for_key(b"bt").get();
    let migrations = helpers.spawn(move || {
        for _ in 0..3 {
            cluster
                .migrate_slot_in_steps(slot, Duration::from_millis(40))
                .unwrap();
        }
    });
    let mut committed = 0i64;
    let mut tx = Pipeline::new();
    tx.atomic()
        .add(cmd("INCR").arg("{bt}n1"))
        .add(cmd("INCR").arg("{bt}n2"));
    while !migrations.is_finished() {
        let r = client.execute(&tx).await.unwrap();
        assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
        committed += 1;
        pause(Duration::from_millis(1)).await;
    }
    migrations.join().expect("the migrations succeeded");
    let n1: i64 = client.query(cmd("GET").arg("{bt}n1")).await.unwrap();
    let n2: i64 = client.query(cmd("GET").arg("{bt}n2")).await.unwrap();
    assert_eq!((n1, n2), (committed, committed));
}

/// The commands trait's typed helpers, `arg` with slices and tuples, a pipeline that
/// ignores replies and converts the rest into a tuple: the same on both clients.
async fn typed_helpers_ignored_replies_and_tuples_come_from_the_library_traits<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    // Typed helpers, provided by `AsyncCommands` over the client's one `query`.
    client.set("typed:name", "Ada").await.unwrap();
    assert_eq!(client.incr("typed:visits", 2).await.unwrap(), 2);
    let name: Option<String> = client.get("typed:name").await.unwrap();
    assert_eq!(name.as_deref(), Some("Ada"));
    // `arg` takes a slice of pairs and a tuple: HSET key f v f v f v.
    let added: u64 = client
        .query(
            cmd("HSET")
                .arg("typed:user")
                .arg([("name", "Ada"), ("lang", "en")])
                .arg(("born", 1815)),
        )
        .await
        .unwrap();
    assert_eq!(added, 3);
    // Keys on several nodes, as a slice, through the split multi-key path.
    let keys = ["typed:a", "typed:b", "typed:c"];
    client
        .query::<()>(cmd("MSET").arg(vec![("typed:a", 1), ("typed:b", 2), ("typed:c", 3)]))
        .await
        .unwrap();
    let values: Vec<i64> = client.mget(&keys).await.unwrap();
    assert_eq!(values, vec![1, 2, 3]);

    // Ignored replies are left out of `execute` and of the tuple.
    let mut pipe = Pipeline::new();
    pipe.set("typed:x", 10)
        .ignore()
        .incr("typed:x", 5)
        .hget("typed:user", "lang")
        .del("typed:nothing")
        .ignore();
    let replies = client.execute(&pipe).await.unwrap();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].as_ref().unwrap(), &Value::Int(15));
    let (x, lang): (i64, String) = client.query_pipeline(&pipe).await.unwrap();
    assert_eq!((x, lang.as_str()), (15, "en"));
    client.query_pipeline::<()>(&pipe).await.unwrap();
    // An ignored command's error is left out of `execute`, but `query_pipeline` fails on
    // it: ignoring drops a value, never a failure.
    let mut failing = Pipeline::new();
    failing.incr("typed:name", 1).ignore().get("typed:a");
    let replies = client.execute(&failing).await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].as_ref().unwrap(), &bulk(1));
    let e = client.query_pipeline::<(i64,)>(&failing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerError);
}
