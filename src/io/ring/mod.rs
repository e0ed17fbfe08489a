//! The owned-ring engine: the async client on an io_uring instance it owns (the
//! `io-uring` crate), with a small single-threaded executor parked in that ring.
//!
//! - [`setup`]: ring setup and feature probes, shared with the blocking client's ring.
//! - [`reactor`]: operations in flight, the buffers the kernel owns meanwhile, and the
//!   one `io_uring_enter` per loop turn.
//! - [`executor`]: tasks, wakers (cross-thread wakes through an eventfd) and timers.
//! - [`driven`]: connections whose bytes the loop moves itself, without a task.
//! - this file: the socket ([`RingStream`]) as the connection code sees it.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use io_uring::{opcode, types};

use super::{ByteStream, SocketOptions, Transport};
use driven::{received, sent, Sent, Socket as _};
use executor::Runtime;
use reactor::{Owned, Purpose};

mod driven;
pub(crate) mod executor;
pub(crate) mod reactor;
pub(crate) mod setup;

pub(crate) use reactor::GATHER_US as DEFAULT_GATHER_US;

/// A TCP socket whose reads, sends and connect go through this thread's ring.
pub(crate) struct RingStream {
    socket: socket2::Socket,
    /// Its slot in the ring's registered file table, if it got one.
    fixed: Option<u32>,
}

/// How an SQE names a socket: its registered slot, or its descriptor.
#[derive(Clone, Copy)]
enum Target {
    Fixed(u32),
    Fd(RawFd),
}

macro_rules! on_target {
    ($target:expr, |$t:ident| $make:expr) => {
        match $target {
            Target::Fixed(i) => {
                let $t = types::Fixed(i);
                $make
            }
            Target::Fd(fd) => {
                let $t = types::Fd(fd);
                $make
            }
        }
    };
}

impl Drop for RingStream {
    fn drop(&mut self) {
        if let (Some(slot), Some(rt)) = (self.fixed.take(), executor::current()) {
            if let Ok(mut reactor) = rt.reactor.try_borrow_mut() {
                reactor.unregister(slot);
            }
        }
    }
}

impl std::fmt::Debug for RingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingStream")
    }
}

fn runtime() -> io::Result<Rc<Runtime>> {
    executor::current().ok_or_else(|| io::Error::other("not inside the ring engine"))
}

/// One operation in flight, as its future: its result and what it owned, once done.
struct OpFuture {
    rt: Rc<Runtime>,
    key: Option<usize>,
}

impl OpFuture {
    fn start(
        entry: io_uring::squeue::Entry,
        owned: Owned,
        purpose: Purpose,
    ) -> io::Result<OpFuture> {
        let rt = runtime()?;
        let key = rt.reactor.borrow_mut().start(entry, owned, purpose)?;
        Ok(OpFuture { rt, key: Some(key) })
    }
}

impl Future for OpFuture {
    type Output = (i32, Owned);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(i32, Owned)> {
        let Some(key) = self.key else {
            return Poll::Ready((-libc::ECANCELED, Owned::default()));
        };
        let polled = self.rt.reactor.borrow_mut().poll_op(key, cx.waker());
        if polled.is_ready() {
            self.key = None;
        }
        polled
    }
}

impl Drop for OpFuture {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // The kernel may still use the buffer: the reactor keeps it until the
            // completion. (`try_borrow_mut`: a drop during the reactor's own drop.)
            if let Ok(mut reactor) = self.rt.reactor.try_borrow_mut() {
                reactor.orphan(key);
            }
        }
    }
}

fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

impl RingStream {
    fn target(&self) -> Target {
        match self.fixed {
            Some(i) => Target::Fixed(i),
            None => Target::Fd(self.fd()),
        }
    }
}

impl driven::Socket for RingStream {
    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn shutdown(&self) {
        ByteStream::shutdown(self);
    }

