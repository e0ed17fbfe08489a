//! The client-side cache (`Config::cache`) against real clusters, on both clients: what
//! it answers, and every rule that keeps it correct: another client's write invalidates
//! (the server's push), a write through the client invalidates before it is sent, a
//! flush drops everything, a killed connection drops what it filled, a failover and a
//! migration drop their slots' entries, replica reads never fill.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Scope;
use std::time::{Duration, Instant};

use redis_cluster_uring::{
    cmd, slot_for_key, CacheConfig, Cmd, Config, NodeAddr, Pipeline, ReadFrom, ReplicaChoice,
    Stats, Value,
};
use support::clients::{names_in, on_both_clients, pause, AnyClient};
use support::Cluster;

on_both_clients! {
    every_cached_command_is_answered_as_the_server_would(3, 0);
    another_clients_write_is_seen_once_its_invalidation_arrives(3, 0);
    writes_through_the_client_invalidate_before_they_are_sent(3, 0);
    a_flush_drops_every_entry(3, 0);
    a_killed_connection_drops_what_it_filled(3, 0);
    a_failover_drops_the_old_primarys_entries(3, 1);
    a_migration_drops_the_slots_entries(3, 0);
    replica_reads_never_fill_the_cache(3, 1);
}

/// Sets its flag when dropped: a helper thread waiting on it is released even when the
/// scenario fails.
struct ReleaseOnDrop<'a>(&'a AtomicBool);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Callers of one async client that miss the same key at once send one `GET`: the others
/// wait for its reply (hits once it is kept).
#[test]
fn concurrent_misses_of_one_key_send_one_read() {
    let cluster = support::cluster(3, 0);
    support::run(async {
        let client = <redis_cluster_uring::Client as AnyClient>::connect(&cluster, cached()).await;
        let key = "coalesce:k";
        let port = port_of(&cluster, key);
        cluster.run(port, &["SET", key, "v"]).unwrap();
        for round in 0..3 {
            // Invalidated by another client's write before each round but the first.
            if round > 0 {
                cluster.run(port, &["SET", key, "v"]).unwrap();
                pause(Duration::from_millis(20)).await;
            }
            let served = get_calls(&cluster, port);
            let get = || client.query::<String>(cmd("GET").arg(key));
            let (a, b, c, d, e, f, g, h) =
                tokio::join!(get(), get(), get(), get(), get(), get(), get(), get());
            for v in [a, b, c, d, e, f, g, h] {
                assert_eq!(v.unwrap(), "v");
            }
            assert_eq!(
                get_calls(&cluster, port) - served,
                1,
                "round {round}: eight callers' misses sent more than one GET"
            );
        }
    });
}

fn cached() -> Config {
    Config::default().cache(CacheConfig::default())
}

/// `GET` calls `port` has served (`INFO commandstats`).
fn get_calls(cluster: &Cluster, port: u16) -> u64 {
    let info = cluster
        .run(port, &["INFO", "commandstats"])
        .ok()
        .and_then(|r| r.text())
        .unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("cmdstat_get:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn port_of(cluster: &Cluster, key: &str) -> u16 {
    cluster.master_for_slot(slot_for_key(key.as_bytes()).get())
}

/// `n` keys named `prefix{i}` owned by the node of `port`.
fn keys_on<C: AnyClient>(client: &C, port: u16, prefix: &str, n: usize) -> Vec<String> {
    let map = client.slot_map();
    names_in(&map, &NodeAddr::new("127.0.0.1", port), n, |i| {
        format!("{prefix}{i}")
    })
}

/// Reads `key` through the client until it answers `want` (a liveness bound of 5 s:
/// the invalidation's trip).
async fn eventually<C: AnyClient>(client: &C, key: &str, want: Option<&str>) -> Duration {
    until_reads(client, cmd("GET").arg(key), want).await
}

/// Runs `read` through the client until it answers `want` (the same bound).
async fn until_reads<C: AnyClient>(client: &C, read: Cmd, want: Option<&str>) -> Duration {
    let start = Instant::now();
    loop {
        let got: Option<String> = client.query(read.clone()).await.unwrap();
        if got.as_deref() == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{read:?} still reads {got:?}, not {want:?}"
        );
        pause(Duration::from_millis(1)).await;
    }
}

fn delta(after: Stats, before: Stats) -> (u64, u64) {
    (
        after.cache_hits - before.cache_hits,
        after.cache_misses - before.cache_misses,
    )
}

