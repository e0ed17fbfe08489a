//! The reply-stream invariant, through the public API against real nodes: every byte
//! sequence written to a shared connection yields exactly one reply per waiting caller, in
//! order, whatever the callers send. Each command class takes its own path: refused
//! before sending, a dedicated connection for blocking commands, a named node for
//! multi-node and node-specific ones. RESP3 push frames (injected by a proxy in front of
//! every node) never take a reply's place.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::thread::Scope;
use std::time::Duration;

use redis_cluster_uring::config::PushHandler;
use redis_cluster_uring::engine;
use redis_cluster_uring::AsyncCommands;
use redis_cluster_uring::{
    cmd, commands, slot_for_key, Client, Cmd, Config, ErrorKind, NodeAddr, Pipeline, SlotMap, Value,
};
use support::clients::{on_both_clients, AnyClient};
use support::push_proxy::PushProxies;
use support::{client_with, cluster, run, Cluster, ClusterSpec};

on_both_clients! {
    refused_commands_send_nothing_and_name_the_way(3, 0);
    multi_node_commands_run_per_named_node(3, 0);
    a_multi_node_command_with_a_dead_node_says_which(3, 0);
}

/// A 3-master cluster whose nodes announce proxies that inject a RESP3 push frame before
/// every `every`-th reply on every connection.
fn cluster_behind_push_proxies(every: usize) -> (Cluster, PushProxies) {
    let mut proxies = PushProxies::bind(3).expect("bind proxy listeners");
    let cluster = Cluster::start(ClusterSpec {
        announce_ports: Some(proxies.ports()),
        ..support::spec(3, 0)
    })
    .unwrap_or_else(|e| panic!("could not start a test cluster: {e}"));
    let real: Vec<u16> = cluster.nodes().iter().map(|n| n.port).collect();
    proxies.start(&real, every);
    (cluster, proxies)
}

/// `n` keys with `prefix` that the client's map puts on `node`.
fn keys_on(client: &Client, node: &NodeAddr, prefix: &str, n: usize) -> Vec<String> {
    support::names_on(client, node, n, |i| format!("{prefix}:{i}"))
}

fn primaries(map: &SlotMap) -> Vec<NodeAddr> {
    map.shards().iter().map(|s| s.primary.clone()).collect()
}

/// Commands the shared connection must never carry, with the error kind each gets.
fn refused_commands() -> Vec<(Cmd, ErrorKind)> {
    let u = ErrorKind::Unsupported;
    vec![
        (Cmd::new(), ErrorKind::InvalidCommand),
        (cmd("MULTI"), u),
        (cmd("EXEC"), u),
        (cmd("WATCH").arg("k"), u),
        (cmd("SUBSCRIBE").arg("a").arg("b"), u),
        (cmd("PSUBSCRIBE").arg("a*"), u),
        (cmd("SSUBSCRIBE").arg("a"), u),
        (cmd("MONITOR"), u),
        (cmd("CLIENT").arg("REPLY").arg("OFF"), u),
        (cmd("CLIENT").arg("REPLY").arg("SKIP"), u),
        (cmd("CLIENT").arg("TRACKING").arg("ON"), u),
        (cmd("HELLO").arg(3), u),
        (cmd("SELECT").arg(1), u),
        (cmd("READONLY"), u),
        (cmd("RESET"), u),
        (cmd("QUIT"), u),
        (cmd("SCAN").arg(0), u),
        (cmd("WAIT").arg(0).arg(10), u),
        (cmd("CLUSTER").arg("FAILOVER"), u),
        (cmd("SCRIPT").arg("DEBUG").arg("SYNC"), u),
    ]
}

