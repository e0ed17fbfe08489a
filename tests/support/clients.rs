//! The async and the blocking client in one scenario: written once with `.await`, run on
//! both (`tests/clients.rs` and most other files).
//!
//! Commands are the library's [`AsyncCommands`]. The async client awaits its own; the
//! blocking one, wrapped in [`Blocking`], runs each call to its end and returns a ready
//! future, which blocks the test thread (and the runtime on it) for the length of the
//! call. Nothing else runs on that thread meanwhile, so nothing waits behind it.

use std::cell::RefCell;
use std::fmt;
use std::future::{ready, Future};
use std::sync::Arc;
use std::time::Duration;

use redis_cluster_uring::blocking;
use redis_cluster_uring::engine;
use redis_cluster_uring::handshake::ServerInfo;
use redis_cluster_uring::report::PipelineReport;
use redis_cluster_uring::scan::ScanOptions;
use redis_cluster_uring::{
    AsyncCommands, Client, Cmd, Config, Engine, FromReply, NodeAddr, Pipeline, Result, SlotMap,
    Stats, Value,
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

/// A client the shared scenarios run on: the async [`Client`], or the blocking one
/// awaited ([`Blocking`]).
///
/// Commands go through the library's own [`AsyncCommands`] (a supertrait here), typed
/// helpers included. What is left below has the same shape on both clients and is only
/// delegated: a scenario written once with `.await` needs the blocking client's calls as
/// futures, and only a test wrapper can give them that shape (the library's blocking
/// client implements the blocking [`Commands`](redis_cluster_uring::Commands) trait).
/// Not object-safe (generic and `async` methods): scenarios are generic over it instead.
pub trait AnyClient: AsyncCommands + Sized {
    /// The client this is.
    fn kind() -> ClientKind;
    /// Connects to `cluster`, checking that it runs on the engine the environment forces.
    async fn connect(cluster: &Cluster, config: Config) -> Self;
    /// Connects through `seeds` (addresses or URLs), or says why not.
    async fn try_connect(seeds: &[String], config: Config) -> Result<Self>;
    /// Runs a pipeline and reports each node's share of it.
    async fn execute_with_report(
        &self,
        pipeline: &Pipeline,
    ) -> Result<(Vec<Result<Value>>, PipelineReport)>;
    /// Runs one command on a given node, without routing.
    async fn query_node<T: FromReply>(&self, node: &NodeAddr, command: Cmd) -> Result<T>;
    /// Scans every key of the cluster to the end, pausing `between` batches (so that the
    /// cluster can change under the scan).
    async fn scan(&self, options: ScanOptions, between: Duration) -> Result<Scanned>;
    /// Reloads the slot map now.
    async fn refresh_slots(&self) -> Result<()>;
    /// The current slot map.
    fn slot_map(&self) -> Arc<SlotMap>;
    /// Open connections that serve routed requests (one per node in use).
    fn connection_count(&self) -> usize;
    /// The client's counters.
    fn stats(&self) -> Stats;
    /// Empties the client-side cache.
    fn cache_clear(&self);
    /// What `node` said of itself in its connection's handshake.
    fn server_info(&self, node: &NodeAddr) -> Option<ServerInfo>;
}

/// [`blocking::Client`], its calls as ready futures: each runs to its end on this thread
/// (blocking the runtime on it, which has nothing else to run meanwhile).
#[derive(Debug)]
pub struct Blocking(RefCell<blocking::Client>);

impl Blocking {
    /// The blocking client itself.
    pub fn get_mut(&mut self) -> &mut blocking::Client {
        self.0.get_mut()
    }
}

impl AsyncCommands for Blocking {
    fn query<T: FromReply>(&self, command: Cmd) -> impl Future<Output = Result<T>> {
        ready(self.0.borrow_mut().query(command))
    }

    fn execute(&self, pipeline: &Pipeline) -> impl Future<Output = Result<Vec<Result<Value>>>> {
        ready(self.0.borrow_mut().execute(pipeline))
    }

    fn query_pipeline<T: FromReply>(&self, pipeline: &Pipeline) -> impl Future<Output = Result<T>> {
        ready(self.0.borrow_mut().query_pipeline(pipeline))
    }
}

/// One `#[test]` per client for each scenario: `<scenario>::on_async` on the async
/// [`Client`] and `<scenario>::on_blocking` on [`blocking::Client`], each with a fixture
/// of its own. A scenario is an `async fn <scenario><C: AnyClient>(&Fixture, &Scope)`;
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
                        super::$scenario::<$crate::support::clients::Blocking>(
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
pub async fn works<C: AnyClient>(client: &C) {
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
            assert_eq!(client.engine(), Engine::Ring)
        }
        Ok(Some(Engine::Epoll)) => assert_eq!(client.engine(), Engine::Epoll),
        _ => {}
    }
    client
}

