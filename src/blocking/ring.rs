//! The io_uring backend of the blocking client: one ring per client, driven by the
//! `io-uring` crate directly, with no runtime.
//!
//! A pipeline costs one `io_uring_enter`: every node's send is pushed to the submission
//! queue, each connection's read is already there (armed after the previous completion,
//! submitted with this call), and the same call waits for `min_complete` = connections
//! still owing replies, with the request's deadline as the wait's timeout. A reply that
//! arrives in pieces costs one more wait for that connection.
//!
//! The ring is set up by `io::ring::setup` (shared with the async client's owned ring),
//! which probes each kernel feature with a fallback; `IORING_OP_SEND`/`RECV`/
//! `ASYNC_CANCEL` (5.6) are required here, and without them the client uses the poll
//! backend.
//!
//! # Buffer ownership
//! Every operation in flight is an entry of `ops` (its slab key is the SQE's
//! `user_data`), and the entry *owns* the buffer the kernel reads or writes, the way
//! tokio-uring's operations do. A `BytesMut` does not move its heap memory when the
//! `BytesMut` value moves, and nothing touches an owned buffer until its operation's
//! completion gives it back. Closing a connection therefore never frees a buffer in use:
//! its operations stay in `ops`, are cancelled, and release their buffers when their
//! completions are reaped. A send that posts no completion on success is released when
//! the connection has the replies to every command in it (the server cannot answer a
//! command before it has read all of it, and the kernel copied the bytes before they left).
//! At drop, everything still in flight is cancelled and reaped; a buffer whose operation
//! cannot be shown finished is leaked on purpose rather than freed under the kernel.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use io_uring::{cqueue, opcode, squeue, types, IoUring};

pub use crate::io::ring::setup::RingFeatures;
use slab::Slab;

use super::transport::{Event, Transport, MIN_READ_SPACE};
use crate::core::conn::Output;

/// Submission queue entries (the completion queue gets twice as many).
const RING_ENTRIES: u32 = 256;
/// Slots in the registered file table.
const FIXED_FILES: u32 = 1024;
/// How long drop waits for cancelled operations to complete.
const DROP_REAP: Duration = Duration::from_secs(1);

/// What an operation in flight is.
#[derive(Debug)]
enum OpKind {
    /// A read into the spare capacity of `buf`.
    Read,
    /// A send of all of `buf`; `skip`: no completion on success, released by `proof`.
    Send { skip: bool, proof: Option<u64> },
    /// A cancellation of the operation with this `user_data`.
    Cancel { target: u64 },
}

#[derive(Debug)]
struct Op {
    /// The connection (token) and its incarnation.
    token: usize,
    life: u64,
    kind: OpKind,
    /// The buffer the kernel uses; owned here until the completion.
    buf: BytesMut,
}

/// One socket.
#[derive(Debug)]
struct Link {
    stream: TcpStream,
    /// Index in the registered file table.
    fixed: Option<u32>,
    life: u64,
    /// The read buffer while no read is armed (an armed read's `Op` owns it).
    read: Option<BytesMut>,
    /// The armed read's `user_data`.
    read_op: Option<u64>,
    /// The send in flight, if any.
    send_op: Option<u64>,
    /// The next send, queued while one is in flight (a short send's rest goes first).
    queued: Option<Output>,
    buffer_size: usize,
}

