//! Endpoints as the cluster spec says, against real servers started with each setting:
//! host names (`cluster-announce-hostname` with `cluster-preferred-endpoint-type
//! hostname`), `?` (hostname preferred but none announced: the metadata's ip is used,
//! never the answering host), NULL (`unknown-endpoint`: the host the reply came from), and
//! IPv6 literals. Every scenario runs on both clients.

mod support;

use std::thread::Scope;

use redis_cluster_uring::{slot_for_key, Config, NodeAddr, Pipeline, Value};
use support::clients::{on_both_clients, AnyClient};
use support::{Cluster, ClusterSpec};

on_both_clients! {
    // `localhost` may resolve to ::1 first, where nothing listens: the next address is
    // tried.
    host_names_are_resolved_trying_each_address => cluster_with(&[
        ("cluster-preferred-endpoint-type", "hostname"),
        ("cluster-announce-hostname", "localhost"),
    ]);
    question_mark_uses_the_announced_ip_not_the_answering_host => cluster_with(&[
        ("bind", "127.0.0.1 ::1"),
        ("cluster-announce-ip", "::1"),
        ("cluster-preferred-endpoint-type", "hostname"),
    ]);
    null_endpoint_means_the_host_that_answered =>
        cluster_with(&[("cluster-preferred-endpoint-type", "unknown-endpoint")]);
    ipv6_literals_work_end_to_end =>
        cluster_with(&[("bind", "127.0.0.1 ::1"), ("cluster-announce-ip", "::1")]);
}

fn cluster_with(settings: &[(&str, &str)]) -> Cluster {
    Cluster::start(ClusterSpec {
        extra_config: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..support::spec(3, 0)
    })
    .unwrap_or_else(|e| panic!("could not start a test cluster: {e}"))
}

/// Writes and reads keys on every node; returns the hosts the client's map names.
async fn exercise<C: AnyClient>(cluster: &Cluster) -> Vec<String> {
    let client = C::connect(cluster, Config::default()).await;
    let mut pipe = Pipeline::new();
    for i in 0..300 {
        pipe.set(format!("ep:{i}"), i).get(format!("ep:{i}"));
    }
    let replies = client.execute(&pipe).await.expect("pipeline");
    for i in 0..300 {
        assert_eq!(
            replies[2 * i + 1].as_ref().expect("GET"),
            &Value::Bulk(i.to_string().into())
        );
    }
    let map = client.slot_map();
    assert!(map.is_complete(), "every slot has a reachable owner");
    let mut hosts: Vec<String> = map.primaries().map(|p| p.host.clone()).collect();
    hosts.dedup();
    // Every node was reached through the endpoint the map names.
    assert!(client.connection_count() >= 3);
    hosts
}

/// The async client resolves names off its event loop (a blocking lookup would stall
/// every caller); the blocking client resolves them in line.
async fn host_names_are_resolved_trying_each_address<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    assert_eq!(exercise::<C>(cluster).await, vec!["localhost".to_string()]);
}

async fn question_mark_uses_the_announced_ip_not_the_answering_host<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    // The seeds are 127.0.0.1; the nodes' own ip is ::1: the map must say ::1.
    assert_eq!(exercise::<C>(cluster).await, vec!["::1".to_string()]);
}

async fn null_endpoint_means_the_host_that_answered<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    assert_eq!(exercise::<C>(cluster).await, vec!["127.0.0.1".to_string()]);
}

async fn ipv6_literals_work_end_to_end<C: AnyClient>(cluster: &Cluster, _: &Scope<'_, '_>) {
    assert_eq!(exercise::<C>(cluster).await, vec!["::1".to_string()]);
    // A redirect in the `::1:port` form is followed too.
    let client = C::connect(cluster, Config::default()).await;
    let slot = slot_for_key(b"ep:0");
    let map = client.slot_map();
    let owner = map.node_for(slot).cloned().unwrap();
    assert_eq!(owner.host, "::1");
    let other = map.primaries().find(|p| **p != owner).cloned().unwrap();
    let e = client
        .query_node::<Value>(&other, redis_cluster_uring::cmd("GET").arg("ep:0"))
        .await
        .unwrap_err();
    let (_, target) = e.redirect_target().unwrap();
    assert_eq!(NodeAddr::parse(target), Some(owner));
}
