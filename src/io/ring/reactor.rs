//! The owned ring's reactor: operations in flight, their buffers, and the one system call
//! per loop turn.
//!
//! Every operation in flight is an entry of `ops` (its slab key is the SQE's `user_data`)
//! that *owns* what the kernel uses: the buffer it reads into or sends from, the address
//! it connects to. The future that started it holds only the key. When the operation
//! completes, the entry keeps the result and wakes the future, which takes both back. A
//! future dropped before that leaves its entry *orphaned* and asks the kernel to cancel
//! the operation; the entry (and the buffer) is freed only when the completion is reaped,
//! so the kernel never writes into freed memory.

use std::io;
use std::os::fd::RawFd;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use io_uring::{opcode, types, IoUring};
use slab::Slab;

use super::setup::{self, RingFeatures};

/// Submission queue entries (the completion queue gets twice as many).
const RING_ENTRIES: u32 = 512;
/// Slots in the registered file table (sockets beyond it use plain descriptors).
const FIXED_FILES: u32 = 1024;
/// `user_data` of the eventfd's read (remote wakes).
const EVENTFD: u64 = u64::MAX;
/// `user_data` of cancellations: their completions carry nothing to hand over.
const CANCEL: u64 = u64::MAX - 1;
/// How long drop waits for cancelled operations to complete.
const DROP_REAP: Duration = Duration::from_secs(1);
/// How long a turn waits for every completion it expects before it settles for the
/// ones already in (a fan-out's replies from every node in one system call, while a slow
/// node delays the others by this much at most). Measured against waiting for the first
/// completion (cluster-bench --pin, 3 masters, quiet machine): p50 68 against 77 µs at
/// K = 16 fan-out, 121 against 146 at K = 128, 92 against 123 with 64 callers, and 1.1
/// against 3.4 system calls per K = 16 pipeline; the price is CPU, 2,818 against 2,404
/// ns per command at K = 16 (the kernel wakes the waiter for each completion to count
/// them, inside the one call).
pub(crate) const GATHER_US: u32 = 20;

/// What an operation is for, as the turn's wait counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A send on this socket: its completion is expected soon, and it means a reply is
    /// owed on the socket.
    Send(RawFd),
    /// A read on this socket: expected when the socket owes a reply.
    Recv(RawFd),
    /// Anything else (connect, cancel): not counted.
    Other,
}

/// Where an operation is in its life.
#[derive(Debug)]
enum State {
    /// In flight; the waker of the future awaiting it.
    Waiting(Option<Waker>),
    /// Completed with this result; the future has not taken it yet.
    Done(i32),
    /// Its future is gone: freed when the completion is reaped.
    Orphaned,
}

/// One socket, as the turn's wait counts it.
#[derive(Debug, Clone, Copy, Default)]
struct Sock {
    reads: u32,
    owed: bool,
}

impl Sock {
    fn expects(&self) -> bool {
        self.owed && self.reads > 0
    }
}

/// What the kernel uses while an operation is in flight, owned here until then.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    pub(crate) buf: Option<BytesMut>,
    /// Read by the kernel (a connect's address), never by us.
    #[expect(dead_code, reason = "kept alive for the kernel, which reads it")]
    pub(crate) addr: Option<Box<socket2::SockAddr>>,
}

#[derive(Debug)]
struct Op {
    state: State,
    owned: Owned,
    purpose: Purpose,
    /// The loop-driven socket its completion goes to (no future awaits it).
    socket: Option<usize>,
}

