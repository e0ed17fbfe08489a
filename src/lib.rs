//! A Redis Cluster client on a single-threaded io_uring event loop.
//!
//! A pipeline whose commands touch many nodes is split into one batch per node, every
//! batch is written in the same io_uring submission, and all replies are awaited together:
//! the pipeline costs the slowest node's round trip, not the sum of them. One thread, no
//! task per request; a [`Client`] is `!Send`, the natural shape for thread-per-core
//! servers that embed one client per core. Services on a multi-threaded runtime share a
//! [`SharedClient`] instead.
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
//! The folders show the split between what decides and what moves bytes:
//! - [`core`] (`src/core/`): the sans-IO core. Codec, command table, routing, slot map,
//!   pipeline planning, rounds with their redirect and retry budgets, transactions,
//!   pub/sub reconciliation, SCAN, the handshake and TLS records. No sockets, no clocks,
//!   no runtime: unit-tested without a server, and it imports no driver.
//! - [`client`] (`src/client.rs`, `src/client/`): the async [`Client`] and its
//!   connection pool, transactions, SCAN driver and [`client::Subscriber`].
//! - [`blocking`] (`src/blocking/`): [`blocking::Client`], the same client without a
//!   runtime, on an io_uring instance it owns (one `io_uring_enter` per pipeline) or
//!   `poll(2)`; its connections are the core's sans-IO `core/conn.rs` under two thin backends.
//! - `io` (`src/io/`): the async client's engines (`io/ring/`, the ring it owns and an
//!   executor parked in it, the default; `io/uring.rs` on `tokio-uring`, `io/epoll.rs` on
//!   plain tokio, `io/compio.rs` on compio) and `io/rt.rs`, the runtime services the
//!   client takes from whichever runs; [`engine`] picks one (probe, environment override,
//!   runtime start).
//! - [`commands`]: typed helpers (`get`, `hset`, `zadd`, `eval`...), each defined once and
//!   emitted as a `Cmd` constructor, a [`Pipeline`] method, and provided methods of the
//!   [`AsyncCommands`] trait ([`Client`], [`SharedClient`]) and the [`Commands`] trait
//!   ([`blocking::Client`]).
//! - [`shared`] (`src/shared.rs`): [`SharedClient`], the `Send + Sync + Clone` handle for
//!   multi-threaded runtimes: worker threads, each an async [`Client`] on its own ring.
//!
//! The user-facing parts of the core are re-exported here at their usual paths
//! ([`cmd`](mod@cmd), [`config`], [`error`], [`resp`], [`slot`], [`topology`], [`tls`],
//! [`url`], [`reply`], [`stats`], [`telemetry`], and the small [`handshake`], [`pubsub`], [`scan`],
//! [`report`] and [`transaction`] modules).
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod blocking;
pub mod client;
pub mod commands;
pub mod core;
pub mod engine;
mod io;
pub mod shared;
#[cfg(test)]
mod sim;

// The client API: the user-facing parts of the core, at the paths users know.
pub use crate::core::{
    cache, cmd, config, error, reply, resp, slot, stats, telemetry, tls, topology, url,
};

/// Connection handshake settings: protocol, credentials, what a node says of itself.
pub mod handshake {
    pub use crate::core::handshake::{CredentialSource, Credentials, Protocol, ServerInfo};
}

/// Pub/sub: what the subscribers ([`client::Subscriber`], [`blocking::Subscriber`])
/// deliver.
pub mod pubsub {
    pub use crate::core::pubsub::{Message, SubKind};
}

/// Cluster `SCAN` with progress counted in slots (see [`core::scan`]).
pub mod scan {
    pub use crate::blocking::BlockingScan;
    pub use crate::client::ClusterScan;
    pub use crate::core::scan::ScanOptions;
}

/// The per-node report of a pipeline.
pub mod report {
    pub use crate::core::report::{NodeReport, PipelineReport};
}

/// Transactions: what a `WATCH` session ends with (see
/// [`core::transaction`] for how they are judged).
pub mod transaction {
    pub use crate::core::transaction::TxOutcome;
}

pub use cache::{CacheConfig, CachedCommand};
pub use client::{Client, Pipeline};
pub use cmd::{cmd, Cmd, ToArg, ToArgs};
pub use commands::{AsyncCommands, Commands};
pub use config::{Config, Execution, ReadFrom, RefreshPolicy, ReplicaChoice};
pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
pub use reply::FromReply;
pub use resp::Value;
pub use shared::SharedClient;
pub use slot::{slot_for_key, Slot};
pub use stats::Stats;
pub use topology::{NodeAddr, SlotMap};

/// What most programs use, in one import: the clients, the commands traits, commands,
/// pipelines, configuration, errors and replies.
///
/// ```
/// use redis_cluster_uring::prelude::*;
/// let mut pipe = Pipeline::new();
/// pipe.add(cmd("PING"));
/// # let _: Option<Client> = None;
/// ```
pub mod prelude {
    pub use crate::{
        blocking, cmd, engine, AsyncCommands, Client, Cmd, Commands, Config, Error, ErrorKind,
        FromReply, Pipeline, Result, SharedClient, Value,
    };
}

/// The README's examples, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
