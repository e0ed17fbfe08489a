//! RESP2/RESP3: the wire protocol, pure (no sockets).
//!
//! - [`value`]: [`Value`], one decoded reply.
//! - [`decode`]: the incremental decoder: "one reply of n bytes" or "need more".
//! - [`encode`]: commands as arrays of bulk strings, with exact up-front reservation.

pub mod decode;
pub mod encode;
pub use crate::core::value;

pub use decode::{DecodeLimits, Decoded};
pub use value::Value;
