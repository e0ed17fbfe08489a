//! The public client: single commands, pipelines, redirects, refreshes.
//!
//! A [`Client`] is `!Send` and lives on one thread: cloning it is cheap (an `Rc`), and every
//! clone shares the connections, so many tasks on the thread calling it at once share one
//! write per node per loop turn (auto-pipelining).
//!
//! # A request's life
//! 1. Each command's class ([`crate::core::command_table`]) picks its path: the shared
//!    connection, a dedicated one (blocking commands), or a typed refusal before anything
//!    is sent.
//! 2. The round state machine ([`crate::core::round::Rounds`]) plans the commands into one
//!    encoded batch per node.
//! 3. Each batch is queued on its node's connection (opened lazily) and the connection's
//!    writer is woken. Nothing is awaited until every batch is queued, so all writes go
//!    into the same io_uring submission.
//! 4. Readers hand the bytes to the connection's sans-IO state (`core::conn`), which
//!    decodes replies; the pool (`core::pool`) places them by index and wakes the
//!    request when the round is complete.
//! 5. The machine judges each reply (kept, redirected, retried after a backoff, failed)
//!    and says what to send next, or when to wake; this file only moves bytes and time.

mod api;
mod connection;
mod driver;
mod pubsub;
mod scan;
mod transaction;

pub use driver::{Client, Pipeline};
pub use pubsub::Subscriber;
pub use scan::ClusterScan;
pub use transaction::Watched;
