//! The per-node report against real nodes: every node's share of a pipeline, a stopped
//! node named while the others' replies are kept, redirects counted where they happened,
//! and a pipeline that mixes every command class. Every scenario runs on both clients.

mod support;

use std::thread::Scope;
use std::time::Duration;

use redis_cluster_uring::{cmd, slot_for_key, Cmd, Config, ErrorKind, Pipeline, Value};
use support::clients::{names_in, on_both_clients, AnyClient};
use support::Cluster;

on_both_clients! {
    a_fan_out_pipeline_reports_every_nodes_share(3, 0);
    a_stopped_node_is_named_and_the_others_replies_kept(3, 0);
    redirects_are_counted_on_the_node_that_sent_them(3, 0);
    a_pipeline_mixing_every_class_answers_each_in_place(3, 0);
    an_atomic_pipeline_reports_its_one_node(3, 0);
}

async fn set<C: AnyClient>(client: &mut C, key: &str, value: &str) {
    client
        .query::<()>(cmd("SET").arg(key).arg(value))
        .await
        .unwrap();
}

async fn a_fan_out_pipeline_reports_every_nodes_share<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let mut pipe = Pipeline::new();
    for i in 0..300 {
        pipe.set(format!("r:{i}"), i);
    }
    let (replies, report) = client.execute_with_report(&pipe).await.unwrap();
    assert!(replies.iter().all(|r| r.is_ok()));
    assert_eq!(report.nodes.len(), 3);
    assert_eq!(report.rounds, 1);
    assert_eq!(report.nodes.iter().map(|n| n.commands).sum::<usize>(), 300);
    let encoded: usize = pipe.commands().iter().map(Cmd::encoded_len).sum();
    assert_eq!(
        report.nodes.iter().map(|n| n.bytes_sent).sum::<usize>(),
        encoded
    );
    // 300 × "+OK\r\n".
    assert_eq!(
        report.nodes.iter().map(|n| n.reply_bytes).sum::<usize>(),
        300 * 5
    );
    for n in &report.nodes {
        assert!(n.healthy(), "{n:?}");
        assert_eq!((n.batches, n.redirects, n.error_replies), (1, 0, 0));
        assert!(n.round_trip.unwrap() <= report.elapsed);
    }
    eprintln!("{report}");
}

async fn a_stopped_node_is_named_and_the_others_replies_kept<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let config = Config::default().request_timeout(Some(Duration::from_millis(300)));
    let client = C::connect(cluster, config).await;
    let victim = client.slot_map().primaries().next().unwrap().clone();
    let mut pipe = Pipeline::new();
    for i in 0..90 {
        pipe.get(format!("s:{i}"));
    }
    client.execute(&pipe).await.unwrap(); // connections open
    cluster.pause_node(victim.port).unwrap();
    let outcome = client.execute_with_report(&pipe).await;
    cluster.resume_node(victim.port).unwrap();
    let (replies, report) = outcome.unwrap();
    let stopped = report.node(&victim).unwrap();
    assert!(!stopped.healthy());
    assert_eq!(stopped.timeouts, stopped.commands);
    assert_eq!(stopped.round_trip, None);
    assert_eq!(report.slowest().unwrap().node, victim);
    let map = client.slot_map();
    for (i, r) in replies.iter().enumerate() {
        let key = format!("s:{i}");
        let on_victim = map.node_for(slot_for_key(key.as_bytes())) == Some(&victim);
        match r {
            Err(e) if on_victim => assert_eq!(e.kind(), ErrorKind::Timeout),
            Ok(Value::Nil) if !on_victim => {}
            other => panic!("{key} (on the stopped node: {on_victim}): {other:?}"),
        }
    }
    for n in report.nodes.iter().filter(|n| n.node != victim) {
        assert!(n.healthy(), "{n:?}");
    }
    eprintln!("{report}");
}