/// The io_uring backend.
pub(crate) struct Ring {
    ring: IoUring,
    features: RingFeatures,
    ops: Slab<Op>,
    /// Links by token (the client's connection key).
    links: Vec<Option<Link>>,
    /// Free slots of the registered file table.
    free_fixed: Vec<u32>,
    lives: u64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("features", &self.features)
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl Ring {
    /// Sets up a ring with the best features the kernel takes. An error says why the
    /// ring cannot serve (the caller falls back to the poll backend).
    pub(crate) fn new() -> io::Result<Ring> {
        let (ring, features) = crate::io::ring::setup::build(
            RING_ENTRIES,
            FIXED_FILES,
            &[
                (opcode::Send::CODE, "IORING_OP_SEND"),
                (opcode::Recv::CODE, "IORING_OP_RECV"),
                (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
            ],
        )?;
        let free_fixed = if features.registered_files {
            (0..FIXED_FILES).rev().collect()
        } else {
            Vec::new()
        };
        Ok(Ring {
            ring,
            features,
            ops: Slab::new(),
            links: Vec::new(),
            free_fixed,
            lives: 0,
        })
    }

    /// The features in use.
    pub(crate) fn features(&self) -> RingFeatures {
        self.features
    }

    fn link(&mut self, token: usize) -> Option<&mut Link> {
        self.links.get_mut(token).and_then(Option::as_mut)
    }

    /// Pushes an SQE, submitting first when the queue is full (only with more
    /// connections than half the queue: never in the steady state of a small cluster).
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        for attempt in 0..2 {
            // SAFETY: every SQE pushed here points at memory owned by an `Op` in
            // `self.ops` (or at none: cancellations), which stays there, unmoved and
            // untouched, until the operation's completion is reaped (or is leaked).
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            if attempt == 0 {
                self.ring.submit()?;
            }
        }
        Err(io::Error::other("the submission queue stays full"))
    }

    fn user_data(key: usize) -> u64 {
        key as u64
    }

    /// Arms a read on every link that has none.
    fn arm_reads(&mut self) -> io::Result<()> {
        for token in 0..self.links.len() {
            let Some(link) = self.link(token) else {
                continue;
            };
            if link.read_op.is_some() {
                continue;
            }
            let Some(mut buf) = link.read.take() else {
                continue;
            };
            ready_for_read(&mut buf, link.buffer_size);
            let target = Target::of(link);
            let life = link.life;
            let spare = buf.capacity() - buf.len();
            let len = u32::try_from(spare).unwrap_or(u32::MAX);
            // SAFETY: the pointer is the start of `buf`'s spare capacity, `len` bytes of
            // which are allocated; the kernel writes there only, never over unparsed
            // bytes. `buf` moves into `ops` below and is not touched until the read's
            // completion hands it back.
            let ptr = unsafe { buf.as_mut_ptr().add(buf.len()) };
            let key = self.ops.insert(Op {
                token,
                life,
                kind: OpKind::Read,
                buf,
            });
            let entry = match target {
                Target::Fixed(i) => opcode::Recv::new(types::Fixed(i), ptr, len).build(),
                Target::Fd(fd) => opcode::Recv::new(types::Fd(fd), ptr, len).build(),
            };
            self.push(entry.user_data(Self::user_data(key)))?;
            if let Some(link) = self.link(token) {
                link.read_op = Some(Self::user_data(key));
            }
        }
        Ok(())
    }

    /// Pushes the send of `out` on `token`'s socket.
    fn start_send(&mut self, token: usize, out: Output) -> io::Result<()> {
        let skip_supported = self.features.skip_send_completions;
        let Some(link) = self.link(token) else {
            return Ok(());
        };
        let target = Target::of(link);
        let life = link.life;
        let skip = skip_supported && out.proof.is_some();
        let buf = out.bytes;
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // The kernel reads from the buffer's start; `buf` moves into `ops` (its heap
        // memory does not move) and stays untouched until released.
        let ptr = buf.as_ptr();
        let key = self.ops.insert(Op {
            token,
            life,
            kind: OpKind::Send {
                skip,
                proof: out.proof,
            },
            buf,
        });
        let entry = match target {
            Target::Fixed(i) => opcode::Send::new(types::Fixed(i), ptr, len),
            Target::Fd(fd) => opcode::Send::new(types::Fd(fd), ptr, len),
        }
        .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
        .build()
        .user_data(Self::user_data(key));
        let entry = if skip {
            entry.flags(squeue::Flags::SKIP_SUCCESS)
        } else {
            entry
        };
        self.push(entry)?;
        if let Some(link) = self.link(token) {
            link.send_op = Some(Self::user_data(key));
        }
        Ok(())
    }

    fn cancel(&mut self, target: u64, token: usize, life: u64) -> io::Result<()> {
        let key = self.ops.insert(Op {
            token,
            life,
            kind: OpKind::Cancel { target },
            buf: BytesMut::new(),
        });
        self.push(
            opcode::AsyncCancel::new(target)
                .build()
                .user_data(Self::user_data(key)),
        )
    }

    /// Handles every completion in the queue.
    fn reap(&mut self, events: &mut Vec<Event>) {
        let cqes: Vec<cqueue::Entry> = self.ring.completion().collect();
        for cqe in cqes {
            self.complete(cqe.user_data(), cqe.result(), events);
        }
    }

    fn complete(&mut self, user_data: u64, result: i32, events: &mut Vec<Event>) {
        let Ok(key) = usize::try_from(user_data) else {
            return;
        };
        let Some(op) = self.ops.try_remove(key) else {
            return;
        };
        let Op {
            token,
            life,
            kind,
            mut buf,
        } = op;
        let alive = self
            .links
            .get(token)
            .and_then(Option::as_ref)
            .is_some_and(|l| l.life == life);
        match kind {
            OpKind::Read => {
                if !alive {
                    // The connection was closed; its buffer dies with the op.
                    return;
                }
                if result > 0 {
                    let n = result as usize;
                    let len = buf.len();
                    // SAFETY: the kernel wrote `n` bytes into the spare capacity that
                    // started at `len` (it never reports more than the `len` it was given).
                    let n = n.min(buf.capacity() - len);
                    unsafe { buf.set_len(len + n) };
                }
                if let Some(link) = self.link(token) {
                    link.read_op = None;
                    link.read = Some(buf);
                }
                events.push(match result {
                    r if r > 0 => Event::Read(token, r as usize),
                    0 => Event::Closed(token),
                    r => Event::Failed(token, io::Error::from_raw_os_error(-r)),
                });
            }
            OpKind::Send { proof, .. } => {
                if !alive {
                    return;
                }
                if let Some(link) = self.link(token) {
                    link.send_op = None;
                }
                if result < 0 {
                    events.push(Event::Failed(token, io::Error::from_raw_os_error(-result)));
                    return;
                }
                let sent = result as usize;
                if sent < buf.len() {
                    // Short: the rest goes before anything queued after it.
                    buf.advance(sent);
                    if let Some(link) = self.link(token) {
                        let rest = Output { bytes: buf, proof };
                        match link.queued.take() {
                            None => link.queued = Some(rest),
                            Some(next) => {
                                let mut bytes = rest.bytes;
                                bytes.extend_from_slice(&next.bytes);
                                link.queued = Some(Output {
                                    bytes,
                                    proof: next.proof.or(rest.proof),
                                });
                            }
                        }
                    }
                }
            }
            OpKind::Cancel { target } => {
                // Not found: the target completed already. A send that posts nothing on
                // success is known finished only now.
                if result == -libc::ENOENT {
                    if let Ok(t) = usize::try_from(target) {
                        if matches!(
                            self.ops.get(t).map(|o| &o.kind),
                            Some(OpKind::Send { skip: true, .. })
                        ) && self.ops.get(t).is_some_and(|o| o.life == life)
                        {
                            self.ops.remove(t);
                        }
                    }
                }
            }
        }
    }

    /// One `io_uring_enter`: submits what is queued and waits for `want` completions or
    /// the timeout.
    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        crate::io::ring::setup::enter(&self.ring, want, timeout, 0)
    }
}

