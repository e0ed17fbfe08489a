//! A Redis Cluster client on a single-threaded io_uring event loop.
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod cmd;
pub mod error;
pub mod plan;
pub mod resp;
pub mod route;
pub mod slot;
pub mod topology;

pub use cmd::{cmd, Cmd, ToArg};
pub use error::{Error, ErrorKind, Result};
pub use resp::Value;
pub use slot::{slot_for_key, Slot};
pub use topology::{NodeAddr, SlotMap};
