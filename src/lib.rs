//! A Redis Cluster client on a single-threaded io_uring event loop.
//!
//! A pipeline whose commands touch many nodes is split into one batch per node, every
//! batch is written in the same io_uring submission, and all replies are awaited together:
//! the pipeline costs the slowest node's round trip, not the sum of them. One thread, no
//! task per request; a [`Client`] is `!Send`, the natural shape for thread-per-core
//! servers that embed one client per core.
//!
//! # Quick start
//! ```no_run
//! use redis_cluster_uring::{engine, Client, Config, Pipeline};
//! engine::start(async {
//!     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
//!     let mut pipe = Pipeline::new();
//!     pipe.set("a", 1).set("b", 2).get("a").get("b");
//!     for reply in client.execute(&pipe).await? {
//!         println!("{:?}", reply?);
//!     }
//!     Ok::<(), redis_cluster_uring::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! # Layout
//! The pure core (no sockets, no clocks; unit-tested without a server):
//! - [`resp`]: RESP2/RESP3 values, the incremental decoder, the command encoder.
//! - [`slot`]: CRC16 key hashing and hash tags.
//! - [`cmd`](mod@cmd): the command builder.
//! - [`commands`]: typed helpers (`get`, `hset`, `zadd`, `eval`...), each defined once as a
//!   `Cmd` constructor, a [`Pipeline`] method, a [`Client`] method and a
//!   [`blocking::Client`] method.
//! - [`command_table`]: the class of every command (regular, empty, connection state,
//!   blocking, multi-node, node-specific) and so the path it takes.
//! - [`route`]: which key of a command decides its slot.
//! - [`topology`]: the slot map, built from `CLUSTER SLOTS` / `CLUSTER SHARDS`.
//! - [`split`]: cross-slot `MGET`/`MSET`/`DEL`/`EXISTS`/... split by slot and merged.
//! - [`fanout`]: multi-node commands (`DBSIZE`, `FLUSHALL`, `KEYS`, ...) sent to every
//!   node and merged by their response policy.
//! - [`plan`]: pipeline planning into per-node batches.
//! - [`read_route`]: where read-only commands go under a [`ReadFrom`] policy.
//! - [`scan`]: cluster `SCAN` as a state machine, progress counted in slots.
//! - [`pubsub`]: desired subscriptions and their reconciliation with the cluster.
//! - [`report`]: the per-node report of a pipeline (sent, round trip, errors per node).
//! - [`transaction`]: `MULTI ... EXEC` in one write, judged as a whole (redirects,
//!   `EXECABORT`, `WATCH` conflicts).
//! - [`round`]: the round state machine: redirects, retries, backoff, deadline, with
//!   separate redirect and retry budgets.
//! - [`handshake`]: the connection handshake (HELLO, AUTH, SETNAME, READONLY) as a
//!   state machine; credentials.
//! - [`tls`]: TLS as a buffer-in, buffer-out layer on rustls; [`tls::TlsConfig`].
//! - [`url`]: seeds as `host:port` or `redis://` URLs.
//! - [`error`]: the one error type.
//!
//! The driver:
//! - `pool`: connections and in-flight requests in slabs; matches replies to requests.
//! - `connection`: one connection's writer and long-lived reader, over any engine.
//! - `io`: the engines (`io/uring.rs` on `tokio-uring`, `io/epoll.rs` on plain tokio);
//!   the only code that touches sockets.
//! - [`engine`]: picks io_uring or epoll (probe, environment override, runtime start).
//! - [`client`]: the public [`Client`] and [`Pipeline`]: rounds, redirects, refreshes;
//!   transactions (`client/transaction.rs`), the SCAN driver (`client/scan.rs`) and the
//!   pub/sub [`client::Subscriber`]
//!   (`client/pubsub.rs`).
//! - [`blocking`]: [`blocking::Client`], the same client without a runtime, on an
//!   io_uring instance it owns (one `io_uring_enter` per pipeline) or `poll(2)`; its
//!   connections are sans-IO (`blocking/conn.rs`) under two thin backends, and its SCAN,
//!   transactions and [`blocking::Subscriber`] drive the same pure machines.
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod blocking;
pub mod client;
pub mod cmd;
pub mod command_table;
pub mod commands;
pub mod config;
mod connection;
pub mod engine;
pub mod error;
mod expand;
pub mod fanout;
pub mod handshake;
mod io;
pub mod plan;
mod pool;
pub mod pubsub;
pub mod read_route;
pub mod reply;
pub mod report;
pub mod resp;
pub mod round;
pub mod route;
pub mod scan;
pub mod slot;
pub mod split;
pub mod stats;
pub mod tls;
pub mod topology;
pub mod transaction;
pub mod url;

pub use client::{Client, Pipeline};
pub use cmd::{cmd, Cmd, ToArg, ToArgs};
pub use config::{Config, Execution, ReadFrom, RefreshPolicy, ReplicaChoice};
pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
pub use reply::FromReply;
pub use resp::Value;
pub use slot::{slot_for_key, Slot};
pub use stats::Stats;
pub use topology::{NodeAddr, SlotMap};

/// The README's examples, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