async fn redirects_are_counted_on_the_node_that_sent_them<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let mut client = C::connect(cluster, Config::default()).await;
    let key = "moving-key";
    let slot = slot_for_key(key.as_bytes()).get();
    set(&mut client, key, "v").await;
    let from = cluster.master_for_slot(slot);
    let to = cluster.other_master(from);
    // The client's map still names the old owner.
    cluster.migrate_slot(slot, from, to).unwrap();
    let mut pipe = Pipeline::new();
    pipe.get(key);
    let (replies, report) = client.execute_with_report(&pipe).await.unwrap();
    assert_eq!(replies[0].as_ref().unwrap(), &Value::Bulk("v".into()));
    assert_eq!(report.rounds, 2);
    let old = report.nodes.iter().find(|n| n.node.port == from).unwrap();
    let new = report.nodes.iter().find(|n| n.node.port == to).unwrap();
    assert_eq!((old.redirects, old.commands), (1, 1));
    assert_eq!((new.redirects, new.commands), (0, 1));
}

/// One pipeline with a command of every class: regular, cross-slot multi-key (split),
/// multi-node (fanned out), refused (connection state, blocking, node-specific, empty),
/// and a server error. Each gets its own result at its own index, and the report shows
/// every node written once.
async fn a_pipeline_mixing_every_class_answers_each_in_place<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let mut client = C::connect(cluster, Config::default()).await;
    let primary = client.slot_map().primaries().next().unwrap().clone();
    let keys = names_in(&client.slot_map(), &primary, 1, |i| format!("mix:{i}"));
    set(&mut client, &keys[0], "x").await;
    set(&mut client, "mix:a", "1").await;
    set(&mut client, "mix:b", "2").await;
    let mut pipe = Pipeline::new();
    pipe.get("mix:a") // 0 regular
        .add(cmd("MGET").arg("mix:a").arg("mix:b").arg("mix:none")) // 1 split
        .add(cmd("DBSIZE")) // 2 fan-out
        .add(cmd("MULTI")) // 3 connection state
        .add(cmd("BLPOP").arg("q").arg(1)) // 4 blocking
        .add(cmd("CONFIG").arg("GET").arg("maxmemory")) // 5 node-specific
        .add(Cmd::new()) // 6 empty
        .add(cmd("LPUSH").arg(&keys[0]).arg(1)) // 7 WRONGTYPE
        .add(cmd("PING")) // 8 fan-out
        .get("mix:b"); // 9 regular
    let (r, report) = client.execute_with_report(&pipe).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap(), &Value::Bulk("1".into()));
    assert_eq!(
        r[1].as_ref().unwrap(),
        &Value::Array(vec![
            Value::Bulk("1".into()),
            Value::Bulk("2".into()),
            Value::Nil
        ])
    );
    assert!(matches!(r[2], Ok(Value::Int(n)) if n >= 3));
    assert_eq!(r[3].as_ref().unwrap_err().kind(), ErrorKind::Unsupported);
    assert_eq!(r[4].as_ref().unwrap_err().kind(), ErrorKind::Unsupported);
    assert_eq!(r[5].as_ref().unwrap_err().kind(), ErrorKind::Unsupported);
    assert_eq!(r[6].as_ref().unwrap_err().kind(), ErrorKind::InvalidCommand);
    assert_eq!(r[7].as_ref().unwrap_err().code(), Some("WRONGTYPE"));
    assert!(r[8].is_ok());
    assert_eq!(r[9].as_ref().unwrap(), &Value::Bulk("2".into()));
    assert_eq!(report.rounds, 1);
    assert_eq!(report.nodes.len(), 3, "every node written once");
    assert!(report.nodes.iter().all(|n| n.batches == 1));
    assert_eq!(
        report.nodes.iter().map(|n| n.error_replies).sum::<usize>(),
        1,
        "the WRONGTYPE"
    );
}

async fn an_atomic_pipeline_reports_its_one_node<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let mut tx = Pipeline::new();
    tx.atomic().set("{at}a", 1).set("{at}b", 2);
    let (r, report) = client.execute_with_report(&tx).await.unwrap();
    assert!(r.iter().all(|r| r.is_ok()));
    assert_eq!(report.nodes.len(), 1);
    // MULTI, the two commands, EXEC.
    assert_eq!(report.nodes[0].commands, 4);
    assert!(report.nodes[0].healthy());
}
