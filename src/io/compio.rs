//! The compio engine: compio's `TcpStream` (io_uring underneath), for applications that
//! already run on compio and embed one client per core.
//!
//! compio's reads and writes are completion-based with owned buffers, like ours; its
//! operations take `&mut self`, but they are implemented for `&TcpStream` too, so the
//! connection's reader and writer tasks share one stream through `&self`, each with a
//! fresh `&TcpStream` per call. A dropped operation is cancelled by compio and its buffer
//! kept until the kernel is done with it.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use compio::runtime::{JoinError, JoinHandle};

use super::{ByteStream, SocketOptions, Transport};

/// A compio TCP stream.
#[derive(Debug)]
pub(crate) struct CompioStream(TcpStream);

impl Transport for CompioStream {
    async fn connect(addr: SocketAddr, options: &SocketOptions) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        super::configure(&stream, options)?;
        Ok(CompioStream(stream))
    }
}

impl ByteStream for CompioStream {
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let compio::BufResult(res, buf) = (&self.0).write_all(buf).await;
        (res, buf)
    }

    async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        // compio's `read` fills a buffer from its start, over the unparsed bytes; `append`
        // reads into the spare capacity only (`len..capacity`) and then advances `len`
        // by what was read.
        if buf.len() == buf.capacity() {
            return (
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no spare capacity to read into",
                )),
                buf,
            );
        }
        let compio::BufResult(res, buf) = (&self.0).append(buf).await;
        (res, buf)
    }

    fn shutdown(&self) {
        // Fails with ENOTCONN when the peer already closed; either way the read ends.
        let _ = socket2::SockRef::from(&self.0).shutdown(Shutdown::Both);
    }
}

/// Runs a future on a new compio runtime on this thread.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> io::Result<F::Output> {
    let runtime = compio::runtime::Runtime::new()?;
    Ok(runtime.block_on(future))
}

/// True when a compio runtime runs this thread (ours from `engine::start`, or the
/// application's own).
pub(crate) fn is_running() -> bool {
    compio::runtime::Runtime::try_with_current(|_| ()).is_ok()
}

/// A task on this thread's compio runtime, with the semantics of the other runtimes'
/// handles: dropping it lets the task run on (compio would cancel it), and `abort`
/// stops it through `&self`.
#[derive(Debug)]
pub(crate) struct Task<T> {
    handle: RefCell<Option<JoinHandle<T>>>,
}

impl<T> Task<T> {
    /// Runs `future` as a task on this thread's compio runtime.
    pub(crate) fn spawn<F: Future<Output = T> + 'static>(future: F) -> Task<T>
    where
        T: 'static,
    {
        Task {
            handle: RefCell::new(Some(compio::runtime::spawn(future))),
        }
    }

    /// Stops the task: compio drops its future at its next turn.
    pub(crate) fn abort(&self) {
        // Dropping a compio handle cancels its task.
        drop(self.handle.borrow_mut().take());
    }

    /// True once the task ended (finished, cancelled or panicked) or was aborted.
    pub(crate) fn is_finished(&self) -> bool {
        self.handle
            .borrow()
            .as_ref()
            .is_none_or(|h| h.is_finished())
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = self.get_mut().handle.get_mut();
        let Some(handle) = slot.as_mut() else {
            return Poll::Ready(Err(JoinError::Cancelled));
        };
        let out = std::task::ready!(Pin::new(handle).poll(cx));
        *slot = None;
        Poll::Ready(out)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.get_mut().take() {
            handle.detach();
        }
    }
}

/// A timer of compio's runtime (its `sleep_until` future has no name: boxed).
pub(crate) fn sleep_until(at: Instant) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(compio::time::sleep_until(at))
}

/// Looks `host:port` up on compio's blocking pool.
pub(crate) async fn lookup_host(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let host = host.to_owned();
    let found = compio::runtime::spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        (host.as_str(), port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>())
    });
    found.await.map_err(io::Error::from)?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read appends after the bytes already in the buffer, never over them, and a
    /// shutdown ends a read in flight.
    #[test]
    fn reads_append_to_unparsed_bytes_and_shutdown_ends_a_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut socket, _) = listener.accept().unwrap();
            let mut got = [0u8; 4];
            socket.read_exact(&mut got).unwrap();
            socket.write_all(b"world").unwrap();
            // Keep the socket open: only the client's shutdown may end its next read.
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest);
            got
        });
        block_on(async move {
            let options = SocketOptions {
                keepalive: None,
                user_timeout: None,
            };
            let stream = std::rc::Rc::new(CompioStream::connect(addr, &options).await.unwrap());
            let socket = socket2::SockRef::from(&stream.0);
            assert!(socket.tcp_nodelay().unwrap());
            let (res, _) = stream.write_all(BytesMut::from(&b"ping"[..])).await;
            res.unwrap();
            let mut buf = BytesMut::with_capacity(64);
            buf.extend_from_slice(b"hello ");
            let mut n = 0;
            while n < 5 {
                let (res, back) = stream.read(buf).await;
                buf = back;
                n += res.unwrap();
            }
            assert_eq!(&buf[..], b"hello world");
            // A read in flight, then a shutdown from another task: the read ends.
            let reader = compio::runtime::spawn({
                let stream = stream.clone();
                async move { stream.read(BytesMut::with_capacity(16)).await.0 }
            });
            compio::time::sleep(std::time::Duration::from_millis(20)).await;
            stream.shutdown();
            let res = reader.await.unwrap();
            assert_eq!(res.unwrap(), 0);
        })
        .unwrap();
        assert_eq!(&peer.join().unwrap(), b"ping");
    }

    /// Like tokio's and the ring's handles: a dropped handle lets its task run on, an
    /// aborted task never runs again.
    #[test]
    fn a_dropped_task_runs_on_and_an_aborted_one_stops() {
        use std::cell::Cell;
        use std::rc::Rc;
        block_on(async {
            let ran = Rc::new(Cell::new(0));
            drop(Task::spawn({
                let ran = ran.clone();
                async move { ran.set(ran.get() + 1) }
            }));
            let stopped = Task::spawn({
                let ran = ran.clone();
                async move {
                    compio::time::sleep(std::time::Duration::from_millis(5)).await;
                    ran.set(ran.get() + 10)
                }
            });
            stopped.abort();
            assert!(stopped.is_finished());
            assert!(matches!(stopped.await, Err(JoinError::Cancelled)));
            compio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert_eq!(ran.get(), 1);
        })
        .unwrap();
    }
}
