//! Numbered databases (`Config::database`, the URL path): every connection selects the
//! database in its handshake, so a key in database 3 stays there through redirects,
//! failovers, reconnects and scans. Valkey 9 clusters started with `cluster-databases 4`
//! have them; Redis Cluster refuses `SELECT`, and connecting says so. Both servers are
//! started here whatever `CLUSTER_SERVER` says: each half needs its own.

mod support;

use std::thread::Scope;
use std::time::Duration;

use redis_cluster_uring::scan::ScanOptions;
use redis_cluster_uring::{cmd, Config, ErrorKind, NodeAddr, Pipeline, Value};
use support::clients::{on_both_clients, AnyClient};
use support::{Cluster, ClusterSpec, Server};
use test_cluster::Reply;

/// A Valkey 9 cluster with four databases in cluster mode.
fn valkey_with_databases(replicas: usize) -> Cluster {
    let spec = ClusterSpec {
        masters: 3,
        replicas_per_master: replicas,
        server: Server::Valkey,
        extra_config: vec![("cluster-databases".into(), "4".into())],
        ..ClusterSpec::default()
    };
    Cluster::start(spec).unwrap_or_else(|e| panic!("could not start a Valkey cluster: {e}"))
}

/// A Redis 7 cluster (only database 0).
fn redis_cluster() -> Cluster {
    let spec = ClusterSpec {
        masters: 3,
        server: Server::Redis,
        ..ClusterSpec::default()
    };
    Cluster::start(spec).unwrap_or_else(|e| panic!("could not start a Redis cluster: {e}"))
}

/// `key`'s value in database `db` on the node at `port`, asked on a connection of the
/// harness's own.
fn value_in(cluster: &Cluster, port: u16, db: u32, key: &str) -> Option<String> {
    let select = vec![b"SELECT".to_vec(), db.to_string().into_bytes()];
    let get = vec![b"GET".to_vec(), key.as_bytes().to_vec()];
    let replies = cluster.pipeline(port, &[select, get]).unwrap();
    match &replies[1] {
        Reply::Bulk(None) => None,
        other => other.text(),
    }
}

/// `GET key` once the cluster serves it again (within 10 s): a kill may fail the requests
/// in flight (typed errors), and a failover leaves the slot unserved for a while.
async fn get_once_served<C: AnyClient>(client: &mut C, key: &str) -> Option<String> {
    let mut last = None;
    for _ in 0..100 {
        match client.query::<Option<String>>(cmd("GET").arg(key)).await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        redis_cluster_uring::engine::sleep(Duration::from_millis(100)).await;
    }
    panic!("{key} not served within 10 s: {last:?}")
}

fn db_keys() -> ScanOptions {
    ScanOptions {
        pattern: Some("db:*".into()),
        ..ScanOptions::default()
    }
}

fn owner(cluster: &Cluster, key: &str) -> u16 {
    cluster.master_for_slot(redis_cluster_uring::slot::slot_for_key(key.as_bytes()).get())
}

async fn keys_of_database_3_are_invisible_from_database_0<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let three = C::connect(cluster, Config::default().database(3)).await;
    // The URL's path says the same.
    let urls: Vec<String> = cluster
        .seed_addrs()
        .iter()
        .map(|a| format!("redis://{a}/0"))
        .collect();
    let zero = C::try_connect(&urls, Config::default()).await.unwrap();
    let mut pipe = Pipeline::new();
    for i in 0..100 {
        pipe.set(format!("db:{i}"), format!("three-{i}"));
    }
    three.execute(&pipe).await.unwrap();
    zero.query::<()>(cmd("SET").arg("db:0").arg("zero"))
        .await
        .unwrap();
    let mut reads = Pipeline::new();
    for i in 0..100 {
        reads.get(format!("db:{i}"));
    }
    let in_three: Vec<Option<String>> = three.query_pipeline(&reads).await.unwrap();
    let in_zero: Vec<Option<String>> = zero.query_pipeline(&reads).await.unwrap();
    for i in 0..100 {
        assert_eq!(in_three[i].as_deref(), Some(format!("three-{i}").as_str()));
        let expected = (i == 0).then_some("zero");
        assert_eq!(in_zero[i].as_deref(), expected, "db:{i} in database 0");
    }
    // On the server, where the keys are.
    let port = owner(cluster, "db:7");
    assert_eq!(
        value_in(cluster, port, 3, "db:7").as_deref(),
        Some("three-7")
    );
    assert_eq!(value_in(cluster, port, 0, "db:7"), None);
    // SCAN sees database 3's keys only.
    let scanned = three.scan(db_keys(), Duration::ZERO).await.unwrap();
    let mut keys = scanned.keys;
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 100);
    let scanned = zero.scan(db_keys(), Duration::ZERO).await.unwrap();
    assert_eq!(scanned.keys, vec![bytes::Bytes::from_static(b"db:0")]);
    // The connection keeps its database: SELECT from a caller is refused.
    let refused = three
        .query::<Value>(cmd("SELECT").arg(0))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unsupported, "{refused}");
}

