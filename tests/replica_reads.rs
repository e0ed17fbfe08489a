//! Replica reads against real clusters with replicas: reads land on replicas (counted in
//! each node's `INFO commandstats`), writes on primaries, inside pipelines too; AZ
//! affinity picks the replica of the client's zone (Valkey's `availability-zone`); a
//! failover under replica reads recovers. Every scenario runs on both clients.

mod support;

use std::collections::HashMap;
use std::thread::Scope;
use std::time::{Duration, Instant};

use redis_cluster_uring::{cmd, Config, NodeAddr, Pipeline, ReadFrom, ReplicaChoice, Value};
use support::clients::{on_both_clients, pause, AnyClient};
use support::{Cluster, ClusterSpec, Server};

on_both_clients! {
    reads_land_on_replicas_and_writes_on_primaries(3, 1);
    az_affinity_reads_from_the_replica_in_the_clients_zone => zoned_valkey_cluster();
    a_failover_under_replica_reads_recovers(3, 1);
}

/// `GET` calls per node port, from `INFO commandstats`.
fn get_calls(cluster: &Cluster) -> HashMap<u16, u64> {
    cluster
        .nodes()
        .iter()
        .map(|n| {
            let info = cluster
                .run(n.port, &["INFO", "commandstats"])
                .map(|r| r.text().unwrap_or_default())
                .unwrap_or_default();
            let calls = info
                .lines()
                .find(|l| l.starts_with("cmdstat_get:"))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (n.port, calls)
        })
        .collect()
}

/// Waits (a liveness bound) until the client's map lists a replica for every shard:
/// servers list a fresh replica in `CLUSTER SLOTS` only after a moment.
async fn wait_for_replicas<C: AnyClient>(client: &mut C, per_shard: usize) {
    let start = Instant::now();
    loop {
        client.refresh_slots().await.unwrap();
        if client
            .slot_map()
            .shards()
            .iter()
            .all(|s| s.replicas.len() >= per_shard)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "replicas never listed"
        );
        pause(Duration::from_millis(100)).await;
    }
}

/// Writes `n` keys and waits until every replica has them.
async fn load<C: AnyClient>(client: &mut C, n: usize) {
    let mut pipe = Pipeline::new();
    for i in 0..n {
        pipe.set(format!("rr:{i}"), i);
    }
    client.query_pipeline::<()>(&pipe).await.unwrap();
    let primaries: Vec<NodeAddr> = client.slot_map().primaries().cloned().collect();
    for p in primaries {
        let replicas = client
            .slot_map()
            .shards()
            .iter()
            .find(|s| s.primary == p)
            .map_or(0, |s| s.replicas.len());
        let acked: i64 = client
            .query_node(&p, cmd("WAIT").arg(replicas).arg(5000))
            .await
            .unwrap();
        assert_eq!(acked as usize, replicas);
    }
}

async fn read_all<C: AnyClient>(client: &mut C, n: usize) {
    let mut pipe = Pipeline::new();
    for i in 0..n {
        pipe.get(format!("rr:{i}"));
    }
    let replies = client.execute(&pipe).await.unwrap();
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.as_ref().unwrap(), &Value::Bulk(i.to_string().into()));
    }
    for i in 0..n / 10 {
        let v: i64 = client
            .query(cmd("GET").arg(format!("rr:{i}")))
            .await
            .unwrap();
        assert_eq!(v, i as i64);
    }
}

async fn reads_land_on_replicas_and_writes_on_primaries<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let primary_ports: Vec<u16> = (0..3).map(|i| cluster.nodes()[i].port).collect();
    {
        for policy in [
            ReadFrom::PreferReplica(ReplicaChoice::RoundRobin),
            ReadFrom::Replica(ReplicaChoice::Random),
            ReadFrom::Nearest,
        ] {
            let config = Config::default().read_from(policy.clone());
            let mut client = C::connect(cluster, config).await;
            wait_for_replicas(&mut client, 1).await;
            load(&mut client, 300).await;
            let before = get_calls(cluster);
            read_all(&mut client, 300).await;
            let after = get_calls(cluster);
            let on = |ports: &mut dyn Iterator<Item = u16>| -> u64 {
                ports.map(|p| after[&p] - before[&p]).sum()
            };
            let on_primaries = on(&mut primary_ports.iter().copied());
            let on_replicas = on(&mut cluster
                .nodes()
                .iter()
                .map(|n| n.port)
                .filter(|p| !primary_ports.contains(p)));
            eprintln!("{policy:?}: GETs on replicas {on_replicas}, on primaries {on_primaries}");
            match policy {
                // Nearest may pick a primary when it answers faster; all reads happen.
                ReadFrom::Nearest => assert_eq!(on_primaries + on_replicas, 330),
                _ => {
                    assert_eq!(on_replicas, 330, "every read went to a replica");
                    assert_eq!(on_primaries, 0);
                }
            }
        }
    }
}