/// How a socket is named in an SQE.
#[derive(Clone, Copy)]
enum Target {
    Fixed(u32),
    Fd(RawFd),
}

impl Target {
    fn of(link: &Link) -> Target {
        match link.fixed {
            Some(i) => Target::Fixed(i),
            None => Target::Fd(link.stream.as_raw_fd()),
        }
    }
}

/// Makes room for the next read and gives memory back after a large reply.
fn ready_for_read(buf: &mut BytesMut, usual: usize) {
    if buf.is_empty() && buf.capacity() > 4 * usual.max(MIN_READ_SPACE) {
        *buf = BytesMut::with_capacity(usual);
    }
    if buf.capacity() - buf.len() < MIN_READ_SPACE {
        // Doubling while a large reply comes in: its reads grow with it.
        buf.reserve(usual.max(MIN_READ_SPACE).max(buf.len()));
    }
}

impl Transport for Ring {
    fn add(&mut self, token: usize, stream: TcpStream, buffer_size: usize) -> io::Result<()> {
        let fixed = match self.free_fixed.pop() {
            Some(slot) => {
                match self
                    .ring
                    .submitter()
                    .register_files_update(slot, &[stream.as_raw_fd()])
                {
                    Ok(_) => Some(slot),
                    Err(_) => {
                        self.free_fixed.push(slot);
                        None
                    }
                }
            }
            None => None,
        };
        self.lives += 1;
        if self.links.len() <= token {
            self.links.resize_with(token + 1, || None);
        }
        self.links[token] = Some(Link {
            stream,
            fixed,
            life: self.lives,
            read: Some(BytesMut::with_capacity(buffer_size.max(MIN_READ_SPACE))),
            read_op: None,
            send_op: None,
            queued: None,
            buffer_size,
        });
        Ok(())
    }

