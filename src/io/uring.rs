//! The io_uring engine, on `tokio-uring`.
//!
//! Submissions are batched by the runtime: operations created while tasks run are pushed
//! to the submission queue and submitted with one `io_uring_enter` when the thread parks.
//! A pipeline that queues a batch on every node's connection therefore puts all the
//! writes in flight with a single system call.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

use super::{ByteStream, SocketOptions, Transport};

/// A tokio-uring TCP stream.
pub(crate) struct UringStream(TcpStream);

impl std::fmt::Debug for UringStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UringStream")
    }
}

impl Transport for UringStream {
    async fn connect(addr: SocketAddr, options: &SocketOptions) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        // SAFETY: `borrow_raw` needs the descriptor to stay open while the borrow is used.
        // It belongs to `stream`, which is neither closed nor moved before `configure`
        // returns, and `fd` is not used after that.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        super::configure(fd, options)?;
        Ok(UringStream(stream))
    }
}

impl ByteStream for UringStream {
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let (res, buf) = self.0.write_all(buf).await;
        (res, buf)
    }

    async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        // A plain read would fill the buffer from its start, over unparsed bytes; a slice
        // starting at `len` makes the kernel write into the spare capacity only, and
        // completing it advances `len` by the bytes read.
        let start = buf.len();
        let end = buf.capacity();
        if start == end {
            return (
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no spare capacity to read into",
                )),
                buf,
            );
        }
        let (res, slice) = self.0.read(buf.slice(start..end)).await;
        (res, slice.into_inner())
    }

    fn shutdown(&self) {
        // Fails with ENOTCONN when the peer already closed; either way the read ends.
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// Sets up (and drops) a two-entry ring: the cheapest complete test that this process may
/// use io_uring.
pub(crate) fn probe() -> io::Result<()> {
    io_uring::IoUring::new(2).map(drop)
}

/// Runs a future on a new tokio-uring runtime on this thread.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> io::Result<F::Output> {
    let runtime = tokio_uring::Runtime::new(&tokio_uring::builder())?;
    Ok(runtime.block_on(future))
}
