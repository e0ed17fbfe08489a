//! What a backend (the ring or `poll(2)`) provides the blocking driver: a few socket
//! operations and the events they produce.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::core::conn::Output;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::topology::NodeAddr;
use crate::io::{configure, SocketOptions};

/// Below this much spare room a read buffer grows before the next read.
pub(crate) const MIN_READ_SPACE: usize = 4096;

/// What a backend saw on a connection (by token).
#[derive(Debug)]
pub(crate) enum Event {
    /// This many bytes were appended to the connection's input buffer.
    Read(usize, usize),
    /// The peer closed the connection.
    Closed(usize),
    /// A read or a write failed.
    Failed(usize, io::Error),
}

/// The few socket operations a backend provides; everything else is shared.
pub(crate) trait Transport: fmt::Debug {
    /// Takes a connected socket under `token`.
    fn add(&mut self, token: usize, stream: TcpStream, buffer_size: usize) -> io::Result<()>;
    /// Closes the socket (operations in flight are cancelled; their buffers stay owned
    /// by the backend until the kernel is done with them).
    fn remove(&mut self, token: usize);
    /// True when a write may be queued now (the previous one is finished).
    fn can_write(&self, token: usize) -> bool;
    /// Queues bytes to write, sent at the next wait.
    fn write(&mut self, token: usize, out: Output);
    /// The connection has `answered` replies in: sends proven read by the server are done.
    fn settle(&mut self, token: usize, answered: u64);
    /// Submits what is queued and waits for reads on `awaiting` (or `timeout`); what
    /// happened goes to `events`. The ring waits until `want` reads completed (one
    /// system call for a whole fan-out); `poll` returns as soon as any is ready (it
    /// cannot wait for several), and the caller loops.
    fn wait(
        &mut self,
        awaiting: &[usize],
        want: usize,
        timeout: Option<Duration>,
        events: &mut Vec<Event>,
    ) -> io::Result<()>;
    /// The connection's input buffer (bytes read and not yet taken).
    fn input(&mut self, token: usize) -> Option<&mut BytesMut>;
    /// Events already there (a server that closed an idle connection, an invalidation),
    /// without waiting. `arm`: every connection must have a read armed first (the
    /// client-side cache reads between requests; otherwise the next wait arms them, in
    /// the same submission as its sends).
    fn peek(&mut self, events: &mut Vec<Event>, arm: bool) -> io::Result<()>;
}

/// Resolves `node` and connects to the first of its addresses that accepts, each with
/// its share of the time left until `deadline`; the socket gets `TCP_NODELAY`, keepalive and
/// `TCP_USER_TIMEOUT`, and is made nonblocking.
pub(crate) fn connect(
    node: &NodeAddr,
    options: &SocketOptions,
    deadline: Instant,
) -> Result<TcpStream> {
    let candidates: Vec<SocketAddr> = if let Ok(ip) = node.host.parse::<std::net::IpAddr>() {
        vec![SocketAddr::new(ip, node.port)]
    } else if node.host.is_empty() || node.host == "?" {
        return Err(Error::new(
            ErrorKind::ClusterDown,
            format!("{node}: the cluster does not know this node's endpoint"),
        ));
    } else {
        (node.host.as_str(), node.port)
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("resolve {node}"), e))?
            .collect()
    };
    if candidates.is_empty() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{node} resolves to no address"),
        ));
    }
    let count = candidates.len();
    let mut last = None;
    for (i, addr) in candidates.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let share =
            (left / u32::try_from(count - i).unwrap_or(u32::MAX)).max(Duration::from_millis(1));
        match TcpStream::connect_timeout(&addr, share) {
            Ok(stream) => {
                configure(&stream, options)
                    .and_then(|()| stream.set_nonblocking(true))
                    .map_err(|e| Error::io(format!("configure the socket to {node}"), e))?;
                return Ok(stream);
            }
            Err(e) => last = Some(Error::io(format!("connect to {node} ({addr})"), e)),
        }
    }
    Err(last.unwrap_or_else(|| Error::new(ErrorKind::Io, format!("connect to {node} timed out"))))
}
