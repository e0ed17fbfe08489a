//! The sans-IO core: every decision of the client, with no socket, no clock and no
//! runtime. Drivers (`crate::client`, `crate::blocking`) feed it bytes and time and carry
//! out what it says.
//!
//! Public for those who drive it themselves, benchmark it or fuzz it; the client API is
//! at the crate root. Nothing here imports a driver, a runtime, a ring or a socket.
//!
//! # Layout, from the bottom up
//! - [`value`], [`node`], [`slot`]: a reply, a node's address, a slot.
//! - [`error`]: the one error type.
//! - [`resp`]: the incremental decoder and the encoder.
//! - [`cmd`]: the command builder; [`reply`]: replies into Rust types; [`redirect`]:
//!   `MOVED` and `ASK`.
//! - [`command_table`], [`route`]: each command's class and the key that routes it;
//!   [`judgement`]: both, found once when a command enters a request and carried with it.
//! - [`topology`]: the slot map from `CLUSTER SLOTS` / `CLUSTER SHARDS`.
//! - [`config`], [`url`]: options and seeds.
//! - [`plan`], [`split`], [`fanout`], `expand`: pipelines into per-node batches,
//!   cross-slot splits, multi-node commands.
//! - [`cluster`]: the cluster as a client sees it (slot map, seeds, configuration,
//!   refresh policy, read router, counters) and the decisions both clients make from it
//!   (a command's path, the request a pipeline becomes, a round's effects, a refresh's
//!   questions and what it adopts, warm-ups, a new connection's setup).
//! - [`nodes`]: each node's health and handshake facts, and the decisions made from
//!   them (reconnect backoff, down for read routing, warm-ups, any primary).
//! - [`read_route`]: where reads go under a `ReadFrom` policy.
//! - [`refresh`]: when to reload the slot map, whom to ask, how to judge the answers.
//! - [`round`]: rounds with their redirect and retry budgets; [`transaction`]: `MULTI`,
//!   `EXEC` and `WATCH` judged as a whole; `request`: one request's whole life (expansion,
//!   the order its batches go out, when a round is over, the report), which every driver
//!   runs the same way.
//! - [`handshake`], [`tls`]: a connection's handshake and its TLS records; `conn`: one
//!   connection with no I/O (TLS records, handshake, reply FIFO, push frames), which
//!   every driver carries; `pool`: the async client's connections and in-flight requests
//!   (each reply to its caller, backlog caps, stalls, timeouts in a row, idle and
//!   dedicated connections).
//! - [`cache`]: the client-side cache and the rules that keep it correct.
//! - [`pubsub`], [`scan`], [`report`], [`stats`]: subscriptions, cluster SCAN, the
//!   per-node report, the counters.

pub mod cache;
pub mod cluster;
pub mod cmd;
pub mod command_table;
pub mod config;
pub(crate) mod conn;
pub mod error;
pub(crate) mod expand;
pub mod fanout;
pub mod handshake;
pub mod judgement;
pub mod node;
pub mod nodes;
pub mod pipeline;
pub mod plan;
pub(crate) mod pool;
pub mod pubsub;
pub mod read_route;
pub mod redirect;
pub mod refresh;
pub mod reply;
pub mod report;
pub(crate) mod request;
pub mod resp;
pub mod round;
pub mod route;
pub mod scan;
pub mod slot;
pub mod split;
pub mod stats;
pub mod telemetry;
#[cfg(feature = "tls")]
pub mod tls;
// Without the `tls` feature, a `TlsConfig` that refuses to be used (see the file).
#[cfg(not(feature = "tls"))]
#[path = "tls_off.rs"]
pub mod tls;
pub mod topology;
pub mod transaction;
pub mod url;
pub mod value;
