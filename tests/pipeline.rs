//! Pipelines across a real 3-master cluster: order, mixed commands, errors as values,
//! large values, serial vs parallel and cross-slot splits on both clients; the async
//! client's auto-pipelining of concurrent callers and its backlog cap.

mod support;

use std::rc::Rc;
use std::thread::Scope;

use redis_cluster_uring::engine;
use redis_cluster_uring::AsyncCommands;
use redis_cluster_uring::{cmd, Config, ErrorKind, Execution, Pipeline, Value};
use support::clients::{on_both_clients, AnyClient};
use support::{client, cluster, run, Cluster};

on_both_clients! {
    pipelines_of_1_100_and_10000_commands_come_back_in_order(3, 0);
    empty_pipeline_returns_nothing_without_io(3, 0);
    server_errors_are_values_and_raise_on_error_fails_the_whole(3, 0);
    one_mebibyte_values_and_hash_tags(3, 0);
    serial_and_parallel_modes_give_identical_results(3, 0);
    cross_slot_mget_mset_del_are_split_by_slot_and_merged(3, 0);
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bulk(b) => Some(b),
        _ => None,
    }
}

/// Builds a pipeline of `n` mixed commands over keys spread across every node and returns
/// it with a checker for the replies.
fn mixed_pipeline(prefix: &str, n: usize) -> Pipeline {
    let mut pipe = Pipeline::with_capacity(n);
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        match i % 5 {
            0 => pipe.set(&key, format!("v{i}")),
            1 => pipe.add(cmd("INCRBY").arg(format!("{prefix}:ctr:{}", i % 7)).arg(1)),
            2 => pipe.add(
                cmd("RPUSH")
                    .arg(format!("{{{prefix}:list}}:{}", i % 3))
                    .arg(i),
            ),
            3 => pipe.add(cmd("ECHO").arg(format!("e{i}"))),
            _ => pipe.get(format!("{prefix}:{}", i - 4)),
        };
    }
    pipe
}

fn check_mixed(prefix: &str, n: usize, replies: &[redis_cluster_uring::Result<Value>]) {
    assert_eq!(replies.len(), n);
    for (i, r) in replies.iter().enumerate() {
        let v = r
            .as_ref()
            .unwrap_or_else(|e| panic!("command {i} failed: {e}"));
        match i % 5 {
            0 => assert_eq!(v, &Value::SimpleString("OK".into()), "reply {i}"),
            1 | 2 => assert!(matches!(v, Value::Int(n) if *n >= 1), "reply {i}: {v:?}"),
            3 => assert_eq!(bulk(v), Some(format!("e{i}").as_bytes()), "reply {i}"),
            _ => assert_eq!(
                bulk(v),
                Some(format!("v{}", i - 4).as_bytes()),
                "reply {i} ({prefix})"
            ),
        }
    }
}

async fn pipelines_of_1_100_and_10000_commands_come_back_in_order<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    assert_eq!(client.slot_map().shards().len(), 3);
    for n in [1, 100, 10_000] {
        let prefix = format!("order{n}");
        let pipe = mixed_pipeline(&prefix, n);
        let replies = client.execute(&pipe).await.unwrap();
        check_mixed(&prefix, n, &replies);
    }
    // Every node took part: the 10,000-command pipeline spread over all three.
    assert_eq!(client.connection_count(), 3);
}

async fn empty_pipeline_returns_nothing_without_io<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let before = client.stats();
    let replies = client.execute(&Pipeline::new()).await.unwrap();
    assert!(replies.is_empty());
    assert_eq!(client.stats().writes, before.writes);
}

async fn server_errors_are_values_and_raise_on_error_fails_the_whole<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let mut pipe = Pipeline::new();
    pipe.set("err:str", "x")
        .add(cmd("LPUSH").arg("err:str").arg(1)) // WRONGTYPE
        .get("err:str")
        .add(cmd("NOSUCHCOMMAND").arg("k"));
    let replies = client.execute(&pipe).await.unwrap();
    assert!(replies[0].is_ok());
    let e = replies[1].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerError);
    assert_eq!(e.code(), Some("WRONGTYPE"));
    assert_eq!(bulk(replies[2].as_ref().unwrap()), Some(&b"x"[..]));
    assert_eq!(
        replies[3].as_ref().unwrap_err().kind(),
        ErrorKind::ServerError
    );

    pipe.raise_on_error(true);
    let e = client.execute(&pipe).await.unwrap_err();
    assert_eq!(e.code(), Some("WRONGTYPE"));

    // Cross-slot commands that cannot be split are refused before sending, for that
    // command only.
    let mut pipe = Pipeline::new();
    pipe.add(cmd("SINTER").arg("a").arg("b")).get("err:str");
    let replies = client.execute(&pipe).await.unwrap();
    assert_eq!(
        replies[0].as_ref().unwrap_err().kind(),
        ErrorKind::CrossSlot
    );
    assert!(replies[1].is_ok());
}

async fn one_mebibyte_values_and_hash_tags<C: AnyClient>(cluster: &Cluster, _: &Scope<'_, '_>) {
    let client = C::connect(cluster, Config::default()).await;
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let mut pipe = Pipeline::new();
    for i in 0..4 {
        pipe.set(format!("big:{i}"), &big[..]);
    }
    for i in 0..4 {
        pipe.get(format!("big:{i}"));
    }
    pipe.add(cmd("MSET").arg("{tag}a").arg(1).arg("{tag}b").arg(2));
    pipe.add(cmd("MGET").arg("{tag}a").arg("{tag}b"));
    let replies = client.execute(&pipe).await.unwrap();
    for r in &replies[4..8] {
        assert_eq!(bulk(r.as_ref().unwrap()).map(|b| b.len()), Some(big.len()));
        assert!(bulk(r.as_ref().unwrap()).unwrap() == &big[..]);
    }
    let mget: Vec<String> =
        redis_cluster_uring::FromReply::from_reply(replies[9].clone().unwrap()).unwrap();
    assert_eq!(mget, vec!["1", "2"]);
}