async fn a_redirect_and_a_reconnect_keep_the_database<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let mut client = C::connect(cluster, Config::default().database(3)).await;
    client
        .query::<()>(cmd("SET").arg("warm").arg(1))
        .await
        .unwrap();
    // An empty slot moves behind the client's back: its first write there is redirected
    // to a node it has no connection to yet, whose connection selects database 3 too.
    let key = "moved:{x}";
    let slot = redis_cluster_uring::slot::slot_for_key(key.as_bytes()).get();
    let from = cluster.master_for_slot(slot);
    let to = cluster.other_master(from);
    cluster.migrate_slot(slot, from, to).unwrap();
    let before = client.stats();
    client
        .query::<()>(cmd("SET").arg(key).arg("after-move"))
        .await
        .unwrap();
    assert!(
        client.stats().redirects > before.redirects,
        "the write was redirected"
    );
    assert_eq!(value_in(cluster, to, 3, key).as_deref(), Some("after-move"));
    assert_eq!(value_in(cluster, to, 0, key), None);
    // Every connection killed: the reconnects select database 3 again.
    for node in cluster.nodes() {
        let _ = cluster.run(node.port, &["CLIENT", "KILL", "TYPE", "normal"]);
    }
    assert_eq!(
        get_once_served(&mut client, key).await.as_deref(),
        Some("after-move")
    );
}

async fn a_failover_keeps_the_database<C: AnyClient>(cluster: &Cluster, _: &Scope<'_, '_>) {
    let mut client = C::connect(cluster, Config::default().database(3)).await;
    let key = "failover:{y}";
    client
        .query::<()>(cmd("SET").arg(key).arg("kept"))
        .await
        .unwrap();
    let slot = redis_cluster_uring::slot::slot_for_key(key.as_bytes()).get();
    let old = cluster.master_for_slot(slot);
    // Replicated before the primary dies (WAIT on the harness's own connection would
    // wait for its own writes only).
    let replicated = client
        .query_node::<i64>(
            &NodeAddr::new("127.0.0.1", old),
            cmd("WAIT").arg(1).arg(2000),
        )
        .await
        .unwrap();
    assert!(replicated >= 1);
    cluster.kill_node(old).unwrap();
    let promoted = cluster.wait_for_failover(slot, old).unwrap();
    assert_eq!(
        get_once_served(&mut client, key).await.as_deref(),
        Some("kept")
    );
    assert_eq!(value_in(cluster, promoted, 3, key).as_deref(), Some("kept"));
}

async fn a_server_without_databases_refuses_with_a_config_error<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let urls: Vec<String> = cluster
        .seed_addrs()
        .iter()
        .map(|a| format!("redis://{a}/3"))
        .collect();
    let error = match C::try_connect(&urls, Config::default()).await {
        Ok(_) => panic!("connected to database 3 of a Redis cluster"),
        Err(e) => e,
    };
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.detail().contains("database 3"), "{error}");
    // The server's own answer is in it.
    assert!(error.detail().contains("SELECT"), "{error}");
    // Database 0 is Redis Cluster's one database: no SELECT is sent, it works.
    let zero = C::try_connect(&cluster.seed_addrs(), Config::default().database(0))
        .await
        .unwrap();
    zero.query::<()>(cmd("SET").arg("k").arg(1)).await.unwrap();
}

on_both_clients! {
    keys_of_database_3_are_invisible_from_database_0 => valkey_with_databases(0);
    a_redirect_and_a_reconnect_keep_the_database => valkey_with_databases(0);
    a_failover_keeps_the_database => valkey_with_databases(1);
    a_server_without_databases_refuses_with_a_config_error => redis_cluster();
}
