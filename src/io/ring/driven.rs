//! Connections whose bytes the loop moves itself: no task per connection.
//!
//! A connected socket is handed to the loop with its connection's [`Endpoint`]. From then
//! on the loop keeps one read armed on it and sends whatever the connection has to write,
//! in two places of every turn:
//!
//! - right after the completions are reaped ([`complete`]): a read's bytes go straight
//!   to the connection, which hands each reply to its caller (woken to run in the same
//!   turn); a send's buffer goes back to it;
//! - right before the ring is entered ([`flush`]), for the sockets whose connection has
//!   something new to write (the pool woke the socket's waker) or that just completed
//!   something: the next read is armed and the output is sent, after every task of the
//!   turn ran, so everything callers queued in the turn leaves in one send per socket.
//!
//! A socket whose connection is over is shut down (which completes its read), and is
//! forgotten once nothing is in flight on it: the kernel never holds memory the loop
//! freed. Every decision stays with the connection; this file only moves bytes.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use io_uring::squeue::Entry;
use slab::Slab;

use super::reactor::{Owned, Purpose, Reactor};
use crate::io::Endpoint;

/// A socket as the loop drives it (the ring's stream): the operations it is sent.
pub(super) trait Socket {
    fn fd(&self) -> RawFd;
    /// A send of all of `buf`, which the operation then owns until its completion.
    fn send_entry(&self, buf: &BytesMut) -> Entry;
    /// A read into `buf`'s spare capacity, which the operation then owns until its
    /// completion; [`received`] applies the result.
    fn recv_entry(&self, buf: &mut BytesMut) -> io::Result<Entry>;
    fn shutdown(&self);
}

/// A socket's waker, taken off the loop's woken list: a wake from now on lists it again.
pub(super) trait Rearm {
    fn rearm(&self);
}

/// What a send's completion means for its buffer.
pub(super) enum Sent {
    /// All of it went: the buffer is emptied for reuse.
    All,
    /// Part of it went (an older kernel, despite `MSG_WAITALL`): the rest is left in it.
    Part,
    Failed(io::Error),
}

fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

/// Applies a send's result to its buffer.
pub(super) fn sent(res: i32, buf: &mut BytesMut) -> Sent {
    match result(res) {
        Err(e) => Sent::Failed(e),
        Ok(0) if !buf.is_empty() => Sent::Failed(io::ErrorKind::WriteZero.into()),
        Ok(n) if n >= buf.len() => {
            buf.clear();
            Sent::All
        }
        Ok(n) => {
            buf.advance(n);
            Sent::Part
        }
    }
}

/// Applies a read's result to its buffer: the bytes the kernel wrote join its length.
pub(super) fn received(res: i32, buf: &mut BytesMut) -> io::Result<usize> {
    if res > 0 {
        let n = (res as usize).min(buf.capacity() - buf.len());
        // SAFETY: the kernel wrote `n` bytes into the spare capacity that started at the
        // buffer's length when the read was made (`Socket::recv_entry`; the buffer was
        // owned by the reactor meanwhile, untouched); it never reports more than the
        // length it was given, and `n` is capped at the capacity anyway.
        unsafe { buf.set_len(buf.len() + n) };
    }
    result(res)
}

/// Wake keys at or above this are sockets (their key plus this), not tasks.
pub(super) const SOCKET: usize = 1 << (usize::BITS - 2);

/// One loop-driven socket.
struct Driven {
    stream: Box<dyn Socket>,
    endpoint: Box<dyn Endpoint>,
    /// The read in flight (the reactor's operation key).
    read: Option<usize>,
    /// The send in flight.
    send: Option<usize>,
    /// The read buffer while no read is in flight: unparsed bytes stay at its start.
    spare: Option<BytesMut>,
    /// The connection is over: shut down, then forgotten once nothing is in flight.
    ending: bool,
    shut: bool,
    /// Listed for the next flush.
    dirty: bool,
    /// Woken by the pool when the connection has something to write.
    waker: Waker,
    task: Arc<dyn Rearm + Send + Sync>,
}

/// The loop-driven sockets of one runtime.
#[derive(Default)]
pub(super) struct Sockets {
    slab: Slab<Rc<RefCell<Driven>>>,
    dirty: Vec<usize>,
    /// Completions taken from the reactor (kept to reuse the memory).
    done: Vec<(usize, usize)>,
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets")
            .field("sockets", &self.slab.len())
            .finish()
    }
}

impl Sockets {
    /// A socket's waker fired (`key` as woken, with [`SOCKET`] added).
    pub(super) fn woken(&mut self, key: usize) {
        let key = key - SOCKET;
        if let Some(d) = self.slab.get(key) {
            d.borrow().task.rearm();
            self.touch(key);
        }
    }

