//! The tokio-uring engine's place in a build without the `tokio-uring` feature:
//! `Engine::IoUring` is refused where it is chosen, and `Auto` picks the ring engine (or
//! epoll) instead. The stream type is uninhabited: no value of it can exist.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::{ByteStream, SocketOptions, Transport};

/// The error of a build without the engine.
fn not_built() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this build has no tokio-uring engine (the `tokio-uring` feature)",
    )
}

/// No tokio-uring stream exists in this build.
#[derive(Debug)]
pub(crate) enum UringStream {}

impl Transport for UringStream {
    async fn connect(_addr: SocketAddr, _options: &SocketOptions) -> io::Result<Self> {
        Err(not_built())
    }
}

impl ByteStream for UringStream {
    async fn write_all(&self, _buf: BytesMut) -> (io::Result<()>, BytesMut) {
        match *self {}
    }

    async fn read(&self, _buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        match *self {}
    }

    fn shutdown(&self) {
        match *self {}
    }
}

/// Sets up (and drops) a two-entry ring: whether this process may use io_uring at all
/// (the ring engine asks too).
pub(crate) fn probe() -> io::Result<()> {
    io_uring::IoUring::new(2).map(drop)
}

/// Refuses: there is no tokio-uring runtime in this build.
pub(crate) fn block_on<F: std::future::Future>(_future: F) -> io::Result<F::Output> {
    Err(not_built())
}
