//! The engines: the only code that touches sockets.
//!
//! An engine is a [`Transport`]: connect, write a whole buffer, read into a buffer's spare
//! capacity, shut down. Everything else (what to write, how to match replies to requests,
//! redirects, retries) lives in the engine-agnostic core, so adding an engine means
//! writing one small file here.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

pub(crate) mod epoll;
pub(crate) mod uring;

/// A connected byte stream, as an engine provides it.
///
/// Buffers are passed by value and handed back with the result, because with io_uring the
/// kernel writes into them after the call was made.
pub(crate) trait Transport: Sized + 'static {
    /// Connects with `TCP_NODELAY` set: a pipeline is one write and must not wait for an
    /// ACK of the previous segment (Nagle) before leaving.
    async fn connect(addr: SocketAddr) -> io::Result<Self>;

    /// Writes all of `buf`.
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut);

    /// Reads once into the spare capacity at the end of `buf` (never over the bytes
    /// already in it) and extends its length by what was read; `Ok(0)` is end of stream.
    async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut);

    /// Shuts both directions down so that an outstanding read completes.
    fn shutdown(&self);
}
