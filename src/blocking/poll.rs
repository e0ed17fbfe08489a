//! The fallback backend of the blocking client: nonblocking sockets and `poll(2)`, for
//! kernels (or sandboxes) that refuse io_uring. Same connections, same sans-IO
//! connection state, same rounds; only these few socket calls differ.
//!
//! A pipeline costs one `send` per node (more only when a socket buffer fills), one
//! `poll` per wake-up, and one or two `recv` per node.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::{Buf, BytesMut};

use super::transport::{Event, Transport, MIN_READ_SPACE};
use crate::core::conn::Output;

#[derive(Debug)]
struct Link {
    stream: TcpStream,
    read: BytesMut,
    /// Bytes not yet written.
    out: BytesMut,
    buffer_size: usize,
}

/// The poll backend.
#[derive(Debug, Default)]
pub(crate) struct Poll {
    links: Vec<Option<Link>>,
}

impl Poll {
    pub(crate) fn new() -> Poll {
        Poll::default()
    }

    fn link(&mut self, token: usize) -> Option<&mut Link> {
        self.links.get_mut(token).and_then(Option::as_mut)
    }

    /// Writes as much of `token`'s output as the socket takes; false on failure.
    fn flush(&mut self, token: usize, events: &mut Vec<Event>) {
        let Some(link) = self.link(token) else { return };
        while !link.out.is_empty() {
            let sock = socket2::SockRef::from(&link.stream);
            match sock.send_with_flags(&link.out, libc::MSG_NOSIGNAL) {
                Ok(n) => link.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    link.out.clear();
                    events.push(Event::Failed(token, e));
                    return;
                }
            }
        }
    }

    /// Reads everything available on `token`'s socket.
    fn drain(&mut self, token: usize, events: &mut Vec<Event>) {
        let Some(link) = self.link(token) else { return };
        let mut got = 0;
        loop {
            if link.read.is_empty()
                && link.read.capacity() > 4 * link.buffer_size.max(MIN_READ_SPACE)
            {
                link.read = BytesMut::with_capacity(link.buffer_size);
            }
            if link.read.capacity() - link.read.len() < MIN_READ_SPACE {
                // Doubling while a large reply comes in.
                let grow = link.buffer_size.max(MIN_READ_SPACE).max(link.read.len());
                link.read.reserve(grow);
            }
            let sock = socket2::SockRef::from(&link.stream);
            match sock.recv(link.read.spare_capacity_mut()) {
                Ok(0) => {
                    if got > 0 {
                        events.push(Event::Read(token, got));
                    }
                    events.push(Event::Closed(token));
                    return;
                }
                Ok(n) => {
                    let len = link.read.len();
                    // SAFETY: `recv` initialized `n` bytes of the spare capacity.
                    unsafe { link.read.set_len(len + n) };
                    got += n;
                    if link.read.len() < link.read.capacity() {
                        // A short read: the socket is most likely empty now; one call saved.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if got > 0 {
                        events.push(Event::Read(token, got));
                    }
                    events.push(Event::Failed(token, e));
                    return;
                }
            }
        }
        if got > 0 {
            events.push(Event::Read(token, got));
        }
    }
}

impl Transport for Poll {
    fn add(&mut self, token: usize, stream: TcpStream, buffer_size: usize) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        if self.links.len() <= token {
            self.links.resize_with(token + 1, || None);
        }
        self.links[token] = Some(Link {
            stream,
            read: BytesMut::with_capacity(buffer_size.max(MIN_READ_SPACE)),
            out: BytesMut::new(),
            buffer_size,
        });
        Ok(())
    }

    fn remove(&mut self, token: usize) {
        if let Some(slot) = self.links.get_mut(token) {
            *slot = None;
        }
    }

    fn can_write(&self, _token: usize) -> bool {
        true
    }

    fn write(&mut self, token: usize, out: Output) {
        if let Some(link) = self.link(token) {
            if link.out.is_empty() {
                link.out = out.bytes;
            } else {
                link.out.extend_from_slice(&out.bytes);
            }
        }
    }

    fn settle(&mut self, _token: usize, _answered: u64) {}

    fn wait(
        &mut self,
        awaiting: &[usize],
        _want: usize,
        timeout: Option<Duration>,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        for token in 0..self.links.len() {
            self.flush(token, events);
        }
        if !events.is_empty() {
            return Ok(());
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(awaiting.len());
        let mut tokens: Vec<usize> = Vec::with_capacity(awaiting.len());
        for (token, link) in self.links.iter().enumerate() {
            let Some(link) = link else { continue };
            let mut wanted = 0;
            if awaiting.contains(&token) {
                wanted |= libc::POLLIN;
            }
            if !link.out.is_empty() {
                wanted |= libc::POLLOUT;
            }
            if wanted != 0 {
                fds.push(libc::pollfd {
                    fd: link.stream.as_raw_fd(),
                    events: wanted,
                    revents: 0,
                });
                tokens.push(token);
            }
        }
        let ms = match timeout {
            // Rounded up, so a wait never ends just before its deadline.
            Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
            None => -1,
        };
        let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
        // SAFETY: `fds` is a live, initialized array of `nfds` pollfd entries that `poll`
        // only writes `revents` of.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            };
        }
        for (fd, token) in fds.iter().zip(tokens) {
            if fd.revents & libc::POLLOUT != 0 {
                self.flush(token, events);
            }
            if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                self.drain(token, events);
            }
        }
        Ok(())
    }

    fn input(&mut self, token: usize) -> Option<&mut BytesMut> {
        self.link(token).map(|l| &mut l.read)
    }

    fn peek(&mut self, events: &mut Vec<Event>, _arm: bool) -> io::Result<()> {
        // One `poll` with no wait: is any idle connection readable (closed by the server)?
        let all: Vec<usize> = (0..self.links.len())
            .filter(|&t| self.links[t].is_some())
            .collect();
        if all.is_empty() {
            return Ok(());
        }
        self.wait(&all, 0, Some(Duration::ZERO), events)
    }
}