/// Lets time pass without holding up the async client's event loop (its connections'
/// readers go on); for the blocking client it is just a wait.
pub async fn pause(time: Duration) {
    engine::sleep(time).await;
}

impl AnyClient for Client {
    fn kind() -> ClientKind {
        ClientKind::Async
    }

    async fn connect(cluster: &Cluster, config: Config) -> Self {
        connect_async(cluster, config).await
    }

    async fn try_connect(seeds: &[String], config: Config) -> Result<Self> {
        Client::connect(seeds, config).await
    }

    async fn execute_with_report(
        &self,
        pipeline: &Pipeline,
    ) -> Result<(Vec<Result<Value>>, PipelineReport)> {
        Client::execute_with_report(self, pipeline).await
    }

    async fn query_node<T: FromReply>(&self, node: &NodeAddr, command: Cmd) -> Result<T> {
        Client::query_node(self, node, command).await
    }

    async fn scan(&self, options: ScanOptions, between: Duration) -> Result<Scanned> {
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

    async fn refresh_slots(&self) -> Result<()> {
        Client::refresh_slots(self).await
    }

    fn slot_map(&self) -> Arc<SlotMap> {
        Client::slot_map(self)
    }

    fn connection_count(&self) -> usize {
        Client::connection_count(self)
    }

    fn stats(&self) -> Stats {
        Client::stats(self)
    }

    fn cache_clear(&self) {
        Client::cache_clear(self)
    }

    fn server_info(&self, node: &NodeAddr) -> Option<ServerInfo> {
        Client::server_info(self, node)
    }
}

impl AnyClient for Blocking {
    fn kind() -> ClientKind {
        ClientKind::Blocking
    }

    async fn connect(cluster: &Cluster, config: Config) -> Self {
        Blocking(RefCell::new(connect_blocking(cluster, config)))
    }

    async fn try_connect(seeds: &[String], config: Config) -> Result<Self> {
        blocking::Client::connect(seeds, config).map(|c| Blocking(RefCell::new(c)))
    }

    async fn execute_with_report(
        &self,
        pipeline: &Pipeline,
    ) -> Result<(Vec<Result<Value>>, PipelineReport)> {
        self.0.borrow_mut().execute_with_report(pipeline)
    }

    async fn query_node<T: FromReply>(&self, node: &NodeAddr, command: Cmd) -> Result<T> {
        self.0.borrow_mut().query_node(node, command)
    }

    async fn scan(&self, options: ScanOptions, between: Duration) -> Result<Scanned> {
        let mut client = self.0.borrow_mut();
        let mut scan = client.scan(options);
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

    async fn refresh_slots(&self) -> Result<()> {
        self.0.borrow_mut().refresh_slots()
    }

    fn slot_map(&self) -> Arc<SlotMap> {
        self.0.borrow().slot_map()
    }

    fn connection_count(&self) -> usize {
        self.0.borrow().connection_count()
    }

    fn stats(&self) -> Stats {
        self.0.borrow().stats()
    }

    fn cache_clear(&self) {
        self.0.borrow_mut().cache_clear()
    }

    fn server_info(&self, node: &NodeAddr) -> Option<ServerInfo> {
        self.0.borrow().server_info(node)
    }
}