async fn every_cached_command_is_answered_as_the_server_would<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, cached()).await;
    let plain = C::connect(cluster, Config::default()).await;
    let mut setup = Pipeline::new();
    setup
        .set("c:str", "hello")
        .hset("c:hash", "f", "v")
        .hset("c:hash", "g", "w")
        .sadd("c:set", "m")
        .del("c:none");
    plain.query_pipeline::<()>(&setup).await.unwrap();
    let reads = [
        cmd("GET").arg("c:str"),
        cmd("GET").arg("c:none"),
        cmd("STRLEN").arg("c:str"),
        cmd("EXISTS").arg("c:str"),
        cmd("EXISTS").arg("c:none"),
        cmd("HGET").arg("c:hash").arg("f"),
        cmd("HGET").arg("c:hash").arg("nope"),
        cmd("HGETALL").arg("c:hash"),
        cmd("SMEMBERS").arg("c:set"),
        // Across slots, with a key of another type (nil in MGET, WRONGTYPE in GET).
        cmd("MGET")
            .arg("c:str")
            .arg("c:none")
            .arg("c:hash")
            .arg("c:other"),
    ];
    for read in &reads {
        let want: Value = plain.query(read.clone()).await.unwrap();
        let before = client.stats();
        let first: Value = client.query(read.clone()).await.unwrap();
        let second: Value = client.query(read.clone()).await.unwrap();
        assert_eq!(first, want, "{read:?} missed");
        assert_eq!(second, want, "{read:?} hit");
        let (hits, misses) = delta(client.stats(), before);
        assert!(hits >= 1, "{read:?} was never answered from the cache");
        assert!(misses >= 1, "{read:?} was never a miss");
    }
    // A server error is the caller's, and never cached.
    for _ in 0..2 {
        let e = client
            .query::<Value>(cmd("GET").arg("c:hash"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("WRONGTYPE"), "{e}");
    }
    // A hit does not reach the server.
    let port = port_of(cluster, "c:str");
    let served = get_calls(cluster, port);
    for _ in 0..100 {
        let v: String = client.query(cmd("GET").arg("c:str")).await.unwrap();
        assert_eq!(v, "hello");
    }
    assert_eq!(get_calls(cluster, port), served, "hits reached the server");
    assert!(client.stats().cache_entries >= 5);
}

async fn another_clients_write_is_seen_once_its_invalidation_arrives<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, cached()).await;
    for (i, key) in ["inv:a", "inv:b", "inv:c"].into_iter().enumerate() {
        let port = port_of(cluster, key);
        cluster.run(port, &["SET", key, "old"]).unwrap();
        eventually(&client, key, Some("old")).await;
        let _: String = client.query(cmd("GET").arg(key)).await.unwrap();
        let before = client.stats();
        cluster
            .run(port, &["SET", key, &format!("new{i}")])
            .unwrap();
        eventually(&client, key, Some(&format!("new{i}"))).await;
        let after = client.stats();
        assert!(
            after.cache_invalidations > before.cache_invalidations,
            "no invalidation counted for {key}"
        );
    }
    // Hashes and sets too.
    let port = port_of(cluster, "inv:h");
    let hget = || cmd("HGET").arg("inv:h").arg("f");
    cluster.run(port, &["HSET", "inv:h", "f", "1"]).unwrap();
    until_reads(&client, hget(), Some("1")).await;
    cluster.run(port, &["HSET", "inv:h", "f", "2"]).unwrap();
    until_reads(&client, hget(), Some("2")).await;
}

async fn writes_through_the_client_invalidate_before_they_are_sent<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, cached()).await;
    // Each write is seen by the very next read: no waiting for the server's push.
    for i in 0..50 {
        client
            .query::<()>(cmd("SET").arg("w:k").arg(i))
            .await
            .unwrap();
        let v: i64 = client.query(cmd("GET").arg("w:k")).await.unwrap();
        assert_eq!(v, i, "read the value before the write");
        let v: i64 = client.query(cmd("GET").arg("w:k")).await.unwrap();
        assert_eq!(v, i);
        let n: i64 = client.query(cmd("INCR").arg("w:k")).await.unwrap();
        let v: i64 = client.query(cmd("GET").arg("w:k")).await.unwrap();
        assert_eq!(v, n);
    }
    // Through a pipeline, a transaction and a delete.
    let _: Option<String> = client.query(cmd("GET").arg("w:p")).await.unwrap();
    let mut pipe = Pipeline::new();
    pipe.set("w:p", "piped");
    client.query_pipeline::<()>(&pipe).await.unwrap();
    let v: Option<String> = client.query(cmd("GET").arg("w:p")).await.unwrap();
    assert_eq!(v.as_deref(), Some("piped"));
    let mut tx = Pipeline::new();
    tx.atomic().set("w:p", "atomic");
    client.query_pipeline::<()>(&tx).await.unwrap();
    let v: Option<String> = client.query(cmd("GET").arg("w:p")).await.unwrap();
    assert_eq!(v.as_deref(), Some("atomic"));
    client.query::<()>(cmd("DEL").arg("w:p")).await.unwrap();
    let v: Option<String> = client.query(cmd("GET").arg("w:p")).await.unwrap();
    assert_eq!(v, None);
    let e: i64 = client.query(cmd("EXISTS").arg("w:p")).await.unwrap();
    assert_eq!(e, 0);
    client
        .query::<()>(cmd("SET").arg("w:p").arg("back"))
        .await
        .unwrap();
    let e: i64 = client.query(cmd("EXISTS").arg("w:p")).await.unwrap();
    assert_eq!(e, 1);
}