    fn remove(&mut self, token: usize) {
        let Some(link) = self.links.get_mut(token).and_then(Option::take) else {
            return;
        };
        // Operations in flight keep their buffers in `ops` until their completions (the
        // cancellation's or their own) are reaped; the kernel holds its own reference to
        // the socket meanwhile, so closing the descriptor below is safe.
        for target in [link.read_op, link.send_op].into_iter().flatten() {
            // A full queue that cannot even be submitted leaves the op to run its course.
            let _ = self.cancel(target, token, link.life);
        }
        if let Some(slot) = link.fixed {
            if self
                .ring
                .submitter()
                .register_files_update(slot, &[-1])
                .is_ok()
            {
                self.free_fixed.push(slot);
            }
        }
        let _ = link.stream.shutdown(std::net::Shutdown::Both);
    }

    fn can_write(&self, token: usize) -> bool {
        self.links
            .get(token)
            .and_then(Option::as_ref)
            .is_some_and(|l| l.send_op.is_none() && l.queued.is_none())
    }

    fn write(&mut self, token: usize, out: Output) {
        if let Some(link) = self.link(token) {
            match &mut link.queued {
                None => link.queued = Some(out),
                Some(q) => {
                    q.bytes.extend_from_slice(&out.bytes);
                    q.proof = out.proof.or(q.proof);
                }
            }
        }
    }

    fn settle(&mut self, token: usize, answered: u64) {
        let Some(link) = self.links.get_mut(token).and_then(Option::as_mut) else {
            return;
        };
        let Some(ud) = link.send_op else { return };
        let Ok(key) = usize::try_from(ud) else { return };
        let proven = matches!(
            self.ops.get(key).map(|o| &o.kind),
            Some(OpKind::Send { skip: true, proof: Some(p) }) if *p <= answered
        );
        if proven {
            // Every command of the send was answered: the server read all of it, so the
            // kernel copied all of it, and it will post nothing for this success.
            self.ops.remove(key);
            link.send_op = None;
        }
    }

    fn wait(
        &mut self,
        _awaiting: &[usize],
        want: usize,
        timeout: Option<Duration>,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        // Sends queued since the last wait (at most one per link in flight).
        for token in 0..self.links.len() {
            let next = match self.link(token) {
                Some(link) if link.send_op.is_none() => link.queued.take(),
                _ => None,
            };
            if let Some(out) = next {
                self.start_send(token, out)?;
            }
        }
        self.arm_reads()?;
        // Completions to wait for: `want` reads (every link has one armed), and a send
        // completion for each send that posts one.
        let sends = self
            .ops
            .iter()
            .filter(|(_, o)| matches!(o.kind, OpKind::Send { skip: false, .. }))
            .count();
        self.enter(want + sends, timeout)?;
        self.reap(events);
        Ok(())
    }

    fn input(&mut self, token: usize) -> Option<&mut BytesMut> {
        self.link(token).and_then(|l| l.read.as_mut())
    }

