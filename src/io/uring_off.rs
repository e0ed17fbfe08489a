//! The tokio-uring engine's place in a build without the `tokio-uring` feature:
//! `Engine::IoUring` is refused where it is chosen, and `Auto` picks the ring engine (or
//! epoll) instead. The stream type is uninhabited: no value of it can exist.

use std::io;

stream_not_built!(
    UringStream,
    "this build has no tokio-uring engine (the `tokio-uring` feature)"
);

/// Sets up (and drops) a two-entry ring: whether this process may use io_uring at all
/// (the ring engine asks too).
pub(crate) fn probe() -> io::Result<()> {
    io_uring::IoUring::new(2).map(drop)
}

/// Refuses: there is no tokio-uring runtime in this build.
pub(crate) fn block_on<F: std::future::Future>(_future: F) -> io::Result<F::Output> {
    Err(not_built())
}