/// The ring and what is in flight on it.
pub(crate) struct Reactor {
    ring: IoUring,
    features: RingFeatures,
    ops: Slab<Op>,
    eventfd: RawFd,
    /// The 8 bytes the eventfd's read fills; boxed so the address stays put.
    eventfd_buf: Box<u64>,
    eventfd_armed: bool,
    /// Sends in flight.
    sends: usize,
    /// Reads armed per socket.
    /// Per socket (by descriptor, which the kernel keeps small and dense): reads armed,
    /// and whether a reply is owed (sent to since its last read completed).
    sockets: Vec<Sock>,
    /// Sockets that owe a reply and have a read armed: the replies a wait expects.
    replies: usize,
    /// The kernel takes a minimum wait (`IORING_FEAT_MIN_TIMEOUT`, 6.12): a turn may
    /// wait for several completions without starving the ones already in.
    gather: bool,
    /// How long a turn gathers expected completions, in µs (0: it waits for the first).
    gather_us: u32,
    /// Free slots of the registered file table.
    free_fixed: Vec<u32>,
    /// The wakers of the completions one turn reaps (kept to reuse its memory).
    wakers: Vec<Waker>,
    /// Completions of loop-driven sockets' operations: (socket, operation).
    driven: Vec<(usize, usize)>,
    /// Loop turns and system calls made, for the benchmark's report.
    pub(crate) turns: u64,
    pub(crate) enters: u64,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("features", &self.features)
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl Reactor {
    /// A ring with the best features the kernel takes; `eventfd` is read to take wakes
    /// from other threads.
    pub(crate) fn new(eventfd: RawFd) -> io::Result<Reactor> {
        let (ring, features) = setup::build(
            RING_ENTRIES,
            FIXED_FILES,
            &[
                (opcode::Send::CODE, "IORING_OP_SEND"),
                (opcode::Recv::CODE, "IORING_OP_RECV"),
                (opcode::Connect::CODE, "IORING_OP_CONNECT"),
                (opcode::Read::CODE, "IORING_OP_READ"),
                (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
            ],
        )?;
        // The ring's own descriptor registered: no file lookup per `io_uring_enter`.
        // Refused on older kernels, which costs only that lookup.
        let _ = ring.submitter().register_ring_fd();
        let gather = features.min_wait;
        let free_fixed = if features.registered_files {
            (0..FIXED_FILES).rev().collect()
        } else {
            Vec::new()
        };
        Ok(Reactor {
            ring,
            features,
            ops: Slab::new(),
            eventfd,
            eventfd_buf: Box::new(0),
            eventfd_armed: false,
            sends: 0,
            sockets: Vec::new(),
            replies: 0,
            gather,
            gather_us: GATHER_US,
            free_fixed,
            wakers: Vec::new(),
            driven: Vec::new(),
            turns: 0,
            enters: 0,
        })
    }

    /// Operations whose memory the reactor still owns (in flight or orphaned).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// Registers a socket in the ring's file table, so its operations skip the kernel's
    /// descriptor lookup; `None` when the table is full or absent (plain descriptor then).
    pub(crate) fn register(&mut self, fd: RawFd) -> Option<u32> {
        let slot = self.free_fixed.pop()?;
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => Some(slot),
            Err(_) => {
                self.free_fixed.push(slot);
                None
            }
        }
    }

    /// Frees a slot of the file table. Operations in flight on it keep their own
    /// reference to the socket (taken when they were submitted), so this is safe at any
    /// time.
    pub(crate) fn unregister(&mut self, slot: u32) {
        if self
            .ring
            .submitter()
            .register_files_update(slot, &[-1])
            .is_ok()
        {
            self.free_fixed.push(slot);
        }
    }

    /// How long a turn gathers the completions it expects, in µs (0: it waits for the
    /// first one); `None` where the kernel has no minimum wait (it always waits for the
    /// first).
    pub(crate) fn gather_us(&self) -> Option<u32> {
        self.gather.then_some(self.gather_us)
    }

    /// Sets [`Reactor::gather_us`].
    pub(crate) fn set_gather_us(&mut self, us: u32) {
        self.gather_us = us;
    }

    /// The features in use.
    pub(crate) fn features(&self) -> RingFeatures {
        self.features
    }

    /// Queues `entry`, whose memory is `owned`'s; the key names the operation.
    pub(crate) fn start(
        &mut self,
        entry: io_uring::squeue::Entry,
        owned: Owned,
        purpose: Purpose,
    ) -> io::Result<usize> {
        self.start_for(entry, owned, purpose, None)
    }

    /// [`Reactor::start`] for a loop-driven socket: the completion is listed for the
    /// loop ([`Reactor::take_driven`]) instead of waking a future.
    pub(crate) fn start_for(
        &mut self,
        entry: io_uring::squeue::Entry,
        owned: Owned,
        purpose: Purpose,
        socket: Option<usize>,
    ) -> io::Result<usize> {
        let key = self.ops.insert(Op {
            state: State::Waiting(None),
            owned,
            purpose,
            socket,
        });
        let entry = entry.user_data(key as u64);
        if let Err(e) = self.push(&entry) {
            // Never queued: nothing of it reaches the kernel.
            self.ops.remove(key);
            return Err(e);
        }
        match purpose {
            // A reply is owed from now: the wait that sends this counts the read that
            // brings the reply too, so a round trip costs one system call.
            Purpose::Send(fd) => {
                self.sends += 1;
                self.socket(fd, |sock| sock.owed = true);
            }
            Purpose::Recv(fd) => self.socket(fd, |sock| sock.reads += 1),
            Purpose::Other => {}
        }
        Ok(key)
    }

    /// Completions the next wait expects: every send in flight, and a read on every
    /// socket that owes a reply.
    fn expected(&self) -> usize {
        self.sends + self.replies
    }

    /// Changes a socket's record, keeping the count of expected replies in step.
    fn socket(&mut self, fd: RawFd, change: impl FnOnce(&mut Sock)) {
        let Ok(i) = usize::try_from(fd) else { return };
        if self.sockets.len() <= i {
            self.sockets.resize(i + 1, Sock::default());
        }
        let sock = &mut self.sockets[i];
        let before = sock.expects();
        change(sock);
        match (before, sock.expects()) {
            (false, true) => self.replies += 1,
            (true, false) => self.replies -= 1,
            _ => {}
        }
    }

    fn account(&mut self, purpose: Purpose) {
        match purpose {
            Purpose::Send(_) => self.sends = self.sends.saturating_sub(1),
            Purpose::Recv(fd) => self.socket(fd, |sock| {
                sock.reads = sock.reads.saturating_sub(1);
                sock.owed = false;
            }),
            Purpose::Other => {}
        }
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        for attempt in 0..2 {
            // SAFETY: every SQE pushed points at memory owned by an `Op` in `self.ops` (a
            // `BytesMut`'s heap memory or a boxed address, which do not move when the
            // `Op` moves), or at the boxed eventfd buffer, or at none (cancellations). It
            // stays allocated and untouched until the completion is reaped or, at drop,
            // is leaked.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            if attempt == 0 {
                self.enters += 1;
                self.ring.submit()?;
            }
        }
        Err(io::Error::other("the submission queue stays full"))
    }