    fn touch(&mut self, key: usize) {
        if let Some(d) = self.slab.get(key) {
            let mut d = d.borrow_mut();
            if !d.dirty {
                d.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// The key the next socket gets (its waker is made for it first).
    pub(super) fn vacant_key(&self) -> usize {
        self.slab.vacant_key()
    }

    /// Hands `stream` to the loop: its first flush arms the read and sends what is
    /// queued. `waker` must list [`SOCKET`] plus the key ([`Sockets::vacant_key`]).
    pub(super) fn insert(
        &mut self,
        stream: Box<dyn Socket>,
        endpoint: Box<dyn Endpoint>,
        waker: Waker,
        task: Arc<dyn Rearm + Send + Sync>,
    ) {
        let key = self.slab.insert(Rc::new(RefCell::new(Driven {
            stream,
            endpoint,
            read: None,
            send: None,
            spare: Some(BytesMut::new()),
            ending: false,
            shut: false,
            dirty: true,
            waker,
            task,
        })));
        self.dirty.push(key);
    }

    fn get(&self, key: usize) -> Option<Rc<RefCell<Driven>>> {
        self.slab.get(key).cloned()
    }

    /// Sockets driven now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }
}

/// Before the ring is entered: arms reads and sends output on every socket listed, and
/// ends those whose connection is over.
pub(super) fn flush(reactor: &RefCell<Reactor>, sockets: &RefCell<Sockets>) {
    let mut dirty = std::mem::take(&mut sockets.borrow_mut().dirty);
    for &key in &dirty {
        let Some(cell) = sockets.borrow().get(key) else {
            continue;
        };
        let gone = cell.borrow_mut().flush(reactor, key);
        if gone {
            // Dropped outside any borrow of the driven socket: its stream's drop frees
            // its slot in the ring's file table.
            sockets.borrow_mut().slab.try_remove(key);
        }
    }
    dirty.clear();
    let mut sockets = sockets.borrow_mut();
    if sockets.dirty.is_empty() {
        // Kept: no allocation per turn.
        sockets.dirty = dirty;
    }
}

/// After the completions are reaped: each goes to its socket's connection.
pub(super) fn complete(reactor: &RefCell<Reactor>, sockets: &RefCell<Sockets>) {
    let mut done = std::mem::take(&mut sockets.borrow_mut().done);
    reactor.borrow_mut().take_driven(&mut done);
    for &(key, op) in &done {
        let Some((res, owned)) = reactor.borrow_mut().take(op) else {
            continue;
        };
        let Some(cell) = sockets.borrow().get(key) else {
            continue;
        };
        // The connection may run the user's push handler: no borrow but this socket's
        // own is held (nothing the handler can reach).
        cell.borrow_mut()
            .completed(reactor, key, op, res, owned.buf.unwrap_or_default());
        sockets.borrow_mut().touch(key);
    }
    done.clear();
    sockets.borrow_mut().done = done;
}

impl Driven {
    /// One flush; true when the socket is over and nothing is in flight on it.
    fn flush(&mut self, reactor: &RefCell<Reactor>, key: usize) -> bool {
        self.dirty = false;
        if !self.ending && self.send.is_none() {
            // The socket's own waker, lent: no clone per flush.
            match self
                .endpoint
                .poll_output(&mut Context::from_waker(&self.waker))
            {
                Poll::Ready(Some(buf)) => self.start_send(reactor, key, buf),
                Poll::Ready(None) => self.ending = true,
                Poll::Pending => {}
            }
        }
        if !self.ending && self.read.is_none() {
            // The callers of the replies read last have run by now: the buffer is
            // reclaimed in place when they let go of it, else grown.
            let buf = self.spare.take().unwrap_or_default();
            let mut buf = self.endpoint.room(buf).unwrap_or_else(|buf| buf);
            self.endpoint.grow(&mut buf);
            self.start_read(reactor, key, buf);
        }
        if !self.ending {
            return false;
        }
        if !self.shut {
            // Completes the read in flight (and fails a send), so both come back.
            self.stream.shutdown();
            self.shut = true;
        }
        if self.read.is_some() || self.send.is_some() {
            return false;
        }
        self.endpoint.closed();
        true
    }

    fn start_read(&mut self, reactor: &RefCell<Reactor>, key: usize, mut buf: BytesMut) {
        let started = self.stream.recv_entry(&mut buf).and_then(|entry| {
            reactor.borrow_mut().start_for(
                entry,
                Owned {
                    buf: Some(buf),
                    addr: None,
                },
                Purpose::Recv(self.stream.fd()),
                Some(key),
            )
        });
        match started {
            Ok(op) => self.read = Some(op),
            Err(e) => {
                // Never queued (a submission queue that stays full): the connection
                // fails, as on any read error.
                let mut none = BytesMut::new();
                self.endpoint.received(Err(e), &mut none);
                self.ending = true;
            }
        }
    }

    fn start_send(&mut self, reactor: &RefCell<Reactor>, key: usize, buf: BytesMut) {
        let entry = self.stream.send_entry(&buf);
        let started = reactor.borrow_mut().start_for(
            entry,
            Owned {
                buf: Some(buf),
                addr: None,
            },
            Purpose::Send(self.stream.fd()),
            Some(key),
        );
        match started {
            Ok(op) => self.send = Some(op),
            Err(e) => {
                self.endpoint.sent(Err(e), BytesMut::new());
                self.ending = true;
            }
        }
    }

    fn completed(
        &mut self,
        reactor: &RefCell<Reactor>,
        key: usize,
        op: usize,
        res: i32,
        mut buf: BytesMut,
    ) {
        if self.read == Some(op) {
            self.read = None;
            let res = received(res, &mut buf);
            if !self.endpoint.received(res, &mut buf) {
                self.ending = true;
            }
            self.spare = Some(buf);
        } else if self.send == Some(op) {
            self.send = None;
            match sent(res, &mut buf) {
                Sent::All => {
                    if !self.endpoint.sent(Ok(()), buf) {
                        self.ending = true;
                    }
                }
                Sent::Part if !self.ending => self.start_send(reactor, key, buf),
                Sent::Part => {}
                Sent::Failed(e) => {
                    self.endpoint.sent(Err(e), buf);
                    self.ending = true;
                }
            }
        }
    }
}
