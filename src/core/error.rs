//! The crate's one error type.
//!
//! Every fallible call returns [`Error`]; callers branch on [`Error::kind`]. Redirect
//! errors carry the slot and the address they point at, so a caller (or the driver)
//! can act on them without parsing text again.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::core::node::NodeAddr;
use crate::core::slot::Slot;
use crate::core::value::Value;

/// What went wrong, coarsely: the thing a caller branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A socket operation failed or a connection was lost.
    Io,
    /// The server sent bytes that are not valid RESP, or that exceed the decoder's limits.
    Protocol,
    /// The server answered with an error reply (`-ERR ...`, `-WRONGTYPE ...`).
    ServerError,
    /// A command kept being redirected (MOVED/ASK) past the configured limit.
    RedirectLimit,
    /// A reply said `MOVED` where the client does not follow redirects
    /// ([`Client::query_node`](crate::Client::query_node)); the error carries slot and target.
    Moved,
    /// A reply said `ASK` where the client does not follow redirects; the error carries
    /// slot and target.
    Ask,
    /// A request did not get its reply within the configured timeout.
    Timeout,
    /// The cluster reported `CLUSTERDOWN`, or no node serves the slot.
    ClusterDown,
    /// The keys of one command hash to different slots.
    CrossSlot,
    /// The configuration or the arguments given by the caller are invalid.
    Config,
    /// The kernel refuses io_uring (old kernel, `kernel.io_uring_disabled`, seccomp).
    IoUringUnavailable,
    /// A reply could not be converted to the type the caller asked for.
    TypeMismatch,
    /// The client was shut down before the request completed.
    Shutdown,
    /// A connection's queue of unsent bytes is full (the node is not keeping up); the
    /// request was not sent.
    Overloaded,
    /// The command cannot run on the path it was given (a transaction or subscription
    /// command on the shared connection, a multi-node command without a node, a blocking
    /// command in a pipeline); nothing was sent, and the detail names what to use instead.
    Unsupported,
    /// A node refused the credentials (or required some): the connection's handshake
    /// failed and the connection was not used. The detail names the user, never the
    /// secret.
    Auth,
    /// The TLS handshake or a TLS record failed (certificate not trusted, name mismatch,
    /// protocol alert); the connection was not used.
    Tls,
    /// A command sent to several nodes (`DBSIZE`, `FLUSHALL`, `KEYS`, ...) failed on some
    /// of them; [`Error::node_outcomes`] has every node's result.
    PartialFailure,
    /// The command itself is malformed (no name, a blocking timeout that is not a
    /// number); nothing was sent.
    InvalidCommand,
    /// A transaction was not run: `EXEC` answered `EXECABORT` because another of its
    /// commands was refused when queued (that command carries the server's error).
    TransactionAborted,
    /// A `WATCH`ed key changed before `EXEC` in every attempt the transaction helper was
    /// allowed ([`Client::transaction`](crate::Client::transaction)).
    WatchConflict,
}

/// The error type of this crate.
///
/// Cheap to clone (the I/O source is shared), so one connection failure can be handed to
/// every request that was waiting on that connection.
///
/// ```
/// use redis_cluster_uring::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::Config, "no seed address given");
/// assert_eq!(e.kind(), ErrorKind::Config);
/// assert!(e.to_string().contains("no seed"));
/// ```
#[derive(Clone)]
pub struct Error {
    /// Boxed: an error is rare and a `Result<Value>` is everywhere (one per command of a
    /// pipeline, in every vector a reply passes through), so the `Result` is no larger
    /// than the value.
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    detail: Box<str>,
    redirect: Option<(Slot, Box<str>)>,
    source: Option<Arc<io::Error>>,
    outcomes: Option<Arc<NodeOutcomes>>,
}

impl From<Inner> for Error {
    fn from(inner: Inner) -> Error {
        Error {
            inner: Box::new(inner),
        }
    }
}

/// Every node's result of a multi-node command.
pub type NodeOutcomes = [(NodeAddr, Result<Value>)];