    /// The operation's result once it completed, handing back what it owned; otherwise
    /// remembers `waker`.
    pub(crate) fn poll_op(&mut self, key: usize, waker: &Waker) -> Poll<(i32, Owned)> {
        let Some(op) = self.ops.get_mut(key) else {
            return Poll::Ready((-libc::ECANCELED, Owned::default()));
        };
        match &mut op.state {
            State::Done(result) => {
                let result = *result;
                let op = self.ops.remove(key);
                Poll::Ready((result, op.owned))
            }
            State::Waiting(w) => {
                match w {
                    Some(w) if w.will_wake(waker) => {}
                    _ => *w = Some(waker.clone()),
                }
                Poll::Pending
            }
            State::Orphaned => Poll::Pending,
        }
    }

    /// A completed operation's result and what it owned; `None` while it is in flight.
    pub(crate) fn take(&mut self, key: usize) -> Option<(i32, Owned)> {
        match self.ops.get(key)?.state {
            State::Done(result) => Some((result, self.ops.remove(key).owned)),
            _ => None,
        }
    }

    /// The loop-driven sockets' completions reaped since the last call, as (socket,
    /// operation), into `into`.
    pub(crate) fn take_driven(&mut self, into: &mut Vec<(usize, usize)>) {
        into.append(&mut self.driven);
    }