#[test]
fn every_class_on_one_shared_client_leaves_every_reply_in_place() {
    let (cluster, proxies) = cluster_behind_push_proxies(5);
    run(async {
        // Pushes reach the user's handler, never a caller.
        let handled = Rc::new(Cell::new(0u64));
        let config = Config::default().push_handler(PushHandler::new({
            let handled = handled.clone();
            move |_node, push| {
                assert!(matches!(push, Value::Push(_)), "{push:?}");
                handled.set(handled.get() + 1);
            }
        }));
        let client = client_with(&cluster, config).await;
        let nodes = primaries(&client.slot_map());
        assert_eq!(nodes.len(), 3);
        // The blocked command's node, and keys of that node for the traffic beside it.
        let queue = keys_on(&client, &nodes[0], "queue", 1).remove(0);
        let beside = keys_on(&client, &nodes[0], "beside", 100);

        // A BLPOP that blocks for ever, until this test pushes.
        let unblocked = Rc::new(Cell::new(false));
        let blpop = engine::spawn_local({
            let (client, queue, unblocked) = (client.clone(), queue.clone(), unblocked.clone());
            async move {
                let popped: Option<Vec<String>> = client
                    .query(cmd("BLPOP").arg(&queue).arg(0))
                    .await
                    .expect("BLPOP");
                unblocked.set(true);
                popped
            }
        });
        engine::yield_now().await;

        // Every refused class, over and over, from its own task.
        let refusals = engine::spawn_local({
            let client = client.clone();
            async move {
                for _ in 0..20 {
                    for (command, kind) in refused_commands() {
                        let e = client.query::<Value>(command).await.unwrap_err();
                        assert_eq!(e.kind(), kind, "{e}");
                    }
                }
            }
        });

        // Regular traffic with unique values from four tasks; every tenth step a
        // pipeline that mixes refused and blocking commands with reads and writes.
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let client = client.clone();
                engine::spawn_local(async move {
                    for i in 0..250 {
                        let key = format!("worker{w}:{i}");
                        let value = format!("value-{w}-{i}");
                        client.set(&key, &value).await.expect("SET");
                        let got: String = client.get(&key).await.expect("GET");
                        assert_eq!(got, value);
                        if i % 10 == 0 {
                            let mut pipe = Pipeline::new();
                            pipe.get(&key)
                                .add(Cmd::new())
                                .add(cmd("MULTI"))
                                .add(cmd("BLPOP").arg(&key).arg(0))
                                .add(cmd("DBSIZE"))
                                .add(cmd("SUBSCRIBE").arg("x").arg("y"))
                                .get(&key);
                            let replies = client.execute(&pipe).await.expect("pipeline");
                            assert_eq!(
                                replies[0].as_ref().unwrap(),
                                &Value::Bulk(value.clone().into())
                            );
                            assert_eq!(
                                replies[6].as_ref().unwrap(),
                                &Value::Bulk(value.clone().into())
                            );
                            // Refused alone: empty, MULTI, BLPOP in a pipeline, SUBSCRIBE.
                            for i in [1, 2, 3, 5] {
                                assert!(replies[i].is_err(), "{i}: {:?}", replies[i]);
                            }
                            // DBSIZE went to every primary, summed.
                            assert!(matches!(replies[4], Ok(Value::Int(n)) if n > 0));
                        }
                    }
                })
            })
            .collect();

        // Requests to the blocked command's node go on while it blocks.
        for (i, key) in beside.iter().enumerate() {
            client.set(key, i).await.expect("SET beside the BLPOP");
            let got: i64 = client.get(key).await.expect("GET beside the BLPOP");
            assert_eq!(got, i as i64);
        }
        for worker in workers {
            worker.await.expect("worker task");
        }
        refusals.await.expect("refusal task");
        assert!(
            !unblocked.get(),
            "the BLPOP ended before anything was pushed"
        );

        // Unblock it: it gets exactly the pushed value.
        let _: i64 = client
            .query(cmd("RPUSH").arg(&queue).arg("payload"))
            .await
            .unwrap();
        let popped = blpop.await.expect("BLPOP task");
        assert_eq!(popped, Some(vec![queue.clone(), "payload".to_string()]));

        // Finally 1,000 known values on every node, read back by concurrent callers.
        for (n, node) in nodes.iter().enumerate() {
            let keys = keys_on(&client, node, &format!("final{n}"), 1000);
            let mut pipe = Pipeline::new();
            for (i, key) in keys.iter().enumerate() {
                pipe.set(key, format!("{key}={i}"));
            }
            client.query_pipeline::<()>(&pipe).await.expect("load");
            let keys = Rc::new(keys);
            let readers: Vec<_> = (0..4)
                .map(|r| {
                    let (client, keys) = (client.clone(), keys.clone());
                    engine::spawn_local(async move {
                        for (i, key) in keys.iter().enumerate().skip(r).step_by(4) {
                            let got: String = client.get(key).await.expect("GET");
                            assert_eq!(got, format!("{key}={i}"));
                        }
                    })
                })
                .collect();
            for reader in readers {
                reader.await.expect("reader task");
            }
        }
        let stats = client.stats();
        assert!(stats.pushes > 0, "the proxies' pushes reached the client");
        assert_eq!(
            handled.get(),
            stats.pushes,
            "every push went to the handler"
        );
        assert!(stats.pushes <= proxies.injected());
        assert!(stats.refused >= 20 * refused_commands().len() as u64);
        assert_eq!(stats.blocking, 1);
    });
}