/// A Valkey cluster (Valkey reports its availability zone in `HELLO`) with two replicas
/// per shard, one in each of the zones `az-a` and `az-b`.
fn zoned_valkey_cluster() -> Cluster {
    let cluster = Cluster::start(ClusterSpec {
        server: Server::Valkey,
        ..support::spec(3, 2)
    })
    .unwrap_or_else(|e| panic!("could not start a Valkey cluster: {e}"));
    for (port, zone) in zone_of(&cluster) {
        cluster
            .run(port, &["CONFIG", "SET", "availability-zone", zone])
            .unwrap();
    }
    cluster
}

/// The zone of each replica port of a [`zoned_valkey_cluster`].
fn zone_of(cluster: &Cluster) -> HashMap<u16, &'static str> {
    cluster.nodes()[3..]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.port, if i % 2 == 0 { "az-a" } else { "az-b" }))
        .collect()
}

async fn az_affinity_reads_from_the_replica_in_the_clients_zone<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let replicas: Vec<u16> = cluster.nodes()[3..].iter().map(|n| n.port).collect();
    let zone_of = zone_of(cluster);
    {
        let config = Config::default().read_from(ReadFrom::AzAffinity("az-b".into()));
        let mut client = C::connect(cluster, config).await;
        wait_for_replicas(&mut client, 2).await;
        load(&mut client, 300).await;
        // Every replica connected (warm-up after refresh) and told its zone.
        for port in &replicas {
            let node = NodeAddr::new("127.0.0.1", *port);
            let deadline = Instant::now() + Duration::from_secs(10);
            while client.server_info(&node).is_none() {
                assert!(Instant::now() < deadline, "no handshake with {node}");
                pause(Duration::from_millis(20)).await;
            }
            assert_eq!(
                client
                    .server_info(&node)
                    .unwrap()
                    .availability_zone
                    .as_deref(),
                Some(zone_of[port])
            );
        }
        let before = get_calls(cluster);
        read_all(&mut client, 300).await;
        let after = get_calls(cluster);
        let mut by_zone: HashMap<&str, u64> = HashMap::new();
        for (port, calls) in &after {
            let zone = zone_of.get(port).copied().unwrap_or("primary");
            *by_zone.entry(zone).or_default() += calls - before[port];
        }
        eprintln!("AZ affinity az-b: GETs by zone {by_zone:?}");
        assert_eq!(by_zone.get("az-b").copied().unwrap_or(0), 330);
        assert_eq!(by_zone.get("az-a").copied().unwrap_or(0), 0);
        assert_eq!(by_zone.get("primary").copied().unwrap_or(0), 0);
    }
}

async fn a_failover_under_replica_reads_recovers<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let victim = cluster.nodes()[0].port;
    {
        let config = Config::default()
            .request_timeout(Some(Duration::from_millis(500)))
            .read_from(ReadFrom::PreferReplica(ReplicaChoice::RoundRobin));
        let mut client = C::connect(cluster, config).await;
        wait_for_replicas(&mut client, 1).await;
        load(&mut client, 100).await;
        cluster.kill_node(victim).unwrap();
        let start = Instant::now();
        let mut clean = 0;
        let mut errors = 0;
        while clean < 5 {
            assert!(start.elapsed() < Duration::from_secs(60), "no recovery");
            let mut pipe = Pipeline::new();
            for i in 0..100 {
                pipe.get(format!("rr:{i}"));
                pipe.set(format!("rr:w{i}"), i);
            }
            let replies = client.execute(&pipe).await.unwrap();
            let mut all_ok = true;
            for (n, r) in replies.iter().enumerate() {
                match r {
                    Ok(v) if n % 2 == 0 => assert_eq!(v, &Value::Bulk((n / 2).to_string().into())),
                    Ok(_) => {}
                    Err(e) => {
                        assert!(e.is_transient(), "{e}");
                        all_ok = false;
                        errors += 1;
                    }
                }
            }
            if all_ok {
                clean += 1;
            }
            pause(Duration::from_millis(20)).await;
        }
        eprintln!(
            "replica reads through a failover: {errors} typed errors, recovered in {:?}",
            start.elapsed()
        );
    }
}