    /// The future awaiting `key` is gone: the kernel is asked to cancel the operation,
    /// and what it owns is freed when its completion is reaped.
    pub(crate) fn orphan(&mut self, key: usize) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        match op.state {
            State::Done(_) => {
                self.ops.remove(key);
            }
            _ => {
                op.state = State::Orphaned;
                let cancel = opcode::AsyncCancel::new(key as u64)
                    .build()
                    .user_data(CANCEL);
                // A queue that stays full leaves the operation to run its course.
                let _ = self.push(&cancel);
            }
        }
    }

    fn arm_eventfd(&mut self) -> io::Result<()> {
        if self.eventfd_armed {
            return Ok(());
        }
        let ptr: *mut u64 = &mut *self.eventfd_buf;
        let entry = opcode::Read::new(types::Fd(self.eventfd), ptr.cast(), 8)
            .build()
            .user_data(EVENTFD);
        self.push(&entry)?;
        self.eventfd_armed = true;
        Ok(())
    }

    /// One loop turn's system call: submits every queued operation and, when `wait`,
    /// waits for the first completion or `timeout`. Without `wait` the kernel is entered
    /// only when there is something to submit or completions to run.
    pub(crate) fn turn(&mut self, wait: bool, timeout: Option<Duration>) -> io::Result<()> {
        self.turns += 1;
        self.arm_eventfd()?;
        if !wait {
            let pending = {
                let sq = self.ring.submission();
                !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
            };
            if !pending {
                return Ok(());
            }
        }
        // Waiting: for every completion expected, as long as `GATHER_US`, then for the
        // first one (the kernel's minimum wait); without that feature, for the first.
        let expected = self.expected();
        let gathers = self.gather && self.gather_us > 0 && expected > 1;
        let (want, gather) = match (wait, gathers) {
            (false, _) => (0, 0),
            (true, true) => (expected, self.gather_us),
            (true, false) => (1, 0),
        };
        self.enters += 1;
        setup::enter(&self.ring, want, timeout, gather)
    }

    /// Hands every completion in the queue to its operation and wakes its future.
    pub(crate) fn complete(&mut self) {
        let mut wakers = std::mem::take(&mut self.wakers);
        loop {
            let Some(cqe) = self.ring.completion().next() else {
                break;
            };
            match cqe.user_data() {
                EVENTFD => self.eventfd_armed = false,
                CANCEL => {}
                ud => {
                    let Ok(key) = usize::try_from(ud) else {
                        continue;
                    };
                    let Some(op) = self.ops.get_mut(key) else {
                        continue;
                    };
                    let (purpose, socket) = (op.purpose, op.socket);
                    let previous = std::mem::replace(&mut op.state, State::Done(cqe.result()));
                    self.account(purpose);
                    if let (Some(socket), State::Waiting(_)) = (socket, &previous) {
                        self.driven.push((socket, key));
                        continue;
                    }
                    match previous {
                        State::Waiting(Some(w)) => wakers.push(w),
                        State::Waiting(None) | State::Done(_) => {}
                        State::Orphaned => {
                            self.ops.remove(key);
                        }
                    }
                }
            }
        }
        for w in wakers.drain(..) {
            w.wake();
        }
        // Kept for the next turn: no allocation per turn.
        self.wakers = wakers;
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // Whatever is still in flight is cancelled and reaped within a bound; what the
        // kernel may still use after that is leaked, never freed under it.
        let keys: Vec<usize> = self.ops.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.orphan(key);
        }
        let deadline = Instant::now() + DROP_REAP;
        while !self.ops.is_empty() || self.eventfd_armed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.eventfd_armed {
                // The eventfd's read ends only when written or cancelled.
                let cancel = opcode::AsyncCancel::new(EVENTFD).build().user_data(CANCEL);
                if self.push(&cancel).is_err() {
                    break;
                }
            }
            let args_ts = types::Timespec::from(deadline - now);
            let args = types::SubmitArgs::new().timespec(&args_ts);
            if self.ring.submitter().submit_with_args(1, &args).is_err() {
                break;
            }
            self.complete();
            // Reaped completions were handed over, but no future will take them.
            let done: Vec<usize> = self
                .ops
                .iter()
                .filter(|(_, op)| matches!(op.state, State::Done(_)))
                .map(|(k, _)| k)
                .collect();
            for key in done {
                self.ops.remove(key);
            }
        }
        for (_, op) in std::mem::take(&mut self.ops) {
            std::mem::forget(op.owned);
        }
        if self.eventfd_armed {
            std::mem::forget(std::mem::take(&mut self.eventfd_buf));
        }
    }
}