    /// A send of all of `buf`. The buffer must then be owned by the operation (the
    /// reactor) until its completion, unmoved in memory.
    fn send_entry(&self, buf: &BytesMut) -> io_uring::squeue::Entry {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let ptr = buf.as_ptr();
        on_target!(self.target(), |t| opcode::Send::new(t, ptr, len)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build())
    }

    /// A read into `buf`'s spare capacity, never over the bytes in it. The buffer must
    /// then be owned by the operation until its completion; [`received`] applies it.
    fn recv_entry(&self, buf: &mut BytesMut) -> io::Result<io_uring::squeue::Entry> {
        let start = buf.len();
        let spare = buf.capacity() - start;
        if spare == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no spare capacity to read into",
            ));
        }
        let len = u32::try_from(spare).unwrap_or(u32::MAX);
        // SAFETY: the pointer is the start of `buf`'s spare capacity, `len` bytes of
        // which are allocated; the kernel writes there only, never over unparsed bytes.
        let ptr = unsafe { buf.as_mut_ptr().add(start) };
        Ok(on_target!(self.target(), |t| opcode::Recv::new(
            t, ptr, len
        )
        .build()))
    }
}

impl Transport for RingStream {
    async fn connect(addr: SocketAddr, options: &SocketOptions) -> io::Result<Self> {
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(
            domain,
            socket2::Type::STREAM.cloexec(),
            Some(socket2::Protocol::TCP),
        )?;
        let addr = Box::new(socket2::SockAddr::from(addr));
        let entry = opcode::Connect::new(
            types::Fd(socket.as_raw_fd()),
            addr.as_ptr().cast(),
            addr.len(),
        )
        .build();
        let (res, _) = OpFuture::start(
            entry,
            Owned {
                buf: None,
                addr: Some(addr),
            },
            Purpose::Other,
        )?
        .await;
        result(res)?;
        super::configure(&socket, options)?;
        let fixed = runtime()?.reactor.borrow_mut().register(socket.as_raw_fd());
        Ok(RingStream { socket, fixed })
    }

    fn drive<E: super::Endpoint>(self, endpoint: E) -> Result<(), (Self, E)> {
        match executor::current() {
            Some(rt) => {
                rt.drive(Box::new(self), Box::new(endpoint));
                Ok(())
            }
            None => Err((self, endpoint)),
        }
    }
}