    fn peek(&mut self, events: &mut Vec<Event>, arm: bool) -> io::Result<()> {
        // With the cache, every link keeps a read armed between requests (an
        // invalidation push): arming one after its last reply costs one submission.
        let ops = self.ops.len();
        if arm {
            self.arm_reads()?;
        }
        let armed = self.ops.len() > ops;
        // Pending completions are flagged in shared memory: the kernel is entered only
        // when there are some (or reads to submit).
        let pending = {
            let sq = self.ring.submission();
            sq.taskrun() || sq.cq_overflow()
        };
        if pending || armed {
            self.enter(0, Some(Duration::ZERO))?;
        }
        self.reap(events);
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for token in 0..self.links.len() {
            self.remove(token);
        }
        // Every op still in `ops` is in flight (or a send finished without a completion,
        // which its cancellation reports as not found). Reap them within a bound.
        let deadline = Instant::now() + DROP_REAP;
        let mut events = Vec::new();
        while !self.ops.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.enter(1, Some(deadline - now)).is_err() {
                break;
            }
            self.reap(&mut events);
        }
        // What the kernel may still use is leaked, never freed under it.
        for op in std::mem::take(&mut self.ops).drain() {
            std::mem::forget(op.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A ring, or `None` where the kernel refuses io_uring (the poll backend covers that).
    fn ring() -> Option<Ring> {
        match Ring::new() {
            Ok(ring) => Some(ring),
            Err(e) => {
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn wait_for(ring: &mut Ring, awaiting: &[usize]) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..100 {
            ring.wait(
                awaiting,
                awaiting.len(),
                Some(Duration::from_millis(100)),
                &mut events,
            )
            .unwrap();
            if !events.is_empty() {
                break;
            }
        }
        events
    }

    #[test]
    fn a_send_and_an_armed_read_complete_in_one_wait() {
        let Some(mut ring) = ring() else { return };
        let (client, mut server) = pair();
        ring.add(3, client, 4096).unwrap();
        ring.write(
            3,
            Output {
                bytes: BytesMut::from(&b"*1\r\n$4\r\nPING\r\n"[..]),
                proof: Some(1),
            },
        );
        // The peer answers once it has the whole command.
        let peer = std::thread::spawn(move || {
            let mut got = [0u8; 14];
            server.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"*1\r\n$4\r\nPING\r\n");
            server.write_all(b"+PONG\r\n").unwrap();
            server
        });
        let events = wait_for(&mut ring, &[3]);
        assert!(matches!(events[..], [Event::Read(3, _)]), "{events:?}");
        assert_eq!(&ring.input(3).unwrap()[..], b"+PONG\r\n");
        ring.input(3).unwrap().clear();
        // The reply proves the send done (no completion posted for it with the skip flag).
        ring.settle(3, 1);
        assert!(ring.can_write(3));
        let server = peer.join().unwrap();
        // The read is armed again at the next wait; the peer closing completes it.
        server.shutdown(std::net::Shutdown::Both).unwrap();
        let events = wait_for(&mut ring, &[3]);
        assert!(matches!(events[..], [Event::Closed(3)]), "{events:?}");
    }

    #[test]
    fn closing_with_a_read_armed_cancels_it_and_drop_reaps_everything() {
        let Some(mut ring) = ring() else { return };
        let (client, _server) = pair();
        let (other, mut other_server) = pair();
        ring.add(0, client, 4096).unwrap();
        ring.add(1, other, 4096).unwrap();
        // Arm both reads.
        let mut events = Vec::new();
        ring.wait(&[], 0, Some(Duration::ZERO), &mut events)
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(ring.ops.len(), 2);
        ring.remove(0);
        // The cancelled read's buffer stays owned until its completion is reaped.
        assert!(ring.ops.len() >= 2);
        other_server.write_all(b":1\r\n").unwrap();
        let events = wait_for(&mut ring, &[1]);
        assert!(
            events.iter().all(|e| matches!(e, Event::Read(1, _))),
            "{events:?}"
        );
        // A read for a closed connection never surfaces as an event.
        ring.peek(&mut Vec::new(), false).unwrap();
        drop(ring);
    }
}
