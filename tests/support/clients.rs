//! The async and the blocking client behind one trait, so that a scenario is written once
//! and runs on both (`tests/clients.rs`).
//!
//! Every method is `async`. The async client awaits its own methods; the blocking client
//! runs its synchronous ones inside them, which blocks the test thread (and the runtime
//! on it) for the length of the call. Nothing else runs on that thread meanwhile, so
//! nothing waits behind it.

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use redis_cluster_uring::blocking::{self, Backend};
use redis_cluster_uring::engine;
use redis_cluster_uring::handshake::ServerInfo;
use redis_cluster_uring::report::PipelineReport;
use redis_cluster_uring::scan::ScanOptions;
use redis_cluster_uring::{
    Client, Cmd, Config, Engine, FromReply, NodeAddr, Pipeline, Result, SlotMap, Stats, Value,
};

use super::{client_with, Cluster};

/// Which client a scenario runs on, for the few assertions where the two legitimately
/// differ (each such branch says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// [`redis_cluster_uring::Client`] on the runtime's engine.
    Async,
    /// [`redis_cluster_uring::blocking::Client`] on its own ring or `poll(2)`.
    Blocking,
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientKind::Async => "async",
            ClientKind::Blocking => "blocking",
        })
    }
}

/// What the shared scenarios do with a client. Not object-safe (generic and `async`
/// methods): scenarios are generic over it instead.
pub trait TestClient: Sized {
    /// The client this is.
    fn kind() -> ClientKind;
    /// Connects to `cluster`, checking that it runs on the engine the environment forces.
    async fn connect(cluster: &Cluster, config: Config) -> Self;
    /// Connects through `seeds` (addresses or URLs), or says why not.
    async fn try_connect(seeds: &[String], config: Config) -> Result<Self>;
    /// Runs a pipeline (each command's result at its index).
    async fn execute(&mut self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>>;
    /// Runs a pipeline and reports each node's share of it.
    async fn execute_with_report(
        &mut self,
        pipeline: &Pipeline,
    ) -> Result<(Vec<Result<Value>>, PipelineReport)>;
    /// Runs a pipeline and converts every reply; fails on the first error.
    async fn query_pipeline<T: FromReply>(&mut self, pipeline: &Pipeline) -> Result<Vec<T>>;
    /// Runs one command where it is routed and converts the reply.
    async fn query<T: FromReply>(&mut self, command: Cmd) -> Result<T>;
    /// Runs one command on a given node, without routing.
    async fn query_node<T: FromReply>(&mut self, node: &NodeAddr, command: Cmd) -> Result<T>;
    /// Scans every key of the cluster to the end, pausing `between` batches (so that the
    /// cluster can change under the scan).
    async fn scan(&mut self, options: ScanOptions, between: Duration) -> Result<Scanned>;
    /// Reloads the slot map now.
    async fn refresh_slots(&mut self) -> Result<()>;
    /// The current slot map (a copy for the blocking client, which lends its own).
    fn slot_map(&self) -> Rc<SlotMap>;
    /// Open connections that serve routed requests (one per node in use).
    fn connection_count(&self) -> usize;
    /// The client's counters.
    fn stats(&self) -> Stats;
    /// What `node` said of itself in its connection's handshake.
    fn server_info(&self, node: &NodeAddr) -> Option<ServerInfo>;
}

/// One `#[test]` per client for each scenario: `<scenario>::on_async` on the async
/// [`Client`] and `<scenario>::on_blocking` on [`blocking::Client`], each with a fixture
/// of its own. A scenario is an `async fn <scenario><C: TestClient>(&Fixture, &Scope)`;
/// the scope is there for helper threads that change the cluster while the client works
/// (and joins them however the scenario ends).
///
/// `scenario(masters, replicas);` starts a cluster of that shape as the fixture;
/// `scenario => expression;` uses the expression's value (evaluated inside the generated
/// module, which sees the test file's items).
#[allow(unused_macros)] // each test file is a crate of its own; not all use it
macro_rules! on_both_clients {
    () => {};
    ($scenario:ident($masters:expr, $replicas:expr); $($rest:tt)*) => {
        $crate::support::clients::on_both_clients! {
            $scenario => $crate::support::cluster($masters, $replicas);
            $($rest)*
        }
    };
    ($scenario:ident => $fixture:expr; $($rest:tt)*) => {
        mod $scenario {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn on_async() {
                let fixture = $fixture;
                std::thread::scope(|helpers| {
                    $crate::support::run(super::$scenario::<::redis_cluster_uring::Client>(
                        &fixture, helpers,
                    ))
                });
            }

            #[test]
            fn on_blocking() {
                let fixture = $fixture;
                std::thread::scope(|helpers| {
                    $crate::support::run(
                        super::$scenario::<::redis_cluster_uring::blocking::Client>(
                            &fixture, helpers,
                        ),
                    )
                });
            }
        }
        $crate::support::clients::on_both_clients! { $($rest)* }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_clients;

/// The first `n` names `name(0)`, `name(1)`, ... whose slot `map` gives to `node`.
pub fn names_in(
    map: &SlotMap,
    node: &NodeAddr,
    n: usize,
    name: impl Fn(usize) -> String,
) -> Vec<String> {
    (0..)
        .map(name)
        .filter(|k| map.node_for(redis_cluster_uring::slot_for_key(k.as_bytes())) == Some(node))
        .take(n)
        .collect()
}

/// Runs 60 `SET`/`GET` pairs spread over every node and checks each reply: the client
/// works end to end (through whatever handshake, TLS or credentials it was given).
pub async fn works<C: TestClient>(client: &mut C) {
    let mut pipe = Pipeline::new();
    for i in 0..60 {
        pipe.set(format!("works:{i}"), i).get(format!("works:{i}"));
    }
    let replies = client.execute(&pipe).await.expect("pipeline");
    for i in 0..60 {
        assert_eq!(
            replies[2 * i + 1].as_ref().unwrap(),
            &Value::Bulk(i.to_string().into())
        );
    }
}

/// What a whole scan returned.
#[derive(Debug)]
pub struct Scanned {
    /// Every key returned (a key may come more than once).
    pub keys: Vec<bytes::Bytes>,
    /// Batches it came in.
    pub batches: usize,
    /// Slots the scan counted as done at the end (16384).
    pub slots_scanned: usize,
}

/// An async client on `cluster`, checked to run on the engine the environment forces.
pub async fn connect_async(cluster: &Cluster, config: Config) -> Client {
    client_with(cluster, config).await
}

/// A blocking client on `cluster`, checked to run on the backend the environment forces
/// (`REDIS_CLUSTER_URING_ENGINE=io_uring`, `ring` or `compio` → the ring, `epoll` →
/// `poll`).
pub fn connect_blocking(cluster: &Cluster, config: Config) -> blocking::Client {
    let client = blocking::Client::connect(&cluster.seed_addrs(), config)
        .expect("the blocking client connects to the test cluster");
    match Engine::from_env() {
        Ok(Some(Engine::IoUring | Engine::Ring | Engine::Compio)) => {
            assert_eq!(client.engine(), Backend::Ring)
        }
        Ok(Some(Engine::Epoll)) => assert_eq!(client.engine(), Backend::Poll),
        _ => {}
    }
    client
}

/// Lets time pass without holding up the async client's event loop (its connections'
/// readers go on); for the blocking client it is just a wait.
pub async fn pause(time: Duration) {
    engine::sleep(time).await;
}

impl TestClient for Client {
    fn kind() -> ClientKind {
        ClientKind::Async
    }

    async fn connect(cluster: &Cluster, config: Config) -> Self {
        connect_async(cluster, config).await
    }

    async fn try_connect(seeds: &[String], config: Config) -> Result<Self> {
        Client::connect(seeds, config).await
    }

    async fn execute(&mut self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>> {
        Client::execute(self, pipeline).await
    }

    async fn execute_with_report(
        &mut self,
        pipeline: &Pipeline,
    ) -> Result<(Vec<Result<Value>>, PipelineReport)> {
        Client::execute_with_report(self, pipeline).await
    }

    async fn query_pipeline<T: FromReply>(&mut self, pipeline: &Pipeline) -> Result<Vec<T>> {
        Client::query_pipeline(self, pipeline).await
    }

    async fn query<T: FromReply>(&mut self, command: Cmd) -> Result<T> {
        Client::query(self, command).await
    }

    async fn query_node<T: FromReply>(&mut self, node: &NodeAddr, command: Cmd) -> Result<T> {
        Client::query_node(self, node, command).await
    }

    async fn scan(&mut self, options: ScanOptions, between: Duration) -> Result<Scanned> {
        let mut scan = Client::scan(self, options);
        let (mut keys, mut batches) = (Vec::new(), 0);
        while let Some(batch) = scan.next_batch().await? {
            keys.extend(batch);
            batches += 1;
            pause(between).await;
        }
        Ok(Scanned {
            keys,
            batches,
            slots_scanned: scan.slots_scanned(),
        })
    }

    async fn refresh_slots(&mut self) -> Result<()> {
        Client::refresh_slots(self).await
    }

    fn slot_map(&self) -> Rc<SlotMap> {
        Client::slot_map(self)
    }

    fn connection_count(&self) -> usize {
        Client::connection_count(self)
    }

    fn stats(&self) -> Stats {
        Client::stats(self)
    }

    fn server_info(&self, node: &NodeAddr) -> Option<ServerInfo> {
        Client::server_info(self, node)
    }
}

impl TestClient for blocking::Client {
    fn kind() -> ClientKind {
        ClientKind::Blocking
    }

    async fn connect(cluster: &Cluster, config: Config) -> Self {
        connect_blocking(cluster, config)
    }

    async fn try_connect(seeds: &[String], config: Config) -> Result<Self> {
        blocking::Client::connect(seeds, config)
    }

    async fn execute(&mut self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>> {
        blocking::Client::execute(self, pipeline)
    }

    async fn execute_with_report(
        &mut self,
        pipeline: &Pipeline,
    ) -> Result<(Vec<Result<Value>>, PipelineReport)> {
        blocking::Client::execute_with_report(self, pipeline)
    }

    async fn query_pipeline<T: FromReply>(&mut self, pipeline: &Pipeline) -> Result<Vec<T>> {
        blocking::Client::query_pipeline(self, pipeline)
    }

    async fn query<T: FromReply>(&mut self, command: Cmd) -> Result<T> {
        blocking::Client::query(self, command)
    }

    async fn query_node<T: FromReply>(&mut self, node: &NodeAddr, command: Cmd) -> Result<T> {
        blocking::Client::query_node(self, node, command)
    }

    async fn scan(&mut self, options: ScanOptions, between: Duration) -> Result<Scanned> {
        let mut scan = blocking::Client::scan(self, options);
        let (mut keys, mut batches) = (Vec::new(), 0);
        while let Some(batch) = scan.next_batch()? {
            keys.extend(batch);
            batches += 1;
            std::thread::sleep(between);
        }
        Ok(Scanned {
            keys,
            batches,
            slots_scanned: scan.slots_scanned(),
        })
    }

    async fn refresh_slots(&mut self) -> Result<()> {
        blocking::Client::refresh_slots(self)
    }

    fn slot_map(&self) -> Rc<SlotMap> {
        Rc::new(blocking::Client::slot_map(self).clone())
    }

    fn connection_count(&self) -> usize {
        blocking::Client::connection_count(self)
    }

    fn stats(&self) -> Stats {
        blocking::Client::stats(self)
    }

    fn server_info(&self, node: &NodeAddr) -> Option<ServerInfo> {
        blocking::Client::server_info(self, node).cloned()
    }
}