impl ByteStream for RingStream {
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let mut buf = buf;
        loop {
            let entry = self.send_entry(&buf);
            let op = match OpFuture::start(
                entry,
                Owned {
                    buf: Some(buf),
                    addr: None,
                },
                Purpose::Send(self.fd()),
            ) {
                Ok(op) => op,
                // Not queued: the buffer was dropped with the op; hand back an empty one.
                Err(e) => return (Err(e), BytesMut::new()),
            };
            let (res, owned) = op.await;
            buf = owned.buf.unwrap_or_default();
            match sent(res, &mut buf) {
                Sent::All => return (Ok(()), buf),
                Sent::Failed(e) => return (Err(e), buf),
                Sent::Part => {}
            }
        }
    }

    async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        let mut buf = buf;
        let entry = match self.recv_entry(&mut buf) {
            Ok(entry) => entry,
            Err(e) => return (Err(e), buf),
        };
        let op = match OpFuture::start(
            entry,
            Owned {
                buf: Some(buf),
                addr: None,
            },
            Purpose::Recv(self.fd()),
        ) {
            Ok(op) => op,
            Err(e) => return (Err(e), BytesMut::new()),
        };
        let (res, owned) = op.await;
        let mut buf = owned.buf.unwrap_or_default();
        (received(res, &mut buf), buf)
    }

    fn shutdown(&self) {
        // Fails with ENOTCONN when the peer already closed; either way the read ends.
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// Sets up (and drops) a ring with the features this engine requires.
pub(crate) fn probe() -> io::Result<()> {
    // SAFETY: eventfd has no memory arguments; the descriptor is closed below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let made = reactor::Reactor::new(fd).map(drop);
    // SAFETY: `fd` is ours and closed once; the reactor built on it is already dropped.
    unsafe { libc::close(fd) };
    made
}

/// The ring features of the engine running on this thread, if it is this one.
pub(crate) fn features() -> Option<setup::RingFeatures> {
    executor::current().map(|rt| rt.reactor.borrow().features())
}

/// The wait of the engine running on this thread (see [`reactor::Reactor::gather_us`]):
/// `None` outside it, `Some(None)` where the kernel cannot gather.
pub(crate) fn gather_us() -> Option<Option<u32>> {
    executor::current().map(|rt| rt.reactor.borrow().gather_us())
}

/// Sets the wait of the engine running on this thread; false outside it.
pub(crate) fn set_gather_us(us: u32) -> bool {
    executor::current()
        .map(|rt| rt.reactor.borrow_mut().set_gather_us(us))
        .is_some()
}

/// Loop turns and `io_uring_enter` calls so far on this thread's ring.
pub(crate) fn turns() -> Option<(u64, u64)> {
    executor::current().map(|rt| {
        let r = rt.reactor.borrow();
        (r.turns, r.enters)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    const PLAIN: SocketOptions = SocketOptions {
        keepalive: None,
        user_timeout: None,
    };

    fn in_flight() -> usize {
        executor::current().unwrap().reactor.borrow().in_flight()
    }

    #[test]
    fn a_round_trip_and_a_dropped_read_whose_buffer_outlives_its_future() {
        if let Err(e) = probe() {
            eprintln!("skipped: {e}");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        executor::block_on(async move {
            let accept = std::thread::spawn(move || listener.accept().unwrap().0);
            let stream = Rc::new(RingStream::connect(addr, &PLAIN).await.unwrap());
            let mut server = accept.join().unwrap();
            // Registered in the ring's file table where the kernel has one.
            let registered = features().unwrap().registered_files;
            assert_eq!(stream.fixed.is_some(), registered);
            // A send and a read into spare capacity after bytes already there.
            let (res, _) = stream.write_all(BytesMut::from(&b"PING\r\n"[..])).await;
            res.unwrap();
            let mut got = [0u8; 6];
            server.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"PING\r\n");
            server.write_all(b"+PONG\r\n").unwrap();
            let mut buf = BytesMut::with_capacity(64);
            buf.extend_from_slice(b"kept");
            let (res, buf) = stream.read(buf).await;
            assert_eq!(res.unwrap(), 7);
            assert_eq!(&buf[..], b"kept+PONG\r\n");

            // A read whose future is dropped mid-flight: the reactor keeps the buffer
            // until the kernel's cancellation completes, then frees it.
            let reader = executor::spawn({
                let stream = stream.clone();
                async move { stream.read(BytesMut::with_capacity(64)).await }
            });
            executor::yield_now().await;
            assert_eq!(in_flight(), 1, "the read is in flight");
            reader.abort();
            executor::yield_now().await;
            assert!(reader.await.is_none());
            let deadline = Instant::now() + Duration::from_secs(5);
            while in_flight() > 0 && Instant::now() < deadline {
                executor::sleep_until(Instant::now() + Duration::from_millis(1)).await;
            }
            assert_eq!(in_flight(), 0, "the cancelled read's completion was reaped");
            // The connection still works: nothing was read by the cancelled op.
            server.write_all(b":1\r\n").unwrap();
            let (res, buf) = stream.read(BytesMut::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(&buf[..], b":1\r\n");
        })
        .unwrap();
    }

    /// An endpoint that writes what it is given and records what it reads.
    #[derive(Default)]
    struct Probe {
        out: std::collections::VecDeque<BytesMut>,
        writer: Option<std::task::Waker>,
        read: Vec<u8>,
        sent: usize,
        closed: bool,
    }

    struct Shared(Rc<std::cell::RefCell<Probe>>);

    impl crate::io::Endpoint for Shared {
        fn room(&self, buf: BytesMut) -> Result<BytesMut, BytesMut> {
            Err(buf)
        }
        fn grow(&self, buf: &mut BytesMut) {
            buf.reserve(16);
        }
        fn received(&mut self, res: io::Result<usize>, buf: &mut BytesMut) -> bool {
            let mut p = self.0.borrow_mut();
            p.read.extend_from_slice(buf);
            buf.clear();
            matches!(res, Ok(n) if n > 0)
        }
        fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<Option<BytesMut>> {
            let mut p = self.0.borrow_mut();
            match p.out.pop_front() {
                Some(out) => Poll::Ready(Some(out)),
                None => {
                    p.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
        fn sent(&mut self, res: io::Result<()>, _buf: BytesMut) -> bool {
            self.0.borrow_mut().sent += 1;
            res.is_ok()
        }
        fn closed(&mut self) {
            self.0.borrow_mut().closed = true;
        }
    }

    #[test]
    fn a_driven_socket_moves_bytes_without_a_task_and_ends_with_nothing_in_flight() {
        if probe().is_err() {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        executor::block_on(async move {
            let accept = std::thread::spawn(move || listener.accept().unwrap().0);
            let stream = RingStream::connect(addr, &PLAIN).await.unwrap();
            let mut server = accept.join().unwrap();
            let probe = Rc::new(std::cell::RefCell::new(Probe::default()));
            probe
                .borrow_mut()
                .out
                .push_back(BytesMut::from(&b"PING\r\n"[..]));
            assert!(stream.drive(Shared(probe.clone())).is_ok());
            let rt = executor::current().unwrap();
            assert_eq!(rt.sockets.borrow().len(), 1);
            let mut got = [0u8; 6];
            // The loop sends it at its next turn; the server thread reads it.
            let server = std::thread::spawn(move || {
                server.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"PING\r\n");
                // Longer than the endpoint's 16-byte growth: more than one read.
                server.write_all(b"+PONG and a longer line\r\n").unwrap();
                server
            });
            let pong = b"+PONG and a longer line\r\n";
            let deadline = Instant::now() + Duration::from_secs(5);
            while probe.borrow().read.len() < pong.len() && Instant::now() < deadline {
                executor::sleep_until(Instant::now() + Duration::from_millis(1)).await;
            }
            assert_eq!(&probe.borrow().read[..], pong);
            assert_eq!(probe.borrow().sent, 1);
            // More output wakes the socket through its waker.
            let server = server.join().unwrap();
            probe
                .borrow_mut()
                .out
                .push_back(BytesMut::from(&b"again"[..]));
            if let Some(w) = probe.borrow_mut().writer.take() {
                w.wake();
            }
            // Read on another thread: this one must turn the loop to send it.
            let reader = std::thread::spawn(move || {
                let mut server = server;
                let mut again = [0u8; 5];
                server.read_exact(&mut again).unwrap();
                assert_eq!(&again, b"again");
                // The peer closes: the read ends the connection.
            });
            while !reader.is_finished() && Instant::now() < deadline {
                executor::sleep_until(Instant::now() + Duration::from_millis(1)).await;
            }
            reader.join().unwrap();
            // The socket is forgotten with nothing left in flight.
            while !probe.borrow().closed && Instant::now() < deadline {
                executor::sleep_until(Instant::now() + Duration::from_millis(1)).await;
            }
            assert!(probe.borrow().closed);
            assert_eq!(rt.sockets.borrow().len(), 0);
            assert_eq!(in_flight(), 0);
        })
        .unwrap();
    }

    #[test]
    fn a_refused_connect_is_an_error_not_a_hang() {
        if probe().is_err() {
            return;
        }
        // A port nobody listens on: bound, then closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let refused = executor::block_on(async move { RingStream::connect(addr, &PLAIN).await })
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }
}