async fn refused_commands_send_nothing_and_name_the_way<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    client.query::<()>(commands::set("warm", 1)).await.unwrap();
    let before = client.stats().writes;
    for (command, kind) in refused_commands() {
        let e = client.query::<Value>(command).await.unwrap_err();
        assert_eq!(e.kind(), kind);
        assert!(!e.detail().is_empty());
    }
    let e = client.query::<Value>(cmd("MULTI")).await.unwrap_err();
    assert!(e.detail().contains("Pipeline::atomic"), "{e}");
    let e = client.query::<Value>(cmd("SCAN").arg(0)).await.unwrap_err();
    assert!(e.detail().contains("Client::scan"), "{e}");
    // Nothing was written for any of them.
    assert_eq!(client.stats().writes, before);
    // A named node refuses what would break its shared connection too.
    let node = primaries(&client.slot_map()).remove(0);
    for command in [cmd("MULTI"), cmd("SUBSCRIBE").arg("a"), Cmd::new()] {
        assert!(client.query_node::<Value>(&node, command).await.is_err());
    }
    assert_eq!(client.stats().writes, before);
}

async fn multi_node_commands_run_per_named_node<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let mut pipe = Pipeline::new();
    for i in 0..300 {
        pipe.set(format!("count:{i}"), i);
    }
    client.query_pipeline::<()>(&pipe).await.unwrap();
    let mut total = 0;
    for node in primaries(&client.slot_map()) {
        let n: i64 = client.query_node(&node, cmd("DBSIZE")).await.unwrap();
        assert!(n > 0, "{node} has some of the keys");
        total += n;
    }
    assert_eq!(total, 300);
    client.query::<()>(cmd("PING")).await.unwrap();

    // The same through the fan-out: every primary, merged by policy, in a pipeline
    // beside single-key commands and a cross-slot MGET.
    let mut pipe = Pipeline::new();
    pipe.add(cmd("DBSIZE"))
        .get("count:1")
        .add(cmd("KEYS").arg("count:1?"))
        .add(cmd("MGET").arg("count:1").arg("count:2"))
        .add(cmd("PING"))
        .add(cmd("SCRIPT").arg("LOAD").arg("return 1"))
        .add(cmd("RANDOMKEY"));
    let replies = client.execute(&pipe).await.unwrap();
    assert_eq!(replies[0].as_ref().unwrap(), &Value::Int(300));
    assert_eq!(replies[1].as_ref().unwrap(), &Value::Bulk("1".into()));
    match replies[2].as_ref().unwrap() {
        Value::Array(keys) => assert_eq!(keys.len(), 10, "count:10..count:19 on all nodes"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        replies[3].as_ref().unwrap(),
        &Value::Array(vec![Value::Bulk("1".into()), Value::Bulk("2".into())])
    );
    assert_eq!(
        replies[4].as_ref().unwrap(),
        &Value::SimpleString("PONG".into())
    );
    assert!(matches!(replies[5].as_ref().unwrap(), Value::Bulk(sha) if sha.len() == 40));
    assert!(matches!(replies[6].as_ref().unwrap(), Value::Bulk(_)));
    let dbsize: i64 = client.query(cmd("DBSIZE")).await.unwrap();
    assert_eq!(dbsize, 300);
    client.query::<()>(cmd("FLUSHALL")).await.unwrap();
    assert_eq!(
        client.query::<i64>(cmd("DBSIZE")).await.unwrap(),
        0,
        "every shard emptied"
    );

    // A key asked of a node that does not own it: MOVED comes back typed, with its
    // slot and target, and is not followed.
    let owner = client
        .slot_map()
        .node_for(slot_for_key(b"count:0"))
        .cloned()
        .unwrap();
    let other = primaries(&client.slot_map())
        .into_iter()
        .find(|n| *n != owner)
        .unwrap();
    let e = client
        .query_node::<Value>(&other, cmd("GET").arg("count:0"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Moved);
    let (slot, addr) = e.redirect_target().unwrap();
    assert_eq!(slot, slot_for_key(b"count:0"));
    assert_eq!(addr, owner.to_string());

    // WAIT waits for the writes of the shared connection: bounded only.
    let n: i64 = client
        .query_node(&owner, cmd("WAIT").arg(0).arg(100))
        .await
        .unwrap();
    assert_eq!(n, 0, "no replicas in this cluster");
    let e = client
        .query_node::<Value>(&owner, cmd("WAIT").arg(1).arg(0))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[test]
fn blocking_commands_use_dedicated_connections_closed_when_abandoned() {
    let cluster = cluster(3, 0);
    // A request timeout shorter than the command's own: the deadline is their sum.
    let config = Config::default().request_timeout(Some(Duration::from_millis(300)));
    run(async {
        let client = client_with(&cluster, config).await;
        let shared = client.connection_count();
        let popped: Option<Vec<String>> = client
            .query(cmd("BLPOP").arg("empty-list").arg("0.5"))
            .await
            .expect("a BLPOP that times out on the server is nil, not a client timeout");
        assert_eq!(popped, None);
        assert_eq!(
            client.blocking_connection_count(),
            1,
            "kept for the next one"
        );
        let connects = client.stats().connects;
        let _: Option<Vec<String>> = client
            .query(cmd("BRPOP").arg("empty-list").arg("0.1"))
            .await
            .unwrap();
        assert_eq!(client.stats().connects, connects, "the idle one was reused");
        assert_eq!(client.connection_count(), shared.max(1));

        // A caller that gives up while the command blocks closes its connection.
        let dedicated = client.blocking_connection_count();
        let abandoned = engine::timeout(
            Duration::from_millis(100),
            client.query::<Value>(cmd("BLPOP").arg("jobs").arg(0)),
        )
        .await;
        assert!(abandoned.is_err());
        let owner = client
            .slot_map()
            .node_for(slot_for_key(b"jobs"))
            .cloned()
            .unwrap();
        // The server drops the blocked client once the socket closes; then a pushed job
        // stays in the list for the next consumer instead of vanishing into a connection
        // nobody reads.
        let mut blocked = true;
        for _ in 0..200 {
            let info: String = client
                .query_node(&owner, cmd("INFO").arg("clients"))
                .await
                .unwrap();
            blocked = !info.contains("blocked_clients:0");
            if !blocked {
                break;
            }
            engine::sleep(Duration::from_millis(10)).await;
        }
        assert!(!blocked, "the abandoned BLPOP's connection was closed");
        assert!(client.blocking_connection_count() <= dedicated, "not kept");
        let _: i64 = client
            .query(cmd("RPUSH").arg("jobs").arg("j1"))
            .await
            .unwrap();
        let len: i64 = client.query(cmd("LLEN").arg("jobs")).await.unwrap();
        assert_eq!(len, 1);
        let popped: Option<Vec<String>> =
            client.query(cmd("BLPOP").arg("jobs").arg(0)).await.unwrap();
        assert_eq!(popped, Some(vec!["jobs".into(), "j1".into()]));

        // A consumer group named like a keyword is still a blocking read.
        let _: () = client
            .query(
                cmd("XGROUP")
                    .arg("CREATE")
                    .arg("events")
                    .arg("streams")
                    .arg("$")
                    .arg("MKSTREAM"),
            )
            .await
            .unwrap();
        let before = client.stats().blocking;
        let read: Value = client
            .query(
                cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("streams")
                    .arg("c1")
                    .arg("BLOCK")
                    .arg(50)
                    .arg("STREAMS")
                    .arg("events")
                    .arg(">"),
            )
            .await
            .unwrap();
        assert_eq!(read, Value::Nil);
        assert_eq!(client.stats().blocking, before + 1);

        // A malformed timeout is the caller's error, sent nowhere.
        let e = client
            .query::<Value>(cmd("BLPOP").arg("jobs").arg("soon"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidCommand);
    });
}

#[test]
fn huge_timeouts_do_not_panic() {
    let cluster = cluster(3, 0);
    let config = Config::default().request_timeout(Some(Duration::MAX));
    run(async {
        let client = client_with(&cluster, config).await;
        client.set("big", 1).await.unwrap();
        let _: Option<Vec<String>> = client
            .query(cmd("BLPOP").arg("big-list").arg("0.05"))
            .await
            .unwrap();
        client.shutdown(Duration::MAX).await;
        assert_eq!(
            client.get::<_, i64>("big").await.unwrap_err().kind(),
            ErrorKind::Shutdown
        );
    });
}

async fn a_multi_node_command_with_a_dead_node_says_which<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let dead = cluster.nodes()[0].port;
    let config = Config::default()
        .max_retries(1)
        .request_timeout(Some(Duration::from_secs(2)));
    let client = C::connect(cluster, config).await;
    let mut pipe = Pipeline::new();
    for i in 0..90 {
        pipe.set(format!("fan:{i}"), i);
    }
    client.query_pipeline::<()>(&pipe).await.unwrap();
    cluster.kill_node(dead).unwrap();
    let e = client.query::<i64>(cmd("DBSIZE")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PartialFailure, "{e}");
    let outcomes = e.node_outcomes().expect("every node's outcome");
    assert_eq!(outcomes.len(), 3);
    for (node, outcome) in outcomes {
        if node.port == dead {
            assert!(outcome.is_err(), "{node}: {outcome:?}");
        } else {
            assert!(
                matches!(outcome, Ok(Value::Int(n)) if *n > 0),
                "{node}: {outcome:?}"
            );
        }
    }
    assert!(
        e.detail().contains(&format!(":{dead}")),
        "names the node: {e}"
    );
    assert_eq!(
        client.query::<()>(cmd("PING")).await.unwrap_err().kind(),
        ErrorKind::PartialFailure
    );
    // The other nodes' connections are unaffected.
    let mut alive = 0;
    for i in 0..90 {
        let key = format!("fan:{i}");
        let owner = client
            .slot_map()
            .node_for(slot_for_key(key.as_bytes()))
            .cloned()
            .unwrap();
        if owner.port != dead {
            assert_eq!(
                client.query::<i64>(commands::get(&key)).await.unwrap(),
                i as i64
            );
            alive += 1;
        }
    }
    assert!(alive > 0);
}
