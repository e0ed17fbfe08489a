//! Shared setup for the integration tests: real clusters from the `test-cluster` harness
//! and the runtime the client needs.
#![allow(dead_code)]

pub mod clients;
pub mod push_proxy;

use std::future::Future;

use redis_cluster_uring::{Client, Config, Engine};
pub use test_cluster::{Cluster, ClusterSpec, Server};

/// Environment variable that picks the server the integration tests run against:
/// `redis` (default) or `valkey`.
pub const SERVER_ENV: &str = "CLUSTER_SERVER";

/// The server the suite runs against (`CLUSTER_SERVER=valkey` for Valkey 9).
pub fn server() -> Server {
    match std::env::var(SERVER_ENV).as_deref() {
        Ok("valkey") => Server::Valkey,
        Ok("redis") | Err(_) => Server::Redis,
        Ok(other) => panic!("{SERVER_ENV}={other:?}: expected redis or valkey"),
    }
}

/// A cluster spec for the chosen server, with everything else as given.
pub fn spec(masters: usize, replicas: usize) -> ClusterSpec {
    ClusterSpec {
        masters,
        replicas_per_master: replicas,
        server: server(),
        ..ClusterSpec::default()
    }
}

/// Starts a cluster of `masters` primaries with `replicas` replicas each, or fails the test
/// with the harness's message (which says how to install redis-server when it is missing).
pub fn cluster(masters: usize, replicas: usize) -> Cluster {
    match Cluster::start(spec(masters, replicas)) {
        Ok(c) => c,
        Err(e) => panic!("could not start a test cluster: {e}"),
    }
}

/// Runs a test body on the engine the environment asks for (`REDIS_CLUSTER_URING_ENGINE`), io_uring by default.
pub fn run<F: Future>(body: F) -> F::Output {
    redis_cluster_uring::engine::start(body)
}

/// A client on `cluster` with the given configuration.
pub async fn client_with(cluster: &Cluster, config: Config) -> Client {
    let client = Client::connect(&cluster.seed_addrs(), config)
        .await
        .expect("client connects to the test cluster");
    // The suite runs once per engine: make sure it really is the one asked for.
    if let Ok(Some(forced)) = Engine::from_env() {
        if forced != Engine::Auto {
            assert_eq!(
                client.engine(),
                forced,
                "the suite runs on the wrong engine"
            );
        }
    }
    client
}

/// A client with the default configuration.
pub async fn client(cluster: &Cluster) -> Client {
    client_with(cluster, Config::default()).await
}

/// The first `n` names `name(0)`, `name(1)`, ... whose slot the client's map gives to
/// `node` (keys or hash tags placed on a chosen node).
pub fn names_on(
    client: &Client,
    node: &redis_cluster_uring::NodeAddr,
    n: usize,
    name: impl Fn(usize) -> String,
) -> Vec<String> {
    let map = client.slot_map();
    (0..)
        .map(name)
        .filter(|k| map.node_for(redis_cluster_uring::slot_for_key(k.as_bytes())) == Some(node))
        .take(n)
        .collect()
}
