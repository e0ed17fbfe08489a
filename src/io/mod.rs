//! The engines: the only code that touches sockets.
//!
//! An engine is a [`Transport`]: connect, write a whole buffer, read into a buffer's spare
//! capacity, shut down. Everything else (what to write, how to match replies to requests,
//! redirects, retries) lives in the engine-agnostic core, so adding an engine means
//! writing one small file here.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;

/// A stream type for an engine left out of the build (`*_off.rs`): uninhabited, so the
/// methods that take one have nothing to do, and connecting says which feature is
/// missing. Defined once for both engines' files.
#[allow(unused_macros)] // used only in a build without one of the engines
macro_rules! stream_not_built {
    ($name:ident, $why:literal) => {
        /// No such stream exists in this build.
        #[derive(Debug)]
        pub(crate) enum $name {}

        /// The error of a build without the engine.
        fn not_built() -> std::io::Error {
            std::io::Error::new(std::io::ErrorKind::Unsupported, $why)
        }

        impl $crate::io::Transport for $name {
            async fn connect(
                _addr: std::net::SocketAddr,
                _options: &$crate::io::SocketOptions,
            ) -> std::io::Result<Self> {
                Err(not_built())
            }
        }

        impl $crate::io::ByteStream for $name {
            async fn write_all(
                &self,
                _buf: bytes::BytesMut,
            ) -> (std::io::Result<()>, bytes::BytesMut) {
                match *self {}
            }

            async fn read(
                &self,
                _buf: bytes::BytesMut,
            ) -> (std::io::Result<usize>, bytes::BytesMut) {
                match *self {}
            }

            fn shutdown(&self) {
                match *self {}
            }
        }
    };
}

// An engine left out of the build keeps its place with a file that refuses it, so the
// code that picks engines has no `cfg` of its own.
#[cfg(feature = "compio")]
pub(crate) mod compio;
#[cfg(not(feature = "compio"))]
#[path = "compio_off.rs"]
pub(crate) mod compio;
pub(crate) mod epoll;
pub(crate) mod ring;
pub(crate) mod rt;
#[cfg(feature = "tokio-uring")]
pub(crate) mod uring;
#[cfg(not(feature = "tokio-uring"))]
#[path = "uring_off.rs"]
pub(crate) mod uring;

/// An engine's socket: connects, then carries bytes ([`ByteStream`]).
pub(crate) trait Transport: ByteStream + Sized {
    /// Connects and applies [`SocketOptions`] (with `TCP_NODELAY` always on).
    async fn connect(addr: SocketAddr, options: &SocketOptions) -> io::Result<Self>;

    /// Hands the connected socket and its connection's [`Endpoint`] to the engine's own
    /// loop, which then moves the bytes itself: no task per connection, and a read's
    /// completion goes straight to the connection. `Err` hands both back when the engine
    /// moves bytes with tasks instead (the connection then runs a reader and a writer).
    fn drive<E: Endpoint>(self, endpoint: E) -> Result<(), (Self, E)> {
        Err((self, endpoint))
    }
}

/// A connection as the code moving its bytes sees it: where read bytes go, where bytes
/// to write come from, and what each outcome means for the connection. It decides; the
/// engine only moves bytes and calls it.
pub(crate) trait Endpoint: 'static {
    /// The buffer for the next read, with room at its end. `Err` hands it back when room
    /// means new memory that waiting would save (replies just decoded still share it):
    /// the caller may let their owners run first, then [`Endpoint::grow`] it.
    fn room(&self, buf: BytesMut) -> Result<BytesMut, BytesMut>;

    /// Makes room in a buffer [`Endpoint::room`] handed back, allocating if it must.
    fn grow(&self, buf: &mut BytesMut);

    /// A read's outcome (its bytes at the end of `buf`): replies go to their callers,
    /// and the bytes consumed leave `buf`. False when the connection is over: the
    /// socket is then shut down and closed.
    fn received(&mut self, res: io::Result<usize>, buf: &mut BytesMut) -> bool;

    /// The next bytes to write; `Pending` (the waker woken when there are some) while
    /// there are none; `None` when the connection is over.
    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<Option<BytesMut>>;

    /// A write's outcome, with its buffer back (emptied after a whole write). False
    /// when the connection is over.
    fn sent(&mut self, res: io::Result<()>, buf: BytesMut) -> bool;

    /// The socket is shut down and nothing is in flight on it any more.
    fn closed(&mut self);
}

/// A connected byte stream: an engine's socket (TLS is the connection's own business, in
/// `core::conn`: the stream carries its records like any bytes).
///
/// Buffers are passed by value and handed back with the result, because with io_uring the
/// kernel writes into them after the call was made.
pub(crate) trait ByteStream: 'static {
    /// Writes all of `buf`.
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut);

    /// Reads once into the spare capacity at the end of `buf` (never over the bytes
    /// already in it) and extends its length by what was read; `Ok(0)` is end of stream.
    async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut);

    /// Shuts both directions down so that an outstanding read completes.
    fn shutdown(&self);
}

/// Options every node connection gets, whatever the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketOptions {
    /// TCP keepalive: idle time before the first probe (probes then every third of it,
    /// three of them), so a peer that vanished without a reset is noticed while idle.
    pub(crate) keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT`: how long written data may stay unacknowledged before the kernel
    /// gives up on the connection, so a partitioned node fails writes in bounded time.
    pub(crate) user_timeout: Option<Duration>,
}

impl SocketOptions {
    /// The options `config` asks for.
    pub(crate) fn of(config: &crate::core::config::Config) -> SocketOptions {
        SocketOptions {
            keepalive: config.tcp_keepalive,
            user_timeout: config.tcp_user_timeout,
        }
    }
}

/// Applies the options to a connected socket: `TCP_NODELAY` (a pipeline is one write and
/// must not wait for an ACK of the previous segment), keepalive and `TCP_USER_TIMEOUT`.
pub(crate) fn configure(socket: impl AsFd, options: &SocketOptions) -> io::Result<()> {
    let socket = socket2::SockRef::from(&socket);
    socket.set_tcp_nodelay(true)?;
    if let Some(idle) = options.keepalive {
        // The kernel counts whole seconds, from 1 to 32767.
        let limit = |d: Duration| d.clamp(Duration::from_secs(1), Duration::from_secs(32767));
        let idle = limit(idle);
        let interval = limit(idle / 3);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(interval)
            .with_retries(3);
        socket.set_tcp_keepalive(&keepalive)?;
    }
    if let Some(timeout) = options.user_timeout {
        socket.set_tcp_user_timeout(Some(timeout))?;
    }
    Ok(())
}

/// A number in [0, 1) from the standard library's randomly keyed hasher: enough for both
/// drivers' jitter and the seeds of their refresh policies, with no dependency. (The core
/// takes its randomness as an argument, so a simulation can fix it.)
pub(crate) fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_gets_nodelay_keepalive_and_user_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let options = SocketOptions {
            keepalive: Some(Duration::from_secs(9)),
            user_timeout: Some(Duration::from_millis(7500)),
        };
        configure(&stream, &options).unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(9));
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(3)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(7500))
        );
        // Off means the kernel's defaults.
        let other = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        configure(
            &other,
            &SocketOptions {
                keepalive: None,
                user_timeout: None,
            },
        )
        .unwrap();
        let socket = socket2::SockRef::from(&other);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(!socket.keepalive().unwrap());
    }
}