async fn serial_and_parallel_modes_give_identical_results<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let parallel = C::connect(cluster, Config::default()).await;
    let serial = C::connect(cluster, Config::default().execution(Execution::Serial)).await;
    let mut setup = Pipeline::new();
    for i in 0..300 {
        setup.set(format!("same:{i}"), i * 3);
    }
    parallel.execute(&setup).await.unwrap();
    let mut reads = Pipeline::new();
    for i in 0..300 {
        reads.get(format!("same:{i}"));
        reads.add(cmd("STRLEN").arg(format!("same:{i}")));
    }
    let a: Vec<Value> = parallel.query_pipeline(&reads).await.unwrap();
    let b: Vec<Value> = serial.query_pipeline(&reads).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(bulk(&a[2 * 7]), Some(&b"21"[..]));
}

#[test]
fn concurrent_callers_share_connections_and_batch_writes() {
    let cluster = cluster(3, 0);
    run(async {
        let client = Rc::new(client(&cluster).await);
        client.set("auto:key", "v").await.unwrap();
        let before = client.stats();
        let mut tasks = Vec::new();
        for t in 0..50 {
            let client = client.clone();
            tasks.push(engine::spawn_local(async move {
                for i in 0..20 {
                    let n = client.incr(format!("auto:{t}"), 1).await.unwrap();
                    assert_eq!(n, i + 1);
                    let v: String = client.get("auto:key").await.unwrap();
                    assert_eq!(v, "v");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let after = client.stats();
        let commands = 50 * 20 * 2;
        let writes = after.writes - before.writes;
        // 50 callers issue their commands in the same loop turns: those share one write per
        // node, so there are far fewer writes than commands.
        assert!(
            writes * 4 < commands,
            "{writes} writes for {commands} commands"
        );
        assert_eq!(client.connection_count(), 3);
    });
}

#[test]
fn backlog_beyond_the_cap_is_shed_with_a_typed_error() {
    let cluster = cluster(3, 0);
    run(async {
        let config = Config {
            max_queued_bytes: 256 * 1024,
            ..Config::default()
        }
        .max_retries(0);
        let client = support::client_with(&cluster, config).await;
        // The node's connection open and idle first (the slot-map refresh at connect may
        // still have a question queued on it otherwise).
        client.set("{shed}:warm", 1).await.unwrap();
        let big = vec![b'x'; 1 << 20];
        // Forty 1 MiB SETs queued in the same loop turn on one node: the first fills the
        // connection's queue, the rest are refused instead of buffered.
        let sets = (0..40).map(|i| client.set(format!("{{shed}}:{i}"), &big[..]));
        let results = futures_join_all(sets).await;
        let shed = results
            .iter()
            .filter(|r| matches!(r, Err(e) if e.kind() == ErrorKind::Overloaded))
            .count();
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(shed > 0, "nothing was shed");
        assert!(results.iter().all(|r| match r {
            Ok(()) => true,
            Err(e) => e.kind() == ErrorKind::Overloaded,
        }));
        // The connection is fine afterwards.
        let v: Option<Vec<u8>> = client.get("{shed}:0").await.unwrap();
        assert_eq!(v.map(|v| v.len()), Some(big.len()));
    });
}

/// Polls every future in one task, so they all start in the same loop turn.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (fut, slot) in pending.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

async fn cross_slot_mget_mset_del_are_split_by_slot_and_merged<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let keys: Vec<String> = (0..20).map(|i| format!("split:{i}")).collect();
    let mut mset = cmd("MSET");
    for k in &keys {
        mset.push_arg(k.as_str()).push_arg(format!("v-{k}"));
    }
    let mut mget = cmd("MGET");
    for k in &keys {
        mget.push_arg(k.as_str());
    }
    mget.push_arg("split:missing");
    let mut del = cmd("DEL");
    for k in keys.iter().take(10) {
        del.push_arg(k.as_str());
    }
    let mut pipe = Pipeline::new();
    // The MGET before the MSET must not see its values: parts keep pipeline order.
    pipe.add(mget.clone())
        .add(mset)
        .add(mget.clone())
        .add(del)
        .add(mget);
    let replies = client.execute(&pipe).await.unwrap();
    let strings = |v: &redis_cluster_uring::Result<Value>| -> Vec<Option<String>> {
        redis_cluster_uring::FromReply::from_reply(v.clone().unwrap()).unwrap()
    };
    assert!(strings(&replies[0]).iter().all(Option::is_none));
    assert_eq!(
        replies[1].as_ref().unwrap(),
        &Value::SimpleString("OK".into())
    );
    let want: Vec<Option<String>> = keys
        .iter()
        .map(|k| Some(format!("v-{k}")))
        .chain([None])
        .collect();
    assert_eq!(strings(&replies[2]), want);
    assert_eq!(replies[3].as_ref().unwrap(), &Value::Int(10));
    let last = strings(&replies[4]);
    assert!(last[..10].iter().all(Option::is_none));
    assert_eq!(last[10], Some("v-split:10".to_string()));
    // The same through the single-command API.
    let n: i64 = client
        .query(cmd("EXISTS").arg("split:11").arg("split:12").arg("split:1"))
        .await
        .unwrap();
    assert_eq!(n, 2);
}