async fn a_flush_drops_every_entry<C: AnyClient>(cluster: &Cluster, _: &Scope<'_, '_>) {
    let client = C::connect(cluster, cached()).await;
    let keys: Vec<String> = (0..30).map(|i| format!("fl:{i}")).collect();
    for k in &keys {
        client.query::<()>(cmd("SET").arg(k).arg(1)).await.unwrap();
        let _: i64 = client.query(cmd("GET").arg(k)).await.unwrap();
    }
    assert_eq!(client.stats().cache_entries, 30);
    let flushes = client.stats().cache_flushes;
    // Another client flushes every primary: each node pushes `invalidate` with a null.
    for node in cluster.nodes() {
        let _ = cluster.run(node.port, &["FLUSHALL"]);
    }
    for k in &keys {
        eventually(&client, k, None).await;
    }
    assert!(client.stats().cache_flushes > flushes, "no flush counted");
    // And `cache_clear` on demand.
    for k in &keys[..5] {
        client.query::<()>(cmd("SET").arg(k).arg(2)).await.unwrap();
        let _: i64 = client.query(cmd("GET").arg(k)).await.unwrap();
    }
    assert!(client.stats().cache_entries >= 5);
    client.cache_clear();
    assert_eq!(client.stats().cache_entries, 0);
}

async fn a_killed_connection_drops_what_it_filled<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, cached()).await;
    let victim = port_of(cluster, "kill:a");
    let here = keys_on(&client, victim, "kill:", 5);
    let other = cluster.other_master(victim);
    let there = keys_on(&client, other, "kill:", 5);
    for k in here.iter().chain(&there) {
        client
            .query::<()>(cmd("SET").arg(k).arg("old"))
            .await
            .unwrap();
        let _: String = client.query(cmd("GET").arg(k)).await.unwrap();
    }
    assert_eq!(client.stats().cache_entries, 10);
    // Every connection of the victim's is killed: the invalidations of what the client
    // read there die with it.
    cluster
        .run(
            victim,
            &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
        )
        .unwrap();
    for k in &here {
        cluster.run(victim, &["SET", k, "new"]).unwrap();
    }
    // Once the client has seen the loss (the async client's reader at once; the blocking
    // client when it next looks, which every call does), the entries are gone: the next
    // reads are misses that see the new values, and the other node's entries stay.
    let start = Instant::now();
    while client.stats().cache_entries > 5 {
        // The blocking client looks at its sockets on each call.
        let _: String = client.query(cmd("GET").arg(&there[0])).await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the lost connection's entries were kept"
        );
        pause(Duration::from_millis(1)).await;
    }
    assert_eq!(client.stats().cache_entries, 5);
    for k in &here {
        let v: String = client.query(cmd("GET").arg(k)).await.unwrap();
        assert_eq!(v, "new", "{k} was stale after its connection was lost");
    }
    for k in &there {
        let v: String = client.query(cmd("GET").arg(k)).await.unwrap();
        assert_eq!(v, "old");
    }
}

