//! What a backend (the ring or `poll(2)`) provides the blocking driver: a few socket
//! operations and the events they produce.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;

use crate::core::conn::Output;

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
    /// Events already there (a server that closed an idle connection), without waiting.
    fn peek(&mut self, events: &mut Vec<Event>) -> io::Result<()>;
}
