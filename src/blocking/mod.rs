//! A blocking client on a ring it owns: no runtime, no thread, no task.
//!
//! The classic cluster clients were synchronous and got their parallelism from green
//! threads; this one gets it from the kernel. [`Client::execute`] places every node's
//! write and a read for every node in one io_uring submission and waits for all the
//! replies in the same `io_uring_enter` (`min_complete` = connections still owing
//! replies, the request's deadline as the wait's timeout), looping only for replies that
//! arrive in pieces. Everything else is the async client's: the planner, the round state
//! machine (redirects, retries, backoff, deadline), the command table, the codec, the
//! handshake and the TLS layer.
//!
//! Where io_uring is refused (old kernel, `kernel.io_uring_disabled`, a seccomp profile),
//! the same client runs on nonblocking sockets and `poll(2)`, chosen the way the async
//! engines are: [`Config::engine`](crate::Config::engine) or the `REDIS_CLUSTER_URING_ENGINE`
//! environment variable (`io_uring` → the ring, `epoll` → `poll`), otherwise a probe.
//!
//! ```no_run
//! use redis_cluster_uring::{blocking, Config, Pipeline};
//! let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
//! let mut pipe = Pipeline::new();
//! for i in 0..100 {
//!     pipe.set(format!("key:{i}"), i); // keys on every node
//! }
//! for reply in client.execute(&pipe)? {
//!     reply?; // a server error is that command's result
//! }
//! let n: i64 = client.query(redis_cluster_uring::cmd("INCR").arg("visits"))?;
//! # let _ = n;
//! # Ok::<(), redis_cluster_uring::Error>(())
//! ```
//!
//! # Layout
//! - `driver.rs`: the public [`Client`] and the driver loop (rounds, connections,
//!   refresh); its connections are the core's sans-IO `core/conn.rs` (TLS, handshake,
//!   reply FIFO);
//! - `transport.rs`: what a backend provides;
//! - `ring.rs`: the io_uring backend (all of this client's `unsafe`);
//! - `poll.rs`: the `poll(2)` backend;
//! - `pubsub.rs`: the [`Subscriber`], its connections reconciled by `crate::core::pubsub`;
//! - `scan.rs`: the cluster SCAN driver (the decisions are `crate::core::scan`'s);
//! - `transaction.rs`: atomic pipelines and `WATCH` sessions (the decisions are
//!   `crate::core::transaction`'s).
//!
//! # Timeouts
//! A connection that gives up on a reply is closed (its late replies could not be matched
//! to anyone); the next request to that node opens a new one. A request's deadline is
//! `request_timeout`; commands still without a reply then fail with
//! [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), while the replies that came are kept.

mod api;
mod driver;
mod poll;
mod pubsub;
mod ring;
mod scan;
mod transaction;
mod transport;

pub use driver::Client;
pub use pubsub::Subscriber;
pub use ring::RingFeatures;
pub use scan::BlockingScan;
pub use transaction::Watched;