async fn a_failover_drops_the_old_primarys_entries<'s, C: AnyClient>(
    cluster: &'s Cluster,
    helpers: &'s Scope<'s, '_>,
) {
    // The heartbeat well under the harness's `cluster-node-timeout` (2 s), as the
    // cache's docs ask; short requests, so reads of the stopped node fail fast.
    let config = Config::default()
        .cache(CacheConfig::default().heartbeat(Duration::from_millis(250)))
        .request_timeout(Some(Duration::from_millis(300)));
    let client = C::connect(cluster, config).await;
    let key = "fo:{k}";
    let slot = slot_for_key(key.as_bytes()).get();
    let victim = cluster.master_for_slot(slot);
    client
        .query::<()>(cmd("SET").arg(key).arg("before"))
        .await
        .unwrap();
    let _: i64 = client
        .query_node(
            &NodeAddr::new("127.0.0.1", victim),
            cmd("WAIT").arg(1).arg(2000),
        )
        .await
        .unwrap();
    let v: String = client.query(cmd("GET").arg(key)).await.unwrap();
    assert_eq!(v, "before");
    assert!(client.stats().cache_entries >= 1);
    // Stopped, not killed: its connection stays open, and no invalidation will come
    // from it for what the promoted replica is written. Another client writes there as
    // soon as it is promoted.
    let written = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (w, d) = (written.clone(), done.clone());
    cluster.pause_node(victim).unwrap();
    helpers.spawn(move || {
        let promoted = cluster.wait_for_failover(slot, victim).unwrap();
        cluster.run(promoted, &["SET", key, "after"]).unwrap();
        w.store(true, Ordering::SeqCst);
        while !d.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        cluster.resume_node(victim).unwrap();
    });
    // However the scenario ends, the stopped node is let go (the helper waits for it).
    let _release = ReleaseOnDrop(&done);
    // The client keeps reading, as a service would, and never refreshes on purpose:
    // once the new primary has taken the write, the old value is never served.
    let start = Instant::now();
    let mut served_old = 0;
    loop {
        let after_write = written.load(Ordering::SeqCst);
        match client.query::<String>(cmd("GET").arg(key)).await {
            Ok(v) if v == "after" => break,
            Ok(v) => {
                assert_eq!(v, "before");
                assert!(
                    !after_write,
                    "served the old primary's value after the failover's write"
                );
                served_old += 1;
            }
            // Reads of the stopped node time out until the client learns the new map.
            Err(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never read the new primary's value"
        );
        pause(Duration::from_millis(5)).await;
    }
    eprintln!("failover: {served_old} reads of the old value while the primary was stopped");
}

async fn a_migration_drops_the_slots_entries<C: AnyClient>(cluster: &Cluster, _: &Scope<'_, '_>) {
    let client = C::connect(cluster, cached()).await;
    let key = "mig:{m}";
    let slot = slot_for_key(key.as_bytes()).get();
    let from = cluster.master_for_slot(slot);
    let to = cluster.other_master(from);
    client
        .query::<()>(cmd("SET").arg(key).arg("v1"))
        .await
        .unwrap();
    let _: String = client.query(cmd("GET").arg(key)).await.unwrap();
    cluster.migrate_slot(slot, from, to).unwrap();
    cluster.run(to, &["SET", key, "v2"]).unwrap();
    // Seen through a refresh (or the MOVED a miss would get).
    client.refresh_slots().await.unwrap();
    let v: String = client.query(cmd("GET").arg(key)).await.unwrap();
    assert_eq!(v, "v2", "an entry of the moved slot was kept");
    // The new owner's connection fills, and its invalidations arrive.
    let v: String = client.query(cmd("GET").arg(key)).await.unwrap();
    assert_eq!(v, "v2");
    cluster.run(to, &["SET", key, "v3"]).unwrap();
    eventually(&client, key, Some("v3")).await;
}

async fn replica_reads_never_fill_the_cache<C: AnyClient>(cluster: &Cluster, _: &Scope<'_, '_>) {
    let config = cached().read_from(ReadFrom::Replica(ReplicaChoice::RoundRobin));
    let client = C::connect(cluster, config).await;
    // Servers list a fresh replica in `CLUSTER SLOTS` only after a moment; until then
    // reads go to the primaries (and fill).
    let start = Instant::now();
    while !client
        .slot_map()
        .shards()
        .iter()
        .all(|s| !s.replicas.is_empty())
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "replicas never listed"
        );
        let _ = client.refresh_slots().await;
        pause(Duration::from_millis(100)).await;
    }
    client
        .query::<()>(cmd("SET").arg("rep:k").arg("x"))
        .await
        .unwrap();
    let primary = port_of(cluster, "rep:k");
    let replica_gets = |cluster: &Cluster| -> u64 {
        cluster
            .nodes()
            .iter()
            .filter(|n| n.port != primary)
            .map(|n| get_calls(cluster, n.port))
            .sum()
    };
    let before = replica_gets(cluster);
    for _ in 0..20 {
        let _: Option<String> = client.query(cmd("GET").arg("rep:k")).await.unwrap();
    }
    let stats = client.stats();
    assert_eq!(stats.cache_hits, 0, "a replica read filled the cache");
    assert_eq!(stats.cache_entries, 0);
    assert!(
        replica_gets(cluster) >= before + 20,
        "the reads did not go to replicas"
    );
}