impl Error {
    /// Makes an error of `kind` with a human-readable detail.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error::from(Inner {
            kind,
            detail: detail.into().into_boxed_str(),
            redirect: None,
            source: None,
            outcomes: None,
        })
    }

    /// Makes an I/O error with context (what the client was doing, and where).
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::from(Inner {
            kind: ErrorKind::Io,
            detail: context.into().into_boxed_str(),
            redirect: None,
            source: Some(Arc::new(source)),
            outcomes: None,
        })
    }

    /// Makes a protocol error: the byte stream from a server is not valid RESP.
    pub fn protocol(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Protocol, detail)
    }

    /// Makes a redirect error (`Moved` or `Ask`) with the slot and the target address.
    pub fn redirect(kind: ErrorKind, slot: Slot, addr: impl Into<String>) -> Self {
        let addr: String = addr.into();
        let word = if kind == ErrorKind::Ask {
            "ASK"
        } else {
            "MOVED"
        };
        Error::from(Inner {
            kind,
            detail: format!("{word} {} {addr}", slot.get()).into_boxed_str(),
            redirect: Some((slot, addr.into_boxed_str())),
            source: None,
            outcomes: None,
        })
    }

    /// The coarse category of this error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The detail text (for server errors: the error line the server sent).
    pub fn detail(&self) -> &str {
        &self.inner.detail
    }

    /// For `Moved`/`Ask` (and a `RedirectLimit` that remembers the last hop): the slot and
    /// the address the server pointed at.
    pub fn redirect_target(&self) -> Option<(Slot, &str)> {
        self.inner.redirect.as_ref().map(|(s, a)| (*s, &**a))
    }

    /// For [`ErrorKind::PartialFailure`]: what each node answered (or how it failed).
    pub fn node_outcomes(&self) -> Option<&NodeOutcomes> {
        self.inner.outcomes.as_deref()
    }

    /// Attaches every node's outcome (multi-node commands).
    pub(crate) fn with_outcomes(mut self, outcomes: Vec<(NodeAddr, Result<Value>)>) -> Self {
        self.inner.outcomes = Some(outcomes.into());
        self
    }

    /// Adds the last redirect hop to an error (used for `RedirectLimit`).
    pub(crate) fn with_redirect(mut self, slot: Slot, addr: &str) -> Self {
        self.inner.redirect = Some((slot, addr.into()));
        self
    }

    /// For server errors: the first word of the error line (`ERR`, `WRONGTYPE`, `MOVED`).
    pub fn code(&self) -> Option<&str> {
        match self.inner.kind {
            ErrorKind::ServerError
            | ErrorKind::Moved
            | ErrorKind::Ask
            | ErrorKind::ClusterDown
            | ErrorKind::CrossSlot => self.inner.detail.split(' ').next(),
            _ => None,
        }
    }

    /// True when retrying the same request later may succeed (I/O, timeout, cluster down).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Io | ErrorKind::Timeout | ErrorKind::ClusterDown | ErrorKind::Overloaded
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("detail", &self.inner.detail);
        if let Some((slot, addr)) = &self.inner.redirect {
            d.field("slot", slot).field("addr", addr);
        }
        if let Some(src) = &self.inner.source {
            d.field("source", src);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.inner.kind {
            ErrorKind::Io => "I/O error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::ServerError => "server error",
            ErrorKind::RedirectLimit => "too many redirects",
            ErrorKind::Moved => "moved",
            ErrorKind::Ask => "ask",
            ErrorKind::Timeout => "timed out",
            ErrorKind::ClusterDown => "cluster down",
            ErrorKind::CrossSlot => "cross-slot",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::IoUringUnavailable => "io_uring unavailable",
            ErrorKind::TypeMismatch => "type mismatch",
            ErrorKind::Shutdown => "client shut down",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unsupported => "unsupported here",
            ErrorKind::InvalidCommand => "invalid command",
            ErrorKind::TransactionAborted => "transaction aborted",
            ErrorKind::WatchConflict => "watch conflict",
            ErrorKind::Auth => "authentication failed",
            ErrorKind::Tls => "TLS error",
            ErrorKind::PartialFailure => "failed on some nodes",
        };
        write!(f, "{what}: {}", self.inner.detail)?;
        if let Some(src) = &self.inner.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand for `Result<T, Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_error_carries_slot_and_addr() {
        let e = Error::redirect(ErrorKind::Moved, Slot::new(3999).unwrap(), "127.0.0.1:6381");
        assert_eq!(e.kind(), ErrorKind::Moved);
        let (slot, addr) = e.redirect_target().unwrap();
        assert_eq!(slot.get(), 3999);
        assert_eq!(addr, "127.0.0.1:6381");
        assert_eq!(e.code(), Some("MOVED"));
    }

    #[test]
    fn a_result_is_no_larger_than_its_value() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Result<Value>>(),
            std::mem::size_of::<Value>()
        );
    }

    #[test]
    fn io_error_exposes_source() {
        let e = Error::io(
            "connect 127.0.0.1:1",
            io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.is_transient());
    }
}
