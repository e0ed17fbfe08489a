//! Redirects: the `MOVED` and `ASK` error replies of a cluster node.

use crate::core::slot::Slot;
use crate::core::topology::NodeAddr;

/// A redirect parsed from an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The slot lives elsewhere now: update the map, resend there.
    Moved {
        /// The slot.
        slot: Slot,
        /// Its new owner (empty host: the host of the node that answered).
        addr: NodeAddr,
    },
    /// The slot is being migrated and this key is already on the target: resend there
    /// once, preceded by `ASKING`, without touching the map.
    Ask {
        /// The slot.
        slot: Slot,
        /// The migration target (empty host: the host of the node that answered).
        addr: NodeAddr,
    },
}

/// Parses `MOVED <slot> <host:port>` or `ASK <slot> <host:port>`; anything else is `None`.
///
/// ```
/// use redis_cluster_uring::{core::redirect::{parse_redirect, Redirect}, NodeAddr, Slot};
/// assert_eq!(
///     parse_redirect(b"MOVED 3999 127.0.0.1:6381"),
///     Some(Redirect::Moved { slot: Slot::new(3999).unwrap(), addr: NodeAddr::new("127.0.0.1", 6381) })
/// );
/// assert_eq!(parse_redirect(b"MOVED 99999 127.0.0.1:6381"), None);
/// ```
pub fn parse_redirect(error_line: &[u8]) -> Option<Redirect> {
    let text = std::str::from_utf8(error_line).ok()?;
    let mut words = text.split(' ');
    let kind = words.next()?;
    let slot = Slot::new(words.next()?.parse().ok()?)?;
    let addr = NodeAddr::parse(words.next()?)?;
    if words.next().is_some() {
        return None;
    }
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, addr }),
        "ASK" => Some(Redirect::Ask { slot, addr }),
        _ => None,
    }
}
